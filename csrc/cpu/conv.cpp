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
// Current: v14 (how it got here: docs/performance.md, "Kernel history"). Measured 2026-12-03 with
// `python bench/run.py --quick` on the 2-core AMD EPYC (Zen 5, AVX-512), 2 threads, median ms,
// PyTorch 2.13 oneDNN from the same run in brackets: resnet50.l3.1x1 forward 2.15 ms (1.94),
// 382 GFLOP/s, 76% of the FMA peak; resnet50.l2.3x3s2 forward 7.2 (5.1), 51% of peak; and
// with `--filter resnet50`: resnet50.conv1 backward weight 8.05 (6.60). Pointwise weight gradient
// (v14), 2026-12-04, 2-core Zen 4, median of repeated calls:
// resnet50.l1.1x1 NCHW 6.4-6.8 ms (PyTorch 6.6 in the benchmark run).
#include "conv.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm_tile.h"
#include "microkernel.h"
#include "pack.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

// Output positions per work item, in panels: long runs along input rows let the hardware
// prefetcher stream the gather (4 panels measured 2.4x slower than 16 on resnet50.l1.3x3 with
// K=12); the tile still shrinks to give both threads items on small-spatial layers.
constexpr i64 kPanelsPerTile = 16;
// Backward weight: dW columns per work item (in NR panels) and positions per step (the
// micro-kernel's reduction depth: a 128 x 32 B panel and the 128 x 12 A panels fit L1 together,
// as in the forward pass). Each item packs its dY rows once per step, so narrow column blocks
// repeat that packing.
// Backward data: reduction rows (channels x taps) per work item. Each item packs dY once per
// step for all its rows, so more rows amortise that pack (resnet50.l4.3x3, 1 thread: 96 rows
// 22.4 ms, 384 rows 19.7 ms; l3.3x3 15.9 -> 13.5) while the column block stays in L2.
constexpr i64 kDataGradRows = 384;
constexpr i64 kWgradPanels = 8;
constexpr i64 kWgradDepth = kReductionBlock;
// The inner-product form (short dW rows): columns per item in units of 4 x NR, positions per tile.
// Each item copies its dY rows once per tile; 32 columns x 1024 positions measured 33 ms on
// resnet50.l4.3x3, 128 x 512 25 ms, 256 x 256 26 ms.
constexpr i64 kWgradDotPanels = 8;
constexpr i64 kWgradPositions = 512;
// Where the outer-product form wins: many output channels per group (its transposing packs are
// amortised over the dW rows) and long reduction rows. 1 thread, CPU time, inner vs outer: K = 6
// (lenet5.conv1) 0.50 vs 0.58 ms; K = 16 (lenet5.conv2) 0.46 vs 0.68; l4.3x3 (K = 512, R = 4608)
// 12.0 vs 10.8. With few reduction columns the inner product wins whatever K (2 threads,
// interleaved, outer / inner time under AVX-512 and AVX2): resnet50.conv1 (R = 147) 1.47x and
// 1.38x, l1.1x1 (R = 64) 1.27x and 1.09x; against l3.1x1 (R = 1024) 0.90x and 1.11x, l2.3x3s2
// (R = 1152) 0.97x and 1.13x, l4.3x3 0.92x and 0.90x.
constexpr i64 kWgradOuterProductMinChannels = 32;
constexpr i64 kWgradOuterProductMinReduction = 512;

// The input of one convolution zero-padded on every side, with each W row split into
// `stride_w` phases (padded column w stored at phase w % s, index w / s). In this layout every
// kernel tap reads, for a run of consecutive output columns, one contiguous stretch — whatever
// the padding, stride or dilation — so gathers and scatters are plain copies with no bounds
// tests. Window coordinates start at 0 in the padded input: cell o*stride + k*dilation.
struct PaddedLayout {
  i64 Dp, Hp, S, Wq;
  i64 row;  // S * Wq: elements per padded (d, h) row
  i64 plane;  // Dp * Hp * row
  i64 tap_offset(const ConvGeometry& g, i64 tap) const {
    const i64 KH = g.kernel[1], KW = g.kernel[2];
    const i64 kd = tap / (KH * KW), kh = (tap / KW) % KH, wcol = (tap % KW) * g.dilation[2];
    return (kd * g.dilation[0] * Hp + kh * g.dilation[1]) * row + (wcol % S) * Wq + wcol / S;
  }
  i64 position_offset(const ConvGeometry& g, i64 od, i64 oh, i64 ow) const {
    return (od * g.stride[0] * Hp + oh * g.stride[1]) * row + ow;
  }
  i64 cell_offset(i64 dp, i64 hp, i64 wp) const { return (dp * Hp + hp) * row + (wp % S) * Wq + wp / S; }
};

PaddedLayout padded_layout(const ConvGeometry& g) {
  PaddedLayout L;
  L.Dp = g.in[0] + g.pad_before[0] + g.pad_after[0];
  L.Hp = g.in[1] + g.pad_before[1] + g.pad_after[1];
  L.S = g.stride[2];
  L.Wq = ceil_div(g.in[2] + g.pad_before[2] + g.pad_after[2], L.S);
  L.row = checked_mul(L.S, L.Wq, "padded input");
  L.plane = checked_mul(checked_mul(L.Dp, L.Hp, "padded input"), L.row, "padded input");
  return L;
}

std::vector<i64> tap_offsets(const ConvGeometry& g, const PaddedLayout& L) {
  std::vector<i64> off(static_cast<size_t>(g.kernel_volume()));
  for (i64 t = 0; t < g.kernel_volume(); ++t) off[t] = L.tap_offset(g, t);
  return off;
}

// d[j * ds] = s[j * ss] for j < n. The stride-2 split and merge (one side contiguous, the other
// 2 apart) get loops with a constant step, which the compiler turns into vector permutes.
template <class T>
inline void copy_strided(T* d, i64 ds, const T* s, i64 ss, i64 n) {
  if (ds == 1 && ss == 2) {
    for (i64 j = 0; j < n; ++j) d[j] = s[2 * j];
  } else if (ds == 2 && ss == 1) {
    for (i64 j = 0; j < n; ++j) d[2 * j] = s[j];
  } else {
    for (i64 j = 0; j < n; ++j) d[j * ds] = s[j * ss];
  }
}

// Copies `planes` input planes into the padded layout (or, with kUnpad, the interior back out).
enum class PadDir { kPad, kUnpad };

