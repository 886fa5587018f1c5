"""The `{{macros}}` that SillyTavern and Chub character cards use, expanded in a card's text.

`expand(text, ctx)` follows docs.sillytavern.app ("Macros"):

- ``{{char}}``, ``{{user}}``: the character's and the user's names; ``{{newline}}``: "\\n".
- ``{{random::a::b}}`` / ``{{random:a,b}}``: one option, drawn anew at each occurrence (``ctx.rng``);
  the comma form trims its options and reads ``\\,`` as a literal comma. ``{{random}}``: "".
- ``{{pick::a::b}}`` / ``{{pick:a,b}}``: like random but stable: a SHA-256 of the chat key, the whole
  source text and the pick's occurrence index chooses, so a chat sees the same choice every time.
- ``{{roll:2d6+1}}``, ``{{roll:20}}`` (= 1d20): the total; more than 100 dice or 10^6 sides: left alone.
- ``{{time}}`` "3:07 PM", ``{{date}}`` "December 5, 2026", ``{{weekday}}`` "Saturday",
  ``{{isotime}}`` "15:07", ``{{isodate}}`` "2026-12-05" (moment.js's LT, LL, dddd, HH:mm and
  YYYY-MM-DD in English, as SillyTavern shows them), from ``ctx.now`` (UTC now when None).
- ``{{idle_duration}}``: ``ctx.idle_seconds`` humanised as moment.js does ("a few seconds",
  "a minute", "5 minutes", "an hour", "2 hours", "a day", "3 days", "a month", "a year", ...);
  "just now" when None.
- ``{{original}}``: "" (a card's ``system_prompt`` has it replaced by the default persona when the
  card loads, in `memory.cards`; anywhere else SillyTavern leaves it empty too).
- ``{{// comment}}``: removed; ``{{trim}}``: removed with the whitespace around it.

Names are case-insensitive and may have spaces inside the braces; unknown macros stay as written.
Nested macros expand innermost first in one left-to-right scan (no regex backtracking: linear time).
What an expansion produces is never scanned again: a user named "{{user}}{{user}}" stays that name,
and no text grows past what its macros put in once.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_DICE = 100
MAX_SIDES = 10**6

_BRACES = re.compile(r"\{\{|\}\}")
_TRIM = re.compile(r"\{\{\s*trim\s*\}\}", re.IGNORECASE)
_CHOICE = re.compile(r"(random|pick)\s*(::?)(.*)", re.IGNORECASE | re.DOTALL)
_ROLL = re.compile(r"roll(?:\s*::?|\s)(.*)", re.IGNORECASE | re.DOTALL)
_DICE = re.compile(r"(\d{1,4})?d(\d{1,8})([+-]\d{1,8})?|(\d{1,8})", re.IGNORECASE)
_COMMA = re.compile(r"(?<!\\),")

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class MacroContext:
    """What the macros read: names, the chat key (seeds pick), the clock, idle time."""

    char: str
    user: str
    chat: str = ""
    now: datetime | None = None
    idle_seconds: float | None = None
    rng: random.Random | None = None


def expand(text: str, ctx: MacroContext) -> str:
    """``text`` with its macros expanded."""
    return _trim(_Run(text, ctx).scan(text))


def _trim(text: str) -> str:
    """Remove each ``{{trim}}`` with the whitespace on both sides of it."""
    parts = _TRIM.split(text)
    if len(parts) == 1:
        return text
    middle = [part.strip() for part in parts[1:-1]]
    return "".join([parts[0].rstrip(), *middle, parts[-1].lstrip()])


def _round(x: float) -> int:
    """JavaScript's Math.round: halves go up."""
    return math.floor(x + 0.5)


