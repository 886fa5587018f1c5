"""What both chat adapters share: the start-up error, the typing loop, command menus, links in text."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from core.commands import CommandRegistry, Level

log = logging.getLogger(__name__)


class AdapterError(Exception):
    """A platform that cannot start: a missing or rejected token, bad settings."""


@asynccontextmanager
async def repeating(action: Callable[[], Awaitable[object]], every: float) -> AsyncIterator[None]:
    """Run ``action`` now and every ``every`` seconds until the block ends (a typing indicator)."""
    async def loop() -> None:
        while True:
            try:
                await action()
            except Exception as e:  # a lost typing indicator must not fail the reply
                log.debug("typing indicator failed: %s", e)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


def command_menu(commands: CommandRegistry, limit: int) -> list[tuple[str, str]]:
    """(name, description) for each top-level command, as platform command menus want them."""
    helps: dict[str, str] = {}
    subs: dict[str, list[str]] = {}
    names: dict[str, None] = {}
    for cmd in commands.visible_to(Level.OWNER):
        name, _, sub = cmd.path.partition(" ")
        names[name] = None
        if sub:
            subs.setdefault(name, []).append(sub)
        else:
            helps[name] = cmd.help
    out = []
    for name in names:
        listed = ", ".join(subs.get(name, []))
        text = helps.get(name, "") or f"{name}: {listed}"
        if name in helps and listed:
            text += f" (also: {listed})"
        out.append((name, text if len(text) <= limit else text[: limit - 1] + "…"))
    return out
