"""convkern's operators on torch tensors, with ``torch.nn.functional``'s arguments.

    >>> import torch, convkern.torch as ckt
    >>> x = torch.randn(2, 3, 16, 16, requires_grad=True)
    >>> w = torch.randn(8, 3, 3, 3, requires_grad=True)
    >>> y = ckt.functional.conv2d(x, w, padding=1)
    >>> y.shape, y.grad_fn is not None
    (torch.Size([2, 8, 16, 16]), True)

Each function normalises its arguments (an int or one int per axis; an unbatched input without N)
and calls the registered operator ``torch.ops.convkern.<name>``, which is what autograd,
``torch.compile`` and ``torch.export`` see. Beyond ``torch.nn.functional``: ``padding`` of a
convolution may be one (before, after) pair per axis or ``"same"`` at any stride (TensorFlow's
rule), and min pooling and global pooling exist.
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import _ops  # noqa: F401  (registers torch.ops.convkern.*)

IntOrSeq = Union[int, Sequence[int]]
ConvPadding = Union[int, str, Sequence[Union[int, Tuple[int, int]]]]

__all__ = [
    f"{family}{rank}d"
    for rank in (1, 2, 3)
    for family in (
        "conv",
        "conv_transpose",
        "max_pool",
        "min_pool",
        "avg_pool",
        "global_max_pool",
        "global_avg_pool",
        "global_min_pool",
        "adaptive_avg_pool",
        "adaptive_max_pool",
    )
]


def _ops_for(name: str):
    return getattr(torch.ops.convkern, name)


def _per_axis(value: IntOrSeq, rank: int, name: str) -> List[int]:
    if isinstance(value, (list, tuple, torch.Size)):
        if len(value) != rank:
            raise ValueError(f"{name} must be an int or a tuple of {rank} ints, got {tuple(value)!r}")
        return [int(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    return [int(value)] * rank


def _batched(input: Tensor, rank: int, name: str) -> Tuple[Tensor, bool]:
    """input with an N axis (PyTorch's layers also take one sample without it), and whether one was added."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() == rank + 1:
        return input.unsqueeze(0), True
    if input.dim() != rank + 2:
        raise ValueError(
            f"{name}: input must have {rank + 2} dimensions (batched) or {rank + 1} (unbatched), "
            f"got shape {tuple(input.shape)}"
        )
    return input, False


def _conv_padding(
    padding: ConvPadding,
    rank: int,
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> List[int]:
    """(before, after) per axis, flattened, from an int, ints, pairs, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * rank)
        if padding == "same":
            pads: List[int] = []
            for size, k, s, d in zip(in_sizes, kernel, stride, dilation):
                # TensorFlow's rule, which at stride 1 is PyTorch's: out = ceil(in / stride).
                out = -(-int(size) // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - int(size), 0)
                pads += [total // 2, total - total // 2]
            return pads
        raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (list, tuple)):
        if len(padding) != rank:
            raise ValueError(
                f"padding must be an int, {rank} ints or {rank} (before, after) pairs, got {tuple(padding)!r}"
            )
        pads = []
        for p in padding:
            if isinstance(p, (list, tuple)):
                if len(p) != 2:
                    raise ValueError(f"each padding pair must be (before, after), got {tuple(p)!r}")
                pads += [int(p[0]), int(p[1])]
            else:
                pads += [int(p), int(p)]
        return pads
    return _per_axis(padding, rank, "padding") * 2


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------


def _conv(
    rank: int,
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: IntOrSeq,
    padding: ConvPadding,
    dilation: IntOrSeq,
    groups: int,
) -> Tensor:
    x, unbatched = _batched(input, rank, f"conv{rank}d")
    stride_ = _per_axis(stride, rank, "stride")
    dilation_ = _per_axis(dilation, rank, "dilation")
    pads = _conv_padding(padding, rank, x.shape[2:], weight.shape[2:], stride_, dilation_)
    y = _ops_for(f"conv{rank}d")(x, weight, bias, stride_, pads, dilation_, int(groups))
    return y.squeeze(0) if unbatched else y


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: ConvPadding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution (cross-correlation) of (N, C_in, W) with weight (C_out, C_in/groups, k)."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: ConvPadding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) of (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW)."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: ConvPadding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """3-D convolution (cross-correlation) of (N, C_in, D, H, W) with weight (C_out, C_in/groups, kD, kH, kW)."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(
    rank: int,
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: IntOrSeq,
    padding: IntOrSeq,
    output_padding: IntOrSeq,
    groups: int,
    dilation: IntOrSeq,
) -> Tensor:
    x, unbatched = _batched(input, rank, f"conv_transpose{rank}d")
    y = _ops_for(f"conv_transpose{rank}d")(
        x,
        weight,
        bias,
        _per_axis(stride, rank, "stride"),
        _per_axis(padding, rank, "padding"),
        _per_axis(output_padding, rank, "output_padding"),
        int(groups),
        _per_axis(dilation, rank, "dilation"),
    )
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
) -> Tensor:
    """1-D transposed convolution; weight (C_in, C_out/groups, k)."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
) -> Tensor:
    """2-D transposed convolution; weight (C_in, C_out/groups, kH, kW)."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    dilation: IntOrSeq = 1,
) -> Tensor:
    """3-D transposed convolution; weight (C_in, C_out/groups, kD, kH, kW)."""
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------


