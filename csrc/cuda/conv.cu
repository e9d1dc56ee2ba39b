// conv.cu — CUDA convolution: forward, backward-data, backward-weight and the bias gradient,
// 1-D to 3-D (3-D internally, shape.h), groups, channels-first and channels-last, float, double
// and float16 (__half: float loads into float tiles and accumulators, one rounding at the store).
//
// Algorithm. Each pass is an implicit GEMM per group whose operand tiles are gathered from the
// activations straight into shared memory (no im2col buffer in device memory):
//   forward          Y[m, k]  = sum_r X_col[m, r] * W[k, r]       m = (n, output position)
//   backward data    dX[i, c] = sum_(k,q) dY_col[i, (k,q)] * W[k, c, q]   i = (n, input position);
//                    dY_col gathers, for input cell i and kernel offset q, the output whose
//                    window puts offset q on i (zero when the stride skips it): a gather, so
//                    every dX element is written once by one thread, with no atomics.
//   backward weight  dW[k, r] = sum_m dY[m, k] * X_col[m, r], the sum over m = (n, position)
//                    cut into a fixed number of chunks that depends on the problem only; each
//                    chunk's partial dW goes to a workspace (in float for float16, even with one
//                    chunk) and a second kernel adds the chunks in order. Bitwise deterministic;
//                    no floating-point atomics anywhere.
// The reduction index r runs over (c, kd, kh, kw) channels-first and over (kd, kh, kw, c)
// channels-last, so that consecutive threads of a gather read consecutive addresses.
//
// Tiles: 64 x 64 outputs per 256-thread block, 16-deep reduction steps double-buffered in shared
// memory with the next step's global loads in flight during the current step's arithmetic; each
// thread accumulates a 4 x 4 register block whose rows and columns are 16 apart (conflict-free
// shared reads, coalesced stores in both layouts).
// Passes whose channel side is narrow take direct kernels instead ("Direct kernels" below): one
// thread per output element; for the depthwise weight gradient, one block per weight element
// and chunk of positions.
//
// Current: v2 by default for float and float16 (128x128x8 tiles, 8x8 outputs per thread,
// conv_igemm.cuh); float64 runs v1's, described above. v3 (tensor cores) is chosen with
// set_conv_kernel_version. Measured on an H200 (`bash bench/gpu_check.sh`): docs/performance.md,
// "CUDA on an H200"; how it got here: "Kernel history".
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace convkern::cuda {
namespace {

constexpr int kBM = 64;  // GEMM rows per block
constexpr int kBN = 64;  // GEMM columns per block
constexpr int kBK = 16;  // reduction step
static_assert(kBM * kBK == 4 * kThreads && kBN * kBK == 4 * kThreads, "each thread loads 4 elements per operand");

// Backward-weight split of the positions: aim at this many blocks, but give every chunk at least
// kWgradMinChunk positions and use at most kWgradMaxSplits chunks (these bound the workspace).
constexpr i64 kWgradTargetBlocks = 528;
constexpr i64 kWgradMinChunk = 512;
constexpr i64 kWgradMaxSplits = 64;

// Device-side geometry in 32-bit ints; make_dims proves every value and per-sample product fits.
struct ConvDims {
  int N, C, K, Cg, Kg;
  int ID, IH, IW, OD, OH, OW, KD, KH, KW;
  int sd, sh, sw, dd, dh, dw, pd, ph, pw;
  int kvol, khw, R, P, Q, ohw, ihw;
};

ConvDims make_dims(const ConvGeometry& g) {
  for (int a = 0; a < 3; ++a) {
    require_int32(i128(g.in[a]) + g.pad_before[a] + g.pad_after[a], "a padded input extent");
    require_int32(g.stride[a], "a stride");
    require_int32(effective_kernel128(g.kernel[a], g.dilation[a]), "a dilated kernel extent");
  }
  require_int32(g.C * g.in_plane(), "the input elements per sample (C*D*H*W)");
  require_int32(g.K * g.out_plane(), "the output elements per sample (K*oD*oH*oW)");
  require_int32(g.N * g.in_plane(), "the input positions of the batch (N*D*H*W)");
  require_int32(g.N * g.out_plane(), "the output positions of the batch (N*oD*oH*oW)");
  require_int32(g.K * g.reduction(), "the weight elements");
  require_int32(g.K_per_group() * g.kernel_volume(), "the backward-data reduction length (K/groups*kernel volume)");
  ConvDims d;
  d.N = int(g.N), d.C = int(g.C), d.K = int(g.K), d.Cg = int(g.C_per_group()), d.Kg = int(g.K_per_group());
  d.ID = int(g.in[0]), d.IH = int(g.in[1]), d.IW = int(g.in[2]);
  d.OD = int(g.out[0]), d.OH = int(g.out[1]), d.OW = int(g.out[2]);
  d.KD = int(g.kernel[0]), d.KH = int(g.kernel[1]), d.KW = int(g.kernel[2]);
  d.sd = int(g.stride[0]), d.sh = int(g.stride[1]), d.sw = int(g.stride[2]);
  d.dd = int(g.dilation[0]), d.dh = int(g.dilation[1]), d.dw = int(g.dilation[2]);
  d.pd = int(g.pad_before[0]), d.ph = int(g.pad_before[1]), d.pw = int(g.pad_before[2]);
  d.kvol = int(g.kernel_volume()), d.khw = d.KH * d.KW;
  d.R = int(g.reduction()), d.P = int(g.out_plane()), d.Q = int(g.in_plane());
  d.ohw = d.OH * d.OW, d.ihw = d.IH * d.IW;
  return d;
}

// --------------------------------------------------------------------------------------------
// The GEMM main loop
// --------------------------------------------------------------------------------------------

// How the 4 elements a thread loads per operand and step sit in the kBK x 64 tile:
// RowFast: consecutive threads take consecutive rows (row = tid % 64, step = tid / 64 + 4e);
// KFast:   consecutive threads take consecutive reduction indices (step = tid % 16,
//          row = tid / 16 + 16e). A gather picks the one whose consecutive threads read
//          consecutive addresses.
struct RowFast {
  static __device__ __forceinline__ int row(int tid, int e) { return tid % 64; }
  static __device__ __forceinline__ int k(int tid, int e) { return tid / 64 + 4 * e; }
};
struct KFast {
  static __device__ __forceinline__ int row(int tid, int e) { return tid / 16 + 16 * e; }
  static __device__ __forceinline__ int k(int tid, int e) { return tid % 16; }
};

// acc[i][j] += sum over k in [k_begin, k_end) of A[tm + 16i][k] * B[k][tn + 16j] for the block's
// tile. load_a(k0, v) / load_b(k0, v) fill the thread's 4 elements of step k0 (zeros past the
// operand's edges, including k >= k_end), placed in the tile by MapA / MapB.
template <class T, class MapA, class MapB, class LoadA, class LoadB>
__device__ __forceinline__ void gemm_mainloop(int k_begin, int k_end, const LoadA& load_a, const LoadB& load_b, int tm,
                                              int tn, T (&acc)[4][4]) {
  __shared__ T As[2][kBK][kBM + 1];
  __shared__ T Bs[2][kBK][kBN + 1];
  const int tid = threadIdx.x;
  T ra[4], rb[4];
  load_a(k_begin, ra);
  load_b(k_begin, rb);
  int buf = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += kBK) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      As[buf][MapA::k(tid, e)][MapA::row(tid, e)] = ra[e];
      Bs[buf][MapB::k(tid, e)][MapB::row(tid, e)] = rb[e];
    }
    __syncthreads();
    // The other buffer was last read in the previous step, which every thread has finished
    // (it passed the barrier above), so the next step's loads may land in registers now.
    if (k0 + kBK < k_end) {
      load_a(k0 + kBK, ra);
      load_b(k0 + kBK, rb);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[buf][kk][tm + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[buf][kk][tn + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    buf ^= 1;
  }
}

template <class T>
__device__ __forceinline__ void zero(T (&acc)[4][4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
}

// Writes a thread's 4 x 4 accumulators of an activation tile (forward output or input gradient):
// rows m = (image, position) of [0, rows), positions per image `plane`; columns = the group's
// channels c of [0, per_group), `channels` in all; bias per channel (may be null); either layout.
template <class T, bool kLast, class A>
__device__ __forceinline__ void store_activation_tile(const A (&acc)[4][4], int m0, int n0, int tm, int tn, int rows,
                                                      int plane, int per_group, int channels, int gi,
                                                      const T* __restrict__ bias, T* __restrict__ out) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + tm + 16 * i;
    if (m >= rows) continue;
    const int n = m / plane, p = m - n * plane;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = n0 + tn + 16 * j;
      if (c >= per_group) continue;
      const int cc = gi * per_group + c;
      const T v = from_acc<T>(acc[i][j] + (bias != nullptr ? to_acc(bias[cc]) : A(0)));
      if constexpr (kLast)
        out[i64(m) * channels + cc] = v;
      else
        out[(i64(n) * channels + cc) * plane + p] = v;
    }
  }
}

