"""kill -9 during a character load and during a reload: after a restart the previous version answers
and no orphaned vectors are left.

A separate process (`tests/bench/chaos_load.py`) loads a 300-story character as `greenroom character
load` does and stops at a named point; it is killed there with SIGKILL. "Restart" is opening the
same data folder again through the composition root (the library reaps what dead loads left).
Orphaned indexes: index folders in the embedded store (committed or `.partial`) that no character
row points to and no live lease names, counted from disk and the database (counting reaps nothing).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from greenroom.compose import Greenroom
from greenroom.core.config import load_config
from greenroom.memory.characters import CharacterError
from greenroom.memory.db import Database, database_url
from greenroom.memory.leases import Leases, holder_alive
from greenroom.memory.schema import characters
from greenroom.models.embedder import Embedder
from tests.bench.chaos_bots import ROOT
from tests.bench.chaos_stub import StubLLM
from tests.bench.chaos_table import Row

STORIES = 300  # two batches of 256 passages: a kill after the first is mid-load
PROPS = ("lantern", "rope", "sandbag", "trapdoor", "fog machine", "prop sword", "cue light", "flat", "gobo", "scrim")


def write_character(folder: Path, version: str) -> Path:
    """The ChatHaruhi folder of the character `ivy` at ``version`` (a reload reads the same folder
    again); each story names its version, "(v1)" or "(v2)"."""
    texts = folder / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    (folder / "system_prompt.txt").write_text(f"You are Ivy, the props mistress of the Larkspur ({version}).")
    for i in range(STORIES):
        prop = PROPS[i % len(PROPS)]
        (texts / f"{i:04d}.txt").write_text(
            f"Ivy ({version}) on the {prop} in scene {i}: 「Check the {prop} twice, then once more before the "
            f"curtain; a {prop} that fails in act {i % 5 + 1} fails in front of everyone.」"
        )
    return folder


def leftover(data: Path) -> list[str]:
    """Orphaned indexes in the embedded store, counted without opening the library (which reaps)."""
    db = Database(database_url("", data), data)
    try:
        with db.read() as conn:
            live = set(conn.execute(select(characters.c.index_name)).scalars())
        leased = {lease.index_name for lease in Leases(db).all() if holder_alive(lease.holder)}
        leased = {name for name in leased if name}
    finally:
        db.close()
    store = data / "qdrant"
    folders = {p.name.removesuffix(".partial") for p in store.iterdir() if p.is_dir()} if store.is_dir() else set()
    return sorted(folders - live - leased)


def killed_load(config: Path, folder: Path, at: str, log: Path) -> str:
    """Run a load that pauses at ``at``, kill -9 it there; returns where it stood."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.chaos_load", "--config", str(config), "--pause-at", at]
            + [str(folder), "ivy"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # the load announces the point and waits there
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    if proc.stdin is not None:
        proc.stdin.close()
    if not line.startswith("paused"):
        raise RuntimeError(f"the load did not reach '{at}' ({line or 'no output'}); log: {log}")
    return line.removeprefix("paused ")


def reopen(config: Path, embedder: Embedder) -> tuple[Greenroom, float]:
    """A restart: the composition root on the same data folder, library opened; and the seconds it took."""
    began = time.perf_counter()
    app = Greenroom(load_config(config), embedder=embedder, llm=StubLLM())
    _ = app.library
    return app, time.perf_counter() - began


def answering(app: Greenroom) -> str:
    """Which version of `ivy` a search answers from ("v1", "v2", "mixed"), or that it is not loaded."""
    try:
        hits = app.library.search("ivy", "What goes wrong with the trapdoor in act three?", 5)
    except CharacterError:
        return "not loaded"
    versions = {v for v in ("v1", "v2") for h in hits if f"({v})" in h.story.text}
    return versions.pop() if len(versions) == 1 else f"mixed: {sorted(versions)}" if versions else "no hits"


def run(folder: Path, embedder: Embedder) -> list[Row]:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    config = folder / "bot.toml"
    config.write_text(f'[bot]\ndata_dir = "{data}"\n', encoding="utf-8")
    source = folder / "ivy"
    log = folder / "loads.log"
    cases = [  # scenario, version on disk, where the load is killed, version expected to answer after
        ("kill -9 mid first load", "v1", "batch", "not loaded"),
        ("kill -9 mid reload (v1 -> v2)", "v2", "batch", "v1"),
        ("kill -9 after reload's switch", "v2", "drop", "v2"),
    ]
    rows: list[Row] = []
    for scenario, version, at, expected in cases:
        write_character(source, version)
        where = killed_load(config, source, at, log)
        before = leftover(data)
        app, reaping = reopen(config, embedder)
        try:
            answers = answering(app)
        finally:
            app.close()
        after = leftover(data)
        clean, opening = reopen(config, embedder)  # baseline: the same open with nothing to reap
        try:
            if expected == "not loaded":  # the next case reloads over v1: load it, as a user would now
                clean.characters.load(source, "ivy")
        finally:
            clean.close()
        rows += [
            Row(scenario, "killed at", where),
            Row(scenario, "version answering after restart", answers, expect=expected, ok=answers == expected),
            Row(
                scenario,
                "orphaned indexes after restart",
                len(after),
                f"{len(before)} right after the kill",
                expect="0",
                ok=not after,
            ),
            Row(
                scenario, "restart (open + reap)", f"{reaping:.2f} s", f"{opening:.2f} s clean open", reaping / opening
            ),
        ]
    return rows
