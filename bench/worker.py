"""The worker side of run.py: one library, driven by requests.

On the CPU each library runs in its own process, `python bench/run.py --worker LIB --threads N`,
because two OpenMP runtimes (convkern's, PyTorch's) must not share one: it answers requests read
from stdin, one JSON object per line, with one JSON object per line on its original stdout (the
library's own output to fd 1 — oneDNN verbose mode, OpenMP warnings — goes to stderr so it
cannot corrupt the replies). On the GPU the libraries share run.py's process (cuDNN is
compared in the same process), and run.py calls the same Worker methods directly.

Requests ({"cmd": ..., ...}) and replies:

  hello                                      -> {"library", "threads", "pid", "description"}
  limits                                     -> the library's matmul and copy ceilings (machine.py)
  reference  row phase batch path            -> saves the float64 result to `path` (PyTorch only:
                                                the fallback oracle when convkern.reference is missing)
  validate   row phase layout batch path     -> {"error_over_tolerance": max error / tolerance, ...}
  setup      row phase layout batch warmup_s -> builds the timed call, warms it up: {"estimate_s"}
  measure    reps                            -> {"times_s": [one time per call]}
  release                                    -> drops the arrays of the current case

Times: wall time per call on the CPU (time.perf_counter); on the GPU, CUDA events recorded on
the library's stream around each call (the calls run back to back; one synchronisation at the
end of a group), so launch gaps between calls are not counted and host overhead that the GPU
hides is not either.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback

import machine
import numpy as np
import suite
from libraries import LIBRARIES


class HostClock:
    """Wall time of each call: what the CPU kernels take, OpenMP fork/join included."""

    def synchronize(self) -> None:
        pass

    def time_calls(self, operation, reps: int) -> list:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            operation()
            times.append(time.perf_counter() - start)
        return times


class CudaEventClock:
    """GPU time of each call between two CUDA events on the current stream (the legacy default
    stream, CuPy's and PyTorch's unless told otherwise). `events` is "cupy" or "torch": each
    library is timed with its own runtime's events, so no library has to load another."""

    def __init__(self, events: str):
        if events == "torch":
            import torch

            self._new = lambda: torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda start, end: start.elapsed_time(end)
            self.synchronize = torch.cuda.synchronize
        else:
            import cupy

            self._new = cupy.cuda.Event
            self._elapsed_ms = cupy.cuda.get_elapsed_time
            self.synchronize = cupy.cuda.Device().synchronize

    def time_calls(self, operation, reps: int) -> list:
        pairs = [(self._new(), self._new()) for _ in range(reps)]
        for start, end in pairs:
            start.record()
            operation()
            end.record()
        pairs[-1][1].synchronize()
        return [self._elapsed_ms(start, end) / 1e3 for start, end in pairs]


class Worker:
    def __init__(self, library_name: str, threads: int, device: str = "cpu"):
        self.device = device
        self.library = LIBRARIES[library_name](threads, device)
        if device == "cuda":
            self.clock = CudaEventClock("torch" if library_name == "torch" else "cupy")
        else:
            self.clock = HostClock()
        self.operation = None
        self.arrays = None

    # -- requests ---------------------------------------------------------------------------

    def hello(self, request):
        return {
            "library": self.library.name,
            "threads": self.library.threads,
            "pid": os.getpid(),
            "description": self.library.describe(),
        }

    def limits(self, request):
        if self.device == "cuda":
            return {}  # the device's limits are measured once, by run.py (machine.cuda_limits)
        if self.library.name == "numpy":
            return machine.numpy_limits()
        if self.library.name == "torch":
            return machine.torch_limits(self.library.torch)
        return {}

    def reference(self, request):
        if self.library.name != "torch":
            raise ValueError("only the PyTorch worker computes fallback references")
        row, phase = suite.ROWS_BY_NAME[request["row"]], request["phase"]
        arrays = {k: v.astype(np.float64) for k, v in suite.make_inputs(row, phase, request["batch"]).items()}
        torch_cpu = LIBRARIES["torch"](self.library.threads, "cpu")
        output = torch_cpu.result(
            row, phase, suite.CHANNELS_FIRST, torch_cpu.prepare(row, phase, suite.CHANNELS_FIRST, arrays)()
        )
        np.save(request["path"], output)
        return {}

    def validate(self, request):
        row, phase, layout, batch = (
            suite.ROWS_BY_NAME[request["row"]],
            request["phase"],
            request["layout"],
            request["batch"],
        )
        arrays = suite.make_inputs(row, phase, batch, layout)
        operation = self.library.prepare(row, phase, layout, arrays, poison=True)
        got = self.library.result(row, phase, layout, operation())
        want = np.load(request["path"])
        rtol, atol = suite.tolerance(row, phase, batch)
        answer = {"output": suite.output_name(phase)}
        if got.dtype != np.float32:
            return dict(answer, error_over_tolerance=float("inf"), where=f"dtype {got.dtype}, expected float32")
        answer["error_over_tolerance"] = suite.error_ratio(got, want, rtol, atol)
        if answer["error_over_tolerance"] > 1.0:
            answer["where"] = suite.describe_mismatch(got, want, rtol, atol)
        return answer

    def setup(self, request):
        self.release(request)
        row, phase, layout = suite.ROWS_BY_NAME[request["row"]], request["phase"], request["layout"]
        self.arrays = suite.make_inputs(row, phase, request["batch"], layout)
        self.operation = self.library.prepare(row, phase, layout, self.arrays)
        # Warm-up: the first call pays for page faults, primitive creation (oneDNN), algorithm
        # search (cuDNN's benchmark mode), thread start; then call until warmup_s has passed; the
        # last call's time sizes the repetitions.
        clock = self.clock
        deadline = time.perf_counter() + request["warmup_s"]
        self.operation()
        clock.synchronize()
        while True:
            start = time.perf_counter()
            self.operation()
            clock.synchronize()
            elapsed = time.perf_counter() - start
            if start + elapsed >= deadline:
                return {"estimate_s": elapsed}

    def measure(self, request):
        gc.disable()
        try:
            return {"times_s": self.clock.time_calls(self.operation, request["reps"])}
        finally:
            gc.enable()

    def release(self, request):
        self.operation = self.arrays = None
        gc.collect()
        if self.device == "cuda":
            self._free_device_caches()
        return {}

    def _free_device_caches(self) -> None:
        """Hands cached device memory back, so that the next case's libraries have the GPU's memory."""
        if self.library.name == "torch":
            self.library.torch.cuda.empty_cache()
        else:
            import cupy

            cupy.get_default_memory_pool().free_all_blocks()


def serve(library_name: str, threads: int) -> int:
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    replies = os.fdopen(reply_fd, "w", buffering=1)
    try:
        worker = Worker(library_name, threads)
    except Exception as exc:
        replies.write(json.dumps({"error": traceback.format_exc(), "unavailable": str(exc)}) + "\n")
        return 1
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "quit":
            break
        try:
            answer = getattr(worker, request["cmd"])(request)
        except Exception:
            answer = {"error": traceback.format_exc()}
        replies.write(json.dumps(answer) + "\n")
    return 0
