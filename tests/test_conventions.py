"""The argument conventions PyTorch, Keras and SciPy users bring, each checked against that library.

- per-axis arguments given as a 1-element sequence apply to every axis (torch's ``_ntuple``);
- an empty pooling stride means the default, the kernel size (torch's pooling);
- ``data_format`` also takes Keras's ``"channels_first"``/``"channels_last"``;
- ``weight_format`` takes a Keras/TensorFlow kernel, spatial axes first, for every convolution and
  transposed convolution and for the ``nn`` layers, and gradients come back in that format;
- ``filters.filter2d`` takes scipy.ndimage's mode names.

Keras itself is exercised in test_keras.py.
"""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from convkern import filters, nn

torch = pytest.importorskip("torch")
F = torch.nn.functional

CF = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
WEIGHT_SPATIAL_FIRST = {1: "WIO", 2: "HWIO", 3: "DHWIO"}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _to_spatial_first(w: np.ndarray) -> np.ndarray:
    """(a, b, *kernel) -> (*kernel, b, a): a Keras/TensorFlow kernel from a PyTorch weight."""
    rank = w.ndim - 2
    return np.ascontiguousarray(w.transpose(tuple(range(2, rank + 2)) + (1, 0)))


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _torch_conv(rank: int):
    return getattr(F, f"conv{rank}d")


# ------------------------------------------------------------------ 1-element per-axis tuples


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("container", [tuple, list])
def test_one_element_tuple_applies_to_every_axis_conv(rank, container):
    rng = _rng(rank)
    x = rng.standard_normal((2, 3) + (9,) * rank)
    w = rng.standard_normal((4, 3) + (3,) * rank)
    kw = dict(stride=container([2]), padding=container([1]), dilation=container([2]))
    got = getattr(convkern, f"conv{rank}d")(x, w, **kw)
    want = _torch_conv(rank)(torch.from_numpy(x), torch.from_numpy(w), stride=(2,), padding=(1,), dilation=(2,))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_one_element_tuple_applies_to_every_axis_transposed_and_pooling(rank):
    rng = _rng(10 + rank)
    x = rng.standard_normal((2, 3) + (6,) * rank)
    w = rng.standard_normal((3, 2) + (3,) * rank)
    got = getattr(convkern, f"conv_transpose{rank}d")(x, w, stride=(2,), padding=(1,), output_padding=(1,))
    want = getattr(F, f"conv_transpose{rank}d")(
        torch.from_numpy(x), torch.from_numpy(w), stride=(2,), padding=(1,), output_padding=(1,)
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)
    got = getattr(convkern, f"max_pool{rank}d")(x, (3,), stride=(2,), padding=(1,))
    want = getattr(F, f"max_pool{rank}d")(torch.from_numpy(x), (3,), stride=(2,), padding=(1,))
    np.testing.assert_array_equal(got, want.numpy())
    got = getattr(convkern, f"avg_pool{rank}d")(x, [2], stride=[1])
    want = getattr(F, f"avg_pool{rank}d")(torch.from_numpy(x), [2], stride=[1])
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


def test_wrong_length_tuple_still_refused():
    x = np.ones((1, 1, 5, 5))
    with pytest.raises(ValueError, match="stride must be an int or a tuple of 2 ints"):
        convkern.conv2d(x, np.ones((1, 1, 3, 3)), stride=(1, 1, 1))


# ------------------------------------------------------------------ empty pooling stride


@pytest.mark.parametrize("empty", [(), []])
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d", "min_pool2d"])
def test_empty_stride_means_kernel_size(empty, op):
    x = _rng(3).standard_normal((2, 3, 9, 8))
    got = getattr(convkern, op)(x, 3, stride=empty)
    assert np.array_equal(got, getattr(convkern, op)(x, 3))
    if op != "min_pool2d":
        want = getattr(F, op)(torch.from_numpy(x), 3, stride=empty)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)
        grad = getattr(convkern, op + "_backward")(np.ones_like(got), x, 3, stride=empty)
        assert np.array_equal(grad, getattr(convkern, op + "_backward")(np.ones_like(got), x, 3))


