"""Per-scope runtime settings (a chat's character and mode, a user's in-story name, allow/deny lists)."""

from __future__ import annotations

from sqlalchemy import delete, select

from greenroom.memory.db import Database
from greenroom.memory.schema import settings


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, scope: str, key: str, default: str | None = None) -> str | None:
        with self.db.read() as conn:
            value = conn.execute(
                select(settings.c.value).where(settings.c.scope == scope, settings.c.key == key)
            ).scalar()
        return default if value is None else value

    def set(self, scope: str, key: str, value: str) -> None:
        with self.db.write() as conn:
            self.db.upsert(conn, settings, {"scope": scope, "key": key, "value": value}, ["scope", "key"])

    def scope(self, scope: str) -> dict[str, str]:
        """Every key and value in one scope."""
        with self.db.read() as conn:
            rows = conn.execute(select(settings.c.key, settings.c.value).where(settings.c.scope == scope)).all()
        return {key: value for key, value in rows}

    def delete(self, scope: str, key: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(settings).where(settings.c.scope == scope, settings.c.key == key))

    def forget_value(self, key: str, value: str) -> None:
        """Remove a setting wherever it holds ``value`` (e.g. chats using a removed character)."""
        with self.db.write() as conn:
            conn.execute(delete(settings).where(settings.c.key == key, settings.c.value == value))
