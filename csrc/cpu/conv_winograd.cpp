// conv_winograd.cpp — Winograd F(4x4, 3x3) convolution for 3x3 stride-1 float32 layers.
//
// Why. A 3x3 stride-1 convolution computes each 4x4 block of outputs from a 6x6 block of inputs.
// Winograd's minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016, arXiv:1509.09308) does it with 36 multiplications per (input channel,
// output channel) pair instead of 144: transform the input tile (V = B^T d B) and the filter
// (U = G g G^T), multiply elementwise, transform back (Y = A^T M A). Summed over channels, the
// elementwise products become 36 independent GEMMs, M[alpha] = U[alpha] (K x C) . V[alpha] (C x
// tiles), which run on the implicit-GEMM micro-kernel (microkernel.h): 4x fewer multiplications
// than the direct/implicit-GEMM form, plus transforms whose cost is shared by K (input), C
// (output) or the tiles (weights).
//
// Numerics. The transform matrices follow Lavin & Gray's Toom-Cook construction, but with the
// interpolation points 0, +-3/2, +-2/3, infinity instead of 0, +-1, +-2, infinity: with the usual
// points the float32 error of resnet-sized layers came out at 1.3-1.9x the test tolerance (rtol
// 1e-4, atol 1e-5 sqrt(9 C)); with these, and channel sums in chunks of 64, at 0.2-0.45x (simulated
// and measured over C = 64..512). Rows are scaled to small integers so every coefficient of B^T
// and A^T is exact in float; the weight transform's 1/36, 1/520 ... live in G. float64 keeps
// the implicit GEMM (its tests ask for 1e-10).
//
// Layout and blocking. Tiles are numbered over the whole batch; a work item is a block of 32 tiles
// (one micro-kernel panel) times a share of the output channels, and loops over the channels:
//   1. per channel, the grid rows its tiles touch are split by phase (see Grid) so that each of the
//      36 input values of 16 tiles is one contiguous load; V = B^T d B, 16 tiles per vector,
//      compressed past the tiles that do not exist and stored as the GEMM's B panels;
//   2. per block of up to kChannelBlocks x MR output channels: the 36 GEMMs (reduction in chunks
//      of 64 channels) into M, then Y = A^T M A per tile, transposed in registers and stored as
//      4-float rows (clipped at the edges) with the bias.
// The transformed weights are computed once per call, [alpha][MR block][c][MR]. Items whose tiles
// are few split the output channels between threads. Every buffer indexed by alpha has a stride of
// an odd number of cache lines (36 streams 4 KiB apart would share one L1 set), and the large ones
// are kept per calling thread between calls (fresh pages cost as much as the transforms).
//
// Backward data of the same layers is the forward convolution of grad_output with the kernel
// rotated by 180 degrees and the channels swapped, padded by 2 - p (padding <= 2), on this kernel.
//
// Backward weight: dg = G^T [sum over tiles (B^T d B) . (A dY A^T)] G, with the forward's points.
// Tiles run in fixed chunks of kWgradChunk; per chunk, items of 16 input (output) channels
// transform the input (grad_output) tiles 16 at a time, stage them [alpha][channel][tile] and
// transpose 16 x 16 blocks in registers into the micro-kernel's B (A) panels, [tile][NR] ([MR]);
// then one item per alpha point adds M[alpha] . V[alpha]^T over the chunk (reduction depth: the
// chunk) to dU[alpha][k][c], chunk after chunk; last, dw = G^T dU G, 16 channels per vector.
// Error over the tests' shapes and resnet-sized layers: 0.2-0.7x the tolerance (rtol 1e-4, atol
// 1e-5 sqrt(N H W)).
//
// Determinism. Each output is one fixed sequence of operations: its tile's transforms, lane-wise
// GEMMs with a fixed channel chunking; tile blocks and channel splits only choose which thread
// does it. The same bits with any thread count.
//
// Channels-last activations have their own kernel (conv_winograd_nhwc.cpp) with the same
// transforms and numerics (winograd_transforms.h) and the same dispatch rule.
//
// Dispatch (kernel_table.cpp): float32, channels-first, 2-D 3x3, stride 1, dilation 1, groups 1, C
// and K >= kMinChannels and at least kMinTiles output tiles in the batch (with fewer, the weight
// transform outweighs the saving); backward weight likewise. CONVKERN_WINOGRAD=0 forces the implicit GEMM, =1 Winograd
// wherever it applies (both read on every call; for tests and benchmarks).
//
// Current: v4 (how it got here: docs/performance.md, "Kernel history"). Measured 2026-12-03 with
// `python bench/run.py --quick --layout NCHW` on the 2-core AMD EPYC (Zen 5, AVX-512), 2 threads,
// median ms, PyTorch 2.13 oneDNN from the same run in brackets: resnet50.l2.3x3 forward 2.51 ms
// (4.37), 737 GFLOP/s counted as the direct convolution's FLOPs, so 149% of the FMA peak (Winograd
// does 4x fewer multiplications); vgg16.conv3_2 forward 62.0 (82.3).
#include "conv_winograd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "conv.h"
#include "gemm_tile.h"
#include "microkernel.h"
#include "parallel.h"
#include "winograd_transforms.h"

