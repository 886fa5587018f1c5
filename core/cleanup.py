"""What the chat shows of a model's reply: no wrapper, no echo, no loop, no cut-off sentence.

Small models (SmolLM2-135M, Qwen 0.5B) write `Name:「…」` around their line, restate the user's
question before (or instead of) answering it, repeat a clause until the token limit, stop
mid-sentence there, and go on to write the next speaker's line. `Cleanup` turns the raw text into
what the user reads: while it streams (holding back what may still turn out to be a wrapper, an
echo, a stop string or a repeat) and once it is complete. English and Chinese punctuation alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from greenroom.core.prompt import response_postprocess, strip_wrapper

CLOSERS = "」』”’\"'）)】]"
_CLOSE = f"[{re.escape(CLOSERS)}]*"
# 。！？ end a sentence anywhere; . ! ? … only before a space or the end; closing quotes go with them
SENTENCE_END = re.compile(rf"(?:[。！？]+[.!?…。！？]*|[.!?…]+(?={_CLOSE}(?:\s|$))){_CLOSE}")
SEPARATOR = r"[,，、;；.!?…。！？\n]"
CLAUSE_BREAK = re.compile(rf"((?:{SEPARATOR}{_CLOSE}\s*)+)")
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "mt", "prof", "sr", "jr", "vs"}
MARKS = (":", "：", "「")  # after a speaker's name: `Name:`, `Name：`, `Name「`
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
ECHO_MIN = 8  # a shorter message (weighing a CJK character as two) may be echoed naturally: "Hi!" "Hi!"
ECHO_SIMILAR = 0.75  # difflib ratio of the compared letters from which a reply's start is a copy


def key(text: str) -> str:
    """The letters, digits and CJK characters of ``text``, case-folded: what texts are compared by."""
    return re.sub(r"[\W_]+", "", text.casefold())


def _weight(letters: str) -> int:
    return len(letters) + len(CJK.findall(letters))


def _similar(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def sentence_ends(text: str) -> list[int]:
    """Offsets just after each complete sentence ("Mr." and the like end none)."""
    ends = []
    for match in SENTENCE_END.finditer(text):
        word = re.search(r"(\w+)$", text[: match.start()])
        if match.group().startswith(".") and word and word.group(1).lower() in ABBREVIATIONS:
            continue
        ends.append(match.end())
    return ends


def clauses(text: str) -> list[tuple[str, str]]:
    """``text`` as (clause, the separators and spaces after it) pairs; the last one's may be empty."""
    parts = CLAUSE_BREAK.split(text)
    return list(zip(parts[::2], [*parts[1::2], ""], strict=True))


def cut_repeats(text: str, longest: int = 3) -> str:
    """A clause, or a run of up to ``longest`` clauses, said twice or more in a row is kept once; an
    unfinished copy of the clause before it at the end goes too ("我挺高兴的，我挺高" keeps the first)."""
    kept: list[tuple[str, str]] = []
    for clause, after in clauses(text):
        kept.append((clause, after))
        for n in range(1, longest + 1):
            run = [key(c) for c, _ in kept[-n:]]
            if len(kept) >= 2 * n and all(run) and run == [key(c) for c, _ in kept[-2 * n : -n]]:
                del kept[-n:]
                if n == 1:  # "fine, fine." keeps the stronger end: "fine."
                    kept[-1] = (kept[-1][0], after or kept[-1][1])
                break
    if len(kept) >= 2 and not kept[-1][1]:
        last, before = key(kept[-1][0]), key(kept[-2][0])
        if last and before.startswith(last):
            kept.pop()
    return "".join(c + a for c, a in kept)


def trim_to_sentence(text: str) -> str:
    """``text`` up to its last complete sentence; with none, up to its last clause break (if that keeps
    most of it), marked unfinished: "…"."""
    text = text.rstrip()
    if not text:
        return text
    if ends := sentence_ends(text):
        return text[: ends[-1]]
    cut = max((m.start() for m in re.finditer("[,，、;；…]", text)), default=0)
    if cut >= len(text) / 2:  # the last clause break, unless that drops most of it
        text = text[:cut]
    return text.rstrip().rstrip(",，、;；…") + "…"