def _extremum_pool(
    kind: str,
    rank: int,
    input: Tensor,
    kernel_size: IntOrSeq,
    stride: Optional[IntOrSeq],
    padding: IntOrSeq,
    dilation: IntOrSeq,
    ceil_mode: bool,
    return_indices: bool,
):
    x, unbatched = _batched(input, rank, f"{kind}_pool{rank}d")
    kernel = _per_axis(kernel_size, rank, "kernel_size")
    # PyTorch's rule: no stride (None or an empty tuple) means stride = kernel_size.
    stride_ = kernel if stride is None or stride == () or stride == [] else _per_axis(stride, rank, "stride")
    values, indices = _ops_for(f"{kind}_pool{rank}d")(
        x, kernel, stride_, _per_axis(padding, rank, "padding"), _per_axis(dilation, rank, "dilation"), bool(ceil_mode)
    )
    if unbatched:
        values, indices = values.squeeze(0), indices.squeeze(0)
    return (values, indices) if return_indices else values


def _avg_pool(
    rank: int,
    input: Tensor,
    kernel_size: IntOrSeq,
    stride: Optional[IntOrSeq],
    padding: IntOrSeq,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
) -> Tensor:
    x, unbatched = _batched(input, rank, f"avg_pool{rank}d")
    kernel = _per_axis(kernel_size, rank, "kernel_size")
    stride_ = kernel if stride is None or stride == () or stride == [] else _per_axis(stride, rank, "stride")
    y = _ops_for(f"avg_pool{rank}d")(
        x,
        kernel,
        stride_,
        _per_axis(padding, rank, "padding"),
        bool(ceil_mode),
        bool(count_include_pad),
        divisor_override,
    )
    return y.squeeze(0) if unbatched else y


def _global_pool(kind: str, rank: int, input: Tensor, keepdims: bool) -> Tensor:
    x, unbatched = _batched(input, rank, f"global_{kind}_pool{rank}d")
    y = _ops_for(f"global_{kind}_pool{rank}d")(x)
    if keepdims:
        y = y.reshape(*y.shape, *([1] * rank))
    return y.squeeze(0) if unbatched else y