namespace convkern::cpu {

using namespace winograd;

namespace {

constexpr int kL = 16;  // lanes of one vector: 16 tiles (transforms) or 12 + 4 output channels (weights)
// Dispatch thresholds (see winograd_forward_wins).
constexpr i64 kMinChannels = 16;
constexpr i64 kMinTiles = 96;
// Tiles per work item, in micro-kernel panels: one panel keeps the transformed input of a
// 256-channel layer (1.2 MiB) in L2 beside the GEMM's output block; 2 and 4 panels measured
// 5-50% slower (the input transform's stores spilled to L3), for less reuse of U.
constexpr i64 kTilePanels = 1;
// Output channels per GEMM + output-transform pass, in MR blocks (16 x 12 = 192: M is 0.9 MiB).
constexpr i64 kChannelBlocks = 16;
// Reduction chunk of the GEMMs, in channels: also bounds the float32 error of the sums.
constexpr i64 kReductionChunk = 64;
// Weight gradient: tiles per chunk (the micro-kernel's reduction depth per call; partial sums
// are added chunk after chunk in a fixed order) and the fewest tiles worth the transforms.
constexpr i64 kWgradChunk = 256;
constexpr i64 kWgradMinTiles = kMinTiles;

// Sixteen floats in GCC's vector extension: the transforms are written once with it and compile to
// one zmm register per value under AVX-512 (to pairs or quads of narrower registers elsewhere).
typedef float vf __attribute__((vector_size(64)));
typedef float vf_u __attribute__((vector_size(64), aligned(4)));  // unaligned access

inline vf load(const float* p) { return *reinterpret_cast<const vf_u*>(p); }

// The padded input split by phase: 16 planes (row phase rp, column phase sp) over the padded
// tile grid of the whole batch, grid cell p = (n * GH + i) * GW + j holding padded[4 i + rp][4 j + sp]
// of image n (padded row u = h + pad_top). GH = TH + 1, GW = TW + 1: tile (i, j) reads cells (i, j)
// to (i + 1, j + 1), so the input value (r, s) of 16 consecutive grid tiles is one contiguous load
// at p + (r / 4) * GW + s / 4 of plane (r % 4, s % 4). Grid tiles with i == TH or j == TW do not
// exist; their lanes are dropped (compressed away). Each work item builds the planes of the grid
// rows its tiles touch, one channel at a time, so they stay in L1 (a batch-wide copy was read back
// from memory with 4096 short streams per item: 46 of 100 ms on vgg16.conv3_2).
struct Grid {
  i64 TH, TW, GH, GW, T;  // T: real tiles of the batch
  i64 cell(i64 t) const {
    const i64 per = TH * TW, n = t / per, r = t % per;
    return (n * GH + r / TW) * GW + r % TW;
  }
};

// One vector of 16 consecutive grid tiles of an item: `mask` marks real tiles inside the item,
// which land, compressed, at lane `lane` of panel `panel` of the transformed input.
struct InGroup {
  i64 cell, panel, lane;
  std::uint32_t mask;
};

// Scratch of one call, leased from the scratch cache (parallel.h): the buffers of a large layer
// (tens of MiB) would otherwise be fresh pages on every call, and faulting them in cost as much
// as the transforms that fill them (measured: 18 ms of a 30 ms resnet50.l4.3x3 call).
struct Workspace {
  CachedBuffer<float> u, xs, v, m;
};

// The weight gradient's: packed transforms of one tile chunk and the 36 summed products.
struct GradWorkspace {
  CachedBuffer<float> vp, mp, du, stage;
};

float* reserve(CachedBuffer<float>& b, i64 count) { return b.reserve(count); }

// dst[0..popcount(mask)) = the lanes of v selected by mask, in order; dst[popcount(mask)..16)
// is overwritten with zeros (the caller's layout leaves room: one unmasked store is cheaper).
inline void compress_store(float* dst, std::uint32_t mask, vf v) {
#if defined(__AVX512F__)
  _mm512_storeu_ps(dst, _mm512_maskz_compress_ps(static_cast<__mmask16>(mask), (__m512)v));
#else
  int n = 0;
  for (int l = 0; l < kL; ++l)
    if (mask >> l & 1) dst[n++] = v[l];
  for (; n < kL; ++n) dst[n] = 0.f;
#endif
}

// Transposes 16 vectors: afterwards r[j][i] is the former r[i][j]. Three rounds of two-source
// shuffles with constant patterns (GCC emits vunpcklps/vshufps/vshuff32x4, 64 in all).
typedef int vi __attribute__((vector_size(64)));

inline void transpose16(vf* r) {
  constexpr vi kUnpackLo = {0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29};
  constexpr vi kUnpackHi = {2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31};
  constexpr vi kPairLo = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  constexpr vi kPairHi = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
  constexpr vi kChunks01 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  constexpr vi kChunks23 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  constexpr vi kChunksEven = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  constexpr vi kChunksOdd = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  vf t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], kUnpackLo);
    t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], kUnpackHi);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = __builtin_shuffle(t[4 * i], t[4 * i + 2], kPairLo);
    u[4 * i + 1] = __builtin_shuffle(t[4 * i], t[4 * i + 2], kPairHi);
    u[4 * i + 2] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], kPairLo);
    u[4 * i + 3] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], kPairHi);
  }
  // u[4 i + j], 128-bit chunk m: rows 4 i .. 4 i + 3 of column 4 m + j.
  for (int j = 0; j < 4; ++j) {
    const vf a0 = __builtin_shuffle(u[j], u[4 + j], kChunks01), a1 = __builtin_shuffle(u[j], u[4 + j], kChunks23);
    const vf b0 = __builtin_shuffle(u[8 + j], u[12 + j], kChunks01),
             b1 = __builtin_shuffle(u[8 + j], u[12 + j], kChunks23);
    r[j] = __builtin_shuffle(a0, b0, kChunksEven);
    r[4 + j] = __builtin_shuffle(a0, b0, kChunksOdd);
    r[8 + j] = __builtin_shuffle(a1, b1, kChunksEven);
    r[12 + j] = __builtin_shuffle(a1, b1, kChunksOdd);
  }
}

