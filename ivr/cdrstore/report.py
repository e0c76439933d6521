"""`ivr cdr`: the latest calls as a table for people, or every column as CSV for spreadsheets and billing."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TextIO

from ivr.cdrstore import COLUMNS, CdrRow, open_database, read_jsonl

TABLE_LIMIT = 20
_TABLE = (("start", 19), ("status", 11), ("caller", 24), ("callee", 24), ("cause", 14), ("route", 0))
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_bound(value: str, now: datetime | None = None) -> str:
    """`--since` in the stored form (UTC ISO-8601, ms): a date or time (naive is UTC), or 30m, 2h, 7d ago."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"--since {value!r}: a date, a time (ISO 8601) or 30m, 2h, 7d") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def fetch(url: str, limit: int | None, since: str | None, environ: Mapping[str, str]) -> list[CdrRow]:
    """The latest calls first from the store `url` names (its schema brought up to date)."""
    database = open_database(url, environ)
    if database is None:
        rows = [row for row in read_jsonl(url) if since is None or row.start_time >= since]
        return rows if limit is None else rows[:limit]
    try:
        database.migrate()  # a store no bridge has opened yet reads as empty, not as an error
        return database.recent(limit, since)
    finally:
        database.close()


def write_csv(rows: Sequence[CdrRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, name) is None else getattr(row, name) for name in COLUMNS])


def write_table(rows: Sequence[CdrRow], out: TextIO) -> None:
    header = "  ".join(name.ljust(width) for name, width in _TABLE).rstrip()
    out.write(header + "\n")
    for row in rows:
        cells = (
            row.start_time[:19].replace("T", " "),
            row.status,
            row.caller,
            row.callee,
            row.hangup_cause or "",
            row.route,
        )
        out.write(
            "  ".join(_fit(cell, width) for cell, (_, width) in zip(cells, _TABLE, strict=True)).rstrip()
        )
        out.write("\n")
    out.write(f"({len(rows)} call{'s' if len(rows) != 1 else ''})\n")


def _fit(cell: str, width: int) -> str:
    if width == 0:
        return cell
    return cell.ljust(width) if len(cell) <= width else cell[: width - 1] + "…"
