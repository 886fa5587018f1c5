"""Reply generation speed against plain llama-cpp-python, and prefix reuse on a follow-up turn.

Target: tokens/s at least 0.95x plain `Llama.create_chat_completion` on the same prompt.
Also reported: time to first token of a follow-up turn against the first turn.
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

            # Follow-up turn: the previous prompt and reply are in llama.cpp's KV cache.
            llm.llama.reset()
            first_gen = Generation()
            first = timed_stream(llm.stream(turn.prompt.messages, Sampling(max_tokens=32, temperature=0.0), first_gen))
            history.add(
                str(key), "wren", Turn("bench:u", "Tom", ask, "It's always cold.", "Wren:「It's always cold.」")
            )
            follow = "And why do you never whistle?"
            turn2 = engine.prepare(Message("2", key, Actor("bench", "u", "Tom"), follow, is_direct=True), follow)
            tokens1, tokens2 = llm.prompt_tokens(turn.prompt.messages)[0], llm.prompt_tokens(turn2.prompt.messages)[0]
            shared = next(
                (i for i, (a, c) in enumerate(zip(tokens1, tokens2)) if a != c), min(len(tokens1), len(tokens2))
            )
            second = timed_stream(
                llm.stream(turn2.prompt.messages, Sampling(max_tokens=32, temperature=0.0), Generation())
            )
            llm.llama.reset()
            cold = timed_stream(
                llm.stream(turn2.prompt.messages, Sampling(max_tokens=32, temperature=0.0), Generation())
            )
            reuse_rows.append(
                [
                    mode,
                    len(tokens1),
                    first[0] * 1000,
                    len(tokens2),
                    shared,
                    second[0] * 1000,
                    cold[0] * 1000,
                    second[0] / first[0],
                    second[0] / cold[0],
                ]
            )
        library.close()
    table(
        f"Reply generation, decode tokens/s over {TOKENS} tokens (median of {RUNS}, temperature 0)",
        ["mode", "prompt tokens", "greenroom", "plain llama-cpp-python", "ratio"],
        rows,
    )
    worst = min(r[4] for r in rows)
    print(f"target >= 0.95x: {'met' if worst >= 0.95 else 'NOT met'} (worst {worst:.2f}x)")
    table(
        "Time to first token (ms): first turn, follow-up turn with the previous prompt in the KV cache,\n"
        "and the same follow-up from an empty cache",
        [
            "mode",
            "turn 1 tokens",
            "turn 1 TTFT",
            "turn 2 tokens",
            "shared prefix",
            "turn 2 TTFT",
            "turn 2 cold TTFT",
            "turn2/turn1",
            "turn2/cold",
        ],
        reuse_rows,
    )


if __name__ == "__main__":
    main()
