"""The trainer behind ``freqnn train``: Lightning with exact resume, atomic checkpoints and DDP.

A run lives in one directory::

    RUN_DIR/config.yaml         the merged configuration (what ``--resume`` re-reads)
    RUN_DIR/checkpoints/        last.ckpt (every epoch) and best.ckpt (best validation metric)
    RUN_DIR/logs/               metrics.csv (CSVLogger) and TensorBoard event files
    RUN_DIR/history.json        one record per epoch: train loss, validation metrics
    RUN_DIR/results.json        test metrics of the best checkpoint, parameter counts, wall time

Guarantees and how they are kept
--------------------------------
* Nothing is overwritten without being asked (:func:`check_run_dir`): a run starts in a missing
  or empty directory; a directory holding other files, a finished run or checkpoints is
  refused unless ``resume=True`` (a freqnn run only) or ``overwrite=True`` (which removes the
  run's own files, :data:`RUN_FILES`, checkpoints and logs, and nothing else).
* One process at a time: the run directory is locked (:data:`LOCK_FILE`, ``filelock``) for the
  life of a run; a second process gets :class:`RunDirLockedError` naming the directory.
* Checkpoints are written through :func:`freqnn.io.atomic_write` (:class:`AtomicCheckpointIO`):
  a checkpoint file is either complete or absent, whenever the process dies.
* Checkpoints are read weights-only (:func:`freqnn.checkpoint.load_checkpoint`): a file that
  would build objects or call functions when unpickled is refused
  (:class:`~freqnn.checkpoint.UnsafeCheckpointError`) before any of it runs, by ``freqnn eval``,
  ``--resume`` and every other reader. A checkpoint used in a run directory must match the
  run's task and model (:func:`~freqnn.checkpoint.check_checkpoint_matches`). Reading runs back
  (:func:`~freqnn.checkpoint.model_from_checkpoint`) needs no Lightning:
  :mod:`freqnn.checkpoint`.
* ``resume=True`` continues from the newest checkpoint that loads (:func:`last_good_checkpoint`)
  and gives the metrics of an uninterrupted run with the same seed: checkpoints are taken at
  epoch ends; the data order of epoch e is a permutation drawn from (seed, e)
  (:class:`GlobalBatchSampler`) and the global torch RNG (dropout) is reseeded from
  (seed, e, rank) at the start of every epoch, so nothing depends on how the run got to epoch e.
  Lightning restores the optimizer, the loop counters and the early-stopping / checkpoint
  callbacks. A run killed mid-epoch repeats that epoch from its start. ``logs/metrics.csv``
  keeps the rows logged before the checkpoint and appends the rest (:class:`RunCSVLogger`),
  and ``last.ckpt`` ends at the final epoch even if the process died writing it.
* Why a run ended is ``stopped_by`` in ``results.json``: ``"early_stopping"`` (a resumed run
  stays stopped), ``"max_minutes"`` (the wall-time cap: the training time at the end of an
  epoch's validation, summed over resumes, exceeded it; a resumed run trains on only under a
  larger cap or none) or ``"epochs"`` (it ran them all).
* DDP (``torchrun --nproc-per-node P``; gloo on CPU, nccl on GPU): every global batch of
  ``batch_size`` sequences is the one a single process would take, split into P equal shards
  (``batch_size`` must be divisible by P; training drops the last incomplete global batch in
  every configuration). Losses are per-rank means, DDP averages gradients, so the update equals
  the single-process one; evaluation metrics are sums and counts added over ranks. With
  dropout > 0 the random masks differ from a single process' (they are drawn per rank).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock
import lightning as L
import numpy as np
import torch
import yaml
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .checkpoint import (
    CONFIG_FILE,
    RESULTS_FILE,
    UnsafeCheckpointError,
    build_task_model,
    check_checkpoint_matches,
    check_finite_weights,
    check_weights_match,
    forward_batch,
    load_checkpoint,
)
from .config import DEFAULTS, make_config
from .io import atomic_write
from .models import OPTION_ARCHS
from .tasks import Task, TaskData, collate, task_for

__all__ = [
    "DEFAULTS",
    "LOCK_FILE",
    "RUN_FILES",
    "AtomicCheckpointIO",
    "GlobalBatchSampler",
    "RunCSVLogger",
    "RunDirLockedError",
    "TaskModule",
    "check_run_dir",
    "last_good_checkpoint",
    "lr_factor",
    "make_config",
    "param_groups",
    "train",
]

HISTORY_FILE = "history.json"

log = logging.getLogger(__name__)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


# --------------------------------------------------------------------------- checkpoints
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes through :func:`freqnn.io.atomic_write`
    (temporary file, fsync, rename): a checkpoint is complete or absent, never half-written;
    and reads through :func:`load_checkpoint`, weights-only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options: expected None (AtomicCheckpointIO takes none), "
                            f"got {storage_options!r}")
        with atomic_write(path) as handle:
            try:
                torch.save(checkpoint, handle)
            except RuntimeError as error:
                # a full disk reaches torch's zip writer as '[enforce fail at
                # inline_container.cc:...]': made an OSError naming the file, which train()
                # reports as the documented 'make it writable and --resume' line
                if shutil.disk_usage(Path(path).parent).free < 1 << 20:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
                raise OSError(errno.EIO, "the checkpoint could not be written (is the disk "
                              "full?)", str(path)) from error

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """What Lightning reads to resume: :func:`load_checkpoint` (weights-only, checked)."""
        if weights_only is False:
            raise ValueError("weights_only: expected True or None (freqnn loads checkpoints "
                             "weights-only), got False")
        ckpt = load_checkpoint(path)
        check_finite_weights(ckpt["state_dict"], path)  # resuming NaN weights trains nothing
        return ckpt


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored state follows the run directory.

    Lightning saves the callback's absolute ``dirpath`` and, when a checkpoint is restored into
    another one, drops ``best_model_score``: a run directory that was moved or copied would then
    resume with no best score, and its next epoch, however bad, would replace ``best.ckpt``.
    Here the saved paths are re-rooted in the current ``dirpath`` before Lightning reads them.
    """

    @property
    def state_key(self) -> str:
        # the key of this callback's state in a checkpoint stays ModelCheckpoint's, so that
        # checkpoints written with either class resume alike
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__):]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is not None and self.dirpath is not None and saved != self.dirpath:

            def moved(path: Any) -> Any:
                if isinstance(path, str) and path and Path(path).parent == Path(saved):
                    return str(Path(self.dirpath) / Path(path).name)  # type: ignore[arg-type]
                return path

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                **{key: moved(state_dict[key]) for key in
                   ("best_model_path", "kth_best_model_path", "last_model_path")
                   if key in state_dict},
                "best_k_models": {moved(k): v
                                  for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)


