// pool.cpp — CPU max/min/average pooling, sliding-window and adaptive, forward and backward, in the
// channels-first (N, C, D, H, W) and channels-last (N, D, H, W, C) layouts.
//
// Semantics are PyTorch's (shape.h computes the sizes): padded cells are never selected by
// max/min, NaN wins and the last NaN in row-major window order gives the index, ties go to the
// first element, and the average divisor follows count_include_pad / divisor_override, or the
// in-bounds count under TensorFlow-style "same"/"valid" padding and for adaptive windows.
//
// Every op first turns its geometry into per-axis window tables (`Windows`): output o of an axis
// reads the in-bounds input cells begin, begin+step, ..., so no loop tests bounds per cell, and
// sliding and adaptive pooling share the kernels.
//
// Channels-first (N, C, D, H, W):
//   global windows (global pools, adaptive output 1): one contiguous run per plane, reduced in 16
//     interleaved lanes (max/min merge the lanes' winners by position: exactly the sequential pick).
//   sliding windows: padded bands. A band is a copy of the input rows a block of output rows reads,
//     padding filled in (-inf/+inf for max/min, 0 for sums), small enough for L1/L2. Every window
//     then lies inside the band: no border cases, loops over taps outside and output columns
//     inside, branch-free and vectorised (strides 1 and 2 are compile-time constants, so strided
//     loads become shuffles), and at stride 1 one loop over the whole band flattened. Max/min can
//     only prefer padding where the window's cells all equal the padding value (-inf): those few
//     outputs are redone by the exact window walk. Indices run as int32 and are widened on output.
//   adaptive windows, and windows far larger than the input: one at a time, as contiguous runs.
//   backward: threads own whole planes. Max/min scatter; average goes through the same padded
//     bands (at stride 1 as a gather, the forward's fold with mirrored taps).
// Channels-last (N, D, H, W, C): a cell is a contiguous vector of C channels, so every inner loop
//   runs over C with unit stride. forward: threads take (n, output row[, channel block]); average
//   windows are summed separably (each input column over the row's window rows into an L1 row of
//   column sums, then each output over its columns), global averages in runs of 16 vectors of
//   channels held in registers; max/min windows' running bests in registers, reached by pointer
//   steps, with the input rows of the output rows ~128 KiB on prefetched into L2 meanwhile. max/min
//   backward over small disjoint windows (2x2 stride 2): threads own output rows and write each
//   window's cells once, gradient or zero by an index compare; other max/min backward: threads own
//   (n, channel block) columns and scatter; average backward gathers, for each input cell, the
//   windows that contain it: each thread writes its own input rows once.
//
// No floating-point atomics, and the work split never changes the order of the operations that
// produce an element: results are bitwise identical for any thread count. Index checks of the
// max/min backward run per plane (per column block) just before its scatter; grad_input is the
// kernel's own array, so a refused call leaves nothing the caller sees.
//
// Current: v14 (how it got here: docs/performance.md, "Kernel history"). 2026-12-05, 2-core AMD
// EPYC (Zen 4), 2 threads, medians, builds alternating (AVX-512 / AVX2): max_pool2d backward
// resnet50.maxpool NCHW 1.19-1.27 / 1.23-1.26 ms, NHWC 1.40-1.45 / 1.43-1.44; inception.avgpool
// NHWC forward 0.20 / 0.20 (PyTorch 0.42); resnet50.gap NHWC forward with out= 0.038 / 0.037.
// Channels-last max/min forward (with out=): resnet50.maxpool NHWC 0.55-0.57 / 0.60-0.64 ms
// (PyTorch 1.4-1.5), vgg.maxpool NHWC 0.87-1.12 / 0.86-1.11 ms (PyTorch 1.6-2.1). Measure with
// `python bench/run.py --quick --filter maxpool,avgpool,gap` (add `--isa avx2`).
// Channels-first, 2026-12-03, 2-core AMD EPYC (Zen 5): resnet50.maxpool NCHW forward 2.92 ms
// (25.1), backward 1.44 (1.70); inception.avgpool forward 0.38 (7.48).
//
// Limits: max/min backward reads dy + indices and writes dx once (resnet50.maxpool backward is at
// ~88% of copy bandwidth and PyTorch at ~70%, so 3x PyTorch is out of reach); vgg.maxpool backward
// spends most of its time in page faults on its fresh 51 MB grad_input (glibc maps allocations over
// 32 MB anew each call, and the kernel zeroes the pages: 5.5 ms a call against 1.7 for the kernel
// alone); resnet50.gap forward is ~2.5 us of Python per call on ~27 us. Forward with indices is
// ~20% slower than v2's (the band copy); global max over tiny planes (7x7) is bound by merging the
// lanes.

#include "pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "pack.h"
#include "parallel.h"
#include "simd_vector.h"

namespace convkern::cpu {
namespace {

// =================================================================================== window tables

// Output o of one axis reads the input cells begin, begin + step, ..., begin + (count-1)*step, all
// inside the input. `padded` is the window length counting padding (what count_include_pad divides
// by; average pooling has no dilation, so it is only meaningful with step 1).
struct Span {
  i64 begin = 0, count = 0, padded = 0;
};

struct AxisWindows {
  i64 in = 1;
  i64 step = 1;  // dilation
  std::vector<Span> span;  // one per output
  // Sliding windows: output o's window, padding included, starts at o*stride + offset and has
  // `taps` cells. Adaptive windows do not slide by a constant step: stride 0.
  i64 stride = 0, offset = 0, taps = 0;

