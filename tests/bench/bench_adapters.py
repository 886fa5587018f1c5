"""Messages per second and added latency through adapter -> dispatcher -> replier, for 1 and 200
concurrent conversations, with the fake platform servers and a model stub that answers at once.

Baseline, same run: the same library and fake server with a bare handler that replies directly
(PTB with concurrent updates; discord.py's own on_message tasks): the floor any bot on that
library pays. Latency is from the update being offered by the fake server to the reply arriving.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.bench.common import p, table
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

ROUNDS = {1: 200, 200: 5}  # conversations -> rounds of one message per conversation


def greenroom(data: Path):
    """A Greenroom whose persona is replaced by a stub that answers at once (no rate limit)."""
    from greenroom.compose import Greenroom
    from greenroom.core.config import load_config
    from greenroom.core.dispatch import Route

    app = Greenroom(
        load_config(environ={"GREENROOM_DATA_DIR": str(data), "GREENROOM__DISPATCH__USER_RATE_PER_MINUTE": "0"})
    )

    async def stub(ctx) -> None:
        await ctx.say(f"ok {ctx.message.id}")

    app.dispatcher.add(Route(50, "stub", lambda ctx: True, stub))
    return app


async def measure(
    conversations: int, offer: Callable[[int, int], Awaitable[str]], replies: Callable[[], dict[str, float]]
) -> tuple[float, list[float]]:
    """Offer ROUNDS[conversations] rounds of one message per conversation; (messages/s, latencies ms)."""
    offered: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(ROUNDS[conversations]):
        ids = []
        for c in range(conversations):
            ids.append(await offer(c, conversations))
            offered[ids[-1]] = time.monotonic()
        while not all(i in replies() for i in ids):
            await asyncio.sleep(0.002)  # polling the fake's record; only the bench does this
    elapsed = time.perf_counter() - start
    arrived = replies()
    return len(offered) / elapsed, [(arrived[i] - t) * 1000 for i, t in offered.items()]


async def telegram_run(conversations: int, bare: bool, data: Path) -> tuple[float, list[float]]:
    from telegram.ext import Application, MessageHandler, filters

    from greenroom.bots.telegram import TelegramAdapter
    from greenroom.core.config import TelegramSection

    fake = await FakeTelegram().start()
    if bare:
        application = Application.builder().token(fake.token).base_url(fake.base_url).concurrent_updates(True).build()

        async def echo(update, context) -> None:
            await update.message.reply_text(f"ok {update.message.message_id}")

        application.add_handler(MessageHandler(filters.ALL, echo))
        await application.initialize()
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)
        stop = application
    else:
        app = greenroom(data)
        adapter = TelegramAdapter(app.host, TelegramSection(base_url=fake.base_url, poll_timeout=1), fake.token)
        await adapter.start()

    async def offer(c: int, n: int) -> str:
        message = fake.message(f"hello {c}", chat_id=1000 + c, user_id=1000 + c)
        await fake.push(message)
        return str(message["message_id"])

    def replies() -> dict[str, float]:
        return {c.params["text"].split()[-1]: c.at for c in fake.calls if c.method == "sendMessage"}

    try:
        return await measure(conversations, offer, replies)
    finally:
        if bare:
            await stop.updater.stop()
            await stop.stop()
            await stop.shutdown()
        else:
            await adapter.stop_intake()
            await adapter.close()
            app.close()
        await fake.stop()


async def discord_run(conversations: int, bare: bool, data: Path) -> tuple[float, list[float]]:
    import discord

    from greenroom.bots.discord import DiscordAdapter, intents, point_at
    from greenroom.core.config import DiscordSection

    fake = await FakeDiscord().start()
    section = DiscordSection(api_base=fake.api_base, gateway_url=fake.gateway_url, sync_commands=False)
    if bare:
        point_at(section)
        client = discord.Client(intents=intents(section))

        @client.event
        async def on_message(message: discord.Message) -> None:
            if message.author != client.user:
                await message.channel.send(f"ok {message.id}")

        await client.login("token")
        connection = asyncio.create_task(client.connect())
        await client.wait_until_ready()
    else:
        app = greenroom(data)
        adapter = DiscordAdapter(app.host, section, "token")
        await adapter.start()

    async def offer(c: int, n: int) -> str:
        message = fake.message(f"hello {c}", author=str(1000 + c), channel=str(5000 + c))
        await fake.dispatch("MESSAGE_CREATE", message)
        return message["id"]

    def replies() -> dict[str, float]:
        return {
            c.body["content"].split()[-1]: c.at
            for c in fake.calls
            if c.method == "POST" and c.path.endswith("/messages")
        }

    try:
        return await measure(conversations, offer, replies)
    finally:
        if bare:
            await client.close()
            await asyncio.gather(connection, return_exceptions=True)
        else:
            await adapter.stop_intake()
            await adapter.close()
            app.close()
        await fake.stop()


def main() -> None:
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for platform, run in (("telegram", telegram_run), ("discord", discord_run)):
            for conversations in ROUNDS:
                ours_rate, ours = asyncio.run(run(conversations, False, Path(tmp) / f"{platform}{conversations}"))
                base_rate, base = asyncio.run(run(conversations, True, Path(tmp)))
                rows.append(
                    [
                        platform,
                        conversations,
                        len(ours),
                        ours_rate,
                        base_rate,
                        ours_rate / base_rate,
                        p(ours, 50),
                        p(ours, 99),
                        p(base, 50),
                        p(base, 99),
                        p(ours, 50) - p(base, 50),
                        p(ours, 99) - p(base, 99),
                    ]
                )
    logging.disable(logging.NOTSET)
    table(
        "Adapter -> dispatcher -> replier, fake servers, stub model (baseline: bare library handler)",
        [
            "platform",
            "conversations",
            "messages",
            "msg/s",
            "baseline msg/s",
            "ratio",
            "p50 ms",
            "p99 ms",
            "base p50",
            "base p99",
            "added p50",
            "added p99",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
