"""Chat commands: permission levels, the context a handler gets, command sets and the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from greenroom.core.adapter import Replier
from greenroom.core.config import ConfigError
from greenroom.core.events import Actor, Message
from greenroom.core.reply import StreamingReply, split_text
from greenroom.errors import UserError
from greenroom.memory.settings import Settings


class Level(IntEnum):
    """Who may run what. A chat admin (an admin of the Telegram group or Discord server, as the
    platform reports) is one in that chat only; bot admins and owners come from the configuration."""

    USER = 0
    CHAT_ADMIN = 1
    ADMIN = 2
    OWNER = 3

    @property
    def label(self) -> str:
        return {Level.USER: "user", Level.CHAT_ADMIN: "chat admin", Level.ADMIN: "bot admin"}.get(self, "owner")

    @property
    def scope(self) -> str:
        """Where a command of this level acts: nowhere special, this chat, or the whole bot."""
        return {Level.USER: "", Level.CHAT_ADMIN: "chat"}.get(self, "bot")

    @property
    def needs(self) -> str:
        """How a refusal names this level and its scope."""
        where = {"chat": " in this chat", "bot": " (bot-wide)"}.get(self.scope, "")
        return f"{self.label} level{where}"


def refusal(path: str, needed: Level, have: Level) -> str:
    """The answer to a command the sender's level does not allow."""
    return f"/{path} needs {needed.needs}; you are {have.label}{' here' if have == Level.CHAT_ADMIN else ''}."


ACL_USERS, ACL_CHATS = "acl:user", "acl:chat"  # bot-wide lists; a chat's own list of users: acl:user:CHAT


@dataclass(frozen=True)
class Access:
    """A sender's level in a chat, and the allow/deny lists: bot-wide (users, chats) and per chat (users)."""

    owners: frozenset[str]
    admins: frozenset[str]
    lists: Settings | None = None

    def level(self, actor: Actor) -> Level:
        """The level of ``actor`` in the chat its message came from (platform admin flags are per chat)."""
        if actor.ref in self.owners:
            return Level.OWNER
        if actor.ref in self.admins:
            return Level.ADMIN
        return Level.CHAT_ADMIN if actor.is_platform_admin else Level.USER

    def admitted(self, message: Message) -> bool:
        """Denied users and chats are ignored; once anything is allowed in a list, only what it allows
        passes. The bot-wide lists (users, chats) hold everywhere; a chat's own list of users holds in
        that chat, and never for its admins. Bot admins and owners always pass."""
        level = self.level(message.author)
        if self.lists is None or level >= Level.ADMIN:
            return True
        user, chat = message.author.ref, message.key.chat
        if not (self._admits(ACL_USERS, user) and self._admits(ACL_CHATS, chat)):
            return False
        return level >= Level.CHAT_ADMIN or self._admits(f"{ACL_USERS}:{chat}", user)

    def _admits(self, scope: str, ref: str) -> bool:
        assert self.lists is not None
        entries = self.lists.scope(scope)
        verdict = entries.get(ref)
        return verdict == "allow" or (verdict is None and "allow" not in entries.values())


@dataclass
class Context:
    """One message being handled: the message, how to answer it, and the sender's level.
    Handlers get their services when they are built, never from here."""

    message: Message
    replier: Replier
    level: Level
    streams: list[StreamingReply] = field(default_factory=list)

    async def say(self, text: str) -> None:
        for part in split_text(text, self.replier.max_len):
            await self.replier.send(part)

    def stream(self) -> StreamingReply:
        """A streamed reply; the dispatcher turns its placeholder into the error message if the turn fails."""
        self.streams.append(StreamingReply(self.replier))
        return self.streams[-1]

    async def fail(self, text: str) -> None:
        """Tell the user a turn failed: in place of a half-shown reply if there is one."""
        shown = next((s for s in reversed(self.streams) if s.ref is not None), None)
        if shown is None:
            await self.say(text)
        else:
            await shown.finish(text)


CommandFn = Callable[[Context, str], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    """One command or subcommand (`character load`), its level and its help line."""

    path: str
    level: Level
    usage: str
    help: str
    run: CommandFn


class CommandSet:
    """Commands declared together (one plugin's); ``add`` is a decorator."""

    def __init__(self) -> None:
        self._commands: list[Command] = []

    def add(self, path: str, level: Level, usage: str, help: str) -> Callable[[CommandFn], CommandFn]:
        def register(fn: CommandFn) -> CommandFn:
            self._commands.append(Command(path, level, usage, help, fn))
            return fn

        return register

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)


class CommandRegistry:
    """Maps `/name [sub] args` to a command; refusals name the level needed. ``/help`` is built in."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self.include([Command("help", Level.USER, "/help", "list the commands you can use", self._help)])

    def include(self, commands: Iterable[Command]) -> None:
        """Add commands; a path registered twice is a plugin conflict, refused at start."""
        for cmd in commands:
            if cmd.path in self._commands:
                raise ConfigError(f"two plugins define the command /{cmd.path}")
            self._commands[cmd.path] = cmd

    async def _help(self, ctx: Context, args: str) -> str:
        return "Commands:\n" + "\n".join(f"{c.usage}: {c.help}" for c in self.visible_to(ctx.level))

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
        """The commands ``level`` may run, by name (as /help and the platforms' menus list them)."""
        return (c for path, c in sorted(self._commands.items()) if c.level <= level)

    async def run(
        self, ctx: Context, name: str, args: str, audit: Callable[[Command, str, str], None] | None = None
    ) -> str | None:
        """Run a command if the caller's level allows; ``audit`` sees every admin command run (chat or bot),
        the ones that fail included."""
        found = self.resolve(name, args)
        if found is None:
            subs = self.group(name)
            if subs:
                usage = " | ".join(c.usage for c in subs if c.level <= ctx.level) or subs[0].usage
                return f"Usage: {usage}"
            return f"Unknown command /{name}. Send /help for the list."
        cmd, rest = found
        if ctx.level < cmd.level:
            return refusal(cmd.path, cmd.level, ctx.level)
        audited = audit if audit is not None and cmd.level >= Level.CHAT_ADMIN else None
        try:
            answer = await cmd.run(ctx, rest)
        except UserError as e:  # a failed admin command is recorded too, with what went wrong
            if audited is not None:
                audited(cmd, rest, f"failed: {e}")
            raise
        if audited is not None:
            audited(cmd, rest, answer or "")
        return answer
