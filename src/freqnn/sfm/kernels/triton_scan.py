"""The SFM / A-SFM recurrence of one layer as two Triton kernels: a forward and a fused backward.

Each program of a launch owns a tile of ``BB`` sequences and runs the whole time loop (a
persistent kernel): the state z (BB, M) and the memory Re S, Im S (K, BB, D) stay in registers
from the first step to the last, the weights are read each step from L1 / L2, and every step's
values are written to the same histories as the PyTorch algorithm's (:func:`.pytorch.
history_layout`), so the two kernels and :func:`.pytorch.backward_torch` can read each other's
buffers. Arithmetic is float32 (``tl.dot`` with ``input_precision="ieee"``: no TF32).

Layout inside a program: quantities per (sequence, state) are (BB, DP), per (frequency,
sequence) (KP, BB), the memory and the read-out (KP, BB, DP) and (KP, BB, MP), so the K read-out
GEMMs A^k W_a^k of a step are one batched ``tl.dot`` over the leading K axis. D, K, M and the
batch tile are padded to powers of two >= 16 (``tl.dot`` operands on a GPU); the padded lanes
load zeros, which keep the memory and the outputs of padded lanes at zero.

On CUDA tensors the kernels compile for the GPU; on CPU tensors they run only in Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is first imported), which is how the tests
check them without a GPU. The interpreter runs each program with NumPy: it checks the algorithm,
the indexing and the masks, not the GPU compiler's limits (register pressure, shared memory,
layouts); :func:`plan` states those limits and the tests assert them.

Weight gradients: those of W_a and b_z are accumulated in registers over the time loop, one
partial per program summed after the launch; W_hh's is one GEMM after the kernel (dgx^T zs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from ...checks import fail
from .pytorch import Grads, Inputs, Saved, history_layout, phases, sizes, time_steps

__all__ = [
    "MIN_BLOCK",
    "SHARED_LIMIT",
    "Plan",
    "backward_triton",
    "forward_triton",
    "interpreted",
    "plan",
]

#: smallest block in every dimension of a ``tl.dot`` operand (the GPU's MMA tile)
MIN_BLOCK = 16
#: the largest shared-memory estimate :func:`plan` accepts, in bytes: below the 99 KiB a block may
#: opt in to on sm_86 / sm_89 (sm_80 and sm_90 allow more)
SHARED_LIMIT = 96 * 1024
TWO_PI = 2.0 * math.pi


def _block(n: int) -> int:
    return max(MIN_BLOCK, triton.next_power_of_2(n))


class Plan(NamedTuple):
    """A launch's blocks and its resources: ``BB`` sequences per program, D, K, M padded to
    ``DP``, ``KP``, ``MP``; ``grid`` programs; ``shared_bytes`` the estimate of the shared
    memory of the largest ``tl.dot`` (both operands staged, float32)."""

    BB: int
    DP: int
    KP: int
    MP: int
    grid: int
    num_warps: int
    shared_bytes: int


def plan(B: int, D: int, K: int, M: int) -> Plan:
    """Blocks and grid for a batch of ``B`` sequences of D states, K frequencies and M outputs.

    Raises ``ValueError`` where the shared-memory estimate exceeds :data:`SHARED_LIMIT` (the
    layer is too wide for this kernel: the caller uses the PyTorch algorithm)."""
    BB, DP, KP, MP = MIN_BLOCK, _block(D), _block(K), _block(M)
    # the dots: z W^T (BB x MP, MP x DP), the batched read-out (KP x BB x DP, KP x DP x MP), the
    # o rows (KP x BB x MP, KP x MP x MP) and, in the backward, W_a's gradient (KP x MP x BB,
    # KP x BB x DP)
    largest = max(
        BB * MP + MP * max(DP, KP),
        KP * (BB * DP + DP * MP),
        KP * (BB * MP + MP * MP),
        KP * (MP * BB + BB * DP),
    )
    shared = 4 * largest
    if shared > SHARED_LIMIT:
        fail("sizes", f"a shared-memory estimate <= {SHARED_LIMIT} bytes for the Triton SFM "
             "kernel", f"{shared} bytes at D={D}, K={K}, M={M}", ValueError)
    return Plan(BB, DP, KP, MP, triton.cdiv(B, BB), 4, shared)


def interpreted() -> bool:
    """Whether this module's kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` was set
    when triton and this module were imported)."""
    return not isinstance(_forward_kernel, triton.runtime.JITFunction)


def _check_device(t: Tensor) -> None:
    if t.device.type == "cpu" and not interpreted():
        fail("device", "CUDA tensors for the Triton SFM kernel (CPU tensors only under "
             "TRITON_INTERPRET=1, set before triton is first imported)",
             "CPU tensors", RuntimeError)
    if t.dtype != torch.float32:
        fail("dtype", "float32 for the Triton SFM kernel", str(t.dtype), TypeError)


# --------------------------------------------------------------------------- device functions
@triton.jit
def _tanh(x):
    # from exp(-2|x|) <= 1: no overflow at any x
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _wrap(x, two_pi):
    # into [0, two_pi) as freqnn.frequencies.wrap_phase (a remainder, then a negative one lifted)
    r = x % two_pi
    return tl.where(r < 0, r + two_pi, r)


@triton.jit
def _authors_angle(omega, t):
    # wrap(omega_{t-1} t) in float64, cast to float32 (freqnn.frequencies.phase)
    two_pi = tl.full((1, 1), 6.283185307179586, tl.float64)  # float64, as torch's TWO_PI
    return _wrap(omega.to(tl.float64) * t, two_pi).to(tl.float32)


@triton.jit
def _amplitude(r, s):
    sq = r * r + s * s
    pos = sq > 0
    return tl.where(pos, tl.sqrt(tl.where(pos, sq, 1.0)), 0.0), pos


@triton.jit
def _dot(a, b):
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _tile_grids(pid, B, D, K, M, BB: tl.constexpr, DP: tl.constexpr, KP: tl.constexpr,
                MP: tl.constexpr):
    """The index grids of program ``pid``'s tile of BB sequences, shared by the forward and the
    backward (so both read and write the histories in one layout): the padded ranges and their
    masks; (BB, X) and (KP, BB) offsets; the (KP, BB, X) offsets of the (B, D, K) states and of
    the (., B, K, D) and (., B, K, M) histories, with their masks."""
    b = pid * BB + tl.arange(0, BB)
    d = tl.arange(0, DP)
    k = tl.arange(0, KP)
    m = tl.arange(0, MP)
    bv, dv, kv, mv = b < B, d < D, k < K, m < M
    bm, bm_ok = b[:, None] * M + m[None, :], bv[:, None] & mv[None, :]
    bd_ok = bv[:, None] & dv[None, :]
    kb_ok = kv[:, None] & bv[None, :]
    bk = b[None, :] * K + k[:, None]
    k3, b3 = k[:, None, None], b[None, :, None]
    d3, m3 = d[None, None, :], m[None, None, :]
    kbd_ok = (k3 < K) & (b3 < B) & (d3 < D)
    kbm_ok = (k3 < K) & (b3 < B) & (m3 < M)
    state3 = b3 * (D * K) + d3 * K + k3
    hist3 = b3 * (K * D) + k3 * D + d3
    read3 = b3 * (K * M) + k3 * M + m3
    return (b, d, k, m, bv, dv, kv, mv, bm, bm_ok, bd_ok, kb_ok, bk, k3, b3, d3, m3, kbd_ok,
            kbm_ok, state3, hist3, read3)


@triton.jit
def _forward_kernel(
    gx, z0, re0, im0, phi0, cos, sin, dt, times, mask, whh, wa, bz,
    out, zs, act, o_h, c_h, re_h, im_h, phi_h,
    T, B, D, K, M, G, last, st_t, st_b,
    ADAPTIVE: tl.constexpr, AUTHORS: tl.constexpr, NORMALISED: tl.constexpr,
    MEAN: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BZ: tl.constexpr, KEEP: tl.constexpr,
    BB: tl.constexpr, DP: tl.constexpr, KP: tl.constexpr, MP: tl.constexpr,
):  # fmt: skip
    (b, d, k, m, bv, dv, kv, mv, bm, bm_ok, bd_ok, kb_ok, bk, k3, b3, _d3, m3, kbd_ok, kbm_ok,
     state3, hist3, read3) = _tile_grids(tl.program_id(0), B, D, K, M, BB, DP, KP, MP)
    A = 3 * D + K  # columns of the gate activations
    ob = A  # first o row of gx / weight_hh
    wb = A + K * M  # first omega row (A-SFM)
    # weight tiles, as index grids (loaded each step): W^T of the D-row blocks (MP, DP), the
    # K-row blocks (KP, MP), the o rows (KP, MP j, MP m), W_a's halves transposed (KP, DP, MP)
    wd = m[:, None] + d[None, :] * M
    wd_ok = mv[:, None] & dv[None, :]
    wk = k[:, None] * M + m[None, :]
    wk_ok = kv[:, None] & mv[None, :]
    jo = m[None, :, None]
    wo = (ob + k3 * M + m3) * M + jo
    wo_ok = (k3 < K) & (jo < M) & (m3 < M)
    da = d[None, :, None]
    wa_idx = k3 * (2 * M * D) + m3 * D + da
    wa_ok = (k3 < K) & (da < D) & (m3 < M)

    z = tl.load(z0 + bm, mask=bm_ok, other=0.0)
    re = tl.load(re0 + state3, mask=kbd_ok, other=0.0)
    im = tl.load(im0 + state3, mask=kbd_ok, other=0.0)
    phi = tl.zeros((KP, BB), dtype=tl.float32)
    if ADAPTIVE:
        phi = tl.load(phi0 + bk, mask=kb_ok, other=0.0)
    if KEEP:  # slot 0 holds the initial state
        tl.store(zs + bm, z, mask=bm_ok)
        tl.store(re_h + hist3, re, mask=kbd_ok)
        tl.store(im_h + hist3, im, mask=kbd_ok)
        if ADAPTIVE:
            tl.store(phi_h + bk, phi, mask=kb_ok)
    if HAS_BZ:
        b_z = tl.load(bz + k3 * M + m3, mask=(k3 < K) & (m3 < M), other=0.0)
    else:
        b_z = tl.zeros((KP, 1, MP), dtype=tl.float32)
    for t in range(T):
        row = gx + t * B * G
        zt = tl.trans(z)
        pre_s = tl.load(row + b[:, None] * G + d[None, :], mask=bd_ok, other=0.0)
        pre_s += _dot(z, tl.load(whh + wd, mask=wd_ok, other=0.0))
        pre_g = tl.load(row + b[:, None] * G + D + d[None, :], mask=bd_ok, other=0.0)
        pre_g += _dot(z, tl.load(whh + D * M + wd, mask=wd_ok, other=0.0))
        pre_i = tl.load(row + b[:, None] * G + 2 * D + d[None, :], mask=bd_ok, other=0.0)
        pre_i += _dot(z, tl.load(whh + 2 * D * M + wd, mask=wd_ok, other=0.0))
        pre_f = tl.load(row + b[None, :] * G + 3 * D + k[:, None], mask=kb_ok, other=0.0)
        pre_f += _dot(tl.load(whh + 3 * D * M + wk, mask=wk_ok, other=0.0), zt)
        pre_o = tl.load(row + b3 * G + ob + k3 * M + m3, mask=kbm_ok, other=0.0)
        zk = tl.broadcast_to(z[None, :, :], (KP, BB, MP))
        pre_o += _dot(zk, tl.load(whh + wo, mask=wo_ok, other=0.0))
        fs = tl.sigmoid(pre_s)
        g = tl.sigmoid(pre_g)
        i = _tanh(pre_i)
        ff = tl.sigmoid(pre_f)  # (KP, BB)
        new_phi = phi
        if ADAPTIVE:
            omega = tl.load(row + b[None, :] * G + wb + k[:, None], mask=kb_ok, other=0.0)
            omega += _dot(tl.load(whh + wb * M + wk, mask=wk_ok, other=0.0), zt)
            if AUTHORS:  # the phase of omega_{t-1}; omega_t is carried
                tt = tl.load(times + t * st_t + b * st_b, mask=bv, other=0.0)
                angle = _authors_angle(phi, tt[None, :])
                new_phi = omega
            else:
                step = tl.load(dt + t * B + b, mask=bv, other=0.0)
                angle = _wrap(omega * step[None, :] + phi, 6.2831855)
                new_phi = angle
            c_t = tl.cos(angle)
            s_t = tl.sin(angle)
        else:
            c_t = tl.load(cos + t * B * K + bk, mask=kb_ok, other=0.0)
            s_t = tl.load(sin + t * B * K + bk, mask=kb_ok, other=0.0)
        f = fs[None, :, :] * ff[:, :, None]
        w = (g * i)[None, :, :]
        if NORMALISED:
            w = w * (1.0 - f)
        r = f * re + w * c_t[:, :, None]
        s = f * im + w * s_t[:, :, None]
        amp, _ = _amplitude(r, s)
        po = _dot(amp, tl.load(wa + wa_idx, mask=wa_ok, other=0.0))
        pz = _dot(amp, tl.load(wa + M * D + wa_idx, mask=wa_ok, other=0.0))
        o = tl.sigmoid(po + pre_o)
        c = _tanh(pz + b_z)
        z_new = tl.sum(o * c, axis=0)
        if MEAN:
            z_new = z_new / K
        if HAS_MASK:
            on = tl.load(mask + t * B + b, mask=bv, other=0.0)
            tl.store(out + t * B * M + bm, z_new * on[:, None], mask=bm_ok)
            keep2, keep3 = on[None, :] > 0, on[None, :, None] > 0
            z = tl.where(on[:, None] > 0, z_new, z)
            re = tl.where(keep3, r, re)
            im = tl.where(keep3, s, im)
            phi = tl.where(keep2, new_phi, phi)
        else:
            tl.store(out + t * B * M + bm, z_new, mask=bm_ok)
            z, re, im, phi = z_new, r, s, new_phi
        if KEEP:
            a_row = act + t * B * A
            tl.store(a_row + b[:, None] * A + d[None, :], fs, mask=bd_ok)
            tl.store(a_row + b[:, None] * A + D + d[None, :], g, mask=bd_ok)
            tl.store(a_row + b[:, None] * A + 2 * D + d[None, :], i, mask=bd_ok)
            tl.store(a_row + b[None, :] * A + 3 * D + k[:, None], ff, mask=kb_ok)
            tl.store(o_h + t * B * K * M + read3, o, mask=kbm_ok)
            tl.store(c_h + t * B * K * M + read3, c, mask=kbm_ok)
            tl.store(zs + (t + 1) * B * M + bm, z, mask=bm_ok)
            tl.store(re_h + (t + 1) * B * K * D + hist3, re, mask=kbd_ok)
            tl.store(im_h + (t + 1) * B * K * D + hist3, im, mask=kbd_ok)
            if ADAPTIVE:
                tl.store(phi_h + (t + 1) * B * K + bk, phi, mask=kb_ok)
    # the final state in slot ``last`` (Saved.final reads it; with KEEP it is slot T, rewritten)
    tl.store(zs + last * B * M + bm, z, mask=bm_ok)
    tl.store(re_h + last * B * K * D + hist3, re, mask=kbd_ok)
    tl.store(im_h + last * B * K * D + hist3, im, mask=kbd_ok)
    if ADAPTIVE:
        tl.store(phi_h + last * B * K + bk, phi, mask=kb_ok)


@triton.jit
def _backward_kernel(
    whh, wa, cos, sin, dt, times, mask, zs, act, o_h, c_h, re_h, im_h, phi_h,
    gout, gz, gre, gim, gphi,
    dgx, dz0, dre0, dim0, dphi0, dcos, dsin, dwa, dbz,
    T, B, D, K, M, G, st_t, st_b,
    ADAPTIVE: tl.constexpr, AUTHORS: tl.constexpr, NORMALISED: tl.constexpr,
    MEAN: tl.constexpr, HAS_MASK: tl.constexpr,
    BB: tl.constexpr, DP: tl.constexpr, KP: tl.constexpr, MP: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    (b, d, k, m, bv, dv, kv, mv, bm, bm_ok, bd_ok, kb_ok, bk, k3, b3, d3, m3, kbd_ok, kbm_ok,
     state3, hist3, read3) = _tile_grids(pid, B, D, K, M, BB, DP, KP, MP)
    A = 3 * D + K  # columns of the gate activations
    ob = A  # first o row of gx / weight_hh
    wb = A + K * M  # first omega row (A-SFM)
    # weight tiles as the forward's, untransposed: the D-row blocks (DP, MP), the K-row blocks
    # (KP, MP), the o rows (KP, MP m, MP j), W_a's halves (KP, MP, DP)
    wd = d[:, None] * M + m[None, :]
    wd_ok = dv[:, None] & mv[None, :]
    wk = k[:, None] * M + m[None, :]
    wk_ok = kv[:, None] & mv[None, :]
    mi = m[None, :, None]
    wo = (ob + k3 * M + mi) * M + m3
    wo_ok = (k3 < K) & (mi < M) & (m3 < M)
    wa_idx = k3 * (2 * M * D) + mi * D + d3
    wa_ok = (k3 < K) & (mi < M) & (d3 < D)

    dz = tl.load(gz + bm, mask=bm_ok, other=0.0)
    dre = tl.load(gre + state3, mask=kbd_ok, other=0.0)
    dim = tl.load(gim + state3, mask=kbd_ok, other=0.0)
    dphi = tl.zeros((KP, BB), dtype=tl.float32)
    if ADAPTIVE:
        dphi = tl.load(gphi + bk, mask=kb_ok, other=0.0)
    g_wo = tl.zeros((KP, MP, DP), dtype=tl.float32)
    g_wz = tl.zeros((KP, MP, DP), dtype=tl.float32)
    g_bz = tl.zeros((KP, MP), dtype=tl.float32)
    for step in range(T):
        t = T - 1 - step
        dzn = tl.load(gout + t * B * M + bm, mask=bm_ok, other=0.0) + dz
        if HAS_MASK:
            on = tl.load(mask + t * B + b, mask=bv, other=0.0)
            dzn = dzn * on[:, None]
            dz = dz * (1.0 - on[:, None])
        if MEAN:  # z = (1 / K) sum_k o c
            dzn = dzn / K
        o = tl.load(o_h + t * B * K * M + read3, mask=kbm_ok, other=0.0)
        c = tl.load(c_h + t * B * K * M + read3, mask=kbm_ok, other=0.0)
        dpo = dzn[None, :, :] * c * o * (1.0 - o)
        dcand = dzn[None, :, :] * o * (1.0 - c * c)
        dA = _dot(dpo, tl.load(wa + wa_idx, mask=wa_ok, other=0.0))
        dA += _dot(dcand, tl.load(wa + M * D + wa_idx, mask=wa_ok, other=0.0))
        r = tl.load(re_h + (t + 1) * B * K * D + hist3, mask=kbd_ok, other=0.0)
        q = tl.load(im_h + (t + 1) * B * K * D + hist3, mask=kbd_ok, other=0.0)
        amp, pos = _amplitude(r, q)
        scale = tl.where(pos, dA / tl.where(pos, amp, 1.0), 0.0)
        g_wo += _dot(tl.permute(dpo, (0, 2, 1)), amp)
        g_wz += _dot(tl.permute(dcand, (0, 2, 1)), amp)
        g_bz += tl.sum(dcand, axis=1)
        if HAS_MASK:
            on3 = on[None, :, None]
            dr = dre * on3 + scale * r
            di = dim * on3 + scale * q
        else:
            dr = dre + scale * r
            di = dim + scale * q
        if ADAPTIVE:
            if AUTHORS:
                tt = tl.load(times + t * st_t + b * st_b, mask=bv, other=0.0)
                omega_prev = tl.load(phi_h + t * B * K + bk, mask=kb_ok, other=0.0)
                angle = _authors_angle(omega_prev, tt[None, :])
            else:
                angle = tl.load(phi_h + (t + 1) * B * K + bk, mask=kb_ok, other=0.0)
            c_t = tl.cos(angle)
            s_t = tl.sin(angle)
        else:
            c_t = tl.load(cos + t * B * K + bk, mask=kb_ok, other=0.0)
            s_t = tl.load(sin + t * B * K + bk, mask=kb_ok, other=0.0)
        a_row = act + t * B * A
        fs = tl.load(a_row + b[:, None] * A + d[None, :], mask=bd_ok, other=0.0)
        g = tl.load(a_row + b[:, None] * A + D + d[None, :], mask=bd_ok, other=0.0)
        i = tl.load(a_row + b[:, None] * A + 2 * D + d[None, :], mask=bd_ok, other=0.0)
        ff = tl.load(a_row + b[None, :] * A + 3 * D + k[:, None], mask=kb_ok, other=0.0)
        f = fs[None, :, :] * ff[:, :, None]
        rp = tl.load(re_h + t * B * K * D + hist3, mask=kbd_ok, other=0.0)
        qp = tl.load(im_h + t * B * K * D + hist3, mask=kbd_ok, other=0.0)
        df = dr * rp + di * qp
        w = (g * i)[None, :, :]
        dwrite = dr * c_t[:, :, None] + di * s_t[:, :, None]  # d / d(the write term)
        if NORMALISED:  # S_t = f S_{t-1} + (1 - f) w e^{j phase}
            df = df - w * dwrite
            dwrite = dwrite * (1.0 - f)
            w = w * (1.0 - f)
        dw = tl.sum(dwrite, axis=0)
        dcs = tl.sum(dr * w, axis=2)
        dsn = tl.sum(di * w, axis=2)
        d_s = tl.sum(df * ff[:, :, None], axis=0) * fs * (1.0 - fs)
        d_g = dw * i * g * (1.0 - g)
        d_i = dw * g * (1.0 - i * i)
        d_f = tl.sum(df * fs[None, :, :], axis=2) * ff * (1.0 - ff)
        row = dgx + t * B * G
        tl.store(row + b[:, None] * G + d[None, :], d_s, mask=bd_ok)
        tl.store(row + b[:, None] * G + D + d[None, :], d_g, mask=bd_ok)
        tl.store(row + b[:, None] * G + 2 * D + d[None, :], d_i, mask=bd_ok)
        tl.store(row + b[None, :] * G + 3 * D + k[:, None], d_f, mask=kb_ok)
        tl.store(row + b3 * G + ob + k3 * M + m3, dpo, mask=kbm_ok)
        back = _dot(d_s, tl.load(whh + wd, mask=wd_ok, other=0.0))
        back += _dot(d_g, tl.load(whh + D * M + wd, mask=wd_ok, other=0.0))
        back += _dot(d_i, tl.load(whh + 2 * D * M + wd, mask=wd_ok, other=0.0))
        back += _dot(tl.trans(d_f), tl.load(whh + 3 * D * M + wk, mask=wk_ok, other=0.0))
        back += tl.sum(_dot(dpo, tl.load(whh + wo, mask=wo_ok, other=0.0)), axis=0)
        if ADAPTIVE:
            carried = dphi
            if HAS_MASK:
                carried = dphi * on[None, :]
            if AUTHORS:
                # phase_t = wrap(omega_{t-1} t), slope t in float64; the slot carries
                # where(on, omega_t, omega_{t-1})
                d_om = carried
                slope = (dsn * c_t - dcs * s_t).to(tl.float64) * tt[None, :]
                dphi_new = slope.to(tl.float32)
            else:
                # phi_t = where(on, wrap(phi_{t-1} + omega_t dt), phi_{t-1}); wrap has slope 1
                dphi_new = dsn * c_t - dcs * s_t + carried
                step_t = tl.load(dt + t * B + b, mask=bv, other=0.0)
                d_om = dphi_new * step_t[None, :]
            if HAS_MASK:
                dphi_new += dphi * (1.0 - on[None, :])
            dphi = dphi_new
            tl.store(row + b[None, :] * G + wb + k[:, None], d_om, mask=kb_ok)
            back += _dot(tl.trans(d_om), tl.load(whh + wb * M + wk, mask=wk_ok, other=0.0))
        else:
            tl.store(dcos + t * B * K + bk, dcs, mask=kb_ok)
            tl.store(dsin + t * B * K + bk, dsn, mask=kb_ok)
        if HAS_MASK:
            dz += back
            dre = dre * (1.0 - on3) + dr * f
            dim = dim * (1.0 - on3) + di * f
        else:
            dz = back
            dre = dr * f
            dim = di * f
    tl.store(dz0 + bm, dz, mask=bm_ok)
    tl.store(dre0 + state3, dre, mask=kbd_ok)
    tl.store(dim0 + state3, dim, mask=kbd_ok)
    if ADAPTIVE:
        tl.store(dphi0 + bk, dphi, mask=kb_ok)
    part = dwa + pid * (K * 2 * M * D)
    tl.store(part + wa_idx, g_wo, mask=wa_ok)
    tl.store(part + M * D + wa_idx, g_wz, mask=wa_ok)
    kk, mm = k[:, None], m[None, :]
    tl.store(dbz + pid * K * M + kk * M + mm, g_bz, mask=(kk < K) & (mm < M))


# --------------------------------------------------------------------------- host side
def _flags(p: Inputs) -> dict[str, bool]:
    return {
        "ADAPTIVE": p.adaptive,
        "AUTHORS": p.authors,
        "NORMALISED": p.normalised,
        "MEAN": p.mean_readout,
        "HAS_MASK": p.mask is not None,
    }


def _time_args(p: Inputs) -> tuple[Tensor | None, Tensor, int, int]:
    """The float32 time steps of the accumulated A-SFM phase (T, B) or None, the float64
    ``times`` and their strides (an expanded (T,) axis is read in place)."""
    return time_steps(p), p.times, p.times.stride(0), p.times.stride(1)


def forward_triton(p: Inputs, keep: bool) -> tuple[Tensor, Saved]:
    """The recurrence forward on the Triton kernel, as :func:`.pytorch.forward_torch`: the
    outputs (T, B, M) and the histories (every step's with ``keep``, else the final state's).

    Parameters
    ----------
    p : Inputs, float32 tensors on a CUDA device (or the CPU under the interpreter); an SFM's
        phases are given (cos, sin (T, B, K)) or computed here from ``omega`` and the float64
        times, as the PyTorch algorithm does
    keep : bool, save every step's values for :func:`backward_triton`

    Returns
    -------
    out : Tensor [shape=(T, B, M)]
    saved : Saved, views of one buffer laid out by :func:`.pytorch.history_layout`
    """
    _check_device(p.gx)
    T, B, D, K, M, G = sizes(p)
    launch = plan(B, D, K, M)
    cos, sin = phases(p)
    dt, times, st_t, st_b = _time_args(p)
    gx = p.gx.contiguous()
    total, _ = history_layout(T, B, D, K, M, p.adaptive, keep)
    saved = Saved.carve(gx.new_empty(total), T, B, D, K, M, p.adaptive, keep)
    out = gx.new_empty(T, B, M)
    # absent arrays: any tensor stands in (a constexpr flag keeps the kernel from reading it)
    spare = gx
    mask = None if p.mask is None else p.mask.to(gx.dtype)
    _forward_kernel[(launch.grid,)](
        gx, p.z0.contiguous(), p.re0.contiguous(), p.im0.contiguous(),
        spare if p.phi0 is None else p.phi0.contiguous(),
        spare if cos is None else cos.contiguous(), spare if sin is None else sin.contiguous(),
        spare if dt is None else dt.contiguous(), times, spare if mask is None else mask,
        p.weight_hh.contiguous(), p.weight_a.contiguous(),
        spare if p.b_z is None else p.b_z.contiguous(),
        out, saved.zs, saved.act, saved.o, saved.c, saved.re, saved.im,
        spare if saved.phi is None else saved.phi,
        T, B, D, K, M, G, saved.last, st_t, st_b,
        **_flags(p), HAS_BZ=p.b_z is not None, KEEP=keep,
        BB=launch.BB, DP=launch.DP, KP=launch.KP, MP=launch.MP, num_warps=launch.num_warps,
    )  # fmt: skip
    return out, saved


def backward_triton(
    p: Inputs,
    shape: tuple[int, ...],
    s: Saved,
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
) -> Grads:
    """Backward-through-time on the Triton kernel, as :func:`.pytorch.backward_torch`.

    Parameters
    ----------
    p : Inputs; only cos, sin (SFM), times, time0 (A-SFM), mask, the weights and the flags are
        read
    shape : (T, B, D, K, M, G)
    s : Saved, the histories of a forward with ``keep`` (either kernel's)
    gout : Tensor [shape=(T, B, M)], gradient of the outputs
    gz : Tensor [shape=(B, M)]; gre, gim : Tensor [shape=(B, D, K)]; gphi : Tensor
        [shape=(B, K)] or None: gradients of the final state

    Returns
    -------
    Grads, the gradients of gx (T, B, G), the initial state, cos / sin (SFM), the weights
    """
    _check_device(gout)
    T, B, D, K, M, G = shape
    launch = plan(B, D, K, M)
    dt, times, st_t, st_b = _time_args(p)
    new = gout.new_empty
    dgx = new(T, B, G)
    dz0, dre0, dim0 = new(B, M), new(B, D, K), new(B, D, K)
    dphi0 = new(B, K) if p.adaptive else None
    dcos, dsin = (None, None) if p.adaptive else (new(T, B, K), new(T, B, K))
    dwa = gout.new_zeros(launch.grid, K, 2 * M, D)
    dbz = gout.new_zeros(launch.grid, K, M)
    spare = gout
    mask = None if p.mask is None else p.mask.to(gout.dtype)
    _backward_kernel[(launch.grid,)](
        p.weight_hh.contiguous(), p.weight_a.contiguous(),
        spare if p.cos is None else p.cos.contiguous(),
        spare if p.sin is None else p.sin.contiguous(),
        spare if dt is None else dt.contiguous(), times, spare if mask is None else mask,
        s.zs, s.act, s.o, s.c, s.re, s.im, spare if s.phi is None else s.phi,
        gout.contiguous(), gz.contiguous(), gre.contiguous(), gim.contiguous(),
        spare if gphi is None else gphi.contiguous(),
        dgx, dz0, dre0, dim0, spare if dphi0 is None else dphi0,
        spare if dcos is None else dcos, spare if dsin is None else dsin, dwa, dbz,
        T, B, D, K, M, G, st_t, st_b,
        **_flags(p), BB=launch.BB, DP=launch.DP, KP=launch.KP, MP=launch.MP,
        num_warps=launch.num_warps,
    )  # fmt: skip
    gwhh = dgx.flatten(0, 1).t() @ s.zs[:T].flatten(0, 1)
    gbz = None if p.b_z is None else dbz.sum(0)
    return Grads(dgx, dz0, dre0, dim0, dphi0, dcos, dsin, gwhh, dwa.sum(0), gbz)
