// conv_winograd.h — Winograd convolution for 3x3 stride-1 float32 layers (see conv_winograd.cpp).
#pragma once

#include "../shape.h"

namespace convkern::cpu {

// Whether the Winograd kernels can compute this convolution: 2-D (unit, unpadded D axis),
// 3x3 kernel, stride 1, dilation 1, one group; any zero padding.
bool winograd_eligible(const ConvGeometry& g);

// Whether the forward pass of this geometry should run on the Winograd kernel: eligible and
// large enough to win (CONVKERN_WINOGRAD=0 never, =1 whenever eligible).
bool winograd_forward_wins(const ConvGeometry& g);

// y = conv(x, w) + bias for an eligible geometry, channels-first float32 arrays (non-finite or
// huge values take the implicit GEMM).
void winograd_forward_nchw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);

// The same for grad_input = conv_transpose(grad_output, w) (overwrites dx), computed as the
// forward convolution of grad_output with the rotated, transposed kernel. Needs padding <= 2.
bool winograd_backward_data_wins(const ConvGeometry& g);
void winograd_backward_data_nchw_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx);

// grad_weight (K, C, 3, 3) of an eligible geometry from grad_output and the input (overwrites dw).
bool winograd_backward_weight_wins(const ConvGeometry& g);
void winograd_backward_weight_nchw_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw);

// The same three passes for channels-last (NHWC) float32 arrays, for geometries whose *_wins
// above holds: the kernel itself, which the channels-first passes run on channels-last copies.
// Each returns false, having written nothing, when a value is non-finite or so large that the
// transforms could overflow: the caller then takes the direct route, whose non-finite outputs are
// exactly the convolution's.
bool winograd_forward_nhwc_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
bool winograd_backward_data_nhwc_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx);
bool winograd_backward_weight_nhwc_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw);

// 3-D convolutions with 3x3 spatial taps and unit stride, as the 2-D kernel over a batch of depth
// slices (conv_winograd_3d.cpp); channels-first float32, same contracts as above.
bool winograd_3d_eligible(const ConvGeometry& g);
bool winograd_3d_forward_wins(const ConvGeometry& g);
bool winograd_3d_backward_data_wins(const ConvGeometry& g);
bool winograd_3d_backward_weight_wins(const ConvGeometry& g);
void winograd_3d_forward_ncdhw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
void winograd_3d_backward_data_ncdhw_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void winograd_3d_backward_weight_ncdhw_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw);
// Channels-last (NDHWC) activations, on the channels-last 2-D kernels; false as the 2-D ones.
bool winograd_3d_forward_ndhwc_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
bool winograd_3d_backward_data_ndhwc_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx);
bool winograd_3d_backward_weight_ndhwc_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw);

}  // namespace convkern::cpu
