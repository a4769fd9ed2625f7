"""The freqnn command: lazy subcommand registry, train with YAML / --set, eval on .npz, report."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn import cli
from freqnn.checkpoint import load_checkpoint
from freqnn.checks import EXPERIMENTS_HINT
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


def test_report_marks_runs_stopped_by_the_wall_time_cap(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--epochs", "2",
                     "--max-minutes", "1e-6", "--run-dir", str(run)]) == 0

    def epochs_cell() -> str:
        report = cli.write_report([run], tmp_path / "report", amplitude=False)
        (row,) = [line for line in report.read_text().splitlines()
                  if line.startswith("| signal")]
        return row.split(" | ")[-2]

    assert epochs_cell() == "1 (1) cap 1e-06 min"
    # a larger cap continues the run, to the epoch limit
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--max-minutes", "1e6",
                     "--no-progress"]) == 0
    assert epochs_cell().startswith("2 (") and "cap" not in epochs_cell()


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
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "notes.txt").write_text("mine")  # before, the demo deleted runs/ whole
    assert cli.main(["demo", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["demo", "--out", str(out)]) == 0  # again: replaces its own runs
    assert (out / "runs" / "notes.txt").read_text() == "mine"
    printed = capsys.readouterr().out
    assert "SFM test accuracy: " in printed and str((out / "report.md").resolve()) in printed
    text = (out / "report.md").read_text()
    assert "| signal_type | SFM | 0 |" in text and "| signal_type | LSTM | 0 |" in text
    for png in ("learning_curves_signal_type.png", "amplitude_sfm.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # a directory the demo would write that it did not write is refused before any training
    (out / "runs" / "lstm" / "config.yaml").write_text("task: stocks\nmodel: lstm\n")
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert f"--out: expected a directory the demo wrote, got {out / 'runs' / 'lstm'}" in \
        _error_line(capsys)
    assert (out / "runs" / "sfm" / "results.json").is_file()


# ---- hardening: every bad input is one line "freqnn: error: ...", exit status 2 -------------

def _error_line(capsys: pytest.CaptureFixture) -> str:
    """The one line a refused command prints (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("freqnn: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch LSTM run on signal_type (copy it before changing it)."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--run-dir",
                     str(run)]) == 0
    return run


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


class Payload:
    """Unpickling this object creates ``path`` (it calls ``open(path, "w")``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


@pytest.mark.parametrize(("model", "option", "value", "saved"),
                         [("lstm", "--hidden-size", "6", "4"), ("sfm", "--state-size", "3", "2")])
def test_resume_with_changed_sizes_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 model: str, option: str, value: str,
                                                 saved: str) -> None:
    """--resume after a changed hidden_size / state_size: one line naming the key (before, a
    'size mismatch' traceback), and the run's config.yaml is left as it was."""
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", model, *TINY, "--run-dir",
                     str(run)]) == 0
    config = (run / "config.yaml").read_text()
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--epochs", "2", option,
                     value, "--no-progress"]) == 2
    key = option[2:].replace("-", "_")
    line = _error_line(capsys)
    assert f"{key}: expected {int(value)!r} (this run's configuration), got a checkpoint of " \
        f"{int(saved)!r}" in line, line
    assert (run / "config.yaml").read_text() == config


def test_hostile_checkpoint_runs_no_code_in_eval_or_resume(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "marker"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "evil": Payload(marker)}, hostile)
    assert not marker.exists()
    status = cli.main(["eval", str(hostile)])
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert status == 2
    line = _error_line(capsys)
    assert "refused, nothing in it was run" in line and "open" in line
    # --resume looks at every checkpoint of the run: the hostile one is refused, not skipped
    run = _copy_run(tiny_run, tmp_path / "run")
    shutil.copy(hostile, run / "checkpoints" / "last.ckpt")
    status = cli.main(["train", "--resume", "--run-dir", str(run), "--no-progress"])
    assert not marker.exists(), "resuming ran the code of a checkpoint"
    assert status == 2
    assert "last.ckpt: expected a freqnn checkpoint of weights" in _error_line(capsys)


