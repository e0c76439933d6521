"""The SQLite CDR store: a row at start, completed at end, migrations, crash recovery, failures logged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ivr.cdr import REDACTED_DIGIT, REDACTED_TEXT, CallRecord, CdrPhase, CdrWrite, CdrWriter, Transcript
from ivr.cdrstore import CdrStatus, SqlCdrStore, open_database, open_store
from ivr.cdrstore.migrations import LATEST
from ivr.cdrstore.spool import CdrSpool
from ivr.cdrstore.sqlite import SqliteDatabase
from ivr.config import Settings


def record(channel: str = "a", call_id: str = "call-1") -> CallRecord:
    return CallRecord(call_id, channel * 32, "sip:alice@192.0.2.10", "sip:ivr@x", "demo.yaml")


def sqlite_store(
    tmp_path: Path, node: str = "node-1", instance: str = "run-1", query: str = ""
) -> SqlCdrStore:
    opened = open_store(f"sqlite:///{tmp_path / 'cdr.sqlite3'}{query}", node, instance)
    assert isinstance(opened.sink, SqlCdrStore)
    return opened.sink


def rows(tmp_path: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(tmp_path / "cdr.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM cdr ORDER BY start_time, channel_id").fetchall()


def test_a_row_is_written_when_the_call_starts_and_completed_when_it_ends(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    rec = record(call_id="abc\udcff")  # an undecodable Call-ID octet, as message.py hands it over
    store.start(rec)
    assert store.flush()
    [row] = rows(tmp_path)
    assert (row["status"], row["end_time"], row["node"], row["instance"]) == (
        "active",
        None,
        "node-1",
        "run-1",
    )
    assert row["call_id"] == "abc\\xff" and json.loads(row["record"])["call_id"] == "abc\\xff"
    rec.route += ["menu<start", "agent<dtmf:0"]
    rec.transcripts.append(Transcript("menu", "카드 분실", 0.9))
    rec.end, rec.hangup_cause = "2026-12-02T06:00:00.000+00:00", "transferred"
    store.write(rec)
    store.close()
    [row] = rows(tmp_path)
    assert row["status"] == "completed" and row["end_time"] == "2026-12-02T06:00:00.000+00:00"
    assert (row["hangup_cause"], row["route"]) == ("transferred", "menu > agent")
    assert json.loads(row["record"]) == rec.to_dict()
    assert json.loads(row["record"])["transcripts"][0]["text"] == "카드 분실"


def test_wal_mode_with_synchronous_normal_by_default_and_full_on_request(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    conn = store.database.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()
    full = sqlite_store(tmp_path / "full", query="?synchronous=full")
    assert full.database.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    full.close()
    with pytest.raises(ValueError, match="synchronous"):
        open_database(f"sqlite:///{tmp_path / 'x.sqlite3'}?synchronous=sometimes")


def test_a_restart_marks_its_own_open_rows_interrupted_and_leaves_other_nodes_alone(tmp_path: Path) -> None:
    crashed = sqlite_store(tmp_path, node="node-1", instance="run-1")
    neighbour = sqlite_store(tmp_path, node="node-2", instance="run-9")
    crashed.start(record("a"))
    ended = record("b")
    crashed.start(ended)
    ended.end, ended.hangup_cause = "2026-12-02T06:00:00.000+00:00", "normal"
    crashed.write(ended)
    neighbour.start(record("c"))
    assert crashed.flush() and neighbour.flush()
    # node-1 dies here (nothing more is written); it comes back as a new instance.
    restarted = sqlite_store(tmp_path, node="node-1", instance="run-2")
    assert restarted.interrupted == ["a" * 32]
    by_channel = {row["channel_id"][0]: row for row in rows(tmp_path)}
    interrupted = by_channel["a"]
    assert interrupted["status"] == CdrStatus.INTERRUPTED.value and interrupted["end_time"] is not None
    assert interrupted["hangup_cause"] == "interrupted"
    data = json.loads(interrupted["record"])
    assert (data["end"], data["hangup_cause"]) == (interrupted["end_time"], "interrupted")
    assert by_channel["b"]["status"] == "completed"
    assert (by_channel["c"]["status"], by_channel["c"]["end_time"]) == ("active", None)  # node-2's live call
    # The store's own new rows are not "left open" by an earlier run.
    restarted.start(record("d"))
    assert restarted.flush()
    assert restarted.database.recover("node-1", "run-2", "now") == []
    for store in (crashed, neighbour, restarted):
        store.close()


def test_an_empty_database_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "cdr.sqlite3")
    assert database.migrate() == (0, LATEST)
    assert database.migrate() == (LATEST, LATEST)  # applied once only
    versions = database.connection().execute("SELECT version FROM schema_version").fetchall()
    assert [v for (v,) in versions] == list(range(1, LATEST + 1))
    database.close()


def test_a_database_at_version_1_keeps_its_rows_through_the_migration(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "cdr.sqlite3")
    assert database.migrate(target=1) == (0, 1)
    conn = database.connection()
    conn.execute(
        "INSERT INTO cdr (channel_id, call_id, start_time, end_time, status, dialplan, caller, callee,"
        " hangup_cause, route, record) VALUES ('old', 'c', 't0', 't1', 'completed', 'd', 'a', 'b', 'normal',"
        " 'menu', '{}')"
    )
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT node FROM cdr")  # version 1 has no node column
    database.close()
    store = sqlite_store(tmp_path)  # what the bridge does at start-up
    assert store.database.version() == LATEST
    [row] = rows(tmp_path)
    assert (row["channel_id"], row["status"], row["node"], row["instance"]) == ("old", "completed", "", "")
    store.close()


def test_a_write_the_database_refuses_is_logged_and_kept_beside_it_and_never_raises(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    with sqlite3.connect(tmp_path / "cdr.sqlite3") as conn:
        conn.execute("DROP TABLE cdr")  # the database went bad under the bridge
    with capture_logs() as logs:
        store.start(record("a", call_id="kept-aside"))
        assert store.flush()
    store.close()
    [failed] = [e for e in logs if e["event"].startswith("cdr record refused by the database")]
    assert failed["call_id"] == "kept-aside" and failed["channel_id"] == "a" * 32
    assert "no such table" in failed["error"]
    [line] = (tmp_path / "cdr.sqlite3.spool.jsonl.rejected").read_text().splitlines()
    assert json.loads(line)["call_id"] == "kept-aside"


def test_urls_select_the_backend(tmp_path: Path) -> None:
    relative = open_database("sqlite:///var/cdr.sqlite3")
    assert isinstance(relative, SqliteDatabase) and relative.path == Path("var/cdr.sqlite3")
    absolute = open_database(f"sqlite:///{tmp_path}/cdr.sqlite3")
    assert isinstance(absolute, SqliteDatabase) and absolute.path == tmp_path / "cdr.sqlite3"
    assert open_database("jsonl:///var/cdr.jsonl") is None
    jsonl = open_store(f"jsonl:///{tmp_path}/cdr.jsonl", "n", "i")
    assert isinstance(jsonl.sink, CdrWriter) and jsonl.sink.path == tmp_path / "cdr.jsonl"
    jsonl.sink.close()
    with pytest.raises(ValueError, match="scheme"):
        open_database("mysql://x/y")
    with pytest.raises(ValueError, match="must not carry a password"):
        open_database("postgresql://ivr:hunter2@127.0.0.1:5432/ivr")


def test_settings_default_to_sqlite_and_keep_the_old_cdr_path() -> None:
    assert Settings().cdr_store_url == "sqlite:///var/cdr.sqlite3"
    assert (
        Settings(cdr_path=Path("/var/lib/ivr/cdr.jsonl")).cdr_store_url == "jsonl:////var/lib/ivr/cdr.jsonl"
    )
    assert Settings(cdr_url="postgresql://ivr@db/ivr", cdr_path=Path("x")).cdr_store_url.startswith(
        "postgresql"
    )
    # Two bridges on one host are two nodes: neither may mark the other's live calls interrupted.
    assert Settings(sip_port=5060).node != Settings(sip_port=5062).node
    assert Settings(node_id="edge-1").node == "edge-1"


def test_redacted_steps_record_markers_in_place_of_digits_and_text() -> None:
    rec = record()
    rec.redacted_steps = frozenset({"card"})
    rec.add_digit("menu", "1")
    rec.add_digit("card", "4")
    rec.add_digit("card", "9")
    rec.add_turn(Transcript("card", "four nine one two", 0.8))
    rec.add_turn(Transcript("card", "", 0.0, "no_input"))
    rec.add_turn(Transcript("menu", "balance", 0.9))
    data = rec.to_dict()
    assert data["digits"] == ["1", REDACTED_DIGIT, REDACTED_DIGIT]
    assert [t["text"] for t in data["transcripts"]] == [REDACTED_TEXT, "", "balance"]
    assert "redacted_steps" not in data
    assert rec.shown("card", "4912") == REDACTED_TEXT and rec.shown("menu", "yes") == "yes"


def test_the_spool_keeps_order_and_skips_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    spool = CdrSpool(tmp_path / "var" / "spool.jsonl")
    assert spool.pending() == []
    first, second = (CdrWrite.of(CdrPhase.START, record(c, call_id=c)) for c in "ab")
    spool.append([first])
    spool.append([second])
    with spool.path.open("a", encoding="utf-8") as f:
        f.write('{"phase":"end","call_id":')  # the process died while appending
    assert spool.pending() == [first, second]
    spool.clear()
    assert spool.pending() == [] and not spool.path.exists()
