"""Long-term memory per conversation: turns that left the history window, recalled when relevant.

Each turn that leaves a conversation's history window is copied into the ``memories`` table (who
said it, when, the user's line and the character's reply) and embedded once into the vector store:
one index per conversation and character (a shard on disk, or a tenant on a Qdrant server), so a
search can only ever see its own conversation. The database is the record; the vectors are derived
from it. A row is PENDING until its vector is written, then KEPT; a restart or a store that was down
picks PENDING rows up again, and point ids follow from row ids, so nothing is written twice. The
user's line and the reply are embedded apart (two points, no names): a fact the user told is not
diluted by whatever the character said back, and neither is the character's own.

Forgetting blanks a row's text at once (FORGOTTEN: never recalled again); its vector is deleted as
soon as the store answers, leaving a PURGED tombstone while the history still holds the turn, so the
turn is never memorized again. Rows whose turn is gone from the history (a /reset) are deleted.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

import numpy as np
from sqlalchemy import SmallInteger, and_, delete, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from greenroom.memory.db import Database
from greenroom.memory.schema import memories, turns
from greenroom.memory.store import POINT_NAMESPACE, MemoryStore, Passage, SearchQuery, VectorIndex
from greenroom.models.embedder import Embedder, LexicalEncoder

log = logging.getLogger(__name__)

PENDING, KEPT, FORGOTTEN, PURGED = 0, 1, 2, 3
BATCH = 64  # turns embedded per pass (a backlog after an outage catches up over a few turns)
# what a copy of a turn fills, in the order the selects give it
COPIED = ["conversation", "character_id", "turn_id", "user_id", "speaker", "user_text", "reply", "said_at", "state"]
OPEN_INDEXES = 32  # conversations whose index stays open between turns
STOPWORDS = ("english", "chinese", "japanese")  # words every line has match nothing (的, 是, the, my)
INDEX = re.compile(r"memory__[0-9a-f]{24}")  # never a character's index, which is always `<id>-<version>`


def index_name(conversation: str, character_id: str) -> str:
    """The vector index of one conversation's memories of one character."""
    digest = sha256(f"{conversation}\n{character_id}".encode()).hexdigest()[:24]
    return f"memory__{digest}"


def is_memory_index(name: str) -> bool:
    return INDEX.fullmatch(name) is not None


def points_of(memory_id: int) -> list[str]:
    """The ids of a memory's two points: the user's line, and the reply."""
    return [str(uuid.uuid5(POINT_NAMESPACE, f"memory:{memory_id}:{part}")) for part in (0, 1)]


@dataclass(frozen=True)
class Memory:
    """One remembered turn, as recalled."""

    id: int
    turn_id: int
    speaker: str
    user_text: str
    reply: str
    said_at: float
    score: float


