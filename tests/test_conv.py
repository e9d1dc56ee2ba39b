"""Convolution kernels against convkern.reference on randomized configurations.

Each case draws its own geometry from a seed: batch (0 to 3, or unbatched), groups (1, 2, 3 or
depthwise), kernels 1 to 7 and non-square, strides and dilations 1 to 3, every padding form
(int, per axis, asymmetric pairs, "same", "valid"), odd and prime sizes, and inputs stored
contiguous, Fortran-ordered, with negative strides or strided.
"""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from conftest import HOST, LAYOUTS, assert_close, relayout
from convkern import reference as ref

DTYPES = (np.float32, np.float64)


def conv_case(seed: int, rank: int):
    rng = np.random.default_rng(1000 * rank + seed)
    groups = int(rng.choice([1, 1, 2, 3, 0]))  # 0: depthwise
    if groups == 0:
        c = int(rng.integers(1, 6))
        groups, cin, cout = c, c, c * int(rng.integers(1, 3))
    else:
        cin, cout = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 8 if rank < 3 else 4, size=rank))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=rank))
    dilation = tuple(int(d) for d in rng.integers(1, 4 if rank < 3 else 3, size=rank))
    form = rng.choice(["int", "axes", "pairs", "same", "valid"])
    if form == "int":
        padding = int(rng.integers(0, 4))
        pads = [(padding, padding)] * rank
    elif form == "axes":
        padding = tuple(int(p) for p in rng.integers(0, 4, size=rank))
        pads = [(p, p) for p in padding]
    elif form == "pairs":
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 4, size=(rank, 2)))
        pads = list(padding)
    else:
        padding = str(form)
        pads = [(0, 0)] * rank
    # Input sizes from the smallest legal one upwards, with some primes among them.
    size = []
    for k, d, (a, b) in zip(kernel, dilation, pads):
        smallest = max(1, d * (k - 1) + 1 - a - b)
        size.append(int(rng.choice([smallest, smallest + 1, smallest + int(rng.integers(2, 12)), 13, 17])))
        size[-1] = max(size[-1], smallest)
    if rank == 3:
        size = [min(s, 9) if s > max(1, d * (k - 1) + 1) else s for s, k, d in zip(size, kernel, dilation)]
    batch = int(rng.choice([0, 1, 2, 3, -1]))  # -1: unbatched
    layout = LAYOUTS[int(rng.integers(0, len(LAYOUTS)))]
    bias = bool(rng.integers(0, 2))
    return dict(
        batch=batch,
        cin=cin,
        cout=cout,
        groups=groups,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=padding,
        size=tuple(size),
        layout=layout,
        bias=bias,
    )


