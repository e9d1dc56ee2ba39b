"""Layers for building and training convolutional networks, in the style of ``torch.nn``.

Each layer is a small class with two methods that mirror each other:

* ``forward(x)`` computes the layer's output and, in training mode, keeps what ``backward``
  will need (the input, the max-pooling indices, the dropout mask);
* ``backward(grad_output)`` receives dLoss/dOutput and returns dLoss/dInput, adding
  dLoss/dParameter into each parameter's ``.grad`` on the way (the chain rule, one layer at a time).

There is no autograd: ``Sequential.backward`` simply calls the layers' ``backward`` in reverse
order. The heavy lifting (convolution and pooling, forward and backward) is done by convkern's
kernels; what is left here is the bookkeeping, in plain NumPy that you can read. A training step:

    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(16 * 4 * 4, 10))
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3)
    logits = model(x)                    # forward; caches what backward needs while training
    loss = loss_fn(logits, labels)       # float, mean over the batch
    model.backward(loss_fn.backward())   # gradient w.r.t. logits in, parameter .grad accumulated
    opt.step(); opt.zero_grad()

Constructor arguments, parameter shapes, ``parameters()`` order, ``state_dict`` keys and the
default initialisation are PyTorch's, so weights can be copied between the two one to one.
Layers also take a ``data_format`` ("NCHW", PyTorch's default, or "NHWC", Keras's), and convolutions a
``weight_format`` ("OIHW", PyTorch's, or "HWIO", the layout of a Keras kernel, which then loads as is).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import functional as F
from ._args import CHANNELS_FIRST, WEIGHT_CHANNELS_FIRST, int_tuple, weight_from_channels_first, weight_is_spatial_first
from .shapes import output_shape

__all__ = [
    "Parameter",
    "Module",
    "Sequential",
    "manual_seed",
    "ModelSummary",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MinPool1d",
    "MinPool2d",
    "MinPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "GlobalMaxPool1d",
    "GlobalMaxPool2d",
    "GlobalMaxPool3d",
    "GlobalAvgPool1d",
    "GlobalAvgPool2d",
    "GlobalAvgPool3d",
    "GlobalMinPool1d",
    "GlobalMinPool2d",
    "GlobalMinPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "ReLU",
    "Flatten",
    "Linear",
    "Dropout",
    "CrossEntropyLoss",
]


# ============================================================================ arrays and devices
#
# Parameters live on a device: "cpu" (NumPy arrays) or "cuda" (CuPy arrays, computed by convkern's
# CUDA kernels). The few NumPy functions a layer calls itself go through `array_module(x)`, which
# answers numpy or cupy, so that the same layer code serves both.


def array_module(a: Any) -> Any:
    """``numpy`` for host arrays, ``cupy`` for CuPy arrays."""
    cupy = sys.modules.get("cupy")  # if `a` is a CuPy array, CuPy has been imported already
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy
    return np


def _to_device(a: Any, device: str) -> Any:
    """The array `a` on `device` ("cpu", "cuda" or "cuda:<index>"); `a` itself if it is there."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return a.get() if array_module(a) is not np else a
    if kind == "cuda":
        from . import _cuda_backend

        if not _cuda_backend.built():
            raise RuntimeError(
                f"cannot move to {device!r}: this build of convkern has no CUDA backend "
                "(convkern.info()['cuda'] is False); rebuild it where the CUDA toolkit is installed"
            )
        ordinal = int(index) if index else 0
        if ordinal >= _cuda_backend.device_count():
            raise RuntimeError(f"cannot move to {device!r}: {_cuda_backend.device_count()} CUDA device(s) are visible")
        cupy = _cuda_backend._cupy()  # type: ignore[no-untyped-call]  # a RuntimeError saying how to install CuPy when it is missing
        with cupy.cuda.Device(ordinal):
            return cupy.asarray(a)
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


