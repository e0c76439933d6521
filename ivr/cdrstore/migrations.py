"""The CDR schema, one for SQLite and PostgreSQL: numbered steps applied in order, recorded in schema_version.

Times are ISO-8601 UTC text with milliseconds (`utc_now`), which sort and compare as text in both databases
(PostgreSQL casts them with `start_time::timestamptz`). The whole record is kept as JSON (JSONB in
PostgreSQL), so fields added to CallRecord flow through without a migration; the columns are the ones
searched or listed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Dialect(enum.Enum):
    """The SQL dialects the store speaks."""

    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True)
class Migration:
    """One schema step: the statements that take version `version - 1` to `version`."""

    version: int
    summary: str
    statements: tuple[str, ...]
    postgres: tuple[str, ...] | None = None  # where PostgreSQL needs its own statements

    def for_dialect(self, dialect: Dialect) -> tuple[str, ...]:
        if dialect is Dialect.POSTGRES and self.postgres is not None:
            return self.postgres
        return self.statements


_V1_TABLE = """CREATE TABLE cdr (
    channel_id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    status TEXT NOT NULL,
    dialplan TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    hangup_cause TEXT,
    route TEXT NOT NULL DEFAULT '',
    record {json} NOT NULL
)"""
_V1_INDEXES = (
    "CREATE INDEX cdr_start_time ON cdr (start_time)",
    "CREATE INDEX cdr_call_id ON cdr (call_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the cdr table: indexed columns and the whole record as JSON",
        (_V1_TABLE.format(json="TEXT"), *_V1_INDEXES),
        postgres=(_V1_TABLE.format(json="JSONB"), *_V1_INDEXES),
    ),
    Migration(
        2,
        "crash safety: the node and process instance that wrote each row; open rows found fast",
        (
            "ALTER TABLE cdr ADD COLUMN node TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE cdr ADD COLUMN instance TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX cdr_open ON cdr (node) WHERE end_time IS NULL",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version

SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
