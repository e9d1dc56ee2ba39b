"""Pooling: argument parsing and the calls into the kernels, for every rank and both layouts.

The public, per-rank functions (``max_pool2d`` ...) are generated from these in ``functional.py``.
Arrays reach the kernels C-contiguous and 5-D in the op's own layout, (N, C, D, H, W) or
(N, D, H, W, C): channels-last is computed by channels-last kernels, never through a transposed copy.
Every call runs where its arrays are (``_backend``): NumPy arrays on the CPU kernels, CUDA arrays
on the CUDA kernels.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from . import _C
from ._args import (
    _FLOAT_DTYPES,
    as_int,
    data_format_is_last,
    int_tuple,
    ncs_shape,
    pad3,
    same_dtype,
    user_shape,
)
from ._backend import backend_for


def _shape5(shape_ncs: Any, rank: int, last: bool) -> Tuple[int, ...]:
    """(N, C, *spatial) -> the 5-D shape the kernels take: unit leading spatial axes, the op's layout."""
    n, c, spatial = shape_ncs[0], shape_ncs[1], tuple(pad3(shape_ncs[2:], rank, 1))
    return (n,) + spatial + (c,) if last else (n, c) + spatial


class _Activations:
    """The input of a pooling call, parsed: its (N, C, *spatial) shape and layout, the shapes the
    kernels see and where it runs (``be``, from every array of the call: ``device_arrays`` names the
    others, e.g. grad_output, indices, out). Subclasses size the output."""

    def __init__(self, rank: Any, input: Any, data_format: Any, name: Any = "input", **device_arrays: Any) -> None:
        self.be = backend_for(**{name: input}, **device_arrays)
        x = self.be.as_float_array(input, name)
        self.last = data_format_is_last(data_format, rank)
        self.shape, self.unbatched = ncs_shape(x, rank, name, self.last)
        self.rank, self.x, self.dtype = rank, x, x.dtype
        self.in5 = _shape5(self.shape, rank, self.last)

    def _set_output(self, out3: Any) -> None:
        self.y_shape = tuple(self.shape[:2]) + tuple(out3[3 - self.rank :])
        self.out5 = _shape5(self.y_shape, self.rank, self.last)

    def _as5(self, a: Any, shape5: Tuple[int, ...]) -> Any:
        """`a` as a C-contiguous array of `shape5`: a view when it already is C-contiguous, else one
        copy that keeps its layout."""
        return self.be.xp.ascontiguousarray(a).reshape(shape5)

    def x5(self) -> Any:
        return self._as5(self.x, self.in5)

    def user_shape(self, ncs: Any) -> Tuple[int, ...]:
        return user_shape(ncs, self.unbatched, self.last)

    def output(self, out: Any, shape: Any = None) -> Any:
        """Where the kernel writes: the caller's `out` itself (checked), else a new array."""
        if out is None:
            return self.be.empty(self.out5, self.dtype)
        self.be.check_out(out, self.user_shape(self.y_shape) if shape is None else shape, self.dtype, "out", (self.x,))
        return self.be.xp.asarray(out).reshape(self.out5)

    def finish(self, y5: Any, out: Any) -> Any:
        return y5.reshape(self.user_shape(self.y_shape)) if out is None else out

    def new_indices(self) -> Any:
        return self.be.empty(self.out5, np.int64)

    def check_grad_output(self, grad_output: Any, expected: Any = None) -> Any:
        dy = self.be.as_float_array(grad_output, "grad_output")
        same_dtype(self.x, "input", grad_output=dy)
        expected = self.user_shape(self.y_shape) if expected is None else expected
        if dy.shape != expected:
            raise ValueError(f"grad_output has shape {dy.shape}, but the forward output has shape {expected}")
        return self._as5(dy, self.out5)

    def check_indices(self, indices: Any) -> Any:
        """The forward's indices, checked for type and shape (their values are checked by the kernels)."""
        if not self.be.is_array(indices):
            raise TypeError(f"indices must be a {self.be.array_type()} of int64, got {type(indices).__name__}")
        if self.be.name == "cuda":
            indices = self.be.xp.asarray(indices)
        if indices.dtype != np.int64:
            raise TypeError(f"indices must have dtype int64, got {indices.dtype}")
        expected = self.user_shape(self.y_shape)
        if indices.shape != expected:
            raise ValueError(f"indices has shape {indices.shape}, but the forward output has shape {expected}")
        return self._as5(indices, self.out5)

    def grad_input(self) -> Any:
        return self.be.empty(self.in5, self.dtype)

    def finish_grad(self, dx5: Any) -> Any:
        return dx5.reshape(self.user_shape(self.shape))


