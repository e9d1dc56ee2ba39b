"""The CUDA kernels (convkern._cuda) and the public API on CUDA arrays, against convkern.reference.

Skipped where CuPy, a CUDA build of convkern or a visible GPU is missing. Three layers:
- kernel level: convkern._cuda called with the arrays and arguments the op layers (_conv_ops,
  _pool_ops) build, so they check exactly the contract the routing relies on;
- the CuPy-facing backend (_cuda_backend): device rules, torch CUDA tensors;
- the public API: the host tests' own bodies (test_conv.check_forward, test_pool.check_pool ...) run
  with CUDA arrays in and out, plus the device rules (mixed host/CUDA calls, out= on the inputs'
  device) and an nn model moved with .to("cuda").

Without a GPU, the kernel-level and public-API tests can also run on the CPU through an emulated
build of the same CUDA sources (tools/cuda_emulation/build.sh): point CONVKERN_CUDA_EMULATION_MODULE
at its output folder. Host NumPy arrays then stand in for device arrays at the kernel level, and
tests/emulated_cupy.py stands in for CuPy at the API level.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import convkern
import numpy as np
import pytest
from conftest import assert_close
from convkern import _C
from convkern import reference as ref
from convkern._args import pad3
from convkern._conv_ops import _ConvCall, _ConvTransposeCall, _unpad_by_mode
from convkern._pool_ops import _PoolCall
from test_conv import conv_case, kwargs_of, make_arrays, mode_case, reduction, transpose_case
from test_pool import _inputs, pool_case

# float16 is a CUDA-only dtype (float32 arithmetic, one rounding to half per stored element); the
# references run in float64 on the float16 values, and conftest.assert_close explains its tolerance.
DTYPES = (np.float16, np.float32, np.float64)
DTYPE_IDS = ("f16", "f32", "f64")
FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


# --------------------------------------------------------------------------------------------
# The device under test: a GPU through CuPy, or the emulated module on the host
# --------------------------------------------------------------------------------------------


class Device:
    """Moves arrays to and from the device the kernels run on and gives them a stream."""

    def __init__(self, mod, xp, emulated: bool):
        self.mod, self.xp, self.emulated = mod, xp, emulated

    @property
    def stream(self) -> int:
        return 0 if self.emulated else self.xp.cuda.get_current_stream().ptr

    def sync(self) -> None:
        if self.emulated:
            self.mod.synchronize()
        else:
            self.xp.cuda.get_current_stream().synchronize()

    def put(self, a):
        return self.xp.asarray(np.ascontiguousarray(a))

    def get(self, a) -> np.ndarray:
        self.sync()
        return self.xp.asnumpy(a)

    def poisoned(self, shape, dtype):
        return self.xp.full(tuple(shape), np.nan, dtype=dtype)

    def indices(self, shape):
        return self.xp.full(tuple(shape), -7, dtype=np.int64)

    def bytes(self, n: int):
        return self.xp.zeros((max(int(n), 1),), dtype=np.uint8) if n else None


@functools.cache  # one load of the extension per session
def _emulated_module():
    folder = os.environ.get("CONVKERN_CUDA_EMULATION_MODULE")
    if not folder:
        return None
    paths = glob.glob(os.path.join(folder, "_cuda*.so"))
    if not paths:
        pytest.fail(f"CONVKERN_CUDA_EMULATION_MODULE={folder} holds no _cuda*.so")
    spec = importlib.util.spec_from_file_location("_cuda", paths[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.architectures() == ["emulated"], f"{paths[0]} is not an emulated build"
    return mod


def _cupy_or_skip():
    cupy = pytest.importorskip("cupy")
    from convkern import _cuda_backend

    if not _cuda_backend.built():
        pytest.skip("convkern was built without its CUDA backend (no nvcc at install time)")
    if _cuda_backend.device_count() == 0:
        pytest.skip("no CUDA device is visible")
    return cupy


@pytest.fixture(scope="module")
def dev() -> Device:
    mod = _emulated_module()
    if mod is not None:
        import emulated_cupy

        return Device(mod, emulated_cupy, emulated=True)
    cupy = _cupy_or_skip()
    from convkern import _cuda

    return Device(_cuda, cupy, emulated=False)


@pytest.fixture(scope="module")
def cupy_dev():
    """Tests of the CuPy-facing layers: a real GPU only."""
    cupy = _cupy_or_skip()
    from convkern import _cuda

    return Device(_cuda, cupy, emulated=False)


# --------------------------------------------------------------------------------------------
# Convolution, kernel level
# --------------------------------------------------------------------------------------------


def _for_parsing(a):
    """An array for the op layers' call objects (_ConvCall, _PoolCall ...), which parse their
    arguments on the host, where float16 is refused: here they only read shapes and arguments
    from it, so float16 values stand in as float32 (exactly)."""
    return a.astype(np.float32) if a is not None and a.dtype == np.float16 else a


def _conv_call(rank, case, x, w, b):
    kw = kwargs_of(case)
    x, w, b = _for_parsing(x), _for_parsing(w), _for_parsing(b)
    return _ConvCall(
        rank,
        x,
        w,
        b,
        kw["stride"],
        kw["padding"],
        kw["dilation"],
        kw["groups"],
        kw.get("padding_mode", "zeros"),
        kw.get("data_format"),
    )


def _conv_forward(dev, c, x5, w5, b):
    y5 = dev.poisoned(c.phys(c.y_shape), x5.dtype)
    dev.mod.conv_forward(dev.put(x5), dev.put(w5), None if b is None else dev.put(b), y5, c.args, dev.stream)
    return dev.get(y5).reshape(c.user_shape(c.y_shape))


def _conv_backward(dev, c, dy, x5, w5):
    """(grad_input, grad_weight, grad_bias) exactly as _conv_ops._conv_backward computes them."""
    dtype = x5.dtype
    dy5 = dev.put(np.ascontiguousarray(dy[None] if c.unbatched else dy).reshape(c.phys(c.y_shape)))
    xd, wd = dev.put(x5), dev.put(w5)
    dx = dev.poisoned(c.phys(c.kernel_shape), dtype)
    dw = dev.poisoned(c.w_shape5, dtype)
    db = dev.poisoned((c.w.shape[0],), dtype)
    dev.mod.conv_backward_data(dy5, wd, dx, c.args, dev.stream)
    ws = dev.bytes(dev.mod.conv_backward_weight_workspace(xd, dw, c.args))
    dev.mod.conv_backward_weight(dy5, xd, dw, ws, c.args, dev.stream)
    dev.mod.channel_sum(dy5, db, c.last, dev.stream)
    from convkern._args import user_shape

    gx = dev.get(dx).reshape(user_shape(c.kernel_shape, False, c.last))
    if c.mode != "zeros":
        gx = _unpad_by_mode(gx, c.spatial_axes(), *c.mode_pads, c.mode)
    return (gx[0] if c.unbatched else gx), dev.get(dw).reshape(c.w.shape), dev.get(db)


def _check_conv(dev, rank, case, dtype, rng):
    x, w, b = make_arrays(case, dtype, rng)
    kw = kwargs_of(case)
    c = _conv_call(rank, case, x, w, b)
    x5, w5 = c.x5().astype(dtype), c.w5().astype(dtype)
    y = _conv_forward(dev, c, x5, w5, b)
    expected = getattr(ref, f"conv{rank}d")(x, w, b, **kw)
    assert_close(y, expected, reduction=reduction(case), dtype=dtype, what=f"forward {case}")

    dy = rng.standard_normal(expected.shape).astype(dtype)
    gi, gw, gb = _conv_backward(dev, c, dy, x5, w5)
    ri, rw, rb = getattr(ref, f"conv{rank}d_backward")(dy, x, w, **kw)
    kvol = int(np.prod(case["kernel"]))
    positions = max(1, int(np.prod(expected.shape)) // max(1, case["cout"]))
    if case.get("padding_mode", "zeros") != "zeros":
        kvol *= 4
    assert_close(gi, ri, reduction=case["cout"] // case["groups"] * kvol, dtype=dtype, what=f"grad_input {case}")
    assert_close(gw, rw, reduction=positions, dtype=dtype, what=f"grad_weight {case}")
    assert_close(gb, rb, reduction=positions, dtype=dtype, what=f"grad_bias {case}")


CONV_CASES = [(2, s) for s in range(40)] + [(r, s) for r in (1, 3) for s in range(12)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("rank,seed", CONV_CASES)
def test_conv(dev, rank, seed, last, dtype, rng):
    case = conv_case(seed, rank)
    if last:
        case["data_format"] = LAST[rank]
    _check_conv(dev, rank, case, dtype, rng)


@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(12)] + [(1, 0), (3, 0), (3, 1)])
def test_conv_padding_modes(dev, rank, seed, rng):
    _check_conv(dev, rank, mode_case(seed, rank), np.float64, rng)


@pytest.fixture(params=[1, 2, 3], ids=("v1", "v2", "v3"))
def kernel_version(request, dev):
    """Runs a test with each generation of the convolution GEMM kernels (process-wide setting),
    restoring the default afterwards."""
    before = dev.mod.conv_kernel_version()
    dev.mod.set_conv_kernel_version(request.param)
    try:
        yield request.param
    finally:
        dev.mod.set_conv_kernel_version(before)


def test_conv_kernel_version_is_checked(dev):
    assert dev.mod.conv_kernel_version() == dev.mod.conv_kernel_version_default == 2
    assert dev.mod.conv_kernel_version_latest == 3 and not dev.mod.conv_allow_tf32()
    with pytest.raises(ValueError, match="version must be 1 to 3, got 4"):
        dev.mod.set_conv_kernel_version(4)
    assert dev.mod.conv_kernel_version() == 2


def _round_tf32(a):
    """float32 values rounded to TF32's 10 mantissa bits, to nearest with ties away from zero
    (cvt.rna.tf32.f32)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    finite = (u & 0x7F800000) != 0x7F800000
    u = np.where(finite, (u + 0x1000) & 0xFFFFE000, u).astype(np.uint32)
    return u.view(np.float32)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize(
    "shape",
    [(2, 70, 9, 11, 67, 3, 1, 1, 1), (1, 256, 6, 6, 24, 3, 1, 1, 1), (2, 12, 10, 10, 36, 3, 2, 1, 2)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_conv_forward_tf32(dev, shape, last, rng):
    # Version 3 with TF32 allowed: the forward rounds both operands to TF32 and accumulates in
    # float32, so it matches the float32 reference of the rounded operands.
    n, c, h, w, k, ks, st, p, g = shape
    case = dict(
        batch=n,
        cin=c,
        cout=k,
        groups=g,
        kernel=(ks, ks),
        stride=(st, st),
        dilation=(1, 1),
        padding=p,
        size=(h, w),
        layout="contiguous",
        bias=True,
    )
    if last:
        case["data_format"] = "NHWC"
    x, wt, b = make_arrays(case, np.float32, rng)
    cc = _conv_call(2, case, x, wt, b)
    dev.mod.set_conv_kernel_version(3)
    dev.mod.set_conv_allow_tf32(True)
    try:
        y = _conv_forward(dev, cc, cc.x5().astype(np.float32), cc.w5().astype(np.float32), b)
    finally:
        dev.mod.set_conv_allow_tf32(False)
        dev.mod.set_conv_kernel_version(2)
    want = ref.conv2d(_round_tf32(x), _round_tf32(wt), b, **kwargs_of(case))
    assert_close(y, want, reduction=reduction(case), dtype=np.float32, what=f"tf32 forward {case}")
    exact = ref.conv2d(x, wt, b, **kwargs_of(case))
    assert np.abs(y - exact).max() > 0  # TF32 did round (the inputs are not TF32 values)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(16)] + [(r, s) for r in (1, 3) for s in range(4)])
def test_conv_v1(dev, rank, seed, last, dtype, rng):
    # The previous GEMM generation stays runnable (and benchmarked) beside the default one.
    dev.mod.set_conv_kernel_version(1)
    try:
        case = conv_case(seed, rank)
        if last:
            case["data_format"] = LAST[rank]
        _check_conv(dev, rank, case, dtype, rng)
    finally:
        dev.mod.set_conv_kernel_version(2)


@pytest.mark.parametrize(
    "shape",
    [
        # (N, C, H, W, K, kernel, stride, padding, groups): several tiles in every GEMM dimension,
        # reductions over many 16-deep steps, split-K backward weight, ragged edges.
        (2, 70, 9, 11, 67, 3, 1, 1, 1),
        (3, 33, 17, 13, 130, 3, 2, 1, 1),
        (1, 12, 40, 40, 8, 5, 1, 2, 2),
        (4, 16, 30, 30, 16, 3, 1, 1, 16),  # depthwise (direct kernels)
        (2, 8, 21, 19, 24, 3, 2, 0, 8),  # depthwise multiplier 3, stride 2
        (2, 1, 32, 32, 6, 5, 1, 0, 1),  # one input channel: direct kernels
        # Narrow channel sides take the direct kernels: backward data of a first layer (3 input
        # channels, 7x7 stride 2), a forward to 3 outputs over 40 channels, 6 + 6 channels in
        # each of 2 groups (forward and backward data direct, weight gradient GEMM).
        (2, 3, 23, 21, 20, 7, 2, 3, 1),
        (2, 40, 11, 9, 3, 3, 1, 1, 1),
        (2, 12, 10, 10, 12, 3, 1, 1, 2),
        # Depthwise and one-channel weight gradients over thousands of positions: summed in
        # chunks (7 and 6 here) through the workspace, added in order.
        (4, 6, 40, 40, 6, 3, 1, 1, 6),
        (2, 1, 64, 48, 6, 5, 1, 2, 1),
        (2, 40, 24, 24, 40, 3, 1, 1, 40),  # channels-last: 32-channel blocks, 2 chunks
        # Small grids over long reductions: v2 splits the forward (first case) and backward-data
        # (second case, two groups) reductions into 9 and 4 parts and adds them in order.
        (1, 256, 6, 6, 24, 3, 1, 1, 1),
        (1, 24, 6, 5, 256, 3, 1, 1, 2),
    ],
    ids=lambda s: "x".join(map(str, s)),
)
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_conv_tiling(dev, shape, last, dtype, rng, kernel_version):
    n, c, h, w, k, ks, s, p, g = shape
    case = dict(
        batch=n,
        cin=c,
        cout=k,
        groups=g,
        kernel=(ks, ks),
        stride=(s, s),
        dilation=(1, 1),
        padding=p,
        size=(h, w),
        layout="contiguous",
        bias=True,
    )
    if last:
        case["data_format"] = "NHWC"
    _check_conv(dev, 2, case, dtype, rng)


@pytest.mark.parametrize("dtype", [np.float16, np.float64], ids=("f16", "f64"))
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(16)] + [(r, s) for r in (1, 3) for s in range(6)])
def test_conv_transpose(dev, rank, seed, dtype, rng):
    cs = transpose_case(seed, rank)
    last = cs["data_format"] is not None
    lead = (cs["batch"],) if cs["batch"] >= 0 else ()
    shape = lead + (cs["size"] + (cs["cin"],) if last else (cs["cin"],) + cs["size"])
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((cs["cin"], cs["cout"] // cs["groups"]) + cs["kernel"]).astype(dtype)
    b = rng.standard_normal(cs["cout"]).astype(dtype) if cs["bias"] else None
    kw = dict(
        stride=cs["stride"],
        padding=cs["padding"],
        output_padding=cs["output_padding"],
        groups=cs["groups"],
        dilation=cs["dilation"],
        data_format=cs["data_format"],
    )
    try:
        expected = getattr(ref, f"conv_transpose{rank}d")(x, w, b, **kw)
    except ValueError:
        return
    t = _ConvTransposeCall(
        rank,
        _for_parsing(x),
        _for_parsing(w),
        _for_parsing(b),
        kw["stride"],
        kw["padding"],
        kw["output_padding"],
        kw["groups"],
        kw["dilation"],
        kw["data_format"],
    )
    from convkern._args import user_shape

    # Forward: the backward-data pass of the mirror convolution, with the bias.
    x_ext = dev.put(t.x_extended().astype(dtype))
    y5 = dev.poisoned(t.phys(t.y_shape), dtype)
    dev.mod.conv_backward_data(
        x_ext, dev.put(t.w5().astype(dtype)), y5, t.args, dev.stream, None if b is None else dev.put(b)
    )
    y = dev.get(y5).reshape(t.user_shape(t.y_shape))
    assert_close(y, expected, reduction=cs["cin"] // cs["groups"] * int(np.prod(cs["kernel"])), dtype=dtype)

    # Backward: the mirror convolution's forward and backward-weight passes.
    dy = rng.standard_normal(expected.shape).astype(dtype)
    dy5 = dev.put(np.ascontiguousarray(dy[None] if t.unbatched else dy).reshape(t.phys(t.y_shape)))
    gx = dev.poisoned(t.phys(t.ext_shape), dtype)
    dev.mod.conv_forward(dy5, dev.put(t.w5().astype(dtype)), None, gx, t.args, dev.stream)
    gw = dev.poisoned(t.w_shape5, dtype)
    ws = dev.bytes(dev.mod.conv_backward_weight_workspace(dy5, gw, t.args))
    dev.mod.conv_backward_weight(x_ext, dy5, gw, ws, t.args, dev.stream)
    gb = dev.poisoned((t.y_shape[1],), dtype)
    dev.mod.channel_sum(dy5, gb, t.last, dev.stream)
    gx = dev.get(gx).reshape(user_shape(t.ext_shape, False, t.last))
    if t.ext_shape != t.shape:
        crop = [slice(None)] * gx.ndim
        for axis, n in zip(t.spatial_axes(), t.shape[2:]):
            crop[axis] = slice(0, n)
        gx = gx[tuple(crop)]
    got = ((gx[0] if t.unbatched else gx), dev.get(gw).reshape(w.shape), dev.get(gb))
    want = getattr(ref, f"conv_transpose{rank}d_backward")(dy, x, w, **kw)
    for g, r in zip(got, want):
        assert_close(g, r, reduction=1000, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_conv_backward_is_deterministic(dev, last, dtype, rng):
    # Enough positions that backward weight splits the reduction across blocks.
    case = dict(
        batch=4,
        cin=24,
        cout=40,
        groups=1,
        kernel=(3, 3),
        stride=(1, 1),
        dilation=(1, 1),
        padding=1,
        size=(24, 24) if not dev.emulated else (12, 12),
        layout="contiguous",
        bias=False,
    )
    if last:
        case["data_format"] = "NHWC"
    x, w, _ = make_arrays(case, dtype, rng)
    c = _conv_call(2, case, x, w, None)
    y_shape = ref.conv2d(x, w, None, **kwargs_of(case)).shape
    dy = rng.standard_normal(y_shape).astype(dtype)
    x5, w5 = c.x5().astype(dtype), c.w5().astype(dtype)
    first = _conv_backward(dev, c, dy, x5, w5)
    second = _conv_backward(dev, c, dy, x5, w5)
    for a, b_ in zip(first, second):
        assert a.tobytes() == b_.tobytes()


def test_conv_errors(dev, rng):
    x = dev.put(rng.standard_normal((1, 2, 1, 5, 5)).astype(np.float32))
    w = dev.put(rng.standard_normal((3, 2, 1, 3, 3)).astype(np.float32))
    args = _C.ConvArgs([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1, 2, False)
    y = dev.poisoned((1, 3, 1, 3, 3), np.float32)
    with pytest.raises(TypeError, match="weight"):
        dev.mod.conv_forward(x, dev.put(np.ones((3, 2, 1, 3, 3))), None, y, args, dev.stream)
    with pytest.raises(TypeError, match="weight must have dtype float32"):
        dev.mod.conv_forward(x, dev.put(np.ones((3, 2, 1, 3, 3), np.float16)), None, y, args, dev.stream)
    bf16 = _FakeArray(
        x, (1, 2, 1, 5, 5), "__cuda_array_interface__", typestr="<V2"
    )  # bfloat16 as PyTorch exports it: not a dtype the kernels take
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        dev.mod.conv_forward(bf16, w, None, y, args, dev.stream)
    with pytest.raises(ValueError, match="out must have shape"):
        dev.mod.conv_forward(x, w, None, dev.poisoned((1, 3, 1, 4, 3), np.float32), args, dev.stream)
    with pytest.raises(ValueError, match="C-contiguous"):
        dev.mod.conv_forward(
            x, w, None, dev.poisoned((1, 3, 1, 3, 3), np.float32).transpose(0, 1, 2, 4, 3), args, dev.stream
        )
    with pytest.raises(ValueError, match="groups"):
        bad = _C.ConvArgs([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 2, 2, False)
        dev.mod.conv_forward(x, w, None, y, bad, dev.stream)
    with pytest.raises(TypeError, match="ConvArgs"):
        dev.mod.conv_forward(x, w, None, y, None, dev.stream)
    with pytest.raises(TypeError, match="CUDA array"):
        dev.mod.conv_forward(np.zeros((1, 2, 1, 5, 5), np.float32), w, None, y, args, dev.stream)


class _FakeArray:
    """Claims a huge shape over a small real buffer: the size checks must refuse it before any
    kernel could touch the memory."""

    def __init__(self, real, shape, interface, typestr=None):
        d = dict(getattr(real, interface))
        d["shape"], d["strides"] = tuple(shape), None
        if typestr is not None:
            d["typestr"] = typestr
        setattr(self, interface, d)


def test_conv_refuses_sizes_past_32_bit_indexing(dev):
    iface = "__cuda_array_interface__"
    buf = dev.poisoned((16,), np.float32)
    big = 2**31 + 16
    x = _FakeArray(buf, (1, 1, 1, 1, big), iface)
    w = _FakeArray(buf, (1, 1, 1, 1, 1), iface)
    y = _FakeArray(buf, (1, 1, 1, 1, big), iface)
    args = _C.ConvArgs([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1, 1, False)
    with pytest.raises(ValueError, match="32-bit"):
        dev.mod.conv_forward(x, w, None, y, args, dev.stream)


# --------------------------------------------------------------------------------------------
# Pooling, kernel level
# --------------------------------------------------------------------------------------------


def _pool_arrays(x_user, p: _PoolCall, planes4: bool):
    """The kernel's view of an input: (planes, D, H, W), (N, C, D, H, W) or (N, D, H, W, C)."""
    xb = x_user[None] if p.unbatched else x_user
    if p.last:
        return np.ascontiguousarray(xb).reshape((p.shape[0],) + tuple(pad3(p.shape[2:], p.rank, 1)) + (p.shape[1],))
    x5 = np.ascontiguousarray(xb).reshape(tuple(p.shape[:2]) + tuple(pad3(p.shape[2:], p.rank, 1)))
    return x5.reshape((-1,) + x5.shape[2:]) if planes4 else x5


def _out_shape(x_kernel_shape, p: _PoolCall, out3, planes4):
    if planes4:
        return (x_kernel_shape[0],) + tuple(out3)
    if p.last:
        return (x_kernel_shape[0],) + tuple(out3) + (x_kernel_shape[-1],)
    return tuple(x_kernel_shape[:2]) + tuple(out3)


def _check_pool(dev, rank, kind, case, last, dtype, rng, planes4):
    shape, kw, layout = case
    x = _inputs(shape, "contiguous", dtype, rng, kind)
    if last:
        x = np.ascontiguousarray(np.moveaxis(x, -rank - 1, -1))
    fmt = LAST[rank] if last else FIRST[rank]
    name = f"{kind}_pool{rank}d"
    dil = kw.get("dilation", 1)
    p = _PoolCall(rank, _for_parsing(x), kw["kernel_size"], kw["stride"], kw["padding"], dil, kw["ceil_mode"], fmt)
    k, s, pb, pa, d, ceil, sov = p.args
    out3 = tuple(pad3(p.y_shape[2:], rank, 1))
    xk = _pool_arrays(x, p, planes4)
    yshape = _out_shape(xk.shape, p, out3, planes4)
    xd = dev.put(xk)
    y = dev.poisoned(yshape, dtype)
    user_y = p.user_shape(p.y_shape)
    if kind == "avg":
        opts = (kw["count_include_pad"], kw["divisor_override"] or 0)
        dev.mod.avg_pool_forward(xd, y, k, s, pb, pa, ceil, sov, *opts, rank, last, dev.stream)
        expected = getattr(ref, name)(x, **kw, data_format=fmt)
    else:
        idx = dev.indices(yshape)
        dev.mod.extremum_pool_forward(xd, y, idx, k, s, pb, pa, d, ceil, sov, kind == "min", rank, last, dev.stream)
        expected, expected_idx = getattr(ref, name)(x, **kw, data_format=fmt, return_indices=True)
        np.testing.assert_array_equal(dev.get(idx).reshape(user_y), expected_idx)
    window = int(np.prod(kw["kernel_size"]))
    if kind == "avg":
        assert_close(dev.get(y).reshape(user_y), expected, reduction=window, dtype=dtype, what=f"{name} {kw}")
    else:  # an input element, exactly, in every dtype
        np.testing.assert_array_equal(dev.get(y).reshape(user_y), expected.astype(dtype), err_msg=f"{name} {kw}")

    dy = rng.standard_normal(expected.shape).astype(dtype)
    dyk = dev.put((dy[None] if p.unbatched else dy).reshape(yshape))
    dx = dev.poisoned(xk.shape, dtype)
    if kind == "avg":
        dev.mod.avg_pool_backward(dyk, dx, k, s, pb, pa, ceil, sov, *opts, rank, last, dev.stream)
        want = getattr(ref, name + "_backward")(dy, x, **kw, data_format=fmt)
    else:
        # Validated (caller's indices) and trusted (the forward's) paths agree bitwise.
        dev.mod.extremum_pool_backward(
            dyk, idx, dx, dev.bytes(dev.mod.pool_index_check_bytes), k, s, pb, pa, d, ceil, sov, rank, last, dev.stream
        )
        dx2 = dev.poisoned(xk.shape, dtype)
        dev.mod.extremum_pool_backward(dyk, idx, dx2, None, k, s, pb, pa, d, ceil, sov, rank, last, dev.stream)
        np.testing.assert_array_equal(dev.get(dx2), dev.get(dx))
        want = getattr(ref, name + "_backward")(dy, x, **kw, data_format=fmt)
    assert_close(dev.get(dx).reshape(x.shape), want, reduction=window, dtype=dtype, what=f"{name}_backward {kw}")


POOL_CASES = [(2, s) for s in range(20)] + [(r, s) for r in (1, 3) for s in range(8)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("rank,seed", POOL_CASES)
def test_pool(dev, rank, seed, kind, last, dtype, rng):
    _check_pool(dev, rank, kind, pool_case(seed, rank, kind), last, dtype, rng, planes4=not last and seed % 2 == 0)


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_pool_with_64_bit_index_math(dev, kind, last, rng):
    # A stride past 2^28 makes window starts (o * stride) leave the range the 32-bit kernels
    # allow, so these small calls run the 64-bit-index kernels, forward and backward.
    case = (
        (2, 3, 9, 11),
        dict(
            kernel_size=(3, 2),
            stride=(2**29, 2**30 + 3),
            padding=(1, 0),
            ceil_mode=True,
            **({"count_include_pad": False, "divisor_override": None} if kind == "avg" else {}),
        ),
        "contiguous",
    )
    _check_pool(dev, 2, kind, case, last, np.float32, rng, planes4=False)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("size", [(7, 7), (20, 23)], ids=("7x7", "20x23"))
def test_global_pool(dev, kind, last, size, dtype, rng):
    # A whole-plane window: 49 cells (one thread per output) and 460 (one warp per output when
    # channels-first), with a tie for the first extreme element.
    shape = (3, 5) + size
    case = (
        shape,
        dict(
            kernel_size=size,
            stride=None,
            padding=0,
            ceil_mode=False,
            **({"count_include_pad": True, "divisor_override": None} if kind == "avg" else {}),
        ),
        "contiguous",
    )
    _check_pool(dev, 2, kind, case, last, dtype, rng, planes4=False)


def _check_adaptive(dev, rank, kind, in_sizes, out_sizes, last, dtype, rng):
    n, c = 2, 3
    x = rng.standard_normal((n, c) + in_sizes).astype(dtype)
    if kind == "max":
        x[x > 1.0] = 1.0  # ties
    fmt = LAST[rank] if last else FIRST[rank]
    if last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    in3, out3 = tuple(pad3(in_sizes, rank, 1)), tuple(pad3(out_sizes, rank, 1))
    xk = x.reshape((n,) + in3 + (c,)) if last else x.reshape((n, c) + in3)
    yshape = (n,) + out3 + (c,) if last else (n, c) + out3
    xd = dev.put(xk)
    y = dev.poisoned(yshape, dtype)
    name = f"adaptive_{kind}_pool{rank}d"
    if kind == "avg":
        dev.mod.adaptive_avg_pool_forward(xd, y, out3, rank, last, dev.stream)
        expected = getattr(ref, name)(x, out_sizes, data_format=fmt)
    else:
        idx = dev.indices(yshape)
        dev.mod.adaptive_max_pool_forward(xd, y, idx, out3, rank, last, dev.stream)
        expected, expected_idx = getattr(ref, name)(x, out_sizes, data_format=fmt, return_indices=True)
        np.testing.assert_array_equal(dev.get(idx).reshape(expected_idx.shape), expected_idx)
        np.testing.assert_array_equal(dev.get(y).reshape(expected.shape), expected.astype(dtype))
    assert_close(dev.get(y).reshape(expected.shape), expected, reduction=100, dtype=dtype)
    dy = rng.standard_normal(expected.shape).astype(dtype)
    dyk = dev.put(dy.reshape(yshape))
    dx = dev.poisoned(xk.shape, dtype)
    if kind == "avg":
        dev.mod.adaptive_avg_pool_backward(dyk, dx, out3, rank, last, dev.stream)
    else:
        dev.mod.adaptive_max_pool_backward(
            dyk, idx, dx, dev.bytes(dev.mod.pool_index_check_bytes), out3, rank, last, dev.stream
        )
    want = getattr(ref, name + "_backward")(dy, x, out_sizes, data_format=fmt)
    assert_close(dev.get(dx).reshape(x.shape), want, reduction=100, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float64], ids=("f16", "f64"))
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize(
    "rank,in_sizes,out_sizes",
    [
        (1, (10,), (3,)),
        (1, (5,), (7,)),
        (2, (9, 7), (4, 3)),
        (2, (6, 6), (1, 1)),
        (2, (7, 5), (7, 5)),
        (2, (13, 12), (5, 8)),
        (3, (5, 6, 4), (2, 3, 3)),
        (2, (40, 36), (1, 1)),
    ],
)
def test_adaptive_pool(dev, rank, in_sizes, out_sizes, kind, last, dtype, rng):
    _check_adaptive(dev, rank, kind, in_sizes, out_sizes, last, dtype, rng)


def _max_pool_setup(dev, rng, last, dtype=np.float32):
    x = rng.standard_normal((2, 3, 6, 8)).astype(dtype)
    fmt = "NHWC" if last else "NCHW"
    if last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    p = _PoolCall(2, _for_parsing(x), 2, None, 0, 1, False, fmt)
    k, s, pb, pa, d, ceil, sov = p.args
    xk = _pool_arrays(x, p, planes4=False)
    yshape = _out_shape(xk.shape, p, (1, 3, 4), False)
    return x, fmt, (k, s, pb, pa, d, ceil, sov), xk, yshape


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_max_pool_backward_indices_outside_their_windows(dev, last, dtype, rng):
    # Indices no forward would make (in the plane, outside their window) are honoured like the
    # CPU kernel and the reference do: a serial scatter instead of the gather (for float16 into
    # a float scratch).
    x, fmt, a, xk, yshape = _max_pool_setup(dev, rng, last, dtype)
    _, idx = ref.max_pool2d(x, 2, data_format=fmt, return_indices=True)
    idx = idx.copy()
    idx.reshape(-1)[::3] = (idx.reshape(-1)[::3] + 17) % 48
    idx.reshape(-1)[1::5] = -1
    dy = rng.standard_normal(idx.shape).astype(dtype)
    dx = dev.poisoned(xk.shape, dtype)
    dev.mod.extremum_pool_backward(
        dev.put(dy.reshape(yshape)),
        dev.put(idx.reshape(yshape)),
        dx,
        dev.bytes(dev.mod.pool_index_check_bytes),
        *a,
        2,
        last,
        dev.stream,
    )
    want = ref.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=idx)
    assert_close(dev.get(dx).reshape(x.shape), want, reduction=4, dtype=dtype)


@pytest.mark.parametrize("bad", [48, -2, 2**40])
def test_max_pool_backward_rejects_hostile_indices(dev, bad, rng):
    x, fmt, a, xk, yshape = _max_pool_setup(dev, rng, False)
    _, idx = ref.max_pool2d(x, 2, data_format=fmt, return_indices=True)
    idx = idx.copy()
    idx.reshape(-1)[5] = bad
    dy = rng.standard_normal(idx.shape).astype(np.float32)
    dx = dev.poisoned(xk.shape, np.float32)
    with pytest.raises(ValueError, match=f"indices holds {bad} at flat position 5"):
        dev.mod.extremum_pool_backward(
            dev.put(dy.reshape(yshape)),
            dev.put(idx.reshape(yshape)),
            dx,
            dev.bytes(dev.mod.pool_index_check_bytes),
            *a,
            2,
            False,
            dev.stream,
        )
    assert np.isnan(dev.get(dx)).all()  # refused before anything was written


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=("f16", "f32"))
def test_pool_nan_and_infinity_semantics(dev, dtype):
    # NaN wins and the last NaN of the window gives the index (PyTorch's order); -inf in the input
    # beats padding.
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [5.0, 2.0, np.nan, 0.0]]]], dtype)
    p = _PoolCall(2, _for_parsing(x), 2, None, 0, 1, False, "NCHW")
    y, idx = dev.poisoned((1, 1, 1, 1, 2), dtype), dev.indices((1, 1, 1, 1, 2))
    dev.mod.extremum_pool_forward(dev.put(x.reshape(1, 1, 1, 2, 4)), y, idx, *p.args, False, 2, False, dev.stream)
    assert np.isnan(dev.get(y)).all()
    np.testing.assert_array_equal(dev.get(idx).ravel(), [1, 6])
    x = np.full((1, 1, 3, 3), -np.inf, dtype)
    p = _PoolCall(2, _for_parsing(x), 3, 1, 1, 1, False, "NCHW")
    y, idx = dev.poisoned((1, 1, 1, 3, 3), dtype), dev.indices((1, 1, 1, 3, 3))
    dev.mod.extremum_pool_forward(dev.put(x.reshape(1, 1, 1, 3, 3)), y, idx, *p.args, False, 2, False, dev.stream)
    assert (dev.get(y) == -np.inf).all()
    np.testing.assert_array_equal(dev.get(idx).reshape(3, 3), [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min", "adaptive", "global"])
def test_pool_nan_order_matches_torch(dev, kind, last, rng):
    # Windows holding several NaNs: the value is NaN and the index (so the gradient) goes to the
    # window's last NaN, as PyTorch's kernels do. "global" is one window of 460 cells (the warp
    # path channels-first, lanes combined across NaNs).
    torch = pytest.importorskip("torch")
    size = (20, 23) if kind == "global" else (9, 10)
    x = rng.standard_normal((2, 3) + size).astype(np.float32)
    x[rng.random(x.shape) < (0.02 if kind == "global" else 0.2)] = np.nan
    t = torch.from_numpy(-x if kind == "min" else x)
    if kind == "adaptive":
        want_y, want_i = torch.nn.functional.adaptive_max_pool2d(t, (4, 3), return_indices=True)
    else:
        k, s, pad = (size, size, 0) if kind == "global" else (3, 2, 1)
        want_y, want_i = torch.nn.functional.max_pool2d(t, k, s, pad, return_indices=True)
    want_y, want_i = want_y.numpy(), want_i.numpy()
    if kind == "min":
        want_y = -want_y
    assert (np.isnan(want_y).sum(axis=(2, 3)) > 0).all()  # the case does exercise NaN windows
    xk = np.moveaxis(x, 1, -1)[:, None] if last else x[:, :, None]
    yshape = (2, 1) + want_y.shape[2:] + (3,) if last else (2, 3, 1) + want_y.shape[2:]
    y, idx = dev.poisoned(yshape, np.float32), dev.indices(yshape)
    if kind == "adaptive":
        dev.mod.adaptive_max_pool_forward(dev.put(xk), y, idx, (1, 4, 3), 2, last, dev.stream)
    else:
        p = _PoolCall(2, x, k, s, pad, 1, False, "NCHW")
        dev.mod.extremum_pool_forward(dev.put(xk), y, idx, *p.args, kind == "min", 2, last, dev.stream)
    got_y, got_i = dev.get(y), dev.get(idx)
    if last:
        got_y, got_i = np.moveaxis(got_y[:, 0], -1, 1), np.moveaxis(got_i[:, 0], -1, 1)
    else:
        got_y, got_i = got_y[:, :, 0], got_i[:, :, 0]
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_y, want_y)  # NaN == NaN here


def test_pool_backward_is_deterministic(dev, rng):
    x = rng.standard_normal((2, 4, 17, 15)).astype(np.float32)
    p = _PoolCall(2, x, 3, 1, 1, 1, False, "NCHW")
    k, s, pb, pa, d, ceil, sov = p.args
    dy = dev.put(rng.standard_normal((2, 4, 1, 17, 15)).astype(np.float32))
    runs = []
    for _ in range(2):
        dx = dev.poisoned((2, 4, 1, 17, 15), np.float32)
        dev.mod.avg_pool_backward(dy, dx, k, s, pb, pa, ceil, sov, True, 0, 2, False, dev.stream)
        runs.append(dev.get(dx).tobytes())
    assert runs[0] == runs[1]


def test_float16_accumulates_in_float32(dev):
    """Sums of 4096 terms 1 + 2^-10 (1 for the other factor): float32 accumulation is exact all
    the way, and the total 4100 is a float16 number, so every kernel must return exactly 4100 (or
    the mean 1 + 2^-10). Accumulating in float16 would not: past 256 it can no longer add the
    2^-10 and ends at 4096 (mean 1)."""
    f16, term = np.float16, np.float16(1 + 2**-10)
    one = dev.stream

    def args(groups):
        return _C.ConvArgs([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], groups, 2, False)

    # Forward: reduction over 64 channels x an 8x8 kernel; depthwise: over a 64x64 kernel.
    for x_shape, w_shape, groups in (
        ((1, 64, 1, 8, 8), (2, 64, 1, 8, 8), 1),
        ((1, 2, 1, 64, 64), (2, 1, 1, 64, 64), 2),
    ):
        y = dev.poisoned((1, 2, 1, 1, 1), f16)
        dev.mod.conv_forward(
            dev.put(np.full(x_shape, term)), dev.put(np.ones(w_shape, f16)), None, y, args(groups), one
        )
        np.testing.assert_array_equal(dev.get(y), 4100)
    # Backward data: reduction over 4096 output channels of a 1x1 convolution.
    dx = dev.poisoned((1, 2, 1, 2, 2), f16)
    dev.mod.conv_backward_data(
        dev.put(np.full((1, 4096, 1, 2, 2), term)), dev.put(np.ones((4096, 2, 1, 1, 1), f16)), dx, args(1), one
    )
    np.testing.assert_array_equal(dev.get(dx), 4100)
    # Backward weight (split into chunks, GEMM and depthwise kernels) and the bias gradient:
    # reductions over 4 x 32 x 32 positions.
    dy = dev.put(np.full((4, 2, 1, 32, 32), term))
    xd = dev.put(np.ones((4, 2, 1, 32, 32), f16))
    for groups in (1, 2):
        dw = dev.poisoned((2, 2 // groups, 1, 1, 1), f16)
        ws = dev.bytes(dev.mod.conv_backward_weight_workspace(xd, dw, args(groups)))
        dev.mod.conv_backward_weight(dy, xd, dw, ws, args(groups), one)
        np.testing.assert_array_equal(dev.get(dw), 4100)
    db = dev.poisoned((2,), f16)
    dev.mod.channel_sum(dy, db, False, one)
    np.testing.assert_array_equal(dev.get(db), 4100)
    # Average pooling over a 64x64 window: one warp per output channels-first, one thread
    # channels-last; and the adaptive form.
    for last, shape in ((False, (1, 2, 1, 64, 64)), (True, (1, 1, 64, 64, 2))):
        x = dev.put(np.full(shape, term))
        out_shape = (1, 1, 1, 1, 2) if last else (1, 2, 1, 1, 1)
        y = dev.poisoned(out_shape, f16)
        dev.mod.avg_pool_forward(
            x, y, [1, 64, 64], [1, 64, 64], [0, 0, 0], [0, 0, 0], False, False, True, 0, 2, last, one
        )
        np.testing.assert_array_equal(dev.get(y), term)
        y = dev.poisoned(out_shape, f16)
        dev.mod.adaptive_avg_pool_forward(x, y, (1, 1, 1), 2, last, one)
        np.testing.assert_array_equal(dev.get(y), term)


# --------------------------------------------------------------------------------------------
# The CuPy-facing backend (real GPU only)
# --------------------------------------------------------------------------------------------


def test_backend_routing_rules(cupy_dev):
    from convkern import _cuda_backend as cb

    cp = cupy_dev.xp
    xd = cp.ones((1, 2, 5), cp.float32)
    xh = np.ones((1, 2, 5), np.float32)
    assert cb.on_cuda(input=xd, weight=cp.ones((3, 2, 1), cp.float32), bias=None)
    assert not cb.on_cuda(input=xh, weight=xh)
    with pytest.raises(TypeError, match="input.*weight"):
        cb.on_cuda(input=xd, weight=xh)
    with pytest.raises(TypeError, match="astype"):
        cb.as_float_array(cp.ones(3, cp.int32), "input")
    assert cb.as_float_array(cp.ones(3, cp.float16), "input").dtype == cp.float16
    info = cb.info()
    assert info["cuda"] and info["gpus"] and info["cuda_architectures"]


def test_backend_matches_kernel_level_and_cpu(cupy_dev, rng):
    from convkern import _cuda_backend as cb

    cp = cupy_dev.xp
    case = dict(
        batch=2,
        cin=6,
        cout=10,
        groups=2,
        kernel=(3, 3),
        stride=(2, 1),
        dilation=(1, 2),
        padding=((1, 0), (2, 2)),
        size=(11, 12),
        layout="contiguous",
        bias=True,
    )
    x, w, b = make_arrays(case, np.float32, rng)
    c = _conv_call(2, case, x, w, b)
    y = cp.empty(c.phys(c.y_shape), np.float32)
    cb.conv_forward(cp.asarray(c.x5()), cp.asarray(c.w5()), cp.asarray(b), y, c.args)
    y_cpu = np.empty(c.phys(c.y_shape), np.float32)
    _C.conv_forward(c.x5(), c.w5(), b, y_cpu, c.args)
    assert_close(cp.asnumpy(y), y_cpu, reduction=reduction(case))


def test_backend_accepts_torch_cuda_tensors(cupy_dev, rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    from convkern import _cuda_backend as cb

    t = torch.randn(2, 3, 4, device="cuda")
    assert cb.is_cuda_array(t) and cb.on_cuda(input=t)
    a = cb.as_float_array(t, "input")
    assert isinstance(a, cupy_dev.xp.ndarray) and a.data.ptr == t.data_ptr()
    h = cb.as_float_array(t.half(), "input")
    assert h.dtype == cupy_dev.xp.float16
    with pytest.raises(TypeError, match="bfloat16"):
        cb.as_float_array(t.bfloat16(), "input")


# --------------------------------------------------------------------------------------------
# The public API on CUDA arrays: the host tests' own bodies, run on the GPU
# --------------------------------------------------------------------------------------------


class OnCuda:
    """The CUDA twin of conftest.Host: the shared test bodies' arrays go to the GPU, results come back."""

    name = "cuda"

    def __init__(self, xp):
        self.xp = xp

    def put(self, a):
        return self.xp.asarray(np.ascontiguousarray(a))

    def get(self, a) -> np.ndarray:
        assert isinstance(a, self.xp.ndarray), f"a CUDA call returned {type(a).__module__}.{type(a).__name__}"
        return self.xp.asnumpy(a)

    def poisoned(self, shape, dtype):
        return self.xp.full(tuple(shape), np.nan, dtype=dtype)


class _Synchronous:
    """The emulated module with every call finished before it returns: on a GPU, CuPy's stream
    orders the kernels and the array operations between them; the stand-in's NumPy functions read
    host memory directly, so they must wait."""

    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        f = getattr(self._mod, name)
        if not callable(f) or isinstance(f, type):
            return f

        def call(*args, **kwargs):
            result = f(*args, **kwargs)
            self._mod.synchronize()
            return result

        return call


@pytest.fixture(scope="module")
def cuda_api():
    """The public API on CUDA arrays: a real GPU through CuPy or, where
    CONVKERN_CUDA_EMULATION_MODULE names an emulated build, that build behind a CuPy stand-in
    (tests/emulated_cupy.py) installed for this module's tests only."""
    mod = _emulated_module()
    if mod is None:
        yield OnCuda(_cupy_or_skip())
        return
    import sys

    import emulated_cupy
    from convkern import _cuda_backend

    saved = sys.modules.get("cupy"), _cuda_backend._ext
    sys.modules["cupy"], _cuda_backend._ext = emulated_cupy, _Synchronous(mod)
    try:
        yield OnCuda(emulated_cupy)
    finally:
        _cuda_backend._ext = saved[1]
        if saved[0] is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(24)] + [(r, s) for r in (1, 3) for s in range(6)])
def test_api_conv(cuda_api, rank, seed, dtype, rng):
    import test_conv

    case = conv_case(seed, rank)
    if seed % 2:
        case["data_format"] = LAST[rank]
    test_conv.check_forward(rank, case, dtype, rng, on=cuda_api)
    test_conv.check_backward(rank, case, dtype, rng, on=cuda_api)


@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(9)] + [(1, 0), (3, 0), (3, 1)])
def test_api_conv_padding_modes(cuda_api, rank, seed, rng):
    import test_conv

    case = mode_case(seed, rank)
    test_conv.check_forward(rank, case, np.float64, rng, on=cuda_api)
    test_conv.check_backward(rank, case, np.float64, rng, on=cuda_api)


@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(12)] + [(r, s) for r in (1, 3) for s in range(4)])
def test_api_conv_transpose(cuda_api, rank, seed, rng):
    import test_conv

    test_conv.check_transpose(rank, seed, np.float32 if seed % 2 else np.float64, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(10)] + [(r, s) for r in (1, 3) for s in range(4)])
