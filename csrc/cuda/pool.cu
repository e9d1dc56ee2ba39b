// pool.cu — CUDA max/min/average pooling (sliding windows and adaptive windows), forward and
// backward, channels-first and channels-last, float, double and float16 (__half: loaded as float,
// summed and compared in float, rounded once to half at the store; max/min results are the input
// elements themselves, exactly).
//
// Semantics are the CPU kernels' (csrc/cpu/pool.cpp) and PyTorch's: padded cells are never
// selected by max/min; a NaN wins and the last NaN in row-major window order gives the index
// (PyTorch's order); ties between numbers go to the first element; the average divisor follows count_include_pad/divisor_override,
// or the in-bounds count under "same"/"valid" padding; adaptive window i of an axis spans
// [floor(i*in/out), ceil((i+1)*in/out)).
//
// Forward: one thread per output element, in output memory order (coalesced stores; in
// channels-last the threads of a warp read consecutive channels). Channels-first windows of 32
// cells or more (global pooling among them) take one warp per output instead, the lanes splitting
// the window (a contiguous run of cells when it is whole rows) and combining with a warp-shuffle
// tree in a fixed order.
//
// Backward is a gather: one thread per input cell sums, in increasing output order, the
// gradients of the outputs whose windows cover it (for max/min: whose index names it). Every
// input cell is written once by one thread: deterministic, no atomics, and the same order of
// additions as the CPU kernel. Indices handed in by a caller are validated on the device first
// (integer atomics only); an index outside its own window, which no forward produces, sends the
// call to a serial per-plane scatter that honours it exactly.
//
// Index width: kernels are instantiated for 32-bit and 64-bit element indices; the launcher
// takes 32 bits whenever every extent of the call fits.
//
// Current: v2, the only version built (how it got here: docs/performance.md, "Kernel history").
// On an H200: 0.7x PyTorch forward, 0.3-0.5x backward, 5-30 % of the copy bandwidth
// (docs/performance.md, "CUDA on an H200").
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace convkern::cuda {
namespace {

// Channels-first windows at least this large take one warp per output (e.g. 7x7 global pooling):
// one thread per output would read a whole plane alone, uncoalesced.
constexpr int kWarpWindowCells = 32;

template <class I>
struct PoolDims {
  I N, C;  // planes = N*C; channels-first calls may pass (planes, 1)
  I in[3], out[3];  // spatial extents (unit leading axes for lower ranks)
  I k[3], s[3], d[3], pb[3];  // sliding windows: kernel, stride, dilation, padding before
  I end_cap[3];  // in + pad_after: where an average window's padded extent stops
  I in_plane, out_plane, ihw, ohw;
  I total_in, total_out;  // elements of the input and of the output
  int adaptive;  // 1: adaptive windows (k, s, d, pb unused)
  int avg_divisor;  // 0: padded window size, 1: in-bounds count, 2: override
  double divisor_override;
};

// The cells of window o on one axis: lo, lo + step, ... (count of them, all inside the input).
template <class I>
struct Span {
  I lo, count, step;
};

template <class I>
__device__ __forceinline__ Span<I> window(const PoolDims<I>& p, int a, I o) {
  if (p.adaptive) {
    const I lo = o * p.in[a] / p.out[a];
    const I hi = ((o + 1) * p.in[a] + p.out[a] - 1) / p.out[a];
    return {lo, hi - lo, I(1)};
  }
  const I start = o * p.s[a] - p.pb[a];
  const I dil = p.d[a];
  // Window cells are start + j*dil for j in [0, k); keep those inside [0, in).
  const I j_lo = start >= 0 ? I(0) : ceil_div_signed<I>(-start, dil);
  const I j_hi_in = start >= p.in[a] ? I(0) : ceil_div_signed<I>(p.in[a] - start, dil);
  const I j_hi = j_hi_in < p.k[a] ? j_hi_in : p.k[a];
  const I count = j_hi > j_lo ? j_hi - j_lo : I(0);
  return {start + j_lo * dil, count, dil};
}

// PyTorch's average divisor for output (od, oh, ow) (avg pooling has dilation 1).
template <class I>
__device__ __forceinline__ double avg_divisor(const PoolDims<I>& p, const I (&o)[3], const Span<I> (&sp)[3]) {
  if (p.avg_divisor == 2) return p.divisor_override;
  double prod = 1;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    if (p.avg_divisor == 0 && !p.adaptive) {
      const I start = o[a] * p.s[a] - p.pb[a];
      const I end = start + p.k[a] < p.end_cap[a] ? start + p.k[a] : p.end_cap[a];
      prod *= double(end - start);
    } else {
      prod *= double(sp[a].count);
    }
  }
  return prod;
}

// Built from the <cmath> macros: std::numeric_limits is not callable from device code without
// --expt-relaxed-constexpr.
template <class T>
__device__ __forceinline__ T quiet_nan() {
  return T(NAN);
}

template <class T>
__device__ __forceinline__ T infinity() {
  return T(INFINITY);
}

template <class T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;
}

