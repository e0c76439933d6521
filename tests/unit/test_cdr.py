"""CdrWriter: one JSON line per call, written by a background thread, never raising into the caller."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ivr.cdr import CallRecord, CdrWriter, Transcript


def record(call_id: str = "call-1", caller: str = "sip:alice@192.0.2.10") -> CallRecord:
    return CallRecord(
        call_id=call_id, channel_id="c" * 32, caller=caller, callee="sip:ivr@x", dialplan="demo"
    )


def test_undecodable_header_octets_are_written_as_readable_escapes_in_valid_utf8(tmp_path: Path) -> None:
    # message.py decodes header octets that are not UTF-8 with surrogateescape: 0xFF arrives as "\udcff".
    path = tmp_path / "cdr" / "calls.jsonl"
    writer = CdrWriter(path)
    rec = record(call_id="abc\udcff", caller="sip:\udc80@x")
    rec.transcripts.append(Transcript("ask", "카드 분실 신고", 0.9))
    writer.write(rec)
    writer.close()
    text = path.read_bytes().decode("utf-8")  # strict: raises if any invalid UTF-8 reached the file
    (data,) = [json.loads(line) for line in text.splitlines()]
    assert data["call_id"] == "abc\\xff"  # the literal text \xff: the octet stays visible
    assert data["caller"] == "sip:\\x80@x"
    assert data["transcripts"][0]["text"] == "카드 분실 신고"  # valid text is kept as is, not \u-escaped
    assert "카드" in text


def test_many_writes_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writer = CdrWriter(path)
    for i in range(500):
        writer.write(record(call_id=f"call-{i}"))
    assert writer.flush(5.0)
    assert [json.loads(line)["call_id"] for line in path.read_text().splitlines()] == [
        f"call-{i}" for i in range(500)
    ]
    writer.close()


def test_the_record_is_serialized_at_write_time(tmp_path: Path) -> None:
    # call.py keeps its CallRecord; changing it after write() must not change what the thread writes.
    path = tmp_path / "calls.jsonl"
    writer = CdrWriter(path)
    rec = record()
    writer.write(rec)
    rec.call_id = "changed"
    writer.close()
    assert json.loads(path.read_text())["call_id"] == "call-1"


def test_a_failing_write_is_logged_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "is-a-directory"
    path.mkdir()  # open(..., "a") fails with IsADirectoryError, like a full disk or a read-only mount would
    writer = CdrWriter(path)
    with capture_logs() as logs:
        writer.write(record(call_id="lost-1"))
        assert writer.flush(5.0)
        writer.write(record(call_id="lost-2"))  # the thread survived the first failure
        writer.close()
    failures = [e for e in logs if e["event"] == "cdr write failed"]
    assert [e["call_ids"] for e in failures] == [["lost-1"], ["lost-2"]]
    assert all(e["log_level"] == "error" and "error" in e for e in failures)


def test_write_after_close_is_logged_not_raised(tmp_path: Path) -> None:
    writer = CdrWriter(tmp_path / "calls.jsonl")
    writer.close()
    with capture_logs() as logs:
        writer.write(record(call_id="late"))
    assert [(e["event"], e["call_id"]) for e in logs] == [("cdr writer closed, record dropped", "late")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_write_does_no_file_io_in_the_calling_thread(tmp_path: Path) -> None:
    # Opening a FIFO for writing blocks until a reader opens it. write() must return while nobody reads: if it
    # opened the file itself (on the event loop), it would still be blocked here.
    fifo = tmp_path / "calls.fifo"
    os.mkfifo(fifo)
    writer = CdrWriter(fifo)
    returned = threading.Event()

    def call_write() -> None:
        writer.write(record(call_id="via-fifo"))
        returned.set()

    caller = threading.Thread(target=call_write, daemon=True)
    caller.start()
    wrote_without_a_reader = returned.wait(2.0)
    with open(fifo, encoding="utf-8") as reader:  # unblocks the open, whichever thread is in it
        line = reader.readline()
    caller.join(5.0)
    writer.close()
    assert wrote_without_a_reader
    assert json.loads(line)["call_id"] == "via-fifo"


async def test_aclose_flushes_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writer = CdrWriter(path)
    writer.write(record(call_id="a"))
    writer.write(record(call_id="b"))
    await writer.aclose()
    assert [json.loads(line)["call_id"] for line in path.read_text().splitlines()] == ["a", "b"]
    await writer.aclose()  # idempotent