template <PadDir D, class T>
void convert_plane(const ConvGeometry& g, const PaddedLayout& L, const T* s, T* d) {
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2];
  if constexpr (D == PadDir::kPad) std::fill(d, d + L.plane, T(0));
  for (i64 id = 0; id < ID; ++id)
    for (i64 ih = 0; ih < IH; ++ih) {
      const i64 padded = L.cell_offset(id + g.pad_before[0], ih + g.pad_before[1], 0);
      const i64 plain = (id * IH + ih) * IW;
      if (L.S == 1) {
        T* to = D == PadDir::kPad ? d + padded + g.pad_before[2] : d + plain;
        const T* from = D == PadDir::kPad ? s + plain : s + padded + g.pad_before[2];
        copy_row(to, from, IW);
        continue;
      }
      // Padded column wp = iw + pad lives at phase wp % S, index wp / S: phase p holds the input
      // columns iw0 + S j, one strided stretch each (stride 2 as a compile-time constant, which
      // the compiler turns into vector permutes: the scalar loop was 15% of resnet50.l2.3x3s2's
      // forward).
      for (i64 p = 0; p < L.S; ++p) {
        const i64 iw0 = ((p - g.pad_before[2]) % L.S + L.S) % L.S;
        if (iw0 >= IW) continue;
        const i64 count = (IW - iw0 + L.S - 1) / L.S, at = padded + p * L.Wq + (iw0 + g.pad_before[2]) / L.S;
        if constexpr (D == PadDir::kPad)
          copy_strided(d + at, 1, s + plain + iw0, L.S, count);
        else
          copy_strided(d + plain + iw0, L.S, s + at, 1, count);
      }
    }
}

template <PadDir D, class T>
void convert_planes_serial(const ConvGeometry& g, const PaddedLayout& L, const T* src, T* dst, i64 planes) {
  const i64 src_plane = D == PadDir::kPad ? g.in_plane() : L.plane,
            dst_plane = D == PadDir::kPad ? L.plane : g.in_plane();
  for (i64 pl = 0; pl < planes; ++pl) convert_plane<D>(g, L, src + pl * src_plane, dst + pl * dst_plane);
}

template <PadDir D, class T>
void convert_planes(const ConvGeometry& g, const PaddedLayout& L, const T* src, T* dst, i64 planes) {
  const i64 src_plane = D == PadDir::kPad ? g.in_plane() : L.plane,
            dst_plane = D == PadDir::kPad ? L.plane : g.in_plane();
  parallel_for(planes, [&](i64 pl, int) { convert_plane<D>(g, L, src + pl * src_plane, dst + pl * dst_plane); });
}

// The input in the padded layout: x itself where that layout adds nothing (no padding, unit W
// stride: pointwise layers, LeNet's unpadded ones), else a padded copy made in `storage`.
template <class T>
const T* padded_input(const ConvGeometry& g, const PaddedLayout& L, const T* x, AlignedBuffer<T>& storage) {
  if (L.S == 1 && L.plane == g.in_plane()) return x;
  storage.resize(checked_mul(g.N * g.C, L.plane, "padded input"));
  convert_planes<PadDir::kPad>(g, L, x, storage.data(), g.N * g.C);
  return storage.data();
}

// A stretch of consecutive output positions on one output row (fixed od, oh): `src` is the
// padded-input offset its first position's window starts at, `dst` where it lands in the tile.
struct Run {
  i64 j0, len, src, dst;
};

// Cuts output positions [p0, p0 + count) of one image into runs. Position j lands in tile column
// col0 + j. With panel_stride > 0 the destination is the micro-kernel's panel layout (runs also
// break at NR boundaries); with 0 it is a row-major tile. src_base is added to every source
// offset (the image's place in a batch-wide padded buffer).
i64 make_runs(const ConvGeometry& g, const PaddedLayout& L, i64 p0, i64 count, i64 nr, i64 panel_stride, Run* runs,
              i64 col0 = 0, i64 src_base = 0) {
  const i64 OW = g.out[2], OH = g.out[1];
  i64 n = 0;
  for (i64 j = 0; j < count;) {
    const i64 p = p0 + j, c = col0 + j;
    const i64 ow = p % OW, row = p / OW;
    i64 len = std::min(OW - ow, count - j);
    if (panel_stride > 0) len = std::min(len, nr - c % nr);
    const i64 dst = panel_stride > 0 ? (c / nr) * panel_stride + c % nr : c;
    const i64 src = src_base + L.position_offset(g, row / OH, row % OH, ow);
    // Rows that continue each other in both layouts (e.g. 1x1 kernels without padding) merge.
    if (n > 0 && runs[n - 1].src + runs[n - 1].len == src && runs[n - 1].dst + runs[n - 1].len == dst &&
        (panel_stride == 0 || c % nr != 0))
      runs[n - 1].len += len;
    else
      runs[n++] = {c, len, src, dst};
    j += len;
  }
  return n;
}

// Runs are short (up to NR elements): with AVX-512, one masked load/store pair per 16 floats
// instead of a vectorised loop's prologue and scalar tail.
template <bool kAdd, class T>
inline void move_run(T* d, const T* s, i64 n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    for (; n >= 16; n -= 16, d += 16, s += 16)
      _mm512_storeu_ps(d, kAdd ? _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(s)) : _mm512_loadu_ps(s));
    if (n > 0) {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, s);
      _mm512_mask_storeu_ps(d, m, kAdd ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v) : v);
    }
    return;
  }
#endif
  for (i64 e = 0; e < n; ++e) d[e] = kAdd ? d[e] + s[e] : s[e];
}

// tile[r - r0][run] = X_col[r][run's positions], read from the padded input of one image's
// group (xpg: its first channel). Row r is channel r / kvol at kernel tap r % kvol.
template <class T>
void gather_columns(const PaddedLayout& L, const i64* tap_off, i64 kvol, const T* xpg, i64 r0, i64 rows,
                    const Run* runs, i64 nruns, T* tile, i64 row_stride) {
  for (i64 r = r0; r < r0 + rows; ++r) {
    const T* base = xpg + (r / kvol) * L.plane + tap_off[r % kvol];
    T* trow = tile + (r - r0) * row_stride;
    for (i64 s = 0; s < nruns; ++s) { move_run<false>(trow + runs[s].dst, base + runs[s].src, runs[s].len); }
  }
}

