"""Tests of convkern.reference, the NumPy oracle that every kernel is judged against.

Four kinds of evidence: the worked examples of the course material; central finite differences of
every backward; PyTorch (float64, autograd) on seeded random configurations; small
hand-made inputs for the rules PyTorch does not share or that random data never hits
(NaN, ties, padding against infinities, the ceil_mode last window, empty windows).
"""

import ast
import importlib.util
import pathlib
import warnings

import numpy as np
import pytest
from convkern import reference as ref

CHANNELS_LAST = {"NWC", "NHWC", "NDHWC"}


# ======================================================================== helpers


@pytest.fixture(scope="module")
def torch():
    """PyTorch, for the cross-checks; every tensor is built from float64 NumPy arrays."""
    return pytest.importorskip("torch")


def to_channels_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def to_channels_first(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def activation(rng, n, c, spatial, data_format=None):
    """Random activation in the caller's layout."""
    x = rng.standard_normal((n, c) + tuple(spatial))
    return to_channels_last(x) if data_format in CHANNELS_LAST else x


def distinct(rng, shape):
    """Values that are pairwise at least 1 apart, so max/min pooling is differentiable."""
    return rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64) - 10.0


def numerical_grad(f, x, g, eps=1e-6):
    """d sum(f(x) * g) / dx by central differences, one element at a time (x is restored)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = np.sum(f(x) * g)
        x[i] = saved - eps
        minus = np.sum(f(x) * g)
        x[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def assert_fd(f, x, g, analytic):
    np.testing.assert_allclose(analytic, numerical_grad(f, x, g), rtol=1e-6, atol=1e-6)


def resolve_pads(padding, in_sizes, kernel, stride, dilation):
    """The test's own reading of conv padding: one (before, after) pair per axis."""
    rank = len(in_sizes)
    stride, dilation = [np.broadcast_to(v, (rank,)).tolist() for v in (stride, dilation)]
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        return [ref.same_padding(*a) for a in zip(in_sizes, kernel, stride, dilation)]
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def torch_pad_arg(pads):
    """(before, after) pairs as F.pad wants them: last axis first."""
    return [p for pair in reversed(pads) for p in pair]


# ================================================================ worked examples


def test_spec_conv1d_example():
    y = ref.conv1d(np.array([[0, 0, 0, 0, 1, 2, 3, 3]]), np.array([[[-1, 1]]]))
    np.testing.assert_array_equal(y, [[0, 0, 0, 1, 1, 1, 0]])


