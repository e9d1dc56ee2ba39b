// conv_winograd.cpp — Winograd F(4x4, 3x3) convolution for 3x3 stride-1 float32 layers.
//
// Why. A 3x3 stride-1 convolution computes each 4x4 block of outputs from a 6x6 block of inputs.
// Winograd's minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016, arXiv:1509.09308) does it with 36 multiplications per (input channel,
// output channel) pair instead of 144: transform the input tile (V = B^T d B) and the filter
// (U = G g G^T), multiply elementwise, transform back (Y = A^T M A). Summed over channels, the
// elementwise products become 36 independent GEMMs, one per alpha point, which run on the
// implicit-GEMM micro-kernel (microkernel.h): 4x fewer multiplications than the direct form, plus
// transforms whose cost is shared by K (input), C (output) or the tiles (weights).
//
// Numerics. The transform matrices follow Lavin & Gray's Toom-Cook construction, but with the
// interpolation points 0, +-3/2, +-2/3, infinity instead of 0, +-1, +-2, infinity: with the usual
// points the float32 error of resnet-sized layers came out at 1.3-1.9x the test tolerance (rtol
// 1e-4, atol 1e-5 sqrt(9 C)); with these, and channel sums in chunks of 64, at 0.2-0.45x (simulated
// and measured over C = 64..512). Rows are scaled to small integers so every coefficient of B^T
// and A^T is exact in float; the weight transform's 1/36, 1/520 ... live in G. float64 keeps
// the implicit GEMM (its tests ask for 1e-10).
//
// Layout. The kernel works on channels-last activations: the value (r, s) of one tile for a run
// of channels is one contiguous vector load, so every transform works on vectors of channels (16
// under AVX-512, 8 otherwise), one tile at a time, and the GEMMs read the activations' transforms
// in place, with no packing:
//   forward           M^T[alpha] (tiles x K) = V^T[alpha] (tiles x C) . U^T[alpha] (C x K)
//                     V^T's rows (one tile, C contiguous values) are the transposed A operand
//                     (run_transposed_a); U^T is packed as B panels.
//   backward weight   dU[alpha] (K x C) = sum over tiles M^T[alpha]^T . V^T[alpha], M^T = A dY A^T
//                     both operands' rows are tiles (K and C contiguous values), read in place
//                     by run_strided, the reduction running over the tiles; dw = G^T dU G.
//   backward data     the forward convolution of grad_output with the kernel rotated by 180
//                     degrees and the channels swapped, padded by 2 - p (padding <= 2).
// Channels-first activations are copied to channels-last and back (one pass over each, 16 x 16
// register transposes): that costs less than a channels-first kernel's own transforms did (v4,
// with vectors of 16 tiles on phase-split planes, compressed lanes and transposed outputs: its
// transforms took as long as its GEMMs, here a third; see docs/performance.md).
//
// Blocking. Forward: a work item is a block of about 32 tiles (whole MR blocks) times a share of
// the output channels. Per item: V^T of its tiles ([alpha][tile][C], in L2), then per chunk of
// 192 output channels the 36 GEMMs (reduction in chunks of 64 channels) into M^T
// ([alpha][tile][channel]) and the output transform, which writes each tile's 4x4 positions as
// runs of output channels with the bias. The transformed weights are computed once per call. Items
// whose tiles are few split the output channels between threads. With fewer than kMinTiles tiles
// in the batch (small planes: resnet50.l4's 7x7) U is never written out: all tiles' V^T is made
// once and each item, one panel of output channels, transforms its weights a reduction chunk at a
// time (forward_few_tiles); the backward weight, likewise, turns each block's 36 products into
// weights as soon as they are summed. Backward weight: tiles in fixed
// chunks of kWgradChunk; per chunk, the input and grad_output transforms in parallel over tiles,
// then one item per alpha point adds the chunk's products to dU, chunk after chunk. Every buffer
// indexed by alpha has a stride of an odd number of cache lines (36 streams 4 KiB apart would
// share one L1 set), and the large ones are leased from the scratch cache (fresh pages cost as
// much as the transforms). Error over the tests' shapes and resnet-sized layers: 0.2-0.7x the
// tolerance (rtol 1e-4, atol 1e-5 sqrt(terms)).
//
// Determinism. Each output is one fixed sequence of operations: its tile's transforms, GEMMs with
// a fixed channel (or tile) chunking; tile blocks and channel splits only choose which thread does
// it. The same bits with any thread count.
//
// Dispatch (kernel_table.cpp): float32, 2-D 3x3, stride 1, dilation 1, groups 1, C and K >=
// kMinChannels and at least kMinForwardTiles output tiles in the batch for the forward and
// backward data, kWgradMinTiles for the backward weight (with fewer, the weight transforms
// outweigh the saving). CONVKERN_WINOGRAD=0 forces the implicit GEMM,
// =1 Winograd wherever it applies (both read on every call; for tests and benchmarks). 3-D layers
// with 3x3 spatial taps run through it over depth slices (conv_winograd_3d.cpp).
//
// Current: v7 (how it got here: docs/performance.md, "Kernel history"). Measured 2026-12-03 on the
// 2-core AMD EPYC (Zen 5, AVX-512), 2 threads, best of 12 calls, N = 8, forward / backward data /
// backward weight: resnet50.l1.3x3 channels-last 1.98 / 2.04 / 4.24 ms (channels-first, with the
// copies: 2.50 / 2.46 / 3.30); vgg16.conv3_2 channels-first 33.3 / 33.7 / 33.6; resnet50.l4.3x3
// (32 tiles) channels-last 2.32 / 3.18 / 4.36.
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

