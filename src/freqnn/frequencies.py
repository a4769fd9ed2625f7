"""Frequency grids and phases for the state-frequency memory.

Frequencies are angular, in radians per unit of time (per step for the default time axis).
For a real input stream, frequency k and its alias 2*pi - k give conjugate memories with identical
amplitudes, and frequencies above pi alias (Nyquist), so the useful band is [0, pi]:

* ``"paper"``: omega_k = 2*pi*k/K, k = 0..K-1 (Hu & Qi 2017; about half of it is conjugate twins),
* ``"half"``: omega_k = pi*k/(K-1) (the band [0, pi] end to end, K = 1 gives the DC component),
* ``"dct"``: omega_k = (2k+1)*pi/(2K) (the DCT-II grid, strictly inside (0, pi)),
* ``"log"``: omega_k = 2*pi/P_k with periods P_k spaced geometrically from ``max_period`` down
  to ``min_period`` (in units of time): a grid built from the time scale of the data, e.g.
  ``frequency_grid("log", 8, min_period=10, max_period=100)`` for waves of period 10 to 100.

The first three are fixed by K alone and put omega_k of order 1 rad per unit of time, which suits
data whose interesting periods are a few steps long; for slow data (periods of tens or hundreds
of time units) most of them lie far above the fundamentals, and the ``"log"`` grid puts them
where the data's periods are.

Phases ``omega * t`` are computed in float64 and reduced modulo 2*pi before they are cast to the
model's dtype: in float32 ``cos(omega * t)`` at t = 1e7 has lost all phase information.

Frequencies are bounded by [`MAX_FREQUENCY`][freqnn.frequencies.MAX_FREQUENCY] = 2**53 in magnitude:
with timestamps of
magnitude at most 2**53 (``freqnn.checks.MAX_TIME``), every phase ``omega * t`` is then
finite (at most 2**106); ``frequencies=torch.full((3,), 1e308)`` made every output NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import MAX_TIME, check_finite, check_floating, check_range, check_shape, fail

__all__ = ["GRIDS", "MAX_FREQUENCY", "fold_frequency", "frequency_grid", "phase", "wrap_phase"]

TWO_PI = 2.0 * math.pi
GRIDS = ("paper", "half", "dct", "log")
#: The largest accepted frequency magnitude, 2**53 rad per unit of time: with |t| <= 2**53 every
#: phase omega * t stays finite (at most 2**106) in float64 and float32.
MAX_FREQUENCY = MAX_TIME
#: The shortest period of the 'log' grid, 2*pi / MAX_FREQUENCY (about 7e-16 units of time).
MIN_PERIOD = TWO_PI / MAX_FREQUENCY


def frequency_grid(
    spec: str | Tensor,
    num_freqs: int,
    *,
    min_period: float | None = None,
    max_period: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The K frequencies named by ``spec`` (a grid name of [`GRIDS`][freqnn.frequencies.GRIDS] or a
    tensor (K,)).

    Parameters
    ----------
    spec : str or Tensor
        ``"paper"``, ``"half"``, ``"dct"``, ``"log"`` (see the module docstring), or the
        frequencies themselves [shape=(K,)], in radians per unit of time.
    num_freqs : int
        K.
    min_period, max_period : float, optional
        ``"log"`` only, and required there: the shortest and longest period of the grid, in
        units of time, with ``0 < min_period < max_period`` (equal when K = 1, whose single
        period is their geometric mean). omega_k = 2*pi / P_k with
        P_k = max_period * (min_period / max_period) ** (k / (K - 1)), so omega increases with k
        from 2*pi / max_period to 2*pi / min_period. With one sample per unit of time, periods
        below 2 alias (omega > pi); the grid does not know the sampling, so that is not checked.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    Tensor [shape=(K,)], a new tensor of ``dtype``.

    Examples
    --------
    >>> frequency_grid("log", 3, min_period=10.0, max_period=1000.0)
    tensor([0.0063, 0.0628, 0.6283], dtype=torch.float64)
    """
    if isinstance(num_freqs, bool) or not isinstance(num_freqs, int) or num_freqs < 1:
        fail("num_freqs", "an int >= 1", repr(num_freqs))
    if not (isinstance(spec, str) and spec == "log"):
        for name, value in (("min_period", min_period), ("max_period", max_period)):
            if value is not None:
                fail(name, "None (periods define only the 'log' grid)",
                     f"{value!r} with frequencies={spec if isinstance(spec, str) else 'a tensor'}")
    k = torch.arange(num_freqs, dtype=torch.float64)
    if isinstance(spec, Tensor):
        check_floating(spec, "frequencies")
        check_shape(spec, "frequencies", (num_freqs,), "(one frequency per num_freqs)")
        check_finite(spec, "frequencies")
        check_range(spec, "frequencies", -MAX_FREQUENCY, MAX_FREQUENCY)
        grid = spec.detach().to(torch.float64).cpu()
    elif spec == "paper":
        grid = TWO_PI * k / num_freqs
    elif spec == "half":
        grid = math.pi * k / (num_freqs - 1) if num_freqs > 1 else torch.zeros(1, dtype=k.dtype)
    elif spec == "dct":
        grid = (2 * k + 1) * math.pi / (2 * num_freqs)
    elif spec == "log":
        grid = TWO_PI / _log_periods(num_freqs, min_period, max_period)
    else:
        fail("frequencies", f"one of {GRIDS} or a tensor of shape ({num_freqs},)", repr(spec))
    return grid.to(dtype)


