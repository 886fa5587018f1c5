"""The character library on real Qdrant Edge shards and the real MiniLM embedder."""

import subprocess
import time
from pathlib import Path

import pytest

from greenroom.memory.characters import Character, CharacterError, Story, load_chatharuhi_folder
from greenroom.memory.db import HOLDER, Database
from greenroom.memory.library import Library
from greenroom.memory.schema import leases
from greenroom.memory.store import EdgeStore
from tests.conftest import DEMO


def words(text: str) -> int:
    return len(text.split())


def open_library(root: Path, embedder, url: str | None = None) -> Library:
    db = Database(url or root / "db.sqlite3")
    return Library(db, EdgeStore(root / "qdrant"), embedder, words, "words")


def character(stories: list[str], cid: str = "kit") -> Character:
    return Character(cid, cid.title(), "You are Kit.", tuple(Story(t, f"{i}.txt") for i, t in enumerate(stories)))


def test_query_quoting_a_line_retrieves_its_scene(tmp_path, embedder):
    lib = open_library(tmp_path, embedder)
    lib.load(load_chatharuhi_folder(DEMO))
    hits = lib.search("wren", "Why do you leave that light on all night?", k=3)
    assert hits[0].story.source == "11_the_ghost_light.txt"
    assert hits[0].story.tokens == words(hits[0].story.text)  # counted at ingest


def test_reload_of_same_content_is_a_noop_and_changes_replace_the_old_version(tmp_path, embedder, database_url):
    lib = open_library(tmp_path, embedder, database_url)
    first = lib.load(character(["Kit:「the lighthouse keeper's log」", "Kit:「the storm」"]))
    assert first.changed
    again = lib.load(character(["Kit:「the lighthouse keeper's log」", "Kit:「the storm」"]))
    assert not again.changed
    lib.load(character(["Kit:「the harbour at dawn」"]))
    loaded = lib.get("kit")
    assert [s.text for s in loaded.stories] == ["Kit:「the harbour at dawn」"]
    assert loaded.index.count() == 1
    assert lib.store.names() == [f"kit-{loaded.version}"]  # the old index is gone


def test_failed_load_leaves_the_previous_version_in_place(tmp_path, embedder, database_url, monkeypatch):
    lib = open_library(tmp_path, embedder, database_url)
    lib.load(character(["Kit:「original」"]))
    before = lib.get("kit").version

    def broken(texts, progress=False):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lib.embedder, "encode", broken)
    with pytest.raises(RuntimeError):
        lib.load(character(["Kit:「replacement」"]))
    monkeypatch.undo()
    loaded = lib.get("kit")
    assert loaded.version == before and loaded.stories[0].text == "Kit:「original」"
    assert lib.search("kit", "original", 1)[0].story.text == "Kit:「original」"
    assert lib.store.names() == [f"kit-{before}"]


def test_library_survives_a_restart(tmp_path, embedder, database_url):
    lib = open_library(tmp_path, embedder, database_url)
    lib.load(character(["Kit:「the lighthouse」", "Kit:「the storm at sea」"]))
    lib.close()
    lib.db.close()
    reopened = open_library(tmp_path, embedder, database_url)
    assert reopened.search("kit", "storm", 1)[0].story.text == "Kit:「the storm at sea」"


def test_a_long_story_is_found_by_a_line_past_the_embedder_window(tmp_path, embedder):
    filler = [f"Kit:「Line {i}: the tide tables, the lamp oil, the logbook, the weather again.」" for i in range(60)]
    needle = "Kit:「The violinist hid the emerald inside the grandfather clock.」"
    long_story = "\n".join(filler + [needle])
    assert sum(embedder.token_counts([long_story])) > embedder.max_tokens
    others = [f"Kit:「Short scene {i} about gardening and tomatoes.」" for i in range(5)]
    lib = open_library(tmp_path, embedder)
    lib.load(character([long_story, *others]))
    for hybrid in (False, True):  # the dense windows alone find it; hybrid too
        hits = lib.search("kit", "Where did the violinist hide the emerald?", k=2, hybrid=hybrid)
        assert hits[0].story.idx == 0, hybrid
        assert len({h.story.idx for h in hits}) == len(hits)  # each story once


