"""Periodic waves sampled at irregular times: the signal-type task of the SFM paper (exp. 1).

Each sequence is one wave of a random type, period, amplitude and phase, observed at irregular
times; the task is to tell the type from the samples. Every draw comes from one
``numpy.random.Generator(PCG64(seed))``, so a seed gives the same data on every machine.

The wave at time t, with u = frac(t / period + phase) in [0, 1):

* ``square``:   amplitude if u < 1/2 else -amplitude
* ``sawtooth``: amplitude * (2 u - 1)               (rises linearly, drops at the period's end)
* ``sine``:     amplitude * sin(2 pi u)

plus ``offset`` and, when ``noise > 0``, Gaussian noise of standard deviation
``noise * amplitude``.

Ranges (defaults; every one is an argument, drawn uniformly unless noted)
--------------------------------------------------------------------------
* sampling: ``length`` = 500 samples; the gaps between consecutive times are uniform in
  ``gap`` = (0.2, 1.8) time units (mean 1: the sequence spans about 500 units); the first
  sample is at t = 0;
* ``period`` = (10, 100) time units, drawn log-uniformly (5 to 50 cycles per sequence, 2 to
  180 samples per cycle, so the fastest waves are sampled near their Nyquist limit);
* ``amplitude`` = (0.5, 2.0), ``phase`` uniform in [0, 1) periods, ``offset`` = (0, 0);
* ``types`` = ("square", "sawtooth"): the two classes of the authors' released data; add
  ``"sine"`` for three. Labels index ``types`` in the order given, balanced up to one sequence
  and shuffled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["WAVE_TYPES", "Waves", "generate_waves", "wave"]

WAVE_TYPES = ("square", "sawtooth", "sine")


class Waves(NamedTuple):
    """A batch of sampled waves.

    Attributes
    ----------
    values : ndarray [shape=(S, T)], float32
    times : ndarray [shape=(S, T)], float64, increasing along T, starting at 0
    labels : ndarray [shape=(S,)], int64, index into ``types``
    types : tuple of str
    period, amplitude, phase, offset : ndarray [shape=(S,)], float64
        The drawn parameters of each sequence.
    """

    values: np.ndarray
    times: np.ndarray
    labels: np.ndarray
    types: tuple[str, ...]
    period: np.ndarray
    amplitude: np.ndarray
    phase: np.ndarray
    offset: np.ndarray


def wave(kind: str, t: np.ndarray, period: float, amplitude: float = 1.0,
         phase: float = 0.0, offset: float = 0.0) -> np.ndarray:
    """Noise-free wave ``kind`` at times ``t`` (float64, same shape as ``t``)."""
    if kind not in WAVE_TYPES:
        raise ValueError(f"kind: expected one of {', '.join(WAVE_TYPES)}, got {kind!r}")
    u = np.mod(np.asarray(t, dtype=np.float64) / period + phase, 1.0)
    if kind == "square":
        shape = np.where(u < 0.5, 1.0, -1.0)
    elif kind == "sawtooth":
        shape = 2.0 * u - 1.0
    else:
        shape = np.sin(2.0 * math.pi * u)
    return offset + amplitude * shape


def _check_interval(value: object, name: str, positive: bool = True) -> tuple[float, float]:
    ok = isinstance(value, Sequence) and len(value) == 2
    if ok:
        lo, hi = (float(v) for v in value)
        ok = math.isfinite(lo) and math.isfinite(hi) and lo <= hi and (not positive or lo > 0)
    if not ok:
        kind = "positive " if positive else ""
        raise ValueError(f"{name}: expected a pair (low, high) of {kind}finite floats with "
                         f"low <= high, got {value!r}")
    return lo, hi


def generate_waves(
    n: int,
    *,
    types: Sequence[str] = ("square", "sawtooth"),
    length: int = 500,
    gap: tuple[float, float] = (0.2, 1.8),
    period: tuple[float, float] = (10.0, 100.0),
    amplitude: tuple[float, float] = (0.5, 2.0),
    offset: tuple[float, float] = (0.0, 0.0),
    noise: float = 0.0,
    seed: int = 0,
) -> Waves:
    """Draw ``n`` waves (see the module docstring for the model and the default ranges).

    Parameters
    ----------
    n : int
        Number of sequences S.
    types : sequence of {"square", "sawtooth", "sine"}
        The classes, distinct; label i is ``types[i]``.
    length : int
        Samples per sequence T.
    gap, period, amplitude, offset : (low, high)
        Ranges of the sampling gaps, periods (log-uniform), amplitudes and offsets.
    noise : float
        Standard deviation of additive Gaussian noise, as a fraction of the amplitude.
    seed : int
        Seed of the generator; equal arguments give equal waves.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length: expected an int >= 2, got {length!r}")
    types = tuple(types)
    if not types or len(set(types)) != len(types) or any(k not in WAVE_TYPES for k in types):
        raise ValueError(f"types: expected distinct names from {', '.join(WAVE_TYPES)}, "
                         f"got {types!r}")
    gap_lo, gap_hi = _check_interval(gap, "gap")
    per_lo, per_hi = _check_interval(period, "period")
    amp_lo, amp_hi = _check_interval(amplitude, "amplitude")
    off_lo, off_hi = _check_interval(offset, "offset", positive=False)
    if not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a finite float >= 0, got {noise!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")

    rng = np.random.Generator(np.random.PCG64(seed))
    labels = rng.permutation(np.arange(n) % len(types)).astype(np.int64)
    periods = np.exp(rng.uniform(math.log(per_lo), math.log(per_hi), n))
    amplitudes = rng.uniform(amp_lo, amp_hi, n)
    phases = rng.uniform(0.0, 1.0, n)
    offsets = rng.uniform(off_lo, off_hi, n)
    gaps = rng.uniform(gap_lo, gap_hi, (n, length - 1))
    times = np.zeros((n, length))
    times[:, 1:] = np.cumsum(gaps, axis=1)
    values = np.empty((n, length))
    for kind_index, kind in enumerate(types):
        rows = labels == kind_index
        values[rows] = wave(kind, times[rows], periods[rows, None], amplitudes[rows, None],
                            phases[rows, None], offsets[rows, None])
    if noise > 0:
        values += noise * amplitudes[:, None] * rng.standard_normal((n, length))
    return Waves(values.astype(np.float32), times, labels, types, periods, amplitudes, phases,
                 offsets)
