"""The Winograd F(4x4, 3x3) path of 3x3 stride-1 float32 convolutions (csrc/cpu/conv_winograd.cpp),
in both layouts: the kernel is channels-last, channels-first activations go through copies.

CONVKERN_WINOGRAD=1 sends every eligible geometry through it, whatever its size, so that small
shapes exercise tile edges, padding and batch boundaries; =0 forces the implicit GEMM. The
kernels read the variable on every call.
"""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from conftest import assert_close, poisoned
from convkern import reference as ref


@pytest.fixture
def winograd(monkeypatch):
    monkeypatch.setenv("CONVKERN_WINOGRAD", "1")


LAYOUTS = ["channels_first", "channels_last"]


def _to(a, data_format):
    """A channels-first array in data_format (a contiguous copy for channels_last)."""
    return np.ascontiguousarray(np.moveaxis(a, -3, -1)) if data_format == "channels_last" else a


def _back(a, data_format):
    """An array in data_format, viewed channels-first."""
    return np.moveaxis(a, -1, -3) if data_format == "channels_last" else a


def _arrays(rng, n, c, k, hw, bias=True):
    x = rng.standard_normal(((n,) if n >= 0 else ()) + (c,) + hw).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if bias else None
    return x, w, b


SHAPES = [
    # n, c, k, (h, w), padding
    (1, 1, 1, (3, 3), 0),  # one output: one partial tile
    (2, 3, 5, (7, 9), 1),
    (1, 16, 20, (13, 11), (0, 2)),  # per-axis padding
    (3, 17, 13, (17, 19), 1),  # odd sizes, channels not multiples of the micro-kernel's
    (2, 33, 70, (9, 10), "same"),
    (1, 8, 40, (5, 33), ((2, 0), (1, 3))),  # asymmetric pairs
    (4, 5, 7, (1, 1), 1),  # 1x1 image: the border is all padding
    (2, 4, 6, (2, 40), ((1, 1), (0, 0))),
    (1, 6, 9, (6, 6), 3),  # padding wider than the kernel: zero borders of outputs
    (5, 2, 3, (4, 5), "valid"),
    (-1, 7, 11, (12, 14), 1),  # unbatched
    (2, 64, 48, (15, 15), 1),  # several tile blocks and panels per block
    (1, 130, 25, (8, 8), 1),  # more than two reduction chunks of 64 channels
    # 96 tiles or more: the weights transformed once for all tile blocks (fewer: per panel)
    (2, 20, 36, (30, 26), 1),
    (1, 70, 200, (40, 38), (0, 2)),  # output channels in more than one chunk of 192
]


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("n,c,k,hw,padding", SHAPES)
def test_winograd_forward_matches_reference(winograd, n, c, k, hw, padding, data_format, rng):
    x, w, b = _arrays(rng, n, c, k, hw, bias=bool(c % 2))
    expected = ref.conv2d(
        x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64), padding=padding
    )
    out = poisoned(_to(expected, data_format).shape, np.float32)
    y = convkern.conv2d(_to(x, data_format), w, b, padding=padding, data_format=data_format, out=out)
    assert y is out
    assert_close(_back(y, data_format), expected, reduction=9 * c, what=f"n={n} c={c} k={k} hw={hw} padding={padding}")


def test_winograd_empty_batch(winograd):
    y = convkern.conv2d(np.zeros((0, 4, 8, 8), np.float32), np.ones((5, 4, 3, 3), np.float32), padding=1)
    assert y.shape == (0, 5, 8, 8)


