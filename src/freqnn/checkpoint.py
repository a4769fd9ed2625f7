"""Trained runs without the trainer: checkpoints, run directories and the model of a run.

What a task, a report or a script needs to read a run of ``freqnn train`` lives here, below the
tasks and free of Lightning (:mod:`freqnn.train` and :mod:`freqnn.cli` use it too):

* :func:`load_checkpoint` reads a checkpoint weights-only: a file that would build objects or
  call functions when unpickled is refused (:class:`UnsafeCheckpointError`) before any of it
  runs.
* :func:`model_from_checkpoint` rebuilds the model of a checkpoint as a :class:`TaskModel`
  (``.model``, ``.task``, ``.cfg``, ``.facts``, ``.counts``, ``.history``; calling it on a
  batch gives the task's output). A checkpoint inside a run directory must match the run's task
  and model (:func:`check_checkpoint_matches`).
* :func:`predict` and :func:`evaluate` run it over a data set; :func:`find_runs`,
  :func:`load_run_config` and :func:`run_dir_of` find and read run directories;
  :func:`epochs_text` is the "epochs (best)" cell of results tables.

The model of a run is built by :func:`build_task_model` from the run's configuration and the
facts of its data (``input_size``, ``output_size``, ``has_times``, ``info``), as the trainer
builds it, so the state-dict keys of a checkpoint (``model.<parameter>``) load unchanged.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .checks import check_finite
from .config import DEFAULTS, read_yaml
from .models import build_model, count_parameters
from .tasks import Batch, Task, collate, get_task, task_for

__all__ = [
    "CONFIG_FILE",
    "RESULTS_FILE",
    "TaskModel",
    "UnsafeCheckpointError",
    "build_task_model",
    "cast_batch",
    "check_checkpoint_matches",
    "check_finite_weights",
    "epochs_text",
    "evaluate",
    "find_runs",
    "forward_batch",
    "load_checkpoint",
    "load_run_config",
    "model_from_checkpoint",
    "predict",
    "run_dir_of",
]

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"
#: Keys a checkpoint must share with the configuration of the run directory it is used in
#: (the training budget, ``epochs``, ``patience``, ``max_minutes``, may change on ``--resume``).
MATCHED_KEYS = ("task", "model")


# --------------------------------------------------------------------------- run directories
def _with_runner_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every runner key it lacks at its default: a run written before a key
    existed (``phase``, ``time``, ``optimizer``...) behaved as that default."""
    return {**DEFAULTS, **cfg}


def load_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration saved in ``run_dir`` (``config.yaml``), runner keys added since it was
    written at their defaults."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run configuration (is {run_dir} a run directory?)")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise ValueError(f"{path}: expected a YAML mapping with a 'task' key, got {cfg!r}")
    _check_task_name(cfg, path)
    return _with_runner_defaults(cfg)


def _check_task_name(cfg: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a file whose configuration names a task that is not registered: a name read from
    a file selects a registered task (:func:`~freqnn.tasks.get_task`), it is never imported."""
    try:
        get_task(cfg.get("task"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The finished runs (directories holding ``results.json``) among ``paths`` and below them.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or no finished run at all.
    """
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / RESULTS_FILE).is_file():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(r.parent for r in p.rglob(RESULTS_FILE)))
        else:
            raise FileNotFoundError(f"{p}: expected a run directory, got nothing there")
    if not runs:
        raise FileNotFoundError(f"no finished runs ({RESULTS_FILE}) under "
                                f"{[str(p) for p in paths]}")
    return runs


def epochs_text(results: dict[str, Any]) -> str:
    """Epochs run and the best one (1-based) of a run's ``results.json``: ``"50 (45)"``, or
    ``"12 (11) cap 60 min"`` where the wall-time cap ``max_minutes`` stopped the run (results
    written before the cap existed have no ``stopped_by``)."""
    text = f"{results['epochs_run']} ({results['best_epoch'] + 1})"
    if results.get("stopped_by") == "max_minutes":
        text += f" cap {results['max_minutes']:g} min"
    return text


def run_dir_of(checkpoint: str | os.PathLike[str]) -> Path | None:
    """The run directory holding ``checkpoint`` (``RUN_DIR/checkpoints/NAME.ckpt`` with a
    ``RUN_DIR/config.yaml``), or ``None`` for a checkpoint outside a run directory."""
    folder = Path(checkpoint).parent
    if folder.name == "checkpoints" and (folder.parent / CONFIG_FILE).is_file():
        return folder.parent
    return None


# --------------------------------------------------------------------------- checkpoints
class UnsafeCheckpointError(ValueError):
    """A checkpoint file that would run code or build arbitrary objects when loaded."""


