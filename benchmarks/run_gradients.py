"""Gradients of a trained run on its own training batches: each SFM path against the reference.

``python benchmarks/run_gradients.py RUN_DIR [--batches 31] [--batch-size 32]`` loads the run's
best checkpoint, takes its task's training set in order, and prints

* the largest relative difference, over all parameters, between the gradient of the first
  batch's loss on the compiled and PyTorch paths (float64 and float32) and the per-step reference
  path in float64 (relative to each parameter's largest reference gradient entry);
* the gradient norm of each of the first ``--batches`` batches in float64 (min, median, max),
  before the runner's clipping.

It answers "is a diverging run a wrong gradient?" on the run's own data
(docs/results/signal_type.md).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch

from freqnn.checkpoint import cast_batch, model_from_checkpoint
from freqnn.sfm.kernels.path import use_path
from freqnn.tasks import Batch, collate


def _batch(dataset: object, start: int, size: int, dtype: torch.dtype) -> Batch:
    return cast_batch(collate([dataset[i] for i in range(start, start + size)]), dtype)


def _gradients(module: torch.nn.Module, task: object, batch: Batch, path: str,
               dtype: torch.dtype) -> dict[str, torch.Tensor]:
    module = copy.deepcopy(module).to(dtype)
    batch = cast_batch(batch, dtype)
    with use_path(path):
        task.loss(module(batch), batch).backward()
    return {n: p.grad.double() for n, p in module.named_parameters() if p.grad is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, default=31)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    module = model_from_checkpoint(args.run / "checkpoints" / "best.ckpt")
    task = module.task  # the run's training loss (freqnn.tasks.task_for)
    train = task.build(module.cfg).train
    first = _batch(train, 0, args.batch_size, torch.float64)
    reference = _gradients(module, task, first, "reference", torch.float64)
    for path in ("compiled", "pytorch"):
        for dtype in (torch.float64, torch.float32):
            grads = _gradients(module, task, first, path, dtype)
            error = max(float((grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-300))
                        for n, g in reference.items())
            print(f"{path} {dtype}: largest relative gradient difference {error:.1e}")
    norms = []
    model = copy.deepcopy(module).double()
    for b in range(args.batches):
        batch = _batch(train, b * args.batch_size, args.batch_size, torch.float64)
        model.zero_grad()
        task.loss(model(batch), batch).backward()
        norms.append(float(torch.cat([p.grad.flatten() for p in model.parameters()
                                      if p.grad is not None]).norm()))
    print(f"gradient norms of {len(norms)} batches: min {min(norms):.2f}, median "
          f"{statistics.median(norms):.2f}, max {max(norms):.2f}")


if __name__ == "__main__":
    main()
