"""Character Cards V1/V2/V3 (SillyTavern and friends): JSON, PNG/APNG with the card in a tEXt
chunk (`chara` base64 JSON; `ccv3` wins when both exist), and CHARX (zip with `card.json`).

Mapping: description, personality and scenario (or the card's own system_prompt, with
``{{original}}`` standing for the default) make the persona; `mes_example` split on `<START>`
gives the stories; `first_mes` and `alternate_greetings` are the greetings; `post_history_instructions`
follows the history; `character_book` entries are keyword-triggered lore (`core.lore`). `{{char}}` and
`<BOT>` become the name at load; `<USER>` becomes `{{user}}`, which the prompt fills with the user's name
each turn.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from greenroom.memory.archives import extract_zip
from greenroom.memory.characters import Character, CharacterError, Story, json_object, slug

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CARD_BYTES = 20 * 1024 * 1024
MAX_CHUNK_BYTES = 16 * 1024 * 1024
DEFAULT_PROMPT = (
    "You are {{char}}. Stay in character and answer as {{char}} would, in {{char}}'s voice.\n\n"
    "{description}\n\nPersonality: {personality}\n\nScenario: {scenario}"
)
BOOK_KEYS = (
    "keys",
    "secondary_keys",
    "content",
    "enabled",
    "insertion_order",
    "case_sensitive",
    "constant",
    "selective",
    "position",
    "name",
    "priority",
    "id",
    "comment",
)


def png_text_chunks(data: bytes, where: str) -> dict[str, str]:
    """The tEXt chunks of a PNG (keyword -> text), every length checked against the file."""
    if not data.startswith(PNG_SIGNATURE):
        raise CharacterError(f"{where}: not a PNG file")
    chunks: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise CharacterError(f"{where}: truncated PNG (chunk header at byte {pos})")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > MAX_CHUNK_BYTES or pos + 12 + length > len(data):
            raise CharacterError(f"{where}: truncated or corrupt PNG (chunk {kind!r} at byte {pos})")
        body = data[pos + 8 : pos + 8 + length]
        if struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] != zlib.crc32(kind + body):
            raise CharacterError(f"{where}: corrupt PNG (bad checksum in chunk {kind!r})")
        if kind == b"tEXt" and b"\0" in body:
            key, _, text = body.partition(b"\0")
            chunks[key.decode("latin-1")] = text.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return chunks


def _card_from_png(data: bytes, where: str) -> dict[str, Any]:
    chunks = png_text_chunks(data, where)
    key = "ccv3" if "ccv3" in chunks else "chara" if "chara" in chunks else None
    if key is None:
        raise CharacterError(f"{where}: the PNG carries no character card (no 'chara' or 'ccv3' tEXt chunk)")
    try:
        return json_object(base64.b64decode(chunks[key], validate=True), f"{where} ({key} chunk)")
    except (binascii.Error, ValueError):
        raise CharacterError(f"{where}: the '{key}' chunk is not base64") from None


def read_card_file(path: Path) -> dict[str, Any]:
    """The raw card JSON from a .json, .png/.apng or .charx file."""
    where = path.name
    if path.stat().st_size > MAX_CARD_BYTES and path.suffix.lower() != ".charx":
        raise CharacterError(f"{where}: over the {MAX_CARD_BYTES}-byte limit")
    suffix = path.suffix.lower()
    if suffix in (".png", ".apng"):
        return _card_from_png(path.read_bytes(), where)
    if suffix == ".charx":
        with tempfile.TemporaryDirectory(prefix="greenroom-charx-") as tmp:
            card = extract_zip(path, Path(tmp)) / "card.json"
            if not card.is_file():
                raise CharacterError(f"{where}: no card.json at the top of the archive")
            return json_object(card.read_bytes(), f"{where} card.json")
    return json_object(path.read_bytes(), where)


def _fields(card: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """The card's data fields and its spec name (V1 cards keep fields at the top)."""
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CharacterError(f"{where}: '{spec}' card without a 'data' object")
        return data, spec
    if spec is not None:
        raise CharacterError(f"{where}: unknown card spec '{spec}'")
    return card, "chara_card_v1"


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CharacterError(f"{where}: field '{key}' must be text")
    return value.strip()


