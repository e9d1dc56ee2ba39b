"""Every bad argument is a ValueError or TypeError naming the argument, raised before any
memory is touched (out= buffers stay poisoned), and nothing crashes the interpreter."""

from __future__ import annotations

import convkern
import numpy as np
import pytest

X = np.ones((2, 4, 8, 8), np.float32)
W = np.ones((6, 4, 3, 3), np.float32)
BIG = 2**62

CONV_ERRORS = [
    # (kwargs or array overrides, exception, message fragment)
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=-1), ValueError, "stride"),
    (dict(stride=(1, 0)), ValueError, "stride"),
    (dict(stride=(1, 1, 1)), ValueError, "stride"),
    (dict(stride=1.5), TypeError, "stride"),
    (dict(stride=True), TypeError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(padding=((1, -1), (0, 0))), ValueError, "padding"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(padding=(1, 2, 3)), ValueError, "padding"),
    (dict(groups=0), ValueError, "groups"),
    (dict(groups=-2), ValueError, "groups"),
    (dict(groups=3), ValueError, "groups"),
    (dict(groups=4), ValueError, "output channels"),
    (dict(weight=np.ones((6, 2, 3, 3), np.float32)), ValueError, "weight expects 2 input channels"),
    (dict(dilation=5), ValueError, "kernel is larger than the padded input"),
    (dict(stride=2**70), ValueError, "stride"),
    (dict(padding=BIG), ValueError, r"output size 9223372036854775814 does not fit a 64-bit integer"),
    (dict(dilation=BIG), ValueError, r"dilated kernel size \(9223372036854775809, 9223372036854775809\)"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode"),
    (dict(data_format="NCWH"), ValueError, "data_format"),
    (dict(weight=np.ones((6, 3, 3, 3), np.float32)), ValueError, "input channels"),
    (dict(weight=np.ones((6, 4, 3), np.float32)), ValueError, "weight"),
    (dict(weight=np.ones((0, 4, 3, 3), np.float32)), ValueError, "weight must not be empty"),
    (dict(weight=np.ones((6, 4, 0, 3), np.float32)), ValueError, "kernel size"),
    (dict(weight=np.ones((6, 4, 9, 9), np.float32)), ValueError, "kernel is larger"),
    (dict(input=np.ones((4, 8), np.float32)), ValueError, "input must have"),
    (dict(input=np.ones((1, 2, 4, 8, 8), np.float32)), ValueError, "input must have"),
    (dict(input=np.ones((2, 4, 0, 8), np.float32)), ValueError, "input spatial size"),
    (dict(input=np.ones((2, 4, 8, 8), np.int64)), TypeError, "astype"),
    (dict(input=np.ones((2, 4, 8, 8), bool)), TypeError, "astype"),
    (dict(input=np.ones((2, 4, 8, 8), np.complex64)), TypeError, "astype"),
    (dict(input=np.ones((2, 4, 8, 8), np.float16)), TypeError, "float16 is supported on CUDA arrays only"),
    (dict(input="abc"), TypeError, "input"),
    (dict(weight=np.ones((6, 4, 3, 3), np.float64)), TypeError, "dtype"),
    (dict(bias=np.ones(6, np.float64)), TypeError, "dtype"),
    (dict(bias=np.ones(5, np.float32)), ValueError, "bias"),
    (dict(bias=np.ones((6, 1), np.float32)), ValueError, "bias"),
]


def _call_conv(overrides, out=None):
    args = dict(input=X, weight=W, bias=None)
    args.update(overrides)
    return convkern.conv2d(args.pop("input"), args.pop("weight"), args.pop("bias"), **args, out=out)


@pytest.mark.parametrize("overrides,exc,fragment", CONV_ERRORS, ids=[f"{i}-{c[2]}" for i, c in enumerate(CONV_ERRORS)])
def test_conv2d_rejects(overrides, exc, fragment):
    out = np.full((2, 6, 6, 6), np.nan, np.float32)
    with pytest.raises(exc, match=fragment):
        _call_conv(overrides, out=out)
    assert np.isnan(out).all(), "out= was written before the error"


KEYWORD_ERRORS = [c for c in CONV_ERRORS if not {"input", "weight", "bias"} & set(c[0])]


@pytest.mark.parametrize("overrides,exc,fragment", KEYWORD_ERRORS, ids=[str(c[0]) for c in KEYWORD_ERRORS])
def test_conv2d_backward_rejects(overrides, exc, fragment):
    dy = np.ones((2, 6, 6, 6), np.float32)
    args = dict(overrides)
    with pytest.raises(exc, match=fragment):
        convkern.conv2d_backward(dy, X, W, **args)


def test_conv_grad_output_shape_is_named():
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 6, 5, 6\).*\(2, 6, 6, 6\)"):
        convkern.conv2d_backward(np.ones((2, 6, 5, 6), np.float32), X, W)


