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

// One ymm of floats or of doubles: the kernels below are written once for both.
struct Ymm32 {
  using T = float;
  using V = __m256;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V broadcast(const T* p) { return _mm256_broadcast_ss(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
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
  static V broadcast(const T* p) { return _mm256_broadcast_sd(p); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V load_first(const T* p, std::int64_t n) {
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static T sum(V v) {
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
};

constexpr int kMR = 6;

// MR x 2 vectors (6 x 16 floats, 6 x 8 doubles). A is read as AOperand says, B's rows are ldb
// apart: the packed entry points pass the panel widths, so their address steps are constants.
template <class Y>
struct Gemm6x2vAvx2 {
  template <bool kTransposedA>
  __attribute__((always_inline)) static void rows(Segments seg, std::int64_t kc, const typename Y::T* A,
                                                  std::int64_t lda, std::int64_t run, std::int64_t run_step,
                                                  const typename Y::T* B, std::int64_t ldb, typename Y::T* C,
                                                  std::int64_t ldc, int accumulate) {
    using T = typename Y::T;
    constexpr int L = Y::kLanes;
    typename Y::V c0[kMR], c1[kMR];
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) c0[i] = c1[i] = Y::zero();
    for (std::int64_t s = 0; s < seg.count; ++s) {
      AOperand<T, kMR, kTransposedA> a_op(A + s * seg.a_step, lda, run, run_step);
      const T* b = B + s * seg.b_step;
      for (std::int64_t p = 0; p < kc; ++p) {
        const typename Y::V b0 = Y::load(b);
        const typename Y::V b1 = Y::load(b + L);
#pragma GCC unroll 6
        for (int i = 0; i < kMR; ++i) {
          const typename Y::V a = Y::broadcast(&a_op.at_ref(i));
          c0[i] = Y::fmadd(a, b0, c0[i]);
          c1[i] = Y::fmadd(a, b1, c1[i]);
        }
        a_op.step();
        b += ldb;
      }
    }
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      T* c = C + i * ldc;
      if (accumulate) {
        c0[i] = Y::add(c0[i], Y::load(c));
        c1[i] = Y::add(c1[i], Y::load(c + L));
      }
      Y::store(c, c0[i]);
      Y::store(c + L, c1[i]);
    }
  }
};

// Inner-product kernels (microkernel.h): 3 x 3 accumulators of one ymm each, so that the three B
// vectors and one A vector fit beside them in the 16 registers (4 x 4, the AVX-512 shape, would
// need 21). Per step of 8 (4) reduction elements, 6 loads feed 9 FMAs. The tail is loaded under a
// mask, so kc needs no padding. The lanes are summed in a fixed order.
constexpr int kDotMR = 3, kDotNR = 3;

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

MicroKernel<float> micro_kernel_f32_avx2() { return micro_kernel_entries<float, kMR, 16, Gemm6x2vAvx2<Ymm32>>("avx2"); }
MicroKernel<double> micro_kernel_f64_avx2() {
  return micro_kernel_entries<double, kMR, 8, Gemm6x2vAvx2<Ymm64>>("avx2");
}

}  // namespace convkern::cpu

#endif  // __AVX2__ && __FMA__ && !__AVX512F__