__device__ __forceinline__ bool inside(int v, int n) { return static_cast<unsigned>(v) < static_cast<unsigned>(n); }

// --------------------------------------------------------------------------------------------
// Forward: rows m = (n, output position) of [0, N*P), columns k of the group's K/groups
// channels, reduction r of [0, R). Grid (M tiles, K/groups tiles, groups).
// --------------------------------------------------------------------------------------------

template <class T, bool kLast>
__global__ void __launch_bounds__(kThreads)
    conv_forward_gemm(ConvDims d, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                      T* __restrict__ y, int group0) {
  using A = acc_t<T>;
  const int tid = threadIdx.x;
  const int gi = group0 + int(blockIdx.z);
  const int m0 = int(blockIdx.x) * kBM, n0 = int(blockIdx.y) * kBN;
  const int M = d.N * d.P;
  using MapA = std::conditional_t<kLast, KFast, RowFast>;
  using MapB = KFast;

  // A operand: this thread's rows (one channels-first, four channels-last), decoded once.
  constexpr int kRowsA = kLast ? 4 : 1;
  bool a_ok[kRowsA];
  int a_d0[kRowsA], a_h0[kRowsA], a_w0[kRowsA];
  const T* a_base[kRowsA];
#pragma unroll
  for (int e = 0; e < kRowsA; ++e) {
    const int m = m0 + MapA::row(tid, e);
    a_ok[e] = m < M;
    const int mm = a_ok[e] ? m : 0;
    const int n = mm / d.P, p = mm - n * d.P;
    const int od = p / d.ohw, rem = p - od * d.ohw, oh = rem / d.OW, ow = rem - oh * d.OW;
    a_d0[e] = od * d.sd - d.pd, a_h0[e] = oh * d.sh - d.ph, a_w0[e] = ow * d.sw - d.pw;
    a_base[e] = kLast ? x + i64(n) * d.Q * d.C + i64(gi) * d.Cg : x + (i64(n) * d.C + i64(gi) * d.Cg) * d.Q;
  }
  auto load_a = [&](int k0, A(&v)[4]) {
    if constexpr (kLast) {
      const int r = k0 + MapA::k(tid, 0);  // r = ((kd*KH + kh)*KW + kw)*Cg + c
      const bool r_ok = r < d.R;
      const int q = r / d.Cg, c = r - q * d.Cg;
      const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int id = a_d0[e] + kd * d.dd, ih = a_h0[e] + kh * d.dh, iw = a_w0[e] + kw * d.dw;
        const bool ok = r_ok && a_ok[e] && inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW);
        v[e] = ok ? to_acc(a_base[e][i64((id * d.IH + ih) * d.IW + iw) * d.C + c]) : A(0);
      }
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = k0 + MapA::k(tid, e);  // r = c*kvol + (kd*KH + kh)*KW + kw
        const int c = r / d.kvol, q = r - c * d.kvol;
        const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
        const int id = a_d0[0] + kd * d.dd, ih = a_h0[0] + kh * d.dh, iw = a_w0[0] + kw * d.dw;
        const bool ok = r < d.R && a_ok[0] && inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW);
        v[e] = ok ? to_acc(a_base[0][i64(c) * d.Q + (id * d.IH + ih) * d.IW + iw]) : A(0);
      }
    }
  };

  // B operand: W^T, B[r][k] = w[group's k][r in weight order]; four channels per thread.
  bool b_ok[4];
  const T* b_row[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int k = n0 + MapB::row(tid, e);
    b_ok[e] = k < d.Kg;
    b_row[e] = w + i64(gi * d.Kg + (b_ok[e] ? k : 0)) * d.R;
  }
  auto load_b = [&](int k0, A(&v)[4]) {
    const int r = k0 + MapB::k(tid, 0);
    const bool r_ok = r < d.R;
    int off = r;
    if constexpr (kLast) {
      const int q = r / d.Cg, c = r - q * d.Cg;
      off = c * d.kvol + q;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) v[e] = (r_ok && b_ok[e]) ? to_acc(b_row[e][off]) : A(0);
  };

  const int tm = kLast ? tid / 16 : tid % 16, tn = kLast ? tid % 16 : tid / 16;
  A acc[4][4];
  zero(acc);
  gemm_mainloop<A, MapA, MapB>(0, d.R, load_a, load_b, tm, tn, acc);
  store_activation_tile<T, kLast>(acc, m0, n0, tm, tn, M, d.P, d.Kg, d.K, gi, bias, y);
}

// --------------------------------------------------------------------------------------------
// Backward data: rows i = (n, input position) of [0, N*Q), columns c of the group's C/groups
// channels, reduction over (k, kernel offset) of [0, Kg*kvol). Grid (rows tiles, Cg tiles, groups).
// --------------------------------------------------------------------------------------------

