#!/usr/bin/env bash
# gpu_check.sh — everything a session with a lent GPU runs, in one call of the device tool:
#
#   bash bench/gpu_check.sh            (from the repository root; results under $OUT)
#
# 1. the machine: nvidia-smi, nvcc, the Python packages the checks use;
# 2. installs convkern from this working tree (no network there: --no-build-isolation --no-deps;
#    only sm_90 machine code unless CONVKERN_GPU_ARCHS says otherwise, to keep the build short);
# 3. runs the CUDA tests (tests/test_cuda.py);
# 4. runs the benchmark, `bench/run.py --device cuda --quick`: SPEC §8's rows at the GPU batch
#    sizes, forward / backward-data / backward-weight (pooling: forward / backward), NCHW and NHWC,
#    beside cuDNN through PyTorch (fp32, TF32 off, cudnn.benchmark=True) and the CuPy im2col
#    baseline, after the device copy bandwidth and fp32 FMA peak; every case validated first.
#    It starts no new row after BENCH_TIME_LIMIT_S seconds (default 240) and reports what it
#    measured; `timeout` kills it 45 s later should a single case hang. BENCH_ARGS adds options
#    (e.g. BENCH_ARGS="--layout NCHW --filter resnet50").
# Writes $OUT/gpu_check.log, $OUT/pytest.xml, $OUT/results.json and $OUT/ratios.png; prints the
# table last.
# Suggested call: run(command="bash bench/gpu_check.sh", timeout_s=540).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
archs=${CONVKERN_GPU_ARCHS:-90-real}

main() {
status=0

echo "== machine"
date -u
nvidia-smi || status=1
nvcc --version | tail -2
"$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "pybind11", "scikit_build_core", "pytest"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')}")
    except Exception as exc:
        print(f"  {name}: MISSING ({exc})")
EOF

echo "== build (CMAKE_CUDA_ARCHITECTURES=$archs)"
start=$(date +%s)
if ! "$PY" -m pip install --no-build-isolation --no-deps -q \
     -Cbuild-dir=/tmp/convkern-gpu-build -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$archs" .; then
  echo "BUILD FAILED"
  return 1
fi
echo "build took $(( $(date +%s) - start )) s"
(cd /tmp && "$PY" -c "import convkern, json; print(json.dumps(convkern.info()))"
 cd /tmp && "$PY" -c "from convkern import _cuda_backend as cb; print(cb.info())")

echo "== tests/test_cuda.py"
start=$(date +%s)
# Warnings from CuPy's own modules (e.g. about the CUDA path) must not turn into test errors.
"$PY" -m pytest tests/test_cuda.py -q -ra -p no:cacheprovider -W "ignore:::cupy" -W "ignore:::cupyx" \
  --junitxml "$OUT/pytest.xml" || status=1
echo "tests took $(( $(date +%s) - start )) s"

echo "== bench/run.py --device cuda --quick"
start=$(date +%s)
limit=${BENCH_TIME_LIMIT_S:-240}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
timeout "$(( limit + 45 ))" "$PY" bench/run.py --device cuda --quick --time-limit "$limit" --out "$OUT" \
  ${BENCH_ARGS:-} || status=1
echo "benchmark took $(( $(date +%s) - start )) s"
return $status
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