// col2im: the padded input gradient of one image's channel block (xpb: the block's first
// channel, whose reduction rows start at r0) += tile rows. Contributions to the padding are
// dropped when the interior is copied out. kw_taps > 1: rows come in groups of that many taps one
// cell apart along W (unit stride and dilation), whose runs overlap, shifted by one cell.
template <class T>
void scatter_columns(const PaddedLayout& L, const i64* tap_off, i64 kvol, i64 kw_taps, T* xpb, i64 r0, i64 rows,
                     const Run* runs, i64 nruns, const T* tile, i64 row_stride) {
#if defined(__AVX512F__)
  // Short runs (output rows of up to 16 - kw_taps + 1 cells): a group's runs are summed, each
  // shifted into place by a masked load, in one register, and added to the gradient once. Added
  // run by run, each run's masked load waited on the previous tap's masked store to the cells it
  // overlaps, which the CPU does not forward: lenet5.conv2 NCHW backward data spent half its time
  // there.
  if constexpr (sizeof(T) == 4) {
    i64 longest = 0;
    for (i64 s = 0; s < nruns; ++s) longest = std::max(longest, runs[s].len);
    if (kw_taps > 1 && longest + kw_taps - 1 <= 16 && r0 % kw_taps == 0 && rows % kw_taps == 0) {
      for (i64 m = 0; m < rows; m += kw_taps) {
        const i64 r = r0 + m;
        T* base = xpb + (r / kvol - r0 / kvol) * L.plane + tap_off[r % kvol];
        const T* group = tile + m * row_stride;
        for (i64 s = 0; s < nruns; ++s) {
          const __mmask16 run_mask = static_cast<__mmask16>((1u << runs[s].len) - 1);
          const __mmask16 span = static_cast<__mmask16>((1u << (runs[s].len + kw_taps - 1)) - 1);
          const T* trow = group + runs[s].dst;
          __m512 sum = _mm512_maskz_loadu_ps(run_mask, trow);
          for (i64 kw = 1; kw < kw_taps; ++kw)
            sum = _mm512_add_ps(
                sum, _mm512_maskz_loadu_ps(static_cast<__mmask16>(run_mask << kw), trow + kw * row_stride - kw));
          T* d = base + runs[s].src;
          _mm512_mask_storeu_ps(d, span, _mm512_add_ps(_mm512_maskz_loadu_ps(span, d), sum));
        }
      }
      return;
    }
  }
#elif defined(__AVX2__)
  // The same under AVX2: a run and its shifted copies span two vectors, masked by lane compares.
  if constexpr (sizeof(T) == 4) {
    i64 longest = 0;
    for (i64 s = 0; s < nruns; ++s) longest = std::max(longest, runs[s].len);
    if (kw_taps > 1 && longest + kw_taps - 1 <= 16 && r0 % kw_taps == 0 && rows % kw_taps == 0) {
      const __m256i lanes_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      const __m256i lanes_hi = _mm256_add_epi32(lanes_lo, _mm256_set1_epi32(8));
      // Lanes in [from, to).
      auto between = [](__m256i lanes, i64 from, i64 to) {
        return _mm256_and_si256(_mm256_cmpgt_epi32(lanes, _mm256_set1_epi32(static_cast<int>(from - 1))),
                                _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(to)), lanes));
      };
      for (i64 m = 0; m < rows; m += kw_taps) {
        const i64 r = r0 + m;
        T* base = xpb + (r / kvol - r0 / kvol) * L.plane + tap_off[r % kvol];
        const T* group = tile + m * row_stride;
        for (i64 s = 0; s < nruns; ++s) {
          const i64 len = runs[s].len;
          const T* trow = group + runs[s].dst;
          __m256 lo = _mm256_maskload_ps(trow, between(lanes_lo, 0, len));
          __m256 hi = _mm256_maskload_ps(trow + 8, between(lanes_hi, 0, len));
          for (i64 kw = 1; kw < kw_taps; ++kw) {
            const T* shifted = trow + kw * row_stride - kw;
            lo = _mm256_add_ps(lo, _mm256_maskload_ps(shifted, between(lanes_lo, kw, kw + len)));
            hi = _mm256_add_ps(hi, _mm256_maskload_ps(shifted + 8, between(lanes_hi, kw, kw + len)));
          }
          T* d = base + runs[s].src;
          // Masked loads but plain stores (pack.h: AMD's masked stores are microcoded).
          const i64 span = len + kw_taps - 1;
          const __m256i span_lo = between(lanes_lo, 0, span);
          const __m256i span_hi = between(lanes_hi, 0, span);
          store_first_lanes(d, _mm256_add_ps(_mm256_maskload_ps(d, span_lo), lo), span);
          if (span > 8) store_first_lanes(d + 8, _mm256_add_ps(_mm256_maskload_ps(d + 8, span_hi), hi), span - 8);
        }
      }
      return;
    }
  }
#endif
  (void)kw_taps;
  for (i64 m = 0; m < rows; ++m) {
    const i64 r = r0 + m;
    T* base = xpb + (r / kvol - r0 / kvol) * L.plane + tap_off[r % kvol];
    const T* trow = tile + m * row_stride;
    for (i64 s = 0; s < nruns; ++s) { move_run<true>(base + runs[s].src, trow + runs[s].dst, runs[s].len); }
  }
}

}  // namespace

