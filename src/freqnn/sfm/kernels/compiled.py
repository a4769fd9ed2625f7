"""Calls into the compiled CPU kernel (``cpu/sfm_scan.cpp``), with the buffers it needs.

Every array the kernel reads or writes is a tensor named in a local ``arrays`` dict that lives
until the call returns (:func:`freqnn.sfm.kernels.abi.call`), never a temporary made while the
pointer list is built: the kernel never reads memory that Python has already freed.
"""

from __future__ import annotations

import array
import ctypes
import functools
import itertools
import math
import mmap
import os
import sys
import threading
from typing import NamedTuple

import torch
from torch import Tensor

from . import abi
from .pytorch import Grads, Inputs, Saved, forward_torch, history_layout, time_steps

__all__ = [
    "Projection", "backward_compiled", "empty_cache", "forward_compiled", "reusable_empty",
    "self_test",
]


# --------------------------------------------------------------------------- buffer cache
class _HostCache:
    """Reuse of the large CPU buffers of training (the saved histories, the gradient of gx).

    Fresh memory costs a page fault per 4 KiB on first touch; for long sequences the histories
    are gigabytes and the faults alone cost about as much as the recurrence's arithmetic.
    Buffers of at least ``min_bytes`` are therefore anonymous memory maps kept here after use:
    a tensor made by ``torch.frombuffer`` holds a reference to its map for as long as any view
    of it lives (autograd's saved tensors included), so a map that only this cache references
    is free. Like PyTorch's CUDA caching allocator, it keeps the memory of recent steps: maps not
    reused within ``keep_takes`` allocations are dropped, :func:`empty_cache` drops all free
    ones, ``FREQNN_SFM_CACHE=0`` turns the cache off.
    """

    min_bytes = 16 << 20
    keep_takes = 16

    def __init__(self) -> None:
        self.enabled = (
            os.environ.get("FREQNN_SFM_CACHE", "1") != "0" and sys.implementation.name == "cpython"
        )
        self._maps: list[mmap.mmap] = []
        self._last_use: list[int] = []
        self._takes = 0
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        nbytes = numel * like.element_size()
        if not self.enabled or like.device.type != "cpu" or nbytes < self.min_bytes:
            return like.new_empty(shape)
        with self._lock:
            self._takes += 1
            best = None
            for i in range(len(self._maps)):
                # references: the list and getrefcount's argument, i.e. no tensor uses it
                size = len(self._maps[i])
                if (
                    sys.getrefcount(self._maps[i]) == 2
                    and nbytes <= size < 2 * nbytes
                    and (best is None or size < len(self._maps[best]))
                ):
                    best = i
            if best is None:
                self._maps.append(mmap.mmap(-1, nbytes))
                self._last_use.append(self._takes)
                best = len(self._maps) - 1
            self._last_use[best] = self._takes
            buf = torch.frombuffer(self._maps[best], dtype=like.dtype, count=numel)
            self._drop(lambda i: self._takes - self._last_use[i] > self.keep_takes)
        return buf.view(shape)

    def _drop(self, stale: object) -> None:
        keep = [
            i for i in range(len(self._maps)) if sys.getrefcount(self._maps[i]) > 2 or not stale(i)
        ]  # type: ignore[operator]
        self._maps = [self._maps[i] for i in keep]
        self._last_use = [self._last_use[i] for i in keep]

    def clear(self) -> None:
        with self._lock:
            self._drop(lambda i: True)

    def nbytes(self) -> int:
        return sum(len(m) for m in self._maps)


_cache = _HostCache()