namespace convkern::cpu {
namespace {

constexpr int kM = 4;  // output tile: 4 x 4
constexpr int kA = kM + 2;  // input tile / transform size: 6 x 6
constexpr int kA2 = kA * kA;  // alpha points: 36 GEMMs
// Dispatch thresholds (see winograd_wins).
constexpr i64 kMinChannels = 16;
// Fewer tiles than kMinTiles: no pass writes all 36 transformed values of every weight out (the
// forward transforms its weights per panel as it goes, the backward weight turns its products into
// weights block by block).
constexpr i64 kMinTiles = 96;
constexpr i64 kMinForwardTiles = 8;
constexpr i64 kWgradMinTiles = 16;

#if defined(__AVX512F__)
constexpr int kCL = 16;  // channels per vector
#else
constexpr int kCL = 8;
#endif
// Every transform is one out-of-line function: inlined, its copies in different callers (a
// parallel region's body and the same loop run serially) could be contracted into FMAs
// differently, and the same input would round differently with another thread count.
#define CONVKERN_TRANSFORM __attribute__((noinline)) static
typedef float vc __attribute__((vector_size(kCL * 4)));
typedef float vc_u __attribute__((vector_size(kCL * 4), aligned(4)));  // unaligned access

// The widest micro-kernel panel (NR floats): AVX-512's.
constexpr i64 kMaxNR = 32;
// Tiles per forward work item: about 32, in whole MR blocks.
constexpr i64 kTileTarget = 32;
// Output channels per GEMM + output-transform pass (the M^T block of an item stays in L2).
constexpr i64 kChannelChunk = 192;
// Reduction chunk of the forward GEMMs, in channels: also bounds the float32 error of the sums
// (see Numerics).
constexpr i64 kReductionChunk = 64;
// Backward weight: tiles per chunk (the GEMMs' reduction depth per call).
constexpr i64 kWgradChunk = 256;
// Backward weight: tiles per transform item.
constexpr i64 kWgradTileItem = 16;
// Backward weight with few tiles: MR blocks of output channels per item (their 36 products stay
// in L2 while G^T . G turns them into weights).
constexpr i64 kWgradFewBlocks = 4;

inline vc load(const float* p) { return *reinterpret_cast<const vc_u*>(p); }
inline void store(float* p, vc v) { *reinterpret_cast<vc_u*>(p) = v; }

// p[0, n) and zeros after, n <= kCL.
inline vc load_first(const float* p, int n) {
  if (n == kCL) return load(p);
#if defined(__AVX512F__)
  return (vc)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#else
  alignas(64) float tmp[kCL] = {};
  std::memcpy(tmp, p, sizeof(float) * static_cast<size_t>(n));
  return load(tmp);
#endif
}

inline void store_first(float* p, vc v, int n) {
  if (n == kCL) return store(p, v);
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), (__m512)v);
#else
  alignas(64) float tmp[kCL];
  store(tmp, v);
  std::memcpy(p, tmp, sizeof(float) * static_cast<size_t>(n));
#endif
}

// 1-D transforms of F(4, 3) for the interpolation points 0, +-3/2, +-2/3 and infinity, rows
// scaled to small integers (exact in float) and the scale folded into G:
//   B^T = [36   0 -97   0  36  0]     G = [1/36      0      0   ]     A^T = [1  8   8  27  27 0]
//         [ 0 -12  -8  27  18  0]         [1/1170  1/780  1/520 ]           [0 12 -12  18 -18 0]
//         [ 0  12  -8 -27  18  0]         [1/1170 -1/780  1/520 ]           [0 18  18  12  12 0]
//         [ 0 -18 -27   8  12  0]         [-1/520 -1/780 -1/1170]           [0 27 -27   8  -8 1]
//         [ 0  18 -27  -8  12  0]         [-1/520  1/780 -1/1170]
//         [ 0  36   0 -97   0 36]         [0        0      1/36 ]
// The symmetric point pairs make each pair of rows one sum and one difference.
template <class V>
inline void input_1d(const V* d, V* o) {
  const V e1 = d[4] * 18.f - d[2] * 8.f, f1 = d[3] * 27.f - d[1] * 12.f;
  const V e3 = d[4] * 12.f - d[2] * 27.f, f3 = d[3] * 8.f - d[1] * 18.f;
  o[0] = (d[0] + d[4]) * 36.f - d[2] * 97.f;
  o[1] = e1 + f1;
  o[2] = e1 - f1;
  o[3] = e3 + f3;
  o[4] = e3 - f3;
  o[5] = (d[1] + d[5]) * 36.f - d[3] * 97.f;
}

