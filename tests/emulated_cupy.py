"""A stand-in for CuPy over host memory, so that the public API's CUDA path can be run where no GPU
exists: through the CUDA sources compiled for the CPU (tools/cuda_emulation/build.sh).

Its ``ndarray`` is host memory that presents ``__cuda_array_interface__`` (so convkern takes the CUDA
route) and ``.device``; every NumPy function reached as ``emulated_cupy.<name>`` returns such arrays.
Only tests/test_cuda.py installs it, as ``sys.modules["cupy"]``, and only while
CONVKERN_CUDA_EMULATION_MODULE names an emulated build.
"""

from __future__ import annotations

import numpy as np

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int32, int64, uint8 = np.int8, np.int32, np.int64, np.uint8


class _Device:
    """The one emulated GPU; a context manager like cupy.cuda.Device."""

    id = 0

    def __init__(self, ordinal: int = 0) -> None:
        if ordinal != 0:
            raise RuntimeError(f"the emulation has one device, not device {ordinal}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def synchronize(self) -> None:
        pass


class ndarray(np.ndarray):
    """Host memory posing as device memory."""

    @property
    def __cuda_array_interface__(self):
        i = self.__array_interface__
        return {"shape": i["shape"], "typestr": i["typestr"], "data": i["data"], "strides": i["strides"], "version": 3}

    @property
    def device(self) -> _Device:
        return _Device()

    def get(self) -> np.ndarray:
        return np.array(self, subok=False)


def _on_device(r):
    return r.view(ndarray) if isinstance(r, np.ndarray) and not isinstance(r, ndarray) else r


def asarray(a, dtype=None):
    if isinstance(a, ndarray) and (dtype is None or a.dtype == dtype):
        return a
    return np.array(a, dtype=dtype, copy=True).view(ndarray)  # host -> device is a copy, as in CuPy


def asnumpy(a) -> np.ndarray:
    return np.array(a, subok=False)


def may_share_memory(a, b) -> bool:
    return bool(np.may_share_memory(a, b))


class _Stream:
    ptr = 0

    def synchronize(self) -> None:
        pass


class cuda:  # noqa: N801 - mirrors the cupy.cuda namespace
    Device = _Device

    @staticmethod
    def get_current_stream() -> _Stream:
        return _Stream()


def __getattr__(name: str):
    f = getattr(np, name)
    if not callable(f) or isinstance(f, type):
        return f

    def on_device(*args, **kwargs):
        return _on_device(f(*args, **kwargs))

    return on_device
