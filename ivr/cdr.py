r"""Call detail records: one JSON line per call, appended when the call ends.

Lines are valid UTF-8 JSON. SIP header octets that are not UTF-8 reach us as lone surrogates (message.py
decodes with surrogateescape, PEP 383: octet 0xNN becomes U+DCNN); each is written as the literal text \xNN,
so a Call-ID "abc\udcff" reads back as the 7 characters abc\xff (stored as "abc\\xff"). Any other lone
surrogate becomes \uNNNN. Valid text, Korean or Japanese included, is written as is. A literal \xNN already in
the value looks the same: the escape is for people reading CDRs, not a reversible encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from ivr.asr.base import Classification, Scores

log = structlog.get_logger()
_SURROGATE = re.compile("[\ud800-\udfff]")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # an undecodable octet (surrogateescape): show the octet
    return f"\\u{code:04x}"


def _encodable(value: Any) -> Any:
    """`value` with every string made encodable as UTF-8 (see the module docstring)."""
    if isinstance(value, str):
        return _SURROGATE.sub(_escape_surrogate, value)
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    return value


@dataclass
class Transcript:
    """One turn of the call: what the recognizer made of it and how the caller sounded."""

    step: str
    text: str
    confidence: float
    status: str = "recognized"
    emotion: dict[str, Any] | None = None  # {"label", "p": {...}, "groups": {...}}
    age: dict[str, Any] | None = None
    gender: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        step: str,
        text: str,
        confidence: float,
        status: str,
        classification: Classification | None,
    ) -> Transcript:
        c = classification or Classification()
        return cls(step, text, confidence, status, _scores(c.emotion), _scores(c.age), _scores(c.gender))


def _scores(scores: Scores | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    out: dict[str, Any] = {"label": scores.label}
    if scores.p:
        out["p"] = dict(scores.p)
    if scores.groups:
        out["groups"] = dict(scores.groups)
    return out


@dataclass
class CallRecord:
    call_id: str
    channel_id: str
    caller: str
    callee: str
    dialplan: str
    start: str = field(default_factory=utc_now)
    answer: str | None = None
    end: str | None = None
    codec: str | None = None
    transcripts: list[Transcript] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    transfer_target: str | None = None
    transfer_status: int | None = None
    hangup_cause: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = _encodable(asdict(self))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


_Item = tuple[str, str] | threading.Event | None  # (call_id, line), a flush marker, or stop


class CdrWriter:
    """Appends records to a JSON-lines file from one background thread, so the event loop never waits on disk.

    `write` serializes on the caller's thread (the record is mutable and stays with the call) and queues the
    line; the thread appends lines in order, batching what has queued up into one open/write/close. A failed
    write is logged with the call ids it lost and never reaches the caller. Lines still queued when the
    process exits without `aclose`/`close` are lost (a daemon thread, so a missing close cannot hang exit).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # At startup, where blocking is fine and a bad path fails loudly, not at the first call's end.
        path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()  # so no line is queued behind the stop marker
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cdr-writer", daemon=True)
        self._thread.start()

    def write(self, record: CallRecord) -> None:
        """Queue one record; returns at once and never raises."""
        try:
            call_id = _encodable(record.call_id)
            line = record.to_json() + "\n"
        except Exception:
            log.exception("cdr record not serializable, dropped", call_id=repr(record.call_id))
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put((call_id, line))
        if closed:
            log.warning("cdr writer closed, record dropped", call_id=call_id)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Block until every record written so far is on disk (or logged as lost); False on timeout.

        It blocks the calling thread: for tests and shutdown, not for the event loop.
        """
        marker = threading.Event()
        with self._lock:
            queued = not self._closed
            if queued:
                self._queue.put(marker)
        if queued:
            return marker.wait(timeout)
        self._thread.join(timeout)  # closed: the thread drains up to the stop marker, then ends
        return not self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> bool:
        """Write what is queued, then stop the thread; blocks. False if it did not finish within `timeout`."""
        self._stop()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def aclose(self, timeout: float = 5.0) -> None:
        """`close` for the event loop: the wait runs in an executor thread."""
        self._stop()
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("cdr writer did not finish in time", path=str(self.path), timeout=timeout)

    def _stop(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[tuple[str, str]] = []
            markers: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._append(batch)
            for marker in markers:
                marker.set()

    def _append(self, batch: list[tuple[str, str]]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(line for _, line in batch))
        except Exception as exc:  # disk full, permissions, a path gone bad: report it and keep serving
            with contextlib.suppress(Exception):  # a broken log sink must not kill the writer thread
                log.error(
                    "cdr write failed",
                    path=str(self.path),
                    error=f"{type(exc).__name__}: {exc}",
                    call_ids=[call_id for call_id, _ in batch],
                )
