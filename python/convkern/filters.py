"""Classic image kernels and ``filter2d``: the convolutions a CNN learns, written by hand.

A kernel is a small grid of weights laid over the image, centred on a pixel; the output pixel is
the sum of the pixels under it times the weights (a cross-correlation, as in every deep-learning
framework: the kernel is not flipped)::

    Y(i, j) = sum_m sum_n X(i + m - kh//2, j + n - kw//2) * K(m, n)

    >>> import numpy as np
    >>> from convkern import filters
    >>> image = np.arange(25, dtype=np.uint8).reshape(5, 5)
    >>> round(float(filters.filter2d(image, "box_blur", boundary="replicate")[2, 2]), 4)  # mean of 6..8, 11..13, 16..18
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

from typing import Any, Dict, Optional, Union

import numpy as np

from . import functional as F

__all__ = ["KERNELS", "kernel", "filter2d", "BOUNDARIES", "SCIPY_MODES"]


def _frozen(rows: Any, scale: float = 1.0) -> np.ndarray:
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

#: filter2d's ``mode``: scipy.ndimage's names, with scipy's meanings. Four are the boundaries above
#: under another name; scipy's "reflect" (d c b a | a b c d | d c b a, the edge pixel repeated) has
#: no padding_mode and is an explicit padded copy.
SCIPY_MODES = {
    "constant": "zeros",
    "mirror": "reflect",
    "nearest": "replicate",
    "wrap": "circular",
    "reflect": "symmetric",
}


def kernel(name: str) -> np.ndarray:
    """A writable float64 copy of the kernel called ``name`` (one of ``KERNELS``)."""
    try:
        return np.array(KERNELS[name])  # np.array copies: a writable copy
    except KeyError:
        raise KeyError(f"no kernel named {name!r}; the kernels are {sorted(KERNELS)}") from None


def filter2d(
    image: Any, kernel_or_name: Union[str, np.ndarray], boundary: str = "zeros", *, mode: Optional[str] = None
) -> np.ndarray:
    """Filters an H×W or H×W×C image with a 2-D kernel; the result has the image's size.

    ``kernel_or_name``: a 2-D array or the name of one of ``KERNELS``. A colour image is filtered
    channel by channel with the same kernel. The kernel's centre is cell (kh//2, kw//2), as in
    ``scipy.ndimage.correlate``; so are the results, with the boundary named as the convolutions'
    ``padding_mode``:

    * "zeros": pixels outside the image are 0 (scipy's "constant");
    * "reflect": mirrored about the edge pixel, d c b | a b c d | c b a (scipy's "mirror");
    * "replicate": the edge pixel repeated, a a a | a b c d | d d d (scipy's "nearest");
    * "circular": the image wraps around, b c d | a b c d | a b c (scipy's "wrap").

    ``boundary`` also takes those four scipy names. ``mode=`` takes scipy.ndimage's own names with
    scipy's meanings, as ``scipy.ndimage.correlate(image, kernel, mode=...)`` does: "constant",
    "mirror", "nearest", "wrap", and "reflect", which in scipy repeats the edge pixel
    (d c b a | a b c d | d c b a) — unlike the boundary "reflect" above, which is scipy's "mirror".

    >>> import numpy as np
    >>> from convkern import filters
    >>> row = np.array([[1.0, 2.0, 3.0]])
    >>> filters.filter2d(row, np.array([[1.0, 0.0, 0.0]]), mode="reflect").tolist()  # left neighbour
    [[1.0, 1.0, 2.0]]
    >>> filters.filter2d(row, np.array([[1.0, 0.0, 0.0]]), mode="mirror").tolist()
    [[2.0, 1.0, 2.0]]

    Any real dtype is accepted; the result is floating point (float32 for images of up to 16-bit
    integers or float32, float64 otherwise: NumPy's promotion with float32), so negative edge
    responses and fractional blurs survive. Clip and cast for display.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be H×W or H×W×C, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise TypeError(f"image must have a real numeric dtype, got {image.dtype}")
    symmetric = False  # scipy's "reflect": no padding_mode has it, so it is an explicit copy below
    if mode is not None:
        if boundary != "zeros":
            raise ValueError(f"give boundary or mode, not both: got boundary={boundary!r} and mode={mode!r}")
        if mode not in SCIPY_MODES:
            raise ValueError(f"mode must be one of scipy.ndimage's {sorted(SCIPY_MODES)}, got {mode!r}")
        symmetric = mode == "reflect"
        boundary = "zeros" if symmetric else SCIPY_MODES[mode]
    elif boundary in SCIPY_MODES and boundary not in BOUNDARIES:
        boundary = SCIPY_MODES[boundary]  # scipy's name for one of the boundaries
    elif boundary not in BOUNDARIES:
        names = sorted(BOUNDARIES) + sorted(set(SCIPY_MODES) - set(BOUNDARIES))
        raise ValueError(f"boundary must be one of {names} (or mode= one of scipy.ndimage's), got {boundary!r}")
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
    if symmetric:
        x = np.pad(x, [(0, 0), (0, 0)] + padding, mode="symmetric")
        y = F.conv2d(x, weight)[:, 0]
    else:
        y = F.conv2d(x, weight, padding=padding, padding_mode=boundary)[:, 0]
    return y[0] if image.ndim == 2 else np.ascontiguousarray(np.moveaxis(y, 0, -1))