class _PoolCall(_Activations):
    """A parsed, validated sliding-window pooling call."""

    def __init__(
        self,
        rank: Any,
        input: Any,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        ceil_mode: Any,
        data_format: Any,
        name: Any = "input",
        **device_arrays: Any,
    ) -> None:
        super().__init__(rank, input, data_format, name, **device_arrays)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
        k = int_tuple(kernel_size, rank, "kernel_size")
        # An empty stride means the default (the kernel size), as in PyTorch's pooling.
        empty_stride = isinstance(stride, (list, tuple)) and len(stride) == 0
        s = k if stride is None or empty_stride else int_tuple(stride, rank, "stride")
        d = int_tuple(dilation, rank, "dilation")
        self.same_or_valid = isinstance(padding, str)
        if self.same_or_valid:
            if padding == "valid":
                before = after = [0] * rank
            elif padding == "same":
                pairs = [_C.same_padding(i, kk, ss, dd) for i, kk, ss, dd in zip(self.shape[2:], k, s, d)]
                before, after = [p[0] for p in pairs], [p[1] for p in pairs]
            else:
                raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
        else:
            before = after = list(int_tuple(padding, rank, "padding"))
        self.args = (
            pad3(k, rank, 1),
            pad3(s, rank, 1),
            pad3(before, rank, 0),
            pad3(after, rank, 0),
            pad3(d, rank, 1),
            bool(ceil_mode),
            self.same_or_valid,
        )
        self._set_output(
            _C.pool_output_shape(rank, self.shape[0], self.shape[1], pad3(self.shape[2:], rank, 1), *self.args)
        )

    def avg_args(self) -> Tuple[Any, ...]:
        """The arguments of the average-pooling kernels (no dilation)."""
        k, s, pb, pa, _, ceil, sov = self.args
        return k, s, pb, pa, ceil, sov


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _extremum_pool(
    is_min: bool,
    rank: int,
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: Any = False,
    return_indices: Any = False,
    data_format: Any = None,
    *,
    out: Any = None,
) -> Any:
    return_indices = _check_bool(return_indices, "return_indices")
    p = _PoolCall(rank, input, kernel_size, stride, padding, dilation, ceil_mode, data_format, out=out)
    with p.be.scope():
        y = p.output(out)
        idx = p.new_indices() if return_indices else None
        p.be.kernels.extremum_pool_forward(p.x5(), y, idx, *p.args, is_min, rank, p.last)
    values = p.finish(y, out)
    if return_indices:
        assert idx is not None
        return values, idx.reshape(p.user_shape(p.y_shape))
    return values


def _extremum_pool_backward(
    is_min: Any,
    rank: Any,
    grad_output: Any,
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: Any = False,
    data_format: Any = None,
    indices: Any = None,
) -> Any:
    p = _PoolCall(
        rank,
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        data_format,
        grad_output=grad_output,
        indices=indices,
    )
    dy = p.check_grad_output(grad_output)
    with p.be.scope():
        if indices is None:
            idx = p.new_indices()
            p.be.kernels.extremum_pool_forward(p.x5(), p.be.empty(p.out5, p.dtype), idx, *p.args, is_min, rank, p.last)
        else:
            idx = p.check_indices(indices)
        dx = p.grad_input()
        p.be.kernels.extremum_pool_backward(dy, idx, dx, *p.args, rank, p.last, validate=indices is not None)
    return p.finish_grad(dx)


def _avg_options(count_include_pad: Any, divisor_override: Any) -> Tuple[bool, int]:
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    if divisor_override is None:
        return bool(count_include_pad), 0
    d = as_int(divisor_override, "divisor_override")
    if d == 0:
        raise ValueError("divisor_override must be non-zero, got 0")
    return bool(count_include_pad), d


def _avg_pool(
    rank: Any,
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: Any = False,
    count_include_pad: Any = True,
    divisor_override: Any = None,
    data_format: Any = None,
    *,
    out: Any = None,
) -> Any:
    p = _PoolCall(rank, input, kernel_size, stride, padding, 1, ceil_mode, data_format, out=out)
    opts = _avg_options(count_include_pad, divisor_override)
    with p.be.scope():
        y = p.output(out)
        p.be.kernels.avg_pool_forward(p.x5(), y, *p.avg_args(), *opts, rank, p.last)
    return p.finish(y, out)


