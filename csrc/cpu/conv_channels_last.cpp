// conv_channels_last.cpp — CPU convolution for channels-last activations (NWC, NHWC, NDHWC).
//
// Algorithm. The same three GEMMs as conv.cpp, transposed to suit the layout: with channels
// innermost, one output position is a row of K contiguous values, so positions become the
// micro-kernel's rows (MR) and channels its columns (NR):
//     Y[P x K/g]     = X_col[P x R] * W^T[R x K/g]        R ordered (tap, c): a tap reads
//     dX_col[P x R]  = dY[P x K/g] * W[K/g x R]           C/g contiguous input values
//     dW[K/g x R]    = sum_n dY^T * X_col
// Every gather and scatter therefore moves runs of contiguous channels; these kernels transpose no
// activation. Pointwise layers need no gather at all: the micro-kernel reads their activations'
// rows in place (strided entries, microkernel.h). They serve pointwise layers and strided
// forwards. Two more forms read their activations' runs in place with no packing: the forward by
// kernel rows and the backward data by stride phases (forward_by_kernel_rows and
// backward_data_by_kernel_rows, below, say which layers). Float32 3x3 stride-1 layers run the
// (channels-last) Winograd kernel of conv_winograd.cpp; the dispatcher
// (kernel_table.cpp) runs every other channels-last layer through the channels-first passes on
// transposed copies (channels_last_runs_channels_first, below, says which and why).
//
// Threads and determinism as in conv.cpp: forward items are (n, g, tile of positions); backward
// data items are (n, g, block of input channels), so each item's col2im writes channels no other
// item touches; backward weight items are (g, block of reduction columns) summing the whole batch
// in a fixed order. The same bits with any thread count.
//
// Current: v20 (how it got here: docs/performance.md, "Kernel history"). Measured at v12, 2026-12-03, with
// `python bench/run.py --quick --layout both` on the 2-core AMD EPYC (Zen 5, AVX-512), 2 threads,
// median ms, PyTorch 2.13 oneDNN channels-last from the same run in brackets: resnet50.conv1 NHWC
// forward 4.87 ms (4.26), backward weight 7.36 (6.90); resnet50.l2.3x3s2 NHWC forward 4.69
// (3.87), backward data 5.39 (4.07); resnet50.l1.1x1 NHWC forward 2.18 (1.95), backward weight
// 3.46 (3.91); audio.conv1d NWC forward 32.8 (65.3), backward data 25.2 (69.8).
#include <algorithm>
#include <atomic>
#include <numeric>
#include <vector>

#include "conv.h"
#include "gemm_tile.h"
#include "microkernel.h"
#include "pack.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

constexpr i64 kPositionPanels = 8;  // backward-data tile: 8 x MR positions
constexpr i64 kForwardPanels = 32;  // forward tile: up to 32 x MR positions of the whole batch
// Backward weight: positions per step (the micro-kernel's depth: a 128 x 32 B panel and a
// 128 x 12 A panel fit L1 together) and dW columns per item, in NR panels (each item packs its
// dY rows once per step, so more columns per item repack less: 2 panels measured 3x slower than
// 8 on resnet50.l1.3x3).
constexpr i64 kWgradPositions = 128;
constexpr i64 kWgradPanels = 8;
constexpr i64 kWgradMaxBlocks = 64;  // partial sums of the backward weight by kernel rows

// Where the window of one output position starts in the (unpadded) input.
struct Origin {
  i64 d, h, w;
  i64 image;  // element offset of the position's image in the batch
};

// Positions q0.. count over the whole batch (q = n * P + p).
void window_origins(const ConvGeometry& g, i64 q0, i64 count, Origin* out) {
  const i64 OW = g.out[2], OH = g.out[1], P = g.out_plane(), in_cells = g.in_plane() * g.C;
  for (i64 j = 0; j < count; ++j) {
    const i64 p = (q0 + j) % P, ow = p % OW, row = p / OW;
    out[j] = {(row / OH) * g.stride[0] - g.pad_before[0], (row % OH) * g.stride[1] - g.pad_before[1],
              ow * g.stride[2] - g.pad_before[2], (q0 + j) / P * in_cells};
  }
}

// Each kernel tap's offset from a window's origin along each axis, dilation applied: computed
// once per call, so that locating a tap costs no integer division (v1 divided five times per
// run of channels, which cost more than the copies on layers with few channels: 20x PyTorch's
// time on lenet5.conv2's backward weight).
struct TapTable {
  std::vector<i64> d, h, w;
};

TapTable tap_table(const ConvGeometry& g) {
  TapTable t;
  for (i64 kd = 0; kd < g.kernel[0]; ++kd)
    for (i64 kh = 0; kh < g.kernel[1]; ++kh)
      for (i64 kw = 0; kw < g.kernel[2]; ++kw) {
        t.d.push_back(kd * g.dilation[0]);
        t.h.push_back(kh * g.dilation[1]);
        t.w.push_back(kw * g.dilation[2]);
      }
  return t;
}

// Element offset of the input cell that kernel tap `tap` of a window reads (its channel 0), or
// -1 when the tap falls into the padding.
inline i64 tap_offset(const ConvGeometry& g, const TapTable& t, const Origin& o, i64 tap) {
  const i64 id = o.d + t.d[tap], ih = o.h + t.h[tap], iw = o.w + t.w[tap];
  if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) return -1;
  return ((id * g.in[1] + ih) * g.in[2] + iw) * g.C;
}

// Calls dst(column, len, src) for the runs of contiguous channels, tap by tap, that make up
// X_col[position][r0, r0 + rc) (src is nullptr for a tap in the padding). xg points at the
// group's first channel of one image.
template <class T, class Dst>
void gather_row(const ConvGeometry& g, const TapTable& taps, const T* xg, const Origin& o, i64 r0, i64 rc, Dst&& dst) {
  const i64 Cg = g.C_per_group();
  i64 tap = r0 / Cg, c = r0 % Cg;
  for (i64 r = r0; r < r0 + rc; ++tap, c = 0) {
    const i64 len = std::min(Cg - c, r0 + rc - r);
    const i64 off = tap_offset(g, taps, o, tap);
    dst(r - r0, len, off < 0 ? nullptr : xg + off + c);
    r += len;
  }
}

// A run of positions between the layouts, 16 x 16 blocks transposed in registers (pack.h):
// dst[c * plane + p] = src[p * C + c] (kToPlanes) or src[c * plane + p] -> dst[p * C + c], for
// p < positions and c < C; `plane` is the distance between channels' planes.
// kStream (kToPlanes only): whole aligned vectors stored non-temporally (transpose_rows), fenced.
template <bool kToPlanes, class T, bool kStream = false>
void transpose_positions(const T* src, T* dst, i64 positions, i64 C, i64 plane) {
  const T* rows[16];
  if constexpr (kToPlanes) {  // rows: positions (contiguous channels) -> rows: channels
    for (i64 pb = 0; pb < positions; pb += 16)
      for (i64 cb = 0; cb < C; cb += 16) {
        const i64 np = std::min<i64>(16, positions - pb), nc = std::min<i64>(16, C - cb);
        for (i64 j = 0; j < np; ++j) rows[j] = src + (pb + j) * C + cb;
        transpose_rows<T, kStream>(rows, np, nc, dst + cb * plane + pb, plane, np);
      }
    if constexpr (kStream) stream_fence();
  } else {  // rows: channels (contiguous positions) -> rows: positions
    // Channel blocks outside: 16 planes read front to back, which the prefetchers follow (with
    // position blocks outside, every step read 64 bytes from each of C planes, and the loads
    // waited on memory: 14 % of resnet50.l2.3x3s2's NCHW forward under AVX2 on a Zen 4).
    for (i64 cb = 0; cb < C; cb += 16)
      for (i64 pb = 0; pb < positions; pb += 16) {
        const i64 np = std::min<i64>(16, positions - pb), nc = std::min<i64>(16, C - cb);
        for (i64 j = 0; j < nc; ++j) rows[j] = src + (cb + j) * plane + pb;
        transpose_rows(rows, nc, np, dst + pb * C + cb, C, nc);
      }
  }
}

// dst[n][c][p] = src[n][p][c] (to_first) or the reverse, for N images of P positions and C
// channels, blocks of positions in parallel.
template <bool kToFirst, class T>
void transpose_layout(const T* src, T* dst, i64 N, i64 P, i64 C) {
  constexpr i64 kBlock = 256;
  const i64 blocks = ceil_div(P, kBlock);
  parallel_for(N * blocks, [&](i64 item, int) {
    const i64 n = item / blocks, p0 = (item % blocks) * kBlock, pn = std::min(kBlock, P - p0);
    const T* s = src + n * P * C;
    T* d = dst + n * P * C;
    if constexpr (kToFirst)
      transpose_positions<true>(s + p0 * C, d + p0, pn, C, P);
    else
      transpose_positions<false>(s + p0, d + p0 * C, pn, C, P);
  });
}

}  // namespace

// Which layers run through the channels-first kernels, their activations transposed on the way in
// and out (one pass over each, 16 x 16 blocks in registers):
// - a few input channels per group (a network's first layer: RGB or grey): channel runs of 1 to 8
//   values starve the positions-as-rows GEMM (resnet50.conv1 NHWC backward weight took 90 ms
//   against 21 channels-first);
// - any layer with more than one tap: its windows gather (tap, channel) runs position by position,
//   where the channels-first kernels read whole rows; with 9 or more multiply-adds per activation
//   the transposes cost a few percent (resnet50.l2.3x3s2 NHWC backward data 14.4 -> ~9.5 ms,
//   video.conv3d forward 69 -> ~45).
// Pointwise (1x1) layers stay here: they are a plain GEMM over contiguous channels, whose few
// multiply-adds per activation would not pay for the transposes. So does a strided forward, which
// the channels-first forward serves no better (resnet50.l2.3x3s2: 7.1 ms here, 11.4 through it),
// and the forwards that run by kernel rows.
constexpr i64 kChannelsFirstMaxChannels = 8;
constexpr i64 kStreamedOutputBytes = i64{8} << 20;
constexpr i64 kSerialPartialSums = i64{1} << 18;
constexpr i64 kKernelRowsDepth = 256;

bool channels_last_runs_channels_first(const ConvGeometry& g, ConvPass pass) {
  if (pass == ConvPass::kForward && forward_by_kernel_rows(g)) return false;
  if (g.C_per_group() <= kChannelsFirstMaxChannels) return true;
  const bool unit_stride = g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1;
  return g.kernel_volume() > 1 && (pass != ConvPass::kForward || unit_stride);
}

