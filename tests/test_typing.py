"""Type checkers see convkern's real API: mypy --strict and pyright pass on the package and on a typed
user script, reveal the operators' real parameters, and catch a misspelt keyword.

Each check is skipped where its tool is not installed; the package checks also where the source
tree is not present (e.g. when the tests run against an installed wheel: the user-script checks
then check the wheel's own annotations, ``py.typed`` and stubs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import convkern
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "python" / "convkern"
HAVE_SOURCE = (SOURCE / "functional.py").is_file() and (ROOT / "pyproject.toml").is_file()
# Where the imported convkern lives: the type checkers must read that one, not another install.
IMPORTED_FROM = Path(convkern.__file__).resolve().parent.parent
FROM_SOURCE_TREE = IMPORTED_FROM == (ROOT / "python").resolve()

USER_SCRIPT = """\
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import convkern
from convkern import filters, nn, optim

x = np.ones((2, 3, 8, 8), np.float32)
w = np.ones((4, 3, 3, 3), np.float32)
y: NDArray[Any] = convkern.conv2d(x, w, padding="same")
dx, dw, db = convkern.conv2d_backward(np.ones_like(y), x, w, padding="same", output_mask=(True, True, False))
pooled = convkern.max_pool2d(y, 2)
values, indices = convkern.max_pool2d(y, 2, return_indices=True)
shape: tuple[int, ...] = pooled.shape + values.shape + indices.shape
keras_kernel = np.ones((3, 3, 3, 4), np.float32)
z = convkern.conv2d(x.transpose(0, 2, 3, 1), keras_kernel, data_format="channels_last", weight_format="HWIO")
edges = filters.filter2d(np.ones((5, 5)), "sobel_x", mode="nearest")
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
opt = optim.SGD(model.parameters(), lr=0.1)
out_shape: tuple[int, ...] = convkern.output_shape("conv2d", (1, 3, 8, 8), (4, 3, 3, 3), padding=1)
threads: int = convkern.get_num_threads()
reveal_type(convkern.conv2d)
"""

BAD_SCRIPT = """\
import numpy as np
import convkern

convkern.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), paddin=1)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if FROM_SOURCE_TREE:
        env["MYPYPATH"] = str(IMPORTED_FROM)
    return env


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", os.devnull, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _pyright(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("pyright") or (shutil.which("pyright", path=str(Path(sys.executable).parent)))
    if exe is None:
        pytest.skip("pyright is not installed")
    return subprocess.run([exe, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _write_scripts(tmp_path: Path) -> None:
    (tmp_path / "user_script.py").write_text(USER_SCRIPT)
    (tmp_path / "bad_script.py").write_text(BAD_SCRIPT)
    config = {
        "pythonVersion": "3.10",
        "typeCheckingMode": "strict",
        "reportUnknownMemberType": False,
        "reportMissingTypeStubs": False,
        "reportUnknownVariableType": False,
        "reportUnknownArgumentType": False,
    }
    if FROM_SOURCE_TREE:
        config["extraPaths"] = [str(IMPORTED_FROM)]
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))


@pytest.mark.skipif(not HAVE_SOURCE, reason="the source tree is not here")
def test_mypy_strict_on_the_package():
    done = _mypy("--config-file", str(ROOT / "pyproject.toml"), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not HAVE_SOURCE, reason="the source tree is not here")
def test_pyright_on_the_package():
    done = _pyright("--project", str(ROOT / "pyproject.toml"), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_on_a_user_script(tmp_path):
    _write_scripts(tmp_path)
    # Errors inside convkern are the package test's business; an installed package is silent to
    # mypy anyway (PEP 561), and a source tree on MYPYPATH is made so here.
    done = _mypy("--strict", "--follow-imports=silent", "user_script.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    revealed = next(line for line in done.stdout.splitlines() if "Revealed type" in line)
    for parameter in (
        "(input: ",
        "weight: ",
        "padding: int | str",
        "padding_mode: str",
        "*, weight_format: str | None",
        "out: ",
    ):
        assert parameter in revealed, revealed
    bad = _mypy("--strict", "--follow-imports=silent", "bad_script.py", cwd=tmp_path)
    assert bad.returncode == 1 and 'Unexpected keyword argument "paddin" for "conv2d"' in bad.stdout, bad.stdout


def test_pyright_on_a_user_script(tmp_path):
    _write_scripts(tmp_path)
    done = _pyright("--outputjson", "user_script.py", cwd=tmp_path)
    report = json.loads(done.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert not errors, textwrap.indent(json.dumps(errors, indent=1), "  ")
    revealed = next(
        d["message"]
        for d in report["generalDiagnostics"]
        if "reveal_type" in d.get("rule", "") or d["message"].startswith("Type of")
    )
    for parameter in (
        "(input: ",
        "weight: ",
        "padding: int | str",
        'padding_mode: str = "zeros"',
        "*, weight_format: str | None = None",
    ):
        assert parameter in revealed, revealed
    bad = json.loads(_pyright("--outputjson", "bad_script.py", cwd=tmp_path).stdout)
    messages = [d["message"] for d in bad["generalDiagnostics"] if d["severity"] == "error"]
    assert any('No parameter named "paddin"' in m for m in messages), messages