# One generator for initial weights and dropout masks, so that `manual_seed` makes a run repeatable.
_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seeds the random numbers behind weight initialisation and dropout (like ``torch.manual_seed``)."""
    global _generator
    _generator = np.random.default_rng(seed)


# ==================================================================================== parameters


class Parameter:
    """A trainable array (``.data``) and the gradient of the loss with respect to it (``.grad``).

    ``.grad`` is None until a backward pass adds to it; backward passes accumulate (``+=``), so
    gradients of several batches add up until ``zero_grad`` clears them, as in PyTorch.
    ``requires_grad=False`` freezes the parameter: backward leaves its ``.grad`` alone and the
    optimisers skip it.
    """

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        return int(self.data.size)

    def accumulate_grad(self, grad: Any) -> None:
        if not self.requires_grad:
            return
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def _kaiming_uniform(shape: Tuple[int, ...], fan_in: int, a: float = math.sqrt(5)) -> np.ndarray:
    """PyTorch's default weight init for convolutions and dense layers: kaiming_uniform_(a=sqrt(5)).

    Draws from U(-bound, bound) with bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
    With a = sqrt(5) that is bound = 1/sqrt(fan_in): the output of a layer then has about the
    variance of its input, whatever the number of inputs each output sums.
    """
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return _generator.uniform(-bound, bound, size=shape).astype(np.float32)


def _default_bias(size: int, fan_in: int) -> np.ndarray:
    """PyTorch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return _generator.uniform(-bound, bound, size=size).astype(np.float32)


# ====================================================================================== Module


def _snake_case(name: str) -> str:
    """ "MaxPool2d" -> "max_pool2d", "ReLU" -> "relu": layer names in the summary, Keras-style."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", name).lower()


class Module:
    """Base class of every layer and of models built from layers.

    Subclasses set parameters and sub-layers as attributes; ``parameters()`` finds them in the
    order they were assigned (so a layer's weight comes before its bias), then in the
    sub-layers, like PyTorch.
    """

    def __init__(self) -> None:
        self.training = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def output_shape(self, input_shape: Sequence[int]) -> Tuple[int, ...]:
        """The shape ``forward`` returns for an input of ``input_shape`` (batch axis included)."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_shape")

    def _saved(self, value: Any) -> Any:
        """What forward kept for backward, or a clear error if it kept nothing."""
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward needs what its forward keeps, and forward keeps it only in "
                "training mode: call model.train() and run forward on this batch before backward"
            )
        return value

    # --- the tree of layers and their parameters ---------------------------------------------

    def named_children(self) -> Iterator[Tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """("0.weight", parameter) pairs: the names are the keys of ``state_dict``."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> List[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Training mode: forward keeps what backward needs, Dropout drops. Returns self."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Inference mode: forward keeps nothing, Dropout passes its input through. Returns self."""
        return self.train(False)

    def to(self, target: Any) -> Module:
        """Moves the parameters to a device ("cpu", "cuda", "cuda:1") or converts them to a float dtype.

        ``model.to(numpy.float64)`` is what gradient checks use. Create the optimiser after
        moving or converting: it holds state shaped like the parameters. Returns self.
        """
        if isinstance(target, str) and target.split(":")[0] in ("cpu", "cuda"):

            def convert(a: Any) -> Any:
                return _to_device(a, target)
        else:
            dtype = np.dtype(target)
            if dtype not in (np.float32, np.float64):
                raise TypeError(f"parameters can be float32 or float64, got {dtype}")

            def convert(a: Any) -> Any:
                return a.astype(dtype, copy=False)

        for p in self.parameters():
            p.data = convert(p.data)
            p.grad = None if p.grad is None else convert(p.grad)
        return self

    # --- saving and loading -------------------------------------------------------------------

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every parameter by name (``"0.weight"``, as PyTorch names them), as host NumPy copies."""
        return {name: np.array(_to_device(p.data, "cpu")) for name, p in self.named_parameters()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Copies ``state``'s arrays into the parameters, keeping each parameter's dtype and device."""
        params = dict(self.named_parameters())
        missing, unexpected = params.keys() - state.keys(), state.keys() - params.keys()
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for name, p in params.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"{name}: the model has shape {p.shape}, the state_dict {value.shape}")
            xp = array_module(p.data)
            p.data[...] = xp.asarray(value, dtype=p.data.dtype)

    def save(self, path: Any) -> None:
        """Writes ``state_dict()`` to an .npz file (``numpy.load`` reads it back as a dict)."""
        np.savez(path, **self.state_dict())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    def load(self, path: Any) -> Module:
        """Loads parameters saved by ``save`` into this model, which must have the same layers."""
        with np.load(path) as saved:
            self.load_state_dict({name: saved[name] for name in saved.files})
        return self

    # --- description --------------------------------------------------------------------------

    def _summary_layers(self) -> List[Module]:
        return [self]

    def summary(self, input_shape: Sequence[int], print_fn: Optional[Callable[[str], Any]] = print) -> ModelSummary:
        """A Keras-style table of the layers: output shape and parameter count of each, and totals.

        ``input_shape`` is the shape of one example, without the batch axis (Keras's
        ``input_shape``), e.g. ``(1, 28, 28)`` for NCHW layers or ``(28, 28, 1)`` for NHWC ones.
        The table is printed with ``print_fn`` (None: not printed) and returned. Nothing is
        computed on arrays: each layer reports its output shape from its arguments.
        """
        shape = (1,) + tuple(input_shape)  # a batch of one, shown as None, as Keras does
        rows: List[Tuple[Any, ...]] = []
        seen: Counter[str] = Counter()
        for layer in self._summary_layers():
            shape = tuple(layer.output_shape(shape))
            kind = type(layer).__name__
            seen[kind] += 1
            rows.append((f"{_snake_case(kind)}_{seen[kind]}", kind, (None,) + shape[1:], layer.num_parameters()))
        summary = ModelSummary(
            name=_snake_case(type(self).__name__),
            rows=rows,
            total_params=self.num_parameters(),
            trainable_params=self.num_parameters(trainable_only=True),
            total_bytes=sum(p.data.nbytes for p in self.parameters()),
        )
        if print_fn is not None:
            print_fn(str(summary))
        return summary

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class ModelSummary:
    """What ``Module.summary`` found: ``rows`` of (name, type, output shape, parameters) and totals.

    ``str(summary)`` is the Keras-style table.
    """

    def __init__(
        self, name: str, rows: List[Tuple[Any, ...]], total_params: int, trainable_params: int, total_bytes: int
    ) -> None:
        self.name, self.rows = name, rows
        self.total_params, self.trainable_params = total_params, trainable_params
        self.total_bytes = total_bytes

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #")
        cells = [(f"{name} ({kind})", str(shape), f"{count:,}") for name, kind, shape, count in self.rows]
        widths = [max(len(r[i]) for r in [header] + cells) + 4 for i in range(3)]

        def line(r: Any) -> Any:
            return " " + "".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

        rule = sum(widths) + 1
        mib = self.total_bytes / 2**20
        return "\n".join(
            [f'Model: "{self.name}"', "_" * rule, line(header), "=" * rule]
            + [line(c) for c in cells]
            + [
                "=" * rule,
                f"Total params: {self.total_params:,} ({mib:.2f} MB)",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                "_" * rule,
            ]
        )

    def __repr__(self) -> str:
        return f"<ModelSummary of {self.name}: {len(self.rows)} layers, {self.total_params:,} parameters>"


