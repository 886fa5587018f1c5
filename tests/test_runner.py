"""`greenroom run`: both platforms on one loop, SIGTERM drains running turns and closes the clients."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from greenroom.core.config import ConfigError
from greenroom.core.dispatch import CUT_OFF
from greenroom.serve import serve
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import answer_with
from tests.test_discord import adapter_for as discord_adapter
from tests.test_telegram import adapter_for as telegram_adapter


@pytest.fixture
async def fakes():
    async with FakeTelegram() as tg, FakeDiscord() as dc:
        yield tg, dc


@pytest.fixture
def config_file(config_file):
    """The shared test config with a short shutdown deadline."""
    config_file.write_text(config_file.read_text() + "[dispatch]\nshutdown_deadline = 1.0\n")
    return config_file


async def test_sigterm_lets_running_turns_finish_and_tells_the_cut_off(app, fakes):
    tg, dc = fakes
    telegram, discord = telegram_adapter(app, tg), discord_adapter(app, dc)
    started, release = asyncio.Event(), asyncio.Event()
    waiting: set[str] = set()

    async def slow(ctx):
        stream = ctx.stream()
        await stream.update("thinking about it")
        waiting.add(ctx.message.key.platform)
        if len(waiting) == 2:
            started.set()
        if ctx.message.key.platform == "telegram":
            await release.wait()  # finishes once shutdown has begun
        else:
            await asyncio.Event().wait()  # never finishes: cut off at the deadline
        await stream.finish("done thinking")

    answer_with(app, slow)
    closing = asyncio.Event()
    close = app.dispatcher.close

    async def observed_close(deadline: float) -> None:
        closing.set()
        await close(deadline)

    app.dispatcher.close = observed_close
    server = asyncio.create_task(serve(app, lambda: [telegram, discord]))
    await dc.identified.wait()
    await tg.wait_for("getUpdates")
    await tg.push(tg.message("a question"))
    await dc.dispatch("MESSAGE_CREATE", dc.message("another question"))
    await asyncio.wait_for(started.wait(), 30)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(closing.wait(), 30)
    await tg.push(tg.message("too late"))  # intake is stopped: never answered
    release.set()
    assert await asyncio.wait_for(server, 30) == 0
    assert tg.sent("editMessageText")[-1].params["text"] == "done thinking"
    assert dc.sent("PATCH", "/channels/400/messages/")[-1].body["content"] == CUT_OFF
    assert len(tg.sent("sendMessage")) == 1
    assert discord.client.is_closed() and not telegram.application.running


def test_platforms_are_enabled_by_their_tokens(open_app, monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setenv("TELEGRAM_TOKEN", "123:abc")
    assert [a.name for a in open_app().adapters()] == ["telegram"]
    monkeypatch.setenv("GREENROOM__TELEGRAM__ENABLED", "false")
    monkeypatch.setenv("GREENROOM__DISCORD__ENABLED", "true")
    with pytest.raises(ConfigError, match="discord is enabled but DISCORD_TOKEN is not set"):
        open_app().adapters()
    monkeypatch.setenv("GREENROOM__DISCORD__ENABLED", "false")
    assert open_app().adapters() == []


async def greenroom_run(tg: FakeTelegram, config_file, *args: str, **pipes) -> asyncio.subprocess.Process:
    """`greenroom run` as a process, with Telegram pointed at the fake."""
    env = {
        **os.environ,
        "TELEGRAM_TOKEN": tg.token,
        "GREENROOM__TELEGRAM__BASE_URL": f'"{tg.base_url}"',
        "GREENROOM__TELEGRAM__BASE_FILE_URL": f'"{tg.base_file_url}"',
        "GREENROOM__TELEGRAM__POLL_TIMEOUT": "1",
    }
    env.pop("DISCORD_TOKEN", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greenroom",
        "--config",
        str(config_file),
        "run",
        *args,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        **pipes,
    )


async def test_greenroom_run_serves_telegram_until_sigterm(fakes, config_file):
    tg, _ = fakes
    proc = await greenroom_run(tg, config_file)
    await tg.wait_for("getUpdates", timeout=120)
    await tg.push(tg.message("/status"))
    status = (await tg.wait_for("sendMessage"))[0].params["text"]
    assert "character: wren" in status
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert "starting telegram" in (await proc.stderr.read()).decode()


async def test_greenroom_run_with_the_console_ends_with_the_console(fakes, config_file):
    tg, _ = fakes
    proc = await greenroom_run(
        tg, config_file, "--console", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    await tg.wait_for("getUpdates", timeout=120)  # Telegram runs alongside the console
    out, _ = await asyncio.wait_for(proc.communicate(b"/status\n"), 120)  # then end of input
    assert proc.returncode == 0
    assert "character: wren" in out.decode()


async def test_greenroom_run_names_a_rejected_token(fakes, config_file):
    tg, _ = fakes
    tg.reject_token = True
    proc = await greenroom_run(tg, config_file)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines()[-1] == "greenroom: telegram: the token in TELEGRAM_TOKEN was rejected"
