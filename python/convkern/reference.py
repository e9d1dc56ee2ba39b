"""Plain-NumPy reference implementation of every convkern op: the oracle.

Every kernel in convkern (C++ with OpenMP and SIMD on the CPU, CUDA on the GPU) is
tested against this module, so it is written to be read and checked by eye, never to
be fast:

* Everything is computed in float64 (inputs are cast); indices are int64.
* One rank-generic implementation per op serves 1-D, 2-D and 3-D; the public
  ``conv2d``, ``max_pool3d``, ... at the bottom are one-line wrappers around it.
* Convolution is a pooling op with padding (tinygrad's remark): pad the input, view
  every window with ``sliding_window_view`` (``_windows``), contract the windows with
  the weight in one ``einsum``.
* Every backward pass is the adjoint of its forward, built from the adjoints of the
  same primitives: ``_col2im`` scatter-adds windows back where ``_windows`` read them,
  ``_pad_adjoint`` folds the gradient of padded cells back onto the cells they copy.
* Channels-last layouts ("NWC", "NHWC", "NDHWC") are transposed to channels-first and
  back; an unbatched input gets a batch axis of 1 for the computation.

The semantics (docs/semantics.md) are PyTorch's, plus TensorFlow's "same" padding at any
stride and dilation. Comments mark each place where one of those rules is implemented.
The module imports nothing but NumPy and the standard library, so it can be loaded on
its own by file path.
"""

import functools
import itertools
import math
import operator
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "same_padding",
    "conv_output_size",
    "pool_output_size",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv1d_backward",
    "conv2d_backward",
    "conv3d_backward",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_transpose1d_backward",
    "conv_transpose2d_backward",
    "conv_transpose3d_backward",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_backward",
    "max_pool2d_backward",
    "max_pool3d_backward",
    "min_pool1d",
    "min_pool2d",
    "min_pool3d",
    "min_pool1d_backward",
    "min_pool2d_backward",
    "min_pool3d_backward",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "avg_pool1d_backward",
    "avg_pool2d_backward",
    "avg_pool3d_backward",
    "global_max_pool1d",
    "global_max_pool2d",
    "global_max_pool3d",
    "global_max_pool1d_backward",
    "global_max_pool2d_backward",
    "global_max_pool3d_backward",
    "global_min_pool1d",
    "global_min_pool2d",
    "global_min_pool3d",
    "global_min_pool1d_backward",
    "global_min_pool2d_backward",
    "global_min_pool3d_backward",
    "global_avg_pool1d",
    "global_avg_pool2d",
    "global_avg_pool3d",
    "global_avg_pool1d_backward",
    "global_avg_pool2d_backward",
    "global_avg_pool3d_backward",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool1d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_max_pool1d_backward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d_backward",
]

_LAYOUTS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
# PyTorch's padding_mode -> np.pad's mode.
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# ============================================================================= sizes


def same_padding(in_size, kernel, stride, dilation):
    """(before, after) of TensorFlow's "same": out = ceil(in / stride), any stride and dilation."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    return total // 2, total - total // 2


def conv_output_size(in_size, kernel, stride, padding_before, padding_after, dilation):
    """floor((in + before + after - dilation*(kernel-1) - 1) / stride) + 1 (< 1 means no output)."""
    return (in_size + padding_before + padding_after - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(in_size, kernel, stride, padding, dilation, ceil_mode):
    """Pooling output size with symmetric `padding`, PyTorch's rule (docs/semantics.md)."""
    effective_kernel = dilation * (kernel - 1) + 1
    rounding = stride - 1 if ceil_mode else 0
    out = (in_size + 2 * padding - effective_kernel + rounding) // stride + 1
    # ceil_mode may add a window that starts in the right padding; it is dropped:
    # the last window must start inside the input or the left padding.
    if ceil_mode and (out - 1) * stride >= in_size + padding:
        out -= 1
    return out


# ================================================================ argument handling


def _is_int(value):
    return isinstance(value, (int, np.integer))


def _ints(value, rank, name, minimum=None):
    """An int, or one int per spatial axis, as a tuple of `rank` ints."""
    if _is_int(value):
        values = (int(value),) * rank
    else:
        try:
            values = tuple(operator.index(v) for v in value)
        except TypeError:
            raise TypeError(f"{name} must be an int or {rank} ints, got {value!r}") from None
        if len(values) != rank:
            raise ValueError(f"{name} must be an int or {rank} ints, got {value!r}")
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def _channels_last(data_format, rank):
    first, last = _LAYOUTS[rank]
    if data_format is None or data_format == first:
        return False
    if data_format == last:
        return True
    raise ValueError(f"data_format must be {first!r} or {last!r}, got {data_format!r}")