// One padded input row split by column phase: dst[sp][j] = padded[4 j + sp] for j < gw, where
// padded[v] = xrow[v - pl] inside the row and 0 outside it (all zeros when xrow is null).
inline void split_row(const float* xrow, i64 pl, i64 iw, float* const* dst, i64 gw) {
#if defined(__AVX512F__)
  const __m512i idx0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  for (i64 j = 0; j < gw; j += kL) {
    __m512 v[4];
    for (int q = 0; q < 4; ++q) {
      const i64 col0 = 4 * j + kL * q - pl;  // input column of lane 0
      const i64 lo = std::max<i64>(0, -col0), hi = std::min<i64>(kL, iw - col0);
      if (!xrow || hi <= lo) {
        v[q] = _mm512_setzero_ps();
        continue;
      }
      const std::uint32_t m = ((hi >= kL ? 0xFFFFu : (1u << hi) - 1) >> lo) << lo;
      // Lanes outside the row are masked off and never read, so the address may lie before it.
      v[q] = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m),
                                   reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(xrow) + col0 * 4));
    }
    const __mmask16 keep = gw - j >= kL ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (gw - j)) - 1);
    for (int sp = 0; sp < 4; ++sp) {
      const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(sp));
      const __m512 lo = _mm512_permutex2var_ps(v[0], idx, v[1]), hi = _mm512_permutex2var_ps(v[2], idx, v[3]);
      _mm512_mask_storeu_ps(dst[sp] + j, keep, _mm512_permutex2var_ps(lo, halves, hi));
    }
  }
#else
  for (i64 j = 0; j < gw; ++j)
    for (int sp = 0; sp < 4; ++sp) {
      const i64 col = 4 * j + sp - pl;
      dst[sp][j] = xrow && col >= 0 && col < iw ? xrow[col] : 0.f;
    }
#endif
}

// Row r of an output tile (lanes 4 r .. 4 r + n of v) to dst[0..n), n <= 4.
inline void store_tile_row(float* dst, vf v, int r, int n) {
#if defined(__AVX512F__)
  // One masked store whose lane 4 r lands on dst: the lanes before it are masked off.
  const __mmask16 m = static_cast<__mmask16>(((1u << n) - 1) << (4 * r));
  _mm512_mask_storeu_ps(reinterpret_cast<float*>(reinterpret_cast<std::uintptr_t>(dst) - 16 * r), m, (__m512)v);
#else
  for (int e = 0; e < 4; ++e)
    if (e < n) dst[e] = v[4 * (r & 3) + e];
#endif
}

}  // namespace

namespace winograd {

// ---- non-finite and large values
//
// The transforms mix every value of a tile into every transformed value, so one Inf or NaN in the
// input would spread over its whole 4x4 output tile (and Inf - Inf would turn it into NaN), and
// values near the float range overflow in B^T d B where the direct sum does not. A call runs on
// the transforms only when all of its values are finite and bounded so that no intermediate can
// overflow; otherwise it takes the implicit GEMM, whose non-finite outputs are exactly those of the
// direct convolution. The check is one read of each operand, a max over magnitude bits.

// Growth of a magnitude through each 2-D transform: the largest row sum of |B^T| (36 + 97 + 36)
// and of |A^T| (1 + 8 + 8 + 27 + 27), squared; G's rows sum to at most 1/36, so |U| <= max|w|;
// A dY A^T (backward weight) grows by at most |A|'s 65^2, below A^T's bound.
constexpr double kInputGrowth = 169.0 * 169.0;
constexpr double kOutputGrowth = 71.0 * 71.0;
// Below FLT_MAX (3.4e38) with room for the bias and the rounding of the bound itself.
constexpr double kSafeMagnitude = 1e38;

// The largest |p[i]| of p[0, n) as float bits without the sign: for non-negative floats the
// integer order is the numeric order, with Inf and NaN above every finite value, so one integer
// max (which vectorises) finds both the magnitude and any non-finite value.
namespace {

std::uint32_t magnitude_bits(const float* p, i64 n) {
  constexpr i64 kChunk = i64(1) << 16;
  const i64 chunks = ceil_div(n, kChunk);
  std::vector<std::uint32_t> part(static_cast<size_t>(chunks), 0);
  parallel_for(chunks, [&](i64 c, int) {
    const float* q = p + c * kChunk;
    const i64 m = std::min(kChunk, n - c * kChunk);
    std::uint32_t best = 0;
    for (i64 i = 0; i < m; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, q + i, sizeof bits);
      bits &= 0x7fffffffu;
      best = bits > best ? bits : best;
    }
    part[c] = best;
  });
  std::uint32_t best = 0;
  for (std::uint32_t b : part) best = std::max(best, b);
  return best;
}

// max|p[i]| of p[0, n), or +inf when any value is Inf or NaN.
double max_magnitude(const float* p, i64 n) {
  const std::uint32_t bits = magnitude_bits(p, n);
  if (bits >= 0x7f800000u) return std::numeric_limits<double>::infinity();
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

}  // namespace

bool transforms_stay_finite(const float* a, i64 na, const float* b, i64 nb, double terms) {
  const double ma = max_magnitude(a, na);
  if (!(ma * kInputGrowth < kSafeMagnitude)) return false;
  const double mb = max_magnitude(b, nb);
  return mb * kInputGrowth < kSafeMagnitude &&
         ma * mb * kInputGrowth * kOutputGrowth * std::max(terms, 1.0) < kSafeMagnitude;
}

}  // namespace winograd

bool winograd_eligible(const ConvGeometry& g) {
  return g.groups == 1 && g.kernel[0] == 1 && g.kernel[1] == 3 && g.kernel[2] == 3 && g.in[0] == 1 &&
         g.pad_before[0] == 0 && g.pad_after[0] == 0 && g.stride[1] == 1 && g.stride[2] == 1 && g.dilation[1] == 1 &&
         g.dilation[2] == 1;
}

