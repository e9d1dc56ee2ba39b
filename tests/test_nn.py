"""convkern.nn: every layer's backward against finite differences of its forward (float64), shapes,
parameters and their PyTorch layouts and initialisation, train/eval, saving, the Keras-style
summary with the seed material's numbers, output_shape and the parameter-count helpers."""

from __future__ import annotations

import math

import convkern
import numpy as np
import pytest
from convkern import nn

# --------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------

# Central differences in float64: truncation error ~EPS^2, rounding ~1e-16/EPS; both ~1e-10 here.
EPS = 1e-6
# Elements checked per array: all of a small one, a random sample of a large one.
SAMPLES = 40


def numerical_gradient(f, a: np.ndarray, rng) -> tuple:
    """(flat indices, d f / d a at those indices), perturbing `a` in place and restoring it."""
    flat = a.reshape(-1)  # a view: the arrays checked here are contiguous
    assert np.shares_memory(flat, a)
    picked = rng.choice(flat.size, size=min(flat.size, SAMPLES), replace=False)
    grads = []
    for i in picked:
        saved = flat[i]
        flat[i] = saved + EPS
        up = f()
        flat[i] = saved - EPS
        down = f()
        flat[i] = saved
        grads.append((up - down) / (2 * EPS))
    return picked, np.array(grads)


def check_gradients(layer: nn.Module, x: np.ndarray, rng, same_randomness: bool = False) -> None:
    """backward(g) must equal d<forward(x), g>/dx, and every parameter's .grad d<forward(x), g>/dp.

    same_randomness reseeds before each forward, so that Dropout draws the same mask each time.
    """
    layer.to(np.float64).train()

    def forward():
        if same_randomness:
            nn.manual_seed(1234)
        return layer(x)

    y = forward()
    assert y.dtype == np.float64
    assert layer.output_shape(x.shape) == y.shape
    g = rng.standard_normal(y.shape)

    def objective():
        return float(np.sum(forward() * g))

    layer.zero_grad()
    forward()
    grad_input = layer.backward(g)
    assert grad_input.shape == x.shape
    checks = [("input", x, grad_input)] + [(name, p.data, p.grad) for name, p in layer.named_parameters()]
    for name, array, analytic in checks:
        assert analytic is not None, f"{name}: no gradient"
        assert analytic.shape == array.shape, name
        picked, numeric = numerical_gradient(objective, array, rng)
        np.testing.assert_allclose(
            analytic.reshape(-1)[picked],
            numeric,
            rtol=1e-6,
            atol=1e-7,
            err_msg=f"{type(layer).__name__}: gradient of {name}",
        )


def _has(name: str) -> bool:
    return hasattr(convkern, name)