// A strided channels-first forward with many input channels whose channels-last forward runs the
// packing GEMM (its rows do not fit the kernel-rows tiles: AVX2's 6-row tiles on 28 or 14
// outputs): that GEMM on channels-last copies of the activations outran the im2col GEMM of the
// channels-first pass, transposes included (2-core Xeon, AVX2, builds alternating:
// resnet50.l2.3x3s2 NCHW forward 10.4-10.8 -> 9.4-9.6 ms; 256 channels at 28 -> 14: 9.9-10.1 ->
// 9.4-9.6). Where the kernel-rows forward serves the layer, it runs on the channels-first
// activations instead, transposing in cache (channels_first_forward_runs_channels_last).
bool channels_first_strided_forward_runs_channels_last(const ConvGeometry& g) {
  const bool strided = g.stride[0] > 1 || g.stride[1] > 1 || g.stride[2] > 1;
  return strided && g.C_per_group() > kChannelsFirstMaxChannels && g.kernel_volume() > 1 &&
         !forward_by_kernel_rows(g) && !channels_last_runs_channels_first(g, ConvPass::kForward);
}

// Forward by kernel rows. With one group and undilated columns, the taps of one kernel row
// (kd, kh) read kW x C contiguous input values per position, and the next position's run starts
// stride x C values further: the positions' runs are the rows of A, read in place
// (run_transposed_a, lda = stride * C), and the kernel row's weights [kW*C][K] a packed B. One
// GEMM per kernel row, accumulated in y. The input is copied once, zero-padded and widened to
// whole tiles of MR positions, so that no read needs a bounds check. Tiles run along one output
// row, so a row of OW positions computes ceil(OW / MR) * MR: micro_kernel_for_row_tiles picks the
// kernel that pads it least (12 or 14 rows under AVX-512, or 10 or 14 for 16 outputs or fewer).
// - Few input channels (a network's first layers): it replaces the transposes around the
//   channels-first pass (resnet50.conv1 NHWC, 2 threads: 12.4 -> 9.3 ms under AVX-512, 16.8 -> 9.5
//   under AVX2; the 26 MB output transpose had made NHWC 1.5x the NCHW time).
// - Unit stride, any channel count, rows padded by at most an eighth: it replaces the same
//   transposes (audio.conv1d NWC forward 35.1 -> 24.7 ms under AVX-512, 54.0 -> 39.9 under AVX2;
//   5x5 on 64 channels at 28 x 28: 1.37x and 1.14x; 3x3 in double at 56 x 56: 1.52x and 1.22x).
// - Strided, many channels: only where the tiles fit the rows exactly. It reads the input in place
//   where the general kernel packs it, but every padded row position is a full micro-kernel row of
//   work: resnet50.l2.3x3s2 (28 outputs a row) 1.13x the general kernel under AVX-512 with 14-row
//   tiles, 0.83x with 12-row ones (36 computed per 28); under AVX2 (6-row tiles, 30 per 28) 0.94x.
// Layers with fewer output channels than the micro-kernel's panel width NR would leave part of
// every n-panel idle and keep their route. Under AVX-512, where float's panels are 32 wide, layers
// with at most 16 outputs take one-vector kernels (micro_kernel_for_row_tiles), 10 rows tall for
// LeNet's rows of 10 (lenet5.conv2 NHWC forward, 2-core Xeon: 0.22 ms through the transposes,
// 0.12 here); under AVX2 16 is a full panel (0.36 -> 0.22). The choice is made on float's kernels,
// for both precisions.
bool forward_by_kernel_rows(const ConvGeometry& g) {
  const MicroKernel<float>& mk = micro_kernel_for_row_tiles<float>(g.out[2], g.K);
  if (g.groups != 1 || g.dilation[2] != 1 || g.K < mk.nr) return false;
  if (g.C <= kChannelsFirstMaxChannels) return true;
  const i64 padded = ceil_div(g.out[2], i64{mk.mr}) * mk.mr;
  const bool unit_stride = g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1;
  return unit_stride ? padded * 8 <= g.out[2] * 9 : padded == g.out[2];
}

// A few input channels and at most 16 output channels (LeNet's second layer: 6 -> 16 at 14 x 14),
// where the channels-first forward spends more on gathering its im2col panels, rows of 10
// positions, than on the GEMM (2-core Xeon, lenet5.conv2 NCHW forward 0.18 -> 0.13-0.14 ms under
// AVX-512, 0.32 -> 0.21 under AVX2), or any strided layer the kernel-rows forward serves, whose
// output rows, a quarter of the input's, are cheap to transpose: resnet50.conv1 NCHW forward
// 7.8-8.0 -> 6.4-6.5 ms under AVX-512, 11.5 -> 9.8-10.0 under AVX2 (2-core Xeon); with many
// channels, where AVX-512's 14-row tiles fit the rows, in place of the im2col GEMM: 2-core Zen 4,
// resnet50.l2.3x3s2 NCHW 11.5 -> 10.8-10.9 ms, 256 channels at 28 -> 14 12.2 -> 10.8. At unit
// stride the transposes outweigh the gain (3 -> 64 channels, 3 x 3 at 224 x 224: 8.7-9.8 ->
// 9.9-10.6 ms, 13-15 -> 17.6-19).
bool channels_first_forward_runs_channels_last(const ConvGeometry& g) {
  const bool strided = g.stride[0] > 1 || g.stride[1] > 1 || g.stride[2] > 1;
  return ((g.C <= kChannelsFirstMaxChannels && g.K <= 16) || strided) && forward_by_kernel_rows(g);
}

namespace {

// N images of [in0][in1][in2][C] copied into zero-padded [Dp][Hp][Wp][C] ones, cell (d, h, w) at
// (d + lo[0], h + lo[1], w + lo[2]), followed by `tail` zeros. The kernel-row passes read these
// copies with no bounds checks. PaddedCopy sizes the buffer; row(prow) fills padded row prow
// (n, dp, hp), so that callers can fill rows inside their own parallel loops.
template <class T>
struct PaddedCopy {
  const T* src;
  const i64 *in, *lo;
  i64 C, Dp, Hp, Wp;
  bool src_channels_first;  // src is (N, C, D, H, W): its channels are interleaved on the way
  T* data;
  PaddedCopy(CachedBuffer<T>& storage, const T* src_, i64 N, const i64* in_, i64 C_, const i64* lo_, i64 Dp_, i64 Hp_,
             i64 Wp_, i64 tail = 0, bool src_channels_first_ = false)
      : src(src_), in(in_), lo(lo_), C(C_), Dp(Dp_), Hp(Hp_), Wp(Wp_), src_channels_first(src_channels_first_) {
    const i64 cells = checked_mul(N * Dp * Hp, Wp * C, "padded activation");
    data = storage.reserve(cells + tail);
    std::fill(data + cells, data + cells + tail, T(0));
  }
  void row(i64 prow) const {
    const i64 n = prow / (Dp * Hp), d = (prow / Hp) % Dp - lo[0], h = prow % Hp - lo[1];
    T* dst = data + prow * Wp * C;
    if (d < 0 || d >= in[0] || h < 0 || h >= in[1]) {
      std::fill(dst, dst + Wp * C, T(0));
      return;
    }
    const i64 left = lo[2] * C, inner = in[2] * C;
    std::fill(dst, dst + left, T(0));
    if (src_channels_first) {
      const i64 plane = in[0] * in[1] * in[2];
      const T* from = src + n * C * plane + (d * in[1] + h) * in[2];
      for (i64 w = 0; w < in[2]; ++w)
        for (i64 c = 0; c < C; ++c) dst[left + w * C + c] = from[c * plane + w];
    } else {
      const T* from = src + ((n * in[0] + d) * in[1] + h) * inner;
      std::copy(from, from + inner, dst + left);
    }
    std::fill(dst + left + inner, dst + Wp * C, T(0));
  }
};

// The whole copy, rows in parallel.
template <class T>
T* pad_channels_last(CachedBuffer<T>& storage, const T* src, i64 N, const i64* in, i64 C, const i64* lo, i64 Dp, i64 Hp,
                     i64 Wp, bool src_channels_first = false) {
  const PaddedCopy<T> copy(storage, src, N, in, C, lo, Dp, Hp, Wp, 0, src_channels_first);
  parallel_for(N * Dp * Hp, [&](i64 prow, int) { copy.row(prow); });
  return copy.data;
}

// One reduction chunk of one output row: `tiles` tiles of MR positions, tile t's A rows from
// A + t * a_tile (lda apart, runs as in run_transposed_a). The first `direct` tiles land in
// out + t * MR * ldo (rows ldo apart); the others accumulate in buf (rows NR apart, zeroed by the
// caller), for copy_buffered_tiles.
template <class T>
inline void row_tiles(const MicroKernel<T>& mk, i64 tiles, i64 direct, i64 kc, const T* A, i64 a_tile, i64 lda, i64 run,
                      i64 run_step, const T* B, T* out, i64 ldo, bool accumulate, T* buf) {
  const i64 MR = mk.mr, NR = mk.nr;
  for (i64 tile = 0; tile < tiles; ++tile) {
    if (tile < direct)
      mk.run_transposed_a(kc, A + tile * a_tile, lda, run, run_step, B, NR, out + tile * MR * ldo, ldo, accumulate);
    else
      mk.run_transposed_a(kc, A + tile * a_tile, lda, run, run_step, B, NR, buf + (tile - direct) * MR * NR, NR, 1);
  }
}

template <class T>
inline void copy_buffered_tiles(const T* buf, i64 first, i64 count, i64 cols, i64 NR, T* out, i64 ldo) {
  for (i64 i = first; i < count; ++i) std::copy(buf + (i - first) * NR, buf + (i - first) * NR + cols, out + i * ldo);
}

// Items are output rows (n, od, oh); per n-panel of weights, kernel row and reduction chunk, the
// B chunk stays in L1 while the row's tiles stream past it. Tiles past the row's end or the last
// columns accumulate in a row buffer, copied out at the end. Each output is one fixed-order sum:
// the same bits with any thread count.
template <class T>
void forward_kernel_rows(const ConvGeometry& g, bool channels_first, const T* x, const T* w, const T* bias, T* y) {
  const MicroKernel<T>& mk = micro_kernel_for_row_tiles<T>(g.out[2], g.K);
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 C = g.C, K = g.K, kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2], sw = g.stride[2];
  const i64 L = kW * C, tap_rows = kD * kH, nblocks = ceil_div(K, NR);
  // One micro-kernel call sums several kernel rows (runs of L values, an input row apart) up to
  // kKernelRowsDepth values, so that its C tile is loaded and stored once for all of them (a call
  // per kernel row, 21 values deep on resnet50.conv1, ran the kernel at 60% of its speed). Rows
  // longer than that are cut into kReductionBlock chunks of one run.
  const bool whole_rows = L <= kKernelRowsDepth;
  const i64 rows_per_call = whole_rows ? kKernelRowsDepth / L : 1, KC = whole_rows ? L : kReductionBlock;
  const i64 tiles = ceil_div(OW, MR), full_tiles = OW / MR;
  const i64 Dp = g.in[0] + g.pad_before[0] + g.pad_after[0], Hp = g.in[1] + g.pad_before[1] + g.pad_after[1];
  const i64 Wp = std::max(g.in[2] + g.pad_before[2] + g.pad_after[2], (tiles * MR - 1) * sw + kW);
  CachedBuffer<T> xpad_storage;
  const T* xpad = pad_channels_last(xpad_storage, x, g.N, g.in, C, g.pad_before, Dp, Hp, Wp, channels_first);
  // B per n-panel and kernel row: [n-panel][kernel row][kw * C + c][NR], columns past K zero, so
  // that consecutive kernel rows are one contiguous panel.
  AlignedBuffer<T> wpack(tap_rows * nblocks * L * NR);
  parallel_for(tap_rows * nblocks, [&](i64 item, int) {
    const i64 nb = item / tap_rows, tr = item % tap_rows, kd = tr / kH, kh = tr % kH;
    T* dst = wpack.data() + item * L * NR;
    for (i64 j = 0; j < L; ++j)
      for (i64 jj = 0; jj < NR; ++jj) {
        const i64 k = nb * NR + jj, kw = j / C, c = j % C;
        dst[j * NR + jj] = k < K ? w[(((k * C + c) * kD + kd) * kH + kh) * kW + kw] : T(0);
      }
  });
  const i64 rows_out = g.N * OD * OH;
  const int slots = scratch_slots(rows_out);
  const i64 buffered = K % NR == 0 ? tiles - full_tiles : tiles;  // most tiles per row not written into y
  AlignedBuffer<T> row_buffers(slots * buffered * MR * NR);
  AlignedBuffer<T> channels_last_rows(channels_first ? slots * OW * K : 0);
  const i64 out_plane = g.out_plane();
  // A channels-first output larger than the caches goes to memory without its lines being read
  // first (resnet50.conv1, 26 MB).
  const bool stream_output = channels_first && g.N * K * out_plane * i64(sizeof(T)) >= kStreamedOutputBytes;
  parallel_for(rows_out, [&](i64 row, int t) {
    const i64 n = row / (OD * OH), od = (row / OH) % OD, oh = row % OH;
    T* yrow = channels_first ? channels_last_rows.data() + t * OW * K : y + row * OW * K;
    T* buf = row_buffers.data() + t * buffered * MR * NR;
    for (i64 nb = 0; nb < nblocks; ++nb) {
      const i64 cols = std::min(NR, K - nb * NR);
      const i64 direct = cols == NR ? full_tiles : 0;  // tiles written straight into y
      std::fill(buf, buf + (tiles - direct) * MR * NR, T(0));
      bool first = true;
      const i64 run_step = g.dilation[1] * Wp * C;  // from one kernel row's input run to the next's
      for (i64 kd = 0; kd < kD; ++kd)
        for (i64 kh0 = 0; kh0 < kH; kh0 += rows_per_call) {
          const i64 rows = std::min(rows_per_call, kH - kh0);
          const T* xrow = xpad + ((n * Dp + od * g.stride[0] + kd * g.dilation[0]) * Hp + oh * g.stride[1] +
                                  kh0 * g.dilation[1]) *
                                     Wp * C;
          const T* Brows = wpack.data() + (nb * tap_rows + kd * kH + kh0) * L * NR;
          for (i64 j0 = 0; j0 < L; j0 += KC) {
            const i64 kc = whole_rows ? rows * L : std::min(KC, L - j0), run = whole_rows ? L : kc;
            row_tiles(mk, tiles, direct, kc, xrow + j0, MR * sw * C, sw * C, run, run_step, Brows + j0 * NR,
                      yrow + nb * NR, K, !first, buf);
            first = false;
          }
        }
      copy_buffered_tiles(buf, direct * MR, OW, cols, NR, yrow + nb * NR, K);
    }
    if (bias)
      for (i64 ow = 0; ow < OW; ++ow)
        for (i64 k = 0; k < K; ++k) yrow[ow * K + k] += bias[k];
    if (channels_first) {  // the row, still in cache, into its K planes
      T* to = y + n * K * out_plane + (od * OH + oh) * OW;
      if (stream_output)
        transpose_positions<true, T, true>(yrow, to, OW, K, out_plane);
      else
        transpose_positions<true>(yrow, to, OW, K, out_plane);
    }
  });
}

