"""The static performance report of the CUDA kernels (tools/cuda_static_report.py): compiled for
sm_90 and read from the machine code, every SIMT implicit-GEMM kernel must meet its main-loop
targets (FFMA share, shared loads per FFMA, no integer division, no spills, 2 blocks per SM).

Runs where nvcc, cuobjdump and nvdisasm are found (PATH, $CUDA_HOME/bin, or the
nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels); compiling takes about a minute.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "cuda_static_report.py"


def _report_module():
    spec = importlib.util.spec_from_file_location("cuda_static_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cuda_static_report", mod)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["cuda_static_report"])
    return sys.modules["cuda_static_report"]


def test_fast_division_constants():
    # The division the report looks for must be absent from the GEMM main loops; the kernels use
    # a multiply-high and shift instead. Check that method exhaustively near powers of two.
    def fast_div(n, d):
        if d == 1:
            return n
        log2 = (d - 1).bit_length()
        p = 31 + log2
        mul = ((1 << p) + d - 1) // d
        return ((n * mul) >> 32) >> (p - 32)

    for d in list(range(1, 300)) + [2**k + o for k in range(9, 31) for o in (-1, 0, 1)]:
        for n in (0, 1, d - 1, d, d + 1, 2 * d - 1, 2**31 - 1, 2**31 - 2, 123456789 % 2**31):
            if 0 <= n < 2**31:
                assert fast_div(n, d) == n // d, (n, d)


def test_sass_parsing_finds_the_loop_and_division():
    r = _report_module()
    sass = """
        Function : _Zk
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   I2F.U32.RP R5, R4 ;
        /*0020*/                   FFMA R2, R3, R4, R2 ;
        /*0030*/                   LDS.128 R8, [R0] ;
        /*0040*/                   FFMA R2, R3, R4, R2 ;
        /*0050*/              @P0 BRA 0x10 ;
        /*0060*/                   EXIT ;
    """
    loop = r.analyse_loops(r.parse_sass(sass)["_Zk"])
    assert (loop.start, loop.end, loop.instructions) == (0x10, 0x50, 5)
    assert loop.fma == {"FFMA": 2} and loop.shared_loads == 1 and loop.shared_load_bytes == 16
    assert len(loop.division) == 1


def test_gemm_kernels_meet_their_static_targets(tmp_path):
    r = _report_module()
    missing = [t for t in ("nvcc", "cuobjdump", "nvdisasm") if r.find_tool(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found")
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "conv", "--json", str(out)], capture_output=True, text=True, timeout=900
    )
    print(proc.stdout)
    kernels = json.loads(out.read_text())
    targeted = [k for k in kernels if r.TARGETED.search(k["name"]) and r.element_type(k["name"]) in r.TARGET_TYPES]
    assert len(targeted) == 12  # forward, backward data, backward weight x 2 layouts x float/float16
    for k in targeted:
        assert not k["misses"], f"{k['name']}: {k['misses']}"
        loop = k["main_loop"]
        assert loop["fma"].get("FFMA", 0) >= 0.70 * loop["instructions"]
        assert loop["shared_loads"] * 8 <= loop["fma"]["FFMA"] and not loop["division"]
        assert k["spill_stores"] == k["spill_loads"] == 0 and k["blocks_per_sm"] >= 2
