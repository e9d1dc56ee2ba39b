"""The CUDA side of convkern's operators: CUDA arrays in, convkern's own CUDA kernels, CuPy arrays out.

This module is the GPU twin of ``convkern._C`` for the op layers (``_conv_ops``, ``_pool_ops``,
through ``_backend``): its kernel entry points take the same arguments in the same order as
``_C``'s, with ``cupy.ndarray`` operands instead of NumPy ones, and they run on the operands' device
and on CuPy's current stream for that device, without synchronising. Around them it provides what
an op needs to decide where it runs (``on_cuda``, which also raises the errors for CUDA arrays it
cannot serve and for host and CUDA arrays mixed in one call), to bring any CUDA array
(``__cuda_array_interface__`` or ``__dlpack__`` on a CUDA device, e.g. a PyTorch CUDA tensor) to CuPy
without a copy (``as_float_array``), and to check a caller's ``out=``.

Importing it never imports CuPy; CuPy is imported the first time a CUDA array is actually handled.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    from . import _cuda as _ext
except ImportError:  # a CPU-only build (no CUDA compiler at install time)
    _ext = None

# DLPack device types that are CUDA memory: kDLCUDA, kDLCUDAHost, kDLCUDAManaged.
_DLPACK_CUDA = (2, 3, 13)


# ---------------------------------------------------------------------------------- what exists


def built() -> bool:
    """Whether this build of convkern has the CUDA backend (convkern._cuda)."""
    return _ext is not None


def device_count() -> int:
    """Visible CUDA devices; 0 without a CUDA build, a driver or a device."""
    return _ext.device_count() if _ext is not None else 0


def _version(v: int) -> Optional[str]:
    return f"{v // 1000}.{v % 1000 // 10}" if v else None


def info() -> Dict[str, Any]:
    """The CUDA part of convkern.info(): build, architectures, versions, visible GPUs."""
    if _ext is None:
        return {"cuda": False, "cuda_architectures": [], "cuda_runtime": None, "cuda_driver": None, "gpus": []}
    gpus: List[str] = []
    for i in range(_ext.device_count()):
        try:
            p = _ext.device_properties(i)
            gpus.append(f"{p['name']} (sm_{p['compute_capability'][0]}{p['compute_capability'][1]})")
        except RuntimeError as exc:  # a device that cannot be queried is reported, not fatal
            gpus.append(f"device {i}: {exc}")
    return {
        "cuda": True,
        "cuda_architectures": list(_ext.architectures()),
        "cuda_runtime": _version(_ext.runtime_version()),
        "cuda_driver": _version(_ext.driver_version()),
        "gpus": gpus,
    }


# ------------------------------------------------------------------------------ arrays, devices


def is_cuda_array(a: Any) -> bool:
    """An array in CUDA memory: __cuda_array_interface__, or __dlpack__ on a CUDA device."""
    if a is None or isinstance(a, (str, bytes)):
        return False
    if hasattr(a, "__cuda_array_interface__"):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if callable(dev):
        try:
            return int(dev()[0]) in _DLPACK_CUDA
        except Exception:  # a broken __dlpack_device__ is simply not a CUDA array
            return False
    return False


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(
            "convkern needs CuPy to work on CUDA arrays, and CuPy is not installed: install the build matching "
            "your CUDA driver, e.g. pip install cupy-cuda13x (or cupy-cuda12x)"
        ) from exc
    return cupy


def _describe(a: Any) -> str:
    return f"{type(a).__module__}.{type(a).__name__}"


def require_available(name: str) -> None:
    """A RuntimeError for a CUDA array that cannot be served (no CUDA build, no device, no CuPy),
    saying which reason."""
    if _ext is None:
        raise RuntimeError(
            f"{name} is a CUDA array, but this build of convkern has no CUDA backend (it was installed "
            "without a CUDA compiler; convkern.info()['cuda'] is False); reinstall with nvcc on PATH, or move "
            "the array to the host with .get() / numpy.asarray"
        )
    if _ext.device_count() == 0:
        driver = _version(_ext.driver_version())
        why = "no CUDA driver was found" if driver is None else f"the CUDA {driver} driver reports no device"
        raise RuntimeError(f"{name} is a CUDA array, but no CUDA device is visible ({why})")


def on_cuda(**arrays: Any) -> bool:
    """Where an op runs: True when its arrays are CUDA arrays, False when they are host arrays.

    Raises, in this order: RuntimeError if any array is a CUDA array and this build or machine
    cannot run CUDA kernels (whatever the other arguments); TypeError naming both when host and
    CUDA arrays are mixed. None entries (absent optional arrays) are ignored."""
    given = {name: a for name, a in arrays.items() if a is not None}
    cuda = [name for name, a in given.items() if is_cuda_array(a)]
    if not cuda:
        return False
    require_available(cuda[0])
    host = [name for name in given if name not in cuda]
    if host:
        raise TypeError(
            f"{cuda[0]} is a CUDA array ({_describe(given[cuda[0]])}) but {host[0]} is not "
            f"({_describe(given[host[0]])}): every array of one call must be on the same device; move "
            f"{host[0]} with cupy.asarray() or {cuda[0]} with .get()"
        )
    return True


def as_cupy(a: Any, name: str):
    """A cupy.ndarray viewing the CUDA array `a` (no copy)."""
    cp = _cupy()
    if isinstance(a, cp.ndarray):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cp.asarray(a)
    if hasattr(a, "__dlpack__"):
        return cp.from_dlpack(a)
    raise TypeError(f"{name} must be a CUDA array, got {_describe(a)}")


def as_float_array(a: Any, name: str):
    """`a` as a float16, float32 or float64 cupy.ndarray; anything else is a TypeError.

    float16 is a CUDA-only dtype: the kernels compute it in float32 and round once to float16 when
    they store. bfloat16 is not supported: CuPy has no bfloat16 dtype. PyTorch exports a bfloat16
    tensor's __cuda_array_interface__ with the typestr "<V2" (2-byte opaque), refused here by name
    before CuPy sees it (cupy.from_dlpack refuses bfloat16 itself)."""
    iface = getattr(a, "__cuda_array_interface__", None)
    if isinstance(iface, dict) and str(iface.get("typestr", ""))[1:] == "V2":
        raise TypeError(
            f"{name} has a 2-byte opaque dtype (typestr {iface['typestr']!r}, which is how PyTorch exports "
            "bfloat16): convkern's CUDA kernels take float16, float32 and float64; convert it with "
            ".half() or .float()"
        )
    x = as_cupy(a, name)
    if x.dtype.char not in "efd":
        hint = f"; convert it with {name}.astype(numpy.float32)" if x.dtype.kind in "biuc" else ""
        raise TypeError(f"{name} must be a float16, float32 or float64 array, got dtype {x.dtype}{hint}")
    return x


def check_out(
    out: Any, shape: Tuple[int, ...], dtype, device_id: int, name: str = "out", inputs: Sequence[Any] = ()
) -> None:
    """The rules for a caller's CUDA `out=`: exact shape, dtype, device (the inputs' one) and C
    order, sharing no memory with an input (ValueError; TypeError when it is not a CUDA array)."""
    cp = _cupy()
    if not is_cuda_array(out):
        raise TypeError(f"{name} must be a CUDA array like the inputs, got {_describe(out)}")
    out = as_cupy(out, name)
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if out.device.id != device_id:
        raise ValueError(f"{name} must be on CUDA device {device_id}, got device {out.device.id}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    # Address ranges, as on the host (numpy.may_share_memory): cupy.shares_memory's exact answer
    # sorts every element's address on the GPU (in a ResNet-18 forward on an H200, its 84 calls
    # kept the GPU busy 28 ms, the convolutions 15 ms).
    for a in inputs:
        if a is not None and cp.may_share_memory(out, a):
            raise ValueError(f"{name} must not share memory with an input")


def _stream(a) -> int:
    """CuPy's current stream on a's device, as the integer handle the kernels take."""
    cp = _cupy()
    with a.device:
        return cp.cuda.get_current_stream().ptr


def _workspace(nbytes: int, like):
    if nbytes <= 0:
        return None
    cp = _cupy()
    with like.device:
        return cp.empty((int(nbytes),), dtype=cp.uint8)


# ----------------------------------------------------------------------------- kernel entries
#
# Same arguments, in the same order, as convkern._C's functions of the same names; the arrays are
# C-contiguous cupy arrays on one device. `args` is a convkern._C.ConvArgs (or _cuda.ConvArgs).


def conv_forward(x5, w5, b, y5, args) -> None:
    _ext.conv_forward(x5, w5, b, y5, args, _stream(x5))


def conv_backward_data(dy5, w5, dx5, args, bias=None) -> None:
    """bias (or None): added per channel of dx5 before the kernel's one rounding to the dtype
    (the forward of a transposed convolution)."""
    _ext.conv_backward_data(dy5, w5, dx5, args, _stream(dy5), bias)


def conv_backward_weight(dy5, x5, dw5, args) -> None:
    ws = _workspace(_ext.conv_backward_weight_workspace(x5, dw5, args), x5)
    _ext.conv_backward_weight(dy5, x5, dw5, ws, args, _stream(x5))


def channel_sum(dy5, db, channels_last) -> None:
    _ext.channel_sum(dy5, db, channels_last, _stream(dy5))


# Pooling: activations are 5-D, (N, C, D, H, W) or (N, D, H, W, C) as channels_last says, exactly
# as _C takes them (4-D (planes, D, H, W) channels-first is accepted too).


def extremum_pool_forward(
    x,
    y,
    idx,
    kernel,
    stride,
    pad_before,
    pad_after,
    dilation,
    ceil_mode,
    same_or_valid,
    is_min,
    rank,
    channels_last=False,
) -> None:
    _ext.extremum_pool_forward(
        x,
        y,
        idx,
        kernel,
        stride,
        pad_before,
        pad_after,
        dilation,
        ceil_mode,
        same_or_valid,
        is_min,
        rank,
        channels_last,
        _stream(x),
    )


def extremum_pool_backward(
    dy,
    idx,
    dx,
    kernel,
    stride,
    pad_before,
    pad_after,
    dilation,
    ceil_mode,
    same_or_valid,
    rank,
    channels_last=False,
    validate=True,
) -> None:
    """validate=True (indices from a caller) checks every index on the device first and raises
    ValueError for one outside the input plane (this synchronises the stream); pass False for
    indices this process's forward just made."""
    ws = _workspace(_ext.pool_index_check_bytes, dy) if validate else None
    _ext.extremum_pool_backward(
        dy,
        idx,
        dx,
        ws,
        kernel,
        stride,
        pad_before,
        pad_after,
        dilation,
        ceil_mode,
        same_or_valid,
        rank,
        channels_last,
        _stream(dy),
    )


