#!/usr/bin/env bash
# Builds convkern._C with AddressSanitizer and UndefinedBehaviorSanitizer and runs the CPU test suite
# against it. Any sanitizer report fails the run (exit status non-zero).
#
#   tools/sanitize.sh                          # the default CPU suite
#   tools/sanitize.sh tests/test_conv.py -k 3d # any pytest arguments instead
#   CONVKERN_FUZZ_SECONDS=600 tools/sanitize.sh -m fuzz tests/test_fuzz.py   # the long fuzz run
#
# Environment: PYTHON (default: python3), BUILD_DIR (default: build/sanitize), JOBS (default: 2).
# The sanitized module goes into a copy of the package under $BUILD_DIR/pkg, imported ahead of any
# installed convkern; the CUDA module is left out (the CUDA tests skip). Python is not built with
# the sanitizers, so the ASan runtime is preloaded, and leak detection is off: the interpreter
# itself does not free everything at exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
build="${BUILD_DIR:-$root/build/sanitize}"
jobs="${JOBS:-2}"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSKBUILD_PROJECT_NAME=convkern -DSKBUILD_PROJECT_VERSION=0.1.0 \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$python")" \
  -DCONVKERN_CUDA=OFF -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "$jobs" --target _C

pkg="$build/pkg"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r "$root/python/convkern" "$pkg/"
rm -f "$pkg"/convkern/_C*.so "$pkg"/convkern/_cuda*.so
cp "$build"/_C*.so "$pkg/convkern/"

libasan="$(${CXX:-c++} -print-file-name=libasan.so)"
[[ -f "$libasan" ]] || { echo "sanitize.sh: libasan.so not found (install the compiler's ASan runtime)" >&2; exit 2; }
# libstdc++ is preloaded too: ASan intercepts __cxa_throw only if it is loaded when ASan starts, and
# Python itself does not link it (a C++ exception would otherwise abort in the interceptor).
libstdcxx="$(${CXX:-c++} -print-file-name=libstdc++.so.6)"
preload="$libasan $libstdcxx"

log="$build/pytest.log"
if [[ $# -eq 0 ]]; then set -- "$root/tests" -q -p no:cacheprovider; fi
status=0
(
  cd "$root"
  export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}"
  export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # The sanitized module must be the one imported: fail early otherwise.
  LD_PRELOAD="$preload" "$python" -c "import convkern._C as m, sys; sys.exit(0 if m.__file__.startswith('$pkg') else 1)"
  LD_PRELOAD="$preload" "$python" -m pytest "$@"
) 2>&1 | tee "$log" || status=$?  # pipefail: the tests' status, not tee's

if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$log"; then
  echo "sanitize.sh: sanitizer report in $log" >&2
  exit 1
fi
exit "$status"