template <class T>
void conv_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  if (!conv_reach_is_compact(g)) return conv_forward_direct(g, false, x, w, bias, y);
  if (g.N == 0) return;
  const MicroKernel<T>& mk = micro_kernel_for_rows<T>(g.K_per_group());
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 mblocks = ceil_div(Kg, MR);

  // Weights, packed once: [group][m-block][r][MR], rows past K/g zero.
  AlignedBuffer<T> wpack(G * mblocks * R * MR);
  parallel_for(G * mblocks, [&](i64 item, int) {
    const i64 gi = item / mblocks, mb = item % mblocks;
    T* dst = wpack.data() + item * R * MR;
    // The MR weight rows read as sequential streams and transposed in registers (element-wise,
    // the pack was 10% of resnet50.l4.3x3's forward).
    const T* src[32];
    const i64 rows = std::min(MR, Kg - mb * MR);
    for (i64 i = 0; i < rows; ++i) src[i] = w + (gi * Kg + mb * MR + i) * R;
    transpose_rows(src, rows, R, dst, MR, MR);
  });

  const PaddedLayout L = padded_layout(g);
  AlignedBuffer<T> xpad_storage;
  const T* xpad = padded_input(g, L, x, xpad_storage);
  const std::vector<i64> tap_off = tap_offsets(g, L);
  const i64 kvol = g.kernel_volume();

  // Tiles run over the positions of the whole batch, so late layers with few positions per
  // image (7 x 7) still fill whole panels; each tile accumulates in a private, fully padded C
  // block (no edge tiles) that is copied out, with the bias, at the end.
  const i64 total = g.N * P;
  const i64 KC = std::min(R, kReductionBlock);
  // Tiles and output-channel groups: position_tiling (gemm_tile.h); the packed weights dominate
  // the memory traffic of late layers, whose few tiles split the output channels.
  const PositionTiling tiling = position_tiling(total, NR, kPanelsPerTile, mblocks, G);
  const i64 PT = tiling.tile, ptiles = tiling.tiles, kgroups = tiling.kgroups, kper = tiling.kper;
  const i64 items = tiling.items;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * NR, tile_panels = PT / NR;
  AlignedBuffer<T> bpack(slots * tile_panels * panel_stride);
  AlignedBuffer<T> ctiles(slots * kper * MR * PT);
  std::vector<Run> run_store(static_cast<size_t>(slots * (PT + g.N)));

  parallel_for(items, [&](i64 item, int t) {
    const i64 kg = item % kgroups, pt = (item / kgroups) % ptiles, gi = item / kgroups / ptiles;
    const i64 mb0 = kg * kper, mbn = std::min(mblocks, mb0 + kper) - mb0;
    const i64 q0 = pt * PT, count = std::min(PT, total - q0), npanels = ceil_div(count, NR);
    Run* runs = run_store.data() + t * (PT + g.N);
    i64 nruns = 0;
    for (i64 q = q0; q < q0 + count;) {
      const i64 n = q / P, p0 = q % P, len = std::min(P - p0, q0 + count - q);
      nruns += make_runs(g, L, p0, len, NR, panel_stride, runs + nruns, q - q0, n * g.C * L.plane);
      q += len;
    }
    T* B = bpack.data() + t * tile_panels * panel_stride;
    T* C = ctiles.data() + t * kper * MR * PT;
    const T* xpg = xpad + gi * Cg * L.plane;
    const i64 tail = count - (npanels - 1) * NR;  // valid columns of the last panel
    for (i64 k0 = 0; k0 < R; k0 += KC) {
      const i64 kc = std::min(KC, R - k0);
      gather_columns(L, tap_off.data(), kvol, xpg, k0, kc, runs, nruns, B, NR);
      if (tail < NR) {
        T* last = B + (npanels - 1) * panel_stride;
        for (i64 r = 0; r < kc; ++r) std::fill(last + r * NR + tail, last + (r + 1) * NR, T(0));
      }
      // Panel-major: one B panel stays in L1 while every output-channel block streams past it.
      for (i64 q = 0; q < npanels; ++q)
        for (i64 mb = 0; mb < mbn; ++mb)
          mk.run(kc, wpack.data() + ((gi * mblocks + mb0 + mb) * R + k0) * MR, B + q * panel_stride,
                 C + mb * MR * PT + q * NR, PT, k0 > 0);
    }
    for (i64 q = q0; q < q0 + count;) {
      const i64 n = q / P, p0 = q % P, len = std::min(P - p0, q0 + count - q);
      for (i64 k = mb0 * MR; k < std::min(Kg, (mb0 + mbn) * MR); ++k) {
        const T b = bias ? bias[gi * Kg + k] : T(0);
        const T* src = C + (k - mb0 * MR) * PT + (q - q0);
        T* dst = y + (n * g.K + gi * Kg + k) * P + p0;
        for (i64 j = 0; j < len; ++j) dst[j] = src[j] + b;
      }
      q += len;
    }
  });
}

// A 1x1 convolution with unit stride and no padding: every pass is a plain GEMM over positions.
bool conv_is_pointwise(const ConvGeometry& g) {
  for (int a = 0; a < kSpatial; ++a)
    if (g.kernel[a] != 1 || g.stride[a] != 1 || g.pad_before[a] != 0 || g.pad_after[a] != 0) return false;
  return true;
}

ConvGeometry pointwise_transpose(const ConvGeometry& g) {
  ConvGeometry t = g;
  std::swap(t.C, t.K);
  return t;
}

template <class T>
void transpose_pointwise_weights(const ConvGeometry& g, const T* w, T* wt) {
  // Per group, [Kg][Cg] -> [Cg][Kg] in 16 x 16 register-transposed blocks, blocks in parallel.
  const i64 Kg = g.K_per_group(), Cg = g.C_per_group();
  const i64 kblocks = ceil_div(Kg, 16), cblocks = ceil_div(Cg, 16);
  parallel_for(g.groups * kblocks, [&](i64 item, int) {
    const i64 gi = item / kblocks, k0 = (item % kblocks) * 16, nk = std::min<i64>(16, Kg - k0);
    const T* rows[16];
    for (i64 cb = 0; cb < cblocks; ++cb) {
      const i64 c0 = cb * 16, nc = std::min<i64>(16, Cg - c0);
      for (i64 j = 0; j < nk; ++j) rows[j] = w + (gi * Kg + k0 + j) * Cg + c0;
      transpose_rows(rows, nk, nc, wt + (gi * Cg + c0) * Kg + k0, Kg, nk);
    }
  });
}