// The positions of one input axis that a stride-s phase holds. Input cell i (padded: i + pad) is
// q * s + phase; it receives the gradient of output q - t through kernel tap phase + t * s, for
// t < taps. Its cells are q in [first, end).
struct AxisPhase {
  i64 taps, first, end;
};

AxisPhase axis_phase(i64 size, i64 kernel, i64 stride, i64 pad, i64 phase) {
  const i64 taps = phase < kernel ? ceil_div(kernel - phase, stride) : 0;
  const i64 first = pad > phase ? ceil_div(pad - phase, stride) : 0;
  const i64 end = size + pad > phase ? ceil_div(size + pad - phase, stride) : 0;
  return {taps, first, std::max(first, end)};
}

// Positions per W phase (the widest: phase 0 with no padding).
i64 phase_width(const ConvGeometry& g) { return ceil_div(g.in[2], g.stride[2]); }

// Backward data by stride phases, the forward by kernel rows of the transposed layer. The input
// cells of one phase along every axis (d, h, w = q * s + phase - pad) each receive the gradient
// of a contiguous stretch of outputs, q - taps + 1 .. q, through the phase's taps in reverse: for
// a run of MR consecutive q of one row, the rows of A are those stretches of grad_output, read in
// place (lda = K, runs of taps x K), and the cells written are s x C apart. Stride 1 is one
// phase, the transposed convolution itself. grad_output is copied once, zero-padded so that no
// stretch leaves it. Items are grad_input rows (n, d, h), each written by one item in a fixed
// order: the same bits with any thread count.
template <class T>
void backward_data_by_phases(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  const MicroKernel<T>& mk = micro_kernel_for_width<T>(phase_width(g));
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 C = g.C, K = g.K, kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], sw = g.stride[2], nblocks = ceil_div(C, NR);
  std::vector<AxisPhase> wphase(static_cast<size_t>(sw));
  i64 most_tiles = 0, wide = 0;  // tiles of the longest phase; positions its widest tiles reach
  for (i64 f = 0; f < sw; ++f) {
    wphase[f] = axis_phase(IW, kW, sw, g.pad_before[2], f);
    const i64 tiles = ceil_div(wphase[f].end - wphase[f].first, MR);
    most_tiles = std::max(most_tiles, tiles);
    wide = std::max(wide, wphase[f].first + tiles * MR);
  }
  // grad_output padded by taps - 1 cells before each axis (the stretch of q = 0) and past the last
  // position any phase reads.
  i64 lo[3], extent[3];
  for (int a = 0; a < 3; ++a) {
    lo[a] = ceil_div(g.kernel[a], g.stride[a]) - 1;
    const i64 reach = a == 2 ? wide : ceil_div(g.in[a] + g.pad_before[a], g.stride[a]);
    extent[a] = lo[a] + std::max(g.out[a], reach);
  }
  const i64 Dp = extent[0], Hp = extent[1], Wp = extent[2];
  CachedBuffer<T> dypad_storage;
  const T* dypad = pad_channels_last(dypad_storage, dy, g.N, g.out, K, lo, Dp, Hp, Wp);
  // B per c-panel, kernel plane kd and W phase: the phase's kernel rows, ordered by (kh % sh,
  // kh / sh) so that the rows one call sums are adjacent; each row's taps in reverse (the order of
  // the stretch), [t * K + k][NR] with tap kw = phase + (taps - 1 - t) * sw; columns past C zero.
  std::vector<i64> kh_rank(static_cast<size_t>(kH)), phase_offset(static_cast<size_t>(sw));
  for (i64 kh = 0, rank = 0; kh < g.stride[1] && kh < kH; ++kh)
    for (i64 r = kh; r < kH; r += g.stride[1]) kh_rank[r] = rank++;
  for (i64 f = 0, off = 0; f < sw; ++f) phase_offset[f] = off, off += kH * wphase[f].taps * K * NR;
  const i64 plane = kW * kH * K * NR;  // one kd's B values per c-panel
  AlignedBuffer<T> wpack(nblocks * kD * plane);
  parallel_for(nblocks * kD, [&](i64 item, int) {
    const i64 nb = item / kD, kd = item % kD;
    for (i64 f = 0; f < sw; ++f) {
      const i64 taps = wphase[f].taps;
      for (i64 kh = 0; kh < kH; ++kh) {
        T* dst = wpack.data() + item * plane + phase_offset[f] + kh_rank[kh] * taps * K * NR;
        for (i64 t = 0; t < taps; ++t)
          for (i64 k = 0; k < K; ++k)
            for (i64 jj = 0; jj < NR; ++jj) {
              const i64 c = nb * NR + jj, kw = f + (taps - 1 - t) * sw;
              dst[(t * K + k) * NR + jj] = c < C ? w[(((k * C + c) * kD + kd) * kH + kh) * kW + kw] : T(0);
            }
      }
    }
  });
  const i64 rows_in = g.N * ID * IH;
  const int slots = scratch_slots(rows_in);
  AlignedBuffer<T> row_buffers(slots * most_tiles * MR * NR);
  parallel_for(rows_in, [&](i64 row, int t) {
    const i64 n = row / (ID * IH), id = (row / IH) % ID, ih = row % IH;
    T* dxrow = dx + row * IW * C;
    T* buf = row_buffers.data() + t * most_tiles * MR * NR;
    const i64 pd = id + g.pad_before[0], ph = ih + g.pad_before[1];
    const i64 fd = pd % g.stride[0], qd = pd / g.stride[0], fh = ph % g.stride[1], qh = ph / g.stride[1];
    const i64 taps_d = fd < kD ? ceil_div(kD - fd, g.stride[0]) : 0;
    const i64 taps_h = fh < kH ? ceil_div(kH - fh, g.stride[1]) : 0;
    for (i64 f = 0; f < sw; ++f) {
      const AxisPhase& wp = wphase[f];
      const i64 count = wp.end - wp.first;
      T* out = dxrow + (wp.first * sw + f - g.pad_before[2]) * C;  // cell q = first; cells sw * C apart
      if (taps_d == 0 || taps_h == 0 || wp.taps == 0) {  // no tap reaches these cells
        for (i64 i = 0; i < count; ++i) std::fill(out + i * sw * C, out + i * sw * C + C, T(0));
        continue;
      }
      const i64 L = wp.taps * K, tiles = ceil_div(count, MR), full_tiles = count / MR;
      const bool whole_rows = L <= kKernelRowsDepth;
      const i64 rows_per_call = whole_rows ? kKernelRowsDepth / L : 1, KC = whole_rows ? L : kReductionBlock;
      for (i64 nb = 0; nb < nblocks; ++nb) {
        const i64 cols = std::min(NR, C - nb * NR);
        const i64 direct = cols == NR ? full_tiles : 0;  // tiles written straight into dx
        std::fill(buf, buf + (tiles - direct) * MR * NR, T(0));
        bool first = true;
        for (i64 td = 0; td < taps_d; ++td)
          for (i64 th0 = 0; th0 < taps_h; th0 += rows_per_call) {
            const i64 rows = std::min(rows_per_call, taps_h - th0);
            // Kernel row (fd + td * sd, fh + th0 * sh) reads grad_output row (qd - td, qh - th0); the
            // next row of the phase reads the grad_output row before.
            const T* A = dypad +
                         (((n * Dp + qd - td + lo[0]) * Hp + qh - th0 + lo[1]) * Wp + wp.first - wp.taps + 1 + lo[2]) *
                             K;
            const T* Brows = wpack.data() + (nb * kD + fd + td * g.stride[0]) * plane + phase_offset[f] +
                             kh_rank[fh + th0 * g.stride[1]] * L * NR;
            for (i64 j0 = 0; j0 < L; j0 += KC) {
              const i64 kc = whole_rows ? rows * L : std::min(KC, L - j0), run = whole_rows ? L : kc;
              row_tiles(mk, tiles, direct, kc, A + j0, MR * K, K, run, -Wp * K, Brows + j0 * NR, out + nb * NR, sw * C,
                        !first, buf);
              first = false;
            }
          }
        copy_buffered_tiles(buf, direct * MR, count, cols, NR, out + nb * NR, sw * C);
      }
    }
  });
}

