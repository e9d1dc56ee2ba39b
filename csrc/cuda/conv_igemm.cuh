// conv_igemm.cuh — version 2 of the CUDA convolution GEMM kernels (included by conv.cu only):
// implicit GEMM in the style of CUTLASS's SIMT convolutions, for float and float16 (float tiles
// and accumulators).
//
// Tiles. A block computes a BM x BN tile of the GEMM with (BM/8) x (BN/8) threads, each holding an
// 8 x 8 register block of accumulators: rows {4tm..4tm+3} and {BM/2+4tm..}, columns likewise, so
// every reduction step of one thread reads its 8 + 8 operands with four 128-bit shared loads and
// does 64 FFMA (one shared load per 16 FFMA). Variants: 128 x 128 (256 threads) and, for grids that
// would leave SMs idle, 64 x 64 (64 threads). The reduction advances 8 deep per step; operand tiles
// are double-buffered in shared memory and the next step's global loads are in flight in registers
// during the current step's arithmetic.
//
// Gathers without division. The reduction of forward and backward data runs over (filter position
// q, channel chunk of 8): all elements a thread loads in one step share q, so the im2col position
// of its (fixed) row is one add per axis from coordinates decoded once before the loop. The few
// divisions that remain per step (step -> q -> kd, kh, kw; backward data's output = input / stride;
// backward weight's position -> n, od, oh, ow) are by divisors fixed for the launch, done with a
// precomputed multiply-high and shift (FastDiv), never with the hardware-less integer division.
// A channel count that is not a multiple of 8 pads its last chunk with zeros.
//
// Results. The reduction order of every output element is the same as version 1's up to the
// grouping of the reduction index (each output sums its terms sequentially, step after step), and
// does not depend on the tile variant, so both variants give identical bits. Backward weight splits
// the positions into the same device-independent chunks as version 1 and reduces them in order.
#pragma once

