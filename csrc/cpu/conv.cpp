// conv.cpp — CPU convolution as implicit GEMM on one register-blocked micro-kernel.
//
// Algorithm. Per (image n, group g) a convolution is the GEMM
//     Y[K/g x P] = W[K/g x R] * X_col[R x P],   R = C/g * kD*kH*kW,  P = oD*oH*oW,
// and its two gradients are the GEMMs
//     dX_col[R x P] = W^T * dY   (then scattered back: col2im)      -- backward data
//     dW[K/g x R]   = sum_n dY * X_col^T                            -- backward weight.
// X_col is never materialised: tiles of it are gathered from the input into the micro-kernel's
// packed layout as they are needed (implicit im2col), one NR-wide panel of output positions at
// a time, and weights are packed once per call. Runs of output positions that share an output
// row read a contiguous (stride 1) or evenly strided stretch of an input row, so the gather is
// a few memcpy-like loops per reduction row rather than a per-element index computation.
//
// Threads and determinism. Each pass is cut into work items whose boundaries depend on the
// problem only, never on the thread count, and every output element is owned by one item:
// forward by (n, g, tile of positions); backward data by (n, g, block of input channels), so
// col2im scatters into channels no other item touches; backward weight by (g, block of
// reduction columns), each summing over the whole batch in a fixed order. No atomics, no
// thread-dependent reduction: the same bits with 1 or 2 threads.
//
// Versions (measure with `python bench/run.py --filter resnet50`):
//   v1  implicit GEMM, 12x32 AVX-512 / 6x16 AVX2 micro-kernel, row-run gather.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm_tile.h"
#include "microkernel.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

// Output positions per work item, in panels: a multiple of NR large enough to amortise the
// packing, small enough to give two threads several items on late, small-spatial layers.
constexpr i64 kPanelsPerTile = 4;
// Reduction columns (dW columns) per backward-weight work item, in panels.
constexpr i64 kWgradPanels = 2;
// Positions reduced per backward-weight micro-kernel call.
constexpr i64 kWgradPositions = 256;

// A stretch of consecutive output positions on one output row (fixed od, oh). `dst` is where
// its first position lands in the destination tile's column space.
struct Run {
  i64 j0, len, od, oh, ow0, dst;
};

// Cuts output positions [p0, p0 + count) into runs. With panel_stride > 0 the destination is the
// micro-kernel's panel layout (runs also break at NR boundaries); with 0 it is a row-major tile.
i64 make_runs(const ConvGeometry& g, i64 p0, i64 count, i64 nr, i64 panel_stride, Run* runs) {
  const i64 OW = g.out[2], OH = g.out[1];
  i64 n = 0;
  for (i64 j = 0; j < count;) {
    const i64 p = p0 + j;
    const i64 ow = p % OW, row = p / OW;
    i64 len = std::min(OW - ow, count - j);
    if (panel_stride > 0) len = std::min(len, nr - j % nr);
    const i64 dst = panel_stride > 0 ? (j / nr) * panel_stride + j % nr : j;
    runs[n++] = {j, len, row / OH, row % OH, ow, dst};
    j += len;
  }
  return n;
}

enum class Dir { kGather, kScatter };

// kGather:  tile[r - r0][col] = x_col[r][position]   (zero where the window hangs into padding)
// kScatter: x[...] += tile[r - r0][col]              (col2im; contributions to padding vanish)
// `xg` points at the group's first input channel of one image.
template <Dir D, class T>
void transfer_columns(const ConvGeometry& g, std::conditional_t<D == Dir::kGather, const T*, T*> xg, i64 r0, i64 rows,
                      const Run* runs, i64 nruns, std::conditional_t<D == Dir::kGather, T*, const T*> tile,
                      i64 row_stride) {
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const i64 KD = g.kernel[0], KH = g.kernel[1], KW = g.kernel[2];
  const i64 kvol = KD * KH * KW, in_plane = ID * IH * IW;
  const i64 sd = g.stride[0], sh = g.stride[1], sw = g.stride[2];
  for (i64 r = r0; r < r0 + rows; ++r) {
    const i64 c = r / kvol, rem = r % kvol;
    const i64 kd = rem / (KH * KW), kh = (rem / KW) % KH, kw = rem % KW;
    const i64 off_d = kd * g.dilation[0] - g.pad_before[0];
    const i64 off_h = kh * g.dilation[1] - g.pad_before[1];
    const i64 off_w = kw * g.dilation[2] - g.pad_before[2];
    auto xc = xg + c * in_plane;
    auto trow = tile + (r - r0) * row_stride;
    for (i64 s = 0; s < nruns; ++s) {
      const Run& run = runs[s];
      auto t = trow + run.dst;
      const i64 id = run.od * sd + off_d, ih = run.oh * sh + off_h;
      if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
        if constexpr (D == Dir::kGather) std::fill(t, t + run.len, T(0));
        continue;
      }
      auto xrow = xc + (id * IH + ih) * IW;
      // Position t of the run reads input column iw0 + t*sw; keep the t with 0 <= iw < IW.
      const i64 iw0 = run.ow0 * sw + off_w;
      const i64 lo = std::min(run.len, iw0 >= 0 ? i64(0) : ceil_div(-iw0, sw));
      const i64 hi = std::max(lo, std::min(run.len, iw0 >= IW ? i64(0) : ceil_div(IW - iw0, sw)));
      if constexpr (D == Dir::kGather) {
        std::fill(t, t + lo, T(0));
        if (sw == 1) {
          std::memcpy(t + lo, xrow + iw0 + lo, sizeof(T) * (hi - lo));
        } else {
          for (i64 k = lo; k < hi; ++k) t[k] = xrow[iw0 + k * sw];
        }
        std::fill(t + hi, t + run.len, T(0));
      } else {
        for (i64 k = lo; k < hi; ++k) xrow[iw0 + k * sw] += t[k];
      }
    }
  }
}

