// microkernel.h — the register-blocked GEMM micro-kernel every CPU convolution pass is built on.
//
// C[MR x NR] (row stride ldc) = (accumulate ? C : 0) + sum_{p < kc} A[p][0..MR) (x) B[p][0..NR)
//
// A is packed as kc rows of MR values (broadcast operand), B as kc rows of NR values (vector
// operand); both are laid out by the caller's packers so that the kernel streams them with unit
// stride. Each kernel set (see kernel_table.h) uses the widest implementation its own flags
// allow: the AVX-512 set the AVX-512 kernels, the AVX2 set the AVX2 + FMA ones, the generic set
// plain C++. The choice is made by the compiler, so nothing is decided at run time here.
#pragma once

#include <cstdint>

namespace convkern::cpu {

template <class T>
struct MicroKernel {
  int mr;
  int nr;
  const char* isa;
  void (*run)(std::int64_t kc, const T* A, const T* B, T* C, std::int64_t ldc, int accumulate);
  // The same product with A's and B's rows read in place, lda and ldb elements apart (packed
  // panels are lda = MR, ldb = NR): for operands whose rows already hold MR and NR contiguous
  // values, such as the pointwise layers' channels-last activations (row = position).
  void (*run_strided)(std::int64_t kc, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T* C,
                      std::int64_t ldc, int accumulate);
  // A transposed: A(p, i) = A[i * lda + (p / run) * run_step + p % run], each of the product's MR
  // rows runs of `run` contiguous values along the reduction, run_step apart (channels-last
  // activations as the rows of a pointwise forward pass: one run of kc; a first layer's kernel
  // rows: one run of kW x C values per kernel row, an input row apart); B as in run_strided.
  void (*run_transposed_a)(std::int64_t kc, const T* A, std::int64_t lda, std::int64_t run, std::int64_t run_step,
                           const T* B, std::int64_t ldb, T* C, std::int64_t ldc, int accumulate);
  // run_strided over `segments` stretches of kc steps each, stretch s starting a_step and b_step
  // elements past stretch 0 in A and B, summed in registers: the output rows of a layer read in
  // place, without multiplying the cells between them (which a single stretch over whole padded
  // rows would).
  void (*run_segments)(std::int64_t segments, std::int64_t kc, const T* A, std::int64_t lda, std::int64_t a_step,
                       const T* B, std::int64_t ldb, std::int64_t b_step, T* C, std::int64_t ldc, int accumulate);
};

// The stretches a micro-kernel body reduces over (run_segments); one for the other entries.
struct Segments {
  std::int64_t count = 1, a_step = 0, b_step = 0;
};

// How a micro-kernel reads A(p, i), reduction step p and product row i, in its two layouts:
// rows of MR values lda apart (kTransposed false; packed panels have lda = MR), or MR rows lda
// apart, each made of runs of `run` contiguous values run_step apart (kTransposed true; see
// run_transposed_a). Transposed, every third row is a base pointer and the two after it one and
// two lda further (an x86 address's scaled index): the bases and lda stay in registers (twelve
// row pointers would not, and reloading them doubled the loads per step).
template <class T, int MR, bool kTransposed>
struct AOperand {
  static constexpr int kBases = kTransposed ? (MR + 2) / 3 : 1;
  const T* base[kBases];
  std::int64_t lda, run, run_jump, in_run = 0;
  AOperand(const T* A, std::int64_t lda_, std::int64_t run_, std::int64_t run_step)
      : lda(lda_), run(run_), run_jump(run_step - run_) {
    for (int b = 0; b < kBases; ++b) base[b] = A + 3 * b * lda;
  }
  const T& at_ref(int i) const { return kTransposed ? base[i / 3][(i % 3) * lda] : base[0][i]; }
  T at(int i) const { return at_ref(i); }
  void step() {
    if constexpr (kTransposed) {
      for (int b = 0; b < kBases; ++b) ++base[b];
      if (++in_run == run) {
        in_run = 0;
        for (int b = 0; b < kBases; ++b) base[b] += run_jump;
      }
    } else {
      base[0] += lda;
    }
  }
};

// A micro-kernel's four entries, from one body written once per ISA:
//   Body::template rows<kTransposedA>(segments, kc, A, lda, run, run_step, B, ldb, C, ldc, accumulate),
// which reads A as AOperand says and B's rows ldb apart, over each of `segments`' stretches.
// Body::rows is always inlined, so the packed entry's panel widths are constants and its address
// steps compile to immediates. Bodies live in their kernel set's anonymous namespace, which keeps
// every entry local to that set.
template <class T, int MR, int NR, class Body>
MicroKernel<T> micro_kernel_entries(const char* isa) {
  return {MR,
          NR,
          isa,
          [](std::int64_t kc, const T* A, const T* B, T* C, std::int64_t ldc, int accumulate) {
            Body::template rows<false>(Segments{}, kc, A, MR, 0, 0, B, NR, C, ldc, accumulate);
          },
          [](std::int64_t kc, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T* C, std::int64_t ldc,
             int accumulate) { Body::template rows<false>(Segments{}, kc, A, lda, 0, 0, B, ldb, C, ldc, accumulate); },
          [](std::int64_t kc, const T* A, std::int64_t lda, std::int64_t run, std::int64_t run_step, const T* B,
             std::int64_t ldb, T* C, std::int64_t ldc, int accumulate) {
            Body::template rows<true>(Segments{}, kc, A, lda, run, run_step, B, ldb, C, ldc, accumulate);
          },
          [](std::int64_t segments, std::int64_t kc, const T* A, std::int64_t lda, std::int64_t a_step, const T* B,
             std::int64_t ldb, std::int64_t b_step, T* C, std::int64_t ldc, int accumulate) {
            Body::template rows<false>(Segments{segments, a_step, b_step}, kc, A, lda, 0, 0, B, ldb, C, ldc,
                                       accumulate);
          }};
}

template <class T>
const MicroKernel<T>& micro_kernel();

// For GEMMs with few rows (convolutions with a few output channels per group): the kernel that
// computes the fewest padding rows for `rows` (an 8-row one where the ISA has it).
template <class T>
const MicroKernel<T>& micro_kernel_for_rows(std::int64_t rows);

// For GEMMs whose rows are tiled along one output row of `width` positions (the forward by kernel
// rows): the kernel that pads the row least (a 14-row one where the ISA has it), ties to the
// default.
template <class T>
const MicroKernel<T>& micro_kernel_for_width(std::int64_t width);

// The same for products with `columns` columns (the forward by kernel rows: output channels): at
// most 16 of them take a one-vector kernel (10 or 14 rows) where the ISA has one, which neither
// pads the columns to 32 nor, for rows of 10, the row to 12.
template <class T>
const MicroKernel<T>& micro_kernel_for_row_tiles(std::int64_t width, std::int64_t columns);

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

// Per-ISA kernels, defined only in the kernel set compiled for that ISA.
MicroKernel<float> micro_kernel_f32_avx512();
MicroKernel<float> micro_kernel_f32_avx512_8rows();
MicroKernel<float> micro_kernel_f32_avx512_14rows();
MicroKernel<float> micro_kernel_f32_avx512_1v_10rows();
MicroKernel<float> micro_kernel_f32_avx512_1v_14rows();
DotKernel<float> dot_kernel_f32_avx512();
DotKernel<double> dot_kernel_f64_avx512();
MicroKernel<double> micro_kernel_f64_avx512();
MicroKernel<float> micro_kernel_f32_avx2();
MicroKernel<double> micro_kernel_f64_avx2();
DotKernel<float> dot_kernel_f32_avx2();
DotKernel<double> dot_kernel_f64_avx2();

}  // namespace convkern::cpu