@pytest.mark.parametrize(
    "out,exc,fragment",
    [
        (np.empty((2, 6, 6, 5), np.float32), ValueError, "shape"),
        (np.empty((2, 6, 6, 6), np.float64), TypeError, "dtype"),
        (np.empty((2, 6, 6, 12), np.float32)[..., ::2], ValueError, "contiguous"),
        ([0.0], TypeError, "out"),
    ],
)
def test_out_is_checked(out, exc, fragment):
    with pytest.raises(exc, match=fragment):
        convkern.conv2d(X, W, out=out)


def test_out_aliasing_an_input_is_refused():
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 2, 1, 1), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        convkern.conv2d(x, w, out=x)
    with pytest.raises(ValueError, match="share memory"):
        convkern.max_pool2d(x, 1, out=x)


def test_read_only_out_is_refused():
    out = np.empty((2, 6, 6, 6), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        convkern.conv2d(X, W, out=out)


POOL_ERRORS = [
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(2, -1)), ValueError, "kernel_size"),
    (dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
    (dict(kernel_size=2, stride=0), ValueError, "stride"),
    (dict(kernel_size=2, dilation=0), ValueError, "dilation"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding"),
    (dict(kernel_size=2, padding=2), ValueError, "at most half of kernel_size"),
    (dict(kernel_size=9), ValueError, "output size is too small"),
    (dict(kernel_size=3, dilation=4), ValueError, "output size is too small"),
    (dict(kernel_size=2, padding="same", ceil_mode=True), ValueError, "ceil_mode"),
    (dict(kernel_size=2, padding="full"), ValueError, "padding"),
    (dict(kernel_size=2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (dict(kernel_size=2.0), TypeError, "kernel_size"),
    (dict(kernel_size=BIG, stride=1), ValueError, "output size is too small"),
    (dict(kernel_size=2, stride=BIG * 4), ValueError, "too large"),
]


POOL_CASES = [
    (kind,) + c for kind in ("max", "min", "avg") for c in POOL_ERRORS if not (kind == "avg" and "dilation" in c[0])
]  # average pooling has no dilation


@pytest.mark.parametrize("kind,kw,exc,fragment", POOL_CASES, ids=[f"{c[0]}-{c[1]}" for c in POOL_CASES])
def test_pool_rejects(kind, kw, exc, fragment):
    fn = getattr(convkern, f"{kind}_pool2d")
    with pytest.raises(exc, match=fragment):
        fn(X, **kw)
    with pytest.raises(exc, match=fragment):
        getattr(convkern, f"{kind}_pool2d_backward")(np.ones((2, 4, 4, 4), np.float32), X, **kw)


def test_avg_pool_divisor_override_zero():
    with pytest.raises(ValueError, match="divisor_override"):
        convkern.avg_pool2d(X, 2, divisor_override=0)


def test_pool_grad_output_shape_is_named():
    with pytest.raises(ValueError, match="grad_output has shape"):
        convkern.max_pool2d_backward(np.ones((2, 4, 3, 4), np.float32), X, 2)
    with pytest.raises(ValueError, match="grad_output has shape"):
        convkern.global_avg_pool2d_backward(np.ones((2, 3), np.float32), X)


def test_integer_pool_input_suggests_astype():
    with pytest.raises(TypeError, match=r"astype\(numpy.float32\)"):
        convkern.max_pool2d(np.ones((1, 1, 4, 4), np.int32), 2)


class _FakeCudaArray:
    """Looks like a CuPy array to convkern; no GPU needed."""

    __cuda_array_interface__ = {"shape": (1, 1, 4, 4), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cuda_array_in_cpu_build_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="CUDA array"):
        convkern.conv2d(_FakeCudaArray(), W)
    # The CUDA check comes first, whatever else is wrong with the call.
    with pytest.raises(RuntimeError, match="CUDA array"):
        convkern.conv2d(X, _FakeCudaArray(), stride=0)
    with pytest.raises(RuntimeError, match="CUDA array"):
        convkern.max_pool2d(_FakeCudaArray(), 2)


def test_private_module_rechecks_arrays():
    """Even a direct call into _C cannot be made to read or write out of bounds."""
    from convkern import _C

    x5 = np.ones((1, 4, 1, 8, 8), np.float32)
    w5 = np.ones((6, 4, 1, 3, 3), np.float32)
    args = _C.ConvArgs([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1, 2, False)
    with pytest.raises(ValueError, match="out must have shape"):
        _C.conv_forward(x5, w5, None, np.empty((1, 6, 1, 6, 5), np.float32), args)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.conv_forward(x5, w5, None, np.empty((1, 6, 1, 6, 12), np.float32)[..., ::2], args)
    with pytest.raises(TypeError):
        _C.conv_forward(x5, w5.astype(np.float64), None, np.empty((1, 6, 1, 6, 6), np.float32), args)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        _C.conv_backward_data(np.ones((1, 6, 1, 5, 6), np.float32), w5, np.empty_like(x5), args)
    with pytest.raises(ValueError, match="grad_bias must have shape"):
        _C.channel_sum(np.ones((1, 6, 1, 6, 6), np.float32), np.empty(5, np.float32), False)


def test_huge_sizes_are_refused_not_allocated():
    # Broadcast (stride-0) views claim astronomic sizes without memory behind them: the output
    # element count (2^31 * 2^33 * 2^20) overflows int64 and is refused before any copy is made.
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**31, 1, 1, 2**20), strides=(0,) * 4)
    w = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**33, 1, 1, 1), strides=(0,) * 4)
    with pytest.raises(ValueError, match="overflow"):
        convkern.conv2d(x, w)
    with pytest.raises(ValueError, match="overflow"):
        convkern.conv2d_backward(x, x, w)