template <class T, bool kLast>
__global__ void __launch_bounds__(kThreads)
    conv_backward_data_gemm(ConvDims d, const T* __restrict__ dy, const T* __restrict__ w, const T* __restrict__ bias,
                            T* __restrict__ dx, int group0) {
  using A = acc_t<T>;
  const int tid = threadIdx.x;
  const int gi = group0 + int(blockIdx.z);
  const int m0 = int(blockIdx.x) * kBM, n0 = int(blockIdx.y) * kBN;
  const int M = d.N * d.Q, Rd = d.Kg * d.kvol;
  using MapA = std::conditional_t<kLast, KFast, RowFast>;
  using MapB = KFast;

  // A operand: dY_col[i][(k, q)]. Per row: the input cell plus the padding, t = i + pad; the
  // output on axis a is o = (t - q_a*dilation) / stride when that divides exactly and lands
  // inside the output.
  constexpr int kRowsA = kLast ? 4 : 1;
  bool a_ok[kRowsA];
  int a_td[kRowsA], a_th[kRowsA], a_tw[kRowsA];
  const T* a_base[kRowsA];
#pragma unroll
  for (int e = 0; e < kRowsA; ++e) {
    const int m = m0 + MapA::row(tid, e);
    a_ok[e] = m < M;
    const int mm = a_ok[e] ? m : 0;
    const int n = mm / d.Q, s = mm - n * d.Q;
    const int id = s / d.ihw, rem = s - id * d.ihw, ih = rem / d.IW, iw = rem - ih * d.IW;
    a_td[e] = id + d.pd, a_th[e] = ih + d.ph, a_tw[e] = iw + d.pw;
    a_base[e] = kLast ? dy + i64(n) * d.P * d.K + i64(gi) * d.Kg : dy + (i64(n) * d.K + i64(gi) * d.Kg) * d.P;
  }
  // The flat output position that puts kernel offset (kd, kh, kw) on row e's cell, or -1.
  auto source = [&](int e, int kd, int kh, int kw) -> int {
    const int td = a_td[e] - kd * d.dd, th = a_th[e] - kh * d.dh, tw = a_tw[e] - kw * d.dw;
    if (td < 0 || th < 0 || tw < 0) return -1;
    const int od = td / d.sd, oh = th / d.sh, ow = tw / d.sw;
    if (od * d.sd != td || oh * d.sh != th || ow * d.sw != tw) return -1;
    if (od >= d.OD || oh >= d.OH || ow >= d.OW) return -1;
    return (od * d.OH + oh) * d.OW + ow;
  };
  auto load_a = [&](int k0, A(&v)[4]) {
    if constexpr (kLast) {
      const int r = k0 + MapA::k(tid, 0);  // r = q*Kg + k
      const bool r_ok = r < Rd;
      const int q = r / d.Kg, k = r - q * d.Kg;
      const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int o = (r_ok && a_ok[e]) ? source(e, kd, kh, kw) : -1;
        v[e] = o >= 0 ? to_acc(a_base[e][i64(o) * d.K + k]) : A(0);
      }
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = k0 + MapA::k(tid, e);  // r = k*kvol + q
        const int k = r / d.kvol, q = r - k * d.kvol;
        const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
        const int o = (r < Rd && a_ok[0]) ? source(0, kd, kh, kw) : -1;
        v[e] = o >= 0 ? to_acc(a_base[0][i64(k) * d.P + o]) : A(0);
      }
    }
  };

  // B operand: B[(k, q)][c] = w[group's k][c][q]; four channels c per thread.
  bool b_ok[4];
  int b_off[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int c = n0 + MapB::row(tid, e);
    b_ok[e] = c < d.Cg;
    b_off[e] = (b_ok[e] ? c : 0) * d.kvol;
  }
  auto load_b = [&](int k0, A(&v)[4]) {
    const int r = k0 + MapB::k(tid, 0);
    const bool r_ok = r < Rd;
    int k, q;
    if constexpr (kLast) {
      q = r / d.Kg, k = r - q * d.Kg;
    } else {
      k = r / d.kvol, q = r - k * d.kvol;
    }
    const T* wk = w + i64(gi * d.Kg + (r_ok ? k : 0)) * d.R + q;
#pragma unroll
    for (int e = 0; e < 4; ++e) v[e] = (r_ok && b_ok[e]) ? to_acc(wk[b_off[e]]) : A(0);
  };

  const int tm = kLast ? tid / 16 : tid % 16, tn = kLast ? tid % 16 : tid / 16;
  A acc[4][4];
  zero(acc);
  gemm_mainloop<A, MapA, MapB>(0, Rd, load_a, load_b, tm, tn, acc);
  store_activation_tile<T, kLast>(acc, m0, n0, tm, tn, M, d.Q, d.Cg, d.C, gi, bias, dx);
}

// --------------------------------------------------------------------------------------------
// Backward weight: rows k of the group's K/groups channels, columns r of [0, R), reduction over
// the positions m of chunk `split` of [0, N*P). Grid (R tiles, Kg tiles, groups * splits).
// The sums are written in acc_t<T>: to dW itself when they are final (one chunk, T = acc_t<T>),
// else chunk `split` writes to dst + split * (K*R) of the workspace and wgrad_reduce adds the
// chunks and rounds to T.
// --------------------------------------------------------------------------------------------

template <class T, bool kLast>
__global__ void __launch_bounds__(kThreads)
    conv_backward_weight_gemm(ConvDims d, const T* __restrict__ dy, const T* __restrict__ x, acc_t<T>* __restrict__ dst,
                              int group0, int splits, int chunk) {
  using A = acc_t<T>;
  const int tid = threadIdx.x;
  const int split = int(blockIdx.z) % splits, gi = group0 + int(blockIdx.z) / splits;
  const int n0 = int(blockIdx.x) * kBN, m0 = int(blockIdx.y) * kBM;
  const int M = d.N * d.P;
  const int k_begin = split * chunk;
  const int k_end = int(i64(k_begin) + chunk < i64(M) ? i64(k_begin) + chunk : i64(M));
  using MapA = std::conditional_t<kLast, RowFast, KFast>;
  using MapB = std::conditional_t<kLast, RowFast, KFast>;

  // A operand: A[k][m] = dY[m][group's k].
  constexpr int kRowsA = kLast ? 1 : 4;
  bool a_ok[kRowsA];
  int a_k[kRowsA];
#pragma unroll
  for (int e = 0; e < kRowsA; ++e) {
    const int k = m0 + MapA::row(tid, e);
    a_ok[e] = k < d.Kg;
    a_k[e] = gi * d.Kg + (a_ok[e] ? k : 0);
  }
  auto load_a = [&](int k0, A(&v)[4]) {
    if constexpr (kLast) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int m = k0 + MapA::k(tid, e);
        v[e] = (m < k_end && a_ok[0]) ? to_acc(dy[i64(m) * d.K + a_k[0]]) : A(0);
      }
    } else {
      const int m = k0 + MapA::k(tid, 0);
      const bool m_ok = m < k_end;
      const int mm = m_ok ? m : 0;
      const int n = mm / d.P, p = mm - n * d.P;
      const T* base = dy + i64(n) * d.K * d.P + p;
#pragma unroll
      for (int e = 0; e < 4; ++e) v[e] = (m_ok && a_ok[e]) ? to_acc(base[i64(a_k[e]) * d.P]) : A(0);
    }
  };

  // B operand: B[m][r] = X_col[m][r]; per column: its channel and kernel offsets, decoded once.
  constexpr int kColsB = kLast ? 1 : 4;
  bool b_ok[kColsB];
  int b_c[kColsB], b_od[kColsB], b_oh[kColsB], b_ow[kColsB];