class Sequential(Module):
    """Layers applied one after the other; backward runs them in reverse.

    model = Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2))
    model[0]          # the Conv2d; parameters are named "0.weight", "0.bias"
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes layers (nn.Module), got {type(layer).__name__} at position {i}")
        self.layers = list(layers)

    def named_children(self) -> Iterator[Tuple[str, Module]]:
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_output: Any) -> Any:
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _summary_layers(self) -> List[Module]:
        return list(self.layers)

    def append(self, layer: Module) -> Sequential:
        self.layers.append(layer)
        return self

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"


# ================================================================================ convolutions


def _conv_repr(layer: Any, optional: Any) -> str:
    """PyTorch-style repr of a (transposed) convolution: arguments shown only when not default."""
    s = f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}, stride={layer.stride}"
    for name, default in optional:
        if getattr(layer, name) != default:
            s += f", {name}={getattr(layer, name)!r}"
    if layer.bias is None:
        s += ", bias=False"
    if layer.data_format != CHANNELS_FIRST[layer.rank]:
        s += f", data_format={layer.data_format!r}"
    if layer.weight_format != WEIGHT_CHANNELS_FIRST[layer.rank]:
        s += f", weight_format={layer.weight_format!r}"
    return s


def _initial_weight(shape: Tuple[int, ...], fan_in: int, weight_format: str, rank: int) -> np.ndarray:
    """PyTorch's initial weight, in the layer's weight_format (the same numbers, only laid out differently)."""
    w = _kaiming_uniform(shape, fan_in)
    return weight_from_channels_first(w, rank) if weight_is_spatial_first(weight_format, rank) else w


class _ConvNd(Module):
    """y = conv(x, weight) + bias. Weight (out_channels, in_channels/groups, *kernel_size), or
    (*kernel_size, in_channels/groups, out_channels) with the spatial-first weight_format (Keras's)."""

    rank: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        data_format: Optional[str] = None,
        weight_format: Optional[str] = None,
    ) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = int_tuple(kernel_size, self.rank, "kernel_size")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.padding_mode = padding_mode
        self.data_format = data_format or CHANNELS_FIRST[self.rank]
        self.weight_format = weight_format or WEIGHT_CHANNELS_FIRST[self.rank]
        # Each output sums in_channels/groups * kernel_volume products: that is the fan-in.
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        self.weight = Parameter(
            _initial_weight(
                (out_channels, in_channels // groups) + self.kernel_size, fan_in, self.weight_format, self.rank
            )
        )
        self.bias = Parameter(_default_bias(out_channels, fan_in)) if bias else None
        self._input = None

    def _geometry(self) -> Dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
            data_format=self.data_format,
            weight_format=self.weight_format,
        )

    def forward(self, x: Any) -> Any:
        self._input = x if self.training else None
        conv = getattr(F, f"conv{self.rank}d")
        bias = None if self.bias is None else self.bias.data
        return conv(x, self.weight.data, bias, **self._geometry())

    def backward(self, grad_output: Any) -> Any:
        conv_backward = getattr(F, f"conv{self.rank}d_backward")
        grad_input, grad_weight, grad_bias = conv_backward(
            grad_output, self._saved(self._input), self.weight.data, **self._geometry()
        )
        self.weight.accumulate_grad(grad_weight)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_bias)
        return grad_input

    def output_shape(self, input_shape: Any) -> Any:
        return output_shape(f"conv{self.rank}d", input_shape, self.weight.shape, **self._geometry())

    def extra_repr(self) -> str:
        return _conv_repr(self, (("padding", 0), ("dilation", 1), ("groups", 1), ("padding_mode", "zeros")))


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, W) inputs (or (N, W, C) with data_format="NWC")."""

    rank = 1


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) inputs (or (N, H, W, C) with data_format="NHWC").

    ``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode="zeros", data_format="NCHW", weight_format="OIHW")``; padding may also
    be "same" or "valid"; weight_format="HWIO" keeps the weight as a Keras kernel, (kH, kW, C_in, C_out).
    """

    rank = 2