// Forward tiles shrink (in whole panels) until both threads of a small problem have work; the
// tile size changes no output bit, since every output is one dot product of fixed order.
i64 forward_tile(i64 P, i64 nr, i64 outer_items) {
  i64 pt = std::min(kPanelsPerTile * nr, ceil_div(P, nr) * nr);
  const i64 want = 2 * get_num_threads();
  while (pt > nr && outer_items * ceil_div(P, pt) < want) pt -= nr;
  return pt;
}

}  // namespace

template <class T>
void conv_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  if (g.N == 0) return;
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 in_plane = g.in_plane();
  const i64 mblocks = ceil_div(Kg, MR);

  // Weights, packed once: [group][m-block][r][MR], rows past K/g zero.
  AlignedBuffer<T> wpack(G * mblocks * R * MR);
  parallel_for(G * mblocks, [&](i64 item, int) {
    const i64 gi = item / mblocks, mb = item % mblocks;
    T* dst = wpack.data() + item * R * MR;
    for (i64 i = 0; i < MR; ++i) {
      const i64 k = mb * MR + i;
      const T* src = w + (gi * Kg + k) * R;
      for (i64 r = 0; r < R; ++r) dst[r * MR + i] = k < Kg ? src[r] : T(0);
    }
  });

  const i64 KC = std::min(R, kReductionBlock);
  const i64 PT = forward_tile(P, NR, g.N * G);
  const i64 ptiles = ceil_div(P, PT);
  const i64 items = g.N * G * ptiles;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * NR, tile_panels = PT / NR;
  AlignedBuffer<T> bpack(slots * tile_panels * panel_stride);
  AlignedBuffer<T> cedge(slots * MR * NR);
  std::vector<Run> run_store(static_cast<size_t>(slots * PT));

  parallel_for(items, [&](i64 item, int t) {
    const i64 pt = item % ptiles, gi = (item / ptiles) % G, n = item / ptiles / G;
    const i64 p0 = pt * PT, count = std::min(PT, P - p0), npanels = ceil_div(count, NR);
    Run* runs = run_store.data() + t * PT;
    const i64 nruns = make_runs(g, p0, count, NR, panel_stride, runs);
    T* B = bpack.data() + t * tile_panels * panel_stride;
    T* cbuf = cedge.data() + t * MR * NR;
    const T* xg = x + (n * g.C + gi * Cg) * in_plane;
    T* yg = y + (n * g.K + gi * Kg) * P;
    const i64 tail = count - (npanels - 1) * NR;  // valid columns of the last panel
    for (i64 k0 = 0; k0 < R; k0 += KC) {
      const i64 kc = std::min(KC, R - k0);
      transfer_columns<Dir::kGather, T>(g, xg, k0, kc, runs, nruns, B, NR);
      if (tail < NR) {
        T* last = B + (npanels - 1) * panel_stride;
        for (i64 r = 0; r < kc; ++r) std::fill(last + r * NR + tail, last + (r + 1) * NR, T(0));
      }
      for (i64 mb = 0; mb < mblocks; ++mb) {
        const T* A = wpack.data() + ((gi * mblocks + mb) * R + k0) * MR;
        const i64 rows = std::min(MR, Kg - mb * MR);
        for (i64 q = 0; q < npanels; ++q) {
          const i64 cols = std::min(NR, count - q * NR);
          run_tile(mk, kc, A, B + q * panel_stride, yg + mb * MR * P + p0 + q * NR, P, rows, cols, k0 > 0, cbuf);
        }
      }
    }
    if (bias) {
      for (i64 k = 0; k < Kg; ++k) {
        const T b = bias[gi * Kg + k];
        T* row = yg + k * P + p0;
        for (i64 j = 0; j < count; ++j) row[j] += b;
      }
    }
  });
}

