"""ChatHaruhi prompt assembly: system prompt + retrieved stories + history + the user's line.

Two modes:

- ``haruhi2`` reproduces ChatHaruhi 2.0: the system prompt; the stories greedily packed in
  rank order under the story budget (cost = tokens(story) + tokens("\\n###\\n"), stopping at
  the first that does not fit) as their own user message after "Classic scenes for the role
  are as follows:\\n"; the history tail within the history budget (if even the newest pair
  is too long, no history; 2.0 sent all of it); then ``{role}:「{text}」``.
- ``chat`` (default for small local models): what stays between turns comes first, so that
  a follow-up reuses the model's cache: the system prompt, then strictly alternating
  user/assistant turns, then one user message with this turn's scenes and the user's own
  words (`scene_block`). Alternation fits local chat templates better.

Both can carry recalled memories (`memory_block`: turns that left the history window, with who
said them and when): in ``chat`` mode in the final user message between the scenes and the
user's words, so the system prompt and history stay a stable prefix; in ``haruhi2`` mode after
the scenes in the scenes' message, so ChatHaruhi's order (context, history, query) holds.

Both keep the budgets inside the model's context: stories first, then memories, then history,
and stop the reply where the model starts a line of anyone who speaks in the prompt
(`stop_strings`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

STORY_PREFIX = "Classic scenes for the role are as follows:\n"
MEMORY_PREFIX = "Said earlier in this conversation (from memory):\n"
DIVIDER = "\n###\n"
NARRATORS = ("旁白", "", "scene", "Scene", "narrator", "Narrator")
LINE = re.compile(r"^(.*?)[:：]「(.*?)」$")
SPEAKER = re.compile(r"^([^\n:：「」]{1,32}?)[:：]「", re.M)  # a story line's speaker
CONTEXT_MARGIN = 16


@dataclass(frozen=True)
class StoryRef:
    id: str
    text: str
    tokens: int
    score: float


@dataclass(frozen=True)
class PastTurn:
    speaker: str
    user_text: str
    reply: str
    reply_raw: str
    turn: int = 0  # its id in the history (memories of turns the prompt's history holds are left out)


@dataclass(frozen=True)
class Recalled:
    """A remembered turn as the prompt shows it (`memory_lines`)."""

    turn: int
    speaker: str
    text: str
    tokens: int
    score: float


@dataclass(frozen=True)
class Budgets:
    story: int = 1500
    history: int = 1200
    context: int = 2048
    reply: int = 160
    memory: int = 0  # tokens of recalled memories
    memory_k: int = 0  # recalled memories at most


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    stories: list[StoryRef] = field(default_factory=list)
    history_turns: int = 0
    stop: list[str] = field(default_factory=list)
    memories: list[Recalled] = field(default_factory=list)


def query_string(role: str, text: str) -> str:
    """ChatHaruhi's query: `role:「text」`, or `role:text` for narrator roles; this is what is embedded."""
    return f"{role}:{text}" if role in NARRATORS else f"{role}:「{text}」"


def pack_stories(stories: Sequence[StoryRef], budget: int, count: Callable[[str], int], start: int) -> list[StoryRef]:
    """ChatHaruhi 2.0 `add_story`: greedy prefix of the ranked stories within the budget."""
    used, packed, divider = start, [], count(DIVIDER)
    for story in stories:
        cost = story.tokens + divider
        if used + cost > budget:
            break
        used += cost
        packed.append(story)
    return packed


def history_tail(turns: Sequence[PastTurn], budget: int, cost: Callable[[PastTurn], int]) -> list[PastTurn]:
    """The newest turns whose summed cost stays within the budget (none if the newest is too long)."""
    used, kept = 0, 0
    for turn in reversed(turns):
        used += cost(turn)
        if used > budget:
            break
        kept += 1
    return list(turns[len(turns) - kept :]) if kept else []


def response_postprocess(text: str) -> str:
    """ChatHaruhi 2.0 `response_postprocess`: keep the first speaker's consecutive `Name:「…」` lines."""
    first, joined = None, ""
    for line in text.split("\n"):
        match = LINE.match(line.strip(" "))
        if match is None:
            return text if first is None else f"{first}:「{joined}」"
        if first is None:
            first = match.group(1)
        elif match.group(1) != first:
            break
        joined += match.group(2)
    return f"{first}:「{joined}」" if first is not None else text


def strip_wrapper(text: str, names: Sequence[str] = ()) -> str:
    """What a chat shows: `Name:「line」` becomes `line`; a leading `Name:` or `Name「` of the character goes too."""
    text = text.strip()
    match = LINE.match(text)
    if match:
        return match.group(2).strip()
    for name in names:
        for mark in (":", "：", "「"):
            if name and text.startswith(name + mark):
                return text[len(name) + 1 :].strip().removeprefix("「").removesuffix("」").strip()
    return text


def stop_strings(*names: str) -> list[str]:
    """Where the model starts another line of one of ``names``: `\nName:`, `\nName：`, `\nName「`."""
    return list(dict.fromkeys(f"\n{n}{mark}" for n in names if n.strip() for mark in (":", "：", "「")))


def prompt_speakers(stories: Sequence[StoryRef], history: Sequence[PastTurn]) -> list[str]:
    """Everyone who speaks in the prompt's stories and history."""
    return [*(m.group(1).strip() for s in stories for m in SPEAKER.finditer(s.text)), *(t.speaker for t in history)]