  i64 out() const { return static_cast<i64>(span.size()); }
};

struct Windows {
  i64 planes = 0, in_plane = 0, out_plane = 0;
  AxisWindows axis[kSpatial];
};

AxisWindows sliding_axis(const PoolGeometry& g, int a) {
  AxisWindows w;
  w.in = g.in[a];
  w.step = g.dilation[a];
  // With one output the stride is never applied; as 1 it cannot overflow the band arithmetic
  // (a stride near 2**63 is valid there) and the unit-stride kernels serve it.
  w.stride = g.out[a] == 1 ? 1 : g.stride[a];
  w.offset = -g.pad_before[a];
  w.taps = g.kernel[a];
  w.span.resize(g.out[a]);
  for (i64 o = 0; o < g.out[a]; ++o) {
    const i64 start = o * w.stride + w.offset;
    // The taps k with 0 <= start + k*step < in.
    const i64 k_lo = start >= 0 ? 0 : ceil_div(-start, w.step);
    const i64 k_hi = std::min(w.taps - 1, floor_div(w.in - 1 - start, w.step));
    Span& s = w.span[o];
    s.count = std::max<i64>(0, k_hi - k_lo + 1);
    s.begin = start + k_lo * w.step;
    // In 128 bits: with a kernel near 2**63 the padding on both sides can be as large as 2**62.
    s.padded = static_cast<i64>(std::min<i128>(w.taps, i128(w.in) + g.pad_after[a] - start));
  }
  return w;
}

AxisWindows adaptive_axis(const AdaptivePoolGeometry& g, int a) {
  AxisWindows w;
  w.in = g.in[a];
  w.span.resize(g.out[a]);
  for (i64 o = 0; o < g.out[a]; ++o) {
    const i64 begin = adaptive_window_begin(o, g.in[a], g.out[a]);
    const i64 count = adaptive_window_end(o, g.in[a], g.out[a]) - begin;
    w.span[o] = {begin, count, count};
  }
  return w;
}

Windows windows_of(const PoolGeometry& g) {
  Windows w;
  w.planes = g.planes;
  w.in_plane = g.in_plane();
  w.out_plane = g.out_plane();
  for (int a = 0; a < kSpatial; ++a) w.axis[a] = sliding_axis(g, a);
  return w;
}

Windows windows_of(const AdaptivePoolGeometry& g) {
  Windows w;
  w.planes = g.planes;
  w.in_plane = g.in_plane();
  w.out_plane = g.out_plane();
  for (int a = 0; a < kSpatial; ++a) w.axis[a] = adaptive_axis(g, a);
  return w;
}

// What average pooling divides a window's sum by.
struct AvgDivisor {
  i64 override_value = 0;  // divisor_override; 0: none
  bool count_padding = false;  // count_include_pad with explicit padding: the padded window size
};

AvgDivisor avg_divisor_rule(const PoolGeometry& g, const AvgPoolOptions& opt) {
  return {opt.divisor_override, opt.count_include_pad && g.padding_kind == PoolPadding::kExplicit};
}

// In double: a product of three window lengths may pass 2^63 (kernel_size is bounded only by the
// padded input), and double holds every realistic divisor exactly.
double window_divisor(const Windows& w, const AvgDivisor& rule, i64 od, i64 oh, i64 ow) {
  if (rule.override_value != 0) return static_cast<double>(rule.override_value);
  const Span &d = w.axis[0].span[od], &h = w.axis[1].span[oh], &c = w.axis[2].span[ow];
  if (rule.count_padding)
    return static_cast<double>(d.padded) * static_cast<double>(h.padded) * static_cast<double>(c.padded);
  return static_cast<double>(d.count) * static_cast<double>(h.count) * static_cast<double>(c.count);
}

// Calls f(offset, n, step) for the cells of window (d, h, c) of a channels-first plane, as runs of n
// cells `step` apart, in row-major window order. Whole rows next to each other merge into one run
// (and whole planes too), so a global pool's window is one run over the whole plane.
template <class F>
inline void for_each_run(const Windows& w, const Span& d, const Span& h, const Span& c, F&& f) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 IH = ah.in, IW = aw.in;
  if (c.count == IW && aw.step == 1 && ah.step == 1) {
    if (h.count == IH && ad.step == 1) return f(d.begin * IH * IW, d.count * IH * IW, i64{1});
    for (i64 kd = 0; kd < d.count; ++kd) f(((d.begin + kd * ad.step) * IH + h.begin) * IW, h.count * IW, i64{1});
    return;
  }
  for (i64 kd = 0; kd < d.count; ++kd)
    for (i64 kh = 0; kh < h.count; ++kh)
      f(((d.begin + kd * ad.step) * IH + h.begin + kh * ah.step) * IW + c.begin, c.count, aw.step);
}

// For each input cell i of an axis, the outputs [lo, hi) whose windows contain it. Only for windows
// of consecutive cells (step 1) whose ends never move backwards (average and adaptive pooling):
// then {o : end(o) > i} and {o : begin(o) <= i} are a suffix and a prefix, found in one sweep.
struct Cover {
  i64 lo, hi;
};

std::vector<Cover> covers(const AxisWindows& a) {
  std::vector<Cover> c(static_cast<size_t>(a.in));
  const i64 O = a.out();
  i64 lo = 0, hi = 0;
  for (i64 i = 0; i < a.in; ++i) {
    while (lo < O && a.span[lo].begin + a.span[lo].count <= i) ++lo;
    while (hi < O && a.span[hi].begin <= i) ++hi;
    c[i] = {lo, std::max(lo, hi)};
  }
  return c;
}

// ======================================================================================= threading

// Runs body(first, last) over [0, items) in parallel: each thread takes one contiguous share, of
// at least about kGrain elements of work, so that tiny items (the 7x7 planes of a global pool)
// do not each pay a scheduling round-trip, and a call repeated on the same arrays finds each
// share's operands in the cache of the core that last used them (handed out dynamically in
// chunks, resnet50.gap NHWC ran 1.3x and resnet50.maxpool NHWC 1.1x slower on a 2-core Xeon).
// Items are independent, so the split never changes a result.
constexpr double kGrain = 32768;
// Outputs from this size on are stored non-temporally where the kernel can (a few MiB: smaller
// ones may still be in cache when the next layer reads them).
constexpr double kStreamedPoolBytes = 8 << 20;
// The channels-last max/min forward streams a smaller output: the lines it does not bring into the
// caches leave room there for its input (resnet50.maxpool NHWC: 6.4 MB out of 25.7 MB in).
constexpr double kStreamedPoolOutputBytes = 4 << 20;
// An input past L2 is prefetched, about this far ahead of the windows.
constexpr double kPrefetchedPoolBytes = 4 << 20;
constexpr i64 kPrefetchAheadBytes = 128 << 10;

template <class F>
void parallel_ranges(i64 items, double work_per_item, F&& body) {
  if (items <= 0) return;
  const i64 per_chunk = static_cast<i64>(std::clamp(kGrain / std::max(work_per_item, 1.0), 1.0, double(items)));
  const i64 shares = std::min<i64>(get_num_threads(), ceil_div(items, per_chunk));
  parallel_for(shares, [&](i64 share, int) { body(items * share / shares, items * (share + 1) / shares); });
}

// Channels-last work is split into `tasks` (images, rows) times channel blocks. The whole C is one
// block unless there are too few tasks to keep every thread busy; blocks are whole cache lines.
struct ChannelBlocks {
  i64 size, count;
};

template <class T>
ChannelBlocks channel_blocks(i64 C, i64 tasks) {
  const i64 wanted = 4 * static_cast<i64>(get_num_threads());
  if (tasks >= wanted || C <= 1) return {C, 1};
  const i64 line = static_cast<i64>(64 / sizeof(T));
  const i64 size = std::min(C, ceil_div(ceil_div(C, ceil_div(wanted, std::max<i64>(tasks, 1))), line) * line);
  return {size, ceil_div(C, size)};
}

// Records the smallest bad flat position seen by any thread.
void record_bad(std::atomic<i64>& first_bad, i64 position) {
  i64 cur = first_bad.load();
  while (position < cur && !first_bad.compare_exchange_weak(cur, position)) {}
}

// The smallest and largest of idx[0, n) (n >= 1): min/max reductions, which vectorise (an any-bad
// flag OR-ed over the compares stayed scalar, a third of resnet50.maxpool NHWC backward on a Zen 4).
struct IndexRange {
  i64 lo, hi;
};
inline IndexRange index_range(const i64* idx, i64 n) {
  i64 lo = idx[0], hi = idx[0];
  for (i64 i = 1; i < n; ++i) lo = std::min(lo, idx[i]), hi = std::max(hi, idx[i]);
  return {lo, hi};
}

// Offset of the first index outside [-1, in_plane) among idx[0, n), or -1. The range test
// vectorises; only a failing range is searched again.
inline i64 first_bad_index(const i64* idx, i64 n, i64 in_plane) {
  if (n <= 0) return -1;
  const IndexRange r = index_range(idx, n);
  if (r.lo >= -1 && r.hi < in_plane) return -1;
  for (i64 i = 0; i < n; ++i)
    if (idx[i] < -1 || idx[i] >= in_plane) return i;
  return -1;
}

// ============================================================================== element rules

template <Extremum W, class T>
constexpr T empty_window_value() {
  return W == Extremum::kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
}

// Whether candidate v replaces the current best: a NaN candidate always does, so the last NaN in
// window order wins, as in PyTorch (its CPU and CUDA kernels take `val > best || isnan(val)`);
// otherwise only a strictly better number does, so ties keep the first. Written as compares and
// ors so that it vectorises into masks.
template <Extremum W, class T>
inline bool replaces(T v, T best) {
  if constexpr (W == Extremum::kMax)
    return v > best || v != v;
  else
    return v < best || v != v;
}

// sum + p[0] + ... + p[n-1]. Short runs are added in order; long ones (a global pool's plane) in
// 16 interleaved partial sums, which pipeline and vectorise, reduced pairwise, then the leftover
// cells in order. The order depends on n alone. (Fixed indices only: the lanes stay in registers.)
template <class T>
inline T accumulate_run(T sum, const T* p, i64 n) {
  constexpr int kLanes = 16;
  if (n < 2 * kLanes) {
    for (i64 i = 0; i < n; ++i) sum += p[i];
    return sum;
  }
  T lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = p[l];
  i64 i = kLanes;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += p[i + l];
  for (int half = kLanes / 2; half > 0; half /= 2)
    for (int l = 0; l < half; ++l) lane[l] += lane[l + half];
  T rest = lane[0];
  for (; i < n; ++i) rest += p[i];
  return sum + rest;
}

// =========================================================================== channels-first (NCHW)

// ---- global windows: one contiguous run per plane

bool is_global(const Windows& w) {
  for (const AxisWindows& a : w.axis)
    if (a.out() != 1 || a.step != 1 || a.span[0].count != a.in) return false;
  return true;
}

// Whether (v, at) beats the best so far (best, pos) where either may come first in window order:
// the last NaN, else the largest (smallest) value, the first of equal ones.
template <Extremum W, class T>
inline bool beats(T v, i64 at, T best, i64 pos) {
  if (best != best) return v != v && at > pos;
  if (v != v) return true;
  return W == Extremum::kMax ? (v > best || (v == best && at < pos)) : (v < best || (v == best && at < pos));
}

// The extremum of p[0, n), n >= 1, and its position. Long runs go through 16 interleaved lanes,
// which vectorise; the lanes' winners are then merged by position, so the result is exactly the
// sequential one.
template <Extremum W, class T>
inline void extremum_of_run(const T* p, i64 n, T& best, i64& pos) {
  constexpr int kLanes = 16;
  best = p[0];
  pos = 0;
  if (n < 2 * kLanes) {
    for (i64 i = 1; i < n; ++i)
      if (replaces<W>(p[i], best)) best = p[i], pos = i;
    return;
  }
  T lane[kLanes];
  i64 at[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = p[l], at[l] = l;
  i64 i = kLanes;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const bool take = replaces<W>(p[i + l], lane[l]);
      lane[l] = take ? p[i + l] : lane[l];
      at[l] = take ? i + l : at[l];
    }
  best = lane[0];
  pos = at[0];
  for (int l = 1; l < kLanes; ++l)
    if (beats<W>(lane[l], at[l], best, pos)) best = lane[l], pos = at[l];
  for (; i < n; ++i)  // after every lane's cells: the sequential rule
    if (replaces<W>(p[i], best)) best = p[i], pos = i;
}

template <Extremum W, bool kIndex, class T>
void extremum_global_nchw(const Windows& w, const T* x, T* y, i64* idx) {
  parallel_ranges(w.planes, double(w.in_plane), [&](i64 first, i64 last) {
    for (i64 plane = first; plane < last; ++plane) {
      T best;
      i64 pos;
      extremum_of_run<W>(x + plane * w.in_plane, w.in_plane, best, pos);
      y[plane] = best;
      if constexpr (kIndex) idx[plane] = pos;
    }
  });
}

#if defined(__AVX512F__)
// accumulate_run(0, plane) / divisor for 16 float planes at once, with the same additions in the
// same order: each plane's 16 lanes are summed vertically, the 16 lane vectors transposed (one
// vector per lane, one lane per plane) and reduced by the same pairwise tree, then the leftover
// cells added in order. Short planes (a global pool over 7 x 7) spent most of their time in the
// per-plane horizontal reduction (resnet50.gap forward: 0.60x PyTorch).
inline void average_16_planes(const float* x, i64 n, float divisor, float* y) {
  __m512 r[16];
  const i64 whole = n / 16 * 16;
  for (int j = 0; j < 16; ++j) {
    const float* p = x + j * n;
    __m512 v = _mm512_loadu_ps(p);
    for (i64 i = 16; i < whole; i += 16) v = _mm512_add_ps(v, _mm512_loadu_ps(p + i));
    r[j] = v;
  }
  transpose_16x16(r);
  for (int half = 8; half > 0; half /= 2)
    for (int l = 0; l < half; ++l) r[l] = _mm512_add_ps(r[l], r[l + half]);
  __m512 sum = r[0];
  const __m512i planes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int>(n)));
  for (i64 i = whole; i < n; ++i) sum = _mm512_add_ps(sum, _mm512_i32gather_ps(planes, x + i, 4));
  sum = _mm512_add_ps(_mm512_setzero_ps(), sum);  // accumulate_run's 0 + rest (-0 becomes +0)
  _mm512_storeu_ps(y, _mm512_div_ps(sum, _mm512_set1_ps(divisor)));
}
#elif defined(__AVX2__)
// The same for 8 float planes under AVX2: a plane's 16 lanes are two vectors, whose sum is the
// tree's first level (lane l + lane l + 8); the rest as above. (Per plane, resnet50.gap NCHW
// forward took 0.065 ms under AVX2 against 0.037 under AVX-512.)
inline void average_8_planes(const float* x, i64 n, float divisor, float* y) {
  __m256 r[8];
  const i64 whole = n / 16 * 16;
  for (int j = 0; j < 8; ++j) {
    const float* p = x + j * n;
    __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    for (i64 i = 16; i < whole; i += 16) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(p + i));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(p + i + 8));
    }
    r[j] = _mm256_add_ps(lo, hi);
  }
  transpose_8x8(r);
  for (int half = 4; half > 0; half /= 2)
    for (int l = 0; l < half; ++l) r[l] = _mm256_add_ps(r[l], r[l + half]);
  __m256 sum = r[0];
  const __m256i planes = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(static_cast<int>(n)));
  for (i64 i = whole; i < n; ++i) sum = _mm256_add_ps(sum, _mm256_i32gather_ps(x + i, planes, 4));
  sum = _mm256_add_ps(_mm256_setzero_ps(), sum);  // accumulate_run's 0 + rest (-0 becomes +0)
  _mm256_storeu_ps(y, _mm256_div_ps(sum, _mm256_set1_ps(divisor)));
}
#endif

