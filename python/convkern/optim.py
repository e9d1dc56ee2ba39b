"""Optimisers: how parameters move, given their gradients. PyTorch's update rules, step for step.

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ...                 # forward, loss, model.backward(...) fill each parameter's .grad
    opt.step()          # move every parameter against its gradient
    opt.zero_grad()     # clear the gradients before the next batch (backward accumulates)

Parameters whose ``.grad`` is None (no backward reached them, or they are frozen) are skipped,
as in PyTorch. Updates happen in place on ``.data``, so the model sees them at once.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Tuple

from .nn import Parameter, array_module

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Holds the parameters to update and, per parameter, whatever state the rule keeps."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params: List[Parameter] = list(params)
        if not self.params:
            raise ValueError("the optimiser got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimisers take nn.Parameter objects (model.parameters()), got {type(p).__name__}")
        if lr < 0:
            raise ValueError(f"learning rate lr must be >= 0, got {lr}")
        self.lr = lr  # may be changed between steps, e.g. by a schedule
        self.state: Dict[Parameter, Dict[str, Any]] = {p: {} for p in self.params}

    def zero_grad(self) -> None:
        """Forgets the gradients (sets them to None, as PyTorch does by default)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None and p.requires_grad:
                self._update(p, p.grad, self.state[p])

    def _update(self, p: Parameter, grad: Any, state: Dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay (torch.optim.SGD):

        g = grad + weight_decay * p                    (L2 regularisation, as a gradient term)
        v = g on the first step, then v = momentum * v + (1 - dampening) * g
        g = g + momentum * v if nesterov else v        (when momentum != 0)
        p = p - lr * g

    Momentum keeps a running direction ("velocity") so steps build up along consistent slopes
    and cancel across oscillating ones.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def _update(self, p: Parameter, grad: Any, state: Dict[str, Any]) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if self.momentum:
            if "velocity" not in state:
                state["velocity"] = grad.copy()
            else:
                velocity = state["velocity"]
                velocity *= self.momentum
                velocity += (1 - self.dampening) * grad
            grad = grad + self.momentum * state["velocity"] if self.nesterov else state["velocity"]
        p.data -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as torch.optim.Adam computes it:

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g          running mean of the gradient
        v = beta2 * v + (1 - beta2) * g^2        running mean of its square
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Each parameter gets its own step size: large where gradients are consistently small, small
    where they are noisy. The (1 - beta^t) factors undo the bias of m and v towards their zero
    start in the first steps.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps} and {weight_decay}")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def _update(self, p: Parameter, grad: Any, state: Dict[str, Any]) -> None:
        xp = array_module(p.data)
        beta1, beta2 = self.betas
        if not state:
            state.update(step=0, m=xp.zeros_like(p.data), v=xp.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1**t)
        denominator = xp.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        p.data -= step_size * m / denominator
