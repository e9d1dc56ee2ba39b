"""The seed material's worked examples, determinism, threads and convkern.info()."""

from __future__ import annotations

import threading

import convkern
import numpy as np
import pytest

IMAGE_7X7 = np.array(
    [
        [130, 136, 53, 44, 231, 67, 108],
        [130, 89, 77, 58, 250, 154, 130],
        [208, 239, 120, 111, 112, 181, 22],
        [203, 223, 59, 79, 28, 57, 67],
        [164, 140, 215, 235, 66, 30, 204],
        [97, 159, 50, 110, 104, 76, 7],
        [207, 150, 58, 47, 152, 81, 237],
    ],
    np.float64,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_conv1d(dtype):
    signal = np.array([[0, 0, 0, 0, 1, 2, 3, 3]], dtype)  # (C=1, W=8), unbatched
    kernel = np.array([[[-1, 1]]], dtype)  # (K=1, C=1, 2)
    np.testing.assert_array_equal(convkern.conv1d(signal, kernel)[0], [0, 0, 0, 1, 1, 1, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_conv2d_same(dtype):
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype) / 5
    y = convkern.conv2d(IMAGE_7X7.astype(dtype)[None, None], kernel[None, None], padding="same")[0, 0]
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(y[0], [79.2, 81.6, 62.0, 77.2, 118.4, 112.0, 61.0], rtol=tol)
    np.testing.assert_allclose(y[-1], [90.8, 114.8, 61.0, 73.4, 76.8, 109.2, 65.0], rtol=tol)


def test_seed_pooling():
    a = np.array([[3, 4, -2, -1], [-2, 0, 1, 2], [1, -2, 2, 6], [0, 8, 3, 5]], np.float64)[None, None]
    np.testing.assert_array_equal(convkern.max_pool2d(a, 2, 2)[0, 0], [[4, 2], [8, 6]])
    np.testing.assert_array_equal(convkern.avg_pool2d(a, 2, 2)[0, 0], [[1.25, 0], [1.75, 4]])
    b = np.array([[2, 1, 1, 3], [4, 5, 2, 1], [1, 4, 5, 3], [5, 1, 7, 6]], np.float64)[None, None]
    np.testing.assert_array_equal(convkern.max_pool2d(b, 2, 1)[0, 0], [[5, 5, 3], [5, 5, 5], [5, 7, 7]])
    np.testing.assert_array_equal(convkern.avg_pool2d(b, 2, 2)[0, 0], [[3, 1.75], [2.75, 5.25]])


def test_seed_keras_same_stride2_shape():
    # Conv2D(16, 3x3, strides=2, padding='same') on 128x128x1 -> 64x64x16 (160 parameters).
    x = np.zeros((1, 128, 128, 1), np.float32)
    w = np.zeros((16, 1, 3, 3), np.float32)
    assert convkern.conv2d(x, w, padding="same", stride=2, data_format="NHWC").shape == (1, 64, 64, 16)
    assert w.size + 16 == 160


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_bitwise_deterministic_across_thread_counts(dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 24, 21, 19)).astype(dtype)
    w = rng.standard_normal((20, 12, 3, 3)).astype(dtype)
    dy = rng.standard_normal((3, 20, 11, 10)).astype(dtype)
    kw = dict(stride=2, padding=1, groups=2)
    # 40 output channels: the outer-product backward weight.
    x_long = rng.standard_normal((2, 130, 7, 9)).astype(dtype)
    w_long = rng.standard_normal((40, 130, 3, 3)).astype(dtype)
    dy_long = rng.standard_normal((2, 40, 7, 9)).astype(dtype)
    # Channels-last, rows of 28: the forward by kernel rows and the backward data by phases.
    x_rows = rng.standard_normal((2, 6, 56, 32)).astype(dtype)
    w_rows = rng.standard_normal((40, 32, 3, 3)).astype(dtype)
    dy_rows = rng.standard_normal((2, 3, 28, 40)).astype(dtype)
    rows_kw = dict(stride=2, padding=1, data_format="NHWC")
    # A channels-last first layer: the weight gradient by kernel rows, in three blocks of rows.
    x_first = rng.standard_normal((2, 80, 70, 3)).astype(dtype)
    w_first = rng.standard_normal((32, 3, 7, 7)).astype(dtype)
    dy_first = rng.standard_normal((2, 40, 35, 32)).astype(dtype)
    first_kw = dict(stride=2, padding=3, data_format="NHWC")
    saved = convkern.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            convkern.set_num_threads(threads)
            results.append(
                convkern.conv2d_backward(dy, x, w, **kw)
                + convkern.conv2d_backward(dy_long, x_long, w_long, padding=1)
                + convkern.conv2d_backward(dy_rows, x_rows, w_rows, **rows_kw)
                + convkern.conv2d_backward(dy_first, x_first, w_first, **first_kw)
                + (
                    convkern.conv2d(x_rows, w_rows, **rows_kw),
                    convkern.conv2d(x, w, **kw),
                    convkern.max_pool2d_backward(x, x, 3, 1, 1),
                    convkern.avg_pool2d_backward(x[:, :, :11, :10], x, 3, 2, 1),
                )
            )
    finally:
        convkern.set_num_threads(saved)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(_bits(a), _bits(b))


def test_many_python_threads_match_serial_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 17, 17)).astype(np.float32)
    w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 12, 17, 17)).astype(np.float32)

    def work():
        return (
            (convkern.conv2d(x, w, padding=1),)
            + convkern.conv2d_backward(dy, x, w, padding=1)
            + (convkern.max_pool2d(x, 3, 2, 1),)
        )

    serial = work()
    results = [None] * 8
    errors = []

    def run(i):
        try:
            for _ in range(5):
                results[i] = work()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        for a, b in zip(serial, r):
            np.testing.assert_array_equal(_bits(a), _bits(b))


