"""Character files that came over the network (sent in chat or fetched), kept in the database so
`/character reload` works on whichever process or machine takes it."""

from __future__ import annotations

import time

from sqlalchemy import delete, select

from greenroom.memory.db import Database
from greenroom.memory.schema import uploads


class Uploads:
    def __init__(self, db: Database) -> None:
        self.db = db

    def keep(self, character_id: str, filename: str, data: bytes) -> None:
        values = {"character_id": character_id, "filename": filename, "data": data, "at": time.time()}
        with self.db.write() as conn:
            self.db.upsert(conn, uploads, values, ["character_id"])

    def get(self, character_id: str) -> tuple[str, bytes] | None:
        """The kept file's name and bytes."""
        with self.db.read() as conn:
            row = conn.execute(
                select(uploads.c.filename, uploads.c.data).where(uploads.c.character_id == character_id)
            ).first()
        return (row.filename, bytes(row.data)) if row else None

    def forget(self, character_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(uploads).where(uploads.c.character_id == character_id))