namespace v2 {

// n / d and n % d for 0 <= n < 2^31 and a divisor d >= 1 fixed for the launch: the
// round-up-reciprocal method (Granlund & Montgomery), as CUTLASS's FastDivmod.
struct FastDiv {
  int d = 1;
  unsigned mul = 0, shr = 0;
  FastDiv() = default;
  explicit FastDiv(i64 divisor) : d(int(divisor)) {
    if (d != 1) {
      unsigned log2 = 0;
      while ((1u << log2) < unsigned(d)) ++log2;  // ceil(log2(d))
      const unsigned p = 31 + log2;
      mul = unsigned(((1ull << p) + unsigned(d) - 1) / unsigned(d));
      shr = p - 32;
    }
  }
  __host__ __device__ __forceinline__ int div(int n) const {
    return d == 1 ? n : int(unsigned((static_cast<unsigned long long>(unsigned(n)) * mul) >> 32) >> shr);
  }
};

// A coordinate that no window reaches: -2^30 (im2col coordinates stay far above it).
constexpr int kFarOutside = -(1 << 30);

struct Dims {
  ConvDims c;
  FastDiv chunks;  // reduction steps per filter position (channel chunks of 8)
  FastDiv khw, kw;  // filter position -> kd, kh, kw
  FastDiv plane;  // positions per image of the GEMM rows: P (forward, backward weight), Q (backward data)
  FastDiv ohw, ow;  // output position -> od, oh, ow
  FastDiv wchunks, odh, oh;  // backward weight: step -> (output row, ow chunk); row -> n, od, oh
  FastDiv sd, sh, sw;  // backward data: output coordinate from input coordinate + padding
};

template <int BM, int BN, int BK = 8>
struct Tile {
  static constexpr int kThreads = (BM / 8) * (BN / 8);
  static constexpr int kBK = BK;  // reduction depth per step
  static constexpr int kRowsPerThreadA = 1;
  static constexpr int kPerThreadA = BM * kBK / kThreads;  // elements of the A tile a thread loads
  static constexpr int kPerThreadB = BN * kBK / kThreads;
  static_assert(kThreads >= BM && kThreads >= BN && kThreads % BM == 0 && kThreads % BN == 0,
                "one operand row (column) per thread");
  // 2 x 256 threads per SM (128 registers each), or 4 x 64 (up to 255 registers: no spills).
  static constexpr int kMinBlocks = kThreads >= 256 ? 2 : 4;
};

// How a thread's share of an operand tile (rows x kBK) is laid out. KContig: a thread's elements
// are consecutive reduction indices of one row (row = tid / per_row); RowFast: consecutive
// threads take consecutive rows (row = tid % rows) and a thread's elements are per_row apart.
// Loaders pick the one whose consecutive threads read consecutive addresses.
template <int kRows, int kThreadsN, int kBK, bool kContig>
struct Map {
  static constexpr int kPerRow = kThreadsN / kRows;  // threads per row
  static constexpr int kPer = kBK / kPerRow;  // elements per thread
  static constexpr int kDepth = kBK;
  static constexpr int kStep = kContig ? 1 : kPerRow;  // between a thread's consecutive elements
  static __device__ __forceinline__ int row(int tid) { return kContig ? tid / kPerRow : tid % kRows; }
  static __device__ __forceinline__ int k(int tid, int e) {
    return kContig ? (tid % kPerRow) * kPer + e : tid / kRows + kPerRow * e;
  }
};

template <int BM, int BN, bool kRowsFast>
struct ThreadTile {
  static constexpr int kTM = BM / 8, kTN = BN / 8;
  static __device__ __forceinline__ int tm(int tid) { return kRowsFast ? tid % kTM : tid / kTN; }
  static __device__ __forceinline__ int tn(int tid) { return kRowsFast ? tid / kTM : tid % kTN; }
  // Row (column) of accumulator i (j) of thread tm (tn): two groups of 4, half a tile apart.
  static __device__ __forceinline__ int row(int tm, int i) { return (i < 4 ? 0 : BM / 2) + 4 * tm + (i & 3); }
  static __device__ __forceinline__ int col(int tn, int j) { return (j < 4 ? 0 : BN / 2) + 4 * tn + (j & 3); }
};

// acc += A(steps x kBK slices) * B: load_a(t, ra) / load_b(t, rb) fetch the thread's elements of
// step t (zeros outside the operands), MapA / MapB place them in the tiles. kPrefetchB: B's next
// step is loaded during the arithmetic, like A's; without it B is loaded at the top of its step
// (backward data: its weight operand is cache-resident, and the registers a prefetch holds across
// the arithmetic would spill).
template <int BM, int BN, class MapA, class MapB, class TT, bool kPrefetchB = true, class LoadA, class LoadB>
__device__ __forceinline__ void mainloop(int steps, const LoadA& load_a, const LoadB& load_b, int tm, int tn,
                                         float (&acc)[8][8]) {
  constexpr int kBK = MapA::kDepth;
  static_assert(MapB::kDepth == kBK, "one reduction depth for both operands");
  alignas(16) __shared__ float As[2][kBK][BM];
  alignas(16) __shared__ float Bs[2][kBK][BN];
  const int tid = threadIdx.x;
  float ra[MapA::kPer], rb[MapB::kPer];
  const int row_a = MapA::row(tid), row_b = MapB::row(tid);
  if (steps > 0) {
    load_a(0, ra);
    if constexpr (kPrefetchB) load_b(0, rb);
  }
  int buf = 0;
  for (int t = 0; t < steps; ++t) {
    if constexpr (!kPrefetchB) load_b(t, rb);
#pragma unroll
    for (int e = 0; e < MapA::kPer; ++e) As[buf][MapA::k(tid, e)][row_a] = ra[e];
#pragma unroll
    for (int e = 0; e < MapB::kPer; ++e) Bs[buf][MapB::k(tid, e)][row_b] = rb[e];
    __syncthreads();
    // The other buffer was last read in step t-1, which every thread finished before the
    // barrier above, so step t+1's loads may proceed and land there next iteration.
    if (t + 1 < steps) {
      load_a(t + 1, ra);
      if constexpr (kPrefetchB) load_b(t + 1, rb);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][4 * tm]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][BM / 2 + 4 * tm]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][4 * tn]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][BN / 2 + 4 * tn]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    buf ^= 1;
  }
}

__device__ __forceinline__ void zero(float (&acc)[8][8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
}

// Writes an activation tile (forward output / input gradient): rows m = (n, position) of
// [0, rows) with `plane` positions per image, columns = channels of the group [0, per_group),
// `channels` in all, bias per channel (may be null).
template <class T, bool kLast, class TT>
__device__ __forceinline__ void store_activations(const float (&acc)[8][8], int m0, int n0, int tm, int tn, int rows,
                                                  const FastDiv& plane, int per_group, int channels, int gi,
                                                  const T* __restrict__ bias, T* __restrict__ out) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + TT::row(tm, i);
    if (m >= rows) continue;
    const int n = plane.div(m), p = m - n * plane.d;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = n0 + TT::col(tn, j);
      if (c >= per_group) continue;
      const int cc = gi * per_group + c;
      const T v = from_acc<T>(acc[i][j] + (bias != nullptr ? to_acc(bias[cc]) : 0.f));
      if constexpr (kLast)
        out[i64(m) * channels + cc] = v;
      else
        out[(i64(n) * channels + cc) * plane.d + p] = v;
    }
  }
}

