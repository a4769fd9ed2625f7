"""The SFM recurrence as registered PyTorch operators: ``freqnn::sfm_scan`` and its backward.

``torch.ops.freqnn.sfm_scan`` runs one layer's whole time loop. It has

* a CPU kernel: the compiled loop (:mod:`.compiled`) where it builds and the dtype is float32 /
  float64, else the PyTorch algorithm;
* a default kernel for every other device (CUDA included): the PyTorch algorithm (:mod:`.pytorch`);
* a fake (meta) implementation, so ``torch.compile``, ``torch.export`` and the meta device see
  its output shapes without running it;
* an autograd formula (``setup_context`` + backward), the op ``freqnn::sfm_scan_backward``
  (first derivatives only: a second derivative raises), also as :class:`ScanFunction` for
  ``torch.func``.

Both kernels return tensors they allocate themselves; the saved histories are outputs of the op,
so autograd (and AOTAutograd under ``torch.compile``) keeps them alive for the backward.

Inputs (see :class:`freqnn.sfm.kernels.pytorch.Inputs` for the shapes): ``gx, z0, re0, im0,
phi0?, cos?, sin?, omega?, times, time0, mask?, weight_hh, weight_a, b_z?, keep``. An SFM passes
either ``cos`` / ``sin`` (differentiable phases, training) or ``omega`` (phases computed inside
from the float64 times); an A-SFM passes ``phi0``. With ``keep`` (needed for a backward) the
histories are returned, else empty tensors.

Outputs: ``out`` (T, B, M), the final ``z`` (B, M), ``re``, ``im`` (B, D, K), ``phi`` (B, K) (empty
for SFM), then the histories ``zs, act, o, c, re, im, phi`` (:class:`~.pytorch.Saved`).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from .build import load_library
from .compiled import backward_compiled, forward_compiled
from .path import get_path
from .pytorch import Inputs, Saved, backward_torch, forward_torch, sizes

__all__ = ["ScanFunction", "cpu_library", "scan_cpu", "sfm_scan", "sfm_scan_backward"]

_Twelve = tuple[
    Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor
]
_Ten = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
_HISTORY = ("zs", "act", "o", "c", "re", "im", "phi")


def cpu_library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The compiled kernel for a CPU tensor of ``dtype`` on the current path, or None for the
    PyTorch algorithm."""
    path = get_path()
    if path == "pytorch" or dtype not in (torch.float32, torch.float64):
        return None
    lib = load_library()
    if lib is None and path == "compiled":
        raise RuntimeError("the compiled SFM kernel is unavailable (see the warning above)")
    return lib


def _history_shapes(T: int, B: int, D: int, K: int, M: int, adaptive: bool) -> list[tuple]:
    return [
        (T + 1, B, M),
        (T, B, 3 * D + K),
        (T, B, K, M),
        (T, B, K, M),
        (T + 1, B, K, D),
        (T + 1, B, K, D),
        (T + 1, B, K) if adaptive else (0,),
    ]


def _forward(lib: ctypes.CDLL | None, p: Inputs, keep: bool) -> _Twelve:
    if lib is None:
        s = forward_torch(p, keep)
        z, re, im, phi = s.final()
    else:
        s, (z, re, im, phi) = forward_compiled(lib, p, keep)
    new = p.gx.new_empty
    if keep:
        history = tuple(new(0) if t is None else t for t in (getattr(s, n) for n in _HISTORY))
    else:  # the kernels' scratch slots are not results: distinct empty tensors
        history = tuple(new(0) for _ in _HISTORY)
    return (s.out, z, re, im, new(0) if phi is None else phi, *history)


@torch.library.custom_op("freqnn::sfm_scan", mutates_args=())
def sfm_scan(
    gx: Tensor,
    z0: Tensor,
    re0: Tensor,
    im0: Tensor,
    phi0: Tensor | None,
    cos: Tensor | None,
    sin: Tensor | None,
    omega: Tensor | None,
    times: Tensor,
    time0: Tensor,
    mask: Tensor | None,
    weight_hh: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    keep: bool,
) -> _Twelve:
    """One layer's SFM / A-SFM recurrence (default kernel: the PyTorch algorithm)."""
    p = Inputs(gx, z0, re0, im0, phi0, cos, sin, omega, times, time0, mask, weight_hh,
               weight_a, b_z)  # fmt: skip
    return _forward(None, p, keep)