# Each case: (layer factory, input shape). Sizes are small so that every element can be checked.
LAYER_CASES = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), (2, 3, 9)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    "conv2d_same_stride2": (lambda: nn.Conv2d(2, 4, (3, 2), stride=2, padding="same"), (2, 2, 7, 6)),
    "conv2d_groups_dilation": (lambda: nn.Conv2d(4, 4, 3, dilation=2, groups=2, padding=2), (1, 4, 6, 6)),
    "conv2d_no_bias": (lambda: nn.Conv2d(2, 3, 2, bias=False), (2, 2, 4, 5)),
    "conv2d_nhwc": (lambda: nn.Conv2d(3, 2, 3, padding="same", data_format="NHWC"), (2, 5, 4, 3)),
    "conv2d_reflect": (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), (1, 2, 5, 5)),
    "conv2d_circular": (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), (1, 2, 4, 5)),
    "conv3d": (lambda: nn.Conv3d(2, 2, 2, padding=1), (1, 2, 3, 3, 3)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), (2, 3, 4)),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
        (1, 4, 3, 3),
    ),
    "conv_transpose2d_nhwc": (lambda: nn.ConvTranspose2d(2, 3, 2, stride=2, data_format="NHWC"), (1, 3, 3, 2)),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(2, 2, 2), (1, 2, 2, 2, 2)),
    "max_pool1d": (lambda: nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 9)),
    "max_pool2d": (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    "max_pool2d_overlap_ceil": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
    "max_pool2d_nhwc": (lambda: nn.MaxPool2d(2, data_format="NHWC"), (2, 4, 4, 3)),
    "max_pool3d": (lambda: nn.MaxPool3d(2), (1, 2, 4, 4, 4)),
    "min_pool1d": (lambda: nn.MinPool1d(2), (2, 3, 6)),
    "min_pool2d": (lambda: nn.MinPool2d(2, stride=1), (2, 2, 4, 4)),
    "min_pool3d": (lambda: nn.MinPool3d(2, stride=1), (1, 2, 3, 3, 3)),
    "avg_pool1d": (lambda: nn.AvgPool1d(2), (2, 3, 8)),
    "avg_pool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 5, 5)),
    "avg_pool2d_same": (lambda: nn.AvgPool2d(2, padding="same"), (1, 2, 5, 5)),
    "avg_pool3d": (lambda: nn.AvgPool3d(2), (1, 2, 4, 4, 2)),
    "global_avg_pool1d": (lambda: nn.GlobalAvgPool1d(), (2, 3, 5)),
    "global_avg_pool2d": (lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 4)),
    "global_avg_pool3d": (lambda: nn.GlobalAvgPool3d(data_format="NDHWC"), (1, 3, 2, 3, 2)),
    "global_max_pool1d": (lambda: nn.GlobalMaxPool1d(), (2, 3, 5)),
    "global_max_pool2d": (lambda: nn.GlobalMaxPool2d(keepdims=True), (2, 3, 4, 4)),
    "global_max_pool3d": (lambda: nn.GlobalMaxPool3d(), (1, 2, 3, 2, 3)),
    "global_min_pool1d": (lambda: nn.GlobalMinPool1d(), (2, 3, 7)),
    "global_min_pool2d": (lambda: nn.GlobalMinPool2d(), (2, 2, 3, 4)),
    "global_min_pool3d": (lambda: nn.GlobalMinPool3d(), (1, 2, 2, 3, 3)),
    "adaptive_avg_pool1d": (lambda: nn.AdaptiveAvgPool1d(3), (2, 2, 7)),
    "adaptive_avg_pool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    "adaptive_avg_pool2d_nhwc": (lambda: nn.AdaptiveAvgPool2d(2, data_format="NHWC"), (1, 5, 5, 2)),
    "adaptive_avg_pool3d": (lambda: nn.AdaptiveAvgPool3d((2, None, 1)), (1, 2, 3, 2, 4)),
    "adaptive_max_pool1d": (lambda: nn.AdaptiveMaxPool1d(4), (2, 2, 9)),
    "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d((2, 3)), (2, 2, 5, 7)),
    "adaptive_max_pool3d": (lambda: nn.AdaptiveMaxPool3d(2), (1, 2, 4, 3, 3)),
    "relu": (lambda: nn.ReLU(), (3, 4, 5)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 4, 2)),
    "linear": (lambda: nn.Linear(5, 3), (4, 5)),
    "linear_batched_3d": (lambda: nn.Linear(4, 2), (2, 3, 4)),
    "sequential_cnn": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)
        ),
        (2, 1, 6, 6),
    ),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_backward_matches_finite_differences(case, rng):
    make, shape = LAYER_CASES[case]
    check_gradients(make(), rng.standard_normal(shape), rng)


def test_dropout_backward_matches_finite_differences(rng):
    check_gradients(nn.Dropout(0.4), rng.standard_normal((4, 6)), rng, same_randomness=True)


def test_every_layer_has_a_gradient_check():
    checked = {type(make()) for make, _ in LAYER_CASES.values()} | {nn.Dropout, nn.CrossEntropyLoss}
    layers = {getattr(nn, name) for name in nn.__all__}
    layers = {c for c in layers if isinstance(c, type) and issubclass(c, nn.Module) and c is not nn.Module}
    assert layers - checked == set()


# --------------------------------------------------------------------------------------------
# Parameters: layouts, order, names and initialisation are PyTorch's
# --------------------------------------------------------------------------------------------


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def test_parameter_names_order_and_shapes():
    model = _lenet()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "0.weight",
        "0.bias",
        "3.weight",
        "3.bias",
        "7.weight",
        "7.bias",
        "10.weight",
        "10.bias",
        "12.weight",
        "12.bias",
    ]
    shapes = [p.shape for p in model.parameters()]
    assert shapes == [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)]
    assert all(p.data.dtype == np.float32 and p.grad is None for p in model.parameters())
    assert list(model.state_dict()) == names
    assert nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)
    assert nn.Conv2d(4, 6, 3, groups=2, bias=False).bias is None
    assert [n for n, _ in nn.Conv2d(4, 6, 3, bias=False).named_parameters()] == ["weight"]


