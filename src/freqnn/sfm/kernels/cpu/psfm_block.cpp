// ParallelSFM block on the CPU: gates, memory scan, amplitude and read-out of L steps in one
// pass, and its backward (freqnn/sfm/kernels/parallel.py). Row-major arrays; a row is one
// (step, sequence) pair, rows in time-major order. The memory is laid out (B, K, D) inside (the
// library's state is (B, D, K)), so the loops over D are contiguous and vectorise.
//
// The scan is the recurrence itself, one step after the other: S_t = F_t * S_{t-1} + u_t with
// F_t = f_ste outer f_fre in (0, 1), which neither overflows nor loses precision however long
// the sequence (no cumulative products). Per chunk of at most ROWS rows the read-out runs as K
// GEMMs over all the chunk's rows, then the elementwise o * tanh(c) in the same pass, so the
// (L, B, D, K) forget and write terms are never formed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sfm_abi.h"  // generated from freqnn/sfm/kernels/abi.py: dims and pointer order
#include "sfm_blas.h"
#include "sfm_math.h"

namespace {

struct Sizes {
  i64 L, B, D, K, M, G, KD, KM, W, OB, steps;
  explicit Sizes(const i64* dim)
      : L(dim[PD_L]), B(dim[PD_B]), D(dim[PD_D]), K(dim[PD_K]), M(dim[PD_M]), G(dim[PD_G]) {
    KD = K * D;
    KM = K * M;
    W = 2 * KD + 2 * KM;  // saved per row: Re S, Im S (K, D), o, tanh(c) (K, M)
    OB = 3 * D + K;       // first column of the read-out gates in gx
    steps = std::max<i64>(1, dim[PD_ROWS] / std::max<i64>(B, 1));  // steps per chunk
  }
};

// (B, D, K) -> (B, K, D) and back
template <class S>
void to_kd(const S* a, S* b, i64 B, i64 D, i64 K) {
  for (i64 n = 0; n < B; ++n)
    for (i64 d = 0; d < D; ++d)
      for (i64 k = 0; k < K; ++k) b[(n * K + k) * D + d] = a ? a[(n * D + d) * K + k] : S(0);
}
template <class S>
void to_dk(const S* a, S* b, i64 B, i64 D, i64 K) {
  for (i64 n = 0; n < B; ++n)
    for (i64 k = 0; k < K; ++k)
      for (i64 d = 0; d < D; ++d) b[(n * D + d) * K + k] = a[(n * K + k) * D + d];
}

// Gate activations of one row: f_ste, sigmoid(g), tanh(i) (D each), f_fre (K).
template <class S>
void gates(const S* g, i64 D, i64 K, S* fs, S* gg, S* ii, S* ff) {
#pragma omp simd
  for (i64 d = 0; d < D; ++d) {
    fs[d] = sigm(g[d]);
    gg[d] = sigm(g[D + d]);
    ii[d] = ftanh(g[2 * D + d]);
  }
  for (i64 k = 0; k < K; ++k) ff[k] = sigm(g[3 * D + k]);
}

template <class S>
void amplitudes(const S* re, const S* im, S* a, i64 n) {
#pragma omp simd
  for (i64 d = 0; d < n; ++d) a[d] = std::sqrt(re[d] * re[d] + im[d] * im[d]);
}

template <class S>
void forward(const i64* dim, void* const* ptr) {
  ThreadScope threads;
  const Sizes z(dim);
  const i64 B = z.B, D = z.D, K = z.K, M = z.M, G = z.G, KD = z.KD, KM = z.KM, M2 = 2 * M;
  const bool keep = dim[PD_KEEP] != 0;
  const S* gx = (const S*)ptr[PF_GX];
  const S* cosv = (const S*)ptr[PF_COS];
  const S* sinv = (const S*)ptr[PF_SIN];
  const uint8_t* mask = (const uint8_t*)ptr[PF_MASK];
  const S* wa = (const S*)ptr[PF_WA];
  const S* bz = (const S*)ptr[PF_BZ];
  S* out = (S*)ptr[PF_OUT];
  S* saved = keep ? (S*)ptr[PF_SAVED] : nullptr;
  std::vector<S> re(B * KD), im(B * KD), act(3 * D + K);
  to_kd((const S*)ptr[PF_RE0], re.data(), B, D, K);
  to_kd((const S*)ptr[PF_IM0], im.data(), B, D, K);
  const i64 cap = z.steps * B;
  std::vector<S> amp(K * cap * D), proj(K * cap * M2);
  S *fs = act.data(), *gg = fs + D, *ii = gg + D, *ff = ii + D;
  for (i64 t0 = 0; t0 < z.L; t0 += z.steps) {
    const i64 t1 = std::min(z.L, t0 + z.steps), rows = (t1 - t0) * B, r0 = t0 * B;
    for (i64 lr = 0; lr < rows; ++lr) {  // the scan, in time order
      const i64 r = r0 + lr, n = lr % B;
      S* sr = re.data() + n * KD;
      S* si = im.data() + n * KD;
      if (!mask || mask[r]) {
        gates(gx + r * G, D, K, fs, gg, ii, ff);
        for (i64 k = 0; k < K; ++k) {
          const S c = cosv[r * K + k], s = sinv[r * K + k], fk = ff[k];
          S* pr = sr + k * D;
          S* pi = si + k * D;
#pragma omp simd
          for (i64 d = 0; d < D; ++d) {
            const S f = fs[d] * fk, w = gg[d] * ii[d];
            pr[d] = f * pr[d] + w * c;
            pi[d] = f * pi[d] + w * s;
          }
        }
      }  // a padded step: F = 1, no write
      for (i64 k = 0; k < K; ++k)
        amplitudes(sr + k * D, si + k * D, amp.data() + (k * rows + lr) * D, D);
      if (keep) {
        std::copy(sr, sr + KD, saved + r * z.W);
        std::copy(si, si + KD, saved + r * z.W + KD);
      }
    }
    // [U_o ; W_z] A of all the chunk's rows: K GEMMs (rows x D) (D x 2M)
    for (i64 k = 0; k < K; ++k)
      mm<S>(false, true, rows, M2, D, S(1), amp.data() + k * rows * D, D, wa + k * M2 * D, D,
            S(0), proj.data() + k * rows * M2, M2);
    for (i64 lr = 0; lr < rows; ++lr) {
      const i64 r = r0 + lr;
      S* zr = out + r * M;
      std::fill(zr, zr + M, S(0));
      if (mask && !mask[r]) continue;  // z = 0 at a padded step
      for (i64 k = 0; k < K; ++k) {
        const S* p = proj.data() + (k * rows + lr) * M2;
        const S* po = gx + r * G + z.OB + k * M;
        S* so = saved ? saved + r * z.W + 2 * KD + k * M : nullptr;
        S* sc = saved ? so + KM : nullptr;
#pragma omp simd
        for (i64 m = 0; m < M; ++m) {
          const S o = sigm(p[m] + po[m]);
          const S c = ftanh(p[M + m] + (bz ? bz[k * M + m] : S(0)));
          zr[m] += o * c;
          if (so) {
            so[m] = o;
            sc[m] = c;
          }
        }
      }
    }
  }
  to_dk(re.data(), (S*)ptr[PF_REF], B, D, K);
  to_dk(im.data(), (S*)ptr[PF_IMF], B, D, K);
}

template <class S>
void backward(const i64* dim, void* const* ptr) {
  ThreadScope threads;
  const Sizes z(dim);
  const i64 B = z.B, D = z.D, K = z.K, M = z.M, G = z.G, KD = z.KD, KM = z.KM, M2 = 2 * M;
  const S* gx = (const S*)ptr[PB_GX];
  const S* cosv = (const S*)ptr[PB_COS];
  const S* sinv = (const S*)ptr[PB_SIN];
  const uint8_t* mask = (const uint8_t*)ptr[PB_MASK];
  const S* wa = (const S*)ptr[PB_WA];
  const S* bz = (const S*)ptr[PB_BZ];
  const S* saved = (const S*)ptr[PB_SAVED];
  const S* gout = (const S*)ptr[PB_GOUT];
  S* dgx = (S*)ptr[PB_DGX];
  S* dcos = (S*)ptr[PB_DCOS];
  S* dsin = (S*)ptr[PB_DSIN];
  S* dwa = (S*)ptr[PB_DWA];
  S* dbz = (S*)ptr[PB_DBZ];
  std::fill(dwa, dwa + K * M2 * D, S(0));
  if (dbz) std::fill(dbz, dbz + KM, S(0));
  // carries: the gradient of S_t from the steps after t, (B, K, D); S_0 likewise laid out
  std::vector<S> cr(B * KD), ci(B * KD), re0(B * KD), im0(B * KD), act(5 * D + K);
  to_kd((const S*)ptr[PB_GREF], cr.data(), B, D, K);
  to_kd((const S*)ptr[PB_GIMF], ci.data(), B, D, K);
  to_kd((const S*)ptr[PB_RE0], re0.data(), B, D, K);
  to_kd((const S*)ptr[PB_IM0], im0.data(), B, D, K);
  const i64 cap = z.steps * B;
  std::vector<S> amp(K * cap * D), damp(K * cap * D), dproj(K * cap * M2);
  S *fs = act.data(), *gg = fs + D, *ii = gg + D, *ff = ii + D, *dfs = ff + K, *dw = dfs + D;
  const i64 last = (z.L - 1) / z.steps * z.steps;
  for (i64 t0 = last; t0 >= 0; t0 -= z.steps) {
    const i64 t1 = std::min(z.L, t0 + z.steps), rows = (t1 - t0) * B, r0 = t0 * B;
    // the read-out: d pre-activations of o (into dgx) and c, A recomputed from the saved S
    for (i64 lr = 0; lr < rows; ++lr) {
      const i64 r = r0 + lr;
      const S* row = saved + r * z.W;
      const bool valid = !mask || mask[r];
      for (i64 k = 0; k < K; ++k) {
        amplitudes(row + k * D, row + KD + k * D, amp.data() + (k * rows + lr) * D, D);
        S* dp = dproj.data() + (k * rows + lr) * M2;
        S* dgo = dgx + r * G + z.OB + k * M;
        if (!valid) {
          std::fill(dp, dp + M2, S(0));
          std::fill(dgo, dgo + M, S(0));
          continue;
        }
        const S* o = row + 2 * KD + k * M;
        const S* c = o + KM;
        const S* gz = gout + r * M;
#pragma omp simd
        for (i64 m = 0; m < M; ++m) {
          const S dpo = gz[m] * c[m] * o[m] * (S(1) - o[m]);
          dp[m] = dpo;
          dp[M + m] = gz[m] * o[m] * (S(1) - c[m] * c[m]);
          dgo[m] = dpo;
        }
        if (dbz)
          for (i64 m = 0; m < M; ++m) dbz[k * M + m] += dp[M + m];
      }
    }
    for (i64 k = 0; k < K; ++k) {
      const S* dpk = dproj.data() + k * rows * M2;
      mm<S>(true, false, M2, D, rows, S(1), dpk, M2, amp.data() + k * rows * D, D, S(1),
            dwa + k * M2 * D, D);
      mm<S>(false, false, rows, D, M2, S(1), dpk, M2, wa + k * M2 * D, D, S(0),
            damp.data() + k * rows * D, D);
    }
    // the scan backwards: dS_t = carry + dA_t S_t / A_t; carry <- F_t dS_t
    for (i64 lr = rows - 1; lr >= 0; --lr) {
      const i64 r = r0 + lr, n = lr % B;
      S* dg = dgx + r * G;
      if (mask && !mask[r]) {  // S_t = S_{t-1}, z_t = 0: the carry passes unchanged
        std::fill(dg, dg + 3 * D + K, S(0));
        std::fill(dcos + r * K, dcos + (r + 1) * K, S(0));
        std::fill(dsin + r * K, dsin + (r + 1) * K, S(0));
        continue;
      }
      const S* row = saved + r * z.W;
      const S* pre = r >= B ? saved + (r - B) * z.W : nullptr;  // S_{t-1}
      const S* pr0 = pre ? pre : re0.data() + n * KD;
      const S* pi0 = pre ? pre + KD : im0.data() + n * KD;
      gates(gx + r * G, D, K, fs, gg, ii, ff);
      std::fill(dfs, dfs + 2 * D, S(0));
      for (i64 k = 0; k < K; ++k) {
        const S c = cosv[r * K + k], s = sinv[r * K + k], fk = ff[k];
        const S* sr = row + k * D;
        const S* si = row + KD + k * D;
        const S* a = amp.data() + (k * rows + lr) * D;
        const S* da = damp.data() + (k * rows + lr) * D;
        const S* qr = pr0 + k * D;
        const S* qi = pi0 + k * D;
        S* xr = cr.data() + n * KD + k * D;
        S* xi = ci.data() + n * KD + k * D;
        S dff = 0, dc = 0, ds = 0;
#pragma omp simd reduction(+ : dff, dc, ds)
        for (i64 d = 0; d < D; ++d) {
          const S q = a[d] > S(0) ? da[d] / a[d] : S(0);  // |S| has gradient 0 at S = 0
          const S gr = xr[d] + q * sr[d], gi = xi[d] + q * si[d];
          const S dF = gr * qr[d] + gi * qi[d], w = gg[d] * ii[d], f = fs[d] * fk;
          dfs[d] += dF * fk;
          dff += dF * fs[d];
          dw[d] += gr * c + gi * s;
          dc += gr * w;
          ds += gi * w;
          xr[d] = f * gr;
          xi[d] = f * gi;
        }
        dcos[r * K + k] = dc;
        dsin[r * K + k] = ds;
        dg[3 * D + k] = dff * fk * (S(1) - fk);
      }
#pragma omp simd
      for (i64 d = 0; d < D; ++d) {
        dg[d] = dfs[d] * fs[d] * (S(1) - fs[d]);
        dg[D + d] = dw[d] * ii[d] * gg[d] * (S(1) - gg[d]);
        dg[2 * D + d] = dw[d] * gg[d] * (S(1) - ii[d] * ii[d]);
      }
    }
  }
  to_dk(cr.data(), (S*)ptr[PB_DRE0], B, D, K);
  to_dk(ci.data(), (S*)ptr[PB_DIM0], B, D, K);
}
}  // namespace

extern "C" {
void freqnn_psfm_forward_f32(const int64_t* d, void* const* p) { forward<float>(d, p); }
void freqnn_psfm_forward_f64(const int64_t* d, void* const* p) { forward<double>(d, p); }
void freqnn_psfm_backward_f32(const int64_t* d, void* const* p) { backward<float>(d, p); }
void freqnn_psfm_backward_f64(const int64_t* d, void* const* p) { backward<double>(d, p); }
}
