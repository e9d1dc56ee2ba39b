"""Pooling kernels against convkern.reference: max, min, average and global, 1-D to 3-D,
channels-first and channels-last, forward and backward, on randomized configurations and on the
edge cases docs/semantics.md spells out."""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from conftest import HOST, LAYOUTS, assert_close, poisoned, relayout
from convkern import reference as ref

DTYPES = (np.float32, np.float64)
FORMATS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def channels_last(x: np.ndarray, rank: int) -> np.ndarray:
    """(N, C, *spatial) or (C, *spatial) -> the same values with the channel axis last."""
    return np.moveaxis(x, -rank - 1, -1)


def bits(a: np.ndarray) -> bytes:
    """Bitwise identity, NaN payloads included."""
    return np.ascontiguousarray(a).tobytes()


def pool_case(seed: int, rank: int, kind: str):
    rng = np.random.default_rng(7000 + 100 * rank + seed)
    kernel = tuple(int(k) for k in rng.integers(1, 6 if rank < 3 else 4, size=rank))
    stride = None if rng.integers(0, 4) == 0 else tuple(int(s) for s in rng.integers(1, 4, size=rank))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=rank)) if kind != "avg" else 1
    form = rng.choice(["explicit", "explicit", "same", "valid"])
    ceil_mode = bool(rng.integers(0, 2)) if form == "explicit" else False
    if form == "explicit":
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    else:
        padding = str(form)
    d = dilation if isinstance(dilation, tuple) else (1,) * rank
    size = tuple(int(max(rng.integers(1, 14 if rank < 3 else 8), dd * (k - 1) + 1)) for k, dd in zip(kernel, d))
    batch = int(rng.choice([0, 1, 2, -1]))
    shape = ((batch,) if batch >= 0 else ()) + (int(rng.integers(1, 5)),) + size
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if kind == "avg":
        kw["count_include_pad"] = bool(rng.integers(0, 2))
        kw["divisor_override"] = None if rng.integers(0, 3) else int(rng.integers(1, 7))
    else:
        kw["dilation"] = dilation
    layout = LAYOUTS[int(rng.integers(0, len(LAYOUTS)))]
    return shape, kw, layout


def _inputs(shape, layout, dtype, rng, kind):
    x = rng.standard_normal(shape).astype(dtype)
    if kind != "avg" and x.size:
        # Some exact ties, so that first-in-window tie-breaking is exercised.
        x[x > 1.2] = 1.5
    return relayout(x, layout, rng)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(25)] + [(r, s) for r in (1, 3) for s in range(8)])
def test_pool_forward_backward(rank, seed, kind, dtype, last, rng):
    check_pool(rank, seed, kind, dtype, last, rng)


