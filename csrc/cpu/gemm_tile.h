// gemm_tile.h — blocking constants and the edge-tile wrapper shared by the convolution drivers.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../shape.h"
#include "microkernel.h"
#include "parallel.h"

namespace convkern::cpu {

// Reduction rows per packed block: a 128 x 32 float panel (16 KiB) and a 128 x 12 weight block
// stay in L1 together (256 rows measured 20-30% slower: the pair overflowed the 48 KiB L1) while the
// micro-kernel sweeps the other operand over it.
constexpr std::int64_t kReductionBlock = 128;

// `n` elements rounded up to an odd number of 64-byte cache lines: the distance between rows of a
// panel that the micro-kernel reads row by row at once, so that those rows spread over all of
// L1's sets (rows a multiple of 4 KiB apart all fall into one set and evict each other).
template <class T>
inline std::int64_t odd_line_stride(std::int64_t n) {
  constexpr std::int64_t line = 64 / static_cast<std::int64_t>(sizeof(T));
  return ((n + line - 1) / line | 1) * line;
}

// When a pass has too few work items for the threads (backward weight: groups x column blocks;
// forward: groups x position tiles on small layers) the output rows are split too, into groups
// of whole MR blocks. Every output element is still one fixed-order sum: no result depends on
// the split, so it may follow the thread count.
inline std::int64_t row_groups_for_threads(std::int64_t mblocks, std::int64_t outer_items) {
  std::int64_t groups = 1;
  while (groups < mblocks && outer_items * groups < 2 * get_num_threads()) ++groups;
  return groups;
}

// Forward passes tile the positions of the whole batch: tiles of equal size (a multiple of
// `unit`, the micro-kernel's position panel), as many as a multiple of the threads when there are
// few of them, so that no thread waits on a lone last tile; few tiles (late layers) split the
// output channels' `blocks` into groups instead of shrinking the tile, so that each item streams
// only its share of the packed weights. Tile boundaries change no output bit. Items are (group
// of the layer, tile, block group).
struct PositionTiling {
  i64 tile;  // positions per tile
  i64 tiles;  // tiles over the batch
  i64 kgroups;  // block groups per tile
  i64 kper;  // blocks per block group
  i64 items;
};

inline PositionTiling position_tiling(i64 total, i64 unit, i64 panels_per_tile, i64 blocks, i64 groups) {
  const i64 nt = get_num_threads();
  i64 tiles = ceil_div(total, panels_per_tile * unit);
  if (tiles < 4 * nt) tiles = ceil_div(tiles, nt) * nt;
  const i64 tile = ceil_div(ceil_div(total, tiles), unit) * unit;
  tiles = ceil_div(total, tile);
  const i64 kgroups = row_groups_for_threads(blocks, groups * tiles);
  return {tile, tiles, kgroups, ceil_div(blocks, kgroups), groups * tiles * kgroups};
}

// C[rows x cols] (+)= A * B for a tile that may be smaller than the micro-kernel's MR x NR, the
// product run by kernel(C, ldc, accumulate) whatever entry it uses: full tiles go straight to it;
// edge tiles run the full-size kernel on `scratch` (MR*NR) and copy back only the cells that
// exist. A and B must cover MR rows and NR columns (zero-padded, or memory that may be read).
template <class T, class Kernel>
inline void run_tile_with(std::int64_t MR, std::int64_t NR, T* C, std::int64_t ldc, std::int64_t rows,
                          std::int64_t cols, bool accumulate, T* scratch, Kernel&& kernel) {
  if (rows == MR && cols == NR) {
    kernel(C, ldc, accumulate);
    return;
  }
  std::fill(scratch, scratch + MR * NR, T(0));
  if (accumulate)
    for (std::int64_t i = 0; i < rows; ++i) std::copy(C + i * ldc, C + i * ldc + cols, scratch + i * NR);
  kernel(scratch, NR, accumulate);
  for (std::int64_t i = 0; i < rows; ++i) std::copy(scratch + i * NR, scratch + i * NR + cols, C + i * ldc);
}

// The same for packed panels (the micro-kernel's run entry).
template <class T>
inline void run_tile(const MicroKernel<T>& mk, std::int64_t kc, const T* A, const T* B, T* C, std::int64_t ldc,
                     std::int64_t rows, std::int64_t cols, bool accumulate, T* scratch) {
  run_tile_with(mk.mr, mk.nr, C, ldc, rows, cols, accumulate, scratch,
                [&](T* c, std::int64_t ld, bool acc) { mk.run(kc, A, B, c, ld, acc); });
}

}  // namespace convkern::cpu