template <class V>
inline void output_1d(const V* m, V* y) {
  const V sp = m[1] + m[2], sm = m[1] - m[2], tp = m[3] + m[4], tm = m[3] - m[4];
  y[0] = m[0] + sp * 8.f + tp * 27.f;
  y[1] = sm * 12.f + tm * 18.f;
  y[2] = sp * 18.f + tp * 12.f;
  y[3] = sm * 27.f + tm * 8.f + m[5];
}

template <class V>
inline void weight_1d(const V* g, V* u) {
  const V e = g[0] * (1.f / 1170) + g[2] * (1.f / 520), o = g[1] * (1.f / 780);
  const V e2 = g[0] * (1.f / 520) + g[2] * (1.f / 1170);
  u[0] = g[0] * (1.f / 36);
  u[1] = e + o;
  u[2] = e - o;
  u[3] = -(e2 + o);
  u[4] = o - e2;
  u[5] = g[2] * (1.f / 36);
}

// The transposes of output_1d and weight_1d, for the weight gradient: grad_output tiles go
// through A (4 -> 6: m = A y), the summed products back through G^T (6 -> 3).
template <class V>
inline void output_grad_1d(const V* y, V* m) {
  const V e1 = y[0] * 8.f + y[2] * 18.f, o1 = y[1] * 12.f + y[3] * 27.f;
  const V e3 = y[0] * 27.f + y[2] * 12.f, o3 = y[1] * 18.f + y[3] * 8.f;
  m[0] = y[0];
  m[1] = e1 + o1;
  m[2] = e1 - o1;
  m[3] = e3 + o3;
  m[4] = e3 - o3;
  m[5] = y[3];
}

template <class V>
inline void weight_grad_1d(const V* u, V* g) {
  const V s12 = u[1] + u[2], s34 = u[3] + u[4];
  g[0] = u[0] * (1.f / 36) + s12 * (1.f / 1170) - s34 * (1.f / 520);
  g[1] = (u[1] - u[2] - u[3] + u[4]) * (1.f / 780);
  g[2] = s12 * (1.f / 520) - s34 * (1.f / 1170) + u[5] * (1.f / 36);
}

// Which of a tile's input rows (columns) lie inside the image: bit r set for row h0 + r.
inline unsigned inside_mask(i64 first, i64 size, int count) {
  unsigned m = 0;
  for (int r = 0; r < count; ++r)
    if (first + r >= 0 && first + r < size) m |= 1u << r;
  return m;
}

// One tile of a channels-last image: its origin (first row and column, padding applied), which
// rows and columns exist, and where its top-left cell would be.
struct TileAt {
  i64 image;  // element offset of the tile's image
  i64 h0, w0;
};

inline TileAt tile_at(i64 t, i64 TH, i64 TW, i64 image_size) {
  const i64 per = TH * TW, n = t / per, r = t % per;
  return {n * image_size, (r / TW) * kM, (r % TW) * kM};
}

// The 2-D transform of one window of a channels-last image (`rows` x `cols` cells of `ld` floats):
// its kIn x kIn cells from (h0, w0), those outside the image read as zero, for channels
// [c0, c0 + nc); Transform1d (6 values out) applied down the columns, then along the rows. The 36
// vectors go to out, `as` floats apart. Input tiles: kIn = 6, B^T (V = B^T d B); grad_output
// tiles: kIn = 4, A (M = A dY A^T).
template <int kIn, void (*Transform1d)(const vc*, vc*)>
CONVKERN_TRANSFORM void transform_window(const float* img, i64 rows, i64 cols, i64 ld, i64 h0, i64 w0, i64 c0, int nc,
                                         float* out, i64 as) {
  const unsigned rin = inside_mask(h0, rows, kIn), cin = inside_mask(w0, cols, kIn);
  vc t[kA][kIn];
  for (int s = 0; s < kIn; ++s) {  // vertical: column s
    vc col[kIn], o[kA];
    for (int r = 0; r < kIn; ++r)
      col[r] = (rin >> r & cin >> s & 1) ? load_first(img + ((h0 + r) * cols + w0 + s) * ld + c0, nc) : vc{};
    Transform1d(col, o);
    for (int i = 0; i < kA; ++i) t[i][s] = o[i];
  }
  for (int i = 0; i < kA; ++i) {
    vc o[kA];
    Transform1d(t[i], o);
    for (int j = 0; j < kA; ++j) store(out + (i * kA + j) * as, o[j]);
  }
}

constexpr auto input_tile = transform_window<kA, input_1d<vc>>;
constexpr auto output_grad_tile = transform_window<kM, output_grad_1d<vc>>;

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

