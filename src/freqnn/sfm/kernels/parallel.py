"""ParallelSFM's block as a registered operator with a compiled CPU kernel: ``freqnn::psfm_block``.

One call computes L steps of a :class:`freqnn.sfm.parallel.ParallelSFMCell` from the gate
pre-activations: the gates, the memory recurrence, the amplitude and the read-out, in one pass
over time (``cpu/psfm_block.cpp``), without forming the (L, B, D, K) forget and write terms the
PyTorch algorithm (:func:`.parallel_torch.block_torch`) needs. Its backward,
``freqnn::psfm_block_backward``, runs the recurrence in reverse from what the forward saved (the
memory and the read-out gates of every step).

* CPU kernel: the compiled loop (float32 / float64, a library that builds: :mod:`.build`, the
  same library as SFM's kernel), else the PyTorch algorithm (forward without autograd; backward
  by autograd through a recomputation);
* a fake implementation, so ``torch.compile`` and ``torch.export`` trace it;
* first derivatives only: a second derivative through the compiled backward raises and says to
  use the ``"pytorch"`` path (plain autograd, any order).

The path (:mod:`.path`) selects it: ``"fast"`` / ``"compiled"`` use it on CPU float32 / float64
tensors, ``"pytorch"`` and ``"reference"`` the PyTorch algorithm; so does ONNX export.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from ...checks import vmapping
from . import abi
from .build import load_library
from .compiled import reusable_empty
from .parallel_compiled import run_backward, run_forward
from .parallel_torch import block_torch
from .path import get_path

__all__ = [
    "PROJECTION_ROWS", "BlockFunction", "ProjectionFunction", "applies", "block", "compiled",
    "projection", "psfm_block", "psfm_block_backward",
]

#: the tensor arguments of the operators, as abi.check_placement names them (gx first: the
#: device every other must be on)
_BLOCK_ARGS = ("gx", "cos", "sin", "mask", "re0", "im0", "weight_a", "b_z")
_BLOCK_BACKWARD_ARGS = ("gx", "gout", "gre", "gim", "cos", "sin", "mask", "re0", "im0",
                        "weight_a", "b_z", "saved")

#: rows (step x sequence) per GEMM of :class:`ProjectionFunction`: a block of x and of its
#: output stay in the core's L2 cache
PROJECTION_ROWS = 4096

_Four = tuple[Tensor, Tensor, Tensor, Tensor]
_Seven = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def applies(gx: Tensor, weight_a: Tensor) -> bool:
    """Whether the layer runs its blocks on the operator (see the module docstring)."""
    if get_path() not in ("fast", "compiled") or vmapping():
        return False  # (vmap: the PyTorch algorithm, whose operations all have batching rules)
    if (torch.compiler.is_compiling() or torch.jit.is_tracing()) and torch.onnx.is_in_onnx_export():
        return False
    return (
        gx.device.type == "cpu"
        and gx.dtype in (torch.float32, torch.float64)
        and gx.dtype == weight_a.dtype
    )


def compiled(gx: Tensor, weight_a: Tensor) -> bool:
    """Whether the operator runs the compiled kernel (it :func:`applies` and the library
    loads), not its PyTorch fallback."""
    return applies(gx, weight_a) and _library(gx.dtype) is not None


def _library(dtype: torch.dtype) -> ctypes.CDLL | None:
    lib = load_library() if get_path() != "pytorch" else None
    if lib is None and get_path() == "compiled":
        raise RuntimeError("the compiled SFM kernel is unavailable (see the warning above)")
    return lib


def _reference(gx, cos, sin, mask, re0, im0, weight_a, b_z, chunk):  # type: ignore[no-untyped-def]
    valid = None if mask is None else mask.to(gx.dtype)
    return block_torch(gx, cos, sin, valid, re0, im0, weight_a, b_z, chunk)


@torch.library.custom_op("freqnn::psfm_block", mutates_args=(), device_types="cpu")
def psfm_block(
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor | None,
    re0: Tensor,
    im0: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    chunk: int,
    keep: bool,
) -> _Four:
    """L steps of a ParallelSFM layer: outputs (L, B, M), final Re S, Im S (B, D, K) and, with
    ``keep``, the saved values of the backward (L, B, 2KD + 2KM) (else empty). ``chunk`` is the
    scan chunk of the PyTorch algorithm (used where the kernel is not)."""
    abi.check_placement(_BLOCK_ARGS, (gx, cos, sin, mask, re0, im0, weight_a, b_z))
    lib = _library(gx.dtype)
    L, B, _ = gx.shape
    D, K = re0.shape[-2:]
    M = weight_a.shape[1] // 2
    if lib is None:
        with torch.no_grad():
            z, re, im = _reference(gx, cos, sin, mask, re0, im0, weight_a, b_z, chunk)
        return z, re, im, gx.new_empty(L, B, 2 * K * (D + M)) if keep else gx.new_empty(0)
    out, re, im, saved = run_forward(lib, gx, cos, sin, mask, re0, im0, weight_a, b_z, keep)
    return out, re, im, gx.new_empty(0) if saved is None else saved


@psfm_block.register_fake
def _psfm_block_fake(gx, cos, sin, mask, re0, im0, weight_a, b_z, chunk, keep):  # type: ignore[no-untyped-def]
    abi.check_placement(_BLOCK_ARGS, (gx, cos, sin, mask, re0, im0, weight_a, b_z))
    L, B, _ = gx.shape
    D, K = re0.shape[-2:]
    M = weight_a.shape[1] // 2
    new = gx.new_empty
    saved = new(L, B, 2 * K * (D + M)) if keep else new(0)
    return new(L, B, M), new(B, D, K), new(B, D, K), saved


@torch.library.custom_op("freqnn::psfm_block_backward", mutates_args=(), device_types="cpu")
def psfm_block_backward(
    gout: Tensor,
    gre: Tensor,
    gim: Tensor,
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor | None,
    re0: Tensor,
    im0: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    saved: Tensor,
    chunk: int,
) -> _Seven:
    """Gradients of ``freqnn::psfm_block`` with respect to gx, cos, sin, re0, im0, weight_a, b_z
    (empty without b_z), from those of its outputs and what it saved."""
    abi.check_placement(_BLOCK_BACKWARD_ARGS, (gx, gout, gre, gim, cos, sin, mask, re0, im0,
                                                weight_a, b_z, saved))
    lib = _library(gx.dtype)
    if lib is None:  # _backward computes the gradients itself where there is no library
        raise RuntimeError("freqnn::psfm_block_backward needs the compiled kernel")
    return run_backward(lib, gout, gre, gim, gx, cos, sin, mask, re0, im0, weight_a, b_z, saved)


@psfm_block_backward.register_fake
def _psfm_block_backward_fake(gout, gre, gim, gx, cos, sin, mask, re0, im0, weight_a, b_z,
                              saved, chunk):  # type: ignore[no-untyped-def]  # fmt: skip
    abi.check_placement(_BLOCK_BACKWARD_ARGS, (gx, gout, gre, gim, cos, sin, mask, re0, im0,
                                                weight_a, b_z, saved))
    new = gx.new_empty
    L, B, _ = gx.shape
    K = re0.shape[-1]
    dbz = new(0) if b_z is None else new(b_z.shape)
    return (new(gx.shape), new(L, B, K), new(L, B, K), new(re0.shape), new(re0.shape),
            new(weight_a.shape), dbz)  # fmt: skip


def _no_second_derivative(ctx, *grads):  # type: ignore[no-untyped-def]
    raise RuntimeError(
        "the fused ParallelSFM operator has first derivatives only (a second derivative passes "
        "through freqnn::psfm_block_backward); run the model inside "
        '`with freqnn.sfm.use_path("pytorch"):`'
    )


# so that create_graph=True reaches a message that says what to do, not torch's generic one
psfm_block_backward.register_autograd(_no_second_derivative)


class _BlockBackward(torch.autograd.Function):
    """``freqnn::psfm_block_backward`` as a node that refuses to be differentiated: under
    ``create_graph=True`` (``torch.func.grad`` uses it) the first derivatives are computed, and
    a second derivative raises."""

    @staticmethod
    def forward(*args):  # type: ignore[override]
        return torch.ops.freqnn.psfm_block_backward(*args)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        pass

    backward = staticmethod(_no_second_derivative)


def _setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    gx, cos, sin, mask, re0, im0, weight_a, b_z, chunk, keep = inputs
    ctx.chunk, ctx.keep, ctx.has_bz = chunk, keep, b_z is not None
    ctx.cos_dtype = cos.dtype
    ctx.save_for_backward(gx, cos, sin, mask, re0, im0, weight_a, b_z, output[3])
    ctx.mark_non_differentiable(output[3])
    ctx.set_materialize_grads(False)
    ctx.final_shape = re0.shape


def _backward(ctx, gout, gre, gim, _gsaved):  # type: ignore[no-untyped-def]
    if not ctx.keep:
        raise RuntimeError("freqnn::psfm_block was called with keep=False: it saved nothing")
    gx, cos, sin, mask, re0, im0, weight_a, b_z, saved = ctx.saved_tensors
    gout = torch.zeros_like(gx[..., : weight_a.shape[1] // 2]) if gout is None else gout
    gre = gx.new_zeros(ctx.final_shape) if gre is None else gre
    gim = gx.new_zeros(ctx.final_shape) if gim is None else gim
    if not torch.compiler.is_compiling() and _library(gx.dtype) is None:
        return _backward_torch(ctx, gout, gre, gim, gx, cos, sin, mask, re0, im0, weight_a, b_z)
    # (torch.compile traces the op itself: its registered autograd refuses double backward)
    compiling = torch.compiler.is_compiling()
    backward = torch.ops.freqnn.psfm_block_backward if compiling else _BlockBackward.apply
    g = backward(gout, gre, gim, gx, cos, sin, mask, re0, im0, weight_a, b_z, saved, ctx.chunk)
    dgx, dcos, dsin, dre0, dim0, dwa, dbz = g
    return (dgx, dcos.to(ctx.cos_dtype), dsin.to(ctx.cos_dtype), None, dre0, dim0, dwa,
            dbz if ctx.has_bz else None, None, None)  # fmt: skip


def _backward_torch(ctx, gout, gre, gim, gx, cos, sin, mask, re0, im0, weight_a, b_z):  # type: ignore[no-untyped-def]
    """Without the library: autograd through a recomputation by the PyTorch algorithm (in the
    autograd formula, where autograd records; inside an operator it does not)."""
    leaves = [t.detach().requires_grad_() for t in (gx, cos, sin, re0, im0, weight_a)]
    bz = None if b_z is None else b_z.detach().requires_grad_()
    with torch.enable_grad():
        z, re, im = _reference(*leaves[:3], mask, *leaves[3:], bz, ctx.chunk)
        wrt = leaves + ([] if bz is None else [bz])
        grads = torch.autograd.grad((z, re, im), wrt, (gout, gre, gim), allow_unused=True)
    dgx, dcos, dsin, dre0, dim0, dwa, *dbz = (
        torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt, strict=True)
    )
    return (dgx, dcos, dsin, None, dre0, dim0, dwa, dbz[0] if dbz else None, None, None)


psfm_block.register_autograd(_backward, setup_context=_setup_context)


class BlockFunction(torch.autograd.Function):
    """``freqnn::psfm_block`` with its autograd formula as an ``autograd.Function`` with
    ``setup_context``: the form ``torch.func`` transforms accept (``torch.func.grad`` of a
    model), which the op's own registration does not offer. :func:`block` calls the op through
    it whenever a gradient is needed."""

    @staticmethod
    def forward(*args):  # type: ignore[override]
        return torch.ops.freqnn.psfm_block(*args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


def block(
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor | None,
    re0: Tensor,
    im0: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs (L, B, M) and final Re S, Im S of L steps on the operator (saving for a backward
    only where a gradient is needed)."""
    keep = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (gx, cos, sin, re0, im0, weight_a, b_z)
    )
    args = (gx, cos, sin, mask, re0, im0, weight_a, b_z, chunk, keep)
    z, re, im, _ = BlockFunction.apply(*args) if keep else torch.ops.freqnn.psfm_block(*args)
    return z, re, im


