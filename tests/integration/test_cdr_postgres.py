"""CDRs in a real PostgreSQL 15 (a throwaway cluster from tests/postgres.py), the store a cluster shares."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from ivr.cdr import CallRecord, Transcript
from ivr.cdrstore import SqlCdrStore, open_database, open_store
from ivr.cdrstore.migrations import LATEST
from ivr.cdrstore.postgres import PostgresDatabase
from tests.integration.harness import SIPP_SHARE, bridge, run_sipp, scenario_with
from tests.postgres import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.integration
_names = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def dsn(pg: PostgresCluster) -> str:
    """A fresh database for each test, on the module's cluster."""
    return pg.create_database(f"cdr_{next(_names)}")


def record(channel: str, call_id: str = "call-1") -> CallRecord:
    return CallRecord(call_id, channel * 32, "sip:alice@192.0.2.10", "sip:ivr@x", "demo.yaml")


def pg_store(
    dsn: str, node: str = "node-1", instance: str = "run-1", spool: Path | None = None
) -> SqlCdrStore:
    spool = spool or Path(tempfile.mkdtemp(prefix="ivr-spool-")) / "spool.jsonl"
    opened = open_store(dsn, node, instance, environ={}, spool=spool)
    assert isinstance(opened.sink, SqlCdrStore)
    return opened.sink


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def execute(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql)


def test_rows_at_start_and_end_with_the_record_as_jsonb(dsn: str) -> None:
    store = pg_store(dsn)
    rec = record("a", call_id="abc\udcff\x00")  # an undecodable octet and a NUL from a SIP header
    rec.transcripts.append(Transcript("menu", "카드 분실 신고", 0.9))
    store.start(rec)
    assert store.flush()
    assert query(dsn, "SELECT status, end_time, node FROM cdr") == [("active", None, "node-1")]
    rec.route += ["menu<start", "agent<say:상담원"]
    rec.end, rec.hangup_cause = "2026-12-02T06:00:00.000+00:00", "transferred"
    store.write(rec)
    store.close()
    [(status, call_id, route, text, end)] = query(
        dsn,
        "SELECT status, call_id, route, record->'transcripts'->0->>'text', end_time::timestamptz FROM cdr",
    )
    assert (status, route, text) == ("completed", "menu > agent", "카드 분실 신고")
    assert call_id == "abc\\xff\\x00"  # text cannot hold NUL: shown as the octet, like \xff
    assert end.isoformat() == "2026-12-02T06:00:00+00:00"  # type: ignore[attr-defined]


def test_an_empty_database_and_one_at_version_1_are_migrated(dsn: str, pg: PostgresCluster) -> None:
    empty = PostgresDatabase(dsn, {})
    assert empty.migrate() == (0, LATEST)
    assert empty.migrate() == (LATEST, LATEST)
    empty.close()
    old_dsn = pg.create_database(f"cdr_old_{next(_names)}")
    old = PostgresDatabase(old_dsn, {})
    assert old.migrate(target=1) == (0, 1)
    old.close()
    execute(
        old_dsn,
        "INSERT INTO cdr (channel_id, call_id, start_time, status, dialplan, caller, callee, record)"
        " VALUES ('old', 'c', 't0', 'active', 'd', 'a', 'b', '{\"end\": null}')",
    )
    store = pg_store(old_dsn)  # what a bridge does at start-up: migrate, then recover its node's rows
    assert store.database.version() == LATEST
    assert store.interrupted == []  # a row from before version 2 belongs to no node
    assert query(old_dsn, "SELECT channel_id, node, instance, status FROM cdr") == [("old", "", "", "active")]
    store.close()


def test_nodes_starting_together_migrate_once(dsn: str) -> None:
    errors: list[BaseException] = []
    stores: list[SqlCdrStore] = []

    def start(node: str) -> None:
        try:
            stores.append(pg_store(dsn, node=node))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"node-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(stores) == 4
    assert query(dsn, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,)]
    for store in stores:
        store.close()


def test_a_restarted_node_marks_only_its_own_open_rows_interrupted(dsn: str) -> None:
    one, two = pg_store(dsn, node="node-1"), pg_store(dsn, node="node-2")
    one.start(record("a"))
    two.start(record("b"))
    assert one.flush() and two.flush()
    restarted = pg_store(dsn, node="node-1", instance="run-2")
    assert restarted.interrupted == ["a" * 32]
    rows = dict(query(dsn, "SELECT channel_id, status FROM cdr"))
    assert rows == {"a" * 32: "interrupted", "b" * 32: "active"}
    [(cause,)] = query(dsn, f"SELECT record->>'hangup_cause' FROM cdr WHERE channel_id = '{'a' * 32}'")
    assert cause == "interrupted"
    for store in (one, two, restarted):
        store.close()


def test_the_password_comes_from_the_environment_and_is_never_logged(tmp_path: Path) -> None:
    secret = "s3cret-Pw"
    with postgres_cluster(password=secret) as locked:
        with pytest.raises(psycopg.OperationalError):
            open_store(locked.dsn, "n", "i", environ={})  # no password: refused at start-up, loudly
        with pytest.raises(ValueError, match="must not carry a password"):
            open_store(locked.dsn.replace("postgres@", f"postgres:{secret}@"), "n", "i", environ={})
        with capture_logs() as logs:
            opened = open_store(locked.dsn, "n", "i", environ={"IVR_CDR_PASSWORD": secret})
            opened.sink.start(record("p"))
            opened.sink.close()
        assert [row[0] for row in query_as(locked, secret)] == ["p" * 32]
        assert secret not in repr(logs) and secret not in opened.where


