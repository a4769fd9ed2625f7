"""freqnn.diagnostics: the divergence rule and the training diagnostics of the runner."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from freqnn.diagnostics import divergence, divergence_text
from freqnn.tasks import get_task
from freqnn.train import make_config, train


def _history(losses: list[float], accuracies: list[float] | None = None) -> list[dict]:
    accuracies = accuracies or [0.5] * len(losses)
    return [{"epoch": e, "train_loss": loss, "val_accuracy": acc}
            for e, (loss, acc) in enumerate(zip(losses, accuracies, strict=True))]


def test_a_training_loss_that_climbs_back_diverges() -> None:
    assert divergence(_history([0.7, 0.4, 0.2, 0.3, 0.44])) is None  # 0.44 <= 0.2 + 0.25
    reason = divergence(_history([0.7, 0.4, 0.2, 0.3, 0.46, 0.1]))
    assert reason == "epoch 5: train loss 0.46 > 0.20 + 0.25"


def test_validation_accuracy_back_to_chance_after_a_peak_diverges() -> None:
    flat = [0.5] * 5
    assert divergence(_history(flat, [0.5, 0.6, 0.55, 0.79, 0.6])) is None  # never reached 0.8
    assert divergence(_history(flat, [0.5, 0.8, 0.61, 0.7, 0.9])) is None
    assert divergence(_history(flat, [0.5, 0.8, 0.7, 0.6, 0.9])).startswith("epoch 4: valid")


def test_histories_without_accuracy_or_training_loss() -> None:
    assert divergence([{"epoch": 0, "val_loss": 3.0}, {"epoch": 1, "val_loss": 9.0}]) is None
    assert divergence([{"epoch": 0, "train_loss": 3.0}, {"epoch": 1, "train_loss": 3.3}])


def test_divergence_text_counts_and_names_the_runs() -> None:
    good, bad = _history([0.5, 0.3]), _history([0.5, 0.3, 0.9])
    assert divergence_text([(0, good), (1, good)]) == "0 of 2"
    assert divergence_text([(0, bad), (1, good), (2, bad)]) == (
        "2 of 3 (seed 0 at epoch 3; seed 2 at epoch 3)")


TINY = {"n_train": 16, "n_val": 8, "n_test": 8, "length": 12, "batch_size": 8,
        "hidden_size": 4, "state_size": 2, "num_freqs": 2, "epochs": 1, "patience": 0,
        "progress": False, "num_threads": 1}


def _columns(run_dir: Path) -> list[str]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return next(csv.reader(handle))


@pytest.mark.parametrize("model", ["sfm", "asfm", "lstm"])
def test_the_runner_logs_diagnostics_only_when_asked(tmp_path: Path, model: str) -> None:
    task = get_task("signal_type")
    train(make_config(task, TINY, {"model": model, "run_dir": str(tmp_path / "off")}))
    assert not [c for c in _columns(tmp_path / "off") if c.startswith("diag/")]
    train(make_config(task, TINY, {"model": model, "run_dir": str(tmp_path / "on"),
                                   "diagnostics": True, "diagnostics_every": 1}))
    columns = _columns(tmp_path / "on")
    for key in ("diag/grad_norm", "diag/grad_norm_clipped", "diag/update_ratio/readout.weight"):
        assert key in columns
    traced = {"diag/l0/forget_mean", "diag/l0/f_fre_open", "diag/l0/amp_k1",
              "diag/l0/readout_abs_k0", "diag/l0/readout_saturated", "diag/l0/omega_k1"}
    assert traced <= set(columns) if model != "lstm" else not traced & set(columns)
    assert ("diag/l0/omega_t_std" in columns) == (model == "asfm")
    with open(tmp_path / "on" / "logs" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["diag/grad_norm"]]
    assert len(rows) == 2  # one per optimiser step
    for r in rows:  # min(norm, clip): the clip of the runner's default, 1
        assert float(r["diag/grad_norm_clipped"]) == min(float(r["diag/grad_norm"]), 1.0)