@pytest.mark.torch
def test_parameters_match_torch_state_dict_keys_and_shapes():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    reference = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120),
        tnn.ReLU(),
        tnn.Dropout(0.5),
        tnn.Linear(120, 84),
        tnn.ReLU(),
        tnn.Linear(84, 10),
    )
    ours = _lenet().state_dict()
    assert list(ours) == list(reference.state_dict())
    assert [v.shape for v in ours.values()] == [tuple(v.shape) for v in reference.state_dict().values()]


@pytest.mark.parametrize(
    "make,fan_in",
    [
        (lambda: nn.Conv2d(32, 64, 3), 32 * 9),
        (lambda: nn.Conv2d(64, 128, 3, groups=4), 16 * 9),
        (lambda: nn.Conv1d(64, 32, 5), 64 * 5),
        (lambda: nn.ConvTranspose2d(64, 32, 3), 32 * 9),  # PyTorch's fan-in is the weight's axis 1
        (lambda: nn.Linear(300, 200), 300),
    ],
    ids=["conv2d", "conv2d_groups", "conv1d", "conv_transpose2d", "linear"],
)
def test_default_initialisation_is_pytorch_kaiming_uniform(make, fan_in):
    # Every weight tensor here has >= 10,000 elements, so the sample statistics are within a few
    # tenths of a percent of the distribution's and the tolerances below are > 4 standard errors.
    nn.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    w, b = layer.weight.data, layer.bias.data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.98 * bound  # the whole range is used
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound  # a uniform's standard deviation
    assert abs(w.mean()) < 0.03 * bound


def test_manual_seed_makes_initialisation_repeatable():
    nn.manual_seed(7)
    a = nn.Linear(4, 3).weight.data.copy()
    nn.manual_seed(7)
    assert np.array_equal(nn.Linear(4, 3).weight.data, a)


# --------------------------------------------------------------------------------------------
# A whole network against PyTorch: forward, loss, every gradient, a training step
# --------------------------------------------------------------------------------------------


@pytest.mark.torch
def test_lenet_forward_loss_and_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    ours = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 12),
        nn.ReLU(),
        nn.Linear(12, 5),
    ).to(np.float64)
    theirs = tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3),
        tnn.ReLU(),
        tnn.AvgPool2d(2),
        tnn.Flatten(),
        tnn.Linear(24, 12),
        tnn.ReLU(),
        tnn.Linear(12, 5),
    ).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((8, 1, 12, 12))
    labels = rng.integers(0, 5, size=8)

    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(ours(x), labels)
    grad_x = ours.backward(loss_fn.backward())

    tx = torch.from_numpy(x).requires_grad_(True)
    tloss = tnn.functional.cross_entropy(theirs(tx), torch.from_numpy(labels))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


# --------------------------------------------------------------------------------------------
# Modes, gradient accumulation, devices, dtypes
# --------------------------------------------------------------------------------------------


def test_dropout_train_and_eval(rng):
    nn.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = rng.standard_normal((200, 100)).astype(np.float32) + 3  # no zeros of its own
    y = drop(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    g = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(drop.backward(g) != 0, kept)
    drop.eval()
    assert drop(x) is x and drop.backward(g) is g
    assert np.all(nn.Dropout(1.0)(x) == 0)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x), x)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_train_eval_switches_every_layer_and_eval_keeps_nothing(rng):
    model = _lenet()
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model(x), model(x))  # dropout off: deterministic
    with pytest.raises(RuntimeError, match="model.train"):
        model.backward(np.ones((2, 10), np.float32))
    model.train()
    assert all(m.training for m in model.modules())
    model.backward(np.ones_like(model(x)))
    assert all(p.grad is not None for p in model.parameters())