@pytest.mark.slow
def test_tensors_past_2_31_elements_are_indexed_with_64_bits():
    """A plane of 2^31 + 48 elements (8 GiB of float32): every offset past 2^31 must be right."""
    n = 2**31 + 48
    try:
        x = np.zeros((1, 1, n), np.float32)
    except MemoryError:
        pytest.skip("needs 12 GiB of memory")
    x[0, 0, -7] = 5.0  # in the last windows, beyond any 32-bit offset
    x[0, 0, 3] = 2.0
    y = convkern.max_pool1d(x, 4)
    assert y.shape == (1, 1, n // 4)
    assert y[0, 0, -2] == 5.0 and y[0, 0, 0] == 2.0
    assert np.count_nonzero(y) == 2
    del y
    g = convkern.avg_pool1d(x, 8)
    assert g[0, 0, -1] == np.float32(5.0 / 8) and g[0, 0, 0] == np.float32(2.0 / 8)


# ------------------------------------------------------------------ consistent messages


def test_return_indices_must_be_a_bool():
    x = np.ones((1, 1, 4, 4), np.float32)
    for op in (convkern.max_pool2d, convkern.min_pool2d):
        with pytest.raises(TypeError, match="return_indices must be a bool, got 'no'"):
            op(x, 2, return_indices="no")
    with pytest.raises(TypeError, match="return_indices must be a bool, got 1"):
        convkern.adaptive_max_pool2d(x, 2, return_indices=1)


def test_big_endian_input_gets_a_conversion_hint():
    x = np.ones((1, 1, 4, 4), ">f4")
    with pytest.raises(
        TypeError, match=r"native byte order, got dtype >f4; convert it with input.astype\(numpy.float32\)"
    ):
        convkern.max_pool2d(x, 2)
    with pytest.raises(TypeError, match=r"weight.astype\(numpy.float64\)"):
        convkern.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3), ">f8"))


def test_list_input_gets_a_hint_lists_can_follow():
    with pytest.raises(TypeError, match=r"convert it with numpy.asarray\(input, dtype=numpy.float32\)"):
        convkern.max_pool1d([[[1, 2, 3, 4]]], 2)
    # Float lists are accepted as they are.
    assert convkern.max_pool1d([[[1.0, 2.0, 3.0, 4.0]]], 2).tolist() == [[[2.0, 4.0]]]


def test_masked_arrays_are_refused():
    x = np.ma.masked_array(np.ones((1, 1, 4, 4)), mask=np.eye(4, dtype=bool)[None, None])
    with pytest.raises(TypeError, match=r"input is a numpy.ma.MaskedArray.*input.filled\(fill_value\)"):
        convkern.avg_pool2d(x, 2)
    with pytest.raises(TypeError, match="weight is a numpy.ma.MaskedArray"):
        convkern.conv2d(np.ones((1, 1, 4, 4)), np.ma.ones((1, 1, 3, 3)))


@pytest.mark.parametrize("kind", ["max", "avg", "min"])
def test_global_pooling_of_an_empty_plane_names_no_kernel_size(kind):
    op = getattr(convkern, f"global_{kind}_pool2d")
    with pytest.raises(
        ValueError, match=r"global pooling needs a non-empty spatial extent, got input of shape \(1, 2, 0, 3\)"
    ) as info:
        op(np.ones((1, 2, 0, 3), np.float32))
    assert "kernel_size" not in str(info.value)
    with pytest.raises(ValueError, match="non-empty spatial extent"):
        getattr(convkern, f"global_{kind}_pool2d_backward")(
            np.ones((1, 2), np.float32), np.ones((1, 2, 3, 0), np.float32)
        )


def test_out_dtype_mismatch_is_a_type_error_like_every_dtype_mismatch():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        convkern.max_pool2d(x, 2, out=np.empty((1, 1, 2, 2), np.float64))
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        convkern.conv2d(x, np.ones((1, 1, 3, 3), np.float32), out=np.empty((1, 1, 2, 2), np.float64))


def test_set_num_threads_range_is_checked_in_python():
    for n in (2**31, 2**64):
        with pytest.raises(ValueError, match=f"n must be at most 2147483647, got {n}"):
            convkern.set_num_threads(n)
