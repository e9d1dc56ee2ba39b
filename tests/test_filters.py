"""convkern.filters: the seed material's kernels and filter2d, against scipy.ndimage.correlate."""

from __future__ import annotations

import numpy as np
import pytest
from convkern import filters

ndimage = pytest.importorskip("scipy.ndimage")


def test_the_seed_kernels_by_name():
    k = filters.KERNELS
    np.testing.assert_array_equal(k["identity"], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(k["edge_detection"], [[1, 0, -1], [0, 0, 0], [-1, 0, 1]])
    np.testing.assert_array_equal(k["laplacian"], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(k["sharpen"], [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_allclose(k["box_blur"], np.ones((3, 3)) / 9)
    np.testing.assert_allclose(k["gaussian_blur"], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    np.testing.assert_array_equal(k["vertical_line"], [[-1, 1, -1]] * 3)
    np.testing.assert_array_equal(k["horizontal_line"], k["vertical_line"].T)
    np.testing.assert_array_equal(k["corner"], [[-1, -1, -1], [-1, 1, 1], [-1, 1, 1]])
    np.testing.assert_array_equal(k["sobel_y"], k["sobel_x"].T)
    # Smoothing and sharpening keep flat regions; edge detectors ignore them.
    for name in ("identity", "sharpen", "box_blur", "gaussian_blur"):
        assert k[name].sum() == pytest.approx(1.0)
    for name in ("edge_detection", "laplacian", "outline", "sobel_x", "sobel_y"):
        assert k[name].sum() == 0


def test_library_kernels_are_read_only_and_kernel_returns_a_copy():
    with pytest.raises(ValueError):
        filters.KERNELS["sharpen"][1, 1] = 0
    mine = filters.kernel("sharpen")
    mine[1, 1] = 0
    assert filters.KERNELS["sharpen"][1, 1] == 5
    with pytest.raises(KeyError, match="sobel_x"):  # the message lists the names
        filters.kernel("sobel")


def test_seed_worked_example_with_zero_padding():
    # The worked example: the 7x7 image and the cross kernel / 5 with 'same' zero padding.
    image = np.array(
        [
            [130, 136, 53, 44, 231, 67, 108],
            [130, 89, 77, 58, 250, 154, 130],
            [208, 239, 120, 111, 112, 181, 22],
            [203, 223, 59, 79, 28, 57, 67],
            [164, 140, 215, 235, 66, 30, 204],
            [97, 159, 50, 110, 104, 76, 7],
            [207, 150, 58, 47, 152, 81, 237],
        ],
        dtype=np.uint8,
    )
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]) / 5
    y = filters.filter2d(image, cross)
    assert y.shape == (7, 7) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], [79.2, 81.6, 62.0, 77.2, 118.4, 112.0, 61.0], rtol=1e-6)
    np.testing.assert_allclose(y[-1], [90.8, 114.8, 61.0, 73.4, 76.8, 109.2, 65.0], rtol=1e-6)


@pytest.mark.parametrize("boundary", sorted(filters.BOUNDARIES))
@pytest.mark.parametrize("kernel_shape", [(3, 3), (5, 5), (2, 4), (1, 3)])
@pytest.mark.parametrize("channels", [None, 3])
def test_agrees_with_scipy_correlate(boundary, kernel_shape, channels, rng):
    shape = (9, 11) if channels is None else (9, 11, channels)
    image = rng.standard_normal(shape)
    k = rng.standard_normal(kernel_shape)
    expected = ndimage.correlate(
        image, k if channels is None else k[:, :, None], mode=filters.BOUNDARIES[boundary], cval=0.0
    )
    result = filters.filter2d(image, k, boundary=boundary)
    assert result.shape == image.shape and result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "dtype,result_dtype",
    [
        (np.uint8, np.float32),
        (np.int16, np.float32),
        (np.uint16, np.float32),
        (np.float16, np.float32),
        (np.float32, np.float32),
        (np.int32, np.float64),
        (np.int64, np.float64),
        (np.float64, np.float64),
        (np.bool_, np.float32),
    ],
)
def test_any_numeric_dtype(dtype, result_dtype, rng):
    image = rng.integers(0, 2 if dtype is np.bool_ else 200, size=(12, 10, 3)).astype(dtype)
    result = filters.filter2d(image, "sharpen", boundary="replicate")
    assert result.dtype == result_dtype and result.shape == image.shape
    expected = ndimage.correlate(image.astype(np.float64), filters.KERNELS["sharpen"][:, :, None], mode="nearest")
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-3)


def test_non_contiguous_images(rng):
    image = rng.standard_normal((20, 16, 3))
    view = image[::2, ::-1]  # strided and reversed
    np.testing.assert_allclose(
        filters.filter2d(view, "sobel_x", "reflect"),
        ndimage.correlate(view, filters.KERNELS["sobel_x"][:, :, None], mode="mirror"),
        rtol=1e-12,
        atol=1e-12,
    )
    fortran = np.asfortranarray(image[:, :, 0])
    np.testing.assert_allclose(
        filters.filter2d(fortran, "outline", "circular"),
        ndimage.correlate(fortran, filters.KERNELS["outline"], mode="wrap"),
        rtol=1e-12,
        atol=1e-12,
    )


def test_identity_and_blur_keep_a_flat_image():
    flat = np.full((6, 7), 42, np.uint8)
    assert np.array_equal(filters.filter2d(flat, "identity"), flat)
    for boundary in ("reflect", "replicate", "circular"):  # zeros darkens the border, the others do not
        np.testing.assert_allclose(filters.filter2d(flat, "gaussian_blur", boundary), 42, rtol=1e-6)
        np.testing.assert_allclose(filters.filter2d(flat, "laplacian", boundary), 0, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="H×W"):
        filters.filter2d(np.zeros(5), "identity")
    with pytest.raises(TypeError, match="dtype"):
        filters.filter2d(np.zeros((4, 4), np.complex64), "identity")
    with pytest.raises(ValueError, match="boundary"):
        filters.filter2d(np.zeros((4, 4)), "identity", boundary="symmetric")
    with pytest.raises(ValueError, match="2-D"):
        filters.filter2d(np.zeros((4, 4)), np.ones((3, 3, 3)))
    with pytest.raises(KeyError, match="no kernel named"):
        filters.filter2d(np.zeros((4, 4)), "blur")