def test_remove_and_unknown_names(tmp_path, embedder, database_url):
    lib = open_library(tmp_path, embedder, database_url)
    lib.load(character(["Kit:「x」"]))
    assert lib.remove("kit") and not lib.remove("kit")
    assert lib.store.names() == []
    with pytest.raises(CharacterError, match="no character named 'kit'"):
        lib.get("kit")


def dead_holder() -> str:
    """A holder name for a process on this host that has exited."""
    done = subprocess.Popen(["true"])
    done.wait()
    return f"{HOLDER.rpartition(':')[0]}:{done.pid}"


def hold(lib: Library, name: str, holder: str, index_name: str) -> None:
    with lib.db.write() as conn:
        conn.execute(
            leases.insert().values(name=name, holder=holder, expires_at=time.time() + 60, index_name=index_name)
        )


def test_a_load_killed_half_way_leaves_no_stray_index(tmp_path, embedder, database_url):
    lib = open_library(tmp_path, embedder, database_url)
    lib.load(character(["Kit:「x」"]))
    stray = lib.store.create("kit-deadbeef", embedder.dim)  # as if a load was killed before its switch
    lib.store.commit("kit-deadbeef", stray)
    hold(lib, "load:kit", dead_holder(), "kit-deadbeef")
    unknown = lib.store.create("not-ours", embedder.dim)  # no lease names it: nobody knows whose it is
    lib.store.commit("not-ours", unknown)
    lib.close()
    lib.db.close()
    reopened = open_library(tmp_path, embedder, database_url)
    assert reopened.store.names() == [f"kit-{reopened.version_of('kit')}", "not-ours"]
    assert reopened.leases.all() == []
    assert reopened.search("kit", "x", 1)[0].story.text == "Kit:「x」"


def test_a_load_in_progress_elsewhere_is_neither_disturbed_nor_doubled(tmp_path, embedder, database_url):
    lib = open_library(tmp_path, embedder, database_url)
    lib.load(character(["Kit:「x」"]))
    writing = lib.store.create("kit-0123456789abcdef", embedder.dim)
    lib.store.commit("kit-0123456789abcdef", writing)
    hold(lib, "load:kit", "another-machine:4242", "kit-0123456789abcdef")
    lib.close()
    reopened = open_library(tmp_path, embedder, database_url)
    assert "kit-0123456789abcdef" in reopened.store.names()  # its vectors are not dropped under it
    with pytest.raises(CharacterError, match="'kit' is being loaded or removed by another process"):
        reopened.load(character(["Kit:「y」"]))
    with pytest.raises(CharacterError, match="another process"):
        reopened.remove("kit")
    assert reopened.search("kit", "x", 1)[0].story.text == "Kit:「x」"  # the current version still answers


def test_stored_vectors_are_used_instead_of_embedding_again(tmp_path, embedder, monkeypatch):
    texts = ["Kit:「the lighthouse keeper's log」", "Kit:「the storm at sea」"]
    vectors = embedder.encode(texts)
    lib = open_library(tmp_path, embedder)
    monkeypatch.setattr(lib.embedder, "encode", lambda *a, **k: pytest.fail("re-embedded stored stories"))
    lib.load(character(texts), vectors=vectors)
    monkeypatch.undo()
    assert lib.search("kit", "storm at sea", 1, hybrid=False)[0].story.idx == 1
    with pytest.raises(CharacterError, match="do not match"):
        lib.load(character(["Kit:「other」"]), vectors=vectors)


def test_a_second_process_on_the_same_store_gets_a_clear_error(tmp_path, embedder):
    from greenroom.memory.store import StoreError

    first = open_library(tmp_path, embedder)
    first.load(character(["Kit:「x」"]))
    first.get("kit")
    second = open_library(tmp_path, embedder)
    assert second.character("kit")[0].name == "Kit"  # reading the catalogue needs no index
    with pytest.raises(StoreError, match="open in another Greenroom process"):
        second.get("kit")