// Whether sums of `terms` products a*b, each operand transformed as above, stay finite in float.
bool transforms_stay_finite(const float* a, i64 na, const float* b, i64 nb, double terms) {
  const double ma = max_magnitude(a, na);
  if (!(ma * kInputGrowth < kSafeMagnitude)) return false;
  const double mb = max_magnitude(b, nb);
  return mb * kInputGrowth < kSafeMagnitude &&
         ma * mb * kInputGrowth * kOutputGrowth * std::max(terms, 1.0) < kSafeMagnitude;
}

bool transposed_geometry(const ConvGeometry& g, ConvGeometry& t) {
  for (int a = 1; a < 3; ++a)
    if (g.pad_before[a] > 2 || g.pad_after[a] > 2) return false;  // would need cropping
  const i64 in[3] = {1, g.out[1], g.out[2]}, kernel[3] = {1, 3, 3}, ones[3] = {1, 1, 1};
  const i64 before[3] = {0, 2 - g.pad_before[1], 2 - g.pad_before[2]};
  const i64 after[3] = {0, 2 - g.pad_after[1], 2 - g.pad_after[2]};
  t = make_conv_geometry(2, g.N, g.K, in, g.C, g.K, kernel, ones, before, after, ones, 1);
  return t.out[1] == g.in[1] && t.out[2] == g.in[2];
}

void rotated_weights(const ConvGeometry& g, const float* w, float* wt) {
  parallel_for(g.C, [&](i64 c, int) {
    for (i64 k = 0; k < g.K; ++k)
      for (int tap = 0; tap < 9; ++tap) wt[(c * g.K + k) * 9 + tap] = w[(k * g.C + c) * 9 + 8 - tap];
  });
}

// dw[k][c] = G^T dU[alpha][k][c] G, where dU holds the 36 alpha points du_as floats apart, each
// K rows of ldu floats (ldu a multiple of kCL, at least C), kCL input channels per vector.
// dw of one output channel for nc <= kCL input channels: du points at their dU values of the
// first alpha point (36 of them, du_as floats apart), out at their first weight.
CONVKERN_TRANSFORM void weight_grad_vectors(const float* du, i64 du_as, int nc, float* out) {
  vc u[kA][kA], h[kA][3], gg[3][3];
  for (int a = 0; a < kA2; ++a) u[a / kA][a % kA] = load(du + a * du_as);
  for (int i = 0; i < kA; ++i) weight_grad_1d(u[i], h[i]);
  for (int s = 0; s < 3; ++s) {
    vc col[kA], o[3];
    for (int i = 0; i < kA; ++i) col[i] = h[i][s];
    weight_grad_1d(col, o);
    for (int r = 0; r < 3; ++r) gg[r][s] = o[r];
  }
  for (int l = 0; l < nc; ++l)
    for (int tap = 0; tap < 9; ++tap) out[l * 9 + tap] = gg[tap / 3][tap % 3][l];
}

void weights_from_transformed(const ConvGeometry& g, const float* dU, i64 du_as, i64 ldu, float* dw) {
  parallel_for(g.K, [&](i64 k, int) {
    for (i64 c0 = 0; c0 < g.C; c0 += kCL)
      weight_grad_vectors(dU + k * ldu + c0, du_as, static_cast<int>(std::min<i64>(kCL, g.C - c0)),
                          dw + (k * g.C + c0) * 9);
  });
}

// U^T = (G w G^T)^T for output channels [k0, k0 + nk) (nk <= kCL) and input channel c: 36 vectors,
// `as` floats apart, from out. taps is the caller's scratch, zero past lane nk.
CONVKERN_TRANSFORM void weight_vectors(const float* w, i64 C, i64 k0, i64 nk, i64 c, float (&taps)[9][kCL], float* out,
                                       i64 as) {
  for (i64 i = 0; i < nk; ++i) {
    const float* src = w + ((k0 + i) * C + c) * 9;
    for (int tap = 0; tap < 9; ++tap) taps[tap][i] = src[tap];
  }
  vc cols[kA][3], u[kA][kA];
  for (int col = 0; col < 3; ++col) {
    const vc gcol[3] = {load(taps[col]), load(taps[3 + col]), load(taps[6 + col])};
    vc o[kA];
    weight_1d(gcol, o);
    for (int a = 0; a < kA; ++a) cols[a][col] = o[a];
  }
  for (int a = 0; a < kA; ++a) weight_1d(cols[a], u[a]);
  for (int a = 0; a < kA; ++a)
    for (int b = 0; b < kA; ++b) store(out + (a * kA + b) * as, u[a][b]);
}