// Split reduction (forward, backward data): the float partial sums of split `split` of a
// rows x per_group tile of group gi, at partial[((split * groups + gi) * rows + m) * per_group + c].
template <class TT>
__device__ __forceinline__ void store_partial(const float (&acc)[8][8], int m0, int n0, int tm, int tn, int rows,
                                              int per_group, int groups, int split, int gi,
                                              float* __restrict__ partial) {
  float* base = partial + (i64(split) * groups + gi) * rows * per_group;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + TT::row(tm, i);
    if (m >= rows) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = n0 + TT::col(tn, j);
      if (c < per_group) base[i64(m) * per_group + c] = acc[i][j];
    }
  }
}

// out = sum over splits s = 0, 1, ... (in that order) of the partial sums, plus bias, rounded once
// to T; one thread per output element in output memory order. Deterministic.
template <class T, bool kLast>
__global__ void __launch_bounds__(256)
    split_reduce_activations(const float* __restrict__ partial, int splits, int groups, int rows, int plane,
                             int per_group, const T* __restrict__ bias, T* __restrict__ out) {
  const int channels = groups * per_group;
  const i64 total = i64(rows) * channels;
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(gridDim.x) * blockDim.x) {
    i64 m;
    int cc;
    if constexpr (kLast) {
      m = o / channels, cc = int(o - m * channels);
    } else {
      const i64 n = o / (i64(channels) * plane), rem = o - n * channels * i64(plane);
      cc = int(rem / plane);
      m = n * plane + (rem - i64(cc) * plane);
    }
    const int gi = cc / per_group, c = cc - gi * per_group;
    float sum = 0.f;
    for (int sp = 0; sp < splits; ++sp) sum += partial[((i64(sp) * groups + gi) * rows + m) * per_group + c];
    if (bias != nullptr) sum += to_acc(bias[cc]);
    out[o] = from_acc<T>(sum);
  }
}

// ------------------------------------------------------------------------------ tensor cores
// Block tile 128 x 128, 8 warps as 2 (rows) x 4 (columns), each warp 64 x 32 = 4 x 4 tiles of
// m16n8, one m16n8k8 multiply-add per tile and 8-deep step: mma.sync.m16n8k8 with TF32 operands
// (float) or f16 operands (float16), float32 accumulators. Fragment layouts (PTX ISA, per lane:
// gid = lane / 4, tig = lane % 4): C/D element r at row gid + 8*(r/2), column 2*tig + r%2;
// TF32 A: (gid, tig), (gid+8, tig), (gid, tig+4), (gid+8, tig+4); TF32 B: (k tig, n gid),
// (k tig+4, n gid); f16 A: rows gid and gid+8, columns 2*tig and 2*tig+1 packed; f16 B: k 2*tig,
// 2*tig+1 at column gid packed. Shared rows are padded by 8 floats so that the 32 lanes' scalar
// fragment loads fall in 32 different banks.
// Host builds of these sources (no __CUDA_ARCH__) compute each lane's C elements from the same
// shared tiles with the same operand rounding, which checks the tiling and the C layout.
__device__ __forceinline__ float round_tf32(float v) {
#ifdef __CUDA_ARCH__
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
  return __uint_as_float(r);
#else
  unsigned u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;  // nearest, ties away
  std::memcpy(&v, &u, sizeof v);
  return v;
#endif
}