@pytest.mark.parametrize("setting", ["accelerator=gpu"])
def test_gpu_accelerator_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    """--set accelerator=gpu on a host without CUDA: one line (before, Lightning's
    MisconfigurationException traceback); nothing is written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--set", setting,
                     "--run-dir", str(run)]) == 2
    assert "accelerator: expected 'cpu' or 'auto' on this machine" in _error_line(capsys)
    assert not run.exists()


@pytest.mark.parametrize("qpm", ["0", "-100", "nan", "inf"])
def test_sample_refuses_a_tempo_that_is_not_positive(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture,
                                                     qpm: str) -> None:
    """freqnn sample --qpm 0 divided the frame length by zero (ZeroDivisionError)."""
    assert cli.main(["sample", str(tmp_path / "run"), "--qpm", qpm]) == 2
    assert "--qpm: expected a positive finite tempo" in _error_line(capsys)


@pytest.mark.parametrize(("damage", "names"), [
    ("corrupt", "results.json"), ("empty", "results.json"), ("a list", "results.json"),
    ("invalid utf-8", "results.json"), ("no task", "results.json: task"),
    ("no test", "results.json: test"), ("test a str", "results.json: test"),
    ("a metric a str", "results.json: test.accuracy"),
    ("no hardware.torch", "results.json: hardware.torch"),
    ("history corrupt", "history.json"), ("history a dict", "history.json")])
def test_report_names_a_corrupt_or_incomplete_results_file(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str,
        names: str) -> None:
    """freqnn report with a results.json missing keys or corrupt: one line naming the file
    (was a KeyError, or a JSON message naming no file)."""
    run = _copy_run(tiny_run, tmp_path / "run")
    path = run / "results.json"
    results = json.loads(path.read_text())
    if damage == "corrupt":
        path.write_text(path.read_text()[:40])
    elif damage == "empty":
        path.write_text("")
    elif damage == "a list":
        path.write_text("[1, 2]")
    elif damage == "invalid utf-8":
        path.write_bytes(b"{\"task\": \"\xff\"}")
    elif damage == "history corrupt":
        (run / "history.json").write_text("[{")
    elif damage == "history a dict":
        (run / "history.json").write_text("{}")
    else:
        if damage == "no task":
            del results["task"]
        elif damage == "no test":
            del results["test"]
        elif damage == "test a str":
            results["test"] = "0.5"
        elif damage == "a metric a str":
            results["test"]["accuracy"] = "high"
        elif damage == "no hardware.torch":
            del results["hardware"]["torch"]
        path.write_text(json.dumps(results))
    assert cli.main(["report", str(run), "--out", str(tmp_path / "report")]) == 2
    line = _error_line(capsys)
    assert f"{run / names}" in line, line


@pytest.mark.parametrize(("args", "expected"), [
    (["--set", "deterministic=yes"], "deterministic: expected true or false, got str 'yes'"),
    (["--set", "deterministic=on"], "deterministic: expected true or false, got str 'on'"),
    (["--set", "progress=off"], "progress: expected true or false, got str 'off'"),
    (["--config", "learn_frequencies: no\n"],
     "learn_frequencies: expected true or false, got str 'no'"),
    (["--config", "epochs: 1\nepochs: 2\n"], "got duplicate key 'epochs' (line 2, column 1)"),
    (["--set", "clip={a: 1, a: 2}"], "--set clip: expected YAML of plain values, got "
     "duplicate key 'a'"),
    (["--run-dir", ""], "--run-dir: expected a directory, got ''"),
    (["--run-dir", " "], "--run-dir: expected a directory, got ' '"),
    (["--set", "run_dir=''"], "run_dir: expected a directory, got ''"),
])
def test_yaml_booleans_duplicate_keys_and_empty_run_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        args: list[str], expected: str) -> None:
    """YAML 1.1 booleans (yes/no/on/off) were taken as bools, a repeated key kept its last
    value, and --run-dir "" became the default run directory: each is refused in one line."""
    monkeypatch.chdir(tmp_path)
    if args[0] == "--config":
        (tmp_path / "c.yaml").write_text(args[1])
        args = ["--config", str(tmp_path / "c.yaml")]
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, *args]) == 2
    line = _error_line(capsys)
    assert expected in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting", ["hidden_size=1000000000000", "length=10000000000000"])
def test_a_configuration_too_large_for_memory(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              setting: str) -> None:
    """--set hidden_size / length far beyond memory: one line (was the allocator's
    RuntimeError or NumPy's MemoryError traceback). Sizes of terabytes, which every
    allocator refuses at once."""
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--set", setting,
                     "--run-dir", str(tmp_path / "run")]) == 2
    assert "out of memory: expected settings that fit this machine's memory" in \
        _error_line(capsys)


BILLION_LAUGHS = ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 10)}]\n"
    for i in range(1, 9)))


@pytest.mark.parametrize("args", [["--config", BILLION_LAUGHS + "clip: *i\n"],
                                  ["--set", "clip=" + BILLION_LAUGHS.replace("\n", ", ")
                                   .join("{}")]])
def test_yaml_aliases_expanding_to_a_billion_values(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture,
                                                    args: list[str]) -> None:
    """YAML whose aliases expand to 1e9 leaves: refused in one short line (the error's repr
    of the value never ended)."""
    if args[0] == "--config":
        (tmp_path / "c.yaml").write_text(args[1])
        args = ["--config", str(tmp_path / "c.yaml")]
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, *args,
                     "--run-dir", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert "aliases that expand to more than 100,000 values" in line and len(line) < 400, line


@pytest.mark.parametrize("free", [0, 10**12], ids=["disk full", "other write failure"])
def test_a_checkpoint_write_that_fails_in_torch(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch,
                                                free: int) -> None:
    """A full disk during a checkpoint write reaches torch's zip writer as RuntimeError
    '[enforce fail at inline_container.cc:672]': now the documented one line (make it
    writable and --resume), with no temporary file left."""
    import freqnn.train as T

    def failing_save(obj: object, handle: object) -> None:
        handle.write(b"PK\x03\x04")  # type: ignore[attr-defined]
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(T.torch, "save", failing_save)
    monkeypatch.setattr(T.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=free))
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--run-dir",
                     str(run)]) == 2
    line = _error_line(capsys)
    assert f"run_dir: expected a writable directory, got {run} where " in line, line
    assert "make it writable and continue with --resume" in line and "enforce" not in line
    assert ("No space left on device" in line) == (free == 0), line
    assert not list((run / "checkpoints").glob("*.ckpt")) and \
        not list((run / "checkpoints").glob(".*"))


def _mutated_checkpoint(source: Path, change: str) -> object:
    """The checkpoint at ``source`` with one part removed or of the wrong type."""
    ckpt = torch.load(source, weights_only=True)
    state = ckpt["freqnn"]
    if change == "no history":
        del state["history"]
    elif change == "no facts":
        del state["facts"]
    elif change == "history a dict":
        state["history"] = {"epoch": 0}
    elif change == "history of numbers":
        state["history"] = [1, 2]
    elif change == "facts a list":
        state["facts"] = [1, 2]
    elif change == "input_size a str":
        state["facts"]["input_size"] = "1"
    elif change == "config a str":
        state["config"] = "signal_type"
    elif change == "no model":
        del state["config"]["model"]
    elif change == "freqnn a list":
        ckpt["freqnn"] = [state]
    elif change == "weights a list":
        ckpt["state_dict"] = {k: v.tolist() for k, v in ckpt["state_dict"].items()}
    elif change == "elapsed a str":
        state["elapsed"] = "1"
    elif change == "a weight missing":
        ckpt["state_dict"].popitem()
    elif change == "a list":
        return [ckpt]
    return ckpt


NOT_A_CHECKPOINT = ["random bytes", "legacy format", "empty", "plain pickle", "no history",
                    "no facts", "history a dict", "history of numbers", "facts a list",
                    "input_size a str", "config a str", "no model", "freqnn a list",
                    "weights a list", "elapsed a str", "a list"]


@pytest.mark.parametrize("change", [*NOT_A_CHECKPOINT, "a weight missing"])
def test_a_file_that_is_not_a_freqnn_checkpoint(tiny_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture,
                                                change: str) -> None:
    """Random, legacy and foreign files, and checkpoints missing freqnn.history / facts or of
    the wrong structure: one line saying the file is not a freqnn checkpoint (before, a
    KeyError / TypeError, or torch's multi-line text advising weights_only=False), from eval
    and the Python API."""
    from freqnn.checkpoint import model_from_checkpoint

    bad = tmp_path / "bad.ckpt"
    if change == "random bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(300))
    elif change == "legacy format":
        torch.save({"state_dict": {"w": torch.ones(2)}}, bad,
                   _use_new_zipfile_serialization=False)
    elif change == "empty":
        bad.write_bytes(b"")
    elif change == "plain pickle":
        bad.write_bytes(pickle.dumps({"freqnn": {}, "state_dict": {}}, protocol=4))
    else:
        torch.save(_mutated_checkpoint(tiny_run / "checkpoints" / "best.ckpt", change), bad)
    expected = ("expected a weight of shape" if change == "a weight missing" else
                "expected a freqnn checkpoint, got a file that is not one")
    assert cli.main(["eval", str(bad)]) == 2
    line = _error_line(capsys)
    assert f"{bad}: " in line and expected in line and "weights_only" not in line, line
    with pytest.raises(ValueError, match=expected) as info:
        model_from_checkpoint(bad)
    assert "\n" not in str(info.value)


def test_task_named_in_a_file_is_never_imported(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """A checkpoint or config.yaml saying ``task: evilmod.x`` must not import ``evilmod``."""
    from freqnn.checkpoint import model_from_checkpoint

    marker = tmp_path / "marker"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nx = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.ckpt"
    ckpt = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["freqnn"]["config"]["task"] = "evilmod.x"
    torch.save(ckpt, evil)
    refusal = "task: expected a registered task, one of phoneme, polyphonic"
    assert cli.main(["eval", str(evil)]) == 2
    line = _error_line(capsys)
    assert f"{evil}: {refusal}" in line and "got 'evilmod.x'" in line, line
    with pytest.raises(ValueError, match=f"{evil}: {refusal}"):
        model_from_checkpoint(evil)
    run = _copy_run(tiny_run, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("task: signal_type", "task: evilmod.x"))
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--no-progress"]) == 2
    assert f"{config}: {refusal}" in _error_line(capsys)
    assert cli.main(["eval", str(run)]) == 2
    assert f"{config}: {refusal}" in _error_line(capsys)
    assert not marker.exists() and "evilmod" not in sys.modules, "evilmod was imported"


def test_checkpoint_of_another_task_or_model_is_refused(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _copy_run(tiny_run, tmp_path / "run")
    best = run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, weights_only=True)
    ckpt["freqnn"]["config"]["task"] = "stocks"
    torch.save(ckpt, best)
    assert cli.main(["eval", str(run)]) == 2
    assert "task: expected 'signal_type' (the run's config.yaml), got a checkpoint of " \
           "'stocks'" in _error_line(capsys)
    # resuming an LSTM run as a GRU would load LSTM weights into a GRU
    run = _copy_run(tiny_run, tmp_path / "run2")
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--model", "gru",
                     "--epochs", "2"]) == 2
    assert "model: expected 'gru'" in _error_line(capsys)
    assert "model: lstm" in (run / "config.yaml").read_text()  # the run is left as it was


# ---- nothing overwritten or lost: run directories -----------------------------------------------

def test_run_dir_holding_other_files_or_a_finished_run_is_refused(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before, every file freqnn writes was overwritten without a word (only checkpoints were
    looked at)."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.yaml.bak").write_text("mine")
    (theirs / "notes.txt").write_text("mine")
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(theirs)]) == 2
    assert (f"run_dir: expected a new or empty directory or a freqnn run, got {theirs} "
            "holding config.yaml.bak, notes.txt (no config.yaml); choose another --run-dir, "
            "or give --overwrite") in _error_line(capsys)
    assert sorted(p.name for p in theirs.iterdir()) == ["config.yaml.bak", "notes.txt"]
    # --overwrite writes the run there and keeps the files that are not the run's
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(theirs),
                     "--overwrite"]) == 0
    assert (theirs / "notes.txt").read_text() == "mine"
    assert (theirs / "results.json").is_file()

    run = _copy_run(tiny_run, tmp_path / "run")
    (run / "logs" / "mine.txt").write_text("mine")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(run), "--seed", "5"]) == 2
    assert (f"run_dir: expected a new directory or resume=True (--resume), got {run}, a "
            "finished run that already holds checkpoints and results.json; --resume continues "
            "it (with more --epochs), --overwrite replaces it") in _error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert cli.main(["train", "--resume", "--overwrite", "--run-dir", str(run)]) == 2
    assert "overwrite: expected it without resume" in _error_line(capsys)
    # --overwrite replaces the run (seed 5), and only the run's files
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(run), "--seed", "5",
                     "--overwrite"]) == 0
    assert json.loads((run / "results.json").read_text())["seed"] == 5
    assert (run / "logs" / "mine.txt").read_text() == "mine"
    assert len((run / "logs" / "metrics.csv").read_text().splitlines()) == \
        len((tiny_run / "logs" / "metrics.csv").read_text().splitlines())


def test_a_run_directory_is_locked_while_a_run_trains(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two processes on one run directory: before, both ran and one's files were lost."""
    from freqnn.train import LOCK_FILE

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys, time\n"
         f"lock = filelock.FileLock({str(run / LOCK_FILE)!r}); lock.acquire()\n"
         "print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"]):
            assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(run),
                             *extra]) == 2
            assert (f"run_dir: expected a directory no other process is training in, got "
                    f"{run}, locked by a running freqnn train") in _error_line(capsys)
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # released (the holder died): the run proceeds, and the lock file does not count as content
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(run)]) == 0


