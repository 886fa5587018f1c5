"""The script-memory vector store: Qdrant embedded on disk (Qdrant Edge), or a Qdrant server by URL.

Each character version gets its own index. Embedded, an index is a shard folder (one process owns
the folder). On a server, many processes share one collection per embedder and vector size, as
Qdrant's multitenancy guidance has it: an index is a tenant, the points whose ``index`` payload
names it (with a tenant index on that field), and every call touches only the tenant it names.

A load writes a complete new index and only then is it made current (in the registry, the database),
so readers never see a half-written or mixed version; old indexes are dropped after.
"""

from __future__ import annotations

import itertools
import json
import re
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
TENANT = "index"  # the payload field naming a point's index in a shared server collection


class StoreError(UserError):
    """The memory store cannot be used (reachable, but busy or refusing)."""


def point_id(character_id: str, story_hash: str, window: int) -> str:
    """Deterministic point id: the same character and text always give the same id."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{character_id}:{story_hash}:{window}"))


def tenant_point_id(name: str, pid: str) -> str:
    """A passage's point id in a shared collection: distinct per index, so two versions never collide."""
    return str(uuid.uuid5(POINT_NAMESPACE, json.dumps([name, pid])))


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
    """A dense query vector, plus a lexical (BM25) one for hybrid retrieval. With ``min_dense``,
    dense matches need at least that cosine similarity (lexical ones need a shared term)."""

    dense: np.ndarray
    sparse: Sparse | None = None
    min_dense: float | None = None


class VectorIndex(Protocol):
    def add(self, passages: list[Passage]) -> None: ...

    def search(self, query: SearchQuery, limit: int) -> list[tuple[int, float]]:
        """(story index, score) pairs, best first; cosine for dense queries, a fused score for
        hybrid ones. A story may appear once per window."""

    def delete(self, ids: list[str]) -> None:
        """Remove these passages (ids as given to `add`); unknown ids are ignored."""

    def count(self) -> int: ...

    def points(self) -> Iterator[Passage]:
        """Every point with its vectors (for export)."""

    def close(self) -> None: ...