// How the weight gradient by blocks of images tiles its product (below): the rows are K and the
// columns a kernel row's taps, or the converse, whichever fills the micro-kernel's tiles better
// (lenet5.conv2, 16 x 30 taps: the taps as rows under AVX-512's one-vector 10 x 16 tiles and
// AVX2's 6 x 16, which fit both exactly; K as rows, 8 x 32 tiles padded the taps to 32). With
// `stacked`, the image is copied with its kH input rows' cells side by side, so that one kernel
// row holds all kH x kW x C taps: where a kernel row's own kW x C fill the tiles poorly (a grey
// first layer, lenet5.conv1: 5 taps, 25 stacked).
template <class T>
struct ImageBlockTiling {
  bool stacked, tap_rows;
  const MicroKernel<T>* mk;
  i64 taps;  // a kernel row's taps: kW x C, or kW x kH x C stacked
  double taps_filled;  // the share of the tiles' taps that are real

  explicit ImageBlockTiling(const ConvGeometry& g) {
    const auto filled = [](i64 n, i64 tile) { return double(n) / double(ceil_div(n, tile) * tile); };
    const MicroKernel<T>& by_k = micro_kernel_for_rows<T>(g.K);
    double best = -1;
    for (bool stack : {false, true}) {
      const i64 L = g.kernel[2] * g.C * (stack ? g.kernel[1] : 1);
      const MicroKernel<T>& by_tap = micro_kernel_for_row_tiles<T>(L, g.K);
      const double tap_fill = filled(L, by_tap.mr) * filled(g.K, by_tap.nr);
      const double k_fill = filled(g.K, by_k.mr) * filled(L, by_k.nr);
      // Stacking copies each input cell kH times: taken only for an eighth more of the tiles.
      const double fill = std::max(tap_fill, k_fill) * (stack ? 1.0 / 1.125 : 1.0);
      if (fill > best) {
        best = fill;
        stacked = stack;
        tap_rows = tap_fill > k_fill;
        mk = tap_rows ? &by_tap : &by_k;
        taps = L;
        taps_filled = tap_rows ? filled(L, by_tap.mr) : filled(L, by_k.nr);
      }
    }
  }
};

// Backward weight by blocks of images (LeNet-sized layers), over output rows read in place. Per
// kernel row (kd, kh) and image, with the input zero-padded into Xp,
//     dW_row^T[K x kW*C] += sum over output rows (od, oh) and columns ow of
//                           dY[od, oh, ow][K] (x) Xp[od + kd, oh + kh, ow][kW*C],
// where consecutive positions' kW x C input values are runs C apart along an input row: one GEMM
// with both operands read in place, each output row one stretch of the micro-kernel's
// run_segments, the stretches a padded input row apart, and the whole image reduced in registers
// (no gather of short output rows, which took half the time of the channels-first inner-product
// form on 10 x 10 outputs). Numbering the positions over whole padded rows instead, one stretch an
// image, multiplied the Wp - OW cells between output rows too (zero gradients): 1.4 times the
// multiply-adds on lenet5.conv2. Stacked (ImageBlockTiling), the copy's cell (od, oh, w) holds
// input rows oh .. oh + kH - 1 side by side and the kernel rows are kd alone. grad_output is read
// in place (the batch's last image widened to whole tiles of K where K is not). Items are blocks
// of images: each image padded into an L1-sized buffer of the item's own and summed, every kernel
// row and tile, into the block's partial dW; the partials are added in block order, so the bits
// do not depend on the thread count. (Copying the whole batch first, then splitting the GEMMs among threads by
// kernel row, read each image from the other core's cache and cost a parallel region more.) Tile
// rows and columns past K or the taps multiply zeros, the cells past a run or the next position's
// gradients, and are never read.
template <class T>
void backward_weight_image_blocks(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const i64 C = g.C, K = g.K, kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const ImageBlockTiling<T> tiling(g);
  const bool tap_rows = tiling.tap_rows, stacked = tiling.stacked;
  const MicroKernel<T>& mk = *tiling.mk;
  const i64 MR = mk.mr, NR = mk.nr, L = tiling.taps;
  // The copy: Dp planes of Hs rows of Wp cells of Cs values.
  const i64 Dp = g.in[0] + g.pad_before[0] + g.pad_after[0],
            Hs = stacked ? OH : g.in[1] + g.pad_before[1] + g.pad_after[1];
  const i64 Wp = g.in[2] + g.pad_before[2] + g.pad_after[2], Cs = stacked ? kH * C : C;
  const i64 kernel_rows = stacked ? kD : kD * kH;
  // Rows and columns of a kernel row's summed products, and grad_output's widened channel count.
  const i64 rows = tap_rows ? ceil_div(L, MR) * MR : ceil_div(K, MR) * MR;
  const i64 cols = tap_rows ? ceil_div(K, NR) * NR : ceil_div(L, NR) * NR;
  const i64 Kw = tap_rows ? cols : rows;
  const i64 out_image = g.out_plane(), image = Dp * Hs * Wp * Cs, in_image = g.in_plane() * C;
  const i64 part = kernel_rows * rows * cols;
  // At least 4 images a block (the partials' sum stays a small part of the work), at most
  // kWgradMaxBlocks blocks (bounding their memory whatever the batch).
  const i64 block = std::max<i64>(4, ceil_div(g.N, kWgradMaxBlocks)), blocks = ceil_div(g.N, block);
  const int slots = scratch_slots(blocks);
  // Per slot one padded image (+ zeros: the last tile of taps reads up to NR - 1 or MR - 1 values
  // past the last kernel row's run) and, where K is widened, one grad_output image (the batch's
  // last).
  const i64 xstride = image + std::max(MR, NR), dystride = Kw == K ? 0 : out_image * Kw;
  AlignedBuffer<T> xbuf(checked_mul(slots, xstride, "padded input image")),
      dybuf(checked_mul(slots, dystride, "widened grad_output image"));
  CachedBuffer<T> partial_storage;
  T* partials = partial_storage.reserve(checked_mul(blocks, part, "weight-gradient partials"));
  parallel_for(blocks, [&](i64 b, int t) {
    T* xi = xbuf.data() + t * xstride;
    T* dyi = dybuf.data() + t * dystride;
    T* acc = partials + b * part;  // [kernel row][k][r = kw * C + c], or [kernel row][r][k]
    // The padding and the widened columns are zero for every image: only the cells that hold
    // values are written per image.
    std::fill(xi, xi + xstride, T(0));
    std::fill(dyi, dyi + dystride, T(0));
    for (i64 n = b * block; n < std::min(g.N, (b + 1) * block); ++n) {
      const T* xn = x + n * in_image;
      for (i64 d = 0; d < g.in[0]; ++d)
        for (i64 h = 0; h < g.in[1]; ++h) {
          const T* from = xn + (d * g.in[1] + h) * g.in[2] * C;
          const i64 hp = h + g.pad_before[1];
          if (!stacked) {
            std::copy(from, from + g.in[2] * C, xi + (((d + g.pad_before[0]) * Hs + hp) * Wp + g.pad_before[2]) * C);
            continue;
          }
          // Input row h is kernel row kh of output row hp - kh. A strided loop per channel: a
          // loop over each cell's few channels inside the one over cells took 0.25 ms of
          // lenet5.conv1's 0.45.
          for (i64 kh = std::max<i64>(0, hp - OH + 1); kh <= std::min(kH - 1, hp); ++kh) {
            T* dst = xi + (((d + g.pad_before[0]) * Hs + hp - kh) * Wp + g.pad_before[2]) * Cs + kh * C;
            for (i64 c = 0; c < C; ++c)
              for (i64 w = 0; w < g.in[2]; ++w) dst[w * Cs + c] = from[w * C + c];
          }
        }
      // Tiles read grad_output's K channels as Kw, the Kw - K past a position's own being the
      // next position's (products in tile rows or columns that are never read): only the last
      // image is widened, so that nothing is read past the array.
      const T* dyn = dy + n * out_image * K;
      const i64 ldy = Kw != K && n == g.N - 1 ? Kw : K;
      if (ldy != K) {
        for (i64 k = 0; k < K; ++k)
          for (i64 v = 0; v < out_image; ++v) dyi[v * Kw + k] = dyn[v * K + k];
        dyn = dyi;
      }
      for (i64 kr = 0; kr < kernel_rows; ++kr) {
        T* out = acc + kr * rows * cols;
        for (i64 od = 0; od < OD; ++od) {
          const T* xrow = stacked ? xi + (od + kr) * Hs * Wp * Cs : xi + ((od + kr / kH) * Hs + kr % kH) * Wp * C;
          const T* dyrows = dyn + od * OH * OW * ldy;
          const bool accumulate = n > b * block || od > 0;
          for (i64 i = 0; i < rows; i += MR)
            for (i64 j = 0; j < cols; j += NR) {
              if (tap_rows)
                mk.run_segments(OH, OW, xrow + i, Cs, Wp * Cs, dyrows + j, ldy, OW * ldy, out + i * cols + j, cols,
                                accumulate);
              else
                mk.run_segments(OH, OW, dyrows + i, ldy, OW * ldy, xrow + j, Cs, Wp * Cs, out + i * cols + j, cols,
                                accumulate);
            }
        }
      }
    }
  });
  // The partials summed in block order into block 0's, a vector at a time (element by element
  // across the blocks' strided rows: lenet5.conv2 NHWC 0.163 ms against 0.158), then reordered.
  // Serially where that is a few hundred thousand additions or fewer (lenet5.conv2: 38 400): a
  // parallel region costs more than that on an idle machine, and a scheduler quantum when another
  // process holds a core.
  const bool serial = blocks * part <= kSerialPartialSums;
  const auto run = [serial](i64 items, auto&& body) {
    if (!serial) return parallel_for(items, body);
    for (i64 i = 0; i < items; ++i) body(i, 0);
  };
  constexpr i64 kChunk = 1024;
  run(ceil_div(part, kChunk), [&](i64 chunk, int) {
    const i64 lo = chunk * kChunk, len = std::min(kChunk, part - lo);
    for (i64 b = 1; b < blocks; ++b) add_row(partials + lo, partials + b * part + lo, len);
  });
  run(K, [&](i64 k, int) {
    for (i64 kd = 0; kd < kD; ++kd)
      for (i64 kh = 0; kh < kH; ++kh)
        for (i64 c = 0; c < C; ++c)
          for (i64 kw = 0; kw < kW; ++kw) {
            const i64 kr = stacked ? kd : kd * kH + kh, r = kw * Cs + (stacked ? kh * C : 0) + c;
            const i64 at = kr * rows * cols + (tap_rows ? r * cols + k : k * cols + r);
            dw[((k * C + c) * kD * kH + kd * kH + kh) * kW + kw] = partials[at];
          }
  });
}