def test_bad_config_files_and_run_dirs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("epochs: [1\n")
    tagged = tmp_path / "tagged.yaml"
    marker = tmp_path / "marker"
    tagged.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    for config, expected in ((malformed, "malformed.yaml: expected YAML of plain values"),
                             (tagged, "could not determine a constructor for the tag"),
                             (tmp_path, "expected a YAML file, got a directory")):
        assert cli.main(["train", "signal_type", "--config", str(config), "--run-dir",
                         str(tmp_path / "run")]) == 2
        assert expected in _error_line(capsys)
    assert not marker.exists()
    afile = tmp_path / "afile"
    afile.write_text("")
    assert cli.main(["train", "signal_type", *TINY, "--run-dir", str(afile / "run")]) == 2
    assert f"run_dir: expected a directory, got {afile / 'run'}, below the file" in \
        _error_line(capsys)
    for run in (tmp_path / "missing", tmp_path):  # nothing there / a directory without a run
        assert cli.main(["train", "--resume", "--run-dir", str(run)]) == 2
        assert f"--run-dir: expected a run directory holding config.yaml to resume, got " \
               f"{run}" in _error_line(capsys)


@pytest.mark.parametrize(("setting", "expected"), [
    ("epochs=true", "epochs: expected an int >= 1, got bool True"),
    ("seed=1.5", "seed: expected an int >= 0, got float 1.5"),
    ("clip=-1", "clip: expected a finite number >= 0, got int -1"),
    ("deterministic='no'", "deterministic: expected true or false, got str 'no'"),
    ("limit_train_batches=0", "limit_train_batches: expected an int >= 1, or null, got int 0"),
    ("max_minutes=0", "max_minutes: expected a finite number > 0, or null, got int 0"),
    ("max_minutes=-1.5", "max_minutes: expected a finite number > 0, or null, got float -1.5"),
    # issue 27 item 12: a non-finite lr trained to NaN test metrics with exit 0
    ("lr=.inf", "lr: expected a finite number >= 0, got float inf"),
    ("lr=.nan", "lr: expected a finite number >= 0, got float nan"),
    ("weight_decay=.inf", "weight_decay: expected a finite number >= 0, got float inf"),
    ("clip=.inf", "clip: expected a finite number >= 0, got float inf"),
    ("max_minutes=.inf", "max_minutes: expected a finite number > 0, or null, got float inf"),
])
def test_typed_configuration(setting: str, expected: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", *TINY, "--set", setting, "--run-dir",
                     str(run)]) == 2
    assert _error_line(capsys) == f"freqnn: error: {expected}"
    assert not run.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_eval_checkpoint_with_non_finite_weights(value: float, tiny_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    # issue 27 item 12: eval of a checkpoint with NaN weights printed NaN metrics with exit 0
    ckpt = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name].view(-1)[0] = value
    path = tmp_path / "bad.ckpt"
    torch.save(ckpt, path)
    expected = (f"{name}: expected finite values, got 1 NaN or infinite element(s) in tensor "
                f"of shape {tuple(ckpt['state_dict'][name].shape)} and dtype "
                f"{ckpt['state_dict'][name].dtype}")
    assert cli.main(["eval", str(path)]) == 2
    assert _error_line(capsys) == f"freqnn: error: {path}: {expected}"
    # --resume from such a checkpoint is refused the same way
    run = _copy_run(tiny_run, tmp_path / "run")
    shutil.copy(path, run / "checkpoints" / "last.ckpt")
    assert cli.main(["train", "--resume", "--run-dir", str(run), "--epochs", "2",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # "resuming from ..." first
    assert err[-1] == f"freqnn: error: {run / 'checkpoints' / 'last.ckpt'}: {expected}", err


def test_training_that_diverges_stops_with_an_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    # issue 27 item 12: a run whose loss became NaN printed NaN test metrics with exit 0
    from freqnn.train import TaskModule

    original = TaskModule.training_step

    def nan_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        loss = original(self, batch, batch_idx)
        self._train_sum[-1] = self._train_sum[-1] * float("nan")
        return loss * float("nan")

    monkeypatch.setattr(TaskModule, "training_step", nan_step)
    run = tmp_path / "run"
    assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--run-dir",
                     str(run)]) == 2
    assert _error_line(capsys).startswith(
        "freqnn: error: train_loss: expected finite values, got nan at epoch 0 (the run "
        "diverged")
    assert not (run / "results.json").exists()