def _log_periods(num_freqs: int, min_period: float | None, max_period: float | None) -> Tensor:
    """Periods from ``max_period`` down to ``min_period``, geometrically spaced, (K,) float64."""
    for name, value in (("min_period", min_period), ("max_period", max_period)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            fail(name, "a finite period > 0 (in units of time) for the 'log' grid; build it with "
                 "freqnn.frequency_grid('log', K, min_period=..., max_period=...) and pass the "
                 "tensor as frequencies=", repr(value))
    if min_period < MIN_PERIOD:  # type: ignore[operator]
        fail("min_period", f"a period >= 2*pi/2**53 = {MIN_PERIOD:.4g} (frequencies 2*pi/P at "
             "most 2**53, so that phases stay finite)", repr(min_period))
    if num_freqs == 1:
        if max_period < min_period:
            fail("max_period", f">= min_period = {min_period}", repr(max_period))
        return torch.tensor([math.sqrt(min_period * max_period)], dtype=torch.float64)
    if not max_period > min_period:
        fail("max_period", f"> min_period = {min_period} (K = {num_freqs} distinct periods)",
             repr(max_period))
    k = torch.arange(num_freqs, dtype=torch.float64)
    periods = max_period * (min_period / max_period) ** (k / (num_freqs - 1))
    if not bool((periods >= MIN_PERIOD).all()):  # min_period / max_period underflowed
        fail("max_period", f"a period whose ratio to min_period = {min_period} does not "
             "underflow float64", repr(max_period))
    return periods


def wrap_phase(phi: Tensor) -> Tensor:
    """Reduce a phase into [0, 2*pi) exactly; the gradient passes through unchanged.

    The remainder of ``phi`` by the float ``TWO_PI`` is exact (``fmod``), the same
    reduction as the compiled kernel's (``cpu/sfm_math.h``): ``phi - TWO_PI * floor(phi /
    TWO_PI)`` rounds the product, an error of up to half an ulp of ``phi`` (0.06 rad at
    ``phi = 1e15``), and a compiler that fuses it into one multiply-add does not round it, so
    paths disagreed at large times.
    """
    rest = torch.fmod(phi.detach(), TWO_PI)
    rest = torch.where(rest < 0, rest + TWO_PI, rest)
    return rest + (phi - phi.detach())  # value rest exactly, gradient 1


def fold_frequency(omega: Tensor) -> Tensor:
    """The alias of ``omega`` in [0, pi] (a triangle wave of period 2*pi).

    For the amplitude-only SFM output, ``omega`` and its fold give identical outputs (the memory
    of 2*pi - w is the conjugate of the memory of w), so learnable frequencies are stored
    unconstrained and used folded. The slope is +1 on [0, pi] (inclusive) and -1 on (pi, 2*pi),
    so a frequency initialised exactly at 0 or pi still receives a gradient.
    """
    u = wrap_phase(omega)
    return torch.where(u <= math.pi, u, TWO_PI - u)


def phase(omega: Tensor, t: Tensor) -> Tensor:
    """Phase ``omega * t`` reduced modulo 2*pi, computed in float64, returned in omega's dtype.

    Parameters
    ----------
    omega : Tensor [shape=(K,)]
    t : Tensor [shape=(...)], any real dtype (float64 keeps large times exact)

    Returns
    -------
    Tensor [shape=(..., K)]
    """
    phi = omega.to(torch.float64) * t.to(torch.float64).unsqueeze(-1)
    return wrap_phase(phi).to(omega.dtype)