template <class T, int BM, int BN, class MapA, class MapB, class LoadA, class LoadB>
__device__ __forceinline__ void tensorop_mainloop(int steps, const LoadA& load_a, const LoadB& load_b,
                                                  float (&acc)[16][4]) {
  static_assert(BM == 128 && BN == 128 && MapA::kDepth == 8, "the warp layout assumes 128x128x8 tiles");
  constexpr int kBK = 8, kPad = 8;
  constexpr bool kHalf = !std::is_same_v<T, float>;
  __shared__ float As[2][kBK][BM + kPad];
  __shared__ float Bs[2][kBK][BN + kPad];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, gid = lane / 4, tig = lane % 4;
  const int wm = (warp % 2) * 64, wn = (warp / 2) * 32;
  float ra[MapA::kPer], rb[MapB::kPer];
  const int row_a = MapA::row(tid), row_b = MapB::row(tid);
  if (steps > 0) {
    load_a(0, ra);
    load_b(0, rb);
  }
  int buf = 0;
  for (int t = 0; t < steps; ++t) {
    // Operands are rounded once, on their way to shared memory (float16 values are exact).
#pragma unroll
    for (int e = 0; e < MapA::kPer; ++e) As[buf][MapA::k(tid, e)][row_a] = kHalf ? ra[e] : round_tf32(ra[e]);
#pragma unroll
    for (int e = 0; e < MapB::kPer; ++e) Bs[buf][MapB::k(tid, e)][row_b] = kHalf ? rb[e] : round_tf32(rb[e]);
    __syncthreads();
    if (t + 1 < steps) {
      load_a(t + 1, ra);
      load_b(t + 1, rb);
    }
#ifdef __CUDA_ARCH__
    unsigned b[4][2];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = wn + 8 * j + gid;
      if constexpr (kHalf) {
        const __half2 h = __floats2half2_rn(Bs[buf][2 * tig][n], Bs[buf][2 * tig + 1][n]);
        b[j][0] = *reinterpret_cast<const unsigned*>(&h);
      } else {
        b[j][0] = __float_as_uint(Bs[buf][tig][n]), b[j][1] = __float_as_uint(Bs[buf][tig + 4][n]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = wm + 16 * i + gid;
      unsigned a[4];
      if constexpr (kHalf) {
        const __half2 lo = __floats2half2_rn(As[buf][2 * tig][m], As[buf][2 * tig + 1][m]);
        const __half2 hi = __floats2half2_rn(As[buf][2 * tig][m + 8], As[buf][2 * tig + 1][m + 8]);
        a[0] = *reinterpret_cast<const unsigned*>(&lo), a[1] = *reinterpret_cast<const unsigned*>(&hi);
      } else {
        a[0] = __float_as_uint(As[buf][tig][m]), a[1] = __float_as_uint(As[buf][tig][m + 8]);
        a[2] = __float_as_uint(As[buf][tig + 4][m]), a[3] = __float_as_uint(As[buf][tig + 4][m + 8]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float (&c)[4] = acc[4 * i + j];
        if constexpr (kHalf)
          asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
                       : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                       : "r"(a[0]), "r"(a[1]), "r"(b[j][0]));
        else
          asm volatile(
              "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
              "{%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[j][0]), "r"(b[j][1]));
      }
    }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int m = wm + 16 * i + gid + 8 * (r / 2), n = wn + 8 * j + 2 * tig + r % 2;
          float sum = acc[4 * i + j][r];
          for (int kk = 0; kk < kBK; ++kk) sum = fmaf(As[buf][kk][m], Bs[buf][kk][n], sum);
          acc[4 * i + j][r] = sum;
        }
#endif
    buf ^= 1;
  }
}

// ------------------------------------------------------------------------------------ forward
// Rows m = (n, output position), columns k of the group, reduction (q, channel chunk).
// Grid (M tiles, Kg tiles, groups).
// kTensorOp: the arithmetic on tensor cores (tensorop_mainloop) instead of FFMA, same operand
// gathers and the same reduction split.
template <class T, bool kLast, int BM, int BN, bool kTensorOp>
__device__ __forceinline__ void fprop_body(const Dims& dm, const T* __restrict__ x, const T* __restrict__ w,
                                           const T* __restrict__ bias, T* __restrict__ y, int group0,
                                           float* __restrict__ partial, int splits, int chunk) {
  const ConvDims& d = dm.c;
  constexpr int NT = Tile<BM, BN>::kThreads, kBK = Tile<BM, BN>::kBK;
  using MapA = Map<BM, NT, kBK, kLast>;  // channels-last: a thread's channels are adjacent in memory
  using MapB = Map<BN, NT, kBK, true>;
  using TT = ThreadTile<BM, BN, !kLast>;
  const int tid = threadIdx.x;
  const int split = int(blockIdx.z) % splits, gi = group0 + int(blockIdx.z) / splits;
  const int m0 = int(blockIdx.x) * BM, n0 = int(blockIdx.y) * BN;
  const int steps_total = d.kvol * dm.chunks.d;
  const int s_begin = split * chunk;
  const int s_end = int(i64(s_begin) + chunk < i64(steps_total) ? i64(s_begin) + chunk : i64(steps_total));
  const int M = d.N * d.P;

  // A: this thread's row, decoded once.
  const int m = m0 + MapA::row(tid);
  const bool m_ok = m < M;
  int d0, h0, w0;
  const T* a_base;
  {
    const int mm = m_ok ? m : 0;
    const int n = dm.plane.div(mm), p = mm - n * d.P;
    const int od = dm.ohw.div(p), rem = p - od * d.ohw, oh = dm.ow.div(rem), ow = rem - oh * d.OW;
    // A row past the GEMM's end gets a depth coordinate no window reaches (one register instead
    // of a live predicate across the loop).
    d0 = m_ok ? od * d.sd - d.pd : kFarOutside, h0 = oh * d.sh - d.ph, w0 = ow * d.sw - d.pw;
    a_base = kLast ? x + i64(n) * d.Q * d.C + i64(gi) * d.Cg : x + (i64(n) * d.C + i64(gi) * d.Cg) * d.Q;
  }
  auto load_a = [&](int t, float (&v)[MapA::kPer]) {
    const int st = s_begin + t, q = dm.chunks.div(st), c0 = (st - q * dm.chunks.d) * kBK;
    const int kd = dm.khw.div(q), q2 = q - kd * d.khw, kh = dm.kw.div(q2), kw = q2 - kh * d.KW;
    const int id = d0 + kd * d.dd, ih = h0 + kh * d.dh, iw = w0 + kw * d.dw;
    const bool ok = inside(id, d.ID) && inside(ih, d.IH) && inside(iw, d.IW);
    const int cell = (id * d.IH + ih) * d.IW + iw;
    const int c_first = c0 + MapA::k(tid, 0);
    // The step's first element, then a fixed 32-bit stride: one multiply-add per element.
    const T* first = kLast ? a_base + i64(cell) * d.C + c_first : a_base + i64(c_first) * d.Q + cell;
    const int stride = kLast ? MapA::kStep : MapA::kStep * d.Q;
#pragma unroll
    for (int e = 0; e < MapA::kPer; ++e)
      v[e] = (ok && c_first + e * MapA::kStep < d.Cg) ? to_acc(first[e * stride]) : 0.f;
  };
  // B: W^T; this thread's output channel.
  const int k = n0 + MapB::row(tid);
  const int cg_limit = k < d.Kg ? d.Cg : 0;  // no channel of a column past the GEMM's end is read
  const T* b_row = w + i64(gi * d.Kg + (k < d.Kg ? k : 0)) * d.R;
  auto load_b = [&](int t, float (&v)[MapB::kPer]) {
    const int st = s_begin + t, q = dm.chunks.div(st), c0 = (st - q * dm.chunks.d) * kBK;
    const int c_first = c0 + MapB::k(tid, 0);
    const T* first = b_row + c_first * d.kvol + q;
#pragma unroll
    for (int e = 0; e < MapB::kPer; ++e)
      v[e] = (c_first + e * MapB::kStep < cg_limit) ? to_acc(first[e * MapB::kStep * d.kvol]) : 0.f;
  };

  float acc[8][8];
  zero(acc);
  if constexpr (kTensorOp) {
    float (&tc)[16][4] = reinterpret_cast<float (&)[16][4]>(acc);  // same 64 registers, tile order
    tensorop_mainloop<T, BM, BN, MapA, MapB>(s_end > s_begin ? s_end - s_begin : 0, load_a, load_b, tc);
    // acc[4i + j][r]: m16n8 tile (i, j) of the warp, C fragment element r.
    const int lane = tid % 32, warp = tid / 32, gid = lane / 4, tig = lane % 4;
    const int wm = (warp % 2) * 64, wn = (warp / 2) * 32;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int mm = m0 + wm + 16 * i + gid + 8 * (r / 2), c = n0 + wn + 8 * j + 2 * tig + r % 2;
          if (mm >= M || c >= d.Kg) continue;
          const float v = tc[4 * i + j][r];
          if (partial != nullptr) {
            partial[((i64(split) * (d.K / d.Kg) + gi) * M + mm) * d.Kg + c] = v;
          } else {
            const int n = dm.plane.div(mm), p = mm - n * dm.plane.d, cc = gi * d.Kg + c;
            const T out = from_acc<T>(v + (bias != nullptr ? to_acc(bias[cc]) : 0.f));
            if constexpr (kLast)
              y[i64(mm) * d.K + cc] = out;
            else
              y[(i64(n) * d.K + cc) * dm.plane.d + p] = out;
          }
        }
  } else {
    const int tm = TT::tm(tid), tn = TT::tn(tid);
    mainloop<BM, BN, MapA, MapB, TT>(s_end > s_begin ? s_end - s_begin : 0, load_a, load_b, tm, tn, acc);
    if (partial != nullptr)
      store_partial<TT>(acc, m0, n0, tm, tn, M, d.Kg, d.K / d.Kg, split, gi, partial);
    else
      store_activations<T, kLast, TT>(acc, m0, n0, tm, tn, M, dm.plane, d.Kg, d.K, gi, bias, y);
  }
}

