"""The ChatHaruhi folder importer: what it accepts and how it refuses bad packages."""

from pathlib import Path

import pytest

from greenroom.memory.characters import CharacterError, load_chatharuhi_folder
from tests.conftest import DEMO


def make_folder(
    root: Path, stories: dict[str, bytes], prompt: bytes = b"You are Kit.", meta: str | None = None
) -> Path:
    folder = root / "kit"
    (folder / "texts").mkdir(parents=True)
    (folder / "system_prompt.txt").write_bytes(prompt)
    for name, body in stories.items():
        (folder / "texts" / name).write_bytes(body)
    if meta is not None:
        (folder / "character.toml").write_text(meta, encoding="utf-8")
    return folder


def test_demo_character_is_complete():
    wren = load_chatharuhi_folder(DEMO)
    assert wren.id == "wren" and wren.name == "Wren Ashby"
    assert len(wren.stories) >= 30
    assert wren.greeting and wren.speaker_aliases == ("Wren",)
    assert all("Wren:「" in s.text for s in wren.stories)


def test_stories_load_in_sorted_order_and_version_tracks_content(tmp_path):
    folder = make_folder(tmp_path, {"b.txt": "Kit:「b」".encode(), "a.txt": "Kit:「a」".encode()})
    first = load_chatharuhi_folder(folder)
    assert [s.source for s in first.stories] == ["a.txt", "b.txt"]
    assert load_chatharuhi_folder(folder).version == first.version
    (folder / "texts" / "a.txt").write_text("Kit:「changed」", encoding="utf-8")
    assert load_chatharuhi_folder(folder).version != first.version


def test_name_option_and_metadata(tmp_path):
    folder = make_folder(
        tmp_path,
        {"a.txt": b"x"},
        meta='display_name = "Kit Marlowe"\n'
        'speaker_aliases = ["Kit"]\ngreeting = "Hello."\n[persona]\nmode = "haruhi2"\nk = 3\n',
    )
    kit = load_chatharuhi_folder(folder, name="Marlowe")
    assert kit.id == "marlowe" and kit.name == "Kit Marlowe"
    assert kit.settings == {"mode": "haruhi2", "k": 3} and kit.greeting == "Hello."


@pytest.mark.parametrize(
    "stories,message",
    [
        ({"a.txt": b""}, "texts/a.txt: empty file"),
        ({"a.txt": b"\x89PNG\r\n\x1a\n\x00\x00"}, "texts/a.txt: binary file"),
        ({"a.txt": b"caf\xe9"}, "texts/a.txt: not valid UTF-8"),
        ({}, "texts/ has no .txt story files"),
    ],
)
def test_bad_story_files_are_refused_by_name(tmp_path, stories, message):
    with pytest.raises(CharacterError, match=message.replace(".", r"\.").replace("/", "/")):
        load_chatharuhi_folder(make_folder(tmp_path, stories))


def test_missing_parts_are_named(tmp_path):
    with pytest.raises(CharacterError, match="not a folder"):
        load_chatharuhi_folder(tmp_path / "nowhere")
    folder = make_folder(tmp_path, {"a.txt": b"x"})
    (folder / "system_prompt.txt").unlink()
    with pytest.raises(CharacterError, match="system_prompt.txt is missing"):
        load_chatharuhi_folder(folder)


def test_bad_metadata_is_refused(tmp_path):
    with pytest.raises(CharacterError, match="unknown key 'colour'"):
        load_chatharuhi_folder(make_folder(tmp_path, {"a.txt": b"x"}, meta='colour = "red"\n'))