// The sequential max/min rule (PyTorch's): the first cell takes the window; after that every
// NaN replaces the best (so the last NaN of the window gives the index), a number never replaces
// a NaN, and only a strictly better number replaces a number (ties keep the first).
template <class T, bool kMin>
__device__ __forceinline__ bool takes(T v, T best, i64 best_i) {
  if (best_i < 0 || is_nan(v)) return true;
  if (is_nan(best)) return false;
  return kMin ? v < best : v > best;
}

// The same rule between two partial results (v1 at i1, v2 at i2) of disjoint parts of a window:
// true when (v1, i1) is the one the sequential rule would end with. Indices increase in window
// order, so "first" is "smaller index" and "last" is "larger index".
template <class T, bool kMin>
__device__ __forceinline__ bool prefer(T v1, i64 i1, T v2, i64 i2) {
  if (i1 < 0) return false;
  if (i2 < 0) return true;
  const bool n1 = is_nan(v1), n2 = is_nan(v2);
  if (n1 || n2) return n1 && (!n2 || i1 > i2);
  if (v1 == v2) return i1 < i2;
  return kMin ? v1 < v2 : v1 > v2;
}

// Where output element `lin` (in output memory order) lives: its window's position o in the
// plane and the offset / stride of its plane's input cells.
template <class I, bool kLast>
struct Located {
  I o, in_base, in_stride;
};

template <class I, bool kLast>
__device__ __forceinline__ Located<I, kLast> locate_output(const PoolDims<I>& p, I lin) {
  if constexpr (kLast) {
    const I c = lin % p.C, rest = lin / p.C;
    const I o = rest % p.out_plane, n = rest / p.out_plane;
    return {o, n * p.in_plane * p.C + c, p.C};
  } else {
    const I plane = lin / p.out_plane;
    return {lin - plane * p.out_plane, plane * p.in_plane, I(1)};
  }
}

template <class I>
__device__ __forceinline__ void split3(I v, I hw, I w, I (&r)[3]) {
  r[0] = v / hw;
  const I rem = v - r[0] * hw;
  r[1] = rem / w;
  r[2] = rem - r[1] * w;
}

// ------------------------------------------------------------------------------------ forward

// One thread per output element. kOp: 0 max, 1 min, 2 average.
template <class T, class I, int kOp, bool kLast>
__global__ void __launch_bounds__(kThreads)
    pool_forward(PoolDims<I> p, const T* __restrict__ x, T* __restrict__ y, i64* __restrict__ idx) {
  using A = acc_t<T>;
  for (I lin = I(blockIdx.x) * kThreads + threadIdx.x; lin < p.total_out; lin += I(gridDim.x) * kThreads) {
    const Located<I, kLast> at = locate_output<I, kLast>(p, lin);
    I o[3];
    split3(at.o, p.ohw, p.out[2], o);
    const Span<I> sp[3] = {window(p, 0, o[0]), window(p, 1, o[1]), window(p, 2, o[2])};
    if constexpr (kOp == 2) {
      A sum = 0;
      for (I a = 0; a < sp[0].count; ++a) {
        const I id = sp[0].lo + a * sp[0].step;
        for (I b = 0; b < sp[1].count; ++b) {
          const I row = (id * p.in[1] + sp[1].lo + b * sp[1].step) * p.in[2];
          for (I c = 0; c < sp[2].count; ++c)
            sum += to_acc(x[at.in_base + (row + sp[2].lo + c * sp[2].step) * at.in_stride]);
        }
      }
      const double div = avg_divisor(p, o, sp);
      y[lin] = from_acc<T>(div != 0 ? sum / A(div) : quiet_nan<A>());
    } else {
      A best = kOp == 1 ? infinity<A>() : -infinity<A>();
      i64 best_i = -1;
      for (I a = 0; a < sp[0].count; ++a) {
        const I id = sp[0].lo + a * sp[0].step;
        for (I b = 0; b < sp[1].count; ++b) {
          const I row = (id * p.in[1] + sp[1].lo + b * sp[1].step) * p.in[2];
          for (I c = 0; c < sp[2].count; ++c) {
            const I cell = row + sp[2].lo + c * sp[2].step;
            const A v = to_acc(x[at.in_base + cell * at.in_stride]);
            if (takes<A, kOp == 1>(v, best, best_i)) {
              best = v;
              best_i = i64(cell);
            }
          }
        }
      }
      y[lin] = from_acc<T>(best);  // exact: best is an input element, widened
      if (idx != nullptr) idx[lin] = best_i;
    }
  }
}