def test_backward_accumulates_until_zero_grad(rng):
    layer = nn.Linear(3, 2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    g = rng.standard_normal((4, 2)).astype(np.float32)
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.copy()
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_frozen_parameters_get_no_gradient_and_count_as_non_trainable(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[0].weight.requires_grad = False
    model(rng.standard_normal((5, 3)).astype(np.float32))
    model.backward(np.ones((5, 2), np.float32))
    assert model[0].weight.grad is None and model[0].bias.grad is not None
    summary = model.summary((3,), print_fn=None)
    assert (summary.total_params, summary.trainable_params) == (26, 14)


def test_to_converts_dtype_and_refuses_cuda_without_a_cuda_build():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    assert model.to(np.float64) is model
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    assert model.to("cpu") is model
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int32)
    with pytest.raises(ValueError, match="device"):
        model.to("cpu:1")
    if not convkern.info()["cuda"]:
        with pytest.raises(RuntimeError, match="no CUDA backend"):
            model.to("cuda")
    elif not convkern.info()["gpus"]:
        with pytest.raises(RuntimeError, match="0 CUDA device"):
            model.to("cuda")
    with pytest.raises(RuntimeError, match="cuda:7"):
        model.to("cuda:7")


def test_layers_reject_mismatched_inputs(rng):
    with pytest.raises(TypeError, match="astype"):
        nn.Linear(3, 2)(rng.standard_normal((4, 3)))  # float64 input, float32 weight
    with pytest.raises(ValueError, match="last axis"):
        nn.Linear(3, 2)(np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError):
        nn.Conv2d(1, 2, 3)(np.zeros((1, 1, 5, 5)))  # float64 input, float32 weight: the op's TypeError
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="layers"):
        nn.Sequential(nn.ReLU(), np.zeros(3))


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def test_state_dict_save_and_load_round_trip(tmp_path, rng):
    model = _lenet()
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.eval()
    expected = model(x)
    state = model.state_dict()
    state["0.weight"][...] = 0  # a copy: the model is untouched
    assert np.abs(model[0].weight.data).max() > 0

    model.save(tmp_path / "lenet.npz")
    fresh = _lenet().eval()
    assert not np.array_equal(fresh(x), expected)
    assert fresh.load(tmp_path / "lenet.npz") is fresh
    np.testing.assert_array_equal(fresh(x), expected)
    with np.load(tmp_path / "lenet.npz") as saved:
        assert sorted(saved.files) == sorted(model.state_dict())


def test_load_state_dict_rejects_a_different_model():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(KeyError, match=r"missing \['0.bias'\]"):
        model.load_state_dict({"0.weight": np.zeros((2, 3))})
    with pytest.raises(KeyError, match="unexpected"):
        model.load_state_dict({"0.weight": np.zeros((2, 3)), "0.bias": np.zeros(2), "1.weight": np.zeros(1)})
    with pytest.raises(ValueError, match=r"0.weight: the model has shape \(2, 3\)"):
        model.load_state_dict({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(2)})


# --------------------------------------------------------------------------------------------
# CrossEntropyLoss
# --------------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(reduction, rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, size=6)
    loss_fn = nn.CrossEntropyLoss(reduction)
    loss = loss_fn(logits, labels)
    grad = loss_fn.backward()
    t = torch.from_numpy(logits).requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels), reduction=reduction)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_stable_for_huge_logits_and_accepts_one_hot_targets(rng):
    loss_fn = nn.CrossEntropyLoss()
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1]], np.float32)
    labels = np.array([0, 2])
    loss = loss_fn(logits, labels)
    # Row 1: certain and right (loss 0); row 2: log(1 + e) against the larger logit.
    assert loss == pytest.approx(math.log1p(math.e) / 2, rel=1e-5)
    grad = loss_fn.backward()
    assert np.isfinite(grad).all()
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert loss_fn(logits, one_hot) == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(loss_fn.backward(), grad, rtol=1e-6)


def test_cross_entropy_gradient_matches_finite_differences(rng):
    logits = rng.standard_normal((3, 5))
    labels = np.array([4, 0, 2])
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(logits, labels)
    analytic = loss_fn.backward(grad_output=2.0)
    picked, numeric = numerical_gradient(lambda: 2.0 * loss_fn(logits, labels), logits, rng)
    np.testing.assert_allclose(analytic.reshape(-1)[picked], numeric, rtol=1e-6, atol=1e-8)


