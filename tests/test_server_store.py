"""The Qdrant server code path (collections through qdrant-client).

No Qdrant server can be installed on these machines (it is not on any package index we
reach), so this runs qdrant-client's own local mode, which takes the same client calls.
"""

import numpy as np
import pytest
from qdrant_client import QdrantClient

from greenroom.memory.db import Database
from greenroom.memory.library import Library
from greenroom.memory.store import ServerStore, StoreError
from tests.test_library import character, words


def test_library_works_the_same_on_the_server_store(tmp_path, embedder):
    store = ServerStore(QdrantClient(":memory:"))
    lib = Library(Database(tmp_path / "db.sqlite3"), store, embedder, words, "words")
    lib.load(character(["Kit:「the lighthouse keeper's log」", "Kit:「the storm at sea」", "Kit:「tomatoes」"]))
    for hybrid in (False, True):
        assert lib.search("kit", "a storm at sea", 1, hybrid=hybrid)[0].story.text == "Kit:「the storm at sea」"
    version = lib.version_of("kit")
    lib.load(character(["Kit:「only the harbour」"]))
    assert store.names() == [f"kit-{lib.version_of('kit')}"] and version != lib.version_of("kit")


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(StoreError, match="cannot reach the Qdrant server at http://127.0.0.1:9"):
        ServerStore.connect("http://127.0.0.1:9", None)


def test_scores_are_cosine_in_dense_mode(tmp_path, embedder):
    store = ServerStore(QdrantClient(":memory:"))
    lib = Library(Database(tmp_path / "db.sqlite3"), store, embedder, words, "words")
    lib.load(character(["Kit:「the storm at sea」"]))
    score = lib.search("kit", "Kit:「the storm at sea」", 1, hybrid=False)[0].score
    expected = float(np.dot(*embedder.encode(["Kit:「the storm at sea」"] * 2)))
    assert score == pytest.approx(expected, abs=1e-4)


def test_cluster_settings_reach_the_server(tmp_path) -> None:
    """qdrant-client's local mode ignores cluster settings, so a recording stand-in for the server's
    REST API on 127.0.0.1 checks what a real server would be asked."""
    import asyncio
    import threading

    from aiohttp import web

    from greenroom.memory.store import Cluster
    from tests.servers import free_port

    created: dict = {}
    port, ready = free_port(), threading.Event()

    def ok(result) -> web.Response:
        return web.json_response({"result": result, "status": "ok", "time": 0})

    async def collection(request: web.Request) -> web.Response:
        created[request.match_info["name"]] = await request.json()
        return ok(True)

    async def serve() -> None:
        app = web.Application()

        async def listing(request: web.Request) -> web.Response:
            return ok({"collections": []})

        async def exists(request: web.Request) -> web.Response:
            return ok({"exists": False})

        app.router.add_get("/collections", listing)
        app.router.add_get("/collections/{name}/exists", exists)
        app.router.add_put("/collections/{name}", collection)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    ready.wait()
    store = ServerStore.connect(
        f"http://127.0.0.1:{port}", None, Cluster(shard_number=6, replication_factor=2, on_disk_payload=True)
    )
    store.create("kit-1", 384)
    body = created["greenroom__kit-1"]
    assert (body["shard_number"], body["replication_factor"], body["on_disk_payload"]) == (6, 2, True)
    assert body["vectors"]["dense"]["size"] == 384


def test_memory_moves_from_embedded_to_a_server_without_reembedding(tmp_path, embedder) -> None:
    from greenroom.memory.store import EdgeStore
    from greenroom.memory.transfer import export_store, import_store

    db = Database(tmp_path / "db.sqlite3")
    stories = ["Kit:「the lighthouse keeper's log」", "Kit:「the storm at sea」", "Kit:「tomatoes」"]
    lib = Library(db, EdgeStore(tmp_path / "qdrant"), embedder, words, "words")
    lib.load(character(stories))
    before = [(h.story.text, round(h.score, 4)) for h in lib.search("kit", "a storm at sea", 3, hybrid=True)]
    lib.close()  # the embedded store serves one process at a time: the bot stops before the export
    out = tmp_path / "memory.jsonl"
    assert export_store(EdgeStore(tmp_path / "qdrant"), out) == {f"kit-{lib.version_of('kit')}": 3}
    server = ServerStore(QdrantClient(":memory:"))
    import_store(server, out)
    moved = Library(db, server, embedder, words, "words")
    assert [(h.story.text, round(h.score, 4)) for h in moved.search("kit", "a storm at sea", 3, hybrid=True)] == before


def test_a_damaged_export_is_refused_by_line(tmp_path) -> None:
    from greenroom.memory.transfer import import_store

    bad = tmp_path / "memory.jsonl"
    bad.write_text('{"greenroom_memory": 1}\n{"index": "kit-1", "points": 2}\n{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(StoreError, match="memory.jsonl line 3: not a Greenroom memory export"):
        import_store(ServerStore(QdrantClient(":memory:")), bad)