template <class T, bool kLast, int BM, int BN>
__global__ void __launch_bounds__(Tile<BM, BN>::kThreads, Tile<BM, BN>::kMinBlocks)
    igemm_fprop_simt(Dims dm, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                     T* __restrict__ y, int group0, float* __restrict__ partial, int splits, int chunk) {
  fprop_body<T, kLast, BM, BN, false>(dm, x, w, bias, y, group0, partial, splits, chunk);
}

// Version 3: the forward on tensor cores, float16 with mma.sync f16 (float32 accumulate), float32
// with TF32 (inputs rounded to 10-bit mantissas, float32 accumulate; only when allowed).
template <class T, bool kLast, int BM, int BN>
__global__ void __launch_bounds__(Tile<BM, BN>::kThreads, Tile<BM, BN>::kMinBlocks)
    igemm_fprop_tensorop(Dims dm, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                         T* __restrict__ y, int group0, float* __restrict__ partial, int splits, int chunk) {
  fprop_body<T, kLast, BM, BN, true>(dm, x, w, bias, y, group0, partial, splits, chunk);
}

// ------------------------------------------------------------------------------ backward data
// Rows i = (n, input position), columns c of the group, reduction (q, chunk of the group's output
// channels). Grid (rows tiles, Cg tiles, groups).
// Backward data steps 12 deep: its gather does more per step than the forward's (the stride
// test on three axes), which 12 steps' FFMA amortise; 16 would need registers that spill.
constexpr int kDgradBK = 12;

