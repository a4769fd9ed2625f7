"""The calling convention of the compiled CPU kernel, defined once.

The kernel's entry points take two arrays: the sizes (``DIMS``) and the data pointers of the
forward (``FORWARD``) or backward (``BACKWARD``) arrays, in the orders below. :func:`header`
generates the C++ enums of these orders (``DIM_T``, ``F_GX``, ``B_DGX``, ...) into ``sfm_abi.h``
at build time, and :func:`pointers` builds the Python side from the same tuples, so the order
is written in this file only. ``ABI`` is a checksum of the three tuples: the compiled library
reports the one it was built with and a mismatch is refused.

Memory arrays inside the kernel are laid out (., B, K, D); the initial and final states are in
the library's (B, D, K).
"""

from __future__ import annotations

import array
import ctypes
import zlib
from collections.abc import Mapping

import torch
from torch import Tensor

from ...checks import check_devices, describe, fail

__all__ = [
    "ABI",
    "BACKWARD",
    "DIMS",
    "FORWARD",
    "PSFM_BACKWARD",
    "PSFM_DIMS",
    "PSFM_FORWARD",
    "call",
    "header",
]

#: sizes; ADAPTIVE and KEEP are 0/1 flags, CHUNK the steps per read-out GEMM of the backward,
#: N the input size (streaming: the projection runs in the kernel), THREADS the most threads
#: the kernel may use (blocks of sequences; the workspace holds THREADS blocks' fixed parts),
#: AUTHORS a 0/1 flag: A-SFM's phase rule is the authors' (the phi arrays carry omega_t and
#: step t uses the phase omega_{t-1} * times[t]; otherwise the accumulated phase), NORMALISED a
#: 0/1 flag: the normalised memory (the write weighted by 1 - f_t), MEAN a 0/1 flag: z_t is the
#: mean of the K read-outs (not their sum)
DIMS = ("T", "B", "D", "K", "M", "G", "ADAPTIVE", "KEEP", "CHUNK", "N", "THREADS", "AUTHORS",
        "NORMALISED", "MEAN")

#: forward arrays: inputs, then outputs and workspace
FORWARD = (
    "gx",  # (T, B, G) input projections
    "whh",  # (G, M) weight_hh
    "wa",  # (K, 2M, D) weight_a = [U_o ; W_z]
    "bz",  # (K, M) b_z
    "cos",  # (T, B, K) SFM phases given ...
    "sin",
    "dt",  # (T, B) A-SFM time steps given ...
    "mask",  # (T, B) uint8, 0 at padded steps
    "z0",  # (B, M) initial state
    "re0",  # (B, D, K)
    "im0",
    "phi0",  # (B, K) A-SFM: initial phase, or (AUTHORS) the omega of the first step
    "out",  # (T, B, M) outputs z_t
    "zs",  # histories: (T + 1 or 2, B, M)
    "act",  # (T or 1, B, 3D + K) gate activations
    "o",  # (T or 1, B, K, M) read-out gates
    "c",  # (T or 1, B, K, M) read-out candidates
    "re",  # (T + 1 or 2, B, K, D)
    "im",
    "phi",  # (T + 1 or 2, B, K) phases, or (AUTHORS) the carried omega_t
    "work",  # workspace
    "omega",  # (K) SFM frequencies ... or phases computed here from omega and times
    "times",  # (T, B) float64 timestamps (SFM phases, A-SFM steps or, AUTHORS, phases)
    "time0",  # (B) float64 time of the initial state (A-SFM steps)
    "zf",  # final state (B, M), (B, D, K), (B, D, K), (B, K)
    "ref",
    "imf",
    "phif",
    "x",  # streaming: (T, B, N) inputs; then gx is scratch the kernel fills with x W_ih^T + b
    "wih",  # (G, N) weight_ih
    "bih",  # (G or G - K) bias_ih
    "bomega",  # (K) A-SFM's b_omega (the bias of its last K rows)
    "status",  # int64: set to 1 if x, the state or the times are not valid (nothing computed)
)

#: backward arrays: saved forward values, the output gradients, then the input gradients
BACKWARD = (
    "whh",
    "wa",
    "bz",
    "cos",
    "sin",
    "dt",
    "mask",
    "zs",
    "act",
    "o",
    "c",
    "re",
    "im",
    "phi",
    "times",  # (T, B) float64 timestamps (AUTHORS: the phase's slope in omega_{t-1})
    "gout",  # (T, B, M)
    "dgx",  # (T, B, G)
    "dz",  # carries: in, the gradient of the final state; out, of the initial one
    "dre",  # (B, K, D)
    "dim",
    "dphi",
    "dcos",
    "dsin",
    "dwhh",
    "dwa",
    "dbz",
    "work",
)

#: ParallelSFM's block kernel (``cpu/psfm_block.cpp``): sizes; L the steps of the block, G the
#: gate rows 3D + K + KM, KEEP a 0/1 flag (save what the backward reads), ROWS the most rows
#: (step x sequence) per read-out GEMM
PSFM_DIMS = ("L", "B", "D", "K", "M", "G", "KEEP", "ROWS")

