"""The runnable examples, run as a newcomer runs them (a fresh interpreter, from the command line).

The digits training runs in full, because its test accuracy (>= 97%) is what it promises; the
others run in their reduced --quick form. Each must write its PNG.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # the digits and the photograph ship with scikit-learn
pytest.importorskip("matplotlib")  # the PNGs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(script: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_png(path: Path, min_width: int, min_height: int) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= min_width and height >= min_height, (path, width, height)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs train_digits.py once, in full; the tests below read what it printed and wrote."""
    out = tmp_path_factory.mktemp("digits")
    return run_example("train_digits.py", "--out", str(out)), out


def test_train_digits_reaches_97_percent(trained):
    stdout, out = trained
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", stdout).group(1))
    assert accuracy >= 97.0, stdout[-2000:]
    assert "Total params: 31,294" in stdout  # the summary is printed
    assert "[##############################] 45/45" in stdout  # the per-epoch progress bar
    assert_png(out / "digits_curves.png", 600, 300)
    assert (out / "digits_lenet.npz").stat().st_size > 100_000


def test_digits_features_draws_the_trained_filters(trained):
    _, out = trained
    stdout = run_example("digits_features.py", "--weights", str(out / "digits_lenet.npz"), "--out", str(out))
    assert re.search(r"test digit \d, predicted \d", stdout)
    assert_png(out / "digits_features.png", 600, 600)


def test_train_digits_quick(tmp_path):
    stdout = run_example("train_digits.py", "--epochs", "1", "--quick", "--out", str(tmp_path))
    assert "256 training and 128 test images" in stdout
    assert_png(tmp_path / "digits_curves.png", 600, 300)


def test_filters_gallery_quick(tmp_path):
    stdout = run_example("filters_gallery.py", "--quick", "--out", str(tmp_path))
    assert "applied 12 kernels" in stdout
    assert_png(tmp_path / "filters_gallery.png", 600, 400)


def test_digits_features_without_weights_says_what_to_run(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "digits_features.py"), "--weights", str(tmp_path / "missing.npz")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "run examples/train_digits.py first" in done.stderr