template <class T>
void conv_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  if (!conv_reach_is_compact(g)) return conv_backward_data_direct(g, false, dy, w, dx);
  if (g.N == 0) return;
  if (conv_is_pointwise(g)) {
    // dX = W^T dY per group is the forward pass of the 1x1 convolution with the weights
    // transposed (K and C swapped): written straight into dx, with no column buffer, scatter or
    // padded copy (resnet50.l1.1x1, 1 thread, CPU time: ~11 -> 9.2 ms).
    AlignedBuffer<T> wt(g.C * g.K_per_group());
    transpose_pointwise_weights(g, w, wt.data());
    conv_forward_channels_first(pointwise_transpose(g), dy, wt.data(), static_cast<const T*>(nullptr), dx);
    return;
  }
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 kvol = g.kernel_volume(), in_plane = g.in_plane();
  const PaddedLayout L = padded_layout(g);
  const std::vector<i64> tap_off = tap_offsets(g, L);

  // Small output planes (late layers: 7 x 7) take several whole images per item, so that the
  // panels fill and each dY pack serves more columns; an item still owns every input-gradient
  // cell it scatters into (whole images, one channel block).
  const i64 PT = kPanelsPerTile * NR, KC = std::min(Kg, kReductionBlock);
  const i64 images = std::clamp<i64>(PT / P, 1, g.N), igroups = ceil_div(g.N, images);
  // Channel blocks of about 96 reduction rows; smaller when the batch alone gives too few items.
  // The rule depends on the problem only (the scatter order follows the blocking).
  i64 cb = std::clamp<i64>(ceil_div(kDataGradRows, kvol), 1, Cg);
  while (cb > 1 && igroups * G * ceil_div(Cg, cb) < 8) cb = ceil_div(cb, 2);
  const i64 cblocks = ceil_div(Cg, cb);
  const i64 mblocks_max = ceil_div(cb * kvol, MR);
  const i64 kw_taps = g.stride[2] == 1 && g.dilation[2] == 1 ? g.kernel[2] : 1;  // see scatter_columns

  const i64 items = igroups * G * cblocks;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * NR;
  AlignedBuffer<T> bpack(slots * kPanelsPerTile * panel_stride);
  AlignedBuffer<T> apack(slots * mblocks_max * KC * MR);
  AlignedBuffer<T> cols(slots * mblocks_max * MR * PT);
  // Per slot: the item's images x channels of padded input gradient, [image][channel][plane].
  AlignedBuffer<T> dx_padded(checked_mul(slots * images * cb, L.plane, "padded input gradient"));
  std::vector<Run> run_store(static_cast<size_t>(slots * (PT + images)));

  parallel_for(items, [&](i64 item, int t) {
    const i64 b = item % cblocks, gi = (item / cblocks) % G, ig = item / cblocks / G;
    const i64 n0 = ig * images, nimg = std::min(images, g.N - n0);
    const i64 nch = std::min(cb, Cg - b * cb), rows = nch * kvol, mblocks = ceil_div(rows, MR);
    // The block's input gradient accumulates in padded planes owned by this item.
    T* dxp = dx_padded.data() + t * images * cb * L.plane;
    std::fill(dxp, dxp + nimg * cb * L.plane, T(0));
    T* Ablock = apack.data() + t * mblocks_max * KC * MR;
    T* B = bpack.data() + t * kPanelsPerTile * panel_stride;
    T* col = cols.data() + t * mblocks_max * MR * PT;
    Run* runs = run_store.data() + t * (PT + images);
    const i64 total = nimg * P;  // the item's positions, image after image
    for (i64 q0 = 0; q0 < total; q0 += PT) {
      const i64 count = std::min(PT, total - q0), npanels = ceil_div(count, NR);
      for (i64 k0 = 0; k0 < Kg; k0 += KC) {
        const i64 kc = std::min(KC, Kg - k0);
        for (i64 q = 0; q < npanels; ++q) {
          T* panel = B + q * panel_stride;
          const i64 width = std::min(NR, count - q * NR);
          for (i64 k = 0; k < kc; ++k) {
            // A panel's columns may straddle two images: copy segment by segment.
            for (i64 j = 0; j < width;) {
              const i64 pos = q0 + q * NR + j, n = n0 + pos / P, p = pos % P, len = std::min(width - j, P - p);
              const T* src = dy + (n * g.K + gi * Kg + k0 + k) * P + p;
              std::copy(src, src + len, panel + k * NR + j);
              j += len;
            }
            std::fill(panel + k * NR + width, panel + (k + 1) * NR, T(0));
          }
        }
        // W^T rows of the block for these kc output channels, [m-block][k][MR], packed here
        // rather than once per call: the whole layer's pack (9 MiB on resnet50.l4.3x3) went out
        // to memory and back, its stores 11% of the pass; this one stays in L2.
        for (i64 k = 0; k < kc; ++k) {
          const T* src = w + (gi * Kg + k0 + k) * R + b * cb * kvol;
          for (i64 mb = 0; mb < mblocks; ++mb) {
            T* d = Ablock + (mb * KC + k) * MR;
            const i64 valid = std::min(MR, rows - mb * MR);
            copy_row(d, src + mb * MR, valid);
            for (i64 i = valid; i < MR; ++i) d[i] = T(0);
          }
        }
        for (i64 mb = 0; mb < mblocks; ++mb) {
          const T* A = Ablock + mb * KC * MR;
          for (i64 q = 0; q < npanels; ++q)
            mk.run(kc, A, B + q * panel_stride, col + mb * MR * PT + q * NR, PT, k0 > 0);
        }
      }
      i64 nruns = 0;
      for (i64 q = q0; q < q0 + count;) {
        const i64 local = q / P, p0 = q % P, len = std::min(P - p0, q0 + count - q);
        nruns += make_runs(g, L, p0, len, NR, 0, runs + nruns, q - q0, local * cb * L.plane);
        q += len;
      }
      scatter_columns(L, tap_off.data(), kvol, kw_taps, dxp, b * cb * kvol, rows, runs, nruns, col, PT);
    }
    for (i64 i = 0; i < nimg; ++i)
      convert_planes_serial<PadDir::kUnpad>(g, L, dxp + i * cb * L.plane,
                                            dx + ((n0 + i) * g.C + gi * Cg + b * cb) * in_plane, nch);
  });
}

