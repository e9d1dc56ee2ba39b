// conv.h — CPU convolution kernels (NC[D]HW layout, 3-D spatial internally; see shape.h).
// Arrays are C-contiguous: x (N, C, D, H, W), w (K, C/groups, kD, kH, kW), y (N, K, oD, oH, oW).
#pragma once

#include "../shape.h"

namespace convkern::cpu {

template <class T>
void conv_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y);

// grad_input = conv_transpose(grad_output, w): overwrites dx.
template <class T>
void conv_backward_data(const ConvGeometry& g, const T* dy, const T* w, T* dx);

// grad_weight = sum over batch and positions of grad_output (x) input windows: overwrites dw.
template <class T>
void conv_backward_weight(const ConvGeometry& g, const T* dy, const T* x, T* dw);

// grad_bias[k] = sum over batch and positions of grad_output[:, k]: overwrites db.
template <class T>
void conv_backward_bias(const ConvGeometry& g, const T* dy, T* db);

}  // namespace convkern::cpu
