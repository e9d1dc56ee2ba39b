// emulation.h — maps the CUDA runtime names convkern's CUDA sources use onto the HIP CPU runtime
// (github.com/ROCm/HIP-CPU, header-only), so that csrc/cuda/*.cu and bind_cuda.cpp compile as
// ordinary C++ and run on the CPU: block threads are fibers, __shared__ is thread_local.
// Only for checking the kernels' index math on a machine without a GPU (see build.sh); it says
// nothing about speed, and nothing of warp-synchronous behaviour (which the kernels do not use).
#pragma once

#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#include <cmath>

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
