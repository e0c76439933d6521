"""CDRs of a cluster in PostgreSQL (psycopg 3): every node writes its calls to one shared database.

The password never comes from the URL: `IVR_CDR_PASSWORD`, or libpq's own PGPASSWORD / ~/.pgpass. Nodes
that start together migrate under one advisory lock. PostgreSQL text cannot hold NUL, so a NUL that a SIP
header carried is stored as the literal text \\x00, as ivr.cdr shows other undecodable octets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ivr.cdrstore.database import CdrDatabase, CdrRow
from ivr.cdrstore.migrations import Dialect

PASSWORD_VARIABLE = "IVR_CDR_PASSWORD"
CONNECT_TIMEOUT = 10  # seconds; libpq's connect_timeout
STATEMENT_TIMEOUT_MS = 10000  # a stuck server fails the batch (logged) and does not stall the writer
_MIGRATION_LOCK = 0x1C0D  # pg_advisory_xact_lock key: one migrator at a time across the cluster


class PostgresDatabase(CdrDatabase):
    """The CDR schema in a PostgreSQL database."""

    dialect = Dialect.POSTGRES

    def __init__(self, dsn: str, environ: Mapping[str, str]) -> None:
        super().__init__()
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        if info.get("password"):
            raise ValueError(
                f"the CDR URL must not carry a password: set {PASSWORD_VARIABLE} (or PGPASSWORD)"
            )
        self._dsn = dsn
        self._password = environ.get(PASSWORD_VARIABLE)
        self._shown = f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}"
        self._shown += f"/{info.get('dbname', '')}"

    @property
    def where(self) -> str:
        return self._shown

    def _connect(self) -> Any:
        extra: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "autocommit": True}
        extra["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        if self._password is not None:
            extra["password"] = self._password
        return psycopg.connect(self._dsn, **extra)

    def _begin(self, cursor: Any, *, exclusive: bool) -> None:
        cursor.execute("BEGIN")
        if exclusive:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _text(self, value: str) -> str:
        return value.replace("\x00", "\\x00") if "\x00" in value else value

    def _record(self, json_text: str) -> str:
        if "\\u0000" not in json_text:  # jsonb refuses the escaped NUL as well
            return json_text
        return json.dumps(_without_nul(json.loads(json_text)), ensure_ascii=False, separators=(",", ":"))

    def _row(self, values: Sequence[Any]) -> CdrRow:
        record = values[-1]
        text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
        return super()._row((*values[:-1], text))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_nul(item) for key, item in value.items()}
    return value