def last_good_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest (largest global step, ``last.ckpt`` first on ties) checkpoint of ``run_dir``
    that loads; stale temporary files of interrupted writes are removed. ``None`` if none.

    An unreadable checkpoint (truncated, say) is skipped with a warning; an unsafe one
    (:class:`UnsafeCheckpointError`) stops the search: the run directory has been tampered with.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    for stale in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    best: tuple[int, int, Path] | None = None
    for path in folder.glob("*.ckpt"):
        try:
            ckpt = load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except ValueError as error:
            warnings.warn(f"skipping unreadable checkpoint: {error}", stacklevel=2)
            continue
        key = (int(ckpt.get("global_step", 0)), int(path.name == "last.ckpt"), path)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]


# --------------------------------------------------------------------------- data
def _seed_from(*words: int) -> int:
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])


class _EpochSeed:
    """Carries the epoch number; Lightning calls ``set_epoch`` on ``batch_sampler.sampler``."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class GlobalBatchSampler:
    """Batches of one DDP rank: rank r's shard of every global batch.

    Training (``shuffle=True``): a permutation of the data set drawn from (seed, epoch) is cut
    into global batches of ``batch_size`` (the last incomplete one dropped); rank r takes
    entries [r*b, (r+1)*b) of each, b = batch_size / world_size. Evaluation (``shuffle=False``):
    rank r takes indices r, r + P, ... in batches of ``batch_size`` (metrics are sums, so any
    split works).
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if shuffle and batch_size % world_size:
            raise ValueError(f"batch_size: expected a multiple of the {world_size} DDP "
                             f"processes (the global batch is split evenly), got {batch_size}")
        if shuffle and size < batch_size:
            raise ValueError(f"batch_size: expected at most the {size} training sequences "
                             f"(incomplete batches are dropped), got {batch_size}")
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.sampler = _EpochSeed()

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // self.batch_size
        mine = len(range(self.rank, self.size, self.world_size))
        return math.ceil(mine / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(_seed_from(self.seed, self.sampler.epoch)))
            order = rng.permutation(self.size)
            shard = self.batch_size // self.world_size
            for b in range(len(self)):
                start = b * self.batch_size + self.rank * shard
                yield order[start : start + shard].tolist()
        else:
            mine = list(range(self.rank, self.size, self.world_size))
            for start in range(0, len(mine), self.batch_size):
                yield mine[start : start + self.batch_size]


