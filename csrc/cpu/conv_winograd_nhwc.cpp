// conv_winograd_nhwc.cpp — Winograd F(4x4, 3x3) for channels-last (NHWC) 3x3 stride-1 float32
// layers: the transforms and numerics of conv_winograd.cpp, laid out for channels innermost.
//
// Why a second layout. With channels innermost, the value (r, s) of one tile for a run of
// channels is one contiguous vector load, so every transform works on vectors of channels, one
// tile at a time: no phase split, no lane compression and no register transposes. And the
// GEMMs fall into the micro-kernel's forms with no packing of activations at all:
//   forward           M^T[alpha] (tiles x K) = V^T[alpha] (tiles x C) . U^T[alpha] (C x K)
//                     V^T's rows (one tile, C contiguous values) are read in place as the
//                     transposed A operand (run_transposed_a); U^T is packed as B panels.
//   backward weight   dU[alpha] (K x C) = sum over tiles M^T[alpha]^T . V^T[alpha]
//                     both operands' rows are tiles (K and C contiguous values), read in place
//                     by run_strided, the reduction running over the tiles.
// Before this kernel, channels-last 3x3 layers ran the channels-first kernel on transposed
// copies of their activations: two to three full passes over memory around each call.
//
// Blocking. Forward: a work item is a block of tiles (a few MR blocks) times a share of the
// output channels. Per item: V^T of its tiles ([alpha][tile][C], in L2), then per chunk of output
// channels the 36 GEMMs into M^T ([alpha][tile][channel]) and the output transform, which writes
// each tile's 4x4 positions as runs of output channels. Backward data is the forward pass of the
// transposed layer (rotated kernel, channels swapped), as in channels-first. Backward weight:
// tiles in fixed chunks; per chunk, the input and grad_output transforms ([alpha][tile][channel])
// in parallel over tiles, then one item per alpha point adds the chunk's products to dU, chunk
// after chunk; last, dw = G^T dU G (shared with channels-first).
//
// Vectors hold 16 channels under AVX-512 and 8 otherwise: unlike the channels-first kernel, whose
// vectors are 16 tiles of its phase planes, nothing here asks for a width, so the AVX2 set keeps
// its transforms in 16 ymm registers instead of pairs.
//
// Determinism and numerics: as conv_winograd.cpp (the same transforms, the same 64-channel
// reduction chunks, a fixed order per output); the same bits with any thread count.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "conv.h"
#include "conv_winograd.h"
#include "gemm_tile.h"
#include "microkernel.h"
#include "parallel.h"
#include "winograd_transforms.h"

