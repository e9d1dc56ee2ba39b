"""Threads: one plan per call (changing the count mid-call is safe), threadpoolctl, bounded
scratch memory and its documented peak per algorithm (docs/cpu.md)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import convkern
import numpy as np
import pytest
from convkern import _C

MiB = 1 << 20

# Worker threads call every algorithm family while the main thread switches the thread count
# between 16 and 1; every result must equal, bit for bit, the one computed before (results do
# not depend on the thread count). OMP_NUM_THREADS=16 lets 16 really be used on a small machine.
STRESS = r"""
import sys, threading, time
import numpy as np
import convkern

seconds = float(sys.argv[1])
rng = np.random.default_rng(3)
x = rng.standard_normal((2, 32, 20, 20)).astype(np.float32)
w3 = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
w5 = rng.standard_normal((24, 32, 5, 5)).astype(np.float32)
wd = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
dy3 = rng.standard_normal((2, 48, 20, 20)).astype(np.float32)
calls = {
    "gemm": lambda: convkern.conv2d(x, w5, padding=2),
    "gemm.f64": lambda: convkern.conv2d(x.astype(np.float64), w5.astype(np.float64), stride=2),
    "winograd": lambda: convkern.conv2d(x, w3, padding=1),
    "winograd.bwd": lambda: np.concatenate([a.ravel() for a in convkern.conv2d_backward(
        dy3, x, w3, padding=1, output_mask=(True, True, False))[:2]]),
    "depthwise": lambda: convkern.conv2d(x, wd, padding=1, groups=32),
    "channels_last": lambda: convkern.conv2d(xl, w3, padding=1, data_format="NHWC"),
    "channels_last.bwd": lambda: convkern.conv2d_backward(
        np.ascontiguousarray(dy3.transpose(0, 2, 3, 1)), xl, w3, padding=1, data_format="NHWC",
        output_mask=(False, True, False))[1],
    "maxpool": lambda: convkern.max_pool2d(x, 3, stride=2, padding=1),
    "avgpool": lambda: convkern.avg_pool2d(xl, 3, stride=1, padding=1, data_format="NHWC"),
    "gap": lambda: convkern.adaptive_avg_pool2d(x, 1),
}
convkern.set_num_threads(1)
expected = {k: f().copy() for k, f in calls.items()}
stop = time.monotonic() + seconds
errors, counts = [], {}

def worker(names):
    while time.monotonic() < stop and not errors:
        for name in names:
            got = calls[name]()
            if not np.array_equal(got, expected[name]):
                errors.append(name)
            counts[name] = counts.get(name, 0) + 1

names = list(calls)
threads = [threading.Thread(target=worker, args=(names[i::4],)) for i in range(4)]
for t in threads:
    t.start()
switches = 0
while any(t.is_alive() for t in threads):
    convkern.set_num_threads(16 if switches % 2 else 1)
    switches += 1
    time.sleep(0.0005)
for t in threads:
    t.join()
