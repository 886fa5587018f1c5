"""Reply generation speed against plain llama-cpp-python, and prefix reuse on a follow-up turn.

Targets: decode tokens/s at least 0.95x plain `Llama.create_chat_completion` on the same
prompt; at a 600-token history, a follow-up's time to first token at most 0.5x that of the
turn before it when that turn found nothing cached (chat mode).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from llama_cpp import Llama

from greenroom.core.config import PersonaSection
from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.persona import PersonaEngine
from greenroom.memory.characters import load_chatharuhi_folder
from greenroom.memory.db import Database
from greenroom.memory.history import History, Turn
from greenroom.memory.library import Library
from greenroom.memory.settings import Settings
from greenroom.memory.store import EdgeStore
from greenroom.models.llm import Generation, Sampling
from tests.bench.common import models, table

DEMO = Path(__file__).resolve().parents[2] / "memory" / "demo" / "wren"
TOKENS = 96
RUNS = 3


def timed_stream(pieces) -> tuple[float, float, int]:
    """Time to first piece, decode rate after it (pieces/s), and the piece count."""
    start = time.perf_counter()
    stamps = [time.perf_counter() - start for _ in pieces]
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return stamps[0], decode, len(stamps)


HISTORY_TOKENS = 600  # the chat-mode history budget
FOLLOW_RUNS = 2
PAST = [
    ("Is the set ready for tonight?", "Nearly, love. The flats are up and the trap is checked twice."),
    ("Who has the prompt book?", "I do. Nobody touches the book but me and the prompt desk."),
    ("Why do the actors call you Wren?", "Because it is my name, Mr Hale. Places in ten."),
    ("Is the fog machine working?", "It coughs on the first cue and then behaves, like most of the cast."),
    ("What happens if someone misses an entrance?", "We hold, we cover, and I have words with them at the interval."),
    ("Can I watch from the wings?", "Stand behind the blue line and keep your elbows to yourself."),
    ("What is the ghost light for?", "It keeps the stage from being dark, and the ghosts from being lonely."),
    ("Do you ever get nervous?", "Every first night, love. Then the house lights go down and I have no time."),
    ("Who fixes the costumes?", "Mags, in the basement, with a mouthful of pins. Do not startle her."),
    ("Where do you keep the spare bulbs?", "Top shelf of the prop cupboard, labelled, unlike the props."),
    ("What is the worst show you ever ran?", "A panto in a storm. The pumpkin coach lost a wheel in act two."),
    ("Do you like the director?", "I like him more when he is in the stalls and not on my stage."),
    ("How long have you worked here?", "Eleven years, and I still find rooms I did not know about."),
    ("What do you eat before a show?", "Toast, if I am lucky, and the crusts of someone else's toast if not."),
]


def ttft(llm, messages, conversation: str, tokens: int = 48) -> tuple[float, str, Generation]:
    """Seconds to the first piece of a greedy reply, the reply, and its record."""
    gen = Generation(conversation=conversation)
    start, first, text = time.perf_counter(), None, ""
    for piece in llm.stream(messages, Sampling(max_tokens=tokens, temperature=0.0), gen):
        first = first or time.perf_counter() - start
        text += piece
    return first or 0.0, text, gen


def conversation_at(history, llm, key: ConversationKey) -> int:
    """Fill ``key``'s history with past turns until the history budget is used; its token count."""
    used = 0
    for asked, said in PAST * 3:
        used += llm.count_tokens(asked) + llm.count_tokens(said)
        if used > HISTORY_TOKENS:
            return used - llm.count_tokens(asked) - llm.count_tokens(said)
        history.add(str(key), "wren", Turn("bench:u", "Tom", asked, said, f"Wren:「{said}」"))
    return used