namespace {

template <class T>
void backward_weight_inner_product(const ConvGeometry& g, const T* dy, const PaddedLayout& L, const T* xpad,
                                   const std::vector<i64>& tap_off, T* dw) {
  // Both operands, dY[k][p] and X_col[r][p], run along the reduction (positions): the
  // inner-product kernel reads dY rows in place and X_col rows from a gathered row-major tile,
  // with no transposed packing.
  const DotKernel<T>& dk = dot_kernel<T>();
  const i64 MR = dk.mr, NR = dk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 kvol = g.kernel_volume();
  const i64 RB = kWgradDotPanels * 4 * NR, rblocks = ceil_div(R, RB);
  const i64 PT = kWgradPositions, mblocks = ceil_div(Kg, MR);
  const i64 mgroups = row_groups_for_threads(mblocks, G * rblocks), mper = ceil_div(mblocks, mgroups);
  const i64 items = G * rblocks * mgroups;
  const int slots = scratch_slots(items);
  const i64 total = g.N * P;  // positions of the whole batch: a tile may span several images
  // Pointwise layers (the input is its own X_col) read both operands' rows where they are, image
  // by image: copying them into tiles took a third of resnet50.l1.1x1's NCHW weight gradient.
  // Rows past dW's edges read zeros.
  const bool in_place = conv_is_pointwise(g) && L.S == 1 && L.plane == P && P > 0;
  AlignedBuffer<T> tiles(in_place ? 0 : slots * RB * PT);
  AlignedBuffer<T> arows_buf(in_place ? 0 : slots * mper * MR * PT);
  AlignedBuffer<T> acc(slots * mper * MR * RB);
  std::vector<Run> run_store(static_cast<size_t>(in_place ? 0 : slots * PT));
  AlignedBuffer<T> zeros(in_place ? PT : 0);
  std::fill(zeros.data(), zeros.data() + (in_place ? PT : 0), T(0));

  parallel_for(items, [&](i64 item, int t) {
    const i64 mg = item % mgroups, rb = (item / mgroups) % rblocks, gi = item / mgroups / rblocks;
    const i64 mb0 = mg * mper, mbn = std::min(mblocks, mb0 + mper) - mb0;  // this item's MR blocks
    const i64 r0 = rb * RB, rc = std::min(RB, R - r0), nq = ceil_div(rc, NR);
    const i64 k_first = mb0 * MR, k_rows = mbn * MR;
    T* C = acc.data() + t * mper * MR * RB;
    const T* arows[16];
    const T* brows[16];
    if (in_place) {
      // Image by image, each image's positions cut into equal tiles of at most PT.
      const i64 tile_len = ceil_div(P, ceil_div(P, PT));
      for (i64 n = 0; n < g.N; ++n)
        for (i64 p0 = 0; p0 < P; p0 += tile_len) {
          const i64 len = std::min(tile_len, P - p0);
          const T* dyn = dy + (n * g.K + gi * Kg) * P + p0;
          const T* xn = xpad + (n * g.C + gi * Cg) * P + p0;
          for (i64 mb = 0; mb < mbn; ++mb) {
            for (i64 i = 0; i < MR; ++i) {
              const i64 k = k_first + mb * MR + i;
              arows[i] = k < Kg ? dyn + k * P : zeros.data();
            }
            for (i64 q = 0; q < nq; ++q) {
              for (i64 j = 0; j < NR; ++j) {
                const i64 r = r0 + q * NR + j;
                brows[j] = r < R ? xn + r * P : zeros.data();
              }
              dk.run(len, arows, brows, C + mb * MR * RB + q * NR, RB, n > 0 || p0 > 0);
            }
          }
        }
    } else {
      T* tile = tiles.data() + t * RB * PT;
      T* A = arows_buf.data() + t * mper * MR * PT;
      Run* runs = run_store.data() + t * PT;
      std::fill(tile + rc * PT, tile + nq * NR * PT, T(0));  // columns past R read zeros
      for (i64 q0 = 0; q0 < total; q0 += PT) {
        const i64 count = std::min(PT, total - q0);
        // Gather X_col rows and copy dY rows image segment by image segment into contiguous rows.
        for (i64 q = q0; q < q0 + count;) {
          const i64 n = q / P, p0 = q % P, len = std::min(P - p0, q0 + count - q), col = q - q0;
          const T* xpg = xpad + (n * g.C + gi * Cg) * L.plane;
          const i64 nruns = make_runs(g, L, p0, len, NR, 0, runs);
          gather_columns(L, tap_off.data(), kvol, xpg, r0, rc, runs, nruns, tile + col, PT);
          for (i64 i = 0; i < k_rows; ++i) {
            const i64 k = k_first + i;
            T* dst = A + i * PT + col;
            if (k < Kg)
              std::copy(dy + (n * g.K + gi * Kg + k) * P + p0, dy + (n * g.K + gi * Kg + k) * P + p0 + len, dst);
            else
              std::fill(dst, dst + len, T(0));
          }
          q += len;
        }
        for (i64 mb = 0; mb < mbn; ++mb) {
          for (i64 i = 0; i < MR; ++i) arows[i] = A + (mb * MR + i) * PT;
          for (i64 q = 0; q < nq; ++q) {
            for (i64 j = 0; j < NR; ++j) brows[j] = tile + (q * NR + j) * PT;
            dk.run(count, arows, brows, C + mb * MR * RB + q * NR, RB, q0 > 0);
          }
        }
      }
    }
    for (i64 k = k_first; k < std::min(Kg, k_first + k_rows); ++k) {
      const T* row = C + (k - k_first) * RB;
      std::copy(row, row + rc, dw + (gi * Kg + k) * R + r0);
    }
  });
}

template <class T>
void backward_weight_outer_product(const ConvGeometry& g, const T* dy, const PaddedLayout& L, const T* xpad,
                                   const std::vector<i64>& tap_off, T* dw) {
  // dW[Kg x R] = sum over the batch's positions p of dY[:, p] (x) X_col[:, p]: the micro-kernel's
  // outer-product form with positions as its reduction. Per step of kWgradDepth positions, dY
  // columns are packed as A panels ([p][MR]) and X_col columns gathered straight into B panels
  // ([p][NR], a transposing gather); each item's dW block accumulates in a private C across the
  // steps, in position order.
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 kvol = g.kernel_volume();
  const i64 RB = kWgradPanels * NR, rblocks = ceil_div(R, RB);
  const i64 PD = kWgradDepth, mblocks = ceil_div(Kg, MR);
  const i64 mgroups = row_groups_for_threads(mblocks, G * rblocks), mper = ceil_div(mblocks, mgroups);
  const i64 items = G * rblocks * mgroups;
  const int slots = scratch_slots(items);
  const i64 bpanel = PD * NR, apanel = PD * MR;
  AlignedBuffer<T> bpack(slots * kWgradPanels * bpanel);
  AlignedBuffer<T> apack(slots * mper * apanel);
  AlignedBuffer<T> acc(slots * mper * MR * RB);
  std::vector<Run> run_store(static_cast<size_t>(slots * (PD + 1)));
  const i64 total = g.N * P;  // positions of the whole batch: a step may span several images

  parallel_for(items, [&](i64 item, int t) {
    const i64 mg = item % mgroups, rb = (item / mgroups) % rblocks, gi = item / mgroups / rblocks;
    const i64 mb0 = mg * mper, mbn = std::min(mblocks, mb0 + mper) - mb0;  // this item's MR blocks
    const i64 r0 = rb * RB, rc = std::min(RB, R - r0), nq = ceil_div(rc, NR);
    const i64 k_first = mb0 * MR;
    T* B = bpack.data() + t * kWgradPanels * bpanel;
    T* A = apack.data() + t * mper * apanel;
    T* C = acc.data() + t * mper * MR * RB;
    Run* runs = run_store.data() + t * (PD + 1);
    for (i64 q0 = 0; q0 < total; q0 += PD) {
      const i64 count = std::min(PD, total - q0);
      if (rc < nq * NR) {  // columns past R read zeros
        T* last = B + (nq - 1) * bpanel;
        for (i64 p = 0; p < count; ++p) std::fill(last + p * NR + (rc - (nq - 1) * NR), last + (p + 1) * NR, T(0));
      }
      for (i64 q = q0; q < q0 + count;) {
        const i64 n = q / P, p0 = q % P, len = std::min(P - p0, q0 + count - q), col = q - q0;
        const T* xpg = xpad + (n * g.C + gi * Cg) * L.plane;
        const i64 nruns = make_runs(g, L, p0, len, NR, 0, runs, col);
        // X_col rows, up to 16 at a time, never across a panel (NR is 8, 16 or 32).
        const i64 step = std::min<i64>(16, NR);
        for (i64 j0 = 0; j0 < rc; j0 += step) {
          const i64 nrows = std::min(step, rc - j0), width = step;
          const T* base[16];
          const T* rows[16];
          for (i64 j = 0; j < nrows; ++j) {
            const i64 r = r0 + j0 + j;
            base[j] = xpg + (r / kvol) * L.plane + tap_off[r % kvol];
          }
          T* dst = B + (j0 / NR) * bpanel + j0 % NR;
          for (i64 s = 0; s < nruns; ++s) {
            for (i64 j = 0; j < nrows; ++j) rows[j] = base[j] + runs[s].src;
            transpose_rows(rows, nrows, runs[s].len, dst + runs[s].dst * NR, NR, width);
          }
        }
        for (i64 mb = 0; mb < mbn; ++mb) {
          const T* src[16];
          const i64 k0 = k_first + mb * MR, valid = std::clamp<i64>(Kg - k0, 0, MR);
          for (i64 i = 0; i < valid; ++i) src[i] = dy + (n * g.K + gi * Kg + k0 + i) * P + p0;
          transpose_rows(src, valid, len, A + mb * apanel + col * MR, MR, MR);
        }
        q += len;
      }
      // One B panel stays in L1 while this item's A panels stream past it.
      for (i64 q = 0; q < nq; ++q)
        for (i64 mb = 0; mb < mbn; ++mb)
          mk.run(count, A + mb * apanel, B + q * bpanel, C + mb * MR * RB + q * NR, RB, q0 > 0);
    }
    for (i64 k = k_first; k < std::min(Kg, k_first + mbn * MR); ++k) {
      const T* row = C + (k - k_first) * RB;
      std::copy(row, row + rc, dw + (gi * Kg + k) * R + r0);
    }
  });
}

}  // namespace

