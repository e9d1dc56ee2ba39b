// conv_winograd.cpp — Winograd F(4x4, 3x3) convolution for 3x3 stride-1 float32 layers.
//
// (Header comment completed below, with the version history.)
#include "conv_winograd.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gemm_tile.h"
#include "microkernel.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

constexpr int kM = 4;        // output tile: 4 x 4
constexpr int kA = kM + 2;   // input tile / transform size: 6 x 6
constexpr int kA2 = kA * kA; // alpha points: 36 GEMMs
constexpr i64 kMinChannels = 16;  // dispatch thresholds (see winograd_forward_wins)
constexpr i64 kMinTiles = 96;
constexpr int kL = 16;       // lanes of one vector: 16 tiles (transforms) or 12 + 4 output channels (weights)

// Sixteen floats in GCC's vector extension: the transforms are written once with it and compile to
// one zmm register per value under AVX-512 (to pairs or quads of narrower registers elsewhere).
typedef float vf __attribute__((vector_size(64)));
typedef float vf_u __attribute__((vector_size(64), aligned(4)));  // unaligned access

inline vf load(const float* p) { return *reinterpret_cast<const vf_u*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_u*>(p) = v; }
inline vf splat(float s) { return vf{} + s; }

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

// `floats` rounded up to an odd number of 64-byte lines: the stride between the 36 alpha points'
// blocks, so that their streams never share one L1 set (multiples of 4 KiB would).
i64 odd_lines(i64 floats) { return (ceil_div(floats, 16) | 1) * 16; }

// Scratch of the calling thread, kept between calls: the buffers of a large layer (tens of MiB)
// would otherwise be fresh pages on every call, and faulting them in cost as much as the
// transforms that fill them (measured: 18 ms of a 30 ms resnet50.l4.3x3 call).
struct Workspace {
  AlignedBuffer<float> u, xs, v, m;
};

float* reserve(AlignedBuffer<float>& b, i64 count) {
  if (b.size() < count) b.resize(count);
  return b.data();
}

i64 env_int(const char* name, i64 fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

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

// Transposes 16 vectors: afterwards r[j][i] is the former r[i][j].
inline void transpose16(vf* r) {
#if defined(__AVX512F__)
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // u[4 i + j], 128-bit chunk m: rows 4i..4i+3 of column 4m + j.
  for (int j = 0; j < 4; ++j) {
    const __m512 a0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44), a1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 b0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44), b1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = (vf)_mm512_shuffle_f32x4(a0, b0, 0x88);
    r[4 + j] = (vf)_mm512_shuffle_f32x4(a0, b0, 0xDD);
    r[8 + j] = (vf)_mm512_shuffle_f32x4(a1, b1, 0x88);
    r[12 + j] = (vf)_mm512_shuffle_f32x4(a1, b1, 0xDD);
  }
#else
  for (int i = 0; i < kL; ++i)
    for (int j = i + 1; j < kL; ++j) std::swap(r[i][j], r[j][i]);
#endif
}

// dst[sp][j] = src[4 j + sp] for j < n (src readable up to 4 * round_up(n, 16)).
inline void deinterleave4(const float* src, float* const* dst, i64 n) {
  i64 j = 0;
#if defined(__AVX512F__)
  const __m512i idx0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; j < n; j += kL) {
    const __m512 v0 = _mm512_loadu_ps(src + 4 * j), v1 = _mm512_loadu_ps(src + 4 * j + 16);
    const __m512 v2 = _mm512_loadu_ps(src + 4 * j + 32), v3 = _mm512_loadu_ps(src + 4 * j + 48);
    const __mmask16 m = n - j >= kL ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1);
    for (int sp = 0; sp < 4; ++sp) {
      const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(sp));
      const __m512 lo = _mm512_permutex2var_ps(v0, idx, v1), hi = _mm512_permutex2var_ps(v2, idx, v3);
      _mm512_mask_storeu_ps(dst[sp] + j, m, _mm512_shuffle_f32x4(lo, hi, 0x44));
    }
  }
