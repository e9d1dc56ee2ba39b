// pool.h — CPU pooling kernels over (planes, D, H, W) C-contiguous arrays (planes = N*C).
#pragma once

#include "../shape.h"

namespace convkern::cpu {

enum class Extremum { kMax, kMin };

// Values and (optionally, when idx != nullptr) int64 flat indices into each input plane.
template <class T>
void extremum_pool_forward(const PoolGeometry& g, Extremum which, const T* x, T* y, i64* idx);

// Returns the position of the first index outside [-1, in_plane), or -1 when all are valid.
// Run before extremum_pool_backward so that a hostile index is refused before dx is touched.
i64 find_bad_pool_index(const PoolGeometry& g, const i64* idx);

// dx = 0; dx[plane][idx] += dy for every output (index -1 marks a window with no input cell).
template <class T>
void extremum_pool_backward(const PoolGeometry& g, const T* dy, const i64* idx, T* dx);

struct AvgPoolOptions {
  bool count_include_pad = true;
  i64 divisor_override = 0;  // 0: none
};

template <class T>
void avg_pool_forward(const PoolGeometry& g, const AvgPoolOptions& opt, const T* x, T* y);

template <class T>
void avg_pool_backward(const PoolGeometry& g, const AvgPoolOptions& opt, const T* dy, T* dx);

}  // namespace convkern::cpu
