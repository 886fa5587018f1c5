"""Link verdicts cached per normalised URL for a configurable time (in the database, shared)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from sqlalchemy import delete, select

from greenroom.memory.db import Database
from greenroom.memory.schema import link_verdicts


class VerdictCache:
    def __init__(self, db: Database, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.clock = clock

    def get(self, url: str) -> dict | None:
        """The cached verdict for ``url``, or None when there is none or it has expired."""
        with self.db.read() as conn:
            row = conn.execute(
                select(link_verdicts.c.verdict, link_verdicts.c.at).where(link_verdicts.c.url == url)
            ).first()
        if row is None or self.clock() - row.at > self.ttl:
            return None
        return json.loads(row.verdict)

    def put(self, url: str, verdict: dict) -> None:
        now = self.clock()
        with self.db.write() as conn:
            self.db.upsert(conn, link_verdicts, {"url": url, "verdict": json.dumps(verdict), "at": now}, ["url"])
            conn.execute(delete(link_verdicts).where(link_verdicts.c.at < now - self.ttl))
