// AVX-512 micro-kernels. 12 x 32 (float) / 12 x 16 (double): 24 zmm accumulators, 2 for the B
// row and 1 broadcast leave 5 of the 32 registers free; per reduction step 2 vector loads and
// 12 broadcasts feed 24 FMAs, enough to keep both FMA ports busy from L1.
// This file must include nothing but intrinsics: anything inline it instantiated would be
// compiled for AVX-512 and could be picked by the linker for callers on older CPUs.
#include <immintrin.h>

#include <cstdint>

#include "microkernel.h"

namespace convkern::cpu {
namespace {

constexpr int kMR = 12;

void sgemm_12x32_avx512(std::int64_t kc, const float* A, const float* B, float* C, std::int64_t ldc, int accumulate) {
  __m512 c0[kMR], c1[kMR];
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(B);
    const __m512 b1 = _mm512_loadu_ps(B + 16);
    for (int i = 0; i < kMR; ++i) {
      const __m512 a = _mm512_set1_ps(A[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
    A += kMR;
    B += 32;
  }
  for (int i = 0; i < kMR; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_loadu_ps(c));
      c1[i] = _mm512_add_ps(c1[i], _mm512_loadu_ps(c + 16));
    }
    _mm512_storeu_ps(c, c0[i]);
    _mm512_storeu_ps(c + 16, c1[i]);
  }
}

void dgemm_12x16_avx512(std::int64_t kc, const double* A, const double* B, double* C, std::int64_t ldc,
                        int accumulate) {
  __m512d c0[kMR], c1[kMR];
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm512_setzero_pd();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m512d b0 = _mm512_loadu_pd(B);
    const __m512d b1 = _mm512_loadu_pd(B + 8);
    for (int i = 0; i < kMR; ++i) {
      const __m512d a = _mm512_set1_pd(A[i]);
      c0[i] = _mm512_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_pd(a, b1, c1[i]);
    }
    A += kMR;
    B += 16;
  }
  for (int i = 0; i < kMR; ++i) {
    double* c = C + i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_pd(c0[i], _mm512_loadu_pd(c));
      c1[i] = _mm512_add_pd(c1[i], _mm512_loadu_pd(c + 8));
    }
    _mm512_storeu_pd(c, c0[i]);
    _mm512_storeu_pd(c + 8, c1[i]);
  }
}

}  // namespace

MicroKernel<float> micro_kernel_f32_avx512() { return {kMR, 32, "avx512", &sgemm_12x32_avx512}; }
MicroKernel<double> micro_kernel_f64_avx512() { return {kMR, 16, "avx512", &dgemm_12x16_avx512}; }

}  // namespace convkern::cpu
