"""Leases: work that one process does for all (loading a character), held in the shared database.

A lease names its holder (host:pid) and the vector index it is responsible for: the one being
written, or, once the switch is made, the old one still to be dropped. A lease whose holder has
died (its pid is gone on this host, or it was not renewed in time) is dead: whoever finds it
drops its index, so a load killed half-way leaves no orphaned vectors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, exc, select, update

from greenroom.memory.db import HOLDER, Database
from greenroom.memory.schema import leases

TTL = 300.0  # seconds a lease lives unless renewed (a load renews it with every batch)


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: float
    index_name: str


def holder_alive(holder: str) -> bool:
    """Whether a process on this host is still running (another host's holders count as alive)."""
    host, _, pid = holder.rpartition(":")
    if host != HOLDER.rpartition(":")[0] or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Leases:
    def __init__(self, db: Database, ttl: float = TTL, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock

    def _dead(self, lease: Lease) -> bool:
        return lease.expires_at < self.clock() or not holder_alive(lease.holder)

    def acquire(self, name: str, index_name: str) -> Lease | None:
        """Take the lease, or None when a live process holds it."""
        with self.db.write() as conn:
            held = self._get(conn, name)
            if held is not None and not self._dead(held):
                return None
            if held is not None:
                conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == held.holder))
        lease = Lease(name, HOLDER, self.clock() + self.ttl, index_name)
        try:
            with self.db.write() as conn:
                conn.execute(leases.insert().values(**lease.__dict__))
        except exc.IntegrityError:  # another process took it between the two steps
            return None
        return lease

    def renew(self, lease: Lease, conn: Connection | None = None, index_name: str | None = None) -> None:
        """Push the expiry on (and hand the lease another index to answer for), in ``conn``'s transaction if given."""
        values: dict[str, object] = {"expires_at": self.clock() + self.ttl}
        if index_name is not None:
            values["index_name"] = index_name
        statement = update(leases).where(leases.c.name == lease.name, leases.c.holder == lease.holder).values(**values)
        if conn is not None:
            conn.execute(statement)
            return
        with self.db.write() as own:
            own.execute(statement)

    def release(self, lease: Lease) -> None:
        with self.db.write() as conn:
            conn.execute(delete(leases).where(leases.c.name == lease.name, leases.c.holder == lease.holder))

    def held(self, name: str) -> bool:
        """Whether a live process holds this lease."""
        with self.db.read() as conn:
            lease = self._get(conn, name)
        return lease is not None and not self._dead(lease)

    def all(self) -> list[Lease]:
        with self.db.read() as conn:
            return [Lease(*r) for r in conn.execute(select(leases)).all()]

    def reap(self, drop: Callable[[str], None], live: set[str]) -> list[str]:
        """Remove dead leases, dropping the index each answered for (unless a character uses it)."""
        dropped = []
        for lease in self.all():
            if self._dead(lease):
                if lease.index_name and lease.index_name not in live:
                    drop(lease.index_name)
                    dropped.append(lease.index_name)
                with self.db.write() as conn:
                    conn.execute(delete(leases).where(leases.c.name == lease.name, leases.c.holder == lease.holder))
        return dropped

    def _get(self, conn: Connection, name: str) -> Lease | None:
        row = conn.execute(select(leases).where(leases.c.name == name)).first()
        return Lease(*row) if row else None