def test_spec_conv2d_same_example():
    image = np.array(
        [
            [130, 136, 53, 44, 231, 67, 108],
            [130, 89, 77, 58, 250, 154, 130],
            [208, 239, 120, 111, 112, 181, 22],
            [203, 223, 59, 79, 28, 57, 67],
            [164, 140, 215, 235, 66, 30, 204],
            [97, 159, 50, 110, 104, 76, 7],
            [207, 150, 58, 47, 152, 81, 237],
        ]
    )
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]) / 5
    y = ref.conv2d(image[None], kernel[None, None], padding="same")[0]
    assert y.shape == (7, 7) and y.dtype == np.float64
    np.testing.assert_allclose(y[0], [79.2, 81.6, 62.0, 77.2, 118.4, 112.0, 61.0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(y[-1], [90.8, 114.8, 61.0, 73.4, 76.8, 109.2, 65.0], rtol=0, atol=1e-9)


def test_spec_pool_examples():
    a = np.array([[[3, 4, -2, -1], [-2, 0, 1, 2], [1, -2, 2, 6], [0, 8, 3, 5]]])
    np.testing.assert_array_equal(ref.max_pool2d(a, 2, 2), [[[4, 2], [8, 6]]])
    np.testing.assert_array_equal(ref.avg_pool2d(a, 2, 2), [[[1.25, 0], [1.75, 4]]])
    b = np.array([[[2, 1, 1, 3], [4, 5, 2, 1], [1, 4, 5, 3], [5, 1, 7, 6]]])
    np.testing.assert_array_equal(ref.max_pool2d(b, 2, 1), [[[5, 5, 3], [5, 5, 5], [5, 7, 7]]])
    np.testing.assert_array_equal(ref.avg_pool2d(b, 2, 2), [[[3, 1.75], [2.75, 5.25]]])


def test_spec_keras_same_stride2_shape():
    y = ref.conv2d(
        np.ones((1, 128, 128, 1)), np.ones((16, 1, 3, 3)), np.zeros(16), stride=2, padding="same", data_format="NHWC"
    )
    assert y.shape == (1, 64, 64, 16)


# ========================================================================== sizes


@pytest.mark.parametrize(
    "args, expected",
    [
        ((7, 3, 1, 1), (1, 1)),
        ((128, 3, 2, 1), (0, 1)),  # out = 64, total = 1: the extra cell goes after
        ((6, 4, 1, 1), (1, 2)),  # even kernel at stride 1: PyTorch's "same"
        ((10, 3, 3, 2), (2, 2)),  # out 4: total = 3*3 + 5 - 10
        ((5, 1, 5, 1), (0, 0)),
        ((4, 2, 4, 1), (0, 0)),  # total would be negative
    ],
)
def test_same_padding(args, expected):
    assert ref.same_padding(*args) == expected
    before, after = expected
    in_size, kernel, stride, dilation = args
    assert ref.conv_output_size(in_size, kernel, stride, before, after, dilation) == -(-in_size // stride)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((5, 2, 2, 1, 1, False), 3),
        ((5, 2, 2, 1, 1, True), 3),  # ceil gives 4, but window 3 would start in the right padding
        ((6, 3, 2, 0, 1, True), 3),  # the last window overhangs the input
        ((6, 3, 2, 0, 1, False), 2),
        ((9, 3, 2, 1, 2, True), 4),
        ((1, 2, 1, 1, 2, False), 1),
    ],
)
def test_pool_output_size(args, expected):
    assert ref.pool_output_size(*args) == expected


# ============================================================ conv: configurations
#
# rank, N, C_in, C_out, spatial size, kernel, keyword arguments

CONV_CASES = [
    pytest.param(1, 2, 3, 4, (9,), (3,), dict(stride=2, padding=1), id="1d-stride"),
    pytest.param(1, 1, 4, 2, (10,), (3,), dict(dilation=3, groups=2), id="1d-dilation-groups"),
    pytest.param(1, 2, 2, 3, (7,), (4,), dict(padding=((2, 1),)), id="1d-asymmetric"),
    pytest.param(1, 1, 2, 2, (8,), (3,), dict(padding="same", stride=3, dilation=2), id="1d-same-s3-d2"),
    pytest.param(1, 2, 2, 3, (6,), (3,), dict(padding=2, padding_mode="reflect"), id="1d-reflect"),
    pytest.param(1, 1, 2, 3, (5,), (3,), dict(padding=((3, 1),), padding_mode="replicate"), id="1d-replicate"),
    pytest.param(1, 1, 2, 2, (5,), (4,), dict(padding=(5,), stride=2, padding_mode="circular"), id="1d-circular"),
    pytest.param(1, 2, 3, 2, (7,), (3,), dict(padding=1, data_format="NWC"), id="1d-NWC"),
    pytest.param(
        2, 2, 4, 6, (6, 5), (3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2), id="2d-mixed"
    ),
    pytest.param(2, 1, 3, 2, (5, 6), (2, 3), dict(padding=((1, 0), (0, 2))), id="2d-asymmetric"),
    pytest.param(2, 1, 2, 2, (7, 6), (3, 2), dict(padding="same", stride=2, dilation=(2, 1)), id="2d-same-s2"),
    pytest.param(2, 1, 2, 2, (5, 6), (4, 3), dict(padding="same"), id="2d-same-even-kernel"),
    pytest.param(2, 1, 2, 3, (5, 4), (3, 2), dict(padding="valid", stride=(1, 2)), id="2d-valid"),
    pytest.param(2, 2, 2, 2, (5, 4), (3, 3), dict(padding=(2, 1), padding_mode="reflect"), id="2d-reflect"),
    pytest.param(
        2, 1, 2, 2, (4, 5), (3, 3), dict(padding=((2, 0), (1, 3)), padding_mode="replicate"), id="2d-replicate"
    ),
    pytest.param(2, 1, 2, 2, (4, 5), (3, 2), dict(padding=(2, 1), stride=2, padding_mode="circular"), id="2d-circular"),
    pytest.param(2, 1, 3, 6, (5, 5), (3, 3), dict(groups=3, padding=1), id="2d-depthwise"),
    pytest.param(2, 2, 3, 2, (5, 6), (3, 3), dict(padding=1, stride=2, data_format="NHWC"), id="2d-NHWC"),
    pytest.param(3, 1, 2, 2, (4, 5, 3), (2, 3, 2), dict(stride=(1, 2, 1), padding=(1, 0, 1)), id="3d-stride"),
    pytest.param(
        3,
        1,
        2,
        2,
        (4, 4, 3),
        (3, 2, 2),
        dict(padding="same", dilation=(1, 2, 1), padding_mode="circular"),
        id="3d-same-circular",
    ),
    pytest.param(3, 1, 2, 2, (3, 4, 3), (2, 2, 2), dict(padding=1, padding_mode="reflect"), id="3d-reflect"),
    pytest.param(
        3,
        1,
        2,
        4,
        (3, 4, 4),
        (2, 2, 3),
        dict(groups=2, padding=1, padding_mode="replicate", data_format="NDHWC"),
        id="3d-NDHWC",
    ),
]


def conv_problem(rank, n, c_in, c_out, spatial, kernel, kwargs, seed=0):
    rng = np.random.default_rng(seed)
    groups = kwargs.get("groups", 1)
    x = activation(rng, n, c_in, spatial, kwargs.get("data_format"))
    w = rng.standard_normal((c_out, c_in // groups) + kernel)
    b = rng.standard_normal(c_out)
    return rng, x, w, b


def conv_fn(rank, backward=False):
    return getattr(ref, f"conv{rank}d" + ("_backward" if backward else ""))


@pytest.mark.parametrize("rank, n, c_in, c_out, spatial, kernel, kwargs", CONV_CASES)
def test_conv_backward_finite_differences(rank, n, c_in, c_out, spatial, kernel, kwargs):
    rng, x, w, b = conv_problem(rank, n, c_in, c_out, spatial, kernel, kwargs)
    forward, backward = conv_fn(rank), conv_fn(rank, backward=True)
    y = forward(x, w, b, **kwargs)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = backward(g, x, w, **kwargs)
    assert grad_x.shape == x.shape and grad_w.shape == w.shape and grad_b.shape == b.shape
    assert_fd(lambda x_: forward(x_, w, b, **kwargs), x, g, grad_x)
    assert_fd(lambda w_: forward(x, w_, b, **kwargs), w, g, grad_w)
    assert_fd(lambda b_: forward(x, w, b_, **kwargs), b, g, grad_b)


@pytest.mark.torch
@pytest.mark.parametrize("rank, n, c_in, c_out, spatial, kernel, kwargs", CONV_CASES)
def test_conv_matches_torch(torch, rank, n, c_in, c_out, spatial, kernel, kwargs):
    rng, x, w, b = conv_problem(rank, n, c_in, c_out, spatial, kernel, kwargs, seed=1)
    y = conv_fn(rank)(x, w, b, **kwargs)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = conv_fn(rank, backward=True)(g, x, w, **kwargs)

    F = torch.nn.functional
    channels_last = kwargs.get("data_format") in CHANNELS_LAST
    layout = to_channels_last if channels_last else (lambda a: a)
    x_nc = to_channels_first(x) if channels_last else x
    stride, dilation = kwargs.get("stride", 1), kwargs.get("dilation", 1)
    pads = resolve_pads(kwargs.get("padding", 0), spatial, kernel, stride, dilation)
    mode = kwargs.get("padding_mode", "zeros")
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x_nc, w, b))
    # PyTorch's modules pad with F.pad for the non-zero modes, then convolve unpadded.
    xp = F.pad(xt, torch_pad_arg(pads), mode="constant" if mode == "zeros" else mode)
    yt = getattr(F, f"conv{rank}d")(
        xp, wt, bt, stride=stride, padding=0, dilation=dilation, groups=kwargs.get("groups", 1)
    )
    yt.backward(torch.tensor(to_channels_first(g) if channels_last else g))
    np.testing.assert_allclose(y, layout(yt.detach().numpy()), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_x, layout(xt.grad.numpy()), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_w, wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_b, bt.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize("kernel, dilation", [((4, 3), (1, 2)), ((2, 5), 1), ((3, 3), 3)])
def test_conv_same_stride1_is_torch_same(torch, kernel, dilation):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((2, 3) + kernel)
    with warnings.catch_warnings():
        # PyTorch warns that an even kernel makes it copy the input: that case is the point.
        warnings.simplefilter("ignore", UserWarning)
        expected = torch.nn.functional.conv2d(
            torch.tensor(x), torch.tensor(w), padding="same", dilation=dilation
        ).numpy()
    np.testing.assert_allclose(ref.conv2d(x, w, padding="same", dilation=dilation), expected, rtol=1e-10, atol=1e-10)


def test_conv1d_flat_pair_is_before_after():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 6)), rng.standard_normal((3, 2, 3))
    np.testing.assert_array_equal(ref.conv1d(x, w, padding=(1, 2)), ref.conv1d(x, w, padding=((1, 2),)))
    assert ref.conv1d(x, w, padding=(1, 2)).shape == (1, 3, 7)