class TaskDataModule(L.LightningDataModule):
    """Data loaders of a task with :class:`GlobalBatchSampler` (DDP-aware, resumable order)."""

    def __init__(self, data: TaskData, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.data, self.cfg = data, cfg

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        batch = self.cfg["batch_size"] if train else (
            self.cfg["eval_batch_size"] or self.cfg["batch_size"])
        sampler = GlobalBatchSampler(len(dataset), batch, shuffle=train,
                                     seed=self.cfg["seed"], rank=rank, world_size=world)
        # own generator: creating the iterator then draws no number from the global RNG,
        # whose state (dropout) must depend only on (seed, epoch, rank)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=0,
                          collate_fn=self.data.collate or collate, generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data.val, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data.test, False)


# --------------------------------------------------------------------------- model
def lr_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """The factor of the learning rate at optimiser step ``s`` (``LambdaLR``'s ``lr_lambda``).

    A linear warm-up from 1/100 to 1 over ``warmup`` steps, then 1 (``schedule="constant"``) or
    a cosine from 1 to 0 at step ``total`` (``"cosine"``)::

        factor(s) = 0.01 + 0.99 s / warmup                                    s < warmup
        factor(s) = (1 + cos(pi min(1, (s - warmup) / (total - warmup)))) / 2   cosine, after

    A closure, not an object: ``LambdaLR`` saves no state of a plain function, so a resumed run
    keeps its step count and takes ``warmup`` and ``total`` from its configuration (a resume
    with more ``epochs`` stretches the cosine to the new end).
    """

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def has_lr_schedule(cfg: dict[str, Any]) -> bool:
    """Whether ``cfg`` changes the learning rate during the run (a warm-up or a cosine)."""
    return cfg["lr_schedule"] != "constant" or float(cfg["warmup_epochs"]) > 0