template <class T, bool kLast, int BM, int BN>
__global__ void __launch_bounds__(Tile<BM, BN>::kThreads, Tile<BM, BN>::kMinBlocks)
    igemm_dgrad_simt(Dims dm, const T* __restrict__ dy, const T* __restrict__ w, const T* __restrict__ bias,
                     T* __restrict__ dx, int group0, float* __restrict__ partial, int splits, int chunk) {
  const ConvDims& d = dm.c;
  constexpr int NT = Tile<BM, BN>::kThreads, kBK = kDgradBK;
  using MapA = Map<BM, NT, kBK, kLast>;
  using MapB = Map<BN, NT, kBK, true>;
  using TT = ThreadTile<BM, BN, !kLast>;
  const int tid = threadIdx.x;
  const int split = int(blockIdx.z) % splits, gi = group0 + int(blockIdx.z) / splits;
  const int m0 = int(blockIdx.x) * BM, n0 = int(blockIdx.y) * BN;
  const int steps_total = d.kvol * dm.chunks.d;
  const int s_begin = split * chunk;
  const int s_end = int(i64(s_begin) + chunk < i64(steps_total) ? i64(s_begin) + chunk : i64(steps_total));
  const int M = d.N * d.Q;

  // A: dY_col[i][(q, k)]: the output whose window puts offset q on input cell i, when the stride
  // lands on it. Per row: the input cell plus the padding, decoded once.
  const int i_row = m0 + MapA::row(tid);
  const bool i_ok = i_row < M;
  int td, th, tw;
  const T* a_base;
  {
    const int ii = i_ok ? i_row : 0;
    const int n = ii / d.Q, s = ii - n * d.Q;  // once per thread, before the loop
    const int id = s / d.ihw, rem = s - id * d.ihw, ih = rem / d.IW, iw = rem - ih * d.IW;
    td = i_ok ? id + d.pd : -1, th = ih + d.ph, tw = iw + d.pw;  // -1: no output reaches a row past the end
    a_base = kLast ? dy + i64(n) * d.P * d.K + i64(gi) * d.Kg : dy + (i64(n) * d.K + i64(gi) * d.Kg) * d.P;
  }
  auto load_a = [&](int t, float (&v)[MapA::kPer]) {
    const int st = s_begin + t, q = dm.chunks.div(st), k0 = (st - q * dm.chunks.d) * kBK;
    const int kd = dm.khw.div(q), q2 = q - kd * d.khw, kh = dm.kw.div(q2), kw = q2 - kh * d.KW;
    const int ud = td - kd * d.dd, uh = th - kh * d.dh, uw = tw - kw * d.dw;
    // A negative u divides to garbage that the sign test masks (FastDiv reads it as unsigned).
    const int od = dm.sd.div(ud), oh = dm.sh.div(uh), ow = dm.sw.div(uw);
    const bool ok = ud >= 0 && uh >= 0 && uw >= 0 && od * d.sd == ud && oh * d.sh == uh && ow * d.sw == uw &&
                    od < d.OD && oh < d.OH && ow < d.OW;
    const int o = (od * d.OH + oh) * d.OW + ow;
    const int k_first = k0 + MapA::k(tid, 0);
    const T* first = kLast ? a_base + i64(o) * d.K + k_first : a_base + i64(k_first) * d.P + o;
    const int stride = kLast ? MapA::kStep : MapA::kStep * d.P;
#pragma unroll
    for (int e = 0; e < MapA::kPer; ++e)
      v[e] = (ok && k_first + e * MapA::kStep < d.Kg) ? to_acc(first[e * stride]) : 0.f;
  };
  // B: B[(q, k)][c] = w[group's k][c][q]; this thread's input channel c.
  const int c = n0 + MapB::row(tid);
  const int kg_limit = c < d.Cg ? d.Kg : 0;  // nothing is read for a column past the GEMM's end
  const T* b_col = w + i64(gi) * d.Kg * d.R + (c < d.Cg ? c : 0) * d.kvol;
  auto load_b = [&](int t, float (&v)[MapB::kPer]) {
    const int st = s_begin + t, q = dm.chunks.div(st), k0 = (st - q * dm.chunks.d) * kBK;
    const int k_first = k0 + MapB::k(tid, 0);
    const T* first = b_col + i64(k_first) * d.R + q;
#pragma unroll
    for (int e = 0; e < MapB::kPer; ++e)
      v[e] = (k_first + e * MapB::kStep < kg_limit) ? to_acc(first[e * MapB::kStep * d.R]) : 0.f;
  };

  const int tm = TT::tm(tid), tn = TT::tn(tid);
  float acc[8][8];
  zero(acc);
  mainloop<BM, BN, MapA, MapB, TT, false>(s_end > s_begin ? s_end - s_begin : 0, load_a, load_b, tm, tn, acc);
  if (partial != nullptr)
    store_partial<TT>(acc, m0, n0, tm, tn, M, d.Cg, d.C / d.Cg, split, gi, partial);
  else
    store_activations<T, kLast, TT>(acc, m0, n0, tm, tn, M, dm.plane, d.Cg, d.C, gi, bias, dx);
}