// Backward weight by kernel rows, for layers with few input channels (a network's first layer):
// per output row and kernel row (kd, kh), the kW x C input values of consecutive positions are
// runs sw x C apart in the padded input, the rows of A read in place (run_strided, lda = sw * C),
// and grad_output's row is B as it is (ldb = K), so
//     dW_row^T[kW*C x K] += sum_ow X_run(ow) (x) dY[ow][K]
// is one GEMM per output row with no gather or transpose (these layers had run the channels-first
// pass on transposed copies, 25 MB of grad_output on resnet50.conv1). Items are blocks of output
// rows, each summing into its own partial dW; the partials are added in block order, so the bits
// do not depend on the thread count. Rows of A past the kernel row's run read the next cells
// (a zero tail past the last), whose products land in tile rows that are never read.
// Channels-first operands (a strided first layer): the padded input copy interleaves the few
// channels, and each output row of grad_output is transposed into the thread's own buffer just
// before its GEMMs, while it is in cache (a whole-batch transpose wrote and read 25 MB more on
// resnet50.conv1).
// dw[k][c][kernel row][kw] = the sum over `blocks` partials, in block order, of
// partials[b * part + (kr * width + kw * C + c) * K + k] (each block's sums by kernel row and
// column r = kw * C + c, rows `width` apart). The blocks are added over contiguous stretches
// first: added element by element in dW's order, reads a block apart missed the cache (a third
// of resnet50.l2.3x3s2's channels-last weight gradient). The same bits either way.
template <class T>
void add_kernel_row_partials(T* partials, i64 blocks, i64 part, i64 C, i64 K, i64 kW, i64 kernel_rows, i64 width,
                             T* dw) {
  constexpr i64 kStretch = 4096;
  parallel_for(ceil_div(part, kStretch), [&](i64 piece, int) {
    const i64 i0 = piece * kStretch, i1 = std::min(part, i0 + kStretch);
    for (i64 b = 1; b < blocks; ++b) {
      const T* src = partials + b * part;
      for (i64 i = i0; i < i1; ++i) partials[i] += src[i];
    }
  });
  parallel_for(K, [&](i64 k, int) {
    for (i64 c = 0; c < C; ++c)
      for (i64 kr = 0; kr < kernel_rows; ++kr)
        for (i64 kw = 0; kw < kW; ++kw)
          dw[((k * C + c) * kernel_rows + kr) * kW + kw] = partials[(kr * width + kw * C + c) * K + k];
  });
}

template <class T>
void backward_weight_output_rows(const ConvGeometry& g, bool channels_first, const T* dy, const T* x, T* dw) {
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 C = g.C, K = g.K, kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2], sw = g.stride[2];
  const i64 Dp = g.in[0] + g.pad_before[0] + g.pad_after[0], Hp = g.in[1] + g.pad_before[1] + g.pad_after[1];
  const i64 Wp = g.in[2] + g.pad_before[2] + g.pad_after[2];
  const i64 L = kW * C, rtiles = ceil_div(L, MR), panels = K / NR, kernel_rows = kD * kH;
  CachedBuffer<T> xpad_storage;
  const PaddedCopy<T> xpad(xpad_storage, x, g.N, g.in, C, g.pad_before, Dp, Hp, Wp, rtiles * MR - L, channels_first);
  parallel_for(g.N * Dp * Hp, [&](i64 prow, int) { xpad.row(prow); });
  // Blocks of at least kWgradPositions x 8 positions, enough work to amortise a partial, and at
  // most kWgradMaxBlocks of them, which bounds the partials' memory whatever the batch.
  const i64 rows = g.N * OD * OH;
  const i64 block_rows = std::min(rows, std::max(ceil_div(8 * kWgradPositions, OW), ceil_div(rows, kWgradMaxBlocks)));
  const i64 blocks = ceil_div(rows, block_rows), part = kernel_rows * rtiles * MR * K;
  CachedBuffer<T> partial_storage;
  T* partials = partial_storage.reserve(checked_mul(blocks, part, "weight-gradient partials"));
  AlignedBuffer<T> dy_rows(channels_first ? checked_mul(scratch_slots(blocks), OW * K, "grad_output rows") : 0);
  const i64 out_plane = g.out_plane();
  parallel_for(blocks, [&](i64 b, int t) {
    T* acc = partials + b * part;  // [kernel row][r = kw * C + c, rounded up to MR][K]
    for (i64 row = b * block_rows; row < std::min(rows, (b + 1) * block_rows); ++row) {
      const i64 n = row / (OD * OH), od = (row / OH) % OD, oh = row % OH;
      const T* dyrow = dy + row * OW * K;
      if (channels_first) {
        T* dyt = dy_rows.data() + t * OW * K;
        transpose_positions<false>(dy + n * K * out_plane + (od * OH + oh) * OW, dyt, OW, K, out_plane);
        dyrow = dyt;
      }
      for (i64 kr = 0; kr < kernel_rows; ++kr) {
        const i64 kd = kr / kH, kh = kr % kH;
        const T* xrow = xpad.data + ((n * Dp + od * g.stride[0] + kd * g.dilation[0]) * Hp + oh * g.stride[1] +
                                     kh * g.dilation[1]) *
                                        Wp * C;
        for (i64 rt = 0; rt < rtiles; ++rt)
          for (i64 pn = 0; pn < panels; ++pn)
            mk.run_strided(OW, xrow + rt * MR, sw * C, dyrow + pn * NR, K, acc + (kr * rtiles + rt) * MR * K + pn * NR,
                           K, row > b * block_rows);
      }
    }
  });
  add_kernel_row_partials(partials, blocks, part, C, K, kW, kernel_rows, rtiles * MR, dw);
}

// Backward weight by kernel rows for strided layers with many input channels, the same product
// as backward_weight_output_rows: per output row and kernel row, dW_row^T[kW*C x K] +=
// sum_ow X_run(ow) (x) dY[ow][K]. These layers ran the channels-first pass on transposed copies,
// whose im2col GEMM packs a tap-strided gather per step. Here the runs of kW x C input values of
// a few consecutive output rows are copied, a run per position (zeros where a tap falls in the
// padding), into a panel the micro-kernel reads with lda = the padded run length, and
// grad_output's rows, consecutive in memory, are B as they are (ldb = K): one call reduces over
// all those rows' positions (one row of 28 positions a call left the accumulator tile's loads
// and stores half the time; MR-wide packed panels were no faster). Items are blocks of output
// rows, each summing into its own partial dW, all columns at once so that the input is read once;
// the block count depends on the layer only and the partials are added in block order, so the
// bits do not depend on the thread count. Padded rows are not skipped: a padding tap times an infinite
// gradient is NaN, as in the zero-padded product the other passes compute.
constexpr i64 kWideWgradDepth = 256;  // positions a micro-kernel call reduces over, at least
constexpr i64 kWideWgradMaxBlocks = 16;
constexpr i64 kWideWgradPartialBytes = i64{32} << 20;  // all blocks' partial sums together

template <class T>
void backward_weight_wide_rows(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 C = g.C, K = g.K, kD = g.kernel[0], kH = g.kernel[1], kW = g.kernel[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 L = kW * C, rtiles = ceil_div(L, MR), panels = K / NR, kernel_rows = kD * kH;
  const i64 rows = g.N * OD * OH, in_cells = g.in_plane() * C;
  const i64 step_rows = std::min(rows, ceil_div(kWideWgradDepth, OW)), depth = step_rows * OW;
  const i64 part = kernel_rows * rtiles * MR * K;  // one block's sums: [kernel row][r][K]
  const i64 affordable = std::max<i64>(1, kWideWgradPartialBytes / i64(sizeof(T)) / part);
  const i64 blocks = std::min({kWideWgradMaxBlocks, affordable, ceil_div(rows, step_rows)});
  const i64 block_rows = ceil_div(rows, blocks);
  CachedBuffer<T> partial_storage;
  T* partials = partial_storage.reserve(checked_mul(blocks, part, "weight-gradient partials"));
  // A panel row: the run, zero-padded to whole tiles and to an odd number of cache lines, so that
  // a call's rows spread over all of L1's sets (24 lines apart they shared 8 of 64).
  const i64 LP = odd_line_stride<T>(rtiles * MR);
  const int slots = scratch_slots(blocks);
  AlignedBuffer<T> panel_storage(checked_mul(slots, depth * LP, "input run panels"));
  AlignedBuffer<T> dy_storage(checked_mul(slots, depth * K, "grad_output panels"));
  parallel_for(blocks, [&](i64 b, int t) {
    T* acc = partials + b * part;
    T* panel = panel_storage.data() + t * depth * LP;  // [position][r]
    T* dyp = dy_storage.data() + t * depth * K;  // [NR panel][position][NR]
    const i64 row_end = std::min(rows, (b + 1) * block_rows);
    for (i64 row0 = b * block_rows; row0 < row_end; row0 += step_rows) {
      const i64 nrows = std::min(step_rows, row_end - row0), positions = nrows * OW;
      // grad_output's rows, K apart (2 KiB-multiples on wide layers, which put a call's B rows
      // in few L1 sets), as contiguous NR-wide panels.
      for (i64 p = 0; p < positions; ++p)
        for (i64 pn = 0; pn < panels; ++pn)
          copy_row(dyp + (pn * depth + p) * NR, dy + (row0 * OW + p) * K + pn * NR, NR);
      for (i64 kr = 0; kr < kernel_rows; ++kr) {
        const i64 kd = kr / kH, kh = kr % kH;
        for (i64 j = 0; j < nrows; ++j) {
          const i64 row = row0 + j, n = row / (OD * OH), od = (row / OH) % OD, oh = row % OH;
          const i64 id = od * g.stride[0] - g.pad_before[0] + kd * g.dilation[0];
          const i64 ih = oh * g.stride[1] - g.pad_before[1] + kh * g.dilation[1];
          const bool row_inside = id >= 0 && id < ID && ih >= 0 && ih < IH;
          const T* xrow = x + n * in_cells + (id * IH + ih) * IW * C;
          for (i64 ow = 0; ow < OW; ++ow) {
            T* dst = panel + (j * OW + ow) * LP;
            const i64 iw0 = ow * g.stride[2] - g.pad_before[2];  // the run's first column
            if (row_inside && iw0 >= 0 && iw0 + kW <= IW) {
              copy_row(dst, xrow + iw0 * C, L);
            } else {
              for (i64 kw = 0; kw < kW; ++kw) {
                const i64 iw = iw0 + kw;
                if (row_inside && iw >= 0 && iw < IW)
                  copy_row(dst + kw * C, xrow + iw * C, C);
                else
                  std::fill(dst + kw * C, dst + (kw + 1) * C, T(0));
              }
            }
            std::fill(dst + L, dst + LP, T(0));
          }
        }
        for (i64 rt = 0; rt < rtiles; ++rt)
          for (i64 pn = 0; pn < panels; ++pn)
            mk.run_strided(positions, panel + rt * MR, LP, dyp + pn * depth * NR, NR,
                           acc + (kr * rtiles + rt) * MR * K + pn * NR, K, row0 > b * block_rows);
      }
    }
  });
  add_kernel_row_partials(partials, blocks, part, C, K, kW, kernel_rows, rtiles * MR, dw);
}

}  // namespace