template <class T>
void avg_global_nchw(const Windows& w, const AvgDivisor& rule, const T* x, T* y) {
  const T divisor = static_cast<T>(window_divisor(w, rule, 0, 0, 0));
  const i64 n = w.in_plane;
  parallel_ranges(w.planes, double(n), [&](i64 first, i64 last) {
    i64 plane = first;
#if defined(__AVX512F__)
    // accumulate_run's lane path (n >= 32), planes small enough for 32-bit gather offsets.
    if constexpr (sizeof(T) == 4)
      if (n >= 32 && n < (i64(1) << 26))
        for (; plane + 16 <= last; plane += 16) average_16_planes(x + plane * n, n, divisor, y + plane);
#elif defined(__AVX2__)
    if constexpr (sizeof(T) == 4)
      if (n >= 32 && n < (i64(1) << 26))
        for (; plane + 8 <= last; plane += 8) average_8_planes(x + plane * n, n, divisor, y + plane);
#endif
    for (; plane < last; ++plane) y[plane] = accumulate_run(T(0), x + plane * n, n) / divisor;
  });
}

template <class T>
void avg_global_backward_nchw(const Windows& w, const AvgDivisor& rule, const T* dy, T* dx) {
  const T inv = T(1) / static_cast<T>(window_divisor(w, rule, 0, 0, 0));
  parallel_ranges(w.planes, double(w.in_plane), [&](i64 first, i64 last) {
    for (i64 plane = first; plane < last; ++plane)
      std::fill(dx + plane * w.in_plane, dx + (plane + 1) * w.in_plane, dy[plane] * inv);
  });
}

// The exact walk over one window's cells, as contiguous runs.
template <Extremum W, class T>
inline void extremum_window_nchw(const T* xp, const Windows& w, const Span& d, const Span& h, const Span& c, T& best,
                                 i64& pos) {
  best = empty_window_value<W, T>();
  pos = -1;
  for_each_run(w, d, h, c, [&](i64 offset, i64 n, i64 step) {
    for (i64 k = 0; k < n; ++k) {
      const i64 i = offset + k * step;
      if (pos < 0 || replaces<W>(xp[i], best)) {
        best = xp[i];
        pos = i;
      }
    }
  });
}

// ---- sliding windows: padded bands
//
// A band is a copy of the input rows that a block of output rows reads, in one input slice, with
// the padding filled in (-inf/+inf for max/min, 0 for sums) and every window's columns included.
// Every window then lies inside the band: no border cases, and branch-free loops as long as an
// output row or, at stride 1, as the whole band flattened (output column j reads band cell j + tap).
// Max/min keep a padded cell only if it comes first in its window and every later cell equals the
// padding value (-inf for max), so the output is that value: such outputs are redone by the exact
// window walk, which gives the index of the first input cell.

struct Bands {
  i64 pitch = 0;  // band row length: input columns [-pad_before, (OW-1)*stride - pad_before + ek)
  i64 out_rows = 0;  // output rows per band
  i64 per_slice = 0;  // bands per output slice
  i64 in_rows = 0;  // band rows of a full band
  bool flat = false;  // stride 1 on H and W: a band's outputs are one loop
};

// Band cells per copy: the copy and its running values stay in L1/L2.
constexpr i64 kBandCells = 4096;

Bands bands_of(const Windows& w) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i64 ekh = (ah.taps - 1) * ah.step + 1, ekw = (aw.taps - 1) * aw.step + 1;
  Bands b;
  b.pitch = (aw.out() - 1) * aw.stride + ekw;
  b.out_rows = std::clamp((kBandCells / b.pitch - ekh) / ah.stride + 1, i64{1}, ah.out());
  b.per_slice = ceil_div(ah.out(), b.out_rows);
  b.in_rows = (b.out_rows - 1) * ah.stride + ekh;
  b.flat = ah.stride == 1 && aw.stride == 1;
  return b;
}

// One band: output rows [oh0, oh0 + rows) of output slice od in plane `plane`; it reads band rows
// [0, in_rows), which are input rows row0 + r.
struct BandTask {
  i64 plane, od, oh0, rows, row0, in_rows;
};

BandTask band_task(const Windows& w, const Bands& b, i64 item) {
  const AxisWindows& ah = w.axis[1];
  const i64 OD = w.axis[0].out();
  BandTask t;
  const i64 band = item % b.per_slice;
  t.od = item / b.per_slice % OD;
  t.plane = item / b.per_slice / OD;
  t.oh0 = band * b.out_rows;
  t.rows = std::min(b.out_rows, ah.out() - t.oh0);
  t.row0 = t.oh0 * ah.stride + ah.offset;
  t.in_rows = (t.rows - 1) * ah.stride + (ah.taps - 1) * ah.step + 1;
  return t;
}

// Copies the band of input slice xs, filling padding with `pad`.
template <class T>
void fill_band(const T* xs, const Windows& w, const Bands& b, const BandTask& t, T pad, T* band) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i64 left = std::min(-aw.offset, b.pitch);
  const i64 n = std::clamp(b.pitch - left, i64{0}, aw.in);  // input columns inside the band
  for (i64 r = 0; r < t.in_rows; ++r) {
    T* row = band + r * b.pitch;
    const i64 ih = t.row0 + r;
    if (ih < 0 || ih >= ah.in) {
      std::fill(row, row + b.pitch, pad);
      continue;
    }
    std::fill(row, row + left, pad);
    std::copy(xs + ih * aw.in, xs + ih * aw.in + n, row + left);
    std::fill(row + left + n, row + b.pitch, pad);
  }
}

// Where each window tap (kh, kw) lies relative to a window's first cell, in band cells (rows
// `pitch` apart), in window order.
std::vector<i64> tap_offsets(const Windows& w, i64 pitch) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  std::vector<i64> taps;
  for (i64 kh = 0; kh < ah.taps; ++kh)
    for (i64 kw = 0; kw < aw.taps; ++kw) taps.push_back(kh * ah.step * pitch + kw * aw.step);
  return taps;
}

// How taps fold into a running value: max/min keep the better value; sums add. Without indices
// only the value matters, and any NaN of the window is the answer, so the first NaN met may stay:
// `cur == cur` tests the running value, which stays in a register across the taps, where
// `replaces` tests each candidate (the max pool forward ran 1.4x slower with it).
template <Extremum W>
struct KeepExtremum {
  template <class T>
  static T first(T v) {
    return v;
  }
  template <class T>
  static T fold(T cur, T v) {
    // Spelled this way on purpose: GCC 12 if-converts (and vectorises) this form only; with
    // the comparison hoisted into a local it branches, 4x slower.
    if constexpr (W == Extremum::kMax)
      return cur == cur && !(v <= cur) ? v : cur;
    else
      return cur == cur && !(v >= cur) ? v : cur;
  }
};

struct Add {
  template <class T>
  static T first(T v) {
    return T(0) + v;
  }  // sums start from zero
  template <class T>
  static T fold(T cur, T v) {
    return cur + v;
  }
};

// For each of `rows` output rows r (band rows r*row_step apart, output rows out_pitch apart):
// out[j] = fold(...fold(out[j], tap_0[j*s]), ..., tap_{kTaps-1}[j*s]), or with kFirst from tap_0.
template <class Op, int kTaps, bool kFirst, int kStride, class T>
void fold_tap_group(const T* __restrict src, const i64* offsets, i64 rows, i64 row_step, i64 length, i64 stride,
                    T* __restrict out, i64 out_pitch) {
  const i64 s = kStride ? kStride : stride;
  for (i64 r = 0; r < rows; ++r) {
    const T* tap[kTaps];
    for (int k = 0; k < kTaps; ++k) tap[k] = src + r * row_step + offsets[k];
    T* o = out + r * out_pitch;
    for (i64 j = 0; j < length; ++j) {
      T cur = kFirst ? Op::first(tap[0][j * s]) : Op::fold(o[j], tap[0][j * s]);
      for (int k = 1; k < kTaps; ++k) cur = Op::fold(cur, tap[k][j * s]);
      o[j] = cur;
    }
  }
}

// out[r*out_pitch + j] = fold over the taps k in order of src[r*row_step + offsets[k] + j*s], for
// rows r < rows and j < length, four taps per pass (the running values are loaded and stored once
// per four taps, not once per tap); `first`: the first tap starts the running values.
template <class Op, int kStride, class T>
void fold_taps(const T* src, const std::vector<i64>& offsets, i64 rows, i64 row_step, i64 length, i64 stride,
               bool first, T* out, i64 out_pitch) {
  constexpr size_t kGroup = 4;
  for (size_t k = 0; k < offsets.size(); k += kGroup) {
    const bool start = first && k == 0;
#define CONVKERN_FOLD(n)                                                                                          \
  (start ? fold_tap_group<Op, n, true, kStride>(src, &offsets[k], rows, row_step, length, stride, out, out_pitch) \
         : fold_tap_group<Op, n, false, kStride>(src, &offsets[k], rows, row_step, length, stride, out, out_pitch))
    switch (std::min(kGroup, offsets.size() - k)) {
      case 4:
        CONVKERN_FOLD(4);
        break;
      case 3:
        CONVKERN_FOLD(3);
        break;
      case 2:
        CONVKERN_FOLD(2);
        break;
      default:
        CONVKERN_FOLD(1);
    }
#undef CONVKERN_FOLD
  }
}

// Folds every tap of a band into its outputs in window order. Flat bands are one loop over all
// their outputs.
template <class Op, int kStride, class T>
void fold_band(const T* band, const std::vector<i64>& taps, const Windows& w, const Bands& b, const BandTask& t,
               bool first, T* out, i64 out_pitch) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i64 rows = b.flat ? 1 : t.rows, length = b.flat ? (t.rows - 1) * b.pitch + aw.out() : aw.out();
  fold_taps<Op, kStride>(band, taps, rows, ah.stride * b.pitch, length, aw.stride, first, out, out_pitch);
}

// Where a band's running values live: at stride 1 on H and W (flat bands), a scratch row per
// output row of `pitch` cells, copied out afterwards; otherwise the output rows themselves. Indices
// run as int32 (half the lanes' work of int64) in a scratch of `pitch` per row, widened afterwards.
template <class T>
struct BandOutput {
  T* values;
  std::int32_t* indices;
  i64 pitch;
};

// Running max/min with indices: `cell0` is the flat input index of band cell 0 (the slice's base plus
// row0*IW - pad_before, possibly negative); a tap's candidate for output column ow is then a
// linear function of ow. Row by row, since band rows and input rows have different lengths.
template <Extremum W, int kStride, class T>
void extremum_band_indexed(const T* __restrict band, const Windows& w, const Bands& b, const BandTask& t, bool first,
                           i64 cell0, BandOutput<T> out) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i64 OW = aw.out(), IW = aw.in;
  const std::int32_t s = kStride ? kStride : static_cast<std::int32_t>(aw.stride);
  for (i64 r = 0; r < t.rows; ++r) {
    T* __restrict a = out.values + r * out.pitch;
    std::int32_t* __restrict p = out.indices + r * b.pitch;
    bool row_first = first;
    for (i64 kh = 0; kh < ah.taps; ++kh) {
      const i64 band_row = r * ah.stride + kh * ah.step;
      for (i64 kw = 0; kw < aw.taps; ++kw) {
        const T* __restrict src = band + band_row * b.pitch + kw * aw.step;
        const auto cell = static_cast<std::int32_t>(cell0 + band_row * IW + kw * aw.step);
        if (row_first) {
          for (std::int32_t ow = 0; ow < OW; ++ow) {
            a[ow] = src[ow * s];
            p[ow] = cell + ow * s;
          }
          row_first = false;
          continue;
        }
        for (std::int32_t ow = 0; ow < OW; ++ow) {
          const T v = src[ow * s], cur = a[ow];
          const bool take = replaces<W>(v, cur);
          a[ow] = take ? v : cur;
          p[ow] = take ? cell + ow * s : p[ow];
        }
      }
    }
  }
}

