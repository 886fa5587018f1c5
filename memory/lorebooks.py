"""Lorebooks in every shape they travel in, read into one entry shape `core.lore` selects from.

Shapes: SillyTavern World Info JSON (``entries`` an object keyed by uid, or a list; ``key``,
``keysecondary``, ``order``, ``disable``, ``selectiveLogic``, ``position`` 0/1 ...), the Character
Card V2/V3 ``character_book`` (``keys``, ``secondary_keys``, ``insertion_order``, ``enabled``,
``position`` "before_char"/"after_char", SillyTavern's settings under ``extensions``), and a card's
embedded book in either naming. Nulls and missing optional fields take their defaults.

A normalised entry has ``keys``, ``secondary_keys``, ``content``, ``enabled``, ``insertion_order``,
``constant``, ``selective``, ``selective_logic`` (``and_any``, ``not_all``, ``not_any``,
``and_all``), ``position`` (``before_char``/``after_char``), ``probability`` (0-100),
``case_sensitive``, ``match_whole_words``, ``scan_depth`` (None: the book's), and ``name``,
``comment``, ``id`` when given. Books stored before these fields existed read with the defaults.
Keys written ``/pattern/flags`` (flags from ``gimsuy``, SillyTavern's rule) are regular expressions,
checked here and matched in `core.lore`; a key like ``/r/aww`` is plain text. A regex key over
`MAX_REGEX_LENGTH` characters, or whose counted repeats (``{n}``, ``{n,}``, ``{n,m}``) multiply past
`MAX_REPEATS`, is refused: compiling it could take seconds or all memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import regex

from greenroom.memory.characters import CharacterError

MAX_ENTRIES = 2_000
MAX_CONTENT = 20_000
MAX_FILE_BYTES = 10_000_000
MAX_CHAT_BOOKS = 20  # owned by one chat
MAX_KEYS = 50  # per entry, primary and secondary each
MAX_REGEX_KEYS = 100  # per book
MAX_REGEX_LENGTH = 200  # characters of a /pattern/flags key
MAX_REPEATS = 10_000  # product of a regex key's counted repeats
LOGIC = ("and_any", "not_all", "not_any", "and_all")  # SillyTavern's selectiveLogic 0..3
REGEX_KEY = regex.compile(r"^/(.+)/([gimsuy]*)$", regex.S)
REGEX_FLAGS = {"i": regex.I, "s": regex.S, "m": regex.M, "u": 0, "g": 0, "y": 0}
COUNTED = regex.compile(r"(?<!\\)\{(\d*),?(\d*)\}")  # {n} {n,} {n,m} {,m}


class LoreError(CharacterError):
    """A lorebook problem, naming the file (and entry) and what is wrong."""


def is_regex_key(key: str) -> bool:
    """Whether a key is written ``/pattern/flags``."""
    return REGEX_KEY.match(key) is not None


def regex_key(key: str) -> regex.Pattern[str] | None:
    """The compiled pattern of a ``/pattern/flags`` key (None for a plain key); raises `regex.error`
    for a pattern that does not compile or is too costly to."""
    found = REGEX_KEY.match(key)
    if not found:
        return None
    pattern, flags = found.groups()
    if len(key) > MAX_REGEX_LENGTH:
        raise regex.error(f"{len(key)} characters, over the limit of {MAX_REGEX_LENGTH}")
    repeats = 1
    for low, high in COUNTED.findall(pattern):
        repeats *= max(int(low or 0), int(high or 0), 1)
    if repeats > MAX_REPEATS:
        raise regex.error(f"its counted repeats multiply to over {MAX_REPEATS:,}")
    bits = 0
    for flag in flags:
        bits |= REGEX_FLAGS[flag]
    return regex.compile(pattern, bits)


def is_lorebook(data: dict[str, Any]) -> bool:
    """Whether a JSON object is a lorebook (World Info or a standalone book) rather than a card."""
    return "entries" in data and "spec" not in data and "data" not in data  # no card has top-level entries


def entry_count(data: dict[str, Any]) -> int:
    """How many entries a lorebook's ``entries`` holds (object or list)."""
    entries = data.get("entries")
    return len(entries) if isinstance(entries, dict | list) else 0


