"""Lorebooks as their own objects: loading (path, link, file sent in chat), finding, attaching to
a character or a chat, and removing; one service for the chat commands and the command line.

A book belongs to its owner: bot-wide ("") or the chat it was loaded in. A chat sees, uses and
removes only bot-wide books and its own; a book attached to a character is bot-wide, since a
character answers in every chat.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from greenroom.core.config import FetchSection
from greenroom.core.events import Attachment
from greenroom.core.incoming import fetch_file, staged
from greenroom.memory.characters import slug
from greenroom.memory.db import Database
from greenroom.memory.library import loaded_ids
from greenroom.memory.lorebook_files import read_lorebook_file
from greenroom.memory.lorebook_store import BOT_WIDE, CHARACTER, CHAT, Lorebook, LorebookStore
from greenroom.memory.lorebooks import MAX_CHAT_BOOKS, LoreError


class Lorebooks:
    """The lorebook use-cases over the store."""

    def __init__(self, store: LorebookStore, db: Database, fetch: FetchSection) -> None:
        self.store = store
        self.db = db
        self.fetch = fetch

    def load(
        self,
        path: Path,
        owner: str = BOT_WIDE,
        name: str | None = None,
        character: str | None = None,
        chat: str | None = None,
    ) -> str:
        """Read a lorebook file, keep it under ``owner`` (bot-wide when it is for a ``character``;
        replacing a book of the same name there), attach it to ``character`` and/or ``chat``; says
        what was done."""
        cid = slug(character) if character else None
        if cid and cid not in loaded_ids(self.db):
            raise LoreError(f"no character named '{cid}' (see the character list)")
        owner = BOT_WIDE if cid else owner
        book, note = read_lorebook_file(Path(path).expanduser())
        book_id = slug(name or book["name"] or Path(path).stem)
        self.store.keep(owner, book_id, book, Path(path).name, None if owner == BOT_WIDE else MAX_CHAT_BOOKS)
        places = []
        if cid:
            self.store.attach(owner, book_id, CHARACTER, cid)
            places.append(f"the character {cid}")
        if chat:
            self.store.attach(owner, book_id, CHAT, chat)
            places.append("this chat" if chat == owner else f"the chat {chat}")
        where = f"attached to {' and '.join(places)}" if places else "attached to nothing yet"
        return f"Loaded the lorebook {book_id} ({note}), {where}."

    async def load_upload(self, attachment: Attachment, owner: str, **target: str | None) -> str:
        """Load a lorebook file sent in chat."""
        return await self._load_bytes(attachment.filename, await attachment.read(), owner, **target)

    async def load_url(self, url: str, owner: str, **target: str | None) -> str:
        """Load a lorebook from a link, through the safe fetcher."""
        filename, data = await fetch_file(self.fetch, url, "lorebook.json")
        return await self._load_bytes(filename, data, owner, **target)

    async def _load_bytes(self, filename: str, data: bytes, owner: str, **target: str | None) -> str:
        with staged(filename, data, "lorebook.json") as path:
            return await asyncio.to_thread(self.load, path, owner, **target)

    def visible(self, chat: str | None) -> list[Lorebook]:
        """Bot-wide books and the chat's own (None: every book, for the command line)."""
        return self.store.listing(None if chat is None else (BOT_WIDE, chat))

    def find(self, name: str, chat: str | None) -> Lorebook:
        """The chat's own book of that name, else the bot-wide one (``chat`` None: bot-wide only)."""
        book_id = slug(name)
        books = {(b.owner, b.id): b for b in self.store.listing((BOT_WIDE,) if chat is None else (BOT_WIDE, chat))}
        found = books.get((chat or BOT_WIDE, book_id)) or books.get((BOT_WIDE, book_id))
        if found is None:
            raise LoreError(f"no lorebook named '{book_id}'" + (" here (see /lore list)" if chat else ""))
        return found

    def owned(self, name: str, owner: str) -> Lorebook:
        """The book of that name owned by ``owner`` exactly (bot-wide, or a chat), for the command line."""
        book_id = slug(name)
        found = next((b for b in self.store.listing((owner,)) if b.id == book_id), None)
        if found is None:
            raise LoreError(f"no lorebook named '{book_id}' " + (f"of the chat {owner}" if owner else "bot-wide"))
        return found

    def use(self, name: str, chat: str) -> Lorebook:
        """Attach a bot-wide book, or the chat's own, to the chat."""
        book = self.find(name, chat)
        self.store.attach(book.owner, book.id, CHAT, chat)
        return book

    def detach(self, book: Lorebook, chat: str) -> bool:
        """Stop using a book in the chat; whether it was used there."""
        return self.store.detach(book.owner, book.id, CHAT, chat)

    def remove(self, book: Lorebook) -> None:
        """Remove a book everywhere it is attached."""
        self.store.remove(book.owner, book.id)
