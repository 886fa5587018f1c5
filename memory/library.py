"""The character library: loaded characters in the database, their stories' vectors in the memory store.

Loading is atomic. The new version's index is written completely first; one database
transaction then switches the character's row, stories and index name; only after that is the
old index dropped. A failure anywhere before the switch leaves the previous version in place,
and a reload of identical content does nothing. A load holds a lease in the shared database
(`memory/leases.py`), so two processes never load one name at once, and vectors left by a load
that was killed are dropped by the next process that starts. Nothing drops an index that a
character row points to.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from tqdm import tqdm

from greenroom.memory.characters import Character, CharacterError, Story
from greenroom.memory.db import Database
from greenroom.memory.leases import Lease, Leases
from greenroom.memory.schema import characters, stories
from greenroom.memory.store import MemoryStore, Passage, SearchQuery, VectorIndex, point_id
from greenroom.models.embedder import Embedder, LexicalEncoder

log = logging.getLogger(__name__)

BATCH = 256


class LoadInProgress(CharacterError):
    """Another process holds this character's load lease."""


@dataclass(frozen=True)
class StoredStory:
    idx: int
    source: str
    text: str
    tokens: int


@dataclass(frozen=True)
class Retrieved:
    story: StoredStory
    score: float


@dataclass
class Loaded:
    """A character as served: its row, its stories with token counts, its open index."""

    character: Character
    stories: list[StoredStory]
    index: VectorIndex
    version: str
    index_name: str
    windows: bool


@dataclass(frozen=True)
class LoadResult:
    character: Character
    changed: bool
    stories: int
    passages: int
    seconds: float


def loaded_ids(db: Database) -> list[str]:
    """The loaded characters' ids, from the database alone (no model or vector store needed)."""
    with db.read() as conn:
        return list(conn.execute(select(characters.c.id).order_by(characters.c.id)).scalars())


