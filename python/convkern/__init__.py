"""convkern: convolution and pooling kernels, forward and backward, for NumPy arrays.

    >>> import numpy as np, convkern
    >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    >>> convkern.conv2d(x, w, padding="same").shape
    (8, 16, 32, 32)

The hot paths are hand-written C++ (OpenMP; every kernel compiled for generic x86-64, AVX2 and
AVX-512, the widest the CPU runs picked at import, ``CONVKERN_ISA`` may lower it);
``convkern.reference`` holds the plain-NumPy definition of every operator.
"""

from __future__ import annotations

import warnings as _warnings
from typing import TYPE_CHECKING, Any, Dict

from . import _C, _cuda_backend, filters, functional, nn, optim
from .functional import *  # noqa: F401,F403  (the operators; the list is functional.__all__)
from .shapes import conv_parameter_count, linear_parameter_count, output_shape

if TYPE_CHECKING:  # imported on first use at run time (see __getattr__)
    from . import reference

try:
    from importlib.metadata import version as _version

    __version__ = _version("convkern")
except Exception:  # running from a source tree without installed metadata
    __version__ = "0.0.0+unknown"


def _check_isa_request() -> None:
    # The kernel set is chosen when _C loads; a CONVKERN_ISA it did not recognise changed nothing.
    choice = _C.isa_choice()
    if not choice["request_known"]:
        _warnings.warn(
            f"CONVKERN_ISA={choice['requested']!r} is not an instruction-set level; valid values are "
            f"'generic', 'avx2' and 'avx512' (it may only lower the level). Using {choice['chosen']!r}.",
            RuntimeWarning,
            stacklevel=3,
        )


_check_isa_request()


def info() -> Dict[str, Any]:
    """What this build of convkern is and what it runs on."""
    return {
        "version": __version__,
        "cpu_isa": _C.cpu_isa(),
        "cpu_isa_best": _C.isa_choice()["best"],
        "openmp": _C.openmp(),
        # What a call from this thread uses now: the setting, capped by this thread's OpenMP
        # limit (OMP_NUM_THREADS, threadpoolctl.threadpool_limits).
        "num_threads": _C.effective_num_threads(),
        "num_threads_setting": _C.get_num_threads(),
        "hardware_threads": _C.hardware_threads(),
        # cuda, cuda_architectures, cuda_runtime, cuda_driver, gpus: the CUDA module, if built
        **_cuda_backend.info(),
    }


def get_num_threads() -> int:
    """The thread setting of the CPU kernels (default: OpenMP's, i.e. OMP_NUM_THREADS or the core
    count). A call uses at most this many, and at most its thread's OpenMP limit, which
    ``threadpoolctl.threadpool_limits`` lowers; ``info()["num_threads"]`` is the result."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the threads the CPU kernels use, process-wide, from the next call on (a call running
    on another thread keeps its count). Safe from any thread. Results do not depend on it."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 2**31 - 1:  # the kernels keep the count in a C int
        raise ValueError(f"n must be at most {2**31 - 1}, got {n}")
    _C.set_num_threads(n)


__all__ = ["info", "get_num_threads", "set_num_threads", "functional", "reference"]
__all__ += ["nn", "optim", "filters", "output_shape", "conv_parameter_count", "linear_parameter_count"]
__all__ += functional.__all__


def __getattr__(name: str) -> Any:
    # The NumPy reference is imported on first use: it is the tests' oracle, not a hot path.
    if name == "reference":
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'convkern' has no attribute {name!r}")
