"""`greenroom chat --character NAME` and `greenroom run --character NAME`: the character of the chats
that have not chosen one, for that process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from greenroom.cli import main
from tests.fakes.telegram_api import FakeTelegram
from tests.test_runner import greenroom_run

UNKNOWN = "greenroom: no character named 'nobody' (see greenroom character list)"


def chat(capsys, config_file: Path, *messages: str, character: str | None = None) -> list[dict]:
    """`greenroom chat --json`, with ``--character`` when given."""
    args = ["--config", str(config_file), "chat", "--json"] + (["--character", character] if character else [])
    for m in messages:
        args += ["--message", m]
    assert main(args) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def load_kit(capsys, config_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kit"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_text("You are Kit, a lighthouse keeper.", encoding="utf-8")
    (folder / "texts" / "storm.txt").write_text("Kit:「The lamp must burn all night.」", encoding="utf-8")
    assert main(["--config", str(config_file), "character", "load", str(folder)]) == 0
    capsys.readouterr()


def loaded(capsys, config_file: Path) -> set[str]:
    assert main(["--config", str(config_file), "character", "list", "--json"]) == 0
    return {row["id"] for row in json.loads(capsys.readouterr().out)}


def test_chat_character_is_for_chats_that_have_not_chosen_one(capsys, config_file, tmp_path):
    load_kit(capsys, config_file, tmp_path)
    [turn] = chat(capsys, config_file, "Is the lamp lit?", character="Kit")
    assert turn["character"] == "kit"
    [later] = chat(capsys, config_file, "Still there?")
    assert later["character"] == "wren"  # only for that process: the configured default is back
    _, chosen = chat(capsys, config_file, "/character use wren", "Hello?", character="kit")
    assert chosen["character"] == "wren"  # a chat that chose its character keeps it


def test_a_bundled_character_is_loaded_like_the_default(capsys, config_file, tmp_path, monkeypatch):
    load_kit(capsys, config_file, tmp_path)
    monkeypatch.setenv("GREENROOM__PERSONA__DEFAULT_CHARACTER", '"kit"')
    assert loaded(capsys, config_file) == {"kit"}
    [turn] = chat(capsys, config_file, "Why is your tea cold?", character="wren")
    assert turn["character"] == "wren" and turn["stories"]
    assert loaded(capsys, config_file) == {"kit", "wren"}


@pytest.mark.parametrize("command", ["chat", "run"])
def test_an_unknown_character_is_one_line_before_anything_starts(capsys, config_file, command):
    assert main(["--config", str(config_file), command, "--character", "nobody"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [UNKNOWN]
    assert loaded(capsys, config_file) == set()  # not even the default character was loaded


async def test_run_serves_the_chosen_character_and_refuses_an_unknown_one(capsys, config_file, tmp_path):
    load_kit(capsys, config_file, tmp_path)
    async with FakeTelegram() as tg:
        proc = await greenroom_run(tg, config_file, "--character", "nobody")
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 2 and err.decode().strip().splitlines()[-1] == UNKNOWN
        assert tg.calls == []  # Telegram was never contacted
        proc = await greenroom_run(tg, config_file, "--character", "kit")
        await tg.wait_for("getUpdates", timeout=120)
        await tg.push(tg.message("/status"))
        assert "character: kit" in (await tg.wait_for("sendMessage"))[0].params["text"]
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
