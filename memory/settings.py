"""Per-scope runtime settings (a chat's character and mode, a user's in-story name) in SQLite."""

from __future__ import annotations

from greenroom.memory.db import Database

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS settings (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (scope, key))"
)


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(SCHEMA)

    def get(self, scope: str, key: str, default: str | None = None) -> str | None:
        rows = self.db.execute("SELECT value FROM settings WHERE scope = ? AND key = ?", (scope, key))
        return rows[0][0] if rows else default

    def set(self, scope: str, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO settings VALUES (?,?,?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            (scope, key, value),
        )

    def scope(self, scope: str) -> dict[str, str]:
        """Every key and value in one scope."""
        rows = self.db.execute("SELECT key, value FROM settings WHERE scope = ?", (scope,))
        return {key: value for key, value in rows}

    def delete(self, scope: str, key: str) -> None:
        self.db.execute("DELETE FROM settings WHERE scope = ? AND key = ?", (scope, key))

    def forget_value(self, key: str, value: str) -> None:
        """Remove a setting wherever it holds ``value`` (e.g. chats using a removed character)."""
        self.db.execute("DELETE FROM settings WHERE key = ? AND value = ?", (key, value))
