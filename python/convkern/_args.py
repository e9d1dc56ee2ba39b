"""Argument normalisation shared by every op: arrays, dtypes, layouts and per-axis integers.

Everything here only *parses* what the caller wrote (an int or a tuple, ``"same"``, a layout
name); the numeric rules — positivity, output sizes, overflow — live in ``csrc/shape.h`` and are
reached through ``convkern._C`` so that there is one source of truth for every backend.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, str, Sequence[Union[int, Tuple[int, int]]]]

# Python ints wider than this cannot be int64 sizes; shape.h then checks products and sums.
_INT64_MAX = 2**63 - 1

CHANNELS_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order


ALIGNMENT = 64  # bytes: a cache line, one AVX-512 vector


def aligned_empty(shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)`` starting on a 64-byte boundary: a view into a slightly larger
    byte buffer. NumPy aligns its data to 16 bytes, so an AVX-512 kernel's every vector store into
    its arrays straddles two cache lines (mobilenet.dw3x3 NHWC forward: 0.41 ms into such an
    array, 0.28 into an aligned one; PyTorch's tensors are 64-byte aligned)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    aligned: np.ndarray = buffer[start : start + nbytes].view(dtype).reshape(shape)
    return aligned


def as_float_array(a: Any, name: str) -> Any:
    """Returns ``a`` as an ndarray of float32 or float64; anything else is a TypeError."""
    if type(a) is np.ndarray and a.dtype in _FLOAT_DTYPES and a.dtype.isnative:
        return a  # the common case, answered before the checks below (per-call overhead)
    if isinstance(a, np.ma.MaskedArray):
        # The kernels read every element: a mask would be silently ignored, so it is refused.
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray, whose mask convkern cannot honour; pass "
            f"{name}.filled(fill_value) (or {name}.data to ignore the mask)"
        )
    converted = not isinstance(a, np.ndarray)
    if converted:
        if isinstance(a, (str, bytes)) or a is None:
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array, got {type(a).__name__}: {exc}") from None
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8) and not a.dtype.isnative:
        native = a.dtype.newbyteorder("=").name
        fix = f"numpy.asarray({name}, dtype=numpy.{native})" if converted else f"{name}.astype(numpy.{native})"
        raise TypeError(f"{name} must be in native byte order, got dtype {a.dtype.str}; convert it with {fix}")
    if a.dtype not in (np.float32, np.float64):
        # Lists and other array-likes have no .astype: the hint must be one the caller can run.
        fix = f"numpy.asarray({name}, dtype=numpy.float32)" if converted else f"{name}.astype(numpy.float32)"
        hint = ""
        if a.dtype.kind in "biuc":
            hint = f"; convert it with {fix}"
        elif a.dtype == np.float16:
            # The CPU kernels are float32/float64 only; the CUDA kernels take float16 too.
            hint = (
                f"; float16 is supported on CUDA arrays only (e.g. cupy.asarray({name})): on the host, "
                f"convert it with {fix}"
            )
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}{hint}")
    return a


def same_dtype(ref: np.ndarray, ref_name: str, **others: Optional[np.ndarray]) -> None:
    for name, a in others.items():
        if a is not None and a.dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}: they must match")


def as_int(v: Any, name: str) -> int:
    if type(v) is int and -_INT64_MAX <= v <= _INT64_MAX:
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {v!r}")
    value = int(v)
    if abs(value) > _INT64_MAX:
        raise ValueError(f"{name} is too large: {value} does not fit in a 64-bit integer")
    return value


def int_tuple(v: Any, rank: int, name: str) -> Tuple[int, ...]:
    """An int (repeated) or one int per spatial axis; a 1-element tuple or list is repeated too, as
    PyTorch's ``_ntuple`` does, so ``stride=(2,)`` means 2 on every axis."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return (as_int(v[0], name),) * rank
        if len(v) != rank:
            raise ValueError(f"{name} must be an int or a tuple of {rank} ints, got {tuple(v)!r}")
        return tuple(as_int(e, name) for e in v)
    return (as_int(v, name),) * rank


def pad3(t: Sequence[int], rank: int, fill: int) -> List[int]:
    """Spatial tuple of `rank` entries -> the 3 entries the kernels use (leading axes unused)."""
    return [fill] * (3 - rank) + list(t)


