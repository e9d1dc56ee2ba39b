"""convkern.torch.nn: drop-in torch.nn layers (constructor arguments, state_dict, gradients,
channels_last, no_grad) and replace_modules."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
ckt = pytest.importorskip("convkern.torch")

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:.*does not have a deterministic implementation")]
tnn, cnn = torch.nn, ckt.nn


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


# (class name, constructor arguments, input shape): one or more configurations of every layer.
LAYERS = [
    ("Conv1d", (3, 4, 3), dict(stride=2, padding=1), (2, 3, 11)),
    ("Conv2d", (3, 6, 3), dict(padding=1, groups=3, bias=False), (2, 3, 9, 8)),
    ("Conv2d", (2, 4, (3, 2)), dict(padding="same", dilation=2), (2, 2, 9, 8)),
    ("Conv2d", (2, 4, 3), dict(padding=2, padding_mode="reflect"), (2, 2, 7, 7)),
    ("Conv2d", (2, 4, 3), dict(padding=1, padding_mode="circular", stride=2), (2, 2, 7, 6)),
    ("Conv3d", (2, 3, 3), dict(padding=(1, 0, 1), padding_mode="replicate"), (1, 2, 5, 6, 5)),
    ("ConvTranspose1d", (3, 2, 4), dict(stride=2, padding=1), (2, 3, 6)),
    ("ConvTranspose2d", (4, 2, 3), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 5)),
    ("ConvTranspose3d", (2, 2, 2), dict(stride=2), (1, 2, 3, 3, 3)),
    ("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 3, 10)),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
    ("MaxPool2d", (2,), dict(dilation=2, return_indices=True), (2, 3, 9, 9)),
    ("MaxPool3d", (2,), dict(), (1, 2, 6, 6, 6)),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 10)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (2, 3, 8, 8)),
    ("AvgPool3d", (2,), dict(), (1, 2, 6, 6, 6)),
    ("AdaptiveAvgPool1d", (4,), dict(), (2, 3, 10)),
    ("AdaptiveAvgPool2d", ((3, None),), dict(), (2, 3, 10, 7)),
    ("AdaptiveAvgPool3d", (2,), dict(), (1, 2, 5, 6, 7)),
    ("AdaptiveMaxPool1d", (4,), dict(), (2, 3, 10)),
    ("AdaptiveMaxPool2d", (3,), dict(return_indices=True), (2, 3, 10, 7)),
    ("AdaptiveMaxPool3d", (2,), dict(), (1, 2, 5, 6, 7)),
]
IDS = [f"{name}-{i}" for i, (name, *_rest) in enumerate(LAYERS)]


def _pair(name, args, kwargs):
    torch.manual_seed(0)
    theirs = getattr(tnn, name)(*args, **kwargs).double()
    ours = getattr(cnn, name)(*args, **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _values(out):
    return out[0] if isinstance(out, tuple) else out


def _check_forward_backward(ours, theirs, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    if isinstance(yb, tuple):
        assert torch.equal(ya[1], yb[1]), "indices differ"
    ya, yb = _values(ya), _values(yb)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-11)
    assert ya.stride() == yb.stride(), "memory format differs from torch.nn's"
    g = torch.randn(ya.shape, dtype=ya.dtype, generator=torch.Generator().manual_seed(1))
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-11)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-11, msg=name)


@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_layer_matches_torch_nn(name, args, kwargs, shape):
    ours, theirs = _pair(name, args, kwargs)
    assert isinstance(ours, getattr(tnn, name))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _check_forward_backward(ours, theirs, x)


@pytest.mark.parametrize("name,args,kwargs,shape", [c for c in LAYERS if len(c[3]) == 4], ids=lambda v: str(v))
def test_layer_in_channels_last(name, args, kwargs, shape):
    ours, theirs = _pair(name, args, kwargs)
    ours.to(memory_format=torch.channels_last)
    theirs.to(memory_format=torch.channels_last)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _check_forward_backward(ours, theirs, x.to(memory_format=torch.channels_last))


@pytest.mark.parametrize("name,args,kwargs,shape", [LAYERS[1], LAYERS[6], LAYERS[10]], ids=str)
def test_unbatched_input(name, args, kwargs, shape):
    ours, theirs = _pair(name, args, kwargs)
    _check_forward_backward(ours, theirs, torch.randn(shape[1:], dtype=torch.float64))


def test_conv_transpose_output_size():
    ours, theirs = _pair("ConvTranspose2d", (2, 3, 3), dict(stride=2, padding=1))
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    for size in ([7, 7], [8, 8], [8, 7]):
        torch.testing.assert_close(ours(x, output_size=size), theirs(x, output_size=size))


def test_no_grad_and_eval():
    layer = cnn.Conv2d(2, 3, 3)
    with torch.no_grad():
        y = layer(torch.randn(1, 2, 5, 5))
    assert y.grad_fn is None
    with torch.inference_mode():
        assert layer(torch.randn(1, 2, 5, 5)).shape == (1, 3, 3, 3)


def test_float16_on_the_cpu_falls_back_to_torch():
    layer = cnn.Conv2d(2, 3, 3).to(torch.bfloat16)
    x = torch.randn(1, 2, 5, 5, dtype=torch.bfloat16)
    assert not cnn.runs_on_convkern(x)
    torch.testing.assert_close(layer(x), tnn.functional.conv2d(x, layer.weight, layer.bias))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_min_and_global_pooling_layers(rank):
    x = torch.randn(2, 3, *(6,) * rank, dtype=torch.float64, requires_grad=True)
    dims = tuple(range(2, 2 + rank))
    pool = getattr(cnn, f"MinPool{rank}d")(2, return_indices=True)
    values, indices = pool(x)
    expected, expected_indices = getattr(tnn.functional, f"max_pool{rank}d")(-x, 2, return_indices=True)
    torch.testing.assert_close(values, -expected)
    assert torch.equal(indices, expected_indices)
    assert "kernel_size=2" in repr(pool)
    for kind, reduce in (("Avg", torch.mean), ("Max", torch.amax), ("Min", torch.amin)):
        layer = getattr(cnn, f"Global{kind}Pool{rank}d")(keepdims=True)
        torch.testing.assert_close(layer(x), reduce(x, dim=dims, keepdim=True))
        assert getattr(cnn, f"Global{kind}Pool{rank}d")()(x).shape == (2, 3)


def test_load_state_dict_from_a_torch_nn_model():
    torch.manual_seed(0)
    reference = tnn.Sequential(tnn.Conv2d(3, 4, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(36, 2))
    ours = tnn.Sequential(cnn.Conv2d(3, 4, 3), tnn.ReLU(), cnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(36, 2))
    ours.load_state_dict(reference.state_dict())  # strict: every key matches
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(ours(x), reference(x))


class _Block(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(4, 4, 3, padding=1)
        self.bn = tnn.BatchNorm2d(4)
        self.pools = tnn.ModuleList([tnn.MaxPool2d(2), tnn.AvgPool2d(2)])

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))) + x
        return self.pools[0](y) + self.pools[1](y)


class _OwnConv(tnn.Conv2d):
    """A user's subclass: it may change forward, so replace_modules leaves it alone."""