def _to_ncx(array, rank, channels_last, name, dtype=np.float64):
    """Batched, channels-first copy of an activation, and whether it had a batch axis."""
    array = np.asarray(array, dtype=dtype)
    if array.ndim not in (rank + 1, rank + 2):
        raise ValueError(
            f"{name} must have {rank + 1} (unbatched) or {rank + 2} (batched) dimensions, got shape {array.shape}"
        )
    batched = array.ndim == rank + 2
    if not batched:
        array = array[np.newaxis]
    if channels_last:
        array = np.moveaxis(array, -1, 1)
    if 0 in array.shape[2:]:
        raise ValueError(f"{name} must have non-empty spatial axes, got shape {array.shape}")
    return array, batched


def _user_shape(shape, batched, channels_last):
    """The shape that a channels-first batched array of `shape` has in the caller's layout."""
    shape = tuple(shape)
    if channels_last:
        shape = (shape[0],) + shape[2:] + (shape[1],)
    return shape if batched else shape[1:]


def _from_ncx(array, batched, channels_last):
    if channels_last:
        array = np.moveaxis(array, 1, -1)
    if not batched:
        array = array[0]
    return np.ascontiguousarray(array)


def _like_output(array, expected_shape, batched, channels_last, name, dtype=np.float64):
    """An array shaped like the forward's output (grad_output, indices), once its shape is
    checked, as a batched channels-first array."""
    array = np.asarray(array, dtype=dtype)
    expected = _user_shape(expected_shape, batched, channels_last)
    if array.shape != expected:
        raise ValueError(f"{name} has shape {array.shape}, but the forward output has shape {expected}")
    if not batched:
        array = array[np.newaxis]
    return np.moveaxis(array, -1, 1) if channels_last else array


def _spatial_axes(rank):
    return tuple(range(2, rank + 2))


# ======================================================================= primitives


def _pad(x, pads, mode="zeros", value=0.0):
    """Pad the spatial axes of an (N, C, ...) array by one (before, after) pair per axis."""
    width = [(0, 0), (0, 0)] + [tuple(pair) for pair in pads]
    if mode == "zeros":
        return np.pad(x, width, constant_values=value)
    return np.pad(x, width, mode=_PAD_MODES[mode])


def _pad_adjoint(grad, in_sizes, pads, mode):
    """Adjoint of `_pad`: the gradient of every padded cell goes to the input cell it copies.

    Padding acts on each axis separately, so its adjoint does too. The input cell that a
    padded position copies is found by padding the positions themselves with the same
    mode (-1 marks a zero, which copies nothing)."""
    for axis, (size, pair) in enumerate(zip(in_sizes, pads), start=2):
        positions = np.arange(size)
        if mode == "zeros":
            source = np.pad(positions, pair, constant_values=-1)
        else:
            source = np.pad(positions, pair, mode=_PAD_MODES[mode])
        copies = source >= 0
        folded = np.zeros(grad.shape[:axis] + (size,) + grad.shape[axis + 1 :])
        np.add.at(folded, (slice(None),) * axis + (source[copies],), np.compress(copies, grad, axis=axis))
        grad = folded
    return grad


def _windows(xp, kernel, stride, dilation):
    """Every window of an already padded (N, C, *L) array: a read-only (N, C, *out, *kernel) view.

    Window o, cell k reads xp[..., o*stride + k*dilation]."""
    rank = len(kernel)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    view = sliding_window_view(xp, span, axis=tuple(range(-rank, 0)))
    return view[
        (Ellipsis,) + tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, d) for d in dilation)
    ]


def _col2im(cols, size, stride, dilation):
    """Adjoint of `_windows`: add each window cell onto the (N, C, *size) position it reads."""
    rank = len(size)
    out_sizes, kernel = cols.shape[2 : 2 + rank], cols.shape[2 + rank :]
    x = np.zeros(cols.shape[:2] + tuple(size))
    for cell in np.ndindex(*kernel):
        # One kernel cell touches each position at most once, so a sliced += is exact.
        target = tuple(
            slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(cell, dilation, out_sizes, stride)
        )
        x[(Ellipsis,) + target] += cols[(Ellipsis,) + cell]
    return x


def _einsum(spec, *operands, rank):
    """np.einsum where X stands for the `rank` output spatial axes and K for the kernel axes."""
    spec = spec.replace("X", "xyz"[:rank]).replace("K", "uvw"[:rank])
    return np.einsum(spec, *operands, optimize=True)


