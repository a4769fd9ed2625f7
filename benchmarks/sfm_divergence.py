"""Why SFM's training diverged, reproduced: the figures and numbers of docs/sfm.md, "Training SFM".

``python benchmarks/sfm_divergence.py [--out docs/results/signal_type/training] [--epochs 4]``
trains the signal-type SFM (seed 0, the task's defaults otherwise) twice with the runner's
diagnostics on (``diagnostics: true``, traced every step):

* ``paper``: the paper's memory with the chrono forget-gate initialisation (long windows), the
  paper's sum read-out and lr 5e-3 (the task's settings before the fix);
* ``normalised``: the same with ``memory="normalised"``.

It writes ``training_paper_vs_normalised.png`` (per optimiser step: training loss, gradient
norm before clipping, mean joint forget factor, largest |S|, fraction of saturated read-out
pre-activations) and, for the first gradient spike of the ``paper`` run (a step whose norm
exceeds 20 times the median of the steps before it), ``gradient_through_time.png``: |dL/dx_t|
over the steps of the sequence that dominates that batch's gradient, for the weights of that
step and for its recurrent weights W_hh scaled by 0.9 and 0.75. It prints the numbers quoted
in the docs. Runs go to a temporary directory; about 2 minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import copy
import csv
import statistics
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import freqnn.train as runner
from freqnn.checkpoint import build_task_model, forward_batch
from freqnn.sfm.kernels.path import use_reference
from freqnn.tasks import get_task

SPIKE = 20.0  # a spike: a gradient norm above SPIKE x the median of the steps before it


class FirstSpike(L.Callback):
    """Keeps the model and batch of the first optimiser step whose gradient norm spikes."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.found: dict[str, Any] | None = None
        self._state: dict[str, torch.Tensor] = {}
        self._batch: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.found is None:
            self._state = copy.deepcopy(pl_module.model.state_dict())
            self._batch = batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norm = sum(float(p.grad.double().norm()) ** 2 for p in pl_module.parameters()
                   if p.grad is not None) ** 0.5
        if (self.found is None and len(self.norms) >= 10
                and norm > SPIKE * statistics.median(self.norms)):
            self.found = {"step": trainer.global_step, "norm": norm, "state": self._state,
                          "batch": self._batch, "median": statistics.median(self.norms)}
        self.norms.append(norm)


def train(cfg_over: dict[str, Any], run_dir: Path, callback: L.Callback | None) -> None:
    task = get_task("signal_type")
    cfg = runner.make_config(task, {}, {"model": "sfm", "seed": 0, "progress": False,
                                        "diagnostics": True, "diagnostics_every": 1,
                                        "patience": 0, "run_dir": str(run_dir), **cfg_over})
    trainer_cls = runner.L.Trainer
    if callback is not None:
        def with_callback(*args: Any, **kw: Any) -> L.Trainer:
            kw["callbacks"] = [*kw["callbacks"], callback]
            return trainer_cls(*args, **kw)
        runner.L.Trainer = with_callback
    try:
        runner.train(cfg)
    finally:
        runner.L.Trainer = trainer_cls


def step_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    rows: dict[int, dict[str, str]] = {}
    with open(run_dir / "logs" / "metrics.csv") as handle:
        for row in csv.DictReader(handle):
            if row.get("step"):
                rows.setdefault(int(float(row["step"])), {}).update(
                    {k: v for k, v in row.items() if v})
    out: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(rows):
        for key, value in rows[step].items():
            out.setdefault(key, []).append((step, float(value)))
    return out