template <class T>
void conv_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  // Many dW rows (output channels) and long reduction rows amortise the transposing packs of the
  // outer-product form; otherwise (LeNet-sized layers, pointwise layers on few channels, the RGB
  // first layer) reading both operands in place, in the inner-product form, is faster. The
  // choice depends on the problem only (deterministic).
  if (g.N == 0) {
    std::fill(dw, dw + g.K * g.reduction(), T(0));
    return;
  }
  if (!conv_reach_is_compact(g)) return conv_backward_weight_direct(g, false, dy, x, dw);
  const PaddedLayout L = padded_layout(g);
  AlignedBuffer<T> xpad_storage;
  const T* xpad = padded_input(g, L, x, xpad_storage);
  const std::vector<i64> tap_off = tap_offsets(g, L);
  if (g.K_per_group() >= kWgradOuterProductMinChannels && g.reduction() >= kWgradOuterProductMinReduction) {
    backward_weight_outer_product(g, dy, L, xpad, tap_off, dw);
  } else {
    backward_weight_inner_product(g, dy, L, xpad, tap_off, dw);
  }
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

// ============================================================== direct kernels (hostile geometry)

bool conv_reach_is_compact(const ConvGeometry& g) {
  // Per axis, a bound on the longest extent any fast kernel lays out: the padded input, along W
  // rounded up to whole stride phases and to whole vectors of output columns (up to 16 past the
  // last one).
  double plane = 1;
  for (int a = 0; a < kSpatial; ++a) {
    i128 extent = i128(g.in[a]) + g.pad_before[a] + g.pad_after[a];
    if (a == kSpatial - 1) extent += i128(17) * g.stride[a] + effective_kernel128(g.kernel[a], g.dilation[a]);
    plane *= static_cast<double>(extent);
  }
  // What the call touches anyway: its input and every (position, tap) pair of its output. The
  // margin keeps small padded layers (a 1x1 input under a 7x7 kernel) on the fast kernels.
  const double touched = static_cast<double>(g.in_plane()) + static_cast<double>(g.out_plane()) * g.kernel_volume();
  const double planes = std::max(1.0, static_cast<double>(g.N) * static_cast<double>(std::max(g.C, g.K)));
  return plane <= 8.0 * touched + 65536.0 && plane * planes < 0x1p62;
}

