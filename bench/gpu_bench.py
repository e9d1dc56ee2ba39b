"""GPU benchmark of SPEC §8: convkern's CUDA kernels beside cuDNN (through PyTorch), same process.

    python bench/gpu_bench.py [--out results.json] [--filter resnet50] [--reps 20]

Self-contained (it does not share bench/run.py's CPU machinery): CuPy allocates, PyTorch runs
cuDNN with torch.backends.cudnn.benchmark = True and TF32 off, both on the same device buffers
(DLPack), and every number is the median of CUDA-event timings after warm-up. Each row is first
validated against cuDNN (relative L2 error) and only then timed, as STYLE.md asks.

Napkin math (as bench/suite.py): conv FLOPs = 2*N*K*out_positions*(C/groups)*kernel_volume per
pass (forward, backward-data and backward-weight each count once); pooling bytes = every operand
read once + every result written once (backward: grad_output + int64 indices + grad_input).
The device copy bandwidth (a large device-to-device copy, bytes read + written) is measured
first: pooling is reported against it (target: >= 70%).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Conv:
    name: str
    n: int
    c: int
    spatial: Tuple[int, ...]
    k: int
    kernel: Tuple[int, ...]
    stride: int
    pad: int
    groups: int = 1


@dataclass(frozen=True)
class Pool:
    name: str
    n: int
    c: int
    spatial: Tuple[int, int]
    kind: str  # "max", "avg" or "gap"
    kernel: int = 0
    stride: int = 0
    pad: int = 0


# SPEC §8, GPU batch sizes.
CONV_ROWS = [
    Conv("resnet50.conv1", 32, 3, (224, 224), 64, (7, 7), 2, 3),
    Conv("resnet50.l1.1x1", 32, 64, (56, 56), 256, (1, 1), 1, 0),
    Conv("resnet50.l1.3x3", 32, 64, (56, 56), 64, (3, 3), 1, 1),
    Conv("resnet50.l2.3x3s2", 32, 128, (56, 56), 128, (3, 3), 2, 1),
    Conv("resnet50.l2.3x3", 32, 128, (28, 28), 128, (3, 3), 1, 1),
    Conv("resnet50.l3.3x3", 32, 256, (14, 14), 256, (3, 3), 1, 1),
    Conv("resnet50.l3.1x1", 32, 1024, (14, 14), 256, (1, 1), 1, 0),
    Conv("resnet50.l4.3x3", 32, 512, (7, 7), 512, (3, 3), 1, 1),
    Conv("vgg16.conv3_2", 32, 256, (56, 56), 256, (3, 3), 1, 1),
    Conv("mobilenet.dw3x3", 32, 256, (28, 28), 256, (3, 3), 1, 1, 256),
    Conv("lenet5.conv1", 256, 1, (32, 32), 6, (5, 5), 1, 0),
    Conv("lenet5.conv2", 256, 6, (14, 14), 16, (5, 5), 1, 0),
    Conv("audio.conv1d", 32, 64, (16000,), 64, (9,), 1, 4),
    Conv("video.conv3d", 8, 64, (8, 56, 56), 64, (3, 3, 3), 1, 1),
]
POOL_ROWS = [
    Pool("resnet50.maxpool", 32, 64, (112, 112), "max", 3, 2, 1),
    Pool("vgg.maxpool", 32, 128, (112, 112), "max", 2, 2, 0),
    Pool("inception.avgpool", 32, 192, (28, 28), "avg", 3, 1, 1),
    Pool("resnet50.gap", 32, 2048, (7, 7), "gap"),
]


def conv_out(row: Conv) -> Tuple[int, ...]:
    return tuple((i + 2 * row.pad - k) // row.stride + 1 for i, k in zip(row.spatial, row.kernel))


def conv_flops(row: Conv) -> float:
    return 2.0 * row.n * row.k * math.prod(conv_out(row)) * (row.c // row.groups) * math.prod(row.kernel)


class Timer:
    """Median of CUDA-event timings of fn() on the current stream, after warm-up."""

    def __init__(self, cp, reps: int, min_seconds: float):
        self.cp, self.reps, self.min_seconds = cp, reps, min_seconds

    def __call__(self, fn: Callable[[], None]) -> float:
        cp = self.cp
        for _ in range(3):
            fn()
        cp.cuda.get_current_stream().synchronize()
        times: List[float] = []
        start_wall = time.perf_counter()
        while len(times) < self.reps or (time.perf_counter() - start_wall < self.min_seconds and len(times) < 200):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(cp.cuda.get_elapsed_time(a, b) / 1e3)
            if time.perf_counter() - start_wall > 20:  # a pathological row must not eat the lease
                break
        return statistics.median(times)


def rel_err(cp, got, want) -> float:
    got, want = got.astype(cp.float64), want.astype(cp.float64)
    den = float(cp.linalg.norm(want))
    return float(cp.linalg.norm(got - want)) / (den if den else 1.0)


def copy_bandwidth(cp, timer: Timer) -> float:
    n = 1 << 28  # 1 GiB of float32
    src = cp.ones(n, cp.float32)
    dst = cp.empty_like(src)
    t = timer(lambda: dst.__setitem__(Ellipsis, src))
    return 2 * n * 4 / t / 1e9


def bench_conv(row: Conv, cp, torch, F, cb, C, timer: Timer, log) -> Dict:
    rank = len(row.spatial)
    rs = cp.random.RandomState(0)
    x = rs.standard_normal((row.n, row.c) + row.spatial, dtype=cp.float32)
    w = rs.standard_normal((row.k, row.c // row.groups) + row.kernel, dtype=cp.float32)
    w *= 1.0 / math.sqrt((row.c // row.groups) * math.prod(row.kernel))
    out_sp = conv_out(row)
    pad3 = lambda t, fill: [fill] * (3 - rank) + list(t)  # noqa: E731
    args = C.ConvArgs(pad3([row.stride] * rank, 1), pad3([row.pad] * rank, 0), pad3([row.pad] * rank, 0),
                      [1, 1, 1], row.groups, rank, False)
    x5 = x.reshape((row.n, row.c) + tuple(pad3(row.spatial, 1)))
    w5 = w.reshape((row.k, row.c // row.groups) + tuple(pad3(row.kernel, 1)))
    y = cp.empty((row.n, row.k) + out_sp, cp.float32)
    y5 = y.reshape((row.n, row.k) + tuple(pad3(out_sp, 1)))
    dy = rs.standard_normal(y.shape, dtype=cp.float32)
    dy5 = dy.reshape(y5.shape)
    dx = cp.empty_like(x)
    dw = cp.empty_like(w)

    xt, wt, dyt = torch.from_dlpack(x), torch.from_dlpack(w), torch.from_dlpack(dy)
    conv_t = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    tkw = dict(stride=row.stride, padding=row.pad, groups=row.groups)

    def ours_fwd():
        cb.conv_forward(x5, w5, None, y5, args)

    def ours_bwd_data():
        cb.conv_backward_data(dy5, w5, dx.reshape(x5.shape), args)

    def ours_bwd_weight():
        cb.conv_backward_weight(dy5, x5, dw.reshape(w5.shape), args)

    def torch_fwd():
        conv_t(xt, wt, **tkw)

    def torch_bwd(mask):
        return torch.ops.aten.convolution_backward(dyt, xt, wt, None, [row.stride] * rank, [row.pad] * rank,
                                                   [1] * rank, False, [0] * rank, row.groups, mask)

    # Validate before timing.
    ours_fwd()
    ours_bwd_data()
    ours_bwd_weight()
    ref_y = cp.from_dlpack(conv_t(xt, wt, **tkw))
    gi, gw, _ = torch_bwd([True, True, False])
    errors = {"forward": rel_err(cp, y, ref_y), "backward_data": rel_err(cp, dx, cp.from_dlpack(gi)),
              "backward_weight": rel_err(cp, dw, cp.from_dlpack(gw))}
    ok = all(e < 1e-4 for e in errors.values())
    flops = conv_flops(row)
    result = {"name": row.name, "kind": "conv", "errors": errors, "valid": ok, "flops_per_pass": flops}
    if not ok:
        log(f"  {row.name}: NOT VALID vs cuDNN {errors}; not timed")
        return result
    timings = {
        "forward": (timer(ours_fwd), timer(torch_fwd)),
        "backward_data": (timer(ours_bwd_data), timer(lambda: torch_bwd([True, False, False]))),
        "backward_weight": (timer(ours_bwd_weight), timer(lambda: torch_bwd([False, True, False]))),
    }
    for phase, (ours, theirs) in timings.items():
        result[phase] = {"convkern_s": ours, "cudnn_s": theirs, "convkern_gflops": flops / ours / 1e9,
                         "cudnn_gflops": flops / theirs / 1e9, "ratio": theirs / ours}
    return result


def bench_pool(row: Pool, cp, torch, F, cb, timer: Timer, copy_gbs: float, log) -> Dict:
    rs = cp.random.RandomState(1)
    x = rs.standard_normal((row.n, row.c) + row.spatial, dtype=cp.float32)
    xt = torch.from_dlpack(x)
    x5 = x.reshape((row.n, row.c, 1) + row.spatial)
    if row.kind == "gap":
        k, s, p = list(row.spatial), list(row.spatial), 0
    else:
        k, s, p = [row.kernel] * 2, [row.stride] * 2, row.pad
    out_sp = tuple((i + 2 * p - kk) // ss + 1 for i, kk, ss in zip(row.spatial, k, s))
    y = cp.empty((row.n, row.c) + out_sp, cp.float32)
    y5 = y.reshape((row.n, row.c, 1) + out_sp)
    dy = rs.standard_normal(y.shape, dtype=cp.float32)
    dyt = torch.from_dlpack(dy)
    dx = cp.empty_like(x)
    k3, s3, p3 = [1] + k, [1] + s, [0, p, p]
    if row.kind == "max":
        idx = cp.empty(y.shape, cp.int64)
        idx5 = idx.reshape(y5.shape)

        def ours_fwd():
            cb.extremum_pool_forward(x5, y5, idx5, k3, s3, p3, p3, [1, 1, 1], False, False, False, 2, False)

        def ours_bwd():
            cb.extremum_pool_backward(dy.reshape(y5.shape), idx5, dx.reshape(x5.shape), k3, s3, p3, p3, [1, 1, 1],
                                      False, False, 2, False, validate=False)

        tv, ti = F.max_pool2d(xt, k, s, p, return_indices=True)

        def torch_fwd():
            F.max_pool2d(xt, k, s, p, return_indices=True)

        def torch_bwd():
            torch.ops.aten.max_pool2d_with_indices_backward(dyt, xt, k, s, [p, p], [1, 1], False, ti)

        fwd_bytes = x.nbytes + y.nbytes + idx.nbytes
        bwd_bytes = dy.nbytes + idx.nbytes + dx.nbytes
    else:
        def ours_fwd():
            cb.avg_pool_forward(x5, y5, k3, s3, p3, p3, False, False, True, 0, 2, False)

        def ours_bwd():
            cb.avg_pool_backward(dy.reshape(y5.shape), dx.reshape(x5.shape), k3, s3, p3, p3, False, False, True, 0,
                                 2, False)

        tv = F.avg_pool2d(xt, k, s, p)

        def torch_fwd():
            F.avg_pool2d(xt, k, s, p)

        def torch_bwd():
            torch.ops.aten.avg_pool2d_backward(dyt, xt, k, s, [p, p], False, True, None)

        fwd_bytes = x.nbytes + y.nbytes
        bwd_bytes = dy.nbytes + dx.nbytes
    ours_fwd()
    ours_bwd()
    ref_dx = cp.from_dlpack(torch.ops.aten.max_pool2d_with_indices_backward(dyt, xt, k, s, [p, p], [1, 1], False, ti)
                            if row.kind == "max" else
                            torch.ops.aten.avg_pool2d_backward(dyt, xt, k, s, [p, p], False, True, None))
    errors = {"forward": rel_err(cp, y, cp.from_dlpack(tv)), "backward": rel_err(cp, dx, ref_dx)}
    if row.kind == "max":
        errors["indices_equal"] = bool((idx == cp.from_dlpack(ti)).all())
    ok = errors["forward"] < 1e-5 and errors["backward"] < 1e-5 and errors.get("indices_equal", True)
    result = {"name": row.name, "kind": "pool", "errors": errors, "valid": ok}
    if not ok:
        log(f"  {row.name}: NOT VALID vs PyTorch {errors}; not timed")
        return result
    for phase, ours_fn, theirs_fn, nbytes in (("forward", ours_fwd, torch_fwd, fwd_bytes),
                                              ("backward", ours_bwd, torch_bwd, bwd_bytes)):
        ours, theirs = timer(ours_fn), timer(theirs_fn)
        result[phase] = {"convkern_s": ours, "torch_s": theirs, "bytes": nbytes, "convkern_gbs": nbytes / ours / 1e9,
                         "torch_gbs": nbytes / theirs / 1e9, "ratio": theirs / ours,
                         "fraction_of_copy": nbytes / ours / 1e9 / copy_gbs}
    return result


def geomean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--filter", default="")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=0.3)
    opts = ap.parse_args()

    def log(msg: str) -> None:
        print(msg, flush=True)

    import cupy as cp
    import torch
    import torch.nn.functional as F

    import convkern
    from convkern import _C, _cuda_backend as cb

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    props = cb.info()
    dev = torch.cuda.get_device_properties(0)
    log(f"device: {dev.name}, {dev.multi_processor_count} SMs, {dev.total_memory / 2**30:.1f} GiB; "
        f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, CuPy {cp.__version__}; "
        f"convkern {convkern.__version__} CUDA {props}")
    timer = Timer(cp, opts.reps, opts.min_seconds)
    copy_gbs = copy_bandwidth(cp, timer)
    log(f"device copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")

    results: List[Dict] = []
    for row in CONV_ROWS:
        if opts.filter in row.name:
            log(f"conv {row.name} ...")
            try:
                results.append(bench_conv(row, cp, torch, F, cb, _C, timer, log))
            except Exception as exc:  # one broken row must not hide the others
                log(f"  {row.name}: FAILED {type(exc).__name__}: {exc}")
                results.append({"name": row.name, "kind": "conv", "error": f"{type(exc).__name__}: {exc}"})
            cp.get_default_memory_pool().free_all_blocks()
            torch.cuda.empty_cache()
    for row in POOL_ROWS:
        if opts.filter in row.name:
            log(f"pool {row.name} ...")
            try:
                results.append(bench_pool(row, cp, torch, F, cb, timer, copy_gbs, log))
            except Exception as exc:
                log(f"  {row.name}: FAILED {type(exc).__name__}: {exc}")
                results.append({"name": row.name, "kind": "pool", "error": f"{type(exc).__name__}: {exc}"})

    # The table.
    log("")
    log(f"{'row':24s} {'pass':16s} {'convkern':>12s} {'cuDNN/torch':>12s} {'ratio':>7s}")
    summary: Dict[str, List[float]] = {}
    for r in results:
        for phase in ("forward", "backward_data", "backward_weight", "backward"):
            if phase not in r:
                continue
            p = r[phase]
            if r["kind"] == "conv":
                ours, theirs, unit = p["convkern_gflops"], p["cudnn_gflops"], "GF/s"
            else:
                ours, theirs, unit = p["convkern_gbs"], p["torch_gbs"], "GB/s"
            summary.setdefault(f"{r['kind']}.{phase}", []).append(p["ratio"])
            log(f"{r['name']:24s} {phase:16s} {ours:8.0f} {unit} {theirs:8.0f} {unit} {p['ratio']:6.2f}x")
        if "error" in r or not r.get("valid", True):
            log(f"{r['name']:24s} {'-':16s} {'not timed: ' + str(r.get('error') or r.get('errors'))}")
    geo = {k: geomean(v) for k, v in summary.items()}
    log("")
    for k, v in sorted(geo.items()):
        log(f"geomean ratio (convkern speed / baseline speed) {k}: {v:.3f}" if v else f"{k}: n/a")
    report = {"device": dev.name, "sms": dev.multi_processor_count, "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "cupy": cp.__version__, "convkern": convkern.__version__,
              "convkern_cuda": props, "python": platform.python_version(), "copy_gbs": copy_gbs,
              "tf32": False, "cudnn_benchmark": True, "rows": results, "geomean_ratios": geo}
    with open(opts.out, "w") as f:
        json.dump(report, f, indent=1)
    log(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
