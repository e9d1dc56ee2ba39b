#!/usr/bin/env python3
"""convkern's CPU benchmark: the suite of SPEC.md §8 beside PyTorch (oneDNN) and NumPy im2col + BLAS.

    python bench/run.py                      # full run (SPEC §8 CPU batch sizes; about 7 min on 2 cores)
    python bench/run.py --quick              # same rows and batches, fewer repetitions (2-3 min on 2 cores)
    python bench/run.py --filter resnet50.l4,maxpool --threads 2 --out /tmp/bench

What it does, in order:

1. Measures the machine's limits: FMA peak GFLOP/s (a C/AVX-512 FMA loop compiled at run time,
   1 thread and --threads threads; large-matmul rates as a fallback) and copy bandwidth GB/s
   (bytes read + written, best of a parallel memcpy, a streaming-store copy, np.copyto and torch
   copy_, 256 MiB each way: out of cache).
2. Validates every timed call of every library against `convkern.reference` (NumPy, float64, on
   the same float32 inputs), at batch min(N, 2): tolerance rtol 1e-4, atol 1e-5·sqrt(reduction
   length); convkern's forward writes into a NaN-poisoned `out=`. Any mismatch is a failure
   (exit 1). Only then: "All results match. Starting benchmarks."
3. Times each row and phase — convolution forward; convolution backward = grad_input +
   grad_weight (+ grad_bias) in one call; pooling forward and backward — for every library:
   warm-up first, then repetitions in groups, libraries taking turns group by group (rotating
   who goes first) so that drift in clocks or temperature hits all alike; medians reported.
   /proc tells how much CPU other processes took meanwhile: over 10%, the case is flagged
   ('busy' column): on 2 cores a busy neighbour distorts OpenMP libraries' timings badly.
4. Prints a table (median ms per library; convkern's GFLOP/s and % of FMA peak, or GB/s and % of
   copy bandwidth for pooling; time_baseline / time_convkern, >1 meaning convkern is faster),
   geometric means per phase and the SPEC §9 CPU targets; writes results.json (every figure, every
   repetition, the machine) and ratios.png (convkern vs PyTorch per row and phase) to --out.

Each library runs in its own child process (`run.py --worker LIB`, JSON lines over stdin/stdout),
because two OpenMP runtimes (convkern's, PyTorch's) must not share a process; all use --threads
threads. FLOPs = 2·N·K·out_elements_per_map·(C/groups)·kernel_volume (forward; backward counts
2×). Pooling bytes = operands read once + results written once.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
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
import report  # noqa: E402
import suite  # noqa: E402

ALL_LIBRARIES = ("convkern", "torch", "numpy")
VALIDATION_BATCH = 2  # two images: enough to catch batch-indexing and thread-splitting errors
SETTLE_S = 0.05  # pause between two libraries' groups: the last one's idle threads stop spinning
BUSY_PCT = 10.0  # other processes above this share of the CPUs during a case: its timings are suspect


@dataclass(frozen=True)
class TimingPlan:
    """How long and how often each library runs each case."""

    warmup_s: float  # warm-up lasts at least this long (and at least 2 calls)
    groups: int  # rounds of the round-robin over libraries
    group_s: float  # target time of one library's group
    min_reps_per_group: int
    max_reps_per_group: int

    def reps_per_group(self, estimate_s: float) -> int:
        wanted = round(self.group_s / max(estimate_s, 1e-6))
        return max(self.min_reps_per_group, min(self.max_reps_per_group, wanted))


FULL_PLAN = TimingPlan(warmup_s=0.5, groups=5, group_s=0.4, min_reps_per_group=2, max_reps_per_group=200)
QUICK_PLAN = TimingPlan(warmup_s=0.15, groups=3, group_s=0.1, min_reps_per_group=1, max_reps_per_group=50)


class BenchmarkFailure(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------

class WorkerProcess:
    """One library in its own process; `ask` sends one request and waits for its answer."""

    def __init__(self, library: str, threads: int):
        self.library = library
        env = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[variable] = str(threads)
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "run.py"), "--worker", library, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()  # {"ready": true}, or the import error

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise BenchmarkFailure(f"the {self.library} worker exited (code {self.process.poll()}); see stderr")
        answer = json.loads(line)
        if "error" in answer:
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


class Progress:
    """One status line on stderr, rewritten in place."""

    def __init__(self):
        self.start = time.perf_counter()
        self.width = 0

    def show(self, text: str) -> None:
        text = f"{text}  [{time.perf_counter() - self.start:.0f} s]"
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


# ---------------------------------------------------------------------------------------------
# The three stages
# ---------------------------------------------------------------------------------------------

def measure_limits(workers: Dict[str, WorkerProcess], threads: int) -> Dict[str, object]:
    limits: Dict[str, object] = {}
    probe = machine.NativeProbe()
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
        limits["fma_peak_source"] = (f"C FMA loop ({probe.isa}), "
                                     + (f"{threads} threads" if by_threads[str(threads)] >= scaled_single
                                        else f"{threads} x the 1-thread rate"))
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


def load_reference():
    """convkern.reference, loaded by file path: the parent process never loads convkern's
    compiled module (and its OpenMP runtime). Returns (module or None, why not)."""
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


def validate(rows, workers: Dict[str, WorkerProcess], scratch: Path, progress: Progress) -> List[dict]:
    reference, why_not = load_reference()
    if reference is None:
        if "torch" not in workers:
            raise BenchmarkFailure(f"convkern.reference does not import ({why_not}) and PyTorch is off "
                                   "(--no-baselines): nothing to validate against")
        print(f"WARNING: convkern.reference does not import ({why_not}); validating against PyTorch "
              "in float64 instead", flush=True)
    oracle = "convkern.reference" if reference is not None else "PyTorch float64"
    print(f"Validating against {oracle} at batch <= {VALIDATION_BATCH}:", flush=True)
    records, failures = [], []
    for row in rows:
        batch = min(row.batch_cpu, VALIDATION_BATCH)
        for phase in suite.PHASES:
            progress.show(f"validating {row.name} {phase} (N={batch})")
            path = scratch / f"{row.name}.{phase}.npz"
            if reference is not None:
                outputs = suite.reference_outputs(reference, row, phase, suite.make_inputs(row, phase, batch))
                np.savez(path, *outputs)
            else:
                workers["torch"].ask("reference", row=row.name, phase=phase, batch=batch, path=str(path))
            line = []
            for library, worker in workers.items():
                try:
                    errors = worker.ask("validate", row=row.name, phase=phase, batch=batch, path=str(path))["errors"]
                except BenchmarkFailure as exc:
                    errors = {"exception": str(exc)}
                worst = max((v for v in errors.values() if isinstance(v, float)), default=float("inf"))
                ok = worst <= 1.0
                records.append({"row": row.name, "phase": phase, "batch": batch, "library": library,
                                "error_over_tolerance": errors, "ok": ok})
                line.append(f"{library} {worst:.3g}" + ("" if ok else " FAIL"))
                if not ok:
                    failures.append(f"{library} {row.name} {phase}: {errors}")
            progress.clear()
            print(f"  {row.name:<20} {phase:<9} max error/tolerance: " + "   ".join(line), flush=True)
    if failures:
        raise BenchmarkFailure("VALIDATION FAILED — results differ from the reference:\n  " + "\n  ".join(failures))
    return records


def time_case(row, phase: str, batch: int, workers: Dict[str, WorkerProcess], plan: TimingPlan,
              progress: Progress, label: str, accounting: machine.CpuAccounting):
    """Times one (row, phase) for every library; returns ({library: statistics}, other load)."""
    libraries = list(workers)
    reps: Dict[str, int] = {}
    for library in libraries:
        progress.show(f"{label} {row.name} {phase}: warming up {library}")
        estimate = workers[library].ask("setup", row=row.name, phase=phase, batch=batch,
                                        warmup_s=plan.warmup_s)["estimate_s"]
        reps[library] = plan.reps_per_group(estimate)
        time.sleep(SETTLE_S)
    times: Dict[str, List[float]] = {library: [] for library in libraries}
    before = accounting.snapshot()
    for group in range(plan.groups):
        order = libraries[group % len(libraries):] + libraries[:group % len(libraries)]
        for library in order:
            progress.show(f"{label} {row.name} {phase}: {library} group {group + 1}/{plan.groups}")
            times[library] += workers[library].ask("measure", reps=reps[library])["times_s"]
            time.sleep(SETTLE_S)
    other_load = accounting.other_load(before, accounting.snapshot())
    for worker in workers.values():
        worker.ask("release")
    return {library: report.summarize(t) for library, t in times.items()}, other_load


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (3 groups of ~0.1 s), same rows and batch sizes; "
                             "2-3 minutes on a 2-core machine (the full run: about 7)")
    parser.add_argument("--filter", metavar="SUBSTR",
                        help="only rows whose name contains SUBSTR from the start of a dotted part "
                             "('lenet': lenet5.*, not mobilenet.*); comma-separated: any of them")
    parser.add_argument("--out", metavar="DIR", default=str(BENCH_DIR / "results"),
                        help="where results.json and ratios.png go (default: bench/results/)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (the only device of this build; cuda exits with status 2)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for every library (default: the CPUs this process may use)")
    parser.add_argument("--no-baselines", action="store_true", help="time convkern only")
    parser.add_argument("--worker", choices=ALL_LIBRARIES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.worker:
        import worker

        return worker.serve(args.worker, threads)
    if args.device == "cuda":
        print("--device cuda: not available in this build — the benchmark runs on the CPU only "
              "(use --device cpu)", file=sys.stderr)
        return 2
    if threads < 1:
        print(f"--threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    rows = suite.select_rows(args.filter)
    if not rows:
        print(f"--filter {args.filter!r} matches no row; rows are: "
              + ", ".join(r.name for r in suite.ROWS), file=sys.stderr)
        return 2
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    libraries = ["convkern"] if args.no_baselines else list(ALL_LIBRARIES)
    started, progress = time.perf_counter(), Progress()
    workers: Dict[str, WorkerProcess] = {}
    try:
        for library in libraries:
            progress.show(f"starting the {library} worker")
            workers[library] = WorkerProcess(library, threads)
        hellos = {library: w.ask("hello") for library, w in workers.items()}
        progress.clear()
        for library, hello in hellos.items():
            if hello["threads"] != threads:
                print(f"WARNING: {library} runs {hello['threads']} threads, not {threads}", flush=True)
        description = machine.describe_host()
        for hello in hellos.values():
            description.update(hello["description"])
        accounting = machine.CpuAccounting([os.getpid()] + [hello["pid"] for hello in hellos.values()])
        idle_check = accounting.snapshot()
        time.sleep(1.0)
        load_at_start = accounting.other_load(idle_check, accounting.snapshot())
        if load_at_start.get("other_processes_pct", 0.0) > BUSY_PCT:
            progress.clear()
            print(f"WARNING: other processes are using {load_at_start['other_processes_pct']:.0f}% of the "
                  "CPUs: the machine's limits and the timings will be off (see the 'busy' column)", flush=True)

        progress.show("measuring the machine's limits")
        limits = measure_limits(workers, threads)
        progress.clear()
        print(f"Machine: {description['cpu_model']}, {description['usable_cpus']} CPUs; "
              f"{threads} threads per library")
        print(f"  FMA peak {limits['fma_peak_gflops']:.1f} GFLOP/s ({limits['fma_peak_source']})"
              + (f"; 1 thread {limits['fma_peak_gflops_by_threads']['1']:.1f}"
                 if "fma_peak_gflops_by_threads" in limits else ""))
        ceilings = [f"{k} {v:.1f}" for k, v in limits.items() if k.endswith("_gflops") and k != "fma_peak_gflops"]
        if ceilings:
            print("  matmul ceilings (GFLOP/s): " + ", ".join(ceilings))
        print(f"  copy bandwidth {limits['copy_gbs']:.1f} GB/s, read + write (best of "
              + ", ".join(f"{k} {v:.1f}" for k, v in limits.items() if k.endswith("_gbs") and k != "copy_gbs")
              + ")", flush=True)

        with tempfile.TemporaryDirectory(prefix="convkern-bench-") as scratch:
            validation = validate(rows, workers, Path(scratch), progress)
        print("All results match. Starting benchmarks.", flush=True)

        cases = []
        total = len(rows) * len(suite.PHASES)
        for row in rows:
            for phase in suite.PHASES:
                label = f"[{len(cases) + 1}/{total}]"
                timings, other_load = time_case(row, phase, row.batch_cpu, workers, plan, progress, label,
                                                accounting)
                figures = report.case_figures(row, phase, row.batch_cpu, timings,
                                              limits["fma_peak_gflops"], limits["copy_gbs"])
                cases.append(dict(figures, load_during_timing=other_load))
        progress.clear()
    except BenchmarkFailure as failure:
        progress.clear()
        print(f"\n{failure}", file=sys.stderr)
        return 1
    finally:
        for w in workers.values():
            w.close()

    means = report.geomeans(cases)
    checks = report.target_checks(cases, means)
    duration = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    print()
    print(f"convkern benchmark ({mode}, {threads} threads, medians of {plan.groups} interleaved groups; "
          f"ms per call)")
    print(report.format_table(cases, libraries, BUSY_PCT))
    if means:
        print()
        print(report.format_geomeans(means))
    if checks:
        print()
        print(report.format_checks(checks))
    busy = [c for c in cases if c["load_during_timing"].get("other_processes_pct", 0.0) > BUSY_PCT]
    if busy:
        print()
        print(f"Note: during {len(busy)} of {len(cases)} cases other processes used over {BUSY_PCT:.0f}% of "
              "the CPUs ('busy' column): rerun those rows on a quiet machine before trusting them.")
    cached = report.cache_resident_note(cases)
    if cached:
        print()
        print(cached)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "command": [sys.executable] + sys.argv,
        "mode": mode,
        "timing_plan": plan.__dict__,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_s": duration,
        "threads": threads,
        "libraries": libraries,
        "machine": {**description, "limits": limits, "load_at_start": load_at_start},
        "validation": validation,
        "cases": cases,
        "geomeans": means,
        "targets": checks,
    }
    (out_dir / "results.json").write_text(json.dumps(document, indent=1))
    why_no_plot = report.plot_ratios(cases, out_dir / "ratios.png",
                                     f"convkern vs PyTorch, {description['cpu_model']}, {threads} threads ({mode})",
                                     BUSY_PCT)
    print()
    print(f"Wrote {out_dir / 'results.json'}" + (f" and {out_dir / 'ratios.png'}" if why_no_plot is None
                                                 else f" (no plot: {why_no_plot})"))
    print(f"Total time {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
