// pool.cpp — CPU max/min/average pooling, forward and backward, in one pass over each plane.
//
// Semantics are PyTorch's (shape.h computes the sizes): padded cells are never selected by
// max/min, NaN wins and the first NaN in row-major window order gives the index, ties go to the
// first element, and the average divisor follows count_include_pad / divisor_override, or the
// in-bounds count under TensorFlow-style "same"/"valid" padding.
//
// Threads own whole planes, so the backward scatter (overlapping windows add into the same
// input cell) runs in a fixed order in one thread: deterministic, no atomics.
//
// Versions:
//   v1  direct window loops, planes in parallel.
#include "pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "parallel.h"

namespace convkern::cpu {
namespace {

template <class T>
inline bool better(T v, T best, Extremum which) {
  return which == Extremum::kMax ? v > best : v < best;
}

}  // namespace

template <class T>
void extremum_pool_forward(const PoolGeometry& g, Extremum which, const T* x, T* y, i64* idx) {
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 in_plane = g.in_plane(), out_plane = g.out_plane();
  const T empty = which == Extremum::kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  parallel_for(g.planes, [&](i64 plane, int) {
    const T* xp = x + plane * in_plane;
    T* yp = y + plane * out_plane;
    i64* ip = idx ? idx + plane * out_plane : nullptr;
    for (i64 od = 0; od < OD; ++od)
      for (i64 oh = 0; oh < OH; ++oh)
        for (i64 ow = 0; ow < OW; ++ow) {
          const i64 d0 = od * g.stride[0] - g.pad_before[0];
          const i64 h0 = oh * g.stride[1] - g.pad_before[1];
          const i64 w0 = ow * g.stride[2] - g.pad_before[2];
          T best = empty;
          i64 best_i = -1;
          for (i64 kd = 0; kd < g.kernel[0]; ++kd) {
            const i64 id = d0 + kd * g.dilation[0];
            if (id < 0 || id >= ID) continue;
            for (i64 kh = 0; kh < g.kernel[1]; ++kh) {
              const i64 ih = h0 + kh * g.dilation[1];
              if (ih < 0 || ih >= IH) continue;
              const i64 row = (id * IH + ih) * IW;
              for (i64 kw = 0; kw < g.kernel[2]; ++kw) {
                const i64 iw = w0 + kw * g.dilation[2];
                if (iw < 0 || iw >= IW) continue;
                const T v = xp[row + iw];
                // The first in-bounds cell always takes the window; after that a NaN sticks
                // (first NaN wins) and only a strictly better value replaces the best.
                if (best_i < 0 || (!std::isnan(best) && (std::isnan(v) || better(v, best, which)))) {
                  best = v;
                  best_i = row + iw;
                }
              }
            }
          }
          const i64 o = (od * OH + oh) * OW + ow;
          yp[o] = best;
          if (ip) ip[o] = best_i;
        }
  });
}

i64 find_bad_pool_index(const PoolGeometry& g, const i64* idx) {
  const i64 total = g.planes * g.out_plane(), in_plane = g.in_plane();
  std::atomic<i64> first_bad{total};
  const i64 chunk = 1 << 16;
  parallel_for(ceil_div(total, chunk), [&](i64 c, int) {
    const i64 end = std::min(total, (c + 1) * chunk);
    for (i64 i = c * chunk; i < end; ++i)
      if (idx[i] < -1 || idx[i] >= in_plane) {
        i64 cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
        }
        break;
      }
  });
  const i64 bad = first_bad.load();
  return bad == total ? -1 : bad;
}

template <class T>
void extremum_pool_backward(const PoolGeometry& g, const T* dy, const i64* idx, T* dx) {
  const i64 in_plane = g.in_plane(), out_plane = g.out_plane();
  parallel_for(g.planes, [&](i64 plane, int) {
    T* dxp = dx + plane * in_plane;
    const T* dyp = dy + plane * out_plane;
    const i64* ip = idx + plane * out_plane;
    std::fill(dxp, dxp + in_plane, T(0));
    for (i64 o = 0; o < out_plane; ++o)
      if (ip[o] >= 0) dxp[ip[o]] += dyp[o];
  });
}

