"""The array-library baseline: convolution as im2col + GEMM (Caffe's algorithm), pooling tap by tap.

Written once against an array module `xp` — NumPy on the CPU (its GEMM is whatever BLAS NumPy
links, OpenBLAS in the wheels; threads follow OPENBLAS_NUM_THREADS), CuPy on the GPU (cuBLAS) —
using only what both provide: empty/zeros, slicing with steps, reshape/transpose, matmul, maximum,
where. Rank-generic (1-D, 2-D, 3-D), channels-first (N, C, *spatial) or channels-last
(N, *spatial, C), dilation 1, zero padding, float32 throughout.

Convolution, a step of `images_per_step` images at a time, so that the column buffer stays
bounded (one image on the CPU: its columns then fit the caches better; as many as fit a memory
budget on the GPU, where one small GEMM per image would leave most of the device idle):

* im2col: one strided copy per kernel tap into the columns
    channels-first: cols (n, groups, C/groups · kernel_volume, out_volume)
    channels-last:  cols (n · out_volume, groups, kernel_volume · C/groups)
* forward:          y  = W · cols                       (one batched matmul over images and groups)
* backward-data:    dcols = Wᵀ · dy, then col2im: one strided add per kernel tap
* backward-weight:  dW += dy · colsᵀ                    (the columns rebuilt from x)

A 1×1, stride-1, unpadded convolution needs no im2col: its columns are the image itself.
Every result is written into a fresh array of the layout the caller asked for.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence, Tuple


def _tap_slices(offset: Sequence[int], out: Sequence[int], stride: int) -> Tuple[slice, ...]:
    """Where kernel tap `offset` reads across all outputs of the padded input: offset, offset +
    stride, ... (one slice per spatial axis)."""
    return tuple(slice(o, o + stride * (n - 1) + 1, stride) for o, n in zip(offset, out))


class Im2colConv:
    """Convolution by im2col + GEMM for fixed shapes (one instance per benchmark case)."""

    def __init__(
        self,
        xp,
        x_shape,
        w_shape,
        stride: int,
        padding: int,
        groups: int,
        channels_last: bool,
        images_per_step: int = 1,
    ):
        self.xp, self.channels_last = xp, channels_last
        self.batch = x_shape[0]
        self.in_channels = x_shape[-1] if channels_last else x_shape[1]
        self.spatial = tuple(x_shape[1:-1] if channels_last else x_shape[2:])
        self.rank = len(self.spatial)
        self.out_channels = w_shape[0]
        self.kernel = tuple(w_shape[2:])
        self.kernel_volume = math.prod(self.kernel)
        self.stride, self.padding, self.groups = stride, padding, groups
        self.out = tuple((i + 2 * padding - k) // stride + 1 for i, k in zip(self.spatial, self.kernel))
        self.out_volume = math.prod(self.out)
        self.group_in, self.group_out = self.in_channels // groups, self.out_channels // groups
        self.is_pointwise = self.kernel_volume == 1 and stride == 1 and padding == 0
        self.step = max(1, min(images_per_step, self.batch))

    # -- shapes ---------------------------------------------------------------------------------

    def _image_shape(self, n: int, spatial: Sequence[int]) -> tuple:
        if self.channels_last:
            return (n,) + tuple(spatial) + (self.in_channels,)
        return (n, self.in_channels) + tuple(spatial)

    def _y_shape(self, n: int) -> tuple:
        return (n,) + self.out + (self.out_channels,) if self.channels_last else (n, self.out_channels) + self.out

    def _steps(self):
        for start in range(0, self.batch, self.step):
            yield slice(start, min(start + self.step, self.batch))

    def _grouped_weight(self, w):
        """The weight as GEMM operands: (groups, K/groups, C/groups · kernel_volume), the column
        order of the layout's im2col (channel-major channels-first, tap-major channels-last)."""
        xp = self.xp
        if self.channels_last:  # (K, C/g, *k) -> (K, *k, C/g)
            w = xp.moveaxis(w, 1, -1)
        return xp.ascontiguousarray(w).reshape(self.groups, self.group_out, self.group_in * self.kernel_volume)

    def _weight_from_grouped(self, grad):
        """The inverse of _grouped_weight: (groups, K/g, ...) back to (K, C/g, *k), contiguous."""
        xp = self.xp
        if self.channels_last:
            grad = xp.moveaxis(grad.reshape((self.out_channels,) + self.kernel + (self.group_in,)), -1, 1)
        return xp.ascontiguousarray(grad.reshape((self.out_channels, self.group_in) + self.kernel))

    def _padded(self, images):
        """The images with `padding` zeros around every spatial axis (the images themselves without)."""
        if self.padding == 0:
            return images
        p = self.padding
        n = images.shape[0]
        padded = self.xp.zeros(self._image_shape(n, [s + 2 * p for s in self.spatial]), images.dtype)
        padded[self._spatial_index(tuple(slice(p, p + s) for s in self.spatial))] = images
        return padded

    def _spatial_index(self, spatial: Tuple[slice, ...]) -> tuple:
        """An index of an (n, C, *spatial) or (n, *spatial, C) array that slices the spatial axes."""
        everything = slice(None)
        return (everything,) + spatial + (everything,) if self.channels_last else (everything, everything) + spatial

    # -- im2col and col2im ---------------------------------------------------------------------

    def _columns(self, images):
        """The columns of a step of images, in the layout's GEMM form (see the module docstring)."""
        xp, n = self.xp, images.shape[0]
        if self.is_pointwise:
            if self.channels_last:
                return images.reshape(n * self.out_volume, self.groups, self.group_in)
            return images.reshape(n, self.groups, self.group_in, self.out_volume)
        padded = self._padded(images)
        if self.channels_last:  # (n, *out, groups, *k, C/g)
            cols = xp.empty((n,) + self.out + (self.groups,) + self.kernel + (self.group_in,), images.dtype)
            source = padded.reshape(padded.shape[:-1] + (self.groups, self.group_in))
            for offset in itertools.product(*(range(k) for k in self.kernel)):
                taps = (slice(None),) * (1 + self.rank + 1) + offset
                cols[taps] = source[(slice(None),) + _tap_slices(offset, self.out, self.stride)]
            return cols.reshape(n * self.out_volume, self.groups, self.kernel_volume * self.group_in)
        cols = xp.empty((n, self.in_channels) + self.kernel + self.out, images.dtype)  # (n, C, *k, *out)
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            cols[(slice(None), slice(None)) + offset] = padded[
                (slice(None), slice(None)) + _tap_slices(offset, self.out, self.stride)
            ]
        return cols.reshape(n, self.groups, self.group_in * self.kernel_volume, self.out_volume)

    def _col2im(self, grad_cols, n: int):
        """Scatter-add a step's column gradient back onto its images (the adjoint of _columns)."""
        xp = self.xp
        if self.is_pointwise:
            return grad_cols.reshape(self._image_shape(n, self.spatial))
        p = self.padding
        padded = xp.zeros(self._image_shape(n, [s + 2 * p for s in self.spatial]), grad_cols.dtype)
        if self.channels_last:
            taps = grad_cols.reshape((n,) + self.out + (self.groups,) + self.kernel + (self.group_in,))
            target = padded.reshape(padded.shape[:-1] + (self.groups, self.group_in))
            for offset in itertools.product(*(range(k) for k in self.kernel)):
                target[(slice(None),) + _tap_slices(offset, self.out, self.stride)] += taps[
                    (slice(None),) * (1 + self.rank + 1) + offset
                ]
        else:
            taps = grad_cols.reshape((n, self.in_channels) + self.kernel + self.out)
            for offset in itertools.product(*(range(k) for k in self.kernel)):
                padded[(slice(None), slice(None)) + _tap_slices(offset, self.out, self.stride)] += taps[
                    (slice(None), slice(None)) + offset
                ]
        return padded[self._spatial_index(tuple(slice(p, p + s) for s in self.spatial))]

    # -- the three passes ----------------------------------------------------------------------

    def forward(self, x, w):
        xp, weight = self.xp, self._grouped_weight(w)
        y = xp.empty(self._y_shape(self.batch), x.dtype)
        for images in self._steps():
            n = images.stop - images.start
            cols = self._columns(x[images])
            if self.channels_last:  # (g, n·out, Cg·kv) @ (g, Cg·kv, Kg) -> (n·out, g, Kg)
                product = xp.matmul(cols.transpose(1, 0, 2), weight.transpose(0, 2, 1)).transpose(1, 0, 2)
            else:  # (g, Kg, Cg·kv) @ (n, g, Cg·kv, out) -> (n, g, Kg, out)
                product = xp.matmul(weight, cols)
            y[images] = product.reshape(self._y_shape(n))
        return y

    def backward_data(self, dy, w):
        xp, weight = self.xp, self._grouped_weight(w)
        grad_input = xp.empty(self._image_shape(self.batch, self.spatial), dy.dtype)
        for images in self._steps():
            n = images.stop - images.start
            if self.channels_last:  # (g, n·out, Kg) @ (g, Kg, Cg·kv) -> (n·out, g, Cg·kv)
                grad_y = dy[images].reshape(n * self.out_volume, self.groups, self.group_out)
                grad_cols = xp.matmul(grad_y.transpose(1, 0, 2), weight).transpose(1, 0, 2)
            else:  # (g, Cg·kv, Kg) @ (n, g, Kg, out) -> (n, g, Cg·kv, out)
                grad_y = dy[images].reshape(n, self.groups, self.group_out, self.out_volume)
                grad_cols = xp.matmul(weight.transpose(0, 2, 1), grad_y)
            grad_input[images] = self._col2im(xp.ascontiguousarray(grad_cols), n)
        return grad_input

    def backward_weight(self, dy, x):
        xp = self.xp
        grad = xp.zeros((self.groups, self.group_out, self.group_in * self.kernel_volume), x.dtype)
        for images in self._steps():
            n = images.stop - images.start
            cols = self._columns(x[images])
            if self.channels_last:  # (g, Kg, n·out) @ (g, n·out, Cg·kv)
                grad_y = dy[images].reshape(n * self.out_volume, self.groups, self.group_out)
                grad += xp.matmul(grad_y.transpose(1, 2, 0), cols.transpose(1, 0, 2))
            else:  # Σ over the step's images of (g, Kg, out) @ (g, out, Cg·kv)
                grad_y = dy[images].reshape(n, self.groups, self.group_out, self.out_volume)
                product = xp.matmul(grad_y, cols.transpose(0, 1, 3, 2))
                grad += product[0] if n == 1 else product.sum(axis=0)
        return self._weight_from_grouped(grad)


