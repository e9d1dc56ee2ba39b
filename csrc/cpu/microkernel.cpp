// Portable micro-kernels, and the choice of the widest ones the kernel set is compiled for.
#include "microkernel.h"

namespace convkern::cpu {
namespace {

// 4 x 8 plain C++: the fallback for CPUs without AVX2 and the reference the SIMD ones replace.
template <class T>
struct Gemm4x8Generic {
  template <bool kTransposedA>
  __attribute__((always_inline)) static void rows(Segments seg, std::int64_t kc, const T* A, std::int64_t lda,
                                                  std::int64_t run, std::int64_t run_step, const T* B, std::int64_t ldb,
                                                  T* C, std::int64_t ldc, int accumulate) {
    constexpr int MR = 4, NR = 8;
    T acc[MR][NR] = {};
    for (std::int64_t s = 0; s < seg.count; ++s) {
      AOperand<T, MR, kTransposedA> a_op(A + s * seg.a_step, lda, run, run_step);
      const T* b = B + s * seg.b_step;
      for (std::int64_t p = 0; p < kc; ++p, a_op.step(), b += ldb)
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NR; ++j) acc[i][j] += a_op.at(i) * b[j];
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc[i][j] : acc[i][j];
  }
};

// Portable inner-product kernel, for CPUs without AVX2.
template <class T>
void dot_2x4_generic(std::int64_t kc, const T* const* a, const T* const* b, T* C, std::int64_t ldc, int accumulate) {
  constexpr int MR = 2, NR = 4, L = 8;  // L independent partial sums per element, summed in order
  T acc[MR][NR][L] = {};
  std::int64_t p = 0;
  for (; p + L <= kc; p += L)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        for (int l = 0; l < L; ++l) acc[i][j][l] += a[i][p + l] * b[j][p + l];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      for (std::int64_t q = p; q < kc; ++q) acc[i][j][q - p] += a[i][q] * b[j][q];
      T s = 0;
      for (int l = 0; l < L; ++l) s += acc[i][j][l];
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
    }
}

// The widest kernels the set's flags allow (see microkernel.h).
template <class T>
MicroKernel<T> pick() {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4)
    return micro_kernel_f32_avx512();
  else
    return micro_kernel_f64_avx512();
#elif defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(T) == 4)
    return micro_kernel_f32_avx2();
  else
    return micro_kernel_f64_avx2();
#else
  return micro_kernel_entries<T, 4, 8, Gemm4x8Generic<T> >("generic");
#endif
}

}  // namespace

template <>
const MicroKernel<float>& micro_kernel<float>() {
  static const MicroKernel<float> k = pick<float>();
  return k;
}

template <>
const MicroKernel<double>& micro_kernel<double>() {
  static const MicroKernel<double> k = pick<double>();
  return k;
}

namespace {

// The AVX-512 float kernel with kRows rows (8 or 14), or the default one where the set has none.
template <class T, int kRows>
const MicroKernel<T>& kernel_with_rows() {
  static const MicroKernel<T> k = [] {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4)
      return kRows == 8 ? micro_kernel_f32_avx512_8rows() : micro_kernel_f32_avx512_14rows();
#endif
    return micro_kernel<T>();
  }();
  return k;
}

}  // namespace

template <class T>
const MicroKernel<T>& micro_kernel_for_rows(std::int64_t rows) {
  // Up to 32 rows, where the padding rows of the last block matter most; the 12-row kernel
  // feeds its FMAs from fewer loads per step everywhere else.
  const MicroKernel<T>& wide = micro_kernel<T>();
  const MicroKernel<T>& narrow = kernel_with_rows<T, 8>();
  const auto padded = [rows](const MicroKernel<T>& k) { return (rows + k.mr - 1) / k.mr * k.mr; };
  return rows <= 32 && padded(narrow) < padded(wide) ? narrow : wide;
}
template const MicroKernel<float>& micro_kernel_for_rows<float>(std::int64_t);
template const MicroKernel<double>& micro_kernel_for_rows<double>(std::int64_t);

template <class T>
const MicroKernel<T>& micro_kernel_for_width(std::int64_t width) {
  const MicroKernel<T>& fourteen = kernel_with_rows<T, 14>();
  const MicroKernel<T>& wide = micro_kernel<T>();
  const auto padded = [width](const MicroKernel<T>& k) { return (width + k.mr - 1) / k.mr * k.mr; };
  return padded(fourteen) < padded(wide) ? fourteen : wide;
}
template const MicroKernel<float>& micro_kernel_for_width<float>(std::int64_t);
template const MicroKernel<double>& micro_kernel_for_width<double>(std::int64_t);

namespace {

// The AVX-512 float one-vector kernel with kRows rows (10 or 14); null where the set has none.
template <class T, int kRows>
const MicroKernel<T>* one_vector_kernel() {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    static const MicroKernel<T> k = kRows == 10 ? micro_kernel_f32_avx512_1v_10rows()
                                                : micro_kernel_f32_avx512_1v_14rows();
    return &k;
  }
#endif
  return nullptr;
}

}  // namespace

template <class T>
const MicroKernel<T>& micro_kernel_for_row_tiles(std::int64_t width, std::int64_t columns) {
  const MicroKernel<T>& two_vectors = micro_kernel_for_width<T>(width);
  const MicroKernel<T>* ten = one_vector_kernel<T, 10>();
  const MicroKernel<T>* fourteen = one_vector_kernel<T, 14>();
  if (!ten || !fourteen || columns > ten->nr || columns > two_vectors.nr / 2) return two_vectors;
  const auto padded = [width](const MicroKernel<T>* k) { return (width + k->mr - 1) / k->mr * k->mr; };
  return padded(ten) < padded(fourteen) ? *ten : *fourteen;
}
template const MicroKernel<float>& micro_kernel_for_row_tiles<float>(std::int64_t, std::int64_t);
template const MicroKernel<double>& micro_kernel_for_row_tiles<double>(std::int64_t, std::int64_t);

template <class T>
DotKernel<T> pick_dot() {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4)
    return dot_kernel_f32_avx512();
  else
    return dot_kernel_f64_avx512();
#elif defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(T) == 4)
    return dot_kernel_f32_avx2();
  else
    return dot_kernel_f64_avx2();
#else
  return {2, 4, &dot_2x4_generic<T>};
#endif
}

template <>
const DotKernel<float>& dot_kernel<float>() {
  static const DotKernel<float> k = pick_dot<float>();
  return k;
}

template <>
const DotKernel<double>& dot_kernel<double>() {
  static const DotKernel<double> k = pick_dot<double>();
  return k;
}

}  // namespace convkern::cpu
