"""Kernel sets per instruction-set level: forcing a level, agreement between levels, no wide
instruction outside its set (disassembly), and an import + every op family on emulated older CPUs.

The level is fixed when convkern._C loads, so every forced level runs in a child process. The
whole suite under each forced level is a CI step (see docs/cpu.md); here every op family runs
under each level this machine supports and the results are compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import convkern
import numpy as np
import pytest
from convkern import _C

LEVELS = ("generic", "avx2", "avx512")
# Levels this build holds and this CPU runs, lowest first.
SUPPORTED = [lv for lv in LEVELS if lv in _C.isa_levels.split(",")][: LEVELS.index(_C.isa_choice()["best"]) + 1]

# Every op family on small arrays, each checked against the float64 reference; with an argument,
# the results are saved there (npz) for comparison between levels. Also the qemu smoke run.
FAMILIES = r"""
import sys
import numpy as np
import convkern
from convkern import reference as ref

rng = np.random.default_rng(11)
out = {}

def check(name, got, want, tol):
    got = np.asarray(got)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.allclose(got, want, rtol=tol, atol=tol), (name, float(np.abs(got - want).max()))
    out[name] = got

for dt, tol in ((np.float32, 2e-3), (np.float64, 1e-9)):
    tag = np.dtype(dt).name
    x = rng.standard_normal((2, 16, 13, 12)).astype(dt)
    w = rng.standard_normal((20, 16, 3, 3)).astype(dt)
    dy = rng.standard_normal((2, 20, 13, 12)).astype(dt)
    xf, wf, dyf = x.astype(float), w.astype(float), dy.astype(float)
    rx, rw, _ = ref.conv2d_backward(dyf, xf, wf, padding=1)
    # GEMM (5x5 is never Winograd), Winograd (3x3 stride 1, float32), channels-last, depthwise.
    w5 = rng.standard_normal((20, 16, 5, 5)).astype(dt)
    check(f"gemm.{tag}", convkern.conv2d(x, w5, padding=2), ref.conv2d(xf, w5.astype(float), padding=2), tol)
    check(f"wino.{tag}", convkern.conv2d(x, w, padding=1), ref.conv2d(xf, wf, padding=1), tol)
    gx, gw = convkern.conv2d_backward(dy, x, w, padding=1, output_mask=(True, True, False))[:2]
    check(f"wino.bd.{tag}", gx, rx, tol)
    check(f"wino.bw.{tag}", gw, rw, tol * 10)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    yl = convkern.conv2d(xl, w, padding=1, data_format="NHWC")
    check(f"nhwc.{tag}", yl, ref.conv2d(xf, wf, padding=1).transpose(0, 2, 3, 1), tol)
    wd = rng.standard_normal((16, 1, 3, 3)).astype(dt)
    check(f"dw.{tag}", convkern.conv2d(x, wd, padding=1, groups=16),
          ref.conv2d(xf, wd.astype(float), padding=1, groups=16), tol)
    x3 = rng.standard_normal((1, 4, 6, 7, 5)).astype(dt)
    w3 = rng.standard_normal((6, 4, 3, 3, 3)).astype(dt)
    check(f"conv3d.{tag}", convkern.conv3d(x3, w3, padding=1), ref.conv3d(x3.astype(float), w3.astype(float), padding=1), tol)
    check(f"maxpool.{tag}", convkern.max_pool2d(x, 3, stride=2, padding=1), ref.max_pool2d(xf, 3, stride=2, padding=1), tol)
    check(f"avgpool.{tag}", convkern.avg_pool2d(x, 3, stride=1, padding=1), ref.avg_pool2d(xf, 3, stride=1, padding=1), tol)
    check(f"gap.{tag}", convkern.adaptive_avg_pool2d(x, 1), ref.adaptive_avg_pool2d(xf, 1), tol)
    check(f"amax.{tag}", convkern.adaptive_max_pool2d(x, (4, 5)), ref.adaptive_max_pool2d(xf, (4, 5)), tol)
if len(sys.argv) > 1:
    np.savez(sys.argv[1], **out)
