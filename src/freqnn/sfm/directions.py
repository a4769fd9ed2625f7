"""Bidirectional layers and ``PackedSequence`` input, shared by the SFM layers and the baselines.

The conventions are ``nn.LSTM``'s: the backward direction reads each sequence from its last
valid step to its first (a padded sequence is reversed within its own length, as with packed
input), its outputs are put back in time order and concatenated after the forward direction's
on the last axis, and a ``PackedSequence`` in gives a ``PackedSequence`` out with the input's
batch sizes and sort order.

Timestamps (and the clocks of the baselines) are reflected for the backward direction, within
each sequence's span: its j-th step, which reads input step u = L - 1 - j, has the time
t_last - (t_u - t_first). The backward direction so sees its reversed stream on a time axis of
its own that starts where the forward one starts (t_first) and ends where it ends (t_last),
with the same intervals in reverse order: on the default axis (steps time + 1, time + 2, ...)
both directions see the same timestamps, and both end at each sequence's last time, the state's
``time``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..checks import describe, fail

__all__ = ["Reversal", "check_bidirectional", "pack_like", "unpack"]


def check_bidirectional(value: object) -> bool:
    """Validate a layer's ``bidirectional`` argument (a bool)."""
    if not isinstance(value, bool):
        fail("bidirectional", "a bool", repr(value), TypeError)
    return value


class Reversal:
    """Reverse every sequence of a time-major batch within its own length.

    Parameters
    ----------
    steps : int
        T, the padded length.
    lengths : Tensor [shape=(B,)] or None
        True lengths (None: every sequence has T steps, and reversing is a flip).
    mask : Tensor [shape=(T, B)] bool or None
        ``arange(T)[:, None] < lengths``, given with ``lengths``.

    Notes
    -----
    Reversing is its own inverse, so the same object puts the backward direction's outputs back
    in time order. Steps past a sequence's length stay where they are.
    """

    def __init__(self, steps: int | torch.SymInt, lengths: Tensor | None,
                 mask: Tensor | None) -> None:
        self.mask = mask
        self.index: Tensor | None = None
        self.last: Tensor | None = None
        if lengths is not None and mask is not None:
            t = torch.arange(steps, device=mask.device).unsqueeze(1)
            self.index = torch.where(mask, lengths.unsqueeze(0) - 1 - t, t)
            self.last = (lengths - 1).clamp(min=0).unsqueeze(0)

    def __call__(self, seq: Tensor) -> Tensor:
        """``seq`` (T, B, ...) with each sequence's valid steps in reverse order."""
        if self.index is None:
            return seq.flip(0)
        index = self.index.view(*self.index.shape, *(1,) * (seq.dim() - 2))
        # gather on the expanded index, not take_along_dim: export specialised T on that
        return seq.gather(0, index.expand_as(seq))

    def reflect(self, clock: Tensor) -> Tensor:
        """The backward direction's clock from the forward one's, (T, B) -> (T, B):
        t_last - (t_u - t_first) at its step j, u = L - 1 - j (see the module docstring)."""
        first = clock[:1]
        if self.last is None:
            return clock[-1:] - (clock.flip(0) - first)
        last = clock.gather(0, self.last)
        return torch.where(self.mask, last - (self(clock) - first), clock)


def unpack(x: object, lengths: object, batch_first: bool) -> tuple[object, object]:
    """A ``PackedSequence`` input as a padded batch (in the layer's layout) and its lengths;
    other input is returned as it is."""
    if not isinstance(x, PackedSequence):
        return x, lengths
    if lengths is not None:
        fail("lengths", "None with a PackedSequence input (it carries its lengths)",
             describe(lengths))
    return pad_packed_sequence(x, batch_first=batch_first)


def pack_like(out: Tensor, lengths: Tensor, like: PackedSequence, batch_first: bool
              ) -> PackedSequence:
    """The layer's padded output ``out`` packed as ``like``, the input: the same batch sizes and
    sort order (as ``nn.LSTM`` returns it)."""
    order = like.sorted_indices
    if order is not None:
        out = out.index_select(0 if batch_first else 1, order.to(out.device))
        lengths = lengths.index_select(0, order.to(lengths.device))
    data = pack_padded_sequence(out, lengths.cpu(), batch_first=batch_first).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