def data_format_is_last(data_format: Optional[str], rank: int) -> bool:
    """Whether the activations are channels-last; Keras's names are accepted beside the layouts'."""
    if data_format is None or data_format in (CHANNELS_FIRST[rank], "channels_first"):
        return False
    if data_format in (CHANNELS_LAST[rank], "channels_last"):
        return True
    raise ValueError(
        f"data_format must be {CHANNELS_FIRST[rank]!r} (or 'channels_first') or {CHANNELS_LAST[rank]!r} "
        f"(or 'channels_last') for a {rank}-D op, got {data_format!r}"
    )


#: weight_format names per rank: the framework layout (output/input channels first, PyTorch's) and
#: the spatial-first layout of Keras and TensorFlow kernels.
WEIGHT_CHANNELS_FIRST = {1: "OIW", 2: "OIHW", 3: "OIDHW"}
WEIGHT_SPATIAL_FIRST = {1: "WIO", 2: "HWIO", 3: "DHWIO"}


def weight_is_spatial_first(weight_format: Optional[str], rank: int) -> bool:
    """Whether a convolution's weight comes as (*kernel, ..., ...) rather than (..., ..., *kernel)."""
    if weight_format is None or weight_format == WEIGHT_CHANNELS_FIRST[rank]:
        return False
    if weight_format == WEIGHT_SPATIAL_FIRST[rank]:
        return True
    raise ValueError(
        f"weight_format must be {WEIGHT_CHANNELS_FIRST[rank]!r} or {WEIGHT_SPATIAL_FIRST[rank]!r} for a "
        f"{rank}-D op, got {weight_format!r}"
    )


def weight_to_channels_first(w: Any, rank: int) -> Any:
    """A spatial-first kernel (*kernel, a, b) as the kernels read it, (b, a, *kernel): a view.

    Reversing the channel pair maps Keras's Conv kernel (kH, kW, C_in, C_out) to (C_out, C_in, kH, kW)
    and its ConvTranspose kernel (kH, kW, C_out, C_in) to (C_in, C_out, kH, kW): the same permutation
    serves both."""
    if w.ndim != rank + 2:
        return w  # the caller reports the wrong rank with the shape as given
    return w.transpose((rank + 1, rank) + tuple(range(rank)))


def weight_from_channels_first(w: Any, rank: int, xp: Any = np) -> Any:
    """The inverse of weight_to_channels_first, C-contiguous (gradients come back in the caller's format)."""
    return xp.ascontiguousarray(w.transpose(tuple(range(2, rank + 2)) + (1, 0)))


def ncs_shape(x: np.ndarray, rank: int, name: str, channels_last: bool) -> Tuple[Tuple[int, ...], bool]:
    """The (N, C, *spatial) shape of an input in either layout, and whether it was unbatched."""
    if x.ndim not in (rank + 1, rank + 2):
        layout = (CHANNELS_LAST if channels_last else CHANNELS_FIRST)[rank]
        raise ValueError(
            f"{name} must have {rank + 2} dimensions ({layout}) or {rank + 1} (unbatched), got shape {x.shape}"
        )
    unbatched = x.ndim == rank + 1
    s = tuple(([1] if unbatched else []) + [int(n) for n in x.shape])
    if channels_last:
        s = (s[0], s[-1]) + s[1:-1]
    return s, unbatched


def user_shape(shape_ncs: Sequence[int], unbatched: bool, channels_last: bool) -> Tuple[int, ...]:
    s = list(shape_ncs)
    if channels_last:
        s = [s[0]] + s[2:] + [s[1]]
    return tuple(s[1:] if unbatched else s)


def check_out(
    out: Any, shape: Tuple[int, ...], dtype: np.dtype, name: str = "out", inputs: Sequence[np.ndarray] = ()
) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        # A dtype mismatch is a TypeError everywhere else too.
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{name} must not share memory with an input")


def physical_shape(shape_ncs: Sequence[int], rank: int, channels_last: bool) -> Tuple[int, ...]:
    """The 5-D shape the kernels see: (N, C, D, H, W), or (N, D, H, W, C) when channels-last,
    with unit axes standing in for the spatial axes a lower-rank op does not have."""
    n, c, spatial = shape_ncs[0], shape_ncs[1], pad3(shape_ncs[2:], rank, 1)
    return tuple([n] + spatial + [c]) if channels_last else tuple([n, c] + spatial)


def batched_contiguous(x: Any, unbatched: bool, xp: Any = np) -> Any:
    """The array in its own layout, with an N axis, C-contiguous (a view when it already is);
    xp is the array's module (numpy or cupy)."""
    return xp.ascontiguousarray(x[None] if unbatched else x)
