"""The persona evaluation: how each model reads in character, in English and Chinese (`make eval`).

Every held-out question of every character (`tests/eval/questions.toml`) is asked once, in a fresh
conversation, through the real persona turn (`PersonaEngine.reply`, as `greenroom chat --json` runs
it: retrieval, the prompt, the model, the cleanup), for each model and prompt mode. Sampling is the
configuration's (`bot.toml [persona]`, temperature 0.4) with the fixed seed, so a run is repeatable.

Characters: Wren (English, `memory/demo/wren`), Haruhi (Chinese, the ChatHaruhi reference data,
skipped when absent), and two written for this evaluation under `tests/eval/characters/`: 老李 (a
war-drama veteran, Chinese) and Professor Basil Finch (a botanist, English).

Metrics, on the reply the chat shows (after `core/cleanup.py`) unless "raw" (what the model wrote):

- **echo**: the reply repeats the user's message: its first letters (as many as the message has,
  letters being letters, digits and CJK characters, case-folded) match the message's with a difflib
  ratio of at least 0.75, or the whole message appears in it. Messages under 8 letters (a CJK
  character counts twice) are never counted.
- **wrapper**: a line of the reply starts with `Name:「` or `Name：「` (any name up to 32
  characters), or the reply starts with one of the character's names and a colon.
- **cut-off**: the reply, without trailing closing quotes and brackets, does not end with
  `. ! ? … 。 ！ ？ ～ ~`, ends with a list number (`4.`), or ends with the "…" the cleanup puts
  on a reply the token limit cut with no complete sentence (the raw reply hit the limit). An empty
  reply is cut off.
- **repetition**: the same run of 8 tokens (a token is an English word or one CJK character) occurs
  twice, or a clause (between punctuation) of at least 3 tokens occurs twice.
- **language**: the reply is in the character's language: at least 80% of its letters are CJK
  characters (Chinese characters) or ASCII letters (English characters), a CJK character
  weighing as two letters ("SOS团这个周末" is 85% Chinese).
- **script reuse**: the reply and a quoted line of the character's script (any speaker's, at least
  12 letters long, a CJK character counting twice) share a run of letters as long as the line or
  20 letters (10 CJK characters, about four English words), whichever is less.
- **perplexity** (not in the issue's list; the language share counts the script, not the sense,
  and SmolLM2 writes Chinese characters in no sensible order): the median perplexity of the replies
  under a judge model (`--judge`, by default the largest candidate, Qwen2.5-Coder-1.5B), read after
  the question alone (no persona, no scenes). Lower reads more like real text; the judge favours
  its own family's wording, so it separates word salad from sentences, not the Qwen models from
  each other.
- **TTFT**: seconds from the message reaching the persona engine to the model's first piece of
  text (retrieval and prompt evaluation included); the table gives the median and its ratio to the
  first model's in the same mode and language.
- raw: **limit** (the generation stopped at `max_reply_tokens`), echo, repetition and wrapper of the
  model's first attempt, and **retry** (the cleanup found only an echo and asked once more).

`python -m tests.bench.eval_persona [--models A,B] [--modes chat,haruhi2] [--questions N] [--out F]`;
`--out` writes every reply with its flags as JSON lines. `python -m tests.bench eval` runs all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np

from greenroom.bots.console import ConsoleReplier
from greenroom.compose import Greenroom
from greenroom.core.commands import Context, Level
from greenroom.core.config import EmbedderSection, load_config
from greenroom.core.events import Actor, ConversationKey, Message
from greenroom.core.persona import PersonaEngine
from greenroom.memory.characters import Character, load_chatharuhi_folder
from greenroom.models.embedder import Embedder
from greenroom.models.files import resolve_model_path
from greenroom.models.llm import LLM, Generation
from tests.bench.common import table

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ROOT / "tests" / "eval" / "questions.toml"
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
MODES = ("chat", "haruhi2")

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
WRAPPER = re.compile(r"(?:^|\n)\s*[^\n:：「」]{1,32}[:：]\s*「")
CLOSERS = "」』”’\"'）)】]"
ENDS = tuple(".!?…。！？～~")
TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[a-z0-9']+")
CLAUSE = re.compile(r"[,，、;；:：.!?…。！？\n]+")
QUOTED = re.compile(r"[:：]「(.+?)」")
JUDGE_CTX = 512  # tokens of a reply the judge reads


# ----- the metrics ---------------------------------------------------------------------------------


def letters(text: str) -> str:
    """Letters, digits and CJK characters, case-folded: what texts are compared by."""
    return re.sub(r"[\W_]+", "", text.casefold())


def weight(text: str) -> int:
    """Length in letters, a CJK character counting twice (about one English word per two)."""
    return len(text) + len(CJK.findall(text))


def is_echo(reply: str, message: str) -> bool:
    said, got = letters(message), letters(reply)
    if weight(said) < 8:
        return False
    return said in got or SequenceMatcher(None, got[: len(said)], said, autojunk=False).ratio() >= 0.75


def has_wrapper(reply: str, names: tuple[str, ...]) -> bool:
    start = reply.lstrip()
    return bool(WRAPPER.search(reply)) or any(start.startswith(n + m) for n in names for m in ":：")


def is_cut_off(reply: str, hit_limit: bool) -> bool:
    end = reply.rstrip().rstrip(CLOSERS).rstrip()
    listed = re.search(r"(?:^|\s)\d+\.$", end)  # "… 3. Step three. 4." stopped before item four
    return not end or not end.endswith(ENDS) or bool(listed) or (hit_limit and end.endswith("…"))


def has_repetition(reply: str) -> bool:
    tokens = TOKEN.findall(reply.casefold())
    grams = [tuple(tokens[i : i + 8]) for i in range(len(tokens) - 7)]
    clauses = [c for part in CLAUSE.split(reply.casefold()) if len(c := TOKEN.findall(part)) >= 3]
    return len(set(grams)) < len(grams) or len({tuple(c) for c in clauses}) < len(clauses)


def language_share(reply: str, language: str) -> float:
    """The share of the reply's letters in the character's script, CJK for "zh", ASCII for "en",
    a CJK character weighing as two letters (about one English word per two)."""
    found = [c for c in reply if c.isalpha()]
    cjk = sum(bool(CJK.match(c)) for c in found)
    ascii_letters = sum(c.isascii() for c in found)
    total = len(found) + cjk
    return (2 * cjk if language == "zh" else ascii_letters) / total if total else 0.0


def script_lines(character: Character) -> list[str]:
    """The quoted lines of a character's script (every speaker's), as letters, 12 or more long."""
    found = {letters(q) for story in character.stories for q in QUOTED.findall(story.text)}
    return sorted(line for line in found if weight(line) >= 12)


def reuses_script(reply: str, lines: list[str]) -> bool:
    got = letters(reply)
    for line in lines:
        match = SequenceMatcher(None, got, line, autojunk=False).find_longest_match(0, len(got), 0, len(line))
        if weight(line[match.b : match.b + match.size]) >= min(20, weight(line)):
            return True
    return False


# ----- running the turns -----------------------------------------------------------------------------


@dataclass
class Attempt:
    text: str = ""
    finish_reason: str | None = None
    first_piece: float | None = None  # time.perf_counter() when the first piece arrived


class Recording:
    """The real model, with each generation's raw text, stop reason and first-piece time noted."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.attempts: list[Attempt] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def stream(self, messages: Any, sampling: Any, gen: Generation, *args: Any, **kwargs: Any) -> Iterator[str]:
        attempt = Attempt()
        self.attempts.append(attempt)
        for piece in self.llm.stream(messages, sampling, gen, *args, **kwargs):
            attempt.first_piece = attempt.first_piece or time.perf_counter()
            attempt.text += piece
            yield piece
        attempt.finish_reason = gen.finish_reason