template <class T>
void conv_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  if (g.N == 0) return;
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 kvol = g.kernel_volume(), in_plane = g.in_plane();

  // Channel blocks of about 96 reduction rows; smaller when the batch alone gives too few items.
  // The rule depends on the problem only (the scatter order follows the blocking).
  i64 cb = std::clamp<i64>(ceil_div(96, kvol), 1, Cg);
  while (cb > 1 && g.N * G * ceil_div(Cg, cb) < 8) cb = ceil_div(cb, 2);
  const i64 cblocks = ceil_div(Cg, cb);
  const i64 mblocks_max = ceil_div(cb * kvol, MR);

  // W^T packed per channel block: [group][c-block][m-block][k][MR]; row m is reduction index
  // (block start + m) of the group's weights.
  AlignedBuffer<T> apack(G * cblocks * mblocks_max * Kg * MR);
  parallel_for(G * cblocks, [&](i64 item, int) {
    const i64 gi = item / cblocks, b = item % cblocks;
    const i64 rows = std::min(cb, Cg - b * cb) * kvol, rbase = b * cb * kvol;
    T* dst = apack.data() + item * mblocks_max * Kg * MR;
    for (i64 mb = 0; mb < mblocks_max; ++mb)
      for (i64 k = 0; k < Kg; ++k) {
        const T* src = w + (gi * Kg + k) * R + rbase;
        for (i64 i = 0; i < MR; ++i) {
          const i64 m = mb * MR + i;
          dst[(mb * Kg + k) * MR + i] = m < rows ? src[m] : T(0);
        }
      }
  });

  const i64 PT = kPanelsPerTile * NR, KC = std::min(Kg, kReductionBlock);
  const i64 items = g.N * G * cblocks;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * NR;
  AlignedBuffer<T> bpack(slots * kPanelsPerTile * panel_stride);
  AlignedBuffer<T> cols(slots * mblocks_max * MR * PT);
  std::vector<Run> run_store(static_cast<size_t>(slots * PT));

  parallel_for(items, [&](i64 item, int t) {
    const i64 b = item % cblocks, gi = (item / cblocks) % G, n = item / cblocks / G;
    const i64 nch = std::min(cb, Cg - b * cb), rows = nch * kvol, mblocks = ceil_div(rows, MR);
    T* dxg = dx + (n * g.C + gi * Cg) * in_plane;
    std::fill(dxg + b * cb * in_plane, dxg + (b * cb + nch) * in_plane, T(0));
    const T* dyg = dy + (n * g.K + gi * Kg) * P;
    const T* Ablock = apack.data() + (gi * cblocks + b) * mblocks_max * Kg * MR;
    T* B = bpack.data() + t * kPanelsPerTile * panel_stride;
    T* col = cols.data() + t * mblocks_max * MR * PT;
    Run* runs = run_store.data() + t * PT;
    for (i64 p0 = 0; p0 < P; p0 += PT) {
      const i64 count = std::min(PT, P - p0), npanels = ceil_div(count, NR);
      for (i64 k0 = 0; k0 < Kg; k0 += KC) {
        const i64 kc = std::min(KC, Kg - k0);
        for (i64 q = 0; q < npanels; ++q) {
          const i64 width = std::min(NR, count - q * NR);
          T* panel = B + q * panel_stride;
          for (i64 k = 0; k < kc; ++k) {
            const T* src = dyg + (k0 + k) * P + p0 + q * NR;
            std::copy(src, src + width, panel + k * NR);
            std::fill(panel + k * NR + width, panel + (k + 1) * NR, T(0));
          }
        }
        for (i64 mb = 0; mb < mblocks; ++mb) {
          const T* A = Ablock + (mb * Kg + k0) * MR;
          for (i64 q = 0; q < npanels; ++q)
            mk.run(kc, A, B + q * panel_stride, col + mb * MR * PT + q * NR, PT, k0 > 0);
        }
      }
      const i64 nruns = make_runs(g, p0, count, NR, 0, runs);
      transfer_columns<Dir::kScatter, T>(g, dxg, b * cb * kvol, rows, runs, nruns, col, PT);
    }
  });
}