// Backward data by phases: one group, undilated, a panel of input channels (they are the GEMM's
// columns), and phase rows padded to whole tiles by at most an eighth. It replaces the transposes
// around the channels-first pass and, for strided 1x1 layers, the packing kernel; 2 threads,
// builds alternating, AVX-512 / AVX2: resnet50.l2.3x3s2 NHWC 7.20 -> 4.79 / 12.4 -> 8.51 ms;
// 5x5 on 64 channels at 28 x 28 4.11 -> 3.15 / 6.95 -> 5.78; a 1x1 stride-2 layer (256 -> 512
// channels at 56 x 56) 5.80 -> 5.28 / 9.00 -> 8.48, three quarters of its cells zero-filled.
// Pointwise layers (unit stride) keep their plain GEMM, which copies nothing: resnet50.l1.1x1 NHWC
// backward data by phases ran 3.59 ms against the GEMM's 2.39 (2-core Intel Xeon, AVX-512).
bool backward_data_by_kernel_rows(const ConvGeometry& g) {
  if (conv_is_pointwise(g)) return false;
  const i64 width = phase_width(g);
  const MicroKernel<float>& mk = micro_kernel_for_width<float>(width);
  if (g.groups != 1 || g.C < mk.nr) return false;
  if (g.dilation[0] != 1 || g.dilation[1] != 1 || g.dilation[2] != 1) return false;
  const i64 padded = ceil_div(width, i64{mk.mr}) * mk.mr;
  return padded * 8 <= width * 9;
}

// Backward weight by blocks of images: a layer with one group, unit stride and no dilation, with
// at most 8 input channels (wider layers have long enough runs for the usual passes), whose taps
// fill the tiles at least three quarters (LeNet: 30 of 30 on its second layer, 25 stacked of 32
// on its first). Both layouts.
bool backward_weight_by_image_blocks(const ConvGeometry& g) {
  if (g.groups != 1 || g.C > kChannelsFirstMaxChannels) return false;
  for (int a = 0; a < 3; ++a)
    if (g.stride[a] != 1 || g.dilation[a] != 1) return false;
  return ImageBlockTiling<float>(g).taps_filled >= 0.75;
}

// Backward weight by kernel rows: channels-last layers with one group, undilated columns, at most
// 8 input channels and whole NR panels of output channels, with output rows of at least 32
// positions (each micro-kernel call reduces one row).
bool backward_weight_by_kernel_rows(const ConvGeometry& g) {
  return g.groups == 1 && g.dilation[2] == 1 && g.C <= kChannelsFirstMaxChannels &&
         g.K % micro_kernel<float>().nr == 0 && g.out[2] >= 32;
}

// A strided first layer: the channels-first pass reduces over rows of few taps (147 on
// resnet50.conv1, 3 -> 64 channels, 7 x 7, stride 2), short for its inner-product kernel, while
// its grad_output has a quarter of the input's positions, cheap to transpose. 2-core Xeon, builds
// alternating: resnet50.conv1 NCHW 10.65 -> 7.80 ms under AVX-512, 12.6 -> 11.8 under AVX2 on
// whole-batch channels-last copies; 6.9 and 11.3 transposing grad_output row by row. With unit
// stride the transposes outweighed the gain (3 -> 64 channels, 3 x 3, at 224 x 224, on copies:
// 10.5 -> 15.7 ms, 12.1 -> 23.2).
bool channels_first_weight_grad_runs_channels_last(const ConvGeometry& g) {
  return backward_weight_by_kernel_rows(g) && (g.stride[1] > 1 || g.stride[2] > 1);
}

template <class T>
bool conv_backward_data_by_phases(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  // The stretches' zero-padded ends multiply real taps: an infinite weight would add 0 x inf = NaN
  // products that the gradient does not have.
  if (!all_finite(w, g.K * g.C_per_group() * g.kernel_volume())) return false;
  backward_data_by_phases(g, dy, w, dx);
  return true;
}

template <class T>
void conv_backward_weight_by_kernel_rows(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  if (backward_weight_by_image_blocks(g)) return backward_weight_image_blocks(g, dy, x, dw);
  backward_weight_output_rows(g, false, dy, x, dw);
}

// Channels-last strided layers with many input channels, one group, undilated columns, whole NR
// panels of output channels and at most 2^20 weights (a block's partial sums, 4 MiB in float,
// stay near the cache; 512 channels at 14 x 14, 3x3 stride 2, 9 MiB a block: 11.6 -> 16.0 ms).
// 2-core Xeon, builds alternating: resnet50.l2.3x3s2 NHWC 14.3-16.7 -> 11.6-12.5 ms (AVX-512),
// 24-28 -> 11.5-15.7 (AVX2); 256 channels at 28 x 28, 13.1-13.7 -> 10.6 (AVX-512). Channels-first
// layers run it on channels-last copies: on the Xeon that did not gain (resnet50.l2.3x3s2 NCHW
// 14.1-15.4 -> 14.1-14.7), on a 2-core Zen 4 it does, builds alternating: resnet50.l2.3x3s2 NCHW
// 12.3-13.0 -> 11.4 ms (AVX2 14.8 -> 13.2), 256 channels at 28 x 28 11.3 -> 10.6-10.9, 64 at
// 112 x 112 15.5 -> 12.7.
constexpr i64 kWideWgradMaxWeights = i64{1} << 20;
bool backward_weight_wide_by_kernel_rows(const ConvGeometry& g) {
  const bool strided = g.stride[1] > 1 || g.stride[2] > 1;
  return strided && g.groups == 1 && g.dilation[2] == 1 && g.C > kChannelsFirstMaxChannels &&
         g.K % micro_kernel<float>().nr == 0 && g.kernel_volume() > 1 && g.K * g.reduction() <= kWideWgradMaxWeights;
}

template <class T>
void conv_backward_weight_wide_by_kernel_rows(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  backward_weight_wide_rows(g, dy, x, dw);
}

template <class T>
void conv_forward_by_kernel_rows_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  forward_kernel_rows(g, true, x, w, bias, y);
}

template <class T>
void conv_backward_weight_by_kernel_rows_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  backward_weight_output_rows(g, true, dy, x, dw);
}

template <class T>
void activations_to_channels_first(const T* src, T* dst, i64 N, i64 P, i64 C) {
  transpose_layout<true>(src, dst, N, P, C);
}

template <class T>
void activations_to_channels_last(const T* src, T* dst, i64 N, i64 P, i64 C) {
  transpose_layout<false>(src, dst, N, P, C);
}

namespace {

// W^T packed once as the forward pass's B panels: [group][n-block][r = tap*Cg + c][NR], columns
// past K/g zero.
template <class T>
AlignedBuffer<T> pack_weights_transposed(const ConvGeometry& g, const T* w, i64 NR) {
  const i64 Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), kvol = g.kernel_volume();
  const i64 nblocks = ceil_div(Kg, NR);
  AlignedBuffer<T> wpack(g.groups * nblocks * R * NR);
  parallel_for(g.groups * nblocks, [&](i64 item, int) {
    const i64 gi = item / nblocks, nb = item % nblocks;
    T* dst = wpack.data() + item * R * NR;
    for (i64 r = 0; r < R; ++r) {
      const i64 tap = r / Cg, c = r % Cg;
      for (i64 j = 0; j < NR; ++j) {
        const i64 k = nb * NR + j;
        dst[r * NR + j] = k < Kg ? w[((gi * Kg + k) * Cg + c) * kvol + tap] : T(0);
      }
    }
  });
  return wpack;
}

// Pointwise layers: y[q][k] = sum_c x[q][c] W[k][c] + bias[k] over the batch's positions q. The
// micro-kernel's rows are positions whose channels it reads in place (run_transposed_a: row i
// of A is x[q0 + i][group's channels]), its columns the packed W^T, its C the rows of y: nothing
// is packed per call but the weights. (The general kernel below transposes every MR positions'
// channels into a panel first, which cost as much as the GEMM when K is small: resnet50.l1.1x1's
// backward data, a forward pass with 64 output channels, ran at 0.5x PyTorch.) Positions past the
// batch's last MR-block are copied into a zero-padded tile, so no read leaves the input.
template <class T>
void pointwise_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), nblocks = ceil_div(Kg, NR);
  const AlignedBuffer<T> wpack = pack_weights_transposed(g, w, NR);
  // Tiles of positions as in the general kernel below; the reduction in blocks that keep a B
  // panel (KC x NR) in L1 while the tile's rows stream past it.
  const i64 total = g.N * g.out_plane(), KC = std::min(Cg, kReductionBlock);
  const PositionTiling tiling = position_tiling(total, MR, kForwardPanels, nblocks, G);
  const i64 PT = tiling.tile, ptiles = tiling.tiles, kgroups = tiling.kgroups, kper = tiling.kper;
  const i64 items = tiling.items;
  const int slots = scratch_slots(items);
  // Rows of A read in place are C apart. Where that puts more of a tile's MR rows into one L1 set
  // than a set has ways (8 on Zen 4): 4 KiB apart (1024 float channels, a bottleneck's wide 1x1
  // layers) under AVX-512's 12-14 rows, they evict each other at every step. The item's positions
  // are then copied, one reduction block at a time, into a slab whose rows are an odd number of
  // cache lines apart (Zen 4, resnet50.l3.1x1 NHWC forward: 4.56-4.62 -> 4.36-4.40 ms; AVX2's 6 rows
  // fit the set, and the copy made them 3 % slower).
  const i64 row_bytes = g.C * i64(sizeof(T)), sets_apart = 4096 / std::gcd(row_bytes, i64(4096));
  const bool use_slab = row_bytes % 64 == 0 && ceil_div(MR, sets_apart) > 8;
  const i64 lds = odd_line_stride<T>(KC);
  AlignedBuffer<T> slab_storage(use_slab ? checked_mul(slots * ceil_div(PT, MR) * MR, lds, "position slabs") : 0);
  AlignedBuffer<T> edge_rows(use_slab ? 0 : slots * MR * Cg);
  AlignedBuffer<T> cedge(slots * MR * NR);
  parallel_for(items, [&](i64 item, int t) {
    const i64 kg = item % kgroups, pt = (item / kgroups) % ptiles, gi = item / kgroups / ptiles;
    const i64 nb0 = kg * kper, nb1 = std::min(nblocks, nb0 + kper);
    const i64 q0 = pt * PT, count = std::min(PT, total - q0), mpanels = ceil_div(count, MR);
    const i64 tail = count - (mpanels - 1) * MR;  // positions in the last MR block
    T* edge = use_slab ? nullptr : edge_rows.data() + t * MR * Cg;
    T* slab = use_slab ? slab_storage.data() + t * ceil_div(PT, MR) * MR * lds : nullptr;
    T* cbuf = cedge.data() + t * MR * NR;
    const T* xt = x + q0 * g.C + gi * Cg;
    T* yt = y + q0 * g.K + gi * Kg;
    if (!use_slab && tail < MR) {
      for (i64 i = 0; i < tail; ++i) copy_row(edge + i * Cg, xt + ((mpanels - 1) * MR + i) * g.C, Cg);
      std::fill(edge + tail * Cg, edge + MR * Cg, T(0));
    }
    for (i64 k0 = 0; k0 < Cg; k0 += KC) {
      const i64 kc = std::min(KC, Cg - k0);
      if (use_slab) {
        for (i64 i = 0; i < count; ++i) copy_row(slab + i * lds, xt + i * g.C + k0, kc);
        for (i64 i = count; i < mpanels * MR; ++i) std::fill(slab + i * lds, slab + i * lds + kc, T(0));
      }
      for (i64 nb = nb0; nb < nb1; ++nb) {
        const T* B = wpack.data() + ((gi * nblocks + nb) * Cg + k0) * NR;
        const i64 cols = std::min(NR, Kg - nb * NR);
        for (i64 mb = 0; mb < mpanels; ++mb) {
          const i64 rows = mb == mpanels - 1 ? tail : MR;
          const T* A = use_slab ? slab + mb * MR * lds : rows < MR ? edge + k0 : xt + mb * MR * g.C + k0;
          const i64 lda = use_slab ? lds : rows < MR ? Cg : g.C;
          run_tile_with(MR, NR, yt + mb * MR * g.K + nb * NR, g.K, rows, cols, k0 > 0, cbuf,
                        [&](T* c, i64 ldc, bool acc) { mk.run_transposed_a(kc, A, lda, kc, 0, B, NR, c, ldc, acc); });
        }
      }
    }
    if (bias)
      for (i64 i = 0; i < count; ++i)
        for (i64 k = nb0 * NR; k < std::min(Kg, nb1 * NR); ++k) yt[i * g.K + k] += bias[gi * Kg + k];
  });
}

}  // namespace

