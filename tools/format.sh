#!/usr/bin/env bash
# Formats and lints the whole tree: ruff (lint fixes, then formatting) on the Python files, and
# clang-format on the C++ and CUDA sources, with the configurations in pyproject.toml and
# .clang-format. With --check nothing is changed: it fails if anything would be.
#   bash tools/format.sh           # apply
#   bash tools/format.sh --check   # CI
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
[ "${1:-}" = "--check" ] && check=1
command -v ruff >/dev/null || { echo "ruff is not installed: pip install ruff" >&2; exit 2; }
command -v clang-format >/dev/null || { echo "clang-format is not installed: pip install clang-format" >&2; exit 2; }
mapfile -t cxx < <(git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*.cuh' 'tools/*.h' 'tools/**/*.h')
# Every step runs even when one before it fails, so one run shows (or fixes) everything.
status=0
if [ "$check" = 1 ]; then
  ruff check . || status=1
  ruff format --check . || status=1
  clang-format --dry-run --Werror "${cxx[@]}" || status=1
else
  ruff check --fix . || status=1  # what is left needs a hand: it is listed
  ruff format .
  clang-format -i "${cxx[@]}"
fi
exit "$status"