def test_eval_data_that_is_not_an_npz_archive(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    renamed = tmp_path / "renamed.npz"
    np.save(tmp_path / "a.npy", np.zeros((2, 10)))
    shutil.copy(tmp_path / "a.npy", renamed)
    assert cli.main(["eval", str(tiny_run), "--data", str(renamed)]) == 2
    assert "file: expected a numpy .npz archive of named arrays, got a single .npy array" in \
        _error_line(capsys)
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive:
        archive.writestr("values.npy", pickle.dumps(np.zeros((2, 10))))
        archive.writestr("labels.npy", pickle.dumps(np.zeros(2, dtype=int)))
    assert cli.main(["eval", str(tiny_run), "--data", str(pickled)]) == 2
    assert "values: expected an array in the .npy format, got bytes" in _error_line(capsys)


def test_run_dir_that_becomes_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    # root ignores permission bits, so the refusal of the file system is simulated where
    # every checkpoint write starts (freqnn.io.atomic_write creates its temporary file)
    run = tmp_path / "run"
    folder = run / "checkpoints"
    real_mkstemp = tempfile.mkstemp
    writes = []

    def mkstemp(*args: object, dir: str | None = None, **kw: object) -> tuple[int, str]:
        if dir is not None and Path(dir) == folder:
            writes.append(dir)
            if len(writes) > 2:  # epoch 0 wrote best.ckpt and last.ckpt
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    args = ["train", "signal_type", "--model", "lstm", *TINY, "--epochs", "3", "--patience",
            "0", "--run-dir", str(run)]
    assert cli.main(args) == 2
    line = _error_line(capsys)
    assert f"run_dir: expected a writable directory, got {run} where Permission denied" in line
    assert "continue with --resume" in line
    monkeypatch.undo()
    assert load_checkpoint(folder / "last.ckpt")["epoch"] == 0  # nothing lost
    assert cli.main(["train", "--resume", "--run-dir", str(run)]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 3


def test_missing_experiments_extra_names_it() -> None:
    code = ("import sys; sys.modules.update(dict.fromkeys(['yaml', 'pydantic', 'lightning'])); "
            "from freqnn.cli import main; sys.exit(main(['train', 'signal_type']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == ("freqnn: error: freqnn train needs the experiments extra, "
                                   f"got no module 'yaml': {EXPERIMENTS_HINT}")
    assert 'pip install -e ".[experiments]"' in EXPERIMENTS_HINT


def test_train_help_is_the_schema(capsys: pytest.CaptureFixture) -> None:
    from freqnn.config import describe_key
    from freqnn.tasks.signal_type import Options

    with pytest.raises(SystemExit) as info:
        cli.main(["train", "signal_type", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for key, field in Options.model_fields.items():
        if key in ("task", "run_dir"):
            continue
        assert f"--{key.replace('_', '-')}" in text, key
        assert f"{' '.join(field.description.split())} ({describe_key(Options, key)}; " in text
    assert "--n-train N_TRAIN training sequences (an int >= 1; default 1000)" in text
    assert "--threads" in text and "--no-progress" in text


def test_report_gives_each_configuration_its_own_row(tmp_path: Path) -> None:
    for lr, seed in (("0.01", "0"), ("0.01", "1"), ("0.002", "0")):
        assert cli.main(["train", "signal_type", "--model", "lstm", *TINY, "--lr", lr,
                         "--seed", seed, "--run-dir", str(tmp_path / f"lstm-{lr}-s{seed}")]) == 0
    report = cli.write_report([tmp_path], tmp_path / "report")
    rows = [line for line in report.read_text().splitlines() if line.startswith("| signal")]
    # seeds pool within a configuration; the learning rates are not pooled
    assert [row.split(" | ")[1:3] for row in rows] == [["LSTM (lr=0.002)", "0"],
                                                         ["LSTM (lr=0.01)", "0, 1"]]