def test_cross_entropy_rejects_bad_targets():
    loss_fn = nn.CrossEntropyLoss()
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        loss_fn(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        loss_fn(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="logits' shape"):
        loss_fn(logits, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="batch, classes"):
        loss_fn(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss("none")


# --------------------------------------------------------------------------------------------
# Keras-style summary: the numbers of the seed material
# --------------------------------------------------------------------------------------------


def test_summary_reproduces_the_seed_model(capsys):
    # Conv2D(16, 3x3, strides 2, 'same') on 128x128x1 -> ReLU -> MaxPooling2D(2) -> Flatten
    # -> Dense(512) -> ReLU -> Dense(26): the course's Keras model, channels-last as in Keras.
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding="same", data_format="NHWC"),
        nn.ReLU(),
        nn.MaxPool2d(2, data_format="NHWC"),
        nn.Flatten(),
        nn.Linear(32 * 32 * 16, 512),
        nn.ReLU(),
        nn.Linear(512, 26),
    )
    summary = model.summary((128, 128, 1))
    assert [(r[2], r[3]) for r in summary.rows] == [
        ((None, 64, 64, 16), 160),
        ((None, 64, 64, 16), 0),
        ((None, 32, 32, 16), 0),
        ((None, 16384), 0),
        ((None, 512), 8_389_120),
        ((None, 512), 0),
        ((None, 26), 13_338),
    ]
    assert summary.total_params == summary.trainable_params == 160 + 8_389_120 + 13_338
    printed = capsys.readouterr().out
    assert printed.strip() == str(summary).strip()
    for text in (
        "conv2d_1 (Conv2d)",
        "(None, 64, 64, 16)",
        "8,389,120",
        "13,338",
        "max_pool2d_1 (MaxPool2d)",
        "relu_2 (ReLU)",
        "Total params: 8,402,618",
        "Non-trainable params: 0",
    ):
        assert text in printed, text


def test_summary_reproduces_the_seed_mnist_model(capsys):
    # The course's second model: three Conv2D(64, 3x3) with pooling on 28x28x1, Dense(10): 80,266 parameters.
    nhwc = {"data_format": "NHWC"}
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3, **nhwc),
        nn.MaxPool2d(2, **nhwc),
        nn.Conv2d(64, 64, 3, **nhwc),
        nn.MaxPool2d(2, **nhwc),
        nn.Conv2d(64, 64, 3, **nhwc),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(576, 10),
    )
    summary = model.summary((28, 28, 1), print_fn=None)
    assert capsys.readouterr().out == ""
    assert [r[2][1:] for r in summary.rows] == [
        (26, 26, 64),
        (13, 13, 64),
        (11, 11, 64),
        (5, 5, 64),
        (3, 3, 64),
        (576,),
        (576,),
        (10,),
    ]
    assert [r[3] for r in summary.rows] == [640, 0, 36928, 0, 36928, 0, 0, 5770]
    assert summary.total_params == 80_266


def test_summary_of_a_mismatched_model_says_which_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 2))
    with pytest.raises(ValueError, match="Linear"):
        model.summary((1, 8, 8), print_fn=None)


def test_repr_reads_like_pytorch():
    text = repr(nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding="same"), nn.ReLU(), nn.Linear(4, 2)))
    assert "(0): Conv2d(1, 16, kernel_size=(3, 3), stride=2, padding='same')" in text
    assert "(2): Linear(in_features=4, out_features=2, bias=True)" in text


# --------------------------------------------------------------------------------------------
# output_shape and the parameter-count helpers
# --------------------------------------------------------------------------------------------

