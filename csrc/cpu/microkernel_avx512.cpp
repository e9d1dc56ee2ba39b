// AVX-512 micro-kernels. 12 x 32 (float) / 12 x 16 (double): 24 zmm accumulators, 2 for the B
// row and 1 broadcast leave 5 of the 32 registers free; per reduction step 2 vector loads and
// 12 broadcasts feed 24 FMAs, enough to keep both FMA ports busy from L1. Narrower and taller
// variants serve products whose rows or columns would pad the 12 x 32 tiles.
// Compiled into every kernel set, it holds code only in the AVX-512 one.
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

#include "microkernel.h"

namespace convkern::cpu {
namespace {

constexpr int kMR = 12;

// One zmm of floats or of doubles: the GEMM kernel below is written once for both.
struct Zmm32 {
  using T = float;
  using V = __m512;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V broadcast(T a) { return _mm512_set1_ps(a); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};

struct Zmm64 {
  using T = double;
  using V = __m512d;
  static constexpr int kLanes = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V broadcast(T a) { return _mm512_set1_pd(a); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
};

// MR x NV vectors. Two vectors (MR x 32 floats, MR x 16 doubles): 12 rows for most GEMMs; 8 rows
// (float) for convolutions with few output channels (16 of them would fill 24 rows of the 12-row
// kernel); 14 rows (float) for tiles along output rows of 14, 28, 56 or 112 positions, which
// 12-row tiles would pad by up to a quarter (28 accumulators and the 2 B vectors fill 30
// registers; the broadcasts are folded into the FMAs' memory operands). One vector (float: MR x
// 16), for products with at most 16 columns, which two would pad to 32: LeNet's 16 output
// channels, tiled along its output rows of 10 positions (MR = 10) or rows of 14, 28, 56, 112.
// A is read as AOperand says, B's rows are ldb apart: the packed entry points pass the panel
// widths, so their address steps are constants.
template <class Z, int MR, int NV>
struct GemmAvx512 {
  template <bool kTransposedA>
  __attribute__((always_inline)) static void rows(Segments seg, std::int64_t kc, const typename Z::T* A,
                                                  std::int64_t lda, std::int64_t run, std::int64_t run_step,
                                                  const typename Z::T* B, std::int64_t ldb, typename Z::T* C,
                                                  std::int64_t ldc, int accumulate) {
    using T = typename Z::T;
    constexpr int L = Z::kLanes;
    // Every loop over the rows fully unrolled: otherwise GCC turns the zeroing into a memset of
    // the accumulator arrays on the stack (6% of the pointwise layers' time, 2-core Xeon).
    typename Z::V c[NV][MR];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) c[v][i] = Z::zero();
    for (std::int64_t s = 0; s < seg.count; ++s) {
      AOperand<T, MR, kTransposedA> a_op(A + s * seg.a_step, lda, run, run_step);
      const T* b_row = B + s * seg.b_step;
      for (std::int64_t p = 0; p < kc; ++p) {
        typename Z::V b[NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) b[v] = Z::load(b_row + v * L);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const typename Z::V a = Z::broadcast(a_op.at(i));
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) c[v][i] = Z::fmadd(a, b[v], c[v][i]);
        }
        a_op.step();
        b_row += ldb;
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        T* out = C + i * ldc + v * L;
        if (accumulate) c[v][i] = Z::add(c[v][i], Z::load(out));
        Z::store(out, c[v][i]);
      }
    }
  }
};

// Inner-product kernels: 4 x 4 accumulators of one vector each; per step of 16 (8) reduction
// elements, 8 loads feed 16 FMAs. (4 x 6 spilled accumulators to the stack: 24 + 6 + 1 vector
// registers plus ten row pointers was one too many for GCC.) The tail is masked, so kc needs no
// padding.
constexpr int kDotMR = 4, kDotNR = 4;

// Written with the loops fully unrolled by pragma: otherwise GCC keeps the accumulator array
// in memory and stores it on every step.
#define CONVKERN_DOT_KERNEL(NAME, T, VEC, LANES, MASK, LOADZ, FMADD, ZERO, REDUCE)                                  \
  void NAME(std::int64_t kc, const T* const* a, const T* const* b, T* C, std::int64_t ldc, int accumulate) {        \
    const T* a0 = a[0];                                                                                             \
    const T* a1 = a[1];                                                                                             \
    const T* a2 = a[2];                                                                                             \
    const T* a3 = a[3];                                                                                             \
    const T* b0 = b[0];                                                                                             \
    const T* b1 = b[1];                                                                                             \
    const T* b2 = b[2];                                                                                             \
    const T* b3 = b[3];                                                                                             \
    VEC c00 = ZERO(), c01 = ZERO(), c02 = ZERO(), c03 = ZERO(), c10 = ZERO(), c11 = ZERO(), c12 = ZERO(),           \
        c13 = ZERO(), c20 = ZERO(), c21 = ZERO(), c22 = ZERO(), c23 = ZERO(), c30 = ZERO(), c31 = ZERO(),           \
        c32 = ZERO(), c33 = ZERO();                                                                                 \
    for (std::int64_t p = 0; p < kc; p += LANES) {                                                                  \
      const std::int64_t left = kc - p;                                                                             \
      const MASK m = left >= LANES ? static_cast<MASK>(~0u) : static_cast<MASK>((1u << left) - 1);                  \
      const VEC v0 = LOADZ(m, b0 + p), v1 = LOADZ(m, b1 + p), v2 = LOADZ(m, b2 + p), v3 = LOADZ(m, b3 + p);         \
      VEC u = LOADZ(m, a0 + p);                                                                                     \
      c00 = FMADD(u, v0, c00);                                                                                      \
      c01 = FMADD(u, v1, c01);                                                                                      \
      c02 = FMADD(u, v2, c02);                                                                                      \
      c03 = FMADD(u, v3, c03);                                                                                      \
      u = LOADZ(m, a1 + p);                                                                                         \
      c10 = FMADD(u, v0, c10);                                                                                      \
      c11 = FMADD(u, v1, c11);                                                                                      \
      c12 = FMADD(u, v2, c12);                                                                                      \
      c13 = FMADD(u, v3, c13);                                                                                      \
      u = LOADZ(m, a2 + p);                                                                                         \
      c20 = FMADD(u, v0, c20);                                                                                      \
      c21 = FMADD(u, v1, c21);                                                                                      \
      c22 = FMADD(u, v2, c22);                                                                                      \
      c23 = FMADD(u, v3, c23);                                                                                      \
      u = LOADZ(m, a3 + p);                                                                                         \
      c30 = FMADD(u, v0, c30);                                                                                      \
      c31 = FMADD(u, v1, c31);                                                                                      \
      c32 = FMADD(u, v2, c32);                                                                                      \
      c33 = FMADD(u, v3, c33);                                                                                      \
    }                                                                                                               \
    const T sums[16] = {REDUCE(c00), REDUCE(c01), REDUCE(c02), REDUCE(c03), REDUCE(c10), REDUCE(c11),               \
                        REDUCE(c12), REDUCE(c13), REDUCE(c20), REDUCE(c21), REDUCE(c22), REDUCE(c23),               \
                        REDUCE(c30), REDUCE(c31), REDUCE(c32), REDUCE(c33)};                                        \
    for (int i = 0; i < 4; ++i)                                                                                     \
      for (int j = 0; j < 4; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + sums[i * 4 + j] : sums[i * 4 + j]; \
  }

CONVKERN_DOT_KERNEL(sdot_4x4_avx512, float, __m512, 16, __mmask16, _mm512_maskz_loadu_ps, _mm512_fmadd_ps,
                    _mm512_setzero_ps, _mm512_reduce_add_ps)
CONVKERN_DOT_KERNEL(ddot_4x4_avx512, double, __m512d, 8, __mmask8, _mm512_maskz_loadu_pd, _mm512_fmadd_pd,
                    _mm512_setzero_pd, _mm512_reduce_add_pd)
#undef CONVKERN_DOT_KERNEL

}  // namespace

DotKernel<float> dot_kernel_f32_avx512() { return {kDotMR, kDotNR, &sdot_4x4_avx512}; }
DotKernel<double> dot_kernel_f64_avx512() { return {kDotMR, kDotNR, &ddot_4x4_avx512}; }

MicroKernel<float> micro_kernel_f32_avx512() {
  return micro_kernel_entries<float, kMR, 32, GemmAvx512<Zmm32, kMR, 2>>("avx512");
}
MicroKernel<float> micro_kernel_f32_avx512_8rows() {
  return micro_kernel_entries<float, 8, 32, GemmAvx512<Zmm32, 8, 2>>("avx512");
}
MicroKernel<float> micro_kernel_f32_avx512_14rows() {
  return micro_kernel_entries<float, 14, 32, GemmAvx512<Zmm32, 14, 2>>("avx512");
}
MicroKernel<float> micro_kernel_f32_avx512_1v_10rows() {
  return micro_kernel_entries<float, 10, 16, GemmAvx512<Zmm32, 10, 1>>("avx512");
}
MicroKernel<float> micro_kernel_f32_avx512_1v_14rows() {
  return micro_kernel_entries<float, 14, 16, GemmAvx512<Zmm32, 14, 1>>("avx512");
}
MicroKernel<double> micro_kernel_f64_avx512() {
  return micro_kernel_entries<double, kMR, 16, GemmAvx512<Zmm64, kMR, 2>>("avx512");
}

}  // namespace convkern::cpu

#endif  // __AVX512F__