template <Extremum W, bool kIndex, class T>
void extremum_bands_nchw(const Windows& w, const T* x, T* y, i64* idx) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 OD = ad.out(), OH = ah.out(), OW = aw.out(), IH = ah.in, IW = aw.in;
  const Bands b = bands_of(w);
  const bool scratch = b.flat && !kIndex;
  const T pad = empty_window_value<W, T>();
  const std::vector<i64> taps = tap_offsets(w, b.pitch);
  auto values = &fold_band<KeepExtremum<W>, 0, T>;
  auto indexed = &extremum_band_indexed<W, 0, T>;
  if (aw.stride == 1) values = &fold_band<KeepExtremum<W>, 1, T>, indexed = &extremum_band_indexed<W, 1, T>;
  if (aw.stride == 2) values = &fold_band<KeepExtremum<W>, 2, T>, indexed = &extremum_band_indexed<W, 2, T>;
  parallel_ranges(w.planes * OD * b.per_slice, double(b.in_rows * b.pitch), [&](i64 first, i64 last) {
    std::vector<T> band(static_cast<size_t>(b.in_rows * b.pitch));
    std::vector<T> acc(static_cast<size_t>(scratch ? b.out_rows * b.pitch : 0));
    std::vector<std::int32_t> pos(static_cast<size_t>(kIndex ? b.out_rows * b.pitch : 0));
    for (i64 item = first; item < last; ++item) {
      const BandTask t = band_task(w, b, item);
      const Span& d = ad.span[t.od];
      const T* xp = x + t.plane * w.in_plane;
      const i64 o0 = ((t.plane * OD + t.od) * OH + t.oh0) * OW;  // the band's first output
      if (d.count == 0) {  // every window of the band is padding
        std::fill(y + o0, y + o0 + t.rows * OW, pad);
        if constexpr (kIndex) std::fill(idx + o0, idx + o0 + t.rows * OW, i64{-1});
        continue;
      }
      const BandOutput<T> out{scratch ? acc.data() : y + o0, pos.data(), scratch ? b.pitch : OW};
      for (i64 kd = 0; kd < d.count; ++kd) {
        const i64 id = d.begin + kd * ad.step;
        fill_band(xp + id * IH * IW, w, b, t, pad, band.data());
        if constexpr (kIndex)
          indexed(band.data(), w, b, t, kd == 0, (id * IH + t.row0) * IW + aw.offset, out);
        else
          values(band.data(), taps, w, b, t, kd == 0, out.values, out.pitch);
      }
      if (scratch)
        for (i64 r = 0; r < t.rows; ++r) std::copy(&acc[r * b.pitch], &acc[r * b.pitch] + OW, y + o0 + r * OW);
      if constexpr (kIndex)
        for (i64 r = 0; r < t.rows; ++r) {
          T* yr = y + o0 + r * OW;
          std::copy(&pos[r * b.pitch], &pos[r * b.pitch] + OW, idx + o0 + r * OW);
          bool maybe_padding = false;
          for (i64 ow = 0; ow < OW; ++ow) maybe_padding |= yr[ow] == pad;
          if (maybe_padding)  // redo those windows exactly
            for (i64 ow = 0; ow < OW; ++ow)
              if (yr[ow] == pad)
                extremum_window_nchw<W>(xp, w, d, ah.span[t.oh0 + r], aw.span[ow], yr[ow], idx[o0 + r * OW + ow]);
        }
    }
  });
}

// Every output cell's divisor (forward) or its inverse (backward), one plane's worth.
template <class T>
std::vector<T> plane_divisors(const Windows& w, const AvgDivisor& rule, bool inverse) {
  const i64 OD = w.axis[0].out(), OH = w.axis[1].out(), OW = w.axis[2].out();
  std::vector<T> div(static_cast<size_t>(w.out_plane));
  for (i64 od = 0; od < OD; ++od)
    for (i64 oh = 0; oh < OH; ++oh)
      for (i64 ow = 0; ow < OW; ++ow) {
        const T d = static_cast<T>(window_divisor(w, rule, od, oh, ow));
        div[(od * OH + oh) * OW + ow] = inverse ? T(1) / d : d;
      }
  return div;
}

template <class T>
void avg_bands_nchw(const Windows& w, const AvgDivisor& rule, const T* x, T* y) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 OD = ad.out(), OH = ah.out(), OW = aw.out(), IH = ah.in, IW = aw.in;
  const Bands b = bands_of(w);
  const std::vector<T> divisor = plane_divisors<T>(w, rule, false);
  const std::vector<i64> taps = tap_offsets(w, b.pitch);
  auto sum = &fold_band<Add, 0, T>;
  if (aw.stride == 1) sum = &fold_band<Add, 1, T>;
  if (aw.stride == 2) sum = &fold_band<Add, 2, T>;
  parallel_ranges(w.planes * OD * b.per_slice, double(b.in_rows * b.pitch), [&](i64 first, i64 last) {
    std::vector<T> band(static_cast<size_t>(b.in_rows * b.pitch));
    std::vector<T> acc(static_cast<size_t>(b.flat ? b.out_rows * b.pitch : 0));
    for (i64 item = first; item < last; ++item) {
      const BandTask t = band_task(w, b, item);
      const Span& d = ad.span[t.od];
      const i64 o = (t.od * OH + t.oh0) * OW;  // the band's first output in its plane
      T* yb = y + t.plane * w.out_plane + o;
      T* sums = b.flat ? acc.data() : yb;
      const i64 pitch = b.flat ? b.pitch : OW;
      if (d.count == 0) std::fill(sums, sums + (t.rows - 1) * pitch + OW, T(0));
      for (i64 kd = 0; kd < d.count; ++kd) {
        fill_band(x + t.plane * w.in_plane + (d.begin + kd) * IH * IW, w, b, t, T(0), band.data());
        sum(band.data(), taps, w, b, t, kd == 0, sums, pitch);
      }
      for (i64 r = 0; r < t.rows; ++r)
        for (i64 ow = 0; ow < OW; ++ow) yb[r * OW + ow] = sums[r * pitch + ow] / divisor[o + r * OW + ow];
    }
  });
}

// The adjoint of fold_band<Add>: every tap adds the outputs' shares into the band cells it reads.
template <int kStride, class T>
void scatter_band(const T* __restrict share, const std::vector<i64>& taps, const Windows& w, const Bands& b,
                  const BandTask& t, T* __restrict band) {
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i64 s = kStride ? kStride : aw.stride, OW = aw.out();
  const i64 loops = b.flat ? 1 : t.rows, length = b.flat ? (t.rows - 1) * b.pitch + OW : OW;
  for (const i64 offset : taps)
    for (i64 r = 0; r < loops; ++r) {
      T* dst = band + r * ah.stride * b.pitch + offset;
      const T* g = share + r * b.pitch;
      for (i64 j = 0; j < length; ++j) dst[j * s] += g[j];
    }
}

// Threads own whole planes: the bands of a plane add into its input rows one after another. A flat
// band gathers instead of scattering: band cell q receives share[q - tap_k] from every tap k, in
// window order, which is fold_taps over a zero-margined copy of the shares with mirrored offsets.
template <class T>
void avg_bands_backward_nchw(const Windows& w, const AvgDivisor& rule, const T* dy, T* dx) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 OD = ad.out(), OH = ah.out(), OW = aw.out(), IH = ah.in, IW = aw.in;
  const Bands b = bands_of(w);
  const std::vector<T> inv = plane_divisors<T>(w, rule, true);
  const std::vector<i64> taps = tap_offsets(w, b.pitch);
  const i64 margin = b.flat ? taps.back() : 0;  // the farthest tap
  std::vector<i64> mirrored(taps.size());
  for (size_t k = 0; k < taps.size(); ++k) mirrored[k] = margin - taps[k];
  auto scatter = &scatter_band<0, T>;
  if (aw.stride == 1) scatter = &scatter_band<1, T>;
  if (aw.stride == 2) scatter = &scatter_band<2, T>;
  const i64 left = std::min(-aw.offset, b.pitch), n = std::clamp(b.pitch - left, i64{0}, IW);
  parallel_ranges(w.planes, double(w.in_plane + w.out_plane), [&](i64 first, i64 last) {
    std::vector<T> band(static_cast<size_t>(b.in_rows * b.pitch));
    std::vector<T> margined(static_cast<size_t>(b.out_rows * b.pitch + 2 * margin));
    T* share = margined.data() + margin;
    for (i64 plane = first; plane < last; ++plane) {
      T* dxp = dx + plane * w.in_plane;
      std::fill(dxp, dxp + w.in_plane, T(0));
      for (i64 item = plane * OD * b.per_slice; item < (plane + 1) * OD * b.per_slice; ++item) {
        const BandTask t = band_task(w, b, item);
        const Span& d = ad.span[t.od];
        // Zeros past each row's last output (and in the margins): they add nothing.
        std::fill(margined.begin(), margined.end(), T(0));
        for (i64 r = 0; r < t.rows; ++r) {
          const i64 o = (t.od * OH + t.oh0 + r) * OW;
          for (i64 ow = 0; ow < OW; ++ow) share[r * b.pitch + ow] = dy[plane * w.out_plane + o + ow] * inv[o + ow];
        }
        for (i64 kd = 0; kd < d.count; ++kd) {
          if (b.flat) {
            fold_taps<Add, 1>(margined.data(), mirrored, 1, 0, t.in_rows * b.pitch, 1, true, band.data(), 0);
          } else {
            std::fill(band.begin(), band.end(), T(0));
            scatter(share, taps, w, b, t, band.data());
          }
          T* dxs = dxp + (d.begin + kd) * IH * IW;
          for (i64 r = std::max<i64>(0, -t.row0); r < t.in_rows && t.row0 + r < IH; ++r) {
            T* row = dxs + (t.row0 + r) * IW;
            const T* src = band.data() + r * b.pitch + left;
            for (i64 iw = 0; iw < n; ++iw) row[iw] += src[iw];
          }
        }
      }
    }
  });
}

// ---- any windows (adaptive ones, or windows far larger than the input): one at a time, as runs

