"""Scale-out: the chat model through an OpenAI-compatible server against in-process llama.cpp (same
GGUF, same greedy prompt), and video jobs per minute through Redis with 1 and 2 workers.

The server is llama-cpp-python's own, on 127.0.0.1; the workers are `greenroom worker video`
processes on the tiny Valley checkpoint the tests build, posting to the fake Telegram API.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenroom.core.config import LlmSection  # after common's thread settings
from greenroom.models.files import resolve_model_path
from greenroom.models.llm import Generation, Sampling
from tests.bench.common import median, table

MESSAGES = [
    {"role": "system", "content": "You are Wren, a stage manager who answers in full sentences."},
    {"role": "user", "content": "Walk me through the hour before the curtain goes up."},
]
SAMPLING = Sampling(max_tokens=64, temperature=0.0)
REPEAT = 5
JOBS = 8


def reply_figures(llm) -> tuple[float, float]:
    """Median time to the first token (ms) and decoding tokens/s over REPEAT replies."""
    firsts, rates = [], []
    for _ in range(REPEAT + 1):  # the first is a warm-up
        gen = Generation()
        start = time.perf_counter()
        first = None
        for _piece in llm.stream(MESSAGES, SAMPLING, gen):
            first = first or time.perf_counter()
        end = time.perf_counter()
        firsts.append((first - start) * 1000)
        rates.append((gen.completion_tokens - 1) / (end - first))
    return median(firsts[1:]), median(rates[1:])


def bench_llm(folder: Path) -> None:
    from greenroom.models.llm import LlamaCppLLM
    from greenroom.models.llm.openai import OpenAIChatLLM
    from tests.servers import llama_server

    c = LlmSection()
    threads = str(os.cpu_count() or 2)
    local_ttft, local_rate = reply_figures(LlamaCppLLM(c.model, c.sha256, n_ctx=c.n_ctx))
    with llama_server(resolve_model_path(c.model), folder / "server.log", "--n_threads", threads) as url:
        server_ttft, server_rate = reply_figures(OpenAIChatLLM(url, "smollm2", c.model))
    table(
        f"Chat model: SmolLM2-135M Q4_1, 64 greedy tokens, median of {REPEAT}",
        ["backend", "first token ms", "tokens/s", "vs in-process"],
        [
            ["in-process llama.cpp (baseline)", local_ttft, local_rate, "1.00x"],
            ["OpenAI-compatible server (HTTP, SSE)", server_ttft, server_rate, f"{server_rate / local_rate:.2f}x"],
        ],
    )


async def jobs_per_minute(folder: Path, redis_url: str, checkpoint: Path, clip: bytes, workers: int) -> float:
    import redis

    from greenroom.core.config import VideoSection
    from greenroom.core.events import Attachment, AttachmentKind, ConversationKey
    from greenroom.core.video import Job
    from greenroom.core.video_redis import RedisJobs
    from tests.fakes.telegram_api import FakeTelegram
    from tests.helpers import AddressedReplier

    redis.Redis.from_url(redis_url).flushdb()
    async with FakeTelegram() as fake:
        config = (
            f'[bot]\ndata_dir = "data"\n[video]\ncheckpoint = "{checkpoint}"\nqueue = "redis"\n'
            f'redis_url = "{redis_url}"\nvision_dtype = "float32"\nmax_new_tokens = 8\nprogress_seconds = 0\n'
            f'[telegram]\nbase_url = "{fake.base_url}"\n'
        )
        procs = []
        for i in range(workers):
            home = folder / f"w{workers}-{i}"
            home.mkdir()
            (home / "bot.toml").write_text(config)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "greenroom", "worker", "video", "--config", str(home / "bot.toml")],
                    env={**os.environ, "TELEGRAM_TOKEN": fake.token},
                    stdout=(home / "log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        jobs = RedisJobs.connect(VideoSection(checkpoint=str(checkpoint), queue="redis", redis_url=redis_url))

        async def fetch() -> bytes:
            return clip

        async def run(count: int, first_id: int) -> None:
            for n in range(first_id, first_id + count):
                attachment = Attachment(AttachmentKind.VIDEO, "clip.mkv", len(clip), len(clip), fetch=fetch)
                await jobs.put(
                    Job(
                        ConversationKey("telegram", str(n)),
                        str(n),
                        AddressedReplier(),
                        "Describe the clip.",
                        attachment,
                    )
                )
            await fake.wait_for("sendMessage", count=first_id + count - 1, timeout=600)

        try:
            await run(workers, 1)  # warm-up: each worker loads the model on its first job
            start = time.perf_counter()
            await run(JOBS, workers + 1)
            return JOBS / (time.perf_counter() - start) * 60
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


def bench_video(folder: Path) -> None:
    from greenroom.models.valley.convert import convert
    from tests.clips import lossless_clip, numbered_frames
    from tests.servers import redis_server
    from tests.valley_fixture import build_checkpoint

    checkpoint = folder / "cpu"
    convert(build_checkpoint(folder / "ck"), checkpoint, "f32")
    clip = lossless_clip(folder / "clip.mkv", numbered_frames(12, 80, 60)).read_bytes()
    try:
        with redis_server(folder) as url:
            one = asyncio.run(jobs_per_minute(folder, url, checkpoint, clip, 1))
            two = asyncio.run(jobs_per_minute(folder, url, checkpoint, clip, 2))
    except FileNotFoundError as e:
        print(f"\nVideo jobs through Redis: skipped ({e})")
        return
    table(
        f"Video jobs through Redis: tiny Valley, {JOBS} clips, {os.cpu_count()} cores",
        ["workers", "jobs/min", "vs 1 worker"],
        [["1 (baseline)", one, "1.00x"], ["2", two, f"{two / one:.2f}x"]],
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench_llm(Path(tmp))
        bench_video(Path(tmp))


if __name__ == "__main__":
    main()