def test_winograd_padding_modes(winograd, rng):
    # Non-zero padding modes pad a copy and run the zero-padding kernel on it.
    x, w, b = _arrays(rng, 2, 6, 10, (9, 11))
    for mode in ("reflect", "replicate", "circular"):
        got = convkern.conv2d(x, w, b, padding=1, padding_mode=mode)
        want = ref.conv2d(x, w, b, padding=1, padding_mode=mode)
        assert_close(got, want, reduction=54, what=mode)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_is_chosen_for_large_layers(monkeypatch, data_format, rng):
    """Without the override a large 3x3 layer runs on Winograd (its rounding differs from the
    implicit GEMM's), small ones and float64 do not."""
    x, w, b = _arrays(rng, 2, 32, 32, (28, 28))
    x = _to(x, data_format)
    monkeypatch.delenv("CONVKERN_WINOGRAD", raising=False)
    auto = convkern.conv2d(x, w, b, padding=1, data_format=data_format)
    monkeypatch.setenv("CONVKERN_WINOGRAD", "1")
    forced = convkern.conv2d(x, w, b, padding=1, data_format=data_format)
    monkeypatch.setenv("CONVKERN_WINOGRAD", "0")
    gemm = convkern.conv2d(x, w, b, padding=1, data_format=data_format)
    np.testing.assert_array_equal(auto, forced)
    assert not np.array_equal(forced, gemm)
    assert_close(forced, gemm, reduction=9 * 32)
    # Small layers stay on the implicit GEMM.
    xs, ws, bs = _arrays(rng, 1, 4, 4, (6, 6))
    monkeypatch.delenv("CONVKERN_WINOGRAD")
    auto = convkern.conv2d(xs, ws, bs, padding=1)
    monkeypatch.setenv("CONVKERN_WINOGRAD", "0")
    np.testing.assert_array_equal(auto, convkern.conv2d(xs, ws, bs, padding=1))


@pytest.mark.parametrize("dtype", [np.float64])
def test_float64_never_takes_winograd(winograd, dtype, rng):
    x = rng.standard_normal((2, 20, 13, 13))
    w = rng.standard_normal((24, 20, 3, 3))
    assert_close(convkern.conv2d(x, w, padding=1), ref.conv2d(x, w, padding=1), reduction=180, dtype=dtype)


@pytest.mark.parametrize("hw", [(23, 21), (11, 13)], ids=["tile-blocks", "few-tiles"])
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_bitwise_deterministic_across_thread_counts(winograd, data_format, hw, rng):
    """Both forward schemes: tile blocks with the weights transformed once (108 tiles), and
    fewer than 96 tiles with the weights transformed per output-channel panel (36)."""
    x, w, b = _arrays(rng, 3, 40, 52, hw)
    x = _to(x, data_format)
    saved = convkern.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            convkern.set_num_threads(threads)
            results.append(convkern.conv2d(x, w, b, padding=1, data_format=data_format))
    finally:
        convkern.set_num_threads(saved)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].view(np.uint32), other.view(np.uint32))