def _adaptive_pool(kind: str, rank: int, input: Tensor, output_size, return_indices: bool = False):
    x, unbatched = _batched(input, rank, f"adaptive_{kind}_pool{rank}d")
    sizes = list(output_size) if isinstance(output_size, (list, tuple, torch.Size)) else [output_size] * rank
    if len(sizes) != rank:
        raise ValueError(
            f"output_size must be an int or a tuple of {rank} ints (None keeps the input size), got {output_size!r}"
        )
    # None on an axis keeps the input's size there, as in PyTorch.
    sizes = [int(x.shape[2 + i]) if s is None else int(s) for i, s in enumerate(sizes)]
    result = _ops_for(f"adaptive_{kind}_pool{rank}d")(x, sizes)
    if kind == "avg":
        return result.squeeze(0) if unbatched else result
    values, indices = result
    if unbatched:
        values, indices = values.squeeze(0), indices.squeeze(0)
    return (values, indices) if return_indices else values


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-D max pooling (torch.nn.functional.max_pool1d's arguments; indices are flat in each (n, c) plane)."""
    return _extremum_pool("max", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling (torch.nn.functional.max_pool2d's arguments; indices h*W + w, as PyTorch's)."""
    return _extremum_pool("max", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3-D max pooling (torch.nn.functional.max_pool3d's arguments)."""
    return _extremum_pool("max", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def min_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-D min pooling: max pooling's rules with the order reversed."""
    return _extremum_pool("min", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def min_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D min pooling: max pooling's rules with the order reversed."""
    return _extremum_pool("min", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def min_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3-D min pooling: max pooling's rules with the order reversed."""
    return _extremum_pool("min", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling (torch.nn.functional.avg_pool1d's arguments)."""
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """2-D average pooling (torch.nn.functional.avg_pool2d's arguments)."""
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool3d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """3-D average pooling (torch.nn.functional.avg_pool3d's arguments)."""
    return _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def global_max_pool1d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Maximum of each (n, c) plane: (N, C), or (N, C, 1) with keepdims."""
    return _global_pool("max", 1, input, keepdims)


def global_max_pool2d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Maximum of each (n, c) plane: (N, C), or (N, C, 1, 1) with keepdims."""
    return _global_pool("max", 2, input, keepdims)


def global_max_pool3d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Maximum of each (n, c) volume: (N, C), or (N, C, 1, 1, 1) with keepdims."""
    return _global_pool("max", 3, input, keepdims)


def global_avg_pool1d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Mean of each (n, c) plane: (N, C), or (N, C, 1) with keepdims."""
    return _global_pool("avg", 1, input, keepdims)


def global_avg_pool2d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Mean of each (n, c) plane: (N, C), or (N, C, 1, 1) with keepdims."""
    return _global_pool("avg", 2, input, keepdims)


def global_avg_pool3d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Mean of each (n, c) volume: (N, C), or (N, C, 1, 1, 1) with keepdims."""
    return _global_pool("avg", 3, input, keepdims)


def global_min_pool1d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Minimum of each (n, c) plane: (N, C), or (N, C, 1) with keepdims."""
    return _global_pool("min", 1, input, keepdims)


def global_min_pool2d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Minimum of each (n, c) plane: (N, C), or (N, C, 1, 1) with keepdims."""
    return _global_pool("min", 2, input, keepdims)


def global_min_pool3d(input: Tensor, keepdims: bool = False) -> Tensor:
    """Minimum of each (n, c) volume: (N, C), or (N, C, 1, 1, 1) with keepdims."""
    return _global_pool("min", 3, input, keepdims)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Adaptive 1-D average pooling (PyTorch semantics)."""
    return _adaptive_pool("avg", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Adaptive 2-D average pooling (PyTorch semantics; None on an axis keeps its size)."""
    return _adaptive_pool("avg", 2, input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """Adaptive 3-D average pooling (PyTorch semantics; None on an axis keeps its size)."""
    return _adaptive_pool("avg", 3, input, output_size)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """Adaptive 1-D max pooling (PyTorch semantics)."""
    return _adaptive_pool("max", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """Adaptive 2-D max pooling (PyTorch semantics; None on an axis keeps its size)."""
    return _adaptive_pool("max", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """Adaptive 3-D max pooling (PyTorch semantics; None on an axis keeps its size)."""
    return _adaptive_pool("max", 3, input, output_size, return_indices)
