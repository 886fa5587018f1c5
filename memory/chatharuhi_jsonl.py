"""The ChatHaruhi role jsonl format (HF `silk-road/ChatHaruhi-*` datasets), read and written.

Two sentinel rows (the system prompt, then a reserved config row), then one row per story.
A row's text is in `text` (or base64 UTF-8 in `enc_text`); every other key is an embedding
column named after its model, holding the story's vector as base64 of big-endian float32.
Sentinel rows are recognised by the value of an embedding column: "system_prompt", "config".
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import numpy as np

from greenroom.memory.characters import MAX_STORIES, Character, CharacterError, Story, json_object, slug

TEXT_KEYS = ("text", "enc_text")
SENTINELS = ("system_prompt", "config")
MAX_FILE_BYTES = 500 * 1024 * 1024


def column_name(model_name: str) -> str:
    """The embedding column for a model: lower case, '_' for separators (ChatHaruhi's style)."""
    return "".join(c if c.isalnum() else "_" for c in model_name.lower()).strip("_")


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype=">f4").tobytes()).decode("ascii")


def decode_vector(value: str, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CharacterError(f"{where}: the vector is not valid base64") from None
    if len(raw) % 4:
        raise CharacterError(f"{where}: the vector is not a whole number of float32 values")
    return np.frombuffer(raw, dtype=">f4").astype(np.float32)


def _row_text(row: dict, where: str) -> str:
    if isinstance(row.get("text"), str):
        return row["text"]
    if isinstance(row.get("enc_text"), str):
        try:
            return base64.b64decode(row["enc_text"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CharacterError(f"{where}: enc_text is not base64 of UTF-8 text") from None
    raise CharacterError(f"{where}: no 'text' or 'enc_text'")


def read_jsonl(path: Path, name: str | None, column: str, dim: int) -> tuple[Character, np.ndarray | None, str]:
    """Read a role jsonl: the character, its stored vectors when ``column`` matches (else None),
    and a sentence saying which happened."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CharacterError(f"{path.name}: over the {MAX_FILE_BYTES}-byte limit")
    prompt: str | None = None
    stories: list[Story] = []
    vectors: list[np.ndarray | None] = []
    columns: set[str] = set()
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path.name} line {number}"
            if not raw.strip():
                continue
            row = json_object(raw, where)
            text = _row_text(row, where)
            columns.update(k for k in row if k not in TEXT_KEYS)
            marks = {v for k, v in row.items() if k not in TEXT_KEYS and v in SENTINELS}
            if "system_prompt" in marks:
                prompt = text.strip()
                continue
            if "config" in marks:
                continue
            if not text.strip():
                raise CharacterError(f"{where}: empty story text")
            stories.append(Story(text.strip(), f"line-{number}"))
            vectors.append(decode_vector(row[column], where) if isinstance(row.get(column), str) else None)
            if len(stories) > MAX_STORIES:
                raise CharacterError(f"{path.name}: more than {MAX_STORIES} stories")
    if not prompt:
        raise CharacterError(f"{path.name}: no system_prompt row (a row whose embedding column says 'system_prompt')")
    if not stories:
        raise CharacterError(f"{path.name}: no story rows")
    character = Character(
        slug(name or path.stem), name or path.stem, prompt, tuple(stories), source_format="chatharuhi-jsonl"
    )
    present = [v for v in vectors if v is not None and v.shape == (dim,)]
    if len(present) == len(vectors):
        matrix = np.stack(present)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return character, matrix, f"reused the stored '{column}' vectors"
    why = (
        f"the '{column}' vectors are not {dim}-dimensional"
        if any(v is not None for v in vectors)
        else f"no '{column}' column (found: {', '.join(sorted(columns)) or 'none'})"
    )
    return character, None, f"re-embedded the stories: {why}"


def write_jsonl(character: Character, vectors: np.ndarray, column: str, out: Path) -> None:
    """Write a role jsonl that ChatHaruhi (and Greenroom) can load."""
    with out.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"text": character.system_prompt, column: "system_prompt"}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"text": "Reserve Config Setting Here", column: "config"}, ensure_ascii=False) + "\n")
        for story, vector in zip(character.stories, vectors, strict=True):
            f.write(json.dumps({"text": story.text, column: encode_vector(vector)}, ensure_ascii=False) + "\n")