// y = A^T m A + bias for one tile and output channels [k0, k0 + nk): m points at the tile's row
// of M^T (36 rows m_as apart), yt at the tile's first output; rows x cols of it exist.
CONVKERN_TRANSFORM void output_tile(const float* m, i64 m_as, const float* bias, i64 k0, int nk, float* yt, i64 OW,
                                    i64 K, int rows, int cols) {
  const vc b = bias ? load_first(bias + k0, nk) : vc{};
  vc s[kM][kA];
  for (int col = 0; col < kA; ++col) {  // vertical, column col
    vc in[kA], o[kM];
    for (int a = 0; a < kA; ++a) in[a] = load(m + (a * kA + col) * m_as);
    output_1d(in, o);
    for (int r = 0; r < kM; ++r) s[r][col] = o[r];
  }
  for (int r = 0; r < rows; ++r) {
    vc o[kM];
    output_1d(s[r], o);
    for (int c = 0; c < cols; ++c) store_first(yt + (r * OW + c) * K + k0, o[c] + b, nk);
  }
}

// Scratch of one call, leased from the scratch cache (see conv_winograd.cpp's Workspace).
struct Workspace {
  CachedBuffer<float> u, v, m;
};

struct GradWorkspace {
  CachedBuffer<float> vt, mt, du;
};

// y = conv(x, w) + bias, all transforms; x, y channels-last.
// Few tiles (small planes: resnet50.l4's 7x7 maps hold 4 tiles an image, 32 in a batch of 8).
// Each transformed weight serves only those few tiles, and writing all of U out to memory and
// reading it back would cost more than the multiplications saved (36 KC floats per filter: 38 MB
// on a 512-channel layer). So V^T of all the tiles is made once, shared by the items, and each
// item, one panel of NR output channels, transforms its weights one reduction chunk at a time into
// a buffer the GEMMs read from cache, then runs the output transform of its channels.
void forward_few_tiles(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  const i64 TH = ceil_div(OH, kM), TW = ceil_div(OW, kM), T = N * TH * TW;
  const i64 rows = ceil_div(T, MR), kpanels = ceil_div(K, NR), KC = kReductionChunk;
  const i64 ldv = ceil_div(C, kCL) * kCL;
  const i64 v_as = odd_line_stride<float>(rows * MR * ldv), u_as = odd_line_stride<float>(KC * NR),
            m_as = odd_line_stride<float>(rows * MR * NR);
  const int slots = scratch_slots(kpanels);
  Workspace ws;
  float* const V = ws.v.reserve(checked_mul(kA2, v_as, "winograd scratch"));
  float* const ubuf = ws.u.reserve(checked_mul(slots * kA2, u_as, "winograd scratch"));
  float* const mbuf = ws.m.reserve(checked_mul(slots * kA2, m_as, "winograd scratch"));
  const i64 in_image = IH * IW * C, out_image = OH * OW * K, cvecs = ldv / kCL;

  // V^T[alpha][tile][c] of every tile; rows past the last tile zero.
  parallel_for(T * cvecs, [&](i64 item, int) {
    const i64 j = item / cvecs, c0 = item % cvecs * kCL;
    const TileAt at = tile_at(j, TH, TW, in_image);
    input_tile(x + at.image, IH, IW, C, at.h0 - pt, at.w0 - pl, c0, static_cast<int>(std::min<i64>(kCL, C - c0)),
               V + j * ldv + c0, v_as);
  });
  for (int a = 0; a < kA2; ++a) std::fill(V + a * v_as + T * ldv, V + a * v_as + rows * MR * ldv, 0.f);

  parallel_for(kpanels, [&](i64 kp, int th_id) {
    float* const U = ubuf + th_id * kA2 * u_as;
    float* const M = mbuf + th_id * kA2 * m_as;
    alignas(64) float taps[kMaxNR / kCL][9][kCL] = {};
    for (i64 c0 = 0; c0 < C; c0 += KC) {
      const i64 kc = std::min(KC, C - c0);
      for (i64 v = 0; v < NR / kCL; ++v) {
        const i64 k0 = kp * NR + v * kCL, nk = std::max<i64>(0, std::min<i64>(kCL, K - k0));
        for (i64 c = 0; c < kc; ++c) weight_vectors(w, C, k0, nk, c0 + c, taps[v], U + c * NR + v * kCL, u_as);
      }
      for (int a = 0; a < kA2; ++a)
        for (i64 rb = 0; rb < rows; ++rb)
          mk.run_transposed_a(kc, V + a * v_as + rb * MR * ldv + c0, ldv, kc, kc, U + a * u_as, NR,
                              M + a * m_as + rb * MR * NR, NR, c0 > 0);
    }
    const i64 kend = std::min(K, (kp + 1) * NR);
    for (i64 j = 0; j < T; ++j) {
      const TileAt at = tile_at(j, TH, TW, out_image);
      float* const yt = y + at.image + (at.h0 * OW + at.w0) * K;
      for (i64 k0 = kp * NR; k0 < kend; k0 += kCL)
        output_tile(M + j * NR + (k0 - kp * NR), m_as, bias, k0, static_cast<int>(std::min<i64>(kCL, kend - k0)), yt,
                    OW, K, static_cast<int>(std::min<i64>(kM, OH - at.h0)),
                    static_cast<int>(std::min<i64>(kM, OW - at.w0)));
    }
  });
}

