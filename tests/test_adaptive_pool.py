"""Adaptive average and max pooling against convkern.reference: 1-D to 3-D, channels-first and
channels-last, forward and backward, output sizes below, equal to and above the input size."""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from conftest import HOST, LAYOUTS, assert_close, relayout
from convkern import reference as ref

DTYPES = (np.float32, np.float64)
FORMATS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def adaptive_case(seed: int, rank: int):
    rng = np.random.default_rng(9100 + 100 * rank + seed)
    size = tuple(int(n) for n in rng.integers(1, 13 if rank < 3 else 7, size=rank))
    output_size = []
    for n in size:
        choice = rng.integers(0, 6)
        output_size.append(
            None if choice == 0 else n if choice == 1 else 1 if choice == 2 else int(rng.integers(1, 2 * n + 2))
        )
    if rng.integers(0, 4) == 0 and len(set(output_size)) == 1 and output_size[0] is not None:
        output_size = output_size[0]  # an int for every axis
    else:
        output_size = tuple(output_size)
    batch = int(rng.choice([0, 1, 2, 3, -1]))
    shape = ((batch,) if batch >= 0 else ()) + (int(rng.integers(1, 6)),) + size
    layout = LAYOUTS[int(rng.integers(0, len(LAYOUTS)))]
    return shape, output_size, layout


def _spatial_output(shape, rank, output_size):
    sizes = output_size if isinstance(output_size, tuple) else (output_size,) * rank
    return tuple(n if o is None else o for n, o in zip(shape[-rank:], sizes))


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("rank,seed", [(2, s) for s in range(16)] + [(r, s) for r in (1, 3) for s in range(8)])
def test_adaptive_pool_forward_backward(rank, seed, kind, dtype, last, rng):
    check_adaptive_pool(rank, seed, kind, dtype, last, rng)


