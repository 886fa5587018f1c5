"""Chat commands: permission levels, the registry, and the context a handler gets."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

from core.events import Actor, Message
from core.reply import Replier

if TYPE_CHECKING:
    from core.app import Greenroom


class Level(IntEnum):
    """Who may run what: owner > admin > user."""

    USER = 0
    ADMIN = 1
    OWNER = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Access:
    """Resolves a sender's level from the configured owners and admins and platform roles."""

    owners: frozenset[str]
    admins: frozenset[str]

    def level(self, actor: Actor) -> Level:
        if actor.ref in self.owners:
            return Level.OWNER
        if actor.ref in self.admins or actor.is_platform_admin:
            return Level.ADMIN
        return Level.USER


@dataclass
class Context:
    """Everything a handler needs for one message."""

    message: Message
    replier: Replier
    level: Level
    app: "Greenroom"

    async def say(self, text: str) -> None:
        from core.reply import split_text

        for part in split_text(text, self.replier.max_len):
            await self.replier.send(part)


CommandFn = Callable[[Context, str], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    """One command or subcommand (`character load`), its level and its help line."""

    path: str
    level: Level
    usage: str
    help: str
    run: CommandFn


class CommandRegistry:
    """Maps `/name [sub] args` to a command; refusals name the level needed."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, path: str, level: Level, usage: str, help: str) -> Callable[[CommandFn], CommandFn]:
        def register(fn: CommandFn) -> CommandFn:
            self._commands[path] = Command(path, level, usage, help, fn)
            return fn
        return register

    def resolve(self, name: str, args: str) -> tuple[Command, str] | None:
        """Find `name sub` first, then `name`; returns the command and its remaining args."""
        sub, _, rest = args.partition(" ")
        if (cmd := self._commands.get(f"{name} {sub.lower()}")) is not None:
            return cmd, rest.strip()
        if (cmd := self._commands.get(name)) is not None:
            return cmd, args
        return None

    def group(self, name: str) -> list[Command]:
        """The subcommands under `name` (for a usage line when none is given)."""
        return [c for p, c in self._commands.items() if p.startswith(name + " ")]

    def visible_to(self, level: Level) -> Iterable[Command]:
        return (c for c in self._commands.values() if c.level <= level)

    async def run(self, ctx: Context, name: str, args: str) -> str | None:
        found = self.resolve(name, args)
        if found is None:
            subs = self.group(name)
            if subs:
                usage = " | ".join(c.usage for c in subs if c.level <= ctx.level) or subs[0].usage
                return f"Usage: {usage}"
            return f"Unknown command /{name}. Send /help for the list."
        cmd, rest = found
        if ctx.level < cmd.level:
            return f"/{cmd.path} needs {cmd.level.label} level; you are {ctx.level.label}."
        return await cmd.run(ctx, rest)