# ------------------------------------------------------------------ data_format names


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_channels_first_and_last_names(rank):
    x = _rng(4).standard_normal((2, 3) + (5,) * rank)
    w = _rng(5).standard_normal((4, 3) + (3,) * rank)
    conv = getattr(convkern, f"conv{rank}d")
    assert np.array_equal(conv(x, w, padding=1, data_format="channels_first"), conv(x, w, padding=1))
    x_last = _channels_last(x)
    got = conv(x_last, w, padding=1, data_format="channels_last")
    assert np.array_equal(got, conv(x_last, w, padding=1, data_format={1: "NWC", 2: "NHWC", 3: "NDHWC"}[rank]))
    pool = getattr(convkern, f"max_pool{rank}d")
    np.testing.assert_array_equal(_channels_last(pool(x, 2)), pool(x_last, 2, data_format="channels_last"))
    assert (
        convkern.output_shape(f"conv{rank}d", x_last.shape, w.shape, padding=1, data_format="channels_last")
        == got.shape
    )


def test_bad_data_format_names_both_spellings():
    with pytest.raises(ValueError, match="'NHWC' \\(or 'channels_last'\\)"):
        convkern.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), data_format="NWHC")


# ------------------------------------------------------------------ weight_format


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_weight_format_conv_forward_and_gradients(rank, layout):
    rng = _rng(20 + rank)
    x = rng.standard_normal((2, 4) + (6,) * rank)
    w = rng.standard_normal((6, 2) + (3,) * rank)  # groups=2
    b = rng.standard_normal(6)
    kw = dict(stride=2, padding=1, groups=2)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    yt = _torch_conv(rank)(xt, wt, bt, **kw)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))

    last = layout == "channels_last"
    xin = _channels_last(x) if last else x
    dyin = _channels_last(dy) if last else dy
    w_sf = _to_spatial_first(w)
    fmt = WEIGHT_SPATIAL_FIRST[rank]
    y = getattr(convkern, f"conv{rank}d")(xin, w_sf, b, data_format=layout, weight_format=fmt, **kw)
    want = _channels_last(yt.detach().numpy()) if last else yt.detach().numpy()
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
    dx, dw, db = getattr(convkern, f"conv{rank}d_backward")(
        dyin, xin, w_sf, data_format=layout, weight_format=fmt, **kw
    )
    assert dw.shape == w_sf.shape and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, _to_spatial_first(wt.grad.numpy()), rtol=1e-9, atol=1e-9)
    want_dx = _channels_last(xt.grad.numpy()) if last else xt.grad.numpy()
    np.testing.assert_allclose(dx, want_dx, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-9)
    # The default spelling of the channels-first format is accepted too.
    y_default = getattr(convkern, f"conv{rank}d")(x, w, b, weight_format={1: "OIW", 2: "OIHW", 3: "OIDHW"}[rank], **kw)
    np.testing.assert_allclose(y_default, yt.detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_weight_format_conv_transpose_is_kernel_cout_cin(rank):
    """Keras's ConvTranspose kernel is (*kernel, C_out, C_in): PyTorch's (C_in, C_out, *kernel) reversed."""
    rng = _rng(30 + rank)
    c_in, c_out = 4, 3
    x = rng.standard_normal((2, c_in) + (4,) * rank)
    w = rng.standard_normal((c_in, c_out) + (3,) * rank)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    yt = getattr(F, f"conv_transpose{rank}d")(xt, wt, stride=2, padding=1)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    w_keras = _to_spatial_first(w)
    assert w_keras.shape == (3,) * rank + (c_out, c_in)
    fmt = WEIGHT_SPATIAL_FIRST[rank]
    y = getattr(convkern, f"conv_transpose{rank}d")(x, w_keras, stride=2, padding=1, weight_format=fmt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx, dw, db = getattr(convkern, f"conv_transpose{rank}d_backward")(
        dy, x, w_keras, stride=2, padding=1, weight_format=fmt
    )
    np.testing.assert_allclose(dw, _to_spatial_first(wt.grad.numpy()), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)
    assert db.shape == (c_out,)


def test_weight_format_errors_and_shapes():
    x = np.ones((1, 3, 6, 6), np.float32)
    with pytest.raises(ValueError, match="weight_format must be 'OIHW' or 'HWIO'"):
        convkern.conv2d(x, np.ones((4, 3, 3, 3), np.float32), weight_format="OHWI")
    with pytest.raises(ValueError, match="weight_format must be 'OIW' or 'WIO'"):
        convkern.conv1d(x[:, :, 0], np.ones((4, 3, 3), np.float32), weight_format="HWIO")
    # A channels-first weight passed as HWIO: the message shows how it was read.
    with pytest.raises(ValueError, match=r"given as 'HWIO' reads as \(3, 3, 8, 5\)"):
        convkern.conv2d(np.ones((1, 5, 6, 6), np.float32), np.ones((8, 5, 3, 3), np.float32), weight_format="HWIO")
    with pytest.raises(ValueError, match=r"\(\*kernel, in_channels/groups, out_channels\)"):
        convkern.conv2d(x, np.ones((3, 3, 4), np.float32), weight_format="HWIO")
    assert convkern.output_shape("conv2d", x.shape, (3, 3, 3, 8), weight_format="HWIO", padding="same") == (1, 8, 6, 6)
    assert convkern.output_shape("conv_transpose2d", x.shape, (2, 2, 5, 3), weight_format="HWIO", stride=2) == (
        1,
        5,
        12,
        12,
    )


@pytest.mark.parametrize("layer", ["Conv2d", "ConvTranspose2d"])
def test_nn_layers_keep_the_weight_format(layer):
    nn.manual_seed(0)
    ref = getattr(nn, layer)(4, 6, 3, stride=2, padding=1, data_format="NHWC")
    nn.manual_seed(0)
    keras_like = getattr(nn, layer)(4, 6, 3, stride=2, padding=1, data_format="channels_last", weight_format="HWIO")
    # The same initial numbers, laid out spatial-first.
    np.testing.assert_array_equal(keras_like.weight.data, _to_spatial_first(ref.weight.data))
    assert "weight_format='HWIO'" in repr(keras_like)
    x = _rng(7).standard_normal((2, 7, 7, 4)).astype(np.float32)
    y_ref, y = ref(x), keras_like(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    dy = _rng(8).standard_normal(y.shape).astype(np.float32)
    dx_ref, dx = ref.backward(dy), keras_like.backward(dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    assert keras_like.weight.grad.shape == keras_like.weight.shape
    np.testing.assert_allclose(keras_like.weight.grad, _to_spatial_first(ref.weight.grad), rtol=1e-5, atol=1e-5)
    assert keras_like.output_shape((2, 7, 7, 4)) == y.shape


# ------------------------------------------------------------------ filter2d and scipy's modes


@pytest.mark.parametrize("mode", ["constant", "mirror", "nearest", "wrap", "reflect"])
@pytest.mark.parametrize("kernel_shape", [(3, 3), (3, 4), (5, 2)])
def test_filter2d_scipy_modes(mode, kernel_shape):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = _rng(9)
    image = rng.random((7, 9))
    k = rng.random(kernel_shape)
    np.testing.assert_allclose(
        filters.filter2d(image, k, mode=mode), ndimage.correlate(image, k, mode=mode), rtol=1e-12, atol=1e-12
    )
    if mode != "reflect":  # the four that are boundaries under another name
        np.testing.assert_array_equal(filters.filter2d(image, k, boundary=mode), filters.filter2d(image, k, mode=mode))
    colour = rng.random((6, 5, 3))
    want = np.stack([ndimage.correlate(colour[..., c], k, mode=mode) for c in range(3)], axis=-1)
    np.testing.assert_allclose(filters.filter2d(colour, k, mode=mode), want, rtol=1e-12, atol=1e-12)


def test_filter2d_mode_errors():
    image = np.zeros((4, 4))
    with pytest.raises(ValueError, match="not both"):
        filters.filter2d(image, "identity", boundary="reflect", mode="mirror")
    with pytest.raises(ValueError, match="mode must be one of scipy.ndimage's"):
        filters.filter2d(image, "identity", mode="grid-wrap")


# ------------------------------------------------------------------ wrong calls name the public function


def test_wrong_calls_name_the_public_function():
    x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    with pytest.raises(TypeError, match=r"^conv2d\(\) got an unexpected keyword argument 'paddin'"):
        convkern.conv2d(x, w, paddin=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^conv2d\(\) takes from 2 to 9 positional arguments but 10 were given"):
        convkern.conv2d(x, w, None, 1, 0, 1, 1, "zeros", None, None)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"^max_pool2d\(\) missing 1 required positional argument: 'kernel_size'"):
        convkern.max_pool2d(x)  # type: ignore[call-overload]