def check_pool(rank, seed, kind, dtype, last, rng, on=HOST):
    shape, kw, layout = pool_case(seed, rank, kind)
    x = _inputs(shape, "contiguous", dtype, rng, kind)
    if last:
        x = channels_last(x, rank)
    x = relayout(x, layout, rng)
    kw["data_format"] = FORMATS[rank][last]
    name = f"{kind}_pool{rank}d"
    if kind == "avg":
        expected = getattr(ref, name)(x, **kw)
    else:
        expected, expected_idx = getattr(ref, name)(x, **kw, return_indices=True)
    xd = on.put(x)
    out = on.poisoned(expected.shape, dtype)
    if kind == "avg":
        y = getattr(convkern, name)(xd, **kw, out=out)
    else:
        y, idx = getattr(convkern, name)(xd, **kw, return_indices=True, out=out)
        assert idx.dtype == np.int64 and idx.flags.c_contiguous
        np.testing.assert_array_equal(on.get(idx), expected_idx)
    assert y is out
    window = int(np.prod(kw["kernel_size"]))
    if kind == "avg":
        assert_close(on.get(y), expected, reduction=window, dtype=dtype, what=f"{name} {kw}")
    else:  # max and min pick an input element: exact in every dtype
        np.testing.assert_array_equal(on.get(y), expected.astype(dtype), err_msg=f"{name} {kw}")

    dy = relayout(rng.standard_normal(expected.shape).astype(dtype), layout, rng)
    got = getattr(convkern, name + "_backward")(on.put(dy), xd, **kw)
    want = getattr(ref, name + "_backward")(dy, x, **kw)
    assert got.flags.c_contiguous and got.dtype == dtype
    assert_close(on.get(got), want, reduction=window, dtype=dtype, what=f"{name}_backward {kw}")
    if kind != "avg":
        # The forward's indices give the same gradient without recomputing the argmax.
        with_idx = getattr(convkern, name + "_backward")(on.put(dy), xd, **kw, indices=idx)
        np.testing.assert_array_equal(on.get(with_idx), on.get(got))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize(
    "case",
    [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
        dict(kernel_size=2, stride=2, ceil_mode=True),
    ],
    ids=("k3s2p1", "dilated", "k2s2ceil"),
)
def test_channels_last_extremum_over_vector_blocks_of_channels(kind, case, dtype, rng):
    """Channels-last max/min without indices keeps the running best of four vectors of channels in
    registers (64 float channels under AVX-512, 32 under AVX2): 69 channels give whole blocks and
    a scalar tail. NaN (the last one wins), infinities and ties as the reference; the out= buffer is
    filled beforehand with a value no window can produce, so an unwritten cell shows."""
    extreme = -np.inf if kind == "max" else np.inf
    x = rng.integers(-2, 3, size=(2, 69, 9, 10)).astype(dtype)  # many ties
    x[:, :, 0, :] = extreme
    x[rng.random(x.shape) < 0.03] = np.nan
    x = channels_last(x, 2)
    name = f"{kind}_pool2d"
    want = getattr(ref, name)(x, **case, data_format="NHWC")
    out = np.full(want.shape, 1234.5, dtype)
    got = getattr(convkern, name)(x, **case, data_format="NHWC", out=out)
    assert got is out
    np.testing.assert_array_equal(got, want)  # NaN == NaN here