def query_as(cluster: PostgresCluster, password: str) -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.dsn, password=password) as conn:
        return conn.execute("SELECT channel_id FROM cdr").fetchall()


def test_calls_during_an_outage_wait_on_disk_and_land_when_the_server_is_back(
    pg: PostgresCluster, dsn: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    store = pg_store(dsn, spool=spool)
    before = record("a", call_id="before")
    store.start(before)
    assert store.flush()
    with pg.down(), capture_logs() as logs:
        ended = record("a", call_id="before")
        ended.end, ended.hangup_cause = ended.start, "remote-bye"
        store.write(ended)  # the call that was up when the server went away ends during the outage
        during = record("b", call_id="during")
        store.start(during)
        during.end, during.hangup_cause = during.start, "normal"
        store.write(during)
        assert store.flush(timeout=30)
        assert spool.exists() and len(spool.read_text().splitlines()) == 3
    [outage] = [e for e in logs if e["event"] == "cdr database unreachable, records spooled to disk"]
    assert outage["spool"] == str(spool)
    # The writer's connection died with the server: the next batch reconnects and stores the spool first.
    store.start(record("c", call_id="after"))
    store.close()
    rows = query(dsn, "SELECT call_id, status, hangup_cause FROM cdr ORDER BY call_id")
    assert rows == [
        ("after", "active", None),
        ("before", "completed", "remote-bye"),
        ("during", "completed", "normal"),
    ]
    assert not spool.exists()


def test_a_spool_left_by_a_run_that_stopped_during_an_outage_is_stored_at_start(
    pg: PostgresCluster, dsn: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    store = pg_store(dsn, spool=spool)
    with pg.down():
        store.start(record("d", call_id="spooled"))
        store.close(timeout=30)
    assert spool.exists()
    pg_store(dsn, instance="run-2", spool=spool).close()
    assert query(dsn, "SELECT call_id FROM cdr") == [("spooled",)]
    assert not spool.exists()


def test_a_record_the_database_refuses_is_set_aside_and_does_not_hold_back_later_calls(
    dsn: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    store = pg_store(dsn, spool=spool)
    execute(dsn, "ALTER TABLE cdr ADD CONSTRAINT no_x CHECK (call_id <> 'refused')")
    with capture_logs() as logs:
        store.start(record("a", call_id="refused"))
        store.start(record("b", call_id="kept"))
        assert store.flush()
    [refused] = [e for e in logs if e["event"].startswith("cdr record refused")]
    assert refused["call_id"] == "refused" and refused["channel_id"] == "a" * 32
    # The server also drops the writer's connection: the next batch opens a new one.
    query(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
    store.start(record("c", call_id="later"))
    store.close()
    assert sorted(query(dsn, "SELECT call_id FROM cdr")) == [("kept",), ("later",)]
    [line] = spool.with_name("spool.jsonl.rejected").read_text().splitlines()
    assert json.loads(line)["call_id"] == "refused"
    assert not spool.exists()


def test_ivr_cdr_lists_and_exports_csv_from_postgresql(dsn: str, tmp_path: Path) -> None:
    store = pg_store(dsn)
    for i, channel in enumerate("xyz"):
        rec = record(channel, call_id=f"call-{i}")
        store.start(rec)
        rec.route.append("menu<start")
        rec.end, rec.hangup_cause = rec.start, "normal"
        store.write(rec)
    store.close()
    table = ivr_cdr("--url", dsn, "--limit", "2")
    assert table[0].split() == ["start", "status", "caller", "callee", "cause", "route"]
    assert len(table) == 4 and table[-1] == "(2 calls)" and "completed" in table[1]
    out = tmp_path / "calls.csv"
    assert ivr_cdr("--url", dsn, "--csv", "--output", str(out)) == []
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("channel_id,call_id,node,instance,start_time,end_time,status")
    assert len(lines) == 4
    assert ivr_cdr("--url", dsn, "--csv", "--since", "2999-01-01") == [lines[0]]


def ivr_cdr(*argv: str) -> list[str]:
    command = [sys.executable, "-m", "ivr.cli", "cdr", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_bridge_call_lands_in_postgresql(tmp_path: Path, mediazen_url: str, dsn: str) -> None:
    scenario = scenario_with("dtmf_balance.xml", tmp_path, DTMF=str(SIPP_SHARE / "dtmf_2833_1.pcap"))
    with bridge(tmp_path, mediazen_url, cdr_url=dsn, node_id="edge-1") as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        database = open_database(dsn, {})
        assert database is not None
        try:
            for _ in range(300):
                rows = database.ended()
                if rows:
                    break
                threading.Event().wait(0.05)
        finally:
            database.close()
    [row] = rows
    assert (row.status, row.node, row.hangup_cause) == ("completed", "edge-1", "normal")
    data = json.loads(row.record)
    assert data["digits"] == ["1"] and data["route"][-1] == "balance<dtmf:1"