def _avg_pool_backward(
    rank: Any,
    grad_output: Any,
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: Any = False,
    count_include_pad: Any = True,
    divisor_override: Any = None,
    data_format: Any = None,
) -> Any:
    p = _PoolCall(rank, input, kernel_size, stride, padding, 1, ceil_mode, data_format, grad_output=grad_output)
    opts = _avg_options(count_include_pad, divisor_override)
    dy = p.check_grad_output(grad_output)
    with p.be.scope():
        dx = p.grad_input()
        p.be.kernels.avg_pool_backward(dy, dx, *p.avg_args(), *opts, rank, p.last)
    return p.finish_grad(dx)


# Global pooling is pooling with one window that covers the whole input plane.


class _GlobalCall(_PoolCall):
    """A global pooling call: the sliding-window call whose one window is the whole plane. Its
    window arguments follow from the input alone, so none is parsed: a global pool ends a network
    on a small plane (7 x 7), where the argument handling is a good part of the call."""

    def __init__(self, rank: int, input: Any, data_format: Any, **device_arrays: Any) -> None:
        _Activations.__init__(self, rank, input, data_format, **device_arrays)
        if min(self.shape[2:]) == 0:
            # Checked here: the window is the whole plane, so a kernel-size message would name an
            # argument the caller never gave.
            raise ValueError(
                f"global pooling needs a non-empty spatial extent, got input of shape {tuple(self.x.shape)}"
            )
        plane = pad3(self.shape[2:], rank, 1)
        self.same_or_valid = False
        self.args = (plane, plane, [0, 0, 0], [0, 0, 0], [1, 1, 1], False, False)
        self._set_output((1, 1, 1))


def _global_call(rank: int, input: Any, data_format: Any, **device_arrays: Any) -> _PoolCall:
    return _GlobalCall(rank, input, data_format, **device_arrays)


def _global_shape(p: _PoolCall, keepdims: bool) -> Tuple[int, ...]:
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"keepdims must be a bool, got {keepdims!r}")
    if keepdims:
        return p.user_shape(p.y_shape)
    return tuple(p.shape[1:2] if p.unbatched else p.shape[:2])  # (N, C) whatever the layout


_NO_PADDING = [0, 0, 0]
_NO_DILATION = [1, 1, 1]


def _global_pool_host(kind: str, rank: int, x: np.ndarray, data_format: Any) -> Any:
    """The common global pooling call, a batched NumPy float array to a new (N, C) result, without
    the general path's objects: a global pool ends a network on a small plane, where that argument
    handling was ~7 us of a ~40 us call (resnet50.gap). None for any other call, which the general
    path then checks and serves."""
    shape = x.shape
    if len(shape) != rank + 2 or x.dtype not in _FLOAT_DTYPES or not x.dtype.isnative or 0 in shape:
        return None
    last = data_format_is_last(data_format, rank)
    n, c = (shape[0], shape[-1]) if last else (shape[0], shape[1])
    plane = [1] * (3 - rank) + list(shape[1:-1] if last else shape[2:])
    x5 = np.ascontiguousarray(x).reshape(((n,) + tuple(plane) + (c,)) if last else ((n, c) + tuple(plane)))
    y = np.empty((n, c), x.dtype)
    y5 = y.reshape((n, 1, 1, 1, c) if last else (n, c, 1, 1, 1))
    if kind == "avg":
        _C.avg_pool_forward(x5, y5, plane, plane, _NO_PADDING, _NO_PADDING, False, False, True, 0, rank, last)
    else:
        _C.extremum_pool_forward(
            x5, y5, None, plane, plane, _NO_PADDING, _NO_PADDING, _NO_DILATION, False, False, kind == "min", rank, last
        )
    return y


def _global_pool(
    kind: Any, rank: Any, input: Any, keepdims: Any = False, data_format: Any = None, *, out: Any = None
) -> Any:
    if out is None and keepdims is False and type(input) is np.ndarray:
        y = _global_pool_host(kind, rank, input, data_format)
        if y is not None:
            return y
    p = _global_call(rank, input, data_format, out=out)
    shape = _global_shape(p, keepdims)
    # (N, C) and (N, 1, .., C) or (N, C, 1, ..) are the same memory: out is written in place.
    with p.be.scope():
        y = p.output(out, shape)
        if kind == "avg":
            p.be.kernels.avg_pool_forward(p.x5(), y, *p.avg_args(), True, 0, rank, p.last)
        else:
            p.be.kernels.extremum_pool_forward(p.x5(), y, None, *p.args, kind == "min", rank, p.last)
    return y.reshape(shape) if out is None else out