// Combines the 32 lanes' partial results (sum, or extreme value and index) into lane 0's. On a GPU
// a shuffle tree (lane l takes lane l + off for off = 16, 8, 4, 2, 1); elsewhere (host builds of
// these sources, which have no warps) through shared memory, lane 0 adding the lanes in order.
// Both are deterministic; for max/min both give the same element, since `prefer` picks by value
// and index, not by order.
template <class A, int kOp>
__device__ __forceinline__ void warp_combine(A& v, i64& vi, A* part_v, i64* part_i) {
#ifdef __CUDA_ARCH__
  (void)part_v, (void)part_i;
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const A w = __shfl_down_sync(0xffffffffu, v, off);
    const i64 wi = __shfl_down_sync(0xffffffffu, vi, off);
    if constexpr (kOp == 2) {
      v += w;
    } else if (prefer<A, kOp == 1>(w, wi, v, vi)) {
      v = w;
      vi = wi;
    }
  }
#else
  part_v[threadIdx.x] = v;
  part_i[threadIdx.x] = vi;
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    for (int l = 1; l < 32; ++l) {
      const A w = part_v[threadIdx.x + l];
      const i64 wi = part_i[threadIdx.x + l];
      if constexpr (kOp == 2) {
        v += w;
      } else if (prefer<A, kOp == 1>(w, wi, v, vi)) {
        v = w;
        vi = wi;
      }
    }
  }
  __syncthreads();
#endif
}

// Channels-first, large windows (global pooling among them): one warp per output, 8 outputs per
// block, so that the lanes read consecutive cells of a window row (coalesced) instead of one
// thread walking a whole plane. Each lane walks its share of the window in window order;
// warp_combine merges the lanes.
template <class T, class I, int kOp>
__global__ void __launch_bounds__(kThreads, 2)
    pool_forward_warp(PoolDims<I> p, const T* __restrict__ x, T* __restrict__ y, i64* __restrict__ idx) {
  using A = acc_t<T>;
#ifdef __CUDA_ARCH__
  A* part_v = nullptr;  // the shuffles need no scratch
  i64* part_i = nullptr;
#else
  __shared__ A part_v[kThreads];
  __shared__ i64 part_i[kThreads];
#endif
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (I first = I(blockIdx.x) * 8; first < p.total_out; first += I(gridDim.x) * 8) {
    const I lin = first + warp;
    A acc = kOp == 2 ? A(0) : (kOp == 1 ? infinity<A>() : -infinity<A>());
    i64 best_i = -1;
    I o[3] = {0, 0, 0};
    Span<I> sp[3] = {};
    if (lin < p.total_out) {
      const Located<I, false> at = locate_output<I, false>(p, lin);
      split3(at.o, p.ohw, p.out[2], o);
#pragma unroll
      for (int a = 0; a < 3; ++a) sp[a] = window(p, a, o[a]);
      const I cols = sp[2].count, plane_cells = sp[1].count * cols;
      const I cells = sp[0].count * plane_cells;
      // A window of whole rows (global pooling among them) is one contiguous run of cells: the
      // lanes read it without decoding a cell number.
      const bool contiguous = sp[2].count == p.in[2] && (sp[1].step == 1 || sp[1].count == 1) &&
                              (sp[0].count == 1 || (sp[1].count == p.in[1] && (sp[0].step == 1)));
      const I run_first = (sp[0].lo * p.in[1] + sp[1].lo) * p.in[2] + sp[2].lo;
      for (I e = lane; e < cells; e += 32) {
        I cell;
        if (contiguous) {
          cell = run_first + e;
        } else {
          const I a = e / plane_cells, rem = e - a * plane_cells, b = rem / cols, c = rem - b * cols;
          cell = ((sp[0].lo + a * sp[0].step) * p.in[1] + sp[1].lo + b * sp[1].step) * p.in[2] + sp[2].lo +
                 c * sp[2].step;
        }
        const A v = to_acc(x[at.in_base + cell]);
        if constexpr (kOp == 2) {
          acc += v;
        } else if (takes<A, kOp == 1>(v, acc, best_i)) {
          acc = v;
          best_i = i64(cell);
        }
      }
    }
    A v = acc;
    i64 vi = best_i;
    warp_combine<A, kOp>(v, vi, part_v, part_i);
    if (lane == 0 && lin < p.total_out) {
      if constexpr (kOp == 2) {
        const double div = avg_divisor(p, o, sp);
        y[lin] = from_acc<T>(div != 0 ? v / A(div) : quiet_nan<A>());
      } else {
        y[lin] = from_acc<T>(v);
        if (idx != nullptr) idx[lin] = vi;
      }
    }
  }
}

