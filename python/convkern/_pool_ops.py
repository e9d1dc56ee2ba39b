"""Pooling: argument parsing and the calls into the kernels, for every rank.

The public, per-rank functions (``max_pool2d`` ...) are generated from these in ``functional.py``.
"""
from __future__ import annotations

from typing import Tuple

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


class _PoolCall:
    """A parsed, validated pooling call: the input as (planes, D, H, W) and the geometry."""

    def __init__(self, rank, input, kernel_size, stride, padding, dilation, ceil_mode, data_format,
                 name="input"):
        reject_cuda(**{name: input})
        x = as_float_array(input, name)
        self.last = data_format_is_last(data_format, rank)
        shape, self.unbatched = ncs_shape(x, rank, name, self.last)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
        k = int_tuple(kernel_size, rank, "kernel_size")
        s = k if stride is None else int_tuple(stride, rank, "stride")
        d = int_tuple(dilation, rank, "dilation")
        self.same_or_valid = isinstance(padding, str)
        if self.same_or_valid:
            if padding == "valid":
                before = after = [0] * rank
            elif padding == "same":
                pairs = [_C.same_padding(i, kk, ss, dd) for i, kk, ss, dd in zip(shape[2:], k, s, d)]
                before, after = [p[0] for p in pairs], [p[1] for p in pairs]
            else:
                raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
        else:
            before = after = list(int_tuple(padding, rank, "padding"))
        self.rank, self.x, self.dtype, self.shape = rank, x, x.dtype, shape
        self.planes = shape[0] * shape[1]
        self.args = (pad3(k, rank, 1), pad3(s, rank, 1), pad3(before, rank, 0), pad3(after, rank, 0),
                     pad3(d, rank, 1), bool(ceil_mode), self.same_or_valid)
        out3 = _C.pool_output_shape(rank, self.planes, pad3(shape[2:], rank, 1), *self.args)
        self.y_shape = tuple(shape[:2]) + tuple(out3[3 - rank:])
        self.in4 = (self.planes,) + tuple(pad3(shape[2:], rank, 1))
        self.out4 = (self.planes,) + tuple(out3)

    def x4(self) -> np.ndarray:
        return to_ncs(self.x, self.unbatched, self.last).reshape(self.in4)

    def user_shape(self, ncs) -> tuple:
        return user_shape(ncs, self.unbatched, self.last)

    def to_planes(self, a: np.ndarray) -> np.ndarray:
        return to_ncs(a, self.unbatched, self.last).reshape(self.out4)

    def from_planes(self, a4: np.ndarray, ncs_shape_: tuple) -> np.ndarray:
        return restore_layout(a4.reshape(ncs_shape_), self.unbatched, self.last)

    def check_grad_output(self, grad_output) -> np.ndarray:
        reject_cuda(grad_output=grad_output)
        dy = as_float_array(grad_output, "grad_output")
        same_dtype(self.x, "input", grad_output=dy)
        expected = self.user_shape(self.y_shape)
        if dy.shape != expected:
            raise ValueError(f"grad_output has shape {dy.shape}, but the forward output has shape {expected}")
        return self.to_planes(dy)


def _extremum_indices(p: _PoolCall, indices) -> np.ndarray:
    """The forward's indices, checked for type and shape (their values are checked by _C)."""
    reject_cuda(indices=indices)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray of int64, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must have dtype int64, got {indices.dtype}")
    expected = p.user_shape(p.y_shape)
    if indices.shape != expected:
        raise ValueError(f"indices has shape {indices.shape}, but the forward output has shape {expected}")
    return p.to_planes(indices)


def _extremum_pool(is_min, rank, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   return_indices=False, data_format=None, *, out=None):
    reject_cuda(out=out)
    p = _PoolCall(rank, input, kernel_size, stride, padding, dilation, ceil_mode, data_format)
    if out is not None:
        check_out(out, p.user_shape(p.y_shape), p.dtype, "out", (p.x,))
    y = ncs_out(out, p.y_shape, p.dtype, p.last).reshape(p.out4)
    idx = np.empty(p.out4, np.int64) if return_indices else None
    _C.extremum_pool_forward(p.x4(), y, idx, *p.args, is_min, rank)
    values = result(y.reshape(p.y_shape), p.unbatched, p.last, out)
    if return_indices:
        return values, p.from_planes(idx, p.y_shape)
    return values