OUTPUT_SHAPE_CASES = [
    ("conv2d", (2, 3, 11, 9), ((5, 3, 3, 2),), dict(stride=2, padding=1, dilation=(1, 2))),
    ("conv2d", (1, 128, 128, 1), ((16, 1, 3, 3),), dict(stride=2, padding="same", data_format="NHWC")),
    ("conv2d", (3, 10, 10), ((4, 3, 5, 5),), dict(padding=((2, 1), (0, 0)))),  # unbatched, asymmetric
    ("conv1d", (2, 4, 17), ((6, 2, 4),), dict(groups=2, stride=3)),
    ("conv3d", (1, 2, 5, 6, 7), ((3, 2, 2, 3, 2),), dict(padding="valid")),
    ("conv_transpose2d", (2, 4, 5, 6), ((4, 3, 3, 3),), dict(stride=2, padding=1, output_padding=1)),
    ("max_pool2d", (2, 3, 7, 8), (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ("min_pool1d", (2, 3, 10), (2,), {}),
    ("avg_pool3d", (1, 2, 6, 6, 6), (2,), dict(stride=(1, 2, 3))),
    ("avg_pool2d", (1, 9, 9, 2), (2,), dict(padding="same", data_format="NHWC")),
    ("global_avg_pool2d", (4, 5, 6, 6), (), {}),
    ("global_max_pool2d", (4, 5, 6, 6), (), dict(keepdims=True)),
    ("adaptive_avg_pool2d", (2, 3, 9, 7), ((4, None),), {}),
]


@pytest.mark.parametrize(
    "op,input_shape,args,kwargs", OUTPUT_SHAPE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OUTPUT_SHAPE_CASES)]
)
def test_output_shape_is_the_shape_the_operator_returns(op, input_shape, args, kwargs, rng):
    if not _has(op):
        pytest.skip(f"{op} is not in this build of convkern yet")
    predicted = convkern.output_shape(op, input_shape, *args, **kwargs)
    arrays = [rng.standard_normal(input_shape).astype(np.float32)]
    if "conv" in op:
        arrays.append(rng.standard_normal(args[0]).astype(np.float32))
        args = args[1:]
    assert predicted == getattr(convkern, op)(*arrays, *args, **kwargs).shape
    assert (
        convkern.output_shape(getattr(convkern, op), input_shape, *[a.shape for a in arrays[1:]], *args, **kwargs)
        == predicted
    )


def test_output_shape_follows_the_seed_formula():
    # H_out = floor((H_in + 2*padding - dilation*(kernel_size - 1) - 1) / stride + 1)
    for h, k, s, p, d in [(30, 3, 1, 0, 1), (28, 3, 1, 0, 1), (128, 3, 2, 1, 1), (32, 5, 1, 0, 1), (13, 3, 2, 1, 2)]:
        expected = math.floor((h + 2 * p - d * (k - 1) - 1) / s + 1)
        assert convkern.output_shape("conv2d", (1, 1, h, h), (1, 1, k, k), stride=s, padding=p, dilation=d)[2:] == (
            expected,
            expected,
        )
    # pooling 8x8 with a 2x2 kernel -> 4x4 (the seed's m/a x n/b)
    assert convkern.output_shape("max_pool2d", (1, 1, 8, 8), 2)[2:] == (4, 4)


def test_output_shape_rejects_what_the_operator_rejects():
    with pytest.raises(ValueError, match="kernel"):
        convkern.output_shape("conv2d", (1, 3, 2, 2), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="forward operators"):
        convkern.output_shape("conv2d_backward", (1, 3, 5, 5), (4, 3, 3, 3))
    with pytest.raises(TypeError):
        convkern.output_shape("max_pool2d", (1, 3, 5, 5), 2, no_such_argument=1)


def test_parameter_counts_follow_the_seed_formulas():
    # Num_weights = (kernel_size * channels + 1) * filters; dense: (inputs + 1) * neurons
    assert convkern.conv_parameter_count(1, 16, 3) == 160
    assert convkern.conv_parameter_count(1, 64, (3, 3)) == 640
    assert convkern.conv_parameter_count(64, 64, 3) == 36_928
    assert convkern.conv_parameter_count(3, 10, 5) == (5 * 5 * 3 + 1) * 10
    assert convkern.conv_parameter_count(8, 8, 3, groups=8, bias=False) == 72
    assert convkern.conv_parameter_count(4, 4, 3, rank=3) == (27 * 4 + 1) * 4
    assert convkern.linear_parameter_count(16_384, 512) == 8_389_120
    assert convkern.linear_parameter_count(512, 26) == 13_338
    assert convkern.linear_parameter_count(576, 10) == 5_770
    with pytest.raises(ValueError, match="groups"):
        convkern.conv_parameter_count(3, 4, 3, groups=2)
    for layer, count in [
        (nn.Conv2d(3, 8, (3, 5), groups=1), convkern.conv_parameter_count(3, 8, (3, 5))),
        (
            nn.Conv1d(4, 6, 3, groups=2, bias=False),
            convkern.conv_parameter_count(4, 6, 3, groups=2, bias=False, rank=1),
        ),
        (nn.ConvTranspose2d(4, 6, 3, groups=2), convkern.conv_parameter_count(4, 6, 3, groups=2)),
        (nn.Linear(7, 3), convkern.linear_parameter_count(7, 3)),
    ]:
        assert layer.num_parameters() == count, layer
