"""Link verdicts cached per normalised URL for a configurable time (SQLite, survives restarts)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from greenroom.memory.db import Database

SCHEMA = "CREATE TABLE IF NOT EXISTS link_verdicts (url TEXT PRIMARY KEY, verdict TEXT NOT NULL, at REAL NOT NULL)"


class VerdictCache:
    def __init__(self, db: Database, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.clock = clock
        db.execute(SCHEMA)

    def get(self, url: str) -> dict | None:
        """The cached verdict for ``url``, or None when there is none or it has expired."""
        rows = self.db.execute("SELECT verdict, at FROM link_verdicts WHERE url = ?", (url,))
        if not rows or self.clock() - rows[0][1] > self.ttl:
            return None
        return json.loads(rows[0][0])

    def put(self, url: str, verdict: dict) -> None:
        now = self.clock()
        self.db.execute(
            "INSERT INTO link_verdicts VALUES (?,?,?) ON CONFLICT (url) DO UPDATE SET "
            "verdict = excluded.verdict, at = excluded.at",
            (url, json.dumps(verdict), now),
        )
        self.db.execute("DELETE FROM link_verdicts WHERE at < ?", (now - self.ttl,))
