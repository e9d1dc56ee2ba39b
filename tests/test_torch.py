"""Independent cross-checks against PyTorch (CPU) on random configurations, float32 and float64,
forward and backward: a second oracle beside convkern.reference."""

from __future__ import annotations

import convkern
import numpy as np
import pytest
from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.torch

DTYPES = (np.float32, np.float64)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)


def _conv_config(rng, rank):
    groups = int(rng.choice([1, 2, 4]))
    cin, cout = groups * int(rng.integers(1, 6)), groups * int(rng.integers(1, 5))
    k = tuple(int(v) for v in rng.integers(1, 6 if rank < 3 else 4, size=rank))
    s = tuple(int(v) for v in rng.integers(1, 4, size=rank))
    d = tuple(int(v) for v in rng.integers(1, 3, size=rank))
    p = tuple(int(v) for v in rng.integers(0, 3, size=rank))
    size = tuple(int(d_ * (k_ - 1) + 1 + rng.integers(0, 12 if rank < 3 else 5)) for k_, d_ in zip(k, d))
    return groups, cin, cout, k, s, d, p, size


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,seed", [(2, s) for s in range(12)] + [(1, s) for s in range(4)] + [(3, s) for s in range(4)]
)
def test_conv_matches_torch(rank, seed, dtype):
    rng = np.random.default_rng(500 + 10 * rank + seed)
    groups, cin, cout, k, s, d, p, size = _conv_config(rng, rank)
    x = rng.standard_normal((2, cin) + size).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + k).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = getattr(F, f"conv{rank}d")(xt, wt, bt, stride=s, padding=p, dilation=d, groups=groups)
    y = getattr(convkern, f"conv{rank}d")(x, w, b, stride=s, padding=p, dilation=d, groups=groups)
    red = cin // groups * int(np.prod(k))
    assert_close(y, yt.detach().numpy(), reduction=red, dtype=dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    gi, gw, gb = getattr(convkern, f"conv{rank}d_backward")(dy, x, w, stride=s, padding=p, dilation=d, groups=groups)
    positions = 2 * int(np.prod(y.shape[2:]))
    assert_close(gi, xt.grad.numpy(), reduction=cout // groups * int(np.prod(k)), dtype=dtype)
    assert_close(gw, wt.grad.numpy(), reduction=positions, dtype=dtype)
    assert_close(gb, bt.grad.numpy(), reduction=positions, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
def test_conv_same_padding_matches_torch_at_stride_1(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 12, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 4, 3)).astype(dtype)  # even kernel: asymmetric padding
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=(2, 1)).numpy()
    assert_close(convkern.conv2d(x, w, padding="same", dilation=(2, 1)), expected, reduction=36, dtype=dtype)


def _pool_config(rng, rank, dilated=True):
    k = tuple(int(v) for v in rng.integers(1, 5, size=rank))
    s = tuple(int(v) for v in rng.integers(1, 4, size=rank))
    d = tuple(int(v) for v in rng.integers(1, 3, size=rank)) if dilated else (1,) * rank
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    ceil = bool(rng.integers(0, 2))
    size = tuple(int(dd * (kk - 1) + 1 + rng.integers(0, 9 if rank < 3 else 5)) for kk, dd in zip(k, d))
    return k, s, d, p, ceil, size


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize(
    "rank,seed", [(2, s) for s in range(8)] + [(1, s) for s in range(3)] + [(3, s) for s in range(3)]
)
def test_extremum_pool_matches_torch(rank, seed, kind, dtype):
    rng = np.random.default_rng(900 + 10 * rank + seed)
    k, s, d, p, ceil, size = _pool_config(rng, rank)
    x = rng.standard_normal((2, 3) + size).astype(dtype)  # distinct values: no ties
    sign = -1.0 if kind == "min" else 1.0
    xt = _t(x)
    yt, it = getattr(F, f"max_pool{rank}d")(sign * xt, k, s, p, d, ceil_mode=ceil, return_indices=True)
    yt = sign * yt
    y, idx = getattr(convkern, f"{kind}_pool{rank}d")(x, k, s, p, d, ceil, return_indices=True)
    assert_close(y, yt.detach().numpy(), dtype=dtype)
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    g = getattr(convkern, f"{kind}_pool{rank}d_backward")(dy, x, k, s, p, d, ceil)
    assert_close(g, xt.grad.numpy(), reduction=int(np.prod(k)), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize(
    "rank,seed", [(2, s) for s in range(10)] + [(1, s) for s in range(3)] + [(3, s) for s in range(3)]
)
def test_avg_pool_matches_torch(rank, seed, dtype):
    rng = np.random.default_rng(1300 + 10 * rank + seed)
    k, s, _, p, ceil, size = _pool_config(rng, rank, dilated=False)
    include = bool(rng.integers(0, 2))
    override = None if rank == 1 or rng.integers(0, 3) else int(rng.integers(1, 6))  # F.avg_pool1d has none
    x = rng.standard_normal((2, 3) + size).astype(dtype)
    xt = _t(x)
    extra = {} if rank == 1 else {"divisor_override": override}
    yt = getattr(F, f"avg_pool{rank}d")(xt, k, s, p, ceil, include, **extra)
    y = getattr(convkern, f"avg_pool{rank}d")(x, k, s, p, ceil, include, override)
    assert_close(y, yt.detach().numpy(), reduction=int(np.prod(k)), dtype=dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    g = getattr(convkern, f"avg_pool{rank}d_backward")(dy, x, k, s, p, ceil, include, override)
    assert_close(g, xt.grad.numpy(), reduction=int(np.prod(k)), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("kind", ["max", "avg", "min"])
def test_global_pool_matches_torch(kind, dtype):
    rng = np.random.default_rng(77)
    x = rng.standard_normal((3, 4, 9, 7)).astype(dtype)
    xt = _t(x)
    reduce = {"max": lambda t: t.amax((2, 3)), "min": lambda t: t.amin((2, 3)), "avg": lambda t: t.mean((2, 3))}
    yt = reduce[kind](xt)
    y = getattr(convkern, f"global_{kind}_pool2d")(x)
    assert_close(y, yt.detach().numpy(), reduction=63, dtype=dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    assert_close(getattr(convkern, f"global_{kind}_pool2d_backward")(dy, x), xt.grad.numpy(), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("seed", range(6))
def test_conv_transpose_matches_torch(seed, dtype):
    rng = np.random.default_rng(2100 + seed)
    groups = int(rng.choice([1, 2]))
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, size=2))
    s = tuple(int(v) for v in rng.integers(1, 4, size=2))
    d = tuple(int(v) for v in rng.integers(1, 3, size=2))
    op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
    p = tuple(int(rng.integers(0, 2)) for _ in range(2))
    x = rng.standard_normal((2, cin, 5, 6)).astype(dtype)
    w = rng.standard_normal((cin, cout // groups) + k).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = F.conv_transpose2d(xt, wt, bt, stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
    y = convkern.conv_transpose2d(x, w, b, s, p, op, groups, d)
    assert_close(y, yt.detach().numpy(), reduction=cin * int(np.prod(k)), dtype=dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    got = convkern.conv_transpose2d_backward(dy, x, w, s, p, op, groups, d)
    for g, ref_grad, n in zip(
        got, (xt.grad, wt.grad, bt.grad), (cout * int(np.prod(k)), dy[0, 0].size * 2, dy[0, 0].size * 2)
    ):
        assert_close(g, ref_grad.numpy(), reduction=n, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_match_torch_modules(mode, dtype):
    rng = np.random.default_rng(len(mode))
    conv = torch.nn.Conv2d(3, 4, (3, 2), padding=(2, 1), padding_mode=mode, dtype=torch.float64)
    w = conv.weight.detach().numpy().astype(dtype)
    b = conv.bias.detach().numpy().astype(dtype)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    yt = conv(xt)
    y = convkern.conv2d(x, w, b, padding=(2, 1), padding_mode=mode)
    assert_close(y, yt.detach().numpy(), reduction=18, dtype=dtype)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    gi, gw, _ = convkern.conv2d_backward(dy.astype(dtype), x, w, padding=(2, 1), padding_mode=mode)
    assert_close(gi, xt.grad.numpy(), reduction=4 * 6 * 4, dtype=dtype)
    assert_close(gw, conv.weight.grad.numpy(), reduction=2 * 7 * 6 * 4, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
def test_channels_last_matches_torch(dtype):
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2, 9, 11, 6)).astype(dtype)  # NHWC
    w = rng.standard_normal((8, 3, 3, 3)).astype(dtype)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    yt = F.conv2d(xt, torch.from_numpy(w), stride=(2, 1), padding=1, groups=2)
    y = convkern.conv2d(x, w, stride=(2, 1), padding=1, groups=2, data_format="NHWC")
    assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1), reduction=27, dtype=dtype)
    yp, ip = convkern.max_pool2d(x, 3, 2, 1, return_indices=True, data_format="NHWC")
    ypt, ipt = F.max_pool2d(xt, 3, 2, 1, return_indices=True)
    assert_close(yp, ypt.detach().numpy().transpose(0, 2, 3, 1), dtype=dtype)
    np.testing.assert_array_equal(ip, ipt.numpy().transpose(0, 2, 3, 1))