def check_adaptive_pool(rank, seed, kind, dtype, last, rng, on=HOST):
    shape, output_size, layout = adaptive_case(seed, rank)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "max" and x.size:
        x[x > 1.0] = 1.0  # ties: the first cell of the window wins
    if last:
        x = np.moveaxis(x, -rank - 1, -1)
    x = relayout(x, layout, rng)
    fmt = FORMATS[rank][last]
    name = f"adaptive_{kind}_pool{rank}d"
    if kind == "avg":
        expected = getattr(ref, name)(x, output_size, data_format=fmt)
    else:
        expected, expected_idx = getattr(ref, name)(x, output_size, return_indices=True, data_format=fmt)
    xd = on.put(x)
    out = on.poisoned(expected.shape, dtype)
    if kind == "avg":
        y = getattr(convkern, name)(xd, output_size, data_format=fmt, out=out)
    else:
        y, idx = getattr(convkern, name)(xd, output_size, return_indices=True, data_format=fmt, out=out)
        assert idx.dtype == np.int64 and idx.flags.c_contiguous
        np.testing.assert_array_equal(on.get(idx), expected_idx)
        np.testing.assert_array_equal(on.get(getattr(convkern, name)(xd, output_size, data_format=fmt)), on.get(y))
    assert y is out
    window = max(
        1,
        int(
            np.prod([-(-n // max(o, 1)) + 1 for n, o in zip(shape[-rank:], _spatial_output(shape, rank, output_size))])
        ),
    )
    assert_close(on.get(y), expected, reduction=window, dtype=dtype, what=f"{name} {output_size}")

    dy = relayout(rng.standard_normal(expected.shape).astype(dtype), layout, rng)
    got = getattr(convkern, name + "_backward")(on.put(dy), xd, output_size, data_format=fmt)
    want = getattr(ref, name + "_backward")(dy, x, output_size, data_format=fmt)
    assert got.flags.c_contiguous and got.dtype == dtype and got.shape == x.shape
    assert_close(on.get(got), want, reduction=window, dtype=dtype, what=f"{name}_backward {output_size}")
    if kind == "max":
        with_idx = getattr(convkern, name + "_backward")(on.put(dy), xd, output_size, data_format=fmt, indices=idx)
        np.testing.assert_array_equal(on.get(with_idx), on.get(got))


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_adaptive_max_nan_and_infinities(last, rng):
    x = rng.integers(-2, 3, size=(2, 3, 17, 40)).astype(np.float64)
    x[0, 0] = -np.inf
    x[1, 1, :, 30:] = np.nan
    x[rng.random(x.shape) < 0.02] = np.nan
    if last:
        x = np.moveaxis(x, 1, -1)
    fmt = FORMATS[2][last]
    for output_size in ((5, 3), 1, (17, 1), (None, 7)):
        y, idx = convkern.adaptive_max_pool2d(x, output_size, return_indices=True, data_format=fmt)
        want, want_idx = ref.adaptive_max_pool2d(x, output_size, return_indices=True, data_format=fmt)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(idx, want_idx)


def test_adaptive_pool_worked_example():
    # 5 cells into 3: windows [0, 2), [1, 4), [3, 5) (floor(i*5/3) to ceil((i+1)*5/3)).
    x = np.array([[[1.0, 5.0, 2.0, 8.0, 3.0]]])
    np.testing.assert_array_equal(convkern.adaptive_avg_pool1d(x, 3), [[[3.0, 5.0, 5.5]]])
    y, idx = convkern.adaptive_max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[[5.0, 8.0, 8.0]]])
    np.testing.assert_array_equal(idx, [[[1, 3, 3]]])
    # The gradient of overlapping windows adds up; the average's divides by each window's size.
    np.testing.assert_array_equal(convkern.adaptive_max_pool1d_backward(np.ones((1, 1, 3)), x, 3), [[[0, 1, 0, 2, 0]]])
    np.testing.assert_allclose(
        convkern.adaptive_avg_pool1d_backward(np.ones((1, 1, 3)), x, 3),
        [[[1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2]]],
    )


def test_adaptive_output_size_forms():
    x = np.arange(2 * 3 * 6 * 4, dtype=np.float32).reshape(2, 3, 6, 4)
    assert convkern.adaptive_avg_pool2d(x, 2).shape == (2, 3, 2, 2)
    assert convkern.adaptive_avg_pool2d(x, (None, 3)).shape == (2, 3, 6, 3)
    assert convkern.adaptive_avg_pool2d(x, None).shape == x.shape
    assert convkern.adaptive_max_pool2d(x, (np.int64(3), 1)).shape == (2, 3, 3, 1)
    np.testing.assert_array_equal(convkern.adaptive_avg_pool2d(x, (6, 4)), x)  # one cell per window
    assert convkern.adaptive_avg_pool2d(x, (0, 2)).shape == (2, 3, 0, 2)  # empty, as in PyTorch
    np.testing.assert_array_equal(
        convkern.adaptive_max_pool2d_backward(np.ones((2, 3, 0, 2), np.float32), x, (0, 2)), np.zeros_like(x)
    )
    assert convkern.adaptive_avg_pool2d(x[0], 1).shape == (3, 1, 1)  # unbatched
    assert convkern.adaptive_avg_pool3d(np.zeros((0, 4, 3, 3, 3)), 2, data_format="NDHWC").shape == (0, 2, 2, 2, 3)
    np.testing.assert_allclose(convkern.adaptive_avg_pool2d(x, 1)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)


@pytest.mark.parametrize(
    "output_size,exc,fragment",
    [
        (-1, ValueError, "output_size must be >= 0"),
        ((2, -3), ValueError, "output_size must be >= 0"),
        ((2, 2, 2), ValueError, "output_size"),
        (2.5, TypeError, "output_size"),
        (True, TypeError, "output_size"),
        ("same", TypeError, "output_size"),
        (2**64, ValueError, "too large"),
        (2**62, ValueError, "overflows"),
    ],
)
def test_adaptive_pool_rejects(output_size, exc, fragment):
    x = np.ones((2, 3, 5, 5), np.float32)
    for op in (convkern.adaptive_avg_pool2d, convkern.adaptive_max_pool2d):
        with pytest.raises(exc, match=fragment):
            op(x, output_size)
    with pytest.raises(exc, match=fragment):
        convkern.adaptive_avg_pool2d_backward(np.ones((2, 3, 2, 2), np.float32), x, output_size)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_adaptive_max_backward_rejects_hostile_indices(last, rng):
    x = rng.standard_normal((2, 5, 7, 3) if last else (2, 3, 5, 7))
    fmt = FORMATS[2][last]
    y, idx = convkern.adaptive_max_pool2d(x, (2, 3), return_indices=True, data_format=fmt)
    dy = np.ones_like(y)
    for bad in (35, -2, 2**62, -(2**63)):
        hostile = idx.copy()
        hostile[1, 1, 1, 0] = bad
        with pytest.raises(ValueError, match=f"indices holds {bad}"):
            convkern.adaptive_max_pool2d_backward(dy, x, (2, 3), data_format=fmt, indices=hostile)
    with pytest.raises(TypeError, match="int64"):
        convkern.adaptive_max_pool2d_backward(dy, x, (2, 3), data_format=fmt, indices=idx.astype(np.float64))
    with pytest.raises(ValueError, match="indices has shape"):
        convkern.adaptive_max_pool2d_backward(dy, x, (2, 3), data_format=fmt, indices=idx[:1])
    with pytest.raises(ValueError, match="grad_output has shape"):
        convkern.adaptive_max_pool2d_backward(dy[:1], x, (2, 3), data_format=fmt)
    with pytest.raises(TypeError, match="dtype"):
        convkern.adaptive_avg_pool2d_backward(dy.astype(np.float32), x, (2, 3), data_format=fmt)


def test_adaptive_out_checks():
    x = np.ones((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="out must have shape"):
        convkern.adaptive_avg_pool2d(x, 2, out=np.empty((2, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        convkern.adaptive_max_pool2d(x, 2, out=np.empty((2, 3, 2, 2), np.float64))
    with pytest.raises(ValueError, match="share memory"):
        convkern.adaptive_avg_pool2d(x, 5, out=x)
    out = np.empty((2, 2, 2, 3), np.float32)
    assert convkern.adaptive_avg_pool2d(np.ones((2, 5, 5, 3), np.float32), 2, data_format="NHWC", out=out) is out
    np.testing.assert_array_equal(out, 1.0)


@pytest.mark.parametrize("last", [False, True], ids=("first", "last"))
def test_adaptive_bitwise_identical_for_1_and_2_threads(last, rng):
    x = rng.standard_normal((3, 32, 37, 41)).astype(np.float32)
    if last:
        x = np.moveaxis(x, 1, -1)
    fmt = FORMATS[2][last]
    before = convkern.get_num_threads()

    def run():
        y, idx = convkern.adaptive_max_pool2d(x, (9, 7), return_indices=True, data_format=fmt)
        a = convkern.adaptive_avg_pool2d(x, (9, 7), data_format=fmt)
        return [
            y,
            idx,
            a,
            convkern.adaptive_max_pool2d_backward(y, x, (9, 7), data_format=fmt, indices=idx),
            convkern.adaptive_avg_pool2d_backward(a, x, (9, 7), data_format=fmt),
        ]

    try:
        convkern.set_num_threads(1)
        one = run()
        convkern.set_num_threads(2)
        two = run()
    finally:
        convkern.set_num_threads(before)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


@pytest.mark.torch
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_adaptive_pool_matches_torch(rank):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(31 + rank)
    x = rng.standard_normal((2, 3) + (11, 9, 7)[:rank])
    output_size = (4, 5, 3)[:rank]
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = getattr(F, f"adaptive_avg_pool{rank}d")(xt, output_size)
    assert_close(getattr(convkern, f"adaptive_avg_pool{rank}d")(x, output_size), yt.detach().numpy(), dtype=np.float64)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(dy))
    assert_close(
        getattr(convkern, f"adaptive_avg_pool{rank}d_backward")(dy, x, output_size), xt.grad.numpy(), dtype=np.float64
    )
    xt.grad = None
    yt, it = getattr(F, f"adaptive_max_pool{rank}d")(xt, output_size, return_indices=True)
    y, idx = getattr(convkern, f"adaptive_max_pool{rank}d")(x, output_size, return_indices=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(
        getattr(convkern, f"adaptive_max_pool{rank}d_backward")(dy, x, output_size), xt.grad.numpy()
    )
