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

Both kernels return tensors they allocate themselves; the saved histories are an output of the op,
so autograd (and AOTAutograd under ``torch.compile``) keeps them alive for the backward.

Inputs (see :class:`freqnn.sfm.kernels.pytorch.Inputs` for the shapes): ``gx, z0, re0, im0,
phi0?, cos?, sin?, omega?, times, time0, mask?, weight_hh, weight_a, b_z?, authors, normalised,
mean_readout, keep``. An SFM
passes either ``cos`` / ``sin`` (differentiable phases, training) or ``omega`` (phases computed
inside from the float64 times); an A-SFM passes ``phi0``, and ``authors`` selects its phase rule
(False: the accumulated phase, ``phi0`` the initial phase; True: the authors' rule, ``phi0`` the
omega the first step uses); ``normalised`` selects the normalised memory (its write weighted by
1 - f_t), ``mean_readout`` the mean of the K read-outs as z_t. With ``keep`` (needed for a
backward) the histories are returned, else empty tensors.

Outputs: ``out`` (T, B, M), the final ``z`` (B, M), ``re``, ``im`` (B, D, K), ``phi`` (B, K) (the
final phase, or under the authors' rule the final omega; empty for SFM), and ``saved``: the
histories in one flat buffer (:func:`~.pytorch.history_layout`), empty without ``keep``.
"""

from __future__ import annotations

import ctypes
from types import ModuleType

import torch
from torch import Tensor

from . import abi
from .build import load_library
from .compiled import backward_compiled, forward_compiled
from .path import get_path
from .pytorch import Inputs, Saved, backward_torch, forward_torch, history_layout, sizes

__all__ = ["ScanFunction", "cpu_library", "scan_cpu", "sfm_scan", "sfm_scan_backward"]

_Six = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
_Ten = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def cpu_library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The compiled kernel for a CPU tensor of ``dtype`` on the current path, or None for the
    PyTorch algorithm."""
    path = get_path()
    if path in ("pytorch", "triton") or dtype not in (torch.float32, torch.float64):
        return None
    lib = load_library()
    if lib is None and path == "compiled":
        raise RuntimeError("the compiled SFM kernel is unavailable (see the warning above)")
    return lib


def triton_kernels(t: Tensor, B: int, D: int, K: int, M: int) -> ModuleType | None:
    """The module of the Triton kernels (:mod:`.triton_scan`) where they run ``t``'s recurrence
    on the current path, else None (the PyTorch algorithm): path ``"triton"``, or ``"fast"`` on
    a CUDA float32 tensor where triton imports and the layer fits the kernel. On ``"triton"``
    what cannot run raises."""
    path = get_path()
    forced = path == "triton"
    if not forced and not (path == "fast" and t.is_cuda and t.dtype == torch.float32):
        return None
    try:
        from . import triton_scan
    except ImportError:
        if forced:
            raise RuntimeError("path 'triton' needs triton: pip install 'freqnn[gpu]'") from None
        return None
    try:
        triton_scan.plan(B, D, K, M)
    except ValueError:
        if forced:
            raise
        return None
    return triton_scan


_BACKWARD_ARGS = ("gout", "gz", "gre", "gim", "gphi", "cos", "sin", "times", "time0", "mask",
                  "weight_hh", "weight_a", "b_z", "authors", "normalised",
                  "mean_readout", "saved")


def _forward(lib: ctypes.CDLL | None, p: Inputs, keep: bool) -> _Six:
    abi.check_placement(Inputs._fields, p)
    if lib is None:
        _, B, D, K, M, _ = sizes(p)
        tk = triton_kernels(p.gx, B, D, K, M)
        out, saved = forward_torch(p, keep) if tk is None else tk.forward_triton(p, keep)
        z, re, im, phi = saved.final()
    else:
        out, saved, (z, re, im, phi) = forward_compiled(lib, p, keep)
    new = p.gx.new_empty
    buffer = saved.buffer if keep else new(0)
    return out, z, re, im, new(0) if phi is None else phi, buffer


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
    authors: bool,
    normalised: bool,
    mean_readout: bool,
    keep: bool,
) -> _Six:
    """One layer's SFM / A-SFM recurrence (default kernel: the PyTorch algorithm)."""
    p = Inputs(gx, z0, re0, im0, phi0, cos, sin, omega, times, time0, mask, weight_hh,
               weight_a, b_z, authors, normalised, mean_readout)  # fmt: skip
    return _forward(None, p, keep)


