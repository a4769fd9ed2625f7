"""A bidirectional layer computed by hand from one-directional layers, one sequence at a time.

The definition the layers must meet (``nn.LSTM``'s, and docs/sfm.md "Interface"): the forward
direction reads a sequence's valid steps, the backward direction reads them reversed, on the
timestamps reflected within the sequence (t_last - (t_u - t_first)), and its outputs are put
back in time order; layer l + 1 reads [forward, backward].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def reflect(times: Tensor) -> Tensor:
    """The backward direction's timestamps of one sequence's (n,) timestamps."""
    return times[-1] - (times.flip(0) - times[0])


def by_hand(
    bi: nn.Module,
    make_one: Callable[[int], nn.Module],
    x: Tensor,
    state: tuple,
    lengths: Tensor,
    clock: str,
    times: Tensor | None = None,
) -> tuple[Tensor, tuple]:
    """Outputs (T, B, 2H) and state of ``bi`` (time-major, bidirectional) by hand.

    ``make_one(input_size)`` builds a one-layer, one-directional model of the same kind;
    ``state``'s fields are per layer (2L, B, ...), or None, except the per-sequence ``clock``
    (B,), the state's time; ``times`` is (B, T) or None (the default time axis).
    """
    T, B, _ = x.shape
    directions = (bi.cells, bi.cells_reverse)
    out = x.new_zeros(T, B, 2 * bi.hidden_size)
    fields = [None if f is None else f.clone() for f in state]
    per_layer = [name != clock and f is not None
                 for name, f in zip(state._fields, state, strict=True)]
    for b in range(B):
        n = int(lengths[b])
        if n == 0:
            continue  # no step: the state stays, the output is zero
        inputs = x[:n, b]
        for layer in range(bi.num_layers):
            outputs = []
            for d, cells in enumerate(directions):
                k = 2 * layer + d
                cell = cells[layer]
                one = make_one(inputs.shape[-1])
                one.cells[0].load_state_dict(cell.state_dict())
                start = type(state)(*(f[k : k + 1, b] if layered else None if f is None else f[b]
                                      for f, layered in zip(state, per_layer, strict=True)))
                kw = {}
                if times is not None:
                    kw["times"] = times[b, :n] if d == 0 else reflect(times[b, :n])
                seq = inputs if d == 0 else inputs.flip(0)
                o, final = one(seq, start, **kw)
                outputs.append(o if d == 0 else o.flip(0))
                for i, value in enumerate(final):
                    if per_layer[i]:
                        fields[i][k, b] = value[0]
                    elif value is not None and d == 0:  # the time, clock: the forward's
                        fields[i][b] = value
            inputs = torch.cat(outputs, dim=-1)
        out[:n, b] = inputs
    return out, type(state)(*fields)
