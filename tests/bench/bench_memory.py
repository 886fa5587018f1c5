"""Long-term memory: recall of 20 scripted facts told 30 turns before they are asked about, and its
cost per turn.

One conversation with the demo character (Wren) at the default settings: fact i is told at turn 4i
and asked about, in other words, at turn 4i + 30; every other turn is small talk. The replies are
scripted (Wren's own lines from her script, 20-60 tokens each, as a small model's would be), so no
generation runs: recall is whether the question's prompt contains the fact. Baseline, in the same
run: history only (`persona.memory = false`), whose 600-token window holds about a dozen turns.
A Chinese variant tells five facts in Chinese (the shipped embedder is English-only; memories are
also found by shared words, Chinese segmented).

Cost per turn, against the same turns without memory run alternately with them (the same load):
preparing the prompt (retrieval, recall, packing); that plus memorizing after the reply (copying
the turns that left the window, embedding, writing Qdrant); the prompt tokens.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from greenroom.core.config import PersonaSection
from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.persona import PersonaEngine
from greenroom.core.prompt import memory_block
from greenroom.memory.characters import load_chatharuhi_folder
from greenroom.memory.db import Database
from greenroom.memory.history import History, Turn
from greenroom.memory.library import Library
from greenroom.memory.long_term import LongTermMemory
from greenroom.memory.settings import Settings
from greenroom.memory.store import EdgeStore
from tests.bench.common import models, p, table
from tests.test_long_term_memory import FILLER

DEMO = Path(__file__).resolve().parents[2] / "memory" / "demo" / "wren"
GAP = 30  # turns between telling a fact and asking about it
EVERY = 4  # a new fact every fourth turn

FACTS = [  # (told, asked about later in other words)
    ("I keep my spare keys in the blue teapot on the shelf.", "Where are my spare keys?"),
    ("My sister Maya works as a dentist in Leeds.", "What does my sister do for a living?"),
    ("I'm allergic to peanuts, so no satay for me.", "Do I have any food allergies?"),
    ("My first show was a school production of Oliver.", "What was the first show I was in?"),
    ("My dog is a grey whippet called Biscuit.", "What's my dog's name again?"),
    ("I drive an old green Volvo that never starts in winter.", "What car do I drive?"),
    ("My birthday is on the ninth of March.", "When is my birthday?"),
    ("I grew up in a fishing village in Cornwall.", "Where did I grow up?"),
    ("I play the cello in an amateur orchestra on Tuesdays.", "Which instrument do I play?"),
    ("My favourite play is The Cherry Orchard by Chekhov.", "What's my favourite play?"),
    ("I'm saving up for a trip to Kyoto in the autumn.", "Where am I planning to travel?"),
    ("My flat is above a bakery on Mill Street.", "Where is my flat?"),
    ("I broke my wrist falling off a ladder last spring.", "How did I hurt my wrist?"),
    ("My grandmother taught me to knit when I was seven.", "Who taught me to knit?"),
    ("I can't stand the smell of lilies.", "Which flowers do I dislike?"),
    ("My locker code at the theatre is 4711.", "What is my locker code?"),
    ("I studied chemistry before I switched to acting.", "What did I study before acting?"),
    ("My partner Sam is a firefighter.", "What does Sam do?"),
    ("I always drink my coffee with oat milk.", "How do I take my coffee?"),
    ("I'm terrified of spiders, even small ones.", "What am I afraid of?"),
]
CHINESE = [
    ("我把备用钥匙放在书架上的蓝色茶壶里。", "我的备用钥匙放在哪里？"),
    ("我姐姐在杭州当牙医。", "我姐姐是做什么工作的？"),
    ("我对花生过敏。", "我对什么过敏？"),
    ("我的狗叫饼干，是一只灰色的惠比特犬。", "我的狗叫什么名字？"),
    ("我的生日是三月九号。", "我的生日是哪天？"),
]
SMALL_TALK = [
    *FILLER,
    "How long have you worked at the Larkspur?",
    "Is the understudy ready if Tom is ill?",
    "What do you do when an actor is late?",
    "The interval felt very long tonight.",
    "Do you ever get to watch the show from the front?",
    "Priya painted the backdrop in three days.",
    "Why do actors say break a leg?",
    "The tram was late again this morning.",
    "Have you ever seen the ghost light go out?",
    "What's the worst thing that happened on opening night?",
    "The audience laughed in the wrong place in act one.",
    "Can I help you strike the set on Sunday?",
]
SMALL_TALK_ZH = [
    "今天彩排的时候灯闪了两次。",
    "你在剧院工作多久了？",
    "昨天的观众特别热情。",
    "演员迟到的时候你怎么办？",
    "下雨天剧院的屋顶很吵。",
    "道具桌上又有人留了三明治。",
    "新导演想缩短谢幕时间。",
    "你相信剧院里有鬼吗？",
]


def script(facts: list[tuple[str, str]], small_talk: list[str]) -> list[tuple[str, int | None, bool]]:
    """The turns: (text, the fact it tells or asks about, whether it asks)."""
    length = EVERY * (len(facts) - 1) + GAP + 1
    turns: list[tuple[str, int | None, bool]] = [(small_talk[i % len(small_talk)], None, False) for i in range(length)]
    for i, (told, asked) in enumerate(facts):
        turns[EVERY * i] = (told, i, False)
        turns[EVERY * i + GAP] = (asked, i, True)
    return turns


def wren_lines() -> list[str]:
    """Wren's own lines from her script: the scripted replies."""
    lines = []
    for path in sorted((DEMO / "texts").glob("*.txt")):
        lines += re.findall(r"^Wren:「(.*)」$", path.read_text(encoding="utf-8"), re.M)
    return lines


