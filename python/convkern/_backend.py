"""Where an op runs: the host (NumPy arrays, ``convkern._C``) or a GPU (CUDA arrays, ``convkern._cuda``).

Every op starts by asking ``backend_for(**its_arrays)``. The answer carries what differs between the
two places, so that the op layers (``_conv_ops``, ``_pool_ops``) are written once:

- ``xp``: the array module (``numpy`` or ``cupy``) for the few array manipulations an op does itself
  (padding-mode copies, making an operand C-contiguous);
- ``kernels``: ``convkern._C`` or ``convkern._cuda_backend`` — the same entry points, the same
  arguments in the same order;
- array intake and result allocation (dtype rules, ``out=`` checks), and ``scope()``, which makes
  the operands' GPU current so that everything allocated or launched in it lands on that device.

Sizes, output shapes and argument checks are not here: they come from ``csrc/shape.h`` through
``convkern._C`` for both backends.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional, Sequence, Tuple, cast

import numpy as np

from . import _C, _args, _cuda_backend


class _HostKernels:
    """``convkern._C`` with the CUDA entry points' extra keywords accepted: ``validate`` (on the host
    the pooling backward kernels check every index as they read it, so there is nothing to skip) and
    the ``bias`` of ``conv_backward_data`` (added here; the CUDA kernel adds it before rounding, which
    matters for float16 only, a dtype the host does not take)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_C, name)

    @staticmethod
    def conv_backward_data(dy5: Any, w5: Any, dx5: Any, args: Any, bias: Any = None) -> None:
        _C.conv_backward_data(dy5, w5, dx5, args)
        if bias is not None:
            dx5 += bias if args.channels_last else bias.reshape(-1, 1, 1, 1)

    @staticmethod
    def extremum_pool_backward(*args: Any, validate: bool = True) -> None:
        _C.extremum_pool_backward(*args)

    @staticmethod
    def adaptive_max_pool_backward(*args: Any, validate: bool = True) -> None:
        _C.adaptive_max_pool_backward(*args)


_NO_SCOPE: ContextManager[None] = contextlib.nullcontext()  # stateless: one serves every call


class HostBackend:
    """NumPy arrays in and out, computed by the CPU kernels."""

    name = "cpu"
    xp = np
    kernels = _HostKernels()

    def as_float_array(self, a: Any, name: str) -> Any:
        return _args.as_float_array(a, name)

    def is_array(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def array_type(self) -> str:
        return "numpy.ndarray"

    def empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        return _args.aligned_empty(tuple(shape), dtype)

    def check_out(
        self, out: Any, shape: Tuple[int, ...], dtype: Any, name: str = "out", inputs: Sequence[Any] = ()
    ) -> None:
        _args.check_out(out, shape, dtype, name, inputs)

    def scope(self) -> ContextManager[None]:
        return _NO_SCOPE


class CudaBackend:
    """CUDA arrays in (CuPy, or anything with ``__cuda_array_interface__``/``__dlpack__`` on a CUDA
    device), CuPy arrays out on the operands' device and CuPy's current stream, computed by convkern's
    own CUDA kernels."""

    name = "cuda"
    kernels = _cuda_backend

    def __init__(self) -> None:
        self.xp: Any = _cuda_backend._cupy()  # type: ignore[no-untyped-call]  # CuPy has no type information
        self.device: Any = None  # the first operand's device, set by as_float_array

    def as_float_array(self, a: Any, name: str) -> Any:
        x = _cuda_backend.as_float_array(a, name)
        if self.device is None:
            self.device = x.device
        elif x.device.id != self.device.id:
            raise TypeError(
                f"{name} is on CUDA device {x.device.id} but the first array of this call is on CUDA device "
                f"{self.device.id}: every array of one call must be on the same device"
            )
        return x

    def is_array(self, a: Any) -> bool:
        return _cuda_backend.is_cuda_array(a)

    def array_type(self) -> str:
        return "CUDA array (e.g. cupy.ndarray)"

    def empty(self, shape: Sequence[int], dtype: Any) -> Any:
        with self.device:
            return self.xp.empty(tuple(shape), dtype=dtype)

    def check_out(
        self, out: Any, shape: Tuple[int, ...], dtype: Any, name: str = "out", inputs: Sequence[Any] = ()
    ) -> None:
        _cuda_backend.check_out(out, shape, dtype, self.device.id, name, inputs)

    def scope(self) -> ContextManager[None]:
        return cast(
            ContextManager[None], self.device
        )  # set by the call's first as_float_array, which comes before any scope


_HOST = HostBackend()


def backend_for(**arrays: Optional[Any]) -> Any:
    """The backend of a call, from all its array arguments (None for absent ones). A CUDA array when
    this build or machine cannot serve it is a RuntimeError; host and CUDA arrays mixed in one call are
    a TypeError naming both — both raised before anything else about the call is looked at."""
    if all(a is None or type(a) is np.ndarray for a in arrays.values()):
        return _HOST  # plain NumPy arrays are host arrays: no CUDA interface to probe
    return CudaBackend() if _cuda_backend.on_cuda(**arrays) else _HOST
