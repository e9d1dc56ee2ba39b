// kernels.h — host-side launchers of convkern's CUDA kernels (csrc/cuda/conv.cu, pool.cu).
//
// Every launcher takes a geometry built by shape.h (make_conv_geometry, make_pool_geometry,
// make_adaptive_pool_geometry), device pointers to C-contiguous arrays and a stream; it checks
// the extents its kernels can index, enqueues the kernels on the stream and returns without
// synchronising (except extremum_pool_backward with index validation, which must read a verdict
// back). Launch failures throw std::runtime_error carrying CUDA's message; sizes the kernels
// cannot index throw std::invalid_argument. Pointers are never dereferenced on the host.
//
// Element types: every template below is instantiated for float, double and __half (float16,
// computed and accumulated in float, rounded once to half at the store).
//
// Layouts: channels-first activations are (N, C, D, H, W), channels-last ones (N, D, H, W, C);
// weights are always (K, C/groups, kD, kH, kW). Pool indices are int64 flat cell numbers
// (d*H + h)*W + w inside each (n, c) plane of the input, -1 for a window without input cells.
#pragma once

#include <cuda_fp16.h>  // __half; usable from host C++ too (bind_cuda.cpp)
#include <cuda_runtime_api.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "../shape.h"

namespace convkern::cuda {

// A failed CUDA call: RuntimeError in Python (pybind11 maps std::runtime_error).
[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what) {
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e) + " (" +
                           cudaGetErrorName(e) + ")");
}

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda_error(e, what);
}

// ------------------------------------------------------------------------------ convolution

// The generation of the GEMM kernels the convolution launchers use, process-wide: 1 (64x64
// tiles, 4x4 per thread), 2 (the default: 128x128 tiles, 8x8 per thread, no division in the main
// loop, split reduction on small grids; float and float16, float64 stays on 1) or 3 (2 with the
// forward on tensor cores: float16, and float32 as TF32 when allowed below). Kept selectable so
// that every version can be tested and benchmarked beside the newest. Set it before launching
// work that depends on it (the backward-weight workspace size does).
constexpr int kConvKernelVersionLatest = 3;
constexpr int kConvKernelVersionDefault = 2;
void set_conv_kernel_version(int version);
int conv_kernel_version();
// Whether version 3 may run float32 convolutions on tensor cores as TF32 (inputs rounded to 10
// mantissa bits, float32 accumulation), like torch.backends.cudnn.allow_tf32. Default false.
void set_conv_allow_tf32(bool allow);
bool conv_allow_tf32();

// y = conv(x, w) + bias (bias may be null).
template <class T>
void conv_forward(const ConvGeometry& g, bool channels_last, const T* x, const T* w, const T* bias, T* y,
                  cudaStream_t stream);

// dx = the gradient of the convolution with respect to its input (overwrites dx), plus bias[c]
// on input channel c when bias is not null: the transposed convolution's forward is this pass,
// and adding its bias before the one rounding to T keeps float16 results to one rounding.
template <class T>
void conv_backward_data(const ConvGeometry& g, bool channels_last, const T* dy, const T* w, const T* bias, T* dx,
                        cudaStream_t stream);

// Bytes of device scratch conv_backward_weight<T> needs for this problem (0: none): partial sums
// in T's accumulator type (float for __half). It depends on the problem only, never on the
// device, so the result bits do not either.
template <class T>
std::size_t conv_backward_weight_workspace(const ConvGeometry& g);

// dw = the gradient with respect to the weights (overwrites dw); workspace as sized above.
template <class T>
void conv_backward_weight(const ConvGeometry& g, bool channels_last, const T* dy, const T* x, T* dw, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t stream);

// db[k] = sum over n and positions of dy[n, k, ...] (overwrites db), accumulated in double.
template <class T>
void channel_sum(i64 N, i64 K, i64 positions, bool channels_last, const T* dy, T* db, cudaStream_t stream);

// ---------------------------------------------------------------------------------- pooling

// The activation layout of a pooling call: N * C planes. A channels-first call may also pass
// N = planes, C = 1 (its arrays are then (planes, D, H, W)).
struct PoolLayout {
  bool channels_last = false;
  i64 N = 0, C = 1;
};

enum class PoolOp { kMax = 0, kMin = 1, kAvg = 2 };

struct AvgOptions {
  bool count_include_pad = true;
  i64 divisor_override = 0;  // 0: none
};

// Max/min pooling: values and, when idx != nullptr, indices.
template <class T>
void extremum_pool_forward(const PoolGeometry& g, const PoolLayout& layout, bool is_min, const T* x, T* y, i64* idx,
                           cudaStream_t stream);
template <class T>
void adaptive_max_pool_forward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* x, T* y, i64* idx,
                               cudaStream_t stream);

// Scratch for the index validation of extremum_pool_backward.
constexpr std::size_t kPoolIndexCheckBytes = 16;

// The verdict of an index validation: first_bad is the position in idx of the first index
// outside [-1, in_plane) (-1: none) and bad_value its value.
struct PoolIndexCheck {
  i64 first_bad = -1;
  i64 bad_value = 0;
};

// Gradient of max/min pooling (plain, global, adaptive: pass exactly one geometry) given the
// indices. With check_scratch != nullptr every index is validated first (this synchronises the
// stream); a bad one is reported in the returned verdict and dx is left untouched. Indices that
// point outside their own window (possible only for indices not made by the forward) are
// honoured too, by a slower serial path. Deterministic: each input cell sums its gradients in
// increasing output order, as the CPU kernel does.
template <class T>
PoolIndexCheck extremum_pool_backward(const PoolGeometry* g, const AdaptivePoolGeometry* ag, const PoolLayout& layout,
                                      const T* dy, const i64* idx, T* dx, void* check_scratch, cudaStream_t stream);

template <class T>
void avg_pool_forward(const PoolGeometry& g, const PoolLayout& layout, const AvgOptions& opt, const T* x, T* y,
                      cudaStream_t stream);
template <class T>
void avg_pool_backward(const PoolGeometry& g, const PoolLayout& layout, const AvgOptions& opt, const T* dy, T* dx,
                       cudaStream_t stream);
template <class T>
void adaptive_avg_pool_forward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* x, T* y,
                               cudaStream_t stream);
template <class T>
void adaptive_avg_pool_backward(const AdaptivePoolGeometry& g, const PoolLayout& layout, const T* dy, T* dx,
                                cudaStream_t stream);

}  // namespace convkern::cuda
