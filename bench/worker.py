"""The worker side of run.py: one process per library, driven by JSON lines.

`python bench/run.py --worker LIB --threads N` loads that one library and answers requests read
from stdin, one JSON object per line, with one JSON object per line on its original stdout. The
library's own output to fd 1 (oneDNN verbose mode, OpenMP warnings) is sent to stderr so it
cannot corrupt the replies.

Requests ({"cmd": ..., ...}) and replies:

  hello                                  -> {"library", "threads", "pid", "description"}
  limits                                 -> the library's matmul and copy ceilings (machine.py)
  reference  row phase batch path        -> saves float64 results to `path` (PyTorch only: the
                                            fallback oracle when convkern.reference is missing)
  validate   row phase batch path        -> {"errors": {output: max error / tolerance}}
  setup      row phase batch warmup_s    -> builds the timed call, warms it up: {"estimate_s"}
  measure    reps                        -> {"times_s": [one wall time per call]}
  release                                -> drops the arrays of the current case

Any exception is answered as {"error": traceback}; the parent decides what it means.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback

import numpy as np

import machine
import suite
from libraries import LIBRARIES


class Worker:
    def __init__(self, library_name: str, threads: int):
        self.library = LIBRARIES[library_name](threads)
        self.operation = None
        self.arrays = None

    # -- requests ---------------------------------------------------------------------------

    def hello(self, request):
        return {"library": self.library.name, "threads": self.library.threads, "pid": os.getpid(),
                "description": self.library.describe()}

    def limits(self, request):
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
        outputs = self.library.results(row, phase, self.library.prepare(row, phase, arrays)())
        np.savez(request["path"], *outputs)
        return {}

    def validate(self, request):
        row, phase, batch = suite.ROWS_BY_NAME[request["row"]], request["phase"], request["batch"]
        arrays = suite.make_inputs(row, phase, batch)
        operation = self.library.prepare(row, phase, arrays, poison=True)
        outputs = self.library.results(row, phase, operation())
        with np.load(request["path"]) as saved:
            expected = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        names = suite.output_names(row, phase)
        if len(outputs) != len(names):
            raise ValueError(f"{self.library.name} returned {len(outputs)} arrays, expected {names}")
        errors = {}
        for name, got, want, (rtol, atol) in zip(names, outputs, expected, suite.tolerances(row, phase, batch)):
            if got.dtype != np.float32:
                errors[name] = float("inf")
                errors[name + ".dtype"] = str(got.dtype)
                continue
            errors[name] = suite.error_ratio(got, want, rtol, atol)
            if errors[name] > 1.0:
                errors[name + ".where"] = suite.describe_mismatch(got, want, rtol, atol)
        return {"errors": errors}

    def setup(self, request):
        self.release(request)
        row, phase = suite.ROWS_BY_NAME[request["row"]], request["phase"]
        self.arrays = suite.make_inputs(row, phase, request["batch"])
        self.operation = self.library.prepare(row, phase, self.arrays)
        # Warm-up: the first call pays for page faults, primitive creation (oneDNN), thread start;
        # then call until warmup_s has passed; the last call's time sizes the repetitions.
        deadline = time.perf_counter() + request["warmup_s"]
        self.operation()
        while True:
            start = time.perf_counter()
            self.operation()
            elapsed = time.perf_counter() - start
            if start + elapsed >= deadline:
                return {"estimate_s": elapsed}

    def measure(self, request):
        operation, times = self.operation, []
        gc.disable()
        try:
            for _ in range(request["reps"]):
                start = time.perf_counter()
                operation()
                times.append(time.perf_counter() - start)
        finally:
            gc.enable()
        return {"times_s": times}

    def release(self, request):
        self.operation = self.arrays = None
        gc.collect()
        return {}


def serve(library_name: str, threads: int) -> int:
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    replies = os.fdopen(reply_fd, "w", buffering=1)
    try:
        worker = Worker(library_name, threads)
    except Exception:
        replies.write(json.dumps({"error": traceback.format_exc()}) + "\n")
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
