"""convkern's operators: convolution and pooling, forward and backward, in 1-D, 2-D and 3-D.

Each public function (``conv2d``, ``max_pool2d_backward``, ...) is a thin layer over one
rank-generic implementation below: parse the arguments, let ``csrc/shape.h`` (through ``_C``)
check them and size the result, allocate, and call the kernel with the GIL released. Nothing is
allocated or written before every check has passed.

Semantics are PyTorch's (``torch.nn.functional``) with the additions of ``../SPEC.md``:
TensorFlow ``"same"`` padding at any stride, asymmetric padding, min pooling, global pooling,
``out=``, and NumPy arrays in and out — or CUDA arrays (CuPy, or anything with
``__cuda_array_interface__``/``__dlpack__`` on a GPU), computed by convkern's CUDA kernels and
returned as CuPy arrays on the input's device.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Tuple

from ._args import CHANNELS_FIRST, CHANNELS_LAST
from ._conv_ops import _conv, _conv_backward, _conv_transpose, _conv_transpose_backward
from ._pool_ops import (
    _adaptive_avg_pool,
    _adaptive_avg_pool_backward,
    _adaptive_max_pool,
    _adaptive_max_pool_backward,
    _avg_pool,
    _avg_pool_backward,
    _extremum_pool,
    _extremum_pool_backward,
    _global_pool,
    _global_pool_backward,
)

__all__: List[str] = []  # filled by _export below


# --------------------------------------------------------------------------------------------
# The public functions, one per rank, generated from the implementations above
# --------------------------------------------------------------------------------------------

_P = inspect.Parameter


def _export(name: str, impl: Callable, bound: tuple, params: List[Tuple[str, Any]], doc: str, rank: int) -> None:
    def op(*args, **kwargs):
        return impl(*bound, *args, **kwargs)

    sig_params = []
    for pname, default in params:
        if pname in _KEYWORD_ONLY:
            sig_params.append(_P(pname, _P.KEYWORD_ONLY, default=default))
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
_KEYWORD_ONLY = ("out", "output_mask")
_CONV = [("input", _E), ("weight", _E), ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1),
         ("groups", 1), ("padding_mode", "zeros"), ("data_format", None), ("out", None)]
_CONV_BWD = [("grad_output", _E), ("input", _E), ("weight", _E), ("stride", 1), ("padding", 0), ("dilation", 1),
             ("groups", 1), ("padding_mode", "zeros"), ("data_format", None), ("output_mask", (True, True, True))]
_CONVT = [("input", _E), ("weight", _E), ("bias", None), ("stride", 1), ("padding", 0), ("output_padding", 0),
          ("groups", 1), ("dilation", 1), ("data_format", None), ("out", None)]
_CONVT_BWD = [("grad_output", _E), ("input", _E), ("weight", _E), ("stride", 1), ("padding", 0),
              ("output_padding", 0), ("groups", 1), ("dilation", 1), ("data_format", None),
              ("output_mask", (True, True, True))]
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
_ADAPTIVE_AVG = [("input", _E), ("output_size", _E), ("data_format", None), ("out", None)]
_ADAPTIVE_AVG_BWD = [("grad_output", _E), ("input", _E), ("output_size", _E), ("data_format", None)]
_ADAPTIVE_MAX = [("input", _E), ("output_size", _E), ("return_indices", False), ("data_format", None),
                 ("out", None)]
_ADAPTIVE_MAX_BWD = [("grad_output", _E), ("input", _E), ("output_size", _E), ("data_format", None),
                     ("indices", None)]

_DOCS: Dict[str, str] = {
    "conv": """{rank}-D convolution (cross-correlation, as in every deep-learning framework).

    y[n, k, o] = bias[k] + sum over c in k's group and kernel offsets r of
                 x[n, c, o*stride - pad_before + r*dilation] * weight[k, c, r]

    input: ({cf}) or unbatched without N; weight: (C_out, C_in/groups, *kernel).
    padding: int, one int per axis, one (before, after) pair per axis, "valid", or "same"
    (TensorFlow rule at any stride: out = ceil(in / stride)). Output size per axis:
    floor((in + before + after - dilation*(k-1) - 1) / stride) + 1. data_format "{cf}"
    (default) or "{cl}". padding_mode "zeros", "reflect", "replicate" or "circular".
    out=: optional preallocated C-contiguous result.
    """,
    "conv_backward": """Gradients of conv{rank}d: returns (grad_input, grad_weight, grad_bias).

    Takes the forward's arrays and keywords. Bitwise deterministic, whatever the thread count.
    output_mask=(grad_input, grad_weight, grad_bias): which to compute (as in aten's
    convolution_backward); the others come back as None, e.g. (False, True, True) for a first
    layer, whose input needs no gradient.
    """,
    "conv_transpose": """{rank}-D transposed convolution (PyTorch semantics): the gradient of conv{rank}d with
    respect to its input, used to upsample.

    input: ({cf}) or unbatched; weight: (C_in, C_out/groups, *kernel). Output size per axis:
    (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1, with
    output_padding < max(stride, dilation). data_format "{cf}" (default) or "{cl}".
    """,
    "conv_transpose_backward": """Gradients of conv_transpose{rank}d: returns (grad_input, grad_weight, grad_bias).

    output_mask=(grad_input, grad_weight, grad_bias): which to compute; the others come back as None.
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
    "adaptive_avg": """Adaptive {rank}-D average pooling (PyTorch semantics): output cell i of an axis averages input
    cells floor(i*in/out) to ceil((i+1)*in/out) - 1.

    output_size: an int, or one int or None (keep the input size) per axis.
    """,
    "adaptive_avg_backward": """Gradient of adaptive {rank}-D average pooling with respect to its input.""",
    "adaptive_max": """Adaptive {rank}-D max pooling (PyTorch semantics): output cell i of an axis is the maximum of
    input cells floor(i*in/out) to ceil((i+1)*in/out) - 1; NaN propagates, ties go to the first element.

    output_size: an int, or one int or None (keep the input size) per axis. return_indices=True also
    returns int64 flat indices into each (n, c) plane of the input.
    """,
    "adaptive_max_backward": """Gradient of adaptive {rank}-D max pooling with respect to its input.

    indices=: the forward's indices, to skip recomputing them; each is bounds-checked.
    """,
}

