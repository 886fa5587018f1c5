"""The Qdrant server code path: indexes as tenants of one shared collection, through qdrant-client.

No Qdrant server can be installed on these machines (it is not on any package index we reach).
Most tests run qdrant-client's own local mode, which takes the same client calls; the rest go
through tests/fakes/qdrant_server.py, that local engine behind Qdrant's REST API, in this process
or in another one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from greenroom.memory.store import DENSE, LEXICAL, Cluster, Passage, SearchQuery, ServerStore, StoreError, point_id
from tests.conftest import ROOT
from tests.fakes.qdrant_server import serving

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
EMBEDDER = "test-embedder"


def passages(seed: int, count: int = 3) -> list[Passage]:
    """``count`` stories with random unit vectors; the same ids for every seed (as two versions of one
    character have for their unchanged stories)."""
    rng = np.random.default_rng(seed)
    out = []
    for story in range(count):
        v = rng.normal(size=DIM).astype(np.float32)
        out.append(Passage(point_id("kit", f"story-{story}", 0), story, v / np.linalg.norm(v), ([story], [1.0])))
    return out


def load(store: ServerStore, name: str, written: list[Passage]) -> None:
    index = store.create(name, DIM)
    index.add(written)
    store.commit(name, index)


def best(store: ServerStore, name: str, vector: np.ndarray, hybrid: bool = False) -> list[tuple[int, float]]:
    query = SearchQuery(vector, ([0], [1.0]) if hybrid else None)
    return [(story, round(score, 4)) for story, score in store.open(name).search(query, 3)]


def local() -> ServerStore:
    return ServerStore(QdrantClient(":memory:"), EMBEDDER, DIM)


def test_indexes_are_tenants_of_one_collection_and_dropping_one_leaves_the_other() -> None:
    store = local()
    one, two = passages(1), passages(2)
    load(store, "kit-1", one)
    load(store, "wren-1", two)
    assert [c.name for c in store.client.get_collections().collections] == ["greenroom__test-embedder__8"]
    assert store.names() == ["kit-1", "wren-1"]
    before = best(store, "wren-1", two[1].dense)
    assert before[0] == (1, 1.0) and best(store, "kit-1", one[2].dense)[0] == (2, 1.0)
    store.drop("kit-1")
    assert store.names() == ["wren-1"]
    assert best(store, "wren-1", two[1].dense) == before and best(store, "kit-1", one[2].dense) == []


def test_two_versions_with_the_same_passage_ids_keep_their_own_points() -> None:
    store = local()
    old, new = passages(1), passages(2)
    assert [p.id for p in old] == [p.id for p in new]
    load(store, "kit-1", old)
    load(store, "kit-2", new)
    assert store.open("kit-1").count() == store.open("kit-2").count() == 3
    store.drop("kit-1")
    assert sorted((p.id, p.story, p.dense.tolist()) for p in store.open("kit-2").points()) == sorted(
        (p.id, p.story, p.dense.tolist()) for p in new
    )


def test_writing_an_index_again_replaces_only_its_own_points() -> None:
    store = local()
    load(store, "kit-1", passages(1))
    load(store, "wren-1", passages(2, count=5))
    again = store.create("wren-1", DIM)  # a retried write starts from nothing
    assert again.count() == 0 and store.open("kit-1").count() == 3
    assert store.names() == ["kit-1"]


def test_an_index_of_another_vector_size_is_refused() -> None:
    store = local()
    with pytest.raises(StoreError, match=r"an index of 384-d vectors cannot go into greenroom__test-embedder__8"):
        store.create("kit-1", 384)
    assert store.names() == []


def test_one_collection_per_embedder_name_and_size() -> None:
    client = QdrantClient(":memory:")
    small, large = ServerStore(client, "BAAI/bge Small", DIM), ServerStore(client, "BAAI/bge Small", 2 * DIM)
    load(small, "kit-1", passages(1))
    large.create("kit-9", 2 * DIM).add([Passage("x", 0, np.ones(2 * DIM, dtype=np.float32), ([0], [1.0]))])
    assert sorted(c.name for c in client.get_collections().collections) == [
        "greenroom__baai-bge-small__16",
        "greenroom__baai-bge-small__8",
    ]
    assert (small.names(), large.names()) == (["kit-1"], ["kit-9"])


def test_scores_are_cosine_in_dense_mode() -> None:
    store = local()
    written = passages(1)
    load(store, "kit-1", written)
    query = written[0].dense + 0.5 * written[1].dense
    scores = dict(store.open("kit-1").search(SearchQuery(query / np.linalg.norm(query)), 3))
    assert scores[1] == pytest.approx(float(np.dot(query / np.linalg.norm(query), written[1].dense)), abs=1e-4)


def legacy_collection(client: QdrantClient, name: str, written: list[Passage], dim: int = DIM) -> None:
    """A collection as the previous version made it: one per index, the passage id as the point id."""
    client.create_collection(
        f"greenroom__{name}",
        vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
        sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    client.upsert(
        f"greenroom__{name}",
        points=[
            models.PointStruct(
                id=p.id,
                payload={"story": p.story},
                vector={DENSE: p.dense.tolist(), LEXICAL: models.SparseVector(indices=p.sparse[0], values=p.sparse[1])},
            )
            for p in written
        ],
    )


def test_the_previous_versions_collections_are_adopted_as_tenants() -> None:
    client = QdrantClient(":memory:")
    store = ServerStore(client, EMBEDDER, DIM)
    load(store, "wren-1", passages(2))
    old = passages(1, count=300)  # more than one page and one batch
    legacy_collection(client, "kit-1", old)
    legacy_collection(
        client, "other-1", [Passage(point_id("other", "x", 0), 0, np.ones(4, dtype=np.float32), ([0], [1.0]))], dim=4
    )
    assert store.adopt_legacy() == ["kit-1"]
    assert store.names() == ["kit-1", "wren-1"]
    assert sorted(c.name for c in client.get_collections().collections) == [
        "greenroom__other-1",  # another vector size: a store of that size adopts it
        "greenroom__test-embedder__8",
    ]
    assert sorted((p.id, p.story) for p in store.open("kit-1").points()) == sorted((p.id, p.story) for p in old)
    assert best(store, "kit-1", old[7].dense)[0] == (7, 1.0)
    assert store.adopt_legacy() == []


def test_a_legacy_collection_is_kept_until_its_copy_is_complete(monkeypatch) -> None:
    client = QdrantClient(":memory:")
    store = ServerStore(client, EMBEDDER, DIM)
    legacy_collection(client, "kit-1", passages(1, count=300))
    upsert = client.upsert

    def fails_on_the_second_batch(collection_name: str, points: list, **kwargs):
        if store.open("kit-1").count():
            raise ConnectionError("connection reset")
        return upsert(collection_name, points, **kwargs)

    monkeypatch.setattr(client, "upsert", fails_on_the_second_batch)
    with pytest.raises(ConnectionError):
        store.adopt_legacy()
    assert client.count("greenroom__kit-1").count == 300
    monkeypatch.setattr(client, "upsert", upsert)
    assert store.adopt_legacy() == ["kit-1"] and store.open("kit-1").count() == 300


def test_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot reach the Qdrant server at http://127.0.0.1:9"):
        ServerStore.connect("http://127.0.0.1:9", None, EMBEDDER, DIM)


def test_cluster_settings_and_the_tenant_index_reach_the_server() -> None:
    """qdrant-client's local mode ignores cluster settings; the fake server records what a real one is asked."""
    with serving() as server:
        store = ServerStore.connect(
            f"http://127.0.0.1:{server.port}",
            None,
            "all-MiniLM-L6-v2",
            384,
            Cluster(shard_number=6, replication_factor=2, on_disk_payload=True),
        )
        store.create("kit-1", 384)
        asked = {(method, path): body for method, path, body in server.calls}
    body = asked["PUT", "/collections/greenroom__all-minilm-l6-v2__384"]
    assert (body["shard_number"], body["replication_factor"], body["on_disk_payload"]) == (6, 2, True)
    assert body["vectors"]["dense"]["size"] == 384
    assert (body["hnsw_config"]["m"], body["hnsw_config"]["payload_m"]) == (0, 16)  # Qdrant's multitenancy setup
    assert asked["PUT", "/collections/greenroom__all-minilm-l6-v2__384/index"] == {
        "field_name": "index",
        "field_schema": {"type": "keyword", "is_tenant": True},
    }