assert not errors, errors
assert set(counts) == set(calls), counts
print("ok", switches, sum(counts.values()))
"""


def test_switching_the_thread_count_while_every_family_runs():
    seconds = float(os.environ.get("CONVKERN_STRESS_SECONDS", "10"))
    env = dict(os.environ, OMP_NUM_THREADS="16", CONVKERN_WINOGRAD="1")
    res = subprocess.run(
        [sys.executable, "-c", STRESS, str(seconds)], env=env, capture_output=True, text=True, timeout=seconds + 300
    )
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    assert res.stdout.startswith("ok"), res.stdout


def test_plan_reads_the_count_once_and_set_takes_effect_next_call():
    saved = convkern.get_num_threads()
    try:
        convkern.set_num_threads(1)
        assert convkern.info()["num_threads"] == 1 and convkern.get_num_threads() == 1
        convkern.set_num_threads(2)
        assert convkern.get_num_threads() == 2
        assert convkern.info()["num_threads"] == min(2, convkern.info()["num_threads_setting"])
    finally:
        convkern.set_num_threads(saved)


def test_threadpoolctl_limits_convkern():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    saved = convkern.get_num_threads()
    try:
        convkern.set_num_threads(4)
        before = convkern.info()["num_threads"]
        with threadpoolctl.threadpool_limits(1):
            assert convkern.info()["num_threads"] == 1
            x = np.random.default_rng(0).standard_normal((2, 8, 9, 9)).astype(np.float32)
            w = np.random.default_rng(1).standard_normal((8, 8, 3, 3)).astype(np.float32)
            y1 = convkern.conv2d(x, w, padding=1)
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            assert convkern.info()["num_threads"] == 1
        assert convkern.info()["num_threads"] == before
        assert convkern.get_num_threads() == 4  # the setting itself is left alone
        np.testing.assert_array_equal(convkern.conv2d(x, w, padding=1), y1)
    finally:
        convkern.set_num_threads(saved)


# ---------------------------------------------------------------------------------- scratch


def _winograd_layer(rng, c=64, k=64, hw=28, n=2):
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    return x, w


@pytest.fixture
def winograd_on(monkeypatch):
    monkeypatch.setenv("CONVKERN_WINOGRAD", "1")


def test_many_threads_leave_no_growing_scratch(winograd_on):
    """Each thread used to keep its Winograd workspace for its whole life; now workspaces go back
    to one cache whose idle total stays under its limit whatever the number of threads."""
    rng = np.random.default_rng(0)
    x, w = _winograd_layer(rng)
    dy = rng.standard_normal((2, 64, 28, 28)).astype(np.float32)
    wd = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    expected = convkern.conv2d(x, w, padding=1)
    limit = _C.scratch_stats()["cache_limit"]
    try:
        _C.set_scratch_cache_limit(2 * MiB)
        barrier = threading.Barrier(8)

        def work(i):
            barrier.wait()
            for _ in range(3):
                np.testing.assert_array_equal(convkern.conv2d(x, w, padding=1), expected)
                convkern.conv2d_backward(dy, x, w, padding=1, output_mask=(True, True, False))
                convkern.max_pool2d(x, 2)
                convkern.conv2d(x, wd, padding=1, groups=64)
                convkern.conv2d(xl, w, padding=1, data_format="NHWC")
            return _C.scratch_stats()["live_bytes"]

        with ThreadPoolExecutor(8) as pool:  # the threads outlive their calls, as in a server
            for _ in range(3):
                list(pool.map(work, range(8)))
                stats = _C.scratch_stats()
                # Nothing is in use between calls, and what is cached stays under the limit.
                assert stats["live_bytes"] == stats["cached_bytes"] <= 2 * MiB, stats
        assert _C.release_scratch() >= 0
        assert _C.scratch_stats()["live_bytes"] == 0
    finally:
        _C.set_scratch_cache_limit(limit)


def test_cache_reuses_blocks_between_calls(winograd_on):
    rng = np.random.default_rng(1)
    x, w = _winograd_layer(rng)
    convkern.conv2d(x, w, padding=1)
    cached = _C.scratch_stats()["cached_bytes"]
    assert cached > 0  # the Winograd workspace went back to the cache...
    convkern.conv2d(x, w, padding=1)
    assert _C.scratch_stats()["cached_bytes"] == cached  # ...and was taken from it again
    _C.release_scratch()
    assert _C.scratch_stats()["cached_bytes"] == 0


def _peak(f):
    _C.release_scratch()
    _C.reset_scratch_peak()
    f()
    return _C.scratch_stats()["peak_bytes"]


def _round_up(v, m):
    return -(-v // m) * m


# The documented bounds (docs/cpu.md): s bytes per element, T threads, MR <= 12 rows.
def _gemm_bound(x, w, y, pad, threads):
    s = x.itemsize
    n, c = x.shape[:2]
    padded = n * c * math.prod(h + 2 * pad for h in x.shape[2:]) * s
    k = w.shape[0]
    packed_w = _round_up(k, 12) * (w.size // k) * s
    return packed_w + 2 * padded + threads * 4 * MiB


def _winograd_channels_last_bound(x, w, threads, pass_):
    s = 4
    k, c = w.shape[:2]
    tiles = x.shape[0] * math.prod(-(-h // 4) for h in x.shape[2:])  # 3x3 padding 1: output size = input size
    if pass_ == "backward_weight":
        summed = 36 * _round_up(k, 12) * _round_up(c, 32) * s if tiles >= 96 else threads * 36 * 48 * 32 * s
        return summed + 36 * 256 * (_round_up(k, 48) + _round_up(c, 32)) * s + 64 * 1024
    if pass_ == "backward_data":  # the transposed layer's forward, plus the rotated weights
        k, c = c, k
    if tiles >= 96:
        bound = 36 * _round_up(k, 32) * c * s + threads * 36 * 36 * (_round_up(c, 16) + 192) * s
    else:  # weights transformed per panel as they go: the transformed input of every tile instead
        bound = 36 * _round_up(tiles, 12) * _round_up(c, 16) * s + threads * 36 * (64 + _round_up(tiles, 12)) * 32 * s
    return bound + 64 * 1024 + (w.size * s if pass_ == "backward_data" else 0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "shape", [(2, 64, 64, 28, 3, 1), (2, 16, 40, 33, 5, 2), (1, 256, 256, 14, 3, 1), (2, 3, 32, 64, 7, 3)]
)
def test_peak_scratch_within_documented_bound(shape, threads, monkeypatch):
    n, c, k, hw, ks, pad = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((k, c, ks, ks)).astype(np.float32)
    saved = convkern.get_num_threads()
    try:
        convkern.set_num_threads(threads)
        for winograd in ("0", "1"):
            monkeypatch.setenv("CONVKERN_WINOGRAD", winograd)
            wino = winograd == "1" and ks == 3
            y = convkern.conv2d(x, w, padding=pad)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            passes = {
                "forward": lambda: convkern.conv2d(x, w, padding=pad),
                "backward_data": lambda: convkern.conv2d_backward(
                    dy, x, w, padding=pad, output_mask=(True, False, False)
                ),
                "backward_weight": lambda: convkern.conv2d_backward(
                    dy, x, w, padding=pad, output_mask=(False, True, False)
                ),
            }
            for name, f in passes.items():
                peak = _peak(f)
                bound = _gemm_bound(x, w, y, pad, threads)
                if wino:  # the channels-last kernel, on channels-last copies of the pass's two activations
                    bound = _winograd_channels_last_bound(x, w, threads, name) + x.nbytes + y.nbytes
                assert peak <= bound, (name, winograd, peak / MiB, bound / MiB)
        # Channels-last: 3x3 layers (Winograd is still forced on) run the channels-last Winograd
        # kernels, which copy no activation; other layers with taps the channels-first kernels,
        # within their bound plus channels-first copies of the input and the output; depthwise: the
        # GEMM bound (it needs far less).
        xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        dyl = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
        first = _gemm_bound(x, w, y, pad, threads)
        if ks == 3:
            channels_last = {
                "forward": lambda: convkern.conv2d(xl, w, padding=pad, data_format="NHWC"),
                "backward_data": lambda: convkern.conv2d_backward(
                    dyl, xl, w, padding=pad, data_format="NHWC", output_mask=(True, False, False)
                ),
                "backward_weight": lambda: convkern.conv2d_backward(
                    dyl, xl, w, padding=pad, data_format="NHWC", output_mask=(False, True, False)
                ),
            }
            for name, f in channels_last.items():
                peak, bound = _peak(f), _winograd_channels_last_bound(x, w, threads, name)
                assert peak <= bound, (name, "NHWC", peak / MiB, bound / MiB)
        elif c <= 8 and k >= 32:  # the forward by kernel rows: a padded input, packed weights, row buffers
            ow = y.shape[-1]
            wide = max(hw + 2 * pad, _round_up(ow, 12) - 1 + ks)
            first = (
                n * (hw + 2 * pad) * wide * c + _round_up(k, 32) * c * ks * ks + threads * _round_up(ow, 12) * 32
            ) * 4
            first += 3 * 192  # per allocation: a 64-byte header, and sizes rounded up to 64 bytes
            assert _peak(lambda: convkern.conv2d(xl, w, padding=pad, data_format="NHWC")) <= first
        else:
            assert _peak(lambda: convkern.conv2d(xl, w, padding=pad, data_format="NHWC")) <= first + x.nbytes + y.nbytes
        wd = rng.standard_normal((c, 1, ks, ks)).astype(np.float32)
        assert _peak(lambda: convkern.conv2d(x, wd, padding=pad, groups=c)) <= _gemm_bound(x, wd, y, pad, threads)
    finally:
        convkern.set_num_threads(saved)