def _global_pool_backward(
    kind: Any, rank: Any, grad_output: Any, input: Any, keepdims: Any = False, data_format: Any = None
) -> Any:
    p = _global_call(rank, input, data_format, grad_output=grad_output)
    dy = p.check_grad_output(grad_output, _global_shape(p, keepdims))
    k = p.be.kernels
    with p.be.scope():
        dx = p.grad_input()
        if kind == "avg":
            k.avg_pool_backward(dy, dx, *p.avg_args(), True, 0, rank, p.last)
        else:
            idx = p.new_indices()
            k.extremum_pool_forward(p.x5(), p.be.empty(p.out5, p.dtype), idx, *p.args, kind == "min", rank, p.last)
            k.extremum_pool_backward(dy, idx, dx, *p.args, rank, p.last, validate=False)
    return p.finish_grad(dx)


# Adaptive pooling: output cell i of an axis pools input cells [floor(i*in/out), ceil((i+1)*in/out)).


class _AdaptiveCall(_Activations):
    """A parsed, validated adaptive pooling call."""

    def __init__(
        self, rank: Any, input: Any, output_size: Any, data_format: Any, name: Any = "input", **device_arrays: Any
    ) -> None:
        super().__init__(rank, input, data_format, name, **device_arrays)
        if output_size is None or not isinstance(output_size, (list, tuple)):
            output_size = (output_size,) * rank
        if len(output_size) != rank:
            raise ValueError(f"output_size must be an int or a tuple of {rank} ints or Nones, got {output_size!r}")
        # None keeps that axis's input size (PyTorch).
        sizes = [n if o is None else as_int(o, "output_size") for o, n in zip(output_size, self.shape[2:])]
        self._set_output(
            _C.adaptive_pool_output_shape(
                rank, self.shape[0], self.shape[1], pad3(self.shape[2:], rank, 1), pad3(sizes, rank, 1)
            )
        )


def _adaptive_avg_pool(rank: Any, input: Any, output_size: Any, data_format: Any = None, *, out: Any = None) -> Any:
    a = _AdaptiveCall(rank, input, output_size, data_format, out=out)
    with a.be.scope():
        y = a.output(out)
        a.be.kernels.adaptive_avg_pool_forward(a.x5(), y, rank, a.last)
    return a.finish(y, out)


def _adaptive_avg_pool_backward(
    rank: Any, grad_output: Any, input: Any, output_size: Any, data_format: Any = None
) -> Any:
    a = _AdaptiveCall(rank, input, output_size, data_format, grad_output=grad_output)
    dy = a.check_grad_output(grad_output)
    with a.be.scope():
        dx = a.grad_input()
        a.be.kernels.adaptive_avg_pool_backward(dy, dx, rank, a.last)
    return a.finish_grad(dx)


def _adaptive_max_pool(
    rank: int, input: Any, output_size: Any, return_indices: Any = False, data_format: Any = None, *, out: Any = None
) -> Any:
    return_indices = _check_bool(return_indices, "return_indices")
    a = _AdaptiveCall(rank, input, output_size, data_format, out=out)
    with a.be.scope():
        y = a.output(out)
        idx = a.new_indices() if return_indices else None
        a.be.kernels.adaptive_max_pool_forward(a.x5(), y, idx, rank, a.last)
    values = a.finish(y, out)
    if return_indices:
        assert idx is not None
        return values, idx.reshape(a.user_shape(a.y_shape))
    return values


def _adaptive_max_pool_backward(
    rank: Any, grad_output: Any, input: Any, output_size: Any, data_format: Any = None, indices: Any = None
) -> Any:
    a = _AdaptiveCall(rank, input, output_size, data_format, grad_output=grad_output, indices=indices)
    dy = a.check_grad_output(grad_output)
    k = a.be.kernels
    with a.be.scope():
        if indices is None:
            idx = a.new_indices()
            k.adaptive_max_pool_forward(a.x5(), a.be.empty(a.out5, a.dtype), idx, rank, a.last)
        else:
            idx = a.check_indices(indices)
        dx = a.grad_input()
        k.adaptive_max_pool_backward(dy, idx, dx, rank, a.last, validate=indices is not None)
    return a.finish_grad(dx)
