"""The platform-neutral message model: what adapters hand to the dispatcher.

Everything here is frozen and free of platform objects (only an opaque ``raw``), so
handlers can be tested without any chat library.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from greenroom.errors import UserError


@dataclass(frozen=True)
class ConversationKey:
    """One conversation: a platform chat, optionally a thread or forum topic in it."""

    platform: str
    chat_id: str
    thread_id: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.thread_id}" if self.thread_id else ""
        return f"{self.platform}:{self.chat_id}{tail}"

    @property
    def chat(self) -> str:
        """The chat this conversation lives in (settings such as the character are per chat)."""
        return f"{self.platform}:{self.chat_id}"


@dataclass(frozen=True)
class Actor:
    """Who sent a message."""

    platform: str
    user_id: str
    display_name: str
    is_bot: bool = False
    is_platform_admin: bool = False

    @property
    def ref(self) -> str:
        """`platform:user_id`, the form used in owner/admin lists."""
        return f"{self.platform}:{self.user_id}"


class AttachmentKind(StrEnum):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"
    FILE = "file"


class AttachmentError(UserError):
    """An attachment that cannot be fetched: too large, or gone from the platform."""


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f}".removesuffix(".0") + " MB"


@dataclass(frozen=True)
class Attachment:
    """A file on a message, fetched only when a handler asks, and only when within ``limit`` bytes.

    ``limit_note`` says where the limit comes from, for the message that refuses a larger file.
    """

    kind: AttachmentKind
    filename: str
    size: int
    limit: int
    limit_note: str = ""
    mime: str = ""
    url: str | None = None
    fetch: Callable[[], Awaitable[bytes]] | None = field(default=None, compare=False, repr=False)

    @property
    def too_large(self) -> bool:
        return self.size > self.limit

    def refusal(self, size: int | None = None) -> str:
        """The message for a file over the limit (``size``: what actually arrived, if not the stated size)."""
        note = f" ({self.limit_note})" if self.limit_note else ""
        return (
            f"{self.filename} is {megabytes(size or self.size)}, over the {megabytes(self.limit)} limit{note}, "
            f"so I did not download it."
        )

    async def read(self) -> bytes:
        """Download the file; refuses (without downloading) when it is over the limit."""
        if self.too_large:
            raise AttachmentError(self.refusal())
        if self.fetch is None:
            raise AttachmentError(f"{self.filename} cannot be downloaded from here.")
        data = await self.fetch()
        if len(data) > self.limit:  # the platform under-reported the size
            raise AttachmentError(self.refusal(len(data)))
        return data


URL_RE = re.compile(r"https?://[^\s<>()\[\]{}\"']+[^\s<>()\[\]{}\"'.,;:!?]")


def urls_in(text: str) -> list[str]:
    """http(s) links in plain text, in order, without duplicates."""
    return list(dict.fromkeys(URL_RE.findall(text)))


@dataclass(frozen=True)
class Link:
    """A URL found in a message: from platform entities, embeds or the plain text."""

    url: str
    source: str = "text"


@dataclass(frozen=True)
class Message:
    """One incoming chat message."""

    id: str
    key: ConversationKey
    author: Actor
    text: str
    attachments: tuple[Attachment, ...] = ()
    links: tuple[Link, ...] = ()
    reply_to_id: str | None = None
    mentions_bot: bool = False
    is_direct: bool = False
    is_reply_to_bot: bool = False
    received_at: float = field(default_factory=time.time)
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def sequence(self) -> int | None:
        """The message's place in its chat as the platform numbers it (its numeric id), if it has one."""
        return int(self.id) if self.id.isdigit() else None

    @property
    def command(self) -> tuple[str, str] | None:
        """(name, argument text) when the message is a `/command`, else None."""
        text = self.text.strip()
        if not text.startswith("/") or len(text) < 2:
            return None
        head, _, rest = text[1:].partition(" ")
        name = head.split("@", 1)[0].lower()  # Telegram appends @botname in groups
        return (name, rest.strip()) if name else None
