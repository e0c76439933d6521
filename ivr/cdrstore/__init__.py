"""Where CDRs are kept, chosen by `cdr_url`: SQLite (default, one node), PostgreSQL (a cluster), JSON lines.

sqlite:///var/cdr.sqlite3          a path relative to the working directory (sqlite:////abs/path)
sqlite:///var/cdr.sqlite3?synchronous=full
postgresql://ivr@db.example:5432/ivr   the password from IVR_CDR_PASSWORD or PGPASSWORD, never the URL
jsonl:///var/cdr.jsonl             one JSON line per ended call (no row while a call is in progress)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ivr.cdr import CdrSink, CdrWriter
from ivr.cdrstore.database import COLUMNS, CdrDatabase, CdrRow, CdrStatus
from ivr.cdrstore.sqlite import SqliteDatabase
from ivr.cdrstore.writer import SqlCdrStore

__all__ = [
    "COLUMNS",
    "CdrDatabase",
    "CdrRow",
    "CdrStatus",
    "OpenedStore",
    "SqlCdrStore",
    "open_database",
    "open_store",
    "read_jsonl",
]

DEFAULT_URL = "sqlite:///var/cdr.sqlite3"


def _path(url: str) -> Path:
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    path = urlsplit(url).path
    if not path.startswith("/") or len(path) < 2:
        raise ValueError(f"{url!r}: expected scheme:///path")
    return Path(path[1:])


def open_database(url: str, environ: Mapping[str, str] = os.environ) -> CdrDatabase | None:
    """The SQL database `url` names (not yet connected), or None for a JSON-lines file."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        options = parse_qs(urlsplit(url).query)
        return SqliteDatabase(_path(url), options.get("synchronous", ["normal"])[-1])
    if scheme in ("postgresql", "postgres"):
        from ivr.cdrstore.postgres import PostgresDatabase  # psycopg loads only for a cluster

        return PostgresDatabase(url, environ)
    if scheme == "jsonl":
        return None
    raise ValueError(f"cdr_url {url!r}: the scheme must be sqlite, postgresql or jsonl")


@dataclass(frozen=True)
class OpenedStore:
    """The bridge's CDR sink, and the calls an earlier run of this node left open (now interrupted)."""

    sink: CdrSink
    where: str
    interrupted: tuple[str, ...] = ()


def open_store(
    url: str,
    node: str,
    instance: str,
    environ: Mapping[str, str] = os.environ,
    spool: Path | None = None,
) -> OpenedStore:
    """Open the store for a bridge: migrate, recover the node's open rows, start the writer thread.

    `spool` is where records wait while the database is down (default: beside a SQLite file, else
    var/cdr-spool-<node>.jsonl).
    """
    database = open_database(url, environ)
    if database is None:
        writer = CdrWriter(_path(url))
        return OpenedStore(writer, writer.where)
    if spool is None and isinstance(database, SqliteDatabase):
        spool = database.path.with_name(database.path.name + ".spool.jsonl")
    elif spool is None:
        spool = Path("var") / f"cdr-spool-{re.sub(r'[^A-Za-z0-9_.-]', '_', node)}.jsonl"
    store = SqlCdrStore(database, node, instance, spool)
    return OpenedStore(store, store.where, tuple(store.interrupted))


def read_jsonl(url: str) -> list[CdrRow]:
    """A JSON-lines file's calls as rows (the latest first), for `ivr cdr` on `jsonl:` stores."""
    path = _path(url)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        d = json.loads(line)
        route = " > ".join(str(entry).partition("<")[0] for entry in d.get("route", []))
        rows.append(
            CdrRow(
                d["channel_id"],
                d["call_id"],
                "",
                "",
                d["start"],
                d.get("end"),
                CdrStatus.COMPLETED.value,
                d.get("dialplan", ""),
                d.get("caller", ""),
                d.get("callee", ""),
                d.get("hangup_cause"),
                route,
                line,
            )
        )
    rows.sort(key=lambda row: row.start_time, reverse=True)
    return rows