#: its forward arrays: inputs, then outputs
PSFM_FORWARD = (
    "gx",  # (L, B, G) gate pre-activations [ste | g | i | fre | o]
    "cos",  # (L, B, K) cos and sin of the phases
    "sin",
    "mask",  # (L, B) uint8, 0 at padded steps, or null
    "re0",  # (B, D, K) initial memory
    "im0",
    "wa",  # (K, 2M, D) weight_a = [U_o ; W_z]
    "bz",  # (K, M) b_z, or null
    "out",  # (L, B, M) outputs z_t
    "ref",  # (B, D, K) final memory
    "imf",
    "saved",  # (L, B, 2KD + 2KM) with KEEP: Re S, Im S (K, D), o, tanh(c) (K, M) of each step
)

#: its backward arrays: the forward's inputs and saved values, the output gradients, then the
#: input gradients
PSFM_BACKWARD = (
    "gx",
    "cos",
    "sin",
    "mask",
    "re0",
    "im0",
    "wa",
    "bz",
    "saved",
    "gout",  # (L, B, M)
    "gref",  # (B, D, K), or null
    "gimf",
    "dgx",  # (L, B, G)
    "dre0",  # (B, D, K)
    "dim0",
    "dcos",  # (L, B, K)
    "dsin",
    "dwa",  # (K, 2M, D)
    "dbz",  # (K, M), or null
)

ABI = (
    zlib.crc32(
        repr((DIMS, FORWARD, BACKWARD, PSFM_DIMS, PSFM_FORWARD, PSFM_BACKWARD)).encode()
    )
    & 0x7FFFFFFF
)


def header() -> str:
    """The C++ header ``sfm_abi.h``: the enums of :data:`DIMS`, :data:`FORWARD`,
    :data:`BACKWARD` and the ``FREQNN_SFM_ABI`` checksum."""

    def enum(name: str, prefix: str, names: tuple[str, ...]) -> str:
        items = ", ".join(f"{prefix}{n.upper()}" for n in names)
        return f"enum {name} {{ {items}, {prefix}COUNT }};\n"

    return (
        "// Generated by freqnn/sfm/kernels/abi.py; do not edit.\n#pragma once\n"
        f"#define FREQNN_SFM_ABI {ABI}\n"
        + enum("Dim", "DIM_", DIMS)
        + enum("FwdPtr", "F_", FORWARD)
        + enum("BwdPtr", "B_", BACKWARD)
        + enum("PsfmDim", "PD_", PSFM_DIMS)
        + enum("PsfmFwdPtr", "PF_", PSFM_FORWARD)
        + enum("PsfmBwdPtr", "PB_", PSFM_BACKWARD)
    )


_INDEX = {
    order: {name: i for i, name in enumerate(order)}
    for order in (FORWARD, BACKWARD, PSFM_FORWARD, PSFM_BACKWARD)
}


def call(
    fn: ctypes._CFuncPtr,
    dims: tuple[int, ...],
    order: tuple[str, ...],
    arrays: Mapping[str, Tensor | int | None],
) -> None:
    """Call a kernel entry point with ``dims`` (in the order of :data:`DIMS`, or
    :data:`PSFM_DIMS`) and the ``arrays`` named in ``order`` (:data:`FORWARD`, :data:`BACKWARD`,
    :data:`PSFM_FORWARD` or :data:`PSFM_BACKWARD`); absent names are null pointers.

    An array is a contiguous tensor, or the address of a region inside a tensor; every tensor
    (and every tensor an address points into) must be held by the caller for the duration of the
    call: the pointers are taken from what the caller holds, never from temporaries made here.
    A name outside ``order`` raises ``KeyError``; a tensor that is not contiguous, strided and
    on the CPU (a meta, CUDA or sparse tensor handed to the op directly, say) raises
    ``ValueError`` naming it, before the kernel runs: this is the one gate every call of a
    compiled kernel passes.
    """
    index, strided = _INDEX[order], torch.strided
    pointers = array.array("q", bytes(8 * len(order)))  # int64 addresses, 0 = null
    for name, t in arrays.items():
        if t is None:
            continue
        if type(t) is not int:
            if not (t.is_cpu and t.layout is strided and t.is_contiguous()):
                fail(name, "a contiguous strided CPU tensor (the compiled kernel reads its "
                     "memory)", f"{describe(t)} on {t.device} ({t.layout})")
            t = t.data_ptr()
        pointers[index[name]] = t
    sizes = array.array("q", dims)
    # both arrays are held by these names until the call returns
    fn(sizes.buffer_info()[0], pointers.buffer_info()[0])


def check_placement(names: tuple[str, ...], args: tuple[object, ...]) -> None:
    """Require every tensor among an operator's ``args`` (named by ``names``) to be strided on
    the device of the first (``gx``, ``gout``). The operators may be called directly, past the
    layers' checks, and none of their implementations may read other memory: the compiled
    kernel would crash on a meta tensor, the PyTorch one copy from it without an error, the fake
    one return uninitialised tensors."""
    check_devices(names, args, args[0].device)  # type: ignore[attr-defined]