namespace {

// Eligible, and either forced by CONVKERN_WINOGRAD (0: never, 1: whenever eligible) or large
// enough: each transformed weight serves T tiles, and with few tiles the weight transform (36
// values per filter tap set, written once and streamed once) costs more than the
// multiplications saved.
bool winograd_wins(const ConvGeometry& g, i64 min_tiles) {
  if (!winograd_eligible(g)) return false;
  const char* env = std::getenv("CONVKERN_WINOGRAD");
  if (env && env[0] == '0') return false;
  if (env && env[0] == '1') return true;
  const i64 tiles = g.N * ceil_div(g.out[1], kM) * ceil_div(g.out[2], kM);
  return g.C >= kMinChannels && g.K >= kMinChannels && tiles >= min_tiles;
}

}  // namespace

bool winograd_forward_wins(const ConvGeometry& g) { return winograd_wins(g, kMinTiles); }

bool winograd::transposed_geometry(const ConvGeometry& g, ConvGeometry& t) {
  for (int a = 1; a < 3; ++a)
    if (g.pad_before[a] > 2 || g.pad_after[a] > 2) return false;  // would need cropping
  const i64 in[3] = {1, g.out[1], g.out[2]}, kernel[3] = {1, 3, 3}, ones[3] = {1, 1, 1};
  const i64 before[3] = {0, 2 - g.pad_before[1], 2 - g.pad_before[2]};
  const i64 after[3] = {0, 2 - g.pad_after[1], 2 - g.pad_after[2]};
  t = make_conv_geometry(2, g.N, g.K, in, g.C, g.K, kernel, ones, before, after, ones, 1);
  return t.out[1] == g.in[1] && t.out[2] == g.in[2];
}

void winograd::rotated_weights(const ConvGeometry& g, const float* w, float* wt) {
  parallel_for(g.C, [&](i64 c, int) {
    for (i64 k = 0; k < g.K; ++k)
      for (int tap = 0; tap < 9; ++tap) wt[(c * g.K + k) * 9 + tap] = w[(k * g.C + c) * 9 + 8 - tap];
  });
}

bool winograd_backward_data_wins(const ConvGeometry& g) {
  ConvGeometry t;
  return winograd_eligible(g) && transposed_geometry(g, t) && winograd_forward_wins(t);
}

namespace {
void forward_transforms(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
}  // namespace

void winograd_backward_data_nchw_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  ConvGeometry t;
  if (!transposed_geometry(g, t)) fail("winograd_backward_data_nchw_f32: padding above 2");
  if (g.N == 0) return;
  // Not the transposed forward on the implicit GEMM: its zero-padded dy would multiply non-finite
  // weights (0 * Inf) in products the gradient does not have; col2im has exactly the gradient's.
  if (!transforms_stay_finite(dy, g.N * g.K * g.out_plane(), w, g.K * g.C * 9, double(g.K)))
    return conv_backward_data_channels_first(g, dy, w, dx);
  AlignedBuffer<float> wt(checked_mul(g.C * g.K, 9, "winograd weights"));
  rotated_weights(g, w, wt.data());
  forward_transforms(t, dy, wt.data(), nullptr, dx);
}

void winograd_forward_nchw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (g.N == 0) return;
  if (!transforms_stay_finite(x, g.N * g.C * g.in_plane(), w, g.K * g.C * 9, double(g.C)))
    return conv_forward_channels_first(g, x, w, bias, y);
  forward_transforms(g, x, w, bias, y);
}