// ----------------------------------------------------------------------------------- backward

// The outputs of axis a whose windows contain input coordinate v: [lo, hi] (empty when lo > hi).
// For sliding windows with dilation the caller still checks that v falls on a window cell.
template <class I>
__device__ __forceinline__ void covering(const PoolDims<I>& p, int a, I v, I& lo, I& hi) {
  if (p.adaptive) {
    lo = v * p.out[a] / p.in[a];
    const I h = ((v + 1) * p.out[a] - 1) / p.in[a];
    hi = h < p.out[a] - 1 ? h : p.out[a] - 1;
    return;
  }
  const I t = v + p.pb[a];
  const I l = ceil_div_signed<I>(t - (p.k[a] - 1) * p.d[a], p.s[a]);
  lo = l > 0 ? l : I(0);
  const I h = t / p.s[a];
  hi = h < p.out[a] - 1 ? h : p.out[a] - 1;
}

// Whether window o of axis a contains input coordinate v.
template <class I>
__device__ __forceinline__ bool covers(const PoolDims<I>& p, int a, I o, I v) {
  if (p.adaptive) {
    const I lo = o * p.in[a] / p.out[a];
    const I hi = ((o + 1) * p.in[a] + p.out[a] - 1) / p.out[a];
    return lo <= v && v < hi;
  }
  const I t = v + p.pb[a] - o * p.s[a];
  return t >= 0 && t <= (p.k[a] - 1) * p.d[a] && t % p.d[a] == 0;
}

// One thread per input cell. kAvg: average pooling (each covering output's share), else max/min
// (the covering outputs whose index names this cell). The minimum of 2 blocks per SM in the
// launch bounds lets ptxas use up to 128 registers; without it, it chose 40 and spilled.
template <class T, class I, bool kAvg, bool kLast>
__global__ void __launch_bounds__(kThreads, 2)
    pool_backward_gather(PoolDims<I> p, const T* __restrict__ dy, const i64* __restrict__ idx, T* __restrict__ dx) {
  using A = acc_t<T>;
  for (I lin = I(blockIdx.x) * kThreads + threadIdx.x; lin < p.total_in; lin += I(gridDim.x) * kThreads) {
    I cell, out_base, out_stride;
    if constexpr (kLast) {
      const I c = lin % p.C, rest = lin / p.C;
      cell = rest % p.in_plane;
      out_base = (rest / p.in_plane) * p.out_plane * p.C + c;
      out_stride = p.C;
    } else {
      const I plane = lin / p.in_plane;
      cell = lin - plane * p.in_plane;
      out_base = plane * p.out_plane;
      out_stride = 1;
    }
    I v[3], lo[3], hi[3];
    split3(cell, p.ihw, p.in[2], v);
#pragma unroll
    for (int a = 0; a < 3; ++a) covering(p, a, v[a], lo[a], hi[a]);
    A acc = 0;
    for (I od = lo[0]; od <= hi[0]; ++od) {
      if (!covers(p, 0, od, v[0])) continue;
      for (I oh = lo[1]; oh <= hi[1]; ++oh) {
        if (!covers(p, 1, oh, v[1])) continue;
        for (I ow = lo[2]; ow <= hi[2]; ++ow) {
          if (!covers(p, 2, ow, v[2])) continue;
          const I pos = out_base + ((od * p.out[1] + oh) * p.out[2] + ow) * out_stride;
          if constexpr (kAvg) {
            const I o[3] = {od, oh, ow};
            const Span<I> sp[3] = {window(p, 0, od), window(p, 1, oh), window(p, 2, ow)};
            const double div = avg_divisor(p, o, sp);
            acc += div != 0 ? to_acc(dy[pos]) / A(div) : quiet_nan<A>();
          } else {
            if (idx[pos] == i64(cell)) acc += to_acc(dy[pos]);
          }
        }
      }
    }
    dx[lin] = from_acc<T>(acc);
  }
}

