// conv_winograd.cpp — Winograd F(m x m, 3 x 3) convolution for 3x3 stride-1 float32 layers.
//
// Header comment: see the end of the first version's notes below (filled in as versions land).
#include "conv_winograd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <chrono>
#include <cstdio>

#include "gemm_tile.h"
#include "microkernel.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

// The transform matrices of F(m x m, 3 x 3), m = 2 or 4, alpha = m + 2 (Lavin & Gray 2015).
template <int M>
struct Transform;

template <>
struct Transform<2> {
  static constexpr int kA = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct Transform<4> {
  static constexpr int kA = 6;
  static constexpr float BT[6][6] = {{36, 0, -97, 0, 36, 0},   {0, -12, -8, 27, 18, 0}, {0, 12, -8, -27, 18, 0},
                                     {0, -18, -27, 8, 12, 0}, {0, 18, -27, -8, 12, 0}, {0, 36, 0, -97, 0, 36}};
  static constexpr double G[6][3] = {{1.0 / 36, 0, 0},
                                     {1.0 / 1170, 1.0 / 780, 1.0 / 520},
                                     {1.0 / 1170, -1.0 / 780, 1.0 / 520},
                                     {-1.0 / 520, -1.0 / 780, -1.0 / 1170},
                                     {-1.0 / 520, 1.0 / 780, -1.0 / 1170},
                                     {0, 0, 1.0 / 36}};
  static constexpr float AT[4][6] = {{1, 8, 8, 27, 27, 0}, {0, 12, -12, 18, -18, 0}, {0, 18, 18, 12, 12, 0}, {0, 27, -27, 8, -8, 1}};
};

// out[i][t] = sum_r Mat[i][r] * in[r][t] for t < n: a small constant matrix applied lane-wise to
// rows of n values (row strides is, os). Fully unrolled, so zero coefficients vanish and unit
// ones cost no multiply; the t loop vectorises.
template <int R, int S, class Mat>
inline void apply_rows(const Mat& mat, const float* in, i64 is, float* out, i64 os, i64 n) {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* o = out + i * os;
    for (i64 t = 0; t < n; ++t) {
      float acc = 0.f;
#pragma GCC unroll 8
      for (int r = 0; r < S; ++r)
        if (mat[i][r] != 0) acc += mat[i][r] * in[r * is + t];
      o[t] = acc;
    }
  }
}

// Tiles of the output: tile t = (n * TH + th) * TW + tw covers output rows M*th.. and columns
// M*tw.. . A run is a stretch of tiles on one tile row, inside one NR-wide panel of the block.
struct TileRun {
  i64 n, th, tw0, count, pos;  // pos: index of its first tile in the block
};

i64 make_tile_runs(i64 t0, i64 count, i64 TH, i64 TW, i64 NR, TileRun* runs) {
  i64 nr = 0;
  for (i64 j = 0; j < count;) {
    const i64 t = t0 + j, tw = t % TW, row = t / TW;
    const i64 len = std::min({TW - tw, count - j, NR - j % NR});
    runs[nr++] = {row / TH, row % TH, tw, len, j};
    j += len;
  }
  return nr;
}

i64 env_int(const char* name, i64 fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

}  // namespace

bool winograd_eligible(const ConvGeometry& g) {
  return g.groups == 1 && g.kernel[0] == 1 && g.kernel[1] == 3 && g.kernel[2] == 3 && g.in[0] == 1 &&
         g.pad_before[0] == 0 && g.pad_after[0] == 0 && g.stride[1] == 1 && g.stride[2] == 1 &&
         g.dilation[1] == 1 && g.dilation[2] == 1;
}