class Conv3d(_ConvNd):
    """3-D convolution over (N, C, D, H, W) inputs (or (N, D, H, W, C) with data_format="NDHWC")."""

    rank = 3


class _ConvTransposeNd(Module):
    """The transpose (adjoint) of a convolution: it maps a conv's output size back to its input size.

    Weight (in_channels, out_channels/groups, *kernel_size), as in PyTorch, or (*kernel_size,
    out_channels/groups, in_channels) with the spatial-first weight_format (Keras's). Used to upsample,
    e.g. in decoders: stride 2 doubles the size.
    """

    rank: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        data_format: Optional[str] = None,
        weight_format: Optional[str] = None,
    ) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = int_tuple(kernel_size, self.rank, "kernel_size")
        self.stride, self.padding, self.output_padding, self.dilation = stride, padding, output_padding, dilation
        self.data_format = data_format or CHANNELS_FIRST[self.rank]
        self.weight_format = weight_format or WEIGHT_CHANNELS_FIRST[self.rank]
        # PyTorch computes the fan-in from the weight's second axis: out_channels/groups * kernel volume.
        fan_in = out_channels // groups * math.prod(self.kernel_size)
        self.weight = Parameter(
            _initial_weight(
                (in_channels, out_channels // groups) + self.kernel_size, fan_in, self.weight_format, self.rank
            )
        )
        self.bias = Parameter(_default_bias(out_channels, fan_in)) if bias else None
        self._input = None

    def _geometry(self) -> Dict[str, Any]:
        return dict(
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            groups=self.groups,
            dilation=self.dilation,
            data_format=self.data_format,
            weight_format=self.weight_format,
        )

    def forward(self, x: Any) -> Any:
        self._input = x if self.training else None
        conv_transpose = getattr(F, f"conv_transpose{self.rank}d")
        bias = None if self.bias is None else self.bias.data
        return conv_transpose(x, self.weight.data, bias, **self._geometry())

    def backward(self, grad_output: Any) -> Any:
        conv_transpose_backward = getattr(F, f"conv_transpose{self.rank}d_backward")
        grad_input, grad_weight, grad_bias = conv_transpose_backward(
            grad_output, self._saved(self._input), self.weight.data, **self._geometry()
        )
        self.weight.accumulate_grad(grad_weight)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_bias)
        return grad_input

    def output_shape(self, input_shape: Any) -> Any:
        return output_shape(f"conv_transpose{self.rank}d", input_shape, self.weight.shape, **self._geometry())

    def extra_repr(self) -> str:
        return _conv_repr(self, (("padding", 0), ("output_padding", 0), ("dilation", 1), ("groups", 1)))


