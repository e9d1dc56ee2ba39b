"""convkern's operators: convolution and pooling, forward and backward, in 1-D, 2-D and 3-D.

Each function is a thin, typed entry point over one rank-generic implementation
(``_conv_ops``/``_pool_ops``): parse the arguments, check them and size the result through the
shared shape rules, allocate, and run the kernel with the GIL released. Nothing is allocated or
written before every check has passed.

The semantics are PyTorch's (``torch.nn.functional``), with these additions: TensorFlow's
``"same"`` padding at any stride, asymmetric padding, min pooling, global pooling, ``out=``,
Keras's layouts and kernel formats (``data_format="channels_last"``, ``weight_format="HWIO"``),
and NumPy arrays in and out, or CUDA arrays (CuPy, or anything with ``__cuda_array_interface__``
or ``__dlpack__`` on a GPU), computed by convkern's CUDA kernels and returned as CuPy arrays on the
input's device.

This file is written by ``tools/gen_functional.py``; edit that, then run it.
"""
# fmt: off
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional, Union, cast, overload

from numpy.typing import ArrayLike, NDArray

from ._conv_ops import _conv, _conv_backward, _conv_transpose, _conv_transpose_backward
from ._pool_ops import (
    _adaptive_avg_pool,
    _adaptive_avg_pool_backward,
    _adaptive_max_pool,
    _adaptive_max_pool_backward,
    _avg_pool,
    _avg_pool_backward,
    _extremum_pool,
    _extremum_pool_backward,
    _global_pool,
    _global_pool_backward,
)

#: What the operators return: a NumPy array (a CuPy array on the input's device for CUDA inputs).
Array = NDArray[Any]
#: One int for every spatial axis, or one per axis.
IntOrTuple = Union[int, Sequence[int]]
#: A convolution's padding: an int, one int or (before, after) pair per axis, "same" or "valid".
ConvPadding = Union[int, str, Sequence[Union[int, tuple[int, int]]]]
#: A pooling's padding: an int, one int per axis, "same" or "valid".
PoolPadding = Union[int, str, Sequence[int]]
#: An adaptive pooling's output size: an int, or one int or None (keep the input's) per axis.
OutputSize = Union[int, None, Sequence[Optional[int]]]

__all__ = [
    "conv1d",
    "conv1d_backward",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "min_pool1d",
    "min_pool1d_backward",
    "avg_pool1d",
    "avg_pool1d_backward",
    "global_max_pool1d",
    "global_max_pool1d_backward",
    "global_avg_pool1d",
    "global_avg_pool1d_backward",
    "global_min_pool1d",
    "global_min_pool1d_backward",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool1d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "min_pool2d",
    "min_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_min_pool2d",
    "global_min_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "min_pool3d",
    "min_pool3d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "global_max_pool3d",
    "global_max_pool3d_backward",
    "global_avg_pool3d",
    "global_avg_pool3d_backward",
    "global_min_pool3d",
    "global_min_pool3d_backward",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool3d_backward",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_backward",
]


# ---------------------------------------- 1-D


def conv1d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """1-D convolution (cross-correlation, as in every deep-learning framework).

    y[n, k, o] = bias[k] + sum over the channels c of k's group and the kernel offsets j of
    x[n, c, o * stride - pad_before + j * dilation] * weight[k, c, j], on every spatial axis
    (W); the output size of an axis is
    ``floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kW) with ``weight_format='OIW'`` (the default), (kW,
        C_in/groups, C_out) with ``weight_format='WIO'`` (a Keras/TensorFlow kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIW'`` (the default) or ``'WIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5), np.float32)
    >>> w = np.ones((3, 2, 3), np.float32)
    >>> y = convkern.conv1d(x, w, padding="same")
    >>> y.shape
    (1, 3, 5)
    >>> float(y[0, 0, 2])  # 2 channels x 3 cells
    6.0
    """
    return cast("Array", _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format,
        weight_format=weight_format, out=out))


