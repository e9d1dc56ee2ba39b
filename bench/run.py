#!/usr/bin/env python3
"""convkern's benchmark: the benchmark suite (bench/suite.py) beside PyTorch and an im2col + GEMM baseline.

    python bench/run.py --quick              # every row, phase and layout, fewer repetitions
    python bench/run.py                      # the full run: more repetitions, longer warm-up
    python bench/run.py --filter resnet50.l4,maxpool --layout NCHW --out /tmp/bench
    python bench/run.py --device cuda --quick    # on a GPU: cuDNN and CuPy beside convkern's CUDA kernels
    python bench/run.py --quick --isa avx2       # every library limited to AVX2 + FMA
    python bench/run.py --quick --before /tmp/old-build   # another convkern build, interleaved: 'vs before'

Wall time on the 2-core AVX-512 development machine (the suite's CPU batch sizes, 14 convolution rows ×
3 phases + 4 pooling rows × 2 phases, each in NCHW and NHWC: 100 timed cases; validation included):
--quick 5 minutes (4 min 45 s measured with the 2 cores half busy with other jobs; 7 minutes when
they were 70-90% busy), the full run about 15 (measured 70-90% busy); less on a quiet machine. On a GPU (H100/H200, "N gpu" batch sizes) --quick is expected to take
2-4 minutes, CuPy's and cuDNN's first-call compilation included (not yet measured there).

What it does, in order:

1. Measures the machine's limits. CPU: FMA peak GFLOP/s (a C/AVX-512 FMA loop compiled at run
   time, 1 thread and --threads threads; large-matmul rates as a fallback) and copy bandwidth GB/s
   (bytes read + written, best of a parallel memcpy, a streaming-store copy, np.copyto and torch
   copy_, 256 MiB each way: out of cache). GPU: device copy bandwidth (1 GiB device to device)
   and the fp32 FMA peak (a CuPy RawKernel); see machine.py.
2. Validates every timed call of every library, in every layout, against `convkern.reference`
   (NumPy, float64, on the same float32 inputs) at batch min(N, 2): tolerance rtol 1e-4,
   atol 1e-5·sqrt(reduction length); convkern's forward writes into a NaN-poisoned `out=`. A
   library that fails a case is not timed on it (FAIL in the table) and the run exits with 1.
3. Times each case — convolution forward, backward-data (grad_input only) and backward-weight
   (grad_weight only, no bias gradient: output_mask (False, True, False)) as separate calls;
   pooling forward and backward — for every library: warm-up first, then repetitions in groups,
   libraries taking turns group by group (rotating who goes first) so that drift in clocks or
   temperature hits all alike; medians reported. "bwd data+weight" (the backward the targets speak of) is
   derived per row: the sum of a library's backward-data and backward-weight medians. On the CPU,
   /proc tells how much CPU other processes took meanwhile: over 10%, the case is flagged ('busy'
   column): on 2 cores a busy neighbour distorts OpenMP libraries' timings badly.
4. Prints a table (median ms per library; convkern's GFLOP/s and % of FMA peak, or GB/s and % of
   copy bandwidth for pooling; time_baseline / time_convkern, >1 meaning convkern is faster),
   geometric means per layout and phase against each baseline, and the performance targets (checked
   on NCHW, the layout they are set for); writes results.json (every figure, every repetition, the machine)
   and ratios.png (convkern vs PyTorch per row and phase, one panel per layout) to --out.

5. Runs the end-to-end model rows (models.py; --no-models leaves them out, --filter resnet18 runs
   only them): ResNet-18's forward and training step, the same torch model with PyTorch's own
   layers and after convkern.torch.replace_modules, validated against each other first; a table
   of medians and the ratio torch / convkern per row and layout, also in results.json ("models").
   They add 2 min 20 s to --quick measured with the 2 cores busy with other jobs (load average
   8); a quiet machine should need well under a minute (not measured yet).

CPU: each library runs in its own child process (`run.py --worker LIB`, JSON lines over
stdin/stdout), because two OpenMP runtimes (convkern's, PyTorch's) must not share a process; all
use --threads threads. Between two libraries' groups the CPU rests SETTLE_S for the last one's idle
threads to stop spinning; NumPy's OpenBLAS threads, which spin ~0.1 s by default, are told to
sleep at once (OPENBLAS_THREAD_TIMEOUT=4, unless set). GPU: the libraries share this process and its device, PyTorch
with torch.backends.cudnn.benchmark = True and TF32 off; each call is timed with CUDA events.
Napkin math in suite.py.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path[0] = str(BENCH_DIR)  # run as a script: the bench modules sit beside it

import machine  # noqa: E402
import models  # noqa: E402
import report  # noqa: E402
import suite  # noqa: E402
from libraries import DEVICE_LIBRARIES, LIBRARIES, OUTPUT_MASKS  # noqa: E402

VALIDATION_BATCH = 2  # two images: enough to catch batch-indexing and thread-splitting errors
SETTLE_S = 0.05  # pause between two libraries' groups on the CPU: the last one's idle threads stop spinning
BUSY_PCT = 10.0  # other processes above this share of the CPUs during a case: its timings are suspect


@dataclass(frozen=True)
class TimingPlan:
    """How long and how often each library runs each case."""

    warmup_s: float  # warm-up lasts at least this long (and at least 2 calls)
    groups: int  # rounds of the round-robin over libraries
    group_s: float  # target time of one library's group
    min_reps_per_group: int
    max_reps_per_group: int
    # A case whose slowest library takes longer than this per call is timed in fewer groups
    # (the big NHWC and 3-D rows): the median of 3 calls of half a second is already steady,
    # and the full suite must fit its time budget.
    long_call_s: float = math.inf
    long_call_groups: int = 3

    def reps_per_group(self, estimate_s: float) -> int:
        wanted = round(self.group_s / max(estimate_s, 1e-6))
        return max(self.min_reps_per_group, min(self.max_reps_per_group, wanted))

    def groups_for(self, slowest_call_s: float) -> int:
        return self.long_call_groups if slowest_call_s > self.long_call_s else self.groups


FULL_PLAN = TimingPlan(
    warmup_s=0.4,
    groups=5,
    group_s=0.3,
    min_reps_per_group=2,
    max_reps_per_group=200,
    long_call_s=0.25,
    long_call_groups=3,
)
QUICK_PLAN = TimingPlan(
    warmup_s=0.1,
    groups=3,
    group_s=0.08,
    min_reps_per_group=1,
    max_reps_per_group=50,
    long_call_s=0.15,
    long_call_groups=2,
)


class BenchmarkFailure(RuntimeError):
    pass


class LibraryUnavailable(BenchmarkFailure):
    """A library that cannot run here (said why): it is left out, not fatal."""


# ---------------------------------------------------------------------------------------------
# Workers: a child process per library on the CPU, the same Worker objects in-process on the GPU
# ---------------------------------------------------------------------------------------------


class WorkerProcess:
    """One library in its own process; `ask` sends one request and waits for its answer."""

    def __init__(self, library: str, threads: int):
        self.library = library
        env = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[variable] = str(threads)
        # NumPy's OpenBLAS threads spin ~0.1 s (2**28 cycles) after each call, past SETTLE_S, on the
        # cores of whichever library goes next: convkern's audio.conv1d NCW forward under AVX2 timed
        # 89.7 ms beside them and 62.9 ms with them asleep (PyTorch 71.8 / 71.5). 2**4 cycles: the
        # least OpenBLAS takes; it only adds a thread wake-up to the NumPy baseline's large GEMMs.
        env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        adapter = library
        if library == BEFORE:  # convkern's adapter, importing the build found first on --before's path
            adapter = "convkern"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [BEFORE_PATH[0], env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "run.py"), "--worker", adapter, "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        ready = self._read(starting=True)  # {"ready": true}, or why it cannot run
        if "unavailable" in ready:
            self.close()
            raise LibraryUnavailable(ready["unavailable"])

    def _read(self, starting: bool = False) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise BenchmarkFailure(f"the {self.library} worker exited (code {self.process.poll()}); see stderr")
        answer = json.loads(line)
        if "error" in answer and not (starting and "unavailable" in answer):
            raise BenchmarkFailure(f"the {self.library} worker failed:\n{answer['error']}")
        return answer

    def ask(self, cmd: str, **fields) -> dict:
        self.process.stdin.write(json.dumps(dict(cmd=cmd, **fields)) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


# --before PATH: a further CPU library, another convkern build (the directory holding its
# `convkern` package, e.g. an installed copy of the previous release), timed in the same
# interleaved groups as this one: a before/after comparison that clock and neighbour drift over
# the run cannot bias, as two separate runs can.
BEFORE = "before"
BEFORE_PATH: List[str] = []

# --isa avx2: every library limited to AVX2 + FMA, convkern (CONVKERN_ISA) and PyTorch (its ATen
# kernels and oneDNN) alike, so an AVX-512 machine gives like-for-like AVX2 figures.
ISA_ENVIRONMENT = {
    "avx2": {"CONVKERN_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


class InProcessWorker:
    """The GPU libraries, in this process (the same requests as WorkerProcess, answered directly)."""

    def __init__(self, library: str, threads: int, device: str):
        import traceback

        import worker
        from libraries import LibraryUnavailable as Unavailable

        self.library, self._traceback = library, traceback
        try:
            self.worker = worker.Worker(library, threads, device)
        except (Unavailable, ImportError) as exc:
            raise LibraryUnavailable(str(exc)) from exc

    def ask(self, cmd: str, **fields) -> dict:
        try:
            return getattr(self.worker, cmd)(dict(cmd=cmd, **fields))
        except Exception as exc:
            raise BenchmarkFailure(
                f"{self.library}: {type(exc).__name__}: {exc}\n" + self._traceback.format_exc()
            ) from exc

    def close(self) -> None:
        pass


def describe_isas(description: Dict[str, object]) -> str:
    """Which vector instructions each library ran, from what its worker reported."""
    parts = []
    for name, info in (
        ("convkern", description.get("convkern")),
        (BEFORE, (description.get(BEFORE) or {}).get("convkern")),
    ):
        if isinstance(info, dict):
            parts.append(f"{name} {info.get('cpu_isa', '?')} (CPU's best: {info.get('cpu_isa_best', '?')})")
    if "torch_cpu_capability" in description:
        parts.append(
            f"torch {description['torch_cpu_capability']} "
            f"(oneDNN max ISA: {description.get('onednn_max_cpu_isa') or 'unlimited'})"
        )
    return "; ".join(parts)


def start_workers(libraries: List[str], threads: int, device: str, progress) -> Dict[str, object]:
    """The workers that start; a library that cannot run here is reported and left out."""
    workers: Dict[str, object] = {}
    for library in libraries:
        progress.show(f"starting {library}")
        try:
            workers[library] = (
                InProcessWorker(library, threads, device) if device == "cuda" else WorkerProcess(library, threads)
            )
        except LibraryUnavailable as exc:
            progress.clear()
            print(f"{library}: not available, its timings are skipped: {exc}", flush=True)
    return workers


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr, rewritten in place: stage, [####....] done/total, the step, the
    elapsed time and an estimate of what is left. Without a terminal (a log file, `| tee`) it
    writes a plain line at most every LOG_EVERY_S seconds instead."""

    BAR = 24
    LOG_EVERY_S = 20.0

    def __init__(self):
        self.start = time.perf_counter()
        self.width = 0
        self.stage, self.total, self.done, self.stage_start = "", 0, 0, self.start
        self.interactive = sys.stderr.isatty()
        self.last_log = -math.inf

    def begin(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done, self.stage_start = stage, total, 0, time.perf_counter()

    def advance(self) -> None:
        self.done += 1

    def show(self, step: str) -> None:
        now = time.perf_counter()
        text = step
        if self.total:
            filled = round(self.BAR * self.done / self.total)
            left = ""
            if self.done:
                left = f", ~{(now - self.stage_start) / self.done * (self.total - self.done):.0f} s left"
            text = (
                f"{self.stage} [{'#' * filled}{'.' * (self.BAR - filled)}] {self.done}/{self.total}  {step}"
                f"  [{now - self.start:.0f} s{left}]"
            )
        if self.interactive:
            sys.stderr.write("\r" + text[:200].ljust(self.width))
            sys.stderr.flush()
            self.width = min(len(text), 200)
        elif now - self.last_log >= self.LOG_EVERY_S:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self.last_log = now

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


# ---------------------------------------------------------------------------------------------
# The three stages
# ---------------------------------------------------------------------------------------------


def measure_cpu_limits(workers: Dict[str, object], threads: int, isa: str) -> Dict[str, object]:
    limits: Dict[str, object] = {}
    probe = machine.NativeProbe("avx2" if isa == "avx2" else "avx512")
    try:
        if probe.binary:
            limits["fma_probe_isa"] = probe.isa
            limits["fma_peak_gflops_by_threads"] = {str(t): probe.fma_gflops(t) for t in sorted({1, threads})}
            limits.update(probe.copy_gbs(threads))
        else:
            limits["fma_probe_unavailable"] = probe.why_not
    finally:
        probe.close()
    for worker in workers.values():
        time.sleep(SETTLE_S)
        limits.update(worker.ask("limits"))
    if probe.binary:
        # The larger of the N-thread rate and N × the 1-thread rate: a neighbour busy on one core
        # while the probe runs cannot then halve the denominator of every "% of peak".
        by_threads = limits["fma_peak_gflops_by_threads"]
        scaled_single = threads * by_threads["1"]
        limits["fma_peak_gflops"] = max(by_threads[str(threads)], scaled_single)
        limits["fma_peak_source"] = f"C FMA loop ({probe.isa}), " + (
            f"{threads} threads" if by_threads[str(threads)] >= scaled_single else f"{threads} x the 1-thread rate"
        )
    else:
        ceilings = {k: v for k, v in limits.items() if k.endswith("mm_gflops") or k.endswith("matmul_gflops")}
        if not ceilings:
            raise BenchmarkFailure(f"no FMA peak: {probe.why_not}, and no matmul ceiling (--no-baselines)")
        source = max(ceilings, key=ceilings.get)
        limits["fma_peak_gflops"] = ceilings[source]
        limits["fma_peak_source"] = f"empirical ceiling {source} ({probe.why_not}); below the true peak"
    copies = {k: v for k, v in limits.items() if k.endswith("_gbs")}
    best_copy = max(copies, key=copies.get)
    limits["copy_gbs"] = copies[best_copy]
    limits["copy_source"] = best_copy
    return limits


def measure_cuda_limits() -> Dict[str, object]:
    try:
        import torch
    except ImportError:
        torch = None
    return machine.cuda_limits(torch)


def print_limits(limits: Dict[str, object], description: Dict[str, object], device: str, threads: int) -> None:
    if device == "cuda":
        print(
            f"Device: {description.get('gpu')}, {description.get('gpu_sms')} SMs, "
            f"{description.get('gpu_memory_gib', 0):.0f} GiB (host: {description['cpu_model']})"
        )
    else:
        print(f"Machine: {description['cpu_model']}, {description['usable_cpus']} CPUs; {threads} threads per library")
    if "fma_peak_gflops" in limits:
        print(
            f"  FMA peak {limits['fma_peak_gflops']:.1f} GFLOP/s ({limits['fma_peak_source']})"
            + (
                f"; 1 thread {limits['fma_peak_gflops_by_threads']['1']:.1f}"
                if "fma_peak_gflops_by_threads" in limits
                else ""
            )
        )
    else:
        print(f"  FMA peak not measured: {limits.get('fma_peak_unavailable', '?')}")
    ceilings = [f"{k} {v:.1f}" for k, v in limits.items() if k.endswith("_gflops") and k != "fma_peak_gflops"]
    if ceilings:
        print("  matmul ceilings (GFLOP/s): " + ", ".join(ceilings))
    if "copy_gbs" in limits:
        print(
            f"  copy bandwidth {limits['copy_gbs']:.1f} GB/s, read + write (best of "
            + ", ".join(f"{k} {v:.1f}" for k, v in limits.items() if k.endswith("_gbs") and k != "copy_gbs")
            + ")",
            flush=True,
        )


def load_reference():
    """convkern.reference, loaded by file path: the parent process of a CPU run never loads
    convkern's compiled module (and its OpenMP runtime). Returns (module or None, why not)."""
    try:
        spec = importlib.util.find_spec("convkern")
        if spec is None or not spec.submodule_search_locations:
            return None, "convkern is not installed"
        path = Path(list(spec.submodule_search_locations)[0]) / "reference.py"
        ref_spec = importlib.util.spec_from_file_location("convkern_reference", path)
        module = importlib.util.module_from_spec(ref_spec)
        ref_spec.loader.exec_module(module)
        return module, ""
    except Exception as exc:  # the reference may be mid-edit by a colleague
        return None, f"{type(exc).__name__}: {exc}"


def validate(rows, layouts, workers: Dict[str, object], scratch: Path, progress: Progress):
    """Every library's result for every (row, phase, layout) against the reference. Returns
    (records, {(row, layout, phase): {library: what was wrong}} of the failures)."""
    reference, why_not = load_reference()
    if reference is None:
        if "torch" not in workers:
            raise BenchmarkFailure(
                f"convkern.reference does not import ({why_not}) and PyTorch is off "
                "(--no-baselines): nothing to validate against"
            )
        print(
            f"WARNING: convkern.reference does not import ({why_not}); validating against PyTorch "
            "(CPU, float64) instead",
            flush=True,
        )
    oracle = "convkern.reference" if reference is not None else "PyTorch float64"
    print(
        f"Validating against {oracle} at batch <= {VALIDATION_BATCH} (max error / tolerance; <= 1 passes):", flush=True
    )
    records, invalid = [], {}
    progress.begin("validating", sum(len(row.phases) for row in rows))
    for row in rows:
        batch = min(row.batch_cpu, VALIDATION_BATCH)
        for phase in row.phases:
            progress.show(f"{row.name} {report.PHASE_LABELS[phase]}: reference")
            path = scratch / f"{row.name}.{phase}.npy"
            if reference is not None:
                np.save(path, suite.reference_output(reference, row, phase, suite.make_inputs(row, phase, batch)))
            else:
                workers["torch"].ask("reference", row=row.name, phase=phase, batch=batch, path=str(path))
            line = []
            for layout in layouts:
                for library, worker in workers.items():
                    progress.show(f"{row.name} {report.PHASE_LABELS[phase]}: {library} {layout}")
                    try:
                        answer = worker.ask(
                            "validate", row=row.name, phase=phase, layout=layout, batch=batch, path=str(path)
                        )
                    except BenchmarkFailure as exc:
                        answer = {"error_over_tolerance": math.inf, "where": str(exc).strip().splitlines()[-1]}
                    ok = answer["error_over_tolerance"] <= 1.0
                    records.append(
                        dict(answer, row=row.name, phase=phase, layout=layout, batch=batch, library=library, ok=ok)
                    )
                    line.append(f"{library} {answer['error_over_tolerance']:.2g}" + ("" if ok else " FAIL"))
                    if not ok:
                        invalid.setdefault((row.name, layout, phase), {})[library] = answer.get("where", "")
                line[-1] += " |" if layout != layouts[-1] else ""
            progress.advance()
            progress.clear()
            print(
                f"  {row.name:<19} {report.PHASE_LABELS[phase]:<11} {' / '.join(layouts)}: " + "  ".join(line),
                flush=True,
            )
    return records, invalid


def time_case(
    row,
    layout: str,
    phase: str,
    batch: int,
    workers: Dict[str, object],
    plan: TimingPlan,
    progress: Progress,
    device: str,
    accounting: machine.CpuAccounting,
):
    """Times one case for every given library; returns ({library: statistics}, {library: error},
    other load)."""
    label = f"{row.name} {suite.data_format(row, layout)} {report.PHASE_LABELS[phase]}"
    settle_s = SETTLE_S if device == "cpu" else 0.0
    estimates, errors = {}, {}
    for library, worker in workers.items():
        progress.show(f"{label}: warming up {library}")
        try:
            estimates[library] = worker.ask(
                "setup", row=row.name, phase=phase, layout=layout, batch=batch, warmup_s=plan.warmup_s
            )["estimate_s"]
        except BenchmarkFailure as exc:
            errors[library] = str(exc)
        time.sleep(settle_s)
    libraries = [library for library in workers if library in estimates]
    if not libraries:
        return {}, errors, {}
    groups = plan.groups_for(max(estimates.values(), default=0.0))
    times: Dict[str, List[float]] = {library: [] for library in libraries}
    before = accounting.snapshot()
    for group in range(groups):
        order = libraries[group % len(libraries) :] + libraries[: group % len(libraries)]
        for library in order:
            if library in errors:
                continue
            progress.show(f"{label}: {library} group {group + 1}/{groups}")
            try:
                times[library] += workers[library].ask("measure", reps=plan.reps_per_group(estimates[library]))[
                    "times_s"
                ]
            except BenchmarkFailure as exc:
                errors[library] = str(exc)
            time.sleep(settle_s)
    other_load = accounting.other_load(before, accounting.snapshot())
    for library, worker in workers.items():
        try:
            worker.ask("release")
        except BenchmarkFailure as exc:
            errors.setdefault(library, str(exc))
    stats = {library: report.summarize(t) for library, t in times.items() if t and library not in errors}
    return stats, errors, other_load


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions (3 groups of ~0.08 s; 2 for calls over 0.15 s), same rows, "
        "phases, layouts and batch sizes: about 5 minutes on the 2-core machine, 7 when "
        "it is busy (the full run: about 15)",
    )
    parser.add_argument(
        "--filter",
        metavar="SUBSTR",
        help="only rows whose name contains SUBSTR from the start of a dotted part "
        "('lenet': lenet5.*, not mobilenet.*); comma-separated: any of them",
    )
    parser.add_argument(
        "--layout",
        choices=("NCHW", "NHWC", "both"),
        default="both",
        help="channels-first (NCHW: NCW, NCHW, NCDHW by rank), channels-last (NHWC: NWC, "
        "NHWC, NDHWC) or both (default)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=str(BENCH_DIR / "results"),
        help="where results.json and ratios.png go (default: bench/results/)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu (default), or cuda: convkern's CUDA kernels on CuPy arrays beside cuDNN "
        "(PyTorch) and CuPy im2col, GPU batch sizes; exits with 2 where no GPU is visible",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for every library (default: the CPUs this process may use)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="time convkern only")
    parser.add_argument(
        "--no-models",
        action="store_true",
        help="leave out the end-to-end model rows (bench/models.py: ResNet-18 forward and training "
        "step, torch's layers vs convkern.torch.replace_modules)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="S",
        help="start timing no new row after S seconds from the start; the cases not timed are "
        "listed (and the exit status is 1), the report covers the rest (for a lent GPU's "
        "fixed time)",
    )
    parser.add_argument(
        "--isa",
        choices=("native", *ISA_ENVIRONMENT),
        default="native",
        help="CPU: the widest instructions every library may use: native (default: what the CPU "
        "has), or avx2: convkern (CONVKERN_ISA) and PyTorch (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) "
        "limited to AVX2 + FMA; the report says which ISA each library ran",
    )
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="CPU: also time the convkern build importable from PATH (a directory holding a "
        "`convkern` package) as library 'before', interleaved with this one; 'vs before' > 1 "
        "means this build is faster",
    )
    parser.add_argument("--worker", choices=tuple(LIBRARIES), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.worker:
        import worker

        return worker.serve(args.worker, threads)
    if threads < 1:
        print(f"--threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    device = args.device
    if device == "cuda":
        problem = machine.cuda_device_problem()
        if problem:
            print(
                f"--device cuda: no GPU to benchmark on ({problem}). Run on a machine with an NVIDIA GPU, "
                "CuPy and a CUDA build of PyTorch, or use --device cpu.",
                file=sys.stderr,
            )
            return 2
    rows = suite.select_rows(args.filter)
    model_rows = [] if args.no_models else [name for name in models.ROWS if suite.name_selected(name, args.filter)]
    if not rows and not model_rows:
        print(
            f"--filter {args.filter!r} matches no row; rows are: "
            + ", ".join([r.name for r in suite.ROWS] + list(models.ROWS)),
            file=sys.stderr,
        )
        return 2
    if not rows:  # only model rows selected: no layer workers, no machine limits
        started = time.perf_counter()
        model_results = run_model_rows(model_rows, args, threads, device)
        document = {
            "command": [sys.executable] + sys.argv,
            "device": device,
            "mode": "quick" if args.quick else "full",
            "threads": threads,
            "duration_s": time.perf_counter() - started,
            "models": model_results,
            "problems": model_results.get("problems", []),
        }
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(document, indent=1, default=str))
        print(f"Wrote {out_dir / 'results.json'}")
        return 1 if document["problems"] else 0
    layouts = list(suite.LAYOUTS) if args.layout == "both" else [args.layout]
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    wanted = ["convkern"] if args.no_baselines else list(DEVICE_LIBRARIES[device])
    if device == "cuda" and (args.before or args.isa != "native"):
        print("--before and --isa are for --device cpu", file=sys.stderr)
        return 2
    os.environ.update(ISA_ENVIRONMENT.get(args.isa, {}))  # the workers inherit it
    if args.before:
        if not (Path(args.before) / "convkern" / "__init__.py").is_file():
            print(f"--before {args.before}: no convkern package there", file=sys.stderr)
            return 2
        BEFORE_PATH[:] = [str(Path(args.before).resolve())]
        wanted.insert(1, BEFORE)
    started, progress = time.perf_counter(), Progress()
    workers: Dict[str, object] = {}
    invalid: Dict[tuple, Dict[str, str]] = {}
    try:
        workers = start_workers(wanted, threads, device, progress)
        if not workers:
            raise BenchmarkFailure("no library could be started")
        libraries = list(workers)
        hellos = {library: w.ask("hello") for library, w in workers.items()}
        progress.clear()
        if device == "cpu":
            for library, hello in hellos.items():
                if hello["threads"] != threads:
                    print(f"WARNING: {library} runs {hello['threads']} threads, not {threads}", flush=True)
        if "convkern" in hellos:
            convkern_description = hellos["convkern"]["description"]
            print(
                f"convkern {convkern_description['convkern']['version']} from "
                f"{convkern_description['convkern_module']['path']}",
                flush=True,
            )
            if not convkern_description["convkern_output_mask"]:
                print(
                    "WARNING: this convkern's convNd_backward has no output_mask: its backward-data and "
                    "backward-weight timings are each of the whole backward (both gradients and the bias's)",
                    flush=True,
                )
        description = dict(machine.describe_host(), device=device)
        if device == "cuda":
            description.update(machine.describe_cuda())
        for library, hello in hellos.items():
            if library == BEFORE:
                description[BEFORE] = hello["description"]
            else:
                description.update(hello["description"])
        if device == "cpu":
            description["isa_requested"] = args.isa
            print("Instruction sets: " + describe_isas(description), flush=True)
        accounting = machine.CpuAccounting({os.getpid()} | {hello["pid"] for hello in hellos.values()})
        idle_check = accounting.snapshot()
        time.sleep(1.0)
        load_at_start = accounting.other_load(idle_check, accounting.snapshot())
        if load_at_start.get("other_processes_pct", 0.0) > BUSY_PCT:
            print(
                f"WARNING: other processes are using {load_at_start['other_processes_pct']:.0f}% of the "
                "CPUs: the machine's limits and the timings will be off (see the 'busy' column)",
                flush=True,
            )

        progress.show("measuring the machine's limits")
        limits = measure_cuda_limits() if device == "cuda" else measure_cpu_limits(workers, threads, args.isa)
        progress.clear()
        print_limits(limits, description, device, threads)

        with tempfile.TemporaryDirectory(prefix="convkern-bench-") as scratch:
            validation, invalid = validate(rows, layouts, workers, Path(scratch), progress)
        print(
            "All results match. Starting benchmarks."
            if not invalid
            else f"{sum(map(len, invalid.values()))} results differ from the reference (FAIL above): those are "
            "not timed. Starting benchmarks.",
            flush=True,
        )

        deadline = started + args.time_limit if args.time_limit else math.inf
        cases, not_timed = time_all(
            rows, layouts, workers, invalid, plan, progress, device, limits, accounting, deadline
        )
        progress.clear()
    except BenchmarkFailure as failure:
        progress.clear()
        print(f"\n{failure}", file=sys.stderr)
        return 1
    finally:
        for w in workers.values():
            w.close()

    baselines = [lib for lib in libraries if lib != "convkern"]
    means = report.geomeans(cases, baselines)
    checks = report.target_checks(cases, means, device)
    duration = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    where = description.get("gpu") if device == "cuda" else f"{threads} threads"
    print()
    print(
        f"convkern benchmark ({device}, {where}, {mode}: medians of {plan.groups} interleaved groups, "
        f"{plan.long_call_groups} for calls over {plan.long_call_s:g} s; ms per call)"
    )
    print(report.format_table(cases, libraries, BUSY_PCT))
    if means:
        print()
        print(report.format_geomeans(means))
    if checks:
        print()
        print(report.format_checks(checks, device))
    model_results = run_model_rows(model_rows, args, threads, device) if model_rows else None
    timed_cases = [c for c in cases if not c.get("derived")]
    busy = [c for c in timed_cases if c.get("load_during_timing", {}).get("other_processes_pct", 0.0) > BUSY_PCT]
    if busy:
        print()
        print(
            f"Note: during {len(busy)} of {len(timed_cases)} cases other processes used over {BUSY_PCT:.0f}% of "
            "the CPUs ('busy' column): rerun those rows on a quiet machine before trusting them."
        )
    cached = report.cache_resident_note(cases)
    if cached:
        print()
        print(cached)
    problems = [
        f"{row} {layout} {phase}: {lib} FAILED validation ({where_})"
        for (row, layout, phase), libs in invalid.items()
        for lib, where_ in libs.items()
    ]
    problems += [
        f"{c['row']} {c['data_format']} {c['phase']}: {lib} failed while timed: "
        f"{error.strip().splitlines()[-1] if error.strip() else error}"
        for c in cases
        for lib, error in c.get("errors", {}).items()
    ]
    if not_timed:
        problems.append(
            f"--time-limit {args.time_limit:g} s reached: {len(not_timed)} cases not timed, from {not_timed[0]}"
        )
    if "convkern" not in workers:
        problems.append("convkern could not be started: no convkern timings, no ratios")
    if model_results:
        problems += model_results.get("problems", [])
    if problems:
        print()
        print("PROBLEMS:\n  " + "\n  ".join(problems))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "command": [sys.executable] + sys.argv,
        "device": device,
        "mode": mode,
        "timing_plan": plan.__dict__,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_s": duration,
        "threads": threads,
        "libraries": libraries,
        "layouts": layouts,
        "conv_output_masks": {phase: list(mask) for phase, mask in OUTPUT_MASKS.items()},
        "machine": {**description, "limits": limits, "load_at_start": load_at_start},
        "validation": validation,
        "cases": cases,
        "geomeans": means,
        "targets": checks,
        "not_timed": not_timed,
        "models": model_results,
        "problems": problems,
    }
    (out_dir / "results.json").write_text(json.dumps(document, indent=1, default=str))
    title = (
        f"convkern vs {'PyTorch (cuDNN)' if device == 'cuda' else 'PyTorch (oneDNN)'}, "
        f"{description.get('gpu') if device == 'cuda' else description['cpu_model']}, {where} ({mode})"
    )
    why_no_plot = report.plot_ratios(cases, out_dir / "ratios.png", title, BUSY_PCT, report.TARGETS[device])
    print()
    print(
        f"Wrote {out_dir / 'results.json'}"
        + (f" and {out_dir / 'ratios.png'}" if why_no_plot is None else f" (no plot: {why_no_plot})")
    )
    print(f"Total time {duration:.0f} s")
    return 1 if problems else 0


