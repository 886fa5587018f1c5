"""The audit log: every admin action, one JSON line each (who, where, what, when), in the data folder."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from greenroom.core.events import Message


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, message: Message, command: str, args: str, outcome: str, scope: str) -> None:
        """One admin command run: ``scope`` is where it acts, "chat" (that chat only) or "bot"."""
        entry = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "who": message.author.ref,
            "name": message.author.display_name,
            "where": str(message.key),
            "scope": scope,
            "command": command,
            "args": args,
            "outcome": outcome,
        }
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
