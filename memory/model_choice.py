"""The language model `greenroom model use` chose, kept with the bot's settings in the database, so
every process of the bot (and the next start) loads the same model."""

from __future__ import annotations

import json

from greenroom.memory.settings import Settings

SCOPE, KEY = "bot", "llm.model"


class ModelChoice:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get(self) -> tuple[str, str] | None:
        """The chosen model (a catalogue name or a file) and its sha256 ("" for a catalogue name,
        which carries its own pin), or None when nothing was chosen."""
        raw = self.settings.get(SCOPE, KEY)
        if not raw:
            return None
        chosen = json.loads(raw)
        return chosen["model"], chosen["sha256"]

    def set(self, model: str, sha256: str) -> None:
        """One row, written at once: a process starting meanwhile reads the old choice or the new one."""
        self.settings.set(SCOPE, KEY, json.dumps({"model": model, "sha256": sha256}))

    def clear(self) -> bool:
        """Forget the choice; whether there was one."""
        had = self.get() is not None
        self.settings.delete(SCOPE, KEY)
        return had
