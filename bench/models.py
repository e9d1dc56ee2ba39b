#!/usr/bin/env python3
"""End-to-end model rows of the benchmark: a whole PyTorch model with torch's own layers beside the
same model after ``convkern.torch.replace_modules`` — the speed a PyTorch user sees, not one layer's.

    python bench/models.py --quick                 # both rows, both layouts
    python bench/models.py --json out.json         # the figures as JSON (bench/run.py reads this)

Rows (float32; the model is examples/classic_cnns.py's ResNet-18, 11.7 M parameters, 224x224 RGB):

- ``resnet18.forward``: inference, ``model.eval()`` under ``torch.no_grad()``;
- ``resnet18.train_step``: forward, cross-entropy, backward and an SGD step (momentum 0.9), in
  ``model.train()``;

each in NCHW and in channels_last (model and input converted with ``.to(memory_format=...)``),
batch 8 on the CPU and 64 on a GPU. "torch" is the model as built with ``torch.nn``; "convkern"
is a deep copy of it (same weights) after ``replace_modules``: its convolutions and pooling run
convkern's kernels, BatchNorm, ReLU, the residual adds, the classifier, the loss and the
optimizer stay PyTorch's in both.

Before anything is timed, both models run the same image in float64 and must agree:
logits and the first convolution's weight gradient within 1e-8 of their scale. (float64: in
float32, rounding differences flip near-ties of max pooling and ReLU somewhere in 18 layers,
which moves gradients by ~1e-3 of their scale without either model being wrong.)
Timing: a warm-up call each, then repetitions with the two taking turns (who goes first
alternates) so that clock or load drift hits both alike; medians. The ratio is
time_torch / time_convkern (> 1: the model runs faster with convkern's layers).

This runs in its own process: PyTorch and convkern then share one OpenMP runtime (torch's
libgomp is loaded first and convkern's module binds to it), with --threads threads for both.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

BENCH_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = BENCH_DIR.parent / "examples"

ROWS = ("resnet18.forward", "resnet18.train_step")
LAYOUTS = ("NCHW", "NHWC")
BATCH = {"cpu": 8, "cuda": 64}
IMAGE = (3, 224, 224)
NUM_CLASSES = 1000
VALIDATION_BATCH = 1
EXIT_NO_TORCH = 3  # the exit status without PyTorch: run.py then skips these rows


def _classic_cnns():
    """examples/classic_cnns.py, whose ResNet-18 builder takes the layer module as an argument."""
    spec = importlib.util.spec_from_file_location("classic_cnns", EXAMPLES_DIR / "classic_cnns.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _models(layout: str, device: str, dtype=None):
    import convkern.torch as ckt
    import torch

    torch.manual_seed(0)
    reference = _classic_cnns().resnet18(layers=torch.nn).to(device, dtype or torch.float32)
    converted = ckt.replace_modules(copy.deepcopy(reference))
    if layout == "NHWC":
        reference.to(memory_format=torch.channels_last)
        converted.to(memory_format=torch.channels_last)
    return {"torch": reference, "convkern": converted}


def _batch(n: int, layout: str, device: str, seed: int = 1, dtype=None):
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn((n,) + IMAGE, generator=g).to(device, dtype or torch.float32)
    if layout == "NHWC":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device)


def _step_function(row: str, model, images, labels) -> Callable[[], object]:
    """The call timed for `row`, bound to its model and batch."""
    import torch

    if row == "resnet18.forward":
        model.eval()

        def forward():
            with torch.no_grad():
                return model(images)

        return forward
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def validate(layout: str, device: str) -> Optional[str]:
    """None when both models agree on a batch of VALIDATION_BATCH images, else what differs."""
    import torch

    models = _models(layout, device, torch.float64)
    images, labels = _batch(VALIDATION_BATCH, layout, device, dtype=torch.float64)
    logits, grads = {}, {}
    for name, model in models.items():
        model.train()
        out = model(images)
        torch.nn.functional.cross_entropy(out, labels).backward()
        logits[name], grads[name] = out.detach(), model.conv1.weight.grad.detach()
    for what, pair in (("logits", logits), ("conv1 weight gradient", grads)):
        scale = float(pair["torch"].abs().max()) + 1e-30
        error = float((pair["convkern"] - pair["torch"]).abs().max()) / scale
        if not error <= 1e-8:
            return f"{what}: largest difference {error:.2e} of its scale (limit 1e-8)"
    return None


def time_row(row: str, layout: str, device: str, repetitions: int, warmup: int) -> Dict[str, object]:
    import torch

    models = _models(layout, device)
    images, labels = _batch(BATCH[device], layout, device)
    calls = {name: _step_function(row, model, images, labels) for name, model in models.items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for call in calls.values():
        for _ in range(warmup):
            call()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    order = list(calls)
    for rep in range(repetitions):
        for name in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            calls[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "row": row,
        "layout": layout,
        "batch": BATCH[device],
        "device": device,
        "median_s": medians,
        "times_s": times,
        "ratio_torch_over_convkern": medians["torch"] / medians["convkern"],
    }


def _setup(threads: int, device: str) -> None:
    import convkern
    import torch

    torch.set_num_threads(threads)
    convkern.set_num_threads(threads)
    if device == "cuda":
        # float32 stays float32 on both sides: cuDNN's TF32 tensor-core shortcut (on by default in
        # PyTorch) rounds operands to 10 mantissa bits, which convkern's default kernels do not.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def run(threads: int, quick: bool, device: str = "cpu", layouts=LAYOUTS, rows=ROWS) -> Dict[str, object]:
    import torch

    _setup(threads, device)
    repetitions, warmup = (3, 1) if quick else (7, 2)
    results: Dict[str, object] = {
        "threads": threads,
        "repetitions": repetitions,
        "warmup": warmup,
        "torch": torch.__version__,
        "cases": [],
        "problems": [],
    }
    for layout in layouts:
        problem = validate(layout, device)
        if problem:
            results["problems"].append(f"resnet18 {layout}: convkern's model differs from torch's: {problem}")
            continue
        for row in rows:
            results["cases"].append(time_row(row, layout, device, repetitions, warmup))
    return results


def profile(row: str, layout: str, device: str, threads: int, top: int = 12) -> str:
    """Where one call of `row` spends its time, per model: torch.profiler's operators by their own
    time on the device (CUDA) or the CPU, after a warm-up call."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    _setup(threads, device)
    models = _models(layout, device)
    images, labels = _batch(BATCH[device], layout, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sort_by = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    out = []
    for name, model in models.items():
        call = _step_function(row, model, images, labels)
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        with torch_profile(activities=activities) as prof:
            call()
            if device == "cuda":
                torch.cuda.synchronize()
        out.append(f"== {row} {layout} N={BATCH[device]}, {name}'s layers")
        out.append(prof.key_averages().table(sort_by=sort_by, row_limit=top))
    return "\n".join(out)


def format_table(results: Dict[str, object]) -> str:
    lines = [
        f"End-to-end models: the same PyTorch model with torch's layers and after "
        f"convkern.torch.replace_modules (median of {results['repetitions']} interleaved calls, "
        f"{results['threads']} threads)",
        f"{'row':<22}{'layout':<8}{'N':>4}{'torch ms':>12}{'convkern ms':>13}{'torch/convkern':>16}",
    ]
    for c in results["cases"]:
        m = c["median_s"]
        lines.append(
            f"{c['row']:<22}{c['layout']:<8}{c['batch']:>4}{1e3 * m['torch']:>12.1f}"
            f"{1e3 * m['convkern']:>13.1f}{c['ratio_torch_over_convkern']:>15.2f}x"
        )
    for p in results["problems"]:
        lines.append(f"PROBLEM: {p}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 timed calls each after 1 warm-up (else 7 after 2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--layout", choices=("NCHW", "NHWC", "both"), default="both")
    parser.add_argument("--row", choices=ROWS, action="append", help="rows to run (repeatable; default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, print torch.profiler's busiest operators for one call of each row and layout",
    )
    args = parser.parse_args(argv)
    try:
        import convkern.torch  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"the model rows need PyTorch: {exc}", file=sys.stderr)
        return EXIT_NO_TORCH
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    if args.profile:
        for layout in layouts:
            for row in args.row or ROWS:
                print(profile(row, layout, args.device, args.threads), flush=True)
        return 0
    results = run(args.threads, args.quick, args.device, layouts, tuple(args.row or ROWS))
    print(format_table(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