def test_api_pool(cuda_api, rank, seed, kind, last, rng):
    import test_pool

    test_pool.check_pool(rank, seed, kind, np.float32 if seed % 2 else np.float64, last, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_api_global_pool(cuda_api, rank, kind, last, rng):
    import test_pool

    test_pool.check_global_pool(rank, kind, rank == 2, np.float32, last, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(6)] + [(r, s) for r in (1, 3) for s in range(3)])
def test_api_adaptive_pool(cuda_api, rank, seed, kind, last, rng):
    import test_adaptive_pool

    test_adaptive_pool.check_adaptive_pool(rank, seed, kind, np.float64, last, rng, on=cuda_api)


# float16 through the public API (CUDA only): the host tests' bodies with float16 arrays.


@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(12)] + [(r, s) for r in (1, 3) for s in range(4)])
def test_api_conv_transpose_float16(cuda_api, rank, seed, rng):
    import test_conv

    test_conv.check_transpose(rank, seed, np.float16, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(6)] + [(r, s) for r in (1, 3) for s in range(3)])
def test_api_pool_float16(cuda_api, rank, seed, kind, last, rng):
    import test_pool

    test_pool.check_pool(rank, seed, kind, np.float16, last, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
def test_api_global_pool_float16(cuda_api, kind, last, rng):
    import test_pool

    test_pool.check_global_pool(2, kind, True, np.float16, last, rng, on=cuda_api)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(4)] + [(1, 0), (3, 0)])