for _r in (1, 2, 3):
    _export(f"conv{_r}d", _conv, (_r,), _CONV, _DOCS["conv"], _r)
    _export(f"conv{_r}d_backward", _conv_backward, (_r,), _CONV_BWD, _DOCS["conv_backward"], _r)
    _export(f"conv_transpose{_r}d", _conv_transpose, (_r,), _CONVT, _DOCS["conv_transpose"], _r)
    _export(f"conv_transpose{_r}d_backward", _conv_transpose_backward, (_r,), _CONVT_BWD,
            _DOCS["conv_transpose_backward"], _r)
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
    _export(f"adaptive_avg_pool{_r}d", _adaptive_avg_pool, (_r,), _ADAPTIVE_AVG, _DOCS["adaptive_avg"], _r)
    _export(f"adaptive_avg_pool{_r}d_backward", _adaptive_avg_pool_backward, (_r,), _ADAPTIVE_AVG_BWD,
            _DOCS["adaptive_avg_backward"], _r)
    _export(f"adaptive_max_pool{_r}d", _adaptive_max_pool, (_r,), _ADAPTIVE_MAX, _DOCS["adaptive_max"], _r)
    _export(f"adaptive_max_pool{_r}d_backward", _adaptive_max_pool_backward, (_r,), _ADAPTIVE_MAX_BWD,
            _DOCS["adaptive_max_backward"], _r)
del _r, _kind, _is_min
