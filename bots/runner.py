"""`greenroom run`: every enabled platform on one event loop that Greenroom owns, and a graceful stop.

A platform is enabled when its token's environment variable is set (unless its config section
says ``enabled = false``). SIGTERM or SIGINT: stop taking messages, let running turns finish
within ``dispatch.shutdown_deadline``, tell the users whose turn was cut off, close the clients.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Protocol

from core.config import Config, ConfigError, PlatformSection, secret

if TYPE_CHECKING:
    from core.app import Greenroom

log = logging.getLogger(__name__)


class Adapter(Protocol):
    name: str

    @property
    def ready(self) -> bool:
        """Connected to the platform and taking messages."""

    async def start(self) -> None:
        """Connect and start taking messages; raises AdapterError when the platform refuses."""

    async def watch(self) -> None:
        """Return (or raise) only when the platform connection is lost for good."""

    async def stop_intake(self) -> None: ...

    async def close(self) -> None: ...


def _token(name: str, section: PlatformSection) -> str | None:
    token = secret(section.token_env)  # type: ignore[attr-defined]
    enabled = section.enabled if section.enabled is not None else token is not None
    if enabled and token is None:
        raise ConfigError(f"{name} is enabled but {section.token_env} is not set")  # type: ignore[attr-defined]
    return token if enabled else None


def enabled_adapters(app: "Greenroom", config: Config) -> list[Adapter]:
    """Adapters for the platforms whose tokens are set (imports only what is used)."""
    adapters: list[Adapter] = []
    if token := _token("discord", config.discord):
        from bots.discord import DiscordAdapter

        adapters.append(DiscordAdapter(app, config.discord, token))
    if token := _token("telegram", config.telegram):
        from bots.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(app, config.telegram, token))
    return adapters


async def serve(app: "Greenroom", adapters: list[Adapter], console=None) -> int:
    """Run until SIGTERM/SIGINT (or the console session ends, or a platform is lost); returns an exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = [signal.SIGTERM] + ([] if console is not None else [signal.SIGINT])
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    started: list[Adapter] = []
    code = 0
    health = None
    try:
        if app.config.health.enabled:
            from core.health import HealthServer

            health = HealthServer(app, adapters, app.config.health.host, app.config.health.port)
            await health.start()  # before the models load: /healthz answers, /readyz says "still loading"
        await asyncio.to_thread(lambda: app.persona)  # load the models before the first message
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        watchers = {asyncio.create_task(a.watch()): a for a in started}
        ending = {asyncio.create_task(stop.wait())} | set(watchers)
        if console is not None:
            ending.add(asyncio.create_task(console.run_interactive()))
        done, pending = await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done & set(watchers):
            log.error("%s: the connection was lost (%s); stopping", watchers[task].name,
                      task.exception() or "closed by the platform")
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
