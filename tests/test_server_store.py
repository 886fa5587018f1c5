"""The Qdrant server code path (collections through qdrant-client).

No Qdrant server can be installed on these machines (it is not on any package index we
reach), so this runs qdrant-client's own local mode, which takes the same client calls.
"""

import numpy as np
import pytest
from qdrant_client import QdrantClient

from memory.db import Database
from memory.library import Library
from memory.store import ServerStore
from tests.test_library import character, words


def test_library_works_the_same_on_the_server_store(tmp_path, embedder):
    store = ServerStore(QdrantClient(":memory:"))
    lib = Library(Database(tmp_path / "db.sqlite3"), store, embedder, words, "words")
    lib.load(character(["Kit:「the lighthouse keeper's log」", "Kit:「the storm at sea」", "Kit:「tomatoes」"]))
    for hybrid in (False, True):
        assert lib.search("kit", "a storm at sea", 1, hybrid=hybrid)[0].story.text == "Kit:「the storm at sea」"
    version = lib.version_of("kit")
    lib.load(character(["Kit:「only the harbour」"]))
    assert store.names() == [f"kit-{lib.version_of('kit')}"] and version != lib.version_of("kit")


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(ConnectionError, match="cannot reach the Qdrant server at http://127.0.0.1:9"):
        ServerStore.connect("http://127.0.0.1:9", None)


def test_scores_are_cosine_in_dense_mode(tmp_path, embedder):
    store = ServerStore(QdrantClient(":memory:"))
    lib = Library(Database(tmp_path / "db.sqlite3"), store, embedder, words, "words")
    lib.load(character(["Kit:「the storm at sea」"]))
    score = lib.search("kit", "Kit:「the storm at sea」", 1, hybrid=False)[0].score
    expected = float(np.dot(*embedder.encode(["Kit:「the storm at sea」"] * 2)))
    assert score == pytest.approx(expected, abs=1e-4)