@sfm_scan.register_kernel("cpu")
def scan_cpu(*args: Tensor | bool | None) -> _Six:
    """The CPU kernel (the arguments of :func:`sfm_scan`): the compiled loop where it applies,
    else the PyTorch algorithm."""
    if not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() \
            is not None:  # a torch.func transform:
        return ScanFunction.apply(*args)  # the tensors may be batched (vmap's rule is there)
    p = Inputs(*args[:-1])
    return _forward(cpu_library(p.gx.dtype), p, args[-1])


@sfm_scan.register_fake
def _sfm_scan_fake(
    gx, z0, re0, im0, phi0, cos, sin, omega, times, time0, mask, weight_hh, weight_a, b_z,
    authors, normalised, mean_readout, keep,
):  # type: ignore[no-untyped-def]
    abi.check_placement(Inputs._fields, (gx, z0, re0, im0, phi0, cos, sin, omega, times, time0,
                                      mask, weight_hh, weight_a, b_z, authors, normalised,
                                      mean_readout))
    T, B, _ = gx.shape
    D, K = re0.shape[-2:]
    M = z0.shape[-1]
    new = gx.new_empty
    adaptive = phi0 is not None
    saved = new(history_layout(T, B, D, K, M, adaptive, True)[0]) if keep else new(0)
    phi = new(B, K) if adaptive else new(0)
    return new(T, B, M), new(B, M), new(B, D, K), new(B, D, K), phi, saved


# --------------------------------------------------------------------------- backward
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
    authors: bool,
    normalised: bool,
    mean_readout: bool,
    saved: Tensor,
) -> _Ten:
    """Gradients of ``freqnn::sfm_scan`` (default kernel: the PyTorch algorithm): those of gx,
    z0, re0, im0, phi0, cos, sin, weight_hh, weight_a, b_z (empty where absent). ``gphi`` is
    given for an A-SFM (None for SFM); ``authors``, ``normalised`` and ``mean_readout`` are
    the forward's flags; ``saved`` is the forward's history buffer."""
    args = (gout, gz, gre, gim, gphi, cos, sin, times, time0, mask, weight_hh, weight_a, b_z)
    return _backward(None, *args, authors, normalised, mean_readout, saved)


@sfm_scan_backward.register_kernel("cpu")
def _sfm_scan_backward_cpu(*args: Tensor | None) -> _Ten:
    return _backward(cpu_library(args[-1].dtype), *args)


def _backward(
    lib, gout, gz, gre, gim, gphi, cos, sin, times, time0, mask, weight_hh, weight_a, b_z,
    authors, normalised, mean_readout, saved,
) -> _Ten:  # type: ignore[no-untyped-def]
    abi.check_placement(_BACKWARD_ARGS, (gout, gz, gre, gim, gphi, cos, sin, times, time0, mask,
                                      weight_hh, weight_a, b_z, authors, normalised,
                                      mean_readout, saved))
    adaptive = gphi is not None
    T, B, M = gout.shape
    D, K = gre.shape[-2:]
    G = weight_hh.shape[0]
    p = Inputs(
        gx=gout.new_empty(()).expand(T, B, G),  # its shape and dtype only
        z0=gz,
        re0=gre,
        im0=gim,
        phi0=gphi,
        cos=cos,
        sin=sin,
        omega=None,
        times=times,
        time0=time0,
        mask=mask,
        weight_hh=weight_hh,
        weight_a=weight_a,
        b_z=b_z,
        authors=authors,
        normalised=normalised,
        mean_readout=mean_readout,
    )
    s = Saved.carve(saved, T, B, D, K, M, adaptive, True)
    shape = (T, B, D, K, M, G)
    tk = None if lib is not None else triton_kernels(gout, B, D, K, M)
    if tk is not None:
        g = tk.backward_triton(p, shape, s, gout, gz, gre, gim, gphi)
    elif lib is None:
        g = backward_torch(p, shape, s, gout, gz, gre, gim, gphi)
    else:
        g = backward_compiled(lib, p, shape, s, gout, gz, gre, gim, gphi)
    new = gout.new_empty
    return tuple(new(0) if t is None else t for t in g)  # type: ignore[return-value]


