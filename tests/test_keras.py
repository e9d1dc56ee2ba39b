"""Keras 3 layers and convkern agree when given Keras's layouts and kernels as they are.

Keras runs on its PyTorch backend (``KERAS_BACKEND=torch``), so no TensorFlow is needed; the whole
module is skipped where Keras is not installed. Keras's kernels are ``(*kernel, C_in, C_out)`` for
``ConvND`` and ``(*kernel, C_out, C_in)`` for ``ConvNDTranspose``: both are ``weight_format="HWIO"``
(``"WIO"``, ``"DHWIO"``), with ``data_format="channels_last"``.
"""

from __future__ import annotations

import os
import warnings

import convkern
import numpy as np
import pytest
from convkern import nn

os.environ.setdefault("KERAS_BACKEND", "torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Keras's import-time deprecation notices are not ours to fix
    keras = pytest.importorskip("keras")

if keras.backend.backend() != "torch":
    pytest.skip(f"Keras is already running on {keras.backend.backend()!r}, not torch", allow_module_level=True)

# Keras's torch backend converts through numpy.array(tensor) and numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

LAYOUT_WEIGHT = {1: "WIO", 2: "HWIO", 3: "DHWIO"}


def _numpy(a) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(a))


def _input(rank: int, channels: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2,) + (size,) * rank + (channels,)).astype(np.float32)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv_matches_keras(rank, padding, strides):
    layer = getattr(keras.layers, f"Conv{rank}D")(5, 3, strides=strides, padding=padding, dilation_rate=1)
    x = _input(rank, 4, 8 if rank < 3 else 6, seed=rank)
    want = _numpy(layer(x))
    kernel, bias = (_numpy(v) for v in layer.weights)
    assert kernel.shape == (3,) * rank + (4, 5)
    got = getattr(convkern, f"conv{rank}d")(
        x, kernel, bias, stride=strides, padding=padding, data_format="channels_last", weight_format=LAYOUT_WEIGHT[rank]
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv_transpose_matches_keras(rank, strides):
    """Conv{rank}DTranspose's kernel is (*kernel, C_out, C_in); padding="valid" is PyTorch's padding 0."""
    layer = getattr(keras.layers, f"Conv{rank}DTranspose")(
        3, 2 if strides == 2 else 3, strides=strides, padding="valid"
    )
    x = _input(rank, 4, 5, seed=10 + rank)
    want = _numpy(layer(x))
    kernel, bias = (_numpy(v) for v in layer.weights)
    assert kernel.shape[-2:] == (3, 4)  # (C_out, C_in)
    got = getattr(convkern, f"conv_transpose{rank}d")(
        x, kernel, bias, stride=strides, data_format="channels_last", weight_format=LAYOUT_WEIGHT[rank]
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_depthwise_and_grouped_conv_match_keras():
    layer = keras.layers.Conv2D(6, 3, padding="same", groups=3)
    x = _input(2, 6, 7, seed=21)
    want = _numpy(layer(x))
    kernel, bias = (_numpy(v) for v in layer.weights)
    got = convkern.conv2d(x, kernel, bias, padding="same", groups=3, data_format="channels_last", weight_format="HWIO")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_matches_keras(padding):
    x = _input(2, 3, 7, seed=30)
    for keras_layer, op in (
        (keras.layers.MaxPooling2D, convkern.max_pool2d),
        (keras.layers.AveragePooling2D, convkern.avg_pool2d),
    ):
        want = _numpy(keras_layer(pool_size=3, strides=2, padding=padding)(x))
        got = op(x, 3, 2, padding, data_format="channels_last")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        convkern.global_avg_pool2d(x, data_format="channels_last"),
        _numpy(keras.layers.GlobalAveragePooling2D()(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_nn_layer_loads_a_keras_kernel_as_is():
    layer = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    x = _input(2, 3, 9, seed=40)
    want = _numpy(layer(x))
    kernel, bias = (_numpy(v) for v in layer.weights)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding="same", data_format="channels_last", weight_format="HWIO")
    conv.load_state_dict({"weight": kernel, "bias": bias})
    np.testing.assert_allclose(conv(x), want, rtol=1e-4, atol=1e-4)
