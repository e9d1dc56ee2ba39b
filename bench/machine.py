"""The machine's limits, measured before the benchmark, and its description.

* FMA peak (GFLOP/s): a C micro-benchmark compiled at run time (`cc -O2 -mavx512f -mfma -fopenmp`;
  AVX2 if AVX-512 does not compile) in which every OpenMP thread runs 16 independent chains of
  vector FMAs — enough to cover the FMA latency on both FMA ports. Best of three runs, with 1
  thread and with N; the peak is the larger of the N-thread rate and N × the 1-thread rate.
  Without a compiler the best large-matmul rate of the libraries stands in (an empirical
  ceiling, below the true peak), and the report says so.
* Copy bandwidth (GB/s, bytes read + bytes written): the best of four copies of 256 MiB into
  another 256 MiB (far beyond the caches): an OpenMP-parallel memcpy and a copy with streaming
  (non-temporal) stores, both in the C probe, `np.copyto` and PyTorch's `Tensor.copy_`.

Each probe runs in its own process: the C probe as a program, the library probes inside the
library's worker (see run.py), so no two OpenMP runtimes meet.

On the GPU (cuda_limits):

* device copy bandwidth (GB/s, read + written): the best of a 1 GiB device-to-device
  cudaMemcpyAsync and CuPy's element-wise copy kernel (PyTorch's copy_ without CuPy), timed with
  CUDA events, best of 10;
* fp32 FMA peak (GFLOP/s): a CuPy RawKernel in which every thread runs 8 independent chains of
  fmaf over 8 blocks of 256 threads per SM (2048 threads: every FP32 lane busy, the FMA latency
  hidden), best of 5; without CuPy the peak is not measured and "% of peak" is left out.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

COPY_BYTES = 256 << 20

PROBE_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define STORE _mm512_storeu_ps
#define LOAD _mm512_load_ps
#define STREAM _mm512_stream_ps
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define STORE _mm256_storeu_ps
#define LOAD _mm256_load_ps
#define STREAM _mm256_stream_ps
#endif
/* Independent chains: enough to cover FMA latency x ports (4 x 2) twice over, few enough to stay
   in registers with the two constants (16 ymm under AVX2: 16 chains spilled to the stack and
   measured half the peak). */
#ifdef __AVX512F__
#define CHAINS 16
#else
#define CHAINS 12
#endif

static double fma_gflops(long iterations) {
    float sink = 0.f;
    double start = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
    {
        vec acc[CHAINS];
        for (int i = 0; i < CHAINS; ++i) acc[i] = SET1(1.0f + 1e-3f * i);
        const vec a = SET1(0.999999f), b = SET1(1e-7f);
        for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
            for (int i = 0; i < CHAINS; ++i) acc[i] = FMA(acc[i], a, b);
        }
        float lanes[LANES];
        for (int i = 1; i < CHAINS; ++i) acc[0] = FMA(acc[i], a, acc[0]);
        STORE(lanes, acc[0]);
        sink += lanes[0];
    }
    double seconds = omp_get_wtime() - start;
    if (sink == 1234.5f) puts("");  /* keeps the chains alive */
    return 2.0 * LANES * CHAINS * (double)iterations * omp_get_max_threads() / seconds / 1e9;
}

/* Bytes read + written per second copying `bytes` between two buffers, best of 6; streaming
   (non-temporal) stores skip the read-for-ownership of the destination, plain memcpy may not. */
static double copy_gbs(size_t bytes, int streaming) {
    float* src = aligned_alloc(64, bytes);
    float* dst = aligned_alloc(64, bytes);
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    const long floats = (long)(bytes / sizeof(float));
    double best = 0.0;
    for (int rep = 0; rep < 6; ++rep) {
        double start = omp_get_wtime();
        if (streaming) {
#pragma omp parallel for schedule(static)
            for (long i = 0; i < floats; i += LANES) STREAM(dst + i, LOAD(src + i));
            _mm_sfence();
        } else {
#pragma omp parallel
            {
                size_t chunk = (bytes / omp_get_num_threads() + 63) & ~(size_t)63;
                size_t lo = chunk * omp_get_thread_num(), hi = lo + chunk < bytes ? lo + chunk : bytes;
                if (lo < hi) memcpy((char*)dst + lo, (char*)src + lo, hi - lo);
            }
        }
        double gbs = 2.0 * bytes / (omp_get_wtime() - start) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(src);
    free(dst);
    return best;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "fma") == 0) {
        long iterations = atol(argv[2]);
        fma_gflops(iterations / 10);  /* wake the cores, settle the clocks */
        double best = 0.0;
        for (int rep = 0; rep < 3; ++rep) {
            double g = fma_gflops(iterations);
            if (g > best) best = g;
        }
        printf("%.3f %d\n", best, LANES);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "copy") == 0) {
        size_t bytes = (size_t)atol(argv[2]);
        printf("%.3f %.3f\n", copy_gbs(bytes, 0), copy_gbs(bytes, 1));
        return 0;
    }
    fprintf(stderr, "usage: probe fma ITERATIONS | probe copy BYTES\n");
    return 2;
}
"""


