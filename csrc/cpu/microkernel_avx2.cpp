// AVX2 + FMA micro-kernels. 6 x 16 (float) / 6 x 8 (double): 12 ymm accumulators, 2 for the B
// row and 1 broadcast of the 16 registers. Compiled into every kernel set, it holds code only in
// the AVX2 one (the AVX-512 set has wider kernels).
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

#include "microkernel.h"

namespace convkern::cpu {
namespace {

constexpr int kMR = 6;

void sgemm_6x16_avx2(std::int64_t kc, const float* A, const float* B, float* C, std::int64_t ldc, int accumulate) {
  __m256 c0[kMR], c1[kMR];
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(B);
    const __m256 b1 = _mm256_loadu_ps(B + 8);
    for (int i = 0; i < kMR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
    A += kMR;
    B += 16;
  }
  for (int i = 0; i < kMR; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(c));
      c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, c0[i]);
    _mm256_storeu_ps(c + 8, c1[i]);
  }
}

void dgemm_6x8_avx2(std::int64_t kc, const double* A, const double* B, double* C, std::int64_t ldc, int accumulate) {
  __m256d c0[kMR], c1[kMR];
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm256_setzero_pd();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256d b0 = _mm256_loadu_pd(B);
    const __m256d b1 = _mm256_loadu_pd(B + 4);
    for (int i = 0; i < kMR; ++i) {
      const __m256d a = _mm256_broadcast_sd(A + i);
      c0[i] = _mm256_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_pd(a, b1, c1[i]);
    }
    A += kMR;
    B += 8;
  }
  for (int i = 0; i < kMR; ++i) {
    double* c = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm256_add_pd(c0[i], _mm256_loadu_pd(c));
      c1[i] = _mm256_add_pd(c1[i], _mm256_loadu_pd(c + 4));
    }
    _mm256_storeu_pd(c, c0[i]);
    _mm256_storeu_pd(c + 4, c1[i]);
  }
}

}  // namespace

MicroKernel<float> micro_kernel_f32_avx2() { return {kMR, 16, "avx2", &sgemm_6x16_avx2}; }
MicroKernel<double> micro_kernel_f64_avx2() { return {kMR, 8, "avx2", &dgemm_6x8_avx2}; }

}  // namespace convkern::cpu

#endif  // __AVX2__ && __FMA__ && !__AVX512F__