def conv1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv1d``.

    Takes the forward's arrays and arguments. The results are bitwise reproducible, whatever
    the thread count. A first layer's input needs no gradient: ``output_mask=(False, True, True)``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kW) with ``weight_format='OIW'`` (the default), (kW,
        C_in/groups, C_out) with ``weight_format='WIO'`` (a Keras/TensorFlow kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIW'`` (the default) or ``'WIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5), np.float32)
    >>> w = np.ones((3, 2, 3), np.float32)
    >>> y = convkern.conv1d(x, w, padding="same")
    >>> dx, dw, db = convkern.conv1d_backward(np.ones_like(y), x, w, padding="same")
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 5), (3, 2, 3), (3,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_backward(1, grad_output, input, weight,
        stride, padding, dilation, groups, padding_mode, data_format, weight_format=weight_format,
        output_mask=output_mask))


def conv_transpose1d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """1-D transposed convolution: the gradient of ``conv1d`` with respect to its input, used to upsample.

    The output size of an axis is
    ``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``. The weight is
    PyTorch's ``ConvTranspose`` weight, or with the spatial-first ``weight_format`` a Keras
    ``ConvTranspose`` kernel, whose last two axes are (C_out, C_in): the reverse of a Keras ``Conv``
    kernel's.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kW) with ``weight_format='OIW'`` (the default, PyTorch's),
        (kW, C_out/groups, C_in) with ``weight_format='WIO'`` (a Keras ``Conv1DTranspose`` kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIW'`` (the default) or ``'WIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3), np.float32)
    >>> w = np.ones((2, 4, 2), np.float32)
    >>> y = convkern.conv_transpose1d(x, w, stride=2)
    >>> y.shape
    (1, 4, 6)
    >>> float(y.max())
    2.0
    """
    return cast("Array", _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation,
        data_format, weight_format=weight_format, out=out))


def conv_transpose1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv_transpose1d``.

    Takes the forward's arrays and arguments.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kW) with ``weight_format='OIW'`` (the default, PyTorch's),
        (kW, C_out/groups, C_in) with ``weight_format='WIO'`` (a Keras ``Conv1DTranspose`` kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIW'`` (the default) or ``'WIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3), np.float32)
    >>> w = np.ones((2, 4, 2), np.float32)
    >>> y = convkern.conv_transpose1d(x, w, stride=2)
    >>> dx, dw, db = convkern.conv_transpose1d_backward(np.ones_like(y), x, w, stride=2)
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 3), (2, 4, 2), (4,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_transpose_backward(1, grad_output, input,
        weight, stride, padding, output_padding, groups, dilation, data_format, weight_format=weight_format,
        output_mask=output_mask))