class NativeProbe:
    """The C probe, compiled once into a temporary directory (None where no compiler works)."""

    def __init__(self, widest: str = "avx512"):
        """widest: the widest vectors the peak may use ("avx512" or "avx2": the peak of an AVX2
        comparison is the AVX2 one)."""
        self.binary: Optional[Path] = None
        self.isa: Optional[str] = None
        self.why_not = ""
        self._dir = tempfile.TemporaryDirectory(prefix="convkern-bench-probe-")
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not compiler:
            self.why_not = "no C compiler (cc/gcc) on PATH"
            return
        source = Path(self._dir.name) / "probe.c"
        source.write_text(PROBE_SOURCE)
        levels = (("avx512", ["-mavx512f", "-mfma"]), ("avx2", ["-mavx2", "-mfma"]))
        for isa, flags in levels[[name for name, _ in levels].index(widest) :]:
            binary = Path(self._dir.name) / f"probe_{isa}"
            build = subprocess.run(
                [compiler, "-O2", *flags, "-fopenmp", str(source), "-o", str(binary)], capture_output=True, text=True
            )
            if build.returncode == 0 and self._runs(binary):
                self.binary, self.isa = binary, isa
                return
            self.why_not = f"{compiler} failed: {build.stderr.strip()[:200] or 'probe does not run'}"

    @staticmethod
    def _runs(binary: Path) -> bool:
        try:
            return subprocess.run([str(binary), "fma", "1000"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _run(self, threads: int, *args: str) -> str:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="false")
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=True, env=env, timeout=120
        ).stdout

    def fma_gflops(self, threads: int, iterations: int = 40_000_000) -> float:
        return float(self._run(threads, "fma", str(iterations)).split()[0])

    def copy_gbs(self, threads: int) -> Dict[str, float]:
        memcpy_gbs, streaming_gbs = map(float, self._run(threads, "copy", str(COPY_BYTES)).split())
        return {"memcpy_gbs": memcpy_gbs, "stream_copy_gbs": streaming_gbs}

    def close(self) -> None:
        self._dir.cleanup()


# ---------------------------------------------------------------------------------------------
# Library ceilings (run inside the library's own worker)
# ---------------------------------------------------------------------------------------------


def _best_seconds(call, repetitions: int = 3) -> float:
    call()  # warm-up
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_limits(matmul_size: int = 3072) -> Dict[str, float]:
    a = np.random.default_rng(0).random((matmul_size, matmul_size), dtype=np.float32)
    b = a.T.copy()
    matmul_seconds = _best_seconds(lambda: np.matmul(a, b))
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.zeros_like(src)
    copy_seconds = _best_seconds(lambda: np.copyto(dst, src), repetitions=5)
    return {
        "numpy_matmul_gflops": 2.0 * matmul_size**3 / matmul_seconds / 1e9,
        "numpy_copyto_gbs": 2.0 * COPY_BYTES / copy_seconds / 1e9,
    }


