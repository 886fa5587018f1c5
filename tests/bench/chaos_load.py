"""A character load that stops at a named point and waits there to be killed (the chaos run's kill -9
checks). It loads as `greenroom character load PATH --name NAME` does (the composition root's
`Characters.load`), with the memory store wrapped so that it announces the point on stdout and then
blocks on stdin:

- ``batch``: the new version's first batch of vectors is written (mid-load, before the switch);
- ``drop``: the switch is committed and the old version's index is about to be dropped.

    python -m tests.bench.chaos_load --config bot.toml --pause-at batch|drop PATH NAME
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from greenroom.compose import Greenroom
from greenroom.core.config import load_config
from greenroom.memory.store import MemoryStore, Passage, VectorIndex
from tests.bench.chaos_stub import StubLLM

PAUSED = "paused"


def pause(where: str) -> None:
    """Say where the load stands and wait for the parent (which kills this process)."""
    print(f"{PAUSED} {where}", flush=True)
    sys.stdin.read()
    raise SystemExit("chaos_load: the parent closed stdin instead of killing this process")


class PausingIndex:
    """A vector index that pauses once its first batch is written."""

    def __init__(self, index: VectorIndex, name: str) -> None:
        self.index, self.name = index, name

    def add(self, passages: list[Passage]) -> None:
        self.index.add(passages)
        pause(f"after the first batch of {self.name}")

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.index, attr)


class PausingStore:
    """The real memory store, pausing at ``at`` (``batch`` or ``drop``) once a load has begun."""

    def __init__(self, store: MemoryStore, at: str) -> None:
        self.store, self.at = store, at
        self.loading = False

    def create(self, name: str, dim: int) -> VectorIndex:
        self.loading = True
        index = self.store.create(name, dim)
        return PausingIndex(index, name) if self.at == "batch" else index

    def commit(self, name: str, index: VectorIndex) -> None:
        self.store.commit(name, index.index if isinstance(index, PausingIndex) else index)

    def drop(self, name: str) -> None:
        if self.loading and self.at == "drop":
            pause(f"before dropping {name}")
        self.store.drop(name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.store, attr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos_load")
    parser.add_argument("--config", required=True)
    parser.add_argument("--pause-at", choices=("batch", "drop"), required=True)
    parser.add_argument("path")
    parser.add_argument("name")
    args = parser.parse_args(argv)
    app = Greenroom(load_config(args.config), llm=StubLLM())
    app.store = PausingStore(app.store, args.pause_at)  # a cached property: this instance's store from now
    try:
        app.characters.load(args.path, args.name)
    finally:
        app.close()
    print("loaded without pausing", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