class Library:
    """Load, list, look up, search and remove characters."""

    def __init__(
        self,
        db: Database,
        store: MemoryStore,
        embedder: Embedder,
        count_tokens: Callable[[str], int],
        tokenizer_id: str,
    ) -> None:
        self.db = db
        self.store = store
        self.embedder = embedder
        self.lexical = LexicalEncoder()
        self.count_tokens = count_tokens
        self.tokenizer_id = tokenizer_id
        self.leases = Leases(db)
        self._loaded: dict[str, Loaded] = {}
        self._write_lock = threading.Lock()
        dropped = self.leases.reap(self.store.drop, self.live_indexes())
        if dropped:
            log.info("dropped %d index(es) left by interrupted loads: %s", len(dropped), ", ".join(dropped))

    # ----- reading -----------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return loaded_ids(self.db)

    def live_indexes(self) -> set[str]:
        """The vector indexes character rows point to: never dropped."""
        with self.db.read() as conn:
            return set(conn.execute(select(characters.c.index_name)).scalars())

    def summaries(self) -> list[dict]:
        c, s = characters.c, stories.c
        query = (
            select(
                c.id,
                c.name,
                c.source_format,
                c.version,
                c.loaded_at,
                func.count(s.idx),
                func.coalesce(func.sum(s.tokens), 0),
            )
            .select_from(characters.outerjoin(stories, s.character_id == c.id))
            .group_by(c.id, c.name, c.source_format, c.version, c.loaded_at)
            .order_by(c.id)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r[0],
                "name": r[1],
                "format": r[2],
                "version": r[3],
                "loaded_at": r[4],
                "stories": r[5],
                "story_tokens": r[6],
            }
            for r in rows
        ]

    def version_of(self, character_id: str) -> str | None:
        return self._current(character_id)[0]

    def _current(self, character_id: str) -> tuple[str | None, str]:
        """The character's version and index name (None, "" when it is not loaded)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(characters.c.version, characters.c.index_name).where(characters.c.id == character_id)
            ).first()
        return (row.version, row.index_name) if row else (None, "")

    def get(self, character_id: str) -> Loaded:
        """The current version of a character (reopened if another process replaced it)."""
        version, index_name = self._current(character_id)
        cached = self._loaded.get(character_id)
        if cached is not None and cached.index_name == index_name:
            return cached
        character, told = self.character(character_id)  # raises for an unknown name
        assert version is not None
        index = self.store.open(index_name)
        if cached is not None:
            cached.index.close()
        loaded = Loaded(character, told, index, version, index_name, windows=index.count() > len(told))
        self._loaded[character_id] = loaded
        return loaded

    def character(self, character_id: str) -> tuple[Character, list[StoredStory]]:
        """A character and its stories from the database alone (no vector index is opened)."""
        with self.db.read() as conn:
            row = conn.execute(select(characters).where(characters.c.id == character_id)).first()
            told = [
                StoredStory(*r)
                for r in conn.execute(
                    select(stories.c.idx, stories.c.source, stories.c.text, stories.c.tokens)
                    .where(stories.c.character_id == character_id)
                    .order_by(stories.c.idx)
                )
            ]
        if row is None:
            raise CharacterError(f"no character named '{character_id}' (see /character list)")
        if row.tokenizer != self.tokenizer_id:  # the chat model changed since the load: recount once
            told = self._recount(character_id, told)
        character = Character(
            id=character_id,
            name=row.name,
            system_prompt=row.system_prompt,
            greeting=row.greeting,
            speaker_aliases=tuple(json.loads(row.speaker_aliases)),
            settings=json.loads(row.settings),
            source_format=row.source_format,
            stories=tuple(Story(s.text, s.source) for s in told),
            extra=json.loads(row.extra),
        )
        return character, told

    def search(
        self, character_id: str, query: str, k: int, hybrid: bool = True, vector: np.ndarray | None = None
    ) -> list[Retrieved]:
        """The k best stories for a query, each story once (its best window counts); ``vector``: the
        query's embedding, when the caller has it already."""
        loaded = self.get(character_id)
        if k <= 0 or not loaded.stories:
            return []
        dense = self.embedder.query(query) if vector is None else vector
        q = SearchQuery(dense, self.lexical.query(query) if hybrid else None)
        limit = min(4 * k, 4 * len(loaded.stories)) if loaded.windows else k
        seen: dict[int, float] = {}
        for story, score in loaded.index.search(q, limit):
            seen.setdefault(story, score)
        return [Retrieved(loaded.stories[i], s) for i, s in list(seen.items())[:k]]

    # ----- writing -----------------------------------------------------------------------------

    def source_of(self, character_id: str) -> dict:
        """Where a character was loaded from ({"path" or "upload", "name", "url"}), for /character reload."""
        with self.db.read() as conn:
            raw = conn.execute(select(characters.c.source).where(characters.c.id == character_id)).scalar()
        return json.loads(raw) if raw else {}

    def load(
        self,
        character: Character,
        progress: bool = False,
        vectors: np.ndarray | None = None,
        source: dict | None = None,
    ) -> LoadResult:
        """Embed and store a character's stories, then make this version current in one step.

        ``vectors`` (one unit row per story, from the configured embedder) are used instead of
        embedding the whole stories again; windows of long stories are always embedded.
        """
        started = time.perf_counter()
        if vectors is not None and vectors.shape != (len(character.stories), self.embedder.dim):
            raise CharacterError(
                f"{len(vectors)} stored vectors of size {vectors.shape[-1]} do not match "
                f"{len(character.stories)} stories for a {self.embedder.dim}-d embedder"
            )
        name = f"{character.id}-{character.version}"
        with self._write_lock, self._lease(character.id, name) as lease:
            if self.version_of(character.id) == character.version:
                return LoadResult(character, False, len(character.stories), 0, time.perf_counter() - started)
            texts, owners = self._passages(character)
            index = self.store.create(name, self.embedder.dim)
            try:
                bar = tqdm(
                    total=len(texts),
                    desc=f"loading {character.name}",
                    unit="passage",
                    disable=not progress,
                    leave=False,
                )
                for start in range(0, len(texts), BATCH):
                    batch = list(zip(texts[start : start + BATCH], owners[start : start + BATCH], strict=True))
                    index.add(self._embed(batch, vectors))
                    bar.update(len(batch))
                    self.leases.renew(lease)
                bar.close()
                self.store.commit(name, index)
                old = self._swap(character, source or {}, name, lease)
            except BaseException:
                index.close()
                self.store.drop(name)
                raise
            if old and old != name:
                self.store.drop(old)
            return LoadResult(character, True, len(character.stories), len(texts), time.perf_counter() - started)

    @contextmanager
    def _lease(self, character_id: str, index_name: str) -> Iterator[Lease]:
        """The character's load lease, or a clear refusal while another process holds it."""
        lease = self.leases.acquire(f"load:{character_id}", index_name)
        if lease is None:
            raise LoadInProgress(
                f"'{character_id}' is being loaded or removed by another process right now; "
                "try again when it has finished"
            )
        try:
            yield lease
        finally:
            self.leases.release(lease)

    def _embed(self, batch: list[tuple[str, tuple[str, int, bool]]], vectors: np.ndarray | None) -> list[Passage]:
        """Passages for a batch: stored vectors for whole stories when given, the embedder otherwise."""
        todo = [i for i, (_, (_, _, whole)) in enumerate(batch) if vectors is None or not whole]
        fresh = dict(zip(todo, self.embedder.encode([batch[i][0] for i in todo]), strict=True)) if todo else {}
        return [
            Passage(
                pid, story, fresh[i] if vectors is None or i in fresh else vectors[story], self.lexical.document(text)
            )
            for i, (text, (pid, story, _)) in enumerate(batch)
        ]

    def remove(self, character_id: str) -> bool:
        with self._write_lock, self._lease(character_id, "") as lease:
            index_name = self._current(character_id)[1]
            with self.db.write() as conn:
                gone = conn.execute(delete(characters).where(characters.c.id == character_id)).rowcount
                self.leases.renew(lease, conn, index_name)  # killed before the drop: the next start drops it
            if not gone:
                return False
            cached = self._loaded.pop(character_id, None)
            if cached is not None:
                cached.index.close()
            self.store.drop(index_name)
            return True

    def repoint(self, mapping: dict[str, str]) -> set[str]:
        """Switch every character using index ``old`` to ``new`` in one transaction (an import);
        returns the old names that were replaced."""
        with self.db.write() as conn:
            replaced = {
                old
                for old, new in mapping.items()
                if conn.execute(
                    update(characters).where(characters.c.index_name == old).values(index_name=new)
                ).rowcount
            }
        return replaced

    def _passages(self, character: Character) -> tuple[list[str], list[tuple[str, int, bool]]]:
        """Every story whole, plus line windows of those too long for the embedder.

        Returns the texts and, for each, (point id, story index, whether it is the whole story).
        """
        texts: list[str] = []
        owners: list[tuple[str, int, bool]] = []
        for idx, story in enumerate(character.stories):
            for w, text in enumerate([story.text, *self.embedder.windows(story.text)]):
                texts.append(text)
                owners.append((point_id(character.id, story.hash, w), idx, w == 0))
        return texts, owners

    def _swap(self, character: Character, source: dict, index_name: str, lease: Lease) -> str:
        """Make this version current in one transaction; returns the index it replaced ("" if none)."""
        rows = [
            {
                "character_id": character.id,
                "idx": i,
                "source": s.source,
                "text": s.text,
                "tokens": self.count_tokens(s.text),
            }
            for i, s in enumerate(character.stories)
        ]
        with self.db.write() as conn:
            old = conn.execute(select(characters.c.index_name).where(characters.c.id == character.id)).scalar() or ""
            conn.execute(delete(characters).where(characters.c.id == character.id))
            conn.execute(
                characters.insert().values(
                    id=character.id,
                    name=character.name,
                    system_prompt=character.system_prompt,
                    greeting=character.greeting,
                    speaker_aliases=json.dumps(list(character.speaker_aliases), ensure_ascii=False),
                    settings=json.dumps(character.settings),
                    source_format=character.source_format,
                    version=character.version,
                    embedder=self.embedder.name,
                    tokenizer=self.tokenizer_id,
                    loaded_at=time.time(),
                    source=json.dumps(source, ensure_ascii=False),
                    extra=json.dumps(character.extra, ensure_ascii=False),
                    index_name=index_name,
                )
            )
            if rows:
                conn.execute(stories.insert(), rows)
            self.leases.renew(lease, conn, old)  # killed before the old index is dropped: the next start drops it
        return old

    def _recount(self, character_id: str, told: list[StoredStory]) -> list[StoredStory]:
        fresh = [StoredStory(s.idx, s.source, s.text, self.count_tokens(s.text)) for s in told]
        with self.db.write() as conn:
            for s in fresh:
                conn.execute(
                    update(stories)
                    .where(stories.c.character_id == character_id, stories.c.idx == s.idx)
                    .values(tokens=s.tokens)
                )
            conn.execute(update(characters).where(characters.c.id == character_id).values(tokenizer=self.tokenizer_id))
        return fresh

    def close(self) -> None:
        for loaded in self._loaded.values():
            loaded.index.close()
        self._loaded.clear()
