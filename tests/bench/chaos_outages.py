"""A server the bot depends on goes away mid-traffic and comes back, on the same port and data:

- PostgreSQL (the shared database), stopped as a service restart does (`pg_ctl stop -m fast`) while 8
  users chat: what users are told during the outage, whether the bot recovers by itself, and the
  turns stored, checked against what the chats show (none twice, none half);
- Redis (the video queue), with a `greenroom worker video` process on the tiny Valley checkpoint:
  what a clip sent during the outage gets, and the first clip described after Redis is back;
- the inference server (llama-cpp-python's OpenAI-compatible server with SmolLM2): what a turn gets
  while it is down, and the first answer after it is back.

Users send one message at a time and wait for what comes back (a short pause between messages).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenroom.core.dispatch import FAILED
from greenroom.models.llm import LLMUnavailable
from tests.bench.chaos_bots import (
    GREETING,
    ROOT,
    BotProcess,
    ChaosTelegram,
    Push,
    Sent,
    Transcript,
    bot_toml,
    outcomes,
)
from tests.bench.chaos_stub import is_answer, tag_of
from tests.bench.chaos_table import Row
from tests.servers import free_port, new_database, postgres_cluster, restartable_llama, restartable_redis

FAILED_PREFIX = FAILED.split("{", 1)[0]  # the dispatcher's answer to an unexpected error
THINK = 0.05  # seconds a user pauses between one answer and their next message
DOWN = str(LLMUnavailable(""))


@dataclass
class Exchange:
    push: Push
    sent_at: float
    settled_at: float
    text: str | None  # what the chat showed when it settled; None: nothing within the time


class Users:
    """``count`` users, each in their own chat, sending one message at a time until stopped."""

    def __init__(self, transcript: Transcript, count: int, answers: Callable[[str, str], bool] = is_answer) -> None:
        self.transcript = transcript
        self.count = count
        self.answers = answers
        self.exchanges: list[Exchange] = []
        self.stopping = False
        self._tags = itertools.count()

    async def _user(self, chat: int) -> None:
        while not self.stopping:
            await self.ask(chat)
            await asyncio.sleep(THINK)

    async def ask(self, chat: int, text: str = "How is the house tonight?") -> Exchange:
        push = await self.transcript.push(chat, chat, f"{text} #{next(self._tags)}")
        began = time.monotonic()
        settled = await self.transcript.settled(push, 120)
        exchange = Exchange(push, began, time.monotonic(), settled.final if settled else None)
        self.exchanges.append(exchange)
        return exchange

    async def run(self) -> None:
        await asyncio.gather(*(self._user(200 + i) for i in range(self.count)))

    def answered(self, since: float = 0.0) -> list[Exchange]:
        return [e for e in self.exchanges if e.sent_at >= since and e.text and self.answers(e.text, e.push.tag)]

    def failed(self, since: float = 0.0) -> list[Exchange]:
        return [e for e in self.exchanges if e.sent_at >= since and not (e.text and self.answers(e.text, e.push.tag))]


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ----- PostgreSQL ---------------------------------------------------------------------------------


def stored_turns(url: str) -> list[tuple[str, str]]:
    """(user_text, reply) of every turn in the database."""
    import psycopg

    with psycopg.connect(url) as conn:
        return [(str(u), str(r)) for u, r in conn.execute("SELECT user_text, reply FROM turns").fetchall()]


async def postgres(folder: Path, notes: list[str]) -> list[Row]:
    scenario = "PostgreSQL restarted mid-traffic"
    with postgres_cluster() as pg:
        url = new_database(pg.url, "chaos")
        async with ChaosTelegram() as fake:
            settings: dict[str, dict[str, Any]] = {"database": {"url": url}, "dispatch": {"user_rate_per_minute": 0}}
            bot = BotProcess(folder, fake, settings, ("--words", "3", "--delay", "0.02"))
            try:
                await bot.start()
                transcript = Transcript(fake)
                users = Users(transcript, 8)
                traffic = asyncio.create_task(users.run())
                await wait_for(lambda: len(users.answered()) >= 40, 120, "40 answers before the restart")
                await asyncio.to_thread(pg.stop, "fast")
                down_at = time.monotonic()
                await wait_for(lambda: len(users.failed(down_at)) >= 24, 60, "24 turns during the outage")
                readiness = await bot.readiness()
                start_at = time.monotonic()
                restart = await asyncio.to_thread(pg.start)
                up_at = time.monotonic()
                await wait_for(lambda: len(users.answered(up_at)) >= 40, 120, "40 answers after the restart")
                users.stopping = True
                await traffic
                await bot.stop()
            finally:
                bot.kill()
            stored = stored_turns(url)
    pushes = [e.push for e in users.exchanges]
    ended = outcomes(transcript, pushes)
    by_tag = {e.push.tag: e for e in users.exchanges}
    during = [e for e in users.exchanges if down_at <= e.sent_at < start_at]
    told = Counter(e.text or "(nothing)" for e in during if not (e.text and is_answer(e.text, e.push.tag)))
    clear = sum(n for text, n in told.items() if text != "(nothing)" and not text.startswith(FAILED_PREFIX))
    for text, n in told.most_common():
        notes.append(f"postgres: {n} turn(s) sent while PostgreSQL was down were told: {text}")
    first = min((e.settled_at for e in users.answered(up_at)), default=float("nan"))
    turn = statistics.median(e.settled_at - e.sent_at for e in users.answered() if e.sent_at < down_at)
    kept = Counter(t for user_text, _ in stored if (t := tag_of(user_text)) is not None)
    twice = sum(1 for n in kept.values() if n > 1)
    half = sum(1 for user_text, reply in stored if not is_answer(reply, tag_of(user_text) or "?"))
    answered = set(ended.answered)
    lost = len(answered - set(kept) - set(ended.not_stored))
    kept_but_told = len(set(kept) - answered)
    after = [e for e in users.exchanges if e.sent_at >= up_at]
    return [
        Row(scenario, "turns sent while it was down", len(during), f"{len(by_tag)} in all"),
        Row(
            scenario,
            "... told so (not the generic error, not nothing)",
            clear,
            expect=str(len(during)),
            ok=clear == len(during),
        ),
        Row(scenario, "readiness during the outage", readiness[:80]),
        Row(
            scenario,
            "recovered by itself: first answer after the restart",
            f"{first - up_at:.2f} s",
            f"{turn:.2f} s per turn before (start took {restart:.2f} s)",
            (first - up_at) / turn,
            "recovers",
            not math.isnan(first),
        ),
        Row(scenario, "answered after the restart", f"{len(users.answered(up_at))} of {len(after)}"),
        Row(
            scenario,
            "turns stored twice / half",
            f"{twice} / {half}",
            f"{len(stored)} stored",
            expect="0 / 0",
            ok=twice == half == 0,
        ),
        Row(
            scenario,
            "complete answer shown, then replaced by the error",
            len(ended.answer_replaced),
            expect="0",
            ok=not ended.answer_replaced,
        ),
        Row(scenario, "answered, then told it could not be stored", len(ended.not_stored)),
        Row(
            scenario,
            "answered but silently not stored / stored but told to retry",
            f"{lost} / {kept_but_told}",
            f"{len(answered)} answered",
            expect="0 / 0",
            ok=lost == kept_but_told == 0,
        ),
    ]


# ----- Redis --------------------------------------------------------------------------------------


def clip_message(fake: ChaosTelegram, data: bytes, chat: int, file_id: str) -> dict[str, Any]:
    """A private message carrying a video, its file served by the fake."""
    fake.add_file(file_id, data)
    video: dict[str, Any] = {"file_id": file_id, "file_unique_id": file_id, "width": 80, "height": 60, "duration": 1}
    video |= {"file_size": len(data), "mime_type": "video/x-matroska"}
    return fake.message(chat_id=chat, user_id=chat, video=video)


async def described(transcript: Transcript, push: Push, timeout: float) -> str | None:
    """Wait until the clip's status line is edited into a description (None: it was not); or, when the
    bot answered something other than a status line, return that."""

    def seen() -> list[Sent]:
        shown = [s for s in transcript.after(push) if s.final != GREETING]
        return [s for s in shown if not s.first.startswith("Watching your clip") or s.final != s.first]

    found = await transcript.wait(seen, timeout)
    return found[0].final if found else None


async def redis(folder: Path, notes: list[str]) -> list[Row]:
    from greenroom.models.valley.convert import convert
    from tests.clips import lossless_clip, numbered_frames
    from tests.valley_fixture import build_checkpoint

    scenario = "Redis (video queue) down and back"
    folder.mkdir(parents=True)
    checkpoint = folder / "valley"
    convert(build_checkpoint(folder / "ck"), checkpoint, "f32")
    clip = lossless_clip(folder / "clip.mkv", numbered_frames(12, 80, 60)).read_bytes()
    with restartable_redis(folder) as server:
        async with ChaosTelegram() as fake:
            video: dict[str, Any] = {
                "checkpoint": str(checkpoint),
                "queue": "redis",
                "redis_url": f"redis://127.0.0.1:{server.port}/0",
            }
            video |= {"vision_dtype": "float32", "max_new_tokens": 8, "progress_seconds": 0, "job_seconds": 30}
            bot = BotProcess(folder / "bot", fake, {"video": video})
            worker = _worker(folder / "worker", fake, {"video": video})
            transcript = Transcript(fake)
            clips = itertools.count(1)

            async def send_clip(timeout: float) -> tuple[str | None, float]:
                n = next(clips)
                push = await transcript.push_raw(clip_message(fake, clip, 300 + n, f"clip{n}"), f"clip{n}")
                began = time.monotonic()
                return await described(transcript, push, timeout), time.monotonic() - began

            try:
                await bot.start()
                if (await send_clip(240))[0] is None:  # the worker loads the model on its first job
                    raise RuntimeError(f"the first clip was not described (logs: {bot.log}, {folder / 'worker'})")
                _, warm = await send_clip(120)
                await asyncio.to_thread(server.stop)
                outage, _ = await send_clip(60)
                chat = await Users(transcript, 0).ask(400)
                readiness = await bot.readiness()
                await asyncio.to_thread(server.start)
                up_at = time.monotonic()
                tries, text = 0, None
                while tries < 10 and (text is None or text.startswith("Video description is unavailable")):
                    tries += 1
                    text, _ = await send_clip(120)
                recovered = time.monotonic() - up_at
                worker_alive = worker.poll() is None
                await bot.stop()
            finally:
                bot.kill()
                _stop(worker)
    notes.append(f"redis: a clip sent during the outage was answered: {outage}")
    unavailable = bool(outage and outage.startswith("Video description is unavailable right now"))
    back = text is not None and not text.startswith(("Video description is unavailable", "Watching your clip"))
    chatted = bool(chat.text and is_answer(chat.text, chat.push.tag))
    return [
        Row(
            scenario,
            "a clip during the outage: told unavailable",
            "yes" if unavailable else f"no: {outage}",
            expect="yes",
            ok=unavailable,
        ),
        Row(
            scenario,
            "text chat during the outage",
            "answered" if chatted else f"not answered: {chat.text}",
            expect="answered",
            ok=chatted,
        ),
        Row(scenario, "readiness during the outage", readiness[:80]),
        Row(
            scenario,
            "recovered by itself: first clip described after",
            f"{recovered:.1f} s ({tries} clip(s))",
            f"{warm:.1f} s per clip with Redis up",
            recovered / warm,
            "recovers",
            back,
        ),
        Row(
            scenario,
            "video worker survived the outage",
            "yes" if worker_alive else "no (exited)",
            expect="yes",
            ok=worker_alive,
        ),
    ]


def _worker(folder: Path, fake: ChaosTelegram, settings: dict[str, dict[str, Any]]) -> subprocess.Popen:
    """`greenroom worker video` posting to the fake API, with its own data folder."""
    folder.mkdir(parents=True)
    config = folder / "bot.toml"
    config.write_text(bot_toml(folder, fake, free_port(), settings), encoding="utf-8")
    env = {**os.environ, "TELEGRAM_TOKEN": fake.token}
    with (folder / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "greenroom", "worker", "video", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ----- the inference server -----------------------------------------------------------------------


async def llm(folder: Path, notes: list[str]) -> list[Row]:
    from greenroom.core.config import LlmSection
    from greenroom.models.files import resolve_model_path

    scenario = "inference server down and back"
    folder.mkdir(parents=True)
    model = LlmSection().model
    # one thread: on 2 cores shared with the bot, llama.cpp's spinning threads make it 10x slower
    with restartable_llama(resolve_model_path(model), folder / "server.log", "--n_threads", "1") as server:
        async with ChaosTelegram() as fake:
            settings: dict[str, dict[str, Any]] = {
                "llm": {"backend": "openai", "base_url": f"http://127.0.0.1:{server.port}/v1", "model": model},
                "persona": {"max_reply_tokens": 8, "temperature": 0.0},
                "telegram": {"placeholder_delay": 60.0},  # one message per reply: the complete one
            }
            bot = BotProcess(folder / "bot", fake, settings, ("--real-model",))
            users = Users(Transcript(fake), 0, answers=lambda text, tag: text != DOWN)
            try:
                await bot.start()
                await users.ask(500)  # warm-up
                normal = await users.ask(500)
                await asyncio.to_thread(server.stop)
                outage = await users.ask(500)
                readiness = await bot.readiness()
                await asyncio.to_thread(server.start)
                up_at = time.monotonic()
                while len(users.exchanges) < 15 and not users.answered(up_at):
                    await users.ask(500)
                await bot.stop()
            finally:
                bot.kill()
    notes.append(f"llm: a turn during the outage was answered: {outage.text}")
    turn = normal.settled_at - normal.sent_at
    told = outage.settled_at - outage.sent_at
    back = users.answered(up_at)
    recovered = back[0].settled_at - up_at if back else float("nan")
    return [
        Row(
            scenario,
            "a turn during the outage: told the model is unreachable",
            "yes" if outage.text == DOWN else f"no: {outage.text}",
            expect="yes",
            ok=outage.text == DOWN,
        ),
        Row(scenario, "... told after", f"{told:.1f} s", f"{turn:.1f} s per answered turn", told / turn),
        Row(scenario, "readiness during the outage", readiness[:80]),
        Row(
            scenario,
            "recovered by itself: first answer after",
            f"{recovered:.1f} s ({len(users.exchanges) - 3} turn(s))",
            f"{turn:.1f} s per answered turn",
            recovered / turn,
            "recovers",
            bool(back),
        ),
    ]
