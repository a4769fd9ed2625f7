"""The trainer: exact resume, atomic checkpoints under SIGKILL, DDP with 2 processes = 1."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn.checkpoint import load_checkpoint
from freqnn.tasks import get_task
from freqnn.train import (
    AtomicCheckpointIO,
    GlobalBatchSampler,
    last_good_checkpoint,
    make_config,
    train,
)

TINY = {"n_train": 32, "n_val": 12, "n_test": 12, "length": 12, "batch_size": 8,
        "hidden_size": 4, "state_size": 2, "num_freqs": 2, "epochs": 3, "patience": 0,
        "progress": False, "model": "lstm", "num_threads": 1}


def _cfg(run_dir: Path, **kw: object) -> dict:
    return make_config(get_task("signal_type"), TINY, {"run_dir": str(run_dir), **kw})


def _metrics_csv(run_dir: Path) -> list[str]:
    lines = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    assert len(lines) > 10, lines  # a header, every step's and epoch's rows
    return lines


def _history(run_dir: Path) -> list[dict]:
    records = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def test_global_batch_sampler_shards_are_the_single_process_batches() -> None:
    single = GlobalBatchSampler(21, 6, shuffle=True, seed=3)
    shards = [GlobalBatchSampler(21, 6, shuffle=True, seed=3, rank=r, world_size=3)
              for r in range(3)]
    for s in (single, *shards):
        s.sampler.set_epoch(2)
    assert len(single) == 3 and all(len(s) == 3 for s in shards)
    for whole, *parts in zip(single, *shards, strict=True):
        assert [i for p in parts for i in p] == whole and all(len(p) == 2 for p in parts)
    epoch3 = GlobalBatchSampler(21, 6, shuffle=True, seed=3)
    epoch3.sampler.set_epoch(3)
    assert list(epoch3) != list(single)
    again = GlobalBatchSampler(21, 6, shuffle=True, seed=3)
    again.sampler.set_epoch(2)
    assert list(again) == list(single)
    evals = [list(GlobalBatchSampler(7, 2, shuffle=False, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(i for b in evals[0] + evals[1] for i in b) == list(range(7))
    with pytest.raises(ValueError, match="batch_size: expected a multiple of the 4 DDP"):
        GlobalBatchSampler(20, 6, shuffle=True, world_size=4)
    with pytest.raises(ValueError, match="batch_size: expected at most the 5 training"):
        GlobalBatchSampler(5, 6, shuffle=True)


def test_atomic_checkpoint_io_leaves_target_intact_on_failure(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "a.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, target)
    with pytest.raises(Exception, match=r"pickle|Can't"):
        io.save_checkpoint({"w": torch.zeros(3), "bad": lambda: None}, target)
    torch.testing.assert_close(torch.load(target)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    # dropout and 2 layers exercise the RNG: resume must restore the data order and dropout
    kw = {"dropout": 0.3, "num_layers": 2, "epochs": 4}
    full = train(_cfg(tmp_path / "full", **kw))
    train(_cfg(tmp_path / "part", **{**kw, "epochs": 2}))
    resumed = train(_cfg(tmp_path / "part", **kw), resume=True)
    assert _history(tmp_path / "full") == _history(tmp_path / "part")
    assert len(_history(tmp_path / "full")) == 4
    assert full["test"] == resumed["test"] and full["best_epoch"] == resumed["best_epoch"]
    # the resumed run appends to metrics.csv (Lightning rewrote it from the resumed epoch on)
    assert _metrics_csv(tmp_path / "part") == _metrics_csv(tmp_path / "full")
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train(_cfg(tmp_path / "full", **kw))


def test_a_moved_run_directory_resumes_with_its_best_checkpoint(tmp_path: Path) -> None:
    # lr 0: no epoch after the first improves the validation loss, so best.ckpt stays epoch 0.
    # Lightning drops the best score of a checkpoint restored into another directory; the
    # first resumed epoch would then become "best".
    full = train(_cfg(tmp_path / "full", lr=0.0, epochs=4))
    train(_cfg(tmp_path / "part", lr=0.0, epochs=2))
    shutil.copytree(tmp_path / "part", tmp_path / "moved")
    shutil.rmtree(tmp_path / "part")
    resumed = train(_cfg(tmp_path / "moved", lr=0.0, epochs=4), resume=True)
    assert resumed["best_epoch"] == full["best_epoch"] == 0 and resumed["test"] == full["test"]
    assert load_checkpoint(tmp_path / "moved" / "checkpoints" / "best.ckpt")["epoch"] == 0
    assert _history(tmp_path / "moved") == _history(tmp_path / "full")
    callback = next(v for k, v in load_checkpoint(tmp_path / "moved" / "checkpoints" /
                                                  "last.ckpt")["callbacks"].items()
                    if k.startswith("ModelCheckpoint{'monitor': 'val_loss'"))
    assert Path(callback["best_model_path"]).parent.parent == (tmp_path / "moved").resolve()


def test_last_checkpoint_every_epoch_even_without_improvement(tmp_path: Path) -> None:
    train(_cfg(tmp_path / "run", lr=0.0))  # the validation loss never improves after epoch 0
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert best["epoch"] == 0 and last["epoch"] == 2
    assert last_good_checkpoint(tmp_path / "run").name == "last.ckpt"
    assert last_good_checkpoint(tmp_path / "nothing") is None
    # a truncated newer file (say, copied by hand) is skipped with a warning, never loaded
    folder = tmp_path / "run" / "checkpoints"
    (folder / "zzz.ckpt").write_bytes((folder / "last.ckpt").read_bytes()[:1000])
    (folder / ".last.ckpt.abc.tmp").write_bytes(b"partial")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert last_good_checkpoint(tmp_path / "run").name == "last.ckpt"
    assert not (folder / ".last.ckpt.abc.tmp").exists()


# The child trains TINY for 4 epochs; at the chosen moment it writes a marker and sleeps, so
# the parent kills it exactly there: inside a checkpoint write (after the bytes, before the
# rename), in the middle of a training epoch, or inside the final epoch's last.ckpt write.
CHILD = r"""
import sys, time, pathlib, torch, json
import freqnn.train as T
from freqnn.tasks import get_task
run_dir, where, marker = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
cfg = T.make_config(get_task("signal_type"), json.loads(sys.argv[4]), {"run_dir": run_dir})
saves, finals = [0], [0]
real_save = torch.save
def save(obj, f, *a, **k):
    real_save(obj, f, *a, **k)
    saves[0] += 1
    finals[0] += obj.get("epoch") == 3
    if (where == "save" and saves[0] == 3  # epoch 1's first checkpoint write
            or where == "last" and finals[0] == 2):  # the final epoch's best, then last
        f.flush(); marker.write_text("x"); time.sleep(600)