print("ok", convkern.info()["cpu_isa"])
"""


def _run(code, *args, env=None, prefix=(), timeout=300):
    # The child's level is the one asked for here, not one this run was forced to.
    env = {k: v for k, v in os.environ.items() if k != "CONVKERN_ISA"} | (env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("level", LEVELS)
def test_forcing_a_level(level):
    res = _run("import convkern; print(convkern.info()['cpu_isa'])", env={"CONVKERN_ISA": level})
    assert res.returncode == 0, res.stderr
    # Forcing may only lower the level: above what the CPU runs, the best it runs.
    expected = level if level in SUPPORTED else SUPPORTED[-1]
    assert res.stdout.strip() == expected


def test_unknown_level_warns_naming_the_valid_ones():
    res = _run("import convkern", env={"CONVKERN_ISA": "avx9000"}, prefix=())
    assert res.returncode == 0, res.stderr
    assert "RuntimeWarning" in res.stderr and "avx9000" in res.stderr
    for level in LEVELS:
        assert repr(level) in res.stderr
    strict = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import convkern"],
        env=dict(os.environ, CONVKERN_ISA="AVX2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert strict.returncode != 0 and "valid values are" in strict.stderr


def test_info_reports_the_levels():
    info = convkern.info()
    assert info["cpu_isa"] in SUPPORTED and info["cpu_isa_best"] == SUPPORTED[-1]
    if not os.environ.get("CONVKERN_ISA"):
        assert info["cpu_isa"] == info["cpu_isa_best"]


def test_every_family_agrees_across_levels(tmp_path):
    results = {}
    for level in SUPPORTED:
        path = tmp_path / f"{level}.npz"
        res = _run(FAMILIES, str(path), env={"CONVKERN_ISA": level})
        assert res.returncode == 0 and f"ok {level}" in res.stdout, (level, res.stderr[-3000:])
        results[level] = np.load(path)
    # Each level met the reference within the tolerance above; between levels the float32 results
    # differ only by summation order (FMA contraction, vector width), far inside it.
    base = results[SUPPORTED[0]]
    for level in SUPPORTED[1:]:
        for name in base.files:
            a, b = base[name], results[level][name]
            tol = 1e-9 if name.endswith("float64") else 1e-3
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol, err_msg=f"{name}: {level} vs {SUPPORTED[0]}")


# ------------------------------------------------------------------------------ disassembly

# In 64-bit mode a first opcode byte 0x62 is always an EVEX prefix (AVX-512), and 0xC4/0xC5 a VEX
# prefix (AVX, AVX2, FMA); only segment overrides (0x26/2E/36/3E/64/65) and the address-size
# prefix 0x67 may precede them.
_PREFIX = r"(?:(?:26|2e|36|3e|64|65|67) )*"
_EVEX = re.compile(rf"^{_PREFIX}62 ")
_VEX = re.compile(rf"^{_PREFIX}c[45] ")


def _disassemble(path, section):
    res = subprocess.run(
        ["objdump", "-d", "-j", section, "--insn-width=15", str(path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].strip().endswith(":"):
            yield parts[1].strip(), parts[2].strip()


def _code_sections(path):
    res = subprocess.run(["objdump", "-h", str(path)], capture_output=True, text=True, timeout=60)
    names = []
    lines = res.stdout.splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if len(f) >= 7 and f[0].isdigit() and i + 1 < len(lines) and "CODE" in lines[i + 1]:
            names.append(f[1])
    return names


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_no_wide_instruction_outside_its_kernel_set():
    """Only the AVX-512 set may hold EVEX (AVX-512) instructions, and only the AVX2 and AVX-512
    sets VEX ones: the common code runs at import on every CPU, the generic set on old ones."""
    so = _C.__file__
    sections = _code_sections(so)
    if "convkern_avx512_text" not in sections:
        pytest.skip("this build has no per-level kernel sets (not x86-64 with GNU binutils)")
    assert {"convkern_generic_text", "convkern_avx2_text"} <= set(sections), sections
    allowed = {"convkern_avx512_text": (True, True), "convkern_avx2_text": (False, True)}
    seen_wide = {}
    for section in sections:
        evex_ok, vex_ok = allowed.get(section, (False, False))
        count = 0
        for raw, text in _disassemble(so, section):
            evex, vex = bool(_EVEX.match(raw)), bool(_VEX.match(raw))
            assert evex_ok or not (evex or "zmm" in text), f"{section}: AVX-512 instruction {raw} {text}"
            assert vex_ok or not vex, f"{section}: AVX instruction {raw} {text}"
            count += evex if section == "convkern_avx512_text" else vex
        seen_wide[section] = count
    # The wide sets really are wide (the check above is not vacuous).
    assert seen_wide["convkern_avx512_text"] > 1000 and seen_wide["convkern_avx2_text"] > 1000, seen_wide


# ------------------------------------------------------------------------------ emulated CPUs


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user (qemu-x86_64) is not installed")
@pytest.mark.parametrize(
    "cpu, blas, expected",
    [("Nehalem", "Nehalem", "generic"), ("SandyBridge", "Sandybridge", "generic"), ("Haswell", "Haswell", "avx2")],
)
def test_import_and_every_family_on_an_older_cpu(cpu, blas, expected):
    """An illegal instruction anywhere on the common path (import, dispatch, any op family) kills
    the child. Nehalem: SSE4.2, no AVX; Sandy Bridge: AVX without AVX2 or FMA (the generic set);
    Haswell: AVX2 + FMA, no AVX-512 (the AVX2 set)."""
    if not _C.isa_levels.startswith("generic,"):
        pytest.skip("this build has no per-level kernel sets")
    qemu = ("qemu-x86_64", "-cpu", cpu)
    # NumPy's OpenBLAS reads the host's CPU model through qemu and may pick kernels the emulated
    # CPU lacks; naming the core keeps the reference's own BLAS calls on the emulated CPU's ISA.
    env = {"OPENBLAS_CORETYPE": blas}
    if _run("import numpy", env=env, prefix=qemu, timeout=300).returncode != 0:
        pytest.skip(f"this NumPy build does not run on {cpu}")
    res = _run(FAMILIES, env=env, prefix=qemu, timeout=900)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    assert res.stdout.split()[-1] == expected, res.stdout
