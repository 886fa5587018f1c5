"""Loading throughput: stories/s of a full character load against plain SentenceTransformer.encode.

Target: at least 0.7x (the load also builds BM25 vectors, writes Qdrant and SQLite, counts tokens).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from greenroom.memory.db import Database
from greenroom.memory.library import Library
from greenroom.memory.store import EdgeStore
from tests.bench.bench_turn import synthetic
from tests.bench.common import models, table

N = 1_000


def main() -> None:
    embedder, llm = models()
    character, _ = synthetic(N, embedder.dim, seed=1)
    texts = [s.text for s in character.stories]
    embedder.encode(texts[:64])  # warm up both paths alike
    start = time.perf_counter()
    embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
    plain = N / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        library = Library(
            Database(root / "db.sqlite3"), EdgeStore(root / "qdrant"), embedder, llm.count_tokens, llm.tokenizer_id
        )
        result = library.load(character)
        library.close()
    ours = N / result.seconds
    table(
        f"Loading {N} stories (stories/s)",
        ["path", "stories/s", "ratio"],
        [["SentenceTransformer.encode (baseline)", plain, 1.0], ["greenroom character load", ours, ours / plain]],
    )
    print(f"target >= 0.7x: {'met' if ours / plain >= 0.7 else 'NOT met'}")


if __name__ == "__main__":
    main()
