#!/usr/bin/env bash
# Builds convkern._cuda for the CPU through the HIP CPU runtime, to check the CUDA kernels'
# results where no GPU exists (slow: every block thread is a fiber).
#
#   HIP_CPU=/path/to/HIP-CPU bash tools/cuda_emulation/build.sh OUTDIR
#   CONVKERN_CUDA_EMULATION_MODULE=OUTDIR python -m pytest tests/test_cuda.py -q
#
# HIP-CPU (github.com/ROCm/HIP-CPU) is header-only and needs oneTBB (apt-get install libtbb-dev).
# In emulation the "device arrays" are NumPy arrays (their __array_interface__ stands in for
# __cuda_array_interface__): tests/test_cuda.py runs its kernel-level tests on them, and its
# public-API tests through tests/emulated_cupy.py, a CuPy stand-in over host memory.
# include/ holds stand-ins for the CUDA runtime headers (cuda_runtime.h, cuda_fp16.h ...) over
# HIP-CPU; it comes first on the include path, so the sources compile unchanged. __CUDA_ARCH__ is
# not defined, so kernels take their portable paths (the GPU-only ones are tested on a GPU).
#
# Out-of-bounds accesses: build with AddressSanitizer and preload it (the tests that raise C++
# exceptions trip an ASan interceptor check under LD_PRELOAD, so leave them out):
#   EXTRA_FLAGS="-fsanitize=address -fno-omit-frame-pointer" EXTRA_LDFLAGS=-fsanitize=address \
#     HIP_CPU=... bash tools/cuda_emulation/build.sh OUTDIR
#   ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(gcc -print-file-name=libasan.so) \
#     CONVKERN_CUDA_EMULATION_MODULE=OUTDIR python -m pytest tests/test_cuda.py -k "not errors and \
#     not refuses and not hostile and not version_is_checked and not rejects"
set -euo pipefail
out=${1:?usage: HIP_CPU=... build.sh OUTDIR}
: "${HIP_CPU:?set HIP_CPU to a checkout of github.com/ROCm/HIP-CPU}"
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
suffix=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
flags=(-std=c++17 -O1 -fPIC -w ${EXTRA_FLAGS:-} -DCONVKERN_CUDA_ARCHITECTURES='"emulated"'
       -I"$here/include" -I"$HIP_CPU/include" -I"$root/csrc" $(python3 -m pybind11 --includes))
pids=()
for f in conv pool; do
  g++ "${flags[@]}" -x c++ -c "$root/csrc/cuda/$f.cu" -o "$out/$f.o" & pids+=($!)
done
g++ "${flags[@]}" -c "$root/csrc/cuda/bind_cuda.cpp" -o "$out/bind_cuda.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
g++ -shared -o "$out/_cuda$suffix" "$out/conv.o" "$out/pool.o" "$out/bind_cuda.o" -ltbb -lpthread ${EXTRA_LDFLAGS:-}
echo "built $out/_cuda$suffix"
