"""convkern.optim: SGD and Adam take the same steps as torch.optim, given the same gradients."""

from __future__ import annotations

import numpy as np
import pytest
from convkern import nn, optim


def _params(rng, shapes=((3, 4), (4,))):
    return [nn.Parameter(rng.standard_normal(s)) for s in shapes]


def _run(opt_factory, params, gradients):
    """Steps with the given gradient sequence; returns the parameters after each step."""
    opt = opt_factory(params)
    trajectory = []
    for step_grads in gradients:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
        opt.zero_grad()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.02, momentum=0.9, weight_decay=1e-3, nesterov=True),
]
ADAM_CONFIGS = [
    dict(lr=1e-3),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.005, weight_decay=0.05),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    "name,config",
    [("SGD", c) for c in SGD_CONFIGS] + [("Adam", c) for c in ADAM_CONFIGS],
    ids=[f"SGD{i}" for i in range(len(SGD_CONFIGS))] + [f"Adam{i}" for i in range(len(ADAM_CONFIGS))],
)
def test_steps_match_torch(name, config, rng):
    torch = pytest.importorskip("torch")
    params = _params(rng)
    start = [p.data.copy() for p in params]
    gradients = [[rng.standard_normal(p.shape) for p in params] for _ in range(6)]
    ours = _run(lambda ps: getattr(optim, name)(ps, **config), params, gradients)

    tparams = [torch.tensor(s, requires_grad=True) for s in start]
    topt = getattr(torch.optim, name)(tparams, **config)
    for step, step_grads in enumerate(gradients):
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        topt.zero_grad()
        for ours_p, tp in zip(ours[step], tparams):
            np.testing.assert_allclose(
                ours_p, tp.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=f"{name} {config} step {step}"
            )


def test_sgd_is_plain_gradient_descent_without_options(rng):
    (p,) = _params(rng, [(5,)])
    start = p.data.copy()
    g = rng.standard_normal(5)
    _run(lambda ps: optim.SGD(ps, lr=0.5), [p], [[g]])
    np.testing.assert_allclose(p.data, start - 0.5 * g, rtol=1e-15)


def test_adam_first_step_moves_each_parameter_by_lr(rng):
    # With the bias corrections, Adam's first step is lr * g / (|g| + eps): lr in the gradient's sign.
    (p,) = _params(rng, [(6,)])
    start = p.data.copy()
    g = rng.standard_normal(6)
    _run(lambda ps: optim.Adam(ps, lr=0.01), [p], [[g]])
    np.testing.assert_allclose(start - p.data, 0.01 * np.sign(g), rtol=1e-6)


def test_parameters_without_gradient_or_frozen_are_left_alone(rng):
    a, b, c = _params(rng, [(2,), (3,), (4,)])
    c.requires_grad = False
    before = [q.data.copy() for q in (a, b, c)]
    opt = optim.Adam([a, b, c], lr=0.1)
    a.grad, c.grad = np.ones(2), np.ones(4)
    opt.step()
    assert not np.array_equal(a.data, before[0])
    np.testing.assert_array_equal(b.data, before[1])
    np.testing.assert_array_equal(c.data, before[2])
    opt.zero_grad()
    assert a.grad is None and c.grad is None


def test_updates_are_in_place_and_lr_can_change_between_steps(rng):
    layer = nn.Linear(3, 2)
    weight = layer.weight.data
    opt = optim.SGD(layer.parameters(), lr=0.1)
    layer.weight.grad = np.ones_like(weight)
    opt.step()
    opt.lr = 0.0
    after_first = weight.copy()
    layer.weight.grad = np.ones_like(weight)
    opt.step()
    assert layer.weight.data is weight  # the model holds the updated array
    np.testing.assert_array_equal(weight, after_first)


def test_training_step_of_the_spec_reduces_the_loss(rng):
    nn.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=16)
    losses = []
    for _ in range(30):
        logits = model(x)
        losses.append(loss_fn(logits, labels))
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < 0.2 * losses[0]  # it can memorise 16 examples


def test_bad_arguments():
    p = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
