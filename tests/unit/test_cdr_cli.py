"""`ivr cdr`, run as a command: the latest calls as a table, every column as CSV, from the configured store.

A child process each time, as a person runs it: the command configures logging for its own process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.cdr import CallRecord, CdrWriter
from ivr.cdrstore import open_store
from ivr.cdrstore.report import since_bound


def fill(url: str, starts: list[str]) -> None:
    store = open_store(url, "node-1", "run-1").sink
    for i, start in enumerate(starts):
        rec = CallRecord(
            f"call-{i}", f"{i:032x}", "sip:alice@192.0.2.10", "sip:ivr@x", "demo.yaml", start=start
        )
        store.start(rec)
        if i % 2 == 0:  # every other call has ended
            rec.route += ["menu<start", "agent<dtmf:0"]
            rec.end, rec.hangup_cause = start, "transferred"
            store.write(rec)
    store.close()


STARTS = [f"2026-12-0{day}T08:00:00.000+00:00" for day in (1, 2, 3)]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'cdr.sqlite3'}"
    fill(url, STARTS)
    path = tmp_path / "bridge.yaml"
    path.write_text(f"cdr_url: {url}\n", encoding="utf-8")
    return path


def ivr_cdr(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ivr.cli", "cdr", *argv]
    environ = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=environ, check=False)


def run(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    done = ivr_cdr(*argv, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_table_shows_the_latest_calls_first(config: Path) -> None:
    lines = run("--config", str(config))
    assert lines[0].split() == ["start", "status", "caller", "callee", "cause", "route"]
    assert [line.split()[:3] for line in lines[1:4]] == [
        ["2026-12-03", "08:00:00", "completed"],
        ["2026-12-02", "08:00:00", "active"],
        ["2026-12-01", "08:00:00", "completed"],
    ]
    assert lines[1].endswith("transferred     menu > agent") and lines[-1] == "(3 calls)"
    assert run("--config", str(config), "--limit", "1")[-1] == "(1 call)"
    since = run("--config", str(config), "--since", "2026-12-02")
    assert since[-1] == "(2 calls)" and "2026-12-01" not in "".join(since)


def test_csv_exports_every_column_to_a_file(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.csv"
    assert run("--config", str(config), "--csv", "--output", str(out)) == []
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 3
    assert list(rows[0]) == [
        "channel_id", "call_id", "node", "instance", "start_time", "end_time", "status", "dialplan",
        "caller", "callee", "hangup_cause", "route", "record",
    ]  # fmt: skip
    assert (rows[0]["call_id"], rows[0]["node"], rows[0]["route"]) == ("call-2", "node-1", "menu > agent")
    assert rows[1]["end_time"] == "" and rows[1]["status"] == "active"
    assert json.loads(rows[0]["record"])["route"] == ["menu<start", "agent<dtmf:0"]


def test_the_environment_names_the_store_and_jsonl_files_read_too(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path / "cdr.jsonl")
    rec = CallRecord("old-1", "f" * 32, "sip:bob@x", "sip:ivr@x", "demo.yaml", end="e", hangup_cause="normal")
    writer.write(rec)
    writer.close()
    lines = run("--csv", env={"IVR_CDR_URL": f"jsonl:///{tmp_path / 'cdr.jsonl'}"})
    assert len(lines) == 2 and lines[1].startswith(f"{'f' * 32},old-1,")


def test_a_store_that_cannot_be_read_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    done = ivr_cdr("--url", "mysql://db/cdr")
    assert done.returncode == 1 and done.stderr.startswith("ivr cdr: ValueError: cdr_url 'mysql://db/cdr'")
    done = ivr_cdr("--url", f"sqlite:///{tmp_path}/x.sqlite3", "--since", "last tuesday")
    assert done.returncode == 1 and "--since 'last tuesday'" in done.stderr and "Traceback" not in done.stderr


def test_since_takes_times_dates_and_spans_back_from_now() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert since_bound("2026-12-01") == "2026-12-01T00:00:00.000+00:00"
    assert since_bound("2026-12-01T09:00+09:00") == "2026-12-01T00:00:00.000+00:00"
    assert since_bound("90m", now) == "2026-12-02T10:30:00.000+00:00"
    assert since_bound("7d", now) == "2026-11-25T12:00:00.000+00:00"