namespace {

void forward_transforms(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  Grid grid;
  grid.TH = ceil_div(OH, kM);
  grid.TW = ceil_div(OW, kM);
  grid.GH = grid.TH + 1;
  grid.GW = grid.TW + 1;
  grid.T = checked_mul(N, grid.TH * grid.TW, "winograd tiles");
  const i64 T = grid.T, mblocks = ceil_div(K, MR);

  // 1. Transformed weights U = G w G^T, packed as the micro-kernel's A operand per alpha point:
  //    [alpha][m-block][c][MR], rows past K zero. One vector holds the MR output channels of a block.
  // Every buffer indexed by alpha point gets a stride that is an odd number of cache lines: 36
  // streams whose addresses differ by multiples of 4 KiB would share one L1 set.
  const i64 u_as = odd_lines(checked_mul(mblocks * MR, C, "winograd weights"));
  Workspace ws;
  float* const U = reserve(ws.u, checked_mul(kA2, u_as, "winograd weights"));
  parallel_for(mblocks, [&](i64 mb, int) {
    const i64 rows = std::min(MR, K - mb * MR);
    const __mmask16 keep = static_cast<__mmask16>((1u << MR) - 1);
    (void)keep;
    alignas(64) float taps[9][kL] = {};
    for (i64 c = 0; c < C; ++c) {
      for (i64 i = 0; i < rows; ++i) {
        const float* src = w + ((mb * MR + i) * C + c) * 9;
        for (int tap = 0; tap < 9; ++tap) taps[tap][i] = src[tap];
      }
      vf f[9];
      for (int tap = 0; tap < 9; ++tap) f[tap] = load(taps[tap]);
      vf cols[kA][3], u[kA][kA];
      for (int col = 0; col < 3; ++col) {
        const vf gcol[3] = {f[col], f[3 + col], f[6 + col]};
        vf o[kA];
        weight_1d(gcol, o);
        for (int a = 0; a < kA; ++a) cols[a][col] = o[a];
      }
      for (int a = 0; a < kA; ++a) weight_1d(cols[a], u[a]);
      for (int a = 0; a < kA; ++a)
        for (int b = 0; b < kA; ++b) {
          float* dst = U + (a * kA + b) * u_as + (mb * C + c) * MR;
#if defined(__AVX512F__)
          _mm512_mask_storeu_ps(dst, keep, (__m512)u[a][b]);
#else
          for (i64 i = 0; i < MR; ++i) dst[i] = u[a][b][i];
#endif
        }
    }
  });

  // Work items: blocks of NB tiles (a multiple of NR) x groups of output-channel blocks.
  const i64 nt = get_num_threads();
  const i64 nb_want = kTilePanels * NR;
  i64 tblocks = ceil_div(T, nb_want);
  if (tblocks < 4 * nt) tblocks = ceil_div(tblocks, nt) * nt;
  const i64 NB = ceil_div(ceil_div(T, tblocks), NR) * NR, npan = NB / NR;
  tblocks = ceil_div(T, NB);
  const i64 kb_max = kChannelBlocks;
  // Output channels are split between items only to give every thread work (few tile blocks);
  // within an item they run in chunks of kb_max blocks that reuse one transformed input.
  const i64 kgroups = row_groups_for_threads(mblocks, tblocks);
  const i64 kper = ceil_div(mblocks, kgroups), KI = std::min(kper, kb_max) * MR;
  const i64 items = tblocks * kgroups;
  const int slots = scratch_slots(items);
  const i64 KC = kReductionChunk;
  const i64 v_ps = C * NR + kL;  // panel stride: room for the last compressed store's spill
  const i64 v_as = odd_lines(npan * v_ps + kL), m_as = odd_lines(KI * NB);
  const i64 v_size = kA2 * v_as, m_size = kA2 * m_as;
  const i64 max_groups = npan * (ceil_div(NR * grid.GH * grid.GW, grid.TH * grid.TW * kL) + 2);
  float* const vbuf = reserve(ws.v, checked_mul(slots, v_size, "winograd scratch"));
  float* const mbuf = reserve(ws.m, checked_mul(slots, m_size, "winograd scratch"));
  // Grid rows one item's tiles read (their own rows and the next), and one phase plane of them.
  const i64 GH = grid.GH, GW = grid.GW;
  const i64 real_rows = ceil_div(NB, grid.TW) + 1,
            item_rows = real_rows + ceil_div(real_rows, grid.TH) + ceil_div(kL, GW) + 3;
  const i64 lp_stride = odd_lines(item_rows * GW + GW + 2 * kL);
  const i64 lp_size = 16 * lp_stride;
  AlignedBuffer<float> lpbuf(slots * lp_size);
  std::vector<InGroup> group_store(static_cast<size_t>(slots * max_groups));
  std::vector<i64> tile_store(static_cast<size_t>(slots * NB * 2));
  const i64 ystride = K * OH * OW;

  parallel_for(items, [&](i64 item, int th_id) {
    const i64 kg = item % kgroups, tb = item / kgroups;
    const i64 mb0 = kg * kper, mbn = std::min(mblocks, mb0 + kper) - mb0;
    if (mbn <= 0) return;
    const i64 t0 = tb * NB, count = std::min(NB, T - t0), ipan = ceil_div(count, NR);
    float* V = vbuf + th_id * v_size;
    float* Mb = mbuf + th_id * m_size;

    // Vector groups of the input transform, per panel.
    InGroup* groups = group_store.data() + th_id * max_groups;
    i64 ngroups = 0;
    for (i64 q = 0; q < ipan; ++q) {
      const i64 a = t0 + q * NR, b = std::min(t0 + count, a + NR);
      const i64 pa = grid.cell(a), pb = grid.cell(b - 1) + 1;
      i64 lane = 0;
      for (i64 p = pa; p < pb; p += kL) {
        std::uint32_t mask = 0;
        for (int l = 0; l < kL && p + l < pb; ++l) {
          const i64 cell = p + l, j = cell % grid.GW, i = (cell / grid.GW) % grid.GH;
          if (i < grid.TH && j < grid.TW) mask |= 1u << l;
        }
        if (mask) groups[ngroups++] = {p, q, lane, mask};
        lane += __builtin_popcount(mask);
      }
    }

    // 3. Input transform: V[alpha][panel][c][lane] = (B^T d B)[alpha] of each tile.
    if (count < ipan * NR)  // lanes past the last tile: zeros, so the GEMM reads finite values
      for (int a = 0; a < kA2; ++a)
        for (i64 c = 0; c < C; ++c) {
          float* v = V + a * v_as + (ipan - 1) * v_ps + c * NR;
          std::fill(v + count - (ipan - 1) * NR, v + NR, 0.f);
        }
    // Grid rows read: from the first group's to the one holding the last group's farthest cell.
    const i64 R0 = groups[0].cell / GW, R1 = std::min((groups[ngroups - 1].cell + kL + GW) / GW + 1, N * GH);
    float* const lp = lpbuf.data() + th_id * lp_size;  // [16 phases][lp_stride]
    for (int ph = 0; ph < 16; ++ph)  // rows past the batch (read only by lanes that are dropped)
      std::fill(lp + ph * lp_stride + (R1 - R0) * GW, lp + (ph + 1) * lp_stride, 0.f);
    for (i64 c = 0; c < C; ++c) {
      for (i64 R = R0; R < R1; ++R) {
        const i64 n = R / GH, i = R % GH;
        const float* xc = x + (n * C + c) * IH * IW;
        for (int rp = 0; rp < 4; ++rp) {
          const i64 h = 4 * i + rp - pt;
          float* dst[4];
          for (int sp = 0; sp < 4; ++sp) dst[sp] = lp + (rp * 4 + sp) * lp_stride + (R - R0) * GW;
          split_row(h >= 0 && h < IH ? xc + h * IW : nullptr, pl, IW, dst, GW);
        }
      }
      for (i64 gi = 0; gi < ngroups; ++gi) {
        const InGroup grp = groups[gi];  // a copy: the vector stores below may alias anything
        const float* base = lp + grp.cell - R0 * GW;
        vf d[kA][kA], t[kA][kA];
        for (int r = 0; r < kA; ++r)
          for (int s = 0; s < kA; ++s) d[r][s] = load(base + ((r % 4) * 4 + s % 4) * lp_stride + (r / 4) * GW + s / 4);
        for (int s = 0; s < kA; ++s) {  // vertical: column s
          vf col[kA], o[kA];
          for (int r = 0; r < kA; ++r) col[r] = d[r][s];
          input_1d(col, o);
          for (int i = 0; i < kA; ++i) t[i][s] = o[i];
        }
        float* vc = V + grp.panel * v_ps + c * NR + grp.lane;
        for (int i = 0; i < kA; ++i) {
          vf o[kA];
          input_1d(t[i], o);
          for (int j = 0; j < kA; ++j) compress_store(vc + (i * kA + j) * v_as, grp.mask, o[j]);
        }
      }
    }

    i64* tile_off = tile_store.data() + th_id * NB * 2;  // [j]: offset of the tile in y; [NB + j]: rows | cols << 8
    for (i64 j = 0; j < count; ++j) {
      const i64 t = t0 + j, per = grid.TH * grid.TW, n = t / per, i = (t % per) / grid.TW, jj = t % grid.TW;
      tile_off[j] = n * ystride + kM * i * OW + kM * jj;
      tile_off[NB + j] = std::min<i64>(kM, OH - kM * i) | std::min<i64>(kM, OW - kM * jj) << 8;
    }
    for (i64 mc = mb0; mc < mb0 + mbn; mc += kb_max) {
      const i64 mcn = std::min(kb_max, mb0 + mbn - mc);
      // 4. Per alpha point: Mb[alpha][k][tile] = U[alpha][k][:] . V[alpha][:][tile].
      for (int a = 0; a < kA2; ++a)
        for (i64 c0 = 0; c0 < C; c0 += KC) {
          const i64 kc = std::min(KC, C - c0);
          for (i64 q = 0; q < ipan; ++q) {
            const float* B = V + a * v_as + q * v_ps + c0 * NR;
            for (i64 mb = 0; mb < mcn; ++mb)
              mk.run(kc, U + a * u_as + ((mc + mb) * C + c0) * MR, B, Mb + a * m_as + mb * MR * NB + q * NR, NB,
                     c0 > 0);
          }
        }

      // 5. Output transform: y = A^T m A per tile, clipped to the output, plus the bias.
      for (i64 kk = 0; kk < mcn * MR; ++kk) {
        const i64 k = mc * MR + kk;
        if (k >= K) break;
        const float b = bias ? bias[k] : 0.f;
        float* yk = y + k * OH * OW;
        for (i64 j0 = 0; j0 < count; j0 += kL) {
          const i64 nj = std::min<i64>(kL, count - j0);
          const float* m = Mb + kk * NB + j0;
          vf s[kM][kA], out[kL];
          for (int j = 0; j < kA; ++j) {  // vertical, column j
            vf col[kA], o[kM];
            for (int a = 0; a < kA; ++a) col[a] = load(m + (a * kA + j) * m_as);
            output_1d(col, o);
            for (int r = 0; r < kM; ++r) s[r][j] = o[r];
          }
          for (int r = 0; r < kM; ++r) {
            vf o[kM];
            output_1d(s[r], o);
            for (int c = 0; c < kM; ++c) out[r * kM + c] = o[c] + b;
          }
          transpose16(out);  // out[l]: tile j0 + l, lane 4 r + c
          for (i64 l = 0; l < nj; ++l) {
            const i64 info = tile_off[NB + j0 + l];
            const int rows = static_cast<int>(info & 255), cols = static_cast<int>(info >> 8);
            float* dst = yk + tile_off[j0 + l];
            for (int r = 0; r < rows; ++r) store_tile_row(dst + r * OW, out[l], r, cols);
          }
        }
      }
    }
  });
}

}  // namespace

