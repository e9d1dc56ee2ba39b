"""The NumPy baseline: convolution as im2col + BLAS GEMM (Caffe's algorithm), pooling over strided
window views. Rank-generic (1-D, 2-D, 3-D), NC + spatial layout, dilation 1, float32 throughout.

Convolution, one image at a time so the column buffer stays (C·kernel_volume) × out_elements:

* forward:       y[g]  = W[g] @ cols[g]                         (one batched np.matmul over groups)
* backward:      dW[g] += dy[g] @ cols[g]ᵀ,  dcols[g] = W[g]ᵀ @ dy[g],  dx = col2im(dcols),
                 db = Σ dy — the columns are rebuilt from x, as convkern rebuilds them.

A 1×1, stride-1, unpadded convolution needs no im2col: its columns are the image itself.
The BLAS is whatever NumPy links (OpenBLAS in the wheels); its threads follow OPENBLAS_NUM_THREADS.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pad_image(image: np.ndarray, pad: int, value: float = 0.0) -> np.ndarray:
    if pad == 0:
        return image
    return np.pad(image, [(0, 0)] + [(pad, pad)] * (image.ndim - 1), constant_values=value)


def _pad_batch(batch: np.ndarray, pad: int, value: float = 0.0) -> np.ndarray:
    if pad == 0:
        return batch
    return np.pad(batch, [(0, 0), (0, 0)] + [(pad, pad)] * (batch.ndim - 2), constant_values=value)


def _windows(padded: np.ndarray, kernel: Sequence[int], stride: int) -> np.ndarray:
    """View (..., *out, *kernel) of every window of the trailing len(kernel) axes."""
    rank = len(kernel)
    axes = tuple(range(padded.ndim - rank, padded.ndim))
    view = sliding_window_view(padded, tuple(kernel), axis=axes)
    if stride != 1:
        view = view[(Ellipsis,) + (slice(None, None, stride),) * rank + (slice(None),) * rank]
    return view


def _strided_slices(offset: Sequence[int], out: Sequence[int], stride: int) -> Tuple[slice, ...]:
    """Where kernel tap `offset` reads across all outputs: offset, offset + stride, ..."""
    return tuple(slice(o, o + stride * (n - 1) + 1, stride) for o, n in zip(offset, out))


class Im2colConv:
    """Convolution by im2col + GEMM for fixed shapes (one instance per benchmark row)."""

    def __init__(self, x_shape, w_shape, stride: int, padding: int, groups: int):
        self.batch, self.in_channels = x_shape[0], x_shape[1]
        self.spatial = tuple(x_shape[2:])
        self.out_channels = w_shape[0]
        self.kernel = tuple(w_shape[2:])
        self.stride, self.padding, self.groups = stride, padding, groups
        self.out = tuple((i + 2 * padding - k) // stride + 1 for i, k in zip(self.spatial, self.kernel))
        self.out_volume = math.prod(self.out)
        self.column_rows = (self.in_channels // groups) * math.prod(self.kernel)
        self.is_pointwise = all(k == 1 for k in self.kernel) and stride == 1 and padding == 0

    def _columns(self, image: np.ndarray) -> np.ndarray:
        """(groups, C/groups · kernel_volume, out_volume) columns of one (C, *spatial) image."""
        if self.is_pointwise:
            return image.reshape(self.groups, self.column_rows, self.out_volume)
        rank = len(self.kernel)
        view = _windows(_pad_image(image, self.padding), self.kernel, self.stride)  # (C, *out, *k)
        order = (0,) + tuple(range(1 + rank, 1 + 2 * rank)) + tuple(range(1, 1 + rank))
        columns = np.ascontiguousarray(view.transpose(order))  # (C, *k, *out): the im2col copy
        return columns.reshape(self.groups, self.column_rows, self.out_volume)

    def _grouped_weight(self, w: np.ndarray) -> np.ndarray:
        return w.reshape(self.groups, self.out_channels // self.groups, self.column_rows)

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        weight = self._grouped_weight(w)
        y = np.empty((self.batch, self.out_channels) + self.out, dtype=x.dtype)
        for n in range(self.batch):
            y[n] = np.matmul(weight, self._columns(x[n])).reshape((self.out_channels,) + self.out)
        return y

    def backward(self, dy: np.ndarray, x: np.ndarray, w: np.ndarray):
        weight_t = self._grouped_weight(w).transpose(0, 2, 1)
        grad_weight = np.zeros((self.groups, self.out_channels // self.groups, self.column_rows), x.dtype)
        grad_input = np.empty_like(x)
        for n in range(self.batch):
            dy_n = dy[n].reshape(self.groups, self.out_channels // self.groups, self.out_volume)
            grad_weight += np.matmul(dy_n, self._columns(x[n]).transpose(0, 2, 1))
            grad_columns = np.matmul(weight_t, dy_n)
            grad_input[n] = self._col2im(grad_columns)
        grad_bias = dy.sum(axis=(0,) + tuple(range(2, dy.ndim)), dtype=x.dtype)
        return grad_input, grad_weight.reshape(w.shape), grad_bias

    def _col2im(self, grad_columns: np.ndarray) -> np.ndarray:
        """Scatter-add (C·kernel_volume, out_volume) columns back onto a (C, *spatial) image."""
        if self.is_pointwise:
            return grad_columns.reshape((self.in_channels,) + self.spatial)
        taps = grad_columns.reshape((self.in_channels,) + self.kernel + self.out)
        padded = np.zeros((self.in_channels,) + tuple(i + 2 * self.padding for i in self.spatial), taps.dtype)
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            padded[(slice(None),) + _strided_slices(offset, self.out, self.stride)] += taps[(slice(None),) + offset]
        inner = tuple(slice(self.padding, self.padding + i) for i in self.spatial)
        return padded[(slice(None),) + inner]


class WindowPool2d:
    """Max / average pooling (2-D, zero padding counted in the average as PyTorch's default)
    over a strided window view; the backward scatters through the same windows, tap by tap."""

    def __init__(self, x_shape, op: str, kernel: int, stride: int, padding: int):
        self.x_shape, self.op = tuple(x_shape), op
        self.kernel, self.stride, self.padding = (kernel, kernel), stride, padding
        self.out = tuple((i + 2 * padding - kernel) // stride + 1 for i in x_shape[2:])

    def _window_view(self, x: np.ndarray) -> np.ndarray:
        fill = -np.inf if self.op == "max" else 0.0
        return _windows(_pad_batch(x, self.padding, fill), self.kernel, self.stride)  # (N, C, P, Q, kh, kw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        view = self._window_view(x)
        if self.op == "max":
            return view.max(axis=(-2, -1))
        return view.mean(axis=(-2, -1), dtype=np.float32)

    def argmax_taps(self, x: np.ndarray) -> np.ndarray:
        """Which tap of its window each output took (first maximum): what the backward needs."""
        view = self._window_view(x)
        return view.reshape(view.shape[:4] + (-1,)).argmax(axis=-1)

    def backward(self, dy: np.ndarray, argmax_taps: np.ndarray | None = None) -> np.ndarray:
        n, c = self.x_shape[:2]
        padded = np.zeros((n, c) + tuple(i + 2 * self.padding for i in self.x_shape[2:]), dy.dtype)
        scaled = dy / np.float32(self.kernel[0] * self.kernel[1]) if self.op == "avg" else dy
        for tap, offset in enumerate(itertools.product(range(self.kernel[0]), range(self.kernel[1]))):
            contribution = np.where(argmax_taps == tap, dy, 0) if self.op == "max" else scaled
            padded[(slice(None), slice(None)) + _strided_slices(offset, self.out, self.stride)] += contribution
        p = self.padding
        return padded[:, :, p:p + self.x_shape[2], p:p + self.x_shape[3]]


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3), dtype=np.float32)


def global_avg_pool2d_backward(dy: np.ndarray, x_shape) -> np.ndarray:
    area = np.float32(x_shape[2] * x_shape[3])
    return np.broadcast_to((dy / area)[:, :, None, None], x_shape).copy()
