"""The database: SQLite in the data folder by default, PostgreSQL for several processes or machines.

`Database(url)` opens it through SQLAlchemy and brings its schema up to date with the Alembic
migrations in `migrations/` (a data folder from Greenroom 0.1 migrates in place). A database
written by a newer Greenroom is refused, never downgraded. Connection problems become one short
`DatabaseError` naming the host and never the password.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, exc, inspect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url

from greenroom.errors import UserError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 7_250_016  # a PostgreSQL advisory lock: one process migrates at a time
HOLDER = f"{socket.gethostname()}:{os.getpid()}"  # this process, in leases


class DataDirError(UserError):
    """The data folder cannot be used."""


UNAVAILABLE = "My database is not answering right now; please try again in a moment."


class DatabaseError(UserError):
    """The database cannot be reached or used. Users see the message; ``detail`` (for the log and
    for whoever starts the bot) names the database, never its password."""

    log_level = logging.WARNING

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


def ensure_writable(folder: Path) -> Path:
    """Create the data folder if needed and prove it is writable, with one clear error if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise DataDirError(
            f"data folder {folder} is not writable ({e.strerror}); "
            "set --data-dir or GREENROOM_DATA_DIR to a writable folder"
        ) from None
    return folder


def database_url(url: str, data_dir: Path, password: str | None = None) -> URL:
    """The URL to open: a SQLite file in the data folder when ``url`` is empty; `postgresql://`
    goes through psycopg 3; ``password`` (from the environment) fills a URL that has none."""
    if not url:
        return make_url(f"sqlite:///{data_dir / 'greenroom.sqlite3'}")
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise DatabaseError("database.url is not a database URL (expected sqlite:///PATH or postgresql://…)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if password and parsed.password is None and parsed.drivername != "sqlite":
        parsed = parsed.set(password=password)
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"database.url: {parsed.get_backend_name()} is not supported (SQLite or PostgreSQL)")
    return parsed


class Database:
    """An engine plus short transactions: `read()` and `write()` (SQLite writers queue up front)."""

    def __init__(self, url: str | Path | URL, data_dir: Path | None = None) -> None:
        self.url = make_url(f"sqlite:///{url}") if isinstance(url, Path) else make_url(url)
        self.where = self.url.render_as_string(hide_password=True)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._engine()
        try:
            self._migrate(data_dir)
        except DatabaseError as e:  # at start: the whole story, for whoever runs the bot
            raise DatabaseError(e.detail) from None

    def _engine(self) -> Engine:
        if not self.sqlite:
            return create_engine(
                self.url, pool_pre_ping=True, pool_size=8, max_overflow=8, connect_args={"connect_timeout": 5}
            )
        engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi: Any, _record: Any) -> None:
            dbapi.isolation_level = None  # transactions begin below, as SQLAlchemy's SQLite docs advise
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                dbapi.execute(f"PRAGMA {pragma}")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine

    def _migrate(self, data_dir: Path | None) -> None:
        """Bring the schema to this Greenroom's newest revision; refuse a newer one."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(cfg)
        with self.connect(write=True) as conn:
            if not self.sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            try:
                current = MigrationContext.configure(conn).get_current_revision()
                known = {r.revision for r in script.walk_revisions()}
                if current is not None and current not in known:
                    raise DatabaseError(
                        f"the database at {self.where} was written by a newer Greenroom (schema {current}; "
                        f"this one knows up to {script.get_current_head()}): upgrade Greenroom, or point "
                        "database.url elsewhere"
                    )
                if current != script.get_current_head():
                    fresh = not inspect(conn).has_table("characters")  # an upgrade is worth a line in the log
                    log.log(
                        logging.DEBUG if fresh else logging.INFO,
                        "database %s: migrating schema %s -> %s",
                        self.where,
                        current or "0.1",
                        script.get_current_head(),
                    )
                    cfg.attributes.update(connection=conn, data_dir=data_dir)
                    command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                    conn.commit()

    @contextmanager
    def connect(self, write: bool = False) -> Iterator[Connection]:
        """A connection; database trouble becomes one `DatabaseError` naming where (no password)."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(write=True)
                yield conn
        except (exc.OperationalError, exc.InterfaceError) as e:
            raise DatabaseError(UNAVAILABLE, f"cannot use the database at {self.where}: {_reason(e)}") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction: committed as a whole, or rolled back on any error."""
        with self.connect(write=True) as conn, conn.begin():
            yield conn

    def upsert(self, conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> None:
        """Insert a row, or update the one with the same ``keys`` (keep it, when every column is a key)."""
        insert = sqlite_insert if self.sqlite else pg_insert
        statement = insert(table).values(**values)
        changes = {k: statement.excluded[k] for k in values if k not in keys}
        conn.execute(
            statement.on_conflict_do_update(index_elements=keys, set_=changes)
            if changes
            else statement.on_conflict_do_nothing(index_elements=keys)
        )

    def ping(self) -> None:
        """Raises `DatabaseError` when the database does not answer (readiness)."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _reason(error: exc.DBAPIError) -> str:
    """The driver's first line, without the statement SQLAlchemy appends."""
    first = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
    return first.removeprefix("connection failed: ")