def reusable_empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised contiguous tensor of ``shape`` (``like``'s dtype and device) from the
    cache of large CPU buffers: what a kernel fills whole (saved values, gradients)."""
    return _cache.empty(shape, like)


def empty_cache() -> None:
    """Release the free CPU buffers kept for reuse by the fast path (see ``FREQNN_SFM_CACHE``)."""
    _cache.clear()


# --------------------------------------------------------------------------- calls
def _entry(lib: ctypes.CDLL, name: str, dtype: torch.dtype) -> ctypes._CFuncPtr:
    return getattr(lib, f"freqnn_sfm_{name}_{'f32' if dtype == torch.float32 else 'f64'}")


def _contiguous(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _mask(p: Inputs) -> Tensor | None:
    return None if p.mask is None else p.mask.to(torch.uint8).contiguous()


def _chunk(T: int, B: int) -> int:
    """Steps per GEMM of the read-out weight gradient: about 2048 rows, at most T (fewer,
    larger GEMMs; the chunk buffers stay small next to the saved histories)."""
    return max(1, min(T, -(-2048 // B)))


def _threads(T: int, B: int) -> int:
    """The most threads the kernel may use: torch's setting (it splits the batch into blocks of
    at least 8 sequences, one per thread; see ``cpu/sfm_blas.h``), but one for short sequences:
    starting a thread costs tens of microseconds, more than a streaming step saves."""
    return torch.get_num_threads() if B >= 16 and T >= 16 else 1


@functools.lru_cache(maxsize=64)
def _forward_layout(
    T: int,
    B: int,
    D: int,
    K: int,
    M: int,
    G: int,
    adaptive: bool,
    keep: bool,
    project: bool,
    threads: int,
) -> tuple[int, int, tuple[tuple[str, int], ...]]:
    """The forward's one buffer: the histories (:func:`history_layout`), the workspace (per
    sequence, and per thread; see ``forward_rows`` in the kernel), and with ``project`` the input
    projections the kernel computes. Returns the history size, the total size and the element
    offset of every region (streaming calls this every step with the same shapes, hence the
    cache)."""
    size, regions = history_layout(T, B, D, K, M, adaptive, keep)
    offsets = [(name, start) for name, (start, _) in regions.items()]
    total = size + B * (G + 2 * K * M + K * D) + threads * (D + 2 * K)
    offsets.append(("work", size))
    if project:
        offsets.append(("gx", total))
        total += T * B * G
    return size, total, tuple(offsets)


class Projection(NamedTuple):
    """Streaming: the kernel computes gx = x W_ih^T + b itself. ``x`` (T, B, N); ``weight_ih``
    (G, N); ``bias`` the bias of the first rows (or None); ``b_omega`` A-SFM's last K rows."""

    x: Tensor
    weight_ih: Tensor
    bias: Tensor | None
    b_omega: Tensor | None


def forward_compiled(
    lib: ctypes.CDLL, p: Inputs, keep: bool, projection: Projection | None = None
) -> tuple[Tensor, Saved | None, tuple[Tensor, Tensor, Tensor, Tensor | None]] | None:
    """The kernel's forward: the outputs (T, B, M), the histories (with ``keep``, else None) and
    the final state z, re, im (B, D, K), phi. SFM phases come from ``p.cos`` / ``p.sin`` or are
    computed in the kernel from ``p.omega`` and the float64 times; A-SFM steps from the times.

    With a ``projection`` (streaming; ``p.gx`` is then None) the kernel also checks x, the state
    and the times, and returns None (computing nothing) where one is not valid."""
    if projection is None:
        like = p.gx.contiguous()
        T, B, G = like.shape
    else:
        like = projection.x.contiguous()
        (T, B, N), G = like.shape, projection.weight_ih.shape[0]
    D, K = p.re0.shape[-2:]
    M = p.z0.shape[-1]
    adaptive = p.adaptive
    threads = _threads(T, B)
    size, total, offsets = _forward_layout(
        T, B, D, K, M, G, adaptive, keep, projection is not None, threads
    )
    # one buffer, held by this name for the whole call: the histories (returned with keep) and
    # the workspace; the kernel gets addresses inside it
    buffer = _cache.empty((total,), like) if keep else like.new_empty(total)
    base, item = buffer.data_ptr(), buffer.element_size()
    arrays: dict[str, Tensor | int | None] = {name: base + start * item for name, start in offsets}
    omega = None
    if not adaptive and p.cos is None:
        omega = p.omega.to(like.dtype).contiguous()
    final = (
        like.new_empty(B, M),
        like.new_empty(B, D, K),
        like.new_empty(B, D, K),
        like.new_empty(B, K) if adaptive else None,
    )
    out = like.new_empty(T, B, M)
    status = array.array("q", [0])
    if projection is None:
        arrays["gx"] = like
        N = 0
    else:
        arrays.update(
            x=like,
            wih=projection.weight_ih.contiguous(),
            bih=_contiguous(projection.bias),
            bomega=_contiguous(projection.b_omega),
            status=status.buffer_info()[0],  # held by `status` until the call returns
        )
    arrays.update(
        whh=p.weight_hh.contiguous(),
        wa=p.weight_a.contiguous(),
        bz=_contiguous(p.b_z),
        cos=_contiguous(p.cos),
        sin=_contiguous(p.sin),
        mask=_mask(p),
        z0=p.z0.contiguous(),
        re0=p.re0.contiguous(),
        im0=p.im0.contiguous(),
        phi0=_contiguous(p.phi0),
        out=out,
        omega=omega,
        times=p.times.contiguous(),
        time0=p.time0.contiguous(),
        zf=final[0],
        ref=final[1],
        imf=final[2],
        phif=final[3],
    )
    dims = (T, B, D, K, M, G, int(adaptive), int(keep), 0, N, threads, int(p.authors),
            int(p.normalised), int(p.mean_readout))
    abi.call(_entry(lib, "forward", like.dtype), dims, abi.FORWARD, arrays)
    if status[0]:
        return None
    saved = Saved.carve(buffer[:size], T, B, D, K, M, adaptive, keep) if keep else None
    return out, saved, final


