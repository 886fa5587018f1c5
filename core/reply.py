"""Answering on any platform: long text split into messages, and replies streamed by throttled edits."""

from __future__ import annotations

import re
import time

from greenroom.core.adapter import Replier, SentRef


def _cut(text: str, budget: int) -> int:
    """Where to cut: the last paragraph, line or word break in the second half of the budget."""
    return next((i for sep in ("\n\n", "\n", " ") if (i := text.rfind(sep, 0, budget + 1)) > budget // 2), budget)


def _open_fence(piece: str) -> str | None:
    """The language of a code fence left open in ``piece`` ("" if unnamed), else None."""
    fences = re.findall(r"^```(.*)$", piece, flags=re.M)
    return fences[-1].strip() if len(fences) % 2 else None


def split_text(text: str, limit: int) -> list[str]:
    """Split on paragraph, then line, then word boundaries into chunks of at most ``limit``.

    A code fence open at a cut is closed there and reopened (same language) in the next chunk.
    """
    chunks: list[str] = []
    rest, reopen = text, ""
    while rest:
        if len(reopen) + len(rest) <= limit:
            chunks.append(reopen + rest)
            break
        cut = _cut(rest, limit - len(reopen))
        if _open_fence(reopen + rest[:cut]) is not None:  # leave room to close it
            cut = _cut(rest, limit - len(reopen) - 4)
        piece, rest = reopen + rest[:cut], rest[cut:].lstrip("\n ")
        lang = _open_fence(piece)
        reopen = "" if lang is None else f"```{lang}\n"
        chunks.append(piece if lang is None else piece + "\n```")
    return chunks or [""]


class StreamingReply:
    """Show a growing reply: a placeholder once the model is slow, throttled edits, a final text.

    Edits are at most one per ``replier.edit_interval`` seconds; the final text is split
    at ``replier.max_len`` into follow-up messages.
    """

    def __init__(self, replier: Replier, clock=time.monotonic) -> None:
        self.replier = replier
        self.clock = clock
        self.started = clock()
        self.ref: SentRef | None = None
        self.shown = ""
        self.last_edit = 0.0

    async def update(self, text: str) -> None:
        """Offer the text so far; it is shown when the throttle allows."""
        now = self.clock()
        text = text.strip()
        if not text or text == self.shown:
            return
        if self.ref is None:
            if now - self.started < self.replier.placeholder_delay:
                return
            self.ref = await self.replier.send(text[: self.replier.max_len])
        elif now - self.last_edit < self.replier.edit_interval:
            return
        else:
            await self.replier.edit(self.ref, text[: self.replier.max_len])
        self.shown, self.last_edit = text[: self.replier.max_len], now

    async def finish(self, text: str) -> None:
        """Show the complete text, splitting it across messages when it is long."""
        parts = split_text(text.strip() or "…", self.replier.max_len)
        if self.ref is None:
            self.ref = await self.replier.send(parts[0])
        elif parts[0] != self.shown:
            await self.replier.edit(self.ref, parts[0])
        self.shown = parts[0]
        for part in parts[1:]:
            await self.replier.send(part)
