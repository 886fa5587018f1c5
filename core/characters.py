"""Loading, reloading, exporting and removing characters: one service for the chat commands and
the command line alike.

A character comes from a path on the bot's machine, a link (through the safe fetcher), or a file
sent in chat. Files that came over the network are kept in the database once they have loaded
(`memory/uploads.py`), so `/character reload` reads that character's own file again on any process.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from greenroom.core.config import FetchSection
from greenroom.core.events import Attachment
from greenroom.core.incoming import fetch_file, safe_name, staged
from greenroom.errors import UserError
from greenroom.memory.card_files import check_card_path, write_card_file
from greenroom.memory.cards import V2, V3, card_image, character_to_card
from greenroom.memory.characters import CharacterError, slug
from greenroom.memory.chatharuhi_jsonl import column_name, write_jsonl
from greenroom.memory.db import Database
from greenroom.memory.importers import read_character
from greenroom.memory.library import Library, LoadInProgress, LoadResult, loaded_ids
from greenroom.memory.settings import Settings
from greenroom.memory.uploads import Uploads
from greenroom.models.embedder import Embedder

log = logging.getLogger(__name__)

DEMO_CHARACTERS = Path(__file__).resolve().parent.parent / "memory" / "demo"
CARD_FORMATS = {"card-v2": V2, "card-v3": V3}
FORMATS = (*CARD_FORMATS, "chatharuhi-jsonl")

Loaded = tuple[LoadResult, str]  # what loaded, and a note on the format read


class Characters:
    """The character use-cases over the library."""

    def __init__(
        self,
        library: Library,
        embedder: Embedder,
        settings: Settings,
        fetch: FetchSection,
        uploads: Uploads,
        default_character: str,
    ) -> None:
        self.library = library
        self.embedder = embedder
        self.settings = settings
        self.fetch = fetch
        self.uploads = uploads
        self.default_character = default_character

    def load(
        self,
        path: str | Path,
        name: str | None = None,
        progress: bool = False,
        source: dict | None = None,
    ) -> Loaded:
        """Read a character package in any supported format and load it (atomically).

        ``source`` says where a reload finds it again, when that is not ``path`` (a file sent in
        chat: {"upload": filename}, plus {"url"} when it was fetched).
        """
        imported = read_character(path, name, column_name(self.embedder.name), self.embedder.dim)
        cid = imported.character.id
        source = (source or {"path": str(Path(path).expanduser().resolve())}) | {"name": name}
        previous = _origin(self.library.source_of(cid))
        if previous and previous != _origin(source):
            raise CharacterError(
                f"a character named '{cid}' is already loaded from {previous}; load this one "
                f"with --name NAME, or remove '{cid}' first"
            )
        result = self.library.load(imported.character, progress=progress, vectors=imported.vectors, source=source)
        return result, imported.note

    async def load_upload(self, attachment: Attachment, name: str | None) -> Loaded:
        """Load a character file sent in chat."""
        return await self._load_bytes(attachment.filename, await attachment.read(), name)

    async def load_url(self, url: str, name: str | None) -> Loaded:
        """Load a character from a link, through the safe fetcher (public addresses, size and time limits)."""
        filename, data = await fetch_file(self.fetch, url, "character")
        return await self._load_bytes(filename, data, name, url)

    async def reload(self, character_id: str) -> Loaded | None:
        """Load a character again from where it came; None when it did not come from a file.
        A failure says that the version loaded before is still the one answering."""
        source = self.library.source_of(character_id)
        if not source:
            return None
        try:
            return await self._reload(character_id, source)
        except UserError as e:
            raise CharacterError(f"{e} (the version loaded before is still answering)") from None

    async def _reload(self, character_id: str, source: dict) -> Loaded:
        if source.get("url"):
            return await self.load_url(source["url"], source.get("name"))
        if "upload" in source:
            kept = self.uploads.get(character_id)
            if kept is None:
                raise CharacterError(f"the file '{character_id}' was loaded from is no longer kept; send it again")
            filename, data = kept
            return await self._load_bytes(filename, data, source.get("name"))
        return await asyncio.to_thread(self.load, source["path"], source.get("name"))

    async def _load_bytes(self, filename: str, data: bytes, name: str | None, url: str | None = None) -> Loaded:
        """Load a character file that came over the network. It is kept in the database (for
        /character reload) once it has loaded; a failed load leaves the previous one in place."""
        filename = safe_name(filename, "character")
        source = {"upload": filename} | ({"url": url} if url else {})
        with staged(filename, data, "character") as incoming:
            loaded = await asyncio.to_thread(self.load, incoming, name, source=source)
        self.uploads.keep(loaded[0].character.id, filename, data)
        return loaded

    def export(self, character_id: str, out: Path, format: str) -> int:
        """Write a character as a V2 or V3 card (PNG, JSON or CHARX, by ``out``'s suffix) or a
        ChatHaruhi role jsonl with this embedder's vectors; returns the story count."""
        spec = CARD_FORMATS.get(format)
        if spec:
            check_card_path(out, spec)
        character, _ = self.library.character(character_id)
        if spec:
            write_card_file(out, character_to_card(character, spec), card_image(character))
        else:
            vectors = self.embedder.encode([s.text for s in character.stories])
            write_jsonl(character, vectors, column_name(self.embedder.name), out)
        return len(character.stories)

    def remove(self, name: str) -> str:
        """Remove a character; chats that used it go back to the default. Returns its id."""
        cid = slug(name)
        if not self.library.remove(cid):
            raise CharacterError(f"no character named '{cid}'")
        self.settings.forget_value("character", cid)
        self.uploads.forget(cid)
        return cid

    def ensure_default(self) -> None:
        """Load the bundled demo character when the default one is not in the library yet."""
        cid = self.default_character
        if cid in self.library.ids():
            return
        folder = DEMO_CHARACTERS / cid
        if not folder.is_dir():
            raise CharacterError(
                f"the default character '{cid}' is not loaded; load it with "
                f"`greenroom character load PATH --name {cid}`"
            )
        log.info("loading the bundled character %s", cid)
        try:
            self.load(folder, progress=sys.stderr.isatty())
        except LoadInProgress:  # another process sharing the database is loading it right now
            log.info("another process is loading %s; waiting for it", cid)
            self._wait_for(cid)

    def _wait_for(self, cid: str) -> None:
        """Until another process's load of ``cid`` ends (its lease released or dead), then load if it failed."""
        pause = 0.1
        while any(
            lease.name == f"load:{cid}" and lease.expires_at > time.time() for lease in self.library.leases.all()
        ):
            time.sleep(pause)  # polling the shared database while the other process embeds
            pause = min(2 * pause, 2.0)
        if cid not in self.library.ids():
            self.ensure_default()


def check_character(db: Database, name: str) -> None:
    """Refuse a character for chats that is neither loaded nor bundled (a bundled one is loaded on
    start like the default). Asks the database alone, before any model loads."""
    cid = slug(name)
    if cid not in loaded_ids(db) and not (DEMO_CHARACTERS / cid).is_dir():
        raise CharacterError(f"no character named '{cid}' (see greenroom character list)")


def _origin(source: dict) -> str:
    """Where a character's file lives, for telling two different characters of one name apart."""
    if "upload" in source:
        return f"the file {source['upload']} sent in chat" + (f" from {source['url']}" if source.get("url") else "")
    return source.get("path", "")