def test_api_adaptive_pool_float16(cuda_api, rank, seed, kind, last, rng):
    import test_adaptive_pool

    test_adaptive_pool.check_adaptive_pool(rank, seed, kind, np.float16, last, rng, on=cuda_api)


def test_api_float16_dtype_rules(cuda_api, rng):
    """float16 runs on CUDA arrays and is refused on host arrays, naming the CUDA route; mixing
    it with another dtype in one call is a TypeError like any other mix."""
    put = cuda_api.put
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    y = convkern.conv2d(put(x), put(w))
    assert isinstance(y, cuda_api.xp.ndarray) and y.dtype == np.float16
    with pytest.raises(TypeError, match="float16 is supported on CUDA arrays only"):
        convkern.conv2d(x, w)
    with pytest.raises(TypeError, match="float16 is supported on CUDA arrays only"):
        convkern.max_pool2d(x, 2)
    with pytest.raises(TypeError, match="weight has dtype float32 but input has dtype float16"):
        convkern.conv2d(put(x), put(w.astype(np.float32)))
    with pytest.raises(TypeError, match="grad_output has dtype float32"):
        convkern.avg_pool2d_backward(put(np.ones((2, 3, 4, 4), np.float32)), put(x), 2)
    iface = "__cuda_array_interface__"
    bf16 = _FakeArray(put(x), x.shape, iface, typestr="<V2")  # a bfloat16 tensor, as PyTorch exports it
    with pytest.raises(TypeError, match="bfloat16"):
        convkern.conv2d(bf16, put(w))


