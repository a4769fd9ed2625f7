"""Figures for reports: learning curves and the SFM amplitude |S| over time (paper, fig. 5).

Figures use matplotlib's object API (``Figure``, no pyplot state, no GUI backend); every
function writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .io import atomic_write
from .sfm import SFMCell

__all__ = ["amplitude_figure", "learning_curves", "sfm_amplitudes"]


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def learning_curves(
    histories: Mapping[str, Sequence[Sequence[Mapping[str, float]]]],
    path: str | os.PathLike[str],
    metrics: Sequence[str] = ("train_loss", "val_loss", "val_accuracy"),
    title: str = "",
) -> Path:
    """One panel per metric, one line per label: the mean over runs (seeds), with a band from
    the minimum to the maximum.

    Parameters
    ----------
    histories : {label: [history, ...]}
        A history is the list of per-epoch records of a run (``history.json``).
    """
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, runs in histories.items():
            curves = [[r[metric] for r in run if metric in r] for run in runs]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)  # early stopping ends runs at different epochs
            data = np.array([c[:n] for c in curves])
            epochs = np.arange(1, n + 1)
            # markers: a curve of one epoch is a single point, which a line does not draw
            (line,) = ax.plot(epochs, data.mean(0), marker="o", markersize=3,
                              label=f"{label} ({len(curves)})")
            if len(curves) > 1:
                ax.fill_between(epochs, data.min(0), data.max(0), alpha=0.2,
                                color=line.get_color())
        ax.set_xlabel("epoch")
        ax.set_title(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@torch.no_grad()
def sfm_amplitudes(cell: SFMCell, x: Tensor, times: Tensor | None = None) -> Tensor:
    """|S_t| of one SFM / A-SFM layer stepped through one sequence.

    Parameters
    ----------
    cell : SFMCell or AdaptiveSFMCell
        E.g. ``model.body.cells[0]`` of a :class:`freqnn.models.SequenceModel`.
    x : Tensor [shape=(T, N)]
        The layer's input sequence.
    times : Tensor [shape=(T,)], optional
        Timestamps (default: steps 1, 2, ...).

    Returns
    -------
    Tensor [shape=(T, D, K)]: the amplitude of every state and frequency after each step.
    """
    param = next(cell.parameters())
    x = x.to(param.dtype)
    state = None
    out = []
    for t in range(x.shape[0]):
        step_time = None if times is None else times[t]
        _, state = cell(x[t], state, t=step_time)
        out.append(torch.hypot(state.re, state.im))
    return torch.stack(out)


def amplitude_figure(
    examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    frequencies: np.ndarray | None,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """For each example (one column): the wave, and the SFM amplitude per frequency over time
    (mean over the D states, a heatmap frequency x time).

    Parameters
    ----------
    examples : [(name, times (T,), values (T,), amplitudes (T, D, K)), ...]
    frequencies : ndarray [shape=(K,)] or None
        Rad per unit of time, the heatmap's rows; ``None`` labels rows by index (A-SFM, whose
        frequencies move with the input).
    """
    cols = len(examples)
    fig = Figure(figsize=(5.0 * cols, 5.0), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False, gridspec_kw={"height_ratios": [1, 2]},
                        sharex="col")
    vmax = max(float(np.mean(a, axis=1).max()) for _, _, _, a in examples)
    image = None
    for col, (name, times, values, amps) in enumerate(examples):
        axes[0][col].plot(times, values, lw=0.8)
        axes[0][col].set_title(name)
        mean_amp = np.mean(amps, axis=1).T  # (K, T)
        k = mean_amp.shape[0]
        image = axes[1][col].imshow(
            mean_amp, aspect="auto", origin="lower", interpolation="nearest", vmin=0.0,
            vmax=vmax, extent=(float(times[0]), float(times[-1]), -0.5, k - 0.5), cmap="magma")
        axes[1][col].set_yticks(range(k))
        if frequencies is not None:
            axes[1][col].set_yticklabels([f"{w:.2f}" for w in frequencies], fontsize=7)
        axes[1][col].set_xlabel("time")
    axes[0][0].set_ylabel("value")
    axes[1][0].set_ylabel("frequency (rad / time unit)" if frequencies is not None
                          else "frequency channel k")
    if image is not None:
        fig.colorbar(image, ax=axes[1].tolist(), label="mean |S| over states")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
