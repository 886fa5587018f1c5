"""`greenroom run`: every enabled platform on one event loop that Greenroom owns, and a graceful stop.

SIGTERM or SIGINT: stop taking messages, let running turns finish within
``dispatch.shutdown_deadline``, tell the users whose turn was cut off, close the clients.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from greenroom.compose import Greenroom
from greenroom.core.adapter import Adapter
from greenroom.core.health import HealthServer

log = logging.getLogger(__name__)


async def serve(
    app: Greenroom, make_adapters: Callable[[], list[Adapter]], make_console: Callable[[], Any] | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or the console session ends, or a platform is lost); returns an exit code.

    Health answers first; then the models load; then the adapters are built and started.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = [signal.SIGTERM] + ([] if make_console is not None else [signal.SIGINT])
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    adapters: list[Adapter] = []
    started: list[Adapter] = []
    code = 0
    health = None
    try:
        if app.config.health.enabled:
            health = HealthServer(
                app.metrics, lambda: app.readiness(adapters), app.config.health.host, app.config.health.port
            )
            await health.start()  # before the models load: /healthz answers, /readyz says "still loading"
        await asyncio.to_thread(app.warm)  # the default character and the models, before the first message
        adapters.extend(make_adapters())
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        watchers: dict[asyncio.Task[Any], Adapter] = {asyncio.create_task(a.watch()): a for a in started}
        ending = {asyncio.create_task(stop.wait())} | set(watchers)
        if make_console is not None:
            ending.add(asyncio.create_task(make_console().run_interactive()))
        done, pending = await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done & set(watchers):
            log.error(
                "%s: the connection was lost (%s); stopping",
                watchers[task].name,
                task.exception() or "closed by the platform",
            )
            code = 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("stopping: finishing running turns (up to %.0f s)", app.config.dispatch.shutdown_deadline)
        for adapter in started:
            await adapter.stop_intake()
        await app.dispatcher.close(app.config.dispatch.shutdown_deadline)
        await app.factcheck.close()  # link checks still running are dropped: nothing is stored mid-check
        await app.video.close()  # clips still being watched: their senders are told to send them again
        for adapter in started:
            await adapter.close()
        if health is not None:
            await health.close()
    return code