def _split(array, axis, groups):
    """View channel axis `axis` as (groups, channels per group)."""
    shape = array.shape
    return array.reshape(shape[:axis] + (groups, shape[axis] // groups) + shape[axis + 1 :])


def _merge(array, axis):
    """Inverse of `_split`: axes `axis` and `axis + 1` become one."""
    shape = array.shape
    return array.reshape(shape[:axis] + (shape[axis] * shape[axis + 1],) + shape[axis + 2 :])


# ===================================================================== convolution


class _Conv(NamedTuple):
    x: np.ndarray  # (N, C_in, *in), float64
    w: np.ndarray  # conv: (C_out, C_in/groups, *k); transpose: (C_in, C_out/groups, *k)
    stride: tuple
    pads: list  # one (before, after) pair per axis
    dilation: tuple
    groups: int
    out_shape: tuple  # (N, C_out, *out) of the forward
    batched: bool
    channels_last: bool


def _conv_padding(padding, in_sizes, kernel, stride, dilation):
    """Resolve conv `padding` to one (before, after) pair per spatial axis."""
    rank = len(in_sizes)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * rank
        if padding == "same":
            return [same_padding(*axis) for axis in zip(in_sizes, kernel, stride, dilation)]
        raise ValueError(f'padding must be an int, ints, (before, after) pairs, "same" or "valid", got {padding!r}')
    if _is_int(padding):
        entries = [padding] * rank
    else:
        entries = list(padding)
        # A 1-D conv has one axis, so a flat pair of ints can only mean (before, after).
        if rank == 1 and len(entries) == 2 and all(_is_int(p) for p in entries):
            entries = [tuple(entries)]
        if len(entries) != rank:
            raise ValueError(f"padding must have one entry per spatial axis ({rank}), got {padding!r}")
    pads = [(int(p), int(p)) if _is_int(p) else tuple(int(q) for q in p) for p in entries]
    if any(len(pair) != 2 for pair in pads):
        raise ValueError(f"padding pairs must be (before, after), got {padding!r}")
    if any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pads


def _conv_args(rank, input, weight, stride, padding, dilation, groups, padding_mode, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != rank + 2 or w.size == 0:
        raise ValueError(
            f"weight must be a non-empty (C_out, C_in/groups, *kernel) array with "
            f"{rank + 2} dimensions, got shape {w.shape}"
        )
    stride = _ints(stride, rank, "stride", 1)
    dilation = _ints(dilation, rank, "dilation", 1)
    groups = operator.index(groups)
    if groups < 1 or w.shape[0] % groups or w.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"groups={groups} with weight of shape {w.shape} needs C_out divisible by "
            f"groups and C_in = {w.shape[1]}*groups, got C_in = {x.shape[1]}"
        )
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
    pads = _conv_padding(padding, x.shape[2:], w.shape[2:], stride, dilation)
    for size, (before, after) in zip(x.shape[2:], pads):
        # PyTorch's F.pad limits: a reflection cannot reach past the far edge, a wrap
        # cannot copy more than the whole axis.
        if (
            padding_mode == "reflect"
            and max(before, after) >= size
            or padding_mode == "circular"
            and max(before, after) > size
        ):
            raise ValueError(f"{padding_mode} padding {(before, after)} is too large for an axis of size {size}")
    out = tuple(
        conv_output_size(n, k, s, b, a, d)
        for n, k, s, (b, a), d in zip(x.shape[2:], w.shape[2:], stride, pads, dilation)
    )
    if min(out) < 1:
        raise ValueError(
            f"output size is too small: input {x.shape[2:]}, kernel {w.shape[2:]}, padding {pads}, gives {out}"
        )
    return _Conv(x, w, stride, pads, dilation, groups, (x.shape[0], w.shape[0]) + out, batched, channels_last)


def _bias(bias, channels, rank):
    """Bias as a (C, 1, ..., 1) array that broadcasts over (N, C, *spatial)."""
    bias = np.asarray(bias, dtype=np.float64)
    if bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {bias.shape}")
    return bias.reshape((channels,) + (1,) * rank)


def _conv(rank, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format):
    """y[n, m, o] = bias[m] + sum over c, k of xpad[n, c, o*stride + k*dilation] * w[m, c, k],
    c running over the input channels of output channel m's group."""
    a = _conv_args(rank, input, weight, stride, padding, dilation, groups, padding_mode, data_format)
    xp = _pad(a.x, a.pads, padding_mode)
    cols = _windows(xp, a.w.shape[2:], a.stride, a.dilation)  # (N, C_in, *out, *kernel)
    y = _merge(_einsum("ngcXK,gmcK->ngmX", _split(cols, 1, a.groups), _split(a.w, 0, a.groups), rank=rank), 1)
    if bias is not None:
        y = y + _bias(bias, a.w.shape[0], rank)
    return _from_ncx(y, a.batched, a.channels_last)


def _conv_backward(rank, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, data_format):
    """The adjoint of `_conv`'s windows-times-weight contraction, for the weight and the input."""
    a = _conv_args(rank, input, weight, stride, padding, dilation, groups, padding_mode, data_format)
    g = _like_output(grad_output, a.out_shape, a.batched, a.channels_last, "grad_output")
    g = _split(g, 1, a.groups)
    xp = _pad(a.x, a.pads, padding_mode)
    cols = _split(_windows(xp, a.w.shape[2:], a.stride, a.dilation), 1, a.groups)
    grad_weight = _merge(_einsum("ngcXK,ngmX->gmcK", cols, g, rank=rank), 0)
    grad_cols = _merge(_einsum("ngmX,gmcK->ngcXK", g, _split(a.w, 0, a.groups), rank=rank), 1)
    grad_xp = _col2im(grad_cols, xp.shape[2:], a.stride, a.dilation)
    # Non-zero padding modes copy input cells into the padding; their gradient comes home.
    grad_input = _pad_adjoint(grad_xp, a.x.shape[2:], a.pads, padding_mode)
    grad_bias = _merge(g, 1).sum(axis=(0,) + _spatial_axes(rank))
    return _from_ncx(grad_input, a.batched, a.channels_last), grad_weight, grad_bias


# ========================================================== transposed convolution
#
# conv_transpose is the adjoint of conv's input gradient, with the weight read as a conv
# weight (C_out_conv, C_in_conv/groups) = (C_in, C_out/groups): every input cell scatters
# value * weight into the output (_col2im), and its gradients gather windows (_windows).


def _conv_transpose_args(rank, input, weight, stride, padding, output_padding, groups, dilation, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != rank + 2 or w.size == 0:
        raise ValueError(
            f"weight must be a non-empty (C_in, C_out/groups, *kernel) array with "
            f"{rank + 2} dimensions, got shape {w.shape}"
        )
    stride = _ints(stride, rank, "stride", 1)
    padding = _ints(padding, rank, "padding", 0)
    output_padding = _ints(output_padding, rank, "output_padding", 0)
    dilation = _ints(dilation, rank, "dilation", 1)
    groups = operator.index(groups)
    if groups < 1 or w.shape[0] != x.shape[1] or x.shape[1] % groups:
        raise ValueError(
            f"groups={groups} with weight of shape {w.shape} needs C_in = "
            f"{w.shape[0]} divisible by groups, got C_in = {x.shape[1]}"
        )
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"output_padding must be smaller than max(stride, dilation), got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    out = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(x.shape[2:], stride, padding, dilation, w.shape[2:], output_padding)
    )
    if min(out) < 1:
        raise ValueError(f"output size is too small: {out}")
    out_shape = (x.shape[0], w.shape[1] * groups) + out
    return _Conv(x, w, stride, [(p, p) for p in padding], dilation, groups, out_shape, batched, channels_last)


def _conv_transpose(rank, input, weight, bias, stride, padding, output_padding, groups, dilation, data_format):
    a = _conv_transpose_args(rank, input, weight, stride, padding, output_padding, groups, dilation, data_format)
    cols = _merge(
        _einsum("ngcX,gcmK->ngmXK", _split(a.x, 1, a.groups), _split(a.w, 0, a.groups), rank=rank), 1
    )  # (N, C_out, *in, *kernel)
    # Scatter into the padded output, then drop the padding; output_padding is the room
    # at the end that no input cell reaches.
    full = _col2im(cols, [o + b + e for o, (b, e) in zip(a.out_shape[2:], a.pads)], a.stride, a.dilation)
    y = full[(Ellipsis,) + tuple(slice(b, b + o) for o, (b, _) in zip(a.out_shape[2:], a.pads))]
    if bias is not None:
        y = y + _bias(bias, a.out_shape[1], rank)
    return _from_ncx(y, a.batched, a.channels_last)


def _conv_transpose_backward(
    rank, grad_output, input, weight, stride, padding, output_padding, groups, dilation, data_format
):
    a = _conv_transpose_args(rank, input, weight, stride, padding, output_padding, groups, dilation, data_format)
    g = _like_output(grad_output, a.out_shape, a.batched, a.channels_last, "grad_output")
    cols = _windows(_pad(g, a.pads), a.w.shape[2:], a.stride, a.dilation)
    # With output_padding >= stride one more window fits than there are input cells; it
    # holds only output cells that no input reached.
    cols = cols[(Ellipsis,) + tuple(slice(0, n) for n in a.x.shape[2:]) + (slice(None),) * rank]
    cols = _split(cols, 1, a.groups)
    x, w = _split(a.x, 1, a.groups), _split(a.w, 0, a.groups)
    grad_input = _merge(_einsum("ngmXK,gcmK->ngcX", cols, w, rank=rank), 1)
    grad_weight = _merge(_einsum("ngcX,ngmXK->gcmK", x, cols, rank=rank), 0)
    grad_bias = g.sum(axis=(0,) + _spatial_axes(rank))
    return _from_ncx(grad_input, a.batched, a.channels_last), grad_weight, grad_bias


# ========================================================================= pooling


class _Pool(NamedTuple):
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: list  # one (before, after) pair per axis, as the caller asked for
    out: tuple
    same: bool  # padding="same"/"valid": padded cells never count, not even in averages


def _pool_geometry(rank, in_sizes, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _ints(kernel_size, rank, "kernel_size", 1)
    stride = kernel if stride is None else _ints(stride, rank, "stride", 1)
    dilation = _ints(dilation, rank, "dilation", 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f'padding must be an int, ints, "same" or "valid", got {padding!r}')
        if ceil_mode:
            raise ValueError(f"ceil_mode must be False with padding={padding!r}")
        pads = [
            same_padding(*axis) if padding == "same" else (0, 0) for axis in zip(in_sizes, kernel, stride, dilation)
        ]
        out = tuple(
            conv_output_size(n, k, s, b, a, d) for n, k, s, (b, a), d in zip(in_sizes, kernel, stride, pads, dilation)
        )
    else:
        padding = _ints(padding, rank, "padding", 0)
        # PyTorch's bound, on the undilated kernel.
        if any(p > k // 2 for p, k in zip(padding, kernel)):
            raise ValueError(
                f"padding must be at most kernel_size // 2, got padding={padding} and kernel_size={kernel}"
            )
        pads = [(p, p) for p in padding]
        out = tuple(
            pool_output_size(n, k, s, p, d, ceil_mode)
            for n, k, s, p, d in zip(in_sizes, kernel, stride, padding, dilation)
        )
    if min(out) < 1:
        raise ValueError(
            f"output size is too small: input {tuple(in_sizes)}, kernel {kernel}, "
            f"stride {stride}, padding {pads}, dilation {dilation}, gives {out}"
        )
    return _Pool(kernel, stride, dilation, pads, out, isinstance(padding, str))


def _window_pads(geo, in_sizes):
    """Padding that holds every window, including a ceil_mode window past the right padding."""
    return [
        (b, max(a, (o - 1) * s + d * (k - 1) + 1 - n - b))
        for n, (b, a), o, s, d, k in zip(in_sizes, geo.pads, geo.out, geo.stride, geo.dilation, geo.kernel)
    ]


def _pool_windows(x, geo):
    """Each pooling window of x, flattened in row-major window order, (N, C, *out, kernel volume),
    and the flat plane index of each of its cells, -1 for padding, (1, 1, *out, kernel volume)."""
    in_sizes, rank = x.shape[2:], x.ndim - 2
    pads = _window_pads(geo, in_sizes)
    plane = np.arange(math.prod(in_sizes)).reshape((1, 1) + in_sizes)
    crop = (Ellipsis,) + tuple(slice(0, o) for o in geo.out) + (slice(None),) * rank
    flat = (math.prod(geo.kernel),)
    values = _windows(_pad(x, pads), geo.kernel, geo.stride, geo.dilation)[crop]
    index = _windows(_pad(plane, pads, value=-1), geo.kernel, geo.stride, geo.dilation)[crop]
    return (values.reshape(values.shape[: rank + 2] + flat), index.reshape(index.shape[: rank + 2] + flat))


def _extreme_position(values, index, largest):
    """Position along the last axis of the cell that max (min) pooling picks, and whether any.

    Padding (index -1) never counts, so even -inf (+inf) inputs win over it; a NaN wins
    over any number, the last NaN over earlier ones (as in PyTorch); among equal extremes the
    first wins."""
    inside = np.broadcast_to(index >= 0, values.shape)
    nan = np.isnan(values) & inside
    number = inside & ~nan
    key = values if largest else -values
    best = np.max(key, axis=-1, where=number, initial=-np.inf, keepdims=True)
    extreme = number & (key == best)
    last_nan = nan.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1)  # argmax of booleans: first True
    has_nan = nan.any(axis=-1)
    return np.where(has_nan, last_nan, extreme.argmax(axis=-1)), has_nan | extreme.any(axis=-1)


def _select(values, index, largest):
    """(value, plane index) that max (min) pooling picks per window; (-inf (+inf), -1) if none."""
    position, found = _extreme_position(values, index, largest)
    pick = position[..., np.newaxis]
    value = np.take_along_axis(values, pick, axis=-1)[..., 0]
    where = np.take_along_axis(np.broadcast_to(index, values.shape), pick, axis=-1)[..., 0]
    return np.where(found, value, -np.inf if largest else np.inf), np.where(found, where, -1)


def _scatter_to_plane(grad, index, in_sizes):
    """Add grad[n, c, o] onto cell index[n, c, o] (a flat index) of input plane (n, c)."""
    n, c = grad.shape[:2]
    plane = math.prod(in_sizes)
    windows = math.prod(grad.shape[2:])
    grad, index = grad.reshape(n * c, windows), index.reshape(n * c, windows)
    rows = np.broadcast_to(np.arange(n * c)[:, np.newaxis], index.shape)
    hit = index >= 0  # -1: a window with no input cell
    grad_input = np.zeros((n * c, plane))
    np.add.at(grad_input, (rows[hit], index[hit]), grad[hit])
    return grad_input.reshape((n, c) + tuple(in_sizes))


def _checked_indices(indices, out_shape, plane, batched, channels_last):
    """The forward's indices, checked: integers, the output's shape, each in [-1, plane)."""
    if not np.issubdtype(np.asarray(indices).dtype, np.integer):
        raise TypeError(f"indices must be an integer array, got {np.asarray(indices).dtype}")
    indices = _like_output(indices, out_shape, batched, channels_last, "indices", np.int64)
    if indices.size and (indices.min() < -1 or indices.max() >= plane):
        raise ValueError(f"indices must lie in [-1, {plane}), got values in [{indices.min()}, {indices.max()}]")
    return indices


def _extreme_pool(rank, largest, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    geo = _pool_geometry(rank, x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    value, index = _select(*_pool_windows(x, geo), largest)
    value = _from_ncx(value, batched, channels_last)
    return (value, _from_ncx(index, batched, channels_last)) if return_indices else value


def _extreme_pool_backward(
    rank, largest, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    geo = _pool_geometry(rank, x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    g = _like_output(grad_output, x.shape[:2] + geo.out, batched, channels_last, "grad_output")
    if indices is None:
        _, indices = _select(*_pool_windows(x, geo), largest)
    else:
        indices = _checked_indices(indices, g.shape, math.prod(x.shape[2:]), batched, channels_last)
    return _from_ncx(_scatter_to_plane(g, indices, x.shape[2:]), batched, channels_last)


def _avg_divisor(geo, in_sizes, index, count_include_pad, divisor_override):
    """Per-window divisor of average pooling, broadcastable to (N, C, *out) (docs/semantics.md)."""
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must be non-zero, got 0")
        return float(divisor_override)
    if count_include_pad and not geo.same:
        # pool_size: the window [h0, min(h0 + k, in + p)) on each axis, BEFORE clamping to
        # the input, so left and right padding count but a ceil_mode overhang does not.
        sizes = []
        for n, k, s, (before, after), o in zip(in_sizes, geo.kernel, geo.stride, geo.pads, geo.out):
            start = np.arange(o) * s - before
            sizes.append(np.minimum(start + k, n + after) - start)
        return functools.reduce(np.multiply.outer, sizes)
    return (index >= 0).sum(axis=-1)  # the cells inside the input


def _avg_pool(rank, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    geo = _pool_geometry(rank, x.shape[2:], kernel_size, stride, padding, 1, ceil_mode)
    values, index = _pool_windows(x, geo)  # padding holds zeros: it adds nothing to a sum
    y = values.sum(axis=-1) / _avg_divisor(geo, x.shape[2:], index, count_include_pad, divisor_override)
    return _from_ncx(y, batched, channels_last)


def _avg_pool_backward(
    rank, grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    geo = _pool_geometry(rank, x.shape[2:], kernel_size, stride, padding, 1, ceil_mode)
    g = _like_output(grad_output, x.shape[:2] + geo.out, batched, channels_last, "grad_output")
    _, index = _pool_windows(x, geo)
    share = g / _avg_divisor(geo, x.shape[2:], index, count_include_pad, divisor_override)
    # Every cell of a window gets the window's share; padded cells drop it.
    cols = np.where(index >= 0, share[..., np.newaxis], 0.0)
    cols = cols.reshape(cols.shape[:-1] + geo.kernel)
    pads = _window_pads(geo, x.shape[2:])
    grad = _col2im(cols, [n + b + a for n, (b, a) in zip(x.shape[2:], pads)], geo.stride, geo.dilation)
    grad = grad[(Ellipsis,) + tuple(slice(b, b + n) for n, (b, _) in zip(x.shape[2:], pads))]
    return _from_ncx(grad, batched, channels_last)


# ================================================================== global pooling
#
# One number per (n, c) plane: the plane is flattened (row-major) and reduced with the
# same rules as a pooling window that covers the whole input.


def _global_shape(x, keepdims, batched, channels_last):
    rank = x.ndim - 2
    if keepdims:
        return _user_shape(x.shape[:2] + (1,) * rank, batched, channels_last)
    return x.shape[:2] if batched else x.shape[1:2]


def _flat_planes(x):
    """Each (n, c) plane as one row-major window, and the plane index of its cells."""
    size = math.prod(x.shape[2:])
    return x.reshape(x.shape[:2] + (size,)), np.arange(size)


def _global_pool(rank, kind, input, keepdims, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    planes, index = _flat_planes(x)
    if kind == "avg":
        y = planes.mean(axis=-1)
    else:
        y, _ = _select(planes, index, kind == "max")
    y = _from_ncx(y.reshape(y.shape + (1,) * rank), batched, channels_last)
    return y.reshape(_global_shape(x, keepdims, batched, channels_last))


def _global_pool_backward(rank, kind, grad_output, input, keepdims, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    expected = _global_shape(x, keepdims, batched, channels_last)
    if np.shape(grad_output) != expected:
        raise ValueError(f"grad_output has shape {np.shape(grad_output)}, but the forward output has shape {expected}")
    g = np.asarray(grad_output, dtype=np.float64).reshape(x.shape[:2] + (1,))
    planes, index = _flat_planes(x)
    if kind == "avg":
        grad = np.broadcast_to(g / planes.shape[-1], planes.shape).reshape(x.shape)
    else:
        # The whole gradient goes to the first extreme element (the last NaN, if any).
        _, selected = _select(planes, index, kind == "max")
        grad = _scatter_to_plane(g, selected[..., np.newaxis], x.shape[2:])
    return _from_ncx(grad, batched, channels_last)


# ================================================================ adaptive pooling


def _adaptive_sizes(output_size, in_sizes):
    rank = len(in_sizes)
    if _is_int(output_size) or output_size is None:
        output_size = [output_size] * rank
    sizes = list(output_size)
    if len(sizes) != rank:
        raise ValueError(f"output_size must be an int or {rank} entries, got {output_size!r}")
    # None keeps the input size; 0 gives an empty result, as in PyTorch.
    sizes = tuple(n if o is None else operator.index(o) for o, n in zip(sizes, in_sizes))
    if min(sizes) < 0:
        raise ValueError(f"output_size must be non-negative, got {output_size!r}")
    return sizes


def _adaptive_windows(in_sizes, out_sizes):
    """(output cell, window slices): cell i spans [floor(i*in/out), ceil((i+1)*in/out)) per axis."""
    spans = [[slice(i * n // o, -(-(i + 1) * n // o)) for i in range(o)] for n, o in zip(in_sizes, out_sizes)]
    for cell in itertools.product(*(range(o) for o in out_sizes)):
        yield cell, tuple(span[i] for span, i in zip(spans, cell))


def _adaptive_args(rank, input, output_size, data_format):
    channels_last = _channels_last(data_format, rank)
    x, batched = _to_ncx(input, rank, channels_last, "input")
    return x, _adaptive_sizes(output_size, x.shape[2:]), batched, channels_last


def _adaptive_max(x, out_sizes):
    """Values and plane indices of adaptive max pooling, channels-first."""
    plane = np.arange(math.prod(x.shape[2:])).reshape(x.shape[2:])
    values = np.empty(x.shape[:2] + out_sizes)
    indices = np.empty(x.shape[:2] + out_sizes, np.int64)
    for cell, window in _adaptive_windows(x.shape[2:], out_sizes):
        index = plane[window].reshape(-1)
        cells = x[(Ellipsis,) + window].reshape(x.shape[:2] + index.shape)
        values[(Ellipsis,) + cell], indices[(Ellipsis,) + cell] = _select(cells, index, True)
    return values, indices


def _adaptive_avg_pool(rank, input, output_size, data_format):
    x, out_sizes, batched, channels_last = _adaptive_args(rank, input, output_size, data_format)
    y = np.empty(x.shape[:2] + out_sizes)
    for cell, window in _adaptive_windows(x.shape[2:], out_sizes):
        y[(Ellipsis,) + cell] = x[(Ellipsis,) + window].mean(axis=_spatial_axes(rank))
    return _from_ncx(y, batched, channels_last)


def _adaptive_avg_pool_backward(rank, grad_output, input, output_size, data_format):
    x, out_sizes, batched, channels_last = _adaptive_args(rank, input, output_size, data_format)
    g = _like_output(grad_output, x.shape[:2] + out_sizes, batched, channels_last, "grad_output")
    grad = np.zeros(x.shape)
    for cell, window in _adaptive_windows(x.shape[2:], out_sizes):
        count = math.prod(s.stop - s.start for s in window)
        grad[(Ellipsis,) + window] += g[(Ellipsis,) + cell + (np.newaxis,) * rank] / count
    return _from_ncx(grad, batched, channels_last)


def _adaptive_max_pool(rank, input, output_size, return_indices, data_format):
    x, out_sizes, batched, channels_last = _adaptive_args(rank, input, output_size, data_format)
    values, indices = _adaptive_max(x, out_sizes)
    values = _from_ncx(values, batched, channels_last)
    return (values, _from_ncx(indices, batched, channels_last)) if return_indices else values


def _adaptive_max_pool_backward(rank, grad_output, input, output_size, data_format, indices):
    x, out_sizes, batched, channels_last = _adaptive_args(rank, input, output_size, data_format)
    g = _like_output(grad_output, x.shape[:2] + out_sizes, batched, channels_last, "grad_output")
    if indices is None:
        _, indices = _adaptive_max(x, out_sizes)
    else:
        indices = _checked_indices(indices, g.shape, math.prod(x.shape[2:]), batched, channels_last)
    return _from_ncx(_scatter_to_plane(g, indices, x.shape[2:]), batched, channels_last)


# =================================================================== public API
#
# Thin per-rank entry points, spelled out so that every name has its exact signature.


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None):
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None):
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None):
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format)


def conv1d_backward(
    grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None
):
    return _conv_backward(1, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, data_format)


def conv2d_backward(
    grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None
):
    return _conv_backward(2, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, data_format)


def conv3d_backward(
    grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", data_format=None
):
    return _conv_backward(3, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, data_format)


def conv_transpose1d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation, data_format)


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation, data_format)


def conv_transpose3d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation, data_format)


def conv_transpose1d_backward(
    grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose_backward(
        1, grad_output, input, weight, stride, padding, output_padding, groups, dilation, data_format
    )


def conv_transpose2d_backward(
    grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose_backward(
        2, grad_output, input, weight, stride, padding, output_padding, groups, dilation, data_format
    )


def conv_transpose3d_backward(
    grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, data_format=None
):
    return _conv_transpose_backward(
        3, grad_output, input, weight, stride, padding, output_padding, groups, dilation, data_format
    )


def max_pool1d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(1, True, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format)


def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(2, True, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format)


def max_pool3d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(3, True, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format)


def min_pool1d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(
        1, False, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format
    )


def min_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(
        2, False, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format
    )


def min_pool3d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, data_format=None
):
    return _extreme_pool(
        3, False, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format
    )


def max_pool1d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        1, True, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def max_pool2d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        2, True, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def max_pool3d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        3, True, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def min_pool1d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        1, False, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def min_pool2d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        2, False, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def min_pool3d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, data_format=None, indices=None
):
    return _extreme_pool_backward(
        3, False, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, indices
    )


def avg_pool1d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool(
        1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool(
        2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def avg_pool3d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool(
        3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def avg_pool1d_backward(
    grad_output,
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool_backward(
        1, grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def avg_pool2d_backward(
    grad_output,
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool_backward(
        2, grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def avg_pool3d_backward(
    grad_output,
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    data_format=None,
):
    return _avg_pool_backward(
        3, grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, data_format
    )


def global_max_pool1d(input, keepdims=False, data_format=None):
    return _global_pool(1, "max", input, keepdims, data_format)


def global_max_pool2d(input, keepdims=False, data_format=None):
    return _global_pool(2, "max", input, keepdims, data_format)


def global_max_pool3d(input, keepdims=False, data_format=None):
    return _global_pool(3, "max", input, keepdims, data_format)


def global_min_pool1d(input, keepdims=False, data_format=None):
    return _global_pool(1, "min", input, keepdims, data_format)


def global_min_pool2d(input, keepdims=False, data_format=None):
    return _global_pool(2, "min", input, keepdims, data_format)


def global_min_pool3d(input, keepdims=False, data_format=None):
    return _global_pool(3, "min", input, keepdims, data_format)


def global_avg_pool1d(input, keepdims=False, data_format=None):
    return _global_pool(1, "avg", input, keepdims, data_format)


def global_avg_pool2d(input, keepdims=False, data_format=None):
    return _global_pool(2, "avg", input, keepdims, data_format)


def global_avg_pool3d(input, keepdims=False, data_format=None):
    return _global_pool(3, "avg", input, keepdims, data_format)


def global_max_pool1d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(1, "max", grad_output, input, keepdims, data_format)


def global_max_pool2d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(2, "max", grad_output, input, keepdims, data_format)


def global_max_pool3d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(3, "max", grad_output, input, keepdims, data_format)


def global_min_pool1d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(1, "min", grad_output, input, keepdims, data_format)


def global_min_pool2d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(2, "min", grad_output, input, keepdims, data_format)


def global_min_pool3d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(3, "min", grad_output, input, keepdims, data_format)


def global_avg_pool1d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(1, "avg", grad_output, input, keepdims, data_format)


def global_avg_pool2d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(2, "avg", grad_output, input, keepdims, data_format)


def global_avg_pool3d_backward(grad_output, input, keepdims=False, data_format=None):
    return _global_pool_backward(3, "avg", grad_output, input, keepdims, data_format)


def adaptive_avg_pool1d(input, output_size, data_format=None):
    return _adaptive_avg_pool(1, input, output_size, data_format)


def adaptive_avg_pool2d(input, output_size, data_format=None):
    return _adaptive_avg_pool(2, input, output_size, data_format)


def adaptive_avg_pool3d(input, output_size, data_format=None):
    return _adaptive_avg_pool(3, input, output_size, data_format)


def adaptive_avg_pool1d_backward(grad_output, input, output_size, data_format=None):
    return _adaptive_avg_pool_backward(1, grad_output, input, output_size, data_format)


def adaptive_avg_pool2d_backward(grad_output, input, output_size, data_format=None):
    return _adaptive_avg_pool_backward(2, grad_output, input, output_size, data_format)


def adaptive_avg_pool3d_backward(grad_output, input, output_size, data_format=None):
    return _adaptive_avg_pool_backward(3, grad_output, input, output_size, data_format)


def adaptive_max_pool1d(input, output_size, return_indices=False, data_format=None):
    return _adaptive_max_pool(1, input, output_size, return_indices, data_format)


def adaptive_max_pool2d(input, output_size, return_indices=False, data_format=None):
    return _adaptive_max_pool(2, input, output_size, return_indices, data_format)


def adaptive_max_pool3d(input, output_size, return_indices=False, data_format=None):
    return _adaptive_max_pool(3, input, output_size, return_indices, data_format)


def adaptive_max_pool1d_backward(grad_output, input, output_size, data_format=None, indices=None):
    return _adaptive_max_pool_backward(1, grad_output, input, output_size, data_format, indices)


def adaptive_max_pool2d_backward(grad_output, input, output_size, data_format=None, indices=None):
    return _adaptive_max_pool_backward(2, grad_output, input, output_size, data_format, indices)


def adaptive_max_pool3d_backward(grad_output, input, output_size, data_format=None, indices=None):
    return _adaptive_max_pool_backward(3, grad_output, input, output_size, data_format, indices)