// Serial per-plane scatter for indices that leave their windows: dx = 0, then
// dx[plane][idx[o]] += dy[o] for o in order. One thread per plane. dx holds acc_t<T> sums: for
// float16 a float buffer that round_elements then rounds into the result.
template <class T, class I, bool kLast>
__global__ void __launch_bounds__(kThreads)
    pool_backward_scatter(PoolDims<I> p, const T* __restrict__ dy, const i64* __restrict__ idx,
                          acc_t<T>* __restrict__ dx) {
  const I planes = p.N * p.C;
  for (I plane = I(blockIdx.x) * kThreads + threadIdx.x; plane < planes; plane += I(gridDim.x) * kThreads) {
    I in_base, out_base, stride;
    if constexpr (kLast) {
      const I n = plane / p.C, c = plane - n * p.C;
      in_base = n * p.in_plane * p.C + c;
      out_base = n * p.out_plane * p.C + c;
      stride = p.C;
    } else {
      in_base = plane * p.in_plane;
      out_base = plane * p.out_plane;
      stride = 1;
    }
    for (I s = 0; s < p.in_plane; ++s) dx[in_base + s * stride] = 0;
    for (I o = 0; o < p.out_plane; ++o) {
      const i64 v = idx[out_base + o * stride];
      if (v >= 0) dx[in_base + I(v) * stride] += to_acc(dy[out_base + o * stride]);
    }
  }
}

// dst[i] = src[i] rounded to T.
template <class T>
__global__ void __launch_bounds__(kThreads)
    round_elements(const acc_t<T>* __restrict__ src, T* __restrict__ dst, i64 count) {
  for (i64 i = i64(blockIdx.x) * kThreads + threadIdx.x; i < count; i += i64(gridDim.x) * kThreads)
    dst[i] = from_acc<T>(src[i]);
}

// Validation of caller-supplied indices: the first position holding a value outside
// [-1, in_plane) (integer atomicMin: the result does not depend on the order), and whether
// any valid index lies outside its own window.
template <class I, bool kLast>
__global__ void __launch_bounds__(kThreads) pool_check_indices(PoolDims<I> p, const i64* __restrict__ idx,
                                                               unsigned long long* first_bad, unsigned int* outside) {
  for (I lin = I(blockIdx.x) * kThreads + threadIdx.x; lin < p.total_out; lin += I(gridDim.x) * kThreads) {
    const i64 v = idx[lin];
    if (v < -1 || v >= i64(p.in_plane)) {
      atomicMin(first_bad, static_cast<unsigned long long>(lin));
    } else if (v >= 0) {
      const Located<I, kLast> at = locate_output<I, kLast>(p, lin);
      I o[3], c[3];
      split3(at.o, p.ohw, p.out[2], o);
      split3(I(v), p.ihw, p.in[2], c);
      if (!(covers(p, 0, o[0], c[0]) && covers(p, 1, o[1], c[1]) && covers(p, 2, o[2], c[2]))) atomicOr(outside, 1u);
    }
  }
}

// ------------------------------------------------------------------------------------ launches

struct PoolCall {
  bool adaptive = false;
  i64 N = 0, C = 1;
  i64 in[3] = {1, 1, 1}, out[3] = {1, 1, 1};
  i64 k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, pb[3] = {0, 0, 0}, pa[3] = {0, 0, 0};
  int avg_divisor = 0;
  double divisor_override = 0;

  i64 in_plane() const { return in[0] * in[1] * in[2]; }
  i64 out_plane() const { return out[0] * out[1] * out[2]; }
  i64 total_in() const { return N * C * in_plane(); }
  i64 total_out() const { return N * C * out_plane(); }
  i64 max_window_cells() const {
    i64 cells = 1;
    for (int a = 0; a < 3; ++a) cells *= adaptive ? div_up(in[a], out[a]) + 1 : k[a];
    return cells;
  }
  // Whether every intermediate of the kernels' index math fits in 32 bits, with room for a
  // grid-stride step (at most 2^28) past the last element.
  bool fits_int32() const {
    const i64 lim = i64(1) << 30, part = i64(1) << 28;
    if (total_in() > lim || total_out() > lim) return false;
    for (int a = 0; a < 3; ++a) {
      if (in[a] > part || out[a] > part) return false;
      if (adaptive) {
        if (out[a] * (in[a] + 1) > lim) return false;
      } else {
        if (pb[a] > part || pa[a] > part || s[a] > part || d[a] > part || k[a] > part) return false;
        if (d[a] * k[a] > part || out[a] * s[a] > lim) return false;
      }
    }
    return true;
  }
  template <class I>
  PoolDims<I> dims() const {
    PoolDims<I> p{};
    p.N = I(N), p.C = I(C);
    for (int a = 0; a < 3; ++a) {
      p.in[a] = I(in[a]), p.out[a] = I(out[a]), p.k[a] = I(k[a]), p.s[a] = I(s[a]), p.d[a] = I(d[a]);
      p.pb[a] = I(pb[a]), p.end_cap[a] = I(in[a] + pa[a]);
    }
    p.in_plane = I(in_plane()), p.out_plane = I(out_plane());
    p.ihw = I(in[1] * in[2]), p.ohw = I(out[1] * out[2]);
    p.total_in = I(total_in()), p.total_out = I(total_out());
    p.adaptive = adaptive ? 1 : 0;
    p.avg_divisor = avg_divisor;
    p.divisor_override = divisor_override;
    return p;
  }
};

