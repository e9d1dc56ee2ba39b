"""convkern's kernels as PyTorch operators: ``torch.ops.convkern.<name>``, one per op and rank.

Each operator is registered with ``torch.library.custom_op`` and has three parts:

- the kernel call: tensors in, tensors out, without a copy. A CPU tensor's memory is handed to
  convkern as a NumPy view (``Tensor.numpy()`` shares it); a CUDA tensor is handed over through
  ``__cuda_array_interface__``, and the kernels run on PyTorch's current stream. Results are
  allocated with ``torch.empty`` and passed as ``out=``, so the kernels write straight into them;
  gradients come back from convkern as arrays and are wrapped (``torch.from_numpy`` /
  ``torch.from_dlpack``), again without a copy;
- a fake implementation that sizes the result with the same rules (``convkern.output_shape``,
  i.e. ``csrc/shape.h``), so that ``torch.compile`` and ``torch.export`` can trace a model
  without running the kernels;
- an autograd formula that calls the matching ``*_backward`` operator, asking only for the
  gradients autograd needs (a first layer's input gets none).

Layouts. An activation is logically (N, C, *spatial), as in PyTorch. When its memory is laid out
channels last (``torch.channels_last``, or the same permutation in 1-D and 3-D), the kernels run
in that layout (data_format "NHWC" etc.) and the result keeps it, as PyTorch's own layers do
(a convolution also runs channels-last when its weight is, PyTorch's rule); any other
non-contiguous input is made contiguous first. Weights are read in PyTorch's default layout
(C_out, C_in/groups, *kernel), made contiguous when they are not.

Symbolic shapes (torch.compile(dynamic=True), torch.export with Dim): the batch size stays
symbolic; the other sizes are specialised (a guard on each), because the shape rules are C++
functions of integers.

Double backward (differentiating a gradient) is not supported: it raises a RuntimeError.
"""

import contextlib
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

import convkern

CHANNELS_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


# --------------------------------------------------------------------------------------------
# Tensors <-> the arrays convkern's kernels read and write
# --------------------------------------------------------------------------------------------


def _to_last(ndim: int) -> Tuple[int, ...]:
    """Axis order (N, *spatial, C) of a logical (N, C, *spatial) tensor."""
    return (0, *range(2, ndim), 1)


def _to_first(ndim: int) -> Tuple[int, ...]:
    """Inverse of _to_last."""
    return (0, ndim - 1, *range(1, ndim - 1))


def is_channels_last(t: Tensor) -> bool:
    """Whether t's memory holds (N, *spatial, C) contiguously while t is not plain contiguous:
    then the kernels run channels-last and no transposition is paid."""
    if t.is_contiguous():
        return False
    return t.permute(_to_last(t.dim())).is_contiguous()


def _conv_is_channels_last(input: Tensor, weight: Tensor) -> bool:
    """A convolution runs channels-last when its input or its weight is laid out so (PyTorch's rule:
    a model converted with .to(memory_format=torch.channels_last) stays channels-last even where
    an op hands it a contiguous activation)."""
    return is_channels_last(input) or is_channels_last(weight)


def _kernel_view(t: Tensor, channels_last: bool) -> Tensor:
    """The C-contiguous view of t in the kernels' layout (a copy only when t's memory is neither)."""
    return (t.permute(_to_last(t.dim())) if channels_last else t).contiguous()


def _new_activation(
    shape: Sequence[int], like: Tensor, channels_last: bool, dtype: Optional[torch.dtype] = None
) -> Tuple[Tensor, Tensor]:
    """A new (N, C, *spatial) tensor laid out as the kernels write it, and the kernels' view of it."""
    dtype = like.dtype if dtype is None else dtype
    if channels_last:
        stored = like.new_empty([shape[0], *shape[2:], shape[1]], dtype=dtype)
        return stored.permute(_to_first(len(shape))), stored
    result = like.new_empty(list(shape), dtype=dtype)
    return result, result


def _array(t: Optional[Tensor]):
    """The array convkern reads or writes for t, sharing t's memory."""
    if t is None:
        return None
    t = t.detach()
    if t.device.type == "cpu":
        return t.numpy()
    if t.device.type == "cuda":
        return t  # convkern's CUDA backend reads __cuda_array_interface__
    raise TypeError(f"convkern runs on CPU and CUDA tensors, got a tensor on {t.device}")


