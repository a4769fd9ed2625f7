"""Experiments ("tasks") the ``freqnn`` runner can train, and the interface a task implements.

A task is one module that defines a module-level ``TASK``: a :class:`Task`. Register it by
adding one line to :data:`TASKS` (name -> module path), or, from a package of your own, as an
entry point in the group ``freqnn.tasks`` (``[project.entry-points."freqnn.tasks"]``, ``name =
"package.module"``); the module is imported only when the task is used, so a task with heavy
dependencies (music21, data files) costs nothing to the others. A task is only ever found by
its registered name: a name read from a file (a checkpoint's or a run's configuration) selects
one of these, and is never imported as a module path. ``freqnn train NAME --model sfm`` then
works, with checkpoints, resume, DDP, logging and the baselines handled by :mod:`freqnn.train`;
the runs it writes are read back by :mod:`freqnn.checkpoint` (no task imports the trainer or
the CLI).

What a task module provides (see :mod:`freqnn.tasks.signal_type` for a complete example)
-----------------------------------------------------------------------------------------
``TASK = Task(...)`` with

* ``name``, ``description``: the registry name; a one-line description shown by
  ``freqnn train NAME --help``.
* ``head``: ``"sequence"`` (one output per sequence, read at the last valid step: sequence
  classification) or ``"step"`` (one output per step: next-frame prediction, forecasting).
  The runner builds the model (:func:`freqnn.models.build_model`) from it: SFM / A-SFM / LSTM /
  GRU / bidirectional LSTM / GRU / the other baselines, followed by a linear read-out
  ``hidden -> output_size``.
* ``options``: the task's configuration schema, a subclass of :class:`freqnn.config.RunConfig`
  that declares the task's own keys (``n_train``, ``horizon``, ...) with their types, ranges and
  one-line descriptions (``None``: the task has no keys of its own). The runner validates every
  configuration against it and derives the command-line options of ``freqnn train NAME`` and
  the tables of ``docs/runner.md`` from it.
* ``defaults``: the default of each of the task's own keys, and the task's values of the
  runner's keys (``epochs``, ``batch_size``, ``lr``, ``hidden_size``, ...) where they differ
  from :data:`freqnn.config.DEFAULTS`. Every key may be set from a YAML ``--config`` file or
  from the command line (its option, or ``--set key=value``). Precedence: runner defaults <
  task defaults < YAML < CLI.
* ``build(cfg) -> TaskData``: the data. ``cfg`` is the merged configuration (a plain dict).
  Must be deterministic given ``cfg`` (use ``cfg["data_seed"]``); it is called on every DDP rank.
* ``loss(output, batch) -> Tensor``: scalar training loss, a MEAN over the batch's units
  (sequences, or valid steps). DDP averages gradients over ranks, so a per-rank mean over
  equal-size shards equals the global-batch mean of a single process.
* ``metrics(output, batch) -> {name: (sum, count)}``: evaluation metrics as sums and counts
  (0-d tensors) so the runner can add them over batches and DDP ranks exactly; it reports
  ``sum / count`` as ``val_<name>`` / ``test_<name>``. Must include ``"loss"``.
* ``monitor`` / ``mode``: the metric (a key of ``metrics``) selecting the best checkpoint and
  driving early stopping, and whether lower (``"min"``) or higher (``"max"``) is better.
* optional ``load_external(path, cfg, info) -> Dataset``: read an external file for
  ``freqnn eval CHECKPOINT --data FILE`` (``info`` is the :attr:`TaskData.info` saved with the
  checkpoint, e.g. class names).
* optional ``wrap_model(body, cfg, facts) -> nn.Module``: modules of the task's own around the
  runner's model (a learnable front end, say). ``body`` is the
  :class:`~freqnn.models.SequenceModel` built from ``cfg`` (its input size is
  :attr:`TaskData.input_size`); ``facts`` holds ``input_size``, ``output_size``, ``has_times``
  and ``info`` of the data (saved with checkpoints, so the same call rebuilds the model when a
  checkpoint is loaded: anything learned from the data goes into ``info`` or into buffers).
  The returned module is called as ``model(x, times=times, lengths=lengths)`` like ``body`` and
  returns the same output shape; ``x`` is the batch's ``"x"``, which may then have another
  width than ``input_size`` (raw waveform frames, say). Its parameters count in the run's
  ``params``; the baselines are still matched on ``body`` alone. An ``auxiliary_loss``
  attribute, if it has one, is added to the training loss (as ``SequenceModel``'s).
* optional ``param_groups(model, cfg) -> list[dict]``: the Adam parameter groups of ``model``
  (e.g. a learning rate of their own for a front end's parameters, ``{"params": [...], "lr":
  ...}``); groups without ``"lr"`` use ``cfg["lr"]``, and every parameter of ``model`` must be
  in exactly one group. Default: one group of every parameter.
* optional ``configure(cfg) -> Task``: the task as the configuration ``cfg`` sets it up, for
  task keys that change the training loss or the selection metric (a training objective, say):
  a copy of ``TASK`` with another ``loss`` / ``monitor`` / ``mode``
  (``dataclasses.replace(TASK, ...)``). The runner, the checkpoint loader and the run
  summaries take a run's task from :func:`task_for`, which calls it. Default: the same task for
  every configuration.

Batches
-------
A data set item is a dict of tensors; :func:`collate` pads them into a batch:

* ``"x"``: (T, N) float32 input features (N = ``TaskData.input_size``), batched (B, T, N).
* ``"times"`` (optional): (T,) float64 real timestamps, batched (B, T). SFM / A-SFM receive them
  as ``times=`` (the phase of a step is omega * time); LSTM / GRU receive the time since the
  previous sample as one more input feature. Without ``"times"`` every model uses the step index.
* ``"y"``: target. ``head="sequence"``: a 0-d int64 class; ``head="step"``: (T, ...) per step.
* ``"lengths"``: added by :func:`collate`, (B,) int64 true lengths (padding is at the end, with
  zeros); per-step losses must ignore steps ``>= lengths`` (:func:`step_mask`).

The model's output is (B, output_size) for ``head="sequence"`` and (B, T, output_size) for
``head="step"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "ENTRY_POINT_GROUP",
    "TASKS",
    "Batch",
    "Task",
    "TaskData",
    "TensorDataset",
    "available_tasks",
    "classification_loss",
    "classification_metrics",
    "collate",
    "get_task",
    "step_mask",
    "task_for",
]

#: Task name -> module path; the module defines ``TASK``. Add your task here.
TASKS: dict[str, str] = {
    "signal_type": "freqnn.tasks.signal_type",
    "phoneme": "freqnn.tasks.phoneme",
    "polyphonic": "freqnn.tasks.polyphonic",
    "stocks": "freqnn.tasks.stocks",
    "sequential_digits": "freqnn.tasks.digits",
}

Batch = dict[str, Tensor]


@dataclass
class TaskData:
    """The data of a task, as returned by :attr:`Task.build`.

    Attributes
    ----------
    train, val, test : Dataset
        Items are dicts of tensors (see the module docstring).
    input_size : int
        Features per step N that the recurrent body reads (without the time feature the runner
        adds for LSTM / GRU); with :attr:`Task.wrap_model`, the width of what the task's
        modules hand to the body, which may differ from the width of ``"x"``.
    output_size : int
        Outputs of the read-out (classes, keys, forecast values).
    has_times : bool
        Whether items carry ``"times"``.
    info : dict
        JSON-serialisable facts saved with checkpoints and results (class names, scalers...).
    collate : callable
        Batch builder; the default pads (:func:`collate`).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    input_size: int
    output_size: int
    has_times: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    collate: Callable[[Sequence[dict[str, Tensor]]], Batch] | None = None