BACKWARD_SHAPES = [
    # n, c, k, (h, w), padding (backward data runs on Winograd for padding <= 2)
    (1, 1, 1, (3, 3), 0),
    (2, 3, 5, (7, 9), 1),
    (1, 16, 20, (13, 11), (0, 2)),
    (3, 17, 13, (17, 19), 2),
    (2, 33, 70, (9, 10), "same"),
    (1, 8, 40, (5, 33), ((2, 0), (1, 2))),
    (4, 5, 7, (1, 1), 1),
    (2, 64, 48, (15, 15), 1),
    (1, 6, 9, (6, 6), 3),  # padding 3: the implicit GEMM's (crop), same answer
    (-1, 7, 11, (12, 14), 1),
    (2, 36, 20, (30, 26), 1),  # 96 tiles or more
]


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("n,c,k,hw,padding", BACKWARD_SHAPES)
def test_winograd_backward_data_matches_reference(winograd, n, c, k, hw, padding, data_format, rng):
    x, w, _ = _arrays(rng, n, c, k, hw, bias=False)
    dy_shape = ref.conv2d(x, w, padding=padding).shape
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    args = (_to(dy, data_format), _to(x, data_format), w)
    gi, gw, gb = convkern.conv2d_backward(*args, padding=padding, data_format=data_format)
    ri, rw, rb = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=padding)
    assert_close(_back(gi, data_format), ri, reduction=9 * k, what="grad_input")
    positions = max(1, dy.size // k)
    assert_close(gw, rw, reduction=positions, what="grad_weight")
    assert_close(gb, rb, reduction=positions, what="grad_bias")
    only = convkern.conv2d_backward(*args, padding=padding, data_format=data_format, output_mask=(True, False, False))
    np.testing.assert_array_equal(only[0], gi)


def test_winograd_conv_transpose(winograd, rng):
    x = rng.standard_normal((2, 24, 10, 13)).astype(np.float32)
    w = rng.standard_normal((24, 20, 3, 3)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    for padding in (0, 1, 2):
        got = convkern.conv_transpose2d(x, w, b, padding=padding)
        want = ref.conv_transpose2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=padding)
        assert_close(got, want, reduction=9 * 24, what=f"padding={padding}")


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_backward_data_is_chosen_and_deterministic(monkeypatch, data_format, rng):
    x, w, _ = _arrays(rng, 2, 32, 40, (28, 28), bias=False)
    dy = rng.standard_normal((2, 40, 28, 28)).astype(np.float32)
    x, dy = _to(x, data_format), _to(dy, data_format)
    mask = (True, False, False)
    monkeypatch.delenv("CONVKERN_WINOGRAD", raising=False)
    saved = convkern.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            convkern.set_num_threads(threads)
            results.append(convkern.conv2d_backward(dy, x, w, padding=1, data_format=data_format, output_mask=mask)[0])
    finally:
        convkern.set_num_threads(saved)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].view(np.uint32), other.view(np.uint32))
    monkeypatch.setenv("CONVKERN_WINOGRAD", "0")
    gemm = convkern.conv2d_backward(dy, x, w, padding=1, data_format=data_format, output_mask=mask)[0]
    assert not np.array_equal(results[0], gemm)
    assert_close(results[0], gemm, reduction=9 * 40)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_winograd_with_other_micro_kernels(isa, data_format):
    """The GEMMs run on whichever micro-kernel the CPU gets (other MR x NR panels)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, convkern\n"
        "from convkern import reference as ref\n"
        f"fmt = {data_format!r}\n"
        "to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if fmt == 'channels_last' else (lambda a: a)\n"
        "back = (lambda a: np.moveaxis(a, -1, 1)) if fmt == 'channels_last' else (lambda a: a)\n"
        "rng = np.random.default_rng(3)\n"
        "x = rng.standard_normal((3, 21, 19, 17)).astype(np.float32)\n"
        "w = rng.standard_normal((30, 21, 3, 3)).astype(np.float32)\n"
        "b = rng.standard_normal(30).astype(np.float32)\n"
        "y = back(convkern.conv2d(to(x), w, b, padding=1, data_format=fmt))\n"
        "r = ref.conv2d(x.astype(float), w.astype(float), b.astype(float), padding=1)\n"
        "assert np.allclose(y, r, rtol=1e-4, atol=1e-5 * 189 ** 0.5), abs(y - r).max()\n"
        "dy = rng.standard_normal(r.shape).astype(np.float32)\n"
        "gi = convkern.conv2d_backward(to(dy), to(x), w, padding=1, data_format=fmt, output_mask=(True, False, False))[0]\n"
        "gi = back(gi)\n"
        "ri = ref.conv2d_backward(dy.astype(float), x.astype(float), w.astype(float), padding=1)[0]\n"
        "assert np.allclose(gi, ri, rtol=1e-4, atol=1e-5 * 270 ** 0.5), abs(gi - ri).max()\n"
        "gw = convkern.conv2d_backward(to(dy), to(x), w, padding=1, data_format=fmt, output_mask=(False, True, False))[1]\n"
        "rw = ref.conv2d_backward(dy.astype(float), x.astype(float), w.astype(float), padding=1)[1]\n"
        "assert np.allclose(gw, rw, rtol=1e-4, atol=1e-5 * (3 * 19 * 17) ** 0.5), abs(gw - rw).max()\n"
        "print('ok')\n"
    )
    env = dict(os.environ, CONVKERN_ISA=isa, CONVKERN_WINOGRAD="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


WGRAD_SHAPES = [
    # n, c, k, (h, w), padding (backward weight runs on Winograd for any zero padding)
    (1, 1, 1, (3, 3), 0),
    (2, 3, 5, (7, 9), 1),
    (1, 16, 20, (13, 11), (0, 2)),
    (3, 17, 13, (17, 19), 2),
    (2, 33, 70, (9, 10), "same"),
    (1, 8, 40, (5, 33), ((2, 0), (1, 2))),  # asymmetric pairs
    (4, 5, 7, (1, 1), 1),  # 1x1 image: the border is all padding
    (2, 64, 48, (15, 15), 1),
    (1, 6, 9, (6, 6), 3),  # padding wider than the kernel
    (5, 2, 3, (4, 5), "valid"),
    (-1, 7, 11, (12, 14), 1),  # unbatched
    (3, 40, 29, (30, 26), 1),  # several chunks of tiles, chunks across images
    (1, 130, 25, (8, 8), 1),  # channels past several panels
]


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("n,c,k,hw,padding", WGRAD_SHAPES)
def test_winograd_backward_weight_matches_reference(winograd, n, c, k, hw, padding, data_format, rng):
    x, w, _ = _arrays(rng, n, c, k, hw, bias=False)
    dy_shape = ref.conv2d(x, w, padding=padding).shape
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    args = (_to(dy, data_format), _to(x, data_format), w)
    gw = convkern.conv2d_backward(*args, padding=padding, data_format=data_format, output_mask=(False, True, False))[1]
    rw = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=padding)[1]
    positions = max(1, dy.size // k)
    # A NaN left in an unwritten element fails assert_close (the reference has none).
    assert_close(gw, rw, reduction=positions, what=f"n={n} c={c} k={k} hw={hw} padding={padding}")
    full = convkern.conv2d_backward(*args, padding=padding, data_format=data_format)
    np.testing.assert_array_equal(full[1], gw)


def test_winograd_backward_weight_empty_batch(winograd):
    x = np.zeros((0, 4, 8, 8), np.float32)
    w = np.ones((5, 4, 3, 3), np.float32)
    dy = np.zeros((0, 5, 8, 8), np.float32)
    gw = convkern.conv2d_backward(dy, x, w, padding=1, output_mask=(False, True, False))[1]
    np.testing.assert_array_equal(gw, np.zeros_like(w))


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_backward_weight_is_chosen_and_deterministic(monkeypatch, data_format, rng):
    """Large 3x3 layers take the Winograd weight gradient by default (its rounding differs from the
    implicit GEMM's); the bits do not depend on the thread count; =0 turns it off."""
    x, w, _ = _arrays(rng, 3, 40, 36, (30, 26), bias=False)
    dy = rng.standard_normal((3, 36, 30, 26)).astype(np.float32)
    x, dy = _to(x, data_format), _to(dy, data_format)
    mask = (False, True, False)
    monkeypatch.delenv("CONVKERN_WINOGRAD", raising=False)
    saved = convkern.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            convkern.set_num_threads(threads)
            results.append(convkern.conv2d_backward(dy, x, w, padding=1, data_format=data_format, output_mask=mask)[1])
    finally:
        convkern.set_num_threads(saved)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].view(np.uint32), other.view(np.uint32))
    monkeypatch.setenv("CONVKERN_WINOGRAD", "0")
    gemm = convkern.conv2d_backward(dy, x, w, padding=1, data_format=data_format, output_mask=mask)[1]
    assert not np.array_equal(results[0], gemm)
    assert_close(results[0], gemm, reduction=3 * 30 * 26)
    # Fewer than 8 tiles (one resnet50.l4-sized 7x7 image: 4) stay on the implicit GEMM.
    xs, ws, _ = _arrays(rng, 1, 32, 32, (7, 7), bias=False)
    dys = rng.standard_normal((1, 32, 7, 7)).astype(np.float32)
    monkeypatch.delenv("CONVKERN_WINOGRAD")
    auto = convkern.conv2d_backward(dys, xs, ws, padding=1, output_mask=mask)[1]
    monkeypatch.setenv("CONVKERN_WINOGRAD", "0")
    np.testing.assert_array_equal(auto, convkern.conv2d_backward(dys, xs, ws, padding=1, output_mask=mask)[1])


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_winograd_backward_weight_writes_every_element(winograd, padding, rng):
    """The kernel entry point itself, into a NaN-poisoned grad_weight: every element is written."""
    from convkern import _C

    x, w, _ = _arrays(rng, 2, 21, 26, (11, 13), bias=False)
    dy = rng.standard_normal(ref.conv2d(x, w, padding=padding).shape).astype(np.float32)
    dw = poisoned((26, 21, 1, 3, 3), np.float32)
    args = _C.ConvArgs([1, 1, 1], [0, padding, padding], [0, padding, padding], [1, 1, 1], 1, 2, False)
    _C.conv_backward_weight(dy[:, :, None], x[:, :, None], dw, args)
    rw = ref.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=padding)[1]
    assert_close(dw[:, :, 0], rw, reduction=dy.size // 26)


@pytest.mark.parametrize(
    "shape",
    [
        # n, c, k, (d, h, w), padding
        (2, 5, 7, (5, 9, 11), 1),
        (1, 20, 18, (4, 12, 13), 0),
        (2, 3, 4, (3, 7, 6), (2, 1, 0)),  # depth padding wider than the taps: all-zero slices
        (1, 6, 5, (6, 8, 9), ((0, 2), (1, 1), (2, 0))),
        (-1, 4, 6, (4, 6, 7), "same"),  # unbatched
    ],
    ids=str,
)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_3d_through_depth_slices(shape, winograd, data_format, rng):
    """3x3x3 (and 3x3 spatial) stride-1 3-D convolutions run as the 2-D kernels over depth slices."""
    n, c, k, size, padding = shape
    x = rng.standard_normal(((n,) if n >= 0 else ()) + (c,) + size).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    want = ref.conv3d(x, w, b, padding=padding)
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, -4, -1))) if data_format == "channels_last" else (lambda a: a)
    back = (lambda a: np.moveaxis(a, -1, -4)) if data_format == "channels_last" else (lambda a: a)
    out = poisoned(to(want).shape, np.float32)
    assert convkern.conv3d(to(x), w, b, padding=padding, data_format=data_format, out=out) is out
    assert_close(back(out), want, reduction=c * 27)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    got = convkern.conv3d_backward(to(dy), to(x), w, padding=padding, data_format=data_format)
    expected = ref.conv3d_backward(dy, x, w, padding=padding)
    positions = max(1, dy.size // k)
    for g, r, red in zip((back(got[0]),) + got[1:], expected, (k * 27, positions, positions)):
        assert_close(g, r, reduction=red)


@pytest.mark.parametrize("data_format", ["NCDHW", "NDHWC"])
def test_winograd_3d_is_deterministic_across_thread_counts(data_format, rng):
    shape = (2, 16, 4, 24, 24) if data_format == "NCDHW" else (2, 4, 24, 24, 16)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    saved = convkern.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            convkern.set_num_threads(threads)
            runs.append(
                [
                    a.tobytes()
                    for a in (convkern.conv3d(x, w, padding=1, data_format=data_format),)
                    + convkern.conv3d_backward(dy, x, w, padding=1, data_format=data_format)
                ]
            )
    finally:
        convkern.set_num_threads(saved)
    assert runs[0] == runs[1] == runs[2]