def test_a_process_that_finds_the_collection_made_meanwhile_uses_it(monkeypatch) -> None:
    with serving() as server:
        first, second = (ServerStore.connect(f"http://127.0.0.1:{server.port}", None, EMBEDDER, DIM) for _ in range(2))
        answers = iter([False])  # what `second` saw just before `first` made the collection
        exists = second.client.collection_exists
        monkeypatch.setattr(second.client, "collection_exists", lambda name: next(answers, exists(name)))
        load(first, "kit-1", passages(1))
        load(second, "wren-1", passages(2))
        assert first.names() == ["kit-1", "wren-1"]
        made = [path for method, path, _ in server.calls if method == "PUT" and path.count("/") == 2]
        assert made == ["/collections/greenroom__test-embedder__8"] * 2  # both tried; the second was refused


def session(store: ServerStore) -> list:
    """Everything ServerStore does, and what it answers."""
    one, two = passages(1), passages(2)
    load(store, "kit-1", one)
    load(store, "wren-1", two)
    seen: list = [store.names(), store.open("kit-1").count()]
    seen += [best(store, "kit-1", one[0].dense, hybrid) for hybrid in (False, True)]
    seen.append(sorted((p.id, p.story, p.dense.round(5).tolist(), p.sparse) for p in store.open("wren-1").points()))
    store.drop("kit-1")
    seen += [store.names(), store.open("kit-1").count(), best(store, "wren-1", two[2].dense)]
    return seen


def test_the_fake_server_answers_as_the_local_engine_does() -> None:
    with serving() as server:
        remote = ServerStore.connect(f"http://127.0.0.1:{server.port}", None, EMBEDDER, DIM)
        assert session(remote) == session(local())


@pytest.fixture
def qdrant_process() -> Iterator[str]:
    """The fake server in its own process; its URL once it says it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.qdrant_server", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("qdrant fake listening on http://127.0.0.1:"), ready
        yield ready.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


WRITER = """
import sys
import numpy as np
from greenroom.memory.store import Passage, ServerStore
store = ServerStore.connect(sys.argv[1], None, "test-embedder", 8)
index = store.create("wren-1", 8)
index.add([Passage("w", 0, np.eye(8, dtype=np.float32)[3], ([0], [1.0]))])
store.commit("wren-1", index)
"""


def test_processes_sharing_a_server_see_each_others_indexes(qdrant_process: str) -> None:
    subprocess.run([sys.executable, "-c", WRITER, qdrant_process], check=True, timeout=120)
    mine, theirs = (ServerStore.connect(qdrant_process, None, EMBEDDER, DIM) for _ in range(2))
    load(mine, "kit-1", passages(1))
    assert mine.names() == theirs.names() == ["kit-1", "wren-1"]
    assert best(mine, "wren-1", np.eye(DIM, dtype=np.float32)[3]) == [(0, 1.0)]
    theirs.drop("wren-1")
    assert mine.names() == ["kit-1"] and mine.open("kit-1").count() == 3
