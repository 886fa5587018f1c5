"""`greenroom memory export|import`: the file, and an import that either switches every index or changes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from greenroom.memory.store import EdgeStore, MemoryStore, Passage, SearchQuery, ServerStore, StoreError, point_id
from greenroom.memory.transfer import export_store, import_store
from tests.test_server_store import DIM, EMBEDDER, passages

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


class Registry:
    """What the library's records do for an import: which index each character reads, switched in one step."""

    def __init__(self, current: dict[str, str]) -> None:
        self.current = current
        self.published: list[dict[str, str]] = []

    def publish(self, mapping: dict[str, str]) -> set[str]:
        self.published.append(mapping)
        replaced = {name for name in self.current.values() if name in mapping}
        self.current = {c: mapping.get(name, name) for c, name in self.current.items()}
        return replaced


def write(store: MemoryStore, name: str, written: list[Passage]) -> None:
    index = store.create(name, DIM)
    index.add(written)
    store.commit(name, index)


def results(store: MemoryStore, name: str, query: Passage) -> list[tuple[int, float]]:
    index = store.open(name)
    try:
        return [(s, round(score, 4)) for s, score in index.search(SearchQuery(query.dense, query.sparse), 3)]
    finally:
        index.close()


@pytest.fixture(params=["server", "embedded"])
def store(request, tmp_path) -> MemoryStore:
    if request.param == "server":
        return ServerStore(QdrantClient(":memory:"), EMBEDDER, DIM)
    return EdgeStore(tmp_path / "qdrant")


def exported(tmp_path: Path, indexes: dict[str, list[Passage]]) -> Path:
    """A file as export writes it, from a store holding ``indexes``."""
    source = EdgeStore(tmp_path / "source")
    for name, written in indexes.items():
        write(source, name, written)
    out = tmp_path / "memory.jsonl"
    export_store(source, out)
    return out


def test_memory_moves_from_embedded_to_a_server_without_reembedding(tmp_path) -> None:
    edge = EdgeStore(tmp_path / "qdrant")
    written = passages(1, count=5)
    write(edge, "kit-1", written)
    before = results(edge, "kit-1", written[2])
    out = tmp_path / "memory.jsonl"
    assert export_store(edge, out) == {"kit-1": 5}
    server = ServerStore(QdrantClient(":memory:"), EMBEDDER, DIM)
    registry = Registry({"kit": "kit-1"})
    counts = import_store(server, out, registry.publish)
    [new] = counts
    assert counts == {new: 5} and re.fullmatch(r"kit-1\.[0-9a-f]{8}", new) and registry.current == {"kit": new}
    assert results(server, new, written[2]) == before


def test_export_writes_every_index_the_same_way_each_time(tmp_path) -> None:
    store = ServerStore(QdrantClient(":memory:"), EMBEDDER, DIM)
    write(store, "wren-1", passages(2, count=4))
    write(store, "kit-1", passages(1, count=300))
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert export_store(store, first) == {"kit-1": 300, "wren-1": 4}
    export_store(store, second)
    assert first.read_bytes() == second.read_bytes()
    heads = [json.loads(line) for line in first.read_text().splitlines() if '"index"' in line]
    assert heads == [{"index": "kit-1", "points": 300}, {"index": "wren-1", "points": 4}]


def test_a_successful_import_switches_then_drops_what_it_replaced(store, tmp_path) -> None:
    write(store, "kit-1", passages(1))
    write(store, "wren-1", passages(2))
    incoming = passages(3, count=4)
    registry = Registry({"kit": "kit-1", "wren": "wren-1"})
    counts = import_store(store, exported(tmp_path, {"kit-1": incoming}), registry.publish)
    [new] = counts
    assert registry.current == {"kit": new, "wren": "wren-1"}
    assert store.names() == sorted([new, "wren-1"])
    assert results(store, new, incoming[3])[0][0] == 3


def test_importing_an_import_again_keeps_the_base_name(store, tmp_path) -> None:
    registry = Registry({"kit": "kit-1"})
    [first] = import_store(store, exported(tmp_path / "a", {"kit-1": passages(1)}), registry.publish)
    out = tmp_path / "again.jsonl"
    export_store(store, out)
    [second] = import_store(store, out, registry.publish)
    assert re.fullmatch(r"kit-1\.[0-9a-f]{8}", second) and second != first
    assert registry.current == {"kit": second} and store.names() == [second]