@sfm_scan.register_kernel("cpu")
def scan_cpu(
    gx: Tensor,
    z0: Tensor,
    re0: Tensor,
    im0: Tensor,
    phi0: Tensor | None,
    cos: Tensor | None,
    sin: Tensor | None,
    omega: Tensor | None,
    times: Tensor,
    time0: Tensor,
    mask: Tensor | None,
    weight_hh: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    keep: bool,
) -> _Twelve:
    """The CPU kernel: the compiled loop where it applies, else the PyTorch algorithm."""
    p = Inputs(gx, z0, re0, im0, phi0, cos, sin, omega, times, time0, mask, weight_hh,
               weight_a, b_z)  # fmt: skip
    return _forward(cpu_library(gx.dtype), p, keep)


@sfm_scan.register_fake
def _sfm_scan_fake(
    gx, z0, re0, im0, phi0, cos, sin, omega, times, time0, mask, weight_hh, weight_a, b_z, keep
):  # type: ignore[no-untyped-def]
    T, B, _ = gx.shape
    D, K = re0.shape[-2:]
    M = z0.shape[-1]
    new = gx.new_empty
    adaptive = phi0 is not None
    history = (
        [new(s) for s in _history_shapes(T, B, D, K, M, adaptive)]
        if keep
        else [new(0) for _ in _HISTORY]
    )
    phi = new(B, K) if adaptive else new(0)
    return (new(T, B, M), new(B, M), new(B, D, K), new(B, D, K), phi, *history)


# --------------------------------------------------------------------------- backward
def _backward(lib: ctypes.CDLL | None, p: Inputs, s: Saved, grads: tuple) -> _Ten:
    shape = sizes(p)
    gout, gz, gre, gim, gphi = grads
    run = backward_torch if lib is None else lambda *a: backward_compiled(lib, *a)
    g = run(p, shape, s, gout, gz, gre, gim, gphi)
    new = gout.new_empty
    return tuple(new(0) if t is None else t for t in g)  # type: ignore[return-value]


def _saved(p_hist: tuple[Tensor, ...], adaptive: bool) -> Saved:
    zs, act, o, c, re, im, phi = p_hist
    return Saved(None, zs, act, o, c, re, im, phi if adaptive else None, last=zs.shape[0] - 1)


@torch.library.custom_op("freqnn::sfm_scan_backward", mutates_args=())
def sfm_scan_backward(
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
    cos: Tensor | None,
    sin: Tensor | None,
    times: Tensor,
    time0: Tensor,
    mask: Tensor | None,
    weight_hh: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    phi0_like: Tensor | None,
    zs: Tensor,
    act: Tensor,
    o: Tensor,
    c: Tensor,
    re: Tensor,
    im: Tensor,
    phi: Tensor,
) -> _Ten:
    """Gradients of ``freqnn::sfm_scan`` (default kernel: the PyTorch algorithm): those of gx,
    z0, re0, im0, phi0, cos, sin, weight_hh, weight_a, b_z (empty where absent)."""
    return _sfm_scan_backward(None, locals())


@sfm_scan_backward.register_kernel("cpu")
def _sfm_scan_backward_cpu(
    gout,
    gz,
    gre,
    gim,
    gphi,
    cos,
    sin,
    times,
    time0,
    mask,
    weight_hh,
    weight_a,
    b_z,
    phi0_like,
    zs,
    act,
    o,
    c,
    re,
    im,
    phi,
):  # type: ignore[no-untyped-def]
    return _sfm_scan_backward(cpu_library(zs.dtype), locals())


def _sfm_scan_backward(lib: ctypes.CDLL | None, a: dict) -> _Ten:
    adaptive = a["phi0_like"] is not None
    T, B = a["gout"].shape[:2]
    p = Inputs(
        gx=a["gout"].new_empty(()).expand(T, B, a["weight_hh"].shape[0]),  # its shape and dtype
        z0=a["gz"],
        re0=a["gre"],
        im0=a["gim"],
        phi0=a["phi0_like"],
        cos=a["cos"],
        sin=a["sin"],
        omega=None,
        times=a["times"],
        time0=a["time0"],
        mask=a["mask"],
        weight_hh=a["weight_hh"],
        weight_a=a["weight_a"],
        b_z=a["b_z"],
    )
    history = tuple(a[n] for n in _HISTORY)
    grads = (a["gout"], a["gz"], a["gre"], a["gim"], a["gphi"] if adaptive else None)
    return _backward(lib, p, _saved(history, adaptive), grads)