template <int M>
void winograd_forward_nchw(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  using Tr = Transform<M>;
  constexpr int A = Tr::kA, A2 = A * A;
  if (g.N == 0) return;
  const MicroKernel<float>& mk = micro_kernel<float>();
  const i64 MR = mk.mr, NR = mk.nr;
  const i64 C = g.C, K = g.K, IH = g.in[1], IW = g.in[2], OH = g.out[1], OW = g.out[2];
  const i64 pt = g.pad_before[1], pl = g.pad_before[2];
  const i64 TH = ceil_div(OH, M), TW = ceil_div(OW, M), T = checked_mul(g.N, TH * TW, "winograd tiles");
  const i64 mblocks = ceil_div(K, MR);

  // Transformed weights U = G w G^T, packed as the micro-kernel's A operand per alpha point:
  // [alpha][m-block][c][MR], rows past K zero. Computed in double, rounded once.
  auto now = [] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  const bool prof = env_int("CONVKERN_WINO_PROFILE", 0);
  double tp0 = now();
  AlignedBuffer<float> U(checked_mul(A2 * mblocks * MR, C, "winograd weights"));
  parallel_for(mblocks, [&](i64 mb, int) {
    for (i64 i = 0; i < MR; ++i) {
      const i64 k = mb * MR + i;
      for (i64 c = 0; c < C; ++c) {
        double u[A][A] = {};
        if (k < K) {
          const float* f = w + (k * C + c) * 9;
          double tmp[A][3];
          for (int a = 0; a < A; ++a)
            for (int col = 0; col < 3; ++col)
              tmp[a][col] = Tr::G[a][0] * f[col] + Tr::G[a][1] * f[3 + col] + Tr::G[a][2] * f[6 + col];
          for (int a = 0; a < A; ++a)
            for (int b = 0; b < A; ++b) u[a][b] = tmp[a][0] * Tr::G[b][0] + tmp[a][1] * Tr::G[b][1] + tmp[a][2] * Tr::G[b][2];
        }
        for (int a = 0; a < A; ++a)
          for (int b = 0; b < A; ++b)
            U.data()[(((a * A + b) * mblocks + mb) * C + c) * MR + i] = static_cast<float>(u[a][b]);
      }
    }
  });

  double tp1 = now();
  // Work items: blocks of NB tiles (a multiple of NR) x groups of output-channel blocks.
  const i64 nt = get_num_threads();
  const i64 nb_want = env_int("CONVKERN_WINO_NB", 2) * NR;
  i64 tblocks = ceil_div(T, nb_want);
  if (tblocks < 4 * nt) tblocks = ceil_div(tblocks, nt) * nt;
  const i64 NB = ceil_div(ceil_div(T, tblocks), NR) * NR, npan = NB / NR;
  tblocks = ceil_div(T, NB);
  const i64 kb_max = std::max<i64>(1, env_int("CONVKERN_WINO_KB", 8));
  const i64 kgroups = std::max(ceil_div(mblocks, kb_max), row_groups_for_threads(mblocks, tblocks));
  const i64 kper = ceil_div(mblocks, kgroups), KI = kper * MR;
  const i64 items = tblocks * kgroups;
  const int slots = scratch_slots(items);
  const i64 KC = 64;
  const i64 row_len = M * NR + 2;  // padded input columns of one run (at most NR tiles)
  const i64 v_size = A2 * npan * C * NR, m_size = A2 * KI * NB, scratch_size = A * row_len * 2 + A2 * NR;
  AlignedBuffer<float> vbuf(checked_mul(slots, v_size, "winograd scratch"));
  AlignedBuffer<float> mbuf(checked_mul(slots, m_size, "winograd scratch"));
  AlignedBuffer<float> sbuf(slots * scratch_size);
  std::vector<TileRun> run_store(static_cast<size_t>(slots * NB));

  parallel_for(items, [&](i64 item, int th_id) {
    const i64 kg = item % kgroups, tb = item / kgroups;
    const i64 mb0 = kg * kper, mbn = std::min(mblocks, mb0 + kper) - mb0;
    if (mbn <= 0) return;
    const i64 t0 = tb * NB, count = std::min(NB, T - t0), ipan = ceil_div(count, NR);
    TileRun* runs = run_store.data() + th_id * NB;
    const i64 nruns = make_tile_runs(t0, count, TH, TW, NR, runs);
    float* V = vbuf.data() + th_id * v_size;
    float* Mb = mbuf.data() + th_id * m_size;
    float* rows = sbuf.data() + th_id * scratch_size;  // [A][row_len] input rows
    float* tv = rows + A * row_len;                      // [A][row_len] after the vertical pass
    float* dei = tv + A * row_len;                       // [A][NR] one tv row, split by phase

    // 1. Input transform: V[alpha][panel][c][lane] = (B^T d B)[alpha] of each tile.
    if (count < ipan * NR)  // lanes past the last tile: zeros, so the GEMM reads finite values
      for (int a = 0; a < A2; ++a)
        for (i64 c = 0; c < C; ++c) {
          float* v = V + ((a * npan + ipan - 1) * C + c) * NR;
          std::fill(v + count - (ipan - 1) * NR, v + NR, 0.f);
        }
    for (i64 c = 0; c < C; ++c) {
      for (i64 r = 0; r < nruns; ++r) {
        const TileRun& run = runs[r];
        const float* xc = x + (run.n * C + c) * IH * IW;
        const i64 cols = M * run.count + 2, wbase = M * run.tw0 - pl;
        for (int rr = 0; rr < A; ++rr) {
          const i64 h = M * run.th + rr - pt;
          float* row = rows + rr * row_len;
          if (h < 0 || h >= IH) {
            std::fill(row, row + cols, 0.f);
            continue;
          }
          const float* src = xc + h * IW;
          const i64 lo = std::clamp<i64>(-wbase, 0, cols), hi = std::clamp<i64>(IW - wbase, 0, cols);
          std::fill(row, row + lo, 0.f);
          std::copy(src + wbase + lo, src + wbase + hi, row + lo);
          std::fill(row + hi, row + cols, 0.f);
        }
        apply_rows<A, A>(Tr::BT, rows, row_len, tv, row_len, cols);
        const i64 q = run.pos / NR, lane = run.pos % NR;
        for (int i = 0; i < A; ++i) {
          const float* tvi = tv + i * row_len;
          for (int s = 0; s < A; ++s)
            for (i64 t = 0; t < run.count; ++t) dei[s * NR + t] = tvi[M * t + s];
          // Rows i*A + j of V, one per horizontal output j.
          float* vout = V + ((i * A * npan + q) * C + c) * NR + lane;
          apply_rows<A, A>(Tr::BT, dei, NR, vout, npan * C * NR, run.count);
        }
      }
    }

    if (prof && th_id == 0) std::fprintf(stderr, "in %.3f ", now());
    // 2. Per alpha point: Mb[alpha][k][tile] = U[alpha][k][:] . V[alpha][:][tile].
    for (int a = 0; a < A2; ++a)
      for (i64 c0 = 0; c0 < C; c0 += KC) {
        const i64 kc = std::min(KC, C - c0);
        for (i64 q = 0; q < ipan; ++q) {
          const float* B = V + ((a * npan + q) * C + c0) * NR;
          for (i64 mb = 0; mb < mbn; ++mb)
            mk.run(kc, U.data() + ((a * mblocks + mb0 + mb) * C + c0) * MR, B, Mb + (a * KI + mb * MR) * NB + q * NR,
                   NB, c0 > 0);
        }
      }

    if (prof && th_id == 0) std::fprintf(stderr, "gemm %.3f ", now());
    // 3. Output transform: y = A^T m A per tile, clipped to the output, plus the bias.
    float* sv = rows;  // [M][A][NR] after the vertical pass
    float* out = tv;   // [M][M][NR]
    for (i64 kk = 0; kk < mbn * MR; ++kk) {
      const i64 k = mb0 * MR + kk;
      if (k >= K) break;
      const float b = bias ? bias[k] : 0.f;
      for (i64 r = 0; r < nruns; ++r) {
        const TileRun& run = runs[r];
        const float* m = Mb + kk * NB + run.pos;
        // vertical: sv[i][j][t] = sum_a AT[i][a] m[a*A + j][t]
        for (int j = 0; j < A; ++j) apply_rows<M, A>(Tr::AT, m + j * KI * NB, A * KI * NB, sv + j * NR, A * NR, run.count);
        for (int i = 0; i < M; ++i) apply_rows<M, A>(Tr::AT, sv + i * A * NR, NR, out + i * M * NR, NR, run.count);
        float* yk = y + (run.n * K + k) * OH * OW;
        for (int i = 0; i < M; ++i) {
          const i64 oh = M * run.th + i;
          if (oh >= OH) break;
          float* yrow = yk + oh * OW + M * run.tw0;
          const i64 wcols = std::min<i64>(M * run.count, OW - M * run.tw0);
          for (i64 e = 0; e < wcols; ++e) yrow[e] = out[(i * M + e % M) * NR + e / M] + b;
        }
      }
    }
    if (prof && th_id == 0) std::fprintf(stderr, "out %.3f\n", now());
  });
  if (prof) std::fprintf(stderr, "U %.3f ms, items %lld NB %lld KI %lld, main %.3f ms\n", tp1 - tp0, (long long)items, (long long)NB, (long long)KI, now() - tp1);
}

void winograd_forward_nchw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (env_int("CONVKERN_WINO_M", 4) == 2)
    winograd_forward_nchw<2>(g, x, w, bias, y);
  else
    winograd_forward_nchw<4>(g, x, w, bias, y);
}

}  // namespace convkern::cpu