def test_info_and_threads():
    info = convkern.info()
    assert info["version"] == convkern.__version__
    assert info["cpu_isa"] in ("avx512", "avx2", "generic")
    assert isinstance(info["openmp"], bool) and isinstance(info["cuda"], bool)
    assert info["cuda"] == (info["cuda_architectures"] != [])
    saved = convkern.get_num_threads()
    try:
        convkern.set_num_threads(1)
        assert convkern.get_num_threads() == 1 and convkern.info()["num_threads"] == 1
    finally:
        convkern.set_num_threads(saved)
    with pytest.raises(ValueError, match="n must be >= 1"):
        convkern.set_num_threads(0)
    with pytest.raises(TypeError):
        convkern.set_num_threads(2.0)


def test_public_signatures_read_like_pytorch():
    import inspect

    sig = inspect.signature(convkern.conv2d)
    assert list(sig.parameters)[:7] == ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    assert sig.parameters["out"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "NCHW" in convkern.conv2d.__doc__
    sig = inspect.signature(convkern.max_pool2d_backward)
    assert list(sig.parameters)[-1] == "indices"


# ------------------------------------------------------------------ the documented examples and API


@pytest.mark.parametrize("module", ["convkern", "convkern.functional", "convkern.filters", "convkern.shapes"])
def test_docstring_examples_run(module):
    """Every Examples section is a doctest: the documentation cannot drift from what the code does."""
    import doctest
    import importlib

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0 and result.failed == 0, result
    if module == "convkern.functional":
        # One example per operator, at least.
        assert result.attempted >= 3 * len(convkern.functional.__all__)


def test_generated_functional_is_current():
    """functional.py is written by tools/gen_functional.py: a change to one without the other fails here."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    generator = root / "tools" / "gen_functional.py"
    if not generator.is_file() or Path(convkern.__file__).resolve().parent != root / "python" / "convkern":
        pytest.skip("needs the source tree (tools/ and python/convkern imported from it)")
    done = subprocess.run([sys.executable, str(generator), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_every_operator_is_a_documented_function():
    import inspect

    for name in convkern.functional.__all__:
        op = getattr(convkern, name)
        assert inspect.isfunction(op) and op.__module__ == "convkern.functional", name
        assert op.__code__.co_filename.endswith("functional.py"), name  # go-to-definition lands here
        doc = inspect.getdoc(op) or ""
        for section in ("Parameters\n----------", "Returns\n-------", "Raises\n------", "Examples\n--------"):
            assert section in doc, (name, section)
        for parameter in inspect.signature(op).parameters:
            assert f"\n{parameter} : " in doc, (name, parameter)
        hints = inspect.get_annotations(op)
        assert set(hints) == set(inspect.signature(op).parameters) | {"return"}, name


def test_docs_build_without_warnings(tmp_path):
    """The documentation site (docs/ and every docstring) builds offline, warnings being errors."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    root = Path(__file__).resolve().parent.parent
    if not (root / "mkdocs.yml").is_file():
        pytest.skip("needs the source tree (mkdocs.yml, docs/)")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "functional" / "index.html").read_text()
    for name in convkern.functional.__all__:
        assert f'id="convkern.functional.{name}"' in api, name


def test_host_results_start_on_a_cache_line(rng):
    """Results the host allocates start on a 64-byte boundary (NumPy's own arrays start on 16), so
    that an AVX-512 kernel's vector stores into them never straddle two cache lines."""
    x = rng.standard_normal((2, 9, 10, 16)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    y = convkern.conv2d(x, w, padding=1, data_format="NHWC")
    results = [y, *convkern.conv2d_backward(y, x, w, padding=1, data_format="NHWC")]
    results += [
        *convkern.max_pool2d(x, 2, return_indices=True),
        convkern.avg_pool2d_backward(convkern.avg_pool2d(x, 2), x, 2),
    ]
    for a in results:
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
    np.testing.assert_allclose(y, convkern.reference.conv2d(x, w, padding=1, data_format="NHWC"), rtol=1e-4, atol=1e-4)
