// AVX2 + FMA micro-kernels. 6 x 16 (float) / 6 x 8 (double): 12 ymm accumulators, 2 for the B
// row and 1 broadcast of the 16 registers; per reduction step 2 loads and 6 broadcasts feed 12
// FMAs. Every loop over the accumulators is unrolled by pragma: left rolled, GCC keeps the
// accumulator arrays on the stack and stores all twelve on every step (72 GFLOP/s a core on the
// Zen 5 development machine, against 125 unrolled, its AVX2 FMA peak).
// Compiled into every kernel set, it holds code only in the AVX2 one (the AVX-512 set has wider
// kernels).
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

#include "microkernel.h"

namespace convkern::cpu {
namespace {

constexpr int kMR = 6;

__attribute__((always_inline)) inline void sgemm_6x16_avx2_rows(std::int64_t kc, const float* A, std::int64_t lda,
                                                                const float* B, std::int64_t ldb, float* C,
                                                                std::int64_t ldc, int accumulate) {
  __m256 c0[kMR], c1[kMR];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(B);
    const __m256 b1 = _mm256_loadu_ps(B + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
    A += lda;
    B += ldb;
  }
#pragma GCC unroll 6
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

void sgemm_6x16_avx2(std::int64_t kc, const float* A, const float* B, float* C, std::int64_t ldc, int accumulate) {
  sgemm_6x16_avx2_rows(kc, A, kMR, B, 16, C, ldc, accumulate);
}

void sgemm_6x16_avx2_strided(std::int64_t kc, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
                             float* C, std::int64_t ldc, int accumulate) {
  sgemm_6x16_avx2_rows(kc, A, lda, B, ldb, C, ldc, accumulate);
}

__attribute__((always_inline)) inline void dgemm_6x8_avx2_rows(std::int64_t kc, const double* A, std::int64_t lda,
                                                               const double* B, std::int64_t ldb, double* C,
                                                               std::int64_t ldc, int accumulate) {
  __m256d c0[kMR], c1[kMR];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = _mm256_setzero_pd();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256d b0 = _mm256_loadu_pd(B);
    const __m256d b1 = _mm256_loadu_pd(B + 4);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256d a = _mm256_broadcast_sd(A + i);
      c0[i] = _mm256_fmadd_pd(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_pd(a, b1, c1[i]);
    }
    A += lda;
    B += ldb;
  }
#pragma GCC unroll 6
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

void dgemm_6x8_avx2(std::int64_t kc, const double* A, const double* B, double* C, std::int64_t ldc, int accumulate) {
  dgemm_6x8_avx2_rows(kc, A, kMR, B, 8, C, ldc, accumulate);
}

void dgemm_6x8_avx2_strided(std::int64_t kc, const double* A, std::int64_t lda, const double* B, std::int64_t ldb,
                            double* C, std::int64_t ldc, int accumulate) {
  dgemm_6x8_avx2_rows(kc, A, lda, B, ldb, C, ldc, accumulate);
}

// Inner-product kernels (microkernel.h): 3 x 3 accumulators of one ymm each, so that the three B
// vectors and one A vector fit beside them in the 16 registers (4 x 4, the AVX-512 shape, would
// need 21). Per step of 8 (4) reduction elements, 6 loads feed 9 FMAs. The tail is loaded under a
// mask, so kc needs no padding. The lanes are summed in a fixed order.
constexpr int kDotMR = 3, kDotNR = 3;

struct Ymm32 {
  using T = float;
  using V = __m256;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V load_first(const T* p, std::int64_t n) {  // lanes n and up read as zero
    return _mm256_maskload_ps(
        p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static T sum(V v) {
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
  }
};

struct Ymm64 {
  using T = double;
  using V = __m256d;
  static constexpr int kLanes = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V load_first(const T* p, std::int64_t n) {
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static T sum(V v) {
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
};

template <class Y, bool kTail>
inline void dot_step(std::int64_t p, std::int64_t n, const typename Y::T* const* a, const typename Y::T* const* b,
                     typename Y::V (&c)[kDotMR][kDotNR]) {
  typename Y::V vb[kDotNR];
#pragma GCC unroll 3
  for (int j = 0; j < kDotNR; ++j) vb[j] = kTail ? Y::load_first(b[j] + p, n) : Y::load(b[j] + p);
#pragma GCC unroll 3
  for (int i = 0; i < kDotMR; ++i) {
    const typename Y::V va = kTail ? Y::load_first(a[i] + p, n) : Y::load(a[i] + p);
#pragma GCC unroll 3
    for (int j = 0; j < kDotNR; ++j) c[i][j] = Y::fmadd(va, vb[j], c[i][j]);
  }
}

template <class Y>
void dot_3x3_avx2(std::int64_t kc, const typename Y::T* const* a, const typename Y::T* const* b, typename Y::T* C,
                  std::int64_t ldc, int accumulate) {
  typename Y::V c[kDotMR][kDotNR];
#pragma GCC unroll 3
  for (int i = 0; i < kDotMR; ++i)
#pragma GCC unroll 3
    for (int j = 0; j < kDotNR; ++j) c[i][j] = Y::zero();
  std::int64_t p = 0;
  for (; p + Y::kLanes <= kc; p += Y::kLanes) dot_step<Y, false>(p, Y::kLanes, a, b, c);
  if (p < kc) dot_step<Y, true>(p, kc - p, a, b, c);
  for (int i = 0; i < kDotMR; ++i)
    for (int j = 0; j < kDotNR; ++j) {
      const typename Y::T s = Y::sum(c[i][j]);
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
    }
}

}  // namespace

DotKernel<float> dot_kernel_f32_avx2() { return {kDotMR, kDotNR, &dot_3x3_avx2<Ymm32>}; }
DotKernel<double> dot_kernel_f64_avx2() { return {kDotMR, kDotNR, &dot_3x3_avx2<Ymm64>}; }

MicroKernel<float> micro_kernel_f32_avx2() { return {kMR, 16, "avx2", &sgemm_6x16_avx2, &sgemm_6x16_avx2_strided}; }
MicroKernel<double> micro_kernel_f64_avx2() { return {kMR, 8, "avx2", &dgemm_6x8_avx2, &dgemm_6x8_avx2_strided}; }

}  // namespace convkern::cpu

#endif  // __AVX2__ && __FMA__ && !__AVX512F__
