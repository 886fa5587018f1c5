"""What both fake platform servers share: an aiohttp app on 127.0.0.1 (any free port; started again
after a stop, the same one) and a call log that tests can wait on without sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from aiohttp import web

C = TypeVar("C")


class FakeServer(Generic[C]):
    """Subclasses add routes in ``routes`` and record calls with ``record``."""

    def __init__(self) -> None:
        self.calls: list[C] = []
        self.changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self):
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # any free port, then the same again
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        async with self.changed:
            self.changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def record(self, call: C) -> None:
        async with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    async def until(self, found: Callable[[], list[C]], count: int, timeout: float) -> list[C]:
        """Wait until ``found()`` lists at least ``count`` calls; return them."""

        async def arrived() -> list[C]:
            async with self.changed:
                await self.changed.wait_for(lambda: len(found()) >= count)
            return found()

        return await asyncio.wait_for(arrived(), timeout)