template <Extremum W, bool kIndex, class T>
void extremum_windows_nchw(const Windows& w, const T* x, T* y, i64* idx) {
  const i64 OD = w.axis[0].out(), OH = w.axis[1].out(), OW = w.axis[2].out();
  parallel_ranges(w.planes * OD * OH, double(OW) * double(w.in_plane) / double(std::max<i64>(1, OD * OH)),
                  [&](i64 first, i64 last) {
                    for (i64 item = first; item < last; ++item) {  // item = output row (plane, od, oh)
                      const i64 plane = item / (OD * OH), od = item / OH % OD, oh = item % OH;
                      for (i64 ow = 0; ow < OW; ++ow) {
                        T best;
                        i64 pos;
                        extremum_window_nchw<W>(x + plane * w.in_plane, w, w.axis[0].span[od], w.axis[1].span[oh],
                                                w.axis[2].span[ow], best, pos);
                        y[item * OW + ow] = best;
                        if constexpr (kIndex) idx[item * OW + ow] = pos;
                      }
                    }
                  });
}

template <class T>
void avg_windows_nchw(const Windows& w, const AvgDivisor& rule, const T* x, T* y) {
  const i64 OD = w.axis[0].out(), OH = w.axis[1].out(), OW = w.axis[2].out();
  parallel_ranges(w.planes * OD * OH, double(OW) * double(w.in_plane) / double(std::max<i64>(1, OD * OH)),
                  [&](i64 first, i64 last) {
                    for (i64 item = first; item < last; ++item) {
                      const i64 plane = item / (OD * OH), od = item / OH % OD, oh = item % OH;
                      const T* xp = x + plane * w.in_plane;
                      for (i64 ow = 0; ow < OW; ++ow) {
                        T sum = 0;
                        for_each_run(w, w.axis[0].span[od], w.axis[1].span[oh], w.axis[2].span[ow],
                                     [&](i64 offset, i64 n, i64) { sum = accumulate_run(sum, xp + offset, n); });
                        y[item * OW + ow] = sum / static_cast<T>(window_divisor(w, rule, od, oh, ow));
                      }
                    }
                  });
}

template <class T>
void avg_windows_backward_nchw(const Windows& w, const AvgDivisor& rule, const T* dy, T* dx) {
  const i64 OD = w.axis[0].out(), OH = w.axis[1].out(), OW = w.axis[2].out();
  const std::vector<T> inv = plane_divisors<T>(w, rule, true);
  parallel_ranges(w.planes, double(w.in_plane + w.out_plane), [&](i64 first, i64 last) {
    for (i64 plane = first; plane < last; ++plane) {
      T* dxp = dx + plane * w.in_plane;
      std::fill(dxp, dxp + w.in_plane, T(0));
      for (i64 od = 0; od < OD; ++od)
        for (i64 oh = 0; oh < OH; ++oh)
          for (i64 ow = 0; ow < OW; ++ow) {
            const i64 o = (od * OH + oh) * OW + ow;
            const T share = dy[plane * w.out_plane + o] * inv[o];
            for_each_run(w, w.axis[0].span[od], w.axis[1].span[oh], w.axis[2].span[ow], [&](i64 offset, i64 n, i64) {
              for (i64 i = 0; i < n; ++i) dxp[offset + i] += share;
            });
          }
    }
  });
}

// ---- dispatch on the kind of windows

// Bands suit sliding windows whose padding is modest next to the input. kernel_size is bounded
// only by the padded input, so a window may be far larger than the input; such windows walk their
// in-bounds cells instead of padding a copy to their size.
bool bands_fit(const Windows& w) {
  if (w.axis[0].stride == 0) return false;  // adaptive
  // In 128 bits: with kernels, strides or dilations near 2**63 these extents leave int64 (and then
  // bands do not fit).
  const AxisWindows &ah = w.axis[1], &aw = w.axis[2];
  const i128 ekh = i128(ah.taps - 1) * ah.step + 1, ekw = i128(aw.taps - 1) * aw.step + 1;
  const i128 pitch = i128(aw.out() - 1) * aw.stride + ekw;
  return pitch <= 2 * i128(aw.in) + 64 && ekh <= 2 * i128(ah.in) + 64;
}

// Whether every candidate index of a band (which may point a little outside the plane, into the
// padding) fits the int32 the banded kernel with indices tracks.
bool band_indices_fit_int32(const Windows& w) {
  const Bands b = bands_of(w);
  const i64 rows = w.axis[0].in * w.axis[1].in + b.in_rows, width = std::max(w.axis[2].in, b.pitch);
  return rows <= std::numeric_limits<std::int32_t>::max() / width - 1;
}

template <Extremum W, bool kIndex, class T>
void extremum_forward_nchw(const Windows& w, const T* x, T* y, i64* idx) {
  if (is_global(w))
    extremum_global_nchw<W, kIndex>(w, x, y, idx);
  else if (bands_fit(w) && (!kIndex || band_indices_fit_int32(w)))
    extremum_bands_nchw<W, kIndex>(w, x, y, idx);
  else
    extremum_windows_nchw<W, kIndex>(w, x, y, idx);
}

template <class T>
void avg_forward_nchw(const Windows& w, const AvgDivisor& rule, const T* x, T* y) {
  if (is_global(w))
    avg_global_nchw(w, rule, x, y);
  else if (bands_fit(w))
    avg_bands_nchw(w, rule, x, y);
  else
    avg_windows_nchw(w, rule, x, y);
}

template <class T>
void avg_backward_nchw(const Windows& w, const AvgDivisor& rule, const T* dy, T* dx) {
  if (is_global(w))
    avg_global_backward_nchw(w, rule, dy, dx);
  else if (bands_fit(w))
    avg_bands_backward_nchw(w, rule, dy, dx);
  else
    avg_windows_backward_nchw(w, rule, dy, dx);
}

// The gradient of max/min: threads own planes; each zeroes its plane and scatters, checking each
// index as it goes. A grad_input larger than the caches is built plane by plane in a zeroed scratch plane that stays
// in L2, its indices checked in the same pass as the scatter, and then streamed out: zeroed and
// scattered in place, each of its lines was read from memory before being written, and the
// indices were read twice, by the check and by the scatter (resnet50.maxpool backward, a 25.7 MB
// grad_input: 2.0 ms on a Zen 4). The scratch is zeroed again, in L2, after each plane; the
// additions are the same, in the same order.
template <class T>
i64 extremum_backward_nchw(i64 planes, i64 in_plane, i64 out_plane, const T* dy, const i64* idx, T* dx) {
  std::atomic<i64> first_bad{std::numeric_limits<i64>::max()};
  const bool stream = double(planes) * double(in_plane) * sizeof(T) >= kStreamedPoolBytes &&
                      in_plane * static_cast<i64>(sizeof(T)) <= (256 << 10);
  parallel_ranges(planes, double(in_plane + out_plane), [&](i64 first, i64 last) {
    std::vector<T> scratch(static_cast<size_t>(stream ? in_plane : 0), T(0));
    for (i64 plane = first; plane < last; ++plane) {
      const i64* ip = idx + plane * out_plane;
      T* dxp = dx + plane * in_plane;
      const T* dyp = dy + plane * out_plane;
      // The check rides on the scatter, one pass over the indices: a bad index leaves a partly
      // written plane (of a grad_input the call then drops) or only the scratch to clean.
      T* __restrict sums = stream ? scratch.data() : dxp;
      if (!stream) std::fill(dxp, dxp + in_plane, T(0));
      i64 bad = -1;
      for (i64 o = 0; o < out_plane; ++o) {
        const i64 at = ip[o];
        if (static_cast<std::uint64_t>(at) + 1 > static_cast<std::uint64_t>(in_plane)) {  // not in [-1, in_plane)
          bad = o;
          break;
        }
        if (at >= 0) sums[at] += dyp[o];
      }
      if (bad >= 0) record_bad(first_bad, plane * out_plane + bad);
      if (!stream) continue;
      if (bad < 0) stream_copy(sums, dxp, in_plane);
      std::fill(sums, sums + in_plane, T(0));
    }
    if (stream) stream_fence();
  });
  const i64 bad = first_bad.load();
  return bad == std::numeric_limits<i64>::max() ? -1 : bad;
}

// ============================================================================ channels-last (NHWC)

// Max/min of one window for a channel-last run [0, nc) of channels, without indices: the running
// best of a few vectors of channels stays in registers across the window's taps. (Kept in the
// output row instead, each tap was a store and a reload per vector, a chain of store-to-load
// forwards: resnet50.maxpool NHWC forward took 0.15-0.19 ms an image on a Zen 4 whether or not
// the image was in cache.) The best starts as the first cell, which then meets itself: no change,
// a NaN included. Channels past whole vector blocks go through the scalar rule.
// (a > b) ? a : b for max, (a < b) ? a : b for min, lane by lane, b where either is NaN: exactly
// x86's MAXPS/MINPS (and the PD forms), one instruction where the compare-and-select written out
// compiled to two compares, two mask operations and a blend on the running best's chain. Spelled
// with intrinsics: GCC emits MAXPS for the plain ternary alone, but folds it with the caller's NaN
// select back into the compare-or-blend form.
template <Extremum W, class T>
inline Vec<T> better_or_second(Vec<T> a, Vec<T> b) {
#if defined(__AVX512F__)
  if constexpr (sizeof(Vec<T>) == 64) {
    if constexpr (sizeof(T) == 4) {
      const __m512 r = W == Extremum::kMax ? _mm512_max_ps(reinterpret_cast<__m512&>(a), reinterpret_cast<__m512&>(b))
                                           : _mm512_min_ps(reinterpret_cast<__m512&>(a), reinterpret_cast<__m512&>(b));
      return reinterpret_cast<const Vec<T>&>(r);
    } else {
      const __m512d r = W == Extremum::kMax
                            ? _mm512_max_pd(reinterpret_cast<__m512d&>(a), reinterpret_cast<__m512d&>(b))
                            : _mm512_min_pd(reinterpret_cast<__m512d&>(a), reinterpret_cast<__m512d&>(b));
      return reinterpret_cast<const Vec<T>&>(r);
    }
  }
#endif
#if defined(__AVX__)
  if constexpr (sizeof(Vec<T>) == 32) {
    if constexpr (sizeof(T) == 4) {
      const __m256 r = W == Extremum::kMax ? _mm256_max_ps(reinterpret_cast<__m256&>(a), reinterpret_cast<__m256&>(b))
                                           : _mm256_min_ps(reinterpret_cast<__m256&>(a), reinterpret_cast<__m256&>(b));
      return reinterpret_cast<const Vec<T>&>(r);
    } else {
      const __m256d r = W == Extremum::kMax
                            ? _mm256_max_pd(reinterpret_cast<__m256d&>(a), reinterpret_cast<__m256d&>(b))
                            : _mm256_min_pd(reinterpret_cast<__m256d&>(a), reinterpret_cast<__m256d&>(b));
      return reinterpret_cast<const Vec<T>&>(r);
    }
  }
#endif
  if constexpr (W == Extremum::kMax)
    return a > b ? a : b;
  else
    return a < b ? a : b;
}