void forward_nhwc(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  const i64 TH = ceil_div(OH, kM), TW = ceil_div(OW, kM);
  const i64 T = checked_mul(N, TH * TW, "winograd tiles");
  if (T < kMinTiles) return forward_few_tiles(g, x, w, bias, y);
  const i64 kpanels = ceil_div(K, NR);

  // 1. Transformed weights U^T = (G w G^T)^T as the micro-kernel's B panels, [alpha][k panel][c][NR]
  //    (columns past K zero), kCL output channels per vector.
  const i64 u_as = odd_line_stride<float>(checked_mul(kpanels * NR, C, "winograd weights"));
  Workspace ws;
  float* const U = ws.u.reserve(checked_mul(kA2, u_as, "winograd weights"));
  const i64 kvecs = kpanels * NR / kCL;
  parallel_for(kvecs, [&](i64 kv, int) {
    const i64 k0 = kv * kCL, kp = k0 / NR, lane0 = k0 % NR, nk = std::max<i64>(0, std::min<i64>(kCL, K - k0));
    alignas(64) float taps[9][kCL] = {};
    for (i64 c = 0; c < C; ++c) weight_vectors(w, C, k0, nk, c, taps, U + (kp * C + c) * NR + lane0, u_as);
  });

  // Work items: blocks of NB tiles (whole MR blocks) x groups of output-channel panels.
  const i64 nt = get_num_threads();
  const i64 nb_want = ceil_div(kTileTarget, MR) * MR;
  i64 tblocks = ceil_div(T, nb_want);
  if (tblocks < 4 * nt) tblocks = ceil_div(tblocks, nt) * nt;
  const i64 NB = ceil_div(ceil_div(T, tblocks), MR) * MR;
  tblocks = ceil_div(T, NB);
  const i64 kgroups = row_groups_for_threads(kpanels, tblocks);
  const i64 kper = ceil_div(kpanels, kgroups), kchunk = std::max<i64>(1, kChannelChunk / NR);
  const i64 KI = std::min(kper, kchunk) * NR;
  const i64 items = tblocks * kgroups;
  const int slots = scratch_slots(items);
  const i64 ldv = ceil_div(C, kCL) * kCL;  // V^T row: one tile's C channels (lanes past C zero)
  const i64 v_as = odd_line_stride<float>(NB * ldv), m_as = odd_line_stride<float>(NB * KI);
  const i64 v_size = kA2 * v_as, m_size = kA2 * m_as;
  float* const vbuf = ws.v.reserve(checked_mul(slots, v_size, "winograd scratch"));
  float* const mbuf = ws.m.reserve(checked_mul(slots, m_size, "winograd scratch"));
  const i64 in_image = IH * IW * C, out_image = OH * OW * K;

  parallel_for(items, [&](i64 item, int th_id) {
    const i64 kg = item % kgroups, tb = item / kgroups;
    const i64 kp0 = kg * kper, kpn = std::min(kpanels, kp0 + kper) - kp0;
    if (kpn <= 0) return;
    const i64 t0 = tb * NB, count = std::min(NB, T - t0), irows = ceil_div(count, MR);
    float* const V = vbuf + th_id * v_size;
    float* const M = mbuf + th_id * m_size;

    // 2. Input transform: V^T[alpha][tile][c]; the rows past the last tile are zeros, so the
    //    GEMM reads finite values.
    for (i64 j = 0; j < count; ++j) {
      const TileAt at = tile_at(t0 + j, TH, TW, in_image);
      for (i64 c0 = 0; c0 < C; c0 += kCL)
        input_tile(x + at.image, IH, IW, C, at.h0 - pt, at.w0 - pl, c0, static_cast<int>(std::min<i64>(kCL, C - c0)),
                   V + j * ldv + c0, v_as);
    }
    for (int a = 0; a < kA2; ++a) std::fill(V + a * v_as + count * ldv, V + a * v_as + irows * MR * ldv, 0.f);

    for (i64 kc0 = kp0; kc0 < kp0 + kpn; kc0 += kchunk) {
      const i64 kcn = std::min(kchunk, kp0 + kpn - kc0);
      // 3. Per alpha point: M^T[alpha][tile][k] = V^T[alpha][tile][:] . U^T[alpha][:][k].
      for (int a = 0; a < kA2; ++a)
        for (i64 c0 = 0; c0 < C; c0 += kReductionChunk) {
          const i64 kc = std::min(kReductionChunk, C - c0);
          for (i64 kp = 0; kp < kcn; ++kp) {
            const float* B = U + a * u_as + ((kc0 + kp) * C + c0) * NR;
            for (i64 rb = 0; rb < irows; ++rb)
              mk.run_transposed_a(kc, V + a * v_as + rb * MR * ldv + c0, ldv, kc, kc, B, NR,
                                  M + a * m_as + rb * MR * KI + kp * NR, KI, c0 > 0);
          }
        }

      // 4. Output transform: y = A^T m A per tile, clipped to the output, plus the bias.
      const i64 kbase = kc0 * NR, kend = std::min(K, (kc0 + kcn) * NR);
      for (i64 j = 0; j < count; ++j) {
        const TileAt at = tile_at(t0 + j, TH, TW, out_image);
        const int rows = static_cast<int>(std::min<i64>(kM, OH - at.h0)),
                  cols = static_cast<int>(std::min<i64>(kM, OW - at.w0));
        float* const yt = y + at.image + (at.h0 * OW + at.w0) * K;
        for (i64 k0 = kbase; k0 < kend; k0 += kCL)
          output_tile(M + j * KI + (k0 - kbase), m_as, bias, k0, static_cast<int>(std::min<i64>(kCL, kend - k0)), yt,
                      OW, K, rows, cols);
      }
    }
  });
}

}  // namespace

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

