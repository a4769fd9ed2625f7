"""The polyphonic task: items, loss / metrics, MIDI and PNG output, generation, train + sample."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from freqnn.cli import build_parser
from freqnn.data import polyphonic as poly
from freqnn.metrics import PianoRollMetrics, piano_roll_nll
from freqnn.models import build_model
from freqnn.tasks import collate, get_task
from freqnn.tasks import polyphonic as T


def random_rolls(n: int, seed: int = 0, low: int = 2, high: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((int(rng.integers(low, high)), 88)) < 0.06).astype(np.uint8)
            for _ in range(n)]


# ---- items ---------------------------------------------------------------------------------------

def test_rolls_dataset_shifts_by_one_frame():
    rolls = [*random_rolls(4), np.zeros((1, 88), np.uint8)]  # a 1-frame sequence is skipped
    data = T.rolls_dataset(rolls)
    assert len(data) == 4
    for item, roll in zip(data, rolls, strict=False):
        assert item["x"].dtype == torch.float32 and item["x"].shape == (roll.shape[0] - 1, 88)
        np.testing.assert_array_equal(item["x"].numpy(), roll[:-1])
        np.testing.assert_array_equal(item["y"].numpy(), roll[1:])


def test_rolls_dataset_chunks_cover_every_predicted_frame_once():
    rolls = random_rolls(3, low=10, high=30)
    data = T.rolls_dataset(rolls, chunk=4)
    ys = [data[i]["y"] for i in range(len(data))]
    assert max(y.shape[0] for y in ys) == 4
    np.testing.assert_array_equal(torch.cat(ys).numpy(), np.concatenate([r[1:] for r in rolls]))
    xs = torch.cat([data[i]["x"] for i in range(len(data))]).numpy()
    np.testing.assert_array_equal(xs, np.concatenate([r[:-1] for r in rolls]))
    sorted_data = T.rolls_dataset(rolls, sort=True)
    lengths = [sorted_data[i]["x"].shape[0] for i in range(len(sorted_data))]
    assert lengths == sorted(lengths)
    with pytest.raises(ValueError, match="train_chunk: expected an int >= 0"):
        T.rolls_dataset(rolls, chunk=-1)
    with pytest.raises(ValueError, match="rolls: expected at least one sequence"):
        T.rolls_dataset([np.zeros((1, 88), np.uint8)])


# ---- loss and metrics ----------------------------------------------------------------------------

def test_loss_and_metrics_on_a_padded_batch():
    data = T.rolls_dataset(random_rolls(5))
    batch = collate([data[i] for i in range(5)])
    gen = torch.Generator().manual_seed(0)
    output = torch.randn(*batch["y"].shape, generator=gen) * 2
    output[0, -1] = float("nan") if batch["lengths"][0] < output.shape[1] else output[0, -1]
    lengths = batch["lengths"]
    loss = T.loss(output, batch)
    # direct: per-frame sums over keys, averaged over the valid frames only
    total, frames = 0.0, 0
    for b in range(5):
        for t in range(int(lengths[b])):
            p = torch.sigmoid(output[b, t].double())
            y = batch["y"][b, t].double()
            total -= float((y * p.log() + (1 - y) * (1 - p).log()).sum())
            frames += 1
    assert loss.item() == pytest.approx(total / frames, rel=1e-5)
    sums = T.metrics(output, batch)
    acc = PianoRollMetrics()
    acc.update(output, batch["y"], lengths, batch_first=True)
    expected = acc.compute()
    assert set(sums) == {"loss", "nll", "nll_sequence", "accuracy", "accuracy_threshold",
                         "accuracy_pooled", "softmax_nll", "softmax_nll_frame"}
    for name, (s, c) in sums.items():
        want = expected["nll"] if name == "loss" else expected[name]
        assert (s / c).item() == pytest.approx(want, rel=1e-9), name
    assert sums["loss"][1].item() == frames


def test_softmax_objective_loss_on_a_padded_batch():
    data = T.rolls_dataset(random_rolls(5))
    batch = collate([data[i] for i in range(5)])
    lengths = batch["lengths"]
    assert int(lengths.min()) < batch["y"].shape[1]  # padding, so the mask matters
    gen = torch.Generator().manual_seed(1)
    output = torch.randn(*batch["y"].shape, generator=gen, dtype=torch.float64) * 2
    for b in range(5):
        output[b, int(lengths[b]):] = float("nan")  # padding is never read
    output.requires_grad_(True)
    loss = T.softmax_loss(output, batch)
    # direct: each valid frame's -sum_k y_k log softmax_k, averaged over the valid frames
    frames = [(b, t) for b in range(5) for t in range(int(lengths[b]))]
    direct = sum(-float((batch["y"][b, t].double() *
                         torch.log_softmax(output[b, t].detach(), -1)).sum()) for b, t in frames)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(direct / len(frames), rel=1e-12)
    # the frame-weighted validation metric that selects the checkpoint is the same quantity
    total, count = T.metrics(output, batch)["softmax_nll_frame"]
    assert (total / count).item() == pytest.approx(loss.item(), rel=1e-12)
    loss.backward()
    grad = output.grad
    valid = torch.arange(grad.shape[1]) < lengths.unsqueeze(1)
    assert torch.isfinite(grad).all() and not grad[~valid].any()
    assert grad[valid].abs().sum() > 0
    # the softmax score ignores a common shift of a frame's logits; the Bernoulli NLL does not
    torch.testing.assert_close(grad.sum(-1), torch.zeros_like(grad.sum(-1)), atol=1e-12, rtol=0)


def test_objective_key_sets_loss_and_selection_metric():
    from freqnn.config import make_config
    from freqnn.tasks import task_for

    default = task_for(make_config(T.TASK))
    assert make_config(T.TASK)["objective"] == "bernoulli"
    assert (default.loss, default.monitor, default.mode) == (T.loss, "loss", "min")
    assert task_for({"task": "polyphonic"}).loss is T.loss  # a run saved before the key
    softmax = task_for(make_config(T.TASK, {"objective": "softmax"}))
    assert (softmax.loss, softmax.monitor, softmax.mode) == (T.softmax_loss,
                                                             "softmax_nll_frame", "min")
    assert softmax.metrics is T.metrics  # val_loss stays the Bernoulli NLL
    # the default loss is unchanged: the Bernoulli NLL per valid frame
    data = T.rolls_dataset(random_rolls(3, seed=2))
    batch = collate([data[i] for i in range(3)])
    output = torch.randn(*batch["y"].shape, generator=torch.Generator().manual_seed(2))
    assert torch.equal(default.loss(output, batch), piano_roll_nll(
        output, batch["y"], batch["lengths"], batch_first=True))
    with pytest.raises(ValueError, match="objective: expected one of 'bernoulli', 'softmax', "
                                         "got str 'cross'"):
        make_config(T.TASK, {"objective": "cross"})
    with pytest.raises(ValueError, match="objective: expected one of 'bernoulli', 'softmax', "
                                         "got 'cross'"):
        T.configure({"objective": "cross"})
    argv = ["train", "polyphonic", "--objective", "softmax"]
    assert build_parser(argv).parse_args(argv).objective == "softmax"


def test_resume_under_another_objective_is_refused():
    from freqnn.checkpoint import check_checkpoint_matches
    from freqnn.config import make_config

    bernoulli = make_config(T.TASK, {"model": "lstm"})
    softmax = make_config(T.TASK, {"model": "lstm", "objective": "softmax"})
    check_checkpoint_matches({"freqnn": {"config": softmax}}, softmax, "last.ckpt")
    # a run saved before the key existed was selected on val_loss, as the default
    old = {k: v for k, v in bernoulli.items() if k != "objective"}
    check_checkpoint_matches({"freqnn": {"config": old}}, bernoulli, "last.ckpt")
    with pytest.raises(ValueError, match=r"last\.ckpt: selection metric: expected "
                                         r"val_softmax_nll_frame .* selected on val_loss"):
        check_checkpoint_matches({"freqnn": {"config": old}}, softmax, "last.ckpt")


# ---- MIDI and PNG --------------------------------------------------------------------------------

def test_write_midi_round_trip(tmp_path):
    import pretty_midi

    roll = np.zeros((6, 88), np.uint8)
    roll[0:3, 60 - 21] = 1      # C4 held three frames: one note
    roll[1, 64 - 21] = 1        # E4, one frame
    roll[4:6, 64 - 21] = 1      # E4 again, to the end
    roll[5, 0] = roll[5, 87] = 1  # A0 and C8
    path = T.write_midi(roll, tmp_path / "x.mid", frame_seconds=0.25)
    midi = pretty_midi.PrettyMIDI(str(path))
    notes = sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in
                   midi.instruments[0].notes)
    assert notes == [(21, 1.25, 1.5), (60, 0.0, 0.75), (64, 0.25, 0.5), (64, 1.0, 1.5),
                     (108, 1.25, 1.5)]
    back = midi.get_piano_roll(fs=4)[21:109, :6].T > 0
    np.testing.assert_array_equal(back, roll.astype(bool))
    with pytest.raises(ValueError, match="frame_seconds: expected a positive number"):
        T.write_midi(roll, tmp_path / "y.mid", frame_seconds=0)
    with pytest.raises(ValueError, match=r"roll: expected a \(T, 88\) piano roll"):
        T.write_midi(np.zeros((4, 12)), tmp_path / "y.mid")
    assert not (tmp_path / "y.mid").exists()


def test_plot_piano_roll_writes_png(tmp_path):
    roll = random_rolls(1, low=20, high=21)[0]
    path = T.plot_piano_roll(roll, tmp_path / "r.png", prime=4, title="t",
                             probabilities=np.full(roll.shape, 0.3))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="probabilities: expected shape"):
        T.plot_piano_roll(roll, tmp_path / "s.png", probabilities=np.zeros((3, 88)))


# ---- generation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["sfm", "asfm", "lstm", "gru"])
def test_generation_matches_whole_sequence_forward(arch):
    model, _ = build_model(arch, 88, 88, "step", hidden_size=12, state_size=5, num_freqs=3)
    model = model.double()
    prime = random_rolls(1, seed=3, low=5, high=6)[0]
    gen = torch.Generator().manual_seed(5)
    roll, probs = T.generate(model, prime, 7, generator=gen)
    assert roll.shape == (12, 88) and roll.dtype == np.uint8
    np.testing.assert_array_equal(roll[:5], prime)
    with torch.no_grad():
        whole = torch.sigmoid(model(torch.from_numpy(roll[:-1]).double().unsqueeze(0)))[0]
    torch.testing.assert_close(torch.from_numpy(probs[1:]), whole, rtol=1e-10, atol=1e-12)
    assert not probs[0].any()
    # same seed, same music; different temperature changes the probabilities
    again, _ = T.generate(model, prime, 7, generator=torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(again, roll)
    _, hot = T.generate(model, prime, 7, temperature=2.0,
                        generator=torch.Generator().manual_seed(5))
    assert not np.allclose(hot[1:5], probs[1:5])
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        T.generate(model, prime, 0)
    with pytest.raises(ValueError, match="temperature: expected a positive number"):
        T.generate(model, prime, 3, temperature=0.0)


def fake_run(folder, dataset, model, lr, val, test, seed=0, **extra):
    folder.mkdir(parents=True)
    results = {"task": "polyphonic", "model": model, "seed": seed, "params": 100,
               "epochs_run": 3, "best_epoch": 1, "train_wall_s": 1.0,
               "best_val": {"val_loss": val}, "info": {"dataset": dataset},
               "test": {"nll": test, "nll_sequence": test, "accuracy": 0.5,
                        "softmax_nll": 9.0}, **extra}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "config.yaml").write_text(f"lr: {lr}\nbatch_size: 16\ndropout: 0.1\n")


def test_summary_table_selects_on_validation(tmp_path):
    fake_run(tmp_path / "a" / "sfm-s0", "jsb", "sfm", 0.001, val=8.0, test=7.0)
    fake_run(tmp_path / "b" / "sfm-s0", "jsb", "sfm", 0.003, val=7.4, test=9.0)  # chosen: val
    fake_run(tmp_path / "b" / "sfm-s1", "jsb", "sfm", 0.003, val=7.6, test=8.0, seed=1)
    fake_run(tmp_path / "b" / "lstm-s0", "jsb", "lstm", 0.003, val=7.9, test=6.0)
    fake_run(tmp_path / "b" / "gru-s0", "nottingham", "gru", 0.003, val=3.0, test=3.5)
    summary = T.summary_table([tmp_path])
    rows = summary.splitlines()
    assert rows[0].startswith("| data set | SFM | LSTM | GRU | published LSTM")
    # mean 8.5, sample std of (9, 8) = 0.7071
    assert rows[2].startswith("| jsb | 8.500 ± 0.707* (b, 2 seeds) | 6.000 (b, seed 0) |  |")
    assert rows[2].endswith("| 8.45 | 8.43 | 8.10 |")
    assert rows[3].startswith("| nottingham |  |  | 3.500* (b, seed 0) | 3.29 |")
    full = T.results_table([tmp_path])
    assert full.count("| jsb | SFM |") == 3 and "| 8.45 |" in full
    assert "| lr 0.003, batch 16, dropout 0.1 |" in full


def test_tables_mark_runs_stopped_by_the_wall_time_cap(tmp_path):
    capped = {"stopped_by": "max_minutes", "max_minutes": 60.0}
    fake_run(tmp_path / "b" / "sfm-s0", "jsb", "sfm", 0.003, val=7.4, test=9.0, **capped)
    fake_run(tmp_path / "b" / "sfm-s1", "jsb", "sfm", 0.003, val=7.6, test=8.0, seed=1,
             stopped_by="epochs", max_minutes=60.0)
    fake_run(tmp_path / "b" / "lstm-s0", "jsb", "lstm", 0.003, val=7.9, test=6.0, **capped)
    fake_run(tmp_path / "b" / "gru-s0", "jsb", "gru", 0.003, val=8.0, test=6.0)  # older run
    full = T.results_table([tmp_path])
    assert full.count("| 100 | 3 (2) cap 60 min | 1 |") == 2
    assert full.count("| 100 | 3 (2) | 1 |") == 2
    summary = T.summary_table([tmp_path]).splitlines()
    assert summary[2].startswith("| jsb | 8.500 ± 0.707* (b, 2 seeds, 1 at cap 60 min) | "
                                 "6.000 (b, seed 0, cap 60 min) | 6.000 (b, seed 0) |")


# ---- the task end to end: build, train, sample ---------------------------------------------------

music21 = pytest.importorskip("music21", reason="music21 (experiments extra) not installed")


def test_task_interface_and_bach_build(tmp_path, monkeypatch):
    monkeypatch.setenv("FREQNN_CACHE", str(tmp_path / "cache"))
    task = get_task("polyphonic")
    assert task is T.TASK and task.head == "step" and task.monitor == "loss"
    cfg = {**T.DEFAULTS, "bach_limit": 5, "train_chunk": 0}
    data = task.build(cfg)
    assert (data.input_size, data.output_size, data.has_times) == (88, 88, False)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 1)
    assert data.info["dataset"] == "bach" and data.info["frame_quarters"] == 1.0
    assert data.info["sizes"] == [3, 1, 1]
    json.dumps(data.info)  # saved with checkpoints and results


def test_train_then_sample(tmp_path, monkeypatch, capsys):
    from freqnn.tasks import TASKS
    from freqnn.train import make_config, train

    monkeypatch.setenv("FREQNN_CACHE", str(tmp_path / "cache"))
    assert TASKS["polyphonic"] == "freqnn.tasks.polyphonic"
    cfg = make_config(T.TASK, {"bach_limit": 5, "epochs": 2, "batch_size": 2,
                               "hidden_size": 8, "state_size": 4, "num_freqs": 2,
                               "progress": False, "run_dir": str(tmp_path / "run"),
                               "train_chunk": 16})
    results = train(cfg)
    assert results["test"]["loss"] == results["test"]["nll"]
    assert 0 < results["test"]["accuracy"] < 1
    assert results["info"]["dataset"] == "bach"
    # the reported test NLL is the metric recomputed directly on the test split
    from freqnn.checkpoint import model_from_checkpoint

    module = model_from_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    test = T.build(module.cfg).test
    with torch.no_grad():
        item = test[0]
        out = module.model(item["x"].unsqueeze(0))
    assert results["test"]["nll"] == pytest.approx(
        piano_roll_nll(out[0].double(), item["y"]).item(), rel=1e-5)

    table = T.results_table([tmp_path])
    assert table.count("\n") == 2  # header, rule, one run
    assert f"**{results['test']['nll']:.3f}**" in table
    assert "| bach | SFM | 0 | lr 0.001, batch 2, chunk 16, D 4 K 2, M 8 |" in table
    with pytest.raises(ValueError, match="expected finished polyphonic runs"):
        T.results_table([tmp_path / "cache"])

    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "run"), "--out", str(tmp_path / "sample"),
                              "--steps", "6", "--prime", "3"])
    assert T.run(args) == 0
    facts = json.loads((tmp_path / "sample" / "sample.json").read_text())
    assert facts["sampled_frames"] == 6 and facts["prime_frames"] == 3
    assert (tmp_path / "sample" / "sample.mid").stat().st_size > 0
    assert (tmp_path / "sample" / "sample.png").read_bytes()[:4] == b"\x89PNG"
    assert '"dataset": "bach"' in capsys.readouterr().out
    bad = parser.parse_args([str(tmp_path / "run"), "--index", "99"])
    with pytest.raises(ValueError, match=r"--index: expected 0\.\.0"):
        T.run(bad)


def test_train_with_the_softmax_objective(tmp_path, monkeypatch):
    from freqnn.checkpoint import load_checkpoint
    from freqnn.cli import main, write_report

    monkeypatch.setenv("FREQNN_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "polyphonic", "--set", "objective=softmax", "--bach-limit", "5",
                 "--model", "lstm", "--epochs", "2", "--batch-size", "2", "--hidden-size", "4",
                 "--state-size", "2", "--num-freqs", "2", "--no-progress", "--threads", "1",
                 "--run-dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert all(np.isfinite(v) for v in results["test"].values())
    assert results["test"]["loss"] == results["test"]["nll"]  # still the Bernoulli NLL
    # trained on the softmax score (train_loss) and selected on its validation value
    assert all(np.isfinite(h["train_loss"]) for h in history)
    best = min(range(len(history)), key=lambda i: history[i]["val_softmax_nll_frame"])
    assert results["best_epoch"] == history[best]["epoch"]
    callbacks = load_checkpoint(run / "checkpoints" / "best.ckpt")["callbacks"]
    monitors = {state["monitor"] for name, state in callbacks.items()
                if name.startswith("ModelCheckpoint")}
    assert monitors == {"val_softmax_nll_frame", None}  # best.ckpt, last.ckpt
    assert any(name.startswith("EarlyStopping{'monitor': 'val_softmax_nll_frame'")
               for name in callbacks)
    assert "softmax objective" in T.results_table([run])
    report = write_report([run], tmp_path / "report", amplitude=False).read_text()
    assert "val_softmax_nll_frame " in report
    # its sigmoids are not the model it was trained as: sampling from them is refused
    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    with pytest.raises(ValueError, match=r"expected a run trained with objective 'bernoulli'.*"
                                         r"got objective 'softmax'"):
        T.run(parser.parse_args([str(run), "--out", str(tmp_path / "sample")]))
    assert not (tmp_path / "sample").exists()


def test_dataset_option_and_missing_data(tmp_path):
    cfg = {**T.DEFAULTS, "dataset": "nottingham", "data_root": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="FREQNN_DATA"):
        T.build(cfg)
    with pytest.raises(ValueError, match="name: expected one of"):
        T.build({**T.DEFAULTS, "dataset": "mozart"})
    argv = ["train", "polyphonic", "--dataset", "jsb", "--no-transpose", "--train-chunk", "50"]
    args = build_parser(argv).parse_args(argv)
    assert (args.dataset, args.transpose, args.train_chunk) == ("jsb", False, 50)
    # unset options do not override the config
    assert build_parser(argv[:2]).parse_args(argv[:2]).dataset is None
    assert set(poly.dataset_names()) == set(T.FRAME_QUARTERS)


def test_sample_takes_a_data_root(tmp_path, monkeypatch, capsys):
    # the primer comes from the validation data: a run whose data moved needs --data-root
    from freqnn.cli import main
    from freqnn.data.paths import data_root

    shared = data_root()
    if not (shared / "polyphonic" / poly.DATASETS["jsb"].mat_file).is_file():
        pytest.skip(f"JSB Chorales not in the data root {shared}")
    monkeypatch.delenv("FREQNN_DATA", raising=False)
    moved = tmp_path / "moved"
    moved.symlink_to(shared, target_is_directory=True)
    run = tmp_path / "run"
    assert main(["train", "polyphonic", "--dataset", "jsb", "--data-root", str(moved),
                 "--model", "lstm", "--epochs", "1", "--limit-train-batches", "1",
                 "--batch-size", "4", "--hidden-size", "4", "--state-size", "2",
                 "--num-freqs", "2", "--no-progress", "--threads", "1",
                 "--run-dir", str(run)]) == 0
    moved.unlink()
    args = ["sample", str(run), "--steps", "3", "--prime", "2", "--out", str(tmp_path / "s")]
    capsys.readouterr()
    assert main(args) == 2
    assert "FREQNN_DATA" in capsys.readouterr().err  # where the run's data used to be
    assert main([*args, "--data-root", str(shared)]) == 0
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["sampled_frames"] == 3


def test_variant_names_every_protocol_setting():
    # the authors' protocol differs from the standard one in settings a table must show
    authors = {**T.DEFAULTS, "lr": 1.0, "batch_size": 16, "optimizer": "adadelta",
               "objective": "softmax", "state_size": 50, "num_freqs": 4, "time": "authors",
               "phase": "authors", "learn_frequencies": True, "hidden_size": 91}
    assert T._variant(authors, "asfm") == ("lr 1, batch 16, adadelta, softmax objective, D 50 K 4, "
                                           "time authors, phase authors, learned frequencies, M 91")
    # an LSTM has none of the SFM settings; the defaults add nothing
    assert T._variant(authors, "lstm") == "lr 1, batch 16, adadelta, softmax objective"
    standard = {**T.DEFAULTS, "lr": 0.003, "batch_size": 32, "optimizer": "adam", "time": "data"}
    assert T._variant(standard, "sfm") == "lr 0.003, batch 32"
