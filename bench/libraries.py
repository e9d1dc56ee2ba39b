"""One adapter per library: the exact call the benchmark times for each (row, phase, layout).

An adapter's `prepare(row, phase, layout, arrays)` does everything that is not part of the measured
operation (moving the operands to the device, wrapping them, computing the max-pooling indices a
backward consumes) and returns a zero-argument callable: the timed operation. `result` turns what
that callable returned into one host NumPy array, channels-first, for validation.

`arrays` are host NumPy arrays from suite.make_inputs, already in the layout's memory order.
Each library is imported only by the adapter's constructor, so a CPU worker process loads one
library (one OpenMP runtime) and nothing else.

Semantics that must match across libraries (the same work, each library's own fastest call for it):

* convolution forward: no bias (the ResNet/VGG layers of the suite are followed by batch norm).
* backward-data: grad_input only — convkern's `convNd_backward(..., output_mask=(True, False,
  False))`, PyTorch's `aten.convolution_backward` with output_mask [True, False, False] (what
  torch.nn.grad.conv2d_input and autograd call; the mask reaches oneDNN / cuDNN, which then
  compute only that gradient).
* backward-weight: grad_weight only, no bias gradient (the layers have no bias): output_mask
  (False, True, False) for both.
* channels-last in PyTorch: channels_last (channels_last_3d) tensors — input, grad_output and the
  weight, as `model.to(memory_format=torch.channels_last)` leaves them; oneDNN and cuDNN run them
  natively (a channels-last weight measured faster than a channels-first one with oneDNN). 1-D
  has no channels-last memory format: the NWC data is passed as a permuted (N, C, W) view.
* max-pooling forward: values only (inference); backward: given the argmax its forward saved,
  as autograd does (`max_pool2d_with_indices_backward`).
* average pooling: zero padding counts in the divisor (PyTorch's default, convkern's default).
* global average pooling: PyTorch's `adaptive_avg_pool2d(x, 1)`, as torchvision's ResNet calls it.
"""

from __future__ import annotations

import os
from typing import Callable, Dict

import numpy as np
import suite
from suite import BACKWARD_DATA, BACKWARD_WEIGHT, FORWARD

Operation = Callable[[], object]

# What each conv phase asks for: (grad_input, grad_weight, grad_bias).
OUTPUT_MASKS = {BACKWARD_DATA: (True, False, False), BACKWARD_WEIGHT: (False, True, False)}


class LibraryUnavailable(RuntimeError):
    """The library cannot run on this machine or device (said why); its timings are skipped."""


def _result_in_layout(row, phase: str, layout: str, host: np.ndarray) -> np.ndarray:
    """A result that came back in `layout`'s memory order, channels-first (a weight gradient and
    a global pooling's (N, C) output have no layout)."""
    no_layout = phase == BACKWARD_WEIGHT or (row.kind == "pool" and row.op == "global_avg" and phase == FORWARD)
    return host if no_layout else suite.to_channels_first(host, layout)