#endif
  for (; j < n; ++j)
    for (int sp = 0; sp < 4; ++sp) dst[sp][j] = src[4 * j + sp];
}

// dst[0..n) = src[0..n), n <= 4 (one row of an output tile).
inline void store_row4(float* dst, vf v, int part, int n) {
#if defined(__AVX512F__)
  const __m512 x = (__m512)v;
  __m128 q;
  switch (part) {
    case 0: q = _mm512_castps512_ps128(x); break;
    case 1: q = _mm512_extractf32x4_ps(x, 1); break;
    case 2: q = _mm512_extractf32x4_ps(x, 2); break;
    default: q = _mm512_extractf32x4_ps(x, 3); break;
  }
  if (n == 4) _mm_storeu_ps(dst, q);
  else _mm_mask_storeu_ps(dst, static_cast<__mmask8>((1u << n) - 1), q);
#else
  for (int e = 0; e < n; ++e) dst[e] = v[4 * part + e];
#endif
}

}  // namespace

bool winograd_eligible(const ConvGeometry& g) {
  return g.groups == 1 && g.kernel[0] == 1 && g.kernel[1] == 3 && g.kernel[2] == 3 && g.in[0] == 1 &&
         g.pad_before[0] == 0 && g.pad_after[0] == 0 && g.stride[1] == 1 && g.stride[2] == 1 &&
         g.dilation[1] == 1 && g.dilation[2] == 1;
}

bool winograd_forward_wins(const ConvGeometry& g) {
  if (!winograd_eligible(g)) return false;
  const char* env = std::getenv("CONVKERN_WINOGRAD");
  if (env && env[0] == '0') return false;
  if (env && env[0] == '1') return true;
  // Each transformed weight serves T tiles: with few tiles the weight transform (36 values per
  // filter tap set, written once and streamed once) costs more than the multiplications saved.
  const i64 tiles = g.N * ceil_div(g.out[1], kM) * ceil_div(g.out[2], kM);
  return g.C >= kMinChannels && g.K >= kMinChannels && tiles >= kMinTiles;
}