class ConvTranspose1d(_ConvTransposeNd):
    rank = 1


class ConvTranspose2d(_ConvTransposeNd):
    """``ConvTranspose2d(in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
    groups=1, bias=True, dilation=1, data_format="NCHW", weight_format="OIHW")``; out = (in-1)*stride -
    2*padding + dilation*(kernel_size-1) + output_padding + 1. weight_format="HWIO" keeps the weight as
    a Keras Conv2DTranspose kernel, (kH, kW, C_out, C_in)."""

    rank = 2


class ConvTranspose3d(_ConvTransposeNd):
    rank = 3


# ===================================================================================== pooling
#
# Pooling layers have no parameters. Their backward routes each output's gradient back to the
# input cells its window read: all of it to the winning cell for max/min pooling, an equal share
# to every cell for average pooling.


class _PoolNd(Module):
    """Shared by the pooling layers: the op is F.<op_name>{rank}d, its arguments are `_arguments()`."""

    rank: int
    op_name: str
    # Max/min layers keep each window's winner while training, so that backward sends the
    # gradient straight there without searching the windows again.
    keeps_indices = False

    def __init__(self, data_format: Optional[str]) -> None:
        super().__init__()
        self.data_format = data_format or CHANNELS_FIRST[self.rank]
        self._input = self._indices = None

    def _arguments(self) -> Dict[str, Any]:
        raise NotImplementedError

    def _op(self, suffix: str = "") -> Any:
        return getattr(F, f"{self.op_name}{self.rank}d{suffix}")

    def forward(self, x: Any) -> Any:
        self._input = x if self.training else None
        if not (self.training and self.keeps_indices):
            self._indices = None
            return self._op()(x, **self._arguments())
        y, self._indices = self._op()(x, **self._arguments(), return_indices=True)
        return y

    def backward(self, grad_output: Any) -> Any:
        saved = {"indices": self._indices} if self.keeps_indices else {}
        return self._op("_backward")(grad_output, self._saved(self._input), **self._arguments(), **saved)

    def output_shape(self, input_shape: Any) -> Any:
        return output_shape(f"{self.op_name}{self.rank}d", input_shape, **self._arguments())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())


class _ExtremumPoolNd(_PoolNd):
    """Max (or min) over each window; training keeps each window's winner (see _PoolNd)."""

    keeps_indices = True

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
        data_format: Optional[str] = None,
    ) -> None:
        super().__init__(data_format)
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.ceil_mode = ceil_mode

    def _arguments(self) -> Dict[str, Any]:
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            data_format=self.data_format,
        )


class MaxPool1d(_ExtremumPoolNd):
    rank, op_name = 1, "max_pool"


class MaxPool2d(_ExtremumPoolNd):
    """``MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format="NCHW")``;
    stride defaults to kernel_size, so MaxPool2d(2) halves the height and width."""

    rank, op_name = 2, "max_pool"


class MaxPool3d(_ExtremumPoolNd):
    rank, op_name = 3, "max_pool"


class MinPool1d(_ExtremumPoolNd):
    rank, op_name = 1, "min_pool"


class MinPool2d(_ExtremumPoolNd):
    """Like MaxPool2d, keeping each window's smallest value."""

    rank, op_name = 2, "min_pool"


class MinPool3d(_ExtremumPoolNd):
    rank, op_name = 3, "min_pool"


class _AvgPoolNd(_PoolNd):
    op_name = "avg_pool"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
        data_format: Optional[str] = None,
    ) -> None:
        super().__init__(data_format)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def _arguments(self) -> Dict[str, Any]:
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
            data_format=self.data_format,
        )


class AvgPool1d(_AvgPoolNd):
    rank = 1


class AvgPool2d(_AvgPoolNd):
    """``AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None, data_format="NCHW")``."""

    rank = 2


class AvgPool3d(_AvgPoolNd):
    rank = 3


