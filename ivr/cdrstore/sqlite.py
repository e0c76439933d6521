"""The default CDR store of one node: SQLite in WAL mode.

WAL with synchronous=NORMAL: each commit is appended to the WAL in the OS before the call returns, so a
killed bridge (`kill -9`) loses nothing; only an OS crash or power loss can lose the last commits, never
corrupt the file (https://sqlite.org/wal.html). FULL adds an fsync per batch; choose it with
`sqlite:///path?synchronous=full` where a power cut must not lose the last calls. Readers (`ivr cdr`, the
tests) do not block the writer in WAL mode.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ivr.cdrstore.database import CdrDatabase
from ivr.cdrstore.migrations import Dialect

SYNCHRONOUS = ("off", "normal", "full", "extra")
BUSY_TIMEOUT_MS = 5000  # another process (a reader, `ivr cdr`) holding the lock: wait, do not fail


class SqliteDatabase(CdrDatabase):
    """The CDR schema in a SQLite file, WAL mode."""

    dialect = Dialect.SQLITE

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        super().__init__()
        if synchronous.lower() not in SYNCHRONOUS:
            raise ValueError(f"synchronous={synchronous!r}: one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous.lower()

    @property
    def where(self) -> str:
        return f"sqlite:{self.path}"

    def _connect(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level None): transactions are explicit BEGIN/COMMIT; the writer thread is
        # not the thread that opened it at start-up, hence check_same_thread=False (one user at a time).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def _begin(self, cursor: Any, *, exclusive: bool) -> None:
        # IMMEDIATE takes the write lock now, so two writers never deadlock upgrading a read lock.
        cursor.execute("BEGIN IMMEDIATE")
