"""Convolution and transposed convolution: argument parsing and the calls into the kernels.

The public, per-rank functions (``conv2d``, ``conv_transpose2d`` ...) are generated from these in
``functional.py``. Activations are handed to the kernels in their own layout (channels-first or
channels-last kernels exist for both); only non-zero padding modes make a padded copy, as
PyTorch's modules do. Every call runs where its arrays are (``_backend``): NumPy arrays on the CPU
kernels, CUDA arrays on the CUDA kernels, with the same code here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from . import _C
from ._args import (
    as_int,
    batched_contiguous,
    data_format_is_last,
    int_tuple,
    ncs_shape,
    pad3,
    physical_shape,
    same_dtype,
    user_shape,
    weight_from_channels_first,
    weight_is_spatial_first,
    weight_to_channels_first,
)
from ._backend import backend_for

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _conv_padding(
    padding: Any, rank: int, in_sizes: Any, kernel: Any, stride: Any, dilation: Any
) -> Tuple[List[int], List[int]]:
    """Per-axis (before, after) padding from an int, per-axis ints or pairs, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * rank, [0] * rank
        if padding == "same":
            pairs = [_C.same_padding(i, k, s, d) for i, k, s, d in zip(in_sizes, kernel, stride, dilation)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (list, tuple)):
        if len(padding) == 1:
            padding = tuple(padding) * rank  # one entry for every axis, as PyTorch reads (1,)
        if len(padding) != rank:
            raise ValueError(
                f"padding must be an int, {rank} ints or {rank} (before, after) pairs, got {tuple(padding)!r}"
            )
        before, after = [], []
        for p in padding:
            if isinstance(p, (list, tuple)):
                if len(p) != 2:
                    raise ValueError(f"each padding pair must be (before, after), got {tuple(p)!r}")
                before.append(as_int(p[0], "padding"))
                after.append(as_int(p[1], "padding"))
            else:
                before.append(as_int(p, "padding"))
                after.append(before[-1])
        return before, after
    p = as_int(padding, "padding")
    return [p] * rank, [p] * rank


# --------------------------------------------------------------------------------------------
# Padding modes: reflect / replicate / circular as an explicit padded copy and its adjoint
# --------------------------------------------------------------------------------------------


def _source_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each cell of a padded axis, the input cell it copies (PyTorch's F.pad rules)."""
    j = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    if mode == "circular":
        return j % n
    # reflect: mirror about the first and last cell, which are not repeated
    j = np.abs(j)
    return np.where(j >= n, 2 * (n - 1) - j, j)


def _check_mode_padding(mode: str, sizes: Sequence[int], before: Sequence[int], after: Sequence[int]) -> None:
    for n, b, a in zip(sizes, before, after):
        if mode == "reflect" and max(b, a) >= n:
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input on every axis: "
                f"padding ({b}, {a}) on an axis of size {n}"
            )
        if mode == "circular" and max(b, a) > n:
            raise ValueError(
                f"padding_mode='circular' needs padding at most the input size on every axis: "
                f"padding ({b}, {a}) on an axis of size {n}"
            )


def _pad_by_mode(x: Any, axes: Sequence[int], before: Any, after: Any, mode: str, xp: Any = np) -> Any:
    """x padded by `mode` (a copy); xp is x's array module (numpy or cupy)."""
    for axis, b, a in zip(axes, before, after):
        if b or a:
            x = xp.take(x, xp.asarray(_source_index(x.shape[axis], b, a, mode)), axis=axis)
    return xp.ascontiguousarray(x)


def _unpad_by_mode(g: Any, axes: Sequence[int], before: Any, after: Any, mode: str, xp: Any = np) -> Any:
    """Adjoint of _pad_by_mode: every padded cell's gradient goes back to the cell it copied,
    in a fixed order (deterministic)."""
    for axis, b, a in reversed(list(zip(axes, before, after))):
        if not (b or a):
            continue
        gm = xp.moveaxis(g, axis, 0)
        n = gm.shape[0] - b - a
        src = _source_index(n, b, a, mode)
        folded = gm[b : b + n].copy()
        for j in list(range(b)) + list(range(b + n, b + n + a)):
            folded[int(src[j])] += gm[j]
        g = xp.moveaxis(folded, 0, axis)
    return xp.ascontiguousarray(g)


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------


