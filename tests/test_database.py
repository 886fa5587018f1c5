"""The shared database on SQLite and on a real PostgreSQL: migrations from Greenroom 0.1's data
folder, a newer schema refused, connection errors that name the host but never the password,
and the state commands change (settings, verdicts, audit log, uploads) surviving a restart."""

import json
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import text

from greenroom.memory.audit import AuditEntry, AuditLog
from greenroom.memory.db import Database, DatabaseError, database_url
from greenroom.memory.settings import Settings
from greenroom.memory.uploads import Uploads
from greenroom.memory.verdicts import VerdictCache
from tests.servers import free_port, new_database
from tests.test_admin import card_file, say

# What Greenroom 0.1 wrote into data/greenroom.sqlite3 (its library, history, settings and verdicts).
GREENROOM_0_1 = """
CREATE TABLE characters (id TEXT PRIMARY KEY, name TEXT NOT NULL, system_prompt TEXT NOT NULL,
    greeting TEXT NOT NULL, speaker_aliases TEXT NOT NULL, settings TEXT NOT NULL, source_format TEXT NOT NULL,
    version TEXT NOT NULL, embedder TEXT NOT NULL, tokenizer TEXT NOT NULL, loaded_at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '{}', extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE stories (character_id TEXT NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, source TEXT NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL,
    PRIMARY KEY (character_id, idx));
CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation TEXT NOT NULL,
    character_id TEXT NOT NULL, user_id TEXT NOT NULL, speaker TEXT NOT NULL, user_text TEXT NOT NULL,
    reply TEXT NOT NULL, reply_raw TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX turns_by_conversation ON turns (conversation, character_id, id);
CREATE TABLE settings (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (scope, key));
CREATE TABLE link_verdicts (url TEXT PRIMARY KEY, verdict TEXT NOT NULL, at REAL NOT NULL);
"""


def test_the_state_commands_change_survives_a_restart(database_url):
    db = Database(database_url)
    Settings(db).set("telegram:-5", "mode", "all")
    Settings(db).set("telegram:-5", "mode", "mention")  # an update, not a second row
    VerdictCache(db, 3600).put("https://example.org/a", {"label": "fake", "p": 0.9})
    AuditLog(db).record(AuditEntry("telegram:7", "Ann", "telegram:-5", "chat", "mode", "mention", "done"))
    Uploads(db).keep("mira", "mira.json", b"\x00card bytes\xff")
    db.close()
    again = Database(database_url)
    assert Settings(again).scope("telegram:-5") == {"mode": "mention"}
    assert VerdictCache(again, 3600).get("https://example.org/a") == {"label": "fake", "p": 0.9}
    [entry] = AuditLog(again).entries()
    assert (entry.who, entry.scope, entry.command) == ("telegram:7", "chat", "mode") and entry.at
    assert Uploads(again).get("mira") == ("mira.json", b"\x00card bytes\xff")


def test_a_database_from_a_newer_greenroom_is_refused(database_url):
    Database(database_url).close()
    with Database(database_url).engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match="written by a newer Greenroom \\(schema 9999; this one knows up to"):
        Database(database_url)
    with pytest.raises(DatabaseError, match="newer Greenroom"):
        Database(database_url)  # still refused: nothing was downgraded


def test_a_wrong_password_or_host_is_one_line_without_the_password(postgres, tmp_path):
    wrong = postgres.replace(":pw@", ":hunter2@") + "/postgres"
    with pytest.raises(DatabaseError) as e:
        Database(database_url(wrong, tmp_path))
    assert "password authentication failed" in str(e.value) and "hunter2" not in str(e.value)
    assert "127.0.0.1" in str(e.value) and "\n" not in str(e.value)
    nowhere = f"postgresql://greenroom:hunter2@127.0.0.1:{free_port()}/greenroom"
    with pytest.raises(DatabaseError, match="cannot use the database at .*127.0.0.1.*refused") as e:
        Database(database_url(nowhere, tmp_path))
    assert "hunter2" not in str(e.value)


def test_the_password_can_come_from_the_environment_alone(postgres, tmp_path):
    url = postgres.replace("greenroom:pw@", "greenroom@") + "/postgres"
    assert Database(database_url(url, tmp_path, password="pw")).where.endswith("/postgres")


def test_an_unsupported_url_is_refused(tmp_path):
    with pytest.raises(DatabaseError, match="mysql is not supported"):
        database_url("mysql://u@h/db", tmp_path)