namespace {

// Clipped window of output cell o on axis a and the size PyTorch divides by before clipping.
struct AxisSpan {
  i64 lo, hi, padded;
};

inline AxisSpan avg_span(const PoolGeometry& g, int a, i64 o) {
  const i64 start = o * g.stride[a] - g.pad_before[a];
  const i64 end = std::min(start + g.kernel[a], g.in[a] + g.pad_after[a]);
  return {std::max<i64>(start, 0), std::min(end, g.in[a]), end - start};
}

inline i64 avg_divisor(const PoolGeometry& g, const AvgPoolOptions& opt, const AxisSpan* s) {
  if (opt.divisor_override != 0) return opt.divisor_override;
  if (opt.count_include_pad && g.padding_kind == PoolPadding::kExplicit) return s[0].padded * s[1].padded * s[2].padded;
  return (s[0].hi - s[0].lo) * (s[1].hi - s[1].lo) * (s[2].hi - s[2].lo);
}

}  // namespace

template <class T>
void avg_pool_forward(const PoolGeometry& g, const AvgPoolOptions& opt, const T* x, T* y) {
  const i64 IH = g.in[1], IW = g.in[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 in_plane = g.in_plane(), out_plane = g.out_plane();
  parallel_for(g.planes, [&](i64 plane, int) {
    const T* xp = x + plane * in_plane;
    T* yp = y + plane * out_plane;
    for (i64 od = 0; od < OD; ++od)
      for (i64 oh = 0; oh < OH; ++oh)
        for (i64 ow = 0; ow < OW; ++ow) {
          const AxisSpan s[kSpatial] = {avg_span(g, 0, od), avg_span(g, 1, oh), avg_span(g, 2, ow)};
          T sum = 0;
          for (i64 id = s[0].lo; id < s[0].hi; ++id)
            for (i64 ih = s[1].lo; ih < s[1].hi; ++ih) {
              const T* row = xp + (id * IH + ih) * IW;
              for (i64 iw = s[2].lo; iw < s[2].hi; ++iw) sum += row[iw];
            }
          const i64 div = avg_divisor(g, opt, s);
          yp[(od * OH + oh) * OW + ow] = div != 0 ? sum / static_cast<T>(div) : std::numeric_limits<T>::quiet_NaN();
        }
  });
}

template <class T>
void avg_pool_backward(const PoolGeometry& g, const AvgPoolOptions& opt, const T* dy, T* dx) {
  const i64 IH = g.in[1], IW = g.in[2];
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 in_plane = g.in_plane(), out_plane = g.out_plane();
  parallel_for(g.planes, [&](i64 plane, int) {
    T* dxp = dx + plane * in_plane;
    const T* dyp = dy + plane * out_plane;
    std::fill(dxp, dxp + in_plane, T(0));
    for (i64 od = 0; od < OD; ++od)
      for (i64 oh = 0; oh < OH; ++oh)
        for (i64 ow = 0; ow < OW; ++ow) {
          const AxisSpan s[kSpatial] = {avg_span(g, 0, od), avg_span(g, 1, oh), avg_span(g, 2, ow)};
          const i64 div = avg_divisor(g, opt, s);
          const T share = div != 0 ? dyp[(od * OH + oh) * OW + ow] / static_cast<T>(div)
                                   : std::numeric_limits<T>::quiet_NaN();
          for (i64 id = s[0].lo; id < s[0].hi; ++id)
            for (i64 ih = s[1].lo; ih < s[1].hi; ++ih) {
              T* row = dxp + (id * IH + ih) * IW;
              for (i64 iw = s[2].lo; iw < s[2].hi; ++iw) row[iw] += share;
            }
        }
  });
}

#define CONVKERN_INSTANTIATE(T)                                                                     \
  template void extremum_pool_forward<T>(const PoolGeometry&, Extremum, const T*, T*, i64*);       \
  template void extremum_pool_backward<T>(const PoolGeometry&, const T*, const i64*, T*);          \
  template void avg_pool_forward<T>(const PoolGeometry&, const AvgPoolOptions&, const T*, T*);      \
  template void avg_pool_backward<T>(const PoolGeometry&, const AvgPoolOptions&, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
