"""Pooling kernels against convkern.reference: max, min, average and global, 1-D to 3-D,
forward and backward, on randomized configurations and on the edge cases SPEC §3 spells out."""
from __future__ import annotations

import numpy as np
import pytest

import convkern
from convkern import reference as ref

from conftest import LAYOUTS, assert_close, poisoned, relayout

DTYPES = (np.float32, np.float64)


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
    size = tuple(int(max(rng.integers(1, 14 if rank < 3 else 8), dd * (k - 1) + 1))
                 for k, dd in zip(kernel, d))
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


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(25)] + [(r, s) for r in (1, 3) for s in range(8)])
def test_pool_forward_backward(rank, seed, kind, dtype, rng):
    shape, kw, layout = pool_case(seed, rank, kind)
    x = _inputs(shape, layout, dtype, rng, kind)
    name = f"{kind}_pool{rank}d"
    if kind == "avg":
        expected = getattr(ref, name)(x, **kw)
    else:
        expected, expected_idx = getattr(ref, name)(x, **kw, return_indices=True)
    out = poisoned(expected.shape, dtype)
    if kind == "avg":
        y = getattr(convkern, name)(x, **kw, out=out)
    else:
        y, idx = getattr(convkern, name)(x, **kw, return_indices=True, out=out)
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(idx, expected_idx)
    assert y is out
    window = int(np.prod(kw["kernel_size"]))
    assert_close(y, expected, reduction=window, dtype=dtype, what=f"{name} {kw}")

    dy = relayout(rng.standard_normal(expected.shape).astype(dtype), layout, rng)
    got = getattr(convkern, name + "_backward")(dy, x, **kw)
    want = getattr(ref, name + "_backward")(dy, x, **kw)
    assert got.flags.c_contiguous and got.dtype == dtype
    assert_close(got, want, reduction=window, dtype=dtype, what=f"{name}_backward {kw}")
    if kind != "avg":
        # The forward's indices give the same gradient without recomputing the argmax.
        with_idx = getattr(convkern, name + "_backward")(dy, x, **kw, indices=idx)
        np.testing.assert_array_equal(with_idx, got)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool(rank, kind, keepdims, dtype, rng):
    shape = (3, 5) + (7, 6, 5)[:rank]
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0].flat[3] = x[0, 0].max() if kind == "max" else x[0, 0].min()  # a tie: first wins
    name = f"global_{kind}_pool{rank}d"
    expected = getattr(ref, name)(x, keepdims=keepdims)
    out = poisoned(expected.shape, dtype)
    assert getattr(convkern, name)(x, keepdims=keepdims, out=out) is out
    assert_close(out, expected, reduction=x[0, 0].size, dtype=dtype)
    dy = rng.standard_normal(expected.shape).astype(dtype)
    assert_close(getattr(convkern, name + "_backward")(dy, x, keepdims=keepdims),
                 getattr(ref, name + "_backward")(dy, x, keepdims=keepdims), dtype=dtype)
    # Unbatched: one number per channel.
    assert getattr(convkern, name)(x[0]).shape == (5,)


def test_max_pool_nan_propagates_to_first_nan():
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [5.0, 2.0, np.nan, 0.0]]]], np.float32)
    y, idx = convkern.max_pool2d(x, (2, 2), return_indices=True)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(idx, [[[[1, 3]]]])
    y, idx = convkern.min_pool2d(x, (2, 2), return_indices=True)
    np.testing.assert_array_equal(idx, [[[[1, 3]]]])


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


def test_avg_divisors():
    x = np.ones((1, 1, 3, 3), np.float64)
    inc = convkern.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
    exc = convkern.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(inc[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]])
    np.testing.assert_allclose(exc, 1.0)
    np.testing.assert_allclose(convkern.avg_pool2d(x, 3, 1, 1, divisor_override=2)[0, 0, 1, 1], 4.5)
    # "same" divides by the in-bounds cells.
    np.testing.assert_allclose(convkern.avg_pool2d(x, 3, 1, "same"), 1.0)


def test_max_pool_backward_rejects_hostile_indices(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    y, idx = convkern.max_pool2d(x, 2, return_indices=True)
    dy = np.ones_like(y)
    for bad in (36, -2, 2**62, -(2**63)):
        hostile = idx.copy()
        hostile[1, 2, 2, 1] = bad
        with pytest.raises(ValueError, match="indices"):
            convkern.max_pool2d_backward(dy, x, 2, indices=hostile)
    with pytest.raises(TypeError, match="int64"):
        convkern.max_pool2d_backward(dy, x, 2, indices=idx.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        convkern.max_pool2d_backward(dy, x, 2, indices=idx[:, :, :2])


def test_pool_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    assert convkern.max_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert convkern.avg_pool2d_backward(np.zeros((0, 3, 4, 4), np.float32), x, 2).shape == x.shape
    assert convkern.global_avg_pool2d(x).shape == (0, 3)