@pytest.mark.parametrize("channels", [128, 132])
def test_channels_last_max_pool_streams_large_outputs(channels, rng):
    """A channels-last max pool without indices whose output passes 4 MiB stores its whole cache
    lines non-temporally: 128 channels put every block of four vectors on a line boundary; 132 do
    not, and are stored plainly. Against the reference, in an out= buffer filled with a value no
    window produces."""
    x = rng.standard_normal((6, 112, 112, channels), dtype=np.float32)
    want = ref.max_pool2d(x, 2, 2, data_format="NHWC")
    out = np.full(want.shape, 1234.5, np.float32)
    assert out.nbytes >= 4 << 20
    got = convkern.max_pool2d(x, 2, 2, data_format="NHWC", out=out)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "case",
    [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3, 2), stride=(1, 2, 3), padding=(1, 0, 1), dilation=(2, 3, 1)),
        dict(kernel_size=2, stride=3, ceil_mode=True),
    ],
    ids=("k3s2p1", "dilated", "gaps"),
)
def test_channels_last_max_pool_3d_over_4mib(case, rng):
    """Inputs past 4 MiB have the input rows of output rows further on prefetched while a row is
    computed (the rows a window reads that the previous output row did not): 3-D windows, dilated
    rows, and strides that skip input rows, against the reference."""
    x = rng.standard_normal((2, 5, 40, 40, 72), dtype=np.float32)
    assert x.nbytes >= 4 << 20
    want = ref.max_pool3d(x.astype(np.float64), **case, data_format="NDHWC")
    out = np.full(want.shape, np.nan, np.float32)
    got = convkern.max_pool3d(x, **case, data_format="NDHWC", out=out)
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize(
    "case",
    [
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
        dict(kernel_size=4, stride=3, padding=2, ceil_mode=True),
        dict(kernel_size=3, stride=1, padding="same"),
    ],
    ids=("k3s1p1", "k3s2p1", "dilated", "ceil", "same"),
)
def test_extremum_nan_inf_and_ties_pick_the_reference_index(kind, case, last, rng):
    """NaN anywhere in a window wins with the last NaN's index; -inf/+inf inputs beat padding;
    ties keep the first cell. Rows and columns of +-inf put whole windows at the padding value."""
    extreme = -np.inf if kind == "max" else np.inf
    x = rng.integers(-2, 3, size=(2, 3, 13, 11)).astype(np.float64)  # many ties
    x[:, :, 0, :] = extreme
    x[:, :, :, -1] = extreme
    x[0, 1] = extreme
    x[rng.random(x.shape) < 0.04] = np.nan
    if last:
        x = channels_last(x, 2)
    kw = dict(case, data_format=FORMATS[2][last])
    name = f"{kind}_pool2d"
    y, idx = getattr(convkern, name)(x, **kw, return_indices=True)
    want, want_idx = getattr(ref, name)(x, **kw, return_indices=True)
    np.testing.assert_array_equal(y, want)  # NaN == NaN here
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(getattr(convkern, name)(x, **kw), want)  # values-only kernels too


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min"])
def test_global_extremum_long_planes(kind, last, rng):
    """Planes long enough for the interleaved-lane reduction: NaNs, ties and +-0 in different lanes
    must still give the last NaN / first extreme of the plane, as the reference does."""
    x = rng.integers(-3, 4, size=(4, 5, 11, 9)).astype(np.float32)
    x[0, 0] = 0.0
    x[0, 0, 3, 2] = -0.0
    x[0, 1, 5, 5] = x[0, 1, 2, 7] = np.nan
    x[1, 2] = -np.inf
    x[1, 3, 10, 8] = np.nan  # the last cell: leftover after the lanes
    x[2, 4] = np.nan
    if last:
        x = channels_last(x, 2)
    fmt = FORMATS[2][last]
    name = f"global_{kind}_pool2d"
    np.testing.assert_array_equal(getattr(convkern, name)(x, data_format=fmt), getattr(ref, name)(x, data_format=fmt))
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        getattr(convkern, name + "_backward")(dy, x, data_format=fmt),
        getattr(ref, name + "_backward")(dy, x, data_format=fmt),
    )
    y, idx = getattr(convkern, f"{kind}_pool2d")(x, (11, 9), return_indices=True, data_format=fmt)
    _, want_idx = getattr(ref, f"{kind}_pool2d")(x, (11, 9), return_indices=True, data_format=fmt)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool(rank, kind, keepdims, dtype, last, rng):
    check_global_pool(rank, kind, keepdims, dtype, last, rng)


def check_global_pool(rank, kind, keepdims, dtype, last, rng, on=HOST):
    shape = (3, 5) + (7, 6, 5)[:rank]
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0].flat[3] = x[0, 0].max() if kind == "max" else x[0, 0].min()  # a tie: first wins
    if last:
        x = channels_last(x, rank)
    kw = dict(keepdims=keepdims, data_format=FORMATS[rank][last])
    name = f"global_{kind}_pool{rank}d"
    expected = getattr(ref, name)(x, **kw)
    xd = on.put(x)
    out = on.poisoned(expected.shape, dtype)
    assert getattr(convkern, name)(xd, **kw, out=out) is out
    assert_close(on.get(out), expected, reduction=int(np.prod(shape[2:])), dtype=dtype)
    # Batched NumPy calls without out= or keepdims take a shorter path: the same result, bitwise.
    plain = getattr(convkern, name)(xd, data_format=kw["data_format"])
    assert plain.shape == shape[:2]
    np.testing.assert_array_equal(on.get(plain), on.get(out).reshape(shape[:2]))
    dy = rng.standard_normal(expected.shape).astype(dtype)
    assert_close(
        on.get(getattr(convkern, name + "_backward")(on.put(dy), xd, **kw)),
        getattr(ref, name + "_backward")(dy, x, **kw),
        dtype=dtype,
    )
    # Unbatched: one number per channel.
    assert getattr(convkern, name)(on.put(x[0]), data_format=kw["data_format"]).shape == (5,)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("channels", [64, 83, 200, 600])