def backward_compiled(
    lib: ctypes.CDLL,
    p: Inputs,
    shape: tuple[int, ...],
    s: Saved,
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
) -> Grads:
    """The kernel's backward-through-time (see :func:`freqnn.sfm.kernels.pytorch.backward_torch`
    for the contract)."""
    T, B, D, K, M, G = shape
    new = s.zs.new_empty
    tc = _chunk(T, B)
    threads = _threads(T, B)
    # the kernel accumulates into these carries: fresh contiguous copies, (B, K, D) inside
    dre = gre.transpose(1, 2).contiguous().clone()
    dim = gim.transpose(1, 2).contiguous().clone()
    arrays = {
        "whh": p.weight_hh.contiguous(),
        "wa": p.weight_a.contiguous(),
        "bz": _contiguous(p.b_z),
        "cos": _contiguous(p.cos),
        "sin": _contiguous(p.sin),
        "dt": _contiguous(time_steps(p)),
        "mask": _mask(p),
        "zs": s.zs.contiguous(),
        "act": s.act.contiguous(),
        "o": s.o.contiguous(),
        "c": s.c.contiguous(),
        "re": s.re.contiguous(),
        "im": s.im.contiguous(),
        "phi": _contiguous(s.phi),
        "times": p.times.contiguous() if p.authors else None,
        "gout": gout.contiguous(),
        "dgx": _cache.empty((T, B, G), s.zs),
        "dz": gz.contiguous().clone(),
        "dre": dre,
        "dim": dim,
        "dphi": None if gphi is None else gphi.contiguous().clone(),
        "dcos": None if p.adaptive else new(T, B, K),
        "dsin": None if p.adaptive else new(T, B, K),
        "dwhh": new(G, M),
        "dwa": new(K, 2 * M, D),
        "dbz": None if p.b_z is None else new(K, M),
        # per sequence, and per thread (see backward_rows / backward_fixed in the kernel)
        "work": new(
            B * (K * tc * 2 * M + K * tc * D + K * D + M)
            + threads * (3 * D + 5 * K + 2 * K * M * D + K * M)
        ),
    }
    dims = (T, B, D, K, M, G, int(p.adaptive), 1, tc, 0, threads, int(p.authors),
            int(p.normalised), int(p.mean_readout))
    abi.call(_entry(lib, "backward", s.zs.dtype), dims, abi.BACKWARD, arrays)
    return Grads(
        gx=arrays["dgx"],
        z0=arrays["dz"],
        re0=dre.transpose(1, 2).contiguous(),
        im0=dim.transpose(1, 2).contiguous(),
        phi0=arrays["dphi"],
        cos=arrays["dcos"],
        sin=arrays["dsin"],
        weight_hh=arrays["dwhh"],
        weight_a=arrays["dwa"],
        b_z=arrays["dbz"],
    )


def self_test(lib: ctypes.CDLL) -> None:
    """A small problem through both float types, both A-SFM phase rules, both memories and both
    read-outs must match the PyTorch algorithm (catches a BLAS with another integer width or a
    broken build)."""
    gen = torch.Generator().manual_seed(0)
    for dtype, authors in itertools.product((torch.float32, torch.float64), (False, True)):
        T, B, D, K, M = 3, 2, 3, 2, 4
        G = 3 * D + K + K * M + K

        def rand(*shape: int, dtype: torch.dtype = dtype) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        p = Inputs(
            gx=rand(T, B, G),
            z0=rand(B, M),
            re0=rand(B, D, K),
            im0=rand(B, D, K),
            phi0=torch.rand(B, K, generator=gen, dtype=dtype),
            cos=None,
            sin=None,
            omega=None,
            times=torch.arange(1.0, T + 1, dtype=torch.float64)[:, None].expand(T, B),
            time0=torch.zeros(B, dtype=torch.float64),
            mask=torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=torch.bool),
            weight_hh=rand(G, M),
            weight_a=rand(K, 2 * M, D),
            b_z=rand(K, M),
            authors=authors,
            normalised=authors,  # every flag off, then every flag on
            mean_readout=authors,
        )
        got, _, _ = forward_compiled(lib, p, keep=True)
        want, _ = forward_torch(p, keep=True)
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
            raise RuntimeError("the compiled SFM kernel failed its self-test")
