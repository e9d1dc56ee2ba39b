"""Hostile arguments and values: extreme strides, dilations and paddings, sizes near int64's limit,
Inf/NaN/huge values on the Winograd paths, and the NaN order of max/min pooling. Each case either
gives PyTorch's result or raises a ValueError with exact sizes, and runs in well under a second
(cost follows the output, not the arguments)."""

from __future__ import annotations

import time

import convkern
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

INT64_MAX = 2**63 - 1


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def timed(call):
    start = time.perf_counter()
    result = call()
    assert time.perf_counter() - start < 2.0, "cost grew with the arguments"
    return result


# ==================================================================== extreme geometry


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2**61),
        dict(stride=2**62),
        dict(stride=INT64_MAX),
        dict(stride=10**9),
        dict(stride=2**40),
        dict(dilation=2**61, padding=2**61),
        dict(dilation=2**62, padding=2**61),
        dict(stride=2**61, padding=2**61),
        dict(stride=2**40, padding=2**40 + 7),
    ],
    ids=str,
)
@pytest.mark.parametrize("groups", [1, 2])
def test_conv1d_extreme_arguments_match_pytorch(kw, groups, dtype, rng):
    x = rng.standard_normal((2, 2, 8)).astype(dtype)
    w = rng.standard_normal((2, 2 // groups, 3)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    out_len = (8 + 2 * kw.get("padding", 0) - kw.get("dilation", 1) * 2 - 1) // kw.get("stride", 1) + 1
    if out_len < 1:  # the dilated kernel is longer than the padded input
        with pytest.raises(ValueError, match="kernel is larger than the padded input"):
            convkern.conv1d(x, w, b, groups=groups, **kw)
        return
    y = timed(lambda: convkern.conv1d(x, w, b, groups=groups, **kw))
    want = F.conv1d(t(x).double(), t(w).double(), t(b).double(), groups=groups, **kw)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = timed(lambda: convkern.conv1d_backward(dy, x, w, groups=groups, **kw))
    xt, wt = t(x).double().requires_grad_(), t(w).double().requires_grad_()
    F.conv1d(xt, wt, groups=groups, **kw).backward(t(dy).double())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("stride", [2**60, 10**7, INT64_MAX])
@pytest.mark.parametrize("depthwise", [True, False], ids=("depthwise", "dense"))
def test_conv2d_huge_stride_costs_what_its_output_costs(stride, depthwise, data_format, rng):
    groups, cg = (4, 1) if depthwise else (1, 4)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, cg, 3, 3)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if data_format == "NHWC" else x
    y = timed(lambda: convkern.conv2d(xl, w, groups=groups, stride=stride, data_format=data_format))
    if data_format == "NHWC":
        y = y.transpose(0, 3, 1, 2)
    want = F.conv2d(t(x), t(w), groups=groups, stride=stride)
    assert y.shape == (1, 4, 1, 1)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)


def test_padding_and_dilation_beyond_int64_together(rng):
    # Padded extent 2**64 + 5 and dilated kernel 2**64 - 1: each output o reads x[o] with tap 1 only.
    x, w = rng.standard_normal((1, 1, 7)), rng.standard_normal((1, 1, 3))
    y = timed(lambda: convkern.conv1d(x, w, dilation=INT64_MAX, padding=INT64_MAX))
    np.testing.assert_allclose(y, x * w[0, 0, 1], rtol=1e-15)


def test_same_padding_with_huge_stride():
    y = timed(lambda: convkern.conv1d(np.ones((1, 1, 5), "f4"), np.ones((1, 1, 3), "f4"), stride=2**62, padding="same"))
    np.testing.assert_array_equal(y, [[[3.0]]])  # ceil(5 / 2**62) = 1 output, no padding needed