def run_model_rows(names: List[str], args: argparse.Namespace, threads: int, device: str) -> Dict[str, object]:
    """The end-to-end model rows (models.py), in a child process of their own (PyTorch and convkern
    together, one OpenMP runtime); their table is printed as they finish. Without PyTorch they
    are skipped, which is not a problem."""
    print(flush=True)
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(threads)
    with tempfile.TemporaryDirectory(prefix="convkern-models-") as scratch:
        out = Path(scratch) / "models.json"
        command = [
            sys.executable,
            str(BENCH_DIR / "models.py"),
            "--threads",
            str(threads),
            "--device",
            device,
            "--layout",
            args.layout,
            "--json",
            str(out),
        ] + [f"--row={name}" for name in names]
        done = subprocess.run(command + (["--quick"] if args.quick else []), env=env, check=False)
        if done.returncode == models.EXIT_NO_TORCH:
            return {"skipped": "PyTorch is not installed", "cases": [], "problems": []}
        if not out.exists():
            return {"cases": [], "problems": [f"the model rows failed (exit status {done.returncode}; see above)"]}
        return json.loads(out.read_text())


def time_all(
    rows,
    layouts,
    workers,
    invalid,
    plan: TimingPlan,
    progress: Progress,
    device: str,
    limits: Dict[str, object],
    accounting: machine.CpuAccounting,
    deadline: float = math.inf,
):
    """Times every (layout, row, phase) in that order, each with the libraries that passed its
    validation; adds each convolution row's derived backward (data + weight) after its phases.
    Past `deadline` (perf_counter) it starts no new row. Returns (cases, names of those not timed)."""
    cases: List[dict] = []
    not_timed: List[str] = []
    total = len(layouts) * sum(len(row.phases) for row in rows)
    progress.begin("timing", total)
    for layout in layouts:
        for row in rows:
            batch = row.batch_gpu if device == "cuda" else row.batch_cpu
            if time.perf_counter() > deadline:
                not_timed += [f"{row.name} {suite.data_format(row, layout)} {phase}" for phase in row.phases]
                continue
            timed: Dict[str, dict] = {}
            for phase in row.phases:
                failed = invalid.get((row.name, layout, phase), {})
                valid_workers = {lib: w for lib, w in workers.items() if lib not in failed}
                timings, errors, other_load = time_case(
                    row, layout, phase, batch, valid_workers, plan, progress, device, accounting
                )
                figures = report.case_figures(
                    row, layout, suite.data_format(row, layout), phase, batch, timings, limits
                )
                figures.update(load_during_timing=other_load, invalid=failed, errors=errors)
                cases.append(figures)
                timed[phase] = timings
                progress.advance()
            if row.kind == "conv":
                sums = report.backward_sum_timings(timed[suite.BACKWARD_DATA], timed[suite.BACKWARD_WEIGHT])
                figures = report.case_figures(
                    row, layout, suite.data_format(row, layout), suite.BACKWARD_DATA_WEIGHT, batch, sums, limits
                )
                loads = [c["load_during_timing"].get("other_processes_pct", 0.0) for c in cases[-2:]]
                figures.update(derived=True, load_during_timing={"other_processes_pct": max(loads)})
                cases.append(figures)
    return cases, not_timed


if __name__ == "__main__":
    sys.exit(main())
