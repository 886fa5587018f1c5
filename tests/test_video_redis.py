"""Video jobs on Redis: a real `redis-server` on 127.0.0.1, `greenroom worker video` processes, the bot's
Telegram adapter and the workers' Telegram client against the fake Bot API server.

Expected answers come from the same tiny Valley run in the test process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from PIL import Image
from rq import Queue
from rq.registry import StartedJobRegistry

from greenroom.bots.telegram.html import to_html
from greenroom.cli import main
from greenroom.core.video import ClipThread
from greenroom.core.video_redis import QUEUE, RedisThreads
from greenroom.models.video.answer import DEFAULT_QUESTION
from greenroom.models.vlm.clip import FramesClip
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import AddressedReplier, RecordingReplier, message, running
from tests.servers import free_port, redis_server
from tests.test_telegram import adapter_for
from tests.test_video_chat import clip_message, expected

VIDEO = 'vision_dtype = "float32"\nmax_new_tokens = 8\nprogress_seconds = 0\nqueue = "redis"\njob_seconds = 12\n'


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e}; .ci/run installs it")
        pytest.skip(str(e))


@pytest.fixture
def flushed(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def video_config(path: Path, checkpoint: Path, redis_url: str, fake: FakeTelegram, extra: str = "") -> Path:
    """Append the Redis video settings to ``path`` (a new file gets its own data folder)."""
    start = path.read_text() if path.exists() else '[bot]\ndata_dir = "data"\n'
    path.write_text(
        start + f'[video]\ncheckpoint = "{checkpoint}"\nredis_url = "{redis_url}"\n{VIDEO}{extra}'
        f'[telegram]\nbase_url = "{fake.base_url}"\nbase_file_url = "{fake.base_file_url}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def bot(config_file, open_app, converted, flushed, fake):
    video_config(config_file, converted, flushed, fake)
    return open_app()


class Workers:
    """`greenroom worker video` processes, each with its own config and data folder; killed at the end."""

    def __init__(self, tmp_path: Path, redis_url: str, fake: FakeTelegram) -> None:
        self.tmp_path, self.redis_url, self.fake = tmp_path, redis_url, fake
        self.procs: list[subprocess.Popen] = []

    def start(self, checkpoint: Path) -> subprocess.Popen:
        folder = self.tmp_path / f"worker{len(self.procs)}"
        folder.mkdir()
        config = video_config(folder / "bot.toml", checkpoint, self.redis_url, self.fake)
        env = {**os.environ, "TELEGRAM_TOKEN": self.fake.token}
        log = (folder / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "greenroom", "worker", "video", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(tmp_path, flushed, fake):
    w = Workers(tmp_path, flushed, fake)
    yield w
    w.stop()


def post_clip(fake: FakeTelegram, data: bytes, file_id: str = "clip1", **extra) -> dict:
    fake.add_file(file_id, data)
    return fake.message(
        video={
            "file_id": file_id,
            "file_unique_id": file_id,
            "width": 80,
            "height": 60,
            "duration": 1,
            "file_size": len(data),
            "mime_type": "video/x-matroska",
        },
        **extra,
    )


async def edited_to(fake: FakeTelegram, text: str) -> list:
    return await fake.wait_for("editMessageText", text=to_html(text), timeout=120)


async def test_a_worker_describes_the_clip_and_answers_a_follow_up(
    bot, fake, workers, clips, converted, tmp_path
) -> None:
    description = expected(bot, clips["a"], tmp_path)
    workers.start(converted)
    async with running(adapter_for(bot, fake)):
        await fake.push(post_clip(fake, clips["a"]))
        status = (await fake.wait_for("sendMessage"))[0]
        assert status.params["text"] == "Watching your clip…"
        [edit] = await edited_to(fake, description)
        question = "What colour is the pan?"
        await fake.push(
            fake.message(
                question,
                reply_to_message={
                    "message_id": int(edit.params["message_id"]),
                    "date": 0,
                    "chat": {"id": 1, "type": "private"},
                },
            )
        )
        answer = expected(bot, clips["a"], tmp_path, question, [(DEFAULT_QUESTION, description)])
        await edited_to(fake, answer)
    assert [c.params["text"] for c in fake.sent("sendMessage")] == ["Watching your clip…", "Looking at the clip again…"]


async def test_a_worker_killed_mid_job_leaves_it_to_another(
    bot, fake, workers, clips, converted, tmp_path, flushed
) -> None:
    stuck = tmp_path / "stuck"  # a copy whose vision weights never arrive: its worker hangs while loading
    shutil.copytree(converted, stuck)
    (stuck / "vision.safetensors").unlink()
    os.mkfifo(stuck / "vision.safetensors")
    description = expected(bot, clips["b"], tmp_path)
    first = workers.start(stuck)
    started = StartedJobRegistry(QUEUE, connection=redis.Redis.from_url(flushed))
    async with running(adapter_for(bot, fake)):
        await fake.push(post_clip(fake, clips["b"]))
        deadline = time.monotonic() + 60
        while not started.get_job_ids():  # the first worker has taken the job
            assert time.monotonic() < deadline, "no worker took the job"
            await asyncio.sleep(0.1)
        workers.start(converted)
        first.send_signal(signal.SIGKILL)
        await edited_to(fake, description)
        assert len(fake.sent("editMessageText")) == 1  # finished once


async def test_a_message_delivered_twice_is_queued_once(bot, flushed, clips) -> None:
    replier = AddressedReplier(5)
    clip = dataclasses.replace(clip_message(clips["a"]), id="5")
    for _ in range(2):
        await (await bot.dispatcher.submit(clip, replier))
    assert replier.messages == ["Watching your clip…"]
    assert Queue(QUEUE, connection=redis.Redis.from_url(flushed)).count == 1


async def test_redis_down_keeps_the_chat_going(config_file, open_app, converted, fake, clips) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    video_config(config_file, converted, down, fake)
    app = open_app()
    replier = RecordingReplier()
    await (await app.dispatcher.submit(clip_message(clips["a"]), replier))
    assert replier.messages[0].startswith(
        f"Video description is unavailable right now: the video queue at {down} cannot be reached"
    )
    await (await app.dispatcher.submit(message("Hello there"), replier))
    assert replier.traces[-1]["character"] == "wren"  # the persona still answers
    checks = await app.readiness([])
    assert "cannot be reached" in checks["video queue"]


def test_a_worker_says_when_redis_is_down(config_file, converted, fake, capsys) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    video_config(config_file, converted, down, fake)
    assert main(["worker", "video", "--config", str(config_file)]) == 2
    assert f"the video queue at {down} cannot be reached" in capsys.readouterr().err


def test_a_clip_thread_of_frames_survives_the_trip_through_redis(flushed, tmp_path) -> None:
    """A vision-language model's clip (frames, times, the file itself) and who shared it come back whole,
    so any worker answers the follow-up and the bot's character knows the clip."""
    frames = []
    for colour in ((200, 0, 0), (0, 200, 0)):
        out = io.BytesIO()
        Image.new("RGB", (56, 56), colour).save(out, "JPEG")
        frames.append(out.getvalue())
    clip = FramesClip(tuple(frames), (0.0, 1.5), 60, [0, 45], video=b"\x00\x01mp4", mime="video/mp4")
    threads = RedisThreads(redis.Redis.from_url(flushed), 600)
    key = message("").key
    threads.put(key, ClipThread(clip, [("Describe it.", "Two colours.")], "Mei", 1234.5))
    back = threads.get(key)
    assert back is not None and back.clip == clip and back.clip.key == clip.key
    assert (back.turns, back.shared_by, back.at, back.photo) == (
        [("Describe it.", "Two colours.")],
        "Mei",
        1234.5,
        False,
    )
    summary = threads.summary(key)  # what the character is told, read without the frames
    assert summary is not None and summary.clip is None and summary.turns == back.turns