template <class T>
void conv_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 in_plane = g.in_plane();
  if (g.N == 0) {
    std::fill(dw, dw + g.K * R, T(0));
    return;
  }
  const i64 RB = kWgradPanels * NR, rblocks = ceil_div(R, RB);
  const i64 PT = kWgradPositions, mblocks = ceil_div(Kg, MR);
  const i64 mgroups = wgrad_row_groups(mblocks, G * rblocks), mper = ceil_div(mblocks, mgroups);
  const i64 items = G * rblocks * mgroups;
  const int slots = scratch_slots(items);
  AlignedBuffer<T> apack(slots * mper * PT * MR);
  AlignedBuffer<T> tiles(slots * RB * PT);
  AlignedBuffer<T> bpack(slots * RB * PT);
  AlignedBuffer<T> acc(slots * mper * MR * RB);
  std::vector<Run> run_store(static_cast<size_t>(slots * PT));

  parallel_for(items, [&](i64 item, int t) {
    const i64 mg = item % mgroups, rb = (item / mgroups) % rblocks, gi = item / mgroups / rblocks;
    const i64 mb0 = mg * mper, mbn = std::min(mblocks, mb0 + mper) - mb0;  // this item's MR blocks
    const i64 r0 = rb * RB, rc = std::min(RB, R - r0), nq = ceil_div(rc, NR);
    T* A = apack.data() + t * mper * PT * MR;
    T* tile = tiles.data() + t * RB * PT;
    T* B = bpack.data() + t * RB * PT;
    T* C = acc.data() + t * mper * MR * RB;
    Run* runs = run_store.data() + t * PT;
    bool first = true;
    for (i64 n = 0; n < g.N; ++n) {
      const T* dyg = dy + (n * g.K + gi * Kg) * P;
      const T* xg = x + (n * g.C + gi * Cg) * in_plane;
      for (i64 p0 = 0; p0 < P; p0 += PT) {
        const i64 count = std::min(PT, P - p0);
        // A = dY^T: positions are the reduction, output channels the rows.
        for (i64 mb = 0; mb < mbn; ++mb)
          for (i64 i = 0; i < MR; ++i) {
            const i64 k = (mb0 + mb) * MR + i;
            T* dst = A + mb * PT * MR + i;
            if (k < Kg) {
              const T* src = dyg + k * P + p0;
              for (i64 p = 0; p < count; ++p) dst[p * MR] = src[p];
            } else {
              for (i64 p = 0; p < count; ++p) dst[p * MR] = T(0);
            }
          }
        // B = X_col^T: gather rows r0.. of X_col, then transpose into NR-wide panels.
        const i64 nruns = make_runs(g, p0, count, NR, 0, runs);
        transfer_columns<Dir::kGather, T>(g, xg, r0, rc, runs, nruns, tile, PT);
        for (i64 q = 0; q < nq; ++q)
          for (i64 jj = 0; jj < NR; ++jj) {
            const i64 r = q * NR + jj;
            T* dst = B + q * PT * NR + jj;
            if (r < rc) {
              const T* src = tile + r * PT;
              for (i64 p = 0; p < count; ++p) dst[p * NR] = src[p];
            } else {
              for (i64 p = 0; p < count; ++p) dst[p * NR] = T(0);
            }
          }
        for (i64 mb = 0; mb < mbn; ++mb)
          for (i64 q = 0; q < nq; ++q)
            mk.run(count, A + mb * PT * MR, B + q * PT * NR, C + mb * MR * RB + q * NR, RB, !first);
        first = false;
      }
    }
    for (i64 k = mb0 * MR; k < std::min(Kg, (mb0 + mbn) * MR); ++k) {
      const T* row = C + (k - mb0 * MR) * RB;
      std::copy(row, row + rc, dw + (gi * Kg + k) * R + r0);
    }
  });
}

template <class T>
void conv_backward_bias_channels_first(const ConvGeometry& g, const T* dy, T* db) {
  const i64 P = g.out_plane();
  // Accumulate in double whatever T is: a bias gradient sums N*P terms.
  parallel_for(g.K, [&](i64 k, int) {
    double s = 0;
    for (i64 n = 0; n < g.N; ++n) {
      const T* row = dy + (n * g.K + k) * P;
      for (i64 p = 0; p < P; ++p) s += row[p];
    }
    db[k] = static_cast<T>(s);
  });
}

#define CONVKERN_INSTANTIATE(T)                                                            \
  template void conv_forward_channels_first<T>(const ConvGeometry&, const T*, const T*, const T*, T*);  \
  template void conv_backward_data_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);      \
  template void conv_backward_weight_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);    \
  template void conv_backward_bias_channels_first<T>(const ConvGeometry&, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
