"""What both chat adapters share: the start-up error, the token, the typing loop, command menus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from greenroom.core.commands import CommandRegistry, Level
from greenroom.core.config import ConfigError, PlatformSection, secret
from greenroom.errors import UserError

log = logging.getLogger(__name__)


class AdapterError(UserError):
    """A platform that cannot start: a missing or rejected token, bad settings."""


def platform_token(name: str, section: PlatformSection) -> str | None:
    """The platform's token when it is enabled: by its token being set, unless ``enabled`` says otherwise."""
    token = secret(section.token_env)  # type: ignore[attr-defined]
    enabled = section.enabled if section.enabled is not None else token is not None
    if enabled and token is None:
        raise ConfigError(f"{name} is enabled but {section.token_env} is not set")  # type: ignore[attr-defined]
    return token if enabled else None


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