class LongTermMemory:
    """Memorize, recall and forget turns, per conversation and character."""

    def __init__(self, db: Database, store: MemoryStore, embedder: Callable[[], Embedder]) -> None:
        self.db = db
        self.store = store
        self._embedder = embedder  # loaded on first use: forgetting needs no model
        self._lexical: LexicalEncoder | None = None
        self._open: OrderedDict[str, VectorIndex] = OrderedDict()
        self._lock = threading.Lock()  # the open indexes; one store call at a time per process
        self.sweep()  # what an earlier process could not delete while the store was down

    # ----- recall ------------------------------------------------------------------------------

    def recall(
        self,
        conversation: str,
        character_id: str,
        text: str,
        limit: int,
        min_similarity: float,
        vector: np.ndarray | None = None,
    ) -> list[Memory]:
        """Up to ``limit`` kept memories relevant to ``text``, best first: close in meaning (cosine
        at least ``min_similarity``) or sharing a word. ``vector``: the text's embedding, when the
        caller has it already. Empty, with a log line, if the store fails."""
        mine = (memories.c.conversation == conversation) & (memories.c.character_id == character_id)
        with self.db.read() as conn:
            if (
                limit <= 0
                or not conn.execute(select(memories.c.id).where(mine, memories.c.state == KEPT).limit(1)).first()
            ):
                return []
        dense = self._embedder().query(text) if vector is None else vector
        query = SearchQuery(dense, self.lexical.query(text), min_dense=min_similarity)
        try:
            with self._lock:
                hits = self._index(conversation, character_id).search(query, 2 * limit)
        except Exception as e:  # the store is down or refusing: the turn goes on without memories
            log.warning("memories of %s not recalled (vector store: %s: %s)", conversation, type(e).__name__, e)
            return []
        best: dict[int, float] = {}
        for memory_id, score in hits:  # a memory's better point counts
            best.setdefault(memory_id, score)
        scores = dict(list(best.items())[:limit])
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    memories.c.id,
                    memories.c.turn_id,
                    memories.c.speaker,
                    memories.c.user_text,
                    memories.c.reply,
                    memories.c.said_at,
                ).where(mine, memories.c.state == KEPT, memories.c.id.in_(scores))
            ).all()
        found = [Memory(*row, score=scores[row.id]) for row in rows]
        return sorted(found, key=lambda m: -m.score)

    # ----- memorize ----------------------------------------------------------------------------

    def memorize(self, conversation: str, character_id: str, keep: int) -> int:
        """Copy the turns older than the newest ``keep`` (the history window) that are not yet in
        memory, and embed what is pending; returns how many were embedded. A store that fails
        leaves rows pending for the next pass."""
        self._copy(conversation, character_id, keep)
        mine = (memories.c.conversation == conversation) & (memories.c.character_id == character_id)
        with self.db.read() as conn:
            pending = conn.execute(
                select(memories.c.id, memories.c.user_text, memories.c.reply)
                .where(mine, memories.c.state == PENDING)
                .order_by(memories.c.id)
                .limit(BATCH)
            ).all()
        self.sweep(conversation)
        if not pending:
            return 0
        texts = [text for r in pending for text in (r.user_text, r.reply)]
        owners = [(r.id, point) for r in pending for point in points_of(r.id)]
        vectors = self._embedder().encode(texts)
        passages = [
            Passage(point, memory_id, vector, self.lexical.document(text))
            for (memory_id, point), vector, text in zip(owners, vectors, texts, strict=True)
        ]
        try:
            with self._lock:
                self._index(conversation, character_id).add(passages)
        except Exception as e:
            log.warning(
                "%d turn(s) of %s not memorized yet (vector store: %s: %s); kept for the next turn",
                len(pending),
                conversation,
                type(e).__name__,
                e,
            )
            return 0
        ids = [r.id for r in pending]
        with self.db.write() as conn:
            conn.execute(update(memories).where(memories.c.id.in_(ids), memories.c.state == PENDING).values(state=KEPT))
        return len(ids)

    def _copy(self, conversation: str, character_id: str, keep: int) -> None:
        """The turns that left the window, into memory as PENDING (each turn once, even across processes)."""
        t = turns.c
        theirs = (t.conversation == conversation) & (t.character_id == character_id)
        old = select(t.id).where(theirs).order_by(t.id.desc()).offset(keep).limit(1).scalar_subquery()
        copied = exists().where(memories.c.conversation == conversation, memories.c.turn_id == t.id)
        rows = (
            select(
                t.conversation,
                t.character_id,
                t.id,
                t.user_id,
                t.speaker,
                t.user_text,
                t.reply,
                t.created_at,
                literal(PENDING, SmallInteger),
            )
            .where(theirs, t.id <= old, ~copied)
            .order_by(t.id)
            .limit(BATCH)
        )
        insert = (sqlite_insert if self.db.sqlite else pg_insert)(memories)
        with self.db.write() as conn:
            conn.execute(insert.from_select(COPIED, rows).on_conflict_do_nothing())

    # ----- forget ------------------------------------------------------------------------------

    def forget(self, conversation: str, user_id: str | None = None) -> int:
        """Forget a conversation's memories (every character's), or one user's: their lines and the
        replies to them. Turns still in the history window are never memorized after this.
        Returns how many memories were forgotten."""
        m, t = memories.c, turns.c
        mine = m.conversation == conversation
        theirs = t.conversation == conversation
        if user_id is not None:
            mine &= m.user_id == user_id
            theirs &= t.user_id == user_id
        unseen = (
            select(
                t.conversation,
                t.character_id,
                t.id,
                t.user_id,
                t.speaker,
                literal(""),
                literal(""),
                t.created_at,
                literal(PURGED, SmallInteger),
            )
            .where(theirs, ~exists().where(m.conversation == conversation, m.turn_id == t.id))
            .order_by(t.id)
        )
        insert = (sqlite_insert if self.db.sqlite else pg_insert)(memories)
        with self.db.write() as conn:
            forgotten = conn.execute(
                update(memories)
                .where(mine, m.state.in_((PENDING, KEPT)))
                .values(state=FORGOTTEN, user_text="", reply="")
            ).rowcount
            conn.execute(insert.from_select(COPIED, unseen).on_conflict_do_nothing())
            # tombstones of turns no longer in the history have nothing left to guard
            conn.execute(delete(memories).where(mine, m.state == PURGED, ~exists().where(t.id == m.turn_id)))
        self.sweep(conversation)
        return forgotten

    def sweep(self, conversation: str | None = None) -> None:
        """Delete the vectors of forgotten memories (of one conversation, or all) where the store
        answers; then drop the rows whose turn has left the history, and tombstone the others."""
        m = memories.c
        where = m.state == FORGOTTEN
        if conversation is not None:
            where &= m.conversation == conversation
        with self.db.read() as conn:
            rows = conn.execute(select(m.id, m.conversation, m.character_id).where(where).limit(1024)).all()
        groups: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            groups.setdefault((row.conversation, row.character_id), []).append(row.id)
        for (conv, character_id), ids in groups.items():
            try:
                self._purge(conv, character_id, ids)
            except Exception as e:
                log.warning(
                    "vectors of %d forgotten memories of %s not deleted yet (vector store: %s: %s)",
                    len(ids),
                    conv,
                    type(e).__name__,
                    e,
                )
                continue
            with self.db.write() as conn:
                gone = and_(m.id.in_(ids), ~exists().where(turns.c.id == m.turn_id))
                conn.execute(delete(memories).where(gone))
                conn.execute(update(memories).where(m.id.in_(ids), m.state == FORGOTTEN).values(state=PURGED))

    def _purge(self, conversation: str, character_id: str, ids: list[int]) -> None:
        """Delete these memories' vectors; the whole index when no other memory of it is left."""
        m = memories.c
        name = index_name(conversation, character_id)
        with self.db.read() as conn:
            others = conn.execute(
                select(m.id)
                .where(
                    m.conversation == conversation,
                    m.character_id == character_id,
                    m.state.in_((PENDING, KEPT, FORGOTTEN)),
                    m.id.not_in(ids),
                )
                .limit(1)
            ).first()
        with self._lock:
            if others is None:
                index = self._open.pop(name, None)
                if index is not None:
                    index.close()
                self.store.drop(name)
            elif name in self._open or name in self.store.names():
                index = self._cache(name, self._open.get(name) or self.store.open(name))
                index.delete([point for i in ids for point in points_of(i)])

    # ----- the indexes -------------------------------------------------------------------------

    @property
    def lexical(self) -> LexicalEncoder:
        if self._lexical is None:
            self._lexical = LexicalEncoder(STOPWORDS)
        return self._lexical

    def _index(self, conversation: str, character_id: str) -> VectorIndex:
        """The conversation's index, opened (or created) once and kept open while it is in use.
        An index holding fewer points than the database's kept memories need (a new or emptied
        store) has them embedded again: they go back to PENDING. Call with the lock held."""
        name = index_name(conversation, character_id)
        if name in self._open:
            return self._cache(name, self._open[name])
        index = self._cache(name, self.store.ensure(name, self._embedder().dim))
        m = memories.c
        mine = (m.conversation == conversation) & (m.character_id == character_id)
        with self.db.read() as conn:
            kept = conn.execute(select(func.count()).where(mine, m.state == KEPT)).scalar() or 0
        if index.count() < 2 * kept:
            log.info("re-embedding %d memories of %s: the vector store lacks them", kept, conversation)
            with self.db.write() as conn:
                conn.execute(update(memories).where(mine, m.state == KEPT).values(state=PENDING))
        return index

    def _cache(self, name: str, index: VectorIndex) -> VectorIndex:
        """Keep ``index`` open as the most recently used; close the least recently used beyond the limit."""
        self._open[name] = index
        self._open.move_to_end(name)
        while len(self._open) > OPEN_INDEXES:
            self._open.popitem(last=False)[1].close()
        return index

    def close(self) -> None:
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()
