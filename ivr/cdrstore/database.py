"""One CDR database, either dialect: the schema migrations, writes of a batch, crash recovery, reads.

Blocking (DB-API) on purpose: it runs on the CDR writer thread, at start-up, or in `ivr cdr`, never on the
event loop. SQL is written once with `?` placeholders; the PostgreSQL driver's `%s` is substituted.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import structlog

from ivr.cdr import CdrPhase, CdrWrite
from ivr.cdrstore.migrations import LATEST, MIGRATIONS, SCHEMA_VERSION_TABLE, Dialect

log = structlog.get_logger()

INTERRUPTED_CAUSE = "interrupted"


class CdrStatus(enum.Enum):
    """A row's life: written when the call starts, completed when it ends, or found open after a crash."""

    ACTIVE = "active"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class CdrRow:
    """One stored call: the indexed columns, and the whole record as JSON text."""

    channel_id: str
    call_id: str
    node: str
    instance: str
    start_time: str
    end_time: str | None
    status: str
    dialplan: str
    caller: str
    callee: str
    hangup_cause: str | None
    route: str
    record: str

    def record_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record)
        return data


COLUMNS = tuple(f.name for f in fields(CdrRow))
_COLUMN_LIST = ", ".join(COLUMNS)

_START = f"""INSERT INTO cdr ({_COLUMN_LIST}) VALUES ({", ".join("?" * len(COLUMNS))})
ON CONFLICT (channel_id) DO NOTHING"""
# An end without its start row (the start write failed) still leaves a complete row.
_END = f"""INSERT INTO cdr ({_COLUMN_LIST}) VALUES ({", ".join("?" * len(COLUMNS))})
ON CONFLICT (channel_id) DO UPDATE SET end_time = excluded.end_time, status = excluded.status,
hangup_cause = excluded.hangup_cause, route = excluded.route, record = excluded.record"""


_OPEN_ROWS = "SELECT channel_id, record FROM cdr WHERE node = ? AND instance <> ? AND end_time IS NULL"
_INTERRUPT = "UPDATE cdr SET end_time = ?, status = ?, hangup_cause = ?, record = ? WHERE channel_id = ?"


class CdrDatabase(abc.ABC):
    """A connection to the CDR schema in one dialect; one thread at a time uses it."""

    dialect: Dialect

    def __init__(self) -> None:
        self._conn: Any = None

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the database is, for log lines (never a password)."""

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode (transactions are explicit)."""

    @abc.abstractmethod
    def _begin(self, cursor: Any, *, exclusive: bool) -> None:
        """Open a transaction; `exclusive` makes concurrent migrators wait for each other."""

    def _sql(self, sql: str) -> str:
        return sql

    def _text(self, value: str) -> str:
        return value

    def _record(self, json_text: str) -> str:
        return json_text

    def _row(self, values: Sequence[Any]) -> CdrRow:
        return CdrRow(*values)

    # ---- connection and transactions

    def connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _transaction(self, *, exclusive: bool = False) -> Iterator[Any]:
        cursor = self.connection().cursor()
        self._begin(cursor, exclusive=exclusive)
        try:
            yield cursor
        except BaseException:
            with contextlib.suppress(Exception):
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    # ---- schema

    def version(self) -> int:
        with self._transaction(exclusive=True) as cursor:
            return self._version(cursor)

    @staticmethod
    def _version(cursor: Any) -> int:
        cursor.execute(SCHEMA_VERSION_TABLE)
        cursor.execute("SELECT max(version) FROM schema_version")
        found = cursor.fetchone()
        return int(found[0]) if found and found[0] is not None else 0

    def migrate(self, target: int = LATEST) -> tuple[int, int]:
        """Apply the steps above the database's version, up to `target`; (version before, version after).

        One transaction under the migration lock: nodes starting together wait, then find the work done
        (even CREATE TABLE IF NOT EXISTS races in PostgreSQL without it), and a failed step leaves the
        database as it was.
        """
        applied = []
        with self._transaction(exclusive=True) as cursor:
            before = self._version(cursor)
            for migration in MIGRATIONS:
                if before < migration.version <= target:
                    for statement in migration.for_dialect(self.dialect):
                        cursor.execute(statement)
                    insert = self._sql("INSERT INTO schema_version (version) VALUES (?)")
                    cursor.execute(insert, (migration.version,))
                    applied.append(migration)
        for migration in applied:
            log.info(
                "cdr schema migrated", where=self.where, version=migration.version, step=migration.summary
            )
        return before, applied[-1].version if applied else before

    # ---- writes

    def reachable(self) -> bool:
        """Whether a fresh connection answers a query: tells an outage from rows the database refuses."""
        self.close()
        try:
            with self._transaction() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            self.close()
            return False
        return True

    def store(self, batch: Sequence[CdrWrite], node: str, instance: str) -> None:
        """Write a batch in one transaction; a broken connection is reopened and the batch tried once more."""
        try:
            self._store(batch, node, instance)
        except Exception:
            self.close()
            self._store(batch, node, instance)

    def _store(self, batch: Sequence[CdrWrite], node: str, instance: str) -> None:
        with self._transaction() as cursor:
            for write in batch:
                start = write.phase is CdrPhase.START
                status = CdrStatus.ACTIVE if start else CdrStatus.COMPLETED
                values = (
                    write.channel_id,
                    write.call_id,
                    node,
                    instance,
                    write.start,
                    write.end,
                    status.value,
                    write.dialplan,
                    write.caller,
                    write.callee,
                    write.hangup_cause,
                    write.route,
                )
                params = (
                    *(self._text(v) if isinstance(v, str) else v for v in values),
                    self._record(write.json),
                )
                cursor.execute(self._sql(_START if start else _END), params)

    def recover(self, node: str, instance: str, now: str) -> list[str]:
        """Mark `node`'s rows that an earlier process left open as interrupted at `now`; their channel ids."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(_OPEN_ROWS),
                (node, instance),
            )
            found = cursor.fetchall()
            for channel_id, record in found:
                data = record if isinstance(record, dict) else json.loads(record)
                data["end"] = now
                data["hangup_cause"] = INTERRUPTED_CAUSE
                cursor.execute(
                    self._sql(_INTERRUPT),
                    (now, CdrStatus.INTERRUPTED.value, INTERRUPTED_CAUSE, self._json(data), channel_id),
                )
        return [str(channel_id) for channel_id, _ in found]

    def _json(self, data: dict[str, Any]) -> str:
        return self._record(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    # ---- reads

    def recent(self, limit: int | None = 20, since: str | None = None) -> list[CdrRow]:
        """The latest calls first: at most `limit` (None: all) that started at or after `since`."""
        sql = f"SELECT {_COLUMN_LIST} FROM cdr"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE start_time >= ?"
            params.append(since)
        sql += " ORDER BY start_time DESC, channel_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        cursor = self.connection().cursor()
        cursor.execute(self._sql(sql), params)
        return [self._row(values) for values in cursor.fetchall()]

    def ended(self) -> list[CdrRow]:
        """Every call with an end (completed or interrupted), in the order they ended."""
        cursor = self.connection().cursor()
        sql = f"SELECT {_COLUMN_LIST} FROM cdr WHERE end_time IS NOT NULL ORDER BY end_time, start_time"
        cursor.execute(sql)
        return [self._row(values) for values in cursor.fetchall()]

    def by_channel(self, channel_id: str) -> CdrRow | None:
        cursor = self.connection().cursor()
        cursor.execute(self._sql(f"SELECT {_COLUMN_LIST} FROM cdr WHERE channel_id = ?"), (channel_id,))
        found = cursor.fetchone()
        return None if found is None else self._row(found)