def param_groups(task: Task, model: torch.nn.Module, cfg: dict[str, Any]
                 ) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the task's (:attr:`freqnn.tasks.Task.param_groups`),
    else one group of every parameter of ``model``. For SFM and A-SFM with
    ``recurrent_lr_scale`` other than 1, each group's recurrent weights (the parameters named
    ``weight_hh``: z_{t-1} to the gates) go in a group of their own at the group's rate times
    the scale; the other models ignore the key, like SFM's other options.

    Raises
    ------
    ValueError
        The task's groups leave out a parameter of ``model``, repeat one or hold another.
    """
    if task.param_groups is None:
        groups = [{"params": list(model.parameters())}]
    else:
        groups = task.param_groups(model, cfg)
        grouped = [id(p) for group in groups for p in group["params"]]
        expected = {id(p) for p in model.parameters()}
        if len(grouped) != len(set(grouped)) or set(grouped) != expected:
            raise ValueError(
                f"param_groups: expected every parameter of the model in exactly one group "
                f"({len(expected)} parameters), got {len(grouped)} entries, "
                f"{len(set(grouped) & expected)} of them the model's, from task {task.name!r}")
    scale = float(cfg["recurrent_lr_scale"])
    if scale == 1 or cfg["model"] not in OPTION_ARCHS:
        return groups
    recurrent = {id(p) for name, p in model.named_parameters()
                 if "weight_hh" in name.split(".")}
    split = []
    for group in groups:
        rate = float(group.get("lr", cfg["lr"]))
        rest = {k: v for k, v in group.items() if k != "params"}
        split.append({**rest, "params": [p for p in group["params"] if id(p) not in recurrent]})
        split.append({**rest, "lr": rate * scale,
                      "params": [p for p in group["params"] if id(p) in recurrent]})
    return [group for group in split if group["params"]]


class TaskModule(L.LightningModule):
    """A task's model, loss and metrics as a LightningModule.

    Logs ``train_loss`` (mean of the epoch's step losses), ``val_<metric>`` and
    ``test_<metric>`` (exact sums over batches and ranks divided by counts) and keeps
    :attr:`history`, saved in checkpoints so a resumed run has the whole curve. Stops training
    at the wall-time cap ``max_minutes`` (:meth:`on_validation_end`); :attr:`stopped_by` says
    what stopped the last :meth:`~lightning.pytorch.Trainer.fit`.
    """

    def __init__(self, cfg: dict[str, Any], data_facts: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.facts = dict(data_facts)
        self.task, self.model, self.counts = build_task_model(self.cfg, self.facts)
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0  # training seconds before this process (restored on resume)
        self._start = time.perf_counter()
        self.stopped_by: str | None = None  # "early_stopping", "max_minutes"; None: neither
        self._train_sum: list[Tensor] = []
        self._sums: dict[str, list[Tensor]] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return forward_batch(self.model, batch, self.facts)

    # training
    def on_train_start(self) -> None:
        self._start = time.perf_counter()  # wall time counts training, not setup

    def on_train_epoch_start(self) -> None:
        # dropout randomness depends on (seed, epoch, rank) only: resume-exact
        torch.manual_seed(_seed_from(self.cfg["seed"], self.current_epoch, self.global_rank))
        self._train_sum = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.task.loss(self(batch), batch)
        self._train_sum.append(loss.detach().double())
        self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=int(batch["x"].shape[0]))
        # a model's own penalty (ACT-RNN's ponder cost) trains with the loss; the logged
        # train_loss stays the task's loss, comparable across models
        penalty = getattr(self.model, "auxiliary_loss", None)
        return loss if penalty is None else loss + penalty

    # evaluation
    def _eval_step(self, batch: dict[str, Tensor]) -> None:
        for name, (total, count) in self.task.metrics(self(batch), batch).items():
            acc = self._sums.setdefault(name, [torch.zeros((), dtype=torch.float64,
                                                           device=self.device)] * 2)
            self._sums[name] = [acc[0] + total.double(), acc[1] + count.double()]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._sums = {}

    on_test_epoch_start = on_validation_epoch_start

    def _reduce_sums(self, prefix: str) -> dict[str, float]:
        out = {}
        for name in sorted(self._sums):
            pair = torch.stack(self._sums[name])
            pair = self.trainer.strategy.reduce(pair, reduce_op="sum")
            out[f"{prefix}_{name}"] = float(pair[0] / pair[1])
        return out

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = self._reduce_sums("val")
        record: dict[str, Any] = {"epoch": self.current_epoch, "step": self.global_step}
        if self._train_sum:
            mean = torch.stack(self._train_sum).mean().reshape(1)
            record["train_loss"] = float(self.trainer.strategy.reduce(mean, reduce_op="mean"))
        record.update(metrics)
        if has_lr_schedule(self.cfg):
            record["lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        record["time_s"] = self.elapsed + time.perf_counter() - self._start
        if not math.isfinite(record.get("train_loss", 0.0)):
            # a diverged run stops here, before this epoch's checkpoints, instead of training
            # on and reporting NaN test metrics with exit 0 (issue 27 item 12)
            raise TrainingDivergedError(
                f"train_loss: expected finite values, got {record['train_loss']} at epoch "
                f"{self.current_epoch} (the run diverged; the checkpoints of earlier epochs are "
                "kept: lower lr, set clip, or try memory='normalised')")
        self.history.append(record)
        for key, value in metrics.items():
            self.log(key, value, prog_bar=True, sync_dist=False, rank_zero_only=False)
        if "train_loss" in record:
            self.log("train_loss_epoch", record["train_loss"])

    def on_validation_end(self) -> None:
        """Record early stopping, else apply the wall-time cap ``max_minutes``.

        Lightning calls this after the callbacks' hooks: early stopping has decided and this
        epoch's checkpoints are written, so their ``stopped`` flag is early stopping's alone
        and a run stopped by the cap continues when resumed under a larger cap. The cap is
        compared with the ``time_s`` of the epoch's history record; rank 0's decides, the one
        its checkpoints keep.
        """
        if self.trainer.sanity_checking:
            return
        if self.trainer.should_stop:
            self.stopped_by = "early_stopping"
        elif self.trainer.strategy.broadcast(_over_cap(self.history, self.cfg["max_minutes"]),
                                             src=0):
            self.trainer.should_stop = True
            self.stopped_by = "max_minutes"

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._reduce_sums("test")
        for key, value in self.test_metrics.items():
            self.log(key, value)

    def configure_optimizers(self) -> Any:
        groups = param_groups(self.task, self.model, self.cfg)
        lr, decay = float(self.cfg["lr"]), float(self.cfg["weight_decay"])
        if self.cfg["optimizer"] == "adadelta":
            # the SFM authors' optimiser, with the constants of the Theano-era implementations
            # (rho 0.95, eps 1e-6; their learning rate is 1)
            optimizer: torch.optim.Optimizer = torch.optim.Adadelta(
                groups, lr=lr, rho=0.95, eps=1e-6, weight_decay=decay)
        else:
            optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=decay)
        if not has_lr_schedule(self.cfg):
            return optimizer
        # optimiser steps of the whole run (every epoch, limit_train_batches counted); the
        # schedule is per step so that it does not depend on where an epoch ends
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = total / int(self.cfg["epochs"])
        factor = lr_factor(self.cfg["lr_schedule"],
                           min(total, math.ceil(float(self.cfg["warmup_epochs"]) * per_epoch)),
                           total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # checkpoint state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["freqnn"] = _plain({
            "config": self.cfg,
            "facts": self.facts,
            "counts": self.counts,
            "history": self.history,
            "elapsed": self.elapsed + time.perf_counter() - self._start,
            # early stopping's decision: the cap is applied after the checkpoints
            "stopped": bool(self.trainer.should_stop),
        })

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["freqnn"]
        self.history = list(state["history"])
        self.elapsed = float(state["elapsed"])
        self._start = time.perf_counter()


#: the runner's ``precision`` values as Lightning's
PRECISIONS = {"32": "32-true", "64": "64-true", "bf16-mixed": "bf16-mixed"}


def _over_cap(history: list[dict[str, Any]], max_minutes: float | None) -> bool:
    """Whether the training time at the last validation of ``history`` exceeds the wall-time
    cap ``max_minutes`` (``None``: no cap)."""
    return max_minutes is not None and bool(history) and history[-1]["time_s"] > 60 * max_minutes


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and paths as strings, so that a
    weights-only load reads it back (a task's ``info`` may hold ``numpy.float64``)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


# --------------------------------------------------------------------------- runner
def _distributed_env() -> tuple[int, int]:
    """(world size, local world size) when launched by torchrun, else (1, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return world, local


def _hardware(accelerator: str) -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "processor": platform.processor()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    if accelerator != "cpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*Checkpoint directory.*exists.*",
                    ".*The number of training batches.*", ".*Experiment logs directory.*",
                    ".*on_epoch=True.*", ".*`isinstance\\(treespec, LeafSpec\\)`.*",
                    ".*LeafSpec.*", ".*when logging on epoch level in distributed.*"):
        warnings.filterwarnings("ignore", message=pattern)


#: What a run writes in its directory (besides the lock): ``overwrite`` removes these, and only
#: these (in ``checkpoints/`` and ``logs/``, the files of a run: checkpoints, their temporaries,
#: metrics.csv, hparams.yaml, TensorBoard event files).
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, HISTORY_FILE)
#: The lock file a training process holds in its run directory (:func:`train`).
LOCK_FILE = ".freqnn.lock"


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite; the run stops with this error."""


class RunDirLockedError(OSError):
    """Another process is training in the run directory."""


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration (DDP: rank 0 holds it for every rank)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RunDirLockedError(
            f"run_dir: expected a directory no other process is training in, got {run_dir}, "
            f"locked by a running freqnn train ({run_dir / LOCK_FILE}); wait for it to finish "
            "or choose another --run-dir") from None
    try:
        yield
    finally:
        lock.release()


def _run_outputs(run_dir: Path) -> list[Path]:
    """The files of a freqnn run in ``run_dir`` (:data:`RUN_FILES`, checkpoints, logs)."""
    files = [run_dir / name for name in RUN_FILES]
    files += [*(run_dir / "checkpoints").glob("*.ckpt"), *(run_dir / "checkpoints").glob(".*.tmp")]
    logs = run_dir / "logs"
    files += [logs / "metrics.csv", logs / "hparams.yaml", *logs.glob("events.out.tfevents.*")]
    return [f for f in files if f.is_file()]


def check_run_dir(run_dir: str | os.PathLike[str], *, resume: bool = False,
                  overwrite: bool = False) -> None:
    """Refuse to train in a ``run_dir`` whose files the run would overwrite or mix with.

    A missing or empty directory is fine. Otherwise it must be a freqnn run (``config.yaml``):
    with ``resume`` any run continues; without, a finished run (``results.json``) or one with
    checkpoints is refused. ``overwrite`` accepts any directory and first removes the files of a
    freqnn run there (:data:`RUN_FILES`, checkpoints, logs), nothing else.

    Raises
    ------
    FileExistsError
        Naming the directory, what it holds and the options that proceed.
    """
    run_dir = Path(run_dir)
    held = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE) \
        if run_dir.is_dir() else []
    if not held:
        return
    if overwrite:
        for path in _run_outputs(run_dir):
            path.unlink()
        return
    if not (run_dir / CONFIG_FILE).is_file():
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise FileExistsError(
            f"run_dir: expected a new or empty directory or a freqnn run, got {run_dir} holding "
            f"{shown} (no {CONFIG_FILE}); choose another --run-dir, or give --overwrite to write "
            "the run there (its other files are kept)")
    if resume:
        return
    if (run_dir / RESULTS_FILE).is_file():
        raise FileExistsError(
            f"run_dir: expected a new directory or resume=True (--resume), got {run_dir}, a "
            f"finished run that already holds checkpoints and {RESULTS_FILE}; --resume continues "
            "it (with more --epochs), --overwrite replaces it")
    if any((run_dir / "checkpoints").glob("*.ckpt")):
        raise FileExistsError(
            f"run_dir: expected a new directory or resume=True (--resume), got {run_dir} which "
            "already holds checkpoints; --resume continues the run, --overwrite replaces it")


class _ResumedMetricsWriter(ExperimentWriter):
    """CSVLogger's writer for a resumed run: the rows before the checkpoint are kept (Lightning
    deletes ``metrics.csv`` when it opens a directory that has one)."""

    def __init__(self, log_dir: str, resumed_at: int) -> None:
        self.resumed_at = resumed_at
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            keys = list(reader.fieldnames or [])
            # the rows of the epochs the checkpoint holds; a killed epoch's rows are repeated
            rows = [row for row in reader if int(row["step"]) < self.resumed_at]
        with atomic_write(path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys  # new rows extend these columns


class RunCSVLogger(CSVLogger):
    """``RUN_DIR/logs/metrics.csv``. A run resumed from the checkpoint at global step
    ``resumed_at`` appends to the rows logged before that step, so the file equals an
    uninterrupted run's; a fresh run (``None``) starts it anew."""

    def __init__(self, run_dir: Path, resumed_at: int | None = None) -> None:
        super().__init__(run_dir, name="logs", version="")
        self.resumed_at = resumed_at

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resumed_at is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumedMetricsWriter(self.log_dir, self.resumed_at)
        return super().experiment


