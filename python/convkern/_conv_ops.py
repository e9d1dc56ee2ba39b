"""Convolution: argument parsing and the calls into the kernels, for every rank.

The public, per-rank functions (``conv2d`` ...) are generated from these in ``functional.py``.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from . import _C
from ._args import (
    as_float_array,
    as_int,
    check_out,
    data_format_is_last,
    int_tuple,
    ncs_shape,
    ncs_out,
    pad3,
    reject_cuda,
    restore_layout,
    result,
    same_dtype,
    to_ncs,
    user_shape,
)


def _conv_padding(padding: Any, rank: int, in_sizes, kernel, stride, dilation) -> Tuple[list, list]:
    """Per-axis (before, after) padding from an int, per-axis ints or pairs, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * rank, [0] * rank
        if padding == "same":
            pairs = [_C.same_padding(i, k, s, d) for i, k, s, d in zip(in_sizes, kernel, stride, dilation)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (list, tuple)):
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


def _check_padding_mode(padding_mode: Any) -> None:
    if padding_mode != "zeros":
        if padding_mode in ("reflect", "replicate", "circular"):
            raise NotImplementedError(f"padding_mode={padding_mode!r} is not available yet; use 'zeros'")
        raise ValueError(
            f"padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got {padding_mode!r}"
        )


class _ConvCall:
    """A parsed, validated convolution call: arrays in (N, C, *spatial) form and the geometry."""

    def __init__(self, rank, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format):
        reject_cuda(input=input, weight=weight, bias=bias)
        x = as_float_array(input, "input")
        w = as_float_array(weight, "weight")
        b = None if bias is None else as_float_array(bias, "bias")
        same_dtype(x, "input", weight=w, bias=b)
        _check_padding_mode(padding_mode)
        self.last = data_format_is_last(data_format, rank)
        shape, self.unbatched = ncs_shape(x, rank, "input", self.last)
        if w.ndim != rank + 2:
            raise ValueError(
                f"weight must have {rank + 2} dimensions (out_channels, in_channels/groups, *kernel), "
                f"got shape {w.shape}"
            )
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},) (one per output channel), got {b.shape}")
        self.rank = rank
        self.groups = as_int(groups, "groups")
        self.stride = pad3(int_tuple(stride, rank, "stride"), rank, 1)
        self.dilation = pad3(int_tuple(dilation, rank, "dilation"), rank, 1)
        kernel = w.shape[2:]
        before, after = _conv_padding(padding, rank, shape[2:], kernel, self.stride[3 - rank:],
                                      self.dilation[3 - rank:])
        self.pad_before, self.pad_after = pad3(before, rank, 0), pad3(after, rank, 0)
        self.x_shape5 = list(shape[:2]) + pad3(shape[2:], rank, 1)
        self.w_shape5 = list(w.shape[:2]) + pad3(kernel, rank, 1)
        self.y_shape5 = _C.conv_output_shape(rank, self.x_shape5, self.w_shape5, self.stride, self.pad_before,
                                             self.pad_after, self.dilation, self.groups)
        self.y_shape = tuple(self.y_shape5[:2]) + tuple(self.y_shape5[5 - rank:])
        self.x, self.w, self.b, self.dtype = x, w, b, x.dtype

    def geometry(self) -> tuple:
        return (self.stride, self.pad_before, self.pad_after, self.dilation, self.groups, self.rank)

    def x5(self) -> np.ndarray:
        return to_ncs(self.x, self.unbatched, self.last).reshape(self.x_shape5)

    def w5(self) -> np.ndarray:
        return np.ascontiguousarray(self.w).reshape(self.w_shape5)

    def user_shape(self, ncs) -> tuple:
        return user_shape(ncs, self.unbatched, self.last)


def _conv(rank, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
          data_format=None, *, out=None):
    reject_cuda(out=out)
    c = _ConvCall(rank, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format)
    if out is not None:
        check_out(out, c.user_shape(c.y_shape), c.dtype, "out", (c.x, c.w, c.b))
    y = ncs_out(out, tuple(c.y_shape5), c.dtype, c.last)
    b = None if c.b is None else np.ascontiguousarray(c.b)
    _C.conv_forward(c.x5(), c.w5(), b, y, *c.geometry())
    return result(y.reshape(c.y_shape), c.unbatched, c.last, out)


def _conv_backward(rank, grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", data_format=None):
    reject_cuda(grad_output=grad_output)
    c = _ConvCall(rank, input, weight, None, stride, padding, dilation, groups, padding_mode, data_format)
    dy = as_float_array(grad_output, "grad_output")
    same_dtype(c.x, "input", grad_output=dy)
    expected = c.user_shape(c.y_shape)
    if dy.shape != expected:
        raise ValueError(f"grad_output has shape {dy.shape}, but the forward output has shape {expected}")
    dy5 = to_ncs(dy, c.unbatched, c.last).reshape(c.y_shape5)
    dx = np.empty(c.x_shape5, c.dtype)
    dw = np.empty(c.w_shape5, c.dtype)
    db = np.empty((c.w.shape[0],), c.dtype)
    _C.conv_backward(dy5, c.x5(), c.w5(), dx, dw, db, *c.geometry())
    x_shape = tuple(c.x_shape5[:2]) + tuple(c.x_shape5[5 - rank:])
    grad_input = restore_layout(dx.reshape(x_shape), c.unbatched, c.last)
    return grad_input, dw.reshape(c.w.shape), db
