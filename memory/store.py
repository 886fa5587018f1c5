"""The script-memory vector store: Qdrant embedded on disk (Qdrant Edge), or a Qdrant server by URL.

Each character version gets its own index (an Edge shard folder, or a server collection).
A load writes a complete new index and only then is it made current (in the library's
SQLite), so readers never see a half-written or mixed version; old indexes are dropped after.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from greenroom.errors import UserError

POINT_NAMESPACE = uuid.UUID("6f1c7a52-4d8e-4f0b-9d55-0c6b8a3e2f10")


DENSE, LEXICAL = "dense", "bm25"


class StoreError(UserError):
    """The memory store cannot be used (reachable, but busy or refusing)."""


def point_id(character_id: str, story_hash: str, window: int) -> str:
    """Deterministic point id: the same character and text always give the same id."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{character_id}:{story_hash}:{window}"))


Sparse = tuple[list[int], list[float]]


@dataclass(frozen=True)
class Passage:
    """One point: a whole story or a window of a long one, with its dense and lexical vectors."""

    id: str
    story: int
    dense: np.ndarray
    sparse: Sparse


@dataclass(frozen=True)
class SearchQuery:
    """A dense query vector, plus a lexical (BM25) one for hybrid retrieval."""

    dense: np.ndarray
    sparse: Sparse | None = None


class VectorIndex(Protocol):
    def add(self, passages: list[Passage]) -> None: ...

    def search(self, query: SearchQuery, limit: int) -> list[tuple[int, float]]:
        """(story index, score) pairs, best first; cosine for dense queries, a fused score for
        hybrid ones. A story may appear once per window."""

    def count(self) -> int: ...

    def points(self) -> Iterator[Passage]:
        """Every point with its vectors (for export)."""

    def close(self) -> None: ...


def _scrolled(page: Callable[[Any], tuple[list[Any], Any]]) -> Iterator[Passage]:
    """Every point, a page at a time: ``page(offset)`` gives records (id, payload, vector) and the next offset."""
    offset = None
    while True:
        records, offset = page(offset)
        for r in records:
            sparse = r.vector[LEXICAL]
            yield Passage(
                str(r.id),
                int(r.payload["story"]),
                np.asarray(r.vector[DENSE], dtype=np.float32),
                (list(sparse.indices), list(sparse.values)),
            )
        if offset is None:
            return


class MemoryStore(Protocol):
    def create(self, name: str, dim: int) -> VectorIndex: ...

    def commit(self, name: str, index: VectorIndex) -> None:
        """Make a fully written index openable under ``name``."""

    def open(self, name: str) -> VectorIndex: ...

    def drop(self, name: str) -> None: ...

    def names(self) -> list[str]: ...


class EdgeIndex:
    """One Qdrant Edge shard (the Qdrant engine in-process, on disk)."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard

    def add(self, passages: list[Passage]) -> None:
        from qdrant_edge import Point, SparseVector, UpdateOperation

        points = [
            Point(p.id, {DENSE: p.dense.tolist(), LEXICAL: SparseVector(*p.sparse)}, {"story": p.story})
            for p in passages
        ]
        self.shard.update(UpdateOperation.upsert_points(points))

    def search(self, query: SearchQuery, limit: int) -> list[tuple[int, float]]:
        from qdrant_edge import Fusion, Prefetch, Query, QueryRequest, SparseVector

        dense = Query.Nearest(query.dense.tolist(), using=DENSE)
        if query.sparse is None:
            request = QueryRequest(limit=limit, query=dense, with_payload=["story"])
        else:
            lexical = Query.Nearest(SparseVector(*query.sparse), using=LEXICAL)
            request = QueryRequest(
                limit=limit,
                with_payload=["story"],
                query=Fusion.Dbsf(),  # type: ignore[arg-type]  # the server takes it; the model types lag
                prefetches=[Prefetch(limit=2 * limit, query=dense), Prefetch(limit=2 * limit, query=lexical)],
            )
        return [(int(h.payload["story"]), float(h.score)) for h in self.shard.query(request)]

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self.shard.count(CountRequest()))

    def points(self) -> Iterator[Passage]:
        from qdrant_edge import ScrollRequest

        return _scrolled(
            lambda offset: self.shard.scroll(
                ScrollRequest(offset=offset, limit=256, with_payload=True, with_vector=True)
            )
        )

    def close(self) -> None:
        self.shard.close()


class EdgeStore:
    """Shards under one folder: `<name>/` complete, `<name>.partial/` being written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for partial in root.glob("*.partial"):  # left by an interrupted load
            shutil.rmtree(partial, ignore_errors=True)

    def create(self, name: str, dim: int) -> EdgeIndex:
        from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams, Modifier

        path = self.root / f"{name}.partial"
        shutil.rmtree(path, ignore_errors=True)
        config = EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=dim, distance=Distance.Cosine)},
            sparse_vectors={LEXICAL: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            max_search_threads=1,
        )
        return EdgeIndex(EdgeShard.create(str(path), config))

    def commit(self, name: str, index: VectorIndex) -> None:
        assert isinstance(index, EdgeIndex)
        index.shard.flush()
        index.close()
        final = self.root / name
        shutil.rmtree(final, ignore_errors=True)
        (self.root / f"{name}.partial").rename(final)

    def open(self, name: str) -> EdgeIndex:
        from qdrant_edge import EdgeShard

        try:
            return EdgeIndex(EdgeShard.load(str(self.root / name)))
        except Exception as e:
            if "WouldBlock" in str(e):
                raise StoreError(
                    f"{self.root / name} is open in another Greenroom process "
                    "(the embedded store serves one process: one bot per data folder)"
                ) from None
            raise

    def drop(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.endswith(".partial"))


