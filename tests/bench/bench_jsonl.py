"""Loading a 10,000-story ChatHaruhi role jsonl: stored vectors reused against re-embedded (stories/s)."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np

from greenroom.memory.characters import Character, Story
from greenroom.memory.chatharuhi_jsonl import column_name, write_jsonl
from greenroom.memory.db import Database
from greenroom.memory.importers import read_character
from greenroom.memory.library import Library
from greenroom.memory.store import EdgeStore
from tests.bench.bench_turn import WORDS
from tests.bench.common import models, table

N = 10_000


def main() -> None:
    embedder, llm = models()
    rng = random.Random(2)
    character = Character(
        "roles",
        "Roles",
        "You are a role.",
        tuple(Story(f"Wren:「{' '.join(rng.choices(WORDS, k=10))}」", f"{i}") for i in range(N)),
    )
    vectors = np.random.default_rng(2).standard_normal((N, embedder.dim)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, column in (
            ("stored vectors reused", column_name(embedder.name)),
            ("re-embedded (another model's column)", "bge_zh_s15"),
        ):
            path = root / f"{column}.jsonl"
            write_jsonl(character, vectors, column, path)
            library = Library(
                Database(root / f"{column}.sqlite3"),
                EdgeStore(root / f"q-{column}"),
                embedder,
                llm.count_tokens,
                llm.tokenizer_id,
            )
            start = time.perf_counter()
            imported = read_character(path, None, column_name(embedder.name), embedder.dim)
            library.load(imported.character, vectors=imported.vectors)
            seconds = time.perf_counter() - start
            library.close()
            rows.append([label, seconds, N / seconds, imported.note])
    table(f"Loading a {N}-story role jsonl", ["path", "seconds", "stories/s", "what the load said"], rows)
    print(f"reuse is {rows[0][2] / rows[1][2]:.1f}x faster than re-embedding")


if __name__ == "__main__":
    main()