def card_to_character(card: dict[str, Any], where: str, name: str | None = None) -> tuple[Character, str]:
    """Map a card to a character; the second value says what the load did not use yet."""
    data, spec = _fields(card, where)
    char = _text(data, "nickname", where) or _text(data, "name", where)
    if not char:
        raise CharacterError(f"{where}: the card has no 'name'")

    def fill(text: str) -> str:
        text = re.sub(r"\{\{char\}\}|<BOT>", lambda _: char, text, flags=re.I)
        return re.sub(r"<USER>", "{{user}}", text, flags=re.I)

    persona = [
        _text(data, k, where) for k in ("description", "personality", "scenario", "system_prompt", "mes_example")
    ]
    if not any(persona):
        raise CharacterError(
            f"{where}: the card is empty (no description, personality, scenario, system prompt or example messages)"
        )
    default = DEFAULT_PROMPT.format(
        description=_text(data, "description", where),
        personality=_text(data, "personality", where),
        scenario=_text(data, "scenario", where),
    )
    own = _text(data, "system_prompt", where)
    prompt = own.replace("{{original}}", default) if own else default
    examples = [e.strip() for e in re.split(r"^\s*<START>\s*$", _text(data, "mes_example", where), flags=re.M | re.I)]
    stories = tuple(Story(fill(e), f"example-{i}") for i, e in enumerate(filter(None, examples), 1))
    greetings = data.get("alternate_greetings") or []
    if not isinstance(greetings, list) or not all(isinstance(g, str) for g in greetings):
        raise CharacterError(f"{where}: 'alternate_greetings' must be a list of texts")
    post = _text(data, "post_history_instructions", where).replace("{{original}}", "")
    extra: dict[str, Any] = {
        "alternate_greetings": [fill(g) for g in greetings if g.strip()],
        "post_history": fill(post),
        "book": _book(data.get("character_book"), fill, where),
        "card": card,
    }
    ours = (data.get("extensions") or {}).get("greenroom") or {}  # written by character_to_card
    character = Character(
        id=slug(name or ours.get("id") or _text(data, "name", where)),
        name=char,
        system_prompt=fill(prompt),
        stories=stories,
        greeting=fill(_text(data, "first_mes", where)),
        speaker_aliases=tuple(ours.get("speaker_aliases") or (char,)),
        settings=dict(ours.get("settings") or {}),
        source_format=spec.replace("_", "-"),
        extra=extra,
    )
    lore = len(extra["book"].get("entries", []))
    return character, f"read a {spec.replace('_', ' ')}" + (f" with {lore} lore entries" if lore else "")


def _book(book: Any, fill, where: str) -> dict[str, Any]:
    """The card's lorebook, checked and with names filled in."""
    if not book:
        return {}
    if not isinstance(book, dict) or not isinstance(book.get("entries", []), list):
        raise CharacterError(f"{where}: 'character_book' must be an object with an 'entries' list")
    entries = []
    for i, entry in enumerate(book.get("entries", [])):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("keys", []), list)
            or not isinstance(entry.get("content", ""), str)
        ):
            raise CharacterError(f"{where}: character_book entry {i} needs 'keys' (a list) and 'content' (text)")
        kept = {k: entry[k] for k in BOOK_KEYS if k in entry}
        kept["content"] = fill(kept.get("content", ""))
        entries.append(kept)
    return {"scan_depth": book.get("scan_depth"), "token_budget": book.get("token_budget"), "entries": entries}


def character_to_card(character: Character) -> dict[str, Any]:
    """A V2 card for any character: the original card when it came from one (extensions and all),
    else one built so that loading it back gives the same prompt."""
    if "card" in character.extra:
        return character.extra["card"]
    data = {
        "name": character.name,
        "description": "",
        "personality": "",
        "scenario": "",
        "first_mes": character.greeting,
        "mes_example": "\n".join(f"<START>\n{s.text}" for s in character.stories),
        "creator_notes": f"Exported by Greenroom from a {character.source_format}.",
        "system_prompt": character.system_prompt,
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": [],
        "creator": "",
        "character_version": character.version,
        "extensions": {
            "greenroom": {
                "id": character.id,
                "speaker_aliases": list(character.speaker_aliases),
                "settings": character.settings,
            }
        },
    }
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}
