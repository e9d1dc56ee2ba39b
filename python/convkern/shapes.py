"""Output shapes and parameter counts: the size arithmetic of a CNN, without running it.

The course material's formulas, which these functions answer for you:

    out = floor((in + pad_before + pad_after - dilation*(k - 1) - 1) / stride) + 1   (convolution)
    padding="same" (TensorFlow's rule, any stride):  out = ceil(in / stride)
    parameters of a convolution = (kernel_volume * in_channels/groups + 1) * filters
    parameters of a dense layer  = (in_features + 1) * out_features

    >>> import convkern
    >>> convkern.output_shape("conv2d", (1, 128, 128, 1), (16, 1, 3, 3), stride=2, padding="same",
    ...                       data_format="NHWC")
    (1, 64, 64, 16)
    >>> convkern.conv_parameter_count(1, 16, 3), convkern.linear_parameter_count(32 * 32 * 16, 512)
    (160, 8389120)

Sizes are not re-derived here: ``output_shape`` hands the call to the same argument parsers the
operators use, which size the result through ``csrc/shape.h`` (``convkern._C``), so it answers
exactly what the operator would return, and rejects what the operator would reject, with the
same message.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any, Callable, Sequence, Tuple, Union

import numpy as np

from . import functional
from ._args import as_int, int_tuple
from ._conv_ops import _ConvCall, _ConvTransposeCall
from ._pool_ops import _AdaptiveCall, _global_call, _global_shape, _PoolCall

__all__ = ["output_shape", "conv_parameter_count", "linear_parameter_count"]

Shape = Tuple[int, ...]

_OP_NAME = re.compile(
    r"(?P<family>conv|conv_transpose|max_pool|min_pool|avg_pool|global_(?:max|avg|min)_pool|"
    r"adaptive_(?:avg|max)_pool)(?P<rank>[123])d"
)


def _stand_in(shape: Sequence[int]) -> np.ndarray:
    """An array of the given shape that owns no memory (every element is one shared zero).

    The operators' parsers read only shapes, so a stand-in lets them size a call of any size
    for free.
    """
    return np.broadcast_to(np.zeros((), np.float32), tuple(as_int(s, "shape") for s in shape))


def output_shape(op: Union[str, Callable[..., Any]], input_shape: Sequence[int], *args: Any, **kwargs: Any) -> Shape:
    """The shape ``op(input, *args, **kwargs)`` would return, given shapes in place of arrays.

    ``op`` is an operator of convkern or its name ("conv2d", "max_pool2d", "conv_transpose2d",
    "global_avg_pool2d", "adaptive_avg_pool2d", ...). The other arguments are the operator's own,
    with the weight's shape in place of the weight for convolutions:

        output_shape("conv2d", (8, 3, 32, 32), (16, 3, 5, 5), padding=2)   -> (8, 16, 32, 32)
        output_shape("max_pool2d", (8, 16, 32, 32), 2)                     -> (8, 16, 16, 16)

    Invalid arguments raise the operator's ValueError/TypeError.
    """
    name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
    match = _OP_NAME.fullmatch(name)
    function = getattr(functional, name, None)
    if match is None or function is None:
        raise ValueError(f"op must be one of convkern's forward operators (e.g. 'conv2d'), got {name!r}")
    # Binding against the operator's own signature fills in its defaults and rejects unknown keywords.
    call = inspect.signature(function).bind(input_shape, *args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    family, rank = match["family"], int(match["rank"])
    x = _stand_in(a["input"])

    if family == "conv":
        c = _ConvCall(
            rank,
            x,
            _stand_in(a["weight"]),
            None,
            a["stride"],
            a["padding"],
            a["dilation"],
            a["groups"],
            a["padding_mode"],
            a["data_format"],
            a["weight_format"],
        )
        return c.user_shape(c.y_shape)
    if family == "conv_transpose":
        t = _ConvTransposeCall(
            rank,
            x,
            _stand_in(a["weight"]),
            None,
            a["stride"],
            a["padding"],
            a["output_padding"],
            a["groups"],
            a["dilation"],
            a["data_format"],
            a["weight_format"],
        )
        return t.user_shape(t.y_shape)
    if family.startswith("global_"):
        g = _global_call(rank, x, a["data_format"])
        return _global_shape(g, a["keepdims"])
    if family.startswith("adaptive_"):
        adaptive = _AdaptiveCall(rank, x, a["output_size"], a["data_format"])
        return adaptive.user_shape(adaptive.y_shape)
    dilation = a.get("dilation", 1)  # average pooling has none
    p = _PoolCall(rank, x, a["kernel_size"], a["stride"], a["padding"], dilation, a["ceil_mode"], a["data_format"])
    return p.user_shape(p.y_shape)


def conv_parameter_count(
    in_channels: int,
    out_channels: int,
    kernel_size: Union[int, Sequence[int]],
    *,
    groups: int = 1,
    bias: bool = True,
    rank: int = 2,
) -> int:
    """Trainable numbers in a convolution layer: ``(kernel_volume * in_channels/groups + 1) * out_channels``.

    Each of the ``out_channels`` filters has one weight per kernel cell and input channel of its
    group, plus one bias. ``kernel_size`` is an int (the same on each of ``rank`` axes) or a tuple.
    A transposed convolution with the same arguments has the same count.

        conv_parameter_count(1, 16, 3)   -> 160    (Conv2D(16, 3x3) on a grey image)
    """
    kernel = int_tuple(kernel_size, len(kernel_size) if isinstance(kernel_size, (list, tuple)) else rank, "kernel_size")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    return (math.prod(kernel) * (in_channels // groups) + int(bool(bias))) * out_channels


def linear_parameter_count(in_features: int, out_features: int, *, bias: bool = True) -> int:
    """Trainable numbers in a dense (fully connected) layer: ``(in_features + 1) * out_features``.

    linear_parameter_count(32 * 32 * 16, 512)   -> 8389120
    """
    return (in_features + int(bool(bias))) * out_features