class ConvkernLibrary:
    """convkern: its OpenMP/AVX-512 kernels on NumPy arrays, its CUDA kernels on CuPy arrays."""

    name = "convkern"

    def __init__(self, threads: int, device: str):
        import convkern

        self.ck, self.device = convkern, device
        if device == "cuda":
            info = convkern.info()
            if not info.get("cuda"):
                raise LibraryUnavailable(
                    "this build of convkern has no CUDA backend (convkern._cuda was not "
                    "built: no nvcc when it was installed?)"
                )
            if not info.get("gpus"):
                raise LibraryUnavailable("convkern's CUDA backend sees no GPU")
            try:
                import cupy
            except ImportError as exc:
                raise LibraryUnavailable(f"convkern runs on CuPy arrays and CuPy does not import ({exc})")
            self.cupy = cupy
        else:
            convkern.set_num_threads(threads)
        self.threads = convkern.get_num_threads()
        self.has_output_mask = self._has_output_mask()

    def _has_output_mask(self) -> bool:
        """Whether convNd_backward takes output_mask. Without it (an older convkern) a backward
        phase times the whole backward and keeps the one gradient it needs; describe() says so."""
        x = np.zeros((1, 1, 3), np.float32)
        try:
            self.ck.conv1d_backward(np.zeros((1, 1, 1), np.float32), x, x, output_mask=(True, False, False))
            return True
        except TypeError as exc:
            if "output_mask" in str(exc):
                return False
            raise

    def describe(self) -> Dict[str, object]:
        """info() and a fingerprint of the compiled module, to tell two builds of one version apart."""
        import hashlib
        import os

        compiled = self.ck._C.__file__
        with open(compiled, "rb") as module_file:
            digest = hashlib.sha256(module_file.read()).hexdigest()[:16]
        return {
            "convkern": self.ck.info(),
            "convkern_output_mask": self.has_output_mask,
            "convkern_module": {"path": compiled, "sha256_16": digest, "mtime": os.path.getmtime(compiled)},
        }

    def _on_device(self, array: np.ndarray):
        return self.cupy.asarray(array) if self.device == "cuda" else array

    def prepare(self, row, phase: str, layout: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        """poison: write the forward into a NaN-filled `out=`, so an element the kernel never
        writes shows up in validation as NaN instead of as stale memory."""
        ck = self.ck
        x = self._on_device(arrays["x"])
        dy = self._on_device(arrays["dy"]) if "dy" in arrays else None
        data_format = suite.data_format(row, layout)
        out = None
        if poison and phase == FORWARD:
            shape = row.y_shape(x.shape[0])
            if not (row.kind == "pool" and row.op == "global_avg"):
                shape = suite.to_layout(np.empty(shape, np.float32), layout).shape
            out = self._on_device(np.full(shape, np.nan, np.float32))
        if row.kind == "conv":
            geometry = dict(stride=row.stride, padding=row.padding, groups=row.groups, data_format=data_format)
            w = self._on_device(arrays["w"])
            if phase == FORWARD:
                conv = getattr(ck, f"conv{row.rank}d")
                return lambda: conv(x, w, out=out, **geometry)
            conv_backward = getattr(ck, f"conv{row.rank}d_backward")
            wanted = 0 if phase == BACKWARD_DATA else 1
            if self.has_output_mask:
                mask = OUTPUT_MASKS[phase]
                return lambda: conv_backward(dy, x, w, output_mask=mask, **geometry)[wanted]
            return lambda: conv_backward(dy, x, w, **geometry)[wanted]
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: ck.global_avg_pool2d(x, data_format=data_format, out=out)
            return lambda: ck.global_avg_pool2d_backward(dy, x, data_format=data_format)
        window = (row.kernel, row.stride, row.padding)
        if row.op == "max":
            if phase == FORWARD:
                return lambda: ck.max_pool2d(x, *window, data_format=data_format, out=out)
            _, indices = ck.max_pool2d(x, *window, return_indices=True, data_format=data_format)
            return lambda: ck.max_pool2d_backward(dy, x, *window, data_format=data_format, indices=indices)
        if phase == FORWARD:
            return lambda: ck.avg_pool2d(x, *window, data_format=data_format, out=out)
        return lambda: ck.avg_pool2d_backward(dy, x, *window, data_format=data_format)

    def result(self, row, phase: str, layout: str, value) -> np.ndarray:
        host = value.get() if self.device == "cuda" else np.asarray(value)
        return _result_in_layout(row, phase, layout, host)


class TorchLibrary:
    """PyTorch: oneDNN (mkldnn) convolutions and ATen's pooling kernels on the CPU; cuDNN
    (torch.backends.cudnn.benchmark = True, TF32 off) on the GPU."""

    name = "torch"

    def __init__(self, threads: int, device: str):
        import torch

        self.torch, self.device = torch, device
        torch.set_grad_enabled(False)
        if device == "cuda":
            if not torch.cuda.is_available():
                raise LibraryUnavailable(f"torch {torch.__version__} sees no CUDA device (a CPU-only build?)")
            # cuDNN picks its fastest algorithm per shape (during the warm-up); float32 stays
            # float32: no TF32 tensor-core shortcut in the baseline (the suite compares like with like).
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        else:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()

    def describe(self) -> Dict[str, object]:
        torch = self.torch
        description = {"torch_version": torch.__version__}
        if self.device == "cuda":
            description.update(
                torch_cuda=torch.version.cuda,
                cudnn_version=torch.backends.cudnn.version(),
                cudnn_benchmark=torch.backends.cudnn.benchmark,
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            )
        else:
            description.update(
                torch_mkldnn=bool(torch.backends.mkldnn.is_available()),
                torch_parallel_info=torch.__config__.parallel_info(),
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            )
        return description

    def _tensor(self, array: np.ndarray, layout: str, rank: int):
        """A logical (N, C, *spatial) tensor over layout-ordered data: channels-last strides for NHWC."""
        t = self.torch.from_numpy(array).to(self.device)
        if layout == suite.CHANNELS_LAST:
            t = t.permute(0, t.ndim - 1, *range(1, t.ndim - 1))
        return t

    def _weight(self, w: np.ndarray, layout: str, rank: int):
        t = self.torch.from_numpy(w).to(self.device)
        if layout == suite.CHANNELS_LAST and rank in (2, 3):
            fmt = self.torch.channels_last if rank == 2 else self.torch.channels_last_3d
            t = t.contiguous(memory_format=fmt)
        return t

    def prepare(self, row, phase: str, layout: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        torch, aten, F = self.torch, self.torch.ops.aten, self.torch.nn.functional
        rank = row.rank
        x = self._tensor(arrays["x"], layout, rank)
        if row.kind == "conv":
            w = self._weight(arrays["w"], layout, rank)
            if phase == FORWARD:
                conv = getattr(F, f"conv{rank}d")
                return lambda: conv(x, w, None, row.stride, row.padding, 1, row.groups)
            dy = self._tensor(arrays["dy"], layout, rank)
            wanted = 0 if phase == BACKWARD_DATA else 1
            args = (
                [row.out_channels],
                [row.stride] * rank,
                [row.padding] * rank,
                [1] * rank,
                False,
                [0] * rank,
                row.groups,
                list(OUTPUT_MASKS[phase]),
            )
            return lambda: aten.convolution_backward(dy, x, w, *args)[wanted]
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: F.adaptive_avg_pool2d(x, 1)
            dy4 = torch.from_numpy(arrays["dy"]).to(self.device)[:, :, None, None]
            return lambda: aten._adaptive_avg_pool2d_backward(dy4, x)
        k, s, p = [row.kernel] * 2, [row.stride] * 2, [row.padding] * 2
        if row.op == "max":
            if phase == FORWARD:
                return lambda: F.max_pool2d(x, k, s, p)
            dy = self._tensor(arrays["dy"], layout, rank)
            _, indices = F.max_pool2d(x, k, s, p, return_indices=True)
            return lambda: aten.max_pool2d_with_indices_backward(dy, x, k, s, p, [1, 1], False, indices)
        if phase == FORWARD:
            return lambda: F.avg_pool2d(x, k, s, p)
        dy = self._tensor(arrays["dy"], layout, rank)
        return lambda: aten.avg_pool2d_backward(dy, x, k, s, p, False, True, None)

    def result(self, row, phase: str, layout: str, value) -> np.ndarray:
        host = value.detach().cpu().numpy()  # logical (N, C, *spatial) whatever the strides
        if row.kind == "pool" and row.op == "global_avg" and phase == FORWARD:
            return host.reshape(host.shape[:2])  # PyTorch keeps (N, C, 1, 1) where convkern returns (N, C)
        return host


class Im2colLibrary:
    """im2col + GEMM convolution and tap-by-tap pooling (im2col_baseline.py): with NumPy and its
    BLAS on the CPU ("numpy"), with CuPy and cuBLAS on the GPU ("cupy")."""

    # The column buffer of one step of images: one image on the CPU (cache-sized columns), up to
    # this many bytes of columns on the GPU (whole batches for most rows).
    GPU_COLUMN_BYTES = 1 << 30

    def __init__(self, threads: int, device: str):
        import im2col_baseline

        self.impl, self.device = im2col_baseline, device
        if device == "cuda":
            try:
                import cupy
            except ImportError as exc:
                raise LibraryUnavailable(f"CuPy does not import ({exc}); pip install cupy-cuda12x")
            if cupy.cuda.runtime.getDeviceCount() == 0:
                raise LibraryUnavailable("CuPy sees no GPU")
            self.xp = cupy
        else:
            self.xp = np
        self.threads = threads  # OpenBLAS reads OPENBLAS_NUM_THREADS, set by the parent

    def describe(self) -> Dict[str, object]:
        if self.device == "cuda":
            return {"cupy_version": self.xp.__version__, "cuda_runtime": self.xp.cuda.runtime.runtimeGetVersion()}
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except Exception:  # older NumPy
            blas = {}
        return {"numpy_version": np.__version__, "numpy_blas": blas}

    def _images_per_step(self, row, batch: int) -> int:
        if self.device != "cuda":
            return 1
        columns_per_image = 4 * row.in_channels * row.kernel_volume * int(np.prod(row.out_spatial()))
        return max(1, min(batch, self.GPU_COLUMN_BYTES // columns_per_image))

    def prepare(self, row, phase: str, layout: str, arrays: Dict[str, np.ndarray], poison: bool = False) -> Operation:
        impl, xp = self.impl, self.xp
        channels_last = layout == suite.CHANNELS_LAST
        x = xp.asarray(arrays["x"])
        dy = xp.asarray(arrays["dy"]) if "dy" in arrays else None
        if row.kind == "conv":
            w = xp.asarray(arrays["w"])
            conv = impl.Im2colConv(
                xp,
                x.shape,
                w.shape,
                row.stride,
                row.padding,
                row.groups,
                channels_last,
                self._images_per_step(row, x.shape[0]),
            )
            if phase == FORWARD:
                return lambda: conv.forward(x, w)
            if phase == BACKWARD_DATA:
                return lambda: conv.backward_data(dy, w)
            return lambda: conv.backward_weight(dy, x)
        if row.op == "global_avg":
            if phase == FORWARD:
                return lambda: impl.global_avg_pool2d(xp, x, channels_last)
            return lambda: impl.global_avg_pool2d_backward(xp, dy, x.shape, channels_last)
        pool = impl.TapPool2d(xp, x.shape, row.op, row.kernel, row.stride, row.padding, channels_last)
        if phase == FORWARD:
            return lambda: pool.forward(x)
        taps = pool.argmax_taps(x) if row.op == "max" else None
        return lambda: pool.backward(dy, taps)

    def result(self, row, phase: str, layout: str, value) -> np.ndarray:
        host = value.get() if self.device == "cuda" else np.asarray(value)
        return _result_in_layout(row, phase, layout, host)


class NumpyLibrary(Im2colLibrary):
    name = "numpy"


class CupyLibrary(Im2colLibrary):
    name = "cupy"


# The libraries of each device, convkern first; each baseline's name is what the report calls it.
LIBRARIES = {"convkern": ConvkernLibrary, "torch": TorchLibrary, "numpy": NumpyLibrary, "cupy": CupyLibrary}
DEVICE_LIBRARIES = {"cpu": ("convkern", "torch", "numpy"), "cuda": ("convkern", "torch", "cupy")}