#pragma unroll
  for (int e = 0; e < kColsB; ++e) {
    const int r = n0 + MapB::row(tid, e);
    b_ok[e] = r < d.R;
    const int rr = b_ok[e] ? r : 0;
    int c, q;
    if constexpr (kLast) {
      q = rr / d.Cg, c = rr - q * d.Cg;
    } else {
      c = rr / d.kvol, q = rr - c * d.kvol;
    }
    const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
    b_c[e] = gi * d.Cg + c;
    b_od[e] = kd * d.dd - d.pd, b_oh[e] = kh * d.dh - d.ph, b_ow[e] = kw * d.dw - d.pw;
  }
  auto load_b = [&](int k0, A(&v)[4]) {
    if constexpr (kLast) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int m = k0 + MapB::k(tid, e);
        const bool m_ok = m < k_end && b_ok[0];
        const int mm = m_ok ? m : 0;
        const int n = mm / d.P, p = mm - n * d.P;
        const int od = p / d.ohw, rem = p - od * d.ohw, oh = rem / d.OW, ow = rem - oh * d.OW;
        const int id = od * d.sd + b_od[0], ih = oh * d.sh + b_oh[0], iw = ow * d.sw + b_ow[0];
        const bool ok = m_ok && inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW);
        v[e] = ok ? to_acc(x[(i64(n) * d.Q + (id * d.IH + ih) * d.IW + iw) * d.C + b_c[0]]) : A(0);
      }
    } else {
      const int m = k0 + MapB::k(tid, 0);
      const bool m_ok = m < k_end;
      const int mm = m_ok ? m : 0;
      const int n = mm / d.P, p = mm - n * d.P;
      const int od = p / d.ohw, rem = p - od * d.ohw, oh = rem / d.OW, ow = rem - oh * d.OW;
      const T* xn = x + i64(n) * d.C * d.Q;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int id = od * d.sd + b_od[e], ih = oh * d.sh + b_oh[e], iw = ow * d.sw + b_ow[e];
        const bool ok = m_ok && b_ok[e] && inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW);
        v[e] = ok ? to_acc(xn[i64(b_c[e]) * d.Q + (id * d.IH + ih) * d.IW + iw]) : A(0);
      }
    }
  };

  const int tm = tid / 16, tn = tid % 16;  // columns (r) fastest: coalesced dW stores
  A acc[4][4];
  zero(acc);
  gemm_mainloop<A, MapA, MapB>(k_begin, k_end, load_a, load_b, tm, tn, acc);

  A* out = dst + i64(split) * d.K * d.R;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int k = m0 + tm + 16 * i;
    if (k >= d.Kg) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = n0 + tn + 16 * j;
      if (r >= d.R) continue;
      int off = r;
      if constexpr (kLast) {
        const int q = r / d.Cg, c = r - q * d.Cg;
        off = c * d.kvol + q;
      }
      out[i64(gi * d.Kg + k) * d.R + off] = acc[i][j];
    }
  }
}

// dw[i] = sum over s = 0, 1, ... of partial[s][i], in that order, rounded once to T.
template <class T>
__global__ void __launch_bounds__(kThreads)
    wgrad_reduce(const acc_t<T>* __restrict__ partial, T* __restrict__ dw, i64 count, int splits) {
  for (i64 i = i64(blockIdx.x) * kThreads + threadIdx.x; i < count; i += i64(gridDim.x) * kThreads) {
    acc_t<T> s = partial[i];
    for (int sp = 1; sp < splits; ++sp) s += partial[i64(sp) * count + i];
    dw[i] = from_acc<T>(s);
  }
}

// --------------------------------------------------------------------------------------------
// Direct kernels, for narrow channel sides: the GEMM tiles are 64 or 128 channels wide, so a
// product with 3 channels on its channel side (backward data of a first layer on RGB images)
// would run 3 of 128 columns and spend 40x the arithmetic (resnet50.conv1's backward data:
// 36 ms on an H200). One thread computes one output element instead, over the taps that reach
// it and, at each tap, the channels of its group:
//   forward          one input channel per group (depthwise), or few outputs per group;
//   backward data    few input channels per group (one included);
//   backward weight  one input channel per group (depthwise).
// --------------------------------------------------------------------------------------------

// At most this many channels on the GEMM's channel side take the direct kernels.
constexpr i64 kDirectMaxChannels = 8;

struct Position {
  int d, h, w;
};

__device__ __forceinline__ Position output_position(const ConvDims& d, int p) {
  const int od = p / d.ohw, rem = p - od * d.ohw, oh = rem / d.OW;
  return {od, oh, rem - oh * d.OW};
}

__device__ __forceinline__ Position input_position(const ConvDims& d, int s) {
  const int id = s / d.ihw, rem = s - id * d.ihw, ih = rem / d.IW;
  return {id, ih, rem - ih * d.IW};
}

// acc += sum over i < count of a[i * a_step] * w[i * w_step], in order: the channels of one tap
// (channels-last activations: a_step 1; channels-first: a plane apart).
template <class T>
__device__ __forceinline__ void accumulate_run(acc_t<T>& acc, const T* a, i64 a_step, const T* w, int w_step,
                                               int count) {
  for (int i = 0; i < count; ++i) acc += to_acc(a[i * a_step]) * to_acc(w[i * w_step]);
}

// One thread per output element (k, p), the group's C/groups input channels at each tap;
// grid (ceil(K*P / 256), min(N, 65535)). kOneChannel: C/groups is 1 (depthwise), known at compile
// time: a run-time channel loop of one trip around each tap made the depthwise forward 1.5-1.7x
// slower on an H200 (mobilenet.dw3x3 NCHW 0.128 -> 0.223 ms).
template <class T, bool kLast, bool kOneChannel>
__global__ void __launch_bounds__(kThreads, 2)
    conv_forward_direct(ConvDims d, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                        T* __restrict__ y) {
  const int j = int(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= d.K * d.P) return;
  const int channels = kOneChannel ? 1 : d.Cg;
  const int k = kLast ? j % d.K : j / d.P, p = kLast ? j / d.K : j % d.P;
  const int c0 = (k / d.Kg) * d.Cg;  // the group's first input channel
  const Position o = output_position(d, p);
  const T* wk = w + i64(k) * d.R;  // w[k][c][q]: channel c at wk[c * kvol + q]
  for (int n = blockIdx.y; n < d.N; n += gridDim.y) {
    acc_t<T> acc = 0;
    for (int kd = 0; kd < d.KD; ++kd) {
      const int id = o.d * d.sd - d.pd + kd * d.dd;
      if (!inside(id, d.ID)) continue;
      for (int kh = 0; kh < d.KH; ++kh) {
        const int ih = o.h * d.sh - d.ph + kh * d.dh;
        if (!inside(ih, d.IH)) continue;
        for (int kw = 0; kw < d.KW; ++kw) {
          const int iw = o.w * d.sw - d.pw + kw * d.dw;
          if (!inside(iw, d.IW)) continue;
          const int s = (id * d.IH + ih) * d.IW + iw, q = (kd * d.KH + kh) * d.KW + kw;
          const T* xs = kLast ? x + (i64(n) * d.Q + s) * d.C + c0 : x + (i64(n) * d.C + c0) * d.Q + s;
          accumulate_run(acc, xs, kLast ? 1 : d.Q, wk + q, d.kvol, channels);
        }
      }
    }
    if (bias != nullptr) acc += to_acc(bias[k]);
    if constexpr (kLast)
      y[(i64(n) * d.P + p) * d.K + k] = from_acc<T>(acc);
    else
      y[(i64(n) * d.K + k) * d.P + p] = from_acc<T>(acc);
  }
}