// ---------------------------------------------------------------------------- backward weight
// Rows k of the group, columns r = q*Cg + c, reduction over the output positions. The positions
// are walked as (n, od, oh, chunk of kBK along ow), the last chunk of a row zero-padded, so that
// all positions a thread loads in one step share n, od and oh: one decode per step, and per
// element only the ow offset. Steps [split*chunk, (split+1)*chunk) of the `steps` in all belong to
// chunk `split`, whose float partial sums go to dst + split*K*R (weight order) of the workspace,
// or to dW itself when T is float and there is one chunk. Grid (R tiles, Kg tiles, groups * splits).
template <class T, bool kLast, int BM, int BN>
__global__ void __launch_bounds__(Tile<BM, BN>::kThreads, Tile<BM, BN>::kMinBlocks)
    igemm_wgrad_simt(Dims dm, const T* __restrict__ dy, const T* __restrict__ x, float* __restrict__ dst, int group0,
                     int splits, int chunk, int steps_total) {
  const ConvDims& d = dm.c;
  constexpr int NT = Tile<BM, BN>::kThreads, kBK = Tile<BM, BN>::kBK;
  using MapA = Map<BM, NT, kBK, !kLast>;  // channels-first: a thread's positions are adjacent in memory
  using MapB = Map<BN, NT, kBK, !kLast>;
  using TT = ThreadTile<BM, BN, false>;
  const int tid = threadIdx.x;
  const int split = int(blockIdx.z) % splits, gi = group0 + int(blockIdx.z) / splits;
  const int n0 = int(blockIdx.x) * BN, m0 = int(blockIdx.y) * BM;
  const int s_begin = split * chunk;
  const int s_end = int(i64(s_begin) + chunk < i64(steps_total) ? i64(s_begin) + chunk : i64(steps_total));

  // The output row (n, od, oh) and first ow of step t of this chunk.
  struct Row {
    int n, od, oh, ow0;
  };
  auto row_of = [&](int t) -> Row {
    const int st = s_begin + t;
    const int row = dm.wchunks.div(st), ow0 = (st - row * dm.wchunks.d) * kBK;
    const int n = dm.odh.div(row), rem = row - n * dm.odh.d, od = dm.oh.div(rem);
    return {n, od, rem - od * d.OH, ow0};
  };

  // A: A[k][m] = dY[m][group's k]; this thread's k.
  const int k = m0 + MapA::row(tid);
  const bool k_ok = k < d.Kg;
  const int kk = gi * d.Kg + (k_ok ? k : 0);
  auto load_a = [&](int t, float (&v)[MapA::kPer]) {
    const Row w = row_of(t);
    const int ow_first = w.ow0 + MapA::k(tid, 0);
    const int p_first = (w.od * d.OH + w.oh) * d.OW + ow_first;
    // The step's first element, then fixed 32-bit strides: one multiply-add per element.
    const T* first = kLast ? dy + (i64(w.n) * d.P + p_first) * d.K + kk : dy + (i64(w.n) * d.K + kk) * d.P + p_first;
    const int stride = kLast ? MapA::kStep * d.K : MapA::kStep;
#pragma unroll
    for (int e = 0; e < MapA::kPer; ++e)
      v[e] = (k_ok && ow_first + e * MapA::kStep < d.OW) ? to_acc(first[e * stride]) : 0.f;
  };
  // B: B[m][r] = X_col[m][r]; this thread's column r = q*Cg + c, decoded once.
  const int r = n0 + MapB::row(tid);
  const bool r_ok = r < d.R;
  int off_d, off_h, off_w, cc;
  {
    const int rr = r_ok ? r : 0;
    const int q = rr / d.Cg, c = rr - q * d.Cg;  // once per thread, before the loop
    const int kd = q / d.khw, q2 = q - kd * d.khw, kh = q2 / d.KW, kw = q2 - kh * d.KW;
    off_d = kd * d.dd - d.pd, off_h = kh * d.dh - d.ph, off_w = kw * d.dw - d.pw;
    cc = gi * d.Cg + c;
  }
  auto load_b = [&](int t, float (&v)[MapB::kPer]) {
    const Row w = row_of(t);
    const int id = w.od * d.sd + off_d, ih = w.oh * d.sh + off_h;
    const bool row_ok = r_ok && inside(id, d.ID) && inside(ih, d.IH);
    const int ow_first = w.ow0 + MapB::k(tid, 0);
    const int iw_first = ow_first * d.sw + off_w;
    // Cell (id, ih, iw_first) may lie outside the input (then only its offset is formed, never
    // dereferenced); element e is iw_first + e*step*sw, one multiply-add away.
    const int cell_first = (id * d.IH + ih) * d.IW + iw_first;
    const T* first = kLast ? x + (i64(w.n) * d.Q + cell_first) * d.C + cc
                           : x + (i64(w.n) * d.C + cc) * d.Q + cell_first;
    const int iw_step = MapB::kStep * d.sw;
    const int stride = kLast ? iw_step * d.C : iw_step;
#pragma unroll
    for (int e = 0; e < MapB::kPer; ++e) {
      const bool ok = row_ok && ow_first + e * MapB::kStep < d.OW && inside(iw_first + e * iw_step, d.IW);
      v[e] = ok ? to_acc(first[e * stride]) : 0.f;
    }
  };

  const int tm = TT::tm(tid), tn = TT::tn(tid);
  float acc[8][8];
  zero(acc);
  mainloop<BM, BN, MapA, MapB, TT>(s_end > s_begin ? s_end - s_begin : 0, load_a, load_b, tm, tn, acc);

  float* out = dst + i64(split) * d.K * d.R;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int kr = m0 + TT::row(tm, i);
    if (kr >= d.Kg) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int rc = n0 + TT::col(tn, j);
      if (rc >= d.R) continue;
      const int q = rc / d.Cg, c = rc - q * d.Cg;  // epilogue only
      out[i64(gi * d.Kg + kr) * d.R + c * d.kvol + q] = acc[i][j];
    }
  }
}

}  // namespace v2
