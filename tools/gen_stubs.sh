#!/usr/bin/env bash
# Regenerates the type stubs of the compiled modules, python/convkern/_C.pyi and _cuda.pyi, from the
# modules built in python/convkern/ (or installed): run it after changing a binding, and commit the
# result. A module that is not importable here (e.g. _cuda in a build without CUDA) keeps its stub.
#   bash tools/gen_stubs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for module in _C _cuda; do
  if python -c "import convkern.$module" 2>/dev/null; then
    python -m pybind11_stubgen "convkern.$module" --numpy-array-use-type-var -o "$out" >/dev/null 2>&1 ||
      python -m pybind11_stubgen "convkern.$module" -o "$out"
    # pybind11 returns untyped tuples and dicts as bare `tuple`/`dict`, which mypy --strict refuses.
    sed -e 's/) -> tuple:/) -> tuple[typing.Any, ...]:/' -e 's/) -> dict:/) -> dict[str, typing.Any]:/' \
      "$out/convkern/$module.pyi" >"python/convkern/$module.pyi"
    echo "wrote python/convkern/$module.pyi"
  else
    echo "convkern.$module is not importable here: python/convkern/$module.pyi left as it is" >&2
  fi
done
# The stubs are formatted like the rest of the tree, so that the format check stays quiet.
if command -v ruff >/dev/null; then
  ruff format --quiet python/convkern/_C.pyi python/convkern/_cuda.pyi
fi
