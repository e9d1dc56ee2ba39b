// cuda_runtime.h (emulation) — stands in for the CUDA runtime header when build.sh compiles
// convkern's CUDA sources as ordinary C++ for the CPU: it maps the CUDA runtime names those sources
// use onto the HIP CPU runtime (github.com/ROCm/HIP-CPU, header-only), where block threads are
// fibers and __shared__ is thread_local. build.sh puts this folder first on the include path, so
// the shipping sources include <cuda_runtime.h> and know nothing of the emulation.
//
// Only for checking the kernels' index math on a machine without a GPU: it says nothing about
// speed. __CUDA_ARCH__ is not defined here (everything is host code), so kernels take their
// portable paths; the paths behind __CUDA_ARCH__ (warp shuffles, cp.async, mma.sync) run only on
// a GPU and are tested there.
#pragma once

#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#include <cmath>
#include <cstddef>

// float16: HIP-CPU's __half (half_float::half, round to nearest even like CUDA's _rn
// conversions) with CUDA's conversion names. HIP-CPU lacks __double2half.
inline __half __double2half(double x) noexcept { return hip::detail::half_cast<__half>(x); }

using cudaError_t = hipError_t;
using cudaStream_t = hipStream_t;
using cudaDeviceProp = hipDeviceProp_t;

#define cudaSuccess hipSuccess
#define cudaGetErrorString hipGetErrorString
#define cudaGetErrorName hipGetErrorName
#define cudaGetLastError hipGetLastError
#define cudaMemsetAsync hipMemsetAsync
#define cudaFreeAsync hipFreeAsync
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaDeviceSynchronize hipDeviceSynchronize
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaRuntimeGetVersion hipRuntimeGetVersion
#define cudaDriverGetVersion hipDriverGetVersion
#define cudaGetDeviceProperties hipGetDeviceProperties

// HIP-CPU runs a stream-ordered allocation as a task of the stream, so its pointer exists only
// once the stream has got there; CUDA returns it at once.
inline hipError_t cudaMallocAsync(void** p, std::size_t bytes, hipStream_t s) {
  const hipError_t e = hipMallocAsync(p, bytes, s);
  return e != hipSuccess ? e : hipStreamSynchronize(s);
}

// One emulated device, whose memory is host memory: every pointer is "device memory of device 0".
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3
};
struct cudaPointerAttributes {
  cudaMemoryType type = cudaMemoryTypeDevice;
  int device = 0;
};
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void*) {
  *a = cudaPointerAttributes{};
  return hipSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return hipSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? hipSuccess : hipErrorInvalidValue; }

// The typed launch of the CUDA runtime (cudaLaunchKernelEx with a kernel pointer). Emulated
// launches finish before returning: host arrays stand in for device memory, and nothing like a
// stream-ordered allocator keeps a temporary alive until a queued kernel runs.
struct cudaLaunchAttribute;
struct cudaLaunchConfig_t {
  dim3 gridDim;
  dim3 blockDim;
  std::size_t dynamicSmemBytes = 0;
  cudaStream_t stream = nullptr;
  cudaLaunchAttribute* attrs = nullptr;
  unsigned int numAttrs = 0;
};
template <class... KArgs, class... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* c, void (*kernel)(KArgs...), Args&&... args) {
  hipLaunchKernelGGL(kernel, c->gridDim, c->blockDim, c->dynamicSmemBytes, c->stream, static_cast<KArgs>(args)...);
  const cudaError_t e = hipGetLastError();
  return e != hipSuccess ? e : hipStreamSynchronize(c->stream);
}