bool winograd_forward_wins(const ConvGeometry& g) { return winograd_wins(g, kMinForwardTiles); }

bool winograd_backward_data_wins(const ConvGeometry& g) {
  ConvGeometry t;
  return winograd_eligible(g) && transposed_geometry(g, t) && winograd_forward_wins(t);
}

bool winograd_backward_weight_wins(const ConvGeometry& g) { return winograd_wins(g, kWgradMinTiles); }

bool winograd_forward_nhwc_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (g.N == 0) return true;
  if (!transforms_stay_finite(x, g.N * g.C * g.in_plane(), w, g.K * g.C * 9, double(g.C))) return false;
  forward_nhwc(g, x, w, bias, y);
  return true;
}

bool winograd_backward_data_nhwc_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  ConvGeometry t;
  if (!transposed_geometry(g, t)) fail("winograd_backward_data_nhwc_f32: padding above 2");
  if (g.N == 0) return true;
  if (!transforms_stay_finite(dy, g.N * g.K * g.out_plane(), w, g.K * g.C * 9, double(g.K))) return false;
  AlignedBuffer<float> wt(checked_mul(g.C * g.K, 9, "winograd weights"));
  rotated_weights(g, w, wt.data());
  forward_nhwc(t, dy, wt.data(), nullptr, dx);
  return true;
}

