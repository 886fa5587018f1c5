"""Dialogue history on SQLite and PostgreSQL: order, persistence across restarts, /reset scope."""

from greenroom.memory.db import Database
from greenroom.memory.history import KEEP, History, Turn


def turn(user: str, text: str) -> Turn:
    return Turn(user, user, text, f"re: {text}", f"Wren:「re: {text}」")


def test_history_survives_a_restart_in_order(database_url):
    db = Database(database_url)
    History(db).add("console:local", "wren", turn("a", "one"))
    History(db).add("console:local", "wren", turn("a", "two"))
    db.close()
    reopened = History(Database(database_url))
    assert [t.user_text for t in reopened.recent("console:local", "wren")] == ["one", "two"]


def test_history_is_per_conversation_and_character(database_url):
    h = History(Database(database_url))
    h.add("chat1", "wren", turn("a", "for wren"))
    h.add("chat1", "kit", turn("a", "for kit"))
    h.add("chat2", "wren", turn("a", "elsewhere"))
    assert [t.user_text for t in h.recent("chat1", "wren")] == ["for wren"]


def test_reset_can_clear_one_users_turns_or_all(database_url):
    h = History(Database(database_url))
    for user, text in (("a", "1"), ("b", "2"), ("a", "3")):
        h.add("group", "wren", turn(user, text))
    assert h.clear("group", "a") == 2
    assert [t.user_text for t in h.recent("group", "wren")] == ["2"]
    assert h.clear("group") == 1 and h.recent("group", "wren") == []


def test_history_is_bounded(database_url):
    h = History(Database(database_url))
    for i in range(KEEP + 5):
        h.add("c", "wren", turn("a", str(i)))
    kept = h.recent("c", "wren", limit=10_000)
    assert len(kept) == KEEP and kept[-1].user_text == str(KEEP + 4)
