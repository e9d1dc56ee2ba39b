"""Seeded, time-bounded differential fuzzing of every op family against PyTorch.

Each case draws an op (convolution, transposed convolution, max/min/average pooling, adaptive and
global pooling; 1-D to 3-D; both layouts; float32 and float64), shapes with size-1 axes and empty
batches, and arguments that are usually small but sometimes extreme (strides, dilations and
paddings up to 2**63-1). Where PyTorch accepts the arguments it is the oracle (in float64, so its
own rounding does not blur the comparison), with NaN and +-Inf injected into the activations: the
positions of NaN, +Inf and -Inf must match exactly. Where PyTorch refuses them (it caps paddings
near 2**62) convolutions are checked against a float64 oracle that needs no padded copy: per axis
a 0/1 matrix S[o, r, i] = (o*stride - pad_before + r*dilation == i), contracted with einsum. Where
the arguments are invalid, convkern must raise ValueError with a message free of wrapped numbers.

The default run fuzzes for a few seconds; `pytest -m fuzz` runs for CONVKERN_FUZZ_SECONDS (600 by
default). CONVKERN_FUZZ_SEED picks the stream (a failure names its case seed: rerun one case with
`python -m tests.test_fuzz SEED`). The counts are printed at the end of each run.
"""

from __future__ import annotations

import collections
import math
import os
import re
import sys
import time

import convkern
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

INT64_MAX = 2**63 - 1
EXTREMES = (2**31 - 1, 2**31, 2**32 + 1, 2**40, 10**9, 2**61, 2**62, 2**62 + 1, INT64_MAX)
# Largest output (elements) a case computes; larger valid outputs are only sized, not run.
MAX_ELEMENTS = 20_000
# Largest selection matrix the einsum oracle builds per axis (o * k * i entries).
MAX_SELECTION = 200_000
# Arguments up to which PyTorch is the oracle (it pads explicitly: F.pad of huge paddings would not fit).
TORCH_MAX_ARG = 64
FORMATS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
BIG_NUMBER = re.compile(r"-?\d{12,}")  # sizes in messages this long must be true values, not wrapped ones


class Skip(Exception):
    """A drawn case that is valid but too large to run."""


# ============================================================================ drawing arguments


def draw_int(rng, lo, hi, extreme_p=0.0):
    if rng.random() < extreme_p:
        return int(rng.choice(EXTREMES))
    return int(rng.integers(lo, hi + 1))


def draw_values(rng, shape, dtype, nonfinite):
    x = rng.standard_normal(shape)
    if nonfinite and x.size:
        hit = rng.random(shape) < rng.choice([0.01, 0.05, 0.2])
        x[hit] = rng.choice([np.nan, np.inf, -np.inf], size=int(hit.sum()))
    return x.astype(dtype)


def to_layout(x, last):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if last else x


def from_layout(x, last):
    return np.moveaxis(np.asarray(x), -1, 1) if last else np.asarray(x)


# ==================================================================================== oracles


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def selection(out_len, k, in_len, stride, pad_before, dilation):
    """S[o, r, i] = 1 where output o's tap r reads input cell i (exact integer arithmetic)."""
    if out_len * k * in_len > MAX_SELECTION:
        raise Skip
    s = np.zeros((out_len, k, in_len))
    for o in range(out_len):
        for r in range(k):
            i = o * stride - pad_before + r * dilation
            if 0 <= i < in_len:
                s[o, r, i] = 1.0
    return s


def conv_selections(rank, in_sizes, kernel, stride, pads, dilation, out_sizes):
    """One selection matrix per axis of the 3-D form (unit leading axes for lower ranks)."""
    lead = 3 - rank
    mats = [np.ones((1, 1, 1))] * lead
    for a in range(rank):
        mats.append(selection(out_sizes[a], kernel[a], in_sizes[a], stride[a], pads[a][0], dilation[a]))
    return mats


def as3d(a, rank, lead_axis=2):
    """Inserts unit spatial axes so that a rank-r array is 3-D in space."""
    for _ in range(3 - rank):
        a = np.expand_dims(a, lead_axis)
    return a


