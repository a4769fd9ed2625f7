"""The fast SFM / A-SFM recurrence: a hand-written backward-through-time.

The reference path (:meth:`freqnn.SFMCell.scan` with ``use_path("reference")``) steps the
equations of :mod:`freqnn.sfm.step` and lets autograd record a few dozen small operations per
step; on a CPU the recurrence is then dominated by per-operation overhead, not arithmetic. Here one
layer's whole time loop is a single :class:`torch.autograd.Function`: the forward saves only what
the backward needs, and the backward runs the recurrence in reverse by hand. Two implementations
share this contract and are tested against the reference (outputs and every gradient, float64):

``"compiled"``
    The time loop in C++ (plain loops, the GEMMs through the BLAS that ships inside PyTorch),
    compiled with the system C++ compiler on first use and cached (see :func:`compiled_status`).
    CPU, float32 and float64.
``"pytorch"``
    The same algorithm written with PyTorch operations: any device and dtype, no compiler.

Path selection (:func:`use_path`, :func:`set_path`, environment variable ``FREQNN_SFM_PATH``):
``"fast"`` (default) takes ``"compiled"`` where it applies and ``"pytorch"`` otherwise;
``"reference"`` is the autograd oracle. The phases of an SFM are computed exactly as in the
reference (float64 ``omega * t`` reduced modulo 2*pi, then cast), outside the Function, so the
gradient to learnable frequencies flows through autograd as before.

Limitations: the fast paths support first derivatives only (``create_graph=True`` double
backward raises; use the reference path for it).

Saved activations (per step and sequence; float count): the memory ``Re S_t``, ``Im S_t``
(2 D K), the read-out gates ``o`` and ``tanh(W_z A + b_z)`` (2 K M), the four gate activations
(3 D + K) and the output ``z`` (M); A-SFM adds the phase (K). The amplitudes and the cos / sin of
A-SFM's phase are recomputed in the backward.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import hashlib
import math
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..checks import fail
from ..frequencies import phase
from .state import SFMState, last_time

__all__ = [
    "PATHS",
    "compiled_available",
    "compiled_status",
    "empty_cache",
    "get_path",
    "scan",
    "set_path",
    "use_path",
    "use_reference",
]

TWO_PI = 2.0 * math.pi
PATHS = ("fast", "compiled", "pytorch", "reference")
PATH_ENV = "FREQNN_SFM_PATH"


# --------------------------------------------------------------------------- path selection
def _check_path(path: object, name: str = "path") -> str:
    if path not in PATHS:
        fail(name, f"one of {PATHS}", repr(path))
    return path  # type: ignore[return-value]


_default_path = _check_path(os.environ.get(PATH_ENV, "fast"), PATH_ENV)
_path_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "freqnn_sfm_path", default=None
)


def get_path() -> str:
    """The recurrence path in use: the innermost :func:`use_path`, else the process default."""
    override = _path_override.get()
    return _default_path if override is None else override


def set_path(path: str) -> None:
    """Set the process-wide default path: ``"fast"`` | ``"compiled"`` | ``"pytorch"`` |
    ``"reference"`` (initially ``$FREQNN_SFM_PATH`` or ``"fast"``)."""
    global _default_path
    _default_path = _check_path(path)


@contextlib.contextmanager
def use_path(path: str) -> Iterator[None]:
    """Run the SFM recurrences inside the ``with`` block on ``path`` (context-local)."""
    token = _path_override.set(_check_path(path))
    try:
        yield
    finally:
        _path_override.reset(token)


def use_reference() -> contextlib.AbstractContextManager[None]:
    """``with use_reference():`` runs the plain autograd reference path (the tests' oracle)."""
    return use_path("reference")


# --------------------------------------------------------------------------- the C++ kernel
_CPU_SOURCE = r"""
// SFM / A-SFM time loop of one layer on the CPU: forward and backward-through-time.
// Row-major arrays. Inside the kernel the memory is laid out (B, K, D) (the library's state is
// (B, D, K)) so the loops over D are contiguous and vectorise. GEMMs go to the BLAS symbols
// exported by libtorch_cpu.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*);
// Optional MKL extensions (weak: null, and unused, with another BLAS).
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));
void cblas_sgemm_batch(int, const int*, const int*, const int*, const int*, const int*,
                       const float*, const float**, const int*, const float**, const int*,
                       const float*, float**, const int*, int, const int*)
    __attribute__((weak));
void cblas_dgemm_batch(int, const int*, const int*, const int*, const int*, const int*,
                       const double*, const double**, const int*, const double**, const int*,
                       const double*, double**, const int*, int, const int*)
    __attribute__((weak));
}

namespace {
typedef int64_t i64;

// ------------------------------------------------------------------------------- GEMM
// GEMMs below this many multiply-adds (about 0.1 ms on one core) run on one thread: a parallel
// region costs more than it saves on them, and far more when the cores are shared with other
// processes (a region waits for its slowest thread to be scheduled).
const double kThreadedWork = double(1 << 22);

void threads_for(double work) {
  if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(work < kThreadedWork ? 1 : 0);
}

// Restores MKL's thread-local setting when a kernel returns.
struct ThreadScope {
  int saved = 0;
  ThreadScope() { saved = MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(0) : 0; }
  ~ThreadScope() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(saved);
  }
};

inline void blas(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas_batch(int ta, int tb, int m, int n, int k, float alpha, const float** a,
                       int lda, const float** b, int ldb, float beta, float** c, int ldc,
                       int count) {
  cblas_sgemm_batch(101, &ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc, 1,
                    &count);
}
inline void blas_batch(int ta, int tb, int m, int n, int k, double alpha, const double** a,
                       int lda, const double** b, int ldb, double beta, double** c, int ldc,
                       int count) {
  cblas_dgemm_batch(101, &ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc, 1,
                    &count);
}
template <class S> bool have_batch();
template <> bool have_batch<float>() { return cblas_sgemm_batch != nullptr; }
template <> bool have_batch<double>() { return cblas_dgemm_batch != nullptr; }

// Row-major C (m x n) = alpha op(A) op(B) + beta C: the column-major call with A, B swapped.
template <class S>
void mm(bool ta, bool tb, i64 m, i64 n, i64 k, S alpha, const S* a, i64 lda, const S* b,
        i64 ldb, S beta, S* c, i64 ldc) {
  if (m == 0 || n == 0) return;
  threads_for(double(m) * n * k);
  blas(tb ? 'T' : 'N', ta ? 'T' : 'N', (int)n, (int)m, (int)k, alpha, b, (int)ldb, a, (int)lda,
       beta, c, (int)ldc);
}

// `count` row-major products C_i = alpha op(A_i) op(B_i) + beta C_i with X_i = X + i * sx,
// in one batched call (one parallel region) where MKL provides it. `ptrs`: 3 * count slots.
template <class S>
void mm_batch(i64 count, bool ta, bool tb, i64 m, i64 n, i64 k, S alpha, const S* a, i64 sa,
              i64 lda, const S* b, i64 sb, i64 ldb, S beta, S* c, i64 sc, i64 ldc,
              const S** ptrs) {
  if (m == 0 || n == 0 || count == 0) return;
  if (!have_batch<S>()) {
    for (i64 i = 0; i < count; ++i)
      mm<S>(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, ldc);
    return;
  }
  const S** pa = ptrs;
  const S** pb = ptrs + count;
  S** pc = const_cast<S**>(ptrs + 2 * count);
  for (i64 i = 0; i < count; ++i) {
    pa[i] = a + i * sa;
    pb[i] = b + i * sb;
    pc[i] = c + i * sc;
  }
  threads_for(double(count) * m * n * k);
  blas_batch(ta ? 112 : 111, tb ? 112 : 111, (int)m, (int)n, (int)k, alpha, pa, (int)lda, pb,
             (int)ldb, beta, pc, (int)ldc, (int)count);
}

// ------------------------------------------------------------------------------- math
// exp without branches or library calls, so that loops over it vectorise: x = n ln2 + r with
// |r| <= ln2 / 2, e^r by its Taylor series (truncation below 1 ulp), 2^n written into the
// exponent bits. The argument is clamped where e^x leaves the normal range; at the ends of
// sigmoid and tanh this changes the result by less than 1e-300 (1e-37 in float32).
inline double fexp(double x) {
  x = x < -708.0 ? -708.0 : x;
  x = x > 709.0 ? 709.0 : x;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double kd = x * 1.4426950408889634 + magic;
  const double n = kd - magic;
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1 / 13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t bits, mbits;
  std::memcpy(&bits, &kd, 8);
  std::memcpy(&mbits, &magic, 8);
  const int64_t e = (bits - mbits + 1023) << 52;  // bits - mbits = n
  double scale;
  std::memcpy(&scale, &e, 8);
  return p * scale;
}

inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float kd = x * 1.44269504f + magic;
  const float n = kd - magic;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits, mbits;
  std::memcpy(&bits, &kd, 4);
  std::memcpy(&mbits, &magic, 4);
  const int32_t e = (bits - mbits + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}

template <class S> inline S sigm(S x) { return S(1) / (S(1) + fexp(-x)); }
// tanh x = 2 sigmoid(2x) - 1: absolute error of a few ulp of 1
template <class S> inline S ftanh(S x) { return S(2) / (S(1) + fexp(S(-2) * x)) - S(1); }

template <class S> inline S wrap(S p) {  // as freqnn.frequencies.wrap_phase
  const S two_pi = S(6.283185307179586);
  return p - two_pi * std::floor(p / two_pi);
}

// ------------------------------------------------------------------------------- layout
enum Dim { T_, B_, D_, K_, M_, G_, ADAPTIVE, KEEP, CHUNK, NDIMS };

// Forward pointers, in order (null where absent). Memory arrays are (., B, K, D).
// SFM phases: cos, sin given, or (inference) computed here from omega (K) and the float64
// timestamps (T, B) exactly as freqnn.frequencies.phase does. A-SFM steps: dt given, or
// computed from the timestamps and the state's float64 time (B).
enum FwdPtr {
  F_GX, F_WHH, F_WA, F_BZ, F_COS, F_SIN, F_DT, F_MASK, F_Z0, F_RE0, F_IM0, F_PHI0,
  F_OUT, F_ZS, F_ACT, F_O, F_C, F_RE, F_IM, F_PHI, F_WORK, F_OMEGA, F_TIMES, F_TIME0,
  F_REF, F_IMF, NFWD
};
// The initial re0, im0 come (B, D, K) as the library's state; F_REF, F_IMF (optional) receive
// the final ones in that layout too.

template <class S>
void forward(const i64* dim, void* const* ptr) {
  const i64 T = dim[T_], B = dim[B_], D = dim[D_], K = dim[K_], M = dim[M_], G = dim[G_];
  const bool adaptive = dim[ADAPTIVE] != 0, keep = dim[KEEP] != 0;
  const i64 A = 3 * D + K, OB = 3 * D + K, WB = OB + K * M, KD = K * D, M2 = 2 * M;
  const S* gx = (const S*)ptr[F_GX];
  const S* whh = (const S*)ptr[F_WHH];
  const S* wa = (const S*)ptr[F_WA];
  const S* bz = (const S*)ptr[F_BZ];
  const S* cosv = (const S*)ptr[F_COS];
  const S* sinv = (const S*)ptr[F_SIN];
  const S* dt = (const S*)ptr[F_DT];
  const uint8_t* mask = (const uint8_t*)ptr[F_MASK];
  const S* omega = (const S*)ptr[F_OMEGA];
  const double* times = (const double*)ptr[F_TIMES];
  const double* time0 = (const double*)ptr[F_TIME0];
  S* out = (S*)ptr[F_OUT];
  S* zs = (S*)ptr[F_ZS];
  S* act = (S*)ptr[F_ACT];
  S* O = (S*)ptr[F_O];
  S* C = (S*)ptr[F_C];
  S* re = (S*)ptr[F_RE];
  S* im = (S*)ptr[F_IM];
  S* phi = (S*)ptr[F_PHI];
  S* pre = (S*)ptr[F_WORK];  // (B, G) pre-activations of the step
  S* proj = pre + B * G;     // (K, B, 2M) [U_o ; W_z] A
  S* amp = proj + K * B * M2;  // (K, B, D) amplitudes
  S* w = amp + K * B * D;    // (D) g * i of one sequence
  S* cs = w + D;             // (2K) cos | sin of one sequence
  ThreadScope threads;
  std::vector<const S*> ptr_buffer(3 * K);
  const S** ptrs = ptr_buffer.data();
  std::memcpy(zs, ptr[F_Z0], sizeof(S) * B * M);
  {
    const S* r0 = (const S*)ptr[F_RE0];
    const S* i0 = (const S*)ptr[F_IM0];
    for (i64 b = 0; b < B; ++b)
      for (i64 d = 0; d < D; ++d)
        for (i64 k = 0; k < K; ++k) {
          re[(b * K + k) * D + d] = r0[(b * D + d) * K + k];
          im[(b * K + k) * D + d] = i0[(b * D + d) * K + k];
        }
  }
  if (adaptive) std::memcpy(phi, ptr[F_PHI0], sizeof(S) * B * K);
  for (i64 t = 0; t < T; ++t) {
    // state slots: all T + 1 with `keep` (training), else two alternating ones
    const i64 sp = keep ? t : (t & 1), sn = keep ? t + 1 : ((t + 1) & 1), sa = keep ? t : 0;
    const S* zp = zs + sp * B * M;
    S* zn = zs + sn * B * M;
    S* at = act + sa * B * A;
    std::memcpy(pre, gx + t * B * G, sizeof(S) * B * G);
    mm<S>(false, true, B, G, M, S(1), zp, M, whh, M, S(1), pre, G);
    for (i64 b = 0; b < B; ++b) {
      const bool on = mask == nullptr || mask[t * B + b];
      const S* pb = pre + b * G;
      S* ab = at + b * A;
      const S *fs = ab, *g = ab + D, *in = ab + 2 * D, *ff = ab + 3 * D;
#pragma omp simd
      for (i64 j = 0; j < 2 * D; ++j) ab[j] = sigm(pb[j]);
#pragma omp simd
      for (i64 d = 0; d < D; ++d) ab[2 * D + d] = ftanh(pb[2 * D + d]);
#pragma omp simd
      for (i64 k = 0; k < K; ++k) ab[3 * D + k] = sigm(pb[3 * D + k]);
#pragma omp simd
      for (i64 d = 0; d < D; ++d) w[d] = g[d] * in[d];
      const S *cb, *sb;
      if (adaptive) {
        const S* pp = phi + (sp * B + b) * K;
        S* pn = phi + (sn * B + b) * K;
        const S step = dt ? dt[t * B + b]
                          : S(times[t * B + b] - (t ? times[(t - 1) * B + b] : time0[b]));
        for (i64 k = 0; k < K; ++k) {
          const S p = wrap(pp[k] + pb[WB + k] * step);
          cs[k] = std::cos(p);
          cs[K + k] = std::sin(p);
          pn[k] = on ? p : pp[k];
        }
        cb = cs;
        sb = cs + K;
      } else if (cosv) {
        cb = cosv + (t * B + b) * K;
        sb = sinv + (t * B + b) * K;
      } else {
        const double tb = times[t * B + b];
        for (i64 k = 0; k < K; ++k) {
          const S p = S(wrap(double(omega[k]) * tb));
          cs[k] = std::cos(p);
          cs[K + k] = std::sin(p);
        }
        cb = cs;
        sb = cs + K;
      }
      for (i64 k = 0; k < K; ++k) {
        const S ffk = ff[k], ck = cb[k], sk = sb[k];
        const S* rp = re + ((sp * B + b) * K + k) * D;
        const S* ip = im + ((sp * B + b) * K + k) * D;
        S* rn = re + ((sn * B + b) * K + k) * D;
        S* inn = im + ((sn * B + b) * K + k) * D;
        S* ak = amp + (k * B + b) * D;
        if (on) {
#pragma omp simd
          for (i64 d = 0; d < D; ++d) {
            const S f = fs[d] * ffk;
            const S r = f * rp[d] + w[d] * ck;
            const S s = f * ip[d] + w[d] * sk;
            ak[d] = std::sqrt(r * r + s * s);  // sqrt(0) = 0 exactly, as the reference
            rn[d] = r;
            inn[d] = s;
          }
        } else {  // padded step: the state is kept; the amplitudes feed nothing that is kept
          for (i64 d = 0; d < D; ++d) ak[d] = S(0);
          if (rn != rp) std::memcpy(rn, rp, sizeof(S) * D);
          if (inn != ip) std::memcpy(inn, ip, sizeof(S) * D);
        }
      }
    }
    mm_batch<S>(K, false, true, B, M2, D, S(1), amp, B * D, D, wa, M2 * D, D, S(0), proj,
                B * M2, M2, ptrs);
    for (i64 b = 0; b < B; ++b) {
      const bool on = mask == nullptr || mask[t * B + b];
      S* zb = zn + b * M;
      S* ob = out + (t * B + b) * M;
      if (!on) {
        std::memcpy(zb, zp + b * M, sizeof(S) * M);
        for (i64 m = 0; m < M; ++m) ob[m] = S(0);
        continue;
      }
      const S* pb = pre + b * G + OB;
      for (i64 m = 0; m < M; ++m) zb[m] = S(0);
      for (i64 k = 0; k < K; ++k) {
        const S* pk = proj + (k * B + b) * M2;
        S* ok = O + ((sa * B + b) * K + k) * M;
        S* ck = C + ((sa * B + b) * K + k) * M;
        const S* bk = bz ? bz + k * M : nullptr;
#pragma omp simd
        for (i64 m = 0; m < M; ++m) {
          const S o = sigm(pk[m] + pb[k * M + m]);
          const S c = ftanh(bk ? pk[M + m] + bk[m] : pk[M + m]);
          ok[m] = o;
          ck[m] = c;
          zb[m] += o * c;
        }
      }
      std::memcpy(ob, zb, sizeof(S) * M);
    }
  }
  if (ptr[F_REF]) {
    const i64 last = keep ? T : (T & 1);
    S* rf = (S*)ptr[F_REF];
    S* jf = (S*)ptr[F_IMF];
    for (i64 b = 0; b < B; ++b)
      for (i64 d = 0; d < D; ++d)
        for (i64 k = 0; k < K; ++k) {
          rf[(b * D + d) * K + k] = re[((last * B + b) * K + k) * D + d];
          jf[(b * D + d) * K + k] = im[((last * B + b) * K + k) * D + d];
        }
  }
}

// Backward pointers, in order (null where absent).
enum BwdPtr {
  B_WHH, B_WA, B_BZ, B_COS, B_SIN, B_DT, B_MASK, B_ZS, B_ACT, B_O, B_C, B_RE, B_IM, B_PHI,
  B_GOUT, B_DGX, B_DZ, B_DRE, B_DIM, B_DPHI, B_DCOS, B_DSIN, B_DWHH, B_DWA, B_DBZ, B_WORK, NBWD
};

template <class S>
void backward(const i64* dim, void* const* ptr) {
  const i64 T = dim[T_], B = dim[B_], D = dim[D_], K = dim[K_], M = dim[M_], G = dim[G_];
  const bool adaptive = dim[ADAPTIVE] != 0;
  const i64 TC = dim[CHUNK];
  const i64 A = 3 * D + K, OB = 3 * D + K, WB = OB + K * M, M2 = 2 * M;
  const S* whh = (const S*)ptr[B_WHH];
  const S* wa = (const S*)ptr[B_WA];
  const S* cosv = (const S*)ptr[B_COS];
  const S* sinv = (const S*)ptr[B_SIN];
  const S* dt = (const S*)ptr[B_DT];
  const uint8_t* mask = (const uint8_t*)ptr[B_MASK];
  const S* zs = (const S*)ptr[B_ZS];
  const S* act = (const S*)ptr[B_ACT];
  const S* O = (const S*)ptr[B_O];
  const S* C = (const S*)ptr[B_C];
  const S* re = (const S*)ptr[B_RE];
  const S* im = (const S*)ptr[B_IM];
  const S* phi = (const S*)ptr[B_PHI];
  const S* gout = (const S*)ptr[B_GOUT];
  S* dgx = (S*)ptr[B_DGX];  // (T, B, G): gradients of the pre-activations (= of gx)
  S* dz = (S*)ptr[B_DZ];    // carries: in, gradient of the final state; out, of the initial
  S* dre = (S*)ptr[B_DRE];
  S* dim_ = (S*)ptr[B_DIM];
  S* dphi = (S*)ptr[B_DPHI];
  S* dcos = (S*)ptr[B_DCOS];
  S* dsin = (S*)ptr[B_DSIN];
  S* dwhh = (S*)ptr[B_DWHH];
  S* dwa = (S*)ptr[B_DWA];
  S* dbz = (S*)ptr[B_DBZ];
  S* dproj = (S*)ptr[B_WORK];        // (K, TC, B, 2M) read-out gradients of a chunk of steps
  S* ampc = dproj + K * TC * B * M2;  // (K, TC, B, D) their amplitudes
  S* dA = ampc + K * TC * B * D;      // (K, B, D)
  S* dzn = dA + K * B * D;            // (B, M) gradient of the step's new z
  S* dw = dzn + B * M;                // (D) g * i
  S* dfs = dw + D;                    // (D) sigmoid(ste)
  S* w = dfs + D;                     // (D) g * i
  S* dcs = w + D;                     // (K) cos, then sin, sigmoid(fre), cos, sin values
  S *dsn = dcs + K, *dff = dsn + K, *cb_ = dff + K, *sb_ = cb_ + K;
  ThreadScope threads;
  std::vector<const S*> ptr_buffer(3 * K);
  const S** ptrs = ptr_buffer.data();
  std::memset(dwa, 0, sizeof(S) * K * M2 * D);
  if (dbz) std::memset(dbz, 0, sizeof(S) * K * M);
  i64 chunk_end = T;
  for (i64 t = T - 1; t >= 0; --t) {
    const i64 c0 = (t / TC) * TC, pos = t - c0;
    const S* at = act + t * B * A;
    S* dp = dgx + t * B * G;
    // 1. read-out: z = sum_k o * c, o = sigmoid(U_o A + pre_o), c = tanh(W_z A + b_z)
    for (i64 b = 0; b < B; ++b) {
      const bool on = mask == nullptr || mask[t * B + b];
      S* zb = dzn + b * M;
      S* dpb = dp + b * G;
      if (!on) {  // padded: nothing of the step is kept, its gradients are zero
        for (i64 j = 0; j < G; ++j) dpb[j] = S(0);
        for (i64 k = 0; k < K; ++k)
          for (i64 j = 0; j < M2; ++j) dproj[((k * TC + pos) * B + b) * M2 + j] = S(0);
        continue;
      }
      const S* gb = gout + (t * B + b) * M;
      S* dzb = dz + b * M;
      for (i64 m = 0; m < M; ++m) {
        zb[m] = gb[m] + dzb[m];
        dzb[m] = S(0);
      }
      for (i64 k = 0; k < K; ++k) {
        const S* ok = O + ((t * B + b) * K + k) * M;
        const S* ck = C + ((t * B + b) * K + k) * M;
        S* dq = dproj + ((k * TC + pos) * B + b) * M2;
        S* dpo = dpb + OB + k * M;
#pragma omp simd
        for (i64 m = 0; m < M; ++m) {
          const S o = ok[m], c = ck[m];
          const S a = zb[m] * c * o * (S(1) - o);
          dpo[m] = a;
          dq[m] = a;
          dq[M + m] = zb[m] * o * (S(1) - c * c);
        }
        if (dbz) {
          S* dbk = dbz + k * M;
#pragma omp simd
          for (i64 m = 0; m < M; ++m) dbk[m] += dq[M + m];
        }
      }
    }
    mm_batch<S>(K, false, false, B, D, M2, S(1), dproj + pos * B * M2, TC * B * M2, M2, wa,
                M2 * D, D, S(0), dA, B * D, D, ptrs);
    // 2. amplitude and memory update (re, im of step t at slot t + 1)
    for (i64 b = 0; b < B; ++b) {
      const bool on = mask == nullptr || mask[t * B + b];
      if (!on) {  // carries pass unchanged
        for (i64 k = 0; k < K; ++k)
          for (i64 d = 0; d < D; ++d) ampc[((k * TC + pos) * B + b) * D + d] = S(0);
        if (!adaptive)
          for (i64 k = 0; k < K; ++k) dcos[(t * B + b) * K + k] = dsin[(t * B + b) * K + k] = S(0);
        continue;
      }
      const S* ab = at + b * A;
      const S *fs = ab, *g = ab + D, *in = ab + 2 * D, *ff = ab + 3 * D;
      const S *cb, *sb;
      if (adaptive) {
        const S* pn = phi + ((t + 1) * B + b) * K;
        for (i64 k = 0; k < K; ++k) {
          cb_[k] = std::cos(pn[k]);
          sb_[k] = std::sin(pn[k]);
        }
        cb = cb_;
        sb = sb_;
      } else {
        cb = cosv + (t * B + b) * K;
        sb = sinv + (t * B + b) * K;
      }
      for (i64 d = 0; d < D; ++d) {
        w[d] = g[d] * in[d];
        dw[d] = dfs[d] = S(0);
      }
      for (i64 k = 0; k < K; ++k) {
        const S ffk = ff[k], ck = cb[k], sk = sb[k];
        const i64 now = (((t + 1) * B + b) * K + k) * D, prev = ((t * B + b) * K + k) * D;
        const S *rn = re + now, *inn = im + now, *rp = re + prev, *ip = im + prev;
        const S* dak = dA + (k * B + b) * D;
        S* ampk = ampc + ((k * TC + pos) * B + b) * D;
        S* drb = dre + (b * K + k) * D;
        S* dib = dim_ + (b * K + k) * D;
        S acs = S(0), asn = S(0), aff = S(0);
#pragma omp simd reduction(+ : acs, asn, aff)
        for (i64 d = 0; d < D; ++d) {
          const S r = rn[d], s = inn[d];
          const S a = std::sqrt(r * r + s * s);
          const S da = a > S(0) ? dak[d] / a : S(0);  // |S| has a zero subgradient at 0
          const S dr = drb[d] + da * r, di = dib[d] + da * s;
          const S f = fs[d] * ffk;
          const S df = dr * rp[d] + di * ip[d];
          ampk[d] = a;
          drb[d] = dr * f;
          dib[d] = di * f;
          dw[d] += dr * ck + di * sk;
          dfs[d] += df * ffk;
          acs += dr * w[d];
          asn += di * w[d];
          aff += df * fs[d];
        }
        dcs[k] = acs;
        dsn[k] = asn;
        dff[k] = aff;
      }
      S* dpb = dp + b * G;
#pragma omp simd
      for (i64 d = 0; d < D; ++d) {
        dpb[d] = dfs[d] * fs[d] * (S(1) - fs[d]);
        dpb[D + d] = dw[d] * in[d] * g[d] * (S(1) - g[d]);
        dpb[2 * D + d] = dw[d] * g[d] * (S(1) - in[d] * in[d]);
      }
      for (i64 k = 0; k < K; ++k) dpb[3 * D + k] = dff[k] * ff[k] * (S(1) - ff[k]);
      if (adaptive) {  // phi_t = wrap(phi_{t-1} + omega_t dt): slope 1 in phi, dt in omega
        S* dpk = dphi + b * K;
        const S step = dt[t * B + b];
        for (i64 k = 0; k < K; ++k) {
          const S v = dpk[k] + dsn[k] * cb[k] - dcs[k] * sb[k];
          dpk[k] = v;
          dpb[WB + k] = v * step;
        }
      } else {
        for (i64 k = 0; k < K; ++k) {
          dcos[(t * B + b) * K + k] = dcs[k];
          dsin[(t * B + b) * K + k] = dsn[k];
        }
      }
    }
    // 3. into z_{t-1} through the recurrent weights
    mm<S>(false, false, B, M, G, S(1), dp, G, whh, M, S(1), dz, M);
    // 4. read-out weights: one batched GEMM per chunk of steps
    if (pos == 0) {
      mm_batch<S>(K, true, false, M2, D, (chunk_end - c0) * B, S(1), dproj, TC * B * M2, M2,
                  ampc, TC * B * D, D, S(1), dwa, M2 * D, D, ptrs);
      chunk_end = c0;
    }
  }
  // recurrent weights: one GEMM over all steps, dW_hh = sum_t dpre_t^T z_{t-1}
  if (dwhh) mm<S>(true, false, G, M, T * B, S(1), dgx, G, zs, M, S(0), dwhh, M);
}
}  // namespace

extern "C" {
int freqnn_sfm_abi() { return 6; }  // bump with any change of the pointer lists
void freqnn_sfm_forward_f32(const int64_t* d, void* const* p) { forward<float>(d, p); }
void freqnn_sfm_forward_f64(const int64_t* d, void* const* p) { forward<double>(d, p); }
void freqnn_sfm_backward_f32(const int64_t* d, void* const* p) { backward<float>(d, p); }
void freqnn_sfm_backward_f64(const int64_t* d, void* const* p) { backward<double>(d, p); }
}
"""

_ABI = 6
# -fno-trapping-math lets the clamps of fexp become selects, so its loops vectorise
_CXXFLAGS = (
    "-O3",
    "-std=c++17",
    "-fPIC",
    "-shared",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
)
_lib: ctypes.CDLL | None = None
_lib_error: str | None = None
_lib_info: dict[str, object] = {}
_lib_lock = threading.Lock()


def _torch_lib_dir() -> Path:
    return Path(torch.__file__).resolve().parent / "lib"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _build_dir() -> Path:
    from ..data.paths import cache_dir

    return cache_dir() / "sfm_kernel"


def _arch_flags() -> tuple[str, ...]:
    """AVX2 + FMA where PyTorch itself runs its AVX2 (or AVX-512) kernels, else the default."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch: no query, no vector flags
        return ()
    return ("-mavx2", "-mfma") if capability in ("AVX2", "AVX512") else ()


def _flags() -> tuple[str, ...]:
    return _CXXFLAGS + _arch_flags()


def _library_path(cxx: str) -> Path:
    key = "\n".join(
        [
            _CPU_SOURCE,
            " ".join(_flags()),
            cxx,
            torch.__version__,
            str(_torch_lib_dir()),
            platform.machine(),
            platform.system(),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _build_dir() / f"freqnn_sfm_{digest}.so"


def _compile(cxx: str, target: Path) -> None:
    """Compile the kernel to ``target`` (atomically: a finished library or nothing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lib_dir = _torch_lib_dir()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = Path(tmp) / "sfm_kernel.cpp"
        source.write_text(_CPU_SOURCE)
        partial = Path(tmp) / target.name
        cmd = [
            cxx,
            *_flags(),
            str(source),
            "-o",
            str(partial),
            f"-L{lib_dir}",
            f"-Wl,-rpath,{lib_dir}",
            "-ltorch_cpu",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
        os.replace(partial, target)


def _self_test(lib: ctypes.CDLL) -> None:
    """A small problem through both float types must match the PyTorch path (catches a BLAS
    with another integer width or a broken build)."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        T, B, D, K, M = 3, 2, 3, 2, 4
        G = 3 * D + K + K * M + K
        args = _Inputs(
            gx=torch.randn(T, B, G, generator=gen, dtype=dtype),
            z0=torch.randn(B, M, generator=gen, dtype=dtype),
            re0=torch.randn(B, D, K, generator=gen, dtype=dtype),
            im0=torch.randn(B, D, K, generator=gen, dtype=dtype),
            phi0=torch.rand(B, K, generator=gen, dtype=dtype),
            cos=None,
            sin=None,
            dt=torch.ones(T, B, dtype=dtype),
            mask=torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=torch.bool),
            weight_hh=torch.randn(G, M, generator=gen, dtype=dtype),
            weight_a=torch.randn(K, 2 * M, D, generator=gen, dtype=dtype),
            b_z=torch.randn(K, M, generator=gen, dtype=dtype),
        )
        got = _forward_compiled(lib, args, keep=True)
        want = _forward_torch(args, keep=True)
        if not torch.allclose(got.out, want.out, rtol=1e-4, atol=1e-4):
            raise RuntimeError("the compiled SFM kernel failed its self-test")


def _load_library() -> ctypes.CDLL | None:
    global _lib, _lib_error
    if _lib is not None or _lib_error is not None:
        return _lib
    with _lib_lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        start = time.perf_counter()
        try:
            cxx = _compiler()
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set CXX or install g++)")
            target = _library_path(cxx)
            built = not target.exists()
            if built:
                _compile(cxx, target)
            lib = ctypes.CDLL(str(target))
            if lib.freqnn_sfm_abi() != _ABI:
                raise RuntimeError(f"{target}: stale kernel ABI")
            ptr_args = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p)]
            for name in ("forward", "backward"):
                for suffix in ("f32", "f64"):
                    fn = getattr(lib, f"freqnn_sfm_{name}_{suffix}")
                    fn.argtypes = ptr_args
                    fn.restype = None
            _self_test(lib)
        except Exception as exc:  # any failure: fall back to the PyTorch path
            _lib_error = f"{type(exc).__name__}: {exc}"
            _lib_info.update(error=_lib_error, seconds=time.perf_counter() - start)
            return None
        _lib = lib
        _lib_info.update(path=str(target), compiled=built, seconds=time.perf_counter() - start)
        return _lib


def compiled_available() -> bool:
    """Whether the compiled CPU kernel is usable (compiles and loads it on the first call)."""
    return _load_library() is not None


def compiled_status() -> dict[str, object]:
    """Build information of the compiled kernel: ``path``, ``compiled`` (built in this process
    rather than found in the cache), ``seconds`` (build / load time) or ``error``.

    The library is cached in ``freqnn.data.paths.cache_dir() / "sfm_kernel"``, keyed by a hash of
    the source, compiler, flags and torch version. ``FREQNN_SFM_PATH=pytorch`` avoids the build.
    """
    _load_library()
    return dict(_lib_info)


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

    def empty(self, numel: int, like: Tensor) -> Tensor:
        """An uninitialised 1-D tensor of ``numel`` elements of ``like``'s dtype and device."""
        nbytes = numel * like.element_size()
        if not self.enabled or like.device.type != "cpu" or nbytes < self.min_bytes:
            return like.new_empty(numel)
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
        return buf

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


def empty_cache() -> None:
    """Release the free CPU buffers kept for reuse by the fast path (see ``FREQNN_SFM_CACHE``)."""
    _cache.clear()


# --------------------------------------------------------------------------- the algorithm
class _Inputs(NamedTuple):
    """One layer's recurrence inputs. Shapes: gx (T, B, G); z0 (B, M); re0, im0 (B, D, K);
    phi0 (B, K) (A-SFM) or None; cos, sin (T, B, K) (SFM) or None; dt (T, B) (A-SFM) or None;
    mask (T, B) bool or None; weight_hh (G, M); weight_a (K, 2M, D); b_z (K, M) or None."""

    gx: Tensor
    z0: Tensor
    re0: Tensor
    im0: Tensor
    phi0: Tensor | None
    cos: Tensor | None
    sin: Tensor | None
    dt: Tensor | None
    mask: Tensor | None
    weight_hh: Tensor
    weight_a: Tensor
    b_z: Tensor | None

    @property
    def adaptive(self) -> bool:
        return self.dt is not None or self.phi0 is not None


class _Saved(NamedTuple):
    """Forward results. With ``keep`` the histories have T + 1 (states) or T (per-step) slots;
    without, only the last slots are meaningful. ``out`` (T, B, M); ``zs`` (., B, M);
    ``act`` (., B, 3D + K) = sigmoid(ste) | sigmoid(g) | tanh(i) | sigmoid(fre);
    ``o``, ``c`` (., B, K, M) read-out gate and candidate; ``re``, ``im`` (., B, D, K);
    ``phi`` (., B, K) or None. ``last``: index of the final state."""

    out: Tensor
    zs: Tensor
    act: Tensor
    o: Tensor
    c: Tensor
    re: Tensor
    im: Tensor
    phi: Tensor | None
    last: int
    kd: bool = False  # memory histories laid out (., B, K, D) (compiled) instead of (., B, D, K)

    def final(self, copy: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The final z, re, im (B, D, K, contiguous) and phi; with ``copy`` fresh tensors, so
        that the saved histories stay private."""
        z, re, im = self.zs[self.last], self.re[self.last], self.im[self.last]
        phi = None if self.phi is None else self.phi[self.last]
        if self.kd:
            re, im = re.transpose(-1, -2).contiguous(), im.transpose(-1, -2).contiguous()
        elif copy:
            re, im = re.clone(), im.clone()
        if copy:
            z, phi = z.clone(), None if phi is None else phi.clone()
        return z, re, im, phi


def _sizes(p: _Inputs) -> tuple[int, int, int, int, int, int]:
    T, B, G = p.gx.shape
    D, K = p.re0.shape[-2:]
    return T, B, D, K, p.z0.shape[-1], G


def _forward_torch(p: _Inputs, keep: bool) -> _Saved:
    T, B, D, K, M, _ = _sizes(p)
    new = p.gx.new_empty
    nstate, nstep = (T + 1, T) if keep else (2, 1)
    zs, act = new(nstate, B, M), new(nstep, B, 3 * D + K)
    O, C = new(nstep, B, K, M), new(nstep, B, K, M)
    re, im = new(nstate, B, D, K), new(nstate, B, D, K)
    phi = new(nstate, B, K) if p.adaptive else None
    out = new(T, B, M)
    zs[0], re[0], im[0] = p.z0, p.re0, p.im0
    if phi is not None:
        phi[0] = p.phi0
    whh_t, wa_t = p.weight_hh.t(), p.weight_a.transpose(1, 2)
    mask = None if p.mask is None else p.mask.to(p.gx.dtype)
    ob, wb = 3 * D + K, 3 * D + K + K * M
    for t in range(T):
        sp, sn, sa = (t, t + 1, t) if keep else (t & 1, (t + 1) & 1, 0)
        pre = torch.addmm(p.gx[t], zs[sp], whh_t)
        a = act[sa]
        torch.sigmoid(pre[:, : 2 * D], out=a[:, : 2 * D])
        torch.tanh(pre[:, 2 * D : 3 * D], out=a[:, 2 * D : 3 * D])
        torch.sigmoid(pre[:, 3 * D : ob], out=a[:, 3 * D :])
        fs, g, i, ff = a.split([D, D, D, K], dim=1)
        if phi is not None:
            new_phi = pre[:, wb:] * p.dt[t].unsqueeze(1) + phi[sp]
            new_phi = new_phi - TWO_PI * torch.floor(new_phi / TWO_PI)
            cos_t, sin_t = torch.cos(new_phi), torch.sin(new_phi)
        else:
            cos_t, sin_t = p.cos[t], p.sin[t]
        f = fs.unsqueeze(2) * ff.unsqueeze(1)
        w = (g * i).unsqueeze(2)
        r = torch.addcmul(f * re[sp], w, cos_t.unsqueeze(1))
        s = torch.addcmul(f * im[sp], w, sin_t.unsqueeze(1))
        sq = r * r + s * s
        amp = torch.where(sq > 0, sq, 1.0).sqrt_().mul_(sq > 0)
        proj = torch.bmm(amp.permute(2, 0, 1), p.weight_a.transpose(1, 2))  # (K, B, 2M)
        o = torch.sigmoid(proj[..., :M].transpose(0, 1) + pre[:, ob:wb].unflatten(1, (K, M)))
        cand = proj[..., M:].transpose(0, 1)
        c = torch.tanh(cand if p.b_z is None else cand + p.b_z)
        O[sa], C[sa] = o, c
        z = (o * c).sum(1)
        if mask is None:
            zs[sn], re[sn], im[sn], out[t] = z, r, s, z
            if phi is not None:
                phi[sn] = new_phi
        else:
            on = p.mask[t]
            zs[sn] = torch.where(on[:, None], z, zs[sp])
            re[sn] = torch.where(on[:, None, None], r, re[sp])
            im[sn] = torch.where(on[:, None, None], s, im[sp])
            out[t] = z * mask[t, :, None]
            if phi is not None:
                phi[sn] = torch.where(on[:, None], new_phi, phi[sp])
    del whh_t, wa_t
    last = T if keep else T & 1
    return _Saved(out, zs, act, O, C, re, im, phi, last)


class _Grads(NamedTuple):
    gx: Tensor
    z0: Tensor
    re0: Tensor
    im0: Tensor
    phi0: Tensor | None
    cos: Tensor | None
    sin: Tensor | None
    weight_hh: Tensor
    weight_a: Tensor
    b_z: Tensor | None


def _backward_torch(
    p: _Inputs,
    sizes: tuple[int, ...],
    s: _Saved,
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
) -> _Grads:
    """Backward-through-time; ``p`` needs only cos, sin, dt, mask and the weights."""
    T, B, D, K, M, G = sizes
    ob, wb = 3 * D + K, 3 * D + K + K * M
    new = s.zs.new_empty
    dgx = new(T, B, G)
    dproj = new(T, K, B, 2 * M)
    amps = new(T, K, B, D)
    dcos = new(T, B, K) if not p.adaptive else None
    dsin = new(T, B, K) if not p.adaptive else None
    dz, dre, dim, dphi = gz.clone(), gre.clone(), gim.clone(), None
    if p.adaptive:
        dphi = gphi.clone()
    mask = None if p.mask is None else p.mask.to(s.zs.dtype)
    for t in range(T - 1, -1, -1):
        fs, g, i, ff = s.act[t].split([D, D, D, K], dim=1)
        o, c = s.o[t], s.c[t]
        if mask is None:
            dzn = gout[t] + dz
        else:
            m = mask[t].unsqueeze(1)
            dzn = (gout[t] + dz) * m
            dz = dz * (1 - m)
        dpo = dzn.unsqueeze(1) * c * o * (1 - o)
        dcand = dzn.unsqueeze(1) * o * (1 - c * c)
        dpj = dproj[t]
        dpj[..., :M] = dpo.transpose(0, 1)
        dpj[..., M:] = dcand.transpose(0, 1)
        dA = torch.bmm(dpj, p.weight_a).permute(1, 2, 0)  # (B, D, K)
        r, q = s.re[t + 1], s.im[t + 1]
        sq = r * r + q * q
        pos = sq > 0
        amp = torch.where(pos, sq, 1.0).sqrt_()
        scale = torch.where(pos, dA / amp, 0.0)
        amps[t] = (amp * pos).permute(2, 0, 1)
        if mask is None:
            dr, di = dre + scale * r, dim + scale * q
            dre_keep = dim_keep = None
        else:
            m3 = m.unsqueeze(2)
            dr, di = dre * m3 + scale * r, dim * m3 + scale * q
            dre_keep, dim_keep = dre * (1 - m3), dim * (1 - m3)
        if p.adaptive:
            ph = s.phi[t + 1]
            cos_t, sin_t = torch.cos(ph), torch.sin(ph)
        else:
            cos_t, sin_t = p.cos[t], p.sin[t]
        f = fs.unsqueeze(2) * ff.unsqueeze(1)
        df = dr * s.re[t] + di * s.im[t]
        w = g * i
        dw = (dr * cos_t.unsqueeze(1) + di * sin_t.unsqueeze(1)).sum(2)
        dcs = (dr * w.unsqueeze(2)).sum(1)
        dsn = (di * w.unsqueeze(2)).sum(1)
        dp = dgx[t]
        dp[:, :D] = (df * ff.unsqueeze(1)).sum(2) * fs * (1 - fs)
        dp[:, D : 2 * D] = dw * i * g * (1 - g)
        dp[:, 2 * D : 3 * D] = dw * g * (1 - i * i)
        dp[:, 3 * D : ob] = (df * fs.unsqueeze(2)).sum(1) * ff * (1 - ff)
        dp[:, ob:wb] = dpo.flatten(1)
        if p.adaptive:
            # phi_t = where(m, wrap(phi_{t-1} + omega_t dt), phi_{t-1}); wrap has slope 1
            gnew = dsn * cos_t - dcs * sin_t + (dphi if mask is None else dphi * m)
            dp[:, wb:] = gnew * p.dt[t].unsqueeze(1)
            dphi = gnew if mask is None else gnew + dphi * (1 - m)
        else:
            dcos[t], dsin[t] = dcs, dsn
        dz = dp @ p.weight_hh if mask is None else torch.addmm(dz, dp, p.weight_hh)
        if mask is None:
            dre, dim = dr * f, di * f
        else:
            dre, dim = torch.addcmul(dre_keep, dr, f), torch.addcmul(dim_keep, di, f)
    gwhh = dgx.flatten(0, 1).t() @ s.zs[:T].flatten(0, 1)
    gwa = torch.bmm(
        dproj.transpose(0, 1).flatten(1, 2).transpose(1, 2), amps.transpose(0, 1).flatten(1, 2)
    )
    gbz = None if p.b_z is None else dproj[..., M:].sum((0, 2))
    return _Grads(dgx, dz, dre, dim, dphi, dcos, dsin, gwhh, gwa, gbz)


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _call(fn: ctypes._CFuncPtr, dims: list[int], tensors: list[Tensor | None]) -> None:
    fn((ctypes.c_int64 * len(dims))(*dims), (ctypes.c_void_p * len(tensors))(*map(_ptr, tensors)))


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def _chunk(T: int, B: int) -> int:
    """Steps per GEMM of the read-out weight gradient: about 2048 rows, at most T (fewer,
    larger GEMMs; the chunk buffers stay small next to the saved histories)."""
    return max(1, min(T, -(-2048 // B)))


def _contiguous(p: _Inputs) -> _Inputs:
    return _Inputs(*(None if t is None else t.contiguous() for t in p))


def _carve(buf: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Consecutive views of one flat buffer (one allocation instead of many)."""
    views, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(buf[start : start + n].view(shape))
        start += n
    return views


def _forward_compiled(
    lib: ctypes.CDLL,
    p: _Inputs,
    keep: bool,
    omega: Tensor | None = None,
    times: Tensor | None = None,
    time0: Tensor | None = None,
) -> _Saved:
    """The kernel's forward. Without cos / sin (SFM) or dt (A-SFM) it derives them from
    ``omega`` (K,) or ``time0`` (B,) and the float64 ``times`` (T, B) itself."""
    p = _contiguous(p)
    T, B, D, K, M, G = _sizes(p)
    nstate, nstep = (T + 1, T) if keep else (2, 1)
    shapes = [
        (nstate, B, M),
        (nstep, B, 3 * D + K),
        (nstep, B, K, M),
        (nstep, B, K, M),
        (nstate, B, K, D),
        (nstate, B, K, D),
    ] + ([(nstate, B, K)] if p.adaptive else [])
    work = (B * G + K * B * 2 * M + K * B * D + D + 2 * K,)
    if keep:
        # the output is allocated apart: a caller keeping it must not keep the histories
        out = p.gx.new_empty(T, B, M)
        views = _carve(_cache.empty(sum(math.prod(x) for x in shapes), p.gx), shapes)
        work = p.gx.new_empty(work)
    else:  # inference: one small allocation
        out, *views, work = _carve(
            p.gx.new_empty(T * B * M + sum(math.prod(x) for x in [*shapes, work])),
            [(T, B, M), *shapes, work],
        )
    zs, act, o, c, re, im = views[:6]
    phi = views[6] if p.adaptive else None
    s = _Saved(out, zs, act, o, c, re, im, phi, last=T if keep else T & 1, kd=True)
    mask = None if p.mask is None else p.mask.to(torch.uint8).contiguous()
    dims = [T, B, D, K, M, G, int(p.adaptive), int(keep), 0]
    if omega is not None:
        omega = omega.to(p.gx.dtype).contiguous()
    tensors = [
        p.gx,
        p.weight_hh,
        p.weight_a,
        p.b_z,
        p.cos,
        p.sin,
        p.dt,
        mask,
        p.z0,
        p.re0,
        p.im0,
        p.phi0,
        s.out,
        s.zs,
        s.act,
        s.o,
        s.c,
        s.re,
        s.im,
        s.phi,
        work,
        omega,
        None if times is None else times.contiguous(),
        None if time0 is None else time0.contiguous(),
        None,
        None,
    ]
    _call(getattr(lib, f"freqnn_sfm_forward_{_suffix(p.gx.dtype)}"), dims, tensors)
    return s


@functools.lru_cache(maxsize=64)
def _infer_layout(
    T: int, B: int, D: int, K: int, M: int, G: int, adaptive: bool
) -> tuple[int, tuple[int, ...]]:
    """Element count and offsets of the regions of the inference buffer (see the kernel):
    out, z ping-pong, gate activations, o, candidate, Re/Im ping-pong, phase ping-pong,
    workspace, final Re, final Im."""
    sizes = (
        T * B * M,
        2 * B * M,
        B * (3 * D + K),
        B * K * M,
        B * K * M,
        2 * B * K * D,
        2 * B * K * D,
        2 * B * K if adaptive else 0,
        B * G + K * B * 2 * M + K * B * D + D + 2 * K,
        B * D * K,
        B * D * K,
    )
    offsets = [0]
    for n in sizes[:-1]:
        offsets.append(offsets[-1] + n)
    return offsets[-1] + sizes[-1], tuple(offsets)


_Dims = ctypes.c_int64 * 9
_Pointers = ctypes.c_void_p * 26


def _infer_compiled(
    lib: ctypes.CDLL,
    gx: Tensor,
    state: SFMState,
    times: Tensor,
    mask: Tensor | None,
    omega: Tensor | None,
    cell: torch.nn.Module,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Inference forward with as little Python as possible (streaming calls it every step):
    one allocation with a cached layout, raw pointers into it, views only for what is returned.

    Returns out (T, B, M) and the final z, re, im (B, D, K), phi."""
    gx = gx.contiguous()
    T, B, G = gx.shape
    z0, re0, im0, _, phi0 = state
    D, K = re0.shape[-2:]
    M = z0.shape[-1]
    adaptive = phi0 is not None
    total, offsets = _infer_layout(T, B, D, K, M, G, adaptive)
    buf = gx.new_empty(total)
    base, item = buf.data_ptr(), buf.element_size()
    if omega is not None:
        omega = omega.to(gx.dtype).contiguous()
    if mask is not None:
        mask = mask.to(torch.uint8).contiguous()
    bz = cell.b_z
    out_, zs_, act_, o_, c_, re_, im_, phi_, work_, ref_, imf_ = (base + o * item for o in offsets)
    pointers = _Pointers(
        gx.data_ptr(),
        cell.weight_hh.data_ptr(),
        cell.weight_a.data_ptr(),
        None if bz is None else bz.data_ptr(),
        None,
        None,
        None,
        None if mask is None else mask.data_ptr(),
        z0.contiguous().data_ptr(),
        re0.contiguous().data_ptr(),
        im0.contiguous().data_ptr(),
        phi0.contiguous().data_ptr() if adaptive else None,
        out_,
        zs_,
        act_,
        o_,
        c_,
        re_,
        im_,
        phi_ if adaptive else None,
        work_,
        None if omega is None else omega.data_ptr(),
        times.contiguous().data_ptr(),
        state.time.contiguous().data_ptr(),
        ref_,
        imf_,
    )
    forward = (
        lib.freqnn_sfm_forward_f32 if gx.dtype == torch.float32 else lib.freqnn_sfm_forward_f64
    )
    forward(_Dims(T, B, D, K, M, G, int(adaptive), 0, 0), pointers)
    last = T & 1
    strided = torch.as_strided
    out = strided(buf, (T, B, M), (B * M, M, 1), 0)
    z = strided(buf, (B, M), (M, 1), offsets[1] + last * B * M)
    re = strided(buf, (B, D, K), (D * K, K, 1), offsets[9])
    im = strided(buf, (B, D, K), (D * K, K, 1), offsets[10])
    phi = strided(buf, (B, K), (K, 1), offsets[7] + last * B * K) if adaptive else None
    return out, z, re, im, phi


def _backward_compiled(
    lib: ctypes.CDLL,
    p: _Inputs,
    sizes: tuple[int, ...],
    s: _Saved,
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
) -> _Grads:
    p = _contiguous(p)
    T, B, D, K, M, G = sizes
    new = s.zs.new_empty
    tc = _chunk(T, B)
    copy = torch.contiguous_format  # the kernel accumulates into these carries: fresh copies
    dre, dim = (x.transpose(1, 2).clone(memory_format=copy) for x in (gre, gim))
    g = _Grads(
        gx=_cache.empty(T * B * G, s.zs).view(T, B, G),
        z0=gz.clone(memory_format=copy),
        re0=dre,
        im0=dim,
        phi0=None if gphi is None else gphi.clone(memory_format=copy),
        cos=None if p.adaptive else new(T, B, K),
        sin=None if p.adaptive else new(T, B, K),
        weight_hh=new(G, M),
        weight_a=new(K, 2 * M, D),
        b_z=None if p.b_z is None else new(K, M),
    )
    work = new(K * tc * B * 2 * M + K * tc * B * D + K * B * D + B * M + 3 * D + 5 * K)
    mask = None if p.mask is None else p.mask.to(torch.uint8).contiguous()
    dims = [T, B, D, K, M, G, int(p.adaptive), 1, tc]
    tensors = [
        p.weight_hh,
        p.weight_a,
        p.b_z,
        p.cos,
        p.sin,
        p.dt,
        mask,
        s.zs,
        s.act,
        s.o,
        s.c,
        s.re,
        s.im,
        s.phi,
        gout.contiguous(),
        g.gx,
        g.z0,
        g.re0,
        g.im0,
        g.phi0,
        g.cos,
        g.sin,
        g.weight_hh,
        g.weight_a,
        g.b_z,
        work,
    ]
    _call(getattr(lib, f"freqnn_sfm_backward_{_suffix(s.zs.dtype)}"), dims, tensors)
    return g._replace(re0=dre.transpose(1, 2), im0=dim.transpose(1, 2))


# --------------------------------------------------------------------------- autograd
def _compiled_applies(p: _Inputs) -> bool:
    return p.gx.device.type == "cpu" and p.gx.dtype in (torch.float32, torch.float64)


def _backend(p: _Inputs, path: str) -> ctypes.CDLL | None:
    """The compiled library for ``path`` ("fast" | "compiled" | "pytorch"), or None for PyTorch."""
    if path == "pytorch":
        return None
    if not _compiled_applies(p):
        if path == "compiled":
            fail(
                "path",
                "'compiled' only for CPU float32/float64 tensors",
                f"{p.gx.dtype} on {p.gx.device} (use 'fast' or 'pytorch')",
                RuntimeError,
            )
        return None
    lib = _load_library()
    if lib is None and path == "compiled":
        raise RuntimeError(f"the compiled SFM kernel is unavailable: {_lib_error}")
    return lib


def _run_forward(lib: ctypes.CDLL | None, p: _Inputs, keep: bool) -> _Saved:
    return _forward_torch(p, keep) if lib is None else _forward_compiled(lib, p, keep)


class _Scan(torch.autograd.Function):
    """One layer's recurrence as a single autograd node (first derivatives only)."""

    @staticmethod
    def forward(ctx, lib, adaptive, *tensors):  # type: ignore[override]
        p = _Inputs(*tensors)
        s = _run_forward(lib, p, keep=True)
        ctx.lib, ctx.last, ctx.sizes = lib, s.last, _sizes(p)
        # only what the backward reads: not gx (T x B x G) nor the initial state (its copy is
        # the first slot of the histories)
        ctx.save_for_backward(
            p.cos,
            p.sin,
            p.dt,
            p.mask,
            p.weight_hh,
            p.weight_a,
            p.b_z,
            s.zs,
            s.act,
            s.o,
            s.c,
            s.re,
            s.im,
            s.phi,
        )
        z, re, im, phi = s.final()
        if phi is None:
            phi = s.out.new_empty(0)
            ctx.mark_non_differentiable(phi)
        return s.out, z, re, im, phi

    @staticmethod
    def backward(ctx, gout, gz, gre, gim, gphi):  # type: ignore[override]
        if torch.is_grad_enabled():
            # create_graph=True: a backward that autograd cannot see through would make every
            # second derivative silently wrong (not only those of the grad outputs)
            raise RuntimeError(
                "the fast SFM recurrence has first derivatives only (create_graph=True asks for "
                "more); run the model inside `with freqnn.sfm.fast.use_reference():`"
            )
        return _Scan._backward(ctx, gout, gz, gre, gim, gphi)

    @staticmethod
    def _backward(ctx, gout, gz, gre, gim, gphi):  # type: ignore[no-untyped-def]
        saved = ctx.saved_tensors
        p = _Inputs(None, None, None, None, None, *saved[:7])
        s = _Saved(None, *saved[7:], last=ctx.last, kd=ctx.lib is not None)
        gphi = gphi if p.adaptive else None
        if ctx.lib is None:
            g = _backward_torch(p, ctx.sizes, s, gout, gz, gre, gim, gphi)
        else:
            g = _backward_compiled(ctx.lib, p, ctx.sizes, s, gout, gz, gre, gim, gphi)
        return (None, None, *g[:7], None, None, *g[7:])


def _forward_inputs(
    cell: torch.nn.Module,
    gx: Tensor,
    state: SFMState,
    times: Tensor,
    mask: Tensor | None,
    omega: Tensor | None,
) -> _Inputs:
    """The Function's inputs; the phases (SFM) or time steps (A-SFM) as in the reference."""
    z, re, im, time_, phi = state
    if cell.adaptive:
        prev = torch.cat([time_.unsqueeze(0), times[:-1]])
        dt = (times - prev).to(gx.dtype)
        cos = sin = None
    else:
        phases = phase(omega, times)
        cos, sin = torch.cos(phases), torch.sin(phases)
        dt = phi = None
    return _Inputs(gx, z, re, im, phi, cos, sin, dt, mask, cell.weight_hh, cell.weight_a, cell.b_z)


def scan(
    cell: torch.nn.Module,
    gx: Tensor,
    state: SFMState,
    times: Tensor,
    mask: Tensor | None = None,
    path: str | None = None,
) -> tuple[Tensor, SFMState] | None:
    """The recurrence of ``cell`` over a sequence on a fast path (see :meth:`SFMCell.scan`).

    Parameters
    ----------
    cell : SFMCell or AdaptiveSFMCell
    gx : Tensor [shape=(T, B, G)], input projections from ``cell.input_projection``
    state : SFMState, initial state of this layer (no layer dimension)
    times : Tensor [shape=(T, B)], float64 timestamps
    mask : Tensor [shape=(T, B)] bool or None, False at padded steps
    path : {"fast", "compiled", "pytorch"} or None (None: :func:`get_path`, "reference" there
        meaning "fast" here)

    Returns
    -------
    (output, state) or None
        output (T, B, M) and the state at each sequence's last valid step; None where no fast
        path applies (an A-SFM differentiated with respect to ``times``): use the reference.
    """
    path = get_path() if path is None else _check_path(path)
    if path == "reference":
        path = "fast"
    if cell.adaptive and times.requires_grad and torch.is_grad_enabled():
        return None  # d/d times of the A-SFM phase increments: only the reference has it
    grad = torch.is_grad_enabled() and (
        gx.requires_grad
        or times.requires_grad
        or any(v is not None and v.requires_grad for v in state)
        or any(v.requires_grad for v in cell.parameters())
    )
    omega = None if cell.adaptive else cell.frequencies()
    if grad:
        p = _forward_inputs(cell, gx, state, times, mask, omega)
        out, z, re, im, phi = _Scan.apply(_backend(p, path), p.adaptive, *p)
    else:  # inference: no histories (memory independent of T), phases in the kernel
        bare = _Inputs(
            gx,
            state.z,
            state.re,
            state.im,
            state.phase,
            None,
            None,
            None,
            mask,
            cell.weight_hh,
            cell.weight_a,
            cell.b_z,
        )
        lib = _backend(bare, path)
        if lib is not None:
            out, z, re, im, phi = _infer_compiled(lib, gx, state, times, mask, omega, cell)
        else:
            s = _forward_torch(_forward_inputs(cell, gx, state, times, mask, omega), False)
            out, (z, re, im, phi) = s.out, s.final(copy=False)
    if not cell.adaptive:
        phi = None
    return out, SFMState(z, re, im, last_time(times, mask, state.time), phi)