template <class T>
void conv_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  if (!conv_reach_is_compact(g)) return conv_forward_direct(g, true, x, w, bias, y);
  if (g.N == 0) return;
  if (conv_is_pointwise(g)) return pointwise_forward_channels_last(g, x, w, bias, y);
  if (forward_by_kernel_rows(g)) return forward_kernel_rows(g, false, x, w, bias, y);
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 nblocks = ceil_div(Kg, NR);
  const AlignedBuffer<T> wpack = pack_weights_transposed(g, w, NR);

  // Tiles over the positions of the whole batch (consecutive in y): position_tiling (gemm_tile.h).
  const i64 total = g.N * P, KC = std::min(R, kReductionBlock);
  const PositionTiling tiling = position_tiling(total, MR, kForwardPanels, nblocks, G);
  const i64 PT = tiling.tile, ptiles = tiling.tiles, kgroups = tiling.kgroups, kper = tiling.kper;
  const i64 items = tiling.items;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * MR;
  AlignedBuffer<T> apack(slots * (PT / MR) * panel_stride);
  AlignedBuffer<T> cedge(slots * MR * NR);
  std::vector<Origin> origin_store(static_cast<size_t>(slots * PT));
  const TapTable taps = tap_table(g);

  alignas(64) static const T zeros[kReductionBlock] = {};  // a run that reads padding
  parallel_for(items, [&](i64 item, int t) {
    const i64 kg = item % kgroups, pt = (item / kgroups) % ptiles, gi = item / kgroups / ptiles;
    const i64 nb0 = kg * kper, nb1 = std::min(nblocks, nb0 + kper);
    const i64 q0 = pt * PT, count = std::min(PT, total - q0), mpanels = ceil_div(count, MR);
    Origin* origins = origin_store.data() + t * PT;
    window_origins(g, q0, count, origins);
    T* A = apack.data() + t * (PT / MR) * panel_stride;
    T* cbuf = cedge.data() + t * MR * NR;
    const T* xg = x + gi * Cg;
    T* yt = y + q0 * g.K + gi * Kg;
    for (i64 k0 = 0; k0 < R; k0 += KC) {
      const i64 kc = std::min(KC, R - k0);
      // A panels [r][MR]: for each run of contiguous channels (one tap), the MR positions'
      // runs transposed 16 x 16 at a time; taps in the padding and positions past the tile read
      // zeros.
      for (i64 mb = 0; mb < mpanels; ++mb) {
        i64 tap = k0 / Cg, c = k0 % Cg;
        for (i64 j = 0; j < kc; ++tap, c = 0) {
          const i64 len = std::min(Cg - c, kc - j);
          const T* rows[16];
          for (i64 i = 0; i < MR; ++i) {
            const i64 pos = mb * MR + i;
            const i64 off = pos < count ? tap_offset(g, taps, origins[pos], tap) : -1;
            rows[i] = off < 0 ? zeros : xg + origins[pos].image + off + c;
          }
          transpose_rows(rows, MR, len, A + mb * panel_stride + j * MR, MR, MR);
          j += len;
        }
      }
      for (i64 nb = nb0; nb < nb1; ++nb) {
        const T* B = wpack.data() + ((gi * nblocks + nb) * R + k0) * NR;
        const i64 cols = std::min(NR, Kg - nb * NR);
        for (i64 mb = 0; mb < mpanels; ++mb)
          run_tile(mk, kc, A + mb * panel_stride, B, yt + mb * MR * g.K + nb * NR, g.K, std::min(MR, count - mb * MR),
                   cols, k0 > 0, cbuf);
      }
    }
    if (bias)
      for (i64 i = 0; i < count; ++i)
        for (i64 k = nb0 * NR; k < std::min(Kg, nb1 * NR); ++k) yt[i * g.K + k] += bias[gi * Kg + k];
  });
}

template <class T>
void conv_backward_data_channels_last(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  if (!conv_reach_is_compact(g)) return conv_backward_data_direct(g, true, dy, w, dx);
  if (g.N == 0) return;
  if (conv_is_pointwise(g)) {
    // The forward pass of the transposed layer, as in channels-first: one GEMM over contiguous
    // channels, written straight into dx, with no column tile or scatter.
    AlignedBuffer<T> wt(g.C * g.K_per_group());
    transpose_pointwise_weights(g, w, wt.data());
    conv_forward_channels_last(pointwise_transpose(g), dy, wt.data(), static_cast<const T*>(nullptr), dx);
    return;
  }
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), P = g.out_plane();
  const i64 kvol = g.kernel_volume(), in_plane = g.in_plane(), in_cells = in_plane * g.C;

  // Channel blocks of about 128 columns (tap, channel); smaller when the batch alone gives too
  // few items. Depends on the problem only: the scatter order follows the blocking.
  i64 cb = std::clamp<i64>(ceil_div(128, kvol), 1, Cg);
  while (cb > 1 && g.N * G * ceil_div(Cg, cb) < 8) cb = ceil_div(cb, 2);
  const i64 cblocks = ceil_div(Cg, cb), npanels_max = ceil_div(kvol * cb, NR), ldcol = npanels_max * NR;

  // W packed per channel block: [group][c-block][panel][k][NR]; column j = tap*width + cc.
  AlignedBuffer<T> wpack(G * cblocks * npanels_max * Kg * NR);
  parallel_for(G * cblocks, [&](i64 item, int) {
    const i64 gi = item / cblocks, b = item % cblocks, width = std::min(cb, Cg - b * cb);
    T* dst = wpack.data() + item * npanels_max * Kg * NR;
    // Column j = tap * width + cc is stepped through, not divided out (a division per element
    // was a fifth of resnet50.l4.3x3's NHWC backward data).
    for (i64 k = 0; k < Kg; ++k) {
      const T* wk = w + ((gi * Kg + k) * Cg + b * cb) * kvol;  // wk[cc * kvol + tap]
      i64 tap = 0, cc = 0;
      for (i64 q = 0; q < npanels_max; ++q) {
        T* d = dst + (q * Kg + k) * NR;
        for (i64 jj = 0; jj < NR; ++jj) {
          d[jj] = tap < kvol ? wk[cc * kvol + tap] : T(0);
          if (++cc == width) cc = 0, ++tap;
        }
      }
    }
  });

  const i64 PT = kPositionPanels * MR, KC = std::min(Kg, kReductionBlock);
  const i64 items = g.N * G * cblocks;
  const int slots = scratch_slots(items);
  const i64 panel_stride = KC * MR;
  AlignedBuffer<T> apack(slots * kPositionPanels * panel_stride);
  AlignedBuffer<T> cols(slots * PT * ldcol);
  std::vector<Origin> origin_store(static_cast<size_t>(slots * PT));
  const TapTable taps = tap_table(g);

  parallel_for(items, [&](i64 item, int t) {
    const i64 b = item % cblocks, gi = (item / cblocks) % G, n = item / cblocks / G;
    const i64 c0 = b * cb, width = std::min(cb, Cg - c0), npanels = ceil_div(kvol * width, NR);
    T* dxg = dx + n * in_cells + gi * Cg + c0;
    for (i64 s = 0; s < in_plane; ++s) std::fill(dxg + s * g.C, dxg + s * g.C + width, T(0));
    const T* Bblock = wpack.data() + (gi * cblocks + b) * npanels_max * Kg * NR;
    T* A = apack.data() + t * kPositionPanels * panel_stride;
    T* col = cols.data() + t * PT * ldcol;
    Origin* origins = origin_store.data() + t * PT;
    for (i64 p0 = 0; p0 < P; p0 += PT) {
      const i64 count = std::min(PT, P - p0), mpanels = ceil_div(count, MR);
      for (i64 k0 = 0; k0 < Kg; k0 += KC) {
        const i64 kc = std::min(KC, Kg - k0);
        // A = dY with positions as rows (each position's K/g gradients are contiguous),
        // transposed into [k][MR] panels 16 x 16 blocks at a time.
        for (i64 mb = 0; mb < mpanels; ++mb) {
          const T* rows[16];
          const i64 valid = std::min(MR, count - mb * MR);
          for (i64 i = 0; i < valid; ++i) rows[i] = dy + (n * P + p0 + mb * MR + i) * g.K + gi * Kg + k0;
          transpose_rows(rows, valid, kc, A + mb * panel_stride, MR, MR);
        }
        for (i64 q = 0; q < npanels; ++q) {
          const T* B = Bblock + (q * Kg + k0) * NR;
          for (i64 mb = 0; mb < mpanels; ++mb)
            mk.run(kc, A + mb * panel_stride, B, col + mb * MR * ldcol + q * NR, ldcol, k0 > 0);
        }
      }
      window_origins(g, p0, count, origins);
      for (i64 i = 0; i < count; ++i)
        for (i64 tap = 0; tap < kvol; ++tap) {
          const i64 off = tap_offset(g, taps, origins[i], tap);
          if (off < 0) continue;
          add_row(dxg + off, col + i * ldcol + tap * width, width);
        }
    }
  });
}

