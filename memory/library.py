"""The character library: loaded characters in SQLite, their stories' vectors in the memory store.

Loading is atomic. The new version's index is written completely first; one SQLite
transaction then swaps the character's row and stories; only after that is the old index
dropped. A failure anywhere before the swap leaves the previous version in place, and a
reload of identical content does nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from greenroom.memory.characters import Character, CharacterError, Story
from greenroom.memory.db import Database
from greenroom.memory.store import MemoryStore, Passage, SearchQuery, VectorIndex, point_id
from greenroom.models.embedder import Embedder, LexicalEncoder

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS characters (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, system_prompt TEXT NOT NULL, greeting TEXT NOT NULL,
    speaker_aliases TEXT NOT NULL, settings TEXT NOT NULL, source_format TEXT NOT NULL,
    version TEXT NOT NULL, embedder TEXT NOT NULL, tokenizer TEXT NOT NULL, loaded_at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '{}', extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS stories (
    character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    source TEXT NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (character_id, idx));
"""
BATCH = 256


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
    windows: bool


@dataclass(frozen=True)
class LoadResult:
    character: Character
    changed: bool
    stories: int
    passages: int
    seconds: float


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
        self._loaded: dict[str, Loaded] = {}
        self._write_lock = threading.Lock()
        with db.transaction() as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(characters)")}
            for column in ("source", "extra"):  # data folders from before these existed
                if column not in columns:
                    conn.execute(f"ALTER TABLE characters ADD COLUMN {column} TEXT NOT NULL DEFAULT '{{}}'")
        self._drop_orphans()

    # ----- reading -----------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM characters ORDER BY id")]

    def summaries(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT c.id, c.name, c.source_format, c.version, c.loaded_at, COUNT(s.idx), "
            "COALESCE(SUM(s.tokens), 0) FROM characters c LEFT JOIN stories s ON s.character_id = c.id "
            "GROUP BY c.id ORDER BY c.id"
        )
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
        rows = self.db.execute("SELECT version FROM characters WHERE id = ?", (character_id,))
        return rows[0][0] if rows else None

    def get(self, character_id: str) -> Loaded:
        """The current version of a character (reopened if another process replaced it)."""
        version = self.version_of(character_id)
        cached = self._loaded.get(character_id)
        if cached is not None and cached.version == version:
            return cached
        character, stories = self.character(character_id)  # raises for an unknown name
        assert version is not None
        index = self.store.open(f"{character_id}-{version}")
        if cached is not None:
            cached.index.close()
        loaded = Loaded(character, stories, index, version, windows=index.count() > len(stories))
        self._loaded[character_id] = loaded
        return loaded

    def character(self, character_id: str) -> tuple[Character, list[StoredStory]]:
        """A character and its stories from SQLite alone (no vector index is opened)."""
        rows = self.db.execute(
            "SELECT name, system_prompt, greeting, speaker_aliases, settings, source_format, "
            "tokenizer, extra FROM characters WHERE id = ?",
            (character_id,),
        )
        if not rows:
            raise CharacterError(f"no character named '{character_id}' (see /character list)")
        row = rows[0]
        stories = [
            StoredStory(*r)
            for r in self.db.execute(
                "SELECT idx, source, text, tokens FROM stories WHERE character_id = ? ORDER BY idx", (character_id,)
            )
        ]
        if row[6] != self.tokenizer_id:  # the chat model changed since the load: recount once
            stories = self._recount(character_id, stories)
        character = Character(
            id=character_id,
            name=row[0],
            system_prompt=row[1],
            greeting=row[2],
            speaker_aliases=tuple(json.loads(row[3])),
            settings=json.loads(row[4]),
            source_format=row[5],
            stories=tuple(Story(s.text, s.source) for s in stories),
            extra=json.loads(row[7]),
        )
        return character, stories

    def search(self, character_id: str, query: str, k: int, hybrid: bool = True) -> list[Retrieved]:
        """The k best stories for a query, each story once (its best window counts)."""
        loaded = self.get(character_id)
        if k <= 0 or not loaded.stories:
            return []
        q = SearchQuery(self.embedder.query(query), self.lexical.query(query) if hybrid else None)
        limit = min(4 * k, 4 * len(loaded.stories)) if loaded.windows else k
        seen: dict[int, float] = {}
        for story, score in loaded.index.search(q, limit):
            seen.setdefault(story, score)
        return [Retrieved(loaded.stories[i], s) for i, s in list(seen.items())[:k]]

    # ----- writing -----------------------------------------------------------------------------

    def source_of(self, character_id: str) -> dict:
        """Where a character was loaded from ({"path", "name"}), for /character reload."""
        rows = self.db.execute("SELECT source FROM characters WHERE id = ?", (character_id,))
        return json.loads(rows[0][0]) if rows else {}

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
        with self._write_lock:
            if self.version_of(character.id) == character.version:
                return LoadResult(character, False, len(character.stories), 0, time.perf_counter() - started)
            name = f"{character.id}-{character.version}"
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
                bar.close()
                self.store.commit(name, index)
            except BaseException:
                index.close()
                self.store.drop(name)
                raise
            old = self.version_of(character.id)
            self._swap(character, source or {})
            if old is not None:
                self.store.drop(f"{character.id}-{old}")
            return LoadResult(character, True, len(character.stories), len(texts), time.perf_counter() - started)

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
        with self._write_lock:
            version = self.version_of(character_id)
            if version is None:
                return False
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM characters WHERE id = ?", (character_id,))
            cached = self._loaded.pop(character_id, None)
            if cached is not None:
                cached.index.close()
            self.store.drop(f"{character_id}-{version}")
            return True

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

    def _swap(self, character: Character, source: dict) -> None:
        rows = [(character.id, i, s.source, s.text, self.count_tokens(s.text)) for i, s in enumerate(character.stories)]
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM characters WHERE id = ?", (character.id,))
            conn.execute(
                "INSERT INTO characters (id, name, system_prompt, greeting, speaker_aliases, settings, "
                "source_format, version, embedder, tokenizer, loaded_at, source, extra) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    character.id,
                    character.name,
                    character.system_prompt,
                    character.greeting,
                    json.dumps(list(character.speaker_aliases), ensure_ascii=False),
                    json.dumps(character.settings),
                    character.source_format,
                    character.version,
                    self.embedder.name,
                    self.tokenizer_id,
                    time.time(),
                    json.dumps(source, ensure_ascii=False),
                    json.dumps(character.extra, ensure_ascii=False),
                ),
            )
            conn.executemany("INSERT INTO stories VALUES (?,?,?,?,?)", rows)

    def _recount(self, character_id: str, stories: list[StoredStory]) -> list[StoredStory]:
        fresh = [StoredStory(s.idx, s.source, s.text, self.count_tokens(s.text)) for s in stories]
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE stories SET tokens = ? WHERE character_id = ? AND idx = ?",
                [(s.tokens, character_id, s.idx) for s in fresh],
            )
            conn.execute("UPDATE characters SET tokenizer = ? WHERE id = ?", (self.tokenizer_id, character_id))
        return fresh

    def _drop_orphans(self) -> None:
        """Indexes no character points at (a load interrupted after writing, before the swap)."""
        live = {f"{r[0]}-{r[1]}" for r in self.db.execute("SELECT id, version FROM characters")}
        for name in self.store.names():
            if name not in live:
                self.store.drop(name)

    def close(self) -> None:
        for loaded in self._loaded.values():
            loaded.index.close()
        self._loaded.clear()
