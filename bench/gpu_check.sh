#!/usr/bin/env bash
# gpu_check.sh — builds convkern's CUDA backend on a GPU machine, runs the CUDA tests and the GPU
# benchmark, all inside one time budget, writing every result under $OUT as it goes.
#
#   bash bench/gpu_check.sh                  (from the repository root)
#
# The GPU machine has no network. It is expected to have nvcc, PyTorch, CuPy, pybind11,
# scikit-build-core and pytest; build tools it lacks (cmake, ninja) are installed from wheels in
# build/gpu-wheels/, which prepare_wheels (below) fills on a machine with network:
#
#   bash bench/gpu_check.sh --prepare-wheels    (then carry build/gpu-wheels with the run)
#
# Steps and their share of GPU_CHECK_BUDGET_S (default 420 s; each step gets what the earlier ones
# left, up to its cap, and is killed at its limit so the later steps still run):
#   1. machine: nvidia-smi, nvcc, Python packages                      (seconds)
#   2. build: pip install of this tree for CONVKERN_GPU_ARCHS (default 90-real), no build
#      isolation, no dependencies                                      (cap BUILD_CAP_S, 240)
#      -> HARD FAILURE (exit 2) when the build fails, the CUDA module is missing, or no GPU is seen
#   3. tests: every test that needs a GPU (tests/test_cuda.py, test_torch_ops.py's CUDA cases,
#      test_cuda_static.py's disassembly check), over 8 pytest-xdist workers where xdist is
#      installed; junit XML to $OUT/pytest.xml                        (cap TESTS_CAP_S, 150)
#   4. benchmark: bench/run.py --device cuda --quick, convkern beside cuDNN (fp32) and a CuPy
#      im2col baseline, pooling beside copy bandwidth; $OUT/results.json
#                                                                      (cap BENCH_CAP_S, 200)
#   5. torch.profiler's busiest operators in one ResNet-18 forward, with torch's layers and with
#      convkern's: $OUT/profile.txt                                    (cap PROFILE_CAP_S, 60)
#   6. cuDNN TF32 off/on and convkern's kernel versions (v3 with TF32 too) on a few forward
#      convolutions, with their errors against cuDNN float32: $OUT/tf32_versions.json
#                                                                      (cap PROBE_CAP_S, 45)
#   7. compute-sanitizer memcheck over tests/test_cuda.py, as long as the budget lasts
#      (a stop at the limit is reported, not failed; errors found are)
# GPU_CHECK_STEPS names the steps 3-7 to run (default "tests bench profile probe memcheck"), e.g.
# GPU_CHECK_STEPS="tests memcheck" for a rerun after a fix.
# $OUT/gpu_check.log holds everything printed; $OUT/summary.txt the step verdicts and timings.
# Suggested call from the device tool: run(command="bash bench/gpu_check.sh", timeout_s=450,
# carry=["build/gpu-wheels"]).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=build/gpu-wheels

if [[ "${1:-}" == "--prepare-wheels" ]]; then
  mkdir -p "$WHEELS"
  "$PY" -m pip download --only-binary=:all: --no-deps --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 -d "$WHEELS" cmake ninja
  ls -la "$WHEELS"
  exit $?
fi

OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
archs=${CONVKERN_GPU_ARCHS:-90-real}
budget=${GPU_CHECK_BUDGET_S:-420}
t0=$(date +%s)
summary="$OUT/summary.txt"
: > "$summary"

left() { echo $(( budget - ($(date +%s) - t0) )); }
# The time a step may take: its cap, or what is left of the budget less `reserve` seconds.
allot() {
  local cap=$1 reserve=$2 l
  l=$(( $(left) - reserve ))
  (( l < cap )) && echo $(( l > 10 ? l : 10 )) || echo "$cap"
}
note() { echo "$*" | tee -a "$summary"; }
# GPU_CHECK_STEPS picks steps 3-6 (all by default): a rerun after a fix can take the tests alone.
steps=" ${GPU_CHECK_STEPS:-tests bench profile probe memcheck} "
want() { [[ "$steps" == *" $1 "* ]]; }