def _drop_speaker(text: str, names: Sequence[str]) -> str:
    """``text`` without a leading `Name:` / `Name：` / `Name「` (and an opening 「) of one of ``names``."""
    for name in names:
        for mark in MARKS:
            if name and text.startswith(name + mark):
                return text[len(name) + 1 :].lstrip().removeprefix("「").lstrip()
    return text


def remove_echo(text: str, said: str, names: Sequence[str] = ()) -> str:
    """``text`` without a leading near copy of ``said`` (after a `Name:` of ``names`` or not), which
    ends at a clause or sentence break; ``text`` itself when it does not start with one."""
    target = key(said)
    if _weight(target) < ECHO_MIN:
        return text
    body = _drop_speaker(text.strip(), names)
    best, cut = 0.0, None
    for end in [m.end() for m in CLAUSE_BREAK.finditer(body)] + [len(body)]:
        head = key(body[:end])
        if len(head) > 1.5 * len(target) + 2:
            break
        if head and (score := _similar(head, target)) >= ECHO_SIMILAR and score > best:
            best, cut = score, end  # the closest copy: the earliest of equals
    return text if cut is None else body[cut:].lstrip()


def could_be_echo(text: str, said: str, names: Sequence[str] = ()) -> bool:
    """Whether a reply that starts with ``text`` may still turn out to be an echo of ``said``."""
    target = key(said)
    if _weight(target) < ECHO_MIN:
        return False
    start = text.strip()
    if any((name + mark).startswith(start) for name in names if name for mark in MARKS):
        return True
    head = key(_drop_speaker(start, names))
    return len(head) <= 1.5 * len(target) + 2 and _similar(head, target[: len(head)]) >= ECHO_SIMILAR


def join_prime(prime: str, generated: str) -> str:
    """The reply as written after ``prime``; a model that was not primed and began with the prime's
    words itself (a server that cannot continue a message) does not get them twice."""
    letters = key(prime)
    return generated if letters and key(generated).startswith(letters) else prime + generated


@dataclass(frozen=True)
class Cleanup:
    """Cleaning one reply: the character's ``names`` (its wrapper), the user's message ``said`` and
    their in-story ``users`` names (an echo), and the turn's ``stops``."""

    names: Sequence[str]
    said: str
    users: Sequence[str] = ()
    stops: Sequence[str] = ()

    def at_stop(self, generated: str) -> str | None:
        """``generated`` up to the first stop string in it, or None when there is none."""
        found = [i for stop in self.stops if stop and (i := generated.find(stop)) >= 0]
        return generated[: min(found)] if found else None

    def _line(self, raw: str) -> str:
        return strip_wrapper(response_postprocess(raw.strip()), self.names)

    def partial(self, raw: str, ending: bool = False) -> str:
        """What to show of a reply still streaming: nothing that may yet prove a wrapper, an echo, a
        stop string or a repeat; when the token limit is near (``ending``), no unfinished sentence."""
        longest = max((len(stop) for stop in self.stops), default=0)
        for i in range(max(0, len(raw) - longest), len(raw)):  # a stop string may be on its way
            if any(stop.startswith(raw[i:]) for stop in self.stops):
                raw = raw[:i]
                break
        start = raw.strip()
        if any((name + mark).startswith(start) for name in self.names if name for mark in MARKS):
            return ""
        text = self._line(raw)
        rest = remove_echo(text, self.said, self.users)
        if rest == text and could_be_echo(text, self.said, self.users):
            return ""
        rest = cut_repeats(rest)
        ends = sentence_ends(rest) if ending else []
        return rest[: ends[-1]] if ends else rest

    def echo_only(self, raw: str) -> bool:
        """Whether the reply says nothing but (a near copy of) the user's message."""
        text = self._line(raw)
        return bool(key(text)) and not key(remove_echo(text, self.said, self.users))

    def final(self, raw: str, truncated: bool = False) -> str:
        """The reply to show: wrapper, echo (unless that is all there is) and repeats removed; ended at
        its last complete sentence when the token limit cut it (``truncated``)."""
        text = self._line(raw)
        rest = remove_echo(text, self.said, self.users)
        text = cut_repeats(rest if key(rest) else text).strip()
        return trim_to_sentence(text) if truncated else text