def _extremum_pool_backward(is_min, rank, grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, data_format=None, indices=None):
    p = _PoolCall(rank, input, kernel_size, stride, padding, dilation, ceil_mode, data_format)
    dy = p.check_grad_output(grad_output)
    if indices is None:
        idx = np.empty(p.out4, np.int64)
        _C.extremum_pool_forward(p.x4(), np.empty(p.out4, p.dtype), idx, *p.args, is_min, rank)
    else:
        idx = _extremum_indices(p, indices)
    dx = np.empty(p.in4, p.dtype)
    _C.extremum_pool_backward(dy, idx, dx, *p.args, rank)
    return p.from_planes(dx, p.shape)


def _avg_options(count_include_pad, divisor_override) -> Tuple[bool, int]:
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    if divisor_override is None:
        return bool(count_include_pad), 0
    d = as_int(divisor_override, "divisor_override")
    if d == 0:
        raise ValueError("divisor_override must be non-zero, got 0")
    return bool(count_include_pad), d


def _avg_pool(rank, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None, data_format=None, *, out=None):
    reject_cuda(out=out)
    p = _PoolCall(rank, input, kernel_size, stride, padding, 1, ceil_mode, data_format)
    opts = _avg_options(count_include_pad, divisor_override)
    if out is not None:
        check_out(out, p.user_shape(p.y_shape), p.dtype, "out", (p.x,))
    y = ncs_out(out, p.y_shape, p.dtype, p.last).reshape(p.out4)
    k, s, pb, pa, _, ceil, sov = p.args
    _C.avg_pool_forward(p.x4(), y, k, s, pb, pa, ceil, sov, *opts, rank)
    return result(y.reshape(p.y_shape), p.unbatched, p.last, out)


def _avg_pool_backward(rank, grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, data_format=None):
    p = _PoolCall(rank, input, kernel_size, stride, padding, 1, ceil_mode, data_format)
    opts = _avg_options(count_include_pad, divisor_override)
    dy = p.check_grad_output(grad_output)
    dx = np.empty(p.in4, p.dtype)
    k, s, pb, pa, _, ceil, sov = p.args
    _C.avg_pool_backward(dy, dx, k, s, pb, pa, ceil, sov, *opts, rank)
    return p.from_planes(dx, p.shape)


# Global pooling is pooling with one window that covers the whole input plane.

def _global_call(rank, input, data_format) -> _PoolCall:
    reject_cuda(input=input)
    x = as_float_array(input, "input")
    shape, _ = ncs_shape(x, rank, "input", data_format_is_last(data_format, rank))
    return _PoolCall(rank, x, tuple(shape[2:]), None, 0, 1, False, data_format)


def _global_shape(p: _PoolCall, keepdims: bool) -> tuple:
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"keepdims must be a bool, got {keepdims!r}")
    return p.user_shape(p.y_shape) if keepdims else p.user_shape(p.y_shape)[: (1 if p.unbatched else 2)]


def _global_pool(kind, rank, input, keepdims=False, data_format=None, *, out=None):
    reject_cuda(out=out)
    p = _global_call(rank, input, data_format)
    shape = _global_shape(p, keepdims)
    if out is not None:
        check_out(out, shape, p.dtype, "out", (p.x,))
    y = np.empty(p.out4, p.dtype) if out is None else out.reshape(p.out4)
    if kind == "avg":
        _C.avg_pool_forward(p.x4(), y, *p.args[:4], False, False, True, 0, rank)
    else:
        _C.extremum_pool_forward(p.x4(), y, None, *p.args, kind == "min", rank)
    return y.reshape(shape) if out is None else out


def _global_pool_backward(kind, rank, grad_output, input, keepdims=False, data_format=None):
    p = _global_call(rank, input, data_format)
    shape = _global_shape(p, keepdims)
    reject_cuda(grad_output=grad_output)
    dy = as_float_array(grad_output, "grad_output")
    same_dtype(p.x, "input", grad_output=dy)
    if dy.shape != shape:
        raise ValueError(f"grad_output has shape {dy.shape}, but the forward output has shape {shape}")
    dy4 = np.ascontiguousarray(dy).reshape(p.out4)
    dx = np.empty(p.in4, p.dtype)
    if kind == "avg":
        _C.avg_pool_backward(dy4, dx, *p.args[:4], False, False, True, 0, rank)
    else:
        idx = np.empty(p.out4, np.int64)
        _C.extremum_pool_forward(p.x4(), np.empty(p.out4, p.dtype), idx, *p.args, kind == "min", rank)
        _C.extremum_pool_backward(dy4, idx, dx, *p.args, rank)
    return p.from_planes(dx, p.shape)
