// emulation.h — maps the CUDA runtime names convkern's CUDA sources use onto the HIP CPU runtime
// (github.com/ROCm/HIP-CPU, header-only), so that csrc/cuda/*.cu and bind_cuda.cpp compile as
// ordinary C++ and run on the CPU: block threads are fibers, __shared__ is thread_local.
// Only for checking the kernels' index math on a machine without a GPU (see build.sh); it says
// nothing about speed, and nothing of warp-synchronous behaviour (which the kernels do not use).
#pragma once

#include <hip/hip_runtime.h>

#include <cmath>

using cudaError_t = hipError_t;
using cudaStream_t = hipStream_t;
using cudaDeviceProp = hipDeviceProp_t;

#define cudaSuccess hipSuccess
#define cudaGetErrorString hipGetErrorString
#define cudaGetErrorName hipGetErrorName
#define cudaGetLastError hipGetLastError
#define cudaMemsetAsync hipMemsetAsync
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaDeviceSynchronize hipDeviceSynchronize
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaRuntimeGetVersion hipRuntimeGetVersion
#define cudaDriverGetVersion hipDriverGetVersion
#define cudaGetDeviceProperties hipGetDeviceProperties
