"""What an SFM layer computes inside: gate activations, amplitudes and read-out pre-activations.

:func:`trace` runs the reference equations of :mod:`freqnn.sfm.step` on a batch (no gradients)
and returns, for every layer, the quantities a training diagnosis needs (``docs/sfm.md``,
"Training SFM"): how open the forget gates are (the memory's window), how large |S| grows, and
whether the read-out tanh(W_z A + b_z) and the output gates are saturated.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..checks import check_lengths, check_sequence, check_step_times
from .layer import SFM
from .state import SFMState, zero_state
from .step import Gates

__all__ = ["LayerTrace", "trace"]


class LayerTrace(NamedTuple):
    """One layer's activations at every step of a batch (time-major, padded steps included).

    Shapes: ``f_ste``, ``g``, ``i`` (T, B, D); ``f_fre`` (T, B, K); ``o`` (T, B, K, M), the
    output gates o_t^k; ``amplitude`` (T, B, D, K), A_t = |S_t|; ``readout`` (T, B, K, M), the
    pre-activations W_z^k A_t^k + b_z^k of the read-out tanh; ``omega`` (T, B, K), A-SFM's
    omega_t (None for SFM); ``frequencies`` (K,), the layer's omega (SFM) or b_omega (A-SFM).
    """

    f_ste: Tensor
    f_fre: Tensor
    g: Tensor
    i: Tensor
    o: Tensor
    amplitude: Tensor
    readout: Tensor
    omega: Tensor | None
    frequencies: Tensor


def _layer_trace(cell: torch.nn.Module, steps: list[tuple[Gates, Tensor]]) -> LayerTrace:
    gates = Gates(*(None if parts[0] is None else torch.stack(parts)
                    for parts in zip(*(g for g, _ in steps), strict=True)))
    A = torch.stack([a for _, a in steps])  # (T, B, D, K)
    M = cell.hidden_size
    # (T, B, K, D) @ (K, D, 2M): U_o A and W_z A for every step at once
    proj = torch.einsum("tbdk,kmd->tbkm", A, cell.weight_a)
    readout = proj[..., M:] if cell.b_z is None else proj[..., M:] + cell.b_z
    return LayerTrace(
        f_ste=torch.sigmoid(gates.ste),
        f_fre=torch.sigmoid(gates.fre),
        g=torch.sigmoid(gates.g),
        i=torch.tanh(gates.i),
        o=torch.sigmoid(proj[..., :M] + gates.o),
        amplitude=A,
        readout=readout,
        omega=gates.omega,
        frequencies=cell.frequencies().detach().clone(),
    )


@torch.no_grad()
def trace(
    sfm: SFM, x: Tensor, *, times: Tensor | None = None, lengths: Tensor | None = None
) -> list[LayerTrace]:
    """The activations of every layer of ``sfm`` on the batch ``x``, from a zero state.

    Parameters
    ----------
    sfm : SFM or AdaptiveSFM
    x : Tensor [shape=(T, B, N), or (B, T, N) with ``sfm.batch_first``]
    times : Tensor [shape=(T,) or (B, T)] or None
        As in :meth:`SFM.forward` (default: steps 1, 2, ..., T).
    lengths : Tensor [shape=(B,)] or None
        True lengths of a padded batch.

    Returns
    -------
    list of LayerTrace, one per layer (dropout between layers is not applied).
    """
    first = sfm.cells[0]
    x = check_sequence(x, sfm.input_size, sfm.batch_first, first.weight_ih.dtype)
    if x.dim() != 3:
        x = x.unsqueeze(1)
    elif sfm.batch_first:
        x = x.transpose(0, 1)
    steps, batch = x.shape[0], x.shape[1]
    times = (torch.arange(1, steps + 1, dtype=torch.float64, device=x.device)
             .unsqueeze(1).expand(steps, batch) if times is None
             else check_step_times(times, steps, batch, x.device))
    mask = None
    if lengths is not None:
        lengths = check_lengths(lengths, steps, batch, x.device)
        mask = torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)
    out, layer_input = [], x
    for cell in sfm.cells:
        phase0 = cell.initial_phase()
        state: SFMState = zero_state((), (batch,), sfm.hidden_size, sfm.state_size,
                                     sfm.num_freqs, sfm.adaptive, dtype=x.dtype,
                                     device=x.device, phase0=phase0)
        record: list[tuple[Gates, Tensor]] = []
        layer_input, _ = cell.scan(cell.input_projection(layer_input), state, times, mask,
                                   record=record)
        out.append(_layer_trace(cell, record))
    return out