// One thread per input element (c, s): at each kernel offset whose window, by the stride, puts
// that offset on s, the group's K/groups output channels; grid (ceil(C*Q / 256), min(N, 65535)).
// kOneOutput: K/groups is 1, known at compile time (as kOneChannel above).
template <class T, bool kLast, bool kOneOutput>
__global__ void __launch_bounds__(kThreads, 2)
    conv_backward_data_direct(ConvDims d, const T* __restrict__ dy, const T* __restrict__ w, const T* __restrict__ bias,
                              T* __restrict__ dx) {
  const int j = int(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= d.C * d.Q) return;
  const int outputs = kOneOutput ? 1 : d.Kg;
  const int c = kLast ? j % d.C : j / d.Q, s = kLast ? j / d.C : j % d.Q;
  const int group = c / d.Cg, k0 = group * d.Kg;
  const T* wc = w + i64(k0) * d.R + i64(c - group * d.Cg) * d.kvol;  // output channel k0 + k at wc[k * R + q]
  const Position i = input_position(d, s);
  for (int n = blockIdx.y; n < d.N; n += gridDim.y) {
    acc_t<T> acc = 0;
    for (int kd = 0; kd < d.KD; ++kd) {
      const int td = i.d + d.pd - kd * d.dd;
      const int od = td / d.sd;
      if (td < 0 || od * d.sd != td || od >= d.OD) continue;
      for (int kh = 0; kh < d.KH; ++kh) {
        const int th = i.h + d.ph - kh * d.dh;
        const int oh = th / d.sh;
        if (th < 0 || oh * d.sh != th || oh >= d.OH) continue;
        for (int kw = 0; kw < d.KW; ++kw) {
          const int tw = i.w + d.pw - kw * d.dw;
          const int ow = tw / d.sw;
          if (tw < 0 || ow * d.sw != tw || ow >= d.OW) continue;
          const int p = (od * d.OH + oh) * d.OW + ow, q = (kd * d.KH + kh) * d.KW + kw;
          const T* g = kLast ? dy + (i64(n) * d.P + p) * d.K + k0 : dy + (i64(n) * d.K + k0) * d.P + p;
          accumulate_run(acc, g, kLast ? 1 : d.P, wc + q, d.R, outputs);
        }
      }
    }
    if (bias != nullptr) acc += to_acc(bias[c]);
    if constexpr (kLast)
      dx[(i64(n) * d.Q + s) * d.C + c] = from_acc<T>(acc);
    else
      dx[(i64(n) * d.C + c) * d.Q + s] = from_acc<T>(acc);
  }
}

// Sums one value per thread of a 256-thread block in a fixed tree order; thread 0 gets the total.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  const int tid = threadIdx.x;
  scratch[tid] = v;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (tid < width) scratch[tid] += scratch[tid + width];
    __syncthreads();
  }
  return scratch[0];
}

// The depthwise weight gradient sums over all N*P positions for each of only K*kvol weights: one
// block per weight (or per 32 channels of one offset) would leave most of the GPU idle and each
// thread thousands of positions long (lenet5.conv1's channels-last weight gradient: 9.7 ms on
// an H200). The positions are cut into `splits` chunks of `chunk` positions, a chunk per block;
// with more than one, each block writes its sum to partial[split][k * kvol + q] (acc_t<T>) and
// wgrad_reduce adds the chunks in order, so the bits depend on the problem only.

// One block per weight element (k, q) and chunk, the threads striding over the chunk's
// positions; grid (K*kvol, splits). Channels-first, and channels-last with fewer than 32
// channels (the 32-channel blocks below would leave most lanes idle).
template <class T, bool kLast>
__global__ void __launch_bounds__(kThreads)
    conv_backward_weight_depthwise_by_weight(ConvDims d, const T* __restrict__ dy, const T* __restrict__ x,
                                             T* __restrict__ dw, acc_t<T>* __restrict__ partial, int chunk) {
  using A = acc_t<T>;
  __shared__ A scratch[kThreads];
  const int b = blockIdx.x;
  const int k = b / d.kvol, q = b - k * d.kvol;
  const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
  const int c = k / d.Kg;
  const int M = d.N * d.P, begin = int(blockIdx.y) * chunk, end = M - begin < chunk ? M : begin + chunk;
  A acc = 0;
  for (int m = begin + threadIdx.x; m < end; m += kThreads) {
    const int n = m / d.P, p = m - n * d.P;
    const Position o = output_position(d, p);
    const int id = o.d * d.sd - d.pd + kd * d.dd, ih = o.h * d.sh - d.ph + kh * d.dh,
              iw = o.w * d.sw - d.pw + kw * d.dw;
    if (inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW)) {
      const int s = (id * d.IH + ih) * d.IW + iw;
      if constexpr (kLast)
        acc += to_acc(dy[i64(m) * d.K + k]) * to_acc(x[(i64(n) * d.Q + s) * d.C + c]);
      else
        acc += to_acc(dy[(i64(n) * d.K + k) * d.P + p]) * to_acc(x[(i64(n) * d.C + c) * d.Q + s]);
    }
  }
  const A total = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    if (partial != nullptr)
      partial[i64(blockIdx.y) * gridDim.x + b] = total;
    else
      dw[b] = from_acc<T>(total);
  }
}

// Channels-last with 32 channels or more: a block covers 32 consecutive channels of one kernel
// offset over one chunk, 8 threads per channel striding over the chunk's positions; grid
// (ceil(K/32), kvol, splits).
template <class T>
__global__ void __launch_bounds__(kThreads)
    conv_backward_weight_depthwise_by_channels(ConvDims d, const T* __restrict__ dy, const T* __restrict__ x,
                                               T* __restrict__ dw, acc_t<T>* __restrict__ partial, int chunk) {
  using A = acc_t<T>;
  __shared__ A scratch[8][32];
  const int lane = threadIdx.x % 32, row = threadIdx.x / 32;
  const int k = int(blockIdx.x) * 32 + lane, q = blockIdx.y;
  const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
  const int M = d.N * d.P, begin = int(blockIdx.z) * chunk, end = M - begin < chunk ? M : begin + chunk;
  A acc = 0;
  if (k < d.K) {
    const int c = k / d.Kg;
    for (int m = begin + row; m < end; m += 8) {
      const int n = m / d.P, p = m - n * d.P;
      const Position o = output_position(d, p);
      const int id = o.d * d.sd - d.pd + kd * d.dd, ih = o.h * d.sh - d.ph + kh * d.dh,
                iw = o.w * d.sw - d.pw + kw * d.dw;
      if (inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW))
        acc += to_acc(dy[i64(m) * d.K + k]) * to_acc(x[(i64(n) * d.Q + (id * d.IH + ih) * d.IW + iw) * d.C + c]);
    }
  }
  scratch[row][lane] = acc;
  __syncthreads();
  if (row == 0 && k < d.K) {
    A sum = scratch[0][lane];
    for (int r = 1; r < 8; ++r) sum += scratch[r][lane];
    const i64 at = i64(k) * d.kvol + q;
    if (partial != nullptr)
      partial[i64(blockIdx.z) * d.K * d.kvol + at] = sum;
    else
      dw[at] = from_acc<T>(sum);
  }
}

// --------------------------------------------------------------------------------------------
// Bias gradient, accumulated in double (float16 too: one rounding to T at the store)
// --------------------------------------------------------------------------------------------

// Channels-first: one block per channel; grid (K).
template <class T>
__global__ void __launch_bounds__(kThreads)
    channel_sum_cf(i64 N, i64 K, i64 P, const T* __restrict__ dy, T* __restrict__ db) {
  __shared__ double scratch[kThreads];
  const i64 k = blockIdx.x;
  double acc = 0;
  for (i64 n = 0; n < N; ++n) {
    const T* row = dy + (n * K + k) * P;
    for (i64 p = threadIdx.x; p < P; p += kThreads) acc += double(to_acc(row[p]));
  }
  const double total = block_sum(acc, scratch);
  if (threadIdx.x == 0) db[k] = from_double<T>(total);
}

