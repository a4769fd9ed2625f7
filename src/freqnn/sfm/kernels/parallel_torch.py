"""ParallelSFM's block in PyTorch operations: the algorithm of the layer on every device and
dtype, the fused CPU operator's fallback, and the reference its tests and self-test compare with.

The gates of a :class:`freqnn.sfm.parallel.ParallelSFMCell` read x_t only, so its memory is a
diagonal linear recurrence; :func:`chunked_scan` solves it in chunks (the error analysis is in
:mod:`freqnn.sfm.parallel`), and :func:`block_torch` runs one block of steps: gates, scan,
amplitude and read-out. The equations are those of :mod:`freqnn.sfm.step`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..export import exporting, run_steps
from ..step import amplitude, memory_update, output, split_gates

__all__ = ["block_torch", "chunked_scan"]


def chunked_scan(
    log_forget: Tensor, inputs: tuple[Tensor, ...], start: tuple[Tensor, ...], chunk: int
) -> tuple[Tensor, ...]:
    """The linear recurrence h_t = exp(log_forget_t) * h_{t-1} + u_t over the first axis.

    Several sequences ``inputs`` (here Re and Im of the write term) share the forget factors.
    Time is cut into chunks of ``chunk`` steps; within each chunk, all chunks at once, the
    recurrence runs from zero and the cumulative forget relative to the chunk start,
    P = exp(cumsum(log_forget)) in [0, 1], is formed; then the chunks are joined in order:
    h_t = local_t + P_t * h_{chunk start - 1}. Python steps: ``chunk`` + L / ``chunk``.

    Under ``torch.export`` (L symbolic) the sequence is padded to whole chunks with steps that
    change nothing (log F = 0, u = 0) and the join over the chunks is torch's scan operator
    (:func:`freqnn.sfm.export.run_steps`); the arithmetic is the same.

    Parameters
    ----------
    log_forget : Tensor [shape=(L, ...)]
        log F_t <= 0, L a multiple of ``chunk`` (any L under export).
    inputs : tuple of Tensor [shape=(L, ...)]
        u_t of each sequence.
    start : tuple of Tensor [shape=(...)]
        h_0 of each sequence.
    chunk : int
        Steps per chunk, c >= 1.

    Returns
    -------
    tuple of Tensor [shape=(L, ...)], h_1 .. h_L of each sequence.
    """
    steps = log_forget.shape[0]
    symbolic = exporting()
    # under export at least 2 chunks for every T (1 or 2 of them padding): with a count that
    # could be 1, the shape checks of the chunked tensors guard n == 1 and so fix T
    n = steps // chunk + 2 if symbolic else steps // chunk
    # (n, c, ...); under export padded with steps that hold the state
    log_f, *u_chunks = (_chunks(t, n, chunk) if symbolic else t.unflatten(0, (n, chunk))
                        for t in (log_forget, *inputs))
    # unbind, not indexing: the backward of c selections would add c full-size gradients
    forget = torch.exp(log_f).unbind(1)
    decay = torch.exp(torch.cumsum(log_f, dim=1))  # P relative to the chunk start, in [0, 1]
    decay_end = () if symbolic else decay[:, -1].unbind(0)  # (n symbolic: no unbind)
    results = []
    for u, h0 in zip(u_chunks, start, strict=True):
        u_steps = u.unbind(1)
        h = u_steps[0]
        local = [h]
        for i in range(1, chunk):
            h = torch.addcmul(u_steps[i], forget[i], h)
            local.append(h)
        if symbolic:
            starts = _join_scan(decay[:, -1], h, h0)
        else:
            carry, start_list = h0, []
            for p_end, h_end in zip(decay_end, h.unbind(0), strict=True):
                start_list.append(carry)
                carry = torch.addcmul(h_end, p_end, carry)
            starts = torch.stack(start_list)
        joined = torch.addcmul(torch.stack(local, 1), decay, starts.unsqueeze(1))
        if symbolic:  # back to (L, ...) by indexing: a view would guard on n == 1
            t = torch.arange(steps, device=joined.device)
            results.append(joined[t // chunk, t % chunk])
        else:
            results.append(joined.flatten(0, 1))
    return tuple(results)


def _chunks(t: Tensor, n: int | torch.SymInt, chunk: int) -> Tensor:
    """``t`` (L, ...) as (n, chunk, ...), n * chunk >= L, the steps past L zero. An indexing
    of the last step, masked, not a cat of zeros and a view: export guarded on their sizes
    (the padding 0 or 1, n == 1) and so fixed T."""
    starts = torch.arange(n, device=t.device).unsqueeze(1) * chunk
    steps = starts + torch.arange(chunk, device=t.device)  # (n, c), no view of a flat range
    last = t.shape[0] - 1
    kept = (steps <= last).to(t.dtype)[(..., *(None,) * (t.dim() - 1))]
    return t[steps.clamp(max=last)] * kept


def _join_scan(p_end: Tensor, h_end: Tensor, h0: Tensor) -> Tensor:
    """The chunks' starting states (n, ...) as a scan over the n chunks: the state before
    chunk j, carry_j = h_end_{j-1} + P_end_{j-1} * carry_{j-1} from carry_0 = h0."""

    def join(carry: tuple[Tensor, ...], x: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor]]:
        p, h = x
        return carry[0], (torch.addcmul(h, p, carry[0]),)

    starts, _ = run_steps(join, (h0,), (p_end, h_end))
    return starts


def block_torch(
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    valid: Tensor | None,
    re: Tensor,
    im: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """L steps of a layer in PyTorch operations (any device and dtype; the reference of the
    fused kernel): outputs (L, B, M) and the final Re S, Im S (B, D, K) from the gate
    pre-activations ``gx`` (L, B, G), the phases' ``cos`` and ``sin`` (L, B, K), ``valid``
    (L, B) (0 at padded steps) or None, and the memory (re, im); the scan in chunks of
    ``chunk`` steps (L a multiple of it)."""
    D, K = re.shape[-2:]
    M = weight_a.shape[1] // 2
    gates = split_gates(gx, D, K, M)
    # log F_t = log f_ste + log f_fre: F_t of memory_update, in log space for the products
    log_forget = F.logsigmoid(gates.ste).unsqueeze(-1) + F.logsigmoid(gates.fre).unsqueeze(-2)
    # memory_update from S_{t-1} = 0 is the write term (g_t * i_t) outer e^{j phi_t}
    zero = gx.new_zeros(())
    write_re, write_im = memory_update(gates, zero, zero, cos, sin)
    if valid is not None:  # padded steps: F = 1 and no write, the memory holds still
        memory_valid = valid[..., None, None]
        log_forget = log_forget * memory_valid
        write_re, write_im = write_re * memory_valid, write_im * memory_valid
    re_all, im_all = chunked_scan(log_forget, (write_re, write_im), (re, im), chunk)
    steps, batch = gx.shape[:2]
    z = output(
        gates._replace(o=gates.o.flatten(0, 1)),
        amplitude(re_all, im_all).flatten(0, 1),
        weight_a,
        b_z,
    ).unflatten(0, (steps, batch))
    if valid is not None:
        z = z * valid.unsqueeze(-1)
    return z, re_all[-1], im_all[-1]