def make_arrays(case, dtype, rng):
    if case.get("data_format", "first").endswith("C"):
        shape = ((case["batch"],) if case["batch"] >= 0 else ()) + case["size"] + (case["cin"],)
    else:
        shape = ((case["batch"],) if case["batch"] >= 0 else ()) + (case["cin"],) + case["size"]
    x = relayout(rng.standard_normal(shape).astype(dtype), case["layout"], rng)
    w = rng.standard_normal((case["cout"], case["cin"] // case["groups"]) + case["kernel"]).astype(dtype)
    b = rng.standard_normal(case["cout"]).astype(dtype) if case["bias"] else None
    return x, w, b


def kwargs_of(case):
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    for key in ("data_format", "padding_mode"):
        if key in case:
            kw[key] = case[key]
    return kw


def reduction(case):
    return case["cin"] // case["groups"] * int(np.prod(case["kernel"]))


CASES_2D = range(70)
CASES_1D_3D = [(r, s) for r in (1, 3) for s in range(15)]


def check_forward(rank, case, dtype, rng, on=HOST):
    x, w, b = make_arrays(case, dtype, rng)
    fwd = getattr(convkern, f"conv{rank}d")
    expected = getattr(ref, f"conv{rank}d")(x, w, b, **kwargs_of(case))
    xd, wd, bd = on.put(x), on.put(w), None if b is None else on.put(b)
    out = on.poisoned(expected.shape, dtype)
    y = fwd(xd, wd, bd, **kwargs_of(case), out=out)
    assert y is out
    assert_close(on.get(y), expected, reduction=reduction(case), dtype=dtype, what=str(case))
    # The same call without out= allocates a C-contiguous result.
    y2 = fwd(xd, wd, bd, **kwargs_of(case))
    assert y2.flags.c_contiguous and y2.dtype == dtype
    np.testing.assert_array_equal(on.get(y2), on.get(y))


def check_backward(rank, case, dtype, rng, on=HOST):
    x, w, _ = make_arrays(case, dtype, rng)
    y_shape = getattr(ref, f"conv{rank}d")(x, w, None, **kwargs_of(case)).shape
    dy = relayout(rng.standard_normal(y_shape).astype(dtype), case["layout"], rng)
    backward = getattr(convkern, f"conv{rank}d_backward")
    gi, gw, gb = backward(on.put(dy), on.put(x), on.put(w), **kwargs_of(case))
    ri, rw, rb = getattr(ref, f"conv{rank}d_backward")(dy, x, w, **kwargs_of(case))
    for got in (gi, gw, gb):
        assert got.dtype == dtype and got.flags.c_contiguous
    gi, gw, gb = on.get(gi), on.get(gw), on.get(gb)
    # output_mask computes only what is asked, with the same bits.
    only = [
        backward(on.put(dy), on.put(x), on.put(w), **kwargs_of(case), output_mask=m)
        for m in ((True, False, False), (False, True, False), (False, False, True))
    ]
    for i, (mask, full) in enumerate(zip(only, (gi, gw, gb))):
        assert all(g is None for j, g in enumerate(mask) if j != i)
        np.testing.assert_array_equal(on.get(mask[i]), full)
    kvol = int(np.prod(case["kernel"]))
    positions = max(1, int(np.prod(y_shape)) // max(1, case["cout"]))
    if case.get("padding_mode", "zeros") != "zeros":
        kvol *= 4  # a padded cell's gradient folds several window contributions together
    assert_close(gi, ri, reduction=case["cout"] // case["groups"] * kvol, dtype=dtype, what="grad_input")
    assert_close(gw, rw, reduction=positions, dtype=dtype, what="grad_weight")
    assert_close(gb, rb, reduction=positions, dtype=dtype, what="grad_bias")


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("seed", CASES_2D)
def test_conv2d_forward(seed, dtype, rng):
    check_forward(2, conv_case(seed, 2), dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("seed", CASES_2D)
def test_conv2d_backward(seed, dtype, rng):
    check_backward(2, conv_case(seed, 2), dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("rank,seed", CASES_1D_3D)
def test_conv1d_conv3d_forward_and_backward(rank, seed, dtype, rng):
    case = conv_case(seed, rank)
    check_forward(rank, case, dtype, rng)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize(
    "shape",
    [
        # Shapes that cross the kernels' blocking: more than one reduction block (R > 256), channel
        # counts that are not multiples of the micro-kernel's 12 rows, positions spanning tiles.
        dict(n=2, c=40, k=50, hw=(19, 23), kernel=(3, 3)),
        dict(n=1, c=300, k=13, hw=(6, 7), kernel=(1, 1)),
        dict(n=3, c=7, k=64, hw=(35, 9), kernel=(5, 5)),
        dict(n=2, c=33, k=25, hw=(29, 31), kernel=(3, 3)),
        # >= 32 output channels: the outer-product backward weight, ragged in every dimension
        # (channels past a 12-row block, dW columns past a 16-wide transpose, rows of 5 to 23).
        dict(n=2, c=130, k=37, hw=(9, 11), kernel=(3, 3)),
        dict(n=3, c=1100, k=45, hw=(5, 6), kernel=(1, 1)),
        dict(n=1, c=3, k=32, hw=(25, 23), kernel=(3, 3)),
    ],
)
@pytest.mark.parametrize("fmt", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
def test_conv2d_blocking_edges(shape, dtype, fmt, rng):
    x = rng.standard_normal((shape["n"], shape["c"]) + shape["hw"]).astype(dtype)
    if fmt == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = rng.standard_normal((shape["k"], shape["c"]) + shape["kernel"]).astype(dtype)
    b = rng.standard_normal(shape["k"]).astype(dtype)
    red = shape["c"] * int(np.prod(shape["kernel"]))
    kw = dict(padding=1, data_format=fmt)
    assert_close(convkern.conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw), reduction=red, dtype=dtype)
    dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(dtype)
    got = convkern.conv2d_backward(dy, x, w, **kw)
    want = ref.conv2d_backward(dy, x, w, **kw)
    positions = dy.size // shape["k"]
    for g, r, n in zip(got, want, (shape["k"] * 9, positions, positions)):
        assert_close(g, r, reduction=n, dtype=dtype)


def test_conv2d_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y = convkern.conv2d(x, w)
    assert y.shape == (0, 4, 6, 6)
    gi, gw, gb = convkern.conv2d_backward(np.zeros((0, 4, 6, 6), np.float32), x, w)
    assert gi.shape == x.shape
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)


def test_conv2d_unbatched_matches_batched(rng):
    x = rng.standard_normal((3, 10, 11))
    w = rng.standard_normal((5, 3, 3, 2))
    np.testing.assert_array_equal(convkern.conv2d(x, w, padding="same"), convkern.conv2d(x[None], w, padding="same")[0])


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_other_instruction_sets(isa, tmp_path):
    """The AVX2 and portable micro-kernels, forced through CONVKERN_ISA in a child process."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, convkern\n"
        "from convkern import reference as ref\n"
        f"assert convkern.info()['cpu_isa'] in ({isa!r}, 'generic'), convkern.info()\n"
        "rng = np.random.default_rng(5)\n"
        "for dt, tol in ((np.float32, 2e-4), (np.float64, 1e-10)):\n"
        "    x = rng.standard_normal((2, 13, 17, 15)).astype(dt)\n"
        "    w = rng.standard_normal((19, 13, 3, 4)).astype(dt)\n"
        "    y = convkern.conv2d(x, w, padding=(1, 2), stride=(1, 2))\n"
        "    r = ref.conv2d(x, w, padding=(1, 2), stride=(1, 2))\n"
        "    assert np.allclose(y, r, rtol=tol, atol=tol * 10), abs(y - r).max()\n"
        "    dy = rng.standard_normal(r.shape).astype(dt)\n"
        "    for g, e in zip(convkern.conv2d_backward(dy, x, w, padding=(1, 2), stride=(1, 2)),\n"
        "                    ref.conv2d_backward(dy, x, w, padding=(1, 2), stride=(1, 2))):\n"
        "        assert np.allclose(g, e, rtol=tol, atol=tol * 100), abs(g - e).max()\n"
        "print('ok')\n"
    )
    env = dict(os.environ, CONVKERN_ISA=isa)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(30)] + [(r, s) for r in (1, 3) for s in range(8)])
def test_conv_channels_last(rank, seed, dtype, rng):
    """Channels-last kernels (NWC/NHWC/NDHWC) on the same random geometries."""
    case = dict(conv_case(seed, rank), data_format=CHANNELS_LAST[rank])
    check_forward(rank, case, dtype, rng)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(24)] + [(r, s) for r in (1, 3) for s in range(6)])
def test_conv_channels_last_many_channels(rank, seed, dtype, rng):
    """The same random geometries with 9 to 20 input channels per group: the channels-last GEMM
    kernels themselves (fewer channels per group run through the channels-first ones)."""
    case = dict(conv_case(seed, rank), data_format=CHANNELS_LAST[rank])
    if case["groups"] == case["cin"]:  # depthwise has its own kernels; make it a grouped layer
        case["groups"] = 1
    per_group = 9 + seed % 12
    case["cin"] = case["groups"] * per_group
    check_forward(rank, case, dtype, rng)
    check_backward(rank, case, dtype, rng)


def mode_case(seed, rank):
    """A random geometry whose padding the chosen mode can produce (reflect: < size)."""
    case = conv_case(seed, rank)
    rng = np.random.default_rng(seed)
    case["padding_mode"] = ("reflect", "replicate", "circular")[seed % 3]
    size = tuple(max(s, 4) for s in case["size"])
    pads = tuple(int(rng.integers(0, 4)) for _ in range(rank))
    case.update(size=size, padding=pads if seed % 2 else "same", stride=case["stride"])
    if case["padding"] == "same":
        # "same" pads by about half the dilated kernel: keep it below the input size.
        case["dilation"] = (1,) * rank
        case["kernel"] = tuple(min(k, 3) for k in case["kernel"])
    if seed % 4 == 0:
        case["data_format"] = CHANNELS_LAST[rank]
    return case


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(18)] + [(r, s) for r in (1, 3) for s in range(6)])
def test_conv_padding_modes(rank, seed, dtype, rng):
    case = mode_case(seed, rank)
    check_forward(rank, case, dtype, rng)
    check_backward(rank, case, dtype, rng)


def transpose_case(seed, rank):
    rng = np.random.default_rng(4000 + 100 * rank + seed)
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 6 if rank < 3 else 4, size=rank))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=rank))
    dilation = tuple(int(d) for d in rng.integers(1, 4, size=rank))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    padding = tuple(int(rng.integers(0, 3)) for _ in range(rank))
    size = tuple(int(rng.integers(1, 9 if rank < 3 else 5)) for _ in range(rank))
    # Keep the output size >= 1.
    size = tuple(max(n, 1 + (2 * p) // s) for n, p, s in zip(size, padding, stride))
    last = bool(rng.integers(0, 3) == 0)
    batch = int(rng.choice([0, 1, 2, -1]))
    return dict(
        groups=groups,
        cin=cin,
        cout=cout,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        output_padding=output_padding,
        padding=padding,
        size=size,
        batch=batch,
        data_format=CHANNELS_LAST[rank] if last else None,
        bias=bool(rng.integers(0, 2)),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(25)] + [(r, s) for r in (1, 3) for s in range(8)])
def test_conv_transpose(rank, seed, dtype, rng):
    check_transpose(rank, seed, dtype, rng)


def check_transpose(rank, seed, dtype, rng, on=HOST):
    c = transpose_case(seed, rank)
    layout_last = c["data_format"] is not None
    spatial = c["size"]
    lead = (c["batch"],) if c["batch"] >= 0 else ()
    shape = lead + (spatial + (c["cin"],) if layout_last else (c["cin"],) + spatial)
    x = relayout(rng.standard_normal(shape).astype(dtype), "negative" if seed % 3 == 0 else "contiguous", rng)
    w = rng.standard_normal((c["cin"], c["cout"] // c["groups"]) + c["kernel"]).astype(dtype)
    b = rng.standard_normal(c["cout"]).astype(dtype) if c["bias"] else None
    kw = dict(
        stride=c["stride"],
        padding=c["padding"],
        output_padding=c["output_padding"],
        groups=c["groups"],
        dilation=c["dilation"],
        data_format=c["data_format"],
    )
    xd, wd, bd = on.put(x), on.put(w), None if b is None else on.put(b)
    try:
        expected = getattr(ref, f"conv_transpose{rank}d")(x, w, b, **kw)
    except ValueError:
        with pytest.raises(ValueError):
            getattr(convkern, f"conv_transpose{rank}d")(xd, wd, bd, **kw)
        return
    out = on.poisoned(expected.shape, dtype)
    y = getattr(convkern, f"conv_transpose{rank}d")(xd, wd, bd, **kw, out=out)
    assert y is out
    red = c["cin"] // c["groups"] * int(np.prod(c["kernel"]))
    assert_close(on.get(y), expected, reduction=red, dtype=dtype, what=str(c))
    dy = rng.standard_normal(expected.shape).astype(dtype)
    backward = getattr(convkern, f"conv_transpose{rank}d_backward")
    got = backward(on.put(dy), xd, wd, **kw)
    want = getattr(ref, f"conv_transpose{rank}d_backward")(dy, x, w, **kw)
    positions = max(1, int(np.prod(dy.shape)) // max(1, c["cout"]))
    for g, r, n in zip(got, want, (c["cout"] // c["groups"] * int(np.prod(c["kernel"])), positions, positions)):
        assert g.shape == r.shape and g.dtype == dtype
        assert_close(on.get(g), r, reduction=n, dtype=dtype, what=str(c))
    gi, gw, gb = backward(on.put(dy), xd, wd, **kw, output_mask=(True, False, False))
    assert gw is None and gb is None
    np.testing.assert_array_equal(on.get(gi), on.get(got[0]))


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize(
    "k,width,multiplier,padding",
    [
        (3, 28, 1, 1),
        (3, 16, 1, "same"),
        (3, 1, 1, 1),
        (3, 37, 2, 0),
        (5, 33, 1, 2),
        (5, 7, 3, (0, 4)),
        (7, 40, 1, 3),
        (7, 9, 1, "same"),
    ],
)
def test_depthwise_stencils(k, width, multiplier, padding, last, dtype, rng):
    """The depthwise kernels' compile-time stencils (3x3, 5x5, 7x7, stride 1) at row widths that
    end inside, exactly at and past a vector, with channel multipliers and asymmetric padding."""
    c = 5
    case = dict(
        batch=2,
        cin=c,
        cout=c * multiplier,
        groups=c,
        kernel=(k, k),
        stride=(1, 1),
        dilation=(1, 1),
        padding=padding,
        size=(k + 2, width),
        layout="contiguous",
        bias=True,
    )
    if last:
        case["data_format"] = "NHWC"
    if isinstance(padding, int) and width + 2 * padding < k:
        return
    check_forward(2, case, dtype, rng)
    check_backward(2, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "k,stride,width", [(3, 1, 28), (3, 1, 37), (3, 1, 17), (3, 2, 29), (5, 1, 21), (5, 1, 11), (5, 2, 40)]
)
def test_depthwise_channels_last_register_blocks(k, stride, width, dtype, rng):
    """The channels-last 3x3/5x5 kernels at 40 channels (whole vectors and a tail at every vector
    width) and rows long enough for blocks of 8 positions, a remainder and both borders; at unit
    stride, interiors of 15 and 7 positions take the 4-, 2- and 1-position blocks too."""
    case = dict(
        batch=2,
        cin=40,
        cout=40,
        groups=40,
        kernel=(k, k),
        stride=(stride, stride),
        dilation=(1, 1),
        padding=k // 2,
        size=(k + 3, width),
        layout="contiguous",
        bias=True,
        data_format="NHWC",
    )
    check_forward(2, case, dtype, rng)
    check_backward(2, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("channels", [48, 37, 8])
@pytest.mark.parametrize(
    "k,height,width,padding",
    [
        (3, 7, 20, 1),
        (3, 9, 12, ((0, 2), (1, 1))),
        (5, 10, 16, 2),
        (5, 6, 9, ((1, 0), (2, 2))),
        (3, 3, 30, 1),
        (3, 1, 30, 1),
    ],
)
def test_depthwise_channels_last_row_pairs(k, height, width, padding, channels, dtype, rng):
    """Unit-stride channels-last 3x3/5x5 layers, whose output rows the AVX-512 kernels take in
    pairs: odd output heights (a last row on its own), rows of the pair in the top or bottom
    padding, a single output row, a tail of channels past the whole vectors (37) and fewer
    channels than a vector (8), against the reference in a NaN-poisoned out=."""
    case = dict(
        batch=3,
        cin=channels,
        cout=channels,
        groups=channels,
        kernel=(k, k),
        stride=(1, 1),
        dilation=(1, 1),
        padding=padding,
        size=(height, width),
        layout="contiguous",
        bias=True,
        data_format="NHWC",
    )
    check_forward(2, case, dtype, rng)
    check_backward(2, case, dtype, rng)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_depthwise_weight_gradient_sees_padding_times_infinite_grad(last, batch):
    """dy infinite at a corner: the taps that read padding there get Inf * 0 = NaN, as in PyTorch;
    the others stay finite (whole vectors of channels, so the channels-last fast paths run: five
    images take the blocks of images)."""
    c = 32
    x = np.ones((batch, c, 12, 20), np.float32)
    w = np.ones((c, 1, 3, 3), np.float32)
    dy = np.ones((batch, c, 12, 20), np.float32)
    dy[:, :, 0, 0] = np.inf
    fmt = "NHWC" if last else "NCHW"
    if last:
        x, dy = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    _, gw, _ = convkern.conv2d_backward(dy, x, w, padding=1, groups=c, data_format=fmt)
    with np.errstate(invalid="ignore"):
        _, rw, _ = ref.conv2d_backward(dy, x, w, padding=1, groups=c, data_format=fmt)
    assert np.isnan(rw[:, 0, 0, 0]).all() and np.isinf(rw[:, 0, 2, 2]).all()
    np.testing.assert_array_equal(gw, rw.astype(np.float32))


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_depthwise_weight_gradient_ignores_cells_no_tap_reads(last):
    """An infinite input in the last column is read by taps kw >= 1 only: the weight gradient of
    tap kw = 0 stays finite (lanes past the row must not multiply it by zero)."""
    x = np.ones((1, 2, 3, 20), np.float32)
    x[:, :, :, -1] = np.inf
    w = np.ones((2, 1, 3, 3), np.float32)
    dy = np.ones((1, 2, 3, 20), np.float32)
    fmt = "NHWC" if last else "NCHW"
    if last:
        x, dy = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    _, gw, _ = convkern.conv2d_backward(dy, x, w, padding=1, groups=2, data_format=fmt)
    _, rw, _ = ref.conv2d_backward(dy, x, w, padding=1, groups=2, data_format=fmt)
    assert np.isfinite(rw[:, :, :, 0]).all()
    np.testing.assert_array_equal(gw, rw.astype(np.float32))


LAST_FORMATS = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
FIRST_FORMATS = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def one_group_case(rank, cin, cout, kernel, stride, dilation, padding, size, *, batch, bias, last=True):
    """A case for check_forward / check_backward: one group, contiguous arrays; a stride or dilation
    given as an int applies to every axis."""

    def per_axis(v):
        return v if isinstance(v, tuple) else (v,) * rank

    return dict(
        batch=batch,
        cin=cin,
        cout=cout,
        groups=1,
        kernel=kernel,
        stride=per_axis(stride),
        dilation=per_axis(dilation),
        padding=padding,
        size=size,
        layout="contiguous",
        bias=bias,
        data_format=(LAST_FORMATS if last else FIRST_FORMATS)[rank],
    )


@pytest.fixture
def poisoned_allocations(monkeypatch):
    """Every array the host backend allocates (gradients have no out=) starts NaN-filled, so that
    an element a kernel leaves unwritten shows."""
    from convkern import _backend

    monkeypatch.setattr(_backend.HostBackend, "empty", lambda self, shape, dt: np.full(tuple(shape), np.nan, dt))


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,dilation,padding,size",
    [
        (2, 3, 64, (7, 7), 2, 1, 3, (30, 37)),  # a first layer: few channels, strided
        (2, 3, 40, (3, 3), 1, 1, "same", (9, 29)),  # few channels, unit stride; an edge n-panel
        (2, 6, 70, (3, 3), 2, (2, 1), 1, (15, 26)),  # strided, dilated rows
        (2, 8, 32, (1, 3), (1, 3), 1, (0, 2), (5, 50)),
        (1, 5, 33, (5,), 2, 1, 2, (41,)),
        (1, 8, 32, (40,), 1, 1, 3, (90,)),  # kernel rows longer than one call's depth
        (3, 2, 36, (3, 3, 3), (2, 1, 2), 1, 1, (5, 6, 27)),
        (2, 64, 64, (3, 3), 2, 1, 1, (5, 28)),  # many channels, strided, 14 outputs a row (AVX-512)
        (2, 20, 40, (3, 5), 1, 1, (1, 2), (4, 56)),  # many channels, unit stride, whole tiles
        (2, 16, 70, (5, 5), 1, (2, 1), (1, 2), (7, 33)),  # a padded row's last tile, an edge n-panel
        (1, 16, 32, (9,), 1, 1, 4, (300,)),
        (3, 12, 32, (2, 3, 3), 1, 1, (0, 1, 1), (3, 4, 24)),
        (2, 6, 16, (5, 5), 1, 1, 0, (14, 14)),  # LeNet's second layer: 16 outputs, rows of 10
        (2, 24, 16, (3, 3), 1, 1, 1, (6, 28)),  # 16 outputs on rows of 14 (one-vector kernels)
        (2, 5, 11, (3, 3), 1, 1, 0, (6, 23)),  # fewer outputs than one vector, a last tile past the row
    ],
)
def test_channels_last_forward_by_kernel_rows(rank, cin, cout, kernel, stride, dilation, padding, size, dtype, rng):
    """Channels-last forward passes that read each kernel row's kW x C input values in place (one
    group, undilated columns, a panel of output channels; few input channels, or unit stride, or
    rows of whole tiles): rows ending inside and past whole tiles of positions, output channels
    past a whole n-panel."""
    case = one_group_case(rank, cin, cout, kernel, stride, dilation, padding, size, batch=2, bias=True)
    check_forward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,padding,size",
    [
        (2, 64, 64, (3, 3), 2, 1, (6, 28)),  # 14 outputs a row
        (2, 16, 40, (3, 3), 2, 1, (5, 56)),  # 28 outputs a row (AVX-512: by kernel rows), an edge n-panel
        (2, 24, 40, (3, 3), 2, 1, (9, 17)),  # rows of 9, an edge n-panel
        (1, 16, 32, (5,), 3, 2, (40,)),
        (3, 12, 20, (3, 3, 3), 2, 1, (5, 6, 9)),
    ],
)
def test_channels_first_strided_forward(rank, cin, cout, kernel, stride, padding, size, dtype, rng):
    """Strided channels-first forwards with many input channels (by kernel rows, transposing in
    cache, where its tiles fit the output rows; else on channels-last copies or the channels-first
    GEMM): every output element against the reference, in an out= buffer NaN-poisoned."""
    case = one_group_case(rank, cin, cout, kernel, stride, 1, padding, size, batch=2, bias=True, last=False)
    check_forward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,padding,size",
    [
        (2, 6, 16, (5, 5), 1, 0, (14, 14)),  # LeNet's second layer
        (2, 3, 10, (3, 3), 1, 1, (8, 28)),  # padded, fewer outputs than one vector
        (2, 8, 16, (3, 5), 2, (1, 2), (9, 40)),  # strided: rows of 20 outputs, a tile past the row
        (1, 4, 12, (7,), 1, 3, (50,)),
        (2, 3, 64, (7, 7), 2, 3, (30, 37)),  # a strided first layer: 64 outputs
        (2, 6, 70, (3, 3), 2, 1, (15, 26)),  # an edge n-panel
        (1, 5, 33, (5,), 2, 2, (41,)),
        (3, 2, 36, (3, 3, 3), (2, 1, 2), 1, (5, 6, 27)),
    ],
)
def test_channels_first_forward_by_kernel_rows(rank, cin, cout, kernel, stride, padding, size, dtype, rng):
    """Channels-first forwards of layers with few input channels, LeNet-sized (at most 16 outputs)
    or strided, run by kernel rows: the input interleaved into a padded channels-last copy, each
    output row transposed into its planes. Every output element against the reference, in an
    out= buffer NaN-poisoned."""
    case = one_group_case(rank, cin, cout, kernel, stride, 1, padding, size, batch=3, bias=True, last=False)
    check_forward(rank, case, dtype, rng)


@pytest.mark.parametrize("size", [(224, 224), (230, 222)])
def test_channels_first_forward_streams_large_outputs(size, rng):
    """A channels-first strided first layer whose output passes 8 MiB: its rows are transposed
    into their planes with non-temporal stores wherever a 64-byte line is whole (112 outputs a row:
    every line; 111: rows straddle lines, both kinds of store meet). Every output element against
    the reference, in an out= buffer NaN-poisoned."""
    case = one_group_case(2, 3, 64, (7, 7), 2, 1, 3, size, batch=3, bias=True, last=False)
    check_forward(2, case, np.float32, rng)


@pytest.mark.parametrize("data_format", ["first", "last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cout,kernel,padding,size,batch",
    [
        (2, 6, (5, 5), 0, (32, 32), 5),  # LeNet's first layer
        (2, 8, (3, 3), 1, (9, 21), 4),  # padded; rows past one vector
        (2, 1, (2, 4), (1, 2), (7, 5), 6),  # one output; asymmetric kernel: the general stencil
        (1, 3, (7,), 3, (50,), 4),
        (3, 4, (3, 3, 3), 1, (4, 6, 19), 4),
        (2, 6, (5, 5), 0, (12, 12), 3),  # 3 images: the GEMM route
    ],
)
def test_grey_forward_by_stencils(rank, cout, kernel, padding, size, batch, dtype, data_format, rng):
    """One-channel layers with at most 8 outputs, unit stride, from 4 images: the forward runs the
    depthwise stencils with a channel multiplier of K (channels-last ones through their channels-first
    output copy), bias added. Every output element against the reference, in an out= buffer
    NaN-poisoned."""
    case = one_group_case(
        rank, 1, cout, kernel, 1, 1, padding, size, batch=batch, bias=True, last=data_format == "last"
    )
    check_forward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,padding,size",
    [
        (2, 32, 24, (3, 3), 2, 1, (7, 56)),  # 28 cells a phase: whole tiles of 14 (AVX-512)
        (2, 40, 20, (3, 3), 2, 1, (6, 66)),  # phases of 33: a last tile past the row; an edge panel
        (2, 48, 16, (3, 3), (2, 3), (1, 0), (5, 72)),  # stride 3 along W: three phases
        (2, 32, 8, (1, 1), 2, 0, (6, 56)),  # phases and rows no tap reaches
        (2, 33, 16, (2, 2), 3, 1, (7, 72)),  # kernel smaller than the stride
        (2, 64, 16, (5, 5), 1, 2, (5, 24)),  # unit stride: the transposed convolution itself
        (1, 32, 16, (9,), 1, 4, (120,)),
        (1, 32, 24, (4,), 2, 1, (48,)),
        (3, 32, 8, (3, 3, 3), 2, 1, (5, 4, 56)),
    ],
)
def test_channels_last_backward_data_by_phases(
    rank, cin, cout, kernel, stride, padding, size, dtype, rng, poisoned_allocations
):
    """Channels-last backward data by stride phases (one group, undilated, a panel of input
    channels, phase rows of nearly whole tiles), every cell checked against the reference, in
    grad_input allocated NaN-poisoned."""
    case = one_group_case(rank, cin, cout, kernel, stride, 1, padding, size, batch=2, bias=False)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize("data_format", ["first", "last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,padding,size",
    [
        (2, 6, 16, (5, 5), 0, (14, 14)),  # LeNet's second layer
        (2, 5, 14, (5, 5), 1, (10, 12)),  # under AVX2 taps as rows (25 of 30) and 14 of 16 columns
        (2, 8, 20, (3, 3), 1, (9, 11)),  # padded; an edge block of output channels
        (1, 4, 12, (7,), 3, (40,)),
        (3, 8, 8, (2, 3, 3), (0, 1, 1), (3, 5, 12)),
        (2, 1, 6, (5, 5), 0, (12, 11)),  # LeNet's first layer: kernel rows stacked, K widened
        (2, 3, 10, (3, 3), 1, (9, 13)),  # RGB, padded: 27 stacked taps
        (3, 1, 8, (2, 3, 3), (1, 1, 0), (3, 6, 9)),  # stacked per depth plane
    ],
)
def test_backward_weight_by_image_blocks(
    rank, cin, cout, kernel, padding, size, dtype, data_format, rng, poisoned_allocations
):
    """Weight gradients of small unit-stride layers with few input channels, each output row one
    stretch of the micro-kernel's reduction with both operands read in place (3-D: a call per
    output depth), a kernel row's taps alone or all kernel rows' stacked, in both layouts
    (channels-first ones on channels-last copies); output channels short of whole tiles (6, 10, 14,
    20: grad_output read past each position's channels, the last image widened); 9 images: blocks
    of images summed apart, the last one partial; grad_weight allocated NaN-poisoned."""
    last = data_format == "last"
    case = one_group_case(rank, cin, cout, kernel, 1, 1, padding, size, batch=9, bias=False, last=last)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize("data_format", ["first", "last"])
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,dilation,padding,size",
    [
        (2, 6, 16, (5, 5), 1, 1, 0, (14, 14)),  # LeNet's second layer: rows of 10, 14 cells touched
        (2, 3, 8, (3, 2), 1, 1, (1, 0), (9, 7)),
        (1, 4, 5, (7,), 1, 1, 3, (10,)),  # a row and its shifted copies span exactly 16 cells
        (2, 5, 7, (2, 4), 1, 1, 2, (6, 13)),  # 17 cells: the run-by-run scatter
        (2, 4, 6, (3, 3), (2, 1), (2, 1), 1, (11, 9)),  # strided and dilated along H only
        (2, 4, 6, (3, 3), (1, 2), 1, 1, (8, 9)),  # strided along W: the run-by-run scatter
        (3, 2, 4, (2, 3, 3), 1, 1, 1, (3, 5, 6)),
    ],
)
def test_backward_data_over_short_rows(
    rank, cin, cout, kernel, stride, dilation, padding, size, data_format, rng, poisoned_allocations
):
    """Input gradients of layers with short output rows through the channels-first col2im, whose
    scatter sums a row's kernel-width taps in registers before adding them to the gradient;
    several images per tile of positions, float32 (the vector path) against the reference, the
    gradients allocated NaN-poisoned."""
    case = one_group_case(
        rank, cin, cout, kernel, stride, dilation, padding, size, batch=5, bias=False, last=data_format == "last"
    )
    check_backward(rank, case, np.float32, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,dilation,padding,size",
    [
        (2, 3, 64, (7, 7), 2, 1, 3, (9, 70)),  # a first layer: RGB, strided, 35 outputs a row
        (2, 1, 32, (3, 3), 1, (2, 1), 1, (7, 40)),  # grey, dilated rows
        (2, 8, 48, (2, 5), (1, 3), 1, (0, 2), (4, 110)),  # a panel past K under AVX-512's 32
        (1, 4, 32, (5,), 2, 1, 2, (80,)),
        (3, 2, 32, (3, 3, 3), (1, 2, 2), 1, 1, (3, 5, 70)),
    ],
)
@pytest.mark.parametrize("data_format", ["last", "first"])
def test_backward_weight_by_kernel_rows(
    rank, cin, cout, kernel, stride, dilation, padding, size, dtype, data_format, rng, poisoned_allocations
):
    """Weight gradients of layers with few input channels, one GEMM per output row and kernel row
    with both channels-last operands read in place, partial sums per block of rows (strided
    channels-first layers interleave the input into the padded copy and transpose grad_output row
    by row, the others take their own route); grad_weight allocated NaN-poisoned."""
    last = data_format == "last"
    case = one_group_case(rank, cin, cout, kernel, stride, dilation, padding, size, batch=3, bias=False, last=last)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,cin,cout,kernel,stride,dilation,padding,size",
    [
        (2, 40, 64, (3, 3), 2, 1, 1, (17, 15)),  # a ResNet downsampling 3x3 at a small size
        (2, 33, 32, (3, 5), (2, 3), (2, 1), (1, 2), (13, 14)),  # columns past whole tiles, dilated H
        (2, 20, 64, (5, 5), 3, 1, 2, (20, 21)),  # taps reading padding on both sides
        (1, 24, 32, (7,), 4, 1, 3, (61,)),
        (3, 16, 32, (3, 3, 3), (2, 2, 2), 1, 1, (5, 7, 9)),
        (2, 12, 32, (3, 3), 2, 1, 1, (48, 7)),  # 72 output rows of 4: two blocks, partials added
    ],
)
@pytest.mark.parametrize("data_format", ["last", "first"])
def test_backward_weight_of_strided_wide_layers_by_kernel_rows(
    rank, cin, cout, kernel, stride, dilation, padding, size, dtype, data_format, rng, poisoned_allocations
):
    """Strided layers with many input channels: weight gradient by kernel rows from panels of a
    few output rows' input runs (zeros for padding taps) against grad_output's rows, blocks of
    rows summing into partials added in block order (channels-first layers on channels-last
    copies); grad_weight allocated NaN-poisoned."""
    last = data_format == "last"
    case = one_group_case(rank, cin, cout, kernel, stride, dilation, padding, size, batch=3, bias=False, last=last)
    check_backward(rank, case, dtype, rng)


def test_strided_wide_weight_gradient_sees_padding_times_infinite_grad():
    """An infinite gradient at an output whose window reads padding: those taps' weights get
    Inf * 0 = NaN, as in the zero-padded product (PyTorch too), the others stay finite."""
    c, k = 16, 32
    x = np.ones((1, 9, 9, c), np.float32)
    w = np.ones((k, c, 3, 3), np.float32)
    dy = np.ones((1, 5, 5, k), np.float32)
    dy[0, 0, 0, :] = np.inf
    _, gw, _ = convkern.conv2d_backward(
        dy, x, w, stride=2, padding=1, data_format="NHWC", output_mask=(False, True, False)
    )
    with np.errstate(invalid="ignore"):
        _, rw, _ = ref.conv2d_backward(dy, x, w, stride=2, padding=1, data_format="NHWC")
    assert np.isnan(rw[:, :, 0, 0]).all() and np.isinf(rw[:, :, 1, 1]).all()
    np.testing.assert_array_equal(gw, rw.astype(np.float32))


def pointwise_case(rank, groups, cin, cout, size, *, bias, last):
    """A 1x1, unit-stride, unpadded case of three images for check_forward / check_backward."""
    return dict(
        batch=3,
        cin=cin,
        cout=cout,
        groups=groups,
        kernel=(1,) * rank,
        stride=(1,) * rank,
        dilation=(1,) * rank,
        padding=0,
        size=size,
        layout="contiguous",
        bias=bias,
        data_format=(LAST_FORMATS if last else FIRST_FORMATS)[rank],
    )


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,groups,cin,cout",
    [(2, 1, 64, 40), (2, 2, 30, 26), (1, 1, 7, 50), (3, 3, 9, 39), (2, 1, 100, 300), (2, 1, 512, 40), (2, 2, 1024, 48)],
)
def test_pointwise_convolution(rank, groups, cin, cout, dtype, last, rng):
    """1x1, unit stride, no padding: backward data runs as the transposed-weight forward pass; in
    channels-last the weight gradient reads both activations in place, packing only the edge
    tiles (dW rows and columns past whole micro-kernel tiles, and groups' neighbouring channels),
    and the input's panels where its rows are a multiple of 2 KiB apart (512 and 1024 channels);
    the forward copies its positions into slabs where its rows are 4 KiB apart (1024 float or 512
    double channels, under AVX-512's tiles of 12-14 rows), a group's channels at an offset."""
    size = {1: (67,), 2: (9, 11), 3: (5, 7, 3)}[rank]  # several steps of 128 positions
    case = pointwise_case(rank, groups, cin, cout, size, bias=True, last=last)
    check_forward(rank, case, dtype, rng)
    check_backward(rank, case, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,groups,cin,cout,size",
    [
        (2, 1, 7, 10, (30, 37)),  # 1110 positions an image: three tiles; dW past whole 4 x 4 blocks
        (1, 2, 12, 18, (1300,)),  # two groups, each reading its own rows of both operands
        (3, 1, 9, 33, (4, 9, 15)),  # 540 positions: two tiles of 270
    ],
)
def test_pointwise_channels_first_weight_gradient_in_place(
    rank, groups, cin, cout, size, dtype, rng, poisoned_allocations
):
    """Channels-first pointwise weight gradients in the inner-product form read grad_output's and
    the input's rows where they are, image by image, each image's positions cut into equal tiles
    of at most 512 (summed in order); rows past dW's edges read zeros; grad_weight allocated
    NaN-poisoned."""
    check_backward(rank, pointwise_case(rank, groups, cin, cout, size, bias=False, last=False), dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "batch,channels,stride,dilation,padding,size",
    [
        (70, 20, 1, 1, 1, (4, 6)),
        (5, 72, 1, 1, 1, (4, 6)),
        (3, 40, 1, 1, 1, (4, 6)),
        (6, 37, 1, 1, 1, (5, 21)),
        (4, 48, 2, 1, 1, (7, 40)),
        (5, 16, 1, 2, 2, (6, 25)),
        (4, 20, 3, 1, 0, (3, 50)),
        (66, 20, 1, 1, 1, (3, 12)),
    ],
)
def test_depthwise_channels_last_weight_gradient_by_blocks_of_images(
    batch, channels, stride, dilation, padding, size, dtype, rng
):
    """The channels-last 3x3 weight gradient by blocks of images (from 4 images on; two images a
    block past 64), summed apart into partial taps added in block order. Reading in place: rows
    wide enough for blocks of 8 interior positions (4 for rows in pairs at unit stride, odd
    heights leaving a row on its own), strides and dilation (taps a position step apart, one row
    at a time; under AVX2 and SSE these copy the images into planes of lines), rows in the padding
    (dy * 0 added), a tail of channels past the whole vectors; rows too short for a block (4 x 6).
    Under AVX-512 three images take the in-place lines over the whole batch instead."""
    case = dict(
        batch=batch,
        cin=channels,
        cout=channels,
        groups=channels,
        kernel=(3, 3),
        stride=(stride, stride),
        dilation=(dilation, dilation),
        padding=padding,
        size=size,
        layout="contiguous",
        bias=False,
        data_format="NHWC",
    )
    check_backward(2, case, dtype, rng)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("k,stride,dilation,padding", [(3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 2, "same"), (3, 3, 1, 0)])
def test_depthwise_strided_and_dilated(k, stride, dilation, padding, last, rng):
    """Depthwise 3x3/5x5 with stride or dilation: the compile-time channels-last stencil (forward;
    unit-stride input gradient) and the general kernels, 40 channels (two vectors and a tail)."""
    case = dict(
        batch=2,
        cin=40,
        cout=40,
        groups=40,
        kernel=(k, k),
        stride=(stride, stride),
        dilation=(dilation, dilation),
        padding=padding,
        size=(11, 13),
        layout="contiguous",
        bias=True,
    )
    if last:
        case["data_format"] = "NHWC"
    check_forward(2, case, np.float32, rng)
    check_backward(2, case, np.float32, rng)
