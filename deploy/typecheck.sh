#!/usr/bin/env bash
# mypy over the installed layout: bots/ core/ memory/ models/ are greenroom.bots … (setup.py's
# package-dir), which mypy cannot map by itself, so it reads them through a tree of links.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=build/typecheck
rm -rf "$TREE" && mkdir -p "$TREE/greenroom"
for f in greenroom/*.py; do ln -s "$PWD/$f" "$TREE/$f"; done
for layer in bots core memory models; do ln -s "$PWD/$layer" "$TREE/greenroom/$layer"; done
PY=${PYTHON:-$PWD/.venv/bin/python}
cd "$TREE" && "$PY" -m mypy --config-file ../../pyproject.toml --cache-dir ../mypy-cache "$@" -p greenroom
