// conv.h — CPU convolution kernels, 3-D spatial internally (see shape.h).
//
// Channels-first arrays are C-contiguous (N, C, D, H, W); channels-last ones (N, D, H, W, C).
// Weights are always (K, C/groups, kD, kH, kW).
#pragma once

#include <cmath>

#include "../shape.h"
#include "parallel.h"

namespace convkern::cpu {

// y = conv(x, w) + bias (bias may be null).
template <class T>
void conv_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);

// grad_input = conv_transpose(grad_output, w): overwrites dx.
template <class T>
void conv_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx);
template <class T>
void conv_backward_data_channels_last(const ConvGeometry& g, const T* dy, const T* w, T* dx);

// grad_weight = sum over batch and positions of grad_output (x) input windows: overwrites dw.
template <class T>
void conv_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw);
template <class T>
void conv_backward_weight_channels_last(const ConvGeometry& g, const T* dy, const T* x, T* dw);

// grad_bias[k] = sum over batch and positions of grad_output[:, k]: overwrites db.
template <class T>
void conv_backward_bias_channels_first(const ConvGeometry& g, const T* dy, T* db);
template <class T>
void conv_backward_bias_channels_last(const ConvGeometry& g, const T* dy, T* db);

// A 1x1 convolution with unit stride and no padding, whose backward data pass is the forward
// pass of its transpose: the geometry with C and K swapped, and per group the weights
// [Kg][Cg] -> [Cg][Kg] (wt holds C * K/groups values).
bool conv_is_pointwise(const ConvGeometry& g);
ConvGeometry pointwise_transpose(const ConvGeometry& g);
template <class T>
void transpose_pointwise_weights(const ConvGeometry& g, const T* w, T* wt);

enum class ConvPass { kForward, kBackwardData, kBackwardWeight };

// Whether a channels-last layer's pass runs through the channels-first kernels (the dispatcher
// transposes its activations) rather than the channels-last ones above, which then serve only the
// others.
bool channels_last_runs_channels_first(const ConvGeometry& g, ConvPass pass);
// Whether the channels-last forward pass runs by kernel rows (conv_channels_last.cpp), reading the
// input's runs of kW x C values in place, and whether the backward data pass can run by stride
// phases, reading grad_output's the same way: the conditions are stated there. The phases pass
// returns false, writing nothing, when a weight is not finite; the caller then takes the usual
// route.
bool forward_by_kernel_rows(const ConvGeometry& g);
bool backward_data_by_kernel_rows(const ConvGeometry& g);
// The converse, for a channels-first layer's forward: layers with few input channels run the
// forward by kernel rows on their channels-first activations (interleaved into its padded copy,
// each output row transposed into its planes while in cache).
bool channels_first_forward_runs_channels_last(const ConvGeometry& g);
// And a strided channels-first layer with many input channels that the kernel-rows forward does
// not serve: the channels-last forward on channels-last copies of its activations.
bool channels_first_strided_forward_runs_channels_last(const ConvGeometry& g);
template <class T>
void conv_forward_by_kernel_rows_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <class T>
bool conv_backward_data_by_phases(const ConvGeometry& g, const T* dy, const T* w, T* dx);
// Two backward weight passes for layers with few input channels, on channels-last activations:
// by blocks of images, over output rows read in place (LeNet-sized layers; either layout,
// channels-first ones on copies) and by kernel rows (a network's strided first layer).
// conv_backward_weight_by_kernel_rows runs whichever applies.
bool backward_weight_by_image_blocks(const ConvGeometry& g);
bool backward_weight_by_kernel_rows(const ConvGeometry& g);
template <class T>
void conv_backward_weight_by_kernel_rows(const ConvGeometry& g, const T* dy, const T* x, T* dw);
// Strided channels-last layers with many input channels: backward weight by kernel rows, the
// input runs of a few output rows at a time copied into a panel, blocks of rows into partials.
bool backward_weight_wide_by_kernel_rows(const ConvGeometry& g);
template <class T>
void conv_backward_weight_wide_by_kernel_rows(const ConvGeometry& g, const T* dy, const T* x, T* dw);
// Whether a channels-first layer's backward weight runs by kernel rows, and that pass on
// channels-first activations (interleaved into its padded copy and transposed row by row).
bool channels_first_weight_grad_runs_channels_last(const ConvGeometry& g);
template <class T>
void conv_backward_weight_by_kernel_rows_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw);