def follow_up_row(engine: PersonaEngine, llm, history, mode: str) -> list[object]:
    """A turn at a full history, then its follow-up three ways (see the table's title)."""
    first, follow, other, cold, cached, sizes = [], [], [], [], [], (0, 0)
    for run in range(FOLLOW_RUNS):
        for how in ("kept", "interleaved"):
            key = ConversationKey("bench", f"{mode}-{run}-{how}")
            used = conversation_at(history, llm, key)
            ask, more = "Why is your tea always cold?", "And why do you never whistle?"
            turn = engine.prepare(Message("1", key, Actor("bench", "u", "Tom"), ask, is_direct=True), ask)
            llm.llama.reset()
            seconds, reply, gen = ttft(llm, turn.prompt.messages, str(key), tokens=32)
            history.add(str(key), "wren", Turn("bench:u", "Tom", ask, reply.strip(), f"Wren:「{reply.strip()}」"))
            turn2 = engine.prepare(Message("2", key, Actor("bench", "u", "Tom"), more, is_direct=True), more)
            if how == "interleaved":
                elsewhere = ConversationKey("bench", f"{mode}-{run}-elsewhere")
                hello = engine.prepare(
                    Message("3", elsewhere, Actor("bench", "v", "Ann"), "Hello!", is_direct=True), "Hi"
                )
                ttft(llm, hello.prompt.messages, str(elsewhere), tokens=4)
            seconds2, _, gen2 = ttft(llm, turn2.prompt.messages, str(key), tokens=4)
            (follow if how == "kept" else other).append(seconds2)
            if how == "kept":
                first.append(seconds)
                cached.append(gen2.cached_tokens)
                sizes = (gen.prompt_tokens, gen2.prompt_tokens)
                llm.llama.reset()
                cold.append(ttft(llm, turn2.prompt.messages, "", tokens=4)[0])
    f = statistics.median(first)
    return [
        mode,
        used,
        sizes[0],
        f * 1000,
        sizes[1],
        int(statistics.median(cached)),
        statistics.median(follow) * 1000,
        statistics.median(other) * 1000,
        statistics.median(cold) * 1000,
        statistics.median(follow) / f,
        statistics.median(other) / f,
    ]


def main() -> None:
    embedder, llm = models()
    plain = Llama(model_path=str(llm.llama.model_path), n_ctx=llm.n_ctx, n_threads=llm.llama.n_threads, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = Database(root / "db.sqlite3")
        library = Library(db, EdgeStore(root / "qdrant"), embedder, llm.count_tokens, llm.tokenizer_id)
        library.load(load_chatharuhi_folder(DEMO))
        history, settings = History(db), Settings(db)
        rows, reuse_rows = [], []
        for mode in ("chat", "haruhi2"):
            engine = PersonaEngine(library, history, settings, llm, PersonaSection(mode=mode))
            key = ConversationKey("bench", mode)
            ask = "Why is your tea always cold?"
            turn = engine.prepare(Message("1", key, Actor("bench", "u", "Tom"), ask, is_direct=True), ask)
            sampling = Sampling(max_tokens=TOKENS, temperature=0.0, stop=())
            ours, base = [], []
            for _ in range(RUNS):
                llm.llama.reset()
                ours.append(timed_stream(llm.stream(turn.prompt.messages, sampling, Generation())))
                plain.reset()
                base.append(
                    timed_stream(
                        c
                        for c in plain.create_chat_completion(
                            turn.prompt.messages,
                            max_tokens=TOKENS,
                            temperature=0.0,
                            top_p=sampling.top_p,
                            repeat_penalty=sampling.repeat_penalty,
                            stream=True,
                        )
                        if c["choices"][0]["delta"].get("content")
                    )
                )
            o = statistics.median(r[1] for r in ours)
            b = statistics.median(r[1] for r in base)
            rows.append([mode, len(llm.prompt_tokens(turn.prompt.messages)[0]), o, b, o / b])

            reuse_rows.append(follow_up_row(engine, llm, history, mode))
        library.close()
    table(
        f"Reply generation, decode tokens/s over {TOKENS} tokens (median of {RUNS}, temperature 0)",
        ["mode", "prompt tokens", "greenroom", "plain llama-cpp-python", "ratio"],
        rows,
    )
    worst = min(r[4] for r in rows)
    print(f"target >= 0.95x: {'met' if worst >= 0.95 else 'NOT met'} (worst {worst:.2f}x)")
    table(
        f"Time to first token (ms) at a {HISTORY_TOKENS}-token history, median of {FOLLOW_RUNS}: the turn a process\n"
        "meets first (nothing cached), the follow-up (its cache kept), the follow-up after another\n"
        "conversation's turn (its cache copied out and back), and the follow-up from an empty cache",
        [
            "mode",
            "history tokens",
            "turn tokens",
            "turn TTFT",
            "follow-up tokens",
            "cached",
            "follow-up TTFT",
            "after another",
            "follow-up cold",
            "follow-up/turn",
            "after another/turn",
        ],
        reuse_rows,
    )
    chat = next(r for r in reuse_rows if r[0] == "chat")
    print(f"target follow-up <= 0.5x (chat): {'met' if chat[9] <= 0.5 else 'NOT met'} ({chat[9]:.2f}x)")


if __name__ == "__main__":
    main()
