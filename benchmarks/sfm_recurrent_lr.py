"""The recurrent weights' learning rate and SFM's late divergence: the figure of docs/sfm.md.

``python benchmarks/sfm_recurrent_lr.py [--out docs/results/signal_type/training] [--seed 4]
[--epochs 8]`` trains the signal-type SFM twice with the runner's diagnostics on (traced at
every step), at the task's defaults (chrono windows, normalised memory, mean read-out, lr 1e-2)
but for ``recurrent_lr_scale``: 1 (every weight at lr) and 0.1 (the task's default: W_hh, the
weights from z_{t-1} to the gates, at lr / 10). Seed 4's run at scale 1 collapses to chance
at epoch 7.

It writes ``recurrent_lr_scale.png`` (per optimiser step: training loss, gradient norm before
clipping, the largest singular value of W_hh, the mean joint forget factor) and prints, per run,
the epoch training losses, the largest gradient norm and how far W_hh's largest singular value
grew. Runs go to a temporary directory; about 5 minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from sfm_divergence import step_series, train

SCALES = (1.0, 0.1)


class RecurrentNorm(L.Callback):
    """The largest singular value of the first layer's W_hh after every optimiser step."""

    def __init__(self) -> None:
        self.values: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        weight = pl_module.model.body.cells[0].weight_hh.detach()
        self.values.append((trainer.global_step, float(torch.linalg.matrix_norm(weight, 2))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/signal_type/training")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    series, norms = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in SCALES:
            norms[scale] = RecurrentNorm()
            run = Path(tmp) / f"scale{scale}"
            train({"seed": args.seed, "epochs": args.epochs, "recurrent_lr_scale": scale},
                  run, norms[scale])
            series[scale] = step_series(run)

    panels = [("train_loss", "training loss (batch)"), ("diag/grad_norm", "gradient norm"),
              ("w_hh", "largest singular value of W_hh"),
              ("diag/l0/forget_mean", "mean f_ste f_fre")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for scale in SCALES:
            data = norms[scale].values if key == "w_hh" else series[scale][key]
            steps, values = zip(*data, strict=True)
            ax.plot(steps, values, lw=0.9, label=f"recurrent_lr_scale={scale:g}")
        ax.set_ylabel(label)
        if key == "diag/grad_norm":
            ax.set_yscale("log")
    axes[0].legend()
    axes[-1].set_xlabel("optimiser step")
    fig.suptitle(f"signal type, SFM seed {args.seed}, task defaults, lr 1e-2")
    fig.tight_layout()
    fig.savefig(out / "recurrent_lr_scale.png", dpi=110)
    plt.close(fig)
    for scale in SCALES:
        grads = [v for _, v in series[scale]["diag/grad_norm"]]
        losses = [round(v, 3) for _, v in series[scale]["train_loss_epoch"]]
        sigma = [v for _, v in norms[scale].values]
        print(f"recurrent_lr_scale={scale:g}: epoch training losses {losses}; gradient norm "
              f"median {statistics.median(grads):.2f}, max {max(grads):.1f}; largest singular "
              f"value of W_hh {sigma[0]:.2f} -> {sigma[-1]:.2f} (max {max(sigma):.2f})")


if __name__ == "__main__":
    main()