template <Extremum W, class T>
void extremum_window_nhwc(const T* xn, i64 C, i64 nc, const Windows& w, const Span& d, const Span& h, const Span& c,
                          T* __restrict yp, bool stream) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 IH = ah.in, IW = aw.in;
  if (d.count == 0 || h.count == 0 || c.count == 0) {
    std::fill(yp, yp + nc, empty_window_value<W, T>());
    return;
  }
  // The window's first cell and the steps between its cells along each axis, as pointer steps in
  // the loops: computed per cell, the address's products were a third of the time when the
  // compiler did not reduce them itself (it does or not depending on what it inlines around).
  const T* first = xn + ((d.begin * IH + h.begin) * IW + c.begin) * C;
  const i64 step_d = ad.step * IH * IW * C, step_h = ah.step * IW * C, step_w = aw.step * C;
  constexpr i64 VL = vector_length<T>(), kVectors = 4;
  i64 ch = 0;
  for (; ch + kVectors * VL <= nc; ch += kVectors * VL) {
    Vec<T> best[kVectors];
    for (i64 v = 0; v < kVectors; ++v) best[v] = load_vec(first + ch + v * VL);
    const T* xd = first + ch;
    for (i64 kd = 0; kd < d.count; ++kd, xd += step_d) {
      const T* xh = xd;
      for (i64 kh = 0; kh < h.count; ++kh, xh += step_h) {
        const T* xc = xh;
        for (i64 kw = 0; kw < c.count; ++kw, xc += step_w) {
          for (i64 v = 0; v < kVectors; ++v) {
            // val where it is better or NaN: the NaN test is off the running best's chain.
            const Vec<T> val = load_vec(xc + v * VL);
            best[v] = val != val ? val : better_or_second<W, T>(val, best[v]);
          }
        }
      }
    }
    if (stream && reinterpret_cast<std::uintptr_t>(yp + ch) % 64 == 0) {
      for (i64 v = 0; v < kVectors; ++v) stream_vec(yp + ch + v * VL, best[v]);
    } else {
      for (i64 v = 0; v < kVectors; ++v) store_vec(yp + ch + v * VL, best[v]);
    }
  }
  if (ch == nc) return;
  std::copy(first + ch, first + nc, yp + ch);
  for (i64 kd = 0; kd < d.count; ++kd)
    for (i64 kh = 0; kh < h.count; ++kh)
      for (i64 kw = 0; kw < c.count; ++kw) {
        const T* __restrict xc = first + kd * step_d + kh * step_h + kw * step_w;
        for (i64 j = ch; j < nc; ++j) yp[j] = replaces<W>(xc[j], yp[j]) ? xc[j] : yp[j];
      }
}

// Input rows that output row `row` of a channels-last pool reads and the row before it does not,
// for prefetching ahead of the windows. The hardware prefetchers follow a single stream well, but
// a row of windows reads several input rows side by side at the pace of its compares, and its
// misses were left to stall: resnet50.maxpool NHWC forward spent half its time waiting on input
// that a plain sum reads at 55 GB/s a core. Whole input rows (all channels) only.
struct FreshRows {
  static constexpr i64 kMax = 8;
  const char* row[kMax];
  i64 count = 0;
};

template <class T>
FreshRows fresh_input_rows(const Windows& w, i64 C, const T* x, i64 row) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1];
  const i64 OD = ad.out(), OH = ah.out(), IH = ah.in, IW = w.axis[2].in;
  const i64 n = row / (OD * OH), od = row / OH % OD, oh = row % OH;
  const Span &d = ad.span[od], &h = ah.span[oh];
  // Rows up to the previous output row's last are in cache already (same image and depth window).
  i64 seen = -1;
  if (oh > 0) {
    const Span& prev = ah.span[oh - 1];
    if (prev.count > 0) seen = prev.begin + (prev.count - 1) * ah.step;
  }
  FreshRows fresh;
  for (i64 kd = 0; kd < d.count; ++kd)
    for (i64 kh = 0; kh < h.count; ++kh) {
      const i64 ih = h.begin + kh * ah.step;
      if (ih <= seen || fresh.count == FreshRows::kMax) continue;
      const i64 id = d.begin + kd * ad.step;
      fresh.row[fresh.count++] = reinterpret_cast<const char*>(x + ((n * ad.in + id) * IH + ih) * IW * C);
    }
  return fresh;
}

template <Extremum W, bool kIndex, class T>
void extremum_forward_nhwc(const Windows& w, i64 C, const T* x, T* y, i64* idx) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 OD = ad.out(), OH = ah.out(), OW = aw.out(), IH = ah.in, IW = aw.in;
  const i64 batch = w.planes / C, rows = batch * OD * OH;
  const ChannelBlocks cb = channel_blocks<T>(C, rows);
  const double work = double(OW) * double(cb.size) *
                      double(std::max<i64>(1, w.in_plane / std::max<i64>(1, w.out_plane)));
  // Without indices, an output larger than the caches is stored non-temporally where whole lines
  // of it are (vgg.maxpool NHWC, 12.8 MB: its lines were read before being written).
  const bool stream = !kIndex && double(w.planes) * double(w.out_plane) * sizeof(T) >= kStreamedPoolOutputBytes;
  // Prefetching (into L2) the input rows of the output row `ahead` rows on, a share of each per
  // window, where the input does not fit in L2 and rows are whole: ~128 KiB ahead.
  const i64 row_bytes = IW * C * static_cast<i64>(sizeof(T));
  const bool prefetch = !kIndex && cb.count == 1 &&
                        double(w.planes) * double(w.in_plane) * sizeof(T) >= kPrefetchedPoolBytes;
  const i64 ahead = std::clamp<i64>(ceil_div(kPrefetchAheadBytes, std::max<i64>(1, ah.stride) * row_bytes), 1, 8);
  const i64 share = ceil_div(ceil_div(row_bytes, std::max<i64>(OW, 1)), 64) * 64;
  parallel_ranges(rows * cb.count, work, [&](i64 first, i64 last) {
    for (i64 item = first; item < last; ++item) {  // item = (output row (n, od, oh), channel block)
      const i64 row = item / cb.count, c0 = item % cb.count * cb.size, nc = std::min(C - c0, cb.size);
      const i64 n = row / (OD * OH), od = row / OH % OD, oh = row % OH;
      const T* xn = x + n * w.in_plane * C + c0;
      const Span &d = ad.span[od], &h = ah.span[oh];
      if constexpr (!kIndex) {
        const FreshRows next = prefetch && row + ahead < rows ? fresh_input_rows(w, C, x, row + ahead) : FreshRows{};
        for (i64 ow = 0; ow < OW; ++ow) {
          extremum_window_nhwc<W>(xn, C, nc, w, d, h, aw.span[ow], y + (row * OW + ow) * C + c0, stream);
          for (i64 f = 0; f < next.count; ++f)
            for (i64 b = ow * share; b < std::min((ow + 1) * share, row_bytes); b += 64)
              __builtin_prefetch(next.row[f] + b, 0, 2);
        }
      } else {
        // With indices: the best and its cell tracked per channel through the output row.
        for (i64 ow = 0; ow < OW; ++ow) {
          T* __restrict yp = y + (row * OW + ow) * C + c0;
          i64* __restrict ip = idx + (row * OW + ow) * C + c0;
          const Span& c = aw.span[ow];
          bool first = true;
          for (i64 kd = 0; kd < d.count; ++kd)
            for (i64 kh = 0; kh < h.count; ++kh)
              for (i64 kw = 0; kw < c.count; ++kw) {
                const i64 cell = ((d.begin + kd * ad.step) * IH + h.begin + kh * ah.step) * IW + c.begin + kw * aw.step;
                const T* __restrict xc = xn + cell * C;
                if (first) {
                  for (i64 ch = 0; ch < nc; ++ch) {
                    yp[ch] = xc[ch];
                    ip[ch] = cell;
                  }
                  first = false;
                  continue;
                }
                for (i64 ch = 0; ch < nc; ++ch) {
                  const T v = xc[ch], cur = yp[ch];
                  const bool take = replaces<W>(v, cur);
                  yp[ch] = take ? v : cur;
                  ip[ch] = take ? cell : ip[ch];
                }
              }
          if (first) {
            std::fill(yp, yp + nc, empty_window_value<W, T>());
            std::fill(ip, ip + nc, i64{-1});
          }
        }
      }
    }
    if (stream) stream_fence();
  });
}

// dst[j] = (the sum over a < outer, b < inner of src[a * outer_step + b * inner_step + j]) / divisor
// for j < nc, added in that order starting from zero, kVectors vectors of channels at a time in
// registers (then 4, then 1).
template <class T, bool kDivide, i64 kVectors = 4>
inline void sum_runs_nhwc(const T* src, i64 outer, i64 outer_step, i64 inner, i64 inner_step, i64 nc, T divisor,
                          T* __restrict dst) {
  constexpr i64 VL = vector_length<T>();
  auto sum_vectors = [&](auto vectors, i64 ch) {
    constexpr i64 V = decltype(vectors)::value;
    Vec<T> sum[V] = {};
    for (i64 a = 0; a < outer; ++a)
      for (i64 b = 0; b < inner; ++b) {
        const T* run = src + a * outer_step + b * inner_step + ch;
        for (i64 v = 0; v < V; ++v) sum[v] += load_vec(run + v * VL);
      }
    for (i64 v = 0; v < V; ++v) store_vec(dst + ch + v * VL, kDivide ? sum[v] / divisor : sum[v]);
  };
  i64 ch = 0;
  for (; ch + kVectors * VL <= nc; ch += kVectors * VL) sum_vectors(std::integral_constant<i64, kVectors>{}, ch);
  if constexpr (kVectors > 4)
    for (; ch + 4 * VL <= nc; ch += 4 * VL) sum_vectors(std::integral_constant<i64, 4>{}, ch);
  for (; ch + VL <= nc; ch += VL) sum_vectors(std::integral_constant<i64, 1>{}, ch);
  if (ch == nc) return;
  std::fill(dst + ch, dst + nc, T(0));
  for (i64 a = 0; a < outer; ++a)
    for (i64 b = 0; b < inner; ++b) {
      const T* __restrict run = src + a * outer_step + b * inner_step;
      for (i64 j = ch; j < nc; ++j) dst[j] += run[j];
    }
  if (kDivide)
    for (i64 j = ch; j < nc; ++j) dst[j] = dst[j] / divisor;
}

