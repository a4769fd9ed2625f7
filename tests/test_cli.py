"""The freqnn command: lazy subcommand registry, train with YAML / --set, eval on .npz, report."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from freqnn import cli
from freqnn.data.npz import save_npz
from freqnn.data.waves import generate_waves

TINY = ["--n-train", "16", "--n-val", "8", "--n-test", "8", "--length", "10",
        "--batch-size", "8", "--hidden-size", "4", "--state-size", "2", "--num-freqs", "2",
        "--epochs", "1", "--no-progress", "--threads", "1"]


def test_lazy_registry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert cli.COMMANDS["compression"] == "freqnn.tasks.compression"
    monkeypatch.setitem(cli.COMMANDS, "missing", "freqnn.no_such_module")
    # a broken registration costs nothing until it is used
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "missing" in capsys.readouterr().out
    with pytest.raises(ModuleNotFoundError):
        cli.main(["missing"])
    module = types.ModuleType("fake_cmd")
    module.HELP = "a fake command"
    module.add_arguments = lambda p: p.add_argument("--n", type=int, default=1)
    module.run = lambda args: 3 + args.n
    monkeypatch.setitem(sys.modules, "fake_cmd", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", "fake_cmd")
    assert cli.main(["fake", "--n", "4"]) == 7


def test_train_yaml_set_eval_npz_and_report(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: gru\nlr: 0.005\nseed: 3\nhidden_size: 6\n")
    run = tmp_path / "run"
    # CLI options beat the YAML file (hidden size), --set reaches any key
    assert cli.main(["train", "signal_type", "--config", str(config), *TINY, "--run-dir",
                     str(run), "--set", "weight_decay=0.001"]) == 0
    out = capsys.readouterr().out
    assert "signal_type / gru (seed 3" in out
    cfg = (run / "config.yaml").read_text()
    assert "model: gru" in cfg and "hidden_size: 4" in cfg and "weight_decay: 0.001" in cfg
    results = json.loads((run / "results.json").read_text())
    assert results["hidden_size"] != 4  # GRU hidden size matched to the SFM's budget
    assert cli.main(["eval", str(run)]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert ev["loss"] == pytest.approx(results["test"]["loss"], rel=1e-6)
    w = generate_waves(6, length=10, seed=1234 + 2)  # the run's test split, first 6 waves
    data = save_npz(tmp_path / "w.npz", w.values, w.labels, times=w.times)
    assert cli.main(["eval", str(run / "checkpoints" / "best.ckpt"), "--data", str(data)]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["sequences"] == 6 and 0.0 <= ev["accuracy"] <= 1.0
    bad = tmp_path / "bad.npz"
    np.savez(bad, values=np.zeros((2, 10, 3)), labels=np.zeros(2, dtype=int))
    assert cli.main(["eval", str(run), "--data", str(bad)]) == 2
    assert "values: expected 1 feature(s)" in capsys.readouterr().err
    report_dir = tmp_path / "report"
    assert cli.main(["report", str(tmp_path), "--out", str(report_dir)]) == 0
    text = (report_dir / "report.md").read_text()
    assert "| signal_type | GRU | 3 |" in text
    assert (report_dir / "learning_curves_signal_type.png").stat().st_size > 1000


def test_resume_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--run-dir",
                     str(run)]) == 0
    # resume reads the task and configuration back; --epochs extends the run
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--epochs", "2",
                     "--no-progress"]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 2
    capsys.readouterr()
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--run-dir",
                     str(run)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert cli.main(["train", "signal_type", "--set", "lerning_rate=1", "--run-dir",
                     str(tmp_path / "x")]) == 2
    assert "unknown key 'lerning_rate'" in capsys.readouterr().err
    assert cli.main(["train", "--resume"]) == 2
    assert "--resume: expected --run-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "signal_type", "--model", "transformer"])


def test_demo_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "DEMO", {**cli.DEMO, "n_train": 16, "n_val": 8, "n_test": 8,
                                      "epochs": 1, "batch_size": 8, "length": 12,
                                      "hidden_size": 4, "state_size": 2, "num_freqs": 2})
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SFM test accuracy: " in printed and str((out / "report.md").resolve()) in printed
    text = (out / "report.md").read_text()
    assert "| signal_type | SFM | 0 |" in text and "| signal_type | LSTM | 0 |" in text
    for png in ("learning_curves_signal_type.png", "amplitude_sfm.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