def legacy_data_folder(data, card: bytes) -> None:
    """A data folder as Greenroom 0.1 left it: an uploaded character, a turn, a chat setting, the audit log."""
    (data / "uploads" / "mira").mkdir(parents=True)
    (data / "uploads" / "mira" / "mira.json").write_bytes(card)
    db = sqlite3.connect(data / "greenroom.sqlite3")
    db.executescript(GREENROOM_0_1)
    source = json.dumps({"path": str(data / "uploads" / "mira" / "mira.json"), "name": None})
    db.execute(
        "INSERT INTO characters VALUES ('mira','Mira','You are Mira.','','[]','{}','card-v2','0ld',"
        "'all-MiniLM-L6-v2','words',0,?,'{}')",
        (source,),
    )
    db.execute("INSERT INTO stories VALUES ('mira', 0, 'card', 'Mira:「The lamp.」', 4)")
    db.execute("INSERT INTO turns VALUES (NULL,'console:c1','wren','local','local','hello','hi','Wren:「hi」',0)")
    db.execute("INSERT INTO settings VALUES ('console:c1', 'mode', 'all')")
    db.commit()
    db.close()
    entry = {"when": "2026-11-01T10:00:00Z", "who": "console:local", "name": "local", "where": "console:c1"}
    entry |= {"scope": "bot", "command": "character load", "args": "", "outcome": "Loaded Mira"}
    (data / "audit.log").write_text(json.dumps(entry) + "\n", encoding="utf-8")


async def test_a_data_folder_from_greenroom_0_1_migrates_in_place(open_app, config_file):
    card = await card_file("Mira", "A lighthouse keeper.").read()
    data = config_file.parent / "data"
    data.mkdir()
    legacy_data_folder(data, card)
    app = open_app()
    assert app.settings.get("console:c1", "mode") == "all"
    assert [t.user_text for t in app.history.recent("console:c1", "wren")] == ["hello"]
    [entry] = app.audit.entries()
    assert (entry.who, entry.place, entry.command, entry.at) == (
        "console:local",
        "console:c1",
        "character load",
        "2026-11-01T10:00:00Z",
    )
    assert sorted(app.library.ids()) == ["mira", "wren"]
    (data / "uploads" / "mira" / "mira.json").unlink()  # the file is in the database now
    [reloaded] = (await say(app, "/character reload mira", user="local")).messages
    assert reloaded.startswith("Reloaded Mira"), reloaded
    assert app.library.get("mira").version != "0ld"  # the new version is the one served


LOADER = """
import pathlib, sys
from greenroom.core.config import EmbedderSection
from greenroom.memory.characters import Character, CharacterError, Story
from greenroom.memory.db import Database
from greenroom.memory.library import Library
from greenroom.memory.store import EdgeStore
from greenroom.models.embedder import Embedder

url, folder, line, hold = sys.argv[1:]
c = EmbedderSection()
lib = Library(Database(url), EdgeStore(pathlib.Path(folder)), Embedder(c.model, c.device, c.batch_size, c.name),
              lambda t: len(t.split()), "words")
if hold == "hold":  # stop half-way through writing, until told to go on
    create = lib.store.create
    def held(name, dim):
        print("writing", flush=True)
        sys.stdin.readline()
        return create(name, dim)
    lib.store.create = held
try:
    print("loaded", lib.load(Character("kit", "Kit", "You are Kit.", (Story(f"Kit:「{line}」", "s.txt"),))).changed)
except CharacterError as e:
    print("told:", e)
"""


def test_two_processes_loading_one_name_at_once_one_wins_the_other_is_told(database_url, tmp_path):
    def loader(n: int, hold: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", LOADER, database_url, str(tmp_path / f"q{n}"), f"line {n}", hold],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    first = loader(1, "hold")
    assert first.stdout.readline().strip() == "writing"
    second = loader(2, "go")
    told = second.communicate(timeout=120)[0].strip()
    assert told == "told: 'kit' is being loaded or removed by another process right now; try again when it has finished"
    assert first.communicate("go\n", timeout=120)[0].strip() == "loaded True"


def test_a_bot_moves_its_state_from_sqlite_to_postgresql(config_file, postgres, capsys):
    from greenroom.cli import main
    from greenroom.memory.history import History, Turn

    (config_file.parent / "data").mkdir()
    db = Database(config_file.parent / "data" / "greenroom.sqlite3")
    Settings(db).set("telegram:-5", "mode", "all")
    History(db).add("telegram:-5", "wren", Turn("7", "Ann", "hello", "hi", "Wren:「hi」"))
    AuditLog(db).record(AuditEntry("telegram:7", "Ann", "telegram:-5", "chat", "mode", "all", "done"))
    Uploads(db).keep("mira", "mira.json", b"{}")
    db.close()
    url = new_database(postgres, "moved")
    assert main(["--config", str(config_file), "database", "copy", url]) == 0
    said = capsys.readouterr().out
    assert said.startswith("copied 4 rows to postgresql+psycopg://greenroom:***@127.0.0.1") and ":pw@" not in said
    moved = Database(url)
    assert Settings(moved).get("telegram:-5", "mode") == "all" and Uploads(moved).get("mira") == ("mira.json", b"{}")
    assert [e.command for e in AuditLog(moved).entries()] == ["mode"]
    History(moved).add("telegram:-5", "wren", Turn("7", "Ann", "again", "yes", "Wren:「yes」"))  # ids go on
    assert [t.user_text for t in History(moved).recent("telegram:-5", "wren")] == ["hello", "again"]
    assert main(["--config", str(config_file), "database", "copy", url]) == 2  # not into a database in use
    assert "already holds" in capsys.readouterr().err
