"""Health, readiness and metrics over HTTP on 127.0.0.1; the turn log line; secrets kept out of logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal

import pytest
from aiohttp import ClientSession

from greenroom.compose import Greenroom
from greenroom.core.config import load_config
from greenroom.core.health import HealthServer
from greenroom.core.logs import setup_logging
from greenroom.serve import serve
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import RecordingReplier, answer_with, message, running
from tests.servers import free_port
from tests.test_telegram import adapter_for


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


async def get(url: str) -> tuple[int, str]:
    async with ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def metric(text: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels) in Prometheus text."""
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_ready_once_connected_and_loaded_and_metrics_count_the_turn(app, fake) -> None:
    adapters = []
    health = HealthServer(app.metrics, lambda: app.readiness(adapters), "127.0.0.1", 0)
    await health.start()
    base = f"http://127.0.0.1:{health.port}"
    try:
        assert (await get(base + "/healthz"))[0] == 200
        status, body = await get(base + "/readyz")
        assert status == 503 and json.loads(body)["checks"] == {
            "database": "ok",
            "memory": "ok",
            "model": "still loading",
        }
        adapter = adapter_for(app, fake)  # built on the loaded models, as `greenroom run` does
        adapters.append(adapter)
        status, body = await get(base + "/readyz")
        assert status == 503 and json.loads(body)["checks"] == {
            "telegram": "not connected",
            "database": "ok",
            "memory": "ok",
            "model": "ok",
        }
        async with running(adapter):
            status, body = await get(base + "/readyz")
            assert status == 200 and json.loads(body)["ready"]
            await fake.push(fake.message("Hello! Who are you?"))
            await fake.wait_for("sendMessage", 2)
            await app.dispatcher.idle()
        status, text = await get(base + "/metrics")
        assert (await get(base + "/readyz"))[0] == 503  # stopped: not connected any more
    finally:
        await health.close()
    assert status == 200
    assert metric(text, 'greenroom_messages_total{kind="text",platform="telegram"}') == 1
    assert metric(text, 'greenroom_replies_total{platform="telegram"}') == 1
    assert metric(text, "greenroom_model_seconds_count") == 1
    assert metric(text, "greenroom_model_first_token_seconds_count") == 1
    assert metric(text, 'greenroom_queue_depth{queue="messages"}') == 0


async def test_errors_and_rate_limits_are_counted(app) -> None:
    async def broken(ctx):
        raise RuntimeError("boom")

    answer_with(app, broken)
    replier = RecordingReplier()
    await (await app.dispatcher.submit(message("hi"), replier))
    assert "error id" in replier.messages[-1]
    app.dispatcher.rate.check = lambda who: 3.0  # over the user's rate
    assert await app.dispatcher.submit(message("again", user="u2"), replier) is None
    text = app.metrics.render().decode()
    handler = app.dispatcher.routes[[r.handle for r in app.dispatcher.routes].index(broken)].name
    assert metric(text, f'greenroom_errors_total{{handler="{handler}"}}') == 1
    assert metric(text, "greenroom_rate_limited_total") == 1


async def test_an_unreachable_memory_server_is_not_ready_and_named(config_file) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config_file.write_text(config_file.read_text() + f'[memory]\nqdrant_url = "{url}"\n', encoding="utf-8")
    app = Greenroom(load_config(config_file))
    try:
        checks = await app.readiness([])
        assert checks["memory"].startswith(f"cannot reach the Qdrant server at {url}")
    finally:
        app.close()


async def test_run_serves_health_on_the_configured_port(config_file, open_app, fake) -> None:
    port = free_port()
    config_file.write_text(
        config_file.read_text().replace("[health]\nport = 0", f"[health]\nport = {port}"), encoding="utf-8"
    )
    app = open_app()
    server = asyncio.create_task(serve(app, lambda: [adapter_for(app, fake)]))
    await fake.wait_for("getUpdates")
    status, body = await get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(server, 30) == 0
    with pytest.raises(OSError):  # closed with the bot
        await get(f"http://127.0.0.1:{port}/healthz")


@pytest.fixture
def captured():
    """The log as JSON lines, restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()

    def lines() -> list[dict]:
        return [json.loads(line) for line in out.getvalue().splitlines()]

    yield out, lines
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_one_json_line_per_turn_without_the_text_unless_debug(app, captured, level) -> None:
    out, lines = captured
    setup_logging(level, stream=out)
    replier = RecordingReplier()
    await (await app.dispatcher.submit(message("Tell me about the fly loft.", chat="c7"), replier))
    [turn] = [line for line in lines() if line["msg"] == "turn"]
    assert turn["conversation"] == "test:c7" and turn["character"] == "wren"
    assert turn["completion_tokens"] == replier.traces[-1]["completion_tokens"] > 0
    assert turn["prompt_tokens"] > 0 and turn["latency_s"] >= turn["first_token_s"] > 0
    assert ("fly loft" in out.getvalue()) == (level == "debug")


def test_secrets_never_reach_the_log(captured) -> None:
    out, lines = captured
    setup_logging("info", ["123456:SECRET-TOKEN"], stream=out)
    try:
        raise ValueError("POST https://api.telegram.org/bot123456:SECRET-TOKEN/getMe failed")
    except ValueError:
        logging.getLogger("test").exception("request to %s", "https://api.telegram.org/bot123456:SECRET-TOKEN/")
    assert "SECRET" not in out.getvalue() and "bot***/getMe" in lines()[0]["error"]
