"""Traffic on the bot process through the fake Telegram API, with the stub model:

- SIGTERM with 20 turns in flight: every user answered or told to ask again; the process exits within
  ``dispatch.shutdown_deadline`` + 5 s;
- a burst of 10,000 messages from 500 users in 200 group chats, all pushed at once: each message
  answered, told busy, or rate-limited, counted from what the chats show (plus the bot's own count of
  rate-limit refusals it did not answer, since it answers one per cooldown); what is left is dropped.
  Peak RSS growth of the bot process against its RSS just before the burst.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path

from greenroom.core.config import DispatchSection
from greenroom.core.dispatch import BUSY, CLOSING, CUT_OFF
from tests.bench.chaos_bots import GREETING, BotProcess, ChaosTelegram, Push, Transcript, outcomes
from tests.bench.chaos_stub import is_answer, tag_of
from tests.bench.chaos_table import Row

DEADLINE = 3.0  # dispatch.shutdown_deadline for the SIGTERM check
IN_FLIGHT = 20
SLOTS = 4  # the stub's generations at once: the rest of the 20 wait for the model

MESSAGES, USERS, CHATS = 10_000, 500, 200
RATE_LIMITED = "You're sending messages faster than I can answer"
STALL = 30.0  # seconds without a call to the fake or a metric change: the burst is over
MB = 1024 * 1024


async def sigterm(folder: Path) -> list[Row]:
    """20 users in 20 chats, replies of 2 s, 4 at a time; SIGTERM once all 20 are in flight."""
    scenario = f"SIGTERM, {IN_FLIGHT} turns in flight"
    async with ChaosTelegram() as fake:
        settings = {"dispatch": {"shutdown_deadline": DEADLINE}, "telegram": {"placeholder_delay": 0.0}}
        bot = BotProcess(folder, fake, settings, ("--words", "20", "--delay", "0.1", "--slots", str(SLOTS)))
        try:
            await bot.start()
            transcript = Transcript(fake)
            pushes = [await transcript.push(100 + i, 100 + i, f"Tell me about opening night #{i}") for i in range(20)]
            metrics = await _in_flight(bot, transcript, pushes)
            in_flight = int(metrics["greenroom_messages_total"] - metrics.get("greenroom_replies_total", 0))
            seconds, code = await bot.stop(DEADLINE + 60)
        finally:
            bot.kill()
    ended = outcomes(transcript, pushes)
    again = sum(len(ended.told[text]) for text in (CUT_OFF, CLOSING))
    other = sum(len(tags) for text, tags in ended.told.items() if text not in (CUT_OFF, CLOSING))
    limit = DEADLINE + 5
    return [
        Row(scenario, "turns in flight at SIGTERM", in_flight, expect=str(IN_FLIGHT), ok=in_flight == IN_FLIGHT),
        Row(scenario, "answered in full", len(ended.answered)),
        Row(scenario, "told to ask again", again, expect="the rest"),
        Row(
            scenario,
            "neither (silent, or told something else)",
            len(ended.silent) + other,
            expect="0",
            ok=not ended.silent and not other,
        ),
        Row(
            scenario,
            "exit after SIGTERM (exit code)",
            f"{seconds:.1f} s ({code})",
            f"{limit:.0f} s (deadline {DEADLINE:.0f} + 5)",
            seconds / limit,
            "<= 1.00x, code 0",
            seconds <= limit and code == 0,
        ),
    ]


async def _in_flight(bot: BotProcess, transcript: Transcript, pushes: list[Push]) -> dict[str, float]:
    """Wait until every message is admitted and the model is streaming in as many chats as it has slots."""
    deadline = time.monotonic() + 120
    while True:
        metrics = await bot.metrics()
        streaming = sum(any(s.final.startswith(f"ok #{p.tag}") for s in transcript.after(p)) for p in pushes)
        if metrics.get("greenroom_messages_total", 0) >= len(pushes) and streaming >= SLOTS:
            return metrics
        if time.monotonic() > deadline:
            raise RuntimeError(f"the turns did not all start (log: {bot.log})")
        await asyncio.sleep(0.05)


def tally(transcript: Transcript, pushes: list[Push], rate_limited: float) -> Counter[str]:
    """How each pushed message ended, from what the chats show: answered (the stub's complete reply
    names it), told busy, told rate-limited, told something else; plus the rate-limit refusals the
    bot counted but did not answer (one answer per cooldown), and the dropped: the rest."""
    transcript.update()
    ended: dict[str, str] = {}
    for sent in transcript.sent.values():
        tag = tag_of(sent.final)
        if tag is not None and is_answer(sent.final, tag):
            ended[tag] = "answered"
    for sent in transcript.sent.values():
        push = transcript.by_message.get(sent.reply_to) if sent.reply_to is not None else None
        if push is None or push.tag in ended:
            continue
        if sent.first == BUSY:
            ended[push.tag] = "busy"
        elif sent.first.startswith(RATE_LIMITED):
            ended[push.tag] = "rate-limited, told"
        elif sent.first != GREETING and not sent.first.startswith(f"ok #{push.tag}"):
            ended[push.tag] = f"told: {sent.first}"
    counts = Counter(ended[p.tag] for p in pushes if p.tag in ended)
    counts["rate-limited, not told again"] = int(rate_limited) - counts["rate-limited, told"]
    counts["dropped"] = len(pushes) - sum(counts.values())
    return counts


async def burst(folder: Path, notes: list[str]) -> list[Row]:
    """10,000 messages at once from 500 users in 200 group chats (mentions), default limits."""
    scenario = f"burst of {MESSAGES:,}"
    async with ChaosTelegram() as fake:
        bot = BotProcess(folder, fake)
        try:
            await bot.start()
            transcript = Transcript(fake)
            warm = await transcript.push(1, 1, "warm-up #999999")  # the first turn loads what turns use
            if await transcript.settled(warm, 120) is None:
                raise RuntimeError(f"the warm-up message was not answered (log: {bot.log})")
            before = bot.rss()
            exact = bot.reset_peak()
            samples = [before]
            sampler = asyncio.create_task(_sample(bot, samples))
            began = time.monotonic()
            pushes = [
                await transcript.push(-1000 - (j % USERS) % CHATS, 10_000 + j % USERS, f"what's on tonight #{j}", True)
                for j in range(MESSAGES)
            ]
            pushed = time.monotonic() - began
            counts, taken_in = await _accounted(bot, transcript, pushes, began)
            took = time.monotonic() - began
            peak = bot.peak() if exact else max(samples)
            sampler.cancel()
        finally:
            await bot.stop()
            bot.kill()
    for kind, n in counts.items():
        if kind.startswith("told: "):
            notes.append(f"burst: {n} message(s) were answered: {kind.removeprefix('told: ')[:160]}")
    if not counts["rate-limited, told"] and not math.isnan(taken_in):
        rate = DispatchSection()
        notes.append(
            f"burst: no rate-limit refusals: the bot took the burst in over {taken_in:.0f} s, so each user's "
            f"{MESSAGES // USERS} messages reached it at {MESSAGES / USERS / taken_in * 60:.1f} a minute, within "
            f"dispatch.user_rate_per_minute ({rate.user_rate_per_minute:g}) after the first {rate.user_burst}"
        )
    told_else = sum(n for kind, n in counts.items() if kind.startswith("told: "))
    return [
        Row(scenario, "messages sent (500 users, 200 group chats)", MESSAGES, f"pushed in {pushed:.1f} s"),
        Row(scenario, "answered (complete reply)", counts["answered"]),
        Row(scenario, "told busy (lane full)", counts["busy"]),
        Row(scenario, "rate-limited, told", counts["rate-limited, told"]),
        Row(
            scenario,
            "rate-limited, not told again in the cooldown",
            counts["rate-limited, not told again"],
            "the bot's rate-limit counter",
        ),
        Row(scenario, "told something else (errors)", told_else, expect="0", ok=told_else == 0),
        Row(scenario, "dropped (sent - all the above)", counts["dropped"], expect="0", ok=counts["dropped"] == 0),
        Row(
            scenario,
            "until the bot had taken in every message",
            f"{taken_in:.0f} s",
            f"{MESSAGES / taken_in:.0f} messages/s",
        ),
        Row(
            scenario,
            "until every message was accounted for",
            f"{took:.0f} s",
            f"{counts['answered'] / took:.0f} answers/s",
        ),
        Row(
            scenario,
            "peak RSS growth" + ("" if exact else " (sampled)"),
            f"{(peak - before) / MB:+.0f} MB",
            f"{before / MB:.0f} MB RSS before",
            peak / before,
        ),
    ]


async def _sample(bot: BotProcess, samples: list[int]) -> None:
    """RSS every 0.1 s (the peak where Linux's own cannot be reset)."""
    while True:
        samples.append(bot.rss())
        await asyncio.sleep(0.1)


async def _accounted(
    bot: BotProcess, transcript: Transcript, pushes: list[Push], began: float
) -> tuple[Counter[str], float]:
    """Wait until every message is accounted for, or nothing has happened for STALL seconds; the
    counts, and the seconds until the bot had taken in every message (its message counter)."""
    last, quiet_since, taken_in = None, time.monotonic(), math.nan
    while True:
        metrics = await bot.metrics()
        if math.isnan(taken_in) and metrics.get("greenroom_messages_total", 0) > len(pushes):  # + the warm-up
            taken_in = time.monotonic() - began
        counts = tally(transcript, pushes, metrics.get("greenroom_rate_limited_total", 0))
        if counts["dropped"] <= 0:
            return counts, taken_in
        now = (len(transcript.fake.calls), sorted(metrics.items()))
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > STALL:
            return counts, taken_in
        await asyncio.sleep(0.5)
