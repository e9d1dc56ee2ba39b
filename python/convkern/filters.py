"""Classic image kernels and ``filter2d``: the convolutions a CNN learns, written by hand.

A kernel is a small grid of weights laid over the image, centred on a pixel; the output pixel is
the sum of the pixels under it times the weights (a cross-correlation, as in every deep-learning
framework: the kernel is not flipped)::

    Y(i, j) = sum_m sum_n X(i + m - kh//2, j + n - kw//2) * K(m, n)

    >>> import numpy as np
    >>> from convkern import filters
    >>> image = np.arange(25, dtype=np.uint8).reshape(5, 5)
    >>> float(filters.filter2d(image, "box_blur", boundary="replicate")[2, 2])   # mean of 6..8, 11..13, 16..18
    12.0
    >>> sorted(filters.KERNELS)[:3]
    ['box_blur', 'corner', 'edge_detection']

Which kernel does what (the first layer of a trained CNN learns kernels much like these):

* identity: the image unchanged.
* edge_detection, laplacian, outline: respond where intensity changes in any direction; zero on
  flat regions (their weights sum to 0).
* sharpen: the image plus its Laplacian edges (weights sum to 1, so flat regions are kept).
* box_blur, gaussian_blur: local averages (weights sum to 1); the Gaussian weighs the centre more.
* sobel_x, sobel_y: the horizontal / vertical intensity gradient, so vertical / horizontal edges.
* vertical_line, horizontal_line: a bright one-pixel line on a dark background, in that direction.
* corner: a bright corner opening to the bottom right.
"""
from __future__ import annotations

from typing import Dict, Union

import numpy as np

from . import functional as F

__all__ = ["KERNELS", "kernel", "filter2d", "BOUNDARIES"]


def _frozen(rows, scale: float = 1.0) -> np.ndarray:
    k = np.array(rows, dtype=np.float64) * scale
    k.flags.writeable = False  # shared by every caller: nobody may change the library's kernels
    return k


#: The kernels of the course material, by name, as read-only float64 arrays.
KERNELS: Dict[str, np.ndarray] = {
    "identity": _frozen([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge_detection": _frozen([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
    "laplacian": _frozen([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "outline": _frozen([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box_blur": _frozen([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),
    "gaussian_blur": _frozen([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),
    "sobel_x": _frozen([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel_y": _frozen([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "vertical_line": _frozen([[-1, 1, -1], [-1, 1, -1], [-1, 1, -1]]),
    "horizontal_line": _frozen([[-1, -1, -1], [1, 1, 1], [-1, -1, -1]]),
    "corner": _frozen([[-1, -1, -1], [-1, 1, 1], [-1, 1, 1]]),
}

#: filter2d's boundaries: how the image is extended past its edges (those of the convolutions'
#: padding_mode), and the scipy.ndimage mode that means the same.
BOUNDARIES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}


def kernel(name: str) -> np.ndarray:
    """A writable float64 copy of the kernel called ``name`` (one of ``KERNELS``)."""
    try:
        return KERNELS[name].copy()
    except KeyError:
        raise KeyError(f"no kernel named {name!r}; the kernels are {sorted(KERNELS)}") from None


def filter2d(image, kernel_or_name: Union[str, np.ndarray], boundary: str = "zeros") -> np.ndarray:
    """Filters an H×W or H×W×C image with a 2-D kernel; the result has the image's size.

    ``kernel_or_name``: a 2-D array or the name of one of ``KERNELS``. A colour image is filtered
    channel by channel with the same kernel. The kernel's centre is cell (kh//2, kw//2), as in
    ``scipy.ndimage.correlate``; so are the results, with the boundary named as the convolutions'
    ``padding_mode``:

    * "zeros": pixels outside the image are 0 (scipy's "constant");
    * "reflect": mirrored about the edge pixel, d c b | a b c d | c b a (scipy's "mirror");
    * "replicate": the edge pixel repeated, a a a | a b c d | d d d (scipy's "nearest");
    * "circular": the image wraps around, b c d | a b c d | a b c (scipy's "wrap").

    Any real dtype is accepted; the result is floating point (float32 for images of up to 16-bit
    integers or float32, float64 otherwise: NumPy's promotion with float32), so negative edge
    responses and fractional blurs survive. Clip and cast for display.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be H×W or H×W×C, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise TypeError(f"image must have a real numeric dtype, got {image.dtype}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {sorted(BOUNDARIES)}, got {boundary!r}")
    k = kernel(kernel_or_name) if isinstance(kernel_or_name, str) else np.asarray(kernel_or_name)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    if k.dtype.kind not in "biuf":
        raise TypeError(f"kernel must have a real numeric dtype, got {k.dtype}")

    dtype = np.result_type(image.dtype, np.float32)
    # Every channel is an independent grey image: stack them as a batch of one-channel images,
    # (C, 1, H, W), and filter all of them with one 1-in, 1-out convolution.
    planes = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    x = planes.astype(dtype)[:, None]
    weight = k.astype(dtype)[None, None]
    # Same-size output: kh - 1 extra rows in all, kh//2 of them above (the kernel's centre row).
    padding = [(n // 2, n - 1 - n // 2) for n in k.shape]
    y = F.conv2d(x, weight, padding=padding, padding_mode=boundary)[:, 0]
    return y[0] if image.ndim == 2 else np.ascontiguousarray(np.moveaxis(y, 0, -1))