class _COrderWeights:
    """C-order copies of weights stored in another layout, kept while the weight is unchanged.

    A model converted with .to(memory_format=torch.channels_last) stores its convolution weights
    channels-last too, while the kernels read (C_out, C_in/groups, *kernel) in C order: without
    this, every forward and every backward would transpose every weight again (measured: 12 % of
    a channels-last ResNet-18 forward). A copy is reused only for the same tensor object with the
    same version counter (bumped by every in-place update, e.g. an optimizer step), storage and
    strides; it lives as long as the weight does (weak reference)."""

    def __init__(self) -> None:
        # id(weight) -> (weak reference to it, its state, the copy). Keyed by id: tensors compare
        # element-wise, so they cannot be dictionary keys themselves.
        self._copies: Dict[int, tuple] = {}

    def __call__(self, weight: Tensor) -> Tensor:
        if weight.is_contiguous() or weight.is_inference():  # inference tensors have no version counter
            return weight.contiguous()
        key = id(weight)
        state = (weight._version, weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype)
        entry = self._copies.get(key)
        if entry is not None and entry[0]() is weight and entry[1] == state:
            return entry[2]
        copy = weight.detach().contiguous()
        forget = self._copies.pop
        self._copies[key] = (weakref.ref(weight, lambda _, key=key: forget(key, None)), state, copy)
        return copy


_c_order_weight = _COrderWeights()


def _contiguous_array(t: Optional[Tensor]):
    """_array of a weight or bias in C order, the order the kernels read them in."""
    return None if t is None else _array(_c_order_weight(t))


def _tensor(a) -> Tensor:
    """A tensor sharing the memory of an array convkern returned (NumPy or CuPy)."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    # A CuPy array the kernels wrote on PyTorch's current stream: handed over with CuPy's current
    # stream set to that same stream, DLPack's exchange needs no synchronisation.
    with _on_current_stream(torch.device("cuda", a.device.id)):
        return torch.from_dlpack(a)


def _activation_tensor(a, channels_last: bool) -> Tensor:
    t = _tensor(a)
    return t.permute(_to_first(t.dim())) if channels_last else t


@contextlib.contextmanager
def _on_current_stream(device: torch.device) -> Iterator[None]:
    """Runs convkern's CUDA kernels on PyTorch's current stream of `device` (CuPy's current stream is
    what they launch on), so they are ordered with the surrounding PyTorch work without a sync."""
    if device.type != "cuda":
        yield
        return
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index):
        with _cupy_stream(cupy, torch.cuda.current_stream(index).cuda_stream, index):
            yield


class _StreamHandle:
    """A raw CUDA stream handle offered through the CUDA stream protocol (``__cuda_stream__``)."""

    __slots__ = ("handle",)

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> Tuple[int, int]:
        return (0, self.handle)


def _cupy_stream(cupy, handle: int, device_index: int):
    """A CuPy stream object for a stream CuPy does not own. CuPy 14 deprecates ExternalStream in
    favour of Stream.from_external (the CUDA stream protocol); older CuPy has only the former."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:
        return from_external(_StreamHandle(handle))
    return cupy.cuda.ExternalStream(handle, device_index)


def _ints(values: Sequence) -> List[int]:
    # Shape rules run in C++ on ints: a symbolic size is specialised here (a guard), see above.
    return [int(v) for v in values]


def _one_sample(input: Tensor) -> List[int]:
    """input's shape with a batch of 1: what the shape rules need (they do not depend on N)."""
    return [1] + _ints(input.shape[1:])


def _with_batch_of(input: Tensor, shape: Sequence[int]) -> List:
    """A result shape computed for one sample, with input's batch size: a symbolic batch size
    (a model traced with a dynamic batch) stays symbolic."""
    return [input.shape[0]] + list(shape[1:])


def _data_format(rank: int, channels_last: bool) -> str:
    return (CHANNELS_LAST if channels_last else CHANNELS_FIRST)[rank]


def _padding_pairs(padding: Sequence[int], rank: int) -> List[Tuple[int, int]]:
    """One int per axis (symmetric) or 2*rank ints (before, after per axis) -> (before, after) pairs."""
    p = _ints(padding)
    if len(p) == rank:
        return [(v, v) for v in p]
    if len(p) == 2 * rank:
        return [(p[2 * i], p[2 * i + 1]) for i in range(rank)]
    raise ValueError(f"padding must hold {rank} ints or {2 * rank} (before, after per axis), got {p}")


