"""`greenroom database copy URL`: every stored row from the configured database into an empty one
(a bot moving from its SQLite file to PostgreSQL, to be shared by several processes)."""

from __future__ import annotations

from sqlalchemy import func, select, text

from greenroom.memory.db import Database, DatabaseError
from greenroom.memory.schema import metadata

TRANSIENT = {"leases", "conversation_turns"}  # work in progress in this process's time, not state
BATCH = 1000


def copy_database(source: Database, target: Database) -> dict[str, int]:
    """Copy in one transaction on the target, tables in dependency order; returns rows per table."""
    tables = [t for t in metadata.sorted_tables if t.name not in TRANSIENT]
    counts: dict[str, int] = {}
    with source.read() as src, target.write() as dst:
        for table in tables:
            if dst.execute(select(func.count()).select_from(table)).scalar():
                raise DatabaseError(f"{target.where} already holds {table.name}; copy into an empty database")
            counts[table.name] = 0
            for batch in src.execute(select(table)).mappings().partitions(BATCH):
                dst.execute(table.insert(), [dict(row) for row in batch])
                counts[table.name] += len(batch)
        if not target.sqlite:  # ids were copied as they were: move the id sequences past them
            for table in tables:
                if "id" in table.c and table.c.id.autoincrement is True:
                    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
                    dst.execute(text(f"SELECT setval({sequence}, COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"))
    return counts
