"""Character packages: zip archives (safely), ChatHaruhi role jsonl (vectors reused or re-embedded)."""

import base64
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from greenroom.memory.archives import ArchiveLimits, extract_zip
from greenroom.memory.characters import CharacterError, load_chatharuhi_folder
from greenroom.memory.chatharuhi_jsonl import column_name, encode_vector, read_jsonl
from greenroom.memory.importers import read_character
from tests.conftest import DEMO

COLUMN, DIM = "all_minilm_l6_v2", 384


def zip_folder(folder: Path, out: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + str(path.relative_to(folder)))
    return out


@pytest.mark.parametrize("prefix", ["", "wren/"])
def test_a_zipped_folder_loads_like_the_folder(tmp_path, prefix):
    archive = zip_folder(DEMO, tmp_path / "pack.zip", prefix)
    imported = read_character(archive, None, COLUMN, DIM)
    folder = load_chatharuhi_folder(DEMO)
    assert imported.character.stories == folder.stories
    assert imported.character.version == folder.version and imported.character.id == "wren"


def write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            z.writestr(info, data)
    return path


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize(
    "members,message",
    [
        ([("../evil.txt", b"x")], "points outside the archive folder"),
        ([("/etc/cron.d/evil", b"x")], "points outside the archive folder"),
        ([("texts/../../evil.txt", b"x")], "points outside the archive folder"),
        ([symlink_member("texts/a.txt", "/etc/passwd")], "is a link or special file"),
    ],
)
def test_malicious_members_are_refused_and_nothing_is_written(tmp_path, members, message):
    archive = write_zip(tmp_path / "bad.zip", [("system_prompt.txt", b"hi"), *members])
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(CharacterError, match=message):
        extract_zip(archive, target)
    assert not any(target.rglob("*")) and not (tmp_path / "evil.txt").exists()


def test_zip_bomb_is_refused(tmp_path):
    archive = write_zip(tmp_path / "bomb.zip", [("system_prompt.txt", b"hi"), ("texts/a.txt", b"\0" * 20_000_000)])
    assert archive.stat().st_size < 100_000
    with pytest.raises(CharacterError, match="zip bomb"):
        read_character(archive, None, COLUMN, DIM)


def test_archive_limits_on_members_sizes_and_corruption(tmp_path):
    many = write_zip(tmp_path / "many.zip", [(f"texts/{i}.txt", b"x") for i in range(10_000)])
    with pytest.raises(CharacterError, match="10000 members is over the 5000-member limit"):
        read_character(many, None, COLUMN, DIM)
    big = write_zip(tmp_path / "big.zip", [("texts/a.txt", os.urandom(4096))])
    with pytest.raises(CharacterError, match="over the 1000-byte file limit"):
        extract_zip(big, tmp_path / "o1", ArchiveLimits(file_bytes=1000))
    with pytest.raises(CharacterError, match="uncompressed is over"):
        extract_zip(big, tmp_path / "o2", ArchiveLimits(total_bytes=1000))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(big.read_bytes()[:200])
    with pytest.raises(CharacterError, match="not a readable zip archive"):
        read_character(broken, None, COLUMN, DIM)


def test_unsupported_and_missing_paths(tmp_path):
    (tmp_path / "card.docx").write_text("x")
    with pytest.raises(CharacterError, match="unsupported format"):
        read_character(tmp_path / "card.docx", None, COLUMN, DIM)
    with pytest.raises(CharacterError, match="no such file or folder"):
        read_character(tmp_path / "nope", None, COLUMN, DIM)


def role_jsonl(path: Path, column: str, vectors: np.ndarray | None, enc: bool = False) -> Path:
    stories = ["Kit:「The lamp must burn all night.」", "Kit:「Storm's coming in from the west.」"]
    rows = [
        {"text": "You are Kit.", column: "system_prompt"},
        {"text": "Reserve Config Setting Here", column: "config"},
    ]
    for i, text in enumerate(stories):
        row = {"enc_text": base64.b64encode(text.encode()).decode()} if enc else {"text": text}
        row[column] = encode_vector(vectors[i]) if vectors is not None else "AAAA"
        rows.append(row)
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_vectors_in_our_column_are_reused(tmp_path):
    vectors = np.eye(2, DIM, dtype=np.float32)
    character, stored, note = read_jsonl(
        role_jsonl(tmp_path / "kit.jsonl", COLUMN, vectors, enc=True), None, COLUMN, DIM
    )
    assert character.system_prompt == "You are Kit." and len(character.stories) == 2
    assert character.stories[0].text == "Kit:「The lamp must burn all night.」"  # from enc_text
    assert np.allclose(stored, vectors) and note == "reused the stored 'all_minilm_l6_v2' vectors"


def test_jsonl_vectors_of_another_model_are_not_reused(tmp_path):
    vectors = np.ones((2, 512), dtype=np.float32)
    _, stored, note = read_jsonl(role_jsonl(tmp_path / "kit.jsonl", "bge_zh_s15", vectors), None, COLUMN, DIM)
    assert stored is None and note == "re-embedded the stories: no 'all_minilm_l6_v2' column (found: bge_zh_s15)"
    _, stored, note = read_jsonl(role_jsonl(tmp_path / "k2.jsonl", COLUMN, vectors), None, COLUMN, DIM)
    assert stored is None and "not 384-dimensional" in note


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"text": "p", "c": "system_prompt"}', "{not json"], "kit.jsonl line 2: not valid JSON"),
        (['{"text": "a story", "c": "AAAAAA=="}'], "no system_prompt row"),
        (['{"text": "p", "c": "system_prompt"}'], "no story rows"),
        (['{"text": "p", "c": "system_prompt"}', '{"c": "AAAAAA=="}'], "line 2: no 'text' or 'enc_text'"),
        (['{"text": "p", "c": "system_prompt"}', "[1, 2]"], "line 2: expected a JSON object"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path, lines, message):
    path = tmp_path / "kit.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CharacterError, match=message):
        read_jsonl(path, None, "c", DIM)


def test_column_names_follow_chatharuhi_style():
    assert column_name("all-MiniLM-L6-v2") == "all_minilm_l6_v2"
    assert column_name("BAAI/bge-small-zh-v1.5") == "baai_bge_small_zh_v1_5"