namespace {

// Pointwise layers: X_col is the input itself (row = position: the group's C/groups contiguous
// channels) and dY's rows hold each position's output channels, so the micro-kernel reads both
// in place (run_strided) and nothing is packed but the tiles past the group's last dW row or
// column, zero-padded so that no read leaves the group's channels. (Packing every position's
// rows, as the general kernel below does, took 3x the GEMM: resnet50.l1.1x1 NHWC 10 ms against
// PyTorch's 3.) Items and determinism as below; steps run over the whole batch's positions.
template <class T>
void pointwise_backward_weight_channels_last(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), total = g.N * g.out_plane();
  const i64 RB = kWgradPanels * NR, rblocks = ceil_div(Cg, RB);
  const i64 PT = kWgradPositions, mblocks = ceil_div(Kg, MR);
  const i64 mgroups = row_groups_for_threads(mblocks, G * rblocks), mper = ceil_div(mblocks, mgroups);
  const i64 items = G * rblocks * mgroups;
  const int slots = scratch_slots(items);
  AlignedBuffer<T> edge_a(slots * PT * MR);
  AlignedBuffer<T> edge_b(slots * PT * NR);
  // Input rows a multiple of 2 KiB apart fall into one or two of L1's 64 sets, and a step's 128
  // rows of B evicted one another and A's: their panels are copied first (2-core Xeon, NHWC:
  // resnet50.l3.1x1 2.80 -> 2.49 ms under AVX-512, 5.33 -> 4.49 under AVX2; 512 -> 2048 channels
  // at 7 x 7 3.20 -> 2.92). At 1 KiB (64 -> 256 channels) the copies cost what they save.
  const bool pack_b = (g.C * sizeof(T)) % 2048 == 0;
  AlignedBuffer<T> acc(slots * mper * MR * RB);

  parallel_for(items, [&](i64 item, int t) {
    const i64 mg = item % mgroups, rb = (item / mgroups) % rblocks, gi = item / mgroups / rblocks;
    const i64 mb0 = mg * mper, mbn = std::min(mblocks, mb0 + mper) - mb0;  // this item's MR blocks
    const i64 r0 = rb * RB, rc = std::min(RB, Cg - r0), nq = ceil_div(rc, NR);
    const i64 rows_last = Kg - (mblocks - 1) * MR, cols_last = rc - (nq - 1) * NR;  // the edge tiles' extents
    T* A_edge = edge_a.data() + t * PT * MR;
    T* B_edge = edge_b.data() + t * PT * NR;
    T* C = acc.data() + t * mper * MR * RB;
    for (i64 q0 = 0; q0 < total; q0 += PT) {
      const i64 count = std::min(PT, total - q0);
      const T* dy_rows = dy + q0 * g.K + gi * Kg;  // row q: dY[q0 + q][the group's channels]
      const T* x_rows = x + q0 * g.C + gi * Cg + r0;  // row q: X[q0 + q][the block's channels]
      if (rows_last < MR && mb0 + mbn == mblocks)
        for (i64 p = 0; p < count; ++p) {
          copy_row(A_edge + p * MR, dy_rows + p * g.K + (mblocks - 1) * MR, rows_last);
          std::fill(A_edge + p * MR + rows_last, A_edge + (p + 1) * MR, T(0));
        }
      if (cols_last < NR)
        for (i64 p = 0; p < count; ++p) {
          copy_row(B_edge + p * NR, x_rows + p * g.C + (nq - 1) * NR, cols_last);
          std::fill(B_edge + p * NR + cols_last, B_edge + (p + 1) * NR, T(0));
        }
      // One B panel stays in L1 while this item's A rows stream past it.
      for (i64 q = 0; q < nq; ++q) {
        const bool b_edge = q == nq - 1 && cols_last < NR;
        if (!b_edge && pack_b)
          for (i64 p = 0; p < count; ++p) copy_row(B_edge + p * NR, x_rows + p * g.C + q * NR, NR);
        const T* B = b_edge || pack_b ? B_edge : x_rows + q * NR;
        const i64 ldb = b_edge || pack_b ? NR : g.C;
        for (i64 mb = 0; mb < mbn; ++mb) {
          const bool a_edge = mb0 + mb == mblocks - 1 && rows_last < MR;
          const T* A = a_edge ? A_edge : dy_rows + (mb0 + mb) * MR;
          const i64 lda = a_edge ? MR : g.K;
          mk.run_strided(count, A, lda, B, ldb, C + mb * MR * RB + q * NR, RB, q0 > 0);
        }
      }
    }
    for (i64 k = mb0 * MR; k < std::min(Kg, (mb0 + mbn) * MR); ++k)
      std::copy(C + (k - mb0 * MR) * RB, C + (k - mb0 * MR) * RB + rc, dw + (gi * Kg + k) * Cg + r0);
  });
}

}  // namespace

template <class T>
void conv_backward_weight_channels_last(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  if (!conv_reach_is_compact(g)) return conv_backward_weight_direct(g, true, dy, x, dw);
  const MicroKernel<T>& mk = micro_kernel<T>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 G = g.groups, Kg = g.K_per_group(), Cg = g.C_per_group(), R = g.reduction(), P = g.out_plane();
  const i64 kvol = g.kernel_volume(), in_cells = g.in_plane() * g.C;
  if (g.N == 0) {
    std::fill(dw, dw + g.K * R, T(0));
    return;
  }
  if (conv_is_pointwise(g)) return pointwise_backward_weight_channels_last(g, dy, x, dw);
  const i64 RB = kWgradPanels * NR, rblocks = ceil_div(R, RB);
  const i64 PT = kWgradPositions, mblocks = ceil_div(Kg, MR);
  const i64 mgroups = row_groups_for_threads(mblocks, G * rblocks), mper = ceil_div(mblocks, mgroups);
  const i64 items = G * rblocks * mgroups;
  const int slots = scratch_slots(items);
  AlignedBuffer<T> apack(slots * mper * PT * MR);
  AlignedBuffer<T> bpack(slots * RB * PT);
  AlignedBuffer<T> acc(slots * mper * MR * RB);
  std::vector<Origin> origin_store(static_cast<size_t>(slots * PT));
  const TapTable taps = tap_table(g);

  parallel_for(items, [&](i64 item, int t) {
    const i64 mg = item % mgroups, rb = (item / mgroups) % rblocks, gi = item / mgroups / rblocks;
    const i64 mb0 = mg * mper, mbn = std::min(mblocks, mb0 + mper) - mb0;  // this item's MR blocks
    const i64 r0 = rb * RB, rc = std::min(RB, R - r0), nq = ceil_div(rc, NR);
    T* A = apack.data() + t * mper * PT * MR;
    T* B = bpack.data() + t * RB * PT;
    T* C = acc.data() + t * mper * MR * RB;
    Origin* origins = origin_store.data() + t * PT;
    bool first = true;
    for (i64 n = 0; n < g.N; ++n) {
      const T* xg = x + n * in_cells + gi * Cg;
      for (i64 p0 = 0; p0 < P; p0 += PT) {
        const i64 count = std::min(PT, P - p0);
        // A = dY^T: positions are the reduction; a position's output channels are contiguous.
        for (i64 p = 0; p < count; ++p) {
          const T* src = dy + (n * P + p0 + p) * g.K + gi * Kg;
          for (i64 mb = 0; mb < mbn; ++mb) {
            T* d = A + (mb * PT + p) * MR;
            const i64 k0 = (mb0 + mb) * MR, valid = std::clamp<i64>(Kg - k0, 0, MR);
            copy_row(d, src + k0, valid);
            std::fill(d + valid, d + MR, T(0));
          }
        }
        // B = X_col restricted to columns [r0, r0 + rc), in NR-wide panels of positions: runs of
        // contiguous channels, cut at panel edges.
        window_origins(g, p0, count, origins);
        for (i64 p = 0; p < count; ++p) {
          gather_row(g, taps, xg, origins[p], r0, rc, [&](i64 j, i64 len, const T* src) {
            for (i64 e = 0; e < len;) {
              const i64 col = j + e, piece = std::min(len - e, NR - col % NR);
              T* d = B + ((col / NR) * PT + p) * NR + col % NR;
              if (src)
                copy_row(d, src + e, piece);
              else
                std::fill(d, d + piece, T(0));
              e += piece;
            }
          });
          if (rc < nq * NR) {
            T* d = B + ((nq - 1) * PT + p) * NR;
            std::fill(d + rc - (nq - 1) * NR, d + NR, T(0));
          }
        }
        // One B panel stays in L1 while this item's A panels stream past it.
        for (i64 q = 0; q < nq; ++q)
          for (i64 mb = 0; mb < mbn; ++mb)
            mk.run(count, A + mb * PT * MR, B + q * PT * NR, C + mb * MR * RB + q * NR, RB, !first);
        first = false;
      }
    }
    // Columns are (tap, c); the weight is stored (k, c, tap).
    for (i64 k = mb0 * MR; k < std::min(Kg, (mb0 + mbn) * MR); ++k)
      for (i64 j = 0; j < rc; ++j) {
        const i64 r = r0 + j;
        dw[((gi * Kg + k) * Cg + r % Cg) * kvol + r / Cg] = C[(k - mb0 * MR) * RB + j];
      }
  });
}

template <class T>
void conv_backward_bias_channels_last(const ConvGeometry& g, const T* dy, T* db) {
  constexpr i64 kBlock = 64;
  const i64 rows = g.N * g.out_plane();
  parallel_for(ceil_div(g.K, kBlock), [&](i64 blk, int) {
    const i64 k0 = blk * kBlock, width = std::min(kBlock, g.K - k0);
    double s[kBlock] = {};
    for (i64 r = 0; r < rows; ++r) {
      const T* row = dy + r * g.K + k0;
      for (i64 k = 0; k < width; ++k) s[k] += row[k];
    }
    for (i64 k = 0; k < width; ++k) db[k0 + k] = static_cast<T>(s[k]);
  });
}

#define CONVKERN_INSTANTIATE(T)                                                                                       \
  template void conv_forward_channels_last<T>(const ConvGeometry&, const T*, const T*, const T*, T*);                 \
  template void conv_backward_data_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);                     \
  template void conv_backward_weight_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);                   \
  template void conv_backward_weight_by_kernel_rows<T>(const ConvGeometry&, const T*, const T*, T*);                  \
  template void conv_forward_by_kernel_rows_channels_first<T>(const ConvGeometry&, const T*, const T*, const T*, T*); \
  template void conv_backward_weight_by_kernel_rows_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);   \
  template void conv_backward_weight_wide_by_kernel_rows<T>(const ConvGeometry&, const T*, const T*, T*);             \
  template bool conv_backward_data_by_phases<T>(const ConvGeometry&, const T*, const T*, T*);                         \
  template void conv_backward_bias_channels_last<T>(const ConvGeometry&, const T*, T*);                               \
  template void activations_to_channels_first<T>(const T*, T*, i64, i64, i64);                                        \
  template void activations_to_channels_last<T>(const T*, T*, i64, i64, i64);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
