"""The SFM equations of one step (Hu & Qi, ICML 2017), named as in ``docs/sfm.md``.

Every affine map of x_t and z_{t-1} is fused into two matrices (``weight_ih``, ``weight_hh``)
whose rows are, in order::

    ste (D) | g (D) | i (D) | fre (K) | o (K*M) | omega (K, A-SFM only)

so one GEMM gives all pre-activations ``W_* z_{t-1} + V_* x_t + b_*``. The maps of the amplitude
are fused into ``weight_a`` of shape (K, 2M, D) = [U_o ; W_z] stacked along the output axis.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..frequencies import wrap_phase

__all__ = ["Gates", "advance_phase", "amplitude", "memory_update", "output", "split_gates"]


class Gates(NamedTuple):
    """Pre-activations of one step, split from the fused projection.

    Shapes: ``ste, g, i`` (B, D); ``fre`` (B, K); ``o`` (B, K, M); ``omega`` (B, K) or None.
    """

    ste: Tensor
    g: Tensor
    i: Tensor
    fre: Tensor
    o: Tensor
    omega: Tensor | None


def split_gates(pre: Tensor, state_size: int, num_freqs: int, hidden_size: int) -> Gates:
    """Split fused pre-activations (..., G) into the named gates; A-SFM has K extra rows."""
    D, K, M = state_size, num_freqs, hidden_size
    base = 3 * D + K + K * M
    ste, g, i, fre, o = pre[..., :base].split([D, D, D, K, K * M], dim=-1)
    omega = pre[..., base:] if pre.shape[-1] > base else None
    return Gates(ste, g, i, fre, o.unflatten(-1, (K, M)), omega)


def amplitude(re: Tensor, im: Tensor) -> Tensor:
    """A = |S| = sqrt(Re^2 + Im^2), with a zero (sub)gradient where S = 0.

    The plain sqrt has an infinite derivative at 0 (NaN gradients for an all-zero input); the
    double ``where`` keeps the value exact and the gradient finite.
    """
    sq = re * re + im * im
    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(sq))


def memory_update(
    gates: Gates, re: Tensor, im: Tensor, cos_t: Tensor, sin_t: Tensor, normalised: bool = False
) -> tuple[Tensor, Tensor]:
    """Forget and write the state-frequency memory.

    f_ste = sigmoid(ste), f_fre = sigmoid(fre), f_t = outer(f_ste, f_fre),
    Re S_t = f_t * Re S_{t-1} + (g_t * i_t) outer cos(omega t), and likewise Im S_t with sin
    (the paper's memory). With ``normalised`` the write is weighted by (1 - f_t):
    Re S_t = f_t * Re S_{t-1} + (1 - f_t) * (g_t * i_t) outer cos(omega t), an exponentially
    weighted average, so |S_t| <= 1 whatever the window (docs/sfm.md, "Training SFM").

    Parameters
    ----------
    gates : Gates, pre-activations of the step
    re, im : Tensor [shape=(B, D, K)], S_{t-1}
    cos_t, sin_t : Tensor [shape=(B, K) or (K,)], cos and sin of the phase at step t
    normalised : bool, the normalised memory (``memory="normalised"``) instead of the paper's
    """
    f_ste = torch.sigmoid(gates.ste)
    f_fre = torch.sigmoid(gates.fre)
    f_t = f_ste.unsqueeze(-1) * f_fre.unsqueeze(-2)
    write = (torch.sigmoid(gates.g) * torch.tanh(gates.i)).unsqueeze(-1)
    if normalised:
        write = write * (1 - f_t)
    re = f_t * re + write * cos_t.unsqueeze(-2)
    im = f_t * im + write * sin_t.unsqueeze(-2)
    return re, im


def output(
    gates: Gates, A: Tensor, weight_a: Tensor, b_z: Tensor | None, mean: bool = False
) -> Tensor:
    """z_t = sum_k o_t^k * tanh(W_z^k A_t^k + b_z^k), o_t^k = sigmoid(U_o^k A_t^k + pre_o^k);
    with ``mean`` (``readout="mean"``) the mean over k instead of the sum, so |z_t| <= 1.

    Parameters
    ----------
    gates : Gates, ``gates.o`` (B, K, M) holds W_o^k z_{t-1} + V_o^k x_t + b_o^k
    A : Tensor [shape=(B, D, K)], amplitudes
    weight_a : Tensor [shape=(K, 2M, D)], [U_o ; W_z]
    b_z : Tensor [shape=(K, M)] or None

    Returns
    -------
    Tensor [shape=(B, M)]
    """
    M = gates.o.shape[-1]
    # (K, B, D) @ (K, D, 2M) -> (K, B, 2M): one batched GEMM for U_o A and W_z A
    proj = torch.bmm(A.permute(2, 0, 1), weight_a.transpose(1, 2)).transpose(0, 1)
    o_t = torch.sigmoid(proj[..., :M] + gates.o)
    cand = proj[..., M:] if b_z is None else proj[..., M:] + b_z
    z = (o_t * torch.tanh(cand)).sum(dim=-2)
    return z / gates.o.shape[-2] if mean else z


def advance_phase(phase: Tensor, omega_t: Tensor, dt: Tensor) -> Tensor:
    """A-SFM phase rule: phi_t = phi_{t-1} + omega_t * (t - t_prev), reduced modulo 2*pi."""
    return wrap_phase(phase + omega_t * dt.unsqueeze(-1))