def torch_limits(torch, matmul_size: int = 3072) -> Dict[str, float]:
    a = torch.rand(matmul_size, matmul_size)
    b = torch.rand(matmul_size, matmul_size)
    matmul_seconds = _best_seconds(lambda: torch.mm(a, b))
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.zeros_like(src)
    copy_seconds = _best_seconds(lambda: dst.copy_(src), repetitions=5)
    return {
        "torch_mm_gflops": 2.0 * matmul_size**3 / matmul_seconds / 1e9,
        "torch_copy_gbs": 2.0 * COPY_BYTES / copy_seconds / 1e9,
    }


# ---------------------------------------------------------------------------------------------
# The GPU's limits (measured in run.py's own process, which holds the GPU libraries)
# ---------------------------------------------------------------------------------------------

GPU_COPY_BYTES = 1 << 30

GPU_FMA_SOURCE = r"""
extern "C" __global__ void fma_chains(float* sink, long long iterations, float a, float b) {
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 1.0f + 1e-3f * (threadIdx.x + i);
    for (long long it = 0; it < iterations; ++it) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = fmaf(acc[i], a, b);
    }
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) total += acc[i];
    if (total == 1234.5f) sink[blockIdx.x * blockDim.x + threadIdx.x] = total;  /* keeps the chains alive */
}
"""
GPU_FMA_CHAINS = 8
GPU_FMA_BLOCK = 256
GPU_FMA_BLOCKS_PER_SM = 8


def _best_event_seconds(cp, call, repetitions: int) -> float:
    call()  # warm-up (and the kernel's compilation, for the RawKernel)
    cp.cuda.Device().synchronize()
    best = float("inf")
    for _ in range(repetitions):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        call()
        end.record()
        end.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, end) / 1e3)
    return best


