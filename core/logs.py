"""Logging: plain lines on a terminal, one JSON object per line otherwise; secrets never written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

NOISY = ("alembic", "httpx", "sentence_transformers", "transformers", "urllib3")
FIELDS = ("turn", "job")  # structured extras: `log.info("turn", extra={"turn": {...}})`


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", ...extras} per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if isinstance(value := getattr(record, name, None), dict):
                out.update(value)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [getattr(record, name) for name in FIELDS if isinstance(getattr(record, name, None), dict)]
        return line + "".join(" " + " ".join(f"{k}={v}" for k, v in e.items()) for e in extras)


class Redacting(logging.Formatter):
    """Wraps a formatter: each secret's value becomes *** wherever it would be written (a token in a
    URL, in an exception), after formatting."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for value in self.secrets:
            text = text.replace(value, "***")
        return text


def setup_logging(
    level: str, secrets: Iterable[str] = (), stream: TextIO | None = None, as_json: bool | None = None
) -> logging.Handler:
    """Configure the root logger; JSON unless ``stream`` (stderr) is a terminal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    as_json = not stream.isatty() if as_json is None else as_json
    handler.setFormatter(Redacting(JsonFormatter() if as_json else PlainFormatter(), secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    return handler
