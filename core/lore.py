"""Keyword-triggered lore: which lorebook entries enter this turn's prompt.

The books are the character's own (a card's `character_book`) and every lorebook attached to the
character or the chat, normalised by `memory.lorebooks`. An entry is inserted when one of its keys
appears in the scanned text (the user's message and the last ``scan_depth`` turns, the entry's own
depth else its book's, default 2), and, for a ``selective`` entry with secondary keys, when they
pass its ``selective_logic`` (and_any, not_all, not_any, and_all); ``constant`` entries always are;
disabled ones never. Then a ``probability`` below 100 is a roll each turn. Matching ignores case
unless the entry says otherwise; ``match_whole_words`` wants word boundaries (CJK keys: a plain
substring); ``/pattern/flags`` keys are regular expressions. All regex work of a turn shares
`REGEX_BUDGET`; a key that runs past `REGEX_TIMEOUT` once is off for the rest of the process, and
a stored key that no longer passes `memory.lorebooks.regex_key` is matched as plain text.

All books share one token budget: the largest book's ``token_budget``, else `DEFAULT_BUDGET`; a
chat's own book (``owner`` a chat) cannot lift it past the largest of `DEFAULT_BUDGET`, the
character's own book's and bot-wide books' budgets; and never past a quarter of the model's
context (`MAX_BUDGET` when the context is not given). Entries go in by ``insertion_order`` (ties:
the earlier book first) while they fit, before or after the persona as their ``position`` says,
with ``{{char}}`` and ``<BOT>`` as the name the character speaks as.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import regex

from greenroom.core.cleanup import CJK
from greenroom.memory.cards import fill_names
from greenroom.memory.lorebook_store import BOT_WIDE
from greenroom.memory.lorebooks import MAX_REGEX_KEYS, is_regex_key, regex_key

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 400
MAX_BUDGET = 2_000  # tokens, when the model's context is not known
DEFAULT_SCAN_DEPTH = 2
REGEX_TIMEOUT = 0.05  # seconds one match of a /regex/ key may take before the key is turned off
REGEX_BUDGET = 0.2  # seconds of /regex/ work (compiling and matching) per turn, all keys together
# An entry longer than this many characters per token left is not tokenized (it cannot fit), and a
# turn tokenizes at most twice the characters its budget could hold at this rate.
MAX_CHARS_PER_TOKEN = 16
_disabled: set[str] = set()  # keys that timed out once: no match for the rest of the process


@lru_cache(maxsize=MAX_REGEX_KEYS * 64)  # 64 books at the cap; a miss costs the turn's regex budget
def _pattern(key: str) -> regex.Pattern[str] | None:
    """A ``/pattern/flags`` key compiled, or None for a plain key (and for one stored before its
    pattern was checked that does not pass now, logged once)."""
    try:
        return regex_key(key)
    except regex.error as e:
        log.warning("lore key %s is not a usable regular expression (%s): matched as plain text", key[:60], e)
        return None


class _Scan:
    """One turn's scanned text at each depth, lowercased once, and its regex time left."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts
        self.deadline = time.monotonic() + REGEX_BUDGET
        self._at: dict[int, tuple[str, str]] = {}

    def text(self, depth: int) -> tuple[str, str]:
        """The user's message and the last ``depth`` turns (a user line and a reply each), as is
        and lowercased."""
        if depth not in self._at:
            text = "\n".join(self.texts[-(depth * 2 + 1) :])
            self._at[depth] = (text, text.lower())
        return self._at[depth]

    def regex_hit(self, key: str, text: str) -> bool | None:
        """Whether a regex key matches (False once the turn's budget is spent or the key is off);
        None for a plain key."""
        if not is_regex_key(key):
            return None
        timeout = min(REGEX_TIMEOUT, self.deadline - time.monotonic())
        if key in _disabled or timeout <= 0:
            return False
        pattern = _pattern(key)
        if pattern is None:
            return None
        try:
            return pattern.search(text, timeout=timeout) is not None
        except TimeoutError:
            if timeout >= REGEX_TIMEOUT:
                _disabled.add(key)
                log.warning(
                    "lore key %s took over %.0f ms on a message: no match from now on", key[:60], REGEX_TIMEOUT * 1000
                )
            return False