def _parse_arrays(
    call: Any,
    rank: int,
    input: Any,
    weight: Any,
    bias: Any,
    data_format: Any,
    weight_format: Any,
    device_arrays: Dict[str, Any],
) -> Tuple[Any, Any, Any, bool, Tuple[int, ...], bool]:
    """Sets call.be (where it runs, from every array of the call: device_arrays names the others, e.g.
    grad_output and out) and call.spatial_first_weight, and returns the arrays of a (transposed)
    convolution, checked for dtype and layout: (input, weight as (a, b, *kernel), bias, channels_last,
    (N, C, *spatial) of the input, unbatched)."""
    be = call.be = backend_for(input=input, weight=weight, bias=bias, **device_arrays)
    call.spatial_first_weight = weight_is_spatial_first(weight_format, rank)
    x = be.as_float_array(input, "input")
    w = be.as_float_array(weight, "weight")
    if call.spatial_first_weight:
        w = weight_to_channels_first(w, rank)
    b = None if bias is None else be.as_float_array(bias, "bias")
    same_dtype(x, "input", weight=w, bias=b)
    last = data_format_is_last(data_format, rank)
    shape, unbatched = ncs_shape(x, rank, "input", last)
    return x, w, b, last, shape, unbatched


class _ConvCall:
    """A parsed, validated convolution call: the geometry and the arrays in kernel form."""

    be: Any  # where it runs (set by _parse_arrays)
    spatial_first_weight: bool

    def __init__(
        self,
        rank: int,
        input: Any,
        weight: Any,
        bias: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: Any,
        padding_mode: Any,
        data_format: Any,
        weight_format: Any = None,
        **device_arrays: Any,
    ) -> None:
        x, w, b, self.last, shape, self.unbatched = _parse_arrays(
            self, rank, input, weight, bias, data_format, weight_format, device_arrays
        )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if w.ndim != rank + 2:
            layout = (
                "(*kernel, in_channels/groups, out_channels)"
                if self.spatial_first_weight
                else "(out_channels, in_channels/groups, *kernel)"
            )
            raise ValueError(f"weight must have {rank + 2} dimensions {layout}, got shape {w.shape}")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},) (one per output channel), got {b.shape}")
        self.rank, self.mode, self.shape = rank, padding_mode, shape
        stride = pad3(int_tuple(stride, rank, "stride"), rank, 1)
        dilation = pad3(int_tuple(dilation, rank, "dilation"), rank, 1)
        before, after = _conv_padding(padding, rank, shape[2:], w.shape[2:], stride[3 - rank :], dilation[3 - rank :])
        groups = as_int(groups, "groups")
        if padding_mode != "zeros":
            # The padded copy is the kernels' input; they then pad nothing.
            for v, name in ((before, "padding"), (after, "padding")):
                if min(v) < 0:
                    raise ValueError(f"{name} must be >= 0 on every spatial axis, got {tuple(v)}")
            _check_mode_padding(padding_mode, shape[2:], before, after)
            self.mode_pads = (before, after)
            shape = tuple(shape[:2]) + tuple(n + b_ + a_ for n, b_, a_ in zip(shape[2:], before, after))
            if max(shape[2:]) > 2**63 - 1:
                raise ValueError(
                    f"padding_mode={padding_mode!r}: the padded input size {tuple(shape[2:])} "
                    f"does not fit a 64-bit integer"
                )
            before = after = [0] * rank
        self.kernel_shape = tuple(shape)
        self.args = _C.ConvArgs(stride, pad3(before, rank, 0), pad3(after, rank, 0), dilation, groups, rank, self.last)
        self.w_shape5 = tuple(w.shape[:2]) + tuple(pad3(w.shape[2:], rank, 1))
        try:
            y5 = _C.conv_output_shape(list(shape[:2]) + pad3(shape[2:], rank, 1), list(self.w_shape5), self.args)
        except ValueError as exc:
            if not self.spatial_first_weight:
                raise
            # The checks see the weight as (out_channels, in_channels/groups, *kernel): say so.
            raise ValueError(
                f"{exc} (the weight of shape {tuple(weight.shape)} given as {weight_format!r} "
                f"reads as {tuple(w.shape)})"
            ) from None
        self.y_shape = tuple(y5[:2]) + tuple(y5[5 - rank :])
        self.x, self.w, self.b, self.dtype = x, w, b, x.dtype

    def spatial_axes(self) -> List[int]:
        return list(range(1, 1 + self.rank)) if self.last else list(range(2, 2 + self.rank))

    def x5(self) -> Any:
        """The input as the kernels read it: batched, C-contiguous, padded by mode if needed."""
        x = batched_contiguous(self.x, self.unbatched, self.be.xp)
        if self.mode != "zeros":
            x = _pad_by_mode(x, self.spatial_axes(), *self.mode_pads, self.mode, self.be.xp)
        return x.reshape(physical_shape(self.kernel_shape, self.rank, self.last))

    def w5(self) -> Any:
        return self.be.xp.ascontiguousarray(self.w).reshape(self.w_shape5)

    def user_shape(self, ncs: Any) -> Tuple[int, ...]:
        return user_shape(ncs, self.unbatched, self.last)

    def phys(self, ncs: Any) -> Tuple[int, ...]:
        return physical_shape(ncs, self.rank, self.last)