class ServerIndex:
    """One collection on a Qdrant server (or anything speaking its client API)."""

    def __init__(self, client: Any, collection: str) -> None:
        self.client = client
        self.collection = collection

    def add(self, passages: list[Passage]) -> None:
        from qdrant_client import models

        points = [
            models.PointStruct(
                id=p.id,
                payload={"story": p.story},
                vector={DENSE: p.dense.tolist(), LEXICAL: models.SparseVector(indices=p.sparse[0], values=p.sparse[1])},
            )
            for p in passages
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    def search(self, query: SearchQuery, limit: int) -> list[tuple[int, float]]:
        from qdrant_client import models

        if query.sparse is None:
            result = self.client.query_points(
                self.collection, query=query.dense.tolist(), using=DENSE, limit=limit, with_payload=["story"]
            )
        else:
            lexical = models.SparseVector(indices=query.sparse[0], values=query.sparse[1])
            result = self.client.query_points(
                self.collection,
                limit=limit,
                with_payload=["story"],
                query=models.FusionQuery(fusion=models.Fusion.DBSF),
                prefetch=[
                    models.Prefetch(query=query.dense.tolist(), using=DENSE, limit=2 * limit),
                    models.Prefetch(query=lexical, using=LEXICAL, limit=2 * limit),
                ],
            )
        return [(int(p.payload["story"]), float(p.score)) for p in result.points]

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def points(self) -> Iterator[Passage]:
        return _scrolled(
            lambda offset: self.client.scroll(
                self.collection, offset=offset, limit=256, with_payload=True, with_vectors=True
            )
        )

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Cluster:
    """Collection settings for a Qdrant cluster (the server's defaults: 1, 1, payload in memory)."""

    shard_number: int = 1
    replication_factor: int = 1
    on_disk_payload: bool = False


class ServerStore:
    """Collections named `greenroom__<name>` on a Qdrant server; a collection is the unit of replacement."""

    prefix = "greenroom__"

    def __init__(self, client: Any, cluster: Cluster = Cluster()) -> None:
        self.client = client
        self.cluster = cluster

    @classmethod
    def connect(cls, url: str, api_key: str | None, cluster: Cluster = Cluster()) -> ServerStore:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key, timeout=10)
        try:
            client.get_collections()
        except Exception as e:
            raise StoreError(f"cannot reach the Qdrant server at {url}: {e}") from None
        return cls(client, cluster)

    def create(self, name: str, dim: int) -> ServerIndex:
        from qdrant_client import models

        collection = self.prefix + name
        if self.client.collection_exists(collection):
            self.client.delete_collection(collection)
        self.client.create_collection(
            collection,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=self.cluster.shard_number,
            replication_factor=self.cluster.replication_factor,
            on_disk_payload=self.cluster.on_disk_payload,
        )
        return ServerIndex(self.client, collection)

    def commit(self, name: str, index: VectorIndex) -> None:
        pass  # upserts are acknowledged with wait=True; the library's pointer switch publishes it

    def open(self, name: str) -> ServerIndex:
        return ServerIndex(self.client, self.prefix + name)

    def drop(self, name: str) -> None:
        if self.client.collection_exists(self.prefix + name):
            self.client.delete_collection(self.prefix + name)

    def names(self) -> list[str]:
        return sorted(
            c.name[len(self.prefix) :]
            for c in self.client.get_collections().collections
            if c.name.startswith(self.prefix)
        )