def _unsafe_globals(path: Path) -> list[str]:
    """The globals a pickle in ``path`` refers to beyond the weights-only allow-list (read from
    the pickle's opcodes, nothing executed); empty if the file cannot be scanned."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (truncated, foreign): nothing to name
        return []


def _not_a_checkpoint(path: Path, reason: str) -> ValueError:
    """The one-line refusal of a file that is not a freqnn checkpoint."""
    return ValueError(f"{path}: expected a freqnn checkpoint, got a file that is not one "
                      f"({reason})")


_FACT_TYPES = {"input_size": int, "output_size": int, "has_times": bool}


def _structure_problem(ckpt: Any) -> str | None:
    """What makes a loaded checkpoint not a freqnn one (``None`` if nothing): the entries
    every reader uses, with their types."""
    if not isinstance(ckpt, dict):
        return f"a {type(ckpt).__name__} instead of a mapping"
    for key in ("freqnn", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            return f"{key} missing" if key not in ckpt else f"{key} is not a mapping"
    if not all(isinstance(k, str) and isinstance(v, Tensor)
               for k, v in ckpt["state_dict"].items()):
        return "state_dict holds entries other than named tensors"
    state = ckpt["freqnn"]
    for key, kind in (("config", dict), ("facts", dict), ("history", list)):
        if key not in state:
            return f"freqnn.{key} missing"
        if not isinstance(state[key], kind):
            return f"freqnn.{key} is a {type(state[key]).__name__}, not a {kind.__name__}"
    if not all(isinstance(record, dict) for record in state["history"]):
        return "freqnn.history holds entries other than mappings"
    for key in ("task", "model"):
        if not isinstance(state["config"].get(key), str):
            return f"freqnn.config.{key} missing or not a string"
    for key, kind in _FACT_TYPES.items():
        value = state["facts"].get(key)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or
                                                            value < 1)):
            what = "positive int" if kind is int else kind.__name__
            return f"freqnn.facts.{key} missing or not a {what}"
    for key in ("elapsed", "epoch", "global_step"):
        where = state if key == "elapsed" else ckpt
        if key in where and (isinstance(where[key], bool) or
                             not isinstance(where[key], (int, float))):
            return f"{'freqnn.' if key == 'elapsed' else ''}{key} is not a number"
    return None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a freqnn checkpoint on the CPU without running code from it.

    Loading is weights-only (``torch.load(..., weights_only=True)``): tensors, numbers,
    strings and containers of them, which is all a freqnn checkpoint holds. A file whose pickle
    names anything else (a class to build, a function to call) is refused before any of it
    runs.

    Raises
    ------
    UnsafeCheckpointError
        The file holds objects other than weights and plain values (the message lists them).
    ValueError
        The file is not a readable freqnn checkpoint (truncated, foreign, other keys).
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a checkpoint file, got nothing there")
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it was not given
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise UnsafeCheckpointError(
                f"{path}: expected a freqnn checkpoint of weights and plain values, got a file "
                f"that would build or call {', '.join(unsafe)} when loaded; refused, nothing "
                "in it was run (load only checkpoints you trust, and never with "
                "weights_only=False)") from None
        # torch's own text is several lines and advises unsafe loading: never shown
        raise _not_a_checkpoint(path, "not a PyTorch weights file: random, legacy or "
                                "another program's") from None
    except Exception as error:  # torch raises several types for truncated / foreign files
        reason = ("an empty file" if path.stat().st_size == 0 else
                  f"unreadable: {type(error).__name__}, truncated or another program's")
        raise _not_a_checkpoint(path, reason) from None
    problem = _structure_problem(ckpt)
    if problem is not None:
        raise _not_a_checkpoint(path, problem)
    return ckpt


def check_checkpoint_matches(ckpt: dict[str, Any], cfg: dict[str, Any],
                             path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint whose task, model or selection metric differ from the run's
    configuration ``cfg``.

    The selection metric is the task's monitor as the configuration sets it up
    (:func:`~freqnn.tasks.task_for`; e.g. the polyphonic ``objective``): a run resumed under
    another one would compare its new epochs with a best checkpoint chosen on a different
    number.

    Raises
    ------
    ValueError
        Naming the key (or the metric), the run's value and the checkpoint's.
    """
    saved = ckpt["freqnn"]["config"]
    for key in MATCHED_KEYS:
        if saved.get(key) != cfg.get(key):
            raise ValueError(f"{path}: {key}: expected {cfg.get(key)!r} (the run's "
                             f"{CONFIG_FILE}), got a checkpoint of {saved.get(key)!r}; refused")
    want, got = task_for(cfg).monitor, task_for(saved).monitor
    if want != got:
        raise ValueError(f"{path}: selection metric: expected val_{want} (the run's "
                         f"{CONFIG_FILE}), got a checkpoint selected on val_{got}; refused")