def test_api_device_rules(cuda_api):
    """Host and CUDA arrays in one call are a TypeError naming both, checked first; a
    caller's out= and indices= must be CUDA arrays like the inputs."""
    put = cuda_api.put
    x, w = np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="input.*weight"):
        convkern.conv2d(put(x), w)
    with pytest.raises(TypeError, match="bias"):
        convkern.conv2d(put(x), put(w), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="out"):
        convkern.conv2d(put(x), put(w), out=np.empty((1, 3, 6, 6), np.float32))
    with pytest.raises(TypeError, match="grad_output"):
        convkern.conv2d_backward(np.ones((1, 3, 6, 6), np.float32), put(x), put(w))
    with pytest.raises(TypeError, match="input.*weight"):
        convkern.conv2d(put(x), w, stride=0)  # the device check comes before the arguments'
    y, idx = convkern.max_pool2d(put(x), 2, return_indices=True)
    with pytest.raises(TypeError, match="indices"):
        convkern.max_pool2d_backward(put(np.ones(y.shape, np.float32)), put(x), 2, indices=cuda_api.get(idx))
    with pytest.raises(TypeError, match="astype"):
        convkern.max_pool2d(put(x.astype(np.int32)), 2)
    with pytest.raises(ValueError, match="out must have shape"):
        convkern.conv2d(put(x), put(w), out=cuda_api.poisoned((1, 3, 5, 5), np.float32))
    xd = put(x)
    with pytest.raises(ValueError, match="share memory"):
        convkern.avg_pool2d(xd, 1, out=xd)
    with pytest.raises(ValueError, match="indices holds 99"):
        convkern.max_pool2d_backward(
            put(np.ones(y.shape, np.float32)), xd, 2, indices=put(np.full(y.shape, 99, np.int64))
        )


def test_api_nn_model_on_cuda(cuda_api, rng):
    """A small CNN moved with .to("cuda") trains to the same numbers as on the host."""
    from convkern import nn, optim

    def model():
        nn.manual_seed(3)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 3),
        )

    x = rng.standard_normal((5, 1, 10, 10)).astype(np.float32)
    target = np.array([0, 2, 1, 1, 0])
    losses = {}
    for device in ("cpu", "cuda"):
        m = model().to(device)
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        xs = x if device == "cpu" else cuda_api.put(x)
        ts = target if device == "cpu" else cuda_api.put(target)
        losses[device] = []
        for _ in range(3):
            opt.zero_grad()
            loss = loss_fn(m(xs), ts)
            m.backward(loss_fn.backward())
            opt.step()
            losses[device].append(float(loss))
        if device == "cuda":
            assert all(isinstance(p.data, cuda_api.xp.ndarray) for p in m.parameters())
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)