class ProjectionFunction(torch.autograd.Function):
    """The gate projection x W^T + b, (..., N) -> (..., G), for the compiled path of long
    sequences: GEMMs over blocks of :data:`PROJECTION_ROWS` rows into one of the fast path's
    reusable buffers, and a backward whose bias gradient is a GEMV. ``F.linear`` over all
    T * B rows at once writes a fresh (T, B, G) tensor (226 MB at T = 10^4, B = 16, G = 354)
    from a GEMM whose output leaves the cache: 0.30 s against 0.18 s in blocks on the AMD EPYC
    (``docs/performance.md``). First derivatives only, as the operator it feeds."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        rows, G = x.numel() // x.shape[-1], weight.shape[0]
        x2 = x.reshape(rows, x.shape[-1])
        out = reusable_empty((rows, G), x)
        for start in range(0, rows, PROJECTION_ROWS):
            part = slice(start, min(rows, start + PROJECTION_ROWS))
            if bias is None:
                torch.mm(x2[part], weight.t(), out=out[part])
            else:
                torch.addmm(bias, x2[part], weight.t(), out=out[part])
        return out.view(*x.shape[:-1], G)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, weight.shape[0])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (g2 @ weight).view(x.shape)
        if ctx.needs_input_grad[1]:
            dw = g2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = torch.mv(g2.t(), g2.new_ones(g2.shape[0]))  # a GEMV: sum(0) is 2x slower
        return dx, dw, db


def projection(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """x W^T + b by :class:`ProjectionFunction` where the layer runs on the compiled kernel
    with at least :data:`PROJECTION_ROWS` rows (eagerly, without autocast); None elsewhere:
    the caller projects with ``F.linear``."""
    if (
        torch.compiler.is_compiling()  # first: the size test would guard a symbolic T
        or torch.jit.is_tracing()
        or x.numel() < PROJECTION_ROWS * x.shape[-1]
        or x.dtype != weight.dtype
        or torch.is_autocast_enabled("cpu")
        or not compiled(x, weight)
    ):
        return None
    return ProjectionFunction.apply(x, weight, bias)
