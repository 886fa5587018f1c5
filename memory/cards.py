"""Character Cards V1/V2/V3 (SillyTavern and friends) mapped to and from characters; the files they
travel in (JSON, PNG, CHARX) are read and written by `card_files`.

Mapping: description, personality and scenario (or the card's own system_prompt, with
``{{original}}`` standing for the default) make the persona; `mes_example` split on `<START>`
gives the stories; `first_mes` and `alternate_greetings` are the greetings;
`post_history_instructions` (and the character's note, `extensions.depth_prompt`) follows the
history; `character_book` entries are keyword-triggered lore (`core.lore`). `{{char}}` and `<BOT>`
become the name at load; `<USER>` becomes `{{user}}`; every other macro is expanded each turn
(`core.macros`). The image a card came with is kept (base64 PNG in the character's ``extra["image"]``) for export.
"""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

from greenroom.memory.characters import Character, CharacterError, Story, slug
from greenroom.memory.lorebooks import read_book

V2 = "chara_card_v2"
V3 = "chara_card_v3"
OPENING = "You are {{char}}. Stay in character and answer as {{char}} would, in {{char}}'s voice."
V2_DATA: dict[str, Any] = {  # every V2 data field, with its empty value
    "name": "",
    "description": "",
    "personality": "",
    "scenario": "",
    "first_mes": "",
    "mes_example": "",
    "creator_notes": "",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": [],
    "creator": "",
    "character_version": "",
    "extensions": {},
}


def _fields(card: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """The card's data fields and its spec name (V1 cards keep fields at the top)."""
    spec = card.get("spec")
    if spec in (V2, V3):
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


def card_to_character(
    card: dict[str, Any], where: str, name: str | None = None, image: bytes | None = None
) -> tuple[Character, str]:
    """Map a card (and the PNG image it came with) to a character; the second value says what was read."""
    data, spec = _fields(card, where)
    char = _text(data, "nickname", where) or _text(data, "name", where)
    if not char:
        raise CharacterError(f"{where}: the card has no 'name'")

    def fill(text: str) -> str:
        return fill_names(text, char)

    persona = [
        _text(data, k, where) for k in ("description", "personality", "scenario", "system_prompt", "mes_example")
    ]
    if not any(persona):
        raise CharacterError(
            f"{where}: the card is empty (no description, personality, scenario, system prompt or example messages)"
        )
    default = default_prompt(*(_text(data, k, where) for k in ("description", "personality", "scenario")))
    own = _text(data, "system_prompt", where)
    prompt = own.replace("{{original}}", default) if own else default
    examples = [e.strip() for e in re.split(r"^\s*<START>\s*$", _text(data, "mes_example", where), flags=re.M | re.I)]
    stories = tuple(Story(fill(e), f"example-{i}") for i, e in enumerate(filter(None, examples), 1))
    greetings = data.get("alternate_greetings") or []
    if not isinstance(greetings, list) or not all(isinstance(g, str) for g in greetings):
        raise CharacterError(f"{where}: 'alternate_greetings' must be a list of texts")
    post = _text(data, "post_history_instructions", where).replace("{{original}}", "")
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise CharacterError(f"{where}: 'extensions' must be an object")
    depth = extensions.get("depth_prompt") or {}  # SillyTavern's character's note
    note = depth.get("prompt") if isinstance(depth, dict) else None
    if isinstance(note, str) and note.strip():  # it goes in near the end of the chat: after the history here
        post = "\n\n".join(filter(None, (post, note.strip())))
    extra: dict[str, Any] = {
        "alternate_greetings": [fill(g) for g in greetings if g.strip()],
        "post_history": fill(post),
        "book": read_book(data["character_book"], where, "character_book", fill) if data.get("character_book") else {},
        "card": card,
    } | ({"image": base64.b64encode(image).decode("ascii")} if image else {})
    ours = extensions.get("greenroom") or {}  # written by character_to_card
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


def fill_names(text: str, char: str) -> str:
    """Card text with `{{char}}` and `<BOT>` as the name, and `<USER>` as `{{user}}` (filled each turn)."""
    text = re.sub(r"\{\{char\}\}|<BOT>", lambda _: char, text, flags=re.I)
    return re.sub(r"<USER>", "{{user}}", text, flags=re.I)


def default_prompt(description: str, personality: str, scenario: str) -> str:
    """The persona of a card without its own system prompt. Joined, never ``str.format``-ed: card
    text is full of braces (``{{char}}``) that formatting would turn into literal ``{char}``."""
    parts = [OPENING, description, personality and f"Personality: {personality}", scenario and f"Scenario: {scenario}"]
    return "\n\n".join(p for p in parts if p)


def card_image(character: Character) -> bytes | None:
    """The PNG image the character's card came with, if it came with one."""
    image = character.extra.get("image")
    return base64.b64decode(image) if image else None


def as_spec(card: dict[str, Any], spec: str) -> dict[str, Any]:
    """The same card under another spec (or its own), every V2 field present.

    V2 and V3 cards share their data fields (V3 only adds some), so the data is kept whole, as
    SillyTavern does when it writes both; a V1 card's top-level fields become the data.
    """
    data, _ = _fields(card, "card")
    data = {**copy.deepcopy(V2_DATA), **data}
    if spec == V3:
        data["group_only_greetings"] = data.get("group_only_greetings") or []
    root = {k: v for k, v in card.items() if k not in ("spec", "spec_version", "data")}
    return {**root, "spec": spec, "spec_version": "3.0" if spec == V3 else "2.0", "data": data}


def character_to_card(character: Character, spec: str = V2) -> dict[str, Any]:
    """A card for any character: the original card when it came from one (extensions and all),
    else one built so that loading it back gives the same prompt."""
    if "card" in character.extra:
        return as_spec(character.extra["card"], spec)
    data = {
        "name": character.name,
        "first_mes": character.greeting,
        "mes_example": "\n".join(f"<START>\n{s.text}" for s in character.stories),
        "creator_notes": f"Exported by Greenroom from a {character.source_format}.",
        "system_prompt": character.system_prompt,
        "character_version": character.version,
        "extensions": {
            "greenroom": {
                "id": character.id,
                "speaker_aliases": list(character.speaker_aliases),
                "settings": character.settings,
            }
        },
    }
    return as_spec({"spec": V2, "data": data}, spec)
