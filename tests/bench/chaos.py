"""`make chaos`: fault and load figures, printed as one table.

- kill -9 during a character load and a reload (tests/bench/chaos_kill.py);
- SIGTERM with 20 turns in flight, and a burst of 10,000 messages from 500 users in 200 chats on the
  fake Telegram API with a stub model (tests/bench/chaos_traffic.py);
- PostgreSQL restarted mid-traffic, Redis (the video queue) down and back, the inference server down
  and back (tests/bench/chaos_outages.py).

Every service check runs the bot as its own process (`tests/bench/chaos_bot.py`: what `greenroom
run` does) on 127.0.0.1. Nothing here is a test: it reports, and marks what did not hold.
`python -m tests.bench.chaos NAME [NAME ...]` runs only the named parts (kill, sigterm, burst,
postgres, redis, llm); with `GREENROOM_CHAOS_DIR=FOLDER` the logs and data folders stay there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from tests.bench.chaos_table import Row, print_table

PARTS = ("kill", "sigterm", "burst", "postgres", "redis", "llm")


def part(name: str, folder: Path, notes: list[str]) -> list[Row]:
    """One part's rows; a part that could not run is one row saying why."""
    from greenroom.core.config import EmbedderSection
    from greenroom.models.embedder import Embedder
    from tests.bench import chaos_kill, chaos_outages, chaos_traffic

    def embedder() -> Embedder:
        c = EmbedderSection()
        return Embedder(c.model, c.device, c.batch_size, c.name)

    runs: dict[str, Callable[[], list[Row]]] = {
        "kill": lambda: chaos_kill.run(folder, embedder()),
        "sigterm": lambda: asyncio.run(chaos_traffic.sigterm(folder)),
        "burst": lambda: asyncio.run(chaos_traffic.burst(folder, notes)),
        "postgres": lambda: asyncio.run(chaos_outages.postgres(folder, notes)),
        "redis": lambda: asyncio.run(chaos_outages.redis(folder, notes)),
        "llm": lambda: asyncio.run(chaos_outages.llm(folder, notes)),
    }
    try:
        return runs[name]()
    except Exception as e:
        if isinstance(e, FileNotFoundError) and "is not installed" in str(e):  # tests/servers.py's words
            return [Row(name, "skipped", str(e))]
        traceback.print_exc()
        return [Row(name, "could not run", f"{type(e).__name__}: {e}", ok=False)]


def main(names: list[str] | None = None) -> int:
    logging.disable(logging.WARNING)
    # the fake API's server logs each request a client gave up on (typing indicators cancelled when a
    # turn ends): noise here; what users saw is counted from the calls that arrived
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    names = names or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part(s): {', '.join(unknown)} (choose from {', '.join(PARTS)})", file=sys.stderr)
        return 2
    rows: list[Row] = []
    notes: list[str] = []
    began = time.perf_counter()
    keep = os.environ.get("GREENROOM_CHAOS_DIR")  # set: logs and data stay there, for a look afterwards
    work = nullcontext(tempfile.mkdtemp(prefix="greenroom-chaos-", dir=keep)) if keep else tempfile.TemporaryDirectory()
    with work as tmp:
        if keep:
            print(f"chaos: working in {tmp}", file=sys.stderr)
        for name in names:
            started = time.perf_counter()
            print(f"chaos: {name} …", file=sys.stderr, flush=True)
            rows += part(name, Path(tmp) / name, notes)
            print(f"chaos: {name} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print_table(f"Faults and load ({os.cpu_count()} cores, {time.perf_counter() - began:.0f} s in all)", rows, notes)
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
