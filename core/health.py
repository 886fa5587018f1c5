"""`/healthz`, `/readyz` and `/metrics` on a small HTTP server (127.0.0.1 by default) for the bot process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from greenroom.core.config import ConfigError
from greenroom.core.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0


async def probe(check: Callable[[], Any]) -> str | None:
    """None when ``check`` (blocking) returns within the time; else why not."""
    try:
        await asyncio.wait_for(asyncio.to_thread(check), CHECK_SECONDS)
        return None
    except TimeoutError:
        return f"no answer within {CHECK_SECONDS:.0f} s"
    except Exception as e:
        return getattr(e, "detail", None) or str(e) or type(e).__name__


class HealthServer:
    """Serves while the bot runs; ``port`` 0 picks a free one (``self.port`` says which)."""

    def __init__(
        self, metrics: Metrics, readiness: Callable[[], Awaitable[dict[str, str | None]]], host: str, port: int
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness  # each check's failure, None when it passes
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        server = web.Application()
        server.router.add_get("/healthz", self._healthz)
        server.router.add_get("/readyz", self._readyz)
        server.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise ConfigError(
                f"health: cannot listen on {self.host}:{self.port} ({e.strerror}); set another "
                "health.port, or health.enabled = false"
            ) from None
        self.port = self._runner.addresses[0][1]
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True})  # answered by the event loop, so the loop is alive

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = not any(checks.values())
        return web.json_response(
            {"ready": ready, "checks": {k: v or "ok" for k, v in checks.items()}}, status=200 if ready else 503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        metrics = self.metrics  # rendered off the loop: a queue gauge may ask Redis
        return web.Response(
            body=await asyncio.to_thread(metrics.render), headers={"Content-Type": metrics.content_type}
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