def avg_pool_forward(
    x,
    y,
    kernel,
    stride,
    pad_before,
    pad_after,
    ceil_mode,
    same_or_valid,
    count_include_pad,
    divisor_override,
    rank,
    channels_last=False,
) -> None:
    _ext.avg_pool_forward(
        x,
        y,
        kernel,
        stride,
        pad_before,
        pad_after,
        ceil_mode,
        same_or_valid,
        count_include_pad,
        divisor_override,
        rank,
        channels_last,
        _stream(x),
    )


def avg_pool_backward(
    dy,
    dx,
    kernel,
    stride,
    pad_before,
    pad_after,
    ceil_mode,
    same_or_valid,
    count_include_pad,
    divisor_override,
    rank,
    channels_last=False,
) -> None:
    _ext.avg_pool_backward(
        dy,
        dx,
        kernel,
        stride,
        pad_before,
        pad_after,
        ceil_mode,
        same_or_valid,
        count_include_pad,
        divisor_override,
        rank,
        channels_last,
        _stream(dy),
    )


def _out3(a, channels_last) -> Tuple[int, int, int]:
    """The spatial extents of a pooling array in the kernels' form (see above)."""
    if a.ndim == 4:
        return tuple(a.shape[1:])
    return tuple(a.shape[1:4]) if channels_last else tuple(a.shape[2:])


# Adaptive pooling: as in _C, the output size is the output's (or grad_output's) spatial shape.


def adaptive_avg_pool_forward(x, y, rank, channels_last=False) -> None:
    _ext.adaptive_avg_pool_forward(x, y, _out3(y, channels_last), rank, channels_last, _stream(x))


def adaptive_avg_pool_backward(dy, dx, rank, channels_last=False) -> None:
    _ext.adaptive_avg_pool_backward(dy, dx, _out3(dy, channels_last), rank, channels_last, _stream(dy))


def adaptive_max_pool_forward(x, y, idx, rank, channels_last=False) -> None:
    _ext.adaptive_max_pool_forward(x, y, idx, _out3(y, channels_last), rank, channels_last, _stream(x))


def adaptive_max_pool_backward(dy, idx, dx, rank, channels_last=False, validate=True) -> None:
    ws = _workspace(_ext.pool_index_check_bytes, dy) if validate else None
    _ext.adaptive_max_pool_backward(dy, idx, dx, ws, _out3(dy, channels_last), rank, channels_last, _stream(dy))
