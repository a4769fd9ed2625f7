"""ParallelSFM's compiled CPU block (``cpu/psfm_block.cpp``): its calls through the generated
calling convention (:mod:`.abi`) and the self-test that :mod:`.build` runs before the library is
used. The operator around these calls is :mod:`.parallel`.
"""

from __future__ import annotations

import ctypes
import threading

import torch
from torch import Tensor

from . import abi
from .compiled import reusable_empty
from .parallel_torch import block_torch

__all__ = ["ROWS", "run_backward", "run_forward", "self_test"]

#: most rows (step x sequence) per read-out GEMM inside the kernel: the chunk's memory,
#: amplitudes and read-out pre-activations stay in the core's L2 cache
ROWS = 512


def _entry(lib: ctypes.CDLL, name: str, dtype: torch.dtype) -> ctypes._CFuncPtr:
    return getattr(lib, f"freqnn_psfm_{name}_{'f32' if dtype == torch.float32 else 'f64'}")


def _dims(
    gx: Tensor, re0: Tensor, weight_a: Tensor, keep: bool, rows: int | None
) -> tuple[int, ...]:
    L, B, G = gx.shape
    D, K = re0.shape[-2:]
    return (L, B, D, K, weight_a.shape[1] // 2, G, int(keep), ROWS if rows is None else rows)


def _inputs(
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor | None,
    re0: Tensor,
    im0: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
) -> dict[str, Tensor | None]:
    """The block's inputs as the kernel reads them: contiguous, in gx's dtype, mask as bytes."""
    return {
        "gx": gx.contiguous(),
        "cos": cos.to(gx.dtype).contiguous(),
        "sin": sin.to(gx.dtype).contiguous(),
        "mask": None if mask is None else mask.to(torch.uint8).contiguous(),
        "re0": re0.contiguous(),
        "im0": im0.contiguous(),
        "wa": weight_a.contiguous(),
        "bz": None if b_z is None else b_z.contiguous(),
    }


def run_forward(
    lib: ctypes.CDLL,
    gx: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor | None,
    re0: Tensor,
    im0: Tensor,
    weight_a: Tensor,
    b_z: Tensor | None,
    keep: bool,
    rows: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The kernel's forward of L steps.

    Parameters
    ----------
    lib : the loaded library (:func:`.build.load_library`)
    gx : Tensor [shape=(L, B, G)], gate pre-activations, G = 3D + K + KM
    cos, sin : Tensor [shape=(L, B, K)], of the phases
    mask : Tensor [shape=(L, B)] bool or None, False at padded steps
    re0, im0 : Tensor [shape=(B, D, K)], the memory before the block
    weight_a : Tensor [shape=(K, 2M, D)], [U_o ; W_z]
    b_z : Tensor [shape=(K, M)] or None
    keep : bool, save what the backward reads
    rows : int or None, rows per read-out GEMM (default :data:`ROWS`)

    Returns
    -------
    out : Tensor [shape=(L, B, M)]
    re, im : Tensor [shape=(B, D, K)], the memory after the block
    saved : Tensor [shape=(L, B, 2KD + 2KM)] with ``keep``, else None
    """
    L, B, _ = gx.shape
    D, K = re0.shape[-2:]
    M = weight_a.shape[1] // 2
    arrays = _inputs(gx, cos, sin, mask, re0, im0, weight_a, b_z)
    arrays.update(
        out=gx.new_empty(L, B, M),
        ref=gx.new_empty(B, D, K),
        imf=gx.new_empty(B, D, K),
        saved=reusable_empty((L, B, 2 * K * (D + M)), gx) if keep else None,
    )
    dims = _dims(gx, re0, weight_a, keep, rows)
    abi.call(_entry(lib, "forward", gx.dtype), dims, abi.PSFM_FORWARD, arrays)
    return arrays["out"], arrays["ref"], arrays["imf"], arrays["saved"]  # type: ignore[return-value]


def run_backward(
    lib: ctypes.CDLL,
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
    rows: int | None = None,
) -> tuple[Tensor, ...]:
    """The kernel's backward: from the gradients of out (L, B, M) and of the final memory
    (B, D, K), and the forward's inputs and ``saved`` (as :func:`run_forward`), the gradients of
    gx, cos, sin, re0, im0, weight_a and b_z (empty without b_z), each of its input's shape."""
    L, B, G = gx.shape
    K = re0.shape[-1]
    new = gx.new_empty
    arrays = _inputs(gx, cos, sin, mask, re0, im0, weight_a, b_z)
    arrays.update(
        saved=saved.contiguous(),
        gout=gout.contiguous(),
        gref=gre.contiguous(),
        gimf=gim.contiguous(),
        dgx=reusable_empty((L, B, G), gx),
        dre0=new(re0.shape),
        dim0=new(re0.shape),
        dcos=new(L, B, K),
        dsin=new(L, B, K),
        dwa=new(weight_a.shape),
        dbz=None if b_z is None else new(b_z.shape),
    )
    abi.call(_entry(lib, "backward", gx.dtype), _dims(gx, re0, weight_a, True, rows),
             abi.PSFM_BACKWARD, arrays)  # fmt: skip
    names = ("dgx", "dcos", "dsin", "dre0", "dim0", "dwa")
    dbz = new(0) if b_z is None else arrays["dbz"]
    return (*(arrays[n] for n in names), dbz)  # type: ignore[return-value]


def self_test(lib: ctypes.CDLL) -> None:
    """A small block (a padded step included) through both float types must match the PyTorch
    algorithm, forward and backward."""
    # in a thread of its own: the library loads wherever a layer first runs, under no_grad,
    # inference_mode or a checkpoint's saved-tensor hooks (all thread-local), which must not
    # see the test's autograd
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _self_test(lib)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="freqnn-psfm-self-test")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _self_test(lib: ctypes.CDLL) -> None:
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        L, B, D, K, M = 5, 2, 3, 2, 4
        G = 3 * D + K + K * M

        def rand(*shape: int, dtype: torch.dtype = dtype) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        gx, cos, sin = rand(L, B, G), rand(L, B, K), rand(L, B, K)
        re0, im0 = rand(B, D, K), rand(B, D, K)
        wa, bz, gout = rand(K, 2 * M, D), rand(K, M), rand(L, B, M)
        mask = torch.ones(L, B, dtype=torch.bool)
        mask[3, 1] = False
        out, re, _, saved = run_forward(lib, gx, cos, sin, mask, re0, im0, wa, bz, True, 3)
        got = run_backward(lib, gout, re0, im0, gx, cos, sin, mask, re0, im0, wa, bz, saved, 3)
        leaves = [t.clone().requires_grad_() for t in (gx, cos, sin, re0, im0, wa, bz)]
        valid = mask.to(dtype)
        z, re_want, im_want = block_torch(*leaves[:3], valid, *leaves[3:], 1)
        want = torch.autograd.grad((z, re_want, im_want), leaves, (gout, re0, im0))
        pairs = [(out, z), (re, re_want), *zip(got, want, strict=True)]
        if not all(torch.allclose(a, b.detach(), rtol=1e-4, atol=1e-4) for a, b in pairs):
            raise RuntimeError("the compiled ParallelSFM kernel failed its self-test")