@dataclass
class Conversation:
    """One scripted conversation and what was measured in it, turn by turn."""

    engine: PersonaEngine
    key: str
    asked: int = 0
    recalled: int = 0
    prepare: list[float] = field(default_factory=list)  # ms
    work: list[float] = field(default_factory=list)  # ms: prepare, plus memorize after the reply
    tokens: list[float] = field(default_factory=list)  # the memories' tokens, in turns that had any
    prompt: list[float] = field(default_factory=list)  # tokens

    def turn(self, n: int, text: str, fact: str | None, reply: str) -> None:
        """Prepare the prompt (is ``fact`` in it?), store the scripted reply, memorize as the bot does."""
        engine = self.engine
        message = Message(str(n), ConversationKey("bench", self.key), Actor("bench", "u", "Tom"), text, True)
        start = time.perf_counter()
        turn = engine.prepare(message, text)
        self.prepare.append((time.perf_counter() - start) * 1000)
        sent = "\n".join(m["content"] for m in turn.prompt.messages)
        self.prompt.append(engine.llm.count_tokens(sent))
        if turn.prompt.memories:
            self.tokens.append(engine.llm.count_tokens(memory_block(turn.prompt.memories)))
        if fact is not None:
            self.asked += 1
            self.recalled += fact in sent
        key = f"bench:{self.key}"
        engine.history.add(key, "wren", Turn("bench:u", "Tom", text, reply, f"Wren:「{reply}」"))
        if turn.remembers:
            assert engine.memory is not None
            engine.memory.memorize(key, "wren", turn.window)
        self.work.append((time.perf_counter() - start) * 1000)


def converse(make, name: str, facts: list[tuple[str, str]], talk: list[str], replies: list[str]):
    """The script, with and without memory turn by turn (so both meet the same load)."""
    pair = [Conversation(make(on), f"{name}-{on}") for on in (False, True)]
    for n, (text, fact, asks) in enumerate(script(facts, talk)):
        for c in pair:
            c.turn(n, text, facts[fact][0] if asks and fact is not None else None, replies[n % len(replies)])
    return pair


def main() -> None:
    import torch

    # One thread for the embedder: on a shared two-core machine torch's two threads spin against
    # the other processes and a query takes 150 ms instead of 20. Both variants run alike.
    torch.set_num_threads(1)
    embedder, llm = models()
    replies = wren_lines()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = Database(root / "db.sqlite3")
        store = EdgeStore(root / "qdrant")
        library = Library(db, store, embedder, llm.count_tokens, llm.tokenizer_id)
        library.load(load_chatharuhi_folder(DEMO))
        history, settings = History(db), Settings(db)
        memory = LongTermMemory(db, store, lambda: embedder)
        for mode in ("chat", "haruhi2"):

            def make(on: bool, mode: str = mode) -> PersonaEngine:
                config = PersonaSection(mode=mode, memory=on)
                return PersonaEngine(library, history, settings, llm, config, memory=memory)

            for language, facts, talk in (("en", FACTS, SMALL_TALK), ("zh", CHINESE, SMALL_TALK_ZH)):
                results[mode, language] = converse(make, f"{mode}-{language}", facts, talk, replies)
        memory.close()
        library.close()
    table(
        f"Recall of facts told {GAP} turns before the question (the fact's words in the question's prompt).\n"
        "Baseline: history only (persona.memory = false), same script, same run.",
        ["mode", "language", "facts", "recall with memory", "recall, history only (baseline)"],
        [
            [mode, language, ours.asked, f"{ours.recalled / ours.asked:.0%}", f"{base.recalled / base.asked:.0%}"]
            for (mode, language), (base, ours) in results.items()
        ],
    )
    base, ours = results["chat", "en"]
    rows = []
    for label, mine, theirs in (
        ("prepare the prompt, ms", ours.prepare, base.prepare),
        ("prepare + memorize after the reply, ms", ours.work, base.work),
        ("prompt tokens", ours.prompt, base.prompt),
    ):
        rows.append(
            [label, p(mine, 50), p(mine, 95), p(theirs, 50), p(theirs, 95), f"{p(mine, 95) / p(theirs, 95):.2f}x"]
        )
    rows.append(["memories' tokens (turns with any)", p(ours.tokens, 50), p(ours.tokens, 95), "-", "-", "-"])
    table(
        f"Cost per turn, chat mode, English ({len(ours.prepare)} turns; {len(ours.tokens)} had memories in the\n"
        "prompt). Baseline: the same turns without memory, run alternately with them.",
        ["per turn", "p50", "p95", "base p50", "base p95", "ratio p95"],
        rows,
    )


if __name__ == "__main__":
    main()
