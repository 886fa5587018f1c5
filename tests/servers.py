"""Real servers on 127.0.0.1 for tests and benchmarks: llama-cpp-python's OpenAI-compatible server and
Debian's redis-server, each a separate process, ready once it answers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until_ready(proc: subprocess.Popen, answers: Callable[[], bool], what: str, seconds: float) -> None:
    """Poll a separate process until it answers (or exits, or the time is up)."""
    deadline = time.monotonic() + seconds
    while not answers():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {seconds:.0f} s")
        time.sleep(0.05)


@contextmanager
def llama_server(model: Path, log: Path, *args: str) -> Iterator[str]:
    """`python -m llama_cpp.server` serving ``model``; yields its ``.../v1`` URL. The log goes to a file
    (a pipe nobody reads would fill up and stall it)."""
    import httpx

    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--seed",
                "0",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/v1"

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/models", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            _until_ready(proc, answers, f"llama_cpp.server (log: {log})", 60)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Debian's redis-server with nothing saved; yields its URL. FileNotFoundError when not installed."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        _until_ready(proc, answers, "redis-server", 20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