@pytest.mark.parametrize("plane", [(9, 7), (5, 130)], ids=("narrow", "wide"))
def test_channels_last_average_over_wide_channels(plane, channels, dtype, rng):
    """Channels-last averages sum runs of 16, 4 and 1 vectors of channels in registers and the rest
    one by one: channel counts that fill those runs exactly and with a tail; in wide rows, sliding
    windows split the channels into blocks (a row of column sums per block stays in L1), the last
    block short. Every element written."""
    xl = channels_last(rng.standard_normal((2, channels) + plane).astype(dtype), 2)
    for op, kw in (
        ("avg_pool2d", dict(kernel_size=3, stride=1, padding=1)),
        ("avg_pool2d", dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), count_include_pad=False)),
        ("avg_pool2d", dict(kernel_size=(3, 4), stride=3, padding=(1, 2), ceil_mode=True)),
        ("global_avg_pool2d", {}),
    ):
        expected = getattr(ref, op)(xl, **kw, data_format="NHWC")
        out = poisoned(expected.shape, dtype)
        assert getattr(convkern, op)(xl, **kw, data_format="NHWC", out=out) is out
        assert_close(out, expected, reduction=int(np.prod(plane)), dtype=dtype)


def test_max_pool_nan_propagates_to_last_nan():
    # PyTorch's rule: a NaN replaces anything, so the last NaN of a window gives the index.
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [5.0, 2.0, np.nan, 0.0]]]], np.float32)
    y, idx = convkern.max_pool2d(x, (2, 2), return_indices=True)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(idx, [[[[1, 6]]]])
    y, idx = convkern.min_pool2d(x, (2, 2), return_indices=True)
    np.testing.assert_array_equal(idx, [[[[1, 6]]]])


def test_padding_never_selected():
    x = np.full((1, 1, 3, 3), -np.inf, np.float64)
    y, idx = convkern.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert np.all(y == -np.inf)
    assert idx.min() >= 0 and idx.max() < 9
    x = np.full((1, 1, 3, 3), np.inf)
    y, idx = convkern.min_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert np.all(y == np.inf) and idx.min() >= 0


def test_ties_go_to_first_in_window():
    x = np.ones((1, 1, 4, 4), np.float32)
    _, idx = convkern.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])


def test_ceil_mode_last_window_must_start_inside():
    # in=5, k=2, s=2, p=1: floor gives 3, ceil 4, but the 4th window would start at 5 >= in+p-... -> 3.
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    assert convkern.max_pool2d(x, 2, 2, padding=1, ceil_mode=True).shape == (1, 1, 3, 3)
    assert convkern.max_pool2d(x, 2, 2, ceil_mode=True).shape == (1, 1, 3, 3)
    assert convkern.max_pool2d(x, 2, 2).shape == (1, 1, 2, 2)


def test_max_pool_backward_streams_large_grad_inputs(rng):
    """A channels-first grad_input over 8 MiB is built plane by plane in a scratch plane, checked
    and scattered in one pass, and streamed out: planes of 181 x 181 cells start off the cache
    lines (the stores before and after the streamed ones), indices outside their windows are still
    scattered as given, a bad index in a middle plane is reported at its first position, and the
    scratch is clean again for the next plane. Each image alone is under 8 MiB and takes the plain
    path: the same additions in the same order, so the same bits."""
    x = rng.standard_normal((2, 33, 181, 181)).astype(np.float32)
    assert x.nbytes >= 8 << 20 > x[:1].nbytes
    y, idx = convkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    moved = idx.copy()
    moved[0, 5] = 0  # every window of one plane into its first cell
    moved[1, 7, 3, 4] = -1  # one output that reads nothing
    for indices in (idx, moved):
        got = convkern.max_pool2d_backward(dy, x, 3, 2, 1, indices=indices)
        assert_close(got, ref.max_pool2d_backward(dy, x, 3, 2, 1, indices=indices), reduction=9, dtype=np.float32)
        for n in range(2):
            plain = convkern.max_pool2d_backward(dy[n : n + 1], x[n : n + 1], 3, 2, 1, indices=indices[n : n + 1])
            np.testing.assert_array_equal(got[n : n + 1], plain)
    for bad in (181 * 181, -2, 2**63 - 1, -(2**63)):
        hostile = idx.copy()
        hostile[1, 20, 40, 41] = bad
        hostile[1, 20, 44, 0] = 181 * 181 + 7  # a later bad index in the same plane
        position = np.ravel_multi_index((1, 20, 40, 41), idx.shape)
        with pytest.raises(ValueError, match=f"indices holds {bad} at flat position {position}"):
            convkern.max_pool2d_backward(dy, x, 3, 2, 1, indices=hostile)


