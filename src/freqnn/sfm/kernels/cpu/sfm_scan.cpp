// SFM / A-SFM time loop of one layer on the CPU: forward and backward-through-time.
// Row-major arrays. Inside the kernel the memory is laid out (B, K, D) (the library's state is
// (B, D, K)) so the loops over D are contiguous and vectorise. GEMMs go to the BLAS symbols
// exported by libtorch_cpu.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sfm_blas.h"
#include "sfm_math.h"
#include "sfm_abi.h"  // generated from freqnn/sfm/kernels/abi.py: dims and pointer order

namespace {

// ------------------------------------------------------------------------------- layout
// The order of the dims (DIM_*) and pointers (F_*, B_*) is generated into sfm_abi.h from
// freqnn/sfm/kernels/abi.py, the one place that defines it.

// Forward pointers (null where absent). Memory arrays are (., B, K, D).
// SFM phases: cos, sin given, or (inference) computed here from omega (K) and the float64
// timestamps (T, B) exactly as freqnn.frequencies.phase does. A-SFM steps: dt given, or
// computed from the timestamps and the state's float64 time (B).
// A-SFM phase rules (DIM_AUTHORS): 0, the accumulated phase, phi_t = wrap(phi_{t-1} + omega_t dt)
// carried in F_PHI; 1, the authors' rule: step t uses the phase wrap(omega_{t-1} * times[t])
// (in double, as freqnn.frequencies.phase) and F_PHI carries omega_t to the next step (kept at
// a padded step).
// The normalised memory (DIM_NORMALISED) weights the write by 1 - f: S_t = f S_{t-1} +
// (1 - f) g i e^{j phase} (freqnn.sfm.step.memory_update). The mean read-out (DIM_MEAN) makes z_t
// the mean of the K read-outs o * c instead of their sum.
// The initial re0, im0 come (B, D, K) as the library's state; F_ZF, F_REF, F_IMF, F_PHIF
// receive the final state, re / im in that layout too.

// Streaming (F_X given): the kernel first checks that x, the state and the times are valid
// (F_STATUS receives 1 and nothing else is written if not: the caller's validation then names
// the problem) and computes the input projections into F_GX (scratch): gx = x W_ih^T + b, where
// the bias is F_BIH on the first rows (null: none) and F_BOMEGA on A-SFM's last K rows.
template <class S>
bool project(const i64* dim, void* const* ptr) {
  const i64 T = dim[DIM_T], B = dim[DIM_B], D = dim[DIM_D], K = dim[DIM_K], M = dim[DIM_M];
  const i64 G = dim[DIM_G], N = dim[DIM_N];
  const bool adaptive = dim[DIM_ADAPTIVE] != 0;
  const S* x = (const S*)ptr[F_X];
  if (!all_finite(x, T * B * N) || !all_finite((const S*)ptr[F_Z0], B * M) ||
      !all_finite((const S*)ptr[F_RE0], B * D * K) || !all_finite((const S*)ptr[F_IM0], B * D * K) ||
      (adaptive && !all_finite((const S*)ptr[F_PHI0], B * K)) ||
      !times_ok((const double*)ptr[F_TIMES], T * B) || !times_ok((const double*)ptr[F_TIME0], B)) {
    *(int64_t*)ptr[F_STATUS] = 1;
    return false;
  }
  S* gx = (S*)ptr[F_GX];
  mm<S>(false, true, T * B, G, N, S(1), x, N, (const S*)ptr[F_WIH], N, S(0), gx, G);
  const S* bih = (const S*)ptr[F_BIH];
  const S* bomega = (const S*)ptr[F_BOMEGA];
  const i64 rows = adaptive ? G - K : G;
  for (i64 r = 0; r < T * B; ++r) {
    S* g = gx + r * G;
    if (bih)
      for (i64 j = 0; j < rows; ++j) g[j] += bih[j];
    if (bomega)
      for (i64 k = 0; k < K; ++k) g[rows + k] += bomega[k];
  }
  return true;
}

// Workspace of the forward, per block of nb sequences: pre (nb, G) pre-activations of the step,
// proj (K, nb, 2M) [U_o ; W_z] A, amp (K, nb, D) amplitudes at offset b0 (G + 2KM + KD); w (D)
// and cs (2K) of one sequence at B (G + 2KM + KD) + j (D + 2K).
inline i64 forward_rows(i64 D, i64 K, i64 M, i64 G) { return G + 2 * K * M + K * D; }

template <class S>
void forward_block(const i64* dim, void* const* ptr, i64 b0, i64 b1, i64 j) {
  const i64 T = dim[DIM_T], B = dim[DIM_B], D = dim[DIM_D], K = dim[DIM_K], M = dim[DIM_M];
  const i64 G = dim[DIM_G], nb = b1 - b0;
  const bool adaptive = dim[DIM_ADAPTIVE] != 0, keep = dim[DIM_KEEP] != 0;
  const bool authors = dim[DIM_AUTHORS] != 0, normalised = dim[DIM_NORMALISED] != 0;
  const S zscale = dim[DIM_MEAN] != 0 ? S(1) / S(dim[DIM_K]) : S(1);  // mean read-out: 1 / K
  const i64 A = 3 * D + K, OB = 3 * D + K, WB = OB + K * M, M2 = 2 * M;
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
  S* pre = (S*)ptr[F_WORK] + b0 * forward_rows(D, K, M, G);
  S* proj = pre + nb * G;
  S* amp = proj + K * nb * M2;
  S* w = (S*)ptr[F_WORK] + B * forward_rows(D, K, M, G) + j * (D + 2 * K);
  S* cs = w + D;
  std::vector<const S*> ptr_buffer(3 * K);
  const S** ptrs = ptr_buffer.data();
  for (i64 t = 0; t < T; ++t) {
    // state slots: all T + 1 with `keep` (training), else two alternating ones
    const i64 sp = keep ? t : (t & 1), sn = keep ? t + 1 : ((t + 1) & 1), sa = keep ? t : 0;
    const S* zp = zs + sp * B * M;
    S* zn = zs + sn * B * M;
    S* at = act + sa * B * A;
    std::memcpy(pre, gx + (t * B + b0) * G, sizeof(S) * nb * G);
    mm<S>(false, true, nb, G, M, S(1), zp + b0 * M, M, whh, M, S(1), pre, G);
    for (i64 b = b0; b < b1; ++b) {
      const i64 lb = b - b0;
      const bool on = mask == nullptr || mask[t * B + b];
      const S* pb = pre + lb * G;
      S* ab = at + b * A;
      const S *fs = ab, *g = ab + D, *in = ab + 2 * D, *ff = ab + 3 * D;
#pragma omp simd
      for (i64 i = 0; i < 2 * D; ++i) ab[i] = sigm(pb[i]);
#pragma omp simd
      for (i64 d = 0; d < D; ++d) ab[2 * D + d] = ftanh(pb[2 * D + d]);
#pragma omp simd
      for (i64 k = 0; k < K; ++k) ab[3 * D + k] = sigm(pb[3 * D + k]);
#pragma omp simd
      for (i64 d = 0; d < D; ++d) w[d] = g[d] * in[d];
      const S *cb, *sb;
      if (adaptive && authors) {  // the phase of omega_{t-1}; omega_t goes to the next step
        const S* pp = phi + (sp * B + b) * K;
        S* pn = phi + (sn * B + b) * K;
        const double tb = times[t * B + b];
        for (i64 k = 0; k < K; ++k) {
          const S p = S(wrap(double(pp[k]) * tb));
          cs[k] = std::cos(p);
          cs[K + k] = std::sin(p);
          pn[k] = on ? pb[WB + k] : pp[k];
        }
        cb = cs;
        sb = cs + K;
      } else if (adaptive) {
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
        S* ak = amp + (k * nb + lb) * D;
        if (on) {
#pragma omp simd
          for (i64 d = 0; d < D; ++d) {
            const S f = fs[d] * ffk;
            const S wd = normalised ? (S(1) - f) * w[d] : w[d];  // normalised: (1 - f) g i
            const S r = f * rp[d] + wd * ck;
            const S s = f * ip[d] + wd * sk;
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
    mm_batch<S>(K, false, true, nb, M2, D, S(1), amp, nb * D, D, wa, M2 * D, D, S(0), proj,
                nb * M2, M2, ptrs);
    for (i64 b = b0; b < b1; ++b) {
      const i64 lb = b - b0;
      const bool on = mask == nullptr || mask[t * B + b];
      S* zb = zn + b * M;
      S* ob = out + (t * B + b) * M;
      if (!on) {
        std::memcpy(zb, zp + b * M, sizeof(S) * M);
        for (i64 m = 0; m < M; ++m) ob[m] = S(0);
        continue;
      }
      const S* pb = pre + lb * G + OB;
      for (i64 m = 0; m < M; ++m) zb[m] = S(0);
      for (i64 k = 0; k < K; ++k) {
        const S* pk = proj + (k * nb + lb) * M2;
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
      if (zscale != S(1))
        for (i64 m = 0; m < M; ++m) zb[m] *= zscale;
      std::memcpy(ob, zb, sizeof(S) * M);
    }
  }
}

template <class S>
void forward(const i64* dim, void* const* ptr) {
  const i64 T = dim[DIM_T], B = dim[DIM_B], D = dim[DIM_D], K = dim[DIM_K], M = dim[DIM_M];
  const bool adaptive = dim[DIM_ADAPTIVE] != 0, keep = dim[DIM_KEEP] != 0;
  ThreadScope threads;
  if (ptr[F_X] && !project<S>(dim, ptr)) return;
  S* zs = (S*)ptr[F_ZS];
  S* re = (S*)ptr[F_RE];
  S* im = (S*)ptr[F_IM];
  S* phi = (S*)ptr[F_PHI];
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
  over_blocks(B, block_count(B, dim[DIM_THREADS]),
              [&](i64 b0, i64 b1, i64 j) { forward_block<S>(dim, ptr, b0, b1, j); });
  // the final state, in the library's layout, into arrays of its own
  const i64 last = keep ? T : (T & 1);
  std::memcpy(ptr[F_ZF], zs + last * B * M, sizeof(S) * B * M);
  if (adaptive) std::memcpy(ptr[F_PHIF], phi + last * B * K, sizeof(S) * B * K);
  S* rf = (S*)ptr[F_REF];
  S* jf = (S*)ptr[F_IMF];
  for (i64 b = 0; b < B; ++b)
    for (i64 d = 0; d < D; ++d)
      for (i64 k = 0; k < K; ++k) {
        rf[(b * D + d) * K + k] = re[((last * B + b) * K + k) * D + d];
        jf[(b * D + d) * K + k] = im[((last * B + b) * K + k) * D + d];
      }
}

// Backward pointers (null where absent). Workspace per block of nb sequences, at
// b0 backward_rows: dproj (K, TC, nb, 2M) read-out gradients of a chunk of steps, ampc
// (K, TC, nb, D) their amplitudes, dA (K, nb, D), dzn (nb, M) the gradient of the step's new z;
// at B backward_rows + j backward_fixed: dw, dfs, w (D each), dcs, dsn, dff, cos, sin (K each),
// and the block's own read-out weight gradients dwa (K, 2M, D) and dbz (K, M).
inline i64 backward_rows(i64 D, i64 K, i64 M, i64 TC) {
  return K * TC * 2 * M + K * TC * D + K * D + M;
}
inline i64 backward_fixed(i64 D, i64 K, i64 M) { return 3 * D + 5 * K + 2 * K * M * D + K * M; }

template <class S>
void backward_block(const i64* dim, void* const* ptr, i64 b0, i64 b1, i64 j) {
  const i64 T = dim[DIM_T], B = dim[DIM_B], D = dim[DIM_D], K = dim[DIM_K], M = dim[DIM_M];
  const i64 G = dim[DIM_G], TC = dim[DIM_CHUNK], nb = b1 - b0;
  const bool adaptive = dim[DIM_ADAPTIVE] != 0, authors = dim[DIM_AUTHORS] != 0;
  const bool normalised = dim[DIM_NORMALISED] != 0;
  const S zscale = dim[DIM_MEAN] != 0 ? S(1) / S(dim[DIM_K]) : S(1);  // mean read-out: 1 / K
  const i64 A = 3 * D + K, OB = 3 * D + K, WB = OB + K * M, M2 = 2 * M;
  const S* whh = (const S*)ptr[B_WHH];
  const S* wa = (const S*)ptr[B_WA];
  const S* cosv = (const S*)ptr[B_COS];
  const S* sinv = (const S*)ptr[B_SIN];
  const S* dt = (const S*)ptr[B_DT];
  const uint8_t* mask = (const uint8_t*)ptr[B_MASK];
  const S* act = (const S*)ptr[B_ACT];
  const S* O = (const S*)ptr[B_O];
  const S* C = (const S*)ptr[B_C];
  const S* re = (const S*)ptr[B_RE];
  const S* im = (const S*)ptr[B_IM];
  const S* phi = (const S*)ptr[B_PHI];
  const double* times = (const double*)ptr[B_TIMES];  // AUTHORS only
  const S* gout = (const S*)ptr[B_GOUT];
  S* dgx = (S*)ptr[B_DGX];  // (T, B, G): gradients of the pre-activations (= of gx)
  S* dz = (S*)ptr[B_DZ];    // carries: in, gradient of the final state; out, of the initial
  S* dre = (S*)ptr[B_DRE];
  S* dim_ = (S*)ptr[B_DIM];
  S* dphi = (S*)ptr[B_DPHI];
  S* dcos = (S*)ptr[B_DCOS];
  S* dsin = (S*)ptr[B_DSIN];
  const bool has_bz = ptr[B_DBZ] != nullptr;
  S* dproj = (S*)ptr[B_WORK] + b0 * backward_rows(D, K, M, TC);
  S* ampc = dproj + K * TC * nb * M2;
  S* dA = ampc + K * TC * nb * D;
  S* dzn = dA + K * nb * D;
  S* dw = (S*)ptr[B_WORK] + B * backward_rows(D, K, M, TC) + j * backward_fixed(D, K, M);
  S* dfs = dw + D;
  S* w = dfs + D;
  S* dcs = w + D;
  S *dsn = dcs + K, *dff = dsn + K, *cb_ = dff + K, *sb_ = cb_ + K;
  S* dwa = sb_ + K;      // (K, 2M, D) this block's read-out weight gradient
  S* dbz = dwa + K * M2 * D;  // (K, M)
  std::vector<const S*> ptr_buffer(3 * K);
  const S** ptrs = ptr_buffer.data();
  std::memset(dwa, 0, sizeof(S) * (K * M2 * D + K * M));
  i64 chunk_end = T;
  for (i64 t = T - 1; t >= 0; --t) {
    const i64 c0 = (t / TC) * TC, pos = t - c0;
    const S* at = act + t * B * A;
    S* dp = dgx + t * B * G;
    // 1. read-out: z = sum_k o * c, o = sigmoid(U_o A + pre_o), c = tanh(W_z A + b_z)
    for (i64 b = b0; b < b1; ++b) {
      const i64 lb = b - b0;
      const bool on = mask == nullptr || mask[t * B + b];
      S* zb = dzn + lb * M;
      S* dpb = dp + b * G;
      if (!on) {  // padded: nothing of the step is kept, its gradients are zero
        for (i64 i = 0; i < G; ++i) dpb[i] = S(0);
        for (i64 k = 0; k < K; ++k)
          for (i64 i = 0; i < M2; ++i) dproj[((k * TC + pos) * nb + lb) * M2 + i] = S(0);
        continue;
      }
      const S* gb = gout + (t * B + b) * M;
      S* dzb = dz + b * M;
      for (i64 m = 0; m < M; ++m) {
        zb[m] = (gb[m] + dzb[m]) * zscale;
        dzb[m] = S(0);
      }
      for (i64 k = 0; k < K; ++k) {
        const S* ok = O + ((t * B + b) * K + k) * M;
        const S* ck = C + ((t * B + b) * K + k) * M;
        S* dq = dproj + ((k * TC + pos) * nb + lb) * M2;
        S* dpo = dpb + OB + k * M;
#pragma omp simd
        for (i64 m = 0; m < M; ++m) {
          const S o = ok[m], c = ck[m];
          const S a = zb[m] * c * o * (S(1) - o);
          dpo[m] = a;
          dq[m] = a;
          dq[M + m] = zb[m] * o * (S(1) - c * c);
        }
        if (has_bz) {
          S* dbk = dbz + k * M;
#pragma omp simd
          for (i64 m = 0; m < M; ++m) dbk[m] += dq[M + m];
        }
      }
    }
    mm_batch<S>(K, false, false, nb, D, M2, S(1), dproj + pos * nb * M2, TC * nb * M2, M2, wa,
                M2 * D, D, S(0), dA, nb * D, D, ptrs);
    // 2. amplitude and memory update (re, im of step t at slot t + 1)
    for (i64 b = b0; b < b1; ++b) {
      const i64 lb = b - b0;
      const bool on = mask == nullptr || mask[t * B + b];
      if (!on) {  // carries pass unchanged
        for (i64 k = 0; k < K; ++k)
          for (i64 d = 0; d < D; ++d) ampc[((k * TC + pos) * nb + lb) * D + d] = S(0);
        if (!adaptive)
          for (i64 k = 0; k < K; ++k) dcos[(t * B + b) * K + k] = dsin[(t * B + b) * K + k] = S(0);
        continue;
      }
      const S* ab = at + b * A;
      const S *fs = ab, *g = ab + D, *in = ab + 2 * D, *ff = ab + 3 * D;
      const S *cb, *sb;
      if (adaptive && authors) {  // recomputed from omega_{t-1} (slot t) as in the forward
        const S* pp = phi + (t * B + b) * K;
        const double tb = times[t * B + b];
        for (i64 k = 0; k < K; ++k) {
          const S p = S(wrap(double(pp[k]) * tb));
          cb_[k] = std::cos(p);
          sb_[k] = std::sin(p);
        }
        cb = cb_;
        sb = sb_;
      } else if (adaptive) {
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
        const S* dak = dA + (k * nb + lb) * D;
        S* ampk = ampc + ((k * TC + pos) * nb + lb) * D;
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
          const S dwrite = dr * ck + di * sk;  // d / d(the write term w e^{j phase})
          // normalised: S_t = f S_{t-1} + (1 - f) w e^{j phase}
          const S e = normalised ? S(1) - f : S(1);
          const S df = dr * rp[d] + di * ip[d] - (normalised ? w[d] * dwrite : S(0));
          ampk[d] = a;
          drb[d] = dr * f;
          dib[d] = di * f;
          dw[d] += e * dwrite;
          dfs[d] += df * ffk;
          acs += dr * e * w[d];
          asn += di * e * w[d];
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
      if (adaptive && authors) {
        // phase_t = wrap(omega_{t-1} t): slope t (in double) in omega_{t-1}; the carried
        // omega_t's gradient is that of the step's omega rows (padded steps skip this: their
        // carry passes unchanged, their rows' gradient is zero)
        S* dpk = dphi + b * K;
        const double tb = times[t * B + b];
        for (i64 k = 0; k < K; ++k) {
          dpb[WB + k] = dpk[k];
          dpk[k] = S(double(dsn[k] * cb[k] - dcs[k] * sb[k]) * tb);
        }
      } else if (adaptive) {  // phi_t = wrap(phi_{t-1} + omega_t dt): slope 1 in phi, dt in omega
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
    mm<S>(false, false, nb, M, G, S(1), dp + b0 * G, G, whh, M, S(1), dz + b0 * M, M);
    // 4. read-out weights: one batched GEMM per chunk of steps
    if (pos == 0) {
      mm_batch<S>(K, true, false, M2, D, (chunk_end - c0) * nb, S(1), dproj, TC * nb * M2, M2,
                  ampc, TC * nb * D, D, S(1), dwa, M2 * D, D, ptrs);
      chunk_end = c0;
    }
  }
}

template <class S>
void backward(const i64* dim, void* const* ptr) {
  const i64 T = dim[DIM_T], B = dim[DIM_B], D = dim[DIM_D], K = dim[DIM_K], M = dim[DIM_M];
  const i64 G = dim[DIM_G], TC = dim[DIM_CHUNK];
  ThreadScope threads;
  const i64 P = block_count(B, dim[DIM_THREADS]);
  over_blocks(B, P, [&](i64 b0, i64 b1, i64 j) { backward_block<S>(dim, ptr, b0, b1, j); });
  // the blocks' read-out weight gradients, summed
  S* dwa = (S*)ptr[B_DWA];
  S* dbz = (S*)ptr[B_DBZ];
  const i64 n = K * 2 * M * D;
  std::memset(dwa, 0, sizeof(S) * n);
  if (dbz) std::memset(dbz, 0, sizeof(S) * K * M);
  for (i64 j = 0; j < P; ++j) {
    const S* own = (const S*)ptr[B_WORK] + B * backward_rows(D, K, M, TC) +
                   j * backward_fixed(D, K, M) + 3 * D + 5 * K;
    for (i64 i = 0; i < n; ++i) dwa[i] += own[i];
    if (dbz)
      for (i64 i = 0; i < K * M; ++i) dbz[i] += own[n + i];
  }
  // recurrent weights: one GEMM over all steps, dW_hh = sum_t dpre_t^T z_{t-1}
  S* dwhh = (S*)ptr[B_DWHH];
  if (dwhh)
    mm<S>(true, false, G, M, T * B, S(1), (const S*)ptr[B_DGX], G, (const S*)ptr[B_ZS], M, S(0),
          dwhh, M);
}
}  // namespace

extern "C" {
int freqnn_sfm_abi() { return FREQNN_SFM_ABI; }
void freqnn_sfm_forward_f32(const int64_t* d, void* const* p) { forward<float>(d, p); }
void freqnn_sfm_forward_f64(const int64_t* d, void* const* p) { forward<double>(d, p); }
void freqnn_sfm_backward_f32(const int64_t* d, void* const* p) { backward<float>(d, p); }
void freqnn_sfm_backward_f64(const int64_t* d, void* const* p) { backward<double>(d, p); }
}