def _result_buffer(call: Any, out: Any) -> Any:
    """The caller's out= (checked: shape, dtype, layout, device, no aliasing) or a new result array."""
    shape = call.user_shape(call.y_shape)
    if out is None:
        return call.be.empty(shape, call.dtype)
    call.be.check_out(out, shape, call.dtype, "out", (call.x, call.w, call.b))
    return call.be.xp.asarray(out)  # a CUDA out= that is not a CuPy array is written through a view


def _conv(
    rank: int,
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: Any = 1,
    padding_mode: Any = "zeros",
    data_format: Any = None,
    *,
    weight_format: Any = None,
    out: Any = None,
) -> Any:
    c = _ConvCall(
        rank, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format, weight_format, out=out
    )
    with c.be.scope():
        y = _result_buffer(c, out)
        b = None if c.b is None else c.be.xp.ascontiguousarray(c.b)
        c.be.kernels.conv_forward(c.x5(), c.w5(), b, y.reshape(c.phys(c.y_shape)), c.args)
    return y if out is None else out


def _grad_output(call: Any, grad_output: Any, expected: Tuple[int, ...]) -> Any:
    """grad_output checked against the forward's output shape, batched and C-contiguous."""
    dy = call.be.as_float_array(grad_output, "grad_output")
    same_dtype(call.x, "input", grad_output=dy)
    if dy.shape != expected:
        raise ValueError(f"grad_output has shape {dy.shape}, but the forward output has shape {expected}")
    return batched_contiguous(dy, call.unbatched, call.be.xp)


def _output_mask(output_mask: Any) -> Tuple[bool, bool, bool]:
    """Which of (grad_input, grad_weight, grad_bias) to compute, as aten's convolution_backward takes it."""
    if (
        not isinstance(output_mask, (list, tuple))
        or len(output_mask) != 3
        or not all(isinstance(m, (bool, np.bool_)) for m in output_mask)
    ):
        raise TypeError(f"output_mask must be 3 bools (grad_input, grad_weight, grad_bias), got {output_mask!r}")
    return bool(output_mask[0]), bool(output_mask[1]), bool(output_mask[2])


