"""Real servers on 127.0.0.1 for tests and benchmarks: llama-cpp-python's OpenAI-compatible server and
Debian's redis-server and PostgreSQL, each a separate process, ready once it answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
    """`python -m llama_cpp.server` serving ``model``; yields its ``.../v1`` URL."""
    with restartable_llama(model, log, *args) as server:
        yield f"http://127.0.0.1:{server.port}/v1"


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Debian's redis-server with nothing saved; yields its URL. FileNotFoundError when not installed."""
    with restartable_redis(folder, appendonly=False) as server:
        yield f"redis://127.0.0.1:{server.port}/0"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Debian's PostgreSQL in a temporary folder; yields the server's URL (see `PostgresCluster`)."""
    with postgres_cluster() as cluster:
        yield cluster.url


def _postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")) or (
        [Path(p)] if (p := shutil.which(name)) else []
    )
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    return str(found[-1])


def new_database(server: str, name: str) -> str:
    """A fresh, empty database on a `postgres_server`; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


class Restartable:
    """A server process on a free port, ready once it answers, that can be stopped and started again
    on the same port and data (the chaos run's down-and-back checks). ``argv(port)`` is its command
    line, ``answers(port)`` whether it serves; the log goes to a file (a pipe nobody reads would
    fill up and stall it)."""

    def __init__(
        self, what: str, argv: Callable[[int], list[str]], answers: Callable[[int], bool], log: Path, seconds: float
    ) -> None:
        self.what, self.argv, self.answers, self.log, self.seconds = what, argv, answers, log, seconds
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it and wait until it answers; returns the seconds that took."""
        began = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv(self.port), stdout=out, stderr=subprocess.STDOUT)
        _until_ready(self.proc, lambda: self.answers(self.port), f"{self.what} (log: {self.log})", self.seconds)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop it (SIGTERM: its own orderly shutdown) and wait until it has exited."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Restartable:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def restartable_redis(folder: Path, appendonly: bool = True) -> Restartable:
    """Debian's redis-server; with ``appendonly`` its file in ``folder`` keeps queued jobs over a
    restart. FileNotFoundError when it is not installed."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")

    def answers(port: int) -> bool:
        try:
            with redis.Redis(port=port, socket_connect_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    return Restartable(
        "redis-server",
        lambda port: (
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if appendonly else "no",
            ]
            + ["--dir", str(folder)]
        ),
        answers,
        folder / "redis.log",
        20,
    )


def restartable_llama(model: Path, log: Path, *args: str) -> Restartable:
    """`python -m llama_cpp.server` serving ``model``; its URL is ``http://127.0.0.1:{port}/v1``."""
    import httpx

    def answers(port: int) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    return Restartable(
        "llama_cpp.server",
        lambda port: (
            # through the kernels module: a variant-built wheel loads no CPU backend by itself
            [sys.executable, "-m", "greenroom.models.llm.kernels", "run", "llama_cpp.server"]
            + ["--model", str(model), "--host", "127.0.0.1"]
            + ["--port", str(port), "--n_ctx", "2048", "--seed", "0", *args]
        ),
        answers,
        log,
        60,
    )


class PostgresCluster(Restartable):
    """Debian's PostgreSQL on one data folder (initdb once) that can be stopped and started again on
    the same port; durability off for speed. ``url`` is the server's (user `greenroom`, password
    `pw`: see `new_database`). As root it runs as the `postgres` user, in a folder that user owns."""

    def __init__(self, folder: Path) -> None:
        import psycopg

        initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
        self.pg_ctl = _postgres_bin("pg_ctl")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder, self.data = folder, folder / "data"
        (folder / "pw").write_text("pw")
        if self.as_user:
            for path in (folder, folder / "pw"):
                shutil.chown(path, "postgres")
        subprocess.run(
            [*self.as_user, initdb, "-D", str(self.data), "-U", "greenroom", "--pwfile", str(folder / "pw")]
            + ["-A", "scram-sha-256", "-E", "UTF8", "--no-locale"],
            check=True,
            capture_output=True,
        )
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(folder), "fsync": "off"}
        settings |= {"full_page_writes": "off", "synchronous_commit": "off", "max_connections": "200"}
        options = [a for k, v in settings.items() for a in ("-c", f"{k}={v}")]

        def answers(port: int) -> bool:
            try:
                psycopg.connect(f"{self.server_url(port)}/postgres", connect_timeout=1).close()
                return True
            except psycopg.OperationalError:
                return False

        super().__init__(
            "postgres",
            lambda port: [*self.as_user, postgres, "-D", str(self.data), "-p", str(port), *options],
            answers,
            folder / "log",
            30,
        )

    @staticmethod
    def server_url(port: int) -> str:
        return f"postgresql://greenroom:pw@127.0.0.1:{port}"

    @property
    def url(self) -> str:
        return self.server_url(self.port)

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE` (fast: abort open transactions and close every session, as a service
        restart does; immediate: as a crash), then wait until the server process has exited."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        subprocess.run(
            [*self.as_user, self.pg_ctl, "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30"],
            check=True,
            capture_output=True,
        )
        self.proc.wait(30)
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop("immediate")  # through pg_ctl: killing `runuser` would leave the server running


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started `PostgresCluster` in a temporary folder, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="greenroom-pg-") as tmp:
        cluster = PostgresCluster(Path(tmp))
        with cluster:
            yield cluster
