"""The SQLite database in the data folder (WAL), shared by the library, history and settings."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenroom.errors import UserError


class DataDirError(UserError):
    """The data folder cannot be used."""


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


class Database:
    """One connection guarded by a lock; `transaction()` commits or rolls back as a whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.lock = threading.RLock()

    def execute(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row | Any]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()