def _humanize(seconds: float | None) -> str:
    """A duration in moment.js's ``humanize()`` words (its default thresholds, English)."""
    if seconds is None or not math.isfinite(seconds):
        return "just now"
    days = abs(seconds) / 86400
    months = days * 4800 / 146097  # moment's days-to-months over the 400-year cycle
    units = (
        (_round(days * 1440), 45, "a minute", "minutes"),
        (_round(days * 24), 22, "an hour", "hours"),
        (_round(days), 26, "a day", "days"),
        (_round(months), 11, "a month", "months"),
    )
    if _round(abs(seconds)) <= 44:
        return "a few seconds"
    for count, below, one, many in units:
        if count <= 1:
            return one
        if count < below:
            return f"{count} {many}"
    years = _round(months / 12)
    return "a year" if years <= 1 else f"{years} years"


class _Run:
    """One `expand` call: the state its macros share (pick's occurrence count)."""

    def __init__(self, source: str, ctx: MacroContext) -> None:
        self.source, self.ctx = source, ctx
        self.rng = ctx.rng or random.Random()
        self.now = ctx.now or datetime.now(UTC)
        self.picks = 0

    def scan(self, text: str) -> str:
        """One left-to-right pass: each ``}}`` closes the latest open ``{{``, whose body (its inner
        macros already expanded) is expanded in turn; unmatched braces stay as they are."""
        stack: list[list[str]] = [[]]
        start = 0
        for match in _BRACES.finditer(text):
            stack[-1].append(text[start : match.start()])
            start = match.end()
            if match.group() == "{{":
                stack.append([])
            elif len(stack) > 1:
                body = "".join(stack.pop())
                value = self.macro(body)
                stack[-1].append("{{" + body + "}}" if value is None else value)
            else:
                stack[-1].append("}}")
        stack[-1].append(text[start:])
        return "{{".join("".join(frame) for frame in stack)

    def macro(self, body: str) -> str | None:
        """The value of ``{{body}}``; None leaves it as written."""
        key = body.strip()
        if key.startswith("//"):
            return ""
        name = key.lower()
        if name == "original":
            return ""
        if name in ("random", "pick"):
            return ""
        simple = self.simple(name)
        if simple is not None:
            return simple
        if choice := _CHOICE.fullmatch(key):
            return self.choose(choice.group(1).lower(), choice.group(2), choice.group(3))
        if roll := _ROLL.fullmatch(key):
            return self.roll(roll.group(1))
        return None

    def simple(self, name: str) -> str | None:
        """The macros without arguments."""
        now = self.now
        match name:
            case "char":
                return self.ctx.char
            case "user":
                return self.ctx.user
            case "newline":
                return "\n"
            case "time":
                return f"{now.hour % 12 or 12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"
            case "date":
                return f"{_MONTHS[now.month - 1]} {now.day}, {now.year}"
            case "weekday":
                return _WEEKDAYS[now.weekday()]
            case "isotime":
                return f"{now.hour:02d}:{now.minute:02d}"
            case "isodate":
                return f"{now.year:04d}-{now.month:02d}-{now.day:02d}"
            case "idle_duration":
                return _humanize(self.ctx.idle_seconds)
        return None

    def choose(self, kind: str, separator: str, rest: str) -> str:
        """random (drawn from the rng) or pick (stable for this chat, text and occurrence)."""
        if separator == "::":
            options = rest.split("::")
        else:
            options = [option.replace("\\,", ",").strip() for option in _COMMA.split(rest)]
        if kind == "random":
            return self.rng.choice(options)
        key = f"{self.ctx.chat}\0{self.picks}\0{self.source}".encode("utf-8", "surrogatepass")
        self.picks += 1
        digest = hashlib.sha256(key).digest()
        return options[int.from_bytes(digest[:8], "big") % len(options)]

    def roll(self, formula: str) -> str | None:
        """The total of ``NdS+M`` (or a bare ``S``, one die); None for a formula out of bounds."""
        dice = _DICE.fullmatch("".join(formula.split()))
        if dice is None:
            return None
        count_text, sides_text, modifier, bare = dice.groups()
        count = int(count_text) if count_text else 1
        sides = int(bare or sides_text)
        if not (1 <= count <= MAX_DICE and 1 <= sides <= MAX_SIDES):
            return None
        total = sum(self.rng.randint(1, sides) for _ in range(count))
        return str(total + int(modifier or 0))
