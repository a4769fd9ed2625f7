// Elementwise math of the SFM kernel: a vectorisable exp, sigmoid, tanh, phase wrapping, and
// the validity checks of a streaming step.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {
typedef int64_t i64;

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

// Below the clamp of fexp, sigmoid is 0 (as torch's, which underflows there): the clamped value,
// about 1e-38 in float32, would give a saturated gate a derivative that an input of 1e38 turns
// into an O(1) weight gradient where the reference's is 0 (a select: still vectorises).
template <class S> inline S sigm_floor();
template <> inline float sigm_floor<float>() { return -88.0f; }
template <> inline double sigm_floor<double>() { return -709.0; }
template <class S> inline S sigm(S x) {
  const S s = S(1) / (S(1) + fexp(-x));
  return x < sigm_floor<S>() ? S(0) : s;
}
// tanh x = 2 sigmoid(2x) - 1: absolute error of a few ulp of 1
template <class S> inline S ftanh(S x) { return S(2) / (S(1) + fexp(S(-2) * x)) - S(1); }

// as freqnn.frequencies.wrap_phase: the exact remainder (fmod), so that no rounding of a product
// (nor a fused multiply-add the compiler may form) makes paths disagree at large phases
template <class S> inline S wrap(S p) {
  const S two_pi = S(6.283185307179586);
  const S rest = std::fmod(p, two_pi);
  return rest < S(0) ? rest + two_pi : rest;
}

// ------------------------------------------------------------------------------- checks
// Whether all n values are finite: x * 0 is 0 for finite x and NaN otherwise (vectorises).
template <class S> bool all_finite(const S* a, i64 n) {
  S acc = S(0);
#pragma omp simd reduction(+ : acc)
  for (i64 i = 0; i < n; ++i) acc += a[i] * S(0);
  return acc == S(0);
}

// Timestamps as freqnn.checks.check_times accepts them: finite, |t| <= 2**53.
bool times_ok(const double* t, i64 n) {
  for (i64 i = 0; i < n; ++i)
    if (!(std::fabs(t[i]) <= 9007199254740992.0)) return false;
  return true;
}

}  // namespace