@dataclass(frozen=True)
class Task:
    """One experiment the runner can train (see the module docstring for every field)."""

    name: str
    description: str
    head: Literal["sequence", "step"]
    defaults: Mapping[str, Any]
    build: Callable[[dict[str, Any]], TaskData]
    loss: Callable[[Tensor, Batch], Tensor]
    metrics: Callable[[Tensor, Batch], dict[str, tuple[Tensor, Tensor]]]
    monitor: str = "loss"
    mode: Literal["min", "max"] = "min"
    options: type | None = None
    load_external: Callable[[str, dict[str, Any], dict[str, Any]], Dataset] | None = None
    wrap_model: Callable[[nn.Module, dict[str, Any], dict[str, Any]], nn.Module] | None = None
    param_groups: Callable[[nn.Module, dict[str, Any]], list[dict[str, Any]]] | None = None
    configure: Callable[[dict[str, Any]], Task] | None = None


#: Entry-point group of the tasks installed by other packages (name -> module defining TASK).
ENTRY_POINT_GROUP = "freqnn.tasks"


def _installed_tasks() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in TASKS}


def available_tasks() -> list[str]:
    """Names of the registered tasks: :data:`TASKS` and the installed ``freqnn.tasks`` entry
    points."""
    return sorted({*TASKS, *_installed_tasks()})


