// common.cuh — what every CUDA kernel file of convkern shares: error checks, the launch helper,
// grid sizing and the small integer helpers of the index math.
//
// Index widths. Kernels index with 32-bit ints wherever the launcher has proved that the extent
// fits (per-sample planes, GEMM dimensions, reduction lengths) and form whole-tensor offsets in
// 64 bits, so a batch of more than 2^31 elements is still addressed correctly; a single sample or
// GEMM dimension beyond 2^31 is refused with a ValueError before anything is launched.
//
// Portability. Launches go through launch() (the runtime's typed cudaLaunchKernelEx, plain C++),
// and code that needs a GPU instruction (warp shuffles, cp.async, mma.sync) sits behind
// __CUDA_ARCH__ with a portable fallback beside it, so these sources also compile as ordinary
// host C++ against any implementation of the CUDA runtime API.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "../shape.h"
#include "kernels.h"

namespace convkern::cuda {

using i64 = std::int64_t;

constexpr int kThreads = 256;  // every kernel of convkern runs 256-thread blocks
constexpr i64 kMaxGridX = (i64(1) << 31) - 1;
constexpr i64 kMaxGridYZ = 65535;

// A size the CUDA kernels cannot index: ValueError in Python, raised before any launch.
[[noreturn]] inline void refuse_size(const std::string& what, i64 value, i64 limit) {
  throw std::invalid_argument("CUDA backend: " + what + " is " + std::to_string(value) + ", above the limit of " +
                              std::to_string(limit) + " that its 32-bit indexing allows; split the batch");
}

// Extents that kernels index with int: below INT_MAX with room for a tile's overhang, so that
// `index + tile` never wraps.
constexpr i64 kInt32IndexLimit = i64(std::numeric_limits<int>::max()) - 65536;

inline void require_int32(i64 value, const char* what) {
  if (value < 0 || value > kInt32IndexLimit) refuse_size(what, value, kInt32IndexLimit);
}

// Extents that shape.h only bounds as a whole (padded input, dilated kernel) may pass int64 on
// their own: check them in 128 bits before narrowing.
inline void require_int32(i128 value, const char* what) {
  if (value < 0 || value > kInt32IndexLimit)
    refuse_size(what, value > i128(kInt32IndexLimit) ? std::numeric_limits<i64>::max() : i64(value), kInt32IndexLimit);
}

inline unsigned grid_x(i64 blocks) {
  if (blocks > kMaxGridX) refuse_size("the number of thread blocks", blocks, kMaxGridX);
  return static_cast<unsigned>(blocks);
}

inline unsigned grid_yz(i64 blocks, const char* what) {
  if (blocks > kMaxGridYZ) refuse_size(what, blocks, kMaxGridYZ);
  return static_cast<unsigned>(blocks);
}

inline i64 div_up(i64 a, i64 b) { return (a + b - 1) / b; }

// Launches kernel<<<grid, block, 0, stream>>>(args...) and turns a launch failure into a
// RuntimeError naming the kernel. Empty grids launch nothing.
template <class... KArgs, class... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "launch: wrong number of kernel arguments");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  check_cuda(cudaLaunchKernelEx(&config, kernel, static_cast<KArgs>(args)...), name);
}

// Element types. Kernels are templated on the element type T of the arrays they read and write:
// float, double, or __half (float16). A kernel loads an element with to_acc(), which widens
// __half to float (exactly) and leaves float and double alone, does all its arithmetic and
// accumulation in acc_t<T> (float for __half and float, double for double) and rounds once, at
// the store, with from_acc<T>(). So float16 results carry one rounding to half on top of a
// float32 computation, and float and double kernels are unchanged.
template <class T>
struct Element {
  using Acc = T;
  static __host__ __device__ __forceinline__ T widen(T v) { return v; }
  static __host__ __device__ __forceinline__ T narrow(T v) { return v; }
  static __host__ __device__ __forceinline__ T narrow_double(double v) { return T(v); }
};
template <>
struct Element<__half> {
  using Acc = float;
  static __host__ __device__ __forceinline__ float widen(__half v) { return __half2float(v); }
  static __host__ __device__ __forceinline__ __half narrow(float v) { return __float2half_rn(v); }
  static __host__ __device__ __forceinline__ __half narrow_double(double v) { return __double2half(v); }
};

template <class T>
using acc_t = typename Element<T>::Acc;

template <class T>
__host__ __device__ __forceinline__ acc_t<T> to_acc(T v) {
  return Element<T>::widen(v);
}

template <class T>
__host__ __device__ __forceinline__ T from_acc(acc_t<T> v) {
  return Element<T>::narrow(v);
}

// A double (the bias gradient's accumulator) rounded once to T.
template <class T>
__host__ __device__ __forceinline__ T from_double(double v) {
  return Element<T>::narrow_double(v);
}

// ceil(a / b) for any sign of a and b > 0 (C++ division truncates towards zero).
template <class I>
__host__ __device__ __forceinline__ I ceil_div_signed(I a, I b) {
  return a >= 0 ? a / b + (a % b != 0) : -((-a) / b);
}

}  // namespace convkern::cuda