def _check_rank(t: Tensor, rank: int, name: str, op: str) -> None:
    if t.dim() != rank + 2:
        raise ValueError(
            f"convkern::{op}: {name} must have {rank + 2} dimensions ({CHANNELS_FIRST[rank]}), "
            f"got shape {tuple(t.shape)}"
        )


def _unused_grad(like: Tensor) -> Tensor:
    """What a backward operator returns for a gradient its output_mask did not ask for (a custom
    operator cannot return None): an empty tensor."""
    return like.new_empty(0)


def _refuse_double_backward(name: str) -> Callable:
    def backward(ctx, *grads):
        raise RuntimeError(
            f"convkern::{name} has no derivative: differentiating convkern's gradients (double "
            "backward, e.g. a gradient penalty through torch.autograd.grad(create_graph=True)) is not "
            "supported; use torch.nn's layers for that part of the model"
        )

    return backward


def _no_context(ctx, inputs, output) -> None:
    pass


def _kernels(name: str) -> Tuple[Callable, Callable]:
    """convkern's forward and backward function for an op, looked up on each call (so that what
    ``convkern.<name>`` is at the time of the call is what runs)."""

    def forward(**kwargs):
        return getattr(convkern, name)(**kwargs)

    def backward(**kwargs):
        return getattr(convkern, f"{name}_backward")(**kwargs)

    return forward, backward


def _op(name: str, fn: Callable):
    return torch.library.custom_op(f"convkern::{name}", fn, mutates_args=())


# --------------------------------------------------------------------------------------------
# Convolution: conv{1,2,3}d and conv{1,2,3}d_backward
# --------------------------------------------------------------------------------------------