# ============================================================== conv_transpose

TRANSPOSE_CASES = [
    pytest.param(1, 2, 4, 2, (5,), (3,), dict(stride=2, padding=1, output_padding=1, groups=2), id="1d-groups"),
    pytest.param(1, 1, 2, 3, (4,), (2,), dict(dilation=3, output_padding=2), id="1d-op-ge-stride"),
    pytest.param(
        2,
        1,
        2,
        4,
        (3, 4),
        (3, 2),
        dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2)),
        id="2d-mixed",
    ),
    pytest.param(2, 2, 3, 2, (3, 3), (3, 3), dict(stride=2, padding=1, data_format="NHWC"), id="2d-NHWC"),
    pytest.param(
        3, 1, 2, 2, (2, 3, 2), (2, 2, 3), dict(stride=2, padding=(0, 1, 1), output_padding=(1, 0, 1)), id="3d"
    ),
]


def transpose_problem(rank, n, c_in, c_out, spatial, kernel, kwargs, seed=0):
    rng = np.random.default_rng(seed)
    groups = kwargs.get("groups", 1)
    x = activation(rng, n, c_in, spatial, kwargs.get("data_format"))
    return rng, x, rng.standard_normal((c_in, c_out // groups) + kernel), rng.standard_normal(c_out)


@pytest.mark.parametrize("rank, n, c_in, c_out, spatial, kernel, kwargs", TRANSPOSE_CASES)
def test_conv_transpose_backward_finite_differences(rank, n, c_in, c_out, spatial, kernel, kwargs):
    rng, x, w, b = transpose_problem(rank, n, c_in, c_out, spatial, kernel, kwargs)
    forward = getattr(ref, f"conv_transpose{rank}d")
    y = forward(x, w, b, **kwargs)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = getattr(ref, f"conv_transpose{rank}d_backward")(g, x, w, **kwargs)
    assert_fd(lambda x_: forward(x_, w, b, **kwargs), x, g, grad_x)
    assert_fd(lambda w_: forward(x, w_, b, **kwargs), w, g, grad_w)
    assert_fd(lambda b_: forward(x, w, b_, **kwargs), b, g, grad_b)


@pytest.mark.torch
@pytest.mark.parametrize("rank, n, c_in, c_out, spatial, kernel, kwargs", TRANSPOSE_CASES)
def test_conv_transpose_matches_torch(torch, rank, n, c_in, c_out, spatial, kernel, kwargs):
    rng, x, w, b = transpose_problem(rank, n, c_in, c_out, spatial, kernel, kwargs, seed=1)
    y = getattr(ref, f"conv_transpose{rank}d")(x, w, b, **kwargs)
    g = rng.standard_normal(y.shape)
    grads = getattr(ref, f"conv_transpose{rank}d_backward")(g, x, w, **kwargs)

    kwargs = dict(kwargs)
    channels_last = kwargs.pop("data_format", None) in CHANNELS_LAST
    layout = to_channels_last if channels_last else (lambda a: a)
    xt = torch.tensor(to_channels_first(x) if channels_last else x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = getattr(torch.nn.functional, f"conv_transpose{rank}d")(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(to_channels_first(g) if channels_last else g))
    np.testing.assert_allclose(y, layout(yt.detach().numpy()), rtol=1e-10, atol=1e-10)
    for ours, theirs in zip(grads, (layout(xt.grad.numpy()), wt.grad.numpy(), bt.grad.numpy())):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


# ===================================================================== pooling
#
# rank, spatial size, keyword arguments

EXTREME_POOL_CASES = [
    pytest.param(1, (9,), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="1d-ceil"),
    pytest.param(1, (11,), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), id="1d-dilation"),
    pytest.param(2, (6, 7), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1)), id="2d-overlap"),
    pytest.param(2, (6, 6), dict(kernel_size=2), id="2d-stride-none"),
    pytest.param(2, (9, 8), dict(kernel_size=3, stride=2, padding=1, dilation=(2, 1)), id="2d-dilation"),
    pytest.param(
        2,
        (5, 6),
        dict(kernel_size=2, stride=2, padding=1, dilation=2, ceil_mode=True, data_format="NHWC"),
        id="2d-NHWC",
    ),
    pytest.param(3, (4, 5, 4), dict(kernel_size=2, stride=1, padding=(1, 0, 1)), id="3d-overlap"),
    pytest.param(3, (5, 6, 5), dict(kernel_size=(2, 3, 2), stride=2, padding=(1, 1, 0), ceil_mode=True), id="3d-ceil"),
]