@sfm_scan_backward.register_fake
def _sfm_scan_backward_fake(
    gout, gz, gre, gim, gphi, cos, sin, times, time0, mask, weight_hh, weight_a, b_z, authors,
    normalised, mean_readout, saved,
):  # type: ignore[no-untyped-def]
    abi.check_placement(_BACKWARD_ARGS, (gout, gz, gre, gim, gphi, cos, sin, times, time0, mask,
                                      weight_hh, weight_a, b_z, authors, normalised,
                                      mean_readout, saved))
    T, B, _ = gout.shape
    K = weight_a.shape[0]
    new = gout.new_empty
    adaptive = gphi is not None
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
def _vmap_by_slices(function, info, in_dims, *args):  # type: ignore[no-untyped-def]
    """``torch.func.vmap``'s rule for the op, by a loop: ``function`` on each slice of the
    vmapped axis, the results stacked on axis 0. The op's kernels take whole batches, but its
    backward sums the weights' gradients over the batch, so folding the vmapped axis into B
    would merge the per-sample gradients that ``vmap(grad(f))`` asks for."""
    results = [
        function(*(a if d is None else a.select(d, i) for a, d in zip(args, in_dims, strict=True)))
        for i in range(info.batch_size)
    ]
    outputs = tuple(None if r[0] is None else torch.stack(r) for r in zip(*results, strict=True))
    return outputs, tuple(None if o is None else 0 for o in outputs)


class _ScanBackward(torch.autograd.Function):
    """``freqnn::sfm_scan_backward`` as a node that refuses to be differentiated: under
    ``create_graph=True`` (``torch.func.grad`` uses it) the first derivatives are computed, and
    a second derivative, which would otherwise be silently wrong, raises."""

    @staticmethod
    def forward(*args):  # type: ignore[override]
        return torch.ops.freqnn.sfm_scan_backward(*args)

    @staticmethod
    def vmap(info, in_dims, *args):  # type: ignore[no-untyped-def]
        return _vmap_by_slices(torch.ops.freqnn.sfm_scan_backward, info, in_dims, *args)

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
    ctx.adaptive = p.adaptive
    ctx.authors = p.authors
    ctx.normalised = p.normalised
    ctx.mean_readout = p.mean_readout
    ctx.has_bz = p.b_z is not None
    ctx.keep = inputs[-1]
    saved = output[5]
    # what the backward reads: not gx (T x B x G) nor the initial state (the histories' first
    # slots hold it)
    ctx.save_for_backward(
        p.cos, p.sin, p.times, p.time0, p.mask, p.weight_hh, p.weight_a, p.b_z, saved
    )
    ctx.mark_non_differentiable(saved)
    if not ctx.adaptive:
        ctx.mark_non_differentiable(output[4])
    # no zero gradients made for outputs that got none: the history buffer is the largest
    # tensor of the layer (materialising its zeros cost a fifth of a backward); the backward
    # makes the small ones it needs
    ctx.set_materialize_grads(False)
    ctx.grad_like = [(t.shape, t.dtype, t.device) for t in output[:5]]


def _scan_backward(ctx, *grads):  # type: ignore[no-untyped-def]
    if not ctx.keep:
        raise RuntimeError("freqnn::sfm_scan was called with keep=False: it saved no histories")
    gout, gz, gre, gim, gphi = (
        torch.zeros(shape, dtype=dtype, device=device) if g is None else g
        for g, (shape, dtype, device) in zip(grads[:5], ctx.grad_like, strict=True)
    )
    cos, sin, times, time0, mask, whh, wa, b_z, saved = ctx.saved_tensors
    # (torch.compile traces the op itself: its compiled backward refuses double backward)
    backward = (
        torch.ops.freqnn.sfm_scan_backward if torch.compiler.is_compiling() else _ScanBackward.apply
    )
    g = backward(
        gout, gz, gre, gim, gphi if ctx.adaptive else None, cos, sin, times, time0, mask,
        whh, wa, b_z, ctx.authors, ctx.normalised, ctx.mean_readout, saved,
    )  # fmt: skip
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
        None,  # authors
        None,  # normalised
        None,  # mean_readout
        None,  # keep
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

    @staticmethod
    def vmap(info, in_dims, *args):  # type: ignore[no-untyped-def]
        return _vmap_by_slices(torch.ops.freqnn.sfm_scan, info, in_dims, *args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_scan_backward)