def test_a_file_that_breaks_half_way_changes_nothing(store, tmp_path) -> None:
    write(store, "kit-1", passages(1))
    names = store.names()
    out = exported(tmp_path, {"kit-1": passages(3, count=300), "wren-1": passages(4)})
    lines = out.read_text().splitlines()
    lines[-2] = '{"id": "x", "story": 1}'  # the second index's second point
    out.write_text("\n".join(lines) + "\n")
    registry = Registry({"kit": "kit-1"})
    with pytest.raises(StoreError) as e:
        import_store(store, out, registry.publish)
    assert re.search(f"line {len(lines) - 1}: not a Greenroom memory export .*; nothing was changed$", str(e.value))
    assert store.names() == names and registry.published == []
    assert results(store, "kit-1", passages(1)[0])[0][0] == 0


def test_a_damaged_export_is_refused_by_line(store, tmp_path) -> None:
    bad = tmp_path / "memory.jsonl"
    bad.write_text('{"greenroom_memory": 1}\n{"index": "kit-1", "points": 2}\n{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(StoreError, match="memory.jsonl line 3: not a Greenroom memory export.*nothing was changed"):
        import_store(store, bad, Registry({}).publish)
    assert store.names() == []


@pytest.mark.parametrize(
    "line, why",
    [
        ('{"index": "../../etc", "points": 0}', "'../../etc' with 0 points is not an index"),
        ('{"index": "kit-1", "points": 3}', "the file ends before the index's 3 points"),
    ],
)
def test_a_file_naming_no_store_index_is_refused(store, tmp_path, line, why) -> None:
    bad = tmp_path / "memory.jsonl"
    bad.write_text('{"greenroom_memory": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(StoreError, match=re.escape(why)):
        import_store(store, bad, Registry({}).publish)
    assert store.names() == []


def test_vectors_the_store_cannot_hold_change_nothing(tmp_path) -> None:
    store = ServerStore(QdrantClient(":memory:"), EMBEDDER, DIM)
    write(store, "kit-1", passages(1))
    other = EdgeStore(tmp_path / "other")
    wide = other.create("wide-1", 2 * DIM)
    wide.add([Passage(point_id("wide", "w", 0), 0, np.ones(2 * DIM, dtype=np.float32), ([0], [1.0]))])
    other.commit("wide-1", wide)
    write(other, "alpha-1", passages(2))
    out = tmp_path / "memory.jsonl"
    export_store(other, out)
    with pytest.raises(StoreError, match="cannot go into greenroom__test-embedder__8.*; nothing was changed$"):
        import_store(store, out, Registry({"kit": "kit-1"}).publish)
    assert store.names() == ["kit-1"]


def test_a_store_failure_mid_import_changes_nothing_and_says_so(store, tmp_path, monkeypatch) -> None:
    write(store, "kit-1", passages(1))
    out = exported(tmp_path, {"kit-1": passages(3), "wren-1": passages(4)})
    create = store.create

    def create_then_fail(name: str, dim: int):
        index = create(name, dim)
        if name.startswith("wren-1."):
            monkeypatch.setattr(index, "add", lambda batch: (_ for _ in ()).throw(OSError("disk full")))
        return index

    monkeypatch.setattr(store, "create", create_then_fail)
    with pytest.raises(OSError, match="disk full") as e:
        import_store(store, out, Registry({"kit": "kit-1"}).publish)
    assert e.value.__notes__ == ["greenroom memory import: nothing was changed"]
    assert store.names() == ["kit-1"]


def test_a_failing_publish_leaves_the_old_data(store, tmp_path) -> None:
    write(store, "kit-1", passages(1))

    def locked(mapping: dict[str, str]) -> set[str]:
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="database is locked") as e:
        import_store(store, exported(tmp_path, {"kit-1": passages(3)}), locked)
    assert e.value.__notes__ == ["greenroom memory import: nothing was changed"]
    assert store.names() == ["kit-1"] and results(store, "kit-1", passages(1)[1])[0][0] == 1


def test_an_index_without_points_is_imported_too(tmp_path) -> None:
    source = EdgeStore(tmp_path / "source")
    source.commit("empty-1", source.create("empty-1", DIM))
    write(source, "kit-1", passages(1))
    out = tmp_path / "memory.jsonl"
    assert export_store(source, out) == {"empty-1": 0, "kit-1": 3}
    target = EdgeStore(tmp_path / "target")
    registry = Registry({"empty": "empty-1", "kit": "kit-1"})
    counts = import_store(target, out, registry.publish)
    assert sorted(counts.values()) == [0, 3] and target.names() == sorted(counts)
    assert target.open(registry.current["empty"]).count() == 0
