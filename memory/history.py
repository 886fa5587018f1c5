"""Dialogue history in the database, keyed by conversation and character, surviving restarts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select

from greenroom.memory.db import Database
from greenroom.memory.schema import turns

KEEP = 400  # turns kept per conversation and character; prompts use only a recent tail


@dataclass(frozen=True)
class Turn:
    """One user message and the character's reply (``reply_raw`` keeps the model's `Name:「…」` form)."""

    user_id: str
    speaker: str
    user_text: str
    reply: str
    reply_raw: str


@dataclass(frozen=True)
class StoredTurn(Turn):
    """A turn as read back: its id, increasing within a conversation, and when it was stored."""

    id: int = 0
    at: float = 0.0


class History:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, conversation: str, character_id: str, turn: Turn) -> None:
        """Store a turn (one transaction: the turn and the trimming land together or not at all)."""
        mine = (turns.c.conversation == conversation) & (turns.c.character_id == character_id)
        cutoff = select(turns.c.id).where(mine).order_by(turns.c.id.desc()).limit(1).offset(KEEP).scalar_subquery()
        with self.db.write() as conn:
            conn.execute(
                turns.insert().values(
                    conversation=conversation,
                    character_id=character_id,
                    created_at=time.time(),
                    **turn.__dict__,
                )
            )
            conn.execute(delete(turns).where(mine, turns.c.id <= cutoff))

    def recent(self, conversation: str, character_id: str, limit: int = 64) -> list[StoredTurn]:
        """The newest turns, oldest first."""
        query = (
            select(
                turns.c.user_id,
                turns.c.speaker,
                turns.c.user_text,
                turns.c.reply,
                turns.c.reply_raw,
                turns.c.id,
                turns.c.created_at,
            )
            .where(turns.c.conversation == conversation, turns.c.character_id == character_id)
            .order_by(turns.c.id.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [StoredTurn(*r) for r in reversed(rows)]

    def clear(self, conversation: str, user_id: str | None = None) -> int:
        """Forget a conversation's turns (all characters), or only one user's turns in it."""
        query = delete(turns).where(turns.c.conversation == conversation)
        if user_id is not None:
            query = query.where(turns.c.user_id == user_id)
        with self.db.write() as conn:
            return conn.execute(query).rowcount
