"""Keyword-triggered lore: which lorebook entries enter this turn's prompt.

The books are the character's own (a card's `character_book`) and every lorebook attached to the
character or the chat, normalised by `memory.lorebooks`. An entry is inserted when one of its keys
appears in the scanned text (the user's message and the last ``scan_depth`` turns, the entry's own
depth else its book's, default 2), and, for a ``selective`` entry with secondary keys, when they
pass its ``selective_logic`` (and_any, not_all, not_any, and_all); ``constant`` entries always are;
disabled ones never. Then a ``probability`` below 100 is a roll each turn. Matching ignores case
unless the entry says otherwise; ``match_whole_words`` wants word boundaries (CJK keys: a plain
substring); ``/pattern/flags`` keys are regular expressions with a time limit per match.

All books share one token budget (the largest book's ``token_budget``, else the default); entries
go in by ``insertion_order`` (ties: the earlier book first) while they fit, before or after the
persona as their ``position`` says, with ``{{char}}`` and ``<BOT>`` as the character's name.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import regex

from greenroom.core.cleanup import CJK
from greenroom.memory.cards import fill_names
from greenroom.memory.lorebooks import regex_key

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 400
DEFAULT_SCAN_DEPTH = 2
REGEX_TIMEOUT = 0.05  # seconds per match of a /regex/ key
_timed_out: set[str] = set()  # keys whose time-out was logged already


@lru_cache(maxsize=4096)
def _pattern(key: str) -> regex.Pattern[str] | None:
    """A ``/pattern/flags`` key compiled (checked at load), or None for a plain key."""
    return regex_key(key)


def _key_hit(key: str, text: str, case_sensitive: bool, whole_words: bool) -> bool:
    pattern = _pattern(key)
    if pattern is not None:
        try:
            return pattern.search(text, timeout=REGEX_TIMEOUT) is not None
        except TimeoutError:
            if key not in _timed_out:
                _timed_out.add(key)
                log.warning("lore key %s took over %.0f ms on a message: taken as no match", key, REGEX_TIMEOUT * 1000)
            return False
    if not case_sensitive:
        key, text = key.lower(), text.lower()
    if not whole_words or CJK.search(key):
        return key in text
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text) is not None


def _passes(entry: dict[str, Any], text: str) -> bool:
    """Whether a non-constant entry's keys (and secondary keys) trigger it on ``text``."""
    case, whole = bool(entry.get("case_sensitive")), bool(entry.get("match_whole_words"))
    if not any(_key_hit(k, text, case, whole) for k in entry.get("keys", []) if k):
        return False
    secondary = [k for k in entry.get("secondary_keys") or [] if k]
    if not entry.get("selective") or not secondary:
        return True
    hits = [_key_hit(k, text, case, whole) for k in secondary]
    logic = entry.get("selective_logic", "and_any")
    return {"and_any": any(hits), "not_all": not all(hits), "not_any": not any(hits), "and_all": all(hits)}[logic]


def _scanned(texts: Sequence[str], depth: int) -> str:
    """The user's message and the last ``depth`` turns (a user line and a reply each)."""
    return "\n".join(texts[-(depth * 2 + 1) :])


def select_lore(
    books: Sequence[dict[str, Any]],
    texts: Sequence[str],
    count: Callable[[str], int],
    name: str = "",
    roll: Callable[[], float] = random.random,
) -> tuple[str, str]:
    """The (before persona, after persona) lore text for this turn; ``roll`` gives 0 <= x < 1 for
    entries with a probability."""
    chosen: list[tuple[float, int, int, dict[str, Any]]] = []
    for rank, book in enumerate(books):
        book_depth = book.get("scan_depth")
        for at, entry in enumerate(book.get("entries", [])):
            if not entry.get("enabled", True) or not entry.get("content"):
                continue
            depth = next((d for d in (entry.get("scan_depth"), book_depth) if d is not None), DEFAULT_SCAN_DEPTH)
            if not entry.get("constant") and not _passes(entry, _scanned(texts, int(depth))):
                continue
            if entry.get("probability", 100) < 100 and roll() * 100 >= entry["probability"]:
                continue
            chosen.append((entry.get("insertion_order", 0), rank, at, entry))
    chosen.sort(key=lambda c: c[:3])
    budget = max((int(b["token_budget"]) for b in books if b.get("token_budget")), default=DEFAULT_BUDGET)
    before: list[str] = []
    after: list[str] = []
    used = 0
    for *_, entry in chosen:
        content = fill_names(entry["content"], name) if name else entry["content"]
        cost = count(content)
        if used + cost > budget:
            continue
        used += cost
        (before if entry.get("position") == "before_char" else after).append(content)
    return "\n".join(before), "\n".join(after)
