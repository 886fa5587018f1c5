"""A stand-in Qdrant server: qdrant-client's own local engine (``QdrantClient(":memory:")``) behind the
REST endpoints qdrant-client uses for what ``ServerStore`` does.

Why a fake: no Qdrant server binary is installable from the package registries this machine reaches, so
the real engine cannot run here. Each request body is parsed into qdrant-client's own pydantic types
(the ones it sent) and handed to the same method of the local engine; the answer goes back in the
server's envelope, ``{"result": ..., "status": "ok", "time": 0}``. Errors the engine raises come back as
HTTP errors, as a server's would. Every request is recorded (method, path, JSON body) for tests that
check what a real server would be asked (cluster settings, say), which the local engine ignores.

In-process: ``with serving() as server:`` (its own thread and event loop; ``server.port``). As another
process: ``python -m tests.fakes.qdrant_server --port N`` (0: any free port) prints
``qdrant fake listening on http://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from qdrant_client import QdrantClient, models

from tests.fakes.server import FakeServer

Call = tuple[str, str, Any]  # method, path, JSON body (None without one)
Handler = Callable[[str, Any], Any]  # (collection name, JSON body) -> result

VERSION = metadata.version("qdrant-client")  # the server version it claims: the one the client expects


def _json(result: Any) -> Any:
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


def _ok(result: Any) -> web.Response:
    return web.json_response({"result": _json(result), "status": "ok", "time": 0})


class FakeQdrant(FakeServer[Call]):
    """The endpoints ``ServerStore`` reaches, answered by one in-memory local engine."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = QdrantClient(":memory:")

    def routes(self, app: web.Application) -> None:
        e = self.engine
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/collections", self._endpoint(lambda name, body: e.get_collections()))
        r.add_get("/collections/{name}", self._endpoint(lambda name, body: e.get_collection(name)))
        r.add_get(
            "/collections/{name}/exists",
            self._endpoint(lambda name, body: models.CollectionExistence(exists=e.collection_exists(name))),
        )
        r.add_put("/collections/{name}", self._endpoint(self._create_collection))
        r.add_delete("/collections/{name}", self._endpoint(lambda name, body: e.delete_collection(name)))
        r.add_put("/collections/{name}/index", self._endpoint(self._create_index))
        r.add_put("/collections/{name}/points", self._endpoint(self._upsert))
        r.add_post("/collections/{name}/points/query", self._endpoint(self._query))
        r.add_post("/collections/{name}/points/count", self._endpoint(self._count))
        r.add_post("/collections/{name}/points/scroll", self._endpoint(self._scroll))
        r.add_post("/collections/{name}/points/delete", self._endpoint(self._delete))
        r.add_post("/collections/{name}/facet", self._endpoint(self._facet))

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({"title": "qdrant - vector search engine (greenroom test fake)", "version": VERSION})

    def _endpoint(self, handle: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            body = await request.json() if request.can_read_body else None
            await self.record((request.method, request.path, body))
            try:
                return _ok(handle(request.match_info.get("name", ""), body))
            except ValueError as e:  # the local engine's "not found", "already exists", bad input
                words = str(e).lower()
                status = 404 if "not found" in words else 409 if "already exists" in words else 400
                return web.json_response({"status": {"error": str(e)}, "time": 0}, status=status)

        return answer

    def _create_collection(self, name: str, body: Any) -> bool:
        c = models.CreateCollection.model_validate(body)
        return self.engine.create_collection(name, vectors_config=c.vectors, sparse_vectors_config=c.sparse_vectors)

    def _create_index(self, name: str, body: Any) -> models.UpdateResult:
        c = models.CreateFieldIndex.model_validate(body)
        with warnings.catch_warnings():  # "payload indexes have no effect in the local Qdrant"
            warnings.simplefilter("ignore")
            return self.engine.create_payload_index(name, c.field_name, field_schema=c.field_schema)

    def _upsert(self, name: str, body: Any) -> models.UpdateResult:
        if "batch" in body:
            return self.engine.upsert(name, points=models.PointsBatch.model_validate(body).batch)
        return self.engine.upsert(name, points=models.PointsList.model_validate(body).points)

    def _query(self, name: str, body: Any) -> models.QueryResponse:
        q = models.QueryRequest.model_validate(body)
        return self.engine.query_points(
            name,
            query=q.query,
            using=q.using,
            prefetch=q.prefetch,
            query_filter=q.filter,
            search_params=q.params,
            limit=q.limit if q.limit is not None else 10,
            offset=q.offset,
            with_payload=q.with_payload if q.with_payload is not None else False,
            with_vectors=q.with_vector if q.with_vector is not None else False,
            score_threshold=q.score_threshold,
            lookup_from=q.lookup_from,
        )

    def _count(self, name: str, body: Any) -> models.CountResult:
        c = models.CountRequest.model_validate(body)
        return self.engine.count(name, count_filter=c.filter, exact=c.exact if c.exact is not None else True)

    def _scroll(self, name: str, body: Any) -> models.ScrollResult:
        s = models.ScrollRequest.model_validate(body)
        points, following = self.engine.scroll(
            name,
            scroll_filter=s.filter,
            limit=s.limit if s.limit is not None else 10,
            order_by=s.order_by,
            offset=s.offset,
            with_payload=s.with_payload if s.with_payload is not None else True,
            with_vectors=s.with_vector if s.with_vector is not None else False,
        )
        return models.ScrollResult(points=points, next_page_offset=following)

    def _delete(self, name: str, body: Any) -> models.UpdateResult:
        selector: models.FilterSelector | models.PointIdsList = (
            models.FilterSelector.model_validate(body) if "filter" in body else models.PointIdsList.model_validate(body)
        )
        return self.engine.delete(name, points_selector=selector)

    def _facet(self, name: str, body: Any) -> models.FacetResponse:
        f = models.FacetRequest.model_validate(body)
        return self.engine.facet(
            name,
            key=f.key,
            facet_filter=f.filter,
            limit=f.limit if f.limit is not None else 10,
            exact=bool(f.exact),
        )


@contextmanager
def serving() -> Iterator[FakeQdrant]:
    """A fake server on its own thread and event loop, for synchronous clients in this process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(FakeQdrant().start(), loop).result()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _serve(port: int) -> None:
    app = web.Application()
    FakeQdrant().routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"qdrant fake listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=6333, help="port on 127.0.0.1 (0: any free port)")
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
