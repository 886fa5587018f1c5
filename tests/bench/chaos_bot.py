"""The bot process the chaos run drives: what `greenroom run` does (health, warm-up, the platforms from
the configuration, SIGTERM drains), with the stub language model unless ``--real-model``.

    python -m tests.bench.chaos_bot --config bot.toml [--words N --delay S --slots N | --real-model]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from greenroom.compose import Greenroom
from greenroom.core.config import load_config, secret_values
from greenroom.core.logs import setup_logging
from greenroom.errors import UserError
from greenroom.serve import serve
from tests.bench.chaos_stub import StubLLM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos_bot")
    parser.add_argument("--config", required=True)
    parser.add_argument("--words", type=int, default=3, help="stub reply: filler pieces")
    parser.add_argument("--delay", type=float, default=0.0, help="stub reply: seconds per piece")
    parser.add_argument("--slots", type=int, default=1, help="stub reply: generations at once")
    parser.add_argument("--real-model", action="store_true", help="the configured language model, not the stub")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    setup_logging(config.bot.log_level, secret_values(config))
    app = Greenroom(config, llm=None if args.real_model else StubLLM(args.words, args.delay, args.slots))
    try:
        platforms = app.platforms()
        return asyncio.run(serve(app, lambda: app.adapters(platforms)))
    except UserError as e:
        print(f"chaos_bot: {getattr(e, 'detail', e)}", file=sys.stderr)
        return 2
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
