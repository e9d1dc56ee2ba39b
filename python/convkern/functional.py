"""convkern's operators: convolution and pooling, forward and backward, in 1-D, 2-D and 3-D.

Each public function (``conv2d``, ``max_pool2d_backward``, ...) is a thin layer over one
rank-generic implementation below: parse the arguments, let ``csrc/shape.h`` (through ``_C``)
check them and size the result, allocate, and call the kernel with the GIL released. Nothing is
allocated or written before every check has passed.

Semantics are PyTorch's (``torch.nn.functional``) with the additions of ``../SPEC.md``:
TensorFlow ``"same"`` padding at any stride, asymmetric padding, min pooling, global pooling,
``out=`` and NumPy arrays in and out.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _C
from ._args import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    as_float_array,
    as_int,
    check_out,
    data_format_is_last,
    int_tuple,
    ncs_shape,
    pad3,
    reject_cuda,
    restore_layout,
    same_dtype,
    to_ncs,
    user_shape,
)

__all__: List[str] = []  # filled by _export below


# --------------------------------------------------------------------------------------------
# Shared parsing
# --------------------------------------------------------------------------------------------

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


def _result(y_ncs: np.ndarray, unbatched: bool, last: bool, out: Optional[np.ndarray]):
    if out is not None and not last:
        return out  # the kernel wrote into it
    y = restore_layout(y_ncs, unbatched, last)
    if out is None:
        return y
    out[...] = y
    return out


def _ncs_out(out: Optional[np.ndarray], shape_ncs: tuple, dtype, last: bool) -> np.ndarray:
    """Where the kernel writes: the caller's `out` itself when its layout allows, else a new array."""
    if out is not None and not last:
        return out.reshape(shape_ncs)
    return np.empty(shape_ncs, dtype)


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------

def _conv(rank, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
          data_format=None, *, out=None):
    reject_cuda(out=out)
    c = _ConvCall(rank, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format)
    if out is not None:
        check_out(out, c.user_shape(c.y_shape), c.dtype, "out", (c.x, c.w, c.b))
    y = _ncs_out(out, tuple(c.y_shape5), c.dtype, c.last)
    b = None if c.b is None else np.ascontiguousarray(c.b)
    _C.conv_forward(c.x5(), c.w5(), b, y, *c.geometry())
    return _result(y.reshape(c.y_shape), c.unbatched, c.last, out)


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


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------

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
    y = _ncs_out(out, p.y_shape, p.dtype, p.last).reshape(p.out4)
    idx = np.empty(p.out4, np.int64) if return_indices else None
    _C.extremum_pool_forward(p.x4(), y, idx, *p.args, is_min, rank)
    values = _result(y.reshape(p.y_shape), p.unbatched, p.last, out)
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
    y = _ncs_out(out, p.y_shape, p.dtype, p.last).reshape(p.out4)
    k, s, pb, pa, _, ceil, sov = p.args
    _C.avg_pool_forward(p.x4(), y, k, s, pb, pa, ceil, sov, *opts, rank)
    return _result(y.reshape(p.y_shape), p.unbatched, p.last, out)


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


# --------------------------------------------------------------------------------------------
# The public functions, one per rank, generated from the implementations above
# --------------------------------------------------------------------------------------------

_P = inspect.Parameter


def _export(name: str, impl: Callable, bound: tuple, params: List[Tuple[str, Any]], doc: str, rank: int) -> None:
    def op(*args, **kwargs):
        return impl(*bound, *args, **kwargs)

    sig_params = []
    for pname, default in params:
        if pname == "out":
            sig_params.append(_P("out", _P.KEYWORD_ONLY, default=None))
        elif default is _P.empty:
            sig_params.append(_P(pname, _P.POSITIONAL_OR_KEYWORD))
        else:
            sig_params.append(_P(pname, _P.POSITIONAL_OR_KEYWORD, default=default))
    op.__signature__ = inspect.Signature(sig_params)
    op.__name__ = op.__qualname__ = name
    op.__module__ = __name__
    op.__doc__ = doc.format(rank=rank, cf=CHANNELS_FIRST[rank], cl=CHANNELS_LAST[rank],
                            spatial=("W", "H, W", "D, H, W")[rank - 1])
    globals()[name] = op
    __all__.append(name)


_E = _P.empty
_CONV = [("input", _E), ("weight", _E), ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1),
         ("groups", 1), ("padding_mode", "zeros"), ("data_format", None), ("out", None)]
