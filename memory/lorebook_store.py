"""Lorebooks in the database: each under its owner ("" bot-wide, else the chat it was loaded in),
and the characters and chats it is attached to. A chat's books are its own: every read here
names the owners it may see."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, select

from greenroom.memory.db import Database
from greenroom.memory.lorebooks import LoreError
from greenroom.memory.schema import lorebook_uses, lorebooks

BOT_WIDE = ""
CHARACTER, CHAT = "character", "chat"
PARSED_CACHE = 256  # books kept parsed, least recently used out first


@dataclass(frozen=True)
class Lorebook:
    owner: str
    id: str
    name: str
    source: str
    created_at: float
    entries: int
    uses: tuple[tuple[str, str], ...]  # (kind, target) it is attached to


class LorebookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._books: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()  # by version
        self._lock = threading.Lock()  # the cache, between the turns' threads

    def keep(self, owner: str, book_id: str, book: dict[str, Any], source: str, limit: int | None = None) -> None:
        """Add a lorebook, or replace the one of that id and owner (its attachments stay); a new one
        past ``limit`` books of that owner is refused."""
        values = {
            "owner": owner,
            "id": book_id,
            "name": book.get("name") or book_id,
            "book": json.dumps(book, ensure_ascii=False),
            "source": source,
            "entries": len(book["entries"]),
            "created_at": time.time(),
        }
        with self.db.write() as conn:
            if limit is not None:
                mine = conn.execute(select(lorebooks.c.id).where(lorebooks.c.owner == owner)).scalars().all()
                if book_id not in mine and len(mine) >= limit:
                    raise LoreError(
                        f"this chat has {len(mine)} lorebooks, the limit of {limit}; "
                        "remove one first (/lore remove NAME)"
                    )
            self.db.upsert(conn, lorebooks, values, ["owner", "id"])

    def attach(self, owner: str, book_id: str, kind: str, target: str) -> None:
        values = {"owner": owner, "lorebook_id": book_id, "kind": kind, "target": target}
        with self.db.write() as conn:
            self.db.upsert(conn, lorebook_uses, values, list(values))

    def detach(self, owner: str, book_id: str, kind: str, target: str) -> bool:
        """Whether the book was attached there."""
        with self.db.write() as conn:
            done = conn.execute(
                delete(lorebook_uses).where(
                    lorebook_uses.c.owner == owner,
                    lorebook_uses.c.lorebook_id == book_id,
                    lorebook_uses.c.kind == kind,
                    lorebook_uses.c.target == target,
                )
            )
        return done.rowcount > 0

    def remove(self, owner: str, book_id: str) -> bool:
        """Remove a book and its attachments; whether it existed."""
        with self.db.write() as conn:
            conn.execute(
                delete(lorebook_uses).where(lorebook_uses.c.owner == owner, lorebook_uses.c.lorebook_id == book_id)
            )
            done = conn.execute(delete(lorebooks).where(lorebooks.c.owner == owner, lorebooks.c.id == book_id))
        with self._lock:
            self._books.pop((owner, book_id), None)
        return done.rowcount > 0

    def listing(self, owners: tuple[str, ...] | None = None) -> list[Lorebook]:
        """The books of ``owners`` (None: every owner), bot-wide first, with their attachments."""
        query = select(*(c for c in lorebooks.c if c.name != "book")).order_by(lorebooks.c.owner, lorebooks.c.id)
        with self.db.read() as conn:
            rows = conn.execute(query if owners is None else query.where(lorebooks.c.owner.in_(owners))).all()
            uses = conn.execute(select(lorebook_uses).order_by(lorebook_uses.c.kind, lorebook_uses.c.target)).all()
        return [
            Lorebook(
                r.owner,
                r.id,
                r.name,
                r.source,
                r.created_at,
                r.entries,
                tuple((u.kind, u.target) for u in uses if (u.owner, u.lorebook_id) == (r.owner, r.id)),
            )
            for r in rows
        ]

    def books_for(self, character_id: str, chat: str) -> list[dict[str, Any]]:
        """The books attached to the character (bot-wide ones) or to the chat (bot-wide or its own),
        each once, in a stable order, each with its ``owner``; parsed once per version (the last
        `PARSED_CACHE` used kept)."""
        attached = or_(
            and_(lorebook_uses.c.kind == CHARACTER, lorebook_uses.c.target == character_id),
            and_(lorebook_uses.c.kind == CHAT, lorebook_uses.c.target == chat),
        )
        query = (
            select(lorebooks.c.owner, lorebooks.c.id, lorebooks.c.created_at)
            .join(
                lorebook_uses,
                and_(lorebook_uses.c.owner == lorebooks.c.owner, lorebook_uses.c.lorebook_id == lorebooks.c.id),
            )
            .where(attached, lorebooks.c.owner.in_((BOT_WIDE, chat)))
            .distinct()
            .order_by(lorebooks.c.owner, lorebooks.c.id)
        )
        with self.db.read() as conn:
            versions = conn.execute(query).all()
            books = []
            for owner, book_id, created_at in versions:
                cached = self._books.get((owner, book_id))
                if cached is None or cached[0] != created_at:
                    raw = conn.execute(
                        select(lorebooks.c.book).where(lorebooks.c.owner == owner, lorebooks.c.id == book_id)
                    ).scalar_one()
                    cached = (created_at, json.loads(raw) | {"owner": owner})
                with self._lock:
                    self._books[(owner, book_id)] = cached
                    self._books.move_to_end((owner, book_id))
                    while len(self._books) > PARSED_CACHE:
                        self._books.popitem(last=False)
                books.append(cached[1])
        return books
