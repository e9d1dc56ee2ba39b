// pool.h — CPU pooling kernels: max/min/average with sliding windows (shape.h's PoolGeometry) and
// adaptive max/average (AdaptivePoolGeometry), forward and backward, in both activation layouts.
//
// Arrays are C-contiguous. Channels-first activations are (N, C, D, H, W), i.e. `planes` = N*C
// planes of D*H*W cells; channels-last ones are (N, D, H, W, C). Indices are int64 flat cell
// numbers (d*H + h)*W + w inside each (n, c) plane of the input whatever the layout, and -1 for a
// window with no input cell. Lower ranks use leading unit spatial axes.
#pragma once

#include "../shape.h"

namespace convkern::cpu {

enum class Extremum { kMax, kMin };

struct Layout {
  bool channels_last = false;
  i64 channels = 1;  // C: (N, C) = (planes / C, C); only channels-last kernels need it
};

// Values and, when idx != nullptr, indices.
template <class T>
void extremum_pool_forward(const PoolGeometry& g, const Layout& layout, Extremum which, const T* x, T* y, i64* idx);

template <class T>
void adaptive_extremum_pool_forward(const AdaptivePoolGeometry& g, const Layout& layout, Extremum which, const T* x,
                                    T* y, i64* idx);

// The gradient of every max/min pool (plain, global, adaptive; pass exactly one geometry): dx = 0,
// then dx[plane][idx] += dy for every output. Each index is checked against [-1, in_plane) before
// anything depending on it is written; returns the flat position in idx of the first bad one (dx is
// then unspecified), or -1.
template <class T>
i64 extremum_pool_backward(const PoolGeometry* g, const AdaptivePoolGeometry* ag, const Layout& layout, const T* dy,
                           const i64* idx, T* dx);

struct AvgPoolOptions {
  bool count_include_pad = true;
  i64 divisor_override = 0;  // 0: none
};

template <class T>
void avg_pool_forward(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* x, T* y);

template <class T>
void avg_pool_backward(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* dy, T* dx);

template <class T>
void adaptive_avg_pool_forward(const AdaptivePoolGeometry& g, const Layout& layout, const T* x, T* y);

template <class T>
void adaptive_avg_pool_backward(const AdaptivePoolGeometry& g, const Layout& layout, const T* dy, T* dx);

}  // namespace convkern::cpu
