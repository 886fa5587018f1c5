"""The audit log: every admin command run (who, where, its scope, what, the outcome), in the database."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from sqlalchemy import select

from greenroom.memory.db import Database
from greenroom.memory.schema import audit


@dataclass(frozen=True)
class AuditEntry:
    who: str  # platform:user id
    name: str  # their display name
    place: str  # the conversation
    scope: str  # where the command acts: "chat" (that chat only) or "bot"
    command: str
    args: str
    outcome: str
    at: str = ""  # UTC, ISO 8601; filled when recorded


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, entry: AuditEntry) -> None:
        stamped = asdict(entry) | {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self.db.write() as conn:
            conn.execute(audit.insert().values(**stamped))

    def entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (all by default), oldest first."""
        query = select(*(audit.c[f] for f in AuditEntry.__dataclass_fields__)).order_by(audit.c.id.desc())
        with self.db.read() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [AuditEntry(*r) for r in reversed(rows)]
