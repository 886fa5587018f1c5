"""Dialogue history in SQLite, keyed by conversation and character, surviving restarts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from greenroom.memory.db import Database

SCHEMA = """CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT, conversation TEXT NOT NULL, character_id TEXT NOT NULL,
    user_id TEXT NOT NULL, speaker TEXT NOT NULL, user_text TEXT NOT NULL,
    reply TEXT NOT NULL, reply_raw TEXT NOT NULL, created_at REAL NOT NULL)"""
INDEX = "CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation, character_id, id)"
KEEP = 400  # turns kept per conversation and character; prompts use only a recent tail


@dataclass(frozen=True)
class Turn:
    """One user message and the character's reply (``reply_raw`` keeps the model's `Name:「…」` form)."""

    user_id: str
    speaker: str
    user_text: str
    reply: str
    reply_raw: str


class History:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(SCHEMA)
        db.execute(INDEX)

    def add(self, conversation: str, character_id: str, turn: Turn) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO turns (conversation, character_id, user_id, speaker, user_text, reply, "
                "reply_raw, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    conversation,
                    character_id,
                    turn.user_id,
                    turn.speaker,
                    turn.user_text,
                    turn.reply,
                    turn.reply_raw,
                    time.time(),
                ),
            )
            conn.execute(
                "DELETE FROM turns WHERE conversation = ? AND character_id = ? AND id <= "
                "(SELECT id FROM turns WHERE conversation = ? AND character_id = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (conversation, character_id, conversation, character_id, KEEP),
            )

    def recent(self, conversation: str, character_id: str, limit: int = 64) -> list[Turn]:
        """The newest turns, oldest first."""
        rows = self.db.execute(
            "SELECT user_id, speaker, user_text, reply, reply_raw FROM turns "
            "WHERE conversation = ? AND character_id = ? ORDER BY id DESC LIMIT ?",
            (conversation, character_id, limit),
        )
        return [Turn(*r) for r in reversed(rows)]

    def clear(self, conversation: str, user_id: str | None = None) -> int:
        """Forget a conversation's turns (all characters), or only one user's turns in it."""
        sql, params = "DELETE FROM turns WHERE conversation = ?", [conversation]
        if user_id is not None:
            sql, params = sql + " AND user_id = ?", [*params, user_id]
        with self.db.transaction() as conn:
            return conn.execute(sql, params).rowcount