namespace convkern::cpu {

using namespace winograd;

namespace {

#if defined(__AVX512F__)
constexpr int kCL = 16;  // channels per vector
#else
constexpr int kCL = 8;
#endif
typedef float vc __attribute__((vector_size(kCL * 4)));
typedef float vc_u __attribute__((vector_size(kCL * 4), aligned(4)));  // unaligned access

// Tiles per forward work item: about 32, in whole MR blocks.
constexpr i64 kTileTarget = 32;
// Output channels per GEMM + output-transform pass (the M^T block of an item stays in L2).
constexpr i64 kChannelChunk = 192;
// Reduction chunk of the forward GEMMs, in channels: also bounds the float32 error of the sums
// (the same as channels-first, so that both layouts give the same error).
constexpr i64 kReductionChunk = 64;
// Backward weight: tiles per chunk (the GEMMs' reduction depth per call).
constexpr i64 kWgradChunk = 256;
// Backward weight: tiles per transform item.
constexpr i64 kWgradTileItem = 16;

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

// V = B^T d B of one tile for channels [c0, c0 + nc) of a channels-last image (rows of W cells of
// `ld` floats, `rows` x `cols` of them), the tile's 6x6 window starting at (h0, w0); cells outside
// the image read as zero. out[alpha] receives the 36 vectors, `as` floats apart.
inline void input_tile(const float* img, i64 rows, i64 cols, i64 ld, i64 h0, i64 w0, i64 c0, int nc, float* out,
                       i64 as) {
  const unsigned rin = inside_mask(h0, rows, kA), cin = inside_mask(w0, cols, kA);
  vc t[kA][kA];
  for (int s = 0; s < kA; ++s) {  // vertical: column s
    vc col[kA], o[kA];
    for (int r = 0; r < kA; ++r)
      col[r] = (rin >> r & cin >> s & 1) ? load_first(img + ((h0 + r) * cols + w0 + s) * ld + c0, nc) : vc{};
    input_1d(col, o);
    for (int i = 0; i < kA; ++i) t[i][s] = o[i];
  }
  for (int i = 0; i < kA; ++i) {
    vc o[kA];
    input_1d(t[i], o);
    for (int j = 0; j < kA; ++j) store(out + (i * kA + j) * as, o[j]);
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
void forward_nhwc(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 N = g.N, C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  const i64 TH = ceil_div(OH, kM), TW = ceil_div(OW, kM);
  const i64 T = checked_mul(N, TH * TW, "winograd tiles");
  const i64 kpanels = ceil_div(K, NR);

  // 1. Transformed weights U^T = (G w G^T)^T as the micro-kernel's B panels, [alpha][k panel][c][NR]
  //    (columns past K zero), kCL output channels per vector.
  const i64 u_as = odd_lines(checked_mul(kpanels * NR, C, "winograd weights"));
  Workspace ws;
  float* const U = ws.u.reserve(checked_mul(kA2, u_as, "winograd weights"));
  const i64 kvecs = kpanels * NR / kCL;
  parallel_for(kvecs, [&](i64 kv, int) {
    const i64 k0 = kv * kCL, kp = k0 / NR, lane0 = k0 % NR, nk = std::max<i64>(0, std::min<i64>(kCL, K - k0));
    alignas(64) float taps[9][kCL] = {};
    for (i64 c = 0; c < C; ++c) {
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
        for (int b = 0; b < kA; ++b) store(U + (a * kA + b) * u_as + (kp * C + c) * NR + lane0, u[a][b]);
    }
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
  const i64 v_as = odd_lines(NB * ldv), m_as = odd_lines(NB * KI);
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
        for (i64 k0 = kbase; k0 < kend; k0 += kCL) {
          const int nk = static_cast<int>(std::min<i64>(kCL, kend - k0));
          const float* m = M + j * KI + (k0 - kbase);
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
      }
    }
  });
}

}  // namespace

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
  const i64 mt_as = odd_lines(TC * ldm), vt_as = odd_lines(TC * ldv), du_as = odd_lines(Kp * Cp);
  GradWorkspace ws;
  float* const Mt = ws.mt.reserve(checked_mul(kA2, mt_as, "winograd scratch"));
  float* const Vt = ws.vt.reserve(checked_mul(kA2, vt_as, "winograd scratch"));
  // + 16: the last row's last vector of 16 channels may read past it (weights_from_transformed).
  float* const dU = ws.du.reserve(checked_mul(kA2, du_as, "winograd scratch") + 16);
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
        const unsigned rin = inside_mask(out_at.h0, OH, kM), cin = inside_mask(out_at.w0, OW, kM);
        const float* img = dy + out_at.image;
        for (i64 kv = 0; kv < kvecs; ++kv) {
          const i64 k0 = kv * kCL;
          const int nk = static_cast<int>(std::min<i64>(kCL, K - k0));
          vc t[kA][kM];
          for (int s = 0; s < kM; ++s) {
            vc col[kM], o[kA];
            for (int r = 0; r < kM; ++r)
              col[r] = (rin >> r & cin >> s & 1) ? load_first(img + ((out_at.h0 + r) * OW + out_at.w0 + s) * K + k0, nk)
                                                 : vc{};
            output_grad_1d(col, o);
            for (int i = 0; i < kA; ++i) t[i][s] = o[i];
          }
          for (int i = 0; i < kA; ++i) {
            vc o[kA];
            output_grad_1d(t[i], o);
            for (int jj = 0; jj < kA; ++jj) store(Mt + (i * kA + jj) * mt_as + j * ldm + k0, o[jj]);
          }
        }
      }
    });

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

}  // namespace convkern::cpu
