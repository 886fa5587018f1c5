"""Keyword-triggered lore (a card's `character_book`): which entries enter this turn's prompt.

An entry is inserted when one of its keys appears in the scanned text (the user's message and
the last `scan_depth` turns), and, for a `selective` entry, one of its secondary keys too;
`constant` entries always are. Matching ignores case unless the entry says otherwise.
Entries go in by `insertion_order` while they fit the book's token budget, before or after the
persona as their `position` says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _hit(keys: Sequence[str], text: str, case_sensitive: bool) -> bool:
    haystack = text if case_sensitive else text.lower()
    return any(k and (k if case_sensitive else k.lower()) in haystack for k in keys)


def select_lore(
    book: dict[str, Any], texts: Sequence[str], count: Callable[[str], int], default_budget: int = 400
) -> tuple[str, str]:
    """The (before persona, after persona) lore text for this turn."""
    entries = book.get("entries", [])
    depth = int(book.get("scan_depth") or 2)
    scanned = "\n".join(texts[-(depth * 2 + 1) :])
    chosen = []
    for entry in entries:
        if not entry.get("enabled", True) or not entry.get("content"):
            continue
        case = bool(entry.get("case_sensitive"))
        if entry.get("constant") or (
            _hit(entry.get("keys", []), scanned, case)
            and (
                not entry.get("selective")
                or not entry.get("secondary_keys")
                or _hit(entry["secondary_keys"], scanned, case)
            )
        ):
            chosen.append(entry)
    chosen.sort(key=lambda e: e.get("insertion_order", 0))
    budget = int(book.get("token_budget") or default_budget)
    before: list[str] = []
    after: list[str] = []
    used = 0
    for entry in chosen:
        cost = count(entry["content"])
        if used + cost > budget:
            continue
        used += cost
        (before if entry.get("position") == "before_char" else after).append(entry["content"])
    return "\n".join(before), "\n".join(after)