_CONV_BWD = [("grad_output", _E), ("input", _E), ("weight", _E), ("stride", 1), ("padding", 0), ("dilation", 1),
             ("groups", 1), ("padding_mode", "zeros"), ("data_format", None)]
_EXT = [("input", _E), ("kernel_size", _E), ("stride", None), ("padding", 0), ("dilation", 1),
        ("ceil_mode", False), ("return_indices", False), ("data_format", None), ("out", None)]
_EXT_BWD = [("grad_output", _E), ("input", _E), ("kernel_size", _E), ("stride", None), ("padding", 0),
            ("dilation", 1), ("ceil_mode", False), ("data_format", None), ("indices", None)]
_AVG = [("input", _E), ("kernel_size", _E), ("stride", None), ("padding", 0), ("ceil_mode", False),
        ("count_include_pad", True), ("divisor_override", None), ("data_format", None), ("out", None)]
_AVG_BWD = [("grad_output", _E), ("input", _E), ("kernel_size", _E), ("stride", None), ("padding", 0),
            ("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None), ("data_format", None)]
_GLOBAL = [("input", _E), ("keepdims", False), ("data_format", None), ("out", None)]
_GLOBAL_BWD = [("grad_output", _E), ("input", _E), ("keepdims", False), ("data_format", None)]

_DOCS: Dict[str, str] = {
    "conv": """{rank}-D convolution (cross-correlation, as in every deep-learning framework).

    y[n, k, o] = bias[k] + sum over c in k's group and kernel offsets r of
                 x[n, c, o*stride - pad_before + r*dilation] * weight[k, c, r]

    input: ({cf}) or unbatched without N; weight: (C_out, C_in/groups, *kernel).
    padding: int, one int per axis, one (before, after) pair per axis, "valid", or "same"
    (TensorFlow rule at any stride: out = ceil(in / stride)). Output size per axis:
    floor((in + before + after - dilation*(k-1) - 1) / stride) + 1. data_format "{cf}"
    (default) or "{cl}". out=: optional preallocated C-contiguous result.
    """,
    "conv_backward": """Gradients of conv{rank}d: returns (grad_input, grad_weight, grad_bias).

    Takes the forward's arrays and keywords. Bitwise deterministic, whatever the thread count.
    """,
    "max": """{rank}-D max pooling (PyTorch semantics; padded cells are never selected, NaN
    propagates, ties go to the first element in window order).

    return_indices=True also returns int64 flat indices into each (n, c) plane of the input.
    padding: int, one int per axis, "same" or "valid".
    """,
    "min": """{rank}-D min pooling: max pooling's rules with the order reversed.""",
    "ext_backward": """Gradient of {rank}-D max/min pooling with respect to its input.

    indices=: the forward's indices, to skip recomputing them; each is bounds-checked.
    """,
    "avg": """{rank}-D average pooling (PyTorch semantics for count_include_pad, divisor_override and
    ceil_mode; with padding="same"/"valid" the divisor is the number of in-bounds cells).
    """,
    "avg_backward": """Gradient of {rank}-D average pooling with respect to its input.""",
    "global": """Global {rank}-D pooling: one number per (n, c); keepdims keeps unit spatial axes.""",
    "global_backward": """Gradient of global {rank}-D pooling (max/min: to the first extreme element).""",
}

for _r in (1, 2, 3):
    _export(f"conv{_r}d", _conv, (_r,), _CONV, _DOCS["conv"], _r)
    _export(f"conv{_r}d_backward", _conv_backward, (_r,), _CONV_BWD, _DOCS["conv_backward"], _r)
    for _kind, _is_min in (("max", False), ("min", True)):
        _export(f"{_kind}_pool{_r}d", _extremum_pool, (_is_min, _r), _EXT, _DOCS[_kind], _r)
        _export(f"{_kind}_pool{_r}d_backward", _extremum_pool_backward, (_is_min, _r), _EXT_BWD,
                _DOCS["ext_backward"], _r)
    _export(f"avg_pool{_r}d", _avg_pool, (_r,), _AVG, _DOCS["avg"], _r)
    _export(f"avg_pool{_r}d_backward", _avg_pool_backward, (_r,), _AVG_BWD, _DOCS["avg_backward"], _r)
    for _kind in ("max", "avg", "min"):
        _export(f"global_{_kind}_pool{_r}d", _global_pool, (_kind, _r), _GLOBAL, _DOCS["global"], _r)
        _export(f"global_{_kind}_pool{_r}d_backward", _global_pool_backward, (_kind, _r), _GLOBAL_BWD,
                _DOCS["global_backward"], _r)
del _r, _kind, _is_min