class _GlobalPoolNd(_PoolNd):
    """One number per (example, channel): the max/average/min of the whole feature map.

    The output is (N, C), ready for a Linear layer without Flatten (Keras's GlobalAveragePooling2D);
    keepdims=True keeps size-1 spatial axes instead.
    """

    def __init__(self, keepdims: bool = False, data_format: Optional[str] = None) -> None:
        super().__init__(data_format)
        self.keepdims = keepdims

    def _arguments(self) -> Dict[str, Any]:
        return dict(keepdims=self.keepdims, data_format=self.data_format)


class GlobalMaxPool1d(_GlobalPoolNd):
    rank, op_name = 1, "global_max_pool"


class GlobalMaxPool2d(_GlobalPoolNd):
    rank, op_name = 2, "global_max_pool"


class GlobalMaxPool3d(_GlobalPoolNd):
    rank, op_name = 3, "global_max_pool"


class GlobalAvgPool1d(_GlobalPoolNd):
    rank, op_name = 1, "global_avg_pool"


class GlobalAvgPool2d(_GlobalPoolNd):
    rank, op_name = 2, "global_avg_pool"


class GlobalAvgPool3d(_GlobalPoolNd):
    rank, op_name = 3, "global_avg_pool"


class GlobalMinPool1d(_GlobalPoolNd):
    rank, op_name = 1, "global_min_pool"


class GlobalMinPool2d(_GlobalPoolNd):
    rank, op_name = 2, "global_min_pool"


class GlobalMinPool3d(_GlobalPoolNd):
    rank, op_name = 3, "global_min_pool"


class _AdaptivePoolNd(_PoolNd):
    """Pools to a fixed output size whatever the input size: window i spans
    [floor(i*in/out), ceil((i+1)*in/out)). None in output_size keeps that axis's size."""

    def __init__(self, output_size: Any, data_format: Optional[str] = None) -> None:
        super().__init__(data_format)
        self.output_size = output_size

    def _arguments(self) -> Dict[str, Any]:
        return dict(output_size=self.output_size, data_format=self.data_format)


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    rank, op_name = 1, "adaptive_avg_pool"


class AdaptiveAvgPool2d(_AdaptivePoolNd):
    """``AdaptiveAvgPool2d(output_size, data_format="NCHW")``; AdaptiveAvgPool2d(1) is global average pooling
    with the spatial axes kept."""

    rank, op_name = 2, "adaptive_avg_pool"


class AdaptiveAvgPool3d(_AdaptivePoolNd):
    rank, op_name = 3, "adaptive_avg_pool"


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    op_name = "adaptive_max_pool"
    keeps_indices = True


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    rank = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    rank = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    rank = 3


# ============================================================================ element-wise layers


class ReLU(Module):
    """ReLU(x) = max(0, x). Its derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0, as in PyTorch),
    so backward lets the gradient through exactly where the input was positive."""

    def __init__(self) -> None:
        super().__init__()
        self._positive = None

    def forward(self, x: Any) -> Any:
        self._positive = (x > 0) if self.training else None
        return array_module(x).maximum(x, 0)

    def backward(self, grad_output: Any) -> Any:
        return grad_output * self._saved(self._positive)

    def output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)