SAME_POOL_CASES = [
    pytest.param(1, (10,), dict(kernel_size=3, stride=1, dilation=2, padding="same"), id="1d-same-dilation"),
    pytest.param(2, (7, 6), dict(kernel_size=(3, 4), stride=2, padding="same"), id="2d-same-s2"),
    pytest.param(2, (5, 6), dict(kernel_size=2, stride=2, padding="valid"), id="2d-valid"),
]

AVG_POOL_CASES = [
    pytest.param(1, (9,), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="1d-ceil-incl"),
    pytest.param(
        1, (10,), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False), id="1d-ceil-excl"
    ),
    pytest.param(1, (8,), dict(kernel_size=3, stride=1, padding=1, divisor_override=2), id="1d-override"),
    pytest.param(2, (7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="2d-ceil-incl"),
    pytest.param(
        2, (7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), id="2d-ceil-excl"
    ),
    pytest.param(
        2, (6, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), count_include_pad=False), id="2d-excl"
    ),
    pytest.param(
        2, (5, 5), dict(kernel_size=(2, 3), stride=1, divisor_override=5, data_format="NHWC"), id="2d-override-NHWC"
    ),
    pytest.param(
        3, (5, 4, 6), dict(kernel_size=(3, 2, 3), stride=2, padding=(1, 1, 1), ceil_mode=True), id="3d-ceil-incl"
    ),
    pytest.param(3, (4, 5, 3), dict(kernel_size=2, stride=1, padding=1, count_include_pad=False), id="3d-excl"),
    pytest.param(1, (8,), dict(kernel_size=4, stride=3, padding="same"), id="1d-same"),
    pytest.param(2, (7, 5), dict(kernel_size=3, stride=2, padding="same", count_include_pad=True), id="2d-same"),
]


def pool_input(rank, spatial, kwargs, seed=0, n=2, c=3):
    rng = np.random.default_rng(seed)
    x = distinct(rng, (n, c) + spatial)
    return rng, to_channels_last(x) if kwargs.get("data_format") in CHANNELS_LAST else x


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("rank, spatial, kwargs", EXTREME_POOL_CASES + SAME_POOL_CASES)
def test_extreme_pool_backward_finite_differences(kind, rank, spatial, kwargs):
    rng, x = pool_input(rank, spatial, kwargs)
    forward = getattr(ref, f"{kind}_pool{rank}d")
    backward = getattr(ref, f"{kind}_pool{rank}d_backward")
    y, indices = forward(x, **kwargs, return_indices=True)
    g = rng.standard_normal(y.shape)
    grad = backward(g, x, **kwargs)
    assert_fd(lambda x_: forward(x_, **kwargs), x, g, grad)
    np.testing.assert_array_equal(backward(g, x, **kwargs, indices=indices), grad)