// Global average over channels-last planes: per image, runs of 16 vectors of channels summed over
// the positions in registers (the adds take their operand from memory, so 16 accumulators fit
// AVX2's 16 registers). Each position's run is a separate stretch of memory, C channels from the
// last: runs of 256 bytes (4 vectors under AVX-512, as before) left Zen 4's prefetchers little
// to follow (a standalone probe of resnet50.gap NHWC: 50 us against 22 with 1 KiB runs; 512 bytes
// under AVX2: 42 -> 22).
// (Summed into the output row in L1 instead, resnet50.gap ran 1.2-1.5x slower on a 2-core Xeon.)
template <class T>
void avg_global_nhwc(const Windows& w, const AvgDivisor& rule, i64 C, const T* x, T* y) {
  constexpr i64 kVectors = 16, kRun = vector_length<T>() * kVectors;
  const i64 batch = w.planes / C, P = w.in_plane, runs = ceil_div(C, kRun), items = batch * runs;
  const T divisor = static_cast<T>(window_divisor(w, rule, 0, 0, 0));
  parallel_ranges(items, double(P) * double(kRun), [&](i64 first, i64 last) {
    for (i64 item = first; item < last; ++item) {
      const i64 n = item / runs, c0 = item % runs * kRun, nc = std::min(kRun, C - c0);
      sum_runs_nhwc<T, true, kVectors>(x + n * P * C + c0, 1, 0, P, C, nc, divisor, y + n * C + c0);
    }
  });
}

// Sliding (and adaptive) average windows over channels-last rows, separably: all the windows of
// one output row read the same input rows (along D and H), so each input column's sum over those
// rows is formed once, into a buffer in L1, and each output then sums its window's columns. At
// stride 1 a 3x3 window costs 3 + 3 vector additions and loads instead of 9; the sums are also
// short independent chains where window order made one chain of 9 dependent additions per vector
// (inception.avgpool NHWC: 0.30-0.36 ms on a Zen 4, latency-bound, against 0.42 for PyTorch). Each
// window is summed column by column (rows within a column in order), so its last bits can differ
// from the channels-first kernels', which add in row-major window order.
template <class T>
void avg_forward_nhwc(const Windows& w, const AvgDivisor& rule, i64 C, const T* x, T* y) {
  if (is_global(w)) return avg_global_nhwc(w, rule, C, x, y);
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 OD = ad.out(), OH = ah.out(), OW = aw.out(), IH = ah.in, IW = aw.in;
  const i64 batch = w.planes / C, rows = batch * OD * OH;
  // The columns any window reads: [lo, hi).
  i64 lo = IW, hi = 0;
  for (const Span& c : aw.span)
    if (c.count > 0) lo = std::min(lo, c.begin), hi = std::max(hi, c.begin + c.count);
  const i64 columns = std::max<i64>(0, hi - lo);
  // Blocks of whole lines of channels small enough for a row of column sums to stay in L1.
  ChannelBlocks cb = channel_blocks<T>(C, rows);
  const i64 line = static_cast<i64>(64 / sizeof(T));
  const i64 fit = std::max(line, (24 * 1024 / static_cast<i64>(sizeof(T))) / std::max<i64>(1, columns) / line * line);
  if (fit < cb.size) cb = {fit, ceil_div(C, fit)};
  const double work = double(OW) * double(cb.size) *
                      double(std::max<i64>(1, w.in_plane / std::max<i64>(1, w.out_plane)));
  parallel_ranges(rows * cb.count, work, [&](i64 first, i64 last) {
    std::vector<T> column_sums(static_cast<size_t>(columns * cb.size));
    for (i64 item = first; item < last; ++item) {
      const i64 row = item / cb.count, c0 = item % cb.count * cb.size, nc = std::min(C - c0, cb.size);
      const i64 n = row / (OD * OH), od = row / OH % OD, oh = row % OH;
      const Span &d = ad.span[od], &h = ah.span[oh];
      const T* x0 = x + n * w.in_plane * C + ((d.begin * IH + h.begin) * IW + lo) * C + c0;
      for (i64 iw = 0; iw < columns; ++iw)
        sum_runs_nhwc<T, false>(x0 + iw * C, d.count, IH * IW * C, h.count, IW * C, nc, T(1),
                                column_sums.data() + iw * nc);
      T* yr = y + row * OW * C + c0;
      for (i64 ow = 0; ow < OW; ++ow) {
        const Span& c = aw.span[ow];
        const T divisor = static_cast<T>(window_divisor(w, rule, od, oh, ow));
        sum_runs_nhwc<T, true>(column_sums.data() + (c.count > 0 ? c.begin - lo : 0) * nc, 1, 0, c.count, nc, nc,
                               divisor, yr + ow * C);
      }
    }
  });
}

// Threads own (image, channel block) columns. An image's grad_input can exceed L2, so rather than
// zeroing it all and then scattering into it (two trips to memory), cells are zeroed just ahead of
// the scatter: indices from the forward move through the image with the windows, and an index past
// the zeroed part first zeroes up to it, so any valid index is still added to a zeroed cell.
template <class T>
i64 extremum_backward_nhwc(i64 planes, i64 in_plane, i64 out_plane, i64 C, const T* dy, const i64* idx, T* dx) {
  const i64 batch = planes / C;
  const ChannelBlocks cb = channel_blocks<T>(C, batch);
  const i64 zero_ahead = std::max<i64>(1, 4096 / std::max<i64>(1, cb.size));  // cells zeroed at a time
  std::atomic<i64> first_bad{std::numeric_limits<i64>::max()};
  parallel_ranges(batch * cb.count, double(in_plane + out_plane) * double(cb.size), [&](i64 first, i64 last) {
    for (i64 item = first; item < last; ++item) {
      const i64 n = item / cb.count, c0 = item % cb.count * cb.size, nc = std::min(C - c0, cb.size);
      const i64* in = idx + n * out_plane * C + c0;
      T* dxn = dx + n * in_plane * C + c0;
      const T* dyn = dy + n * out_plane * C + c0;
      i64 zeroed = 0;  // cells [0, zeroed) of the column are zero or hold gradient
      auto zero_to = [&](i64 end) {
        if (nc == C) {
          std::fill(dxn + zeroed * C, dxn + end * C, T(0));
        } else {
          for (i64 cell = zeroed; cell < end; ++cell) std::fill(dxn + cell * C, dxn + cell * C + nc, T(0));
        }
        zeroed = end;
      };
      for (i64 o = 0; o < out_plane; ++o) {
        const i64* io = in + o * C;
        const T* g = dyn + o * C;
        // Each cell's indices are checked just before they are used (a pass of its own over all
        // of them read the indices twice): a bad one stops the item, and the call reports it.
        const IndexRange r = index_range(io, nc);
        if (r.lo < -1 || r.hi >= in_plane) {
          record_bad(first_bad, (n * out_plane + o) * C + c0 + first_bad_index(io, nc, in_plane));
          zeroed = in_plane;
          break;
        }
        const i64 top = r.hi;
        if (top >= zeroed) zero_to(std::min(in_plane, std::max(top + 1, zeroed + zero_ahead)));
        for (i64 ch = 0; ch < nc; ++ch)
          if (io[ch] >= 0) dxn[io[ch] * C + ch] += g[ch];
      }
      zero_to(in_plane);
    }
  });
  const i64 bad = first_bad.load();
  return bad == std::numeric_limits<i64>::max() ? -1 : bad;
}

// Whether no input cell lies in two windows: then dx can be written window by window, each cell once.
bool windows_disjoint(const Windows& w) {
  for (const AxisWindows& a : w.axis) {
    if (a.step != 1) return false;
    i64 end = std::numeric_limits<i64>::min();  // one past the previous window's last cell
    for (const Span& s : a.span) {
      if (s.count == 0 || s.begin < end) return false;
      end = s.begin + s.count;
    }
  }
  return true;
}

// The int64 indices of a vector's channels, in vectors of the same width (GCC lowered a double-width
// integer vector's compare to scalar code, and left a plain loop's mixed-width select scalar under
// AVX2: 4-8x slower than the scatter), and the mask that selects from a vector of T: for float, two
// index compares narrowed to the low 32 bits of each lane.
typedef i64 IndexVec __attribute__((vector_size(kVectorBytes), aligned(8)));
constexpr i64 kIndexLanes = kVectorBytes / 8;

template <class T>
struct LaneMask;
template <>
struct LaneMask<double> {
  typedef i64 type __attribute__((vector_size(kVectorBytes)));
  static constexpr int kIndexVectors = 1;
  static type of(const IndexVec* named) { return named[0]; }
};
template <>
struct LaneMask<float> {
  typedef std::int32_t type __attribute__((vector_size(kVectorBytes)));
  static constexpr int kIndexVectors = 2;
  static type of(const IndexVec* named) {
    const type lo = reinterpret_cast<type>(named[0]), hi = reinterpret_cast<type>(named[1]);
#if defined(__AVX512F__)
    return __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
#elif defined(__AVX2__)
    return __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
#else
    return __builtin_shufflevector(lo, hi, 0, 2, 4, 6);
#endif
  }
};

// dxp[ch] = g[ch] where io[ch] names `cell`, else 0, for ch < nc; returns how many named it. The
// +0 makes a -0 gradient +0, as adding it to a zeroed cell does.
template <class T>
i64 write_window_cell(const i64* __restrict io, const T* __restrict g, i64 cell, i64 nc, T* __restrict dxp) {
  using Mask = typename LaneMask<T>::type;
  constexpr int kParts = LaneMask<T>::kIndexVectors;
  constexpr i64 L = vector_length<T>();
  const IndexVec cells = IndexVec{} + cell;
  IndexVec hits{};
  i64 ch = 0;
  for (; ch + L <= nc; ch += L) {
    IndexVec named[kParts];
    for (int part = 0; part < kParts; ++part) {
      named[part] = *reinterpret_cast<const IndexVec*>(io + ch + part * kIndexLanes) == cells;
      hits -= named[part];
    }
    const Mask keep = LaneMask<T>::of(named);
    const Vec<T> picked = reinterpret_cast<Vec<T>>(reinterpret_cast<Mask>(load_vec(g + ch)) & keep);
    store_vec(dxp + ch, picked + T(0));
  }
  i64 count = 0;
  for (i64 lane = 0; lane < kIndexLanes; ++lane) count += hits[lane];
  for (; ch < nc; ++ch) {
    const bool hit = io[ch] == cell;
    dxp[ch] = T(0) + (hit ? g[ch] : T(0));
    count += hit;
  }
  return count;
}

// Where writing window by window beats the scatter (kernel alone, 2-core Xeon, AVX-512 and AVX2
// alike): disjoint windows of up to 9 cells over at least a vector of channels, with int64 compares
// in the vector set (SSE2 has none: 1.5-2x slower). 2x2 stride 2, 128 channels: 3.0 -> 1.7 ms;
// 3x3 stride 3: 1.65 -> 1.22; but 4x4 stride 4 about even, a 7x7 global window 2x slower, and 3
// channels (the scalar tail) 8x slower.
template <class T>
bool windows_route_fits(const Windows& w, i64 C) {
  return kVectorBytes >= 32 && C >= vector_length<T>() && double(w.in_plane) <= 9.0 * double(w.out_plane) &&
         windows_disjoint(w);
}