def _define_conv(rank: int) -> None:
    name = f"conv{rank}d"
    forward_kernel, backward_kernel = _kernels(name)

    def output_shape(input: Tensor, weight: Tensor, stride, padding, dilation, groups) -> List[int]:
        _check_rank(input, rank, "input", name)
        return _with_batch_of(
            input,
            convkern.output_shape(
                name,
                _one_sample(input),
                _ints(weight.shape),
                stride=_ints(stride),
                padding=_padding_pairs(padding, rank),
                dilation=_ints(dilation),
                groups=int(groups),
            ),
        )

    def conv(
        input: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        stride: List[int],
        padding: List[int],
        dilation: List[int],
        groups: int,
    ) -> Tensor:
        last = _conv_is_channels_last(input, weight)
        y, y_kernel = _new_activation(output_shape(input, weight, stride, padding, dilation, groups), input, last)
        with _on_current_stream(input.device):
            forward_kernel(
                input=_array(_kernel_view(input, last)),
                weight=_contiguous_array(weight),
                bias=_contiguous_array(bias),
                stride=list(stride),
                padding=_padding_pairs(padding, rank),
                dilation=list(dilation),
                groups=groups,
                data_format=_data_format(rank, last),
                out=_array(y_kernel),
            )
        return y

    def conv_fake(input, weight, bias, stride, padding, dilation, groups):
        return _new_activation(
            output_shape(input, weight, stride, padding, dilation, groups), input, _conv_is_channels_last(input, weight)
        )[0]

    def conv_backward(
        grad_output: Tensor,
        input: Tensor,
        weight: Tensor,
        stride: List[int],
        padding: List[int],
        dilation: List[int],
        groups: int,
        output_mask: List[bool],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        last = _conv_is_channels_last(input, weight)
        mask = tuple(bool(m) for m in output_mask)
        with _on_current_stream(input.device):
            gi, gw, gb = backward_kernel(
                grad_output=_array(_kernel_view(grad_output, last)),
                input=_array(_kernel_view(input, last)),
                weight=_contiguous_array(weight),
                stride=list(stride),
                padding=_padding_pairs(padding, rank),
                dilation=list(dilation),
                groups=groups,
                data_format=_data_format(rank, last),
                output_mask=mask,
            )
        return (
            _activation_tensor(gi, last) if mask[0] else _unused_grad(input),
            _tensor(gw) if mask[1] else _unused_grad(weight),
            _tensor(gb) if mask[2] else _unused_grad(weight),
        )

    def conv_backward_fake(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
        return (
            _new_activation(input.shape, input, _conv_is_channels_last(input, weight))[0]
            if output_mask[0]
            else _unused_grad(input),
            weight.new_empty(weight.shape) if output_mask[1] else _unused_grad(weight),
            weight.new_empty(weight.shape[0]) if output_mask[2] else _unused_grad(weight),
        )

    forward_op = _op(name, conv)
    backward_op = _op(f"{name}_backward", conv_backward)
    forward_op.register_fake(conv_fake)
    backward_op.register_fake(conv_backward_fake)

    def setup_context(ctx, inputs, output) -> None:
        input, weight, bias, *options = inputs
        ctx.save_for_backward(input, weight)
        ctx.options = options
        ctx.has_bias = bias is not None

    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = [bool(need[0]), bool(need[1]), bool(ctx.has_bias and need[2])]
        gi, gw, gb = backward_op(grad_output, input, weight, *ctx.options, mask)
        return (gi if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, None, None, None, None)

    forward_op.register_autograd(backward, setup_context=setup_context)
    backward_op.register_autograd(_refuse_double_backward(f"{name}_backward"), setup_context=_no_context)


# --------------------------------------------------------------------------------------------
# Transposed convolution: conv_transpose{1,2,3}d and their backward
# --------------------------------------------------------------------------------------------


def _define_conv_transpose(rank: int) -> None:
    name = f"conv_transpose{rank}d"
    forward_kernel, backward_kernel = _kernels(name)

    def output_shape(input, weight, stride, padding, output_padding, groups, dilation) -> List[int]:
        _check_rank(input, rank, "input", name)
        return _with_batch_of(
            input,
            convkern.output_shape(
                name,
                _one_sample(input),
                _ints(weight.shape),
                stride=_ints(stride),
                padding=_ints(padding),
                output_padding=_ints(output_padding),
                groups=int(groups),
                dilation=_ints(dilation),
            ),
        )

    def conv_transpose(
        input: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        stride: List[int],
        padding: List[int],
        output_padding: List[int],
        groups: int,
        dilation: List[int],
    ) -> Tensor:
        last = _conv_is_channels_last(input, weight)
        shape = output_shape(input, weight, stride, padding, output_padding, groups, dilation)
        y, y_kernel = _new_activation(shape, input, last)
        with _on_current_stream(input.device):
            forward_kernel(
                input=_array(_kernel_view(input, last)),
                weight=_contiguous_array(weight),
                bias=_contiguous_array(bias),
                stride=list(stride),
                padding=list(padding),
                output_padding=list(output_padding),
                groups=groups,
                dilation=list(dilation),
                data_format=_data_format(rank, last),
                out=_array(y_kernel),
            )
        return y

    def conv_transpose_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
        shape = output_shape(input, weight, stride, padding, output_padding, groups, dilation)
        return _new_activation(shape, input, _conv_is_channels_last(input, weight))[0]

    def conv_transpose_backward(
        grad_output: Tensor,
        input: Tensor,
        weight: Tensor,
        stride: List[int],
        padding: List[int],
        output_padding: List[int],
        groups: int,
        dilation: List[int],
        output_mask: List[bool],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        last = _conv_is_channels_last(input, weight)
        mask = tuple(bool(m) for m in output_mask)
        with _on_current_stream(input.device):
            gi, gw, gb = backward_kernel(
                grad_output=_array(_kernel_view(grad_output, last)),
                input=_array(_kernel_view(input, last)),
                weight=_contiguous_array(weight),
                stride=list(stride),
                padding=list(padding),
                output_padding=list(output_padding),
                groups=groups,
                dilation=list(dilation),
                data_format=_data_format(rank, last),
                output_mask=mask,
            )
        return (
            _activation_tensor(gi, last) if mask[0] else _unused_grad(input),
            _tensor(gw) if mask[1] else _unused_grad(weight),
            _tensor(gb) if mask[2] else _unused_grad(weight),
        )

    def conv_transpose_backward_fake(
        grad_output, input, weight, stride, padding, output_padding, groups, dilation, output_mask
    ):
        c_out = weight.shape[1] * groups
        return (
            _new_activation(input.shape, input, _conv_is_channels_last(input, weight))[0]
            if output_mask[0]
            else _unused_grad(input),
            weight.new_empty(weight.shape) if output_mask[1] else _unused_grad(weight),
            weight.new_empty(c_out) if output_mask[2] else _unused_grad(weight),
        )

    forward_op = _op(name, conv_transpose)
    backward_op = _op(f"{name}_backward", conv_transpose_backward)
    forward_op.register_fake(conv_transpose_fake)
    backward_op.register_fake(conv_transpose_backward_fake)

    def setup_context(ctx, inputs, output) -> None:
        input, weight, bias, *options = inputs
        ctx.save_for_backward(input, weight)
        ctx.options = options
        ctx.has_bias = bias is not None

    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = [bool(need[0]), bool(need[1]), bool(ctx.has_bias and need[2])]
        gi, gw, gb = backward_op(grad_output, input, weight, *ctx.options, mask)
        return (gi if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None) + (None,) * 5

    forward_op.register_autograd(backward, setup_context=setup_context)
    backward_op.register_autograd(_refuse_double_backward(f"{name}_backward"), setup_context=_no_context)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------


def _define_extremum_pool(kind: str, rank: int) -> None:
    """max_pool{rank}d / min_pool{rank}d: (values, int64 indices into each (n, c) plane)."""
    name = f"{kind}_pool{rank}d"
    forward_kernel, backward_kernel = _kernels(name)

    def output_shape(input, kernel_size, stride, padding, dilation, ceil_mode) -> List[int]:
        _check_rank(input, rank, "input", name)
        return _with_batch_of(
            input,
            convkern.output_shape(
                name,
                _one_sample(input),
                _ints(kernel_size),
                stride=_ints(stride),
                padding=_ints(padding),
                dilation=_ints(dilation),
                ceil_mode=bool(ceil_mode),
            ),
        )

    def pool(
        input: Tensor,
        kernel_size: List[int],
        stride: List[int],
        padding: List[int],
        dilation: List[int],
        ceil_mode: bool,
    ) -> Tuple[Tensor, Tensor]:
        last = is_channels_last(input)
        y, y_kernel = _new_activation(
            output_shape(input, kernel_size, stride, padding, dilation, ceil_mode), input, last
        )
        with _on_current_stream(input.device):
            _, indices = forward_kernel(
                input=_array(_kernel_view(input, last)),
                kernel_size=list(kernel_size),
                stride=list(stride),
                padding=list(padding),
                dilation=list(dilation),
                ceil_mode=ceil_mode,
                return_indices=True,
                data_format=_data_format(rank, last),
                out=_array(y_kernel),
            )
        return y, _activation_tensor(indices, last)

    def pool_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
        shape = output_shape(input, kernel_size, stride, padding, dilation, ceil_mode)
        last = is_channels_last(input)
        return _new_activation(shape, input, last)[0], _new_activation(shape, input, last, torch.int64)[0]

    def pool_backward(
        grad_output: Tensor,
        input: Tensor,
        indices: Tensor,
        kernel_size: List[int],
        stride: List[int],
        padding: List[int],
        dilation: List[int],
        ceil_mode: bool,
    ) -> Tensor:
        last = is_channels_last(input)
        with _on_current_stream(input.device):
            gi = backward_kernel(
                grad_output=_array(_kernel_view(grad_output, last)),
                input=_array(_kernel_view(input, last)),
                kernel_size=list(kernel_size),
                stride=list(stride),
                padding=list(padding),
                dilation=list(dilation),
                ceil_mode=ceil_mode,
                data_format=_data_format(rank, last),
                indices=_array(_kernel_view(indices, last)),
            )
        return _activation_tensor(gi, last)

    def pool_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
        return _new_activation(input.shape, input, is_channels_last(input))[0]

    _register_pool(name, pool, pool_fake, pool_backward, pool_backward_fake, with_indices=True)


def _define_avg_pool(rank: int) -> None:
    name = f"avg_pool{rank}d"
    forward_kernel, backward_kernel = _kernels(name)

    def output_shape(input, kernel_size, stride, padding, ceil_mode) -> List[int]:
        _check_rank(input, rank, "input", name)
        return _with_batch_of(
            input,
            convkern.output_shape(
                name,
                _one_sample(input),
                _ints(kernel_size),
                stride=_ints(stride),
                padding=_ints(padding),
                ceil_mode=bool(ceil_mode),
            ),
        )

    def pool(
        input: Tensor,
        kernel_size: List[int],
        stride: List[int],
        padding: List[int],
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: Optional[int],
    ) -> Tensor:
        last = is_channels_last(input)
        y, y_kernel = _new_activation(output_shape(input, kernel_size, stride, padding, ceil_mode), input, last)
        with _on_current_stream(input.device):
            forward_kernel(
                input=_array(_kernel_view(input, last)),
                kernel_size=list(kernel_size),
                stride=list(stride),
                padding=list(padding),
                ceil_mode=ceil_mode,
                count_include_pad=count_include_pad,
                divisor_override=divisor_override,
                data_format=_data_format(rank, last),
                out=_array(y_kernel),
            )
        return y

    def pool_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        shape = output_shape(input, kernel_size, stride, padding, ceil_mode)
        return _new_activation(shape, input, is_channels_last(input))[0]

    def pool_backward(
        grad_output: Tensor,
        input: Tensor,
        kernel_size: List[int],
        stride: List[int],
        padding: List[int],
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: Optional[int],
    ) -> Tensor:
        last = is_channels_last(input)
        with _on_current_stream(input.device):
            gi = backward_kernel(
                grad_output=_array(_kernel_view(grad_output, last)),
                input=_array(_kernel_view(input, last)),
                kernel_size=list(kernel_size),
                stride=list(stride),
                padding=list(padding),
                ceil_mode=ceil_mode,
                count_include_pad=count_include_pad,
                divisor_override=divisor_override,
                data_format=_data_format(rank, last),
            )
        return _activation_tensor(gi, last)

    def pool_backward_fake(
        grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        return _new_activation(input.shape, input, is_channels_last(input))[0]

    _register_pool(name, pool, pool_fake, pool_backward, pool_backward_fake, with_indices=False)


def _define_global_pool(kind: str, rank: int) -> None:
    """global_{max,avg,min}_pool{rank}d: (N, C, *spatial) -> (N, C), one number per plane."""
    name = f"global_{kind}_pool{rank}d"
    forward_kernel, backward_kernel = _kernels(name)

    def pool(input: Tensor) -> Tensor:
        _check_rank(input, rank, "input", name)
        last = is_channels_last(input)
        y = input.new_empty(input.shape[:2])
        with _on_current_stream(input.device):
            forward_kernel(
                input=_array(_kernel_view(input, last)),
                keepdims=False,
                data_format=_data_format(rank, last),
                out=_array(y),
            )
        return y

    def pool_fake(input):
        _check_rank(input, rank, "input", name)
        return input.new_empty(input.shape[:2])

    def pool_backward(grad_output: Tensor, input: Tensor) -> Tensor:
        last = is_channels_last(input)
        with _on_current_stream(input.device):
            gi = backward_kernel(
                grad_output=_array(grad_output.contiguous()),
                input=_array(_kernel_view(input, last)),
                keepdims=False,
                data_format=_data_format(rank, last),
            )
        return _activation_tensor(gi, last)

    def pool_backward_fake(grad_output, input):
        return _new_activation(input.shape, input, is_channels_last(input))[0]

    _register_pool(name, pool, pool_fake, pool_backward, pool_backward_fake, with_indices=False)


def _define_adaptive_pool(kind: str, rank: int) -> None:
    """adaptive_avg_pool{rank}d -> values; adaptive_max_pool{rank}d -> (values, indices)."""
    name = f"adaptive_{kind}_pool{rank}d"
    forward_kernel, backward_kernel = _kernels(name)
    with_indices = kind == "max"

    def output_shape(input, output_size) -> List[int]:
        _check_rank(input, rank, "input", name)
        return _with_batch_of(input, convkern.output_shape(name, _one_sample(input), _ints(output_size)))

    def run_forward(input, output_size):
        last = is_channels_last(input)
        y, y_kernel = _new_activation(output_shape(input, output_size), input, last)
        extra = {"return_indices": True} if with_indices else {}
        with _on_current_stream(input.device):
            result = forward_kernel(
                input=_array(_kernel_view(input, last)),
                output_size=list(output_size),
                data_format=_data_format(rank, last),
                out=_array(y_kernel),
                **extra,
            )
        return (y, _activation_tensor(result[1], last)) if with_indices else y

    def run_forward_fake(input, output_size):
        last = is_channels_last(input)
        shape = output_shape(input, output_size)
        y = _new_activation(shape, input, last)[0]
        return (y, _new_activation(shape, input, last, torch.int64)[0]) if with_indices else y

    def run_backward(grad_output, input, indices):
        last = is_channels_last(input)
        extra = {"indices": _array(_kernel_view(indices, last))} if with_indices else {}
        with _on_current_stream(input.device):
            gi = backward_kernel(
                grad_output=_array(_kernel_view(grad_output, last)),
                input=_array(_kernel_view(input, last)),
                output_size=_ints(grad_output.shape[2:]),
                data_format=_data_format(rank, last),
                **extra,
            )
        return _activation_tensor(gi, last)

    def backward_fake(grad_output, input, *rest):
        return _new_activation(input.shape, input, is_channels_last(input))[0]

    # Two signatures (custom_op reads the annotations), one body.
    if with_indices:

        def pool(input: Tensor, output_size: List[int]) -> Tuple[Tensor, Tensor]:
            return run_forward(input, output_size)

        def pool_backward(grad_output: Tensor, input: Tensor, indices: Tensor) -> Tensor:
            return run_backward(grad_output, input, indices)
    else:

        def pool(input: Tensor, output_size: List[int]) -> Tensor:  # type: ignore[misc]
            return run_forward(input, output_size)

        def pool_backward(grad_output: Tensor, input: Tensor) -> Tensor:  # type: ignore[misc]
            return run_backward(grad_output, input, None)

    _register_pool(name, pool, run_forward_fake, pool_backward, backward_fake, with_indices=with_indices)


def _register_pool(
    name: str,
    pool: Callable,
    pool_fake: Callable,
    pool_backward: Callable,
    pool_backward_fake: Callable,
    with_indices: bool,
) -> None:
    """Registers a pooling operator and its backward. The backward takes (grad_output, input,
    [indices,] *the forward's other arguments): pooling's gradient needs the input's shape and
    layout (and, for max/min, where each maximum came from)."""
    forward_op = _op(name, pool)
    backward_op = _op(f"{name}_backward", pool_backward)
    forward_op.register_fake(pool_fake)
    backward_op.register_fake(pool_backward_fake)

    def setup_context(ctx, inputs, output) -> None:
        input, *options = inputs
        if with_indices:
            ctx.mark_non_differentiable(output[1])
            ctx.save_for_backward(input, output[1])
        else:
            ctx.save_for_backward(input)
        ctx.options = options

    def backward(ctx, grad_output, *unused_index_grad):
        saved = ctx.saved_tensors
        if name.startswith("adaptive_"):  # its backward reads the output size from grad_output
            gi = backward_op(grad_output, *saved)
        else:
            gi = backward_op(grad_output, *saved, *ctx.options)
        return (gi,) + (None,) * len(ctx.options)

    forward_op.register_autograd(backward, setup_context=setup_context)
    backward_op.register_autograd(_refuse_double_backward(f"{name}_backward"), setup_context=_no_context)


# --------------------------------------------------------------------------------------------
# The registrations: every op of convkern, in 1-D, 2-D and 3-D
# --------------------------------------------------------------------------------------------

OPERATORS: List[str] = []  # the forward operators' names, e.g. "conv2d"; each has a "<name>_backward"

for _rank in (1, 2, 3):
    _define_conv(_rank)
    _define_conv_transpose(_rank)
    for _kind in ("max", "min"):
        _define_extremum_pool(_kind, _rank)
    _define_avg_pool(_rank)
    for _kind in ("max", "avg", "min"):
        _define_global_pool(_kind, _rank)
    for _kind in ("avg", "max"):
        _define_adaptive_pool(_kind, _rank)
    OPERATORS += [
        f"conv{_rank}d",
        f"conv_transpose{_rank}d",
        f"max_pool{_rank}d",
        f"min_pool{_rank}d",
        f"avg_pool{_rank}d",
        f"global_max_pool{_rank}d",
        f"global_avg_pool{_rank}d",
        f"global_min_pool{_rank}d",
        f"adaptive_avg_pool{_rank}d",
        f"adaptive_max_pool{_rank}d",
    ]
del _rank, _kind
