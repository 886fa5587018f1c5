"""PostgreSQL going away while the bot runs: users are told, nothing is stored twice or half, and the
bot recovers by itself. The outage is real: the bot reaches the real PostgreSQL through a TCP relay on
127.0.0.1 that the test cuts (every connection dropped, new ones refused) and restores."""

from __future__ import annotations

import asyncio
import socket
import threading
from urllib.parse import urlsplit

from greenroom.core.persona import NOT_STORED
from greenroom.memory.db import UNAVAILABLE, DatabaseError
from tests.servers import free_port, new_database
from tests.test_admin import say


class Relay:
    """127.0.0.1:port -> target, on its own thread and event loop (the bot's database calls block)."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.streams: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.restore()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.streams |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.streams:
            writer.transport.abort()
        self.streams.clear()

    def cut(self) -> None:
        self._call(self._stop())
        with socket.socket() as probe:  # refused from now on
            assert probe.connect_ex(("127.0.0.1", self.port)) != 0

    def restore(self) -> None:
        self._call(self._start())


async def test_users_are_told_while_the_database_is_down_and_the_bot_recovers(open_app, postgres):
    server = urlsplit(postgres)
    relay = Relay(server.port)
    url = new_database(postgres, "outage").replace(f":{server.port}/", f":{relay.port}/")
    app = open_app(f'[database]\nurl = "{url}"\n')
    assert (await say(app, "Hello there")).messages  # answered
    relay.cut()
    during = (await say(app, "Are you still there?")).messages
    assert during == [UNAVAILABLE]
    command = (await say(app, "/mode all", user="local")).messages
    assert command == [UNAVAILABLE]
    relay.restore()
    after = (await say(app, "And now?")).messages
    assert after and UNAVAILABLE not in after, after
    texts = [t.user_text for t in app.history.recent("console:c1", "wren")]
    assert texts == ["Hello there", "And now?"]  # the outage's turn was not stored, nothing twice


async def test_an_answer_that_could_not_be_stored_stands_and_says_so(app, monkeypatch):
    def down(*args, **kw):
        raise DatabaseError(UNAVAILABLE, "cannot use the database at postgresql://…: connection reset")

    monkeypatch.setattr(app.history, "add", down)
    *greeting, answer, note = (await say(app, "Hello there")).messages  # a first meeting opens with the greeting
    assert len(greeting) == 1 and answer != UNAVAILABLE and note == NOT_STORED