// Channels-last max/min backward over disjoint windows (2x2 stride 2 and the like): threads own
// output rows and write every cell of each window once, a vector of channels at a time: the window's
// gradient where the cell is the one its index names, 0 elsewhere. Cells in no window are zeroed
// first. The scatter instead zeroes dx and then adds one scalar per index (a window holds one index
// per channel, so 0 + g is the scatter's result bitwise).
// This only finds indices inside their own window, as the forward's always are. So each thread
// counts the cells it matched and the indices other than -1 it read; returns false when the totals
// differ (an index outside its window or its plane), and the caller then runs the scatter, which
// takes any index in the plane and reports the others.
template <class T>
bool extremum_windows_backward_nhwc(const Windows& w, i64 C, const T* dy, const i64* idx, T* dx) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 IH = ah.in, IW = aw.in, OD = ad.out(), OH = ah.out(), OW = aw.out();
  const i64 batch = w.planes / C;
  // Cells in no window: whole input rows (n, id, ih) outside every window, and the columns outside
  // every window in the other rows.
  std::vector<char> row_covered(static_cast<size_t>(ad.in * IH), 0), col_covered(static_cast<size_t>(IW), 0);
  for (const Span& d : ad.span)
    for (const Span& h : ah.span)
      for (i64 kd = 0; kd < d.count; ++kd)
        std::fill_n(row_covered.begin() + (d.begin + kd) * IH + h.begin, h.count, char(1));
  for (const Span& c : aw.span) std::fill_n(col_covered.begin() + c.begin, c.count, char(1));
  const bool all_covered = std::count(row_covered.begin(), row_covered.end(), char(0)) == 0 &&
                           std::count(col_covered.begin(), col_covered.end(), char(0)) == 0;
  if (!all_covered) {
    const i64 rows = batch * ad.in * IH;
    parallel_ranges(rows, double(IW) * double(C), [&](i64 first, i64 last) {
      for (i64 row = first; row < last; ++row) {
        T* dxr = dx + row * IW * C;
        if (!row_covered[static_cast<size_t>(row % (ad.in * IH))]) {
          std::fill(dxr, dxr + IW * C, T(0));
          continue;
        }
        for (i64 iw = 0; iw < IW; ++iw)
          if (!col_covered[static_cast<size_t>(iw)]) std::fill(dxr + iw * C, dxr + (iw + 1) * C, T(0));
      }
    });
  }
  const i64 out_rows = batch * OD * OH;
  const ChannelBlocks cb = channel_blocks<T>(C, out_rows);
  std::atomic<i64> unmatched{0};
  parallel_ranges(out_rows * cb.count,
                  3.0 * double(OW) * double(cb.size) * double(w.in_plane) / double(std::max<i64>(1, w.out_plane)),
                  [&](i64 first, i64 last) {
                    i64 named = 0, matched = 0;
                    for (i64 item = first; item < last; ++item) {  // item = (output row (n, od, oh), channel block)
                      const i64 row = item / cb.count, c0 = item % cb.count * cb.size, nc = std::min(C - c0, cb.size);
                      const i64 n = row / (OD * OH), od = row / OH % OD, oh = row % OH;
                      const Span &d = ad.span[od], &h = ah.span[oh];
                      T* dxn = dx + n * w.in_plane * C + c0;
                      for (i64 ow = 0; ow < OW; ++ow) {
                        const Span& c = aw.span[ow];
                        const i64* __restrict io = idx + (row * OW + ow) * C + c0;
                        const T* __restrict g = dy + (row * OW + ow) * C + c0;
                        for (i64 ch = 0; ch < nc; ++ch) named += io[ch] != -1;
                        for (i64 kd = 0; kd < d.count; ++kd)
                          for (i64 kh = 0; kh < h.count; ++kh)
                            for (i64 kw = 0; kw < c.count; ++kw) {
                              const i64 cell = ((d.begin + kd) * IH + h.begin + kh) * IW + c.begin + kw;
                              matched += write_window_cell(io, g, cell, nc, dxn + cell * C);
                            }
                      }
                    }
                    unmatched.fetch_add(named - matched);
                  });
  return unmatched.load() == 0;
}

template <class T>
void avg_backward_nhwc(const Windows& w, const AvgDivisor& rule, i64 C, const T* dy, T* dx) {
  const AxisWindows &ad = w.axis[0], &ah = w.axis[1], &aw = w.axis[2];
  const i64 ID = ad.in, IH = ah.in, IW = aw.in, OH = ah.out(), OW = aw.out();
  const i64 batch = w.planes / C, rows = batch * ID * IH;
  const std::vector<T> inv = plane_divisors<T>(w, rule, true);
  const std::vector<Cover> cover_d = covers(ad), cover_h = covers(ah), cover_w = covers(aw);
  const ChannelBlocks cb = channel_blocks<T>(C, rows);
  const double work = 2.0 * double(IW) * double(cb.size);
  parallel_ranges(rows * cb.count, work, [&](i64 first, i64 last) {
    for (i64 item = first; item < last; ++item) {  // item = (input row (n, id, ih), channel block)
      const i64 row = item / cb.count, c0 = item % cb.count * cb.size, nc = std::min(C - c0, cb.size);
      const i64 n = row / (ID * IH), id = row / IH % ID, ih = row % IH;
      const T* dyn = dy + n * w.out_plane * C + c0;
      const Cover &rd = cover_d[id], &rh = cover_h[ih];
      for (i64 iw = 0; iw < IW; ++iw) {
        T* __restrict dxp = dx + (row * IW + iw) * C + c0;
        const Cover& rw = cover_w[iw];
        std::fill(dxp, dxp + nc, T(0));
        // Windows in output order: a fixed order, whatever the split of the work.
        for (i64 od = rd.lo; od < rd.hi; ++od)
          for (i64 oh = rh.lo; oh < rh.hi; ++oh)
            for (i64 ow = rw.lo; ow < rw.hi; ++ow) {
              const i64 o = (od * OH + oh) * OW + ow;
              const T s = inv[o];
              const T* __restrict g = dyn + o * C;
              for (i64 ch = 0; ch < nc; ++ch) dxp[ch] += g[ch] * s;
            }
      }
    }
  });
}

// ======================================================================================= dispatch

template <bool kIndex, class T>
void extremum_forward(const Windows& w, const Layout& layout, Extremum which, const T* x, T* y, i64* idx) {
  if (w.planes == 0 || w.out_plane == 0) return;
  if (layout.channels_last) {
    if (which == Extremum::kMax)
      extremum_forward_nhwc<Extremum::kMax, kIndex>(w, layout.channels, x, y, idx);
    else
      extremum_forward_nhwc<Extremum::kMin, kIndex>(w, layout.channels, x, y, idx);
  } else {
    if (which == Extremum::kMax)
      extremum_forward_nchw<Extremum::kMax, kIndex>(w, x, y, idx);
    else
      extremum_forward_nchw<Extremum::kMin, kIndex>(w, x, y, idx);
  }
}

template <class T>
void extremum_forward(const Windows& w, const Layout& layout, Extremum which, const T* x, T* y, i64* idx) {
  if (idx)
    extremum_forward<true>(w, layout, which, x, y, idx);
  else
    extremum_forward<false>(w, layout, which, x, y, idx);
}

template <class T>
void avg_forward(const Windows& w, const Layout& layout, const AvgDivisor& rule, const T* x, T* y) {
  if (w.planes == 0 || w.out_plane == 0) return;
  if (layout.channels_last)
    avg_forward_nhwc(w, rule, layout.channels, x, y);
  else
    avg_forward_nchw(w, rule, x, y);
}

template <class T>
void avg_backward(const Windows& w, const Layout& layout, const AvgDivisor& rule, const T* dy, T* dx) {
  if (w.planes == 0) return;
  if (layout.channels_last)
    avg_backward_nhwc(w, rule, layout.channels, dy, dx);
  else
    avg_backward_nchw(w, rule, dy, dx);
}

}  // namespace

template <class T>
void extremum_pool_forward(const PoolGeometry& g, const Layout& layout, Extremum which, const T* x, T* y, i64* idx) {
  extremum_forward(windows_of(g), layout, which, x, y, idx);
}

template <class T>
void adaptive_extremum_pool_forward(const AdaptivePoolGeometry& g, const Layout& layout, Extremum which, const T* x,
                                    T* y, i64* idx) {
  extremum_forward(windows_of(g), layout, which, x, y, idx);
}

template <class T>
i64 extremum_pool_backward(const PoolGeometry* g, const AdaptivePoolGeometry* ag, const Layout& layout, const T* dy,
                           const i64* idx, T* dx) {
  const Windows w = g ? windows_of(*g) : windows_of(*ag);
  if (w.planes == 0) return -1;
  if (!layout.channels_last) return extremum_backward_nchw(w.planes, w.in_plane, w.out_plane, dy, idx, dx);
  if (windows_route_fits<T>(w, layout.channels) && extremum_windows_backward_nhwc(w, layout.channels, dy, idx, dx))
    return -1;
  return extremum_backward_nhwc(w.planes, w.in_plane, w.out_plane, layout.channels, dy, idx, dx);
}

template <class T>
void avg_pool_forward(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* x, T* y) {
  avg_forward(windows_of(g), layout, avg_divisor_rule(g, opt), x, y);
}

template <class T>
void avg_pool_backward(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* dy, T* dx) {
  avg_backward(windows_of(g), layout, avg_divisor_rule(g, opt), dy, dx);
}

template <class T>
void adaptive_avg_pool_forward(const AdaptivePoolGeometry& g, const Layout& layout, const T* x, T* y) {
  avg_forward(windows_of(g), layout, AvgDivisor{}, x, y);
}

template <class T>
void adaptive_avg_pool_backward(const AdaptivePoolGeometry& g, const Layout& layout, const T* dy, T* dx) {
  avg_backward(windows_of(g), layout, AvgDivisor{}, dy, dx);
}

#define CONVKERN_INSTANTIATE(T)                                                                                       \
  template void extremum_pool_forward<T>(const PoolGeometry&, const Layout&, Extremum, const T*, T*, i64*);           \
  template void adaptive_extremum_pool_forward<T>(const AdaptivePoolGeometry&, const Layout&, Extremum, const T*, T*, \
                                                  i64*);                                                              \
  template i64 extremum_pool_backward<T>(const PoolGeometry*, const AdaptivePoolGeometry*, const Layout&, const T*,   \
                                         const i64*, T*);                                                             \
  template void avg_pool_forward<T>(const PoolGeometry&, const Layout&, const AvgPoolOptions&, const T*, T*);         \
  template void avg_pool_backward<T>(const PoolGeometry&, const Layout&, const AvgPoolOptions&, const T*, T*);        \
  template void adaptive_avg_pool_forward<T>(const AdaptivePoolGeometry&, const Layout&, const T*, T*);               \
  template void adaptive_avg_pool_backward<T>(const AdaptivePoolGeometry&, const Layout&, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