bool winograd_backward_weight_wins(const ConvGeometry& g) { return winograd_wins(g, kWgradMinTiles); }

namespace {

// Where 16 consecutive channels c0 .. c0 + 15 go in packed panels of width P (panel p holds
// channels p P .. p P + P - 1 as rows of P floats, panels pstride apart): one masked store per
// panel touched, at an offset from the row of the tile in panel 0. Lanes n .. 15 are dropped.
struct ChannelStores {
  int count;
  i64 offset[5];  // floats: lane l lands at offset + l (lanes outside the panel masked off)
  std::uint32_t mask[5];  // 16 lanes span at most 5 panels of P >= 4 (the generic kernel's MR)
};

ChannelStores channel_stores(i64 P, i64 pstride, i64 c0, i64 n) {
  ChannelStores cs{};
  for (i64 p = c0 / P; p * P < c0 + n; ++p) {
    const i64 lo = std::max(c0, p * P) - c0, hi = std::min(c0 + n, (p + 1) * P) - c0;
    cs.offset[cs.count] = p * pstride + c0 - p * P;
    cs.mask[cs.count++] = ((hi >= kL ? 0xFFFFu : (1u << hi) - 1) >> lo) << lo;
  }
  return cs;
}

inline void store_channels(float* row, const ChannelStores& cs, vf v) {
  for (int e = 0; e < cs.count; ++e) {
    // The address of lane 0 may lie before the panel (or the buffer): those lanes are masked off.
    float* base = reinterpret_cast<float*>(reinterpret_cast<std::uintptr_t>(row) + cs.offset[e] * 4);
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(base, static_cast<__mmask16>(cs.mask[e]), (__m512)v);
#else
    for (int l = 0; l < kL; ++l)
      if (cs.mask[e] >> l & 1) base[l] = v[l];
#endif
  }
}

}  // namespace

