"""Cards as other tools write them: each shape found in the wild, loaded, checked in the assembled
prompt and greeting for leftover placeholders and macros, then exported and loaded back.

The cards are written here, field by field as SillyTavern, Chub and RisuAI write them: V1 flat JSON,
V2, V3 with assets and group-only greetings, CHARX with its image inside, a PNG carrying both
`chara` and `ccv3`, a book with SillyTavern's World Info field names, nulls and empty fields, and
Chub's extension fields. Their text uses the macros card authors use.
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from greenroom.memory.card_files import name_image, png_with_cards
from greenroom.memory.cards import card_image
from tests.helpers import message

# what must never reach the model: card placeholders, macros, and str.format leftovers
LEFTOVER = re.compile(r"\{\{|\}\}|\{char\}|\{user\}|<USER>|<BOT>", re.I)

TEXT: dict[str, Any] = {
    "name": "Seraphina",
    "description": "{{char}} guards the Eldoria forest. {{random::Kind::Gentle}} to {{user}}.{{// author note}}",
    "personality": "calm{{trim}}\n\n, protective",
    "scenario": "{{user}} wakes in {{char}}'s glade on a {{weekday}}.",
    "first_mes": "*{{char}} smiles at {{user}}.* It is {{time}}; you slept {{idle_duration}}.",
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I am {{char}}, {{pick::keeper::warden}} of the glade.",
    "system_prompt": "",
    "post_history_instructions": "Stay in the glade.{{newline}}Roll: {{roll:d6}}",
    "alternate_greetings": ["*{{char}} waves.* Welcome back, <USER>."],
    "tags": ["fantasy"],
    "creator": "tests",
    "character_version": "1.0",
    "creator_notes": "Not for the prompt.",
}
V2 = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {**TEXT, "extensions": {}}}
V3 = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        **TEXT,
        "nickname": "Sera",
        "group_only_greetings": ["*{{char}} greets the group.*"],
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        "creation_date": 1733356800,
        "extensions": {},
    },
}
ST_BOOK = {  # SillyTavern's World Info names inside a card's character_book
    "entries": [
        {
            "key": ["forest", "Eldoria"],
            "keysecondary": [],
            "content": "{{char}} knows every tree of Eldoria.",
            "constant": False,
            "selective": False,
            "order": 100,
            "position": 0,
            "disable": False,
        }
    ]
}
CHUB_EXTENSIONS = {
    "chub": {"id": 12345, "full_path": "tests/seraphina", "expressions": None, "alt_expressions": {}},
    "depth_prompt": {"prompt": "{{char}} speaks softly.", "depth": 4, "role": "system"},
    "fav": False,
    "talkativeness": "0.5",
    "world": "Eldoria",
}


def _v1(folder: Path) -> Path:
    flat = {k: TEXT[k] for k in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    return _json(folder / "v1.json", flat)


def _json(path: Path, card: dict[str, Any]) -> Path:
    path.write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    return path


def _charx(folder: Path) -> Path:
    card = copy.deepcopy(V3)
    card["data"]["assets"] = [
        {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"}
    ]
    path = folder / "sera.charx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("card.json", json.dumps(card))
        z.writestr("assets/icon/images/main.png", name_image("Seraphina"))
    return path


def _png_both(folder: Path) -> Path:
    path = folder / "sera.png"
    path.write_bytes(png_with_cards(name_image("Seraphina"), {"chara": V2, "ccv3": V3}))
    return path


def _nulls(folder: Path) -> Path:
    data = {**TEXT, "personality": None, "scenario": None, "mes_example": None, "alternate_greetings": None}
    data |= {"character_book": None, "extensions": None, "tags": None, "system_prompt": None, "creator_notes": None}
    return _json(folder / "nulls.json", {"spec": "chara_card_v2", "spec_version": "2.0", "data": data})


SHAPES = {
    "v1 flat json": _v1,
    "v2 json": lambda f: _json(f / "v2.json", V2),
    "v3 json with assets and group greetings": lambda f: _json(f / "v3.json", V3),
    "charx with its image inside": _charx,
    "png with chara and ccv3": _png_both,
    "world info names in character_book": lambda f: _json(
        f / "book.json", {**V2, "data": {**V2["data"], "character_book": ST_BOOK}}
    ),
    "nulls and empty fields": _nulls,
    "chub extensions": lambda f: _json(f / "chub.json", {**V2, "data": {**V2["data"], "extensions": CHUB_EXTENSIONS}}),
}


def prompt_of(app, character_id: str, text: str, chat: str) -> list[dict[str, str]]:
    """The messages the model would get for ``text`` in ``chat`` talking to the character."""
    said = message(text, chat=chat)
    app.settings.set(said.key.chat, "character", character_id)
    return app.persona.prepare(said, text).prompt.messages


def no_leftovers(texts: list[str]) -> None:
    for text in texts:
        assert not LEFTOVER.search(text), f"left in the prompt: {LEFTOVER.search(text).group()!r} in {text!r}"


@pytest.mark.parametrize("shape", SHAPES)
def test_a_card_from_the_wild_reaches_the_prompt_clean_and_survives_export(app, tmp_path, shape) -> None:
    path = SHAPES[shape](tmp_path)
    loaded, _ = app.characters.load(path, name="sera")
    character = loaded.character
    assert character.name in ("Seraphina", "Sera")
    messages = prompt_of(app, "sera", "Tell me about the forest of Eldoria.", shape)
    no_leftovers([m["content"] for m in messages])
    system = messages[0]["content"]
    assert f"You are {character.name}." in system and "guards the Eldoria forest" in system
    assert "Kind to " in system or "Gentle to " in system  # {{random}} drew one of its options
    assert "author note" not in system and "Not for the prompt" not in system
    if shape != "v1 flat json":
        assert re.search(r"Stay in the glade\.\nRoll: [1-6]\b", messages[-1]["content"])  # post-history macros
    if shape == "world info names in character_book":
        assert "knows every tree of Eldoria" in system
    if shape == "chub extensions":  # the character's note rides with the post-history instruction
        assert f"{character.name} speaks softly." in messages[-1]["content"]
    greeting = app.persona.greeting(message("", chat=shape).key, "Mei")
    assert greeting is not None and "Mei" in greeting
    no_leftovers([greeting])

    for fmt, suffix in (("card-v2", "json"), ("card-v3", "png"), ("card-v3", "charx")):
        out = tmp_path / f"export-{fmt}.{suffix}"
        app.characters.export("sera", out, fmt)
        again, _ = app.characters.load(out, name=f"again-{fmt}-{suffix}")
        stored, _ = app.library.character("sera")
        assert again.character.system_prompt == stored.system_prompt
        assert again.character.greeting == stored.greeting
        assert [s.text for s in again.character.stories] == [s.text for s in stored.stories]


def test_pick_is_stable_in_a_chat_and_random_is_drawn_anew(app, tmp_path) -> None:
    app.characters.load(_json(tmp_path / "v2.json", V2), name="sera")
    asked = [prompt_of(app, "sera", "Who are you?", "one")[-1]["content"] for _ in range(3)]
    picked = {m.group() for text in asked for m in re.finditer(r"keeper|warden", text)}
    assert len(picked) == 1  # the scene's pick is the same every turn in one chat
    systems = {prompt_of(app, "sera", "Who are you?", f"chat-{i}")[0]["content"] for i in range(24)}
    assert any("Kind to" in s for s in systems) and any("Gentle to" in s for s in systems)


def test_a_card_keeps_its_image_through_export_and_back(app, tmp_path) -> None:
    for path in (_png_both(tmp_path), _charx(tmp_path)):
        kind = path.suffix[1:]
        loaded, _ = app.characters.load(path, name=f"sera-{kind}")
        image = card_image(loaded.character)
        assert image is not None and image.startswith(b"\x89PNG")
        out = tmp_path / f"export-{kind}.png"
        app.characters.export(f"sera-{kind}", out, "card-v2")
        again, _ = app.characters.load(out, name=f"again-{kind}")
        assert card_image(again.character) == image


def test_a_character_note_of_another_shape_is_ignored_not_a_crash(app, tmp_path) -> None:
    for i, note in enumerate(("speaks softly", ["a", "list"], None, {"prompt": None})):
        data = {**V2["data"], "extensions": {"depth_prompt": note}}
        loaded, _ = app.characters.load(_json(tmp_path / f"note{i}.json", {**V2, "data": data}), name=f"note-{i}")
        assert loaded.character.extra["post_history"] == "Stay in the glade.{{newline}}Roll: {{roll:d6}}"


def test_a_pick_in_the_card_stays_put_whichever_lore_fires(app, tmp_path) -> None:
    book = {"entries": [{"keys": [w], "content": f"Lore about the {w}."} for w in ("river", "tower", "market")]}
    data = {
        **V2["data"],
        "system_prompt": "{{char}}'s cloak is {{pick::red::blue::grey::green::gold}}.",
        "character_book": book,
    }
    app.characters.load(_json(tmp_path / "pick.json", {**V2, "data": data}), name="sera")
    colours = set()
    for said in ("Tell me about the river.", "And the tower?", "The market and the river?", "Hello."):
        system = prompt_of(app, "sera", said, "pick-chat")[0]["content"]
        colours |= set(re.findall(r"cloak is (\w+)", system))
    assert len(colours) == 1
