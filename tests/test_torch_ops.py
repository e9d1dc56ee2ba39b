"""convkern's operators inside PyTorch (convkern.torch): agreement with torch.nn.functional forward
and backward, gradcheck in float64, torch.library.opcheck on every operator, output_mask, layouts,
torch.compile(fullgraph=True) and torch.export."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
ckt = pytest.importorskip("convkern.torch")
import convkern  # noqa: E402

F = torch.nn.functional
ckf = ckt.functional
# torch._dynamo.reset() imports inductor, whose imports use an API PyTorch itself deprecates
# (torch.jit.script_method, warned about from PyTorch 2.11).
pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:.*does not have a deterministic implementation"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available() or not ckt.nn._cuda_usable(),
            reason="needs a CUDA device, convkern built with CUDA, and CuPy",
        ),
    ),
]


@pytest.fixture(autouse=True)
def poisoned_results():
    """Every tensor the operators allocate (torch.empty) starts as NaN (int64: its maximum), so an
    element the kernels leave unwritten fails the comparisons: PyTorch's deterministic mode fills
    uninitialised memory."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    # warn_only: on a GPU some of PyTorch's reference backward kernels have no deterministic version.
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.fixture(autouse=True)
def no_tf32():
    """On a GPU, PyTorch's float32 reference must not round its operands to TF32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)


def _same_forward_and_grads(ours, theirs, inputs, dtype, seed=0):
    """ours(*inputs) == theirs(*inputs), and so are the gradients of a random projection of it."""
    a = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    b = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    ya, yb = ours(*a), theirs(*b)
    torch.testing.assert_close(ya, yb, **_tol(dtype))
    g = torch.randn(ya.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(ya.device)
    ya.backward(g)
    yb.backward(g)
    for ta, tb in zip(a, b):
        if ta.requires_grad:
            torch.testing.assert_close(ta.grad, tb.grad, **_tol(dtype))


def _randn(*shape, dtype=torch.float32, device="cpu", grad=True, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(*shape, generator=g, dtype=dtype).to(device).requires_grad_(grad)


# --------------------------------------------------------------------------------------------
# Agreement with torch.nn.functional, forward and gradients
# --------------------------------------------------------------------------------------------

CONV_CASES = [  # rank, C_in, C_out, kernel, stride, padding, dilation, groups, size
    (1, 3, 4, 3, 1, 1, 1, 1, 11),
    (1, 4, 6, 5, 2, 2, 2, 2, 17),
    (2, 3, 5, 3, 1, 1, 1, 1, 9),
    (2, 4, 4, (3, 2), (2, 1), (1, 0), (1, 2), 4, 10),
    (2, 6, 4, 1, 1, 0, 1, 2, 7),
    (2, 3, 4, 4, 1, "same", 1, 1, 8),
    (3, 2, 3, 3, 1, 1, 1, 1, 6),
    (3, 4, 4, 2, 2, 0, 1, 2, 7),
]


# PyTorch warns that its own "same" padding with an even kernel copies the input.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[f"case{i}" for i in range(len(CONV_CASES))])
def test_conv_matches_torch(case, dtype, device):
    rank, cin, cout, k, s, p, d, g, size = case
    kernel = (k,) * rank if isinstance(k, int) else k
    x = _randn(2, cin, *(size,) * rank, dtype=dtype, device=device)
    w = _randn(cout, cin // g, *kernel, dtype=dtype, device=device, seed=1)
    b = _randn(cout, dtype=dtype, device=device, seed=2)
    ours = getattr(ckf, f"conv{rank}d")
    theirs = getattr(F, f"conv{rank}d")
    _same_forward_and_grads(
        lambda x, w, b: ours(x, w, b, s, p, d, g), lambda x, w, b: theirs(x, w, b, s, p, d, g), (x, w, b), dtype
    )


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_gradcheck_float64(rank):
    x = _randn(1, 2, *(5,) * rank, dtype=torch.float64)
    w = _randn(3, 2, *(2,) * rank, dtype=torch.float64, seed=1)
    b = _randn(3, dtype=torch.float64, seed=2)
    conv = getattr(ckf, f"conv{rank}d")
    assert torch.autograd.gradcheck(lambda x, w, b: conv(x, w, b, stride=2, padding=1), (x, w, b))


def test_conv_asymmetric_padding_and_tensorflow_same_at_stride_2():
    x = _randn(1, 2, 9, 8, dtype=torch.float64)
    w = _randn(3, 2, 3, 3, dtype=torch.float64, seed=1)
    # "same" at stride 2: out = ceil(in / 2), total padding 2 on H (1, 1) and 1 on W (0, 1).
    y = ckf.conv2d(x, w, stride=2, padding="same")
    assert y.shape == (1, 3, 5, 4)
    expected = F.conv2d(F.pad(x, (0, 1, 1, 1)), w, stride=2)
    torch.testing.assert_close(y, expected, **_tol(torch.float64))
    torch.testing.assert_close(ckf.conv2d(x, w, padding=((1, 1), (0, 1)), stride=2), expected, **_tol(torch.float64))
    assert torch.autograd.gradcheck(lambda x, w: ckf.conv2d(x, w, stride=2, padding="same"), (x, w))


CONVT_CASES = [  # rank, C_in, C_out, kernel, stride, padding, output_padding, groups, dilation, size
    (1, 3, 2, 3, 2, 1, 1, 1, 1, 6),
    (2, 4, 6, 3, 2, 1, 1, 2, 1, 5),
    (2, 2, 3, (2, 3), (1, 2), (0, 1), (0, 1), 1, (2, 1), 4),
    (3, 2, 2, 2, 2, 0, 0, 1, 1, 3),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONVT_CASES, ids=[f"case{i}" for i in range(len(CONVT_CASES))])
def test_conv_transpose_matches_torch(case, dtype, device):
    rank, cin, cout, k, s, p, op, g, d, size = case
    kernel = (k,) * rank if isinstance(k, int) else k
    x = _randn(2, cin, *(size,) * rank, dtype=dtype, device=device)
    w = _randn(cin, cout // g, *kernel, dtype=dtype, device=device, seed=1)
    b = _randn(cout, dtype=dtype, device=device, seed=2)
    ours = getattr(ckf, f"conv_transpose{rank}d")
    theirs = getattr(F, f"conv_transpose{rank}d")
    _same_forward_and_grads(
        lambda x, w, b: ours(x, w, b, s, p, op, g, d), lambda x, w, b: theirs(x, w, b, s, p, op, g, d), (x, w, b), dtype
    )


POOL_CASES = [  # rank, kernel, stride, padding, dilation, ceil_mode, size
    (1, 3, 2, 1, 1, False, 10),
    (2, 2, 2, 0, 1, False, 8),
    (2, 3, 2, 1, 2, True, 11),
    (2, (3, 2), (1, 2), (1, 0), 1, False, 7),
    (3, 2, 1, 1, 1, True, 5),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", POOL_CASES, ids=[f"case{i}" for i in range(len(POOL_CASES))])
def test_max_min_avg_pool_match_torch(case, dtype, device):
    rank, k, s, p, d, ceil, size = case
    x = _randn(2, 3, *(size,) * rank, dtype=dtype, device=device)
    mx, tmx = getattr(ckf, f"max_pool{rank}d"), getattr(F, f"max_pool{rank}d")
    _same_forward_and_grads(lambda x: mx(x, k, s, p, d, ceil), lambda x: tmx(x, k, s, p, d, ceil), (x,), dtype)
    _, ours_idx = mx(x, k, s, p, d, ceil, return_indices=True)
    _, their_idx = tmx(x, k, s, p, d, ceil, return_indices=True)
    assert torch.equal(ours_idx, their_idx)
    mn = getattr(ckf, f"min_pool{rank}d")
    _same_forward_and_grads(lambda x: mn(x, k, s, p, d, ceil), lambda x: -tmx(-x, k, s, p, d, ceil), (x,), dtype)
    av, tav = getattr(ckf, f"avg_pool{rank}d"), getattr(F, f"avg_pool{rank}d")
    for include_pad in (True, False):
        _same_forward_and_grads(
            lambda x: av(x, k, s, p, ceil, include_pad), lambda x: tav(x, k, s, p, ceil, include_pad), (x,), dtype
        )
    if rank > 1:
        _same_forward_and_grads(
            lambda x: av(x, k, s, p, ceil, True, 5), lambda x: tav(x, k, s, p, ceil, True, 5), (x,), dtype
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_global_and_adaptive_pool_match_torch(rank, device):
    dtype = torch.float64
    x = _randn(2, 3, *(7,) * rank, dtype=dtype, device=device)
    dims = tuple(range(2, 2 + rank))
    _same_forward_and_grads(getattr(ckf, f"global_avg_pool{rank}d"), lambda x: x.mean(dims), (x,), dtype)
    _same_forward_and_grads(getattr(ckf, f"global_max_pool{rank}d"), lambda x: x.amax(dims), (x,), dtype)
    _same_forward_and_grads(getattr(ckf, f"global_min_pool{rank}d"), lambda x: x.amin(dims), (x,), dtype)
    keep = getattr(ckf, f"global_avg_pool{rank}d")(x, keepdims=True)
    assert keep.shape == (2, 3) + (1,) * rank
    for out in (3, 4, 1):
        _same_forward_and_grads(
            lambda x: getattr(ckf, f"adaptive_avg_pool{rank}d")(x, out),
            lambda x: getattr(F, f"adaptive_avg_pool{rank}d")(x, out),
            (x,),
            dtype,
        )
        _same_forward_and_grads(
            lambda x: getattr(ckf, f"adaptive_max_pool{rank}d")(x, out),
            lambda x: getattr(F, f"adaptive_max_pool{rank}d")(x, out),
            (x,),
            dtype,
        )
    ours = getattr(ckf, f"adaptive_max_pool{rank}d")(x, 3, return_indices=True)[1]
    theirs = getattr(F, f"adaptive_max_pool{rank}d")(x, 3, return_indices=True)[1]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pool_gradcheck_float64(rank):
    # Distinct values: max/min pooling is differentiable away from ties.
    size = 5 if rank < 3 else 4  # gradcheck's cost grows with the input's size squared
    x = torch.randperm(2 * 3 * size**rank, generator=torch.Generator().manual_seed(rank)).double() / 7
    x = x.reshape(2, 3, *(size,) * rank).requires_grad_()
    checks = [
        lambda x: getattr(ckf, f"max_pool{rank}d")(x, 2, 1, 1),
        lambda x: getattr(ckf, f"min_pool{rank}d")(x, 3, 2, 1, ceil_mode=True),
        lambda x: getattr(ckf, f"avg_pool{rank}d")(x, 3, 2, 1, count_include_pad=False),
        lambda x: getattr(ckf, f"global_max_pool{rank}d")(x),
        lambda x: getattr(ckf, f"global_avg_pool{rank}d")(x),
        lambda x: getattr(ckf, f"adaptive_avg_pool{rank}d")(x, 3),
        lambda x: getattr(ckf, f"adaptive_max_pool{rank}d")(x, 2),
    ]
    for f in checks:
        assert torch.autograd.gradcheck(f, (x,))


# --------------------------------------------------------------------------------------------
# What autograd is asked for, layouts, modes, errors
# --------------------------------------------------------------------------------------------


def test_first_layer_computes_no_input_gradient(monkeypatch):
    masks = []
    kernel = convkern.conv2d_backward

    def recording_kernel(**kwargs):
        masks.append(kwargs["output_mask"])
        return kernel(**kwargs)

    monkeypatch.setattr(convkern, "conv2d_backward", recording_kernel)
    x = _randn(2, 3, 8, 8, grad=False)
    w = _randn(4, 3, 3, 3, seed=1)
    b = _randn(4, seed=2)
    ckf.conv2d(x, w, b, padding=1).sum().backward()
    assert masks == [(False, True, True)]
    assert b.grad is not None and w.grad is not None
    ckf.conv2d(x.requires_grad_(), w.detach(), None, padding=1).sum().backward()
    assert masks[1:] == [(True, False, False)]


def test_backward_operator_returns_empty_tensors_for_unrequested_gradients():
    x, w = _randn(1, 2, 5, 5, grad=False), _randn(3, 2, 3, 3, grad=False)
    dy = torch.randn(1, 3, 3, 3)
    gi, gw, gb = torch.ops.convkern.conv2d_backward(dy, x, w, [1, 1], [0, 0], [1, 1], 1, [False, True, False])
    assert gi.numel() == 0 and gb.numel() == 0 and gw.shape == w.shape


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_channels_last_runs_in_that_layout_and_keeps_it(rank):
    x = _randn(2, 4, *(6,) * rank, dtype=torch.float64)
    to_last = (0, *range(2, rank + 2), 1)
    x_last = x.detach().permute(to_last).contiguous().permute(0, rank + 1, *range(1, rank + 1)).requires_grad_()
    assert ckt._ops.is_channels_last(x_last)
    w = _randn(5, 4, *(3,) * rank, dtype=torch.float64, seed=1)
    conv, tconv = getattr(ckf, f"conv{rank}d"), getattr(F, f"conv{rank}d")
    y = conv(x_last, w, padding=1)
    assert ckt._ops.is_channels_last(y), y.stride()
    _same_forward_and_grads(
        lambda x, w: conv(x, w, padding=1), lambda x, w: tconv(x, w, padding=1), (x_last, w), torch.float64
    )
    pooled = getattr(ckf, f"max_pool{rank}d")(x_last, 2)
    assert ckt._ops.is_channels_last(pooled)
    _same_forward_and_grads(
        lambda x: getattr(ckf, f"avg_pool{rank}d")(x, 2),
        lambda x: getattr(F, f"avg_pool{rank}d")(x, 2),
        (x_last,),
        torch.float64,
    )
    _same_forward_and_grads(
        lambda x: getattr(ckf, f"max_pool{rank}d")(x, 3, 2, 1),
        lambda x: getattr(F, f"max_pool{rank}d")(x, 3, 2, 1),
        (x_last,),
        torch.float64,
    )


def test_non_contiguous_input_and_gradient():
    x = _randn(2, 3, 10, 12, dtype=torch.float64)[:, :, ::2, 1::3]  # strided view, neither layout
    w = _randn(4, 3, 3, 3, dtype=torch.float64, seed=1)
    _same_forward_and_grads(
        lambda x, w: ckf.conv2d(x, w, padding=1).transpose(2, 3),
        lambda x, w: F.conv2d(x, w, padding=1).transpose(2, 3),
        (x.detach(), w),
        torch.float64,
    )


def test_results_share_memory_with_what_the_kernels_wrote():
    # out= into a torch.empty result: the output is a plain tensor, no copy, on the input's device.
    x = _randn(1, 2, 6, 6, grad=False)
    y = ckf.conv2d(x, _randn(3, 2, 3, 3, grad=False))
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.is_contiguous()


def test_no_grad_records_nothing():
    x, w = _randn(1, 2, 6, 6), _randn(3, 2, 3, 3)
    with torch.no_grad():
        y = ckf.max_pool2d(ckf.conv2d(x, w), 2)
    assert y.grad_fn is None and not y.requires_grad


def test_unbatched_input():
    x = _randn(3, 9, 9, dtype=torch.float64)
    w = _randn(4, 3, 3, 3, dtype=torch.float64, seed=1)
    _same_forward_and_grads(
        lambda x, w: ckf.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), (x, w), torch.float64
    )
    _same_forward_and_grads(lambda x: ckf.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2), (x,), torch.float64)


def test_import_convkern_alone_does_not_import_torch():
    code = "import sys, convkern; convkern.conv2d; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_empty_batch():
    y = ckf.conv2d(torch.randn(0, 2, 5, 5), torch.randn(3, 2, 3, 3))
    assert y.shape == (0, 3, 3, 3)


def test_double_backward_is_a_clear_error():
    x, w = _randn(1, 2, 5, 5, dtype=torch.float64), _randn(3, 2, 3, 3, dtype=torch.float64)
    (gx,) = torch.autograd.grad(ckf.conv2d(x, w).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="input must have 4 dimensions"):
        ckf.conv2d(torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        ckf.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 1, 3, 3), groups=2)
    with pytest.raises(TypeError, match="float32 or float64"):
        ckf.conv2d(torch.randn(1, 2, 5, 5).half(), torch.randn(3, 2, 3, 3).half())
    with pytest.raises(ValueError, match="stride"):
        ckf.max_pool2d(torch.randn(1, 2, 5, 5), 2, stride=(1, 1, 1))


# --------------------------------------------------------------------------------------------
# torch.library.opcheck: schema, fake tensors, autograd registration, AOT dispatch
# --------------------------------------------------------------------------------------------


def _opcheck_samples():
    """(operator name, arguments) for every forward and backward operator in 1-D, 2-D and 3-D."""
    samples = []
    for rank in (1, 2, 3):
        n = (1, 2)
        x = _randn(*n, *(5, 6, 7)[3 - rank :])  # distinct sizes per axis: axes cannot be swapped unseen
        ones = [1] * rank
        w = _randn(3, 2, *(3,) * rank, seed=1)
        b = _randn(3, seed=2)
        conv_args = ([2] * rank, [1] * rank, ones, 1)
        samples.append((f"conv{rank}d", (x, w, b) + conv_args))
        samples.append((f"conv{rank}d", (x, w, None, ones, [0, 1] * rank, ones, 1)))
        y = torch.ops.convkern.__getattr__(f"conv{rank}d")(x, w, b, *conv_args).detach()
        samples.append(
            (f"conv{rank}d_backward", (torch.randn_like(y), x.detach(), w.detach()) + conv_args + ([True, True, True],))
        )
        wt = _randn(2, 3, *(2,) * rank, seed=3)
        convt_args = ([2] * rank, [0] * rank, [1] * rank, 1, ones)
        samples.append((f"conv_transpose{rank}d", (x, wt, b) + convt_args))
        yt = torch.ops.convkern.__getattr__(f"conv_transpose{rank}d")(x, wt, b, *convt_args).detach()
        samples.append(
            (
                f"conv_transpose{rank}d_backward",
                (torch.randn_like(yt), x.detach(), wt.detach()) + convt_args + ([True, False, True],),
            )
        )
        pool_args = ([2] * rank, [2] * rank, [1] * rank, ones, True)
        for kind in ("max", "min"):
            samples.append((f"{kind}_pool{rank}d", (x,) + pool_args))
            yp, idx = torch.ops.convkern.__getattr__(f"{kind}_pool{rank}d")(x, *pool_args)
            samples.append(
                (f"{kind}_pool{rank}d_backward", (torch.randn_like(yp.detach()), x.detach(), idx) + pool_args)
            )
        avg_args = ([3] * rank, [2] * rank, [1] * rank, False, False, None)
        samples.append((f"avg_pool{rank}d", (x,) + avg_args))
        ya = torch.ops.convkern.__getattr__(f"avg_pool{rank}d")(x, *avg_args).detach()
        samples.append((f"avg_pool{rank}d_backward", (torch.randn_like(ya), x.detach()) + avg_args))
        for kind in ("max", "avg", "min"):
            samples.append((f"global_{kind}_pool{rank}d", (x,)))
            samples.append((f"global_{kind}_pool{rank}d_backward", (torch.randn(1, 2), x.detach())))
        samples.append((f"adaptive_avg_pool{rank}d", (x, [3] * rank)))
        samples.append((f"adaptive_avg_pool{rank}d_backward", (torch.randn(1, 2, *(3,) * rank), x.detach())))
        samples.append((f"adaptive_max_pool{rank}d", (x, [4] * rank)))
        _, idx = torch.ops.convkern.__getattr__(f"adaptive_max_pool{rank}d")(x, [4] * rank)
        samples.append((f"adaptive_max_pool{rank}d_backward", (torch.randn(1, 2, *(4,) * rank), x.detach(), idx)))
    # A channels-last sample: the fake implementation must predict the real result's strides.
    x_last = _randn(1, 4, 6, 5).to(memory_format=torch.channels_last).detach().requires_grad_()
    samples.append(("conv2d", (x_last, _randn(3, 4, 3, 3), None, [1, 1], [1, 1], [1, 1], 1)))
    samples.append(("max_pool2d", (x_last, [2, 2], [2, 2], [0, 0], [1, 1], False)))
    # A channels-last weight makes a convolution channels-last whatever its input's layout.
    w_last = _randn(3, 4, 3, 3).to(memory_format=torch.channels_last).detach().requires_grad_()
    samples.append(("conv2d", (_randn(1, 4, 6, 5), w_last, None, [1, 1], [1, 1], [1, 1], 1)))
    return samples


def test_every_operator_has_an_opcheck_sample():
    names = {name for name, _ in _opcheck_samples()}
    expected = set(ckt.OPERATORS) | {f"{op}_backward" for op in ckt.OPERATORS}
    assert names == expected


@pytest.mark.parametrize("sample", _opcheck_samples(), ids=lambda s: s[0])
def test_opcheck(sample):
    name, args = sample
    torch.library.opcheck(getattr(torch.ops.convkern, name).default, args)


# --------------------------------------------------------------------------------------------
# torch.compile and torch.export
# --------------------------------------------------------------------------------------------


def _small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=2),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    )


def _graph_breaks_and_train_step(backend):
    torch._dynamo.reset()
    reference = _small_cnn()
    model = ckt.replace_modules(_small_cnn())
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # fullgraph: a graph break is an error
    y = compiled(x)
    torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-5)
    y.square().sum().backward()
    reference(x).square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4)


def test_compile_fullgraph_aot_eager():
    _graph_breaks_and_train_step("aot_eager")


# Slow: inductor compiles C++ with the system compiler (about a minute on 2 cores).
@pytest.mark.slow
def test_compile_fullgraph_inductor():
    pytest.importorskip("torch._inductor")
    _graph_breaks_and_train_step("inductor")


def test_export_keeps_convkern_operators():
    model = ckt.replace_modules(_small_cnn()).eval()
    x = torch.randn(2, 3, 16, 16)
    exported = torch.export.export(model, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {
        "convkern.conv2d.default",
        "convkern.max_pool2d.default",
        "convkern.avg_pool2d.default",
        "convkern.adaptive_avg_pool2d.default",
    } <= targets, targets
    torch.testing.assert_close(exported.module()(x), model(x))


def test_dynamic_batch_stays_symbolic_in_export_and_compile():
    model = ckt.replace_modules(_small_cnn()).eval()
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (torch.randn(2, 3, 16, 16),), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(exported.module()(x), model(x))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for n in (2, 3, 4):
        x = torch.randn(n, 3, 16, 16)
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("cupy_version", ["14", "13"])
def test_cupy_stream_for_pytorchs_stream(cupy_version):
    """CuPy 14 deprecates ExternalStream for Stream.from_external (the CUDA stream protocol); the
    stream handed to CuPy must be PyTorch's, through whichever API the installed CuPy has."""
    from types import SimpleNamespace

    from convkern.torch._ops import _cupy_stream

    made = []

    class Stream:
        pass

    if cupy_version == "14":

        def from_external(obj):
            made.append(("from_external", obj.__cuda_stream__()))
            return "stream"

        Stream.from_external = staticmethod(from_external)  # type: ignore[attr-defined]

    def external_stream(handle, device_id):
        made.append(("ExternalStream", (handle, device_id)))
        return "stream"

    fake = SimpleNamespace(cuda=SimpleNamespace(Stream=Stream, ExternalStream=external_stream))
    assert _cupy_stream(fake, 0x7F00, 1) == "stream"
    expected = ("from_external", (0, 0x7F00)) if cupy_version == "14" else ("ExternalStream", (0x7F00, 1))
    assert made == [expected]