// Activations between the layouts, N images of P positions and C channels:
// dst[n][c][p] = src[n][p][c] (to channels-first) or the reverse (to channels-last).
template <class T>
void activations_to_channels_first(const T* src, T* dst, i64 N, i64 P, i64 C);
template <class T>
void activations_to_channels_last(const T* src, T* dst, i64 N, i64 P, i64 C);

// A pass's activations in the other layout, for kernels that exist in one layout only: a copy of
// an input, or room for an output that copy_out moves back. Leased from the scratch cache (a first
// layer's are tens of MiB, whose fresh pages would cost as much as the transposes). An activation
// with one channel is the same memory in both layouts and is used as it is.
template <class T, bool kToChannelsLast>
struct LayoutCopy {
  CachedBuffer<T> storage;
  T* data;
  i64 N, P, C;
  // Room for a pass's output; `original` receives it in copy_out.
  LayoutCopy(T* original, i64 n, i64 p, i64 c)
      : data(c == 1 ? original : storage.reserve(checked_mul(n * c, p, "activation copy"))), N(n), P(p), C(c) {}
  // A copy of the input `original`.
  LayoutCopy(const T* original, i64 n, i64 p, i64 c) : LayoutCopy(const_cast<T*>(original), n, p, c) {
    if (c == 1) return;
    if constexpr (kToChannelsLast)
      activations_to_channels_last(original, data, N, P, C);
    else
      activations_to_channels_first(original, data, N, P, C);
  }
  void copy_out(T* original) const {
    if (data == original) return;
    if constexpr (kToChannelsLast)
      activations_to_channels_first(data, original, N, P, C);
    else
      activations_to_channels_last(data, original, N, P, C);
  }
};
template <class T>
using ChannelsFirstCopy = LayoutCopy<T, false>;
template <class T>
using ChannelsLastCopy = LayoutCopy<T, true>;

// Whether all n values are finite. Kernels that multiply zeros they add themselves (padded
// stretches, widened rows) by weights or inputs check first: 0 x inf would be NaN where the
// convolution has no such product.
template <class T>
bool all_finite(const T* p, i64 n) {
  for (i64 i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// Whether the fast kernels' padded copies and scratch stay proportional to the tensors and the
// work: every padded extent they allocate is bounded by the input plus what the windows reach.
// Strides, dilations or paddings far beyond the input (up to 2**63-1 are valid) make the padded
// layouts grow with the argument rather than the work, and can leave int64; such geometries go to
// the direct kernels below instead, which every entry point above checks first.
bool conv_reach_is_compact(const ConvGeometry& g);

// Direct convolution in either layout: per output position only the taps that land in the input,
// found per axis in 128-bit arithmetic, so the cost is the work of the valid taps and the scratch is
// none, whatever the stride, dilation or padding. Same contracts as the kernels above.
template <class T>
void conv_forward_direct(const ConvGeometry& g, bool channels_last, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv_backward_data_direct(const ConvGeometry& g, bool channels_last, const T* dy, const T* w, T* dx);
template <class T>
void conv_backward_weight_direct(const ConvGeometry& g, bool channels_last, const T* dy, const T* x, T* dw);

// Depthwise convolution (one input channel per group): direct stencil kernels, same contracts
// as the general ones above.
bool conv_is_depthwise(const ConvGeometry& g);
bool grey_forward_by_stencils(const ConvGeometry& g);
template <class T>
void depthwise_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <class T>
void depthwise_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <class T>
void depthwise_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx);
template <class T>
void depthwise_backward_data_channels_last(const ConvGeometry& g, const T* dy, const T* w, T* dx);
template <class T>
void depthwise_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw);
template <class T>
void depthwise_backward_weight_channels_last(const ConvGeometry& g, const T* dy, const T* x, T* dw);

}  // namespace convkern::cpu