// Channels-last: 32 channels per block, 8 threads per channel; grid (ceil(K/32)).
template <class T>
__global__ void __launch_bounds__(kThreads)
    channel_sum_cl(i64 rows, i64 K, const T* __restrict__ dy, T* __restrict__ db) {
  __shared__ double scratch[8][32];
  const int lane = threadIdx.x % 32, row = threadIdx.x / 32;
  const i64 k = i64(blockIdx.x) * 32 + lane;
  double acc = 0;
  if (k < K)
    for (i64 m = row; m < rows; m += 8) acc += double(to_acc(dy[m * K + k]));
  scratch[row][lane] = acc;
  __syncthreads();
  if (row == 0 && k < K) {
    double s = scratch[0][lane];
    for (int r = 1; r < 8; ++r) s += scratch[r][lane];
    db[k] = from_double<T>(s);
  }
}

#include "conv_igemm.cuh"

// --------------------------------------------------------------------------------------------
// Launch helpers
// --------------------------------------------------------------------------------------------

// Which passes take the direct kernels (see "Direct kernels" above).
bool forward_is_direct(const ConvGeometry& g) { return g.C_per_group() == 1 || g.K_per_group() <= kDirectMaxChannels; }
bool backward_data_is_direct(const ConvGeometry& g) { return g.C_per_group() <= kDirectMaxChannels; }
bool backward_weight_is_direct(const ConvGeometry& g) { return g.C_per_group() == 1; }

std::atomic<int> g_kernel_version{kConvKernelVersionDefault};
std::atomic<bool> g_allow_tf32{false};

// Whether this call's forward runs on tensor cores (version 3: float16 always, float32 when TF32
// is allowed).
template <class T>
bool use_tensorop() {
  if (g_kernel_version.load(std::memory_order_relaxed) < 3) return false;
  return std::is_same_v<T, __half> || g_allow_tf32.load(std::memory_order_relaxed);
}

// Whether the GEMM passes of this call run version 2 (float and float16 only).
template <class T>
bool use_v2() {
  return !std::is_same_v<T, double> && g_kernel_version.load(std::memory_order_relaxed) >= 2;
}

// The v2 forward and backward-data launchers split the reduction when their grid has fewer
// blocks than this (two waves of 128x128 blocks at 2 per SM on a 132-SM GPU), into at most
// kV2MaxSplits parts of at least kV2MinStepsPerSplit steps each. A property of the problem, not of
// the device, so the result bits do not depend on the device either.
constexpr i64 kV2TargetBlocks = 528;
constexpr i64 kV2MaxSplits = 16;
constexpr i64 kV2MinStepsPerSplit = 32;

v2::Dims make_v2_dims(const ConvDims& d, i64 plane, i64 chunks) {
  v2::Dims dm;
  dm.c = d;
  require_int32(i64(d.kvol) * chunks, "the reduction steps (kernel volume * channel chunks)");
  dm.chunks = v2::FastDiv(chunks);
  dm.khw = v2::FastDiv(d.khw), dm.kw = v2::FastDiv(d.KW);
  dm.plane = v2::FastDiv(plane);
  dm.ohw = v2::FastDiv(d.ohw), dm.ow = v2::FastDiv(d.OW);
  dm.sd = v2::FastDiv(d.sd), dm.sh = v2::FastDiv(d.sh), dm.sw = v2::FastDiv(d.sw);
  return dm;
}

// Launches the v2 forward (kDgrad false) or backward-data kernel over rows x cols per group;
// with a split reduction, through a stream-ordered float workspace and split_reduce_activations.
template <class T, bool kDgrad>
void launch_v2_activation_gemm(const ConvGeometry& g, bool last, const ConvDims& d, const T* a, const T* w,
                               const T* bias, T* out, cudaStream_t s) {
  constexpr int BM = 128;
  using Tile = v2::Tile<BM, BM>;
  const i64 plane = kDgrad ? g.in_plane() : g.out_plane();
  const i64 rows = g.N * plane;
  const i64 cols = kDgrad ? g.C_per_group() : g.K_per_group();
  const i64 red = kDgrad ? g.K_per_group() : g.C_per_group();
  constexpr int BK = kDgrad ? v2::kDgradBK : Tile::kBK;
  const v2::Dims dm = make_v2_dims(d, plane, div_up(red, BK));
  const i64 steps = g.kernel_volume() * div_up(red, BK);
  const i64 tiles = div_up(rows, BM) * div_up(cols, BM) * g.groups;
  i64 splits = 1;
  if (tiles < kV2TargetBlocks)
    splits = std::max<i64>(1, std::min({div_up(kV2TargetBlocks, tiles), kV2MaxSplits, steps / kV2MinStepsPerSplit}));
  const i64 chunk = div_up(steps, splits);
  splits = div_up(steps, chunk);  // no empty split
  float* partial = nullptr;
  if (splits > 1) {
    const i64 count = splits * rows * cols * g.groups;
    require_int32(rows * cols, "the split-reduction rows x channels per group");
    check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&partial), std::size_t(count) * sizeof(float), s),
               "cudaMallocAsync (split-reduction workspace)");
  }
  const unsigned mt = grid_x(div_up(rows, BM));
  const unsigned nt = grid_yz(div_up(cols, BM), "channel tiles per group");
  auto run = [&](auto last_tag) {
    constexpr bool L = decltype(last_tag)::value;
    for_group_chunks(g.groups, splits, [&](int g0, i64 count) {
      const dim3 grid(mt, nt, unsigned(count * splits));
      if constexpr (kDgrad)
        launch("igemm_dgrad_simt", v2::igemm_dgrad_simt<T, L, BM, BM>, grid, dim3(Tile::kThreads), s, dm, a, w, bias,
               out, g0, partial, int(splits), int(chunk));
      else if (use_tensorop<T>())
        launch("igemm_fprop_tensorop", v2::igemm_fprop_tensorop<T, L, BM, BM>, grid, dim3(Tile::kThreads), s, dm, a, w,
               bias, out, g0, partial, int(splits), int(chunk));
      else
        launch("igemm_fprop_simt", v2::igemm_fprop_simt<T, L, BM, BM>, grid, dim3(Tile::kThreads), s, dm, a, w, bias,
               out, g0, partial, int(splits), int(chunk));
    });
    if (partial != nullptr) {
      const i64 blocks = std::min<i64>(div_up(rows * cols * g.groups, 256), 65536);
      launch("split_reduce_activations", v2::split_reduce_activations<T, L>, dim3(unsigned(blocks)), dim3(256), s,
             partial, int(splits), int(g.groups), int(rows), int(plane), int(cols), bias, out);
    }
  };
  if (last)
    run(std::true_type{});
  else
    run(std::false_type{});
  if (partial != nullptr) check_cuda(cudaFreeAsync(partial, s), "cudaFreeAsync (split-reduction workspace)");
}

// f(std::bool_constant<a>{}, std::bool_constant<b>{}) for run-time a and b.
template <class F>
void dispatch_bools(bool a, bool b, F&& f) {
  auto with_a = [&](auto a_tag) {
    if (b)
      f(a_tag, std::true_type{});
    else
      f(a_tag, std::false_type{});
  };
  if (a)
    with_a(std::true_type{});
  else
    with_a(std::false_type{});
}

