"""Characters and their stories, and the ChatHaruhi folder importer.

A ChatHaruhi character folder holds ``system_prompt.txt`` and ``texts/*.txt`` (one scene per
file, embedded whole). Greenroom also reads an optional ``character.toml`` beside them with
the display name, speaker aliases, greeting and persona settings.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenroom.errors import UserError

MAX_STORY_BYTES = 1_000_000
MAX_PROMPT_BYTES = 200_000
MAX_STORIES = 200_000
SETTING_KEYS = {"mode": str, "retrieval": str, "k": int, "story_budget": int, "history_budget": int}
META_KEYS = {"name", "display_name", "speaker_aliases", "greeting", "persona"}


class CharacterError(UserError):
    """A character package problem, naming the file and what is wrong."""


@dataclass(frozen=True)
class Story:
    """One retrievable scene of a character's script."""

    text: str
    source: str

    @property
    def hash(self) -> str:
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Character:
    """A loaded persona."""

    id: str
    name: str
    system_prompt: str
    stories: tuple[Story, ...]
    greeting: str = ""
    speaker_aliases: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    source_format: str = "chatharuhi-folder"
    # Card extras: "alternate_greetings", "post_history", "book" (lorebook), "card" (the original, for export).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A hash of everything that shapes prompts: equal versions mean a reload is a no-op."""
        h = hashlib.sha256()
        for part in (
            self.name,
            self.system_prompt,
            self.greeting,
            *self.speaker_aliases,
            repr(sorted(self.settings.items())),
            json.dumps(self.extra, sort_keys=True),
            *(s.hash for s in self.stories),
        ):
            h.update(part.encode("utf-8") + b"\0")
        return h.hexdigest()[:16]

    @property
    def speakers(self) -> tuple[str, ...]:
        """Names the character goes by in its script (the first is used in prompts)."""
        return tuple(dict.fromkeys((*self.speaker_aliases, self.name)))


def slug(name: str) -> str:
    """A character id from a name: lower case letters, digits, '-' and '_'."""
    s = re.sub(r"[^\w-]+", "-", name.strip().lower()).strip("-_")
    if not s:
        raise CharacterError(f"'{name}' cannot be used as a character name")
    return s[:64]


def read_text(path: Path, limit: int, what: str) -> str:
    """Read a UTF-8 text file, refusing binary, oversized, empty or undecodable content."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CharacterError(f"{what}: cannot read ({e.strerror})") from None
    if size > limit:
        raise CharacterError(f"{what}: {size} bytes is over the {limit}-byte limit")
    data = path.read_bytes()
    if b"\0" in data:
        raise CharacterError(f"{what}: binary file, expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise CharacterError(f"{what}: not valid UTF-8 (byte {e.start})") from None
    if not text:
        raise CharacterError(f"{what}: empty file")
    return text


def json_object(raw: bytes, where: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object, with errors naming ``where``."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CharacterError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise CharacterError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise CharacterError(f"{where}: expected a JSON object")
    return value


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "character.toml"
    if not path.exists():
        return {}
    try:
        meta = tomllib.loads(read_text(path, MAX_PROMPT_BYTES, "character.toml"))
    except tomllib.TOMLDecodeError as e:
        raise CharacterError(f"character.toml: not valid TOML ({e})") from None
    unknown = set(meta) - META_KEYS
    if unknown:
        raise CharacterError(f"character.toml: unknown key '{sorted(unknown)[0]}'")
    settings = meta.get("persona", {})
    for key, value in settings.items():
        if key not in SETTING_KEYS or not isinstance(value, SETTING_KEYS[key]):
            raise CharacterError(f"character.toml: persona.{key} is not a known setting of the right type")
    if settings.get("mode", "chat") not in ("chat", "haruhi2"):
        raise CharacterError("character.toml: persona.mode must be 'chat' or 'haruhi2'")
    if settings.get("retrieval", "hybrid") not in ("hybrid", "dense"):
        raise CharacterError("character.toml: persona.retrieval must be 'hybrid' or 'dense'")
    aliases = meta.get("speaker_aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise CharacterError("character.toml: speaker_aliases must be a list of names")
    return meta


def load_chatharuhi_folder(folder: str | Path, name: str | None = None, default_name: str | None = None) -> Character:
    """Load a ChatHaruhi character folder; files are read in sorted order (deterministic ingest).

    The id comes from ``name``, else character.toml's name, else ``default_name``, else the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CharacterError(f"{folder}: not a folder (expected system_prompt.txt and texts/)")
    prompt_path = folder / "system_prompt.txt"
    if not prompt_path.is_file():
        raise CharacterError(f"{folder}: system_prompt.txt is missing")
    texts = folder / "texts"
    if not texts.is_dir():
        raise CharacterError(f"{folder}: texts/ folder is missing")
    files = sorted(p for p in texts.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise CharacterError(f"{folder}: texts/ has no .txt story files")
    if len(files) > MAX_STORIES:
        raise CharacterError(f"{folder}: {len(files)} stories is over the {MAX_STORIES} limit")
    meta = _read_meta(folder)
    display = meta.get("display_name") or name or meta.get("name") or default_name or folder.name
    stories = tuple(Story(read_text(p, MAX_STORY_BYTES, f"texts/{p.name}"), p.name) for p in files)
    return Character(
        id=slug(name or meta.get("name") or default_name or folder.name),
        name=str(display),
        system_prompt=read_text(prompt_path, MAX_PROMPT_BYTES, "system_prompt.txt"),
        stories=stories,
        greeting=str(meta.get("greeting", "")).strip(),
        speaker_aliases=tuple(a.strip() for a in meta.get("speaker_aliases", [])),
        settings=dict(meta.get("persona", {})),
    )
