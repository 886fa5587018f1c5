"""Lorebooks as their own objects: World Info files (entries as an object or a list), a V2
character_book on its own, a card whose book uses World Info names; loaded from the command line
and in chat, combined with the card's own book in the prompt, within their limits, and kept
apart per chat."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from greenroom.core.events import Attachment, AttachmentKind
from greenroom.core.lore import select_lore
from greenroom.memory.cards import card_to_character
from greenroom.memory.lorebooks import LoreError, read_book
from tests.helpers import RecordingReplier, message
from tests.test_admin import say
from tests.test_cards import V2, png_with

MOD = {"user": "mod", "admin": True}  # an admin of the chat it speaks in, nowhere else
HELPER = {"user": "helper"}  # a bot admin


@pytest.fixture
def app(open_app):
    """Admins here send many commands in a row: no per-user rate limit."""
    return open_app("[dispatch]\nuser_rate_per_minute = 0\n")


def world_info(as_list: bool = False) -> dict[str, Any]:
    """An Eldoria-like SillyTavern World Info file, nulls and all."""
    entries = [
        {"key": ["Eldoria"], "content": "Eldoria is a kingdom of floating islands.", "order": 100, "position": 0},
        {
            "key": ["dragon"],
            "keysecondary": ["fire", "ice"],
            "selective": True,
            "selectiveLogic": 3,
            "content": "Eldorian dragons breathe fire and ice at once.",
            "order": 50,
            "position": 1,
        },
        {"key": ["Lake"], "caseSensitive": True, "matchWholeWords": True, "content": "Lake Mirrin never freezes."},
        {"key": [], "constant": True, "content": "In Eldoria magic costs memories.", "order": 5, "position": 1},
        {"key": ["Eldoria"], "disable": True, "content": "A disabled entry."},
        {"key": ["/quests?\\b/i"], "content": "The Guild posts quests at dawn.", "order": 200},
    ]
    full = [
        {
            "uid": i,
            "keysecondary": [],
            "comment": f"entry {i}",
            "constant": False,
            "selective": True,
            "selectiveLogic": 0,
            "order": 100,
            "position": 1,
            "disable": False,
            "probability": 100,
            "useProbability": True,
            "depth": 4,
            "scanDepth": None,
            "caseSensitive": None,
            "matchWholeWords": None,
            **e,
        }
        for i, e in enumerate(entries)
    ]
    return {"entries": full if as_list else {str(e["uid"]): e for e in full}}


V2_BOOK = {
    "name": "Harbour lore",
    "token_budget": 900,
    "entries": [
        {
            "keys": ["harbour"],
            "secondary_keys": [],
            "content": "The harbour of {{char}}'s town smells of tar.",
            "enabled": True,
            "insertion_order": 1,
            "position": "before_char",
            "extensions": {"probability": 100, "match_whole_words": True},
        }
    ],
}


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def system_of(app, text: str, **who: Any) -> str:
    """Every message of the prompt the persona would send for ``text``, joined."""
    turn = app.persona.prepare(message(text, platform="console", **who), text)
    return "\n".join(m["content"] for m in turn.prompt.messages)


def attached(filename: str, data: bytes) -> Attachment:
    async def fetch() -> bytes:
        return data

    return Attachment(AttachmentKind.FILE, filename, len(data), 1_000_000, mime="application/json", fetch=fetch)


async def send_file(app, text: str, filename: str, data: bytes, **who: Any) -> str:
    replier = RecordingReplier()
    msg = dataclasses.replace(message(text, platform="console", **who), attachments=(attached(filename, data),))
    await (await app.dispatcher.submit(msg, replier))
    return replier.messages[-1]


# ----- reading every shape -------------------------------------------------------------------------


@pytest.mark.parametrize("as_list", [False, True])
def test_world_info_entries_as_an_object_or_a_list_read_alike(as_list):
    book = read_book(world_info(as_list), "Eldoria.json")
    first, dragon, lake, constant, disabled, quests = book["entries"]
    assert first["keys"] == ["Eldoria"] and first["position"] == "before_char" and first["id"] == 0
    assert dragon["selective_logic"] == "and_all" and dragon["secondary_keys"] == ["fire", "ice"]
    assert dragon["position"] == "after_char" and dragon["insertion_order"] == 50
    assert lake["case_sensitive"] and lake["match_whole_words"] and lake["scan_depth"] is None
    assert constant["constant"] and not disabled["enabled"] and quests["probability"] == 100


def test_a_card_whose_book_uses_world_info_names_triggers(tmp_path):
    card = {"spec": "chara_card_v2", "data": {**V2["data"], "character_book": world_info()}}
    character, note = card_to_character(card, "mira.json")
    assert note == "read a chara card v2 with 6 lore entries"
    words = lambda t: len(t.split())
    before, after = select_lore([character.extra["book"]], ["Have you been to Eldoria?"], words)
    assert before == "Eldoria is a kingdom of floating islands."
    assert after == "In Eldoria magic costs memories."  # the constant entry; the disabled one never


# ----- selection ---------------------------------------------------------------------------------


def lore(books: list[dict], *texts: str, **kw: Any) -> tuple[str, str]:
    return select_lore(books, list(texts), lambda t: len(t.split()), **kw)


def test_selective_logic_case_whole_words_and_regex_keys():
    book = read_book(world_info(), "w")
    assert "breathe" in lore([book], "a dragon of fire and ice")[1]  # AND ALL: both
    assert "breathe" not in lore([book], "a dragon of fire")[1]
    assert "never freezes" in lore([book], "by the Lake.")[1]
    assert "never freezes" not in lore([book], "by the lake")[1]  # case-sensitive
    assert "never freezes" not in lore([book], "the Lakeside inn")[1]  # whole words
    assert "at dawn" in lore([book], "Any QUESTS today?")[1] and "at dawn" not in lore([book], "questing")[1]
    for logic, text, hit in [
        (0, "dragon fire", True),  # AND ANY
        (0, "dragon", False),
        (1, "dragon fire", True),  # NOT ALL
        (1, "dragon fire ice", False),
        (2, "dragon", True),  # NOT ANY
        (2, "dragon ice", False),
    ]:
        entries = [{**world_info(True)["entries"][1], "selectiveLogic": logic}]
        assert ("breathe" in lore([read_book({"entries": entries}, "w")], text)[1]) == hit, (logic, text)


def test_cjk_keys_match_inside_words_and_scan_depth_is_per_entry():
    book = read_book(
        {
            "entries": [
                {"key": ["龙"], "matchWholeWords": True, "content": "龙住在山里。"},
                {"key": ["crown"], "scanDepth": 0, "content": "The crown is lost."},
                {"key": ["sword"], "content": "The sword is cursed."},
            ]
        },
        "w",
    )
    assert lore([book], "我看见一条龙了")[1] == "龙住在山里。"
    said = ["the crown?", "yes", "and the sword?", "both", "hello"]  # three turns of user line and reply
    assert lore([book], *said)[1] == "The sword is cursed."  # depth 2 reaches it; depth 0 only "hello"
    assert lore([book], *said[:-1], "crown")[1] == "The crown is lost.\nThe sword is cursed."


def test_probability_rolls_each_turn_with_the_rng_given():
    book = read_book({"entries": [{"key": ["bell"], "content": "A bell tolls.", "probability": 30}]}, "w")
    rolls = [bool(lore([book], "the bell", roll=random.Random(seed).random)[1]) for seed in range(200)]
    assert 30 < sum(rolls) < 90  # about 30% of 200
    assert lore([book], "the bell", roll=lambda: 0.29)[1] and not lore([book], "the bell", roll=lambda: 0.3)[1]
    never = read_book({"entries": [{"key": ["bell"], "content": "x", "probability": 0, "useProbability": False}]}, "w")
    assert lore([never], "the bell", roll=lambda: 0.99)[1] == "x"  # useProbability off: always


def test_books_share_one_budget_by_insertion_order_the_characters_own_first():
    own = {"token_budget": 3, "entries": [{"keys": ["x"], "content": "own one", "insertion_order": 1}]}
    other = read_book({"entries": [{"key": ["x"], "content": "other one", "order": 1}]}, "w")
    big = read_book({"token_budget": 4, "entries": [{"key": ["x"], "content": "late", "order": 9}]}, "w")
    assert lore([own, other], "x")[1] == "own one"  # budget 3: ties go to the character's own book
    assert lore([own, other, big], "x")[1] == "own one\nother one"  # the largest budget, 4


# ----- limits and bad input ------------------------------------------------------------------------


def test_limits_are_one_line_each(tmp_path):
    from greenroom.memory.lorebook_files import read_lorebook_file

    many = {"entries": [{"key": ["k"], "content": "c"}] * 10_000}
    with pytest.raises(LoreError, match=r"^w: 10,000 entries, over the limit of 2,000 entries per lorebook$"):
        read_book(many, "w")
    long = {"entries": [{"key": ["k"], "content": "x" * 20_001}]}
    with pytest.raises(LoreError, match=r"lorebook entry 0: content of 20,001 characters, over the limit of 20,000"):
        read_book(long, "w")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"entries": [{"key": ["k"], "content": "x" * 50_000_000}]}))
    with pytest.raises(LoreError, match=r"^huge.json: over the 10 MB limit for a lorebook file$"):
        read_lorebook_file(huge)
    for bad, problem in [
        (
            {"entries": [{"key": ["/(unclosed/"], "content": "c"}]},
            "entry 0: the key /(unclosed/ is not a usable regular expression",
        ),
        ({"entries": [{"key": "solo", "content": "c"}]}, "entry 0 needs 'keys' (a list)"),
        ({"entries": [{"key": ["k"], "selectiveLogic": 7}]}, "'selectiveLogic' must be 0 to 3"),
        ({"entries": [{"key": ["k"], "probability": "often"}]}, "'probability' must be a number"),
        ({"entries": "none"}, "must be an object with an 'entries' list or object"),
    ]:
        with pytest.raises(LoreError, match=re.escape(problem)):
            read_book(bad, "w")


def test_a_catastrophic_regex_key_times_out_as_no_match(caplog):
    book = read_book({"entries": [{"key": ["/(a+)+$/"], "content": "Never."}, {"key": ["a"], "content": "A."}]}, "w")
    text = "a" * 5000 + "!"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="greenroom.core.lore"):
        results = [lore([book], text) for _ in range(3)]
    assert time.monotonic() - started < 2.0  # three turns, each bounded by the 50 ms match limit
    assert results == [("", "A.")] * 3
    assert [r.message for r in caplog.records].count(
        "lore key /(a+)+$/ took over 50 ms on a message: no match from now on"
    ) == 1


# ----- the command line and the chat --------------------------------------------------------------


def test_the_command_line_loads_a_world_info_file_for_a_character(app, config_file, tmp_path, capsys):
    from greenroom.cli import main

    path = write(tmp_path / "Eldoria.json", world_info())
    args = ["--config", str(config_file), "lore", "load", str(path), "--character", "wren"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == (
        "Loaded the lorebook eldoria (read a lorebook with 6 entries), attached to the character wren."
    )
    system = system_of(app, "Tell me of Eldoria and its dragon, fire and ice.")
    assert "Eldoria is a kingdom of floating islands." in system and "breathe fire and ice" in system
    assert "magic costs memories" in system and "A disabled entry." not in system
    assert system.index("floating islands") < system.index("Wren") < system.index("breathe fire")
    assert "Lake Mirrin" not in system_of(app, "Hello there.")
    assert main(["--config", str(config_file), "lore", "list"]) == 0
    assert "eldoria" in capsys.readouterr().out
    assert main(["--config", str(config_file), "lore", "remove", "eldoria"]) == 0
    assert "floating islands" not in system_of(app, "Tell me of Eldoria.")


def test_a_standalone_character_book_for_a_chat_fills_the_name(app, config_file, tmp_path, capsys):
    from greenroom.cli import main

    path = write(tmp_path / "harbour.json", V2_BOOK)
    assert main(["--config", str(config_file), "lore", "load", str(path), "--chat", "console:c1"]) == 0
    assert "attached to the chat console:c1" in capsys.readouterr().out
    assert "The harbour of Wren's town smells of tar." in system_of(app, "Down by the harbour?")
    assert "smells of tar" not in system_of(app, "Down by the harbour?", chat="c2")  # another chat


async def test_the_wrong_file_says_what_it_is_and_what_loads_it(app, config_file, tmp_path, capsys):
    from greenroom.cli import main

    eldoria = write(tmp_path / "Eldoria.json", world_info())
    assert main(["--config", str(config_file), "character", "load", str(eldoria)]) == 2
    assert capsys.readouterr().err.strip() == (
        "greenroom: Eldoria.json is a lorebook (World Info) with 6 entries, not a character card; load it with "
        "`greenroom lore load Eldoria.json --character NAME` (in chat: /lore load)"
    )
    card = tmp_path / "mira.png"
    card.write_bytes(png_with({"chara": V2}))
    assert main(["--config", str(config_file), "lore", "load", str(card)]) == 2
    assert capsys.readouterr().err.strip() == (
        "greenroom: mira.png is a character card, not a lorebook; load it with `greenroom character load mira.png` "
        "(in chat: /character load)"
    )
    with_book = tmp_path / "rich.png"
    with_book.write_bytes(png_with({"chara": {**V2, "data": {**V2["data"], "character_book": V2_BOOK}}}))
    assert main(["--config", str(config_file), "lore", "load", str(with_book)]) == 0
    assert "read only the lorebook inside the character card (1 entries)" in capsys.readouterr().out
    answer = await send_file(app, "/character load", "Eldoria.json", eldoria.read_bytes(), user="local")
    assert answer.startswith("Eldoria.json is a lorebook (World Info) with 6 entries, not a character card")


async def test_chat_admins_keep_their_books_to_their_own_chat(app, tmp_path):
    data = json.dumps(world_info()).encode()
    answer = await send_file(app, "/lore load --name realm", "Eldoria.json", data, chat="c1", **MOD)
    assert answer == "Loaded the lorebook realm (read a lorebook with 6 entries), attached to this chat."
    assert "floating islands" in await asyncio.to_thread(system_of, app, "Eldoria?", chat="c1")
    assert "floating islands" not in await asyncio.to_thread(system_of, app, "Eldoria?", chat="c2")
    # another chat's admin neither sees, uses nor removes it
    assert "realm" not in (await say(app, "/lore list", chat="c2", **MOD)).messages[0]
    for command in ("/lore use realm", "/lore remove realm", "/lore info realm"):
        assert (await say(app, command, chat="c2", **MOD)).messages == [
            "no lorebook named 'realm' here (see /lore list)"
        ]
    # nor attaches anything to a character, which answers in every chat
    refused = await send_file(app, "/lore load --character wren", "Eldoria.json", data, chat="c2", **MOD)
    assert refused == "/lore load --character needs bot admin level (bot-wide); you are chat admin here."
    assert "floating islands" not in await asyncio.to_thread(system_of, app, "Eldoria?", chat="c2")
    listing = (await say(app, "/lore list", chat="c1", **MOD)).messages[0]
    assert "* realm: realm (6 entries, this chat's own)" in listing
    assert (await say(app, "/lore remove realm", chat="c1", **MOD)).messages[0].startswith("Removed the lorebook realm")
    assert "floating islands" not in await asyncio.to_thread(system_of, app, "Eldoria?", chat="c1")


async def test_bot_wide_books_bot_admins_attach_and_chats_use(app, tmp_path):
    data = json.dumps(V2_BOOK).encode()
    answer = await send_file(app, "/lore load --character wren", "harbour.json", data, chat="c1", **HELPER)
    assert (
        answer == "Loaded the lorebook harbour-lore (read a lorebook with 1 entries), attached to the character wren."
    )
    assert "smells of tar" in await asyncio.to_thread(system_of, app, "The harbour!", chat="c9")  # every chat
    info = (await say(app, "/lore info harbour-lore", chat="c2", **MOD)).messages[0]
    assert info.splitlines()[1:] == ["characters: wren", "used in this chat: no"]
    assert (await say(app, "/lore use harbour-lore", chat="c2", **MOD)).messages[0].startswith("This chat now uses")
    detached = (await say(app, "/lore remove harbour-lore", chat="c2", **MOD)).messages[0]
    assert detached == "This chat no longer uses the bot-wide lorebook harbour-lore; it stays for the others."
    refused = (await say(app, "/lore remove harbour-lore", chat="c2", **MOD)).messages[0]
    assert refused == "/lore remove (a bot-wide lorebook) needs bot admin level (bot-wide); you are chat admin here."
    assert "smells of tar" in await asyncio.to_thread(system_of, app, "The harbour!", chat="c2")


# ----- review: shapes, regex keys, costs, budgets, storage ---------------------------------------


def test_a_chub_character_book_with_a_description_is_a_lorebook(tmp_path):
    from greenroom.memory.lorebook_files import read_lorebook_file

    path = write(tmp_path / "harbour.json", {**V2_BOOK, "description": "Lore of the harbour town."})
    book, note = read_lorebook_file(path)
    assert note == "read a lorebook with 1 entries" and book["name"] == "Harbour lore"


def test_only_slash_pattern_slash_gimsuy_is_a_regex_key():
    book = read_book({"entries": [{"key": ["/r/aww"], "content": "Cute animals."}]}, "w")  # flags 'aww': text
    assert lore([book], "posted on /r/aww today")[1] == "Cute animals."
    assert lore([book], "r")[1] == ""
    sticky = read_book({"entries": [{"key": ["/otter/gimsuy"], "content": "Otters."}]}, "w")
    assert lore([sticky], "An OTTER!")[1] == "Otters."


def test_a_stored_key_that_no_longer_passes_is_plain_text_logged_once(caplog):
    stored = {"entries": [{"keys": ["/(unclosed/", "/(?:(?:a{1000}){1000}){1000}/"], "content": "Old."}]}
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="greenroom.core.lore"):
        turns = [lore([stored], "x"), lore([stored], "x"), lore([stored], "say /(unclosed/ again")]
    assert time.monotonic() - started < 2.0  # the blow-up is never compiled
    assert turns == [("", ""), ("", ""), ("", "Old.")]
    assert sorted(r.message.split(" (")[0] for r in caplog.records) == [
        "lore key /(?:(?:a{1000}){1000}){1000}/ is not a usable regular expression",
        "lore key /(unclosed/ is not a usable regular expression",
    ]


def test_costly_regex_keys_and_too_many_keys_are_refused_at_load():
    def entries(*keys: str, times: int = 1) -> dict:
        return {"entries": [{"key": list(keys), "content": "c"}] * times}

    for book, problem in [
        (
            entries("/(?:a{1000}){1000}/"),
            "entry 0: the key /(?:a{1000}){1000}/ is not a usable regular expression "
            "(its counted repeats multiply to over 10,000)",
        ),
        (entries("/a{101}b{100}/"), "its counted repeats multiply to over 10,000"),
        (
            entries("/" + "a" * 250 + "/"),
            "entry 0: the key /" + "a" * 56 + "... is not a usable regular expression "
            "(252 characters, over the limit of 200)",
        ),
        (entries(*[f"k{i}" for i in range(51)]), "w: lorebook entry 0: 51 keys, over the limit of 50 per entry"),
        (entries("/quest/i", times=101), "w: 101 regular-expression keys, over the limit of 100 per lorebook"),
    ]:
        with pytest.raises(LoreError, match=re.escape(problem)):
            read_book(book, "w")
    assert read_book(entries("/(?:a{100}){100}/i", times=100), "w")["entries"]  # at the limits: fine


def test_slow_regex_keys_share_one_budget_per_turn_and_turn_off(caplog):
    slow = [{"key": [f"/(a+)+$(?#{i})/"], "content": f"Never {i}."} for i in range(60)]
    book = read_book({"entries": [*slow, {"key": ["a"], "content": "A.", "order": 1}]}, "w")
    text = "a" * 5000 + "!"
    with caplog.at_level(logging.WARNING, logger="greenroom.core.lore"):
        started = time.monotonic()
        first = lore([book], text)
        took = time.monotonic() - started
        assert lore([book], text) == first == ("", "A.")
    assert took < 1.5  # 60 keys of 50 ms each would take 3 s: they share 200 ms
    offs = [r for r in caplog.records if r.message.endswith("no match from now on")]
    assert 1 <= len(offs) == len({r.getMessage() for r in offs}) <= 10  # the keys that used a whole 50 ms, once each


def test_the_budget_caps_a_chats_own_book_and_follows_the_context():
    def book(budget: int | None, owner: str | None, n: int = 30) -> dict:
        entries = [{"keys": [], "constant": True, "content": f"e{i} " + "w " * 99} for i in range(n)]
        return {"token_budget": budget, "entries": entries} | ({"owner": owner} if owner is not None else {})

    def fitted(books: list[dict], **kw: Any) -> int:
        return len(lore(books, "hi", **kw)[1].splitlines())  # each entry is 100 words, one a line

    assert fitted([book(100_000, "console:c1")]) == 4  # a chat's own book: 400 at most
    assert fitted([book(800, None), book(100_000, "console:c1")]) == 8  # the character's own 800
    assert fitted([book(1_000, ""), book(None, "console:c1")]) == 10  # a bot-wide book may set more
    assert fitted([book(100_000, "")]) == 20  # 2,000 at most without the model's context
    assert fitted([book(100_000, "")], context=1_200) == 3  # a quarter of it
    counted: list[str] = []
    many = book(None, "console:c1", 2_000) | {"entries": [{"keys": [], "constant": True, "content": "x" * 19_000}]}
    many["entries"] += book(None, "", 2_000)["entries"]
    select_lore([many], ["hi"], lambda t: counted.append(t) or len(t.split()))
    assert len(counted) == 4  # the long entry is never tokenized, nor anything once the budget is full


def test_the_speaker_name_fills_char():
    book = read_book(V2_BOOK, "w")
    assert lore([book], "the harbour", speaker="Wren")[0] == "The harbour of Wren's town smells of tar."


async def test_a_chat_owns_twenty_books_and_the_command_line_finds_them(app, config_file, tmp_path, capsys):
    from greenroom.cli import main

    data = json.dumps(world_info()).encode()
    for i in range(20):
        await asyncio.to_thread(app.lorebooks.load, write(tmp_path / f"b{i}.json", world_info()), "console:c1")
    refused = await send_file(app, "/lore load --name b20", "Eldoria.json", data, chat="c1", **MOD)
    assert refused == "this chat has 20 lorebooks, the limit of 20; remove one first (/lore remove NAME)"
    reloaded = await send_file(app, "/lore load --name b3", "Eldoria.json", data, chat="c1", **MOD)
    assert reloaded.startswith("Loaded the lorebook b3 ")
    listing = (await say(app, "/lore list", chat="c1", **MOD)).messages[0]
    assert "* b3: b3 (6 entries, this chat's own)" in listing and "- b4: b4 (6 entries, this chat's own)" in listing
    config = ["--config", str(config_file), "lore"]
    assert main([*config, "info", "b3"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "greenroom: no lorebook named 'b3' bot-wide"
    assert main([*config, "info", "b3", "--chat", "console:c1"]) == 0
    assert "owner: console:c1" in capsys.readouterr().out
    assert main([*config, "remove", "b3", "--chat", "console:c1"]) == 0
    assert capsys.readouterr().out.strip() == "removed the lorebook b3 of the chat console:c1"
    assert "floating islands" not in await asyncio.to_thread(system_of, app, "Eldoria?", chat="c1")
    again = await send_file(app, "/lore load --name b20", "Eldoria.json", data, chat="c1", **MOD)
    assert again.startswith("Loaded the lorebook b20 ")  # room for one again
