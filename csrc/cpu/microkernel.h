// microkernel.h — the register-blocked GEMM micro-kernel every CPU convolution pass is built on.
//
// C[MR x NR] (row stride ldc) = (accumulate ? C : 0) + sum_{p < kc} A[p][0..MR) (x) B[p][0..NR)
//
// A is packed as kc rows of MR values (broadcast operand), B as kc rows of NR values (vector
// operand); both are laid out by the caller's packers so that the kernel streams them with unit
// stride. One implementation per instruction set lives in its own translation unit, compiled
// with that ISA's flags and nothing else from the project, and the widest one the CPU supports
// is picked at run time (CONVKERN_ISA=avx512|avx2|generic overrides, for testing every path).
#pragma once

#include <cstdint>

namespace convkern::cpu {

template <class T>
struct MicroKernel {
  int mr;
  int nr;
  const char* isa;
  void (*run)(std::int64_t kc, const T* A, const T* B, T* C, std::int64_t ldc, int accumulate);
};

template <class T>
const MicroKernel<T>& micro_kernel();

// For GEMMs with few rows (convolutions with a few output channels per group): the kernel that
// computes the fewest padding rows for `rows` (an 8-row one where the ISA has it).
template <class T>
const MicroKernel<T>& micro_kernel_for_rows(std::int64_t rows);

// The inner-product form, for GEMMs whose operands are both contiguous along the reduction
// (backward weight in channels-first: dW[k][r] = sum_p dY[k][p] * X_col[r][p]):
//   C[i][j] (+)= sum_{p < kc} a[i][p] * b[j][p],   i < MR, j < NR, C row stride ldc.
// Lanes accumulate along p and are summed in a fixed order at the end: deterministic, and no
// operand needs transposing into a packed panel.
template <class T>
struct DotKernel {
  int mr;
  int nr;
  void (*run)(std::int64_t kc, const T* const* a, const T* const* b, T* C, std::int64_t ldc, int accumulate);
};

template <class T>
const DotKernel<T>& dot_kernel();

// Name of the instruction set the micro-kernels use ("avx512", "avx2" or "generic").
const char* micro_kernel_isa();

// Per-ISA tables, defined only where the compiler targets x86-64.
MicroKernel<float> micro_kernel_f32_avx512();
MicroKernel<float> micro_kernel_f32_avx512_8rows();
DotKernel<float> dot_kernel_f32_avx512();
DotKernel<double> dot_kernel_f64_avx512();
MicroKernel<double> micro_kernel_f64_avx512();
MicroKernel<float> micro_kernel_f32_avx2();
MicroKernel<double> micro_kernel_f64_avx2();

}  // namespace convkern::cpu