void winograd_forward_nchw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (g.N == 0) return;
  auto now = [] { timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6; };
  const bool prof = env_int("CONVKERN_WINO_PROFILE", 0);
  double tp0 = now();
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
  thread_local Workspace ws;
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
  double tp1 = now();

  double tp2 = now();

  // Work items: blocks of NB tiles (a multiple of NR) x groups of output-channel blocks.
  const i64 nt = get_num_threads();
  const i64 nb_want = env_int("CONVKERN_WINO_NB", 2) * NR;
  i64 tblocks = ceil_div(T, nb_want);
  if (tblocks < 4 * nt) tblocks = ceil_div(tblocks, nt) * nt;
  const i64 NB = ceil_div(ceil_div(T, tblocks), NR) * NR, npan = NB / NR;
  tblocks = ceil_div(T, NB);
  const i64 kb_max = std::max<i64>(1, env_int("CONVKERN_WINO_KB", 8));
  // Output channels are split between items only to give every thread work (few tile blocks);
  // within an item they run in chunks of kb_max blocks that reuse one transformed input.
  const i64 kgroups = row_groups_for_threads(mblocks, tblocks);
  const i64 kper = ceil_div(mblocks, kgroups), KI = std::min(kper, kb_max) * MR;
  const i64 items = tblocks * kgroups;
  const int slots = scratch_slots(items);
  const i64 KC = 64;  // reduction chunk: also bounds the float32 rounding error of the sums
  const i64 v_ps = C * NR + kL;  // panel stride: room for the last compressed store's spill
  const i64 v_as = odd_lines(npan * v_ps + kL), m_as = odd_lines(KI * NB);
  const i64 v_size = kA2 * v_as, m_size = kA2 * m_as;
  const i64 max_groups = npan * (ceil_div(NR * grid.GH * grid.GW, grid.TH * grid.TW * kL) + 2);
  float* const vbuf = reserve(ws.v, checked_mul(slots, v_size, "winograd scratch"));
  float* const mbuf = reserve(ws.m, checked_mul(slots, m_size, "winograd scratch"));
  // Grid rows one item's tiles read (their own rows and the next), and one phase plane of them.
  const i64 GH = grid.GH, GW = grid.GW, row_len = ceil_div(4 * GW, kL) * kL + 4 * kL;
  const i64 real_rows = ceil_div(NB, grid.TW) + 1, item_rows = real_rows + ceil_div(real_rows, grid.TH) + ceil_div(kL, GW) + 3;
  const i64 lp_stride = odd_lines(item_rows * GW + GW + 2 * kL);
  const i64 lp_size = 16 * lp_stride + row_len;
  AlignedBuffer<float> lpbuf(slots * lp_size);
  std::vector<InGroup> group_store(static_cast<size_t>(slots * max_groups));
  std::vector<i64> tile_store(static_cast<size_t>(slots * NB * 2));
  const i64 ystride = K * OH * OW;

  double acc_in = 0, acc_gemm = 0, acc_out = 0;
  parallel_for(items, [&](i64 item, int th_id) {
    double q0 = prof && th_id == 0 ? now() : 0;
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
    float* const row = lp + 16 * lp_stride;
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
          if (h < 0 || h >= IH) {
            for (int sp = 0; sp < 4; ++sp) std::fill(dst[sp], dst[sp] + GW, 0.f);
            continue;
          }
          const i64 lo = std::min(pl, 4 * GW), hi = std::min(pl + IW, 4 * GW);
          std::fill(row, row + lo, 0.f);
          std::copy(xc + h * IW, xc + h * IW + (hi - lo), row + lo);
          std::fill(row + hi, row + row_len, 0.f);
          deinterleave4(row, dst, GW);
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

    double q1 = prof && th_id == 0 ? now() : 0, q2 = 0;
    i64* tile_off = tile_store.data() + th_id * NB * 2;  // [j]: offset of the tile in y; [NB + j]: rows | cols << 8
    for (i64 j = 0; j < count; ++j) {
      const i64 t = t0 + j, per = grid.TH * grid.TW, n = t / per, i = (t % per) / grid.TW, jj = t % grid.TW;
      tile_off[j] = n * ystride + kM * i * OW + kM * jj;
      tile_off[NB + j] = std::min<i64>(kM, OH - kM * i) | std::min<i64>(kM, OW - kM * jj) << 8;
    }
    for (i64 mc = mb0; mc < mb0 + mbn; mc += kb_max) {
    const i64 mcn = std::min(kb_max, mb0 + mbn - mc);
    double qa = prof && th_id == 0 ? now() : 0;
    // 4. Per alpha point: Mb[alpha][k][tile] = U[alpha][k][:] . V[alpha][:][tile].
    for (int a = 0; a < kA2; ++a)
      for (i64 c0 = 0; c0 < C; c0 += KC) {
        const i64 kc = std::min(KC, C - c0);
        for (i64 q = 0; q < ipan; ++q) {
          const float* B = V + a * v_as + q * v_ps + c0 * NR;
          for (i64 mb = 0; mb < mcn; ++mb)
            mk.run(kc, U + a * u_as + ((mc + mb) * C + c0) * MR, B, Mb + a * m_as + mb * MR * NB + q * NR,
                   NB, c0 > 0);
        }
      }

    double qb = prof && th_id == 0 ? now() : 0;
    q2 += qb - qa;
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
          for (int r = 0; r < rows; ++r) store_row4(dst + r * OW, out[l], r, cols);
        }
      }
    }
    }
    if (prof && th_id == 0) acc_in += q1 - q0, acc_gemm += q2, acc_out += now() - q1 - q2;
  });
  if (prof) std::fprintf(stderr, "U %.3f  xs %.3f  items %lld NB %lld KI %lld, main %.3f ms (thread 0: in %.3f gemm %.3f out %.3f)\n", tp1 - tp0, tp2 - tp1, (long long)items, (long long)NB, (long long)KI, now() - tp2, acc_in, acc_gemm, acc_out);
}

}  // namespace convkern::cpu