# --------------------------------------------------------------------------- the model of a run
def build_task_model(cfg: dict[str, Any], facts: dict[str, Any]
                     ) -> tuple[Task, nn.Module, dict[str, int]]:
    """The task of ``cfg`` (:func:`~freqnn.tasks.task_for`: its training loss and selection
    metric as ``cfg`` sets them) and the model the runner trains for it, with its parameter
    budget.

    The body is :func:`freqnn.models.build_model` of the configuration's model and sizes (the
    baselines matched to the SFM's parameter count); a task with a
    :attr:`~freqnn.tasks.Task.wrap_model` hook puts its own modules around it (e.g. a
    learnable front end), whose parameters count in ``params`` but not in the match.

    Parameters
    ----------
    cfg : dict
        A run's configuration (:func:`freqnn.config.make_config`).
    facts : dict
        ``input_size``, ``output_size``, ``has_times`` and ``info`` of the task's data.

    Returns
    -------
    task : Task
    model : nn.Module
        Called as ``model(x, times=..., lengths=...)`` (:func:`forward_batch`).
    counts : dict
        ``params`` (this model), ``sfm_params`` (the reference SFM) and ``hidden_size``.
    """
    task = task_for(cfg)
    body, counts = build_model(
        cfg["model"],
        facts["input_size"],
        facts["output_size"],
        task.head,
        hidden_size=cfg["hidden_size"],
        state_size=cfg["state_size"],
        num_freqs=cfg["num_freqs"],
        num_layers=cfg["num_layers"],
        dropout=cfg["dropout"],
        frequencies=cfg["frequencies"],
        learn_frequencies=cfg["learn_frequencies"],
        min_period=cfg["min_period"],
        max_period=cfg["max_period"],
        phase=cfg["phase"],
        time=cfg["time"],
        memory=cfg["memory"],
        forget_init=cfg["forget_init"],
        readout=cfg["readout"],
        use_times=facts["has_times"],
        rnn_hidden_size=cfg["rnn_hidden_size"],
        match_params=cfg["match_params"],
    )
    if task.wrap_model is None:
        return task, body, counts
    model = task.wrap_model(body, cfg, facts)
    return task, model, {**counts, "params": count_parameters(model)}


def forward_batch(model: nn.Module, batch: Batch, facts: dict[str, Any]) -> Tensor:
    """The output of a task's model on a batch of :func:`freqnn.tasks.collate`: (B, outputs)
    or (B, T, outputs). ``times`` is passed when the task's data has timestamps."""
    times = batch.get("times") if facts["has_times"] else None
    return model(batch["x"], times=times, lengths=batch["lengths"])