def test_replace_modules_swaps_in_place_and_keeps_state():
    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(3, 4, 3, padding=1),
        _Block(),
        _OwnConv(4, 4, 1),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Linear(4, 2),
    )
    reference = copy.deepcopy(model)
    params_before = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.eval()
    assert ckt.replace_modules(model) is model
    assert type(model[0]) is cnn.Conv2d and type(model[1].conv) is cnn.Conv2d
    assert type(model[1].pools[0]) is cnn.MaxPool2d and type(model[1].pools[1]) is cnn.AvgPool2d
    assert type(model[1].bn) is tnn.BatchNorm2d and type(model[2]) is _OwnConv
    assert type(model[3]) is cnn.AdaptiveAvgPool2d
    assert all(p is q for p, q in zip(model.parameters(), params_before))
    assert not model[0].training
    assert list(model.state_dict()) == list(reference.state_dict())
    model.train()
    reference.train()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), reference(x))
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
    optimizer.step()  # the optimizer built before the swap updates the same parameters
    assert not torch.equal(model[0].weight, reference[0].weight)


def test_replace_modules_on_a_single_layer_and_bad_argument():
    conv = tnn.Conv2d(1, 1, 3)
    replaced = ckt.replace_modules(conv)
    assert type(replaced) is cnn.Conv2d and replaced.weight is conv.weight
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ckt.replace_modules("model")


def test_the_cuda_check_traces_without_a_graph_break():
    # A CUDA input asks whether convkern can serve it; inside torch.compile that must stay one graph.
    torch._dynamo.reset()

    @torch.compile(backend="aot_eager", fullgraph=True)
    def doubled_if_cuda_usable(x):
        return x * 2 if cnn._cuda_usable() else x + 1

    assert float(doubled_if_cuda_usable(torch.ones(1))) == 2.0  # 1 * 2 and 1 + 1 alike: it ran


def test_channels_last_weights_follow_every_update():
    # A channels-last model's weights are read through a cached C-order copy: every kind of
    # update must be seen, and the cache must not keep a dropped layer's weight alive.
    ours, theirs = _pair("Conv2d", (3, 4, 3), dict(padding=1))
    ours.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64).to(memory_format=torch.channels_last)

    def same():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-11)  # noqa: F821

    same()
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.5)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        theirs.weight -= 0.5 * theirs.weight.grad
        theirs.bias -= 0.5 * theirs.bias.grad
    same()  # in-place optimizer update (version counter)
    with torch.no_grad():
        ours.weight.mul_(2)
        theirs.weight.mul_(2)
    same()
    fresh = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    ours.weight.data = fresh.to(memory_format=torch.channels_last)  # new storage, no version bump
    theirs.weight.data = fresh.clone()
    same()
    copies = ckt._ops._c_order_weight._copies
    assert any(entry[0]() is ours.weight for entry in copies.values())
    weight_id = id(ours.weight)
    del ours, optimizer
    import gc

    gc.collect()
    assert weight_id not in copies
