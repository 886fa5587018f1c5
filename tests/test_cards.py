"""Character Cards V1/V2/V3 as JSON, PNG (made here, byte by byte) and CHARX."""

import base64
import json
import struct
import zipfile
import zlib
from typing import Any

import pytest

from greenroom.core.prompt import DIVIDER
from greenroom.memory.card_files import png_text_chunks, read_card_file
from greenroom.memory.cards import card_to_character
from greenroom.memory.characters import CharacterError
from greenroom.memory.importers import read_character

V2: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Mira",
        "description": "{{char}} commands the airship Kestrel.",
        "personality": "calm, wry",
        "scenario": "{{user}} has just come aboard.",
        "first_mes": "Welcome aboard, {{user}}. Mind the rigging.",
        "mes_example": "<START>\n{{user}}: Where are we headed?\n{{char}}: North, past the storm wall.\n"
        "<START>\n<USER>: Is it safe?\n<BOT>: Nothing worth doing is.",
        "creator_notes": "never in prompts",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": ["sky"],
        "creator": "greenroom tests",
        "character_version": "1",
        "extensions": {"custom": {"keep": True}},
    },
}


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with(text_chunks: dict[str, dict]) -> bytes:
    """A real 1x1 PNG with the cards in tEXt chunks."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    texts = b"".join(
        chunk(b"tEXt", key.encode() + b"\0" + base64.b64encode(json.dumps(card).encode()))
        for key, card in text_chunks.items()
    )
    return b"\x89PNG\r\n\x1a\n" + ihdr + texts + idat + chunk(b"IEND", b"")


def test_v2_json_card_maps_into_a_character(tmp_path):
    path = tmp_path / "mira.json"
    path.write_text(json.dumps(V2))
    imported = read_character(path, None, "c", 384)
    c = imported.character
    assert (c.id, c.name, c.source_format) == ("captain-mira", "Captain Mira", "chara-card-v2")
    assert "Captain Mira commands the airship Kestrel." in c.system_prompt
    assert "Personality: calm, wry" in c.system_prompt and "{{user}} has just come aboard." in c.system_prompt
    assert "never in prompts" not in c.system_prompt
    assert [s.text for s in c.stories] == [
        "{{user}}: Where are we headed?\nCaptain Mira: North, past the storm wall.",
        "{{user}}: Is it safe?\nCaptain Mira: Nothing worth doing is.",
    ]
    assert c.greeting == "Welcome aboard, {{user}}. Mind the rigging."
    assert imported.note == "read a chara card v2"


def test_a_card_without_its_own_system_prompt_names_the_character_in_every_place() -> None:
    """Most cards leave system_prompt empty: the default persona must not carry `{char}` left over
    from formatting the card's braces (SillyTavern's Seraphina got "You are {char}.")."""
    c, _ = card_to_character(V2, "card")
    assert c.system_prompt.startswith("You are Captain Mira. Stay in character and answer as Captain Mira would")
    assert "{char}" not in c.system_prompt and "{{char}}" not in c.system_prompt
    v1, _ = card_to_character({"name": "Ash", "description": "{{char}} keeps bees."}, "card")
    assert v1.system_prompt == (
        "You are Ash. Stay in character and answer as Ash would, in Ash's voice.\n\nAsh keeps bees."
    )


def test_png_card_and_v3_chunk_wins(tmp_path):
    v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**V2["data"], "nickname": "Mira"}}
    path = tmp_path / "mira.png"
    path.write_bytes(png_with({"chara": V2, "ccv3": v3}))
    assert set(png_text_chunks(path.read_bytes(), "x")) == {"chara", "ccv3"}
    card, image = read_card_file(path)
    character, note = card_to_character(card, path.name, image=image)
    assert character.name == "Mira" and character.source_format == "chara-card-v3"
    assert image == png_with({})  # the image without its card chunks


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b[:60], "truncated"),
        (lambda b: b[:40] + b"X" + b[41:], "bad checksum"),
        (lambda b: b"GIF89a" + b[6:], "not a PNG file"),
        (lambda b: b[:33] + struct.pack(">I", 2**31) + b[37:], "truncated or corrupt PNG"),
    ],
)
def test_damaged_pngs_are_refused(tmp_path, damage, message):
    path = tmp_path / "bad.png"
    path.write_bytes(damage(png_with({"chara": V2})))
    with pytest.raises(CharacterError, match=message):
        read_card_file(path)


def test_png_without_a_card(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_with({}))
    with pytest.raises(CharacterError, match="carries no character card"):
        read_card_file(path)


def test_charx_and_v1_cards(tmp_path):
    path = tmp_path / "mira.charx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("card.json", json.dumps(V2))
        z.writestr("assets/icon/main.png", png_with({}))
    card, icon = read_card_file(path)
    assert card_to_character(card, "x")[0].name == "Captain Mira"
    assert icon is None  # no icon named in data.assets
    v1 = {
        "name": "Old Tom",
        "description": "A ferryman.",
        "personality": "",
        "scenario": "",
        "first_mes": "Fare, please.",
        "mes_example": "",
    }
    character, note = card_to_character(v1, "tom.json")
    assert character.source_format == "chara-card-v1" and character.stories == () and note == "read a chara card v1"


@pytest.mark.parametrize(
    "card,message",
    [
        ({"spec": "chara_card_v2"}, "without a 'data' object"),
        ({"spec": "chara_card_v9", "data": {}}, "unknown card spec"),
        ({"spec": "chara_card_v2", "data": {"description": "no name"}}, "has no 'name'"),
        (
            {"spec": "chara_card_v2", "data": {"name": "X", "description": ["a list"]}},
            "field 'description' must be text",
        ),
        ({"spec": "chara_card_v2", "data": {"name": "X", "description": "d", "extensions": "x"}}, "'extensions'"),
    ],
)
def test_malformed_cards_name_the_problem(card, message):
    with pytest.raises(CharacterError, match=message):
        card_to_character(card, "card.json")


BOOK: dict[str, Any] = {
    "scan_depth": 1,
    "token_budget": 60,
    "entries": [
        {"keys": ["storm"], "content": "The storm wall is a permanent hurricane.", "insertion_order": 2},
        {"keys": ["Kestrel"], "content": "The Kestrel has a brass hull.", "case_sensitive": True, "insertion_order": 1},
        {
            "keys": ["engine"],
            "secondary_keys": ["fire"],
            "selective": True,
            "content": "Engine fires are fought with sand.",
            "insertion_order": 3,
        },
        {
            "keys": [],
            "constant": True,
            "content": "{{char}} never lies.",
            "position": "before_char",
            "insertion_order": 0,
        },
        {"keys": ["storm"], "content": "disabled entry", "enabled": False},
    ],
}
RICH: dict[str, Any] = {
    "spec": "chara_card_v2",
    "data": {
        **V2["data"],
        "post_history_instructions": "Reply as {{char}}, briefly.",
        "alternate_greetings": ["Ahoy, {{user}}!"],
        "character_book": BOOK,
    },
}


def test_lorebook_entries_trigger_by_key_with_budget_and_position():
    from greenroom.core.lore import select_lore

    book = card_to_character(RICH, "x")[0].extra["book"]
    words = lambda t: len(t.split())
    before, after = select_lore([book], ["What is the Storm like?"], words)
    assert before == "Captain Mira never lies." and after == "The storm wall is a permanent hurricane."
    _, after = select_lore([book], ["the kestrel and the storm"], words)
    assert "brass hull" not in after  # case-sensitive key
    _, after = select_lore([book], ["Tell me about the Kestrel", "the engine", "a fire!"], words)
    assert after == "The Kestrel has a brass hull.\nEngine fires are fought with sand."  # by insertion order
    _, after = select_lore([book], ["engine trouble"], words)
    assert "sand" not in after  # selective: needs a secondary key too
    before, after = select_lore([book], ["storm on the Kestrel"], lambda t: 40)
    assert (before, after) == ("Captain Mira never lies.", "")  # a 60-token budget: the first in order fits


def test_malformed_lorebook_is_refused():
    card = {
        "spec": "chara_card_v2",
        "data": {"name": "X", "description": "A sailor.", "character_book": {"entries": [{"keys": "storm"}]}},
    }
    with pytest.raises(CharacterError, match="character_book entry 0 needs 'keys'"):
        card_to_character(card, "x.json")


async def test_a_card_character_chats_with_the_users_name_filled_in(app, tmp_path):
    from tests.test_admin import say

    path = tmp_path / "mira.json"
    path.write_text(json.dumps(V2))
    await say(app, f"/character load {path}", user="local")
    await say(app, "/character use captain-mira", user="local")
    await say(app, "/iam Rook", user="local")
    replier = await say(app, "Where are we headed?", user="local")
    assert replier.messages[0] == "Welcome aboard, Rook. Mind the rigging."  # the card's greeting speaks first
    system = replier.traces[0]["messages"][0]["content"]
    assert "Rook has just come aboard." in system and "{{user}}" not in system


async def test_card_lore_post_history_and_greetings_reach_the_prompt(app, tmp_path):
    from tests.test_admin import say

    path = tmp_path / "mira.json"
    path.write_text(json.dumps(RICH))
    [loaded] = (await say(app, f"/character load {path}", user="local")).messages
    assert "(read a chara card v2 with 5 lore entries)" in loaded
    await say(app, "/character use captain-mira", user="local")
    replier = await say(app, "Is the storm dangerous?", user="local")
    assert replier.messages[0] in ("Welcome aboard, Local. Mind the rigging.", "Ahoy, Local!")
    messages = replier.traces[0]["messages"]
    assert messages[0]["content"].startswith("Captain Mira never lies.\n\n")
    assert "The storm wall is a permanent hurricane." in messages[0]["content"]
    assert "brass hull" not in messages[0]["content"]
    # this turn's scenes, then the message with the card's post-history instruction riding on it
    assert messages[-1]["content"].endswith(DIVIDER + "Is the storm dangerous?\n\nReply as Captain Mira, briefly.")


@pytest.mark.parametrize("source", ["card", "folder"])
def test_export_as_card_and_load_again_gives_the_same_prompt(app, tmp_path, source):
    from tests.conftest import DEMO

    if source == "card":
        path = tmp_path / "mira.json"
        path.write_text(json.dumps(RICH))
        first, _ = app.characters.load(path)
    else:
        first, _ = app.characters.load(DEMO)
    out = tmp_path / "export.json"
    app.characters.export(first.character.id, out, "card-v2")
    exported = json.loads(out.read_text())
    assert exported["spec"] == "chara_card_v2"
    if source == "card":
        assert exported["data"]["extensions"] == {"custom": {"keep": True}}  # unknown keys survive
    again = read_character(out, None, "c", 384).character
    original, _ = app.library.character(first.character.id)
    assert again.system_prompt == original.system_prompt
    assert [s.text for s in again.stories] == [s.text for s in original.stories]
    assert again.greeting == original.greeting and again.speaker_aliases == original.speaker_aliases
    assert again.id == original.id


def test_an_empty_card_is_refused():
    with pytest.raises(CharacterError, match="mira.json: the card is empty"):
        card_to_character({"spec": "chara_card_v2", "data": {"name": "Mira", "first_mes": "Hi."}}, "mira.json")


def test_a_second_character_with_a_taken_name_is_refused(app, tmp_path):
    other = tmp_path / "wren"
    (other / "texts").mkdir(parents=True)
    (other / "system_prompt.txt").write_text("You are a different Wren.")
    (other / "texts" / "a.txt").write_text("Wren:「Who?」")
    with pytest.raises(CharacterError, match="a character named 'wren' is already loaded from .*memory/demo/wren"):
        app.characters.load(other)
    assert app.library.character("wren")[0].name == "Wren Ashby"  # the loaded one is untouched
    result, _ = app.characters.load(other, name="wren-two")
    assert result.changed and result.character.id == "wren-two"
