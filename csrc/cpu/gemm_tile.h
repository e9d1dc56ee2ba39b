// gemm_tile.h — blocking constants and the edge-tile wrapper shared by the convolution drivers.
#pragma once

#include <algorithm>
#include <cstdint>

#include "microkernel.h"
#include "parallel.h"

namespace convkern::cpu {

// Reduction rows per packed block: a 128 x 32 float panel (16 KiB) and a 128 x 12 weight block
// stay in L1 together (256 rows measured 20-30% slower: the pair overflowed the 48 KiB L1) while the
// micro-kernel sweeps the other operand over it.
constexpr std::int64_t kReductionBlock = 128;

// When a pass has too few work items for the threads (backward weight: groups x column blocks;
// forward: groups x position tiles on small layers) the output rows are split too, into groups
// of whole MR blocks. Every output element is still one fixed-order sum: no result depends on
// the split, so it may follow the thread count.
inline std::int64_t row_groups_for_threads(std::int64_t mblocks, std::int64_t outer_items) {
  std::int64_t groups = 1;
  while (groups < mblocks && outer_items * groups < 2 * get_num_threads()) ++groups;
  return groups;
}

// C[rows x cols] (+)= A * B for a tile that may be smaller than the micro-kernel's MR x NR: full
// tiles go straight to the kernel; edge tiles run the full-size kernel on `scratch` (MR*NR) and
// copy back only the cells that exist. A and B must be zero-padded to MR and NR.
template <class T>
inline void run_tile(const MicroKernel<T>& mk, std::int64_t kc, const T* A, const T* B, T* C, std::int64_t ldc,
                     std::int64_t rows, std::int64_t cols, bool accumulate, T* scratch) {
  const std::int64_t MR = mk.mr, NR = mk.nr;
  if (rows == MR && cols == NR) {
    mk.run(kc, A, B, C, ldc, accumulate);
    return;
  }
  std::fill(scratch, scratch + MR * NR, T(0));
  if (accumulate)
    for (std::int64_t i = 0; i < rows; ++i) std::copy(C + i * ldc, C + i * ldc + cols, scratch + i * NR);
  mk.run(kc, A, B, scratch, NR, accumulate);
  for (std::int64_t i = 0; i < rows; ++i) std::copy(scratch + i * NR, scratch + i * NR + cols, C + i * ldc);
}

}  // namespace convkern::cpu
