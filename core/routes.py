"""The built-in message handlers, as plugin factories (entry points in ``greenroom.handlers``).

A route has a priority (lower first) and blocks the ones after it once it matches; an observer sees
every admitted message. Each factory gives its handlers the services they use.
"""

from __future__ import annotations

from greenroom.core.commands import CommandRegistry, Context
from greenroom.core.dispatch import Observer, Route
from greenroom.core.services import Services
from greenroom.memory.audit import AuditEntry, AuditLog


class CommandRoute:
    """`/commands`: run through the registry, admin commands recorded in the audit log."""

    def __init__(self, commands: CommandRegistry, audit: AuditLog) -> None:
        self.commands = commands
        self.audit = audit

    async def handle(self, ctx: Context) -> None:
        name, args = ctx.message.command  # type: ignore[misc]
        m = ctx.message
        answer = await self.commands.run(
            ctx,
            name,
            args,
            lambda cmd, rest, outcome: self.audit.record(
                AuditEntry(m.author.ref, m.author.display_name, str(m.key), cmd.level.scope, cmd.path, rest, outcome)
            ),
        )
        if answer:
            await ctx.say(answer)


def commands(s: Services) -> list[Route]:
    return [Route(0, "commands", lambda ctx: ctx.message.command is not None, CommandRoute(s.commands, s.audit).handle)]


def videos(s: Services) -> list[Route]:
    """Clips and photos too large to fetch, clips and photos to describe, and questions about the last one."""
    desk = s.video

    async def refuse(ctx: Context) -> None:
        for attachment in desk.oversized(ctx):
            await ctx.say(attachment.refusal())

    return [
        Route(5, "oversized videos", lambda ctx: bool(desk.oversized(ctx)), refuse, block=False),
        Route(10, "videos", lambda ctx: desk.video_of(ctx) is not None, desk.on_video),
        Route(20, "questions about a clip", desk.is_followup, desk.on_followup),
    ]


def persona(s: Services) -> list[Route]:
    """Everything else is a chat turn with the conversation's character."""
    return [Route(100, "persona", lambda ctx: True, s.persona.reply)]


def factcheck(s: Services) -> list[Observer]:
    """Links in any admitted message are checked in the background where the chat has it on."""
    return [Observer("factcheck", s.factcheck.observe)]