def _key_hit(scan: _Scan, key: str, depth: int, case_sensitive: bool, whole_words: bool) -> bool:
    text, lowered = scan.text(depth)
    if (hit := scan.regex_hit(key, text)) is not None:
        return hit
    if not case_sensitive:
        key, text = key.lower(), lowered
    if key not in text:
        return False
    if not whole_words or CJK.search(key):
        return True
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text) is not None


def _passes(entry: dict[str, Any], scan: _Scan, depth: int) -> bool:
    """Whether a non-constant entry's keys (and secondary keys) trigger it on the scanned text."""
    case, whole = bool(entry.get("case_sensitive")), bool(entry.get("match_whole_words"))
    if not any(_key_hit(scan, k, depth, case, whole) for k in entry.get("keys", []) if k):
        return False
    secondary = [k for k in entry.get("secondary_keys") or [] if k]
    if not entry.get("selective") or not secondary:
        return True
    hits = [_key_hit(scan, k, depth, case, whole) for k in secondary]
    logic = entry.get("selective_logic", "and_any")
    return {"and_any": any(hits), "not_all": not all(hits), "not_any": not any(hits), "and_all": all(hits)}[logic]


def token_budget(books: Sequence[dict[str, Any]], context: int | None = None) -> int:
    """The tokens all books' entries share this turn (see the module's note)."""
    asked = [int(b["token_budget"]) for b in books if b.get("token_budget")]
    trusted = [int(b["token_budget"]) for b in books if b.get("token_budget") and b.get("owner", BOT_WIDE) == BOT_WIDE]
    ceiling = context // 4 if context else MAX_BUDGET
    return min(max(asked, default=DEFAULT_BUDGET), max([DEFAULT_BUDGET, *trusted]), ceiling)


def select_lore(
    books: Sequence[dict[str, Any]],
    texts: Sequence[str],
    count: Callable[[str], int],
    speaker: str = "",
    context: int | None = None,
    roll: Callable[[], float] = random.random,
) -> tuple[str, str]:
    """The (before persona, after persona) lore text for this turn. ``speaker`` is the name the
    character speaks as (``{{char}}``), ``context`` the model's context in tokens, ``roll`` gives
    0 <= x < 1 for entries with a probability."""
    scan = _Scan(texts)
    chosen: list[tuple[float, int, int, dict[str, Any]]] = []
    for rank, book in enumerate(books):
        book_depth = book.get("scan_depth")
        for at, entry in enumerate(book.get("entries", [])):
            if not entry.get("enabled", True) or not entry.get("content"):
                continue
            depth = next((d for d in (entry.get("scan_depth"), book_depth) if d is not None), DEFAULT_SCAN_DEPTH)
            if not entry.get("constant") and not _passes(entry, scan, int(depth)):
                continue
            if entry.get("probability", 100) < 100 and roll() * 100 >= entry["probability"]:
                continue
            chosen.append((entry.get("insertion_order", 0), rank, at, entry))
    chosen.sort(key=lambda c: c[:3])
    budget = token_budget(books, context)
    before: list[str] = []
    after: list[str] = []
    used = 0
    work = budget * MAX_CHARS_PER_TOKEN * 2  # characters left to tokenize this turn
    for *_, entry in chosen:
        if used >= budget or work <= 0:
            break
        content = fill_names(entry["content"], speaker) if speaker else entry["content"]
        if len(content) > (budget - used) * MAX_CHARS_PER_TOKEN:
            continue
        work -= len(content)
        cost = count(content)
        if used + cost > budget:
            continue
        used += cost
        (before if entry.get("position") == "before_char" else after).append(content)
    return "\n".join(before), "\n".join(after)