PoolCall pool_call(const PoolGeometry& g, const PoolLayout& layout) {
  PoolCall c;
  c.N = layout.N, c.C = layout.C;
  if (c.N * c.C != g.planes)
    throw std::invalid_argument("pooling layout: N*C = " + std::to_string(c.N * c.C) + " but the geometry has " +
                                std::to_string(g.planes) + " planes");
  for (int a = 0; a < 3; ++a) {
    c.in[a] = g.in[a], c.out[a] = g.out[a], c.k[a] = g.kernel[a], c.s[a] = g.stride[a], c.d[a] = g.dilation[a];
    c.pb[a] = g.pad_before[a], c.pa[a] = g.pad_after[a];
  }
  return c;
}

PoolCall pool_call(const AdaptivePoolGeometry& g, const PoolLayout& layout) {
  PoolCall c;
  c.adaptive = true;
  c.N = layout.N, c.C = layout.C;
  if (c.N * c.C != g.planes)
    throw std::invalid_argument("pooling layout: N*C = " + std::to_string(c.N * c.C) + " but the geometry has " +
                                std::to_string(g.planes) + " planes");
  for (int a = 0; a < 3; ++a) c.in[a] = g.in[a], c.out[a] = g.out[a];
  c.avg_divisor = 1;
  return c;
}

unsigned elementwise_blocks(i64 total) { return unsigned(std::min<i64>(div_up(total, kThreads), i64(1) << 20)); }

template <class T, class I, int kOp>
void launch_forward_typed(const PoolCall& c, bool last, const T* x, T* y, i64* idx, cudaStream_t s) {
  const PoolDims<I> p = c.template dims<I>();
  if (!last && c.max_window_cells() >= kWarpWindowCells) {
    const unsigned blocks = unsigned(std::min<i64>(div_up(c.total_out(), 8), i64(1) << 20));
    launch("pool_forward_warp", pool_forward_warp<T, I, kOp>, dim3(blocks), kThreads, s, p, x, y, idx);
  } else if (last) {
    launch("pool_forward", pool_forward<T, I, kOp, true>, dim3(elementwise_blocks(c.total_out())), kThreads, s, p, x, y,
           idx);
  } else {
    launch("pool_forward", pool_forward<T, I, kOp, false>, dim3(elementwise_blocks(c.total_out())), kThreads, s, p, x,
           y, idx);
  }
}

template <class T, int kOp>
void launch_forward(const PoolCall& c, bool last, const T* x, T* y, i64* idx, cudaStream_t s) {
  if (c.total_out() == 0) return;
  if (c.fits_int32())
    launch_forward_typed<T, int, kOp>(c, last, x, y, idx, s);
  else
    launch_forward_typed<T, i64, kOp>(c, last, x, y, idx, s);
}

template <class T, class I, bool kAvg>
void launch_gather_typed(const PoolCall& c, bool last, const T* dy, const i64* idx, T* dx, cudaStream_t s) {
  const PoolDims<I> p = c.template dims<I>();
  const dim3 grid(elementwise_blocks(c.total_in()));
  if (last)
    launch("pool_backward_gather", pool_backward_gather<T, I, kAvg, true>, grid, kThreads, s, p, dy, idx, dx);
  else
    launch("pool_backward_gather", pool_backward_gather<T, I, kAvg, false>, grid, kThreads, s, p, dy, idx, dx);
}

template <class T, bool kAvg>
void launch_gather(const PoolCall& c, bool last, const T* dy, const i64* idx, T* dx, cudaStream_t s) {
  if (c.total_in() == 0) return;
  if (c.fits_int32())
    launch_gather_typed<T, int, kAvg>(c, last, dy, idx, dx, s);
  else
    launch_gather_typed<T, i64, kAvg>(c, last, dy, idx, dx, s);
}

