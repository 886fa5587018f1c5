"""Lorebook files: a World Info or character_book `.json`, or the book inside a character card
(`.json`, `.png`, `.charx`), read and normalised by `lorebooks.read_book`; and the one-line answer
for a lorebook given where a character card belongs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenroom.memory.card_files import CARD_SUFFIXES, read_card_file
from greenroom.memory.characters import json_object
from greenroom.memory.lorebooks import MAX_FILE_BYTES, LoreError, entry_count, is_lorebook, read_book


def read_lorebook_file(path: Path) -> tuple[dict[str, Any], str]:
    """A lorebook file, normalised, and a note on what was read. A character card's embedded book
    is read alone (not the character); a card without one is refused, pointing at `character load`."""
    where = path.name
    if not path.is_file():
        raise LoreError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise LoreError(f"{where}: over the {MAX_FILE_BYTES // 1_000_000} MB limit for a lorebook file")
    suffix = path.suffix.lower()
    if suffix not in CARD_SUFFIXES:
        raise LoreError(f"{where}: a lorebook is a .json file (World Info or a character_book), or a card's book")
    data = json_object(path.read_bytes(), where) if suffix == ".json" else read_card_file(path)[0]
    if is_lorebook(data):
        book = read_book(data, where)
        return book, f"read a lorebook with {len(book['entries'])} entries"
    fields = data["data"] if isinstance(data.get("data"), dict) else data
    if not fields.get("character_book"):
        raise LoreError(
            f"{where} is a character card, not a lorebook; load it with `greenroom character load {where}` "
            "(in chat: /character load)"
        )
    book = read_book(fields["character_book"], where, "character_book")
    book["name"] = book["name"] or str(fields.get("name") or "")
    return book, f"read only the lorebook inside the character card ({len(book['entries'])} entries)"


def not_a_card(data: dict[str, Any], where: str) -> None:
    """Refuse a lorebook given as a character card, saying what it is and what loads it."""
    if is_lorebook(data):
        raise LoreError(
            f"{where} is a lorebook (World Info) with {entry_count(data)} entries, not a character card; "
            f"load it with `greenroom lore load {where} --character NAME` (in chat: /lore load)"
        )
