#!/usr/bin/env python3
"""Static performance report of convkern's CUDA kernels, from the compiled machine code alone.

Compiles csrc/cuda/*.cu for one architecture (sm_90 by default) with nvcc, then reads:
- from ptxas (-Xptxas -v): registers, spill stores/loads and static shared memory per kernel;
- from the cubin's ELF info (cuobjdump -elf): the block size each kernel is bounded to;
- from the SASS (cuobjdump -sass): each kernel's loops, found as backward branches. The main loop
  of a kernel is the loop with the most multiply-add instructions (FFMA, HMMA, DFMA, HFMA2); for it
  the report gives its instruction count, the multiply-add share, shared-memory load instructions
  per FFMA, and whether integer division by a run-time value (the I2F.*.RP / MUFU.RCP / F2I
  sequence nvcc emits for it, or a call to a division routine) sits inside it.
Occupancy is the number of resident blocks per SM that registers, shared memory and threads allow,
with the sm_90 limits (65536 registers allocated per warp in units of 256, 228 KiB of shared memory
with 1 KiB reserved per block, 2048 threads, 32 blocks).

Targets, checked for the kernels named in TARGETED (the SIMT implicit-GEMM kernels in float and
float16), plus "no spills" and "at least 2 blocks per SM" for every float/float16 kernel:
main-loop FFMA share >= 70 %, <= 1 shared-load instruction per 8 FFMA, no integer division in the
main loop. Exit status 1 when a target is missed, 2 when a tool is missing.

    python tools/cuda_static_report.py [--arch 90] [--only conv] [--json report.json] [--all]

Needs nvcc, cuobjdump and nvdisasm (PATH, $CUDA_HOME/bin, or the nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm wheels); c++filt (binutils) for readable names if present.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"conv": ROOT / "csrc/cuda/conv.cu", "pool": ROOT / "csrc/cuda/pool.cu"}

# Kernels held to the main-loop targets: the SIMT implicit-GEMM kernels (name pattern), in these
# element types (the demangled template argument).
TARGETED = re.compile(r"igemm_(fprop|dgrad|wgrad)_simt")
TARGET_TYPES = ("float", "__half")
# Earlier kernel versions, kept runnable beside the current ones for comparison: reported, not
# held to targets.
PREVIOUS = re.compile(r"^conv_(forward|backward_data|backward_weight)_gemm<")
MIN_FFMA_SHARE = 0.70
MAX_LDS_PER_FFMA = 1 / 8
MIN_BLOCKS_PER_SM = 2

# sm_90 resources per SM.
REGS_PER_SM = 65536
REG_UNIT_PER_WARP = 256
WARP_ALLOC_UNIT = 4
SMEM_PER_SM = 233472
SMEM_RESERVED_PER_BLOCK = 1024
SMEM_UNIT = 128
THREADS_PER_SM = 2048
BLOCKS_PER_SM = 32

FMA_OPS = ("FFMA", "HMMA", "DFMA", "HFMA2")
# nvcc's sequence for unsigned/signed division by a run-time value starts from an
# I2F.U32.RP / I2F.RP reciprocal estimate; 64-bit division calls a subroutine.
DIVISION = re.compile(r"\bI2F(\.[A-Z0-9]+)*\.RP\b|\bCALL\.REL")


def find_tool(name: str) -> str | None:
    candidates = [shutil.which(name)]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(os.path.join(os.environ[env], "bin", name))
    candidates.append(f"/usr/local/cuda/bin/{name}")
    purelib = sysconfig.get_paths()["purelib"]
    candidates += glob.glob(os.path.join(purelib, "nvidia", "*", "bin", name))
    candidates += glob.glob(os.path.join(purelib, "nvidia", "*", "*", "bin", name))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


@dataclass
class Loop:
    start: int
    end: int
    instructions: int = 0
    fma: dict = field(default_factory=dict)
    shared_loads: int = 0
    shared_load_bytes: int = 0
    division: list = field(default_factory=list)

    @property
    def fma_total(self) -> int:
        return sum(self.fma.values())


@dataclass
class Kernel:
    source: str
    mangled: str
    name: str = ""
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0
    threads: int = 0
    blocks_per_sm: int = 0
    limiter: str = ""
    main_loop: Loop | None = None
    misses: list = field(default_factory=list)


def compile_cubin(nvcc: str, src: Path, arch: str, out: Path, flags: list[str]) -> str:
    cmd = [
        nvcc,
        "-std=c++17",
        "-O3",
        f"-arch=sm_{arch}",
        "-cubin",
        "-Xptxas",
        "-v",
        "-I",
        str(ROOT / "csrc"),
        *flags,
        "-o",
        str(out),
        str(src),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"nvcc failed on {src}")
    return r.stdout + r.stderr


def parse_ptxas(log: str, source: str) -> dict[str, Kernel]:
    kernels: dict[str, Kernel] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = kernels.setdefault(m.group(1), Kernel(source, m.group(1)))
            continue
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), Kernel(source, m.group(1)))
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current.registers = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current.smem = int(s.group(1)) if s else 0
    return kernels


def parse_max_threads(elf: str) -> dict[str, int]:
    threads: dict[str, int] = {}
    current = None
    lines = elf.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\.nv\.info\.(\S+)$", line.strip())
        if m:
            current = m.group(1)
            continue
        if current and "EIATTR_MAX_THREADS" in line:
            for follow in lines[i + 1 : i + 3]:
                v = re.search(r"Value:\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", follow)
                if v:
                    x, y, z = (int(t, 16) for t in v.groups())
                    threads[current] = x * y * z
    return threads


def parse_sass(sass: str) -> dict[str, list[tuple[int, str]]]:
    functions: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in sass.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = functions.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and current is not None:
            current.append((int(m.group(1), 16), m.group(2).strip()))
    return functions


def opcode(text: str) -> str:
    t = re.sub(r"^@!?U?P\w+\s+", "", text)
    return t.split()[0] if t else ""


def analyse_loops(code: list[tuple[int, str]]) -> Loop | None:
    loops = []
    for addr, text in code:
        op = opcode(text)
        if op.startswith("BRA"):
            m = re.search(r"(0x[0-9a-f]+)\s*$", text)
            if m and int(m.group(1), 16) <= addr:
                loops.append(Loop(int(m.group(1), 16), addr))
    best = None
    for loop in loops:
        for addr, text in code:
            if not loop.start <= addr <= loop.end:
                continue
            op = opcode(text)
            if op == "NOP":
                continue
            loop.instructions += 1
            base = op.split(".")[0]
            if base in FMA_OPS:
                loop.fma[base] = loop.fma.get(base, 0) + 1
            if base in ("LDS", "LDSM"):
                loop.shared_loads += 1
                width = re.search(r"\.(32|64|128)\b", op)
                loop.shared_load_bytes += int(width.group(1)) // 8 if width else 4
            if DIVISION.search(text):
                loop.division.append(f"{addr:#x}: {text}")
        key = (loop.fma_total, -(loop.end - loop.start))
        if best is None or key > (best.fma_total, -(best.end - best.start)):
            best = loop
    return best if best is not None and best.fma_total > 0 else None


def occupancy(k: Kernel) -> None:
    threads = k.threads or 1024
    warps = -(-threads // 32)
    regs_per_warp = -(-max(k.registers, 1) * 32 // REG_UNIT_PER_WARP) * REG_UNIT_PER_WARP
    warps_by_regs = (REGS_PER_SM // regs_per_warp) // WARP_ALLOC_UNIT * WARP_ALLOC_UNIT
    by_regs = warps_by_regs // warps
    smem_block = -(-(k.smem + SMEM_RESERVED_PER_BLOCK) // SMEM_UNIT) * SMEM_UNIT
    by_smem = SMEM_PER_SM // smem_block
    by_threads = THREADS_PER_SM // threads
    limits = {"registers": by_regs, "shared memory": by_smem, "threads": by_threads, "blocks": BLOCKS_PER_SM}
    k.limiter = min(limits, key=lambda n: limits[n])
    k.blocks_per_sm = limits[k.limiter]


def demangle(names: list[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    r = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True)
    out = r.stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def short_name(full: str) -> str:
    s = re.sub(r"convkern::cuda::\(anonymous namespace\)::", "", full)
    s = re.sub(r"convkern::cuda::", "", s)
    s = re.sub(r"\(.*\)$", "", s)  # parameter list
    s = s.replace("Element<__half>::Acc", "float")
    return re.sub(r"^void ", "", s)


def element_type(name: str) -> str:
    m = re.search(r"<\s*(__half|float|double)", name)
    return m.group(1) if m else ""


def check(k: Kernel) -> None:
    if PREVIOUS.search(k.name):
        return
    t = element_type(k.name)
    if t in TARGET_TYPES or not t:
        if k.spill_stores or k.spill_loads:
            k.misses.append(f"spills {k.spill_stores}/{k.spill_loads} bytes")
        if k.blocks_per_sm < MIN_BLOCKS_PER_SM:
            k.misses.append(f"{k.blocks_per_sm} block(s)/SM ({k.limiter})")
    if TARGETED.search(k.name) and t in TARGET_TYPES:
        loop = k.main_loop
        if loop is None:
            k.misses.append("no main loop found")
            return
        ffma = loop.fma.get("FFMA", 0) + loop.fma.get("HMMA", 0)
        share = ffma / loop.instructions if loop.instructions else 0.0
        if share < MIN_FFMA_SHARE:
            k.misses.append(f"FFMA share {share:.0%} < {MIN_FFMA_SHARE:.0%}")
        if ffma == 0 or loop.shared_loads / ffma > MAX_LDS_PER_FFMA:
            k.misses.append(f"{loop.shared_loads} shared loads for {ffma} FFMA")
        if loop.division:
            k.misses.append("integer division in the main loop")


def report(kernels: list[Kernel], show_all: bool) -> str:
    head = (
        f"{'kernel':<58} {'thr':>4} {'reg':>4} {'spill':>6} {'smem':>6} {'blk/SM':>7}  "
        f"{'loop ins':>8} {'FMA':>5} {'FMA %':>6} {'LDS':>4} {'LDS/FMA':>8} {'B/LDS':>6} {'div':>4}  verdict"
    )
    lines = [head, "-" * len(head)]
    for k in kernels:
        loop = k.main_loop
        if not show_all and loop is None and not k.misses:
            continue
        if loop is not None:
            fma = loop.fma_total
            ls = (
                f"{loop.instructions:>8} {fma:>5} {fma / max(loop.instructions, 1):>6.0%} {loop.shared_loads:>4} "
                f"{loop.shared_loads / max(fma, 1):>8.3f} {loop.shared_load_bytes / max(loop.shared_loads, 1):>6.1f} "
                f"{'yes' if loop.division else 'no':>4}"
            )
        else:
            ls = f"{'-':>8} {'-':>5} {'-':>6} {'-':>4} {'-':>8} {'-':>6} {'-':>4}"
        verdict = (
            "MISS: " + "; ".join(k.misses)
            if k.misses
            else "ok (main-loop targets met)"
            if TARGETED.search(k.name) and element_type(k.name) in TARGET_TYPES
            else "previous version"
            if PREVIOUS.search(k.name)
            else "ok"
        )
        name = k.name if len(k.name) <= 58 else k.name[:55] + "..."
        lines.append(
            f"{name:<58} {k.threads:>4} {k.registers:>4} {k.spill_stores + k.spill_loads:>6} "
            f"{k.smem:>6} {k.blocks_per_sm:>4} {k.limiter[:2]:>2}  {ls}  {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="90", help="SM architecture number (default 90)")
    ap.add_argument("--only", choices=sorted(SOURCES), action="append", help="compile only these sources")
    ap.add_argument("--json", help="also write the report as JSON to this file")
    ap.add_argument("--all", action="store_true", help="list kernels without loops too")
    ap.add_argument("--keep", help="keep the cubins and SASS in this folder")
    ap.add_argument("--nvcc-flag", action="append", default=[], help="extra nvcc flag (repeatable)")
    args = ap.parse_args(argv)

    tools = {t: find_tool(t) for t in ("nvcc", "cuobjdump", "nvdisasm")}
    missing = [t for t, p in tools.items() if p is None]
    if missing:
        print(f"cuda_static_report: {', '.join(missing)} not found", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(tools["nvdisasm"]) + os.pathsep + env.get("PATH", "")

    kernels: list[Kernel] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.only or sorted(SOURCES):
            cubin = work / f"{name}.sm_{args.arch}.cubin"
            log = compile_cubin(tools["nvcc"], SOURCES[name], args.arch, cubin, args.nvcc_flag)
            found = parse_ptxas(log, name)
            elf = subprocess.run(
                [tools["cuobjdump"], "-elf", str(cubin)], capture_output=True, text=True, env=env, check=True
            ).stdout
            sass = subprocess.run(
                [tools["cuobjdump"], "-sass", str(cubin)], capture_output=True, text=True, env=env, check=True
            ).stdout
            if args.keep:
                (work / f"{name}.sm_{args.arch}.sass").write_text(sass)
            threads = parse_max_threads(elf)
            code = parse_sass(sass)
            for mangled, k in found.items():
                k.threads = threads.get(mangled, 0)
                k.main_loop = analyse_loops(code.get(mangled, []))
                occupancy(k)
            kernels += found.values()
    names = demangle([k.mangled for k in kernels])
    for k in kernels:
        k.name = short_name(names[k.mangled])
        check(k)
    kernels.sort(key=lambda k: (k.source, k.name))
    print(
        f"convkern CUDA kernels, sm_{args.arch} (registers, spills in bytes, static shared memory in bytes, "
        f"resident blocks per SM and what limits them; main loop = the loop with the most multiply-adds)"
    )
    print(report(kernels, args.all))
    misses = [k for k in kernels if k.misses]
    targeted = [k for k in kernels if TARGETED.search(k.name) and element_type(k.name) in TARGET_TYPES]
    print(
        f"\n{len(kernels)} kernels, {len(targeted)} held to the main-loop targets "
        f"(FFMA share >= {MIN_FFMA_SHARE:.0%}, <= 1 shared load per {round(1 / MAX_LDS_PER_FFMA)} FFMA, "
        f"no division); {len(misses)} miss a target"
    )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(k) for k in kernels], indent=1))
    if not targeted:
        print("no kernel matched the targeted pattern", file=sys.stderr)
        return 1
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