template <class I>
void launch_check_typed(const PoolCall& c, bool last, const i64* idx, unsigned long long* bad, unsigned* outside,
                        cudaStream_t s) {
  const PoolDims<I> p = c.template dims<I>();
  const dim3 grid(elementwise_blocks(c.total_out()));
  if (last)
    launch("pool_check_indices", pool_check_indices<I, true>, grid, kThreads, s, p, idx, bad, outside);
  else
    launch("pool_check_indices", pool_check_indices<I, false>, grid, kThreads, s, p, idx, bad, outside);
}

template <class T, class I>
void launch_scatter_typed(const PoolCall& c, bool last, const T* dy, const i64* idx, acc_t<T>* dx, cudaStream_t s) {
  const PoolDims<I> p = c.template dims<I>();
  const dim3 grid(elementwise_blocks(c.N * c.C));
  if (last)
    launch("pool_backward_scatter", pool_backward_scatter<T, I, true>, grid, kThreads, s, p, dy, idx, dx);
  else
    launch("pool_backward_scatter", pool_backward_scatter<T, I, false>, grid, kThreads, s, p, dy, idx, dx);
}

// Device memory of `count` A's, allocated and freed in stream order on s.
template <class A>
class StreamBuffer {
 public:
  StreamBuffer(i64 count, cudaStream_t s) : stream_(s) {
    check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), std::size_t(count) * sizeof(A), s),
               "cudaMallocAsync (pooling scratch)");
  }
  ~StreamBuffer() { (void)cudaFreeAsync(ptr_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  A* get() const { return ptr_; }

 private:
  A* ptr_ = nullptr;
  cudaStream_t stream_;
};

// The serial scatter (see pool_backward_scatter). Its sums run in acc_t<T>: straight in dx for
// float and double; for float16 in a float scratch rounded into dx at the end. The path serves
// only indices no forward makes, so the scratch is allocated here rather than asked of callers.
template <class T>
void launch_scatter(const PoolCall& c, bool last, const T* dy, const i64* idx, T* dx, cudaStream_t s) {
  auto scatter = [&](acc_t<T>* sums) {
    if (c.fits_int32())
      launch_scatter_typed<T, int>(c, last, dy, idx, sums, s);
    else
      launch_scatter_typed<T, i64>(c, last, dy, idx, sums, s);
  };
  if constexpr (std::is_same_v<acc_t<T>, T>) {
    scatter(dx);
  } else {
    const StreamBuffer<acc_t<T>> sums(c.total_in(), s);
    scatter(sums.get());
    launch("round_elements", round_elements<T>, dim3(elementwise_blocks(c.total_in())), kThreads, s, sums.get(), dx,
           c.total_in());
  }
}

void set_avg(PoolCall& c, const PoolGeometry& g, const AvgOptions& opt) {
  if (opt.divisor_override != 0) {
    c.avg_divisor = 2;
    c.divisor_override = double(opt.divisor_override);
  } else {
    c.avg_divisor = opt.count_include_pad && g.padding_kind == PoolPadding::kExplicit ? 0 : 1;
  }
}

}  // namespace

template <class T>
void extremum_pool_forward(const PoolGeometry& g, const PoolLayout& layout, bool is_min, const T* x, T* y, i64* idx,
                           cudaStream_t s) {
  const PoolCall c = pool_call(g, layout);
  if (is_min)
    launch_forward<T, 1>(c, layout.channels_last, x, y, idx, s);
  else
    launch_forward<T, 0>(c, layout.channels_last, x, y, idx, s);
}

template <class T>
void adaptive_max_pool_forward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* x, T* y, i64* idx,
                               cudaStream_t s) {
  launch_forward<T, 0>(pool_call(g, layout), layout.channels_last, x, y, idx, s);
}

