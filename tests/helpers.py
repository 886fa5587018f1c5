"""Test doubles for the platform side: a recording replier and message builders."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.reply import SentRef

_ids = itertools.count(1)


class RecordingReplier:
    """Records what the bot sent and edited, in order."""

    def __init__(self, max_len: int = 2000, edit_interval: float = 0.0, placeholder_delay: float = 0.0) -> None:
        self.max_len = max_len
        self.edit_interval = edit_interval
        self.placeholder_delay = placeholder_delay
        self.events: list[tuple[str, str]] = []
        self.messages: list[str] = []
        self.traces: list[dict[str, Any]] = []

    async def send(self, text: str) -> SentRef:
        self.events.append(("send", text))
        self.messages.append(text)
        return SentRef(str(len(self.messages) - 1))

    async def edit(self, ref: SentRef, text: str) -> None:
        self.events.append(("edit", text))
        self.messages[int(ref.id)] = text

    @asynccontextmanager
    async def typing(self):
        self.events.append(("typing", ""))
        yield

    async def report(self, trace: dict[str, Any]) -> None:
        self.traces.append(trace)


class AddressedReplier(RecordingReplier):
    """A recording replier that names a Telegram message, as the Redis video queue needs."""

    def __init__(self, message_id: int = 1) -> None:
        super().__init__()
        self.message_id = message_id

    def address(self) -> dict[str, Any]:
        return {
            "platform": "telegram",
            "chat_id": 1,
            "chat_type": "private",
            "message_id": self.message_id,
            "thread_id": None,
        }


def message(
    text: str,
    user: str = "u1",
    chat: str = "c1",
    direct: bool = True,
    platform: str = "test",
    mention: bool = False,
    admin: bool = False,
) -> Message:
    return Message(
        id=str(next(_ids)),
        key=ConversationKey(platform, chat),
        author=Actor(platform, user, user.title(), is_platform_admin=admin),
        text=text,
        is_direct=direct,
        mentions_bot=mention,
    )


def answer_with(app, handler, priority: int = 50) -> None:
    """Route every message to ``handler`` ahead of the persona (a model stub for adapter tests)."""
    from greenroom.core.dispatch import Route

    app.dispatcher.add(Route(priority, "test stub", lambda ctx: ctx.message.command is None, handler))


@asynccontextmanager
async def running(adapter) -> AsyncIterator[Any]:
    """A started platform adapter, stopped and closed afterwards."""
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop_intake()
        await adapter.close()


def slow_model(words: list[str], placeholder_out):
    """A handler streaming ``words`` at a model's pace; it waits for ``placeholder_out()`` after the first."""
    import asyncio

    async def stream_words(ctx) -> None:
        stream, text = ctx.stream(), ""
        for i, word in enumerate(words):
            text += word
            await stream.update(text)
            if i == 0:
                await placeholder_out()
            await asyncio.sleep(0.02)  # the model's pace, not synchronisation
        await stream.finish(text)

    return stream_words


def assert_throttled(times: list[float], interval: float) -> None:
    """At least two edits, and at most one per ``interval`` (the final edit may come sooner)."""
    assert len(times) >= 2
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps[:-1] or [interval]) >= interval - 0.05, gaps