def cuda_limits(torch=None) -> Dict[str, object]:
    """The device's copy bandwidth and fp32 FMA peak (see the module docstring); keys as on the
    CPU: copy_gbs / copy_source, fma_peak_gflops / fma_peak_source (absent when not measured)."""
    try:
        import cupy as cp
    except ImportError:
        cp = None
    limits: Dict[str, object] = {}
    if cp is not None:
        floats = GPU_COPY_BYTES // 4
        src = cp.ones(floats, cp.float32)
        dst = cp.empty_like(src)
        memcpy = lambda: cp.cuda.runtime.memcpyAsync(
            dst.data.ptr,
            src.data.ptr,
            GPU_COPY_BYTES,  # noqa: E731
            cp.cuda.runtime.memcpyDeviceToDevice,
            cp.cuda.get_current_stream().ptr,
        )
        limits["cuda_memcpy_gbs"] = 2.0 * GPU_COPY_BYTES / _best_event_seconds(cp, memcpy, 10) / 1e9
        limits["cupy_copy_kernel_gbs"] = (
            2.0 * GPU_COPY_BYTES / _best_event_seconds(cp, lambda: cp.copyto(dst, src), 10) / 1e9
        )
        del src, dst
        cp.get_default_memory_pool().free_all_blocks()

        kernel = cp.RawKernel(GPU_FMA_SOURCE, "fma_chains")
        sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        blocks = sms * GPU_FMA_BLOCKS_PER_SM
        sink = cp.zeros(blocks * GPU_FMA_BLOCK, cp.float32)
        iterations = 1 << 16
        launch = lambda: kernel(
            (blocks,),
            (GPU_FMA_BLOCK,),  # noqa: E731
            (sink, cp.int64(iterations), cp.float32(0.999999), cp.float32(1e-7)),
        )
        seconds = _best_event_seconds(cp, launch, 5)
        flops = 2.0 * GPU_FMA_CHAINS * iterations * blocks * GPU_FMA_BLOCK
        limits["fma_peak_gflops"] = flops / seconds / 1e9
        limits["fma_peak_source"] = (
            f"CuPy RawKernel: {GPU_FMA_CHAINS} fmaf chains per thread, {blocks} blocks of "
            f"{GPU_FMA_BLOCK} threads ({sms} SMs)"
        )
    elif torch is not None:
        src = torch.ones(GPU_COPY_BYTES // 4, device="cuda")
        dst = torch.empty_like(src)
        dst.copy_(src)
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        limits["torch_copy_gbs"] = 2.0 * GPU_COPY_BYTES / best / 1e9
        limits["fma_peak_unavailable"] = "CuPy does not import: no RawKernel to measure the FMA peak"
        del src, dst
        torch.cuda.empty_cache()
    copies = {k: v for k, v in limits.items() if k.endswith("_gbs")}
    if copies:
        best_copy = max(copies, key=copies.get)
        limits["copy_gbs"], limits["copy_source"] = copies[best_copy], best_copy
    return limits


def describe_cuda() -> Dict[str, object]:
    """The GPU (from CuPy, else PyTorch): name, SMs, memory, compute capability, clocks."""
    try:
        import cupy as cp

        device = cp.cuda.Device()
        properties = cp.cuda.runtime.getDeviceProperties(device.id)
        name = properties["name"]
        return {
            "gpu": name.decode() if isinstance(name, bytes) else name,
            "gpu_sms": properties["multiProcessorCount"],
            "gpu_memory_gib": properties["totalGlobalMem"] / 2**30,
            "gpu_compute_capability": f"{properties['major']}.{properties['minor']}",
            "gpu_clock_mhz": properties.get("clockRate", 0) / 1e3,
            "gpu_memory_clock_mhz": properties.get("memoryClockRate", 0) / 1e3,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cp.cuda.runtime.driverGetVersion(),
        }
    except ImportError:
        import torch

        p = torch.cuda.get_device_properties(0)
        return {
            "gpu": p.name,
            "gpu_sms": p.multi_processor_count,
            "gpu_memory_gib": p.total_memory / 2**30,
            "gpu_compute_capability": f"{p.major}.{p.minor}",
        }


def cuda_device_problem() -> Optional[str]:
    """Why there is no GPU to benchmark on (None when there is one): neither CuPy nor PyTorch
    imports with a visible CUDA device."""
    reasons = []
    try:
        import cupy

        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return None
            reasons.append("CuPy sees no CUDA device")
        except Exception as exc:  # no driver: CUDARuntimeError
            reasons.append(f"CuPy: {type(exc).__name__}: {exc}")
    except ImportError:
        reasons.append("CuPy is not installed")
    try:
        import torch

        if torch.cuda.is_available():
            return None
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    except ImportError:
        reasons.append("PyTorch is not installed")
    return "; ".join(reasons)


# ---------------------------------------------------------------------------------------------
# Interference: CPU time that other processes took while a case ran
# ---------------------------------------------------------------------------------------------


class CpuAccounting:
    """Snapshots of /proc: the whole machine's busy and stolen CPU time, and the CPU time of the
    benchmark's own processes. Their difference over a case is what other processes (another
    build, a test run, a noisy VM neighbour) took from the cores the libraries were timed on.
    Resolution: one clock tick (10 ms) per process; a no-op where /proc is missing."""

    TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)

    def __init__(self, pids):
        self.pids = list(pids)
        self.cpus = os.cpu_count() or 1
        self.available = Path("/proc/stat").exists()

    def snapshot(self) -> Dict[str, float]:
        if not self.available:
            return {"wall_s": time.perf_counter()}
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        ours = 0
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                after_name = stat[stat.rindex(")") + 2 :].split()
                ours += int(after_name[11]) + int(after_name[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return {
            "wall_s": time.perf_counter(),
            "busy_s": (user + nice + system + irq + softirq) * self.TICK_S,
            "steal_s": steal * self.TICK_S,
            "ours_s": ours * self.TICK_S,
        }

    def other_load(self, before: Dict[str, float], after: Dict[str, float]) -> Dict[str, float]:
        """Share of all CPUs' time taken by other processes (and stolen by the hypervisor), in %."""
        if "busy_s" not in before:
            return {}
        capacity = (after["wall_s"] - before["wall_s"]) * self.cpus
        others = (after["busy_s"] - before["busy_s"]) - (after["ours_s"] - before["ours_s"])
        return {
            "other_processes_pct": max(0.0, 100.0 * others / capacity),
            "steal_pct": 100.0 * (after["steal_s"] - before["steal_s"]) / capacity,
        }


# ---------------------------------------------------------------------------------------------
# Description
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def describe_host() -> Dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_simd_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