@overload
def max_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def max_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def max_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def max_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """1-D max pooling: the maximum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.max_pool1d(x, 2).ravel().tolist()
    [1.0, 3.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(False, 1, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def max_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``max_pool1d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.max_pool1d_backward(np.ones((1, 1, 2), np.float32), x, 2)
    >>> float(dx.sum())
    2.0
    """
    return cast("Array", _extremum_pool_backward(False, 1, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


@overload
def min_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def min_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def min_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def min_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """1-D min pooling: the minimum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.min_pool1d(x, 2).ravel().tolist()
    [0.0, 2.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(True, 1, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def min_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``min_pool1d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.min_pool1d_backward(np.ones((1, 1, 2), np.float32), x, 2)
    >>> float(dx.sum())
    2.0
    """
    return cast("Array", _extremum_pool_backward(True, 1, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


def avg_pool1d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """1-D average pooling: the mean of each window.

    ``count_include_pad``, ``divisor_override`` and ``ceil_mode`` follow PyTorch; with
    ``padding="same"`` or ``"valid"`` the divisor is the number of cells inside the input.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.avg_pool1d(x, 2).ravel().tolist()
    [0.5, 2.5]
    """
    return cast("Array", _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, out=out))


def avg_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``avg_pool1d`` with respect to its input.

    Each output's gradient is shared equally by the cells its divisor counted.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (W); None or an empty sequence means ``kernel_size``; a
        1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.avg_pool1d_backward(np.ones((1, 1, 2), np.float32), x, 2)
    >>> float(dx.sum())
    2.0
    """
    return cast("Array", _avg_pool_backward(1, grad_output, input, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, data_format))


def global_max_pool1d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 1-D max pooling: the maximum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.global_max_pool1d(x).tolist()
    [[3.0]]
    """
    return cast("Array", _global_pool('max', 1, input, keepdims, data_format, out=out))


def global_max_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_max_pool1d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.global_max_pool1d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('max', 1, grad_output, input, keepdims, data_format))


def global_avg_pool1d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 1-D avg pooling: the mean over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.global_avg_pool1d(x).tolist()
    [[1.5]]
    """
    return cast("Array", _global_pool('avg', 1, input, keepdims, data_format, out=out))


def global_avg_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_avg_pool1d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.global_avg_pool1d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('avg', 1, grad_output, input, keepdims, data_format))


def global_min_pool1d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 1-D min pooling: the minimum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.global_min_pool1d(x).tolist()
    [[0.0]]
    """
    return cast("Array", _global_pool('min', 1, input, keepdims, data_format, out=out))


def global_min_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_min_pool1d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.global_min_pool1d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('min', 1, grad_output, input, keepdims, data_format))


def adaptive_avg_pool1d(
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Adaptive 1-D average pooling: the output size is given, the windows follow from it.

    Output cell i of an axis averages input cells ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)
    - 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> convkern.adaptive_avg_pool1d(x, 2).ravel().tolist()
    [0.5, 2.5]
    """
    return cast("Array", _adaptive_avg_pool(1, input, output_size, data_format, out=out))


def adaptive_avg_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``adaptive_avg_pool1d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.adaptive_avg_pool1d_backward(np.ones((1, 1, 2), np.float32), x, 2)
    >>> float(dx.sum())
    2.0
    """
    return cast("Array", _adaptive_avg_pool_backward(1, grad_output, input, output_size, data_format))


@overload
def adaptive_max_pool1d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def adaptive_max_pool1d(
    input: ArrayLike,
    output_size: OutputSize,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def adaptive_max_pool1d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def adaptive_max_pool1d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """Adaptive 1-D max pooling: the output size is given, the windows follow from it.

    Output cell i of an axis is the maximum of input cells ``floor(i * in / out)`` to ``ceil((i + 1) *
    in / out) - 1``; NaN propagates, ties go to the first cell.

    Parameters
    ----------
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (W); None keeps that axis's input size.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> y, idx = convkern.adaptive_max_pool1d(x, 2, return_indices=True)
    >>> idx.ravel().tolist()
    [1, 3]
    """
    return cast("Array | tuple[Array, Array]", _adaptive_max_pool(1, input, output_size, return_indices,
        data_format, out=out))


def adaptive_max_pool1d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``adaptive_max_pool1d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCW) or (NWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCW'`` (the default, also ``"channels_first"``) or ``'NWC'`` (also
        ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(4, dtype=np.float32).reshape((1, 1, 4))
    >>> dx = convkern.adaptive_max_pool1d_backward(np.ones((1, 1, 2), np.float32), x, 2)
    >>> float(dx.sum())
    2.0
    """
    return cast("Array", _adaptive_max_pool_backward(1, grad_output, input, output_size, data_format, indices))


# ---------------------------------------- 2-D


def conv2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """2-D convolution (cross-correlation, as in every deep-learning framework).

    y[n, k, o] = bias[k] + sum over the channels c of k's group and the kernel offsets j of
    x[n, c, o * stride - pad_before + j * dilation] * weight[k, c, j], on every spatial axis
    (H, W); the output size of an axis is
    ``floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kH, kW) with ``weight_format='OIHW'`` (the default), (kH, kW,
        C_in/groups, C_out) with ``weight_format='HWIO'`` (a Keras/TensorFlow kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (H, W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIHW'`` (the default) or ``'HWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5, 5), np.float32)
    >>> w = np.ones((3, 2, 3, 3), np.float32)
    >>> y = convkern.conv2d(x, w, padding="same")
    >>> y.shape
    (1, 3, 5, 5)
    >>> float(y[0, 0, 2, 2])  # 2 channels x 9 cells
    18.0
    """
    return cast("Array", _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format,
        weight_format=weight_format, out=out))


def conv2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv2d``.

    Takes the forward's arrays and arguments. The results are bitwise reproducible, whatever
    the thread count. A first layer's input needs no gradient: ``output_mask=(False, True, True)``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kH, kW) with ``weight_format='OIHW'`` (the default), (kH, kW,
        C_in/groups, C_out) with ``weight_format='HWIO'`` (a Keras/TensorFlow kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (H, W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIHW'`` (the default) or ``'HWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5, 5), np.float32)
    >>> w = np.ones((3, 2, 3, 3), np.float32)
    >>> y = convkern.conv2d(x, w, padding="same")
    >>> dx, dw, db = convkern.conv2d_backward(np.ones_like(y), x, w, padding="same")
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 5, 5), (3, 2, 3, 3), (3,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_backward(2, grad_output, input, weight,
        stride, padding, dilation, groups, padding_mode, data_format, weight_format=weight_format,
        output_mask=output_mask))


def conv_transpose2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """2-D transposed convolution: the gradient of ``conv2d`` with respect to its input, used to upsample.

    The output size of an axis is
    ``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``. The weight is
    PyTorch's ``ConvTranspose`` weight, or with the spatial-first ``weight_format`` a Keras
    ``ConvTranspose`` kernel, whose last two axes are (C_out, C_in): the reverse of a Keras ``Conv``
    kernel's.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kH, kW) with ``weight_format='OIHW'`` (the default,
        PyTorch's), (kH, kW, C_out/groups, C_in) with ``weight_format='HWIO'`` (a Keras
        ``Conv2DTranspose`` kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (H, W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIHW'`` (the default) or ``'HWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3, 3), np.float32)
    >>> w = np.ones((2, 4, 2, 2), np.float32)
    >>> y = convkern.conv_transpose2d(x, w, stride=2)
    >>> y.shape
    (1, 4, 6, 6)
    >>> float(y.max())
    2.0
    """
    return cast("Array", _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation,
        data_format, weight_format=weight_format, out=out))


def conv_transpose2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv_transpose2d``.

    Takes the forward's arrays and arguments.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kH, kW) with ``weight_format='OIHW'`` (the default,
        PyTorch's), (kH, kW, C_out/groups, C_in) with ``weight_format='HWIO'`` (a Keras
        ``Conv2DTranspose`` kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (H, W); one int, or one per axis (a 1-element sequence
        applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIHW'`` (the default) or ``'HWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3, 3), np.float32)
    >>> w = np.ones((2, 4, 2, 2), np.float32)
    >>> y = convkern.conv_transpose2d(x, w, stride=2)
    >>> dx, dw, db = convkern.conv_transpose2d_backward(np.ones_like(y), x, w, stride=2)
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 3, 3), (2, 4, 2, 2), (4,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_transpose_backward(2, grad_output, input,
        weight, stride, padding, output_padding, groups, dilation, data_format, weight_format=weight_format,
        output_mask=output_mask))


@overload
def max_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def max_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def max_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def max_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """2-D max pooling: the maximum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.max_pool2d(x, 2).ravel().tolist()
    [5.0, 7.0, 13.0, 15.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(False, 2, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def max_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``max_pool2d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    4.0
    """
    return cast("Array", _extremum_pool_backward(False, 2, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


@overload
def min_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def min_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def min_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def min_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """2-D min pooling: the minimum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.min_pool2d(x, 2).ravel().tolist()
    [0.0, 2.0, 8.0, 10.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(True, 2, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def min_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``min_pool2d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.min_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    4.0
    """
    return cast("Array", _extremum_pool_backward(True, 2, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


def avg_pool2d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """2-D average pooling: the mean of each window.

    ``count_include_pad``, ``divisor_override`` and ``ceil_mode`` follow PyTorch; with
    ``padding="same"`` or ``"valid"`` the divisor is the number of cells inside the input.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.avg_pool2d(x, 2).ravel().tolist()
    [2.5, 4.5, 10.5, 12.5]
    """
    return cast("Array", _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, out=out))


def avg_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``avg_pool2d`` with respect to its input.

    Each output's gradient is shared equally by the cells its divisor counted.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (H, W); None or an empty sequence means ``kernel_size``;
        a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.avg_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    4.0
    """
    return cast("Array", _avg_pool_backward(2, grad_output, input, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, data_format))


def global_max_pool2d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 2-D max pooling: the maximum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.global_max_pool2d(x).tolist()
    [[15.0]]
    """
    return cast("Array", _global_pool('max', 2, input, keepdims, data_format, out=out))


def global_max_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_max_pool2d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.global_max_pool2d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('max', 2, grad_output, input, keepdims, data_format))


def global_avg_pool2d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 2-D avg pooling: the mean over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.global_avg_pool2d(x).tolist()
    [[7.5]]
    """
    return cast("Array", _global_pool('avg', 2, input, keepdims, data_format, out=out))


def global_avg_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_avg_pool2d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.global_avg_pool2d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('avg', 2, grad_output, input, keepdims, data_format))


def global_min_pool2d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 2-D min pooling: the minimum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.global_min_pool2d(x).tolist()
    [[0.0]]
    """
    return cast("Array", _global_pool('min', 2, input, keepdims, data_format, out=out))


def global_min_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_min_pool2d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.global_min_pool2d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('min', 2, grad_output, input, keepdims, data_format))


def adaptive_avg_pool2d(
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Adaptive 2-D average pooling: the output size is given, the windows follow from it.

    Output cell i of an axis averages input cells ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)
    - 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> convkern.adaptive_avg_pool2d(x, 2).ravel().tolist()
    [2.5, 4.5, 10.5, 12.5]
    """
    return cast("Array", _adaptive_avg_pool(2, input, output_size, data_format, out=out))


def adaptive_avg_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``adaptive_avg_pool2d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.adaptive_avg_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    4.0
    """
    return cast("Array", _adaptive_avg_pool_backward(2, grad_output, input, output_size, data_format))


@overload
def adaptive_max_pool2d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def adaptive_max_pool2d(
    input: ArrayLike,
    output_size: OutputSize,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def adaptive_max_pool2d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def adaptive_max_pool2d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """Adaptive 2-D max pooling: the output size is given, the windows follow from it.

    Output cell i of an axis is the maximum of input cells ``floor(i * in / out)`` to ``ceil((i + 1) *
    in / out) - 1``; NaN propagates, ties go to the first cell.

    Parameters
    ----------
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (H, W); None keeps that axis's input size.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> y, idx = convkern.adaptive_max_pool2d(x, 2, return_indices=True)
    >>> idx.ravel().tolist()
    [5, 7, 13, 15]
    """
    return cast("Array | tuple[Array, Array]", _adaptive_max_pool(2, input, output_size, return_indices,
        data_format, out=out))


def adaptive_max_pool2d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``adaptive_max_pool2d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCHW) or (NHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCHW'`` (the default, also ``"channels_first"``) or ``'NHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(16, dtype=np.float32).reshape((1, 1, 4, 4))
    >>> dx = convkern.adaptive_max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    4.0
    """
    return cast("Array", _adaptive_max_pool_backward(2, grad_output, input, output_size, data_format, indices))


# ---------------------------------------- 3-D


def conv3d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """3-D convolution (cross-correlation, as in every deep-learning framework).

    y[n, k, o] = bias[k] + sum over the channels c of k's group and the kernel offsets j of
    x[n, c, o * stride - pad_before + j * dilation] * weight[k, c, j], on every spatial axis
    (D, H, W); the output size of an axis is
    ``floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kD, kH, kW) with ``weight_format='OIDHW'`` (the default), (kD,
        kH, kW, C_in/groups, C_out) with ``weight_format='DHWIO'`` (a Keras/TensorFlow kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (D, H, W); one int, or one per axis (a 1-element
        sequence applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIDHW'`` (the default) or ``'DHWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, D, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5, 5, 5), np.float32)
    >>> w = np.ones((3, 2, 3, 3, 3), np.float32)
    >>> y = convkern.conv3d(x, w, padding="same")
    >>> y.shape
    (1, 3, 5, 5, 5)
    >>> float(y[0, 0, 2, 2, 2])  # 2 channels x 27 cells
    54.0
    """
    return cast("Array", _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, data_format,
        weight_format=weight_format, out=out))


def conv3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: ConvPadding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv3d``.

    Takes the forward's arrays and arguments. The results are bitwise reproducible, whatever
    the thread count. A first layer's input needs no gradient: ``output_mask=(False, True, True)``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_out, C_in/groups, kD, kH, kW) with ``weight_format='OIDHW'`` (the default), (kD,
        kH, kW, C_in/groups, C_out) with ``weight_format='DHWIO'`` (a Keras/TensorFlow kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (D, H, W); one int, or one per axis (a 1-element
        sequence applies to every axis).
    padding : int, str or sequence
        Implicit padding: an int for every side, one int per axis, one ``(before, after)`` pair per
        axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` at any stride, the
        extra cell after, as TensorFlow pads).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : str
        How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about the edge cell),
        ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIDHW'`` (the default) or ``'DHWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 5, 5, 5), np.float32)
    >>> w = np.ones((3, 2, 3, 3, 3), np.float32)
    >>> y = convkern.conv3d(x, w, padding="same")
    >>> dx, dw, db = convkern.conv3d_backward(np.ones_like(y), x, w, padding="same")
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 5, 5, 5), (3, 2, 3, 3, 3), (3,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_backward(3, grad_output, input, weight,
        stride, padding, dilation, groups, padding_mode, data_format, weight_format=weight_format,
        output_mask=output_mask))


def conv_transpose3d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    out: Array | None = None,
) -> Array:
    """3-D transposed convolution: the gradient of ``conv3d`` with respect to its input, used to upsample.

    The output size of an axis is
    ``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``. The weight is
    PyTorch's ``ConvTranspose`` weight, or with the spatial-first ``weight_format`` a Keras
    ``ConvTranspose`` kernel, whose last two axes are (C_out, C_in): the reverse of a Keras ``Conv``
    kernel's.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kD, kH, kW) with ``weight_format='OIDHW'`` (the default,
        PyTorch's), (kD, kH, kW, C_out/groups, C_in) with ``weight_format='DHWIO'`` (a Keras
        ``Conv3DTranspose`` kernel).
    bias : array_like or None
        One value per output channel, added to every output; None for no bias.
    stride : int or sequence of int
        Step of the window on each spatial axis (D, H, W); one int, or one per axis (a 1-element
        sequence applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIDHW'`` (the default) or ``'DHWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The output, (N, C_out, D, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3, 3, 3), np.float32)
    >>> w = np.ones((2, 4, 2, 2, 2), np.float32)
    >>> y = convkern.conv_transpose3d(x, w, stride=2)
    >>> y.shape
    (1, 4, 6, 6, 6)
    >>> float(y.max())
    2.0
    """
    return cast("Array", _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation,
        data_format, weight_format=weight_format, out=out))


def conv_transpose3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    weight: ArrayLike,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    data_format: str | None = None,
    *,
    weight_format: str | None = None,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of ``conv_transpose3d``.

    Takes the forward's arrays and arguments.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    weight : array_like
        The filters: (C_in, C_out/groups, kD, kH, kW) with ``weight_format='OIDHW'`` (the default,
        PyTorch's), (kD, kH, kW, C_out/groups, C_in) with ``weight_format='DHWIO'`` (a Keras
        ``Conv3DTranspose`` kernel).
    stride : int or sequence of int
        Step of the window on each spatial axis (D, H, W); one int, or one per axis (a 1-element
        sequence applies to every axis).
    padding : int or sequence of int
        Cells removed from both ends of each output axis, as in PyTorch (``dilation * (kernel - 1) -
        padding`` zeros pad the equivalent convolution's input).
    output_padding : int or sequence of int
        Extra cells added after each output axis to pick among the input sizes a strided convolution
        maps to the same output size; each must be below ``max(stride, dilation)``.
    groups : int
        Channel groups: input and output channels are split into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    weight_format : str or None
        Layout of the weight: ``'OIDHW'`` (the default) or ``'DHWIO'`` (Keras/TensorFlow). The weight
        gradient comes back in the same format.
    output_mask : tuple of 3 bool
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.

    Returns
    -------
    grad_input : ndarray or None
        Gradient with respect to ``input`` (its shape and layout).
    grad_weight : ndarray or None
        Gradient with respect to ``weight``, in ``weight_format``.
    grad_bias : ndarray or None
        Gradient with respect to the bias, one value per output channel.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.ones((1, 2, 3, 3, 3), np.float32)
    >>> w = np.ones((2, 4, 2, 2, 2), np.float32)
    >>> y = convkern.conv_transpose3d(x, w, stride=2)
    >>> dx, dw, db = convkern.conv_transpose3d_backward(np.ones_like(y), x, w, stride=2)
    >>> dx.shape, dw.shape, db.shape
    ((1, 2, 3, 3, 3), (2, 4, 2, 2, 2), (4,))
    """
    return cast("tuple[Array | None, Array | None, Array | None]", _conv_transpose_backward(3, grad_output, input,
        weight, stride, padding, output_padding, groups, dilation, data_format, weight_format=weight_format,
        output_mask=output_mask))


@overload
def max_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def max_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def max_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def max_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """3-D max pooling: the maximum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, D, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.max_pool3d(x, 2).ravel().tolist()
    [21.0, 23.0, 29.0, 31.0, 53.0, 55.0, 61.0, 63.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(False, 3, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def max_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``max_pool3d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.max_pool3d_backward(np.ones((1, 1, 2, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    8.0
    """
    return cast("Array", _extremum_pool_backward(False, 3, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


@overload
def min_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def min_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def min_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = ...,
    padding: PoolPadding = ...,
    dilation: IntOrTuple = ...,
    ceil_mode: bool = ...,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def min_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """3-D min pooling: the minimum of each window.

    Padded cells are never selected; NaN propagates; ties go to the first cell in window
    order. Sizes follow PyTorch's rules, ``ceil_mode`` included.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, D, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.min_pool3d(x, 2).ravel().tolist()
    [0.0, 2.0, 8.0, 10.0, 32.0, 34.0, 40.0, 42.0]
    """
    return cast("Array | tuple[Array, Array]", _extremum_pool(True, 3, input, kernel_size, stride, padding,
        dilation, ceil_mode, return_indices, data_format, out=out))


def min_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``min_pool3d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    dilation : int or sequence of int
        Spacing between the window's cells on each axis.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.min_pool3d_backward(np.ones((1, 1, 2, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    8.0
    """
    return cast("Array", _extremum_pool_backward(True, 3, grad_output, input, kernel_size, stride, padding,
        dilation, ceil_mode, data_format, indices))


def avg_pool3d(
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """3-D average pooling: the mean of each window.

    ``count_include_pad``, ``divisor_override`` and ``ceil_mode`` follow PyTorch; with
    ``padding="same"`` or ``"valid"`` the divisor is the number of cells inside the input.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        The pooled values, (N, C, D, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.avg_pool3d(x, 2).ravel().tolist()
    [10.5, 12.5, 18.5, 20.5, 42.5, 44.5, 50.5, 52.5]
    """
    return cast("Array", _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, out=out))


def avg_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: PoolPadding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``avg_pool3d`` with respect to its input.

    Each output's gradient is shared equally by the cells its divisor counted.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    kernel_size : int or sequence of int
        Size of the window on each spatial axis (D, H, W).
    stride : int, sequence of int or None
        Step of the window on each spatial axis (D, H, W); None or an empty sequence means
        ``kernel_size``; a 1-element sequence applies to every axis.
    padding : int, str or sequence of int
        Implicit padding on both sides of each axis (padded cells are never selected and, unless
        ``count_include_pad``, not counted), or ``"same"``/``"valid"``.
    ceil_mode : bool
        Round the output size up rather than down, as long as the last window starts inside the input or
        its leading padding.
    count_include_pad : bool
        Count padded cells in the divisor (with integer padding).
    divisor_override : int or None
        Divide every window's sum by this instead.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.avg_pool3d_backward(np.ones((1, 1, 2, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    8.0
    """
    return cast("Array", _avg_pool_backward(3, grad_output, input, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, data_format))


def global_max_pool3d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 3-D max pooling: the maximum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.global_max_pool3d(x).tolist()
    [[63.0]]
    """
    return cast("Array", _global_pool('max', 3, input, keepdims, data_format, out=out))


def global_max_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_max_pool3d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.global_max_pool3d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('max', 3, grad_output, input, keepdims, data_format))


def global_avg_pool3d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 3-D avg pooling: the mean over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.global_avg_pool3d(x).tolist()
    [[31.5]]
    """
    return cast("Array", _global_pool('avg', 3, input, keepdims, data_format, out=out))


def global_avg_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_avg_pool3d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.global_avg_pool3d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('avg', 3, grad_output, input, keepdims, data_format))


def global_min_pool3d(
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Global 3-D min pooling: the minimum over all spatial cells of each (n, c).

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C), or with ``keepdims`` the input's layout with unit spatial axes.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.global_min_pool3d(x).tolist()
    [[0.0]]
    """
    return cast("Array", _global_pool('min', 3, input, keepdims, data_format, out=out))


def global_min_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    keepdims: bool = False,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``global_min_pool3d`` with respect to its input.

    The gradient goes to the first extreme cell.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    keepdims : bool
        Keep the spatial axes, with size 1.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.global_min_pool3d_backward(np.ones((1, 1), np.float32), x)
    >>> float(dx.sum())
    1.0
    """
    return cast("Array", _global_pool_backward('min', 3, grad_output, input, keepdims, data_format))


def adaptive_avg_pool3d(
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array:
    """Adaptive 3-D average pooling: the output size is given, the windows follow from it.

    Output cell i of an axis averages input cells ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)
    - 1``.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (D, H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, D, H, W) in the input's layout (``out`` if given).

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> convkern.adaptive_avg_pool3d(x, 2).ravel().tolist()
    [10.5, 12.5, 18.5, 20.5, 42.5, 44.5, 50.5, 52.5]
    """
    return cast("Array", _adaptive_avg_pool(3, input, output_size, data_format, out=out))


def adaptive_avg_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
) -> Array:
    """Gradient of ``adaptive_avg_pool3d`` with respect to its input.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (D, H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.adaptive_avg_pool3d_backward(np.ones((1, 1, 2, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    8.0
    """
    return cast("Array", _adaptive_avg_pool_backward(3, grad_output, input, output_size, data_format))


@overload
def adaptive_max_pool3d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: Literal[False] = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array: ...


@overload
def adaptive_max_pool3d(
    input: ArrayLike,
    output_size: OutputSize,
    *,
    return_indices: Literal[True],
    data_format: str | None = ...,
    out: Array | None = ...,
) -> tuple[Array, Array]: ...


@overload
def adaptive_max_pool3d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = ...,
    data_format: str | None = ...,
    *,
    out: Array | None = ...,
) -> Array | tuple[Array, Array]: ...


def adaptive_max_pool3d(
    input: ArrayLike,
    output_size: OutputSize,
    return_indices: bool = False,
    data_format: str | None = None,
    *,
    out: Array | None = None,
) -> Array | tuple[Array, Array]:
    """Adaptive 3-D max pooling: the output size is given, the windows follow from it.

    Output cell i of an axis is the maximum of input cells ``floor(i * in / out)`` to ``ceil((i + 1) *
    in / out) - 1``; NaN propagates, ties go to the first cell.

    Parameters
    ----------
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (D, H, W); None keeps that axis's input size.
    return_indices : bool
        Also return, for each output, the flat index of the selected cell in its (n, c) plane of the
        input, as int64.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    out : ndarray or None
        Optional C-contiguous array of the result's shape and dtype to write the result into (and
        return); it must not overlap an input.

    Returns
    -------
    y : ndarray
        (N, C, D, H, W) in the input's layout (``out`` if given).
    indices : ndarray
        Only with ``return_indices=True``: int64, the output's shape.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> y, idx = convkern.adaptive_max_pool3d(x, 2, return_indices=True)
    >>> idx.ravel().tolist()
    [21, 23, 29, 31, 53, 55, 61, 63]
    """
    return cast("Array | tuple[Array, Array]", _adaptive_max_pool(3, input, output_size, return_indices,
        data_format, out=out))


def adaptive_max_pool3d_backward(
    grad_output: ArrayLike,
    input: ArrayLike,
    output_size: OutputSize,
    data_format: str | None = None,
    indices: ArrayLike | None = None,
) -> Array:
    """Gradient of ``adaptive_max_pool3d`` with respect to its input.

    Each output's gradient goes to the cell its window selected.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the forward's output; the forward output's shape and the
        input's dtype.
    input : array_like
        The activations, (NCDHW) or (NDHWC) as ``data_format`` says, or unbatched without N; float32 or
        float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``)
        runs on the CUDA kernels and may also be float16.
    output_size : int, None or sequence of int or None
        Output size on each spatial axis (D, H, W); None keeps that axis's input size.
    data_format : str or None
        Layout of the activations: ``'NCDHW'`` (the default, also ``"channels_first"``) or ``'NDHWC'``
        (also ``"channels_last"``, Keras's). Results come in the same layout.
    indices : array_like or None
        The forward's ``return_indices`` result, to skip recomputing it; every index is checked.

    Returns
    -------
    grad_input : ndarray
        The input's shape and layout.

    Raises
    ------
    ValueError
        If an argument's value or an array's shape is invalid (the message names the argument, what was
        expected and what was given); nothing is allocated or written before every check has passed.
    TypeError
        If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
        differ in dtype or device.
    RuntimeError
        If a CUDA array is given where this build or this machine has no CUDA support.

    Examples
    --------
    >>> import numpy as np, convkern
    >>> x = np.arange(64, dtype=np.float32).reshape((1, 1, 4, 4, 4))
    >>> dx = convkern.adaptive_max_pool3d_backward(np.ones((1, 1, 2, 2, 2), np.float32), x, 2)
    >>> float(dx.sum())
    8.0
    """
    return cast("Array", _adaptive_max_pool_backward(3, grad_output, input, output_size, data_format, indices))
