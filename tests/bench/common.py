"""Helpers for the benchmarks: timing, percentiles, tables, the real models."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

# NumPy's BLAS threads and torch's OpenMP threads spin against each other on 2 cores: a
# 20k x 384 matrix product then costs 30+ ms instead of 1. One BLAS thread keeps the
# baselines honest (and fast).
threadpool_limits(1, user_api="blas")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def timed(fn: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    """Wall times in milliseconds of ``repeat`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def median(values: list[float]) -> float:
    return statistics.median(values)


def models():
    """The shipped embedder and chat model, as the bot loads them."""
    from greenroom.core.config import EmbedderSection, LlmSection
    from greenroom.models.embedder import Embedder
    from greenroom.models.llm import LlamaCppLLM

    e, m = EmbedderSection(), LlmSection()
    return Embedder(e.model, e.device, e.batch_size, e.name), LlamaCppLLM(m.model, m.sha256, n_ctx=m.n_ctx)
