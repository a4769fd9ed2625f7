"""Frequency grids and phases for the state-frequency memory.

Frequencies are angular, in radians per unit of time (per step for the default time axis).
For a real input stream, frequency k and its alias 2*pi - k give conjugate memories with identical
amplitudes, and frequencies above pi alias (Nyquist), so the useful band is [0, pi]:

* ``"paper"``: omega_k = 2*pi*k/K, k = 0..K-1 (Hu & Qi 2017; about half of it is conjugate twins),
* ``"half"``: omega_k = pi*k/(K-1) (the band [0, pi] end to end, K = 1 gives the DC component),
* ``"dct"``: omega_k = (2k+1)*pi/(2K) (the DCT-II grid, strictly inside (0, pi)).

Phases ``omega * t`` are computed in float64 and reduced modulo 2*pi before they are cast to the
model's dtype: in float32 ``cos(omega * t)`` at t = 1e7 has lost all phase information.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_finite, check_floating, check_shape, fail

__all__ = ["GRIDS", "fold_frequency", "frequency_grid", "phase", "wrap_phase"]

TWO_PI = 2.0 * math.pi
GRIDS = ("paper", "half", "dct")


def frequency_grid(
    spec: str | Tensor, num_freqs: int, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """The K frequencies named by ``spec`` (a grid name or a tensor of shape (K,)).

    Returns
    -------
    Tensor [shape=(K,)], a new tensor of ``dtype``.
    """
    k = torch.arange(num_freqs, dtype=torch.float64)
    if isinstance(spec, Tensor):
        check_floating(spec, "frequencies")
        check_shape(spec, "frequencies", (num_freqs,), "(one frequency per num_freqs)")
        check_finite(spec, "frequencies")
        grid = spec.detach().to(torch.float64).cpu()
    elif spec == "paper":
        grid = TWO_PI * k / num_freqs
    elif spec == "half":
        grid = math.pi * k / (num_freqs - 1) if num_freqs > 1 else torch.zeros(1, dtype=k.dtype)
    elif spec == "dct":
        grid = (2 * k + 1) * math.pi / (2 * num_freqs)
    else:
        fail("frequencies", f"one of {GRIDS} or a tensor of shape ({num_freqs},)", repr(spec))
    return grid.to(dtype)


def wrap_phase(phi: Tensor) -> Tensor:
    """Reduce a phase into [0, 2*pi); the gradient passes through unchanged."""
    return phi - TWO_PI * torch.floor(phi.detach() / TWO_PI)


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