// Launches `per_groups(group0, count)` over the groups in chunks that keep grid.z <= 65535.
template <class F>
void for_group_chunks(i64 groups, i64 z_per_group, F&& per_chunk) {
  const i64 per_launch = std::max<i64>(1, kMaxGridYZ / z_per_group);
  for (i64 g0 = 0; g0 < groups; g0 += per_launch) per_chunk(int(g0), std::min(per_launch, groups - g0));
}

struct WgradSplit {
  i64 splits, chunk;
};

// The backward-weight tile edge of the kernel generation in use.
template <class T>
int wgrad_tile(const ConvGeometry&) {
  return use_v2<T>() ? 128 : kBM;
}

// The depthwise weight gradient's chunks: about kDirectWgradTargetBlocks blocks in the grid of
// the kernel that runs (by weight element, or by 32 channels of one offset when
// `by_channels`), at least kDirectWgradMinChunk positions a chunk, at most
// kDirectWgradMaxSplits chunks. On an H200, one chunk left mobilenet.dw3x3's channels-last
// gradient 72 blocks of 3136 positions a thread (1.7 ms), and 25 chunks of its channels-first
// one, 57 600 blocks of 4 positions a thread, were slower than one (0.43 ms against 0.32).
constexpr i64 kDirectWgradTargetBlocks = 2048;
constexpr i64 kDirectWgradMinChunk = 1024;
constexpr i64 kDirectWgradMaxSplits = 256;

bool wgrad_by_channels(const ConvGeometry& g, bool last) { return last && g.K >= 32; }

WgradSplit direct_wgrad_split(const ConvGeometry& g, bool by_channels) {
  const i64 M = g.N * g.out_plane();
  const i64 blocks = (by_channels ? div_up(g.K, 32) : g.K) * g.kernel_volume();
  i64 splits = std::min(
      {div_up(kDirectWgradTargetBlocks, blocks), kDirectWgradMaxSplits, div_up(M, kDirectWgradMinChunk)});
  splits = std::max<i64>(splits, 1);
  const i64 chunk = div_up(M, splits);
  return {div_up(M, chunk), chunk};
}

template <class T>
WgradSplit wgrad_split(const ConvGeometry& g) {
  const i64 M = g.N * g.out_plane();
  const i64 tile = wgrad_tile<T>(g);
  const i64 tiles = div_up(g.reduction(), tile) * div_up(g.K_per_group(), tile) * g.groups;
  i64 splits = std::min({div_up(kWgradTargetBlocks, tiles), kWgradMaxSplits, div_up(M, kWgradMinChunk)});
  splits = std::max<i64>(splits, 1);
  const i64 chunk = div_up(div_up(M, splits), kBK) * kBK;
  return {std::max<i64>(1, div_up(M, chunk)), std::max<i64>(chunk, kBK)};
}

}  // namespace

// --------------------------------------------------------------------------------------------
// Launchers
// --------------------------------------------------------------------------------------------

template <class T>
void conv_forward(const ConvGeometry& g, bool last, const T* x, const T* w, const T* bias, T* y, cudaStream_t s) {
  if (g.N == 0) return;
  const ConvDims d = make_dims(g);
  if (forward_is_direct(g)) {
    const dim3 grid(grid_x(div_up(g.K * g.out_plane(), kThreads)), unsigned(std::min<i64>(g.N, kMaxGridYZ)));
    dispatch_bools(last, g.C_per_group() == 1, [&](auto last_tag, auto one_tag) {
      constexpr bool L = decltype(last_tag)::value, One = decltype(one_tag)::value;
      launch("conv_forward_direct", conv_forward_direct<T, L, One>, grid, kThreads, s, d, x, w, bias, y);
    });
    return;
  }
  if constexpr (!std::is_same_v<T, double>) {
    if (use_v2<T>()) {
      launch_v2_activation_gemm<T, false>(g, last, d, x, w, bias, y, s);
      return;
    }
  }
  const unsigned mt = grid_x(div_up(g.N * g.out_plane(), kBM));
  const unsigned nt = grid_yz(div_up(g.K_per_group(), kBN), "output channel tiles per group");
  for_group_chunks(g.groups, 1, [&](int g0, i64 count) {
    const dim3 grid(mt, nt, unsigned(count));
    if (last)
      launch("conv_forward_gemm", conv_forward_gemm<T, true>, grid, kThreads, s, d, x, w, bias, y, g0);
    else
      launch("conv_forward_gemm", conv_forward_gemm<T, false>, grid, kThreads, s, d, x, w, bias, y, g0);
  });
}

template <class T>
void conv_backward_data(const ConvGeometry& g, bool last, const T* dy, const T* w, const T* bias, T* dx,
                        cudaStream_t s) {
  if (g.N == 0) return;
  const ConvDims d = make_dims(g);
  if (backward_data_is_direct(g)) {
    const dim3 grid(grid_x(div_up(g.C * g.in_plane(), kThreads)), unsigned(std::min<i64>(g.N, kMaxGridYZ)));
    dispatch_bools(last, g.K_per_group() == 1, [&](auto last_tag, auto one_tag) {
      constexpr bool L = decltype(last_tag)::value, One = decltype(one_tag)::value;
      launch("conv_backward_data_direct", conv_backward_data_direct<T, L, One>, grid, kThreads, s, d, dy, w, bias, dx);
    });
    return;
  }
  if constexpr (!std::is_same_v<T, double>) {
    if (use_v2<T>()) {
      launch_v2_activation_gemm<T, true>(g, last, d, dy, w, bias, dx, s);
      return;
    }
  }
  const unsigned mt = grid_x(div_up(g.N * g.in_plane(), kBM));
  const unsigned nt = grid_yz(div_up(g.C_per_group(), kBN), "input channel tiles per group");
  for_group_chunks(g.groups, 1, [&](int g0, i64 count) {
    const dim3 grid(mt, nt, unsigned(count));
    if (last)
      launch("conv_backward_data_gemm", conv_backward_data_gemm<T, true>, grid, kThreads, s, d, dy, w, bias, dx, g0);
    else
      launch("conv_backward_data_gemm", conv_backward_data_gemm<T, false>, grid, kThreads, s, d, dy, w, bias, dx, g0);
  });
}

// Whether backward weight writes partial sums in acc_t<T> to the workspace (then reduced into
// dw) rather than dw itself: with more than one chunk, and for float16 through the GEMM, whose
// sums must stay in float until the one rounding at the end (a direct kernel's one chunk rounds
// its own float sum once).
template <class T>
bool wgrad_uses_workspace(const ConvGeometry& g, const WgradSplit& sp) {
  if (g.N == 0) return false;
  if (backward_weight_is_direct(g)) return sp.splits > 1;
  return sp.splits > 1 || !std::is_same_v<acc_t<T>, T>;
}

template <class T>
std::size_t conv_backward_weight_workspace(const ConvGeometry& g) {
  if (g.N == 0) return 0;
  // The query knows no layout: for the direct kernels, room for either kernel's chunks.
  WgradSplit sp = backward_weight_is_direct(g) ? direct_wgrad_split(g, false) : wgrad_split<T>(g);
  if (backward_weight_is_direct(g) && wgrad_by_channels(g, true))
    sp.splits = std::max(sp.splits, direct_wgrad_split(g, true).splits);
  if (!wgrad_uses_workspace<T>(g, sp)) return 0;
  return std::size_t(sp.splits) * std::size_t(g.K * g.reduction()) * sizeof(acc_t<T>);
}

