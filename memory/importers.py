"""Reading a character from whatever a user has: a ChatHaruhi folder or .zip, a role .jsonl, a card."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenroom.memory.archives import extract_zip
from greenroom.memory.card_files import CARD_SUFFIXES, read_card_file
from greenroom.memory.cards import card_to_character
from greenroom.memory.characters import Character, CharacterError, load_chatharuhi_folder
from greenroom.memory.chatharuhi_jsonl import read_jsonl
from greenroom.memory.lorebook_files import not_a_card

FORMATS = "a ChatHaruhi folder, a .zip of one, a ChatHaruhi role .jsonl, or a Character Card (.json, .png, .charx)"


@dataclass(frozen=True)
class Imported:
    character: Character
    vectors: np.ndarray | None  # stored story vectors that match the configured embedder
    note: str


def _folder_in(root: Path) -> Path:
    """The extracted folder holding system_prompt.txt: the root itself or its single subfolder."""
    if (root / "system_prompt.txt").exists():
        return root
    subfolders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    if len(subfolders) == 1 and (subfolders[0] / "system_prompt.txt").exists():
        return subfolders[0]
    raise CharacterError("the archive holds no system_prompt.txt at its top or in one top folder")


def read_character(path: str | Path, name: str | None, column: str, dim: int) -> Imported:
    """Read a character package; ``column``/``dim`` describe the configured embedder."""
    path = Path(path).expanduser()
    if path.is_dir():
        return Imported(load_chatharuhi_folder(path, name), None, "read the folder")
    if not path.is_file():
        raise CharacterError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="greenroom-import-") as tmp:
            folder = _folder_in(extract_zip(path, Path(tmp)))
            default = folder.name if folder != Path(tmp) else path.stem
            return Imported(load_chatharuhi_folder(folder, name, default), None, "read the zip archive")
    if suffix == ".jsonl":
        character, vectors, note = read_jsonl(path, name, column, dim)
        return Imported(character, vectors, note)
    if suffix in CARD_SUFFIXES:
        card, image = read_card_file(path)
        not_a_card(card, path.name)
        character, note = card_to_character(card, path.name, name, image)
        return Imported(character, None, note)
    raise CharacterError(f"{path.name}: unsupported format; expected {FORMATS}")