@sfm_scan_backward.register_fake
def _sfm_scan_backward_fake(
    gout,
    gz,
    gre,
    gim,
    gphi,
    cos,
    sin,
    times,
    time0,
    mask,
    weight_hh,
    weight_a,
    b_z,
    phi0_like,
    zs,
    act,
    o,
    c,
    re,
    im,
    phi,
):  # type: ignore[no-untyped-def]
    T, B, _ = gout.shape
    K = weight_a.shape[0]
    new = gout.new_empty
    adaptive = phi0_like is not None
    return (
        new(T, B, weight_hh.shape[0]),
        new(gz.shape),
        new(gre.shape),
        new(gim.shape),
        new(B, K) if adaptive else new(0),
        new(0) if adaptive else new(T, B, K),
        new(0) if adaptive else new(T, B, K),
        new(weight_hh.shape),
        new(weight_a.shape),
        new(0) if b_z is None else new(b_z.shape),
    )


# --------------------------------------------------------------------------- autograd
class _ScanBackward(torch.autograd.Function):
    """``freqnn::sfm_scan_backward`` as a node that refuses to be differentiated: under
    ``create_graph=True`` (``torch.func.grad`` uses it) the first derivatives are computed, and
    a second derivative, which would otherwise be silently wrong, raises."""

    @staticmethod
    def forward(*args):  # type: ignore[override]
        return torch.ops.freqnn.sfm_scan_backward(*args)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        pass

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[no-untyped-def]
        raise RuntimeError(
            "the fast SFM recurrence has first derivatives only (a second derivative passes "
            "through freqnn::sfm_scan_backward); run the model inside "
            "`with freqnn.sfm.use_reference():`"
        )


def _setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    p = Inputs(*inputs[:-1])
    keep = inputs[-1]
    history = output[5:]
    ctx.adaptive = p.adaptive
    ctx.has_bz = p.b_z is not None
    ctx.keep = keep
    # what the backward reads: not gx (T x B x G) nor the initial state (the histories' first
    # slots hold it)
    ctx.save_for_backward(
        p.cos, p.sin, p.times, p.time0, p.mask, p.weight_hh, p.weight_a, p.b_z, p.phi0, *history
    )
    ctx.mark_non_differentiable(*history)
    if not ctx.adaptive:
        ctx.mark_non_differentiable(output[4])


def _scan_backward(ctx, gout, gz, gre, gim, gphi, *_history_grads):  # type: ignore[no-untyped-def]
    if not ctx.keep:
        raise RuntimeError("freqnn::sfm_scan was called with keep=False: it saved no histories")
    cos, sin, times, time0, mask, whh, wa, b_z, phi0, *history = ctx.saved_tensors
    # (torch.compile traces the op itself: its compiled backward refuses double backward)
    backward = (
        torch.ops.freqnn.sfm_scan_backward if torch.compiler.is_compiling() else _ScanBackward.apply
    )
    g = backward(
        gout,
        gz,
        gre,
        gim,
        gphi if ctx.adaptive else None,
        cos,
        sin,
        times,
        time0,
        mask,
        whh,
        wa,
        b_z,
        phi0 if ctx.adaptive else None,
        *history,
    )
    dgx, dz0, dre0, dim0, dphi0, dcos, dsin, dwhh, dwa, dbz = g
    adaptive = ctx.adaptive
    return (
        dgx,
        dz0,
        dre0,
        dim0,
        dphi0 if adaptive else None,
        None if adaptive else dcos,
        None if adaptive else dsin,
        None,  # omega: used only without gradients (inference)
        None,  # times: SFM phases are differentiated through cos / sin
        None,
        None,
        dwhh,
        dwa,
        dbz if ctx.has_bz else None,
        None,
    )


sfm_scan.register_autograd(_scan_backward, setup_context=_setup_context)


class ScanFunction(torch.autograd.Function):
    """``freqnn::sfm_scan`` with its autograd formula as an ``autograd.Function`` with
    ``setup_context``: the form ``torch.func`` transforms accept (``torch.func.grad`` of a
    model), which the op's own registration does not offer. The layers call the op through it
    whenever a gradient is needed."""

    @staticmethod
    def forward(*args):  # type: ignore[override]
        return torch.ops.freqnn.sfm_scan(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_scan_backward)