def _conv_backward(
    rank: int,
    grad_output: Any,
    input: Any,
    weight: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: Any = 1,
    padding_mode: Any = "zeros",
    data_format: Any = None,
    *,
    weight_format: Any = None,
    output_mask: Any = (True, True, True),
) -> Tuple[Any, Any, Any]:
    want_dx, want_dw, want_db = _output_mask(output_mask)
    c = _ConvCall(
        rank,
        input,
        weight,
        None,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        data_format,
        weight_format,
        grad_output=grad_output,
    )
    dy = _grad_output(c, grad_output, c.user_shape(c.y_shape)).reshape(c.phys(c.y_shape))
    be = c.be
    dx = dw = db = None
    with be.scope():
        if want_dx:
            dx = be.empty(c.phys(c.kernel_shape), c.dtype)
            be.kernels.conv_backward_data(dy, c.w5(), dx, c.args)
            dx = dx.reshape(user_shape(c.kernel_shape, False, c.last))
            if c.mode != "zeros":
                dx = _unpad_by_mode(dx, c.spatial_axes(), *c.mode_pads, c.mode, be.xp)
            dx = dx[0] if c.unbatched else dx
        if want_dw:
            dw = be.empty(c.w_shape5, c.dtype)
            be.kernels.conv_backward_weight(dy, c.x5(), dw, c.args)
            dw = dw.reshape(c.w.shape)
            if c.spatial_first_weight:
                dw = weight_from_channels_first(dw, rank, be.xp)
        if want_db:
            db = be.empty((c.w.shape[0],), c.dtype)
            be.kernels.channel_sum(dy, db, c.last)
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# Transposed convolution: the backward-data pass of the convolution that maps its output back
# to its input (and its gradients are that convolution's forward and backward-weight passes)
# --------------------------------------------------------------------------------------------


class _ConvTransposeCall:
    be: Any  # where it runs (set by _parse_arrays)
    spatial_first_weight: bool

    def __init__(
        self,
        rank: int,
        input: Any,
        weight: Any,
        bias: Any,
        stride: Any,
        padding: Any,
        output_padding: Any,
        groups: Any,
        dilation: Any,
        data_format: Any,
        weight_format: Any = None,
        **device_arrays: Any,
    ) -> None:
        x, w, b, self.last, shape, self.unbatched = _parse_arrays(
            self, rank, input, weight, bias, data_format, weight_format, device_arrays
        )
        if w.ndim != rank + 2:
            layout = (
                "(*kernel, out_channels/groups, in_channels)"
                if self.spatial_first_weight
                else "(in_channels, out_channels/groups, *kernel)"
            )
            raise ValueError(f"weight must have {rank + 2} dimensions {layout}, got shape {w.shape}")
        groups = as_int(groups, "groups")
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if w.shape[0] != shape[1]:
            layout = (
                "(*kernel, out_channels/groups, in_channels)"
                if self.spatial_first_weight
                else "(in_channels, out_channels/groups, *kernel)"
            )
            given = weight_from_channels_first(w, rank).shape if self.spatial_first_weight else w.shape
            raise ValueError(
                f"weight must have shape {layout} with in_channels={shape[1]} (the input's channels), got {given}"
            )
        if shape[1] % groups:
            raise ValueError(f"groups must divide the input channels: input has {shape[1]}, groups={groups}")
        c_out = w.shape[1] * groups
        if b is not None and b.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},) (one per output channel), got {b.shape}")
        stride = pad3(int_tuple(stride, rank, "stride"), rank, 1)
        dilation = pad3(int_tuple(dilation, rank, "dilation"), rank, 1)
        padding = pad3(int_tuple(padding, rank, "padding"), rank, 0)
        output_padding = pad3(int_tuple(output_padding, rank, "output_padding"), rank, 0)
        out3, pad_after, in_ext = _C.conv_transpose_plan(
            rank, pad3(shape[2:], rank, 1), pad3(w.shape[2:], rank, 1), stride, padding, output_padding, dilation
        )
        self.rank, self.shape, self.x, self.w, self.b, self.dtype = rank, shape, x, w, b, x.dtype
        self.y_shape = (shape[0], c_out) + tuple(out3[3 - rank :])
        self.ext_shape = tuple(shape[:2]) + tuple(in_ext[3 - rank :])
        self.args = _C.ConvArgs(stride, padding, list(pad_after), dilation, groups, rank, self.last)
        self.w_shape5 = tuple(w.shape[:2]) + tuple(pad3(w.shape[2:], rank, 1))
        # The equivalent convolution maps y_shape to ext_shape; shape.h checks it once more.
        conv_out = _C.conv_output_shape(
            list(self.y_shape[:2]) + pad3(self.y_shape[2:], rank, 1), list(self.w_shape5), self.args
        )
        assert tuple(conv_out[2:]) == tuple(pad3(self.ext_shape[2:], rank, 1)), (conv_out, self.ext_shape)

    def phys(self, ncs: Any) -> Tuple[int, ...]:
        return physical_shape(ncs, self.rank, self.last)

    def spatial_axes(self) -> List[int]:
        return list(range(1, 1 + self.rank)) if self.last else list(range(2, 2 + self.rank))

    def x_extended(self) -> Any:
        """The input (batched, in its layout) zero-extended to ext_shape when the plan needs it."""
        a = batched_contiguous(self.x, self.unbatched, self.be.xp)
        if self.ext_shape != self.shape:
            widths = [(0, 0)] * a.ndim
            for axis, n, e in zip(self.spatial_axes(), self.shape[2:], self.ext_shape[2:]):
                widths[axis] = (0, e - n)
            a = self.be.xp.pad(a, widths)
        return a.reshape(self.phys(self.ext_shape))

    def w5(self) -> Any:
        return self.be.xp.ascontiguousarray(self.w).reshape(self.w_shape5)

    def user_shape(self, ncs: Any) -> Tuple[int, ...]:
        return user_shape(ncs, self.unbatched, self.last)