def memory_lines(speaker: str, user_text: str, name: str, reply: str, said_at: float, brackets: bool) -> str:
    """One remembered turn: `[2026-12-03] Tom: line` then the character's reply, dated (UTC);
    ChatHaruhi's `Tom:「line」` with ``brackets``."""
    day = time.strftime("%Y-%m-%d", time.gmtime(said_at))

    def line(who: str, words: str) -> str:
        return f"[{day}] {who}:「{words}」" if brackets else f"[{day}] {who}: {words}"

    return f"{line(speaker, user_text)}\n{line(name, reply)}"


def memory_block(recalled: Sequence[Recalled]) -> str:
    """The recalled memories, oldest first, under their header (empty without any)."""
    ordered = sorted(recalled, key=lambda m: m.turn)
    return MEMORY_PREFIX + "".join(m.text + "\n" for m in ordered) + "\n" if recalled else ""


def _recall(
    budgets: Budgets,
    room: int,
    recalled: Sequence[Recalled],
    history: Sequence[PastTurn],
    history_cost: Callable[[PastTurn], int],
    count: Callable[[str], int],
) -> tuple[list[PastTurn], list[Recalled]]:
    """The history tail and the memories, both within the room left: room is set aside for the
    best memories first; those of turns the history then holds are left out (they are in it)."""

    def pack(candidates: Sequence[Recalled], budget: int) -> list[Recalled]:
        used, kept = count(MEMORY_PREFIX), list[Recalled]()
        for m in candidates:
            if len(kept) < budgets.memory_k and used + m.tokens + 1 <= budget:
                used += m.tokens + 1
                kept.append(m)
        return kept

    memory_room = min(budgets.memory, room)
    reserved = pack(recalled, memory_room)
    aside = count(memory_block(reserved)) if reserved else 0
    past = history_tail(history, min(budgets.history, max(room - aside, 0)), history_cost)
    oldest = min((t.turn for t in past), default=None)
    older = [m for m in recalled if oldest is None or m.turn < oldest]
    left = room - sum(history_cost(t) for t in past)
    return past, pack(older, min(memory_room, left))


def _fit(budgets: Budgets, fixed: int) -> tuple[int, int]:
    """Story and history budgets clamped so the prompt and the reply fit the context."""
    room = max(0, budgets.context - budgets.reply - CONTEXT_MARGIN - fixed)
    return min(budgets.story, room), room


def build_haruhi2(
    system_prompt: str,
    ranked: Sequence[StoryRef],
    history: Sequence[PastTurn],
    user_role: str,
    text: str,
    budgets: Budgets,
    count: Callable[[str], int],
    has_stories: bool = True,
    recalled: Sequence[Recalled] = (),
) -> Prompt:
    """ChatHaruhi 2.0's message order, exactly; recalled memories follow the scenes in their message."""
    query = query_string(user_role, text)
    story_budget, room = _fit(budgets, count(system_prompt) + count(query))
    packed: list[StoryRef] = []
    scenes = ""
    if has_stories:
        packed = pack_stories(ranked, story_budget, count, count(STORY_PREFIX))
        scenes = scene_block(packed) or STORY_PREFIX
        room -= count(scenes)
    past, kept = _recall(
        budgets,
        room,
        recalled,
        history,
        lambda t: count(query_string(t.speaker, t.user_text)) + count(t.reply_raw),
        count,
    )
    messages = [{"role": "system", "content": system_prompt}]
    if scenes or kept:
        messages.append({"role": "user", "content": scenes + memory_block(kept)})
    for turn in past:
        messages.append({"role": "user", "content": query_string(turn.speaker, turn.user_text)})
        messages.append({"role": "assistant", "content": turn.reply_raw})
    messages.append({"role": "user", "content": query})
    speakers = prompt_speakers(packed, past) + [m.speaker for m in kept]
    return Prompt(messages, packed, len(past), stop=stop_strings(user_role, *speakers), memories=kept)


def scene_block(stories: Sequence[StoryRef]) -> str:
    """The stories as the current user message carries them, before the user's words."""
    return STORY_PREFIX + "".join(s.text + DIVIDER for s in stories) if stories else ""


def build_chat(
    system_prompt: str,
    ranked: Sequence[StoryRef],
    history: Sequence[PastTurn],
    user_role: str,
    text: str,
    budgets: Budgets,
    count: Callable[[str], int],
    group: bool = False,
    recalled: Sequence[Recalled] = (),
) -> Prompt:
    """System prompt, alternating turns, then this turn's scenes, recalled memories and the user's
    words in one message."""

    def said(speaker: str, words: str) -> str:
        return f"{speaker}: {words}" if group else words

    user = said(user_role, text)
    story_budget, room = _fit(budgets, count(system_prompt) + count(user))
    packed = pack_stories(ranked, story_budget, count, count(STORY_PREFIX))
    scenes = scene_block(packed)
    room -= count(scenes)
    past, kept = _recall(
        budgets, room, recalled, history, lambda t: count(said(t.speaker, t.user_text)) + count(t.reply), count
    )
    messages = [{"role": "system", "content": system_prompt}]
    for turn in past:
        messages.append({"role": "user", "content": said(turn.speaker, turn.user_text)})
        messages.append({"role": "assistant", "content": turn.reply})
    messages.append({"role": "user", "content": scenes + memory_block(kept) + user})
    speakers = prompt_speakers(packed, past) + [m.speaker for m in kept]
    return Prompt(messages, packed, len(past), stop=stop_strings(user_role, *speakers), memories=kept)