@pytest.mark.parametrize("rank, spatial, kwargs", AVG_POOL_CASES)
def test_avg_pool_backward_finite_differences(rank, spatial, kwargs):
    rng, x = pool_input(rank, spatial, kwargs)
    x = rng.standard_normal(x.shape)
    y = getattr(ref, f"avg_pool{rank}d")(x, **kwargs)
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"avg_pool{rank}d_backward")(g, x, **kwargs)
    assert_fd(lambda x_: getattr(ref, f"avg_pool{rank}d")(x_, **kwargs), x, g, grad)


def torch_layout(kwargs):
    kwargs = dict(kwargs)
    channels_last = kwargs.pop("data_format", None) in CHANNELS_LAST
    return kwargs, channels_last


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("rank, spatial, kwargs", EXTREME_POOL_CASES)
def test_extreme_pool_matches_torch(torch, kind, rank, spatial, kwargs):
    rng = np.random.default_rng(4)
    x = activation(rng, 2, 3, spatial, kwargs.get("data_format"))
    y, indices = getattr(ref, f"{kind}_pool{rank}d")(x, **kwargs, return_indices=True)
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"{kind}_pool{rank}d_backward")(g, x, **kwargs)

    torch_kwargs, channels_last = torch_layout(kwargs)
    layout = to_channels_last if channels_last else (lambda a: a)
    xt = torch.tensor(to_channels_first(x) if channels_last else x, requires_grad=True)
    sign = 1 if kind == "max" else -1  # min pooling is -max_pool(-x)
    yt, it = getattr(torch.nn.functional, f"max_pool{rank}d")(sign * xt, **torch_kwargs, return_indices=True)
    (sign * yt).backward(torch.tensor(to_channels_first(g) if channels_last else g))
    np.testing.assert_array_equal(y, layout(sign * yt.detach().numpy()))
    np.testing.assert_array_equal(indices, layout(it.numpy()))
    assert indices.dtype == np.int64
    np.testing.assert_allclose(grad, layout(xt.grad.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("rank, spatial, kwargs", [c for c in AVG_POOL_CASES if "same" not in c.id])
def test_avg_pool_matches_torch(torch, rank, spatial, kwargs):
    rng = np.random.default_rng(5)
    x = activation(rng, 2, 3, spatial, kwargs.get("data_format"))
    y = getattr(ref, f"avg_pool{rank}d")(x, **kwargs)
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"avg_pool{rank}d_backward")(g, x, **kwargs)

    torch_kwargs, channels_last = torch_layout(kwargs)
    layout = to_channels_last if channels_last else (lambda a: a)
    xt = torch.tensor(to_channels_first(x) if channels_last else x, requires_grad=True)
    if rank == 1:
        # F.avg_pool1d has no divisor_override: pool a 1 x W image instead.
        for key in ("kernel_size", "stride", "padding"):
            if key in torch_kwargs:
                torch_kwargs[key] = (1 if key != "padding" else 0, torch_kwargs[key])
        yt = torch.nn.functional.avg_pool2d(xt[:, :, None, :], **torch_kwargs)[:, :, 0, :]
    else:
        yt = getattr(torch.nn.functional, f"avg_pool{rank}d")(xt, **torch_kwargs)
    yt.backward(torch.tensor(to_channels_first(g) if channels_last else g))
    np.testing.assert_allclose(y, layout(yt.detach().numpy()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, layout(xt.grad.numpy()), rtol=1e-12, atol=1e-12)


def brute_force_same_pool_1d(x, kernel, stride, dilation, kind):
    """Direct loops over the "same" rule of docs/semantics.md, for one row."""
    before, _ = ref.same_padding(len(x), kernel, stride, dilation)
    out = []
    for o in range(-(-len(x) // stride)):
        cells = [x[i] for i in (o * stride - before + k * dilation for k in range(kernel)) if 0 <= i < len(x)]
        out.append({"max": max, "min": min, "avg": lambda v: sum(v) / len(v)}[kind](cells))
    return out


SAME_1D = [(7, 3, 2, 1), (8, 4, 3, 1), (9, 2, 1, 3), (5, 5, 1, 1)]


@pytest.mark.parametrize(
    "kind, n, kernel, stride, dilation",
    [(kind,) + case for kind in ("max", "min") for case in SAME_1D]
    + [("avg",) + case for case in SAME_1D if case[3] == 1],
)
def test_same_pool_matches_brute_force(kind, n, kernel, stride, dilation):
    x = np.random.default_rng(6).standard_normal(n)
    if kind == "avg":
        # "same" ignores count_include_pad: padded cells never count.
        y = ref.avg_pool1d(x[None], kernel, stride, "same", count_include_pad=True)[0]
    else:
        y = getattr(ref, f"{kind}_pool1d")(x[None], kernel, stride, "same", dilation)[0]
    np.testing.assert_allclose(y, brute_force_same_pool_1d(x, kernel, stride, dilation, kind), rtol=1e-14)


# ===================================================== pooling: the fine print


def test_nan_propagates_and_points_to_last_nan():
    nan = np.nan
    x = np.array([[1.0, nan, 3.0, nan, 0.0]])
    for kind in ("max", "min"):
        y, i = getattr(ref, f"{kind}_pool1d")(x, 5, return_indices=True)
        assert np.isnan(y[0, 0]) and i[0, 0] == 3
        grad = getattr(ref, f"{kind}_pool1d_backward")(np.ones((1, 1)), x, 5)
        np.testing.assert_array_equal(grad, [[0, 0, 0, 1, 0]])
    # Row-major window order: (1, 0) comes after (0, 1).
    x2 = np.array([[[0.0, nan, 1.0], [nan, 5.0, 2.0]]])
    _, i = ref.max_pool2d(x2, (2, 2), 1, return_indices=True)
    np.testing.assert_array_equal(i, [[[3, 1]]])
    y = ref.global_max_pool2d(x2)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(ref.global_max_pool2d_backward(np.array([2.0]), x2), [[[0, 0, 0], [2, 0, 0]]])
    y, i = ref.adaptive_max_pool1d(x, 2, return_indices=True)
    assert np.isnan(y).all() and i.tolist() == [[1, 3]]


def test_ties_go_to_first_element():
    x = np.array([[5.0, 5.0, 1.0, 5.0]])
    y, i = ref.max_pool1d(x, 3, 1, return_indices=True)
    np.testing.assert_array_equal(i, [[0, 1]])
    # Overlapping windows that pick the same cell accumulate there.
    np.testing.assert_array_equal(ref.max_pool1d_backward(np.array([[1.0, 10.0]]), x, 3, 1), [[1, 10, 0, 0]])
    x2 = np.array([[[1.0, 7.0], [7.0, 7.0]]])
    _, i = ref.max_pool2d(x2, 2, return_indices=True)
    assert i[0, 0, 0] == 1
    _, i = ref.min_pool2d(-x2, 2, return_indices=True)
    assert i[0, 0, 0] == 1
    np.testing.assert_array_equal(ref.global_min_pool2d_backward(np.array([1.0]), -x2), [[[0, 1], [0, 0]]])
    _, i = ref.adaptive_max_pool2d(x2, 1, return_indices=True)
    assert i[0, 0, 0] == 1


@pytest.mark.parametrize("kind, fill", [("max", -np.inf), ("min", np.inf)])
def test_padding_never_selected(kind, fill):
    x = np.full((1, 1, 3, 4), fill)
    y, i = getattr(ref, f"{kind}_pool2d")(x, 3, 2, 1, return_indices=True)
    assert (y == fill).all()
    assert ((i >= 0) & (i < 12)).all()
    y, i = getattr(ref, f"{kind}_pool1d")(np.full((1, 5), fill), 4, 1, "same", return_indices=True)
    assert (y == fill).all() and ((i >= 0) & (i < 5)).all()


def test_window_with_no_input_cell():
    # kernel 2, dilation 2, padding 1 over one cell: the window reads positions -1 and 1.
    x = np.array([[[3.0]]])
    y, i = ref.max_pool1d(x, 2, 1, 1, 2, return_indices=True)
    assert y.tolist() == [[[-np.inf]]] and i.tolist() == [[[-1]]]
    y, i = ref.min_pool1d(x, 2, 1, 1, 2, return_indices=True)
    assert y.tolist() == [[[np.inf]]] and i.tolist() == [[[-1]]]
    np.testing.assert_array_equal(ref.max_pool1d_backward(np.ones((1, 1, 1)), x, 2, 1, 1, 2), [[[0.0]]])


def test_ceil_mode_last_window():
    x = np.arange(5.0)[None]
    # ceil would allow a window at 5 (all right padding): dropped, so 3 windows at -1, 1, 3.
    np.testing.assert_array_equal(ref.max_pool1d(x, 2, 2, 1, ceil_mode=True), [[0, 2, 4]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 2, 2, 1, ceil_mode=True), [[0, 1.5, 3.5]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 2, 2, 1, ceil_mode=True, count_include_pad=False), [[0, 1.5, 3.5]])
    # The last window [4, 7) overhangs a 6-cell input: it still counts, its divisor is 2.
    x = np.arange(6.0)[None]
    np.testing.assert_array_equal(ref.max_pool1d(x, 3, 2, ceil_mode=True), [[2, 4, 5]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 3, 2, ceil_mode=True), [[1, 3, 4.5]])
    # With padding 1 the last window [3, 6) reaches into the right padding (counted) but no further.
    np.testing.assert_allclose(ref.avg_pool1d(np.arange(5.0)[None], 3, 2, 1, ceil_mode=True), [[1 / 3, 2, 7 / 3]])


def test_avg_pool_divisors():
    x = np.ones((1, 4))
    np.testing.assert_array_equal(ref.avg_pool1d(x, 3, 1, 1), [[2 / 3, 1, 1, 2 / 3]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 3, 1, 1, count_include_pad=False), [[1, 1, 1, 1]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 3, 1, 1, divisor_override=4), [[0.5, 0.75, 0.75, 0.5]])
    np.testing.assert_array_equal(ref.avg_pool1d(x, 3, 1, "same"), [[1, 1, 1, 1]])


# ============================================================ global pooling

GLOBAL_CASES = [
    pytest.param(1, (7,), dict(), id="1d"),
    pytest.param(2, (3, 4), dict(keepdims=True), id="2d-keepdims"),
    pytest.param(2, (4, 3), dict(data_format="NHWC"), id="2d-NHWC"),
    pytest.param(2, (3, 3), dict(keepdims=True, data_format="NHWC"), id="2d-NHWC-keepdims"),
    pytest.param(3, (2, 3, 2), dict(keepdims=True), id="3d"),
]


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank, spatial, kwargs", GLOBAL_CASES)
def test_global_pool_backward_finite_differences(kind, rank, spatial, kwargs):
    rng, x = pool_input(rank, spatial, kwargs)
    forward = getattr(ref, f"global_{kind}_pool{rank}d")
    y = forward(x, **kwargs)
    channels_last = kwargs.get("data_format") in CHANNELS_LAST
    expected = (2, 3) + (1,) * rank if kwargs.get("keepdims") else (2, 3)
    if kwargs.get("keepdims") and channels_last:
        expected = (2,) + (1,) * rank + (3,)
    assert y.shape == expected
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"global_{kind}_pool{rank}d_backward")(g, x, **kwargs)
    assert_fd(lambda x_: forward(x_, **kwargs), x, g, grad)


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("rank, spatial, kwargs", GLOBAL_CASES)
def test_global_pool_matches_torch(torch, kind, rank, spatial, kwargs):
    rng = np.random.default_rng(7)
    x = activation(rng, 2, 3, spatial, kwargs.get("data_format"))
    y = getattr(ref, f"global_{kind}_pool{rank}d")(x, **kwargs)
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"global_{kind}_pool{rank}d_backward")(g, x, **kwargs)
    channels_last = kwargs.get("data_format") in CHANNELS_LAST
    axes = tuple(range(1, rank + 1)) if channels_last else tuple(range(2, rank + 2))
    xt = torch.tensor(x, requires_grad=True)
    reduce = {"max": torch.amax, "min": torch.amin, "avg": torch.mean}[kind]
    yt = reduce(xt, dim=axes, keepdim=bool(kwargs.get("keepdims")))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# ========================================================== adaptive pooling

ADAPTIVE_CASES = [
    pytest.param(1, (10,), 4, None, id="1d"),
    pytest.param(1, (5,), 7, None, id="1d-out-gt-in"),
    pytest.param(2, (7, 9), (3, 4), None, id="2d"),
    pytest.param(2, (6, 5), (None, 2), None, id="2d-none"),
    pytest.param(2, (5, 6), (2, 4), "NHWC", id="2d-NHWC"),
    pytest.param(3, (3, 4, 5), (2, 2, 3), None, id="3d"),
]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("rank, spatial, output_size, data_format", ADAPTIVE_CASES)
def test_adaptive_pool_backward_finite_differences(kind, rank, spatial, output_size, data_format):
    rng, x = pool_input(rank, spatial, dict(data_format=data_format))
    forward = getattr(ref, f"adaptive_{kind}_pool{rank}d")
    y = forward(x, output_size, data_format=data_format)
    g = rng.standard_normal(y.shape)
    grad = getattr(ref, f"adaptive_{kind}_pool{rank}d_backward")(g, x, output_size, data_format=data_format)
    assert_fd(lambda x_: forward(x_, output_size, data_format=data_format), x, g, grad)


@pytest.mark.torch
@pytest.mark.parametrize("rank, spatial, output_size, data_format", ADAPTIVE_CASES)
def test_adaptive_pool_matches_torch(torch, rank, spatial, output_size, data_format):
    rng = np.random.default_rng(8)
    x = activation(rng, 2, 3, spatial, data_format)
    channels_last = data_format in CHANNELS_LAST
    layout = to_channels_last if channels_last else (lambda a: a)
    F = torch.nn.functional
    for kind in ("avg", "max"):
        result = getattr(ref, f"adaptive_{kind}_pool{rank}d")(
            x, output_size, data_format=data_format, **({"return_indices": True} if kind == "max" else {})
        )
        y, indices = result if kind == "max" else (result, None)
        g = rng.standard_normal(y.shape)
        grad = getattr(ref, f"adaptive_{kind}_pool{rank}d_backward")(g, x, output_size, data_format=data_format)
        xt = torch.tensor(to_channels_first(x) if channels_last else x, requires_grad=True)
        if kind == "max":
            yt, it = getattr(F, f"adaptive_max_pool{rank}d")(xt, output_size, return_indices=True)
            np.testing.assert_array_equal(indices, layout(it.numpy()))
        else:
            yt = getattr(F, f"adaptive_avg_pool{rank}d")(xt, output_size)
        yt.backward(torch.tensor(to_channels_first(g) if channels_last else g))
        np.testing.assert_allclose(y, layout(yt.detach().numpy()), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, layout(xt.grad.numpy()), rtol=1e-12, atol=1e-12)


# ====================================================== shapes, layouts, dtypes


def test_unbatched_and_empty_batch():
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    np.testing.assert_array_equal(ref.conv2d(x[0], w, b, padding=1), ref.conv2d(x, w, b, padding=1)[0])
    g = rng.standard_normal((4, 5, 6))
    for ours, batched in zip(
        ref.conv2d_backward(g, x[0], w, padding=1), ref.conv2d_backward(g[None], x[:1], w, padding=1)
    ):
        np.testing.assert_allclose(ours, batched[0] if ours.ndim == 3 else batched, rtol=1e-14)
    np.testing.assert_array_equal(ref.max_pool2d(x[1], 2), ref.max_pool2d(x, 2)[1])
    assert ref.global_avg_pool2d(x[0]).shape == (3,)
    assert ref.global_avg_pool2d(x[0], keepdims=True, data_format="NHWC").shape == (1, 1, 6)

    empty = np.zeros((0, 3, 5, 6))
    assert ref.conv2d(empty, w, b, stride=2).shape == (0, 4, 2, 2)
    grad_x, grad_w, grad_b = ref.conv2d_backward(np.zeros((0, 4, 3, 4)), empty, w)
    assert grad_x.shape == empty.shape and (grad_w == 0).all() and (grad_b == 0).all()
    values, indices = ref.max_pool2d(empty, 2, return_indices=True)
    assert values.shape == indices.shape == (0, 3, 2, 3)
    assert ref.max_pool2d_backward(np.zeros((0, 3, 2, 3)), empty, 2).shape == empty.shape
    assert ref.avg_pool2d_backward(np.zeros((0, 3, 2, 3)), empty, 2).shape == empty.shape
    assert ref.adaptive_max_pool2d(empty, 2).shape == (0, 3, 2, 2)
    assert ref.conv_transpose2d(np.zeros((0, 4, 2, 2)), w).shape == (0, 3, 4, 4)
    assert ref.global_max_pool2d(empty).shape == (0, 3)


def test_channels_last_is_a_transpose():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((2, 3, 3, 2))
    np.testing.assert_array_equal(
        ref.conv2d(to_channels_last(x), w, stride=2, data_format="NHWC"), to_channels_last(ref.conv2d(x, w, stride=2))
    )
    values, indices = ref.max_pool2d(to_channels_last(x), 3, 2, 1, return_indices=True, data_format="NHWC")
    expected_values, expected_indices = ref.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(values, to_channels_last(expected_values))
    # Indices stay flat (h*W + w) within each (n, c) plane whatever the layout.
    np.testing.assert_array_equal(indices, to_channels_last(expected_indices))


def test_dtypes():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y, i = ref.max_pool2d(x, 2, return_indices=True)
    assert y.dtype == np.float64 and i.dtype == np.int64
    assert ref.conv2d(x.astype(np.int32), np.ones((1, 1, 2, 2), np.float32)).dtype == np.float64
    assert ref.adaptive_max_pool2d(x, 3, return_indices=True)[1].dtype == np.int64
    for grad in ref.conv2d_backward(np.ones((1, 1, 3, 3), np.float32), x, np.ones((1, 1, 2, 2))):
        assert grad.dtype == np.float64


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ref.conv2d(np.ones((1, 3, 5, 5)), np.ones((2, 2, 3, 3))), "groups"),
        (lambda: ref.conv2d(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2), "groups"),
        (lambda: ref.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))), "too small"),
        (lambda: ref.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), stride=0), "stride"),
        (lambda: ref.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), padding=-1), "padding"),
        (
            lambda: ref.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), padding=3, padding_mode="reflect"),
            "reflect",
        ),
        (lambda: ref.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), data_format="NCWH"), "data_format"),
        (
            lambda: ref.conv2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1))),
            r"\(1, 1, 2, 2\).*\(1, 1, 3, 3\)",
        ),
        (
            lambda: ref.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2, output_padding=2),
            "output_padding",
        ),
        (lambda: ref.max_pool2d(np.ones((1, 1, 4, 4)), 2, padding=2), "kernel_size // 2"),
        (lambda: ref.max_pool2d(np.ones((1, 1, 4, 4)), 2, padding="same", ceil_mode=True), "ceil_mode"),
        (lambda: ref.max_pool2d(np.ones((1, 1, 1, 1)), 3, padding=0), "too small"),
        (lambda: ref.avg_pool1d(np.ones((1, 4)), 2, divisor_override=0), "divisor_override"),
        (lambda: ref.max_pool1d_backward(np.ones((1, 2)), np.ones((1, 4)), 2, indices=np.array([[0, 4]])), "indices"),
        (lambda: ref.global_avg_pool2d_backward(np.ones((1, 2)), np.ones((1, 3, 2, 2))), "grad_output"),
    ],
)
def test_invalid_configurations_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_importable_standalone_by_path():
    path = pathlib.Path(ref.__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "reference.py must not import from its package"
            imported.add(node.module.split(".")[0])
    assert imported <= {"numpy", "functools", "itertools", "math", "operator", "typing"}
    spec = importlib.util.spec_from_file_location("standalone_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.conv1d([[1.0, 2.0, 4.0]], [[[1.0, -1.0]]]).tolist() == [[-1.0, -2.0]]
    assert set(module.__all__) == {
        name
        for name in dir(module)
        if not name.startswith("_")
        and callable(getattr(module, name))
        and name not in {"NamedTuple", "sliding_window_view"}
    }