namespace {

// The taps of one axis that land in the input for one output index: taps [first, first + count),
// tap `first` reading input cell `cell`, each next tap `dilation` cells further.
struct AxisTaps {
  i64 first, count, cell;
};

// For every output index of axis a. Window origins o*stride - pad_before reach far outside int64's
// comfort with hostile arguments, so they are formed in 128 bits; what is kept lies in the input.
std::vector<AxisTaps> axis_taps(const ConvGeometry& g, int a) {
  std::vector<AxisTaps> taps(static_cast<size_t>(g.out[a]));
  const i128 in = g.in[a], k = g.kernel[a], d = g.dilation[a];
  for (i64 o = 0; o < g.out[a]; ++o) {
    const i128 origin = i128(o) * g.stride[a] - g.pad_before[a];  // cell of tap 0
    const i128 lo = origin >= 0 ? 0 : (-origin + d - 1) / d;
    const i128 hi = origin > in - 1 ? -1 : std::min<i128>(k - 1, (in - 1 - origin) / d);
    taps[o] = lo <= hi
                  ? AxisTaps{static_cast<i64>(lo), static_cast<i64>(hi - lo + 1), static_cast<i64>(origin + lo * d)}
                  : AxisTaps{0, 0, 0};
  }
  return taps;
}

// Offsets of (image, channel, spatial cell) in either activation layout.
struct ActivationLayout {
  bool channels_last;
  i64 channels, plane;
  i64 at(i64 n, i64 c, i64 cell) const {
    return channels_last ? (n * plane + cell) * channels + c : (n * channels + c) * plane + cell;
  }
};

// Calls f(output cell, tap, input cell) for every position of the output and every tap of its
// window that lands in the input, in position-major, row-major tap order. Padding cells are zeros
// that take part in the products, as in PyTorch (and the padded fast kernels): they matter only
// where the other factor is Inf or NaN (0 * Inf is NaN), so at positions where
// wants_padding(output cell) holds, pad(output cell, tap) is also called for each tap that lands in
// padding.
struct DirectWindows {
  const ConvGeometry& g;
  std::vector<AxisTaps> axis[kSpatial];
  explicit DirectWindows(const ConvGeometry& geometry) : g(geometry) {
    for (int a = 0; a < kSpatial; ++a) axis[a] = axis_taps(g, a);
  }
  template <class F>
  void for_each(F&& f) const {
    for_each(f, [](i64) { return false; }, [](i64, i64) {});
  }
  template <class F, class Wants, class Pad>
  void for_each(F&& f, Wants&& wants_padding, Pad&& pad) const {
    const i64 KD = g.kernel[0], KH = g.kernel[1], KW = g.kernel[2], IH = g.in[1], IW = g.in[2];
    auto inside = [](const AxisTaps& a, i64 r) { return r >= a.first && r < a.first + a.count; };
    i64 out_cell = 0;
    for (const AxisTaps& d : axis[0])
      for (const AxisTaps& h : axis[1])
        for (const AxisTaps& w : axis[2]) {
          for (i64 rd = 0; rd < d.count; ++rd)
            for (i64 rh = 0; rh < h.count; ++rh) {
              const i64 row = ((d.cell + rd * g.dilation[0]) * IH + h.cell + rh * g.dilation[1]) * IW;
              const i64 tap_row = ((d.first + rd) * KH + h.first + rh) * KW;
              for (i64 rw = 0; rw < w.count; ++rw)
                f(out_cell, tap_row + w.first + rw, row + w.cell + rw * g.dilation[2]);
            }
          if (wants_padding(out_cell))
            for (i64 kd = 0; kd < KD; ++kd)
              for (i64 kh = 0; kh < KH; ++kh)
                for (i64 kw = 0; kw < KW; ++kw)
                  if (!(inside(d, kd) && inside(h, kh) && inside(w, kw))) pad(out_cell, (kd * KH + kh) * KW + kw);
          ++out_cell;
        }
  }
};

}  // namespace

template <class T>
void conv_forward_direct(const ConvGeometry& g, bool channels_last, const T* x, const T* w, const T* bias, T* y) {
  const DirectWindows windows(g);
  const ActivationLayout xl{channels_last, g.C, g.in_plane()}, yl{channels_last, g.K, g.out_plane()};
  const i64 Cg = g.C_per_group(), Kg = g.K_per_group(), kvol = g.kernel_volume();
  parallel_for(g.N * g.K, [&](i64 item, int) {
    const i64 n = item / g.K, k = item % g.K, c0 = k / Kg * Cg;
    const T* wk = w + k * Cg * kvol;
    const T init = bias ? bias[k] : T(0);
    for (i64 p = 0; p < g.out_plane(); ++p) y[yl.at(n, k, p)] = init;
    // Channel outer: each pass walks the windows once; the sum per output is over channels, then
    // taps in row-major order.
    for (i64 c = 0; c < Cg; ++c) {
      const T* wkc = wk + c * kvol;
      const bool finite_weights = all_finite(wkc, kvol);
      windows.for_each([&](i64 p, i64 tap, i64 cell) { y[yl.at(n, k, p)] += wkc[tap] * x[xl.at(n, c0 + c, cell)]; },
                       [&](i64) { return !finite_weights; },
                       [&](i64 p, i64 tap) { y[yl.at(n, k, p)] += wkc[tap] * T(0); });
    }
  });
}

template <class T>
void conv_backward_data_direct(const ConvGeometry& g, bool channels_last, const T* dy, const T* w, T* dx) {
  const DirectWindows windows(g);
  const ActivationLayout xl{channels_last, g.C, g.in_plane()}, yl{channels_last, g.K, g.out_plane()};
  const i64 Cg = g.C_per_group(), Kg = g.K_per_group(), kvol = g.kernel_volume();
  // Items own input-gradient channels: no two write the same cell.
  parallel_for(g.N * g.C, [&](i64 item, int) {
    const i64 n = item / g.C, c = item % g.C, k0 = c / Cg * Kg, ci = c % Cg;
    for (i64 cell = 0; cell < g.in_plane(); ++cell) dx[xl.at(n, c, cell)] = T(0);
    for (i64 k = k0; k < k0 + Kg; ++k) {
      const T* wk = w + (k * Cg + ci) * kvol;
      windows.for_each([&](i64 p, i64 tap, i64 cell) { dx[xl.at(n, c, cell)] += dy[yl.at(n, k, p)] * wk[tap]; });
    }
  });
}

template <class T>
void conv_backward_weight_direct(const ConvGeometry& g, bool channels_last, const T* dy, const T* x, T* dw) {
  const DirectWindows windows(g);
  const ActivationLayout xl{channels_last, g.C, g.in_plane()}, yl{channels_last, g.K, g.out_plane()};
  const i64 Cg = g.C_per_group(), Kg = g.K_per_group(), kvol = g.kernel_volume();
  parallel_for(g.K * Cg, [&](i64 item, int) {
    const i64 k = item / Cg, c = k / Kg * Cg + item % Cg;
    T* dwk = dw + item * kvol;
    std::fill(dwk, dwk + kvol, T(0));
    for (i64 n = 0; n < g.N; ++n)
      windows.for_each([&](i64 p, i64 tap, i64 cell) { dwk[tap] += dy[yl.at(n, k, p)] * x[xl.at(n, c, cell)]; },
                       [&](i64 p) { return !std::isfinite(dy[yl.at(n, k, p)]); },
                       [&](i64 p, i64 tap) { dwk[tap] += dy[yl.at(n, k, p)] * T(0); });
  });
}

#define CONVKERN_INSTANTIATE(T)                                                                        \
  template void conv_forward_direct<T>(const ConvGeometry&, bool, const T*, const T*, const T*, T*);   \
  template void transpose_pointwise_weights<T>(const ConvGeometry&, const T*, T*);                     \
  template void conv_backward_data_direct<T>(const ConvGeometry&, bool, const T*, const T*, T*);       \
  template void conv_backward_weight_direct<T>(const ConvGeometry&, bool, const T*, const T*, T*);     \
  template void conv_forward_channels_first<T>(const ConvGeometry&, const T*, const T*, const T*, T*); \
  template void conv_backward_data_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);     \
  template void conv_backward_weight_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);   \
  template void conv_backward_bias_channels_first<T>(const ConvGeometry&, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