def get_task(name: str) -> Task:
    """The ``TASK`` of the task registered as ``name`` (:func:`available_tasks`).

    Only registered names resolve: a name read from a file is never imported as a module path.

    Raises
    ------
    TypeError
        ``name`` is not a string, or its module defines no ``TASK``.
    ValueError
        ``name`` is not registered.
    """
    if not isinstance(name, str):
        raise TypeError(f"task: expected a task name (str), got {type(name).__name__} {name!r}")
    installed = {} if name in TASKS else _installed_tasks()
    if name in TASKS:
        where, found = TASKS[name], importlib.import_module(TASKS[name])
    elif name in installed:
        where, found = f"entry point {installed[name].value}", installed[name].load()
    else:
        raise ValueError(f"task: expected a registered task, one of "
                         f"{', '.join(available_tasks())}, got {name!r} (a task is found by "
                         f"its name in freqnn.tasks.TASKS or the {ENTRY_POINT_GROUP!r} entry "
                         f"points, never imported by module path)")
    task = found if isinstance(found, Task) else getattr(found, "TASK", None)
    if not isinstance(task, Task):
        raise TypeError(f"task: expected {where} to define TASK = freqnn.tasks.Task(...), "
                        f"got {type(task).__name__}")
    return task


def task_for(cfg: Mapping[str, Any]) -> Task:
    """The task of a configuration: ``get_task(cfg["task"])`` as its keys set it up.

    Applies the task's :attr:`Task.configure` hook, if it has one, to ``cfg`` completed with the
    task's defaults (a run saved before a task key existed behaved as its default).

    Parameters
    ----------
    cfg : mapping
        A run's configuration (:func:`freqnn.config.make_config`, or a saved ``config.yaml``).

    Returns
    -------
    Task
    """
    task = get_task(cfg["task"])
    if task.configure is None:
        return task
    return task.configure({**task.defaults, **cfg})


class TensorDataset(Dataset):
    """Items ``{key: tensor[i]}`` from equal-length tensors (or lists of per-item tensors)."""

    def __init__(self, **columns: Tensor | Sequence[Tensor]) -> None:
        if not columns:
            raise ValueError("columns: expected at least one column, got none")
        sizes = {key: len(col) for key, col in columns.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"columns: expected equal lengths, got {sizes}")
        self.columns = columns
        self._len = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: col[index] for key, col in self.columns.items()}


def collate(items: Sequence[dict[str, Tensor]]) -> Batch:
    """Stack items into a batch and add ``lengths`` (B,), the number of steps of each ``x``.

    Tensors with a time axis (dim 0 as long as the item's ``x``: ``x``, ``times``, per-step
    ``y``...) are zero-padded at the end to the longest item; others (class labels) are stacked.
    """
    if not items:
        raise ValueError("items: expected a non-empty list of samples, got an empty one")
    sizes = [int(item["x"].shape[0]) for item in items]
    steps = max(sizes)
    batch: Batch = {"lengths": torch.tensor(sizes, dtype=torch.long)}
    for key in items[0]:
        values = [item[key] for item in items]
        timed = all(v.dim() > 0 and v.shape[0] == n for v, n in zip(values, sizes, strict=True))
        if not timed or len(set(sizes)) == 1:
            batch[key] = torch.stack(values)
            continue
        out = values[0].new_zeros((len(values), steps, *values[0].shape[1:]))
        for i, v in enumerate(values):
            out[i, : v.shape[0]] = v
        batch[key] = out
    return batch


def step_mask(batch: Batch) -> Tensor:
    """(B, T) bool mask of the valid (non-padded) steps of a batch."""
    steps = batch["x"].shape[1]
    return torch.arange(steps, device=batch["x"].device) < batch["lengths"].unsqueeze(1)


def classification_loss(output: Tensor, batch: Batch) -> Tensor:
    """Mean cross-entropy of (B, C) logits against ``batch["y"]`` (B,)."""
    return F.cross_entropy(output, batch["y"])


def classification_metrics(output: Tensor, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
    """Summed cross-entropy and correct predictions, with the number of sequences."""
    y = batch["y"]
    count = torch.tensor(float(y.shape[0]), device=output.device, dtype=torch.float64)
    loss = F.cross_entropy(output.double(), y, reduction="sum")
    correct = (output.argmax(-1) == y).sum().double()
    return {"loss": (loss, count), "accuracy": (correct, count)}