def _scrolled(page: Callable[[Any], tuple[list[Any], Any]]) -> Iterator[Passage]:
    """Every point, a page at a time: ``page(offset)`` gives records (id, payload, vector) and the next offset.
    A passage's id is its ``pid`` payload where the point id is derived from it (a shared collection)."""
    offset = None
    while True:
        records, offset = page(offset)
        for r in records:
            sparse = r.vector[LEXICAL]
            yield Passage(
                str(r.payload.get("pid", r.id)),
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

    def ensure(self, name: str, dim: int) -> VectorIndex:
        """Open ``name``, creating it empty first if it does not exist (an index written a few
        points at a time, such as a conversation's memories)."""

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
            request = QueryRequest(limit=limit, query=dense, with_payload=["story"], score_threshold=query.min_dense)
        else:
            lexical = Query.Nearest(SparseVector(*query.sparse), using=LEXICAL)
            request = QueryRequest(
                limit=limit,
                with_payload=["story"],
                query=Fusion.Dbsf(),  # type: ignore[arg-type]  # the server takes it; the model types lag
                prefetches=[
                    Prefetch(limit=2 * limit, query=dense, score_threshold=query.min_dense),
                    Prefetch(limit=2 * limit, query=lexical),
                ],
            )
        return [(int(h.payload["story"]), float(h.score)) for h in self.shard.query(request)]

    def delete(self, ids: list[str]) -> None:
        from qdrant_edge import UpdateOperation

        if ids:
            points: list[int | uuid.UUID | str] = list(ids)
            self.shard.update(UpdateOperation.delete_points(points))

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

    def ensure(self, name: str, dim: int) -> EdgeIndex:
        if not (self.root / name).is_dir():
            self.commit(name, self.create(name, dim))
        return self.open(name)

    def drop(self, name: str) -> None:
        """Remove the shard, and what a write of it that never committed left."""
        shutil.rmtree(self.root / name, ignore_errors=True)
        shutil.rmtree(self.root / f"{name}.partial", ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def _collection_points(client: Any, collection: str, where: Any = None) -> Iterator[Passage]:
    """The points of a server collection (those ``where`` matches, if given)."""
    return _scrolled(
        lambda offset: client.scroll(
            collection, scroll_filter=where, offset=offset, limit=256, with_payload=True, with_vectors=True
        )
    )


class ServerIndex:
    """One tenant of a shared collection on a Qdrant server: the points whose ``index`` payload is ``name``."""

    def __init__(self, client: Any, collection: str, name: str) -> None:
        from qdrant_client import models

        self.client = client
        self.collection = collection
        self.name = name
        self.tenant = models.Filter(must=[models.FieldCondition(key=TENANT, match=models.MatchValue(value=name))])

    def add(self, passages: list[Passage]) -> None:
        from qdrant_client import models

        points = [
            models.PointStruct(
                id=tenant_point_id(self.name, p.id),
                payload={TENANT: self.name, "story": p.story, "pid": p.id},
                vector={DENSE: p.dense.tolist(), LEXICAL: models.SparseVector(indices=p.sparse[0], values=p.sparse[1])},
            )
            for p in passages
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    def search(self, query: SearchQuery, limit: int) -> list[tuple[int, float]]:
        from qdrant_client import models

        if query.sparse is None:
            result = self.client.query_points(
                self.collection,
                query=query.dense.tolist(),
                using=DENSE,
                query_filter=self.tenant,
                limit=limit,
                with_payload=["story"],
                score_threshold=query.min_dense,
            )
        else:
            lexical = models.SparseVector(indices=query.sparse[0], values=query.sparse[1])
            result = self.client.query_points(
                self.collection,
                limit=limit,
                with_payload=["story"],
                query=models.FusionQuery(fusion=models.Fusion.DBSF),
                query_filter=self.tenant,
                prefetch=[
                    models.Prefetch(
                        query=query.dense.tolist(),
                        using=DENSE,
                        filter=self.tenant,
                        limit=2 * limit,
                        score_threshold=query.min_dense,
                    ),
                    models.Prefetch(query=lexical, using=LEXICAL, filter=self.tenant, limit=2 * limit),
                ],
            )
        return [(int(p.payload["story"]), float(p.score)) for p in result.points]

    def delete(self, ids: list[str]) -> None:
        from qdrant_client import models

        if ids:
            points = [tenant_point_id(self.name, pid) for pid in ids]
            self.client.delete(self.collection, models.PointIdsList(points=points), wait=True)

    def count(self) -> int:
        return int(self.client.count(self.collection, count_filter=self.tenant, exact=True).count)

    def points(self) -> Iterator[Passage]:
        return _collection_points(self.client, self.collection, self.tenant)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Cluster:
    """Collection settings for a Qdrant cluster (the server's defaults: 1, 1, payload in memory)."""

    shard_number: int = 1
    replication_factor: int = 1
    on_disk_payload: bool = False


PREFIX = "greenroom__"
SHARED = re.compile(PREFIX + r"[a-z0-9._-]+__[0-9]+")  # a tenant collection; any other greenroom__ one is legacy
FACET_LIMIT = 1_000_000  # more tenants than any one store holds: names() lists them all


def collection_name(embedder: str, dim: int) -> str:
    """The collection every index of one embedder and vector size shares."""
    return f"{PREFIX}{re.sub(r'[^a-z0-9._-]', '-', embedder.lower())}__{dim}"


class ServerStore:
    """Indexes as tenants of one collection per embedder and vector size on a Qdrant server (Qdrant's
    multitenancy: the index name is the ``index`` payload, with a tenant index on it).

    Processes sharing the server share the collection; each call touches only the tenant it names.
    """

    def __init__(self, client: Any, embedder: str, dim: int, cluster: Cluster = Cluster()) -> None:
        self.client = client
        self.dim = dim
        self.cluster = cluster
        self.collection = collection_name(embedder, dim)
        self._ready = False

    @classmethod
    def connect(
        cls, url: str, api_key: str | None, embedder: str, dim: int, cluster: Cluster = Cluster()
    ) -> ServerStore:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key, timeout=10)
        try:
            client.get_collections()
        except Exception as e:
            raise StoreError(f"cannot reach the Qdrant server at {url}: {e}") from None
        return cls(client, embedder, dim, cluster)

    def _ensure(self) -> None:
        """Create the shared collection and its tenant index unless this process already has."""
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        if self._ready:
            return
        if not self.client.collection_exists(self.collection):
            try:
                self.client.create_collection(
                    self.collection,
                    vectors_config={DENSE: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)},
                    sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                    hnsw_config=models.HnswConfigDiff(m=0, payload_m=16),  # a graph per tenant, none across them
                    shard_number=self.cluster.shard_number,
                    replication_factor=self.cluster.replication_factor,
                    on_disk_payload=self.cluster.on_disk_payload,
                )
            except UnexpectedResponse:
                if not self.client.collection_exists(self.collection):  # else another process made it first
                    raise
        self.client.create_payload_index(
            self.collection,
            TENANT,
            field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            wait=True,
        )
        self._ready = True

    def _exists(self) -> bool:
        return self._ready or bool(self.client.collection_exists(self.collection))

    def create(self, name: str, dim: int) -> ServerIndex:
        """A tenant to write; points a failed earlier write left under ``name`` are removed first."""
        if dim != self.dim:
            raise StoreError(
                f"an index of {dim}-d vectors cannot go into {self.collection}, which holds {self.dim}-d vectors "
                "(the store serves one embedder and vector size)"
            )
        self._ensure()
        self.drop(name)
        return self.open(name)

    def commit(self, name: str, index: VectorIndex) -> None:
        pass  # upserts are acknowledged with wait=True; the registry's pointer switch publishes it

    def open(self, name: str) -> ServerIndex:
        return ServerIndex(self.client, self.collection, name)

    def ensure(self, name: str, dim: int) -> ServerIndex:
        """The tenant, as it is (a tenant exists as soon as it has points)."""
        if dim != self.dim:
            raise StoreError(f"{dim}-d vectors cannot go into {self.collection}, which holds {self.dim}-d vectors")
        self._ensure()
        return self.open(name)

    def drop(self, name: str) -> None:
        """Delete this tenant's points, and nothing else."""
        from qdrant_client import models

        if self._exists():
            self.client.delete(self.collection, models.FilterSelector(filter=self.open(name).tenant), wait=True)

    def names(self) -> list[str]:
        if not self._exists():
            return []
        hits = self.client.facet(self.collection, key=TENANT, limit=FACET_LIMIT, exact=True).hits
        return sorted(str(h.value) for h in hits)

    def adopt_legacy(self) -> list[str]:
        """Move the previous version's collections (`greenroom__<name>`, one per index) of this vector size
        into tenants named `<name>`; each is deleted only once its copy is complete. Returns the names moved.

        A copy's point ids follow from the original's, so two processes adopting at once write the same points.
        """
        adopted = []
        for c in self.client.get_collections().collections:
            if not c.name.startswith(PREFIX) or SHARED.fullmatch(c.name):
                continue
            if self.client.get_collection(c.name).config.params.vectors[DENSE].size != self.dim:
                continue  # another embedder's: a store of that size adopts it
            self._ensure()
            name = c.name[len(PREFIX) :]
            index = self.open(name)
            passages = _collection_points(self.client, c.name)
            while batch := list(itertools.islice(passages, 256)):
                index.add(batch)
            expected = int(self.client.count(c.name, exact=True).count)
            if index.count() != expected:
                raise StoreError(
                    f"copying {c.name} into {self.collection} gave {index.count()} of {expected} points; "
                    f"{c.name} was kept"
                )
            self.client.delete_collection(c.name)
            adopted.append(name)
        return adopted
