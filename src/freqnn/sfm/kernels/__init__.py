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

import warnings

import torch
from torch import Tensor

from ...checks import fail
from ...frequencies import phase
from ..state import SFMState, check_placement, conforms, last_time, map_batch_axis, zero_state
from . import compiled, op, pytorch
from .build import compiled_available, compiled_status, kernel_cache_dir
from .compiled import empty_cache
from .path import PATHS, get_path, set_path, use_path, use_reference

__all__ = [
    "PATHS",
    "authors_time_bound",
    "compiled_available",
    "compiled_status",
    "empty_cache",
    "get_path",
    "kernel_cache_dir",
    "scan",
    "set_path",
    "step",
    "use_path",
    "use_reference",
    "warn_authors_times",
]


_authors_warned: set[torch.dtype] = set()


def authors_time_bound(dtype: torch.dtype) -> float:
    """The largest |t| at which the authors' A-SFM phase omega_{t-1} * t of a unit frequency
    moves by at most 1e-3 rad when omega_{t-1} changes by one rounding (eps of ``dtype``):
    about 8.4e3 in float32, 4.5e12 in float64 (docs/sfm.md, "Accuracy at large times")."""
    return 1e-3 / torch.finfo(dtype).eps


def warn_authors_times(times: Tensor, dtype: torch.dtype) -> None:
    """Warn once per dtype and process when the authors' phase rule meets timestamps beyond
    :func:`authors_time_bound`: there its outputs depend on how omega_t was rounded (the path,
    streaming or one pass), and the recurrence compounds the difference."""
    if dtype in _authors_warned or times.is_meta or torch.compiler.is_compiling():
        return
    bound = authors_time_bound(dtype)
    if times.numel() and times.abs().max().item() > bound:
        _authors_warned.add(dtype)
        warnings.warn(
            f"freqnn: A-SFM with phase='authors' at timestamps beyond |t| = {bound:.3g} in "
            f"{dtype}: its phase omega_{{t-1}} * t turns one rounding of omega into more than "
            "1e-3 rad, so outputs differ between paths and between streaming and one pass "
            "(use phase='accumulate', or smaller times: time='normalised')",
            RuntimeWarning, stacklevel=3)


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
    if cell.adaptive and cell.carries_omega:
        warn_authors_times(times, cell.weight_hh.dtype)  # on every path (the reference's too)
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
    # what the kernel reads must be memory on the input's device (a caller that skipped the
    # layer's checks included)
    check_placement(state, gx.device)
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
            cell.b_z, cell.carries_omega, cell.memory == "normalised", cell.readout == "mean",
            grad)  # fmt: skip
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


def step(
    cell: torch.nn.Module, x: Tensor, state: SFMState | None, t: Tensor | float | None
) -> tuple[Tensor, SFMState] | None:
    """A streaming step of ``cell`` in one call of the compiled kernel, which also computes the
    input projection and checks x, the state and the timestamp: the whole step on the common
    path (eager inference on the CPU, arguments of the expected types and shapes).

    Returns None wherever that does not apply or an argument is not valid: the caller then takes
    the general path, whose validation names the problem. Tested against the reference in
    ``tests/sfm/kernels/test_modes.py`` (every mode, each kind of ``t``).
    """
    weight = cell.weight_ih
    if (
        not isinstance(x, Tensor)
        or x.dtype != weight.dtype
        or x.device.type != "cpu"
        or x.dim() not in (1, 2)
        or x.shape[-1] != cell.input_size
        or (x.dim() == 2 and x.shape[0] == 0)  # the general path refuses B = 0
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or get_path() not in ("fast", "compiled")
    ):
        return None
    if torch.is_grad_enabled() and (
        x.requires_grad
        or any(p.requires_grad for p in cell.parameters())
        or (state is not None and any(v is not None and v.requires_grad for v in state))
    ):
        return None
    lib = op.cpu_library(x.dtype)
    if lib is None:
        return None
    unbatched = x.dim() == 1
    B = 1 if unbatched else x.shape[0]
    dims = (cell.hidden_size, cell.state_size, cell.num_freqs, cell.adaptive)
    if state is None:
        state = zero_state(
            (), (B,), *dims, dtype=x.dtype, device=x.device, phase0=cell.initial_phase()
        )
    elif conforms(state, (), () if unbatched else (B,), *dims, x.dtype, x.device):
        if unbatched:
            state = map_batch_axis(state, 0, squeeze=False)
    else:
        return None
    if t is None:
        times = (state.time + 1.0).unsqueeze(0)
    elif isinstance(t, (int, float)) and not isinstance(t, bool):
        times = state.time.new_full((1, B), float(t))
    elif (
        isinstance(t, Tensor)
        and t.is_floating_point()
        and t.device.type == "cpu"
        and (t.dim() == 0 or (not unbatched and t.shape == (B,)))
    ):
        times = t.to(torch.float64).reshape(1, -1).expand(1, B)
    else:
        return None
    adaptive = cell.adaptive
    if adaptive and cell.carries_omega:
        warn_authors_times(times, x.dtype)
    p = pytorch.Inputs(
        None, state.z, state.re, state.im, state.phase, None, None,
        None if adaptive else cell.frequencies(), times, state.time, None,
        cell.weight_hh, cell.weight_a, cell.b_z, cell.carries_omega, cell.memory == "normalised",
        cell.readout == "mean",
    )  # fmt: skip
    # the projection's bias: bias_ih on the gate rows, b_omega on A-SFM's omega rows
    projection = compiled.Projection(
        x.reshape(1, B, -1), weight, cell.bias_ih, cell.b_omega if adaptive else None
    )
    result = compiled.forward_compiled(lib, p, False, projection)
    if result is None:
        return None  # not valid: the general path names the problem
    out, _, (z, re, im, phi) = result
    new = SFMState(z, re, im, times[0], phi)
    if unbatched:
        return out[0, 0], map_batch_axis(new, 0, squeeze=True)
    return out[0], new