bool winograd_backward_weight_nhwc_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  if (N == 0 || OH == 0 || OW == 0) {
    std::fill(dw, dw + K * C * 9, 0.f);
    return true;
  }
  const i64 TH = ceil_div(OH, kM), TW = ceil_div(OW, kM);
  const i64 T = checked_mul(N, TH * TW, "winograd tiles");
  if (!transforms_stay_finite(x, N * C * g.in_plane(), dy, N * K * g.out_plane(), double(T))) return false;
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  const i64 TC = kWgradChunk;
  const i64 mblocks = ceil_div(K, MR), cpanels = ceil_div(C, NR);
  const i64 Kp = mblocks * MR, Cp = cpanels * NR;
  // Rows of the transforms: one tile's channels, wide enough for the GEMMs' MR (NR) columns and
  // the transforms' whole vectors; the columns no transform writes stay zero.
  const i64 ldm = ceil_div(Kp, kCL) * kCL, ldv = ceil_div(Cp, kCL) * kCL;
  const i64 mt_as = odd_line_stride<float>(TC * ldm), vt_as = odd_line_stride<float>(TC * ldv),
            du_as = odd_line_stride<float>(Kp * Cp);
  GradWorkspace ws;
  float* const Mt = ws.mt.reserve(checked_mul(kA2, mt_as, "winograd scratch"));
  float* const Vt = ws.vt.reserve(checked_mul(kA2, vt_as, "winograd scratch"));
  // Fewer tiles than kMinTiles: one chunk, and the summed products of each block of weights go
  // through G^T . G as soon as they are made (below) instead of out to memory and back (36 floats
  // per weight: 38 MB on a 512-channel layer, for 32 tiles' products).
  const bool few = T < kMinTiles;
  float* const dU = few ? nullptr : ws.du.reserve(checked_mul(kA2, du_as, "winograd scratch"));
  const i64 kwritten = ceil_div(K, kCL) * kCL, cwritten = ceil_div(C, kCL) * kCL;
  parallel_for(kA2, [&](i64 a, int) {
    for (i64 t = 0; t < TC; ++t) {
      std::fill(Mt + a * mt_as + t * ldm + kwritten, Mt + a * mt_as + (t + 1) * ldm, 0.f);
      std::fill(Vt + a * vt_as + t * ldv + cwritten, Vt + a * vt_as + (t + 1) * ldv, 0.f);
    }
  });
  const i64 in_image = IH * IW * C, out_image = OH * OW * K;
  const i64 kvecs = ceil_div(K, kCL), cvecs = ceil_div(C, kCL);

  for (i64 t0 = 0; t0 < T; t0 += TC) {
    const i64 count = std::min(TC, T - t0);
    // 1. Transforms of this chunk's tiles: V^T = B^T d B of x, M^T = A dY A^T of grad_output.
    parallel_for(ceil_div(count, kWgradTileItem), [&](i64 item, int) {
      for (i64 j = item * kWgradTileItem; j < std::min(count, (item + 1) * kWgradTileItem); ++j) {
        const TileAt in_at = tile_at(t0 + j, TH, TW, in_image);
        for (i64 cv = 0; cv < cvecs; ++cv)
          input_tile(x + in_at.image, IH, IW, C, in_at.h0 - pt, in_at.w0 - pl, cv * kCL,
                     static_cast<int>(std::min<i64>(kCL, C - cv * kCL)), Vt + j * ldv + cv * kCL, vt_as);
        const TileAt out_at = tile_at(t0 + j, TH, TW, out_image);
        for (i64 kv = 0; kv < kvecs; ++kv)
          output_grad_tile(dy + out_at.image, OH, OW, K, out_at.h0, out_at.w0, kv * kCL,
                           static_cast<int>(std::min<i64>(kCL, K - kv * kCL)), Mt + j * ldm + kv * kCL, mt_as);
      }
    });

    if (few) {
      // Items: kWgradFewBlocks blocks of MR output channels x one panel of NR input channels; the
      // products of all 36 alpha points in a local block, then dw of its weights.
      const i64 kgroups = ceil_div(mblocks, kWgradFewBlocks), la = odd_line_stride<float>(kWgradFewBlocks * MR * NR);
      float* const local = ws.du.reserve(checked_mul(scratch_slots(kgroups * cpanels) * kA2, la, "winograd scratch"));
      parallel_for(kgroups * cpanels, [&](i64 item, int th_id) {
        const i64 cp = item % cpanels, mb0 = item / cpanels * kWgradFewBlocks;
        const i64 mbn = std::min(kWgradFewBlocks, mblocks - mb0);
        float* const L = local + th_id * kA2 * la;
        for (int a = 0; a < kA2; ++a)
          for (i64 mb = 0; mb < mbn; ++mb)
            mk.run_strided(count, Mt + a * mt_as + (mb0 + mb) * MR, ldm, Vt + a * vt_as + cp * NR, ldv,
                           L + a * la + mb * MR * NR, NR, false);
        for (i64 kk = 0; kk < mbn * MR && mb0 * MR + kk < K; ++kk)
          for (i64 c0 = 0; c0 < NR && cp * NR + c0 < C; c0 += kCL) {
            const i64 k = mb0 * MR + kk, c = cp * NR + c0;
            weight_grad_vectors(L + kk * NR + c0, la, static_cast<int>(std::min<i64>(kCL, C - c)),
                                dw + (k * C + c) * 9);
          }
      });
      return true;
    }

    // 2. dU[alpha] (+)= M^T[alpha]^T . V^T[alpha] over the chunk's tiles, one item per alpha point.
    parallel_for(kA2, [&](i64 a, int) {
      for (i64 mb = 0; mb < mblocks; ++mb)
        for (i64 cp = 0; cp < cpanels; ++cp)
          mk.run_strided(count, Mt + a * mt_as + mb * MR, ldm, Vt + a * vt_as + cp * NR, ldv,
                         dU + a * du_as + mb * MR * Cp + cp * NR, Cp, t0 > 0);
    });
  }

  weights_from_transformed(g, dU, du_as, Cp, dw);
  return true;
}

// Channels-first activations: channels-last copies, the kernel, and the result copied back; the
// implicit GEMM on the original arrays when the values rule the transforms out.
void winograd_forward_nchw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (g.N == 0) return;
  const ChannelsLastCopy<float> xl(x, g.N, g.in_plane(), g.C), yl(y, g.N, g.out_plane(), g.K);
  if (!winograd_forward_nhwc_f32(g, xl.data, w, bias, yl.data)) return conv_forward_channels_first(g, x, w, bias, y);
  yl.copy_out(y);
}

void winograd_backward_data_nchw_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (g.N == 0) return;
  const ChannelsLastCopy<float> dyl(dy, g.N, g.out_plane(), g.K), dxl(dx, g.N, g.in_plane(), g.C);
  // Not the transposed forward on the implicit GEMM: its zero-padded dy would multiply non-finite
  // weights (0 * Inf) in products the gradient does not have; col2im has exactly the gradient's.
  if (!winograd_backward_data_nhwc_f32(g, dyl.data, w, dxl.data))
    return conv_backward_data_channels_first(g, dy, w, dx);
  dxl.copy_out(dx);
}

void winograd_backward_weight_nchw_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const ChannelsLastCopy<float> dyl(dy, g.N, g.out_plane(), g.K), xl(x, g.N, g.in_plane(), g.C);
  if (!winograd_backward_weight_nhwc_f32(g, dyl.data, xl.data, dw)) conv_backward_weight_channels_first(g, dy, x, dw);
}

}  // namespace convkern::cpu
