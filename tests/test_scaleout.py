"""Two `greenroom run` processes serve one Telegram bot: they share PostgreSQL and a Qdrant server,
and the test posts the bot's webhook updates to one or the other, as a load balancer would.

Real: both processes (llama.cpp, the embedder), PostgreSQL, python-telegram-bot's webhook server.
Fake: the Telegram Bot API (tests/fakes/telegram_api.py) and the Qdrant server (qdrant-client's own
engine behind its REST API, tests/fakes/qdrant_server.py: no Qdrant binary is installable here).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, select

from greenroom.memory.db import database_url
from greenroom.memory.schema import turns
from tests.fakes.telegram_api import FakeTelegram
from tests.servers import free_port, new_database
from tests.test_cards import V2

ROOT = Path(__file__).resolve().parent.parent
GREENROOM = [sys.executable, "-m", "greenroom"]


class Bot:
    """One `greenroom run` process: its webhook and health ports."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.hook, self.health = free_port(), free_port()
        folder.mkdir()
        config = folder / "bot.toml"
        config.write_text(
            '[bot]\ndata_dir = "data"\nadmins = ["telegram:9"]\n'
            "[persona]\nmax_reply_tokens = 12\ntemperature = 0.0\n"
            f'[telegram]\nwebhook_url = "http://127.0.0.1:{self.hook}/hook"\nport = {self.hook}\n'
            f"placeholder_delay = 0.0\n[health]\nport = {self.health}\n",
            encoding="utf-8",
        )
        self.log = folder / "log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*GREENROOM, "--config", str(config), "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """Until /readyz says every check passes (the process loads its models first)."""
        for _ in range(1200):
            if self.proc.poll() is not None:
                pytest.fail(f"greenroom run exited ({self.proc.returncode}): {self.log.read_text()[-3000:]}")
            try:
                async with http.get(f"http://127.0.0.1:{self.health}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)  # polling a separate process's readiness, not synchronising on time
        pytest.fail(f"not ready: {self.log.read_text()[-3000:]}")

    async def post(self, http: aiohttp.ClientSession, update: dict) -> None:
        async with http.post(f"http://127.0.0.1:{self.hook}/hook", json=update) as r:
            assert r.status == 200

    async def stop(self) -> None:
        """SIGTERM, and wait for the exit without blocking the fake servers' event loop."""
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 60)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def qdrant(tmp_path):
    """The stand-in Qdrant server, as its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.qdrant_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("qdrant fake listening on "), line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(10)


async def test_two_processes_serve_one_bot(postgres, qdrant, fake, tmp_path):
    url = new_database(postgres, "scaleout")
    env = os.environ | {
        "GREENROOM__DATABASE__URL": url,
        "GREENROOM__MEMORY__QDRANT_URL": qdrant,
        "GREENROOM__TELEGRAM__BASE_URL": fake.base_url,
        "GREENROOM__TELEGRAM__BASE_FILE_URL": fake.base_file_url,
        "TELEGRAM_TOKEN": fake.token,
    }
    env.pop("DISCORD_TOKEN", None)
    one, two = Bot(tmp_path / "one", env), Bot(tmp_path / "two", env)  # started together: one loads, one waits
    updates = iter(range(1, 10_000))

    def update(message: dict) -> dict:
        return {"update_id": next(updates), "message": message}

    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(one.ready(http), two.ready(http))
            # a character loaded through one process answers in the other at once
            fake.add_file("card", json.dumps(V2).encode())
            document = {"file_id": "card", "file_unique_id": "card", "file_name": "mira.json"}
            document |= {"mime_type": "application/json", "file_size": len(json.dumps(V2))}
            load = fake.message(caption="/character load", user_id=9, chat_id=9, document=document)
            await one.post(http, update(load))
            [loaded] = await fake.wait_for("sendMessage", chat_id=9)
            assert loaded.params["text"].startswith("Loaded Captain Mira (captain-mira)"), loaded.params
            await two.post(http, update(fake.message("/character use captain-mira", user_id=9, chat_id=9)))
            used = (await fake.wait_for("sendMessage", 2, chat_id=9))[-1].params["text"]
            assert "Captain Mira" in used and "no character" not in used, used

            # one conversation's messages, arriving at alternate processes, answered in arrival order,
            # its history continuing whichever process takes the next one
            chat, said = 7, ["first, to one", "second, to two", "third, to one", "fourth, to two"]
            for text, bot in zip(said, (one, two, one, two), strict=True):
                await bot.post(http, update(fake.message(text, chat_id=chat, user_id=chat)))
            replies = await fake.wait_for("sendMessage", len(said) + 1, timeout=300, chat_id=chat)  # + the greeting
            assert not [r for r in replies if "went wrong" in r.params["text"]], replies
            assert await stored(url, tmp_path, f"telegram:{chat}", len(said)) == said
    finally:
        await asyncio.gather(one.stop(), two.stop())
    assert one.proc.returncode == 0 and two.proc.returncode == 0


async def stored(url: str, tmp_path: Path, conversation: str, count: int) -> list[str]:
    """The conversation's stored turns (the user's side), once ``count`` are in, oldest first."""
    engine = create_engine(database_url(url, tmp_path))
    query = select(turns.c.user_text).where(turns.c.conversation == conversation).order_by(turns.c.id)
    try:
        for _ in range(1200):
            with engine.connect() as conn:
                texts = list(conn.execute(query).scalars())
            if len(texts) >= count:
                return texts
            await asyncio.sleep(0.25)  # polling another process's writes
        return texts
    finally:
        engine.dispose()