template <class T>
PoolIndexCheck extremum_pool_backward(const PoolGeometry* g, const AdaptivePoolGeometry* ag, const PoolLayout& layout,
                                      const T* dy, const i64* idx, T* dx, void* check_scratch, cudaStream_t s) {
  if ((g == nullptr) == (ag == nullptr))
    throw std::invalid_argument("extremum_pool_backward: pass exactly one of a pooling and an adaptive geometry");
  const PoolCall c = g != nullptr ? pool_call(*g, layout) : pool_call(*ag, layout);
  const bool last = layout.channels_last, narrow = c.fits_int32();
  PoolIndexCheck verdict;
  if (c.total_in() == 0) return verdict;
  bool outside_windows = false;
  if (check_scratch != nullptr && c.total_out() > 0) {
    auto* bad = static_cast<unsigned long long*>(check_scratch);
    auto* outside = reinterpret_cast<unsigned*>(static_cast<char*>(check_scratch) + 8);
    check_cuda(cudaMemsetAsync(bad, 0xff, 8, s), "cudaMemsetAsync (index check)");
    check_cuda(cudaMemsetAsync(outside, 0, 4, s), "cudaMemsetAsync (index check)");
    if (narrow)
      launch_check_typed<int>(c, last, idx, bad, outside, s);
    else
      launch_check_typed<i64>(c, last, idx, bad, outside, s);
    unsigned long long host_bad = 0;
    unsigned host_outside = 0;
    check_cuda(cudaMemcpyAsync(&host_bad, bad, 8, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (index check)");
    check_cuda(cudaMemcpyAsync(&host_outside, outside, 4, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (index check)");
    check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize (index check)");
    if (host_bad != ~0ull) {
      verdict.first_bad = i64(host_bad);
      check_cuda(cudaMemcpyAsync(&verdict.bad_value, idx + host_bad, 8, cudaMemcpyDeviceToHost, s),
                 "cudaMemcpyAsync (index check)");
      check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize (index check)");
      return verdict;
    }
    outside_windows = host_outside != 0;
  }
  if (outside_windows) {
    launch_scatter<T>(c, last, dy, idx, dx, s);
  } else {
    launch_gather<T, false>(c, last, dy, idx, dx, s);
  }
  return verdict;
}

template <class T>
void avg_pool_forward(const PoolGeometry& g, const PoolLayout& layout, const AvgOptions& opt, const T* x, T* y,
                      cudaStream_t s) {
  PoolCall c = pool_call(g, layout);
  set_avg(c, g, opt);
  launch_forward<T, 2>(c, layout.channels_last, x, y, nullptr, s);
}

template <class T>
void avg_pool_backward(const PoolGeometry& g, const PoolLayout& layout, const AvgOptions& opt, const T* dy, T* dx,
                       cudaStream_t s) {
  PoolCall c = pool_call(g, layout);
  set_avg(c, g, opt);
  launch_gather<T, true>(c, layout.channels_last, dy, nullptr, dx, s);
}

template <class T>
void adaptive_avg_pool_forward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* x, T* y,
                               cudaStream_t s) {
  launch_forward<T, 2>(pool_call(g, layout), layout.channels_last, x, y, nullptr, s);
}

template <class T>
void adaptive_avg_pool_backward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* dy, T* dx,
                                cudaStream_t s) {
  const PoolCall c = pool_call(g, layout);
  if (c.total_out() == 0) {  // output_size 0: no window covers anything
    if (c.total_in() > 0)
      check_cuda(cudaMemsetAsync(dx, 0, std::size_t(c.total_in()) * sizeof(T), s), "cudaMemsetAsync (grad_input)");
    return;
  }
  launch_gather<T, true>(c, layout.channels_last, dy, nullptr, dx, s);
}

#define CONVKERN_INSTANTIATE(T)                                                                                        \
  template void extremum_pool_forward<T>(const PoolGeometry&, const PoolLayout&, bool, const T*, T*, i64*,             \
                                         cudaStream_t);                                                                \
  template void adaptive_max_pool_forward<T>(const AdaptivePoolGeometry&, const PoolLayout&, const T*, T*, i64*,       \
                                             cudaStream_t);                                                            \
  template PoolIndexCheck extremum_pool_backward<T>(const PoolGeometry*, const AdaptivePoolGeometry*,                  \
                                                    const PoolLayout&, const T*, const i64*, T*, void*, cudaStream_t); \
  template void avg_pool_forward<T>(const PoolGeometry&, const PoolLayout&, const AvgOptions&, const T*, T*,           \
                                    cudaStream_t);                                                                     \
  template void avg_pool_backward<T>(const PoolGeometry&, const PoolLayout&, const AvgOptions&, const T*, T*,          \
                                     cudaStream_t);                                                                    \
  template void adaptive_avg_pool_forward<T>(const AdaptivePoolGeometry&, const PoolLayout&, const T*, T*,             \
                                             cudaStream_t);                                                            \
  template void adaptive_avg_pool_backward<T>(const AdaptivePoolGeometry&, const PoolLayout&, const T*, T*,            \
                                              cudaStream_t);
CONVKERN_INSTANTIATE(__half)
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cuda