step_tests() {
echo "== tests that need a GPU"
start=$(date +%s)
limit=$(allot "${TESTS_CAP_S:-150}" "$(want bench && echo 120 || echo 40)")
workers=()
# pytest-benchmark (where installed) warns when xdist is active, and the suite turns warnings into
# errors: it is left out (-p no:benchmark), as the suite times nothing.
"$PY" -c "import xdist" 2>/dev/null && workers=(-n "${TEST_WORKERS:-8}")
# Warnings from CuPy's own modules (e.g. about the CUDA path) must not turn into test errors.
timeout "$limit" "$PY" -m pytest tests/test_cuda.py tests/test_torch_ops.py tests/test_cuda_static.py \
  "${workers[@]}" -q -ra -p no:cacheprovider -p no:benchmark -W "ignore:::cupy" -W "ignore:::cupyx" \
  --junitxml "$OUT/pytest.xml"
rc=$?
(( rc == 124 )) && note "FAIL: tests stopped at their limit (${limit} s)"
(( rc != 0 )) && status=1
"$PY" - "$OUT/pytest.xml" <<'EOF' | tee -a "$summary"
import sys, xml.etree.ElementTree as ET
try:
    s = ET.parse(sys.argv[1]).getroot()
    s = s if s.tag == "testsuite" else s.find("testsuite")
    a = {k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    print(f"tests: {a['tests']} run, {a['failures']} failed, {a['errors']} errors, {a['skipped']} skipped,"
          f" {float(s.get('time', 0)):.0f} s")
except Exception as exc:
    print(f"tests: no junit report ({exc})")
EOF
}

step_bench() {
echo "== bench/run.py --device cuda --quick"
start=$(date +%s)
limit=$(allot "${BENCH_CAP_S:-200}" 30)
if (( limit < 30 )); then
  note "SKIP: benchmark (only $(left) s of the budget left)"
else
  # The benchmark starts no new row after its time limit; `timeout` ends it 15 s later.
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  timeout "$(( limit ))" "$PY" bench/run.py --device cuda --quick --time-limit "$(( limit - 15 ))" --out "$OUT" \
    ${BENCH_ARGS:-} || status=1
  note "benchmark: $(( $(date +%s) - start )) s"
fi
}

step_probe() {
echo "== cuDNN with TF32 off and on; convkern conv kernel versions (v3 also with TF32)"
limit=$(allot "${PROBE_CAP_S:-45}" 10)
timeout "$limit" "$PY" - "$OUT/tf32_versions.json" <<'EOF' | tee -a "$summary"
# Forward convolutions in float32 (NCHW and NHWC), median of timed repeats after a warm-up.
import json, sys
import cupy as cp
import torch
from convkern import _C, _cuda

rows = [  # (N, C, H, W, K, kernel, stride, padding)
    (32, 64, 56, 56, 64, 3, 1, 1), (32, 256, 14, 14, 256, 3, 1, 1), (32, 512, 7, 7, 512, 3, 1, 1),
    (32, 256, 56, 56, 64, 1, 1, 0), (32, 3, 224, 224, 64, 7, 2, 3),
]

def timed(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record(); fn(); stop.record(); stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]

torch.backends.cudnn.benchmark = True
out = []
for n, c, h, w, k, ks, s, p in rows:
    for last in (False, True):
        x = torch.randn(n, c, h, w, device="cuda")
        wt = torch.randn(k, c, ks, ks, device="cuda")
        if last:
            x = x.to(memory_format=torch.channels_last)
        r = {"shape": [n, c, h, w, k, ks, s, p], "layout": "NHWC" if last else "NCHW"}
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            r["cudnn_tf32" if tf32 else "cudnn_fp32"] = timed(lambda: torch.nn.functional.conv2d(x, wt, None, s, p))
        torch.backends.cudnn.allow_tf32 = False
        x5 = (x.permute(0, 2, 3, 1) if last else x).contiguous().unsqueeze(1 if last else 2)
        w5 = wt.unsqueeze(2).contiguous()
        ho, wo = (h + 2 * p - ks) // s + 1, (w + 2 * p - ks) // s + 1
        y5 = torch.empty((n, 1, ho, wo, k) if last else (n, k, 1, ho, wo), device="cuda")
        args = _C.ConvArgs([1, s, s], [0, p, p], [0, p, p], [1, 1, 1], 1, 2, last)  # groups 1, rank 2
        stream = torch.cuda.current_stream().cuda_stream
        ref = torch.nn.functional.conv2d(x, wt, None, s, p)
        got = y5.squeeze(1).permute(0, 3, 1, 2) if last else y5.squeeze(2)
        # float32 through each kernel version (version 3 is version 2 for float32 unless TF32 is
        # allowed), then version 3 with TF32; the error of each against cuDNN float32.
        runs = [(v, False) for v in range(1, _cuda.conv_kernel_version_latest + 1)] + [(3, True)]
        for v, tf32 in runs:
            _cuda.set_conv_kernel_version(v)
            _cuda.set_conv_allow_tf32(tf32)
            name = f"convkern_v{v}" + ("_tf32" if tf32 else "")
            r[name] = timed(lambda: _cuda.conv_forward(x5, w5, None, y5, args, stream))
            r[name + "_max_abs_err"] = float((got - ref).abs().max())
        _cuda.set_conv_kernel_version(_cuda.conv_kernel_version_default)
        _cuda.set_conv_allow_tf32(False)
        out.append(r)
        print(f"{r['layout']} {r['shape']}: ms cudnn fp32 {r['cudnn_fp32']:.3f} tf32 {r['cudnn_tf32']:.3f} | "
              + " ".join(f"{n[9:]} {r[n]:.3f} (err {r[n + '_max_abs_err']:.1e})"
                         for n in r if n.startswith("convkern_") and not n.endswith("_err")))
        json.dump(out, open(sys.argv[1], "w"), indent=1)
EOF
(( PIPESTATUS[0] != 0 )) && note "WARN: the TF32/version probe did not finish"
}

step_memcheck() {
echo "== compute-sanitizer memcheck (tests/test_cuda.py)"
limit=$(( $(left) - 10 ))
if ! command -v compute-sanitizer >/dev/null; then
  note "SKIP: memcheck (no compute-sanitizer)"
elif (( limit < 30 )); then
  note "SKIP: memcheck (only $(left) s of the budget left)"
else
  start=$(date +%s)
  timeout "$limit" compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 20 \
    "$PY" -m pytest tests/test_cuda.py -q -x -p no:cacheprovider -p no:benchmark -W "ignore:::cupy" -W "ignore:::cupyx" \
    > "$OUT/memcheck.log" 2>&1
  rc=$?
  tail -5 "$OUT/memcheck.log"
  if (( rc == 86 )); then
    note "FAIL: memcheck found errors ($OUT/memcheck.log)"; status=1
  elif (( rc == 124 )); then
    note "memcheck: stopped at its limit ($(( $(date +%s) - start )) s), no error reported until then"
  else
    note "memcheck: rc $rc, $(( $(date +%s) - start )) s"; (( rc != 0 )) && status=1
  fi
fi
}

step_profile() {
echo "== torch.profiler: resnet18.forward NCHW, torch's layers and convkern's"
limit=$(allot "${PROFILE_CAP_S:-60}" 5)
if (( limit < 20 )); then
  note "SKIP: profile (only $(left) s of the budget left)"
  return
fi
timeout "$limit" "$PY" bench/models.py --device cuda --profile --row resnet18.forward --layout NCHW \
  > "$OUT/profile.txt" 2>&1 || note "WARN: the profile did not finish"
grep -v "^USDT" "$OUT/profile.txt" | head -60
}

main() {
status=0

echo "== machine"
date -u
if ! nvidia-smi; then
  note "FAIL: nvidia-smi sees no GPU"
  return 2
fi
nvcc --version | tail -2
"$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "pybind11", "scikit_build_core", "pytest", "cmake", "ninja"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')}")
    except Exception as exc:
        print(f"  {name}: missing ({exc})")
EOF

echo "== build tools"
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" cmake ninja || note "WARN: wheel install failed"
  else
    note "WARN: cmake/ninja missing and no wheels in $WHEELS (run --prepare-wheels and carry it)"
  fi
fi
command -v cmake && cmake --version | head -1
command -v ninja && ninja --version

echo "== build (CMAKE_CUDA_ARCHITECTURES=$archs)"
start=$(date +%s)
# Held back for the steps after the build: the tests and the benchmark need most of it.
reserve=$(( 20 + $(want tests && echo 80 || echo 0) + $(want bench && echo 100 || echo 0) ))
limit=$(allot "${BUILD_CAP_S:-240}" "$reserve")
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if ! timeout "$limit" "$PY" -m pip install --no-build-isolation --no-deps -q \
     -Cbuild-dir=/tmp/convkern-gpu-build -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$archs" \
     -Ccmake.define.CONVKERN_CUDA=ON .; then
  note "FAIL: build (limit ${limit} s)"
  return 2
fi
note "build: $(( $(date +%s) - start )) s"
# Hard failure unless the CUDA module is there and sees a GPU: a CPU-only build would otherwise
# skip every GPU test and pass.
if ! (cd /tmp && "$PY" - <<'EOF'
import json, sys
import convkern
from convkern import _cuda_backend as cb
print(json.dumps(convkern.info()))
print(cb.info())
if not cb.built():
    sys.exit("the CUDA module convkern._cuda was not built")
if cb.device_count() == 0:
    sys.exit("convkern._cuda sees no CUDA device")
from convkern import _cuda
print("conv kernel versions 1 ..", _cuda.conv_kernel_version_latest, "; default", _cuda.conv_kernel_version())
EOF
); then
  note "FAIL: no usable CUDA backend"
  return 2
fi

for step in tests bench profile probe memcheck; do
  want "$step" && "step_$step"
done
note "total: $(( $(date +%s) - t0 )) s of a ${budget} s budget"
return $status
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