template <class T>
void conv_backward_weight(const ConvGeometry& g, bool last, const T* dy, const T* x, T* dw, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t s) {
  const i64 wcount = g.K * g.reduction();
  if (g.N == 0) {
    check_cuda(cudaMemsetAsync(dw, 0, std::size_t(wcount) * sizeof(T), s), "cudaMemsetAsync (grad_weight)");
    return;
  }
  const ConvDims d = make_dims(g);
  const bool by_channels = wgrad_by_channels(g, last);
  const WgradSplit sp = backward_weight_is_direct(g) ? direct_wgrad_split(g, by_channels) : wgrad_split<T>(g);
  const std::size_t need = conv_backward_weight_workspace<T>(g);
  if (workspace_bytes < need)
    throw std::invalid_argument("conv_backward_weight: the workspace holds " + std::to_string(workspace_bytes) +
                                " bytes, this problem needs " + std::to_string(need));
  const bool partial = wgrad_uses_workspace<T>(g, sp);
  if (backward_weight_is_direct(g)) {
    acc_t<T>* sums = partial ? static_cast<acc_t<T>*>(workspace) : nullptr;
    const unsigned splits = grid_yz(sp.splits, "the weight-gradient chunks");
    if (by_channels) {
      const dim3 grid(grid_x(div_up(g.K, 32)), grid_yz(g.kernel_volume(), "the kernel volume"), splits);
      launch("conv_backward_weight_depthwise", conv_backward_weight_depthwise_by_channels<T>, grid, kThreads, s, d, dy,
             x, dw, sums, int(sp.chunk));
    } else {
      const dim3 grid(grid_x(wcount), splits);
      if (last)
        launch("conv_backward_weight_depthwise", conv_backward_weight_depthwise_by_weight<T, true>, grid, kThreads, s,
               d, dy, x, dw, sums, int(sp.chunk));
      else
        launch("conv_backward_weight_depthwise", conv_backward_weight_depthwise_by_weight<T, false>, grid, kThreads, s,
               d, dy, x, dw, sums, int(sp.chunk));
    }
    if (partial) {
      const i64 blocks = std::min<i64>(div_up(wcount, kThreads), 65536);
      launch("wgrad_reduce", wgrad_reduce<T>, dim3(unsigned(blocks)), kThreads, s, sums, dw, wcount, int(sp.splits));
    }
    return;
  }
  acc_t<T>* dst = static_cast<acc_t<T>*>(workspace);
  if constexpr (std::is_same_v<acc_t<T>, T>) {
    if (!partial) dst = dw;
  }
  if constexpr (!std::is_same_v<T, double>) {
    if (use_v2<T>()) {
      auto run = [&](auto tile_tag, auto last_tag) {
        constexpr int BM = decltype(tile_tag)::value;
        constexpr bool L = decltype(last_tag)::value;
        constexpr int BK = v2::Tile<BM, BM>::kBK;
        v2::Dims dm = make_v2_dims(d, g.out_plane(), 1);
        const i64 wchunks = div_up(g.out[2], BK), rows = g.N * g.out[0] * g.out[1];
        require_int32(rows * wchunks, "the backward-weight reduction steps (N*oD*oH*ceil(oW/8))");
        dm.wchunks = v2::FastDiv(wchunks), dm.odh = v2::FastDiv(g.out[0] * g.out[1]), dm.oh = v2::FastDiv(g.out[1]);
        const i64 steps = rows * wchunks, chunk = std::max<i64>(1, div_up(steps, sp.splits));
        const unsigned rt = grid_x(div_up(g.reduction(), BM));
        const unsigned kt = grid_yz(div_up(g.K_per_group(), BM), "output channel tiles per group");
        for_group_chunks(g.groups, sp.splits, [&](int g0, i64 count) {
          const dim3 grid(rt, kt, unsigned(count * sp.splits));
          launch("igemm_wgrad_simt", v2::igemm_wgrad_simt<T, L, BM, BM>, grid, dim3(v2::Tile<BM, BM>::kThreads), s, dm,
                 dy, x, dst, g0, int(sp.splits), int(chunk), int(steps));
        });
      };
      using Large = std::integral_constant<int, 128>;
      if (last)
        run(Large{}, std::true_type{});
      else
        run(Large{}, std::false_type{});
      if (partial) {
        const i64 blocks = std::min<i64>(div_up(wcount, kThreads), 65536);
        launch("wgrad_reduce", wgrad_reduce<T>, dim3(unsigned(blocks)), kThreads, s, dst, dw, wcount, int(sp.splits));
      }
      return;
    }
  }
  const unsigned rt = grid_x(div_up(g.reduction(), kBN));
  const unsigned kt = grid_yz(div_up(g.K_per_group(), kBM), "output channel tiles per group");
  for_group_chunks(g.groups, sp.splits, [&](int g0, i64 count) {
    const dim3 grid(rt, kt, unsigned(count * sp.splits));
    if (last)
      launch("conv_backward_weight_gemm", conv_backward_weight_gemm<T, true>, grid, kThreads, s, d, dy, x, dst, g0,
             int(sp.splits), int(sp.chunk));
    else
      launch("conv_backward_weight_gemm", conv_backward_weight_gemm<T, false>, grid, kThreads, s, d, dy, x, dst, g0,
             int(sp.splits), int(sp.chunk));
  });
  if (partial) {
    const i64 blocks = std::min<i64>(div_up(wcount, kThreads), 65536);
    launch("wgrad_reduce", wgrad_reduce<T>, dim3(unsigned(blocks)), kThreads, s, dst, dw, wcount, int(sp.splits));
  }
}

template <class T>
void channel_sum(i64 N, i64 K, i64 P, bool last, const T* dy, T* db, cudaStream_t s) {
  if (K == 0) return;
  if (N == 0 || P == 0) {
    check_cuda(cudaMemsetAsync(db, 0, std::size_t(K) * sizeof(T), s), "cudaMemsetAsync (grad_bias)");
    return;
  }
  if (last)
    launch("channel_sum", channel_sum_cl<T>, dim3(grid_x(div_up(K, 32))), kThreads, s, N * P, K, dy, db);
  else
    launch("channel_sum", channel_sum_cf<T>, dim3(grid_x(K)), kThreads, s, N, K, P, dy, db);
}

void set_conv_kernel_version(int version) {
  if (version < 1 || version > kConvKernelVersionLatest)
    throw std::invalid_argument("conv kernel version must be 1 to " + std::to_string(kConvKernelVersionLatest) +
                                ", got " + std::to_string(version));
  g_kernel_version.store(version, std::memory_order_relaxed);
}

int conv_kernel_version() { return g_kernel_version.load(std::memory_order_relaxed); }

void set_conv_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }

bool conv_allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

#define CONVKERN_INSTANTIATE(T)                                                                                   \
  template std::size_t conv_backward_weight_workspace<T>(const ConvGeometry&);                                    \
  template void conv_forward<T>(const ConvGeometry&, bool, const T*, const T*, const T*, T*, cudaStream_t);       \
  template void conv_backward_data<T>(const ConvGeometry&, bool, const T*, const T*, const T*, T*, cudaStream_t); \
  template void conv_backward_weight<T>(const ConvGeometry&, bool, const T*, const T*, T*, void*, std::size_t,    \
                                        cudaStream_t);                                                            \
  template void channel_sum<T>(i64, i64, i64, bool, const T*, T*, cudaStream_t);
CONVKERN_INSTANTIATE(__half)
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cuda