void winograd_backward_weight_nchw_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  if (N == 0 || OH == 0 || OW == 0) {
    std::fill(dw, dw + K * C * 9, 0.f);
    return;
  }
  // Each dU sums one product per tile; the tiles of the whole batch add up.
  const double tiles = double(N) * double(ceil_div(OH, kM)) * double(ceil_div(OW, kM));
  if (!transforms_stay_finite(x, N * C * g.in_plane(), dy, N * K * g.out_plane(), tiles))
    return conv_backward_weight_channels_first(g, dy, x, dw);
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  Grid grid;
  grid.TH = ceil_div(OH, kM);
  grid.TW = ceil_div(OW, kM);
  grid.GH = grid.TH + 1;
  grid.GW = grid.TW + 1;
  grid.T = checked_mul(N, grid.TH * grid.TW, "winograd tiles");
  const i64 T = grid.T, GH = grid.GH, GW = grid.GW;
  const i64 TC = kWgradChunk;
  const i64 mblocks = ceil_div(K, MR), cpanels = ceil_div(C, NR);
  const i64 Kp = mblocks * MR, Cp = cpanels * NR;
  const i64 cgroups = ceil_div(C, kL), kgroups = ceil_div(K, kL);

  // Packed transforms of one chunk of TC tiles, per alpha point: V as the micro-kernel's B
  // panels [c panel][tile][NR], M = A dY A^T as its A panels [k block][tile][MR]. The sums over
  // tiles, dU[alpha][k][c], accumulate chunk after chunk in chunk order.
  const i64 vp_as = odd_lines(Cp * TC), mp_as = odd_lines(Kp * TC), du_as = odd_lines(Kp * Cp);
  GradWorkspace ws;
  float* const Vp = reserve(ws.vp, checked_mul(kA2, vp_as, "winograd scratch"));
  float* const Mp = reserve(ws.mp, checked_mul(kA2, mp_as, "winograd scratch"));
  float* const dU = reserve(ws.du, checked_mul(kA2, du_as, "winograd scratch") + kL);
  // Channels between the last group of 16 and the last panel's end are never written: zeros.
  for (int a = 0; a < kA2; ++a) {
    for (i64 c = cgroups * kL; c < Cp; ++c)
      for (i64 t = 0; t < TC; ++t) Vp[a * vp_as + (c / NR) * TC * NR + t * NR + c % NR] = 0.f;
    for (i64 k = kgroups * kL; k < Kp; ++k)
      for (i64 t = 0; t < TC; ++t) Mp[a * mp_as + (k / MR) * TC * MR + t * MR + k % MR] = 0.f;
  }

  // Per transform item (16 channels of x or of dY): the phase planes of one channel and the
  // transforms of 16 channels, [alpha][16][tile lane], before they are transposed into panels.
  const int slots = scratch_slots(cgroups + kgroups);
  const i64 sp_stride = TC + kL;
  const i64 st_size = kA2 * kL * sp_stride;
  float* const stage = reserve(ws.stage, checked_mul(slots, st_size, "winograd scratch"));
  const i64 real_rows = ceil_div(TC, grid.TW) + 1,
            item_rows = real_rows + ceil_div(real_rows, grid.TH) + ceil_div(kL, GW) + 3;
  const i64 lp_stride = odd_lines(item_rows * GW + GW + 2 * kL);
  const i64 lp_size = 16 * lp_stride;
  AlignedBuffer<float> lpbuf(slots * lp_size);
  const i64 max_groups = ceil_div(TC * GH * GW, grid.TH * grid.TW * kL) + 2;
  std::vector<InGroup> groups(static_cast<size_t>(max_groups));

  for (i64 t0 = 0; t0 < T; t0 += TC) {
    const i64 count = std::min(TC, T - t0);
    // Vector groups of this chunk's tiles (one panel, lanes running over the chunk).
    i64 ngroups = 0;
    {
      const i64 pa = grid.cell(t0), pb = grid.cell(t0 + count - 1) + 1;
      i64 lane = 0;
      for (i64 p = pa; p < pb; p += kL) {
        std::uint32_t mask = 0;
        for (int l = 0; l < kL && p + l < pb; ++l) {
          const i64 cell = p + l, j = cell % GW, i = (cell / GW) % GH;
          if (i < grid.TH && j < grid.TW) mask |= 1u << l;
        }
        if (mask) groups[ngroups++] = {p, 0, lane, mask};
        lane += __builtin_popcount(mask);
      }
    }
    const i64 R0 = groups[0].cell / GW, R1 = std::min((groups[ngroups - 1].cell + kL + GW) / GW + 1, N * GH);

    // 1. Transforms: items 0 .. cgroups - 1 take 16 input channels, the rest 16 output channels.
    parallel_for(cgroups + kgroups, [&](i64 item, int th_id) {
      const bool is_x = item < cgroups;
      const i64 ch0 = (is_x ? item : item - cgroups) * kL, nch = is_x ? C : K;
      float* const st = stage + th_id * st_size;
      float* const lp = lpbuf.data() + th_id * lp_size;
      for (int ph = 0; ph < 16; ++ph) std::fill(lp + ph * lp_stride + (R1 - R0) * GW, lp + (ph + 1) * lp_stride, 0.f);
      for (i64 ci = 0; ci < kL; ++ci) {
        const i64 ch = ch0 + ci;
        if (ch >= nch) {  // past the last channel: zero rows
          for (int a = 0; a < kA2; ++a)
            std::fill(st + (a * kL + ci) * sp_stride, st + (a * kL + ci + 1) * sp_stride, 0.f);
          continue;
        }
        for (i64 R = R0; R < R1; ++R) {
          const i64 n = R / GH, i = R % GH;
          const float* plane = is_x ? x + (n * C + ch) * IH * IW : dy + (n * K + ch) * OH * OW;
          const i64 rows = is_x ? IH : OH, cols = is_x ? IW : OW, top = is_x ? pt : 0, left = is_x ? pl : 0;
          for (int rp = 0; rp < 4; ++rp) {
            const i64 h = 4 * i + rp - top;
            float* dst[4];
            for (int sp = 0; sp < 4; ++sp) dst[sp] = lp + (rp * 4 + sp) * lp_stride + (R - R0) * GW;
            split_row(h >= 0 && h < rows ? plane + h * cols : nullptr, left, cols, dst, GW);
          }
        }
        for (i64 gi = 0; gi < ngroups; ++gi) {
          const InGroup grp = groups[gi];
          const float* base = lp + grp.cell - R0 * GW;
          float* sc = st + ci * sp_stride + grp.lane;
          if (is_x) {  // V = B^T d B
            vf d[kA][kA], t[kA][kA];
            for (int r = 0; r < kA; ++r)
              for (int s = 0; s < kA; ++s)
                d[r][s] = load(base + ((r % 4) * 4 + s % 4) * lp_stride + (r / 4) * GW + s / 4);
            for (int s = 0; s < kA; ++s) {
              vf col[kA], o[kA];
              for (int r = 0; r < kA; ++r) col[r] = d[r][s];
              input_1d(col, o);
              for (int i = 0; i < kA; ++i) t[i][s] = o[i];
            }
            for (int i = 0; i < kA; ++i) {
              vf o[kA];
              input_1d(t[i], o);
              for (int j = 0; j < kA; ++j) compress_store(sc + (i * kA + j) * kL * sp_stride, grp.mask, o[j]);
            }
          } else {  // M = A dY A^T
            vf d[kM][kM], t[kA][kM];
            for (int r = 0; r < kM; ++r)
              for (int s = 0; s < kM; ++s) d[r][s] = load(base + (r * 4 + s) * lp_stride);
            for (int s = 0; s < kM; ++s) {
              vf col[kM], o[kA];
              for (int r = 0; r < kM; ++r) col[r] = d[r][s];
              output_grad_1d(col, o);
              for (int i = 0; i < kA; ++i) t[i][s] = o[i];
            }
            for (int i = 0; i < kA; ++i) {
              vf o[kA];
              output_grad_1d(t[i], o);
              for (int j = 0; j < kA; ++j) compress_store(sc + (i * kA + j) * kL * sp_stride, grp.mask, o[j]);
            }
          }
        }
      }
      // Transpose 16 channels x 16 tiles at a time into the packed panels.
      float* const dst = is_x ? Vp : Mp;
      const i64 P = is_x ? NR : MR, as = is_x ? vp_as : mp_as, nvalid = std::min<i64>(kL, (is_x ? Cp : Kp) - ch0);
      const ChannelStores cs = channel_stores(P, TC * P, ch0, nvalid);
      for (int a = 0; a < kA2; ++a)
        for (i64 tb = 0; tb < count; tb += kL) {
          vf r[kL];
          for (int ci = 0; ci < kL; ++ci) r[ci] = load(st + (a * kL + ci) * sp_stride + tb);
          transpose16(r);  // r[l]: the 16 channels of tile tb + l
          const i64 nt = std::min<i64>(kL, count - tb);
          for (i64 l = 0; l < nt; ++l) store_channels(dst + a * as + (tb + l) * P, cs, r[l]);
        }
    });

    // 2. dU[alpha] (+)= M[alpha] . V[alpha]^T over the chunk's tiles, one item per alpha point.
    parallel_for(kA2, [&](i64 a, int) {
      for (i64 cp = 0; cp < cpanels; ++cp)
        for (i64 mb = 0; mb < mblocks; ++mb)
          mk.run(count, Mp + a * mp_as + mb * TC * MR, Vp + a * vp_as + cp * TC * NR,
                 dU + a * du_as + mb * MR * Cp + cp * NR, Cp, t0 > 0);
    });
  }

  weights_from_transformed(g, dU, du_as, Cp, dw);
}

// 16 input channels per vector.
void winograd::weights_from_transformed(const ConvGeometry& g, const float* dU, i64 du_as, i64 ldu, float* dw) {
  const i64 C = g.C, K = g.K;
  parallel_for(K, [&](i64 k, int) {
    for (i64 c0 = 0; c0 < C; c0 += kL) {
      vf u[kA][kA], h[kA][3], gg[3][3];
      for (int a = 0; a < kA2; ++a) u[a / kA][a % kA] = load(dU + a * du_as + k * ldu + c0);
      for (int i = 0; i < kA; ++i) weight_grad_1d(u[i], h[i]);
      for (int s = 0; s < 3; ++s) {
        vf col[kA], o[3];
        for (int i = 0; i < kA; ++i) col[i] = h[i][s];
        weight_grad_1d(col, o);
        for (int r = 0; r < 3; ++r) gg[r][s] = o[r];
      }
      const i64 nc = std::min<i64>(kL, C - c0);
      float* out = dw + (k * C + c0) * 9;
      for (i64 l = 0; l < nc; ++l)
        for (int tap = 0; tap < 9; ++tap) out[l * 9 + tap] = gg[tap / 3][tap % 3][l];
    }
  });
}

}  // namespace convkern::cpu
