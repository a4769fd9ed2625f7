"""The fast SFM / A-SFM recurrence: a registered operator with a hand-written backward.

The reference path (:meth:`freqnn.SFMCell.scan` with ``use_path("reference")``) steps the
equations of :mod:`freqnn.sfm.step` and lets autograd record a few dozen small operations per
step; on a CPU the recurrence is then dominated by per-operation overhead, not arithmetic. Here one
layer's whole time loop is one operator, ``torch.ops.freqnn.sfm_scan`` (:mod:`.op`): its forward
saves only what the backward needs and its backward runs the recurrence in reverse by hand.

Modules:

* :mod:`.path`: the choice of implementation (``use_path``, ``set_path``, ``FREQNN_SFM_PATH``);
* :mod:`.op`: the operators, their fake implementations and autograd formula;
* :mod:`.pytorch`: the algorithm in PyTorch operations (any device and dtype);
* :mod:`.compiled`, :mod:`.abi`, :mod:`.build`, ``cpu/sfm_scan.cpp``: the compiled CPU loop, its
  calling convention, and its build / verification / cache.

:func:`scan` is what the layers call. The phases of an SFM being trained are computed as in the
reference (float64 ``omega * t`` reduced modulo 2*pi, then cast) outside the op, so the gradient
to learnable frequencies flows through autograd; in inference the op computes them itself.
Under ONNX export the layers take the reference path: its plain operations export as standard
ONNX operators (the loop unrolled at the exported length).

Limitations: first derivatives only (``create_graph=True`` raises; use the reference path).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...checks import fail
from ...frequencies import phase
from ..state import SFMState, last_time
from . import op
from .build import compiled_available, compiled_status, kernel_cache_dir
from .compiled import empty_cache
from .path import PATHS, get_path, set_path, use_path, use_reference

__all__ = [
    "PATHS",
    "compiled_available",
    "compiled_status",
    "empty_cache",
    "get_path",
    "kernel_cache_dir",
    "scan",
    "set_path",
    "use_path",
    "use_reference",
]


def scan(
    cell: torch.nn.Module,
    gx: Tensor,
    state: SFMState,
    times: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, SFMState] | None:
    """The recurrence of ``cell`` over a sequence on the op (see :meth:`SFMCell.scan`).

    Parameters
    ----------
    cell : SFMCell or AdaptiveSFMCell
    gx : Tensor [shape=(T, B, G)], input projections from ``cell.input_projection``
    state : SFMState, initial state of this layer (no layer dimension)
    times : Tensor [shape=(T, B)], float64 timestamps
    mask : Tensor [shape=(T, B)] bool or None, False at padded steps

    Returns
    -------
    (output, state) or None
        output (T, B, M) and the state at each sequence's last valid step; None where the op
        does not apply (the reference path is selected, ONNX export, or an A-SFM differentiated
        with respect to ``times``): the caller runs the reference.
    """
    path = get_path()
    if path == "reference":
        return None
    if (torch.compiler.is_compiling() or torch.jit.is_tracing()) and torch.onnx.is_in_onnx_export():
        return None  # both ONNX exporters trace (and is_in_onnx_export costs microseconds)
    grad_mode = torch.is_grad_enabled()
    if cell.adaptive and times.requires_grad and grad_mode:
        return None  # d/d times of the A-SFM phase increments: only the reference has it
    weight = cell.weight_hh
    if path == "compiled" and not (
        gx.device.type == "cpu" and weight.dtype in (torch.float32, torch.float64)
    ):
        fail(
            "path",
            "'compiled' only for CPU float32/float64 modules",
            f"{weight.dtype} on {gx.device} (use 'fast' or 'pytorch')",
            RuntimeError,
        )
    # under autocast the input projection comes in a lower precision: the recurrence runs in
    # the parameters' dtype
    gx = gx.to(weight.dtype)
    z, re, im, time0, phi = state
    grad = grad_mode and (
        gx.requires_grad
        or times.requires_grad
        or any(v is not None and v.requires_grad for v in state)
        or any(v.requires_grad for v in cell.parameters())
    )
    cos = sin = omega = None
    if not cell.adaptive:
        if grad:
            phases = phase(cell.frequencies(), times)
            cos, sin = torch.cos(phases), torch.sin(phases)
        else:
            omega = cell.frequencies()
    args = (gx, z, re, im, phi, cos, sin, omega, times, time0, mask, weight, cell.weight_a,
            cell.b_z, grad)  # fmt: skip
    if grad:
        result = op.ScanFunction.apply(*args)
    elif gx.device.type == "cpu" and not torch.compiler.is_compiling():
        # eager inference (streaming calls this every step): the op's CPU kernel itself, without
        # the dispatcher's ~10 us; nothing to record for autograd or a tracer
        result = op.scan_cpu(*args)
    else:
        result = torch.ops.freqnn.sfm_scan(*args)
    out, z, re, im, phi = result[:5]
    final = SFMState(z, re, im, last_time(times, mask, time0), phi if cell.adaptive else None)
    return out, final
