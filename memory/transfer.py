"""`greenroom memory export|import`: move every index between stores (embedded -> server, say) without
re-embedding. The library's records (SQLite) stay where they are and name the same indexes.

The file is JSON lines: a header, then per index a line with its name and point count followed by
its points (id, story, dense vector, sparse vector).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from greenroom.memory.store import MemoryStore, Passage, StoreError

HEADER = {"greenroom_memory": 1}
BATCH = 256


def export_store(store: MemoryStore, out: Path) -> dict[str, int]:
    """Write every index of ``store`` to ``out``; returns points per index."""
    counts: dict[str, int] = {}
    with out.open("w", encoding="utf-8") as f:
        f.write(json.dumps(HEADER) + "\n")
        for name in store.names():
            index = store.open(name)
            try:
                points = list(index.points())
            finally:
                index.close()
            f.write(json.dumps({"index": name, "points": len(points)}) + "\n")
            for p in points:
                f.write(
                    json.dumps(
                        {"id": p.id, "story": p.story, "dense": p.dense.tolist(), "sparse": [p.sparse[0], p.sparse[1]]}
                    )
                    + "\n"
                )
            counts[name] = len(points)
    return counts


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                yield number, json.loads(line)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: not a Greenroom memory export ({e})") from None


def import_store(store: MemoryStore, path: Path) -> dict[str, int]:
    """Write each index in the file into ``store`` (replacing one of the same name); returns points per index."""
    lines = _lines(path)
    if next(lines, (0, None))[1] != HEADER:
        raise StoreError(f"{path}: not a Greenroom memory export (no header)")
    counts: dict[str, int] = {}
    for number, head in lines:
        try:
            name, total = head["index"], int(head["points"])
            batch: list[Passage] = []
            index = None
            for _ in range(total):
                number, p = next(lines)
                passage = Passage(
                    p["id"],
                    int(p["story"]),
                    np.asarray(p["dense"], dtype=np.float32),
                    (list(p["sparse"][0]), list(p["sparse"][1])),
                )
                index = index or store.create(name, len(passage.dense))
                batch.append(passage)
                if len(batch) == BATCH:
                    index.add(batch)
                    batch = []
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as e:
            raise StoreError(f"{path} line {number}: not a Greenroom memory export ({type(e).__name__}: {e})") from None
        if index is not None:
            if batch:
                index.add(batch)
            store.commit(name, index)
        counts[name] = total
    return counts