class TaskModel(nn.Module):
    """The model of a run with its task, configuration and data facts (no trainer).

    Parameters
    ----------
    cfg : dict
        The run's configuration.
    facts : dict
        ``input_size``, ``output_size``, ``has_times`` and ``info`` of the task's data.

    Attributes
    ----------
    model : nn.Module
        The network (:func:`build_task_model`); its state-dict keys are those of the trainer's
        checkpoints (``model.<parameter>``).
    task : Task
    cfg, facts : dict
    counts : dict
        ``params``, ``sfm_params``, ``hidden_size``.
    history : list of dict
        The run's per-epoch records up to the checkpoint.

    Notes
    -----
    ``forward(batch) -> output``: :func:`forward_batch`.
    """

    def __init__(self, cfg: dict[str, Any], facts: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.facts = dict(facts)
        self.task, self.model, self.counts = build_task_model(self.cfg, self.facts)
        self.history: list[dict[str, Any]] = []

    def forward(self, batch: Batch) -> Tensor:
        return forward_batch(self.model, batch, self.facts)


def check_finite_weights(state_dict: Any, path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint with NaN or infinite weights (issue 27 item 12: ``eval`` of one
    printed NaN metrics with exit 0); the message names the file and the parameter."""
    if not isinstance(state_dict, dict):
        return  # load_state_dict names a state_dict of the wrong structure
    for name, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point():
            check_finite(value, f"{path}: {name}")


def model_from_checkpoint(path: str | os.PathLike[str]) -> TaskModel:
    """Rebuild the model of a checkpoint file (weights included), in evaluation mode on the CPU.

    The file is loaded weights-only (:func:`load_checkpoint`), and the task its configuration
    names must be registered (:func:`~freqnn.tasks.available_tasks`; it is never imported by
    name). A checkpoint inside a run directory must match the run's task and model
    (:func:`check_checkpoint_matches`).
    """
    ckpt = load_checkpoint(path)
    _check_task_name(ckpt["freqnn"]["config"], path)
    run_dir = run_dir_of(path)
    if run_dir is not None:
        check_checkpoint_matches(ckpt, load_run_config(run_dir), path)
    state = ckpt["freqnn"]
    check_finite_weights(ckpt["state_dict"], path)
    module = TaskModel(_with_runner_defaults(state["config"]), state["facts"])
    want, got = _shapes(module.state_dict()), _shapes(ckpt["state_dict"])
    if want != got:  # load_state_dict's error is several lines
        name = next(n for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n))
        raise ValueError(f"{path}: {name}: expected a weight of shape {want.get(name)} (the "
                         f"checkpoint's configuration), got {got.get(name)}; refused")
    module.load_state_dict(ckpt["state_dict"])
    module.history = list(state["history"])
    if state["config"]["precision"] == "64":
        module.double()
    return module.eval()


def _shapes(state_dict: Any) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in state_dict.items()
            if isinstance(value, Tensor)}


def check_weights_match(ckpt: dict[str, Any], cfg: dict[str, Any],
                        path: str | os.PathLike[str]) -> None:
    """Refuse to resume a checkpoint whose weights the configuration ``cfg`` cannot load: a
    model built from ``cfg`` (with the checkpoint's data facts) must have the checkpoint's
    parameter names and shapes. Checked before anything is written or loaded; the message
    names the configuration key that changes them (``hidden_size``, ``state_size``...), its
    value in the run and in the checkpoint, or else the first parameter that differs.

    Raises
    ------
    ValueError
        One line naming the file, the key (or parameter), expected and received.
    """
    saved_cfg = _with_runner_defaults(ckpt["freqnn"]["config"])
    facts = ckpt["freqnn"]["facts"]
    cfg = _with_runner_defaults(cfg)
    got = _shapes(ckpt["state_dict"])
    want = _shapes(TaskModel(cfg, facts).state_dict())
    if want == got:
        return
    for key in sorted(k for k in set(cfg) | set(saved_cfg) if cfg.get(k) != saved_cfg.get(k)):
        try:
            changed = _shapes(TaskModel({**saved_cfg, key: cfg.get(key)}, facts).state_dict())
        except Exception:  # this key alone makes no model: not the one to name
            continue
        if changed != got:
            raise ValueError(f"{path}: {key}: expected {cfg.get(key)!r} (this run's "
                             f"configuration), got a checkpoint of {saved_cfg.get(key)!r}, whose "
                             f"weights have other shapes; refused (resume with {key}="
                             f"{saved_cfg.get(key)!r}, or start a new run)")
    name = next(n for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n))
    raise ValueError(f"{path}: {name}: expected a weight of shape {want.get(name)} (this "
                     f"run's configuration), got {got.get(name)} in the checkpoint; refused")


def cast_batch(batch: Batch, dtype: torch.dtype) -> Batch:
    """``batch`` with its floating-point inputs in ``dtype``; ``times`` stay float64 (phases)."""
    return {k: v.to(dtype) if v.is_floating_point() and k != "times" else v
            for k, v in batch.items()}


def predict(module: TaskModel, dataset: Dataset, batch_size: int = 64,
            collate_fn: Callable[[Sequence[dict[str, Tensor]]], Batch] | None = None
            ) -> Iterator[tuple[Batch, Tensor]]:
    """``(batch, output)`` for consecutive batches of ``dataset``, without gradients.

    Floating-point inputs (except ``times``) take the model's dtype. ``collate_fn`` is the
    data's batch builder (:attr:`freqnn.tasks.TaskData.collate`; default :func:`collate`).
    """
    module.eval()
    dtype = next(module.parameters()).dtype
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=collate_fn or collate)
    for batch in loader:
        batch = cast_batch(batch, dtype)
        with torch.no_grad():
            output = module(batch)
        yield batch, output


def evaluate(module: TaskModel, dataset: Dataset, batch_size: int = 64,
             collate_fn: Callable[[Sequence[dict[str, Tensor]]], Batch] | None = None
             ) -> dict[str, float]:
    """The task's metrics of ``module`` on ``dataset`` in this process: sum / count per metric."""
    sums: dict[str, list[float]] = {}
    for batch, output in predict(module, dataset, batch_size, collate_fn):
        for name, (total, count) in module.task.metrics(output, batch).items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(total)
            acc[1] += float(count)
    return {name: total / count for name, (total, count) in sorted(sums.items())}