torch.save = save
real_step = T.TaskModule.training_step
def step(self, batch, i):
    if where == "train" and self.current_epoch == 2 and i == 1:
        marker.write_text("x"); time.sleep(600)
    return real_step(self, batch, i)
T.TaskModule.training_step = step
T.train(cfg)
"""


@pytest.mark.parametrize("where", ["save", "train", "last"])
def test_sigkill_never_corrupts_and_resume_completes(tmp_path: Path, where: str) -> None:
    kw = {"epochs": 4, "lr": 0.01}
    reference = tmp_path / "reference"
    # "last" needs the final epoch to be the best: its best.ckpt is then newer than last.ckpt
    assert train(_cfg(reference, **kw))["best_epoch"] == 3
    run_dir, marker = tmp_path / "killed", tmp_path / "marker"
    cfg = {**TINY, **kw}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(run_dir), where, str(marker),
                              json.dumps(cfg)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child never reached the kill point"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    folder = run_dir / "checkpoints"
    if where in ("save", "last"):  # killed mid-write: the partial file is a hidden temporary
        assert list(folder.glob(".*.tmp"))
    for ckpt in folder.glob("*.ckpt"):
        load_checkpoint(ckpt)  # every visible checkpoint is complete
    assert {p.name for p in folder.glob("*.ckpt")} >= {"last.ckpt"}
    resumed = train(_cfg(run_dir, **kw), resume=True)
    assert not list(folder.glob(".*.tmp"))
    assert _history(run_dir) == _history(reference)
    assert resumed["test"] == json.loads((reference / "results.json").read_text())["test"]
    assert _metrics_csv(run_dir) == _metrics_csv(reference)
    # last.ckpt holds the final epoch, as after an uninterrupted run (the "last" kill left it
    # an epoch behind, and the resumed run, already at the end, wrote no checkpoint)
    assert load_checkpoint(folder / "last.ckpt")["epoch"] == 3


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name(
    "torchrun").exists(), reason="torchrun not installed")
def test_ddp_two_processes_equal_one(tmp_path: Path) -> None:
    args = ["train", "signal_type", "--model", "gru", "--n-train", "32", "--n-val", "11",
            "--n-test", "9", "--length", "12", "--epochs", "2", "--batch-size", "8",
            "--hidden-size", "4", "--state-size", "2", "--num-freqs", "2", "--precision", "64",
            "--threads", "1", "--no-progress", "--patience", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "freqnn.cli", *args, "--run-dir",
                          str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = train(make_config(get_task("signal_type"), {
        "model": "gru", "n_train": 32, "n_val": 11, "n_test": 9, "length": 12, "epochs": 2,
        "batch_size": 8, "hidden_size": 4, "state_size": 2, "num_freqs": 2, "precision": "64",
        "num_threads": 1, "progress": False, "patience": 0, "run_dir": str(tmp_path / "one")}))
    multi = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert multi["world_size"] == 2 and single["world_size"] == 1
    h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "ddp")
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-12), key
    for key, value in single["test"].items():
        assert multi["test"][key] == pytest.approx(value, rel=1e-10, abs=1e-12)


def test_early_stopping_survives_resume(tmp_path: Path) -> None:
    # lr 0: the validation loss never improves after epoch 0, patience 1 stops after epoch 1
    kw = {"lr": 0.0, "patience": 1, "epochs": 5}
    assert train(_cfg(tmp_path / "full", **kw))["stopped_by"] == "early_stopping"
    assert len(_history(tmp_path / "full")) == 2
    assert load_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")["freqnn"]["stopped"]
    # a stopped run stays stopped, whatever the wall-time cap
    for cap in (None, 1e6):
        resumed = train(_cfg(tmp_path / "full", **kw, max_minutes=cap), resume=True)
        assert resumed["stopped_by"] == "early_stopping" and resumed["max_minutes"] == cap
        assert len(_history(tmp_path / "full")) == 2
    train(_cfg(tmp_path / "part", **{**kw, "epochs": 1}))
    train(_cfg(tmp_path / "part", **kw), resume=True)
    assert _history(tmp_path / "part") == _history(tmp_path / "full")


def test_wall_time_cap_stops_after_the_epoch_and_a_larger_cap_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    capped = train(_cfg(run, max_minutes=1e-6))  # any epoch takes longer than 60 us
    assert len(_history(run)) == capped["epochs_run"] == 1
    assert capped["stopped_by"] == "max_minutes" and capped["max_minutes"] == 1e-6
    assert capped["best_epoch"] == 0 and set(capped["test"]) == {"loss", "accuracy"}
    for name in ("best", "last"):  # the capped epoch wrote both; neither says early-stopped
        assert not load_checkpoint(run / "checkpoints" / f"{name}.ckpt")["freqnn"]["stopped"]
    # the same cap: the run is already past it and trains no further
    again = train(_cfg(run, max_minutes=1e-6), resume=True)
    assert len(_history(run)) == 1 and again["stopped_by"] == "max_minutes"
    assert again["test"] == capped["test"]
    # no cap: it continues to the epoch limit, as an uncapped run would
    resumed = train(_cfg(run, max_minutes=None), resume=True)
    assert resumed["stopped_by"] == "epochs" and resumed["max_minutes"] is None
    full = train(_cfg(tmp_path / "full"))
    assert full["stopped_by"] == "epochs" and len(_history(run)) == 3
    assert _history(run) == _history(tmp_path / "full") and resumed["test"] == full["test"]


def test_checkpoints_hold_plain_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # checkpoints are read weights-only: a numpy scalar in a task's info would make them
    # unreadable, so the runner stores plain Python values
    from freqnn.tasks import signal_type

    def build(cfg: dict) -> object:
        data = signal_type.build(cfg)
        data.info["threshold"] = np.float64(0.5)
        return data

    monkeypatch.setattr(signal_type, "TASK", dataclasses.replace(signal_type.TASK, build=build))
    train(_cfg(tmp_path / "run", epochs=1))
    info = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["freqnn"]["facts"][
        "info"]
    assert info["threshold"] == 0.5 and type(info["threshold"]) is float


def test_task_param_groups_must_cover_the_model_once() -> None:
    from freqnn.train import param_groups

    task = get_task("signal_type")
    model = torch.nn.Linear(2, 2)
    one = {"recurrent_lr_scale": 1.0}
    (group,) = param_groups(task, model, one)
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    own = dataclasses.replace(task, param_groups=lambda m, cfg: [
        {"params": [m.weight]}, {"params": [m.bias], "lr": cfg["lr"] / 10}])
    assert param_groups(own, model, {"lr": 1.0, **one})[1]["lr"] == 0.1
    for groups in ([{"params": [model.weight]}],
                   [{"params": [model.weight, model.bias]}, {"params": [model.bias]}],
                   [{"params": [model.weight, model.bias, torch.nn.Parameter(torch.ones(1))]}]):
        bad = dataclasses.replace(task, param_groups=lambda m, cfg, g=groups: g)
        with pytest.raises(ValueError, match=r"param_groups: expected every parameter of the "
                           r"model in exactly one group \(2 parameters\), got \d entries"):
            param_groups(bad, model, one)


def test_recurrent_lr_scale_puts_weight_hh_in_groups_of_their_own() -> None:
    from freqnn.models import SequenceModel
    from freqnn.train import param_groups

    task = get_task("signal_type")
    model = SequenceModel("sfm", 1, 2, hidden_size=4, state_size=2, num_freqs=2)
    cfg = {"lr": 0.01, "recurrent_lr_scale": 0.3, "model": "sfm"}
    rest, recurrent = param_groups(task, model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in recurrent["params"]] == ["body.cells.0.weight_hh"]
    assert recurrent["lr"] == pytest.approx(0.003) and "lr" not in rest
    assert len(rest["params"]) == len(list(model.parameters())) - 1
    # a task's own groups are split group by group, each at its own rate
    own = dataclasses.replace(task, param_groups=lambda m, c: [
        {"params": list(m.body.parameters()), "lr": 0.1},
        {"params": list(m.readout.parameters())}])
    rates = [g.get("lr") for g in param_groups(own, model, cfg)]
    assert rates == pytest.approx([0.1, 0.03, None])
    # the other models ignore it (an LSTM has weight_hh too: its rate stays lr)
    lstm = SequenceModel("lstm", 1, 2, hidden_size=4)
    (group,) = param_groups(task, lstm, {**cfg, "model": "lstm"})
    assert "lr" not in group and len(group["params"]) == len(list(lstm.parameters()))


def test_trainer_and_checkpoint_models_share_state_dict_keys(tmp_path: Path) -> None:
    """A checkpoint of the trainer loads into freqnn.checkpoint.TaskModel key for key."""
    from freqnn.checkpoint import TaskModel
    from freqnn.train import TaskModule

    facts = {"input_size": 1, "output_size": 2, "has_times": True, "info": {}}
    for model in ("sfm", "bigru"):
        cfg = _cfg(tmp_path, model=model)
        trained = TaskModule(cfg, facts).state_dict()
        loaded = TaskModel(cfg, facts)
        assert list(loaded.state_dict()) == list(trained) and all(
            k.startswith("model.") for k in trained)
        loaded.load_state_dict(trained)


def test_optimizer_key_selects_adam_or_the_authors_adadelta(tmp_path: Path) -> None:
    from freqnn.train import TaskModule

    facts = {"input_size": 1, "output_size": 2, "has_times": True, "info": {}}
    adam = TaskModule(_cfg(tmp_path, lr=0.01), facts).configure_optimizers()
    assert type(adam) is torch.optim.Adam and adam.defaults["lr"] == 0.01
    adadelta = TaskModule(_cfg(tmp_path, optimizer="adadelta", lr=1.0, weight_decay=1e-4),
                          facts).configure_optimizers()
    assert type(adadelta) is torch.optim.Adadelta
    assert {k: adadelta.defaults[k] for k in ("lr", "rho", "eps", "weight_decay")} == {
        "lr": 1.0, "rho": 0.95, "eps": 1e-6, "weight_decay": 1e-4}
    with pytest.raises(ValueError, match="optimizer"):
        _cfg(tmp_path, optimizer="sgd")


def test_lr_factor_warms_up_linearly_then_follows_a_cosine_to_zero() -> None:
    from freqnn.train import lr_factor

    cosine = lr_factor("cosine", warmup=10, total=110)
    assert cosine(0) == pytest.approx(0.01) and cosine(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine(10) == pytest.approx(1.0) and cosine(60) == pytest.approx(0.5)
    assert cosine(110) == pytest.approx(0.0, abs=1e-15) and cosine(500) == cosine(110)
    factors = [cosine(s) for s in range(111)]
    assert all(a <= b for a, b in itertools.pairwise(factors[:11]))  # rising warm-up
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # falling cosine
    constant = lr_factor("constant", warmup=4, total=100)
    assert [constant(s) for s in (0, 2, 4, 99)] == pytest.approx([0.01, 0.505, 1.0, 1.0])
    assert lr_factor("cosine", warmup=0, total=1)(0) == 1.0  # no warm-up: starts at lr


def test_lr_schedule_reaches_zero_at_the_last_step_and_resumes_exactly(tmp_path: Path) -> None:
    kw = {"lr": 0.01, "lr_schedule": "cosine", "warmup_epochs": 1.5, "epochs": 4}
    full = train(_cfg(tmp_path / "full", **kw))
    # 4 optimiser steps per epoch (32 waves, batch 8): a warm-up over 6 steps, then a cosine
    # over the remaining 10 to 0; each epoch's record holds the rate after its last step
    steps = np.arange(1, 5) * 4
    expected = [0.01 * (0.01 + 0.99 * s / 6 if s < 6 else 0.5 * (1 + np.cos(np.pi * (s - 6) / 10)))
                for s in steps]
    assert [r["lr"] for r in _history(tmp_path / "full")] == pytest.approx(expected, abs=1e-12)
    # stopped by the wall-time cap after one epoch and resumed: the same schedule, step by step
    train(_cfg(tmp_path / "part", **kw, max_minutes=1e-6))
    resumed = train(_cfg(tmp_path / "part", **kw), resume=True)
    assert _history(tmp_path / "part") == _history(tmp_path / "full")
    assert resumed["test"] == full["test"]


def test_bf16_mixed_compile_and_the_configuration_as_hyperparameters(tmp_path: Path) -> None:
    run = tmp_path / "run"
    results = train(_cfg(run, model="sfm", epochs=1, precision="bf16-mixed", compile=True))
    assert results["precision"] == "bf16-mixed" and results["compile"] is True
    assert np.isfinite(results["test"]["loss"])
    # compiled in place: the checkpoint's names are the eager model's
    eager = train(_cfg(tmp_path / "eager", model="sfm", epochs=1))
    assert eager["compile"] is False
    assert list(load_checkpoint(run / "checkpoints" / "best.ckpt")["state_dict"]) == list(
        load_checkpoint(tmp_path / "eager" / "checkpoints" / "best.ckpt")["state_dict"])
    hparams = (run / "logs" / "hparams.yaml").read_text()
    assert "precision: bf16-mixed" in hparams and "compile: true" in hparams
    assert "run_dir" not in hparams
    with pytest.raises(ValueError, match="precision"):
        _cfg(tmp_path, precision="16")
