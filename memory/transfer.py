"""`greenroom memory export|import`: move every index between stores (embedded -> server, say) without
re-embedding. The library's records stay in the database; an import repoints them at its copies.
Conversations' memories are not exported: the database holds them, and each conversation's index is
embedded again from there when the new store first lacks it (`memory/long_term.py`).

The file is JSON lines: a header, then per index a line with its name and point count followed by
its points (id, story, dense vector, sparse vector). Export writes every character index the store lists, in
name order, each index's points in (story, id) order: the same store always gives the same file.

Import is atomic, like a character load. Every index in the file is first written under a fresh
staging name (`<name>.<8 hex>`); if anything fails, the staged indexes are dropped and the error
says that nothing was changed. Only then does ``publish`` repoint the registry at the staged names
(one database transaction), and the indexes it replaced are dropped after.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from greenroom.memory.long_term import is_memory_index
from greenroom.memory.store import MemoryStore, Passage, StoreError, VectorIndex

log = logging.getLogger(__name__)

HEADER = {"greenroom_memory": 1}
BATCH = 256
NAME = re.compile(r"\w[\w.-]*")  # an index name: no path separators, no leading dot
STAGED = re.compile(r"\.[0-9a-f]{8}$")  # the suffix an earlier import gave a name

Publish = Callable[[dict[str, str]], set[str]]
"""Repoints the registry from each file index name to its staged name, in one transaction, and returns
the names it no longer points at (the store drops those). Raising leaves the registry unchanged."""


def staging_name(name: str) -> str:
    """A fresh name for an imported copy of ``name``: its base plus a new `.<8 hex>` suffix."""
    return f"{STAGED.sub('', name)}.{secrets.token_hex(4)}"


def export_store(store: MemoryStore, out: Path) -> dict[str, int]:
    """Write every character index of ``store`` to ``out``; returns points per index."""
    counts: dict[str, int] = {}
    with out.open("w", encoding="utf-8") as f:
        f.write(json.dumps(HEADER) + "\n")
        for name in sorted(n for n in store.names() if not is_memory_index(n)):
            index = store.open(name)
            try:
                points = sorted(index.points(), key=lambda p: (p.story, p.id))
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


def _bad(path: Path, number: int, why: object) -> StoreError:
    return StoreError(f"{path} line {number}: not a Greenroom memory export ({why})")


def _points(lines: Iterator[tuple[int, dict]], path: Path, number: int, total: int) -> Iterator[Passage]:
    """The ``total`` points after line ``number``, all with vectors of one size."""
    size = 0
    for _ in range(total):
        item = next(lines, None)
        if item is None:
            raise _bad(path, number + 1, f"the file ends before the index's {total} points")
        number, p = item
        try:
            passage = Passage(
                str(p["id"]),
                int(p["story"]),
                np.asarray(p["dense"], dtype=np.float32),
                (list(p["sparse"][0]), list(p["sparse"][1])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise _bad(path, number, f"{type(e).__name__}: {e}") from None
        size = size or passage.dense.size
        if passage.dense.shape != (size,) or size == 0:
            raise _bad(path, number, f"a vector of shape {passage.dense.shape} among vectors of size {size}")
        yield passage


def _write(store: MemoryStore, name: str, dim: int, passages: Iterable[Passage]) -> None:
    """Create index ``name`` and write ``passages`` into it, in batches; commit it once complete."""
    index: VectorIndex = store.create(name, dim)
    stream = iter(passages)
    try:
        while batch := list(itertools.islice(stream, BATCH)):
            index.add(batch)
    except BaseException:
        index.close()
        raise
    store.commit(name, index)


def _stage(store: MemoryStore, path: Path, staged: dict[str, str]) -> dict[str, int]:
    """Write every index in the file under a staging name, recorded in ``staged`` (file name -> staged
    name) before it is created; returns points per staged name."""
    lines = _lines(path)
    if next(lines, (0, None))[1] != HEADER:
        raise StoreError(f"{path}: not a Greenroom memory export (no header)")
    counts: dict[str, int] = {}
    empty: list[str] = []  # indexes without points: written last, with the vector size the others have
    dim = 0
    for number, head in lines:
        try:
            name, total = head["index"], int(head["points"])
        except (KeyError, TypeError, ValueError) as e:
            raise _bad(path, number, f"{type(e).__name__}: {e}") from None
        if not isinstance(name, str) or not NAME.fullmatch(name) or total < 0:
            raise _bad(path, number, f"{name!r} with {total} points is not an index")
        if name in staged:
            raise _bad(path, number, f"the index {name} appears twice")
        staged[name] = staging_name(name)
        counts[staged[name]] = total
        if total == 0:
            empty.append(name)
            continue
        points = _points(lines, path, number, total)
        first = next(points)
        dim = dim or len(first.dense)
        _write(store, staged[name], len(first.dense), itertools.chain([first], points))
    if empty and not dim:
        raise StoreError(f"{path}: the index {empty[0]} has no points and no other index gives its vector size")
    for name in empty:
        _write(store, staged[name], dim, [])
    return counts


def _discard(store: MemoryStore, names: Iterable[str]) -> str:
    """Drop staged indexes; returns what to add to the error: nothing, or which could not be removed."""
    left = []
    for name in names:
        try:
            store.drop(name)
        except Exception as e:
            left.append(f"{name} ({e})")
    return f" (the partial copies {', '.join(left)} could not be removed)" if left else ""


def import_store(store: MemoryStore, path: Path, publish: Publish) -> dict[str, int]:
    """Write each index in the file into ``store`` under a staging name, ``publish`` the names in one step,
    then drop the indexes it replaced; returns points per new name. On failure the store and the registry
    are as they were, and the error says so."""
    staged: dict[str, str] = {}
    try:
        counts = _stage(store, path, staged)
        replaced = publish(dict(staged))
    except StoreError as e:
        raise StoreError(f"{e}; nothing was changed{_discard(store, staged.values())}") from None
    except BaseException as e:
        e.add_note(f"greenroom memory import: nothing was changed{_discard(store, staged.values())}")
        raise
    for name in sorted(replaced - set(staged.values())):
        try:
            store.drop(name)
        except Exception as e:  # the import is done; the old copy is only left over
            log.warning("memory import: could not drop the replaced index %s: %s", name, e)
    return counts