def _conv_transpose(
    rank: int,
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: Any = 1,
    dilation: Any = 1,
    data_format: Any = None,
    *,
    weight_format: Any = None,
    out: Any = None,
) -> Any:
    t = _ConvTransposeCall(
        rank,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        data_format,
        weight_format,
        out=out,
    )
    with t.be.scope():
        y = _result_buffer(t, out)
        y5 = y.reshape(t.phys(t.y_shape))
        b = None if t.b is None else t.be.xp.ascontiguousarray(t.b)
        t.be.kernels.conv_backward_data(t.x_extended(), t.w5(), y5, t.args, bias=b)
    return y if out is None else out


def _conv_transpose_backward(
    rank: int,
    grad_output: Any,
    input: Any,
    weight: Any,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: Any = 1,
    dilation: Any = 1,
    data_format: Any = None,
    *,
    weight_format: Any = None,
    output_mask: Any = (True, True, True),
) -> Tuple[Any, Any, Any]:
    want_dx, want_dw, want_db = _output_mask(output_mask)
    t = _ConvTransposeCall(
        rank,
        input,
        weight,
        None,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        data_format,
        weight_format,
        grad_output=grad_output,
    )
    dy = _grad_output(t, grad_output, t.user_shape(t.y_shape)).reshape(t.phys(t.y_shape))
    be = t.be
    gx = gw = gb = None
    with be.scope():
        if want_dx:
            gx = be.empty(t.phys(t.ext_shape), t.dtype)
            be.kernels.conv_forward(dy, t.w5(), None, gx, t.args)
            gx = gx.reshape(user_shape(t.ext_shape, False, t.last))
            if t.ext_shape != t.shape:
                crop = [slice(None)] * gx.ndim
                for axis, n in zip(t.spatial_axes(), t.shape[2:]):
                    crop[axis] = slice(0, n)
                gx = be.xp.ascontiguousarray(gx[tuple(crop)])
            gx = gx[0] if t.unbatched else gx
        if want_dw:
            gw = be.empty(t.w_shape5, t.dtype)
            be.kernels.conv_backward_weight(t.x_extended(), dy, gw, t.args)
            gw = gw.reshape(t.w.shape)
            if t.spatial_first_weight:
                gw = weight_from_channels_first(gw, rank, be.xp)
        if want_db:
            gb = be.empty((t.y_shape[1],), t.dtype)
            be.kernels.channel_sum(dy, gb, t.last)
    return gx, gw, gb
