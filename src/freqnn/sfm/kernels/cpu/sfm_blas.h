// BLAS for the SFM kernel: the GEMM symbols libtorch_cpu exports, row-major wrappers, and
// MKL's thread-local thread count where present.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
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

// Set in the kernel's own worker threads (each runs a block of sequences): their GEMMs stay on
// one thread.
thread_local bool tl_block_worker = false;

void threads_for(double work) {
  if (MKL_Set_Num_Threads_Local)
    MKL_Set_Num_Threads_Local(tl_block_worker || work < kThreadedWork ? 1 : 0);
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

// ------------------------------------------------------------------------------- blocks
// The sequences of a batch are independent: with P threads, each runs the whole time loop for
// a contiguous block of sequences, without synchronisation inside the loop (only the read-out
// weight gradients are summed over blocks at the end). Blocks have at least kBlockRows
// sequences: below that, a thread's GEMMs are too small to pay for it.
const i64 kBlockRows = 8;

inline i64 block_count(i64 B, i64 threads) {
  return std::max<i64>(1, std::min<i64>(threads, B / kBlockRows));
}

// f(b0, b1, j) for the blocks j = 0 .. P - 1 of [0, B), block 0 on the calling thread.
template <class F>
void over_blocks(i64 B, i64 P, F&& f) {
  if (P <= 1) {
    f(i64(0), B, i64(0));
    return;
  }
  std::vector<std::thread> pool;
  for (i64 j = 1; j < P; ++j)
    pool.emplace_back([&f, B, P, j] {
      tl_block_worker = true;
      f(j * B / P, (j + 1) * B / P, j);
    });
  f(i64(0), B / P, i64(0));
  for (auto& thread : pool) thread.join();
}
}  // namespace
