"""The time loop of the step-by-step recurrences, and what it becomes under ``torch.export``.

In eager mode (and under ``torch.jit.trace``) the loop is a Python loop over the steps. Under
``torch.export`` (and the dynamo ONNX exporter, which exports first) it is PyTorch's scan
higher-order operator, ``torch._higher_order_ops.scan``: one node whose body is one step, so the
exported program keeps the number of steps T symbolic (``Dim("T")``), is made of PyTorch's
operators only (it loads and runs where freqnn is not installed, and AOTInductor compiles it),
and the ONNX exporter translates it into one ``Scan`` node that runs at any length.

The SFM / A-SFM layers run their registered operator (``freqnn::sfm_scan``) in eager mode and
under ``torch.compile``; under export they run their step equations here instead
(``SFMCell.scan``), as do StockSFM and the baselines, whose eager path is this loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .state import where_valid

__all__ = ["Step", "exporting", "portable", "run_steps"]

#: one step: ``step(carry, x_t) -> (output_t, carry)``; ``carry`` a tuple of (B, ...) tensors,
#: ``x_t`` the step's slices of the scanned inputs, output_t (B, H)
Step = Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...]]]


def exporting() -> bool:
    """Whether ``torch.export`` (or an exporter built on it) is tracing: the loop is then a scan."""
    return torch.compiler.is_exporting()


def portable(state: tuple) -> tuple:
    """A layer's returned state: as it is, but a plain tuple of its fields under export.

    The output specification of an exported program names the types of its outputs, and
    ``torch.export.load`` must find them: a freqnn state type would make the saved program
    loadable only where freqnn is imported (and the baselines' named tuples cannot be saved
    at all). A plain tuple (``z, re, im, time, phase = state``, as ``nn.LSTM``'s ``(h, c)``)
    names none; the layers accept it back as a state.
    """
    return tuple(state) if exporting() else state


def _masked(step: Step) -> Step:
    """``step`` on inputs whose last slice is the step's validity (B,) bool: a padded step
    leaves the carry as it is and outputs zeros."""

    def masked(carry: tuple[Tensor, ...], x_t: tuple[Tensor, ...]
               ) -> tuple[Tensor, tuple[Tensor, ...]]:
        *inputs, valid = x_t
        out, new = step(carry, tuple(inputs))
        new = where_valid(valid, new, carry)
        return out * valid.unsqueeze(1).to(out.dtype), new

    return masked


def run_steps(
    step: Step, carry: tuple[Tensor, ...], xs: tuple[Tensor, ...], mask: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``step`` over the leading (time) axis of ``xs``.

    Parameters
    ----------
    step : Step
        One time step, ``step(carry, x_t) -> (output_t, carry)``.
    carry : tuple of Tensor [shape=(B, ...)]
        The initial carry.
    xs : tuple of Tensor [shape=(T, B, ...)]
        The inputs of every step; step t gets their slices t.
    mask : Tensor [shape=(T, B)] bool or None
        False at padded steps: they leave the carry as it is and output zeros.

    Returns
    -------
    outputs : Tensor [shape=(T, B, H)]
    carry : tuple of Tensor, after the last step
    """
    if mask is not None:
        step, xs = _masked(step), (*xs, mask)
    if exporting():
        return _scan(step, carry, xs)
    outputs = []
    # unbind, not x[t]: the backward of T selections would add T full-size gradients
    for x_t in zip(*(x.unbind(0) for x in xs), strict=True):
        out, carry = step(carry, x_t)
        outputs.append(out)
    return torch.stack(outputs), carry


def _scan(step: Step, carry: tuple[Tensor, ...], xs: tuple[Tensor, ...]
          ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The loop as torch's scan operator (T stays symbolic)."""
    from torch._higher_order_ops import scan  # a prototype API: imported only where used

    def combine(carry: list[Tensor], x_t: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        out, new = step(tuple(carry), tuple(x_t))
        # the scan's outputs may not alias one another (z_t is both output and carry), and a
        # carry must keep the strides it came with (a slice of the gates would not)
        return [c.contiguous() for c in new], out.clone()

    final, outputs = scan(combine, [c.contiguous() for c in carry], list(xs))
    return outputs, tuple(final)
