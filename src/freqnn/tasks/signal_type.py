"""Signal type (SFM paper, experiment 1): which kind of periodic wave is this sequence?

Data: :func:`freqnn.data.waves.generate_waves` (square vs sawtooth by default, ``sine`` as a
third class; random period, amplitude, phase; irregular sampling; optional noise). Each step is
(value, time): SFM / A-SFM use the real timestamps as phase times, LSTM / GRU get the value and
the time since the previous sample (:class:`freqnn.models.SequenceModel`).

The three splits are drawn with seeds ``data_seed``, ``data_seed + 1``, ``data_seed + 2`` and do
not depend on the training ``seed``: every model and seed sees the same data. The metric is the
accuracy over the test sequences; the validation loss picks the checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch.utils.data import Dataset

from ..config import RunConfig
from ..data.npz import load_npz
from ..data.waves import WAVE_TYPES, generate_waves
from . import Task, TaskData, TensorDataset, classification_loss, classification_metrics

__all__ = ["TASK", "Options", "build", "waves_dataset"]

DEFAULTS: dict[str, Any] = {
    # data
    "n_train": 1000,
    "n_val": 200,
    "n_test": 500,
    "length": 500,
    "types": ["square", "sawtooth"],
    "noise": 0.0,
    "data_seed": 1234,
    # model and training
    "hidden_size": 16,
    "state_size": 8,
    "num_freqs": 8,
    # the SFM grid from the waves' time scale (periods 10-100 time units): of the variants of
    # docs/results/signal_type.md ("Why SFM loses"), the lowest mean validation loss
    "frequencies": "log",
    "min_period": 10.0,
    "max_period": 100.0,
    # SFM / A-SFM: windows from the waves' periods (chrono), the normalised memory and the mean
    # read-out, which keep the recurrence from diverging (docs/sfm.md, "Training SFM"; chosen
    # on validation, docs/results/signal_type.md)
    "memory": "normalised",
    "forget_init": "chrono",
    "readout": "mean",
    "epochs": 15,
    "batch_size": 32,
    # the LSTM / GRU pilot's rate; also SFM's with the mean read-out (docs/results/signal_type.md)
    "lr": 1e-2,
    # SFM / A-SFM: the recurrent weights W_hh at lr / 10, which keeps the loop through z_{t-1}
    # from drifting into exploding gradients (docs/sfm.md, "Training SFM"; chosen on
    # validation); the other models ignore it
    "recurrent_lr_scale": 0.1,
    "patience": 5,
    # one thread: these small recurrences gain nothing from intra-op threads, and on a busy
    # 2-core machine two threads made an LSTM step 100x slower (spinning OpenMP workers)
    "num_threads": 1,
}


def _types(cfg: dict[str, Any]) -> tuple[str, ...]:
    types = cfg["types"]
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    types = tuple(types)
    if len(types) < 2 or any(t not in WAVE_TYPES for t in types) or len(set(types)) != len(types):
        raise ValueError(f"types: expected two or more distinct names from "
                         f"{', '.join(WAVE_TYPES)}, got {cfg['types']!r}")
    return types


def waves_dataset(n: int, cfg: dict[str, Any], seed: int) -> TensorDataset:
    """``n`` waves of the configured kind as task items (``x`` (T, 1), ``times`` (T,), ``y``)."""
    waves = generate_waves(n, types=_types(cfg), length=int(cfg["length"]),
                           noise=float(cfg["noise"]), seed=seed)
    return TensorDataset(
        x=torch.from_numpy(waves.values).unsqueeze(-1),
        times=torch.from_numpy(waves.times),
        y=torch.from_numpy(waves.labels),
    )


def build(cfg: dict[str, Any]) -> TaskData:
    """The train / validation / test waves of ``cfg`` (see the module docstring)."""
    seed = int(cfg["data_seed"])
    types = _types(cfg)
    return TaskData(
        train=waves_dataset(int(cfg["n_train"]), cfg, seed),
        val=waves_dataset(int(cfg["n_val"]), cfg, seed + 1),
        test=waves_dataset(int(cfg["n_test"]), cfg, seed + 2),
        input_size=1,
        output_size=len(types),
        has_times=True,
        info={"class_names": list(types)},
    )


def load_external(path: str, cfg: dict[str, Any], info: dict[str, Any]) -> Dataset:
    """A ``.npz`` file (:mod:`freqnn.data.npz`) as task items; missing times are step indices."""
    data = load_npz(path, num_features=1, num_classes=len(info["class_names"]))
    if data.class_names is not None and list(data.class_names[: len(info["class_names"])]) != list(
        info["class_names"]
    ):
        raise ValueError(f"{path}: class_names: expected {info['class_names']} (the model's "
                         f"classes, in order), got {list(data.class_names)}")
    steps = data.values.shape[1]
    times = data.times if data.times is not None else np.tile(
        np.arange(steps, dtype=np.float64), (len(data.labels), 1))
    xs, ts = [], []
    for i, n in enumerate(data.lengths.tolist()):
        xs.append(torch.from_numpy(data.values[i, :n].copy()))
        ts.append(torch.from_numpy(times[i, :n].copy()))
    return TensorDataset(x=xs, times=ts, y=torch.from_numpy(data.labels))


class Options(RunConfig):
    """The signal_type task's keys."""

    n_train: int = Field(ge=1, description="training sequences")
    n_val: int = Field(ge=1, description="validation sequences")
    n_test: int = Field(ge=1, description="test sequences")
    length: int = Field(ge=2, description="samples per sequence")
    types: list[Literal[WAVE_TYPES]] = Field(  # type: ignore[valid-type]
        min_length=2, description="the wave types to tell apart (distinct), in class order")
    noise: float = Field(ge=0, description="noise std relative to the amplitude")
    data_seed: int = Field(ge=0, description="seed of the generated data (split s uses "
                           "data_seed + s)")

    @field_validator("types")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("types must be distinct")
        return value


TASK = Task(
    name="signal_type",
    description="classify square / sawtooth (/ sine) waves sampled at irregular times",
    head="sequence",
    defaults=DEFAULTS,
    build=build,
    loss=classification_loss,
    metrics=classification_metrics,
    monitor="loss",
    mode="min",
    options=Options,
    load_external=load_external,
)
