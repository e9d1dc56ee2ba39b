"""Shared helpers: tolerances scaled by reduction length, array layouts, NaN-poisoned outputs."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest


def assert_close(actual, expected, *, reduction: int = 1, dtype=np.float32, scale: float = 1.0, what: str = ""):
    """float64 kernels must match the float64 reference to ~1e-12; float32 ones within a
    tolerance that grows with the length of the sum behind each element (rounding errors of a
    sum of n terms grow like sqrt(n)); float16 ones (CUDA only) as explained below."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual).any() or np.isnan(expected).any(), f"{what}: NaN in result (unwritten element?)"
    if np.dtype(dtype) == np.float64:
        rtol, atol = 1e-10, 1e-11 * math.sqrt(reduction) * scale
    elif np.dtype(dtype) == np.float16:
        # The reference runs in float64 on the same float16 values, so the kernel's error is its
        # one rounding to half at the store, at most 2^-11 ~ 4.9e-4 relative (rtol 2e-3: 4x
        # headroom), plus its float32 accumulation error, ~sqrt(n) * 2^-24 of the terms' size
        # (atol 1e-4 * sqrt(n) covers it 1000 times over). Accumulating in half instead would
        # err by ~sqrt(n) * 2^-11 of the partial sums and fail this on long reductions.
        rtol, atol = 2e-3, 1e-4 * math.sqrt(reduction) * scale
    else:
        rtol, atol = 1e-4, 1e-5 * math.sqrt(reduction) * scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def poisoned(shape, dtype):
    """An out= buffer full of NaN, so that an element the kernel forgets to write is caught."""
    return np.full(shape, np.nan, dtype=dtype)


def relayout(x: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """The same values in another memory layout: the kernels must accept any strides."""
    if how == "contiguous":
        return np.ascontiguousarray(x)
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "negative":
        # Stored reversed along the last axis, viewed forward: negative strides, same values.
        return np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    if how == "strided":
        # Every other element of a larger buffer along the last axis.
        big = rng.standard_normal(x.shape[:-1] + (2 * x.shape[-1],)).astype(x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    raise ValueError(how)


LAYOUTS = ("contiguous", "fortran", "negative", "strided")


class Host:
    """Where a shared test body runs the ops: here, NumPy arrays exactly as the test built them.
    tests/test_cuda.py runs the same bodies with a CUDA twin (arrays moved to a GPU and back)."""

    name = "cpu"

    def put(self, a):
        return a  # keeps the test's memory layout (strided, negative strides ...)

    def get(self, a) -> np.ndarray:
        assert isinstance(a, np.ndarray), f"a host call returned {type(a).__name__}"
        return a

    def poisoned(self, shape, dtype):
        return poisoned(shape, dtype)


HOST = Host()


@pytest.fixture
def rng(request):
    # Seeded by the test's id so that every case is reproducible on its own.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