class TapPool2d:
    """Max / average pooling (2-D; zero padding counted in the average, PyTorch's default), one
    strided slice per window tap: the forward folds the taps with maximum (or sums them), the
    backward adds each tap's share of the gradient back where it was read."""

    def __init__(self, xp, x_shape, op: str, kernel: int, stride: int, padding: int, channels_last: bool):
        self.xp, self.op, self.channels_last = xp, op, channels_last
        self.x_shape = tuple(x_shape)
        self.spatial = tuple(x_shape[1:3] if channels_last else x_shape[2:])
        self.kernel, self.stride, self.padding = (kernel, kernel), stride, padding
        self.out = tuple((i + 2 * padding - kernel) // stride + 1 for i in self.spatial)
        self.taps = list(itertools.product(range(kernel), range(kernel)))

    def _index(self, spatial: Tuple[slice, ...]) -> tuple:
        everything = slice(None)
        return (everything,) + spatial + (everything,) if self.channels_last else (everything, everything) + spatial

    def _padded(self, x, fill: float):
        p = self.padding
        if p == 0:
            return x
        shape = list(x.shape)
        for axis in (1, 2) if self.channels_last else (2, 3):
            shape[axis] += 2 * p
        padded = self.xp.full(shape, fill, x.dtype)
        padded[self._index(tuple(slice(p, p + s) for s in self.spatial))] = x
        return padded

    def _tap(self, padded, offset):
        return padded[self._index(_tap_slices(offset, self.out, self.stride))]

    def forward(self, x):
        xp = self.xp
        padded = self._padded(x, -math.inf if self.op == "max" else 0.0)
        result = self._tap(padded, self.taps[0]).copy()
        for offset in self.taps[1:]:
            if self.op == "max":
                xp.maximum(result, self._tap(padded, offset), out=result)
            else:
                result += self._tap(padded, offset)
        if self.op == "avg":
            result *= x.dtype.type(1.0 / len(self.taps))
        return result

    def argmax_taps(self, x):
        """Which tap of its window each output took (the first maximum): what the backward needs."""
        xp = self.xp
        padded = self._padded(x, -math.inf)
        best = self._tap(padded, self.taps[0]).copy()
        which = xp.zeros(best.shape, xp.int64)
        for tap, offset in enumerate(self.taps[1:], start=1):
            values = self._tap(padded, offset)
            larger = values > best
            best = xp.where(larger, values, best)
            which[larger] = tap
        return which

    def backward(self, dy, argmax_taps: Optional[object] = None):
        xp, p = self.xp, self.padding
        shape = list(self.x_shape)
        for axis in (1, 2) if self.channels_last else (2, 3):
            shape[axis] += 2 * p
        padded = xp.zeros(shape, dy.dtype)
        share = dy * dy.dtype.type(1.0 / len(self.taps)) if self.op == "avg" else None
        for tap, offset in enumerate(self.taps):
            contribution = xp.where(argmax_taps == tap, dy, 0) if self.op == "max" else share
            padded[self._index(_tap_slices(offset, self.out, self.stride))] += contribution
        return xp.ascontiguousarray(padded[self._index(tuple(slice(p, p + s) for s in self.spatial))])


def global_avg_pool2d(xp, x, channels_last: bool):
    return x.mean(axis=(1, 2) if channels_last else (2, 3), dtype=x.dtype)


def global_avg_pool2d_backward(xp, dy, x_shape, channels_last: bool):
    """dy (N, C) spread evenly over each plane of an x_shape input."""
    area = x_shape[1] * x_shape[2] if channels_last else x_shape[2] * x_shape[3]
    share = dy * dy.dtype.type(1.0 / area)
    spread = share[:, None, None, :] if channels_last else share[:, :, None, None]
    return xp.ascontiguousarray(xp.broadcast_to(spread, x_shape))