def test_avg_divisors():
    x = np.ones((1, 1, 3, 3), np.float64)
    inc = convkern.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
    exc = convkern.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(inc[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]])
    np.testing.assert_allclose(exc, 1.0)
    np.testing.assert_allclose(convkern.avg_pool2d(x, 3, 1, 1, divisor_override=2)[0, 0, 1, 1], 4.5)
    # "same" divides by the in-bounds cells.
    np.testing.assert_allclose(convkern.avg_pool2d(x, 3, 1, "same"), 1.0)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_max_pool_backward_rejects_hostile_indices(last, rng):
    x = rng.standard_normal((2, 6, 6, 3) if last else (2, 3, 6, 6))
    fmt = FORMATS[2][last]
    y, idx = convkern.max_pool2d(x, 2, return_indices=True, data_format=fmt)
    dy = np.ones_like(y)
    for bad in (36, -2, 2**62, -(2**63)):
        hostile = idx.copy()
        hostile[1, 2, 2, 1] = bad
        position = np.ravel_multi_index((1, 2, 2, 1), idx.shape)
        with pytest.raises(ValueError, match=f"indices holds {bad} at flat position {position}"):
            convkern.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=hostile)
    with pytest.raises(TypeError, match="int64"):
        convkern.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=idx.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        convkern.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=idx[:, :, :2])
    # Indices in range but outside their windows are the caller's business: scattered as given.
    moved = np.zeros_like(idx)
    got = convkern.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=moved)
    np.testing.assert_array_equal(got, ref.max_pool2d_backward(dy, x, 2, data_format=fmt, indices=moved))


def test_pool_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    assert convkern.max_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert convkern.avg_pool2d_backward(np.zeros((0, 3, 4, 4), np.float32), x, 2).shape == x.shape
    assert convkern.global_avg_pool2d(x).shape == (0, 3)
    x = np.zeros((0, 8, 8, 3), np.float32)
    y, idx = convkern.max_pool2d(x, 2, return_indices=True, data_format="NHWC")
    assert y.shape == idx.shape == (0, 4, 4, 3)
    assert convkern.max_pool2d_backward(y, x, 2, data_format="NHWC", indices=idx).shape == x.shape
    assert convkern.avg_pool2d_backward(np.zeros((0, 4, 4, 3), np.float32), x, 2, data_format="NHWC").shape == x.shape
    assert convkern.global_max_pool2d(x, data_format="NHWC").shape == (0, 3)