def _complete_last(run_dir: Path) -> None:
    """Make ``last.ckpt`` the run's newest checkpoint. A run killed while writing the final
    epoch's ``last.ckpt`` resumes from that epoch's ``best.ckpt`` and trains no further, so
    nothing would write ``last.ckpt`` again: it would stay an epoch behind."""
    newest, last = last_good_checkpoint(run_dir), run_dir / "checkpoints" / "last.ckpt"
    if newest is not None and newest != last:
        with atomic_write(last) as handle:
            handle.write(newest.read_bytes())


def train(cfg: dict[str, Any], *, resume: bool = False, overwrite: bool = False
          ) -> dict[str, Any]:
    """Train, select the best checkpoint on validation, test it and write the run directory.

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`make_config` (with ``run_dir`` set).
    resume : bool
        Continue from the last good checkpoint of ``run_dir`` (start afresh if it has none).
    overwrite : bool
        Start afresh in a ``run_dir`` that holds files (see :func:`check_run_dir`), removing
        the files of a freqnn run there (:data:`RUN_FILES`) and nothing else.

    Returns
    -------
    dict
        The content of ``results.json``.

    Raises
    ------
    FileExistsError
        ``run_dir`` holds files and may not be written (:func:`check_run_dir`).
    RunDirLockedError
        Another process is training in ``run_dir``.
    OSError
        ``run_dir`` cannot be created or written (below a file, read-only, disk full): the
        message names the directory. Checkpoints are written atomically, so those written
        before the failure are intact and ``resume=True`` continues from them.
    """
    if resume and overwrite:
        raise ValueError("overwrite: expected it without resume (--overwrite starts the run "
                         "afresh, --resume continues it), got both")
    _quiet_lightning()
    if cfg.get("accelerator") == "gpu" and not torch.cuda.is_available():
        raise ValueError("accelerator: expected 'cpu' or 'auto' on this machine, which has no "
                         "CUDA GPU that PyTorch can use, got 'gpu'")
    if not cfg.get("run_dir"):
        raise ValueError("run_dir: expected a directory for the run, got None")
    run_dir = Path(cfg["run_dir"])
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"run_dir: expected a directory, got {run_dir}, "
                                         f"below the file {folder}")
            break
    try:
        if not overwrite:  # a refused directory is left as it was, without a lock file
            check_run_dir(run_dir, resume=resume)
        with _run_lock(run_dir):
            check_run_dir(run_dir, resume=resume, overwrite=overwrite)  # again, holding it
            return _train(cfg, run_dir, resume)
    except OSError as error:
        if error.filename is None or not Path(os.path.abspath(error.filename)).is_relative_to(
                os.path.abspath(run_dir)):
            raise
        raise OSError(f"run_dir: expected a writable directory, got {run_dir} where "
                      f"{error.strerror or error} ({error.filename}); the checkpoints written "
                      "before are intact: make it writable and continue with --resume"
                      ) from error