def oracle_conv(x, w, b, groups, mats, rank):
    """Forward convolution y[n, k, o] = b[k] + sum x[n, c, i] w[k, c, r] S[o, r, i], float64."""
    n, c = x.shape[:2]
    k = w.shape[0]
    xg = as3d(x, rank).reshape((n, groups, c // groups) + as3d(x, rank).shape[2:])
    wg = as3d(w, rank).reshape((groups, k // groups) + as3d(w, rank).shape[1:])
    y = np.einsum("ngcDHW,gkcdhw,ZdD,YhH,XwW->ngkZYX", xg, wg, *mats, optimize=True)
    y = y.reshape((n, k) + y.shape[3:])
    if b is not None:
        y = y + b.reshape((1, k, 1, 1, 1))
    return y.reshape(y.shape[:2] + y.shape[5 - rank :])


def oracle_conv_backward(dy, x, w, groups, mats, rank):
    """(grad_input, grad_weight) of oracle_conv: its adjoints, float64."""
    n, c = x.shape[:2]
    k = w.shape[0]
    x3, w3, dy3 = as3d(x, rank), as3d(w, rank), as3d(dy, rank)
    xg = x3.reshape((n, groups, c // groups) + x3.shape[2:])
    wg = w3.reshape((groups, k // groups) + w3.shape[1:])
    dyg = dy3.reshape((n, groups, k // groups) + dy3.shape[2:])
    dx = np.einsum("ngkZYX,gkcdhw,ZdD,YhH,XwW->ngcDHW", dyg, wg, *mats, optimize=True).reshape(x3.shape)
    dw = np.einsum("ngkZYX,ngcDHW,ZdD,YhH,XwW->gkcdhw", dyg, xg, *mats, optimize=True).reshape(w3.shape)
    return dx.reshape(x.shape), dw.reshape(w.shape)


# ================================================================================ comparisons


def check_close(name, got, want, dtype, terms, case):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape} in {case}"
    for mask, what in ((np.isnan, "NaN"), (np.isposinf, "+inf"), (np.isneginf, "-inf")):
        bad = mask(got) != mask(want)
        assert not bad.any(), f"{name}: {what} at {np.argwhere(bad)[:5].tolist()} differs in {case}"
    finite = np.isfinite(want)
    scale = math.sqrt(max(terms, 1))
    rtol, atol = (2e-4, 2e-5 * scale) if dtype == np.float32 else (1e-9, 1e-11 * scale)
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=atol, err_msg=f"{name} in {case}")


def expect_clean_error(call, case, truths):
    """An invalid call: ValueError or TypeError; every large number in the message is one of the
    call's true sizes (`truths`, exact integers), never a wrapped one."""
    try:
        call()
    except (ValueError, TypeError) as e:
        for number in BIG_NUMBER.findall(str(e)):
            assert int(number) in truths, f"{number} in {str(e)!r} is not a true size of {case}"
        return
    raise AssertionError(f"accepted an invalid call: {case}")


# ======================================================================== convolution family


def conv_case(rng, counts, transposed):
    rank = int(rng.integers(1, 4))
    dtype = np.float32 if rng.random() < 0.6 else np.float64
    last = bool(rng.random() < 0.3)
    extreme_p = 0.15 if rng.random() < 0.5 else 0.0
    groups = int(rng.choice([1, 1, 2, 3]))
    depthwise = not transposed and rng.random() < 0.25
    cg = 1 if depthwise else int(rng.integers(1, 4))
    c = cg * groups
    k = groups * (int(rng.integers(1, 3)) if depthwise else int(rng.integers(1, 4)))
    n = int(rng.choice([0, 1, 1, 2, 3]))
    in_sizes = [int(rng.integers(1, 9)) for _ in range(rank)]
    kernel = [int(rng.integers(1, 4)) for _ in range(rank)]
    stride = [draw_int(rng, 1, 3, extreme_p) for _ in range(rank)]
    dilation = [draw_int(rng, 1, 3, extreme_p) for _ in range(rank)]
    if transposed:
        padding = [draw_int(rng, 0, 3, extreme_p) for _ in range(rank)]
        out_pad = [
            int(rng.integers(0, max(s, d))) if max(s, d) < 4 else int(rng.integers(0, 4))
            for s, d in zip(stride, dilation)
        ]
    else:
        form = rng.choice(["int", "pairs", "same", "valid"], p=[0.6, 0.2, 0.1, 0.1])
        if form in ("same", "valid"):
            padding = str(form)
        else:
            padding = [(draw_int(rng, 0, 3, extreme_p), draw_int(rng, 0, 3, extreme_p)) for _ in range(rank)]
            if form == "int":
                padding = [p for p, _ in padding]
    use_bias = bool(rng.random() < 0.5)
    case = dict(
        op="conv_transpose" if transposed else "conv",
        rank=rank,
        dtype=dtype.__name__,
        last=last,
        n=n,
        c=c,
        k=k,
        groups=groups,
        in_sizes=in_sizes,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=padding,
        bias=use_bias,
    )
    if transposed:
        case["output_padding"] = out_pad
        run_conv_transpose(rng, counts, case, dtype)
    else:
        run_conv(rng, counts, case, dtype)


def conv_pads(case):
    """(before, after) per axis as convkern applies them (TensorFlow rules for "same")."""
    padding, rank = case["padding"], case["rank"]
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        pads = []
        for i, k, s, d in zip(case["in_sizes"], case["kernel"], case["stride"], case["dilation"]):
            out = -(-i // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - i, 0)
            pads.append((total // 2, total - total // 2))  # may exceed int64: then invalid
        return pads
    return [p if isinstance(p, tuple) else (p, p) for p in padding]


def run_conv(rng, counts, case, dtype):
    rank, last, groups = case["rank"], case["last"], case["groups"]
    pads = conv_pads(case)
    outs = [
        (i + pb + pa - (d * (k - 1) + 1)) // s + 1
        for i, (pb, pa), k, s, d in zip(case["in_sizes"], pads, case["kernel"], case["stride"], case["dilation"])
    ]
    fmt = FORMATS[rank][last]
    kw = dict(
        stride=tuple(case["stride"]),
        dilation=tuple(case["dilation"]),
        groups=groups,
        data_format=fmt,
        padding=case["padding"] if isinstance(case["padding"], str) else tuple(case["padding"]),
    )
    conv = getattr(convkern, f"conv{rank}d")
    valid = all(1 <= o <= INT64_MAX for o in outs) and all(max(p) <= INT64_MAX for p in pads)
    xshape = (case["n"], case["c"], *case["in_sizes"])
    wshape = (case["k"], case["c"] // groups, *case["kernel"])
    if not valid:
        counts["conv: invalid, clean error"] += 1
        x = to_layout(np.ones(xshape, dtype), last)
        truths = set(outs) | {p for pair in pads for p in pair} | set(case["stride"]) | set(case["dilation"])
        for i, (pb, pa), k, d in zip(case["in_sizes"], pads, case["kernel"], case["dilation"]):
            truths |= {i + pb + pa, d * (k - 1) + 1, i + pb + pa - (d * (k - 1) + 1)}
        return expect_clean_error(lambda: conv(x, np.ones(wshape, dtype), None, **kw), case, truths)
    yshape = (case["n"], case["k"], *outs)
    if math.prod(max(d, 1) for d in yshape) > MAX_ELEMENTS:
        raise Skip
    moderate = max(max(p) for p in pads) <= TORCH_MAX_ARG and max(case["dilation"] + case["stride"]) <= TORCH_MAX_ARG
    nonfinite = moderate and rng.random() < 0.4
    x = draw_values(rng, xshape, dtype, nonfinite)
    w = draw_values(rng, wshape, dtype, nonfinite and rng.random() < 0.3)
    b = draw_values(rng, (case["k"],), dtype, False) if case["bias"] else None
    dy = draw_values(rng, yshape, dtype, nonfinite and rng.random() < 0.5)
    case["nonfinite"] = nonfinite
    # Winograd wherever it applies, on some float32 cases (its dispatch otherwise needs big layers).
    force = dtype == np.float32 and rng.random() < 0.3
    old = os.environ.get("CONVKERN_WINOGRAD")
    if force:
        os.environ["CONVKERN_WINOGRAD"] = "1"
    try:
        out = np.full(to_layout(np.empty(yshape), last).shape, np.nan, dtype)
        y = from_layout(conv(to_layout(x, last), w, b, **kw, out=out), last)
        dx, dw, db = getattr(convkern, f"conv{rank}d_backward")(to_layout(dy, last), to_layout(x, last), w, **kw)
        dx = from_layout(dx, last)
    finally:
        if force:
            if old is None:
                os.environ.pop("CONVKERN_WINOGRAD")
            else:
                os.environ["CONVKERN_WINOGRAD"] = old
    terms = case["c"] // groups * math.prod(case["kernel"])
    want = None
    if moderate:
        try:
            xt = t64(x).requires_grad_()
            wt = t64(w).requires_grad_()
            flat = [p for pair in reversed(pads) for p in pair]
            yt = getattr(F, f"conv{rank}d")(
                F.pad(xt, flat),
                wt,
                None if b is None else t64(b),
                stride=case["stride"],
                dilation=case["dilation"],
                groups=groups,
            )
            yt.backward(t64(dy))
            want = (yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy())
            counts["conv: checked against PyTorch"] += 1
        except RuntimeError:
            want = None
    if want is None:
        mats = conv_selections(rank, case["in_sizes"], case["kernel"], case["stride"], pads, case["dilation"], outs)
        wy = oracle_conv(
            x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64), groups, mats, rank
        )
        wdx, wdw = oracle_conv_backward(
            dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), groups, mats, rank
        )
        want = (wy, wdx, wdw)
        counts["conv: checked against the selection oracle"] += 1
    counts["conv: with NaN/Inf"] += nonfinite
    check_close("forward", y, want[0], dtype, terms, case)
    check_close("grad_input", dx, want[1], dtype, case["k"] // groups * math.prod(case["kernel"]), case)
    check_close("grad_weight", dw, want[2], dtype, case["n"] * math.prod(outs), case)
    with np.errstate(invalid="ignore"):  # Inf - Inf
        want_db = dy.astype(np.float64).sum(axis=tuple(i for i in range(dy.ndim) if i != 1))
    check_close("grad_bias", db, want_db, dtype, case["n"] * math.prod(outs), case)


def run_conv_transpose(rng, counts, case, dtype):
    rank, last, groups = case["rank"], case["last"], case["groups"]
    outs = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, k, s, p, op, d in zip(
            case["in_sizes"], case["kernel"], case["stride"], case["padding"], case["output_padding"], case["dilation"]
        )
    ]
    fmt = FORMATS[rank][last]
    kw = dict(
        stride=tuple(case["stride"]),
        padding=tuple(case["padding"]),
        dilation=tuple(case["dilation"]),
        output_padding=tuple(case["output_padding"]),
        groups=groups,
        data_format=fmt,
    )
    convt = getattr(convkern, f"conv_transpose{rank}d")
    xshape = (case["n"], case["c"], *case["in_sizes"])
    wshape = (case["c"], case["k"] // groups, *case["kernel"])
    valid = all(1 <= o <= INT64_MAX for o in outs) and all(
        op < max(s, d) for op, s, d in zip(case["output_padding"], case["stride"], case["dilation"])
    )
    if not valid:
        counts["conv_transpose: invalid, clean error"] += 1
        x = to_layout(np.ones(xshape, dtype), last)
        truths = set(outs) | set(case["padding"]) | set(case["stride"]) | set(case["dilation"])
        return expect_clean_error(lambda: convt(x, np.ones(wshape, dtype), None, **kw), case, truths)
    yshape = (case["n"], case["k"], *outs)
    if math.prod(max(d, 1) for d in yshape) > MAX_ELEMENTS:
        raise Skip
    moderate = max(case["padding"] + case["stride"] + case["dilation"]) <= TORCH_MAX_ARG
    nonfinite = moderate and rng.random() < 0.4
    x = draw_values(rng, xshape, dtype, nonfinite)
    # Not with output_padding > padding + stride - 1 (dilation > stride): the last output cells are
    # then computed from zero-extended input positions, whose products with an Inf weight or
    # grad_output give NaN where PyTorch has no product (a documented exception).
    extended = any(op > p + s - 1 for op, p, s in zip(case["output_padding"], case["padding"], case["stride"]))
    w = draw_values(rng, wshape, dtype, nonfinite and not extended and rng.random() < 0.3)
    b = draw_values(rng, (case["k"],), dtype, False) if case["bias"] else None
    dy = draw_values(rng, yshape, dtype, nonfinite and not extended and rng.random() < 0.5)
    case["nonfinite"] = nonfinite
    out = np.full(to_layout(np.empty(yshape), last).shape, np.nan, dtype)
    y = from_layout(convt(to_layout(x, last), w, b, **kw, out=out), last)
    dx, dw, _ = getattr(convkern, f"conv_transpose{rank}d_backward")(to_layout(dy, last), to_layout(x, last), w, **kw)
    dx = from_layout(dx, last)
    want = None
    if moderate:
        try:
            xt, wt = t64(x).requires_grad_(), t64(w).requires_grad_()
            yt = getattr(F, f"conv_transpose{rank}d")(
                xt,
                wt,
                None if b is None else t64(b),
                stride=case["stride"],
                padding=case["padding"],
                output_padding=case["output_padding"],
                groups=groups,
                dilation=case["dilation"],
            )
            yt.backward(t64(dy))
            want = (yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy())
            counts["conv_transpose: checked against PyTorch"] += 1
        except RuntimeError:
            want = None
    if want is None:
        # The transposed convolution is the adjoint of the convolution from its output to its input.
        pads = [(p, 0) for p in case["padding"]]
        mats = conv_selections(rank, outs, case["kernel"], case["stride"], pads, case["dilation"], case["in_sizes"])
        # w is (C, K/g, k...): as the forward convolution's weight it maps K (its input) to C.
        wy, _ = oracle_conv_backward(x.astype(np.float64), np.zeros(yshape), w.astype(np.float64), groups, mats, rank)
        if b is not None:
            wy = wy + b.astype(np.float64).reshape((1, -1) + (1,) * rank)
        wdx = oracle_conv(dy.astype(np.float64), w.astype(np.float64), None, groups, mats, rank)
        _, wdw = oracle_conv_backward(
            x.astype(np.float64), dy.astype(np.float64), w.astype(np.float64), groups, mats, rank
        )
        want = (wy, wdx, wdw)
        counts["conv_transpose: checked against the selection oracle"] += 1
    counts["conv_transpose: with NaN/Inf"] += nonfinite
    terms = case["c"] // groups * math.prod(case["kernel"])
    check_close("forward", y, want[0], dtype, terms, case)
    check_close("grad_input", dx, want[1], dtype, case["k"] // groups * math.prod(case["kernel"]), case)
    check_close("grad_weight", dw, want[2], dtype, case["n"] * math.prod(case["in_sizes"]), case)


# ============================================================================ pooling family


def pool_case(rng, counts):
    rank = int(rng.integers(1, 4))
    dtype = np.float32 if rng.random() < 0.6 else np.float64
    last = bool(rng.random() < 0.3)
    fmt = FORMATS[rank][last]
    kind = str(
        rng.choice(["max", "min", "avg", "adaptive_max", "adaptive_avg", "global_max", "global_min", "global_avg"])
    )
    n, c = int(rng.choice([0, 1, 2])), int(rng.integers(1, 4))
    in_sizes = [int(rng.integers(1, 10)) for _ in range(rank)]
    x = draw_values(rng, (n, c, *in_sizes), dtype, rng.random() < 0.5)
    if kind in ("max", "min"):  # many ties
        x = np.where(np.isfinite(x), np.round(x), x).astype(dtype)
    xl = to_layout(x, last)
    case = dict(op=kind, rank=rank, dtype=dtype.__name__, fmt=fmt, shape=x.shape)
    xt = t64(x).requires_grad_()
    if kind.startswith("global"):
        extreme = kind.split("_")[1]
        y = from_layout(getattr(convkern, f"global_{extreme}_pool{rank}d")(xl, keepdims=True, data_format=fmt), last)
        if x.size == 0:
            counts["pool: empty"] += 1
            assert y.shape == (n, c) + (1,) * rank
            return
        dy = draw_values(rng, y.shape, dtype, False)
        dx = from_layout(
            getattr(convkern, f"global_{extreme}_pool{rank}d_backward")(
                to_layout(dy, last), xl, keepdims=True, data_format=fmt
            ),
            last,
        )
        if extreme == "avg":
            yt = xt.mean(dim=tuple(range(2, 2 + rank)), keepdim=True)
        else:
            sign = 1 if extreme == "max" else -1
            yt = sign * getattr(F, f"adaptive_max_pool{rank}d")(sign * xt, 1)
        terms = math.prod(in_sizes)
    elif kind.startswith("adaptive"):
        extreme = kind.split("_")[1]
        out_sizes = [int(rng.integers(1, s + 3)) for s in in_sizes]
        case["output_size"] = out_sizes
        y = from_layout(getattr(convkern, f"{kind}_pool{rank}d")(xl, tuple(out_sizes), data_format=fmt), last)
        if x.size == 0:
            counts["pool: empty"] += 1
            return
        dy = draw_values(rng, y.shape, dtype, False)
        dx = from_layout(
            getattr(convkern, f"{kind}_pool{rank}d_backward")(
                to_layout(dy, last), xl, tuple(out_sizes), data_format=fmt
            ),
            last,
        )
        yt = getattr(F, f"{kind}_pool{rank}d")(xt, out_sizes)
        terms = math.prod(in_sizes)
    else:
        return sliding_pool_case(rng, counts, kind, rank, dtype, last, x, case)
    yt.backward(t64(dy))
    counts["pool: checked against PyTorch"] += 1
    check_close("forward", y, yt.detach().numpy(), dtype, terms, case)
    check_close("grad_input", dx, xt.grad.numpy(), dtype, terms, case)


def pool_output_size(i, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape, in exact integers."""
    num = i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= i + p:
        out -= 1
    return out


def window_misses_input(in_size, k, s, p, d, out):
    """Whether some output's window on this axis holds padding cells only."""
    for o in range(out):
        origin = o * s - p
        first = 0 if origin >= 0 else -(origin // d)  # smallest r with origin + r*d >= 0
        if first >= k or origin + first * d >= in_size:
            return True
    return False


def sliding_pool_case(rng, counts, kind, rank, dtype, last, x, case):
    extreme_p = 0.15 if rng.random() < 0.5 else 0.0
    in_sizes = list(x.shape[2:])
    kernel = [draw_int(rng, 1, 4, extreme_p / 3) for _ in range(rank)]
    stride = [draw_int(rng, 1, 3, extreme_p) for _ in range(rank)]
    padding = [int(rng.integers(0, k // 2 + 1)) if k < 2**20 else draw_int(rng, 0, 2, 0.5) for k in kernel]
    dilation = [draw_int(rng, 1, 2, extreme_p) for _ in range(rank)] if kind != "avg" else [1] * rank
    ceil_mode = bool(rng.random() < 0.4)
    fmt = FORMATS[rank][last]
    kw = dict(
        kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding), ceil_mode=ceil_mode, data_format=fmt
    )
    if kind == "avg":
        kw["count_include_pad"] = bool(rng.random() < 0.5)
        if rng.random() < 0.2:
            kw["divisor_override"] = int(rng.integers(1, 5))
    else:
        kw["dilation"] = tuple(dilation)
    case.update(kw)
    fn = getattr(convkern, f"{kind}_pool{rank}d")
    outs = [
        pool_output_size(i, k, s, p, d, ceil_mode) for i, k, s, p, d in zip(in_sizes, kernel, stride, padding, dilation)
    ]
    valid = all(p <= k // 2 for p, k in zip(padding, kernel)) and all(1 <= o <= INT64_MAX for o in outs)
    xl = to_layout(x, last)
    if not valid:
        counts["pool: invalid, clean error"] += 1
        truths = set(outs) | set(kernel) | set(stride) | set(padding) | set(dilation)
        return expect_clean_error(lambda: fn(xl, **kw), case, truths)
    if math.prod(max(d, 1) for d in (x.shape[0], x.shape[1], *outs)) > MAX_ELEMENTS:
        raise Skip
    if kind == "avg":
        y = from_layout(fn(xl, **kw), last)
        idx = None
    else:
        y, idx = fn(xl, **kw, return_indices=True)
        y, idx = from_layout(y, last), from_layout(idx, last)
    dy = draw_values(rng, y.shape, dtype, False)
    dx = from_layout(getattr(convkern, f"{kind}_pool{rank}d_backward")(to_layout(dy, last), xl, **kw), last)
    if any(window_misses_input(*axis) for axis in zip(in_sizes, kernel, stride, padding, dilation, outs)):
        # A window of padding only: PyTorch returns an arbitrary index for it (and its max-pool
        # backward then writes out of bounds), so it cannot be the oracle; convkern gives -inf
        # (+inf for min) and index -1, and no gradient.
        counts["pool: window in padding only, own rule checked"] += 1
        if idx is not None:
            empty = idx < 0
            assert np.all(y[empty] == (-np.inf if kind == "max" else np.inf)), case
        return
    xt = t64(x).requires_grad_()
    tkw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    try:
        if kind == "avg" and rank == 1:  # avg_pool1d has no divisor_override: the 2-D op over (1, W)
            yt = F.avg_pool2d(
                xt.unsqueeze(2),
                (1, kernel[0]),
                (1, stride[0]),
                (0, padding[0]),
                ceil_mode,
                kw["count_include_pad"],
                kw.get("divisor_override"),
            ).squeeze(2)
            it = None
        elif kind == "avg":
            yt = getattr(F, f"avg_pool{rank}d")(
                xt, **tkw, count_include_pad=kw["count_include_pad"], divisor_override=kw.get("divisor_override")
            )
            it = None
        else:
            sign = 1 if kind == "max" else -1
            yt, it = getattr(F, f"max_pool{rank}d")(sign * xt, **tkw, dilation=dilation, return_indices=True)
            yt = sign * yt
        yt.backward(t64(dy))
    except RuntimeError:
        counts["pool: PyTorch refuses, shape checked"] += 1
        assert y.shape == (x.shape[0], x.shape[1], *outs), case
        return
    counts["pool: checked against PyTorch"] += 1
    terms = math.prod(min(k, i + 2 * p) for k, i, p in zip(kernel, in_sizes, padding))
    check_close("forward", y, yt.detach().numpy(), dtype, terms, case)
    if it is not None and x.size:
        np.testing.assert_array_equal(idx, it.numpy(), err_msg=f"indices in {case}")
    check_close("grad_input", dx, xt.grad.numpy(), dtype, terms, case)


# ===================================================================================== driver


def run_one(seed, counts):
    rng = np.random.default_rng(seed)
    family = rng.choice(["conv", "conv_transpose", "pool"], p=[0.45, 0.2, 0.35])
    try:
        if family == "pool":
            pool_case(rng, counts)
        else:
            conv_case(rng, counts, transposed=family == "conv_transpose")
        counts["cases run"] += 1
    except Skip:
        counts["cases too large to run (sized only)"] += 1


def fuzz(seconds, seed):
    counts = collections.Counter()
    deadline = time.monotonic() + seconds
    case_seed = seed
    while time.monotonic() < deadline:
        try:
            run_one(case_seed, counts)
        except AssertionError as e:
            raise AssertionError(f"case seed {case_seed}: {e}") from None
        case_seed += 1
    counts["cases drawn"] = case_seed - seed
    return counts


def report(counts, seconds, seed, capsys):
    lines = [f"convkern fuzz: {seconds:g} s from seed {seed}"] + [f"  {k}: {v}" for k, v in sorted(counts.items())]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_fuzz_brief(capsys):
    seconds = float(os.environ.get("CONVKERN_FUZZ_BRIEF_SECONDS", "3"))
    seed = int(os.environ.get("CONVKERN_FUZZ_SEED", "20261203"))
    counts = fuzz(seconds, seed)
    report(counts, seconds, seed, capsys)
    assert counts["cases run"] > 0


@pytest.mark.fuzz
def test_fuzz_long(capsys):
    seconds = float(os.environ.get("CONVKERN_FUZZ_SECONDS", "600"))
    seed = int(os.environ.get("CONVKERN_FUZZ_SEED", str(int(time.time()))))
    counts = fuzz(seconds, seed)
    report(counts, seconds, seed, capsys)
    assert counts["cases run"] > 0


if __name__ == "__main__":  # python -m tests.test_fuzz SEED: rerun one case
    c = collections.Counter()
    run_one(int(sys.argv[1]), c)
    print(dict(c))
