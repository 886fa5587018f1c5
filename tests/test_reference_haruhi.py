"""Reference data: the ChatHaruhi Haruhi character (Chinese, 172 scenes), read from GREENROOM_REFERENCE_DATA."""

import re

import pytest

from greenroom.memory.characters import load_chatharuhi_folder
from greenroom.memory.db import Database
from greenroom.memory.library import Library
from greenroom.memory.store import EdgeStore
from tests.conftest import reference_data


@pytest.fixture(scope="module")
def haruhi(tmp_path_factory, embedder, llm):
    folder = reference_data("chatharuhi/haruhi")
    root = tmp_path_factory.mktemp("haruhi")
    lib = Library(Database(root / "db.sqlite3"), EdgeStore(root / "qdrant"), embedder, llm.count_tokens, "smollm2")
    character = load_chatharuhi_folder(folder, name="haruhi")
    lib.load(character)
    yield lib, character
    lib.close()


def quoted_line(text: str) -> str:
    """The scene's longest line, quoted the ChatHaruhi way by the user's role."""
    line = max(text.splitlines(), key=len)
    spoken = re.match(r"^(.*?)[:：]「(.*?)」", line)
    return f"阿虚:「{spoken.group(2) if spoken else line}」"


def test_all_scenes_load_in_order(haruhi):
    lib, character = haruhi
    loaded = lib.get("haruhi")
    assert len(loaded.stories) == 172 == len(character.stories)
    assert loaded.character.system_prompt.startswith("你正在扮演凉宫春日")
    assert all(s.tokens > 0 for s in loaded.stories)


def test_a_query_quoting_a_line_retrieves_its_scene(haruhi):
    lib, character = haruhi
    found = 0
    for idx, story in enumerate(character.stories):
        hits = lib.search("haruhi", quoted_line(story.text), k=19)
        found += idx in [h.story.idx for h in hits[:3]]
    # Hybrid retrieval (BM25 on Qdrant's multilingual tokenizer + MiniLM) finds the quoted scene
    # near the top almost always; MiniLM alone is English-only and finds few of them.
    assert found / len(character.stories) >= 0.9


def test_the_dense_only_channel_is_weak_on_chinese(haruhi):
    """Why hybrid is the default: the shipped embedder maps most Chinese characters to [UNK]."""
    lib, character = haruhi
    dense = sum(
        idx == lib.search("haruhi", quoted_line(s.text), k=1, hybrid=False)[0].story.idx
        for idx, s in enumerate(character.stories[:40])
    )
    hybrid = sum(
        idx == lib.search("haruhi", quoted_line(s.text), k=1)[0].story.idx
        for idx, s in enumerate(character.stories[:40])
    )
    assert hybrid > 2 * dense


def test_haruhi_loads_the_same_from_a_zip(tmp_path):
    from greenroom.memory.importers import read_character
    from tests.test_importers import zip_folder

    folder = reference_data("chatharuhi/haruhi")
    archive = zip_folder(folder, tmp_path / "haruhi.zip", "haruhi/")
    zipped = read_character(archive, None, "all_minilm_l6_v2", 384).character
    plain = load_chatharuhi_folder(folder)
    assert zipped.stories == plain.stories and len(zipped.stories) == 172
    assert zipped.system_prompt == plain.system_prompt and zipped.id == "haruhi"