def test_channels_last_is_the_channels_first_result_transposed(rng):
    x = rng.standard_normal((2, 5, 9, 10)).astype(np.float32)
    xl = channels_last(x, 2)
    for op, kw in (
        (convkern.max_pool2d, dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
        (convkern.min_pool2d, dict(kernel_size=2, return_indices=True)),
        (convkern.avg_pool2d, dict(kernel_size=3, stride=1, padding=1)),
    ):
        first, last = op(x, **kw), op(xl, **kw, data_format="NHWC")
        for a, b in zip(first if isinstance(first, tuple) else (first,), last if isinstance(last, tuple) else (last,)):
            assert b.flags.c_contiguous
            if op is convkern.avg_pool2d:  # channels-last sums a window column by column: rounding differs
                np.testing.assert_allclose(channels_last(a, 2), b, rtol=1e-6, atol=2e-6)
            else:  # max and min pick the same element
                np.testing.assert_array_equal(channels_last(a, 2), b)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize(
    "rank,shape,kw",
    [
        (2, (1, 17, 100, 47), dict(kernel_size=3, stride=1, padding=1)),
        (2, (2, 3, 101, 90), dict(kernel_size=3, stride=2, padding=1)),
        (2, (1, 3, 130, 70), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
        (2, (1, 33, 6, 20), dict(kernel_size=3, stride=2, padding=1)),
        (3, (1, 5, 4, 70, 33), dict(kernel_size=3, stride=(1, 2, 2), padding=1)),
    ],
    ids=("tall-s1", "tall-s2", "tall-ceil", "few-rows", "3d"),
)
def test_pool_large_planes(rank, shape, kw, kind, last, rng):
    """Planes taller than one band of the channels-first kernels (bands overlap by the kernel's
    reach), and channels-last calls with few rows per image, split into channel blocks."""
    x = rng.standard_normal(shape)
    if last:
        x = channels_last(x, rank)
    kw = dict(kw, data_format=FORMATS[rank][last])
    name = f"{kind}_pool{rank}d"
    if kind == "avg":
        y, want = getattr(convkern, name)(x, **kw), getattr(ref, name)(x, **kw)
    else:
        y, idx = getattr(convkern, name)(x, **kw, return_indices=True)
        want, want_idx = getattr(ref, name)(x, **kw, return_indices=True)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(getattr(convkern, name)(x, **kw), want)
    assert_close(y, want, reduction=27, dtype=np.float64)
    dy = rng.standard_normal(y.shape)
    assert_close(
        getattr(convkern, name + "_backward")(dy, x, **kw),
        getattr(ref, name + "_backward")(dy, x, **kw),
        reduction=27,
        dtype=np.float64,
    )


def _every_kernel(x, rank, last):
    """Forward and backward of every pooling kernel on x: the arrays they return, in order."""
    fmt = FORMATS[rank][last]
    results = []
    for kind in ("max", "min", "avg"):
        kw = dict(kernel_size=3, stride=(1, 2)[rank % 2], padding=1, data_format=fmt)
        if kind == "avg":
            y = getattr(convkern, f"avg_pool{rank}d")(x, **kw)
            results += [y, getattr(convkern, f"avg_pool{rank}d_backward")(y, x, **kw)]
        else:
            y, idx = getattr(convkern, f"{kind}_pool{rank}d")(x, **kw, return_indices=True)
            results += [
                y,
                idx,
                getattr(convkern, f"{kind}_pool{rank}d")(x, **kw),
                getattr(convkern, f"{kind}_pool{rank}d_backward")(y, x, **kw, indices=idx),
            ]
        g = getattr(convkern, f"global_{kind}_pool{rank}d")(x, data_format=fmt)
        results += [g, getattr(convkern, f"global_{kind}_pool{rank}d_backward")(g, x, data_format=fmt)]
    return results


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize(
    "rank,shape",
    [(2, (3, 16, 40, 36)), (2, (1, 64, 12, 12)), (3, (2, 8, 10, 12, 14)), (1, (4, 32, 900))],
    ids=("2d", "2d-N1", "3d", "1d"),
)
def test_pool_bitwise_identical_for_1_and_2_threads(rank, shape, last, rng):
    """Large enough for several work chunks (and, with N=1 channels-last, several channel blocks)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[x > 2.0] = 2.0  # ties
    if last:
        x = channels_last(x, rank)
    before = convkern.get_num_threads()
    try:
        convkern.set_num_threads(1)
        one = _every_kernel(x, rank, last)
        convkern.set_num_threads(2)
        two = _every_kernel(x, rank, last)
    finally:
        convkern.set_num_threads(before)
    for a, b in zip(one, two):
        assert bits(a) == bits(b)


@pytest.fixture
def poisoned_allocations(monkeypatch):
    """Every array the host backend allocates (gradients have no out=) starts NaN-filled, so that
    a cell a kernel leaves unwritten shows."""
    from convkern import _backend

    def poisoned_empty(self, shape, dt):
        return np.full(tuple(shape), np.nan if np.dtype(dt).kind == "f" else -7, dt)

    monkeypatch.setattr(_backend.HostBackend, "empty", poisoned_empty)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("channels", [16, 21, 40])
@pytest.mark.parametrize(
    "rank,spatial,kw",
    [
        (2, (12, 10), dict(kernel_size=2)),
        (2, (11, 13), dict(kernel_size=3)),  # the last rows and columns in no window
        (2, (10, 11), dict(kernel_size=2, stride=3)),  # gaps between the windows
        (2, (9, 9), dict(kernel_size=2, padding=1)),  # windows cut by the padding
        (2, (9, 10), dict(kernel_size=(2, 3), ceil_mode=True)),  # the last windows cut short
        (2, (7, 8), dict(kernel_size=4)),  # 16 cells a window: the scatter
        (1, (23,), dict(kernel_size=3)),
        (3, (4, 6, 5), dict(kernel_size=2)),
    ],
    ids=("2x2", "3x3-rest", "gaps", "padded", "ceil", "4x4", "1d", "3d"),
)
def test_channels_last_disjoint_windows_backward(rank, spatial, kw, channels, kind, dtype, rng, poisoned_allocations):
    """Windows that share no cell: channels-last backward writes each window's cells once (with
    the scatter as the fallback); every cell, in a window or not, must be written, with the
    reference's exact value, for the argmax recomputed and for the forward's indices."""
    x = _inputs((3,) + spatial + (channels,), "contiguous", dtype, rng, kind)
    kw = dict(kw, data_format=FORMATS[rank][True])
    name = f"{kind}_pool{rank}d"
    y, idx = getattr(convkern, name)(x, **kw, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    want = getattr(ref, name + "_backward")(dy, x, **kw)
    for indices in (None, idx):
        got = getattr(convkern, name + "_backward")(dy, x, **kw, indices=indices)
        np.testing.assert_array_equal(got, want.astype(dtype), err_msg=f"{name}_backward {kw}")
    # Indices in range but outside their windows, or outside the plane: the scatter's rules.
    moved = np.zeros_like(idx)
    got = getattr(convkern, name + "_backward")(dy, x, **kw, indices=moved)
    want = getattr(ref, name + "_backward")(dy, x, **kw, indices=moved)  # all summed into cell 0
    assert_close(got, want, reduction=int(np.prod(y.shape[1:-1])), dtype=dtype, what=f"{name}_backward moved indices")
    hostile = idx.copy()
    hostile.reshape(-1)[-5] = int(np.prod(spatial))
    with pytest.raises(ValueError, match=f"at flat position {hostile.size - 5},"):
        getattr(convkern, name + "_backward")(dy, x, **kw, indices=hostile)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
def test_windows_far_larger_than_the_input(kind, last, rng):
    """kernel_size is bounded only by the padded input: a 1001-row window over 5 rows is legal
    (padding 500 <= 1001 // 2), and must cost memory in proportion to the input, not the window."""
    x = rng.standard_normal((2, 3, 5, 6))
    if last:
        x = channels_last(x, 2)
    kw = dict(kernel_size=(1001, 3), stride=(2, 1), padding=(500, 1), data_format=FORMATS[2][last])
    name = f"{kind}_pool2d"
    y, want = getattr(convkern, name)(x, **kw), getattr(ref, name)(x, **kw)
    assert_close(y, want, reduction=15, dtype=np.float64)
    if kind != "avg":
        _, idx = getattr(convkern, name)(x, **kw, return_indices=True)
        np.testing.assert_array_equal(idx, getattr(ref, name)(x, **kw, return_indices=True)[1])
    dy = rng.standard_normal(y.shape)
    assert_close(
        getattr(convkern, name + "_backward")(dy, x, **kw),
        getattr(ref, name + "_backward")(dy, x, **kw),
        reduction=15,
        dtype=np.float64,
    )