def read_book(
    book: Any, where: str, label: str = "lorebook", fill: Callable[[str], str] = lambda t: t
) -> dict[str, Any]:
    """A lorebook in any shape, checked and normalised; ``fill`` rewrites each entry's content."""
    if not isinstance(book, dict):
        raise LoreError(f"{where}: '{label}' must be an object with 'entries'")
    raw = book.get("entries") or []
    if isinstance(raw, dict):
        raw = list(raw.values())
    if not isinstance(raw, list):
        raise LoreError(f"{where}: '{label}' must be an object with an 'entries' list or object")
    if len(raw) > MAX_ENTRIES:
        raise LoreError(f"{where}: {len(raw):,} entries, over the limit of {MAX_ENTRIES:,} entries per lorebook")
    entries = [_entry(e, f"{where}: {label} entry {i}", fill) for i, e in enumerate(raw)]
    regexes = sum(is_regex_key(k) for e in entries for k in e["keys"] + e["secondary_keys"])
    if regexes > MAX_REGEX_KEYS:
        raise LoreError(f"{where}: {regexes} regular-expression keys, over the limit of {MAX_REGEX_KEYS} per lorebook")
    return {
        "name": _text(book, "name", where),
        "scan_depth": _whole(_first(book, "scan_depth", "scanDepth"), "scan_depth", where),
        "token_budget": _whole(book.get("token_budget"), "token_budget", where),
        "entries": entries,
    }


def _entry(entry: Any, where: str, fill: Callable[[str], str]) -> dict[str, Any]:
    """One entry in the normalised shape."""
    if not isinstance(entry, dict):
        raise LoreError(f"{where} must be an object")
    ext = entry.get("extensions") or {}
    if not isinstance(ext, dict):
        raise LoreError(f"{where}: 'extensions' must be an object")

    def pick(*names: str) -> Any:
        """The first non-null of ``names`` on the entry, then in its extensions."""
        value = _first(entry, *names)
        return value if value is not None else _first(ext, *names)

    keys, secondary = _keys(pick("keys", "key"), where), _keys(pick("secondary_keys", "keysecondary"), where)
    content = entry.get("content") or ""
    if not isinstance(content, str):
        raise LoreError(f"{where} needs 'keys' (a list) and 'content' (text)")
    if len(content) > MAX_CONTENT:
        raise LoreError(f"{where}: content of {len(content):,} characters, over the limit of {MAX_CONTENT:,}")
    logic = _whole(pick("selectiveLogic", "selective_logic"), "selectiveLogic", where) or 0
    if logic not in range(len(LOGIC)):
        raise LoreError(f"{where}: 'selectiveLogic' must be 0 to 3")
    probability = _number(pick("probability"), "probability", where)
    if probability is not None and not 0 <= probability <= 100:
        raise LoreError(f"{where}: 'probability' must be 0 to 100")
    uses = pick("useProbability", "use_probability")
    normal = {
        "keys": keys,
        "secondary_keys": secondary,
        "content": fill(content),
        "enabled": not pick("disable") if entry.get("enabled") is None else bool(entry["enabled"]),
        "insertion_order": _number(pick("insertion_order", "order"), "order", where) or 0,
        "constant": bool(pick("constant")),
        "selective": bool(pick("selective")),
        "selective_logic": LOGIC[logic],
        "position": _position(entry.get("position"), ext.get("position")),
        "probability": 100 if uses is False or probability is None else probability,
        "case_sensitive": bool(pick("case_sensitive", "caseSensitive")),
        "match_whole_words": bool(pick("match_whole_words", "matchWholeWords")),
        "scan_depth": _whole(pick("scan_depth", "scanDepth"), "scanDepth", where),
    }
    named = {k: entry[k] for k in ("name", "comment", "priority", "id") if entry.get(k) is not None}
    if "id" not in named and entry.get("uid") is not None:
        named["id"] = entry["uid"]
    return normal | named


def _keys(value: Any, where: str) -> list[str]:
    """A key list, each ``/regex/`` key compiled to check it."""
    keys = value or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise LoreError(f"{where} needs 'keys' (a list) and 'content' (text)")
    if len(keys) > MAX_KEYS:
        raise LoreError(f"{where}: {len(keys)} keys, over the limit of {MAX_KEYS} per entry")
    for key in keys:
        try:
            regex_key(key)
        except regex.error as e:
            shown = key if len(key) <= 60 else key[:57] + "..."
            raise LoreError(f"{where}: the key {shown} is not a usable regular expression ({e})") from None
    return [k for k in keys if k.strip()]


def _position(position: Any, extension: Any) -> str:
    """Before or after the persona: "before_char" or World Info's 0 before, anything else after."""
    value = position if position is not None else extension
    return "before_char" if value in ("before_char", 0) else "after_char"


def _number(value: Any, name: str, where: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LoreError(f"{where}: '{name}' must be a number")
    return value


def _first(data: dict[str, Any], *names: str) -> Any:
    """The first non-null of ``names`` in ``data``, or None."""
    return next((data[n] for n in names if data.get(n) is not None), None)


def _whole(value: Any, name: str, where: str) -> int | None:
    """A whole number >= 0, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LoreError(f"{where}: '{name}' must be a whole number, 0 or more")
    return value


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key) or ""
    if not isinstance(value, str):
        raise LoreError(f"{where}: '{key}' must be text")
    return value.strip()
