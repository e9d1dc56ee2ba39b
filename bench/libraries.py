"""One adapter per library: the exact call the benchmark times for each (row, phase).

An adapter's `prepare(row, phase, arrays)` does everything that is not part of the measured
operation (wrapping arrays, computing the max-pooling indices a backward consumes) and returns a
zero-argument callable: the timed operation. `results` turns what that callable returned
into a tuple of NumPy arrays in the order of `suite.output_names`, for validation
(`results(row, phase, value)`).

Each library is imported only by the adapter's constructor, so a worker process loads one
library (one OpenMP runtime) and nothing else.

Semantics that must match across libraries:

* convolution forward: no bias (the ResNet/VGG layers of the suite are followed by batch norm).
* convolution backward: grad_input, grad_weight and grad_bias in one call — convkern's
  `conv2d_backward` always returns all three, and `aten::convolution_backward` with
  output_mask (True, True, True) is the call PyTorch's autograd makes for a biased layer.
* max-pooling forward: values only (inference); backward: given the argmax its forward saved,
  as autograd does (`max_pool2d_with_indices_backward`).
* average pooling: zero padding counts in the divisor (PyTorch's default, convkern's default).
* global average pooling: PyTorch's `adaptive_avg_pool2d(x, 1)`, as torchvision's ResNet calls it.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

from suite import FORWARD

Operation = Callable[[], object]


class ConvkernLibrary:
    name = "convkern"

    def __init__(self, threads: int):
        import convkern

        self.ck = convkern
        convkern.set_num_threads(threads)
        self.threads = convkern.get_num_threads()

    def describe(self) -> Dict[str, object]:
        """info() and a fingerprint of the compiled module, to tell two builds of one version apart."""
        import hashlib
        import os

        compiled = self.ck._C.__file__
        with open(compiled, "rb") as module_file:
            digest = hashlib.sha256(module_file.read()).hexdigest()[:16]
        return {"convkern": self.ck.info(), "convkern_module": {"path": compiled, "sha256_16": digest,
                                                                "mtime": os.path.getmtime(compiled)}}

    def prepare(self, row, phase: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        """poison: write the forward into a NaN-filled `out=`, so an element the kernel never
        writes shows up in validation as NaN instead of as stale memory."""
        ck, x, dy = self.ck, arrays["x"], arrays.get("dy")
        out = np.full(row.y_shape(x.shape[0]), np.nan, np.float32) if poison and phase == FORWARD else None
        if row.kind == "conv":
            geometry = dict(stride=row.stride, padding=row.padding, groups=row.groups)
            w = arrays["w"]
            if phase == FORWARD:
                conv = getattr(ck, f"conv{row.rank}d")
                return lambda: conv(x, w, out=out, **geometry)
            conv_backward = getattr(ck, f"conv{row.rank}d_backward")
            return lambda: conv_backward(dy, x, w, **geometry)
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: ck.global_avg_pool2d(x, out=out)
            return lambda: ck.global_avg_pool2d_backward(dy, x)
        window = (row.kernel, row.stride, row.padding)
        if row.op == "max":
            if phase == FORWARD:
                return lambda: ck.max_pool2d(x, *window, out=out)
            _, indices = ck.max_pool2d(x, *window, return_indices=True)
            return lambda: ck.max_pool2d_backward(dy, x, *window, indices=indices)
        if phase == FORWARD:
            return lambda: ck.avg_pool2d(x, *window, out=out)
        return lambda: ck.avg_pool2d_backward(dy, x, *window)

    @staticmethod
    def results(row, phase: str, value) -> Tuple[np.ndarray, ...]:
        return tuple(value) if isinstance(value, tuple) else (value,)


class TorchLibrary:
    """PyTorch's CPU build: oneDNN (mkldnn) convolutions, ATen's native pooling kernels."""

    name = "torch"

    def __init__(self, threads: int):
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        self.threads = torch.get_num_threads()

    def describe(self) -> Dict[str, object]:
        torch = self.torch
        return {
            "torch_version": torch.__version__,
            "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
            "torch_parallel_info": torch.__config__.parallel_info(),
        }

    def prepare(self, row, phase: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        torch, aten, F = self.torch, self.torch.ops.aten, self.torch.nn.functional
        x = torch.from_numpy(arrays["x"])
        dy = torch.from_numpy(arrays["dy"]) if "dy" in arrays else None
        if row.kind == "conv":
            w = torch.from_numpy(arrays["w"])
            conv = getattr(F, f"conv{row.rank}d")
            if phase == FORWARD:
                return lambda: conv(x, w, None, row.stride, row.padding, 1, row.groups)
            rank = row.rank
            args = ([row.out_channels], [row.stride] * rank, [row.padding] * rank, [1] * rank, False,
                    [0] * rank, row.groups, [True, True, True])
            return lambda: aten.convolution_backward(dy, x, w, *args)
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: F.adaptive_avg_pool2d(x, 1)
            dy4 = dy[:, :, None, None]
            return lambda: aten._adaptive_avg_pool2d_backward(dy4, x)
        k, s, p = [row.kernel] * 2, [row.stride] * 2, [row.padding] * 2
        if row.op == "max":
            if phase == FORWARD:
                return lambda: F.max_pool2d(x, k, s, p)
            _, indices = F.max_pool2d(x, k, s, p, return_indices=True)
            return lambda: aten.max_pool2d_with_indices_backward(dy, x, k, s, p, [1, 1], False, indices)
        if phase == FORWARD:
            return lambda: F.avg_pool2d(x, k, s, p)
        return lambda: aten.avg_pool2d_backward(dy, x, k, s, p, False, True, None)

    @staticmethod
    def results(row, phase: str, value) -> Tuple[np.ndarray, ...]:
        values = tuple(v.numpy() for v in (value if isinstance(value, (tuple, list)) else (value,)))
        if row.kind == "pool" and row.op == "global_avg" and phase == FORWARD:
            y = values[0]  # PyTorch keeps (N, C, 1, 1) where convkern returns (N, C)
            return (y.reshape(y.shape[:2]),)
        return values


class NumpyLibrary:
    """im2col + BLAS convolution and window-view pooling (numpy_baseline.py)."""

    name = "numpy"

    def __init__(self, threads: int):
        import numpy_baseline

        self.impl = numpy_baseline
        self.threads = threads  # OpenBLAS reads OPENBLAS_NUM_THREADS, set by the parent

    def describe(self) -> Dict[str, object]:
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except Exception:  # older NumPy
            blas = {}
        return {"numpy_version": np.__version__, "numpy_blas": blas}

    def prepare(self, row, phase: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        impl, x, dy = self.impl, arrays["x"], arrays.get("dy")
        if row.kind == "conv":
            w = arrays["w"]
            conv = impl.Im2colConv(x.shape, w.shape, row.stride, row.padding, row.groups)
            if phase == FORWARD:
                return lambda: conv.forward(x, w)
            return lambda: conv.backward(dy, x, w)
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: impl.global_avg_pool2d(x)
            return lambda: impl.global_avg_pool2d_backward(dy, x.shape)
        pool = impl.WindowPool2d(x.shape, row.op, row.kernel, row.stride, row.padding)
        if phase == FORWARD:
            return lambda: pool.forward(x)
        taps = pool.argmax_taps(x) if row.op == "max" else None
        return lambda: pool.backward(dy, taps)

    @staticmethod
    def results(row, phase: str, value) -> Tuple[np.ndarray, ...]:
        return tuple(value) if isinstance(value, tuple) else (value,)


LIBRARIES = {lib.name: lib for lib in (ConvkernLibrary, TorchLibrary, NumpyLibrary)}