@dataclass
class Subject:
    """A character under evaluation and its questions."""

    character: Character
    language: str
    user: str
    questions: list[str]
    lines: list[str] = field(default_factory=list)


@dataclass
class Result:
    model: str
    mode: str
    character: str
    language: str
    question: str
    reply: str
    raw: str
    flags: dict[str, bool]
    ttft: float
    seconds: float
    perplexity: float = float("nan")


class Judge:
    """The perplexity of a text under a model in llama.cpp (every position's logits kept)."""

    def __init__(self, name: str) -> None:
        from llama_cpp import Llama

        self.llama = Llama(
            model_path=str(resolve_model_path(name)),
            n_ctx=JUDGE_CTX,
            n_threads=os.cpu_count(),
            logits_all=True,
            verbose=False,
        )

    def perplexity(self, question: str, reply: str) -> float:
        """Of ``reply``'s tokens, read after ``question`` and a line break."""
        asked = self.llama.tokenize(f"{question}\n".encode(), add_bos=False, special=False)
        tokens = (asked + self.llama.tokenize(reply.encode(), add_bos=False, special=False))[:JUDGE_CTX]
        if len(tokens) <= len(asked):
            return float("nan")
        self.llama.reset()
        self.llama.eval(tokens)
        logits = self.llama.scores[len(asked) - 1 : len(tokens) - 1]
        top = logits.max(axis=1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        return float(np.exp(-logp[np.arange(len(logits)), tokens[len(asked) :]].mean()))


def reference_base() -> Path:
    configured = os.environ.get("GREENROOM_REFERENCE_DATA")
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


def subjects(questions: int) -> list[Subject]:
    """The characters of `questions.toml` with their first ``questions`` questions; a reference
    character whose data is absent is skipped with a line saying so."""
    found = []
    for name, entry in tomllib.loads(QUESTIONS.read_text(encoding="utf-8")).items():
        folder = ROOT / entry["folder"] if "folder" in entry else reference_base() / entry["reference"]
        if not folder.is_dir():
            print(f"{name}: skipped, reference data not found at {folder} (set GREENROOM_REFERENCE_DATA)")
            continue
        character = load_chatharuhi_folder(folder, name=name)
        subject = Subject(character, entry["language"], entry["user"], entry["questions"][:questions])
        subject.lines = script_lines(character)
        found.append(subject)
    return found


def flags(result_reply: str, attempts: list[Attempt], question: str, subject: Subject) -> dict[str, bool]:
    names, raw, final = subject.character.speakers, attempts[0], attempts[-1]
    return {
        "echo": is_echo(result_reply, question),
        "wrapper": has_wrapper(result_reply, names),
        "cut_off": is_cut_off(result_reply, final.finish_reason == "length"),
        "repetition": has_repetition(result_reply),
        "language": language_share(result_reply, subject.language) >= 0.8,
        "script": reuses_script(result_reply, subject.lines),
        "raw_limit": final.finish_reason == "length",
        "raw_echo": is_echo(raw.text, question),
        "raw_repetition": has_repetition(raw.text),
        "raw_wrapper": has_wrapper(raw.text, names),
        "retry": len(attempts) > 1,
    }


async def ask(
    engine: PersonaEngine, model: str, llm: Recording, subject: Subject, key: ConversationKey, text: str
) -> Result:
    """One question in a fresh conversation, answered as `greenroom chat --json` answers it."""
    engine.settings.set(key.chat, "character", subject.character.id)
    message = Message("1", key, Actor("eval", "u", subject.user), text, is_direct=True)
    replier = ConsoleReplier(io.StringIO(), json_mode=True)
    llm.attempts = []
    start = time.perf_counter()
    await engine.reply(Context(message, replier, Level.USER))
    seconds = time.perf_counter() - start
    assert replier.trace is not None, f"no reply to {text!r}"
    reply, first = replier.trace["reply"], llm.attempts[0]
    return Result(
        model,
        replier.trace["mode"],
        subject.character.id,
        subject.language,
        text,
        reply,
        first.text,
        flags(reply, llm.attempts, text, subject),
        (first.first_piece or time.perf_counter()) - start,
        seconds,
    )


def open_app(name: str, data: Path, embedder: Embedder) -> Greenroom:
    """A Greenroom on its own data folder whose language model is the catalogue entry ``name``,
    built as `greenroom chat` builds it (bot.toml's other settings, the entry's pinned sha256)."""
    environ = {**os.environ, "GREENROOM_DATA_DIR": str(data), "GREENROOM__LLM__MODEL": json.dumps(name)}
    return Greenroom(load_config(environ=environ), embedder=embedder)


async def evaluate(models: list[str], modes: list[str], chosen: list[Subject], log: Callable[[Result], None]) -> None:
    e = EmbedderSection()
    embedder = Embedder(e.model, e.device, e.batch_size, e.name)
    for name in models:
        with tempfile.TemporaryDirectory() as tmp:
            app = open_app(name, Path(tmp), embedder)
            llm = Recording(app.llm)
            for subject in chosen:
                app.library.load(subject.character)
            for mode in modes:
                persona = app.config.persona.model_copy(update={"mode": mode})
                engine = PersonaEngine(app.library, app.history, app.settings, llm, persona)  # type: ignore[arg-type]
                began = time.perf_counter()
                for subject in chosen:
                    for i, question in enumerate(subject.questions):
                        key = ConversationKey("eval", f"{mode}-{subject.character.id}-{i}")
                        log(await ask(engine, name, llm, subject, key, question))
                asked = sum(len(s.questions) for s in chosen)
                print(f"{name} {mode}: {asked} replies in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            app.close()


def rate(results: list[Result], flag: str) -> str:
    return f"{100 * sum(r.flags[flag] for r in results) / len(results):.0f}%"


def report(results: list[Result], models: list[str], modes: list[str], judge: str) -> None:
    rows, raw_rows = [], []
    for mode in modes:
        for language in ("en", "zh"):
            base = [r.ttft for r in results if r.model == models[0] and r.mode == mode and r.language == language]
            for name in models:
                group = [r for r in results if r.model == name and r.mode == mode and r.language == language]
                if not group:
                    continue
                ttft = statistics.median(r.ttft for r in group)
                scored = [r.perplexity for r in group if r.perplexity == r.perplexity]  # not NaN
                rows.append(
                    [
                        name,
                        mode,
                        language,
                        len(group),
                        *(rate(group, f) for f in ("echo", "wrapper", "cut_off", "repetition", "language", "script")),
                        statistics.median(scored) if scored else float("nan"),
                        ttft,
                        ttft / statistics.median(base) if base else float("nan"),
                        statistics.median(r.seconds for r in group),
                    ]
                )
        for name in models:
            group = [r for r in results if r.model == name and r.mode == mode]
            if group:
                raw_rows.append(
                    [name, mode, len(group), *(rate(group, f"raw_{f}") for f in ("limit", "echo", "repetition"))]
                    + [rate(group, "raw_wrapper") if mode == "chat" else "primed", rate(group, "retry")]
                )
    table(
        "Persona evaluation: share of shown replies with each problem, in the character's language and reusing\n"
        f"a script line; perplexity (median) under {judge}; TTFT (s) and its ratio to {models[0]}'s; reply s",
        ["model", "mode", "lang", "n", "echo", "wrapper", "cut-off", "repetition", "language", "script"]
        + ["perplexity", "TTFT", "TTFT ratio", "reply s"],
        rows,
    )
    table(
        "What the models wrote before the cleanup (first attempt)",
        ["model", "mode", "n", "hit limit", "echo", "repetition", "wrapper", "echo retried"],
        raw_rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.eval_persona", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="catalogue names, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--questions", type=int, default=5, help="questions per character (at most 5)")
    parser.add_argument("--judge", default=MODELS[-1], help='the model perplexity is measured by, or "none"')
    parser.add_argument("--out", type=Path, help="write every reply and its flags here (JSON lines)")
    args = parser.parse_args(argv or [])
    models, modes = args.models.split(","), args.modes.split(",")
    start, load = time.perf_counter(), os.getloadavg()[0]
    results: list[Result] = []
    asyncio.run(evaluate(models, modes, subjects(args.questions), results.append))
    if args.judge != "none":
        judge = Judge(args.judge)
        for result in results:
            result.perplexity = judge.perplexity(result.question, result.reply)
    if args.out:
        args.out.write_text("".join(json.dumps(r.__dict__, ensure_ascii=False) + "\n" for r in results), "utf-8")
    report(results, models, modes, args.judge)
    print(
        f"\n{len(results)} replies in {time.perf_counter() - start:.0f} s wall; load average "
        f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