class Dropout(Module):
    """In training, zeroes each element with probability p and scales the survivors by 1/(1-p),
    so that the expected output equals the input; in eval mode it is the identity.

    Dropping random units keeps the network from relying on any single one (a regulariser).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be between 0 and 1, got {p}")
        self.p = p
        self._scale = None

    def forward(self, x: Any) -> Any:
        if not self.training:
            self._scale = None
            return x
        xp = array_module(x)
        # Drawn on the host from the seeded generator (then moved, for CuPy), so runs are repeatable.
        keep = xp.asarray(_generator.random(x.shape) >= self.p)
        # With p = 1 nothing survives: the output is zero (and 1/(1-p) is never formed).
        self._scale = keep.astype(x.dtype) * (1.0 / (1.0 - self.p)) if self.p < 1 else xp.zeros_like(x)
        return x * self._scale

    def backward(self, grad_output: Any) -> Any:
        # The output is the input times a fixed mask, so the gradient is the upstream one times it.
        if not self.training:
            return grad_output
        return grad_output * self._saved(self._scale)

    def output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Joins axes start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W), before the dense layers.

    The order of the joined elements is the memory order of the input, so an NHWC model flattens
    channels fastest (like Keras) and an NCHW model flattens width fastest (like PyTorch).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._input_shape = None

    def output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)
        start, end = self.start_dim % len(shape), self.end_dim % len(shape)
        return shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]

    def forward(self, x: Any) -> Any:
        self._input_shape = x.shape
        return x.reshape(self.output_shape(x.shape))

    def backward(self, grad_output: Any) -> Any:
        return grad_output.reshape(self._saved(self._input_shape))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Linear(Module):
    """A dense (fully connected) layer: y = x @ weight.T + bias.

    Weight (out_features, in_features), as in PyTorch. x may have any number of leading axes;
    the last must have in_features elements.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_kaiming_uniform((out_features, in_features), in_features))
        self.bias = Parameter(_default_bias(out_features, in_features)) if bias else None
        self._input = None

    def forward(self, x: Any) -> Any:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expects inputs whose last axis has "
                f"{self.in_features} elements, got shape {x.shape}"
            )
        if x.dtype != self.weight.data.dtype:
            raise TypeError(
                f"input has dtype {x.dtype} but the weight has {self.weight.data.dtype}; convert the "
                f"input with .astype(numpy.{self.weight.data.dtype}) or the model with .to()"
            )
        self._input = x if self.training else None
        y = x @ self.weight.data.T
        return y if self.bias is None else y + self.bias.data

    def backward(self, grad_output: Any) -> Any:
        x = self._saved(self._input)
        # Every leading axis is a batch axis: fold them into one to get two matrix products.
        x2 = x.reshape(-1, self.in_features)
        g2 = grad_output.reshape(-1, self.out_features)
        self.weight.accumulate_grad(g2.T @ x2)  # dL/dW[o, i] = sum over the batch of g[o] * x[i]
        if self.bias is not None:
            self.bias.accumulate_grad(g2.sum(axis=0))
        return (g2 @ self.weight.data).reshape(x.shape)

    def output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)
        if shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) cannot follow an output of shape "
                f"{shape}: its last axis must have {self.in_features} elements"
            )
        return shape[:-1] + (self.out_features,)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


# ======================================================================================== loss


class CrossEntropyLoss(Module):
    """Softmax and negative log-likelihood in one step, averaged over the batch (like PyTorch's).

    ``loss_fn(logits, target)``: logits (N, classes), unnormalised scores; target either class
    indices (N,) of an integer dtype, or class probabilities (N, classes), e.g. one-hot rows
    (Keras's categorical_crossentropy). Returns the loss as a float.

    ``loss_fn.backward()`` returns dLoss/dLogits = (softmax(logits) - onehot(target)) / N: the
    softmax's and the logarithm's derivatives cancel into this simple form, which is why the two
    are fused.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._probabilities = self._target = None

    def forward(self, logits: Any, target: Any) -> Any:
        xp = array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (batch, classes), got {logits.shape}")
        target = xp.asarray(target)
        n = logits.shape[0]
        # log softmax(z) = z - log(sum(exp(z))); shifting z by its row maximum first leaves that
        # unchanged but keeps every exp() <= 1, so large logits cannot overflow.
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probabilities = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        if target.dtype.kind in "iu":
            if target.shape != (n,):
                raise ValueError(f"class-index targets must have shape ({n},), got {target.shape}")
            if n and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
                raise ValueError(
                    f"class indices must be in [0, {logits.shape[1]}), got values from "
                    f"{int(target.min())} to {int(target.max())}"
                )
            losses = -log_probabilities[xp.arange(n), target]
        else:
            if target.shape != logits.shape:
                raise ValueError(f"probability targets must have the logits' shape {logits.shape}, got {target.shape}")
            losses = -(target * log_probabilities).sum(axis=1)
        self._probabilities, self._target = xp.exp(log_probabilities), target
        return float(losses.mean() if self.reduction == "mean" else losses.sum())

    def backward(self, grad_output: float = 1.0) -> Any:
        """dLoss/dLogits, times ``grad_output`` (the derivative of whatever is built on the loss)."""
        grad = self._saved(self._probabilities).copy()
        target: Any = self._target
        if target.dtype.kind in "iu":
            grad[array_module(grad).arange(len(target)), target] -= 1
        else:
            grad -= target
        if self.reduction == "mean":
            grad /= max(len(grad), 1)
        return grad * grad_output

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