def test_conv_transpose_huge_stride():
    x, w = np.ones((1, 1, 1)), np.ones((1, 1, 3))
    # One input cell: the stride never applies, the output is the kernel (PyTorch 2.13 refuses this
    # stride with a wrapped value in its message).
    y = timed(lambda: convkern.conv_transpose1d(x, w, stride=2**61))
    np.testing.assert_array_equal(y, [[[1.0, 1.0, 1.0]]])
    true_size = 7 * 2**61 + 3
    with pytest.raises(ValueError, match=f"output size {true_size} does not fit a 64-bit integer"):
        convkern.conv_transpose1d(np.ones((1, 1, 8)), w, stride=2**61)


def test_conv_transpose_huge_padding_reports_the_true_size():
    true_size = 7 - 2 * INT64_MAX + 2 + 1
    with pytest.raises(ValueError, match=rf"transposed output size \({true_size},\)"):
        convkern.conv_transpose1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), padding=INT64_MAX)


def test_sizes_beyond_int64_are_printed_exactly():
    with pytest.raises(
        ValueError,
        match=r"dilated kernel size \(18446744073709551615,\), padded input size "
        r"\(9223372036854775815,\)",
    ):
        convkern.conv1d(np.ones((1, 1, 7)), np.ones((1, 1, 3)), dilation=INT64_MAX, padding=2**62)
    with pytest.raises(ValueError, match="convolution output size 18446744073709551620 does not fit"):
        convkern.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), padding=INT64_MAX)


def test_replicate_padding_beyond_int64_is_refused():
    with pytest.raises(ValueError, match=r"padded input size \(9223372036854775816,\) does not fit"):
        convkern.conv1d(np.ones((1, 1, 8)), np.ones((1, 1, 3)), padding=2**62, padding_mode="replicate")


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_ceil_mode_with_stride_near_int64_max(kind):
    x = np.arange(8, dtype="f4").reshape(1, 1, 8)
    y = getattr(convkern, f"{kind}_pool1d")(x, 2, stride=INT64_MAX, ceil_mode=True)
    # One window, cells 0 and 1 (PyTorch gives [[[1.]]] for max; its avg_pool1d refuses the stride).
    np.testing.assert_array_equal(y, [[[1.0 if kind == "max" else 0.5]]])
    if kind == "max":
        np.testing.assert_array_equal(y, F.max_pool1d(t(x), 2, stride=INT64_MAX, ceil_mode=True).numpy())


def test_pool_kernel_near_int64_max():
    # A window of 2**63 - 1 cells, mostly padding, sliding by one: 8 + 2p - k + 1 outputs.
    x = np.arange(8, dtype="f4").reshape(1, 1, 8)
    k, p = INT64_MAX, 2**62 - 1
    y, idx = timed(lambda: convkern.max_pool1d(x, k, stride=1, padding=p, return_indices=True))
    assert y.shape == (1, 1, 8 + 2 * p - k + 1)
    assert (y == 7).all() and (idx == 7).all()
    avg = timed(lambda: convkern.avg_pool1d(x, k, stride=1, padding=p, count_include_pad=False))
    np.testing.assert_allclose(avg, 3.5)


# ================================================================ Winograd, non-finite


def nonfinite_sets_match(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    for mask in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(mask(got), mask(want))
    finite = np.isfinite(want)
    scale = np.abs(want[finite]).max() if finite.any() else 1.0
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-3, atol=1e-4 * scale)