def _train(cfg: dict[str, Any], run_dir: Path, resume: bool) -> dict[str, Any]:
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    world, local = _distributed_env()
    accelerator = cfg["accelerator"]
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    rank = int(os.environ.get("RANK", "0"))

    ckpt_path = last_good_checkpoint(run_dir) if resume else None
    state: dict[str, Any] = {}
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path)
        check_checkpoint_matches(state, cfg, ckpt_path)
        check_weights_match(state, cfg, ckpt_path)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / CONFIG_FILE, "w") as handle:
            yaml.safe_dump(cfg, handle, sort_keys=True)

    L.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    task = task_for(cfg)
    data = task.build(cfg)
    facts = {"input_size": data.input_size, "output_size": data.output_size,
             "has_times": data.has_times, "info": data.info}
    module = TaskModule(cfg, facts)
    if cfg["compile"]:
        # in place: the parameters' names, so the checkpoints, stay those of the eager model
        module.model.compile()
    datamodule = TaskDataModule(data, cfg)

    monitor = f"val_{task.monitor}"
    # two callbacks: Lightning 2.6 writes save_last only on epochs that improve the monitor;
    # resume needs the state of every epoch
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        RunCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=task.mode,
                      save_top_k=1, enable_version_counter=False,
                      save_on_train_epoch_end=False),
        RunCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                      enable_version_counter=False, save_on_train_epoch_end=False),
    ]
    if cfg["patience"]:
        # checked at validation end, like the checkpoints: a resumed run restarts after the
        # checkpointed validation, where a train-epoch-end check would find no metric
        callbacks.append(EarlyStopping(monitor=monitor, mode=task.mode,
                                       patience=int(cfg["patience"]),
                                       check_on_train_epoch_end=False))
    if cfg["diagnostics"]:
        from .diagnostics import TrainingDiagnostics

        probe = collate([data.train[i] for i in range(min(len(data.train), cfg["batch_size"]))])
        callbacks.append(TrainingDiagnostics(probe, cfg["diagnostics_every"], cfg["clip"]))
    strategy: Any = "auto"
    if world > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else "nccl")
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=local if world > 1 else 1,
        num_nodes=max(1, world // local),
        strategy=strategy,
        precision=PRECISIONS[cfg["precision"]],
        max_epochs=int(cfg["epochs"]),
        gradient_clip_val=float(cfg["clip"]) or None,
        deterministic=bool(cfg["deterministic"]),
        callbacks=callbacks,
        logger=[RunCSVLogger(run_dir, resumed_at=state.get("global_step")),
                TensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False)],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_progress_bar=bool(cfg["progress"]),
        enable_model_summary=False,
        limit_train_batches=cfg["limit_train_batches"],
        log_every_n_steps=1,
    )
    # the configuration as hyperparameters: logs/hparams.yaml now, TensorBoard's hparams view
    # (with the best validation metric) after training
    hparams = {k: v for k, v in _plain(cfg).items() if k != "run_dir"}
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
    stopped_by = None
    if ckpt_path is not None:
        saved = state["freqnn"]
        if saved.get("stopped"):
            stopped_by = "early_stopping"
        elif _over_cap(saved["history"], cfg["max_minutes"]):
            stopped_by = "max_minutes"
        if rank == 0:
            print(f"resuming from {ckpt_path} (epoch {state['epoch']}, step "
                  f"{state['global_step']})", file=sys.stderr)
    if stopped_by is not None:  # early-stopped, or trained past the cap: train no further
        module.on_load_checkpoint(state)
        module.load_state_dict(state["state_dict"])
    else:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        stopped_by = module.stopped_by
    if ckpt_path is not None and rank == 0:
        _complete_last(run_dir)
    wall = module.elapsed + time.perf_counter() - module._start

    best = run_dir / "checkpoints" / "best.ckpt"
    best_state = load_checkpoint(best)
    history = list(module.history)
    if stopped_by is None or (stopped_by == "max_minutes" and len(history) >= cfg["epochs"]):
        stopped_by = "epochs"  # a cap reached at the last epoch cut nothing
    module.load_state_dict(best_state["state_dict"])
    trainer.test(module, datamodule=datamodule, verbose=False)
    best_record = best_state["freqnn"]["history"][-1]
    for logger in trainer.loggers:  # TensorBoard's hparams view, with the best metric
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, {f"hp/best_{monitor}": best_record[monitor]})
    results = {
        "task": cfg["task"],
        "model": cfg["model"],
        "seed": cfg["seed"],
        "params": module.counts["params"],
        "sfm_params": module.counts["sfm_params"],
        "hidden_size": module.counts["hidden_size"],
        "epochs_run": len(history),
        "best_epoch": best_record["epoch"],
        "stopped_by": stopped_by,
        "max_minutes": cfg["max_minutes"],
        "precision": cfg["precision"],
        "compile": cfg["compile"],
        "best_val": {k: v for k, v in best_record.items() if k.startswith("val_")},
        "test": {k.removeprefix("test_"): v for k, v in module.test_metrics.items()},
        "train_wall_s": round(wall, 2),
        "world_size": world,
        "hardware": _hardware(accelerator),
        "info": data.info,
    }
    if trainer.global_rank == 0:
        _write_json(run_dir / HISTORY_FILE, history)
        _write_json(run_dir / RESULTS_FILE, results)
    return results