def input_gradients(model: torch.nn.Module, item: dict[str, torch.Tensor],
                    facts: dict[str, Any]) -> torch.Tensor:
    """|dL/dx_t| over the steps of one sequence (the reference path, float64)."""
    model = copy.deepcopy(model).double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in item.items()}
    batch["x"] = batch["x"].clone().requires_grad_(True)
    with use_reference():
        loss = get_task("signal_type").loss(forward_batch(model, batch, facts), batch)
        loss.backward()
    return batch["x"].grad[0, :, 0].abs()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/signal_type/training")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the settings before the fix, but for the memory: the chrono windows, the paper's sum
    # read-out and lr 5e-3
    common = {"forget_init": "chrono", "readout": "sum", "lr": 5e-3, "epochs": args.epochs}
    spike = FirstSpike()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"paper": Path(tmp) / "paper", "normalised": Path(tmp) / "normalised"}
        train({**common, "memory": "paper"}, runs["paper"], spike)
        train({**common, "memory": "normalised"}, runs["normalised"], None)
        series = {name: step_series(path) for name, path in runs.items()}

    panels = [("train_loss", "training loss (batch)"), ("diag/grad_norm", "gradient norm"),
              ("diag/l0/forget_mean", "mean f_ste f_fre"), ("diag/l0/amp_max", "max |S|"),
              ("diag/l0/readout_saturated", "|W_z A + b_z| > 3")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 11), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, data in series.items():
            steps, values = zip(*data[key], strict=True)
            ax.plot(steps, values, label=f"memory={name}", lw=0.9)
        ax.set_ylabel(label)
        if key in ("diag/grad_norm", "diag/l0/amp_max"):
            ax.set_yscale("log")
    axes[0].legend()
    axes[-1].set_xlabel("optimiser step (31 per epoch)")
    fig.suptitle("signal type, SFM seed 0, chrono initialisation, lr 5e-3")
    fig.tight_layout()
    fig.savefig(out / "training_paper_vs_normalised.png", dpi=110)
    plt.close(fig)
    for name, data in series.items():
        norms = [v for _, v in data["diag/grad_norm"]]
        losses = [v for _, v in data["train_loss_epoch"]]
        print(f"{name}: gradient norm median {statistics.median(norms):.2f}, max "
              f"{max(norms):.1f}; max |S| {max(v for _, v in data['diag/l0/amp_max']):.1f}; "
              f"epoch training losses {[round(v, 3) for v in losses]}")

    if spike.found is None:
        print("paper: no gradient spike (above", SPIKE, "x the median) in these epochs")
        return
    found = spike.found
    task = get_task("signal_type")
    cfg = runner.make_config(task, {}, {"model": "sfm", **common, "memory": "paper"})
    data = task.build(cfg)
    facts = {"input_size": data.input_size, "output_size": data.output_size,
             "has_times": data.has_times, "info": data.info}
    _, model, _ = build_task_model(cfg, facts)
    model.load_state_dict(found["state"])
    batch = found["batch"]
    per_sequence = []
    for b in range(batch["x"].shape[0]):
        item = {k: v[b : b + 1] for k, v in batch.items()}
        model.zero_grad()
        task.loss(forward_batch(model, item, facts), item).backward()
        per_sequence.append(sum(float(p.grad.norm()) ** 2 for p in model.parameters()
                                if p.grad is not None) ** 0.5)
    worst = max(range(len(per_sequence)), key=per_sequence.__getitem__)
    share = per_sequence[worst] / sum(per_sequence)
    print(f"paper: first spike at step {found['step']}: gradient norm {found['norm']:.1f} "
          f"(median of the steps before {found['median']:.2f}); sequence {worst} of the batch "
          f"gives {share:.0%} of the per-sequence gradient norms")
    item = {k: v[worst : worst + 1] for k, v in batch.items()}
    fig, ax = plt.subplots(figsize=(8, 4))
    weight = model.body.cells[0].weight_hh
    original = weight.detach().clone()
    for scale in (1.0, 0.9, 0.75):
        with torch.no_grad():
            weight.copy_(original * scale)
        grads = input_gradients(model, item, facts)
        steps = len(grads)
        ax.semilogy(range(steps), grads.numpy(), lw=0.9, label=f"W_hh x {scale}")
        print(f"  W_hh x {scale}: |dL/dx_t| at the last step {float(grads[-1]):.3g}, largest "
              f"{float(grads.max()):.3g} ({steps - 1 - int(grads.argmax())} steps earlier)")
    ax.set_xlabel("step t of the sequence")
    ax.set_ylabel("|dL/dx_t|")
    ax.set_title(f"paper memory, the sequence behind the spike at step {found['step']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gradient_through_time.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