@pytest.fixture(params=["auto", "forced"])
def winograd(request, monkeypatch):
    if request.param == "forced":
        monkeypatch.setenv("CONVKERN_WINOGRAD", "1")
    return request.param


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("poison", ["inf", "nan"])
def test_small_layer_weight_gradient_with_nonfinite_input(poison, data_format, rng):
    """LeNet-sized weight gradients read the input in place, their tiles reaching past each
    kernel row's run: an infinite input there must not turn a zero into NaN in a weight that it
    does not reach."""
    x = rng.standard_normal((4, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    x[1, 2, 3, 12] = float(poison)  # column 12: no output's window starts there, but windows reach it
    x[2, 0, 13, 13] = float(poison)
    last = data_format == "NHWC"
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if last else (lambda a: a)
    _, dw, _ = convkern.conv2d_backward(to(dy), to(x), w, data_format=data_format)
    xt, wt = t(x).double(), t(w).double().requires_grad_()
    F.conv2d(xt, wt).backward(t(dy).double())
    nonfinite_sets_match(dw, wt.grad.numpy().astype(np.float32))
    assert np.isfinite(dw).any() and not np.isfinite(dw).all()


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("poison", ["inf", "nan", "big"])
def test_winograd_2d_nonfinite_and_large_values(poison, winograd, data_format, rng):
    x = rng.standard_normal((1, 16, 48, 48)).astype(np.float32)
    w = np.abs(rng.standard_normal((16, 16, 3, 3))).astype(np.float32)
    dy = rng.standard_normal((1, 16, 48, 48)).astype(np.float32)
    if poison == "big":
        x *= 1e34  # true outputs and weight gradients ~1e36: finite, but the transforms would overflow
    else:
        x[0, 3, 20, 20] = x[0, 5, 0, 47] = float(poison)
        dy[0, 2, 10, 10] = float(poison)
    last = data_format == "NHWC"
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if last else (lambda a: a)
    back = (lambda a: a.transpose(0, 3, 1, 2)) if last else (lambda a: a)
    y = back(convkern.conv2d(to(x), w, padding=1, data_format=data_format))
    xt, wt = t(x).double().requires_grad_(), t(w).double().requires_grad_()
    yt = F.conv2d(xt, wt, padding=1)
    nonfinite_sets_match(y, yt.detach().numpy().astype(np.float32))
    yt.backward(t(dy).double())
    dx, dw, _ = convkern.conv2d_backward(to(dy), to(x), w, padding=1, data_format=data_format)
    dx = back(dx)
    nonfinite_sets_match(dx, xt.grad.numpy().astype(np.float32))
    nonfinite_sets_match(dw, wt.grad.numpy().astype(np.float32))
    if poison == "inf":
        assert np.isposinf(y).sum() == (9 + 4) * 16  # 3x3 outputs per channel, 2x2 at the corner
    if poison == "big":
        assert np.isfinite(y).all() and np.isfinite(dw).all()


@pytest.mark.parametrize("data_format", ["NCDHW", "NDHWC"])
@pytest.mark.parametrize("poison", ["inf", "nan"])
def test_winograd_3d_nonfinite(poison, winograd, data_format, rng):
    x = rng.standard_normal((1, 16, 6, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((1, 16, 6, 20, 20)).astype(np.float32)
    x[0, 1, 3, 10, 10] = float(poison)
    dy[0, 4, 2, 5, 5] = float(poison)
    last = data_format == "NDHWC"
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else (lambda a: a)
    back = (lambda a: np.moveaxis(a, -1, 1)) if last else (lambda a: a)
    xt, wt = t(x).double().requires_grad_(), t(w).double().requires_grad_()
    yt = F.conv3d(xt, wt, padding=1)
    yt.backward(t(dy).double())
    y = back(convkern.conv3d(to(x), w, padding=1, data_format=data_format))
    nonfinite_sets_match(y, yt.detach().numpy().astype(np.float32))
    dx, dw, _ = convkern.conv3d_backward(to(dy), to(x), w, padding=1, data_format=data_format)
    dx = back(dx)
    nonfinite_sets_match(dx, xt.grad.numpy().astype(np.float32))
    nonfinite_sets_match(dw, wt.grad.numpy().astype(np.float32))


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_nonfinite_weights_multiply_padding(groups, data_format, rng):
    """Padding cells are zeros in the products, as in PyTorch: Inf weights reaching them give NaN."""
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((4, 4 // groups, 3, 3))
    w[1, 0, 0, 0] = np.inf
    dy = rng.standard_normal((2, 4, 9, 9))
    dy[1, 2, 0, 4] = -np.inf
    last = data_format == "NHWC"
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if last else (lambda a: a)
    back = (lambda a: a.transpose(0, 3, 1, 2)) if last else (lambda a: a)
    xt, wt = t(x).requires_grad_(), t(w).requires_grad_()
    yt = F.conv2d(xt, wt, padding=1, groups=groups)
    yt.backward(t(dy))
    nonfinite_sets_match(
        back(convkern.conv2d(to(x), w, padding=1, groups=groups, data_format=data_format)), yt.detach().numpy()
    )
    dx, dw, _ = convkern.conv2d_backward(to(dy), to(x), w, padding=1, groups=groups, data_format=data_format)
    nonfinite_sets_match(back(dx), xt.grad.numpy())
    nonfinite_sets_match(dw, wt.grad.numpy())


@pytest.mark.parametrize("stride,ks", [(2, 3), (1, 5)])
def test_nonfinite_weights_in_channels_last_backward_data_by_phases(stride, ks, rng):
    """The channels-last backward data by stride phases pads grad_output with zeros that meet real
    taps: with an infinite or NaN weight it must give PyTorch's gradient, not extra NaN."""
    x = rng.standard_normal((2, 32, 6, 56 if stride == 2 else 24))
    w = rng.standard_normal((16, 32, ks, ks))
    w[1, 0, 0, 0] = np.inf
    w[3, 5, 2, 1] = np.nan
    pad = ks // 2
    xt, wt = t(x).requires_grad_(), t(w).requires_grad_()
    yt = F.conv2d(xt, wt, stride=stride, padding=pad)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(t(dy))
    nhwc = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # noqa: E731
    dx = convkern.conv2d_backward(
        nhwc(dy), nhwc(x), w, stride=stride, padding=pad, data_format="NHWC", output_mask=(True, False, False)
    )[0]
    nonfinite_sets_match(dx.transpose(0, 3, 1, 2), xt.grad.numpy())


# ================================================================== NaN order in pooling


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", ["max", "min"])
def test_pooling_picks_the_last_nan_as_pytorch(kind, data_format, rng):
    x = rng.integers(-2, 3, size=(2, 3, 12, 10)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.nan
    last = data_format == "NHWC"
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if last else x
    back = (lambda a: a.transpose(0, 3, 1, 2)) if last else (lambda a: a)
    sign = 1 if kind == "max" else -1
    _, idx = getattr(convkern, f"{kind}_pool2d")(
        xl, 3, stride=2, padding=1, return_indices=True, data_format=data_format
    )
    _, want = F.max_pool2d(sign * t(x), 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(back(idx), want.numpy())
    if kind == "max":
        _, idx = convkern.adaptive_max_pool2d(xl, (5, 3), return_indices=True, data_format=data_format)
        _, want = F.adaptive_max_pool2d(t(x), (5, 3), return_indices=True)
        np.testing.assert_array_equal(back(idx), want.numpy())
    # Global: the gradient goes to the last NaN of each plane.
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    dx = back(getattr(convkern, f"global_{kind}_pool2d_backward")(dy, xl, data_format=data_format))
    xt = t(x).requires_grad_()
    (sign * F.adaptive_max_pool2d(sign * xt, 1)).reshape(2, 3).backward(t(dy))
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_depthwise_channels_last_one_input_slice_padded_depth(rng):
    """One input slice padded on D gives several output slices; each must be written."""
    x = rng.standard_normal((2, 1, 6, 8, 3)).astype(np.float32)  # NDHWC
    w = rng.standard_normal((3, 1, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    kw = dict(stride=(2, 2, 1), dilation=(3, 1, 2), padding=(1, 1, 2), groups=3)
    out = np.full((2, 2, 3, 8, 3), np.nan, np.float32)
    y = convkern.conv3d(x, w, b, **kw, data_format="NDHWC", out=out)
    want = F.conv3d(t(x).permute(0, 4, 1, 2, 3), t(w), t(b), **kw).permute(0, 2, 3, 4, 1)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)
