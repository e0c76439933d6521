r"""Call detail records: the record of one call, and the background writer that stores records off the loop.

Where records go is ivr.cdrstore (SQLite by default, PostgreSQL for a cluster: a row when the call starts,
completed when it ends); `CdrWriter` here is the JSON-lines store, one line per call as the call ends.

Records are valid UTF-8 JSON. SIP header octets that are not UTF-8 reach us as lone surrogates (message.py
decodes with surrogateescape, PEP 383: octet 0xNN becomes U+DCNN); each is written as the literal text \xNN,
so a Call-ID "abc\udcff" reads back as the 7 characters abc\xff (stored as "abc\\xff"). Any other lone
surrogate becomes \uNNNN. Valid text, Korean or Japanese included, is written as is. A literal \xNN already in
the value looks the same: the escape is for people reading CDRs, not a reversible encoding.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import json
import queue
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from ivr.asr.base import Classification, Scores

log = structlog.get_logger()
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")}
REDACTED_DIGIT = "*"  # one per key pressed: the count stays visible, the key does not
REDACTED_TEXT = "[redacted]"


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
    """What one call did, as its CDR keeps it; call.py fills it in as the call goes."""

    call_id: str
    channel_id: str
    caller: str
    callee: str
    dialplan: str
    start: str = field(default_factory=utc_now)
    # The dialplan text the call ran on (Dialplan.version): calls keep theirs across a hot reload.
    dialplan_version: str = ""
    answer: str | None = None
    end: str | None = None
    codec: str | None = None
    transcripts: list[Transcript] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    # "<step>:<vendor>-><vendor or none>:<failure kind>", one per recognizer failover (ivr.asr.failover)
    failovers: list[str] = field(default_factory=list)
    transfer_target: str | None = None
    transfer_status: int | None = None
    hangup_cause: str | None = None
    # Steps whose digits and transcript text are sensitive (`redact: true` on the step): replaced as they are
    # recorded, so the real values never reach a CDR or a log; the dialplan engine still routes on them.
    redacted_steps: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def add_digit(self, step: str, digit: str) -> None:
        self.digits.append(self.shown_digit(step, digit))

    def add_turn(self, turn: Transcript) -> None:
        if turn.text and turn.step in self.redacted_steps:
            turn.text = REDACTED_TEXT
        self.transcripts.append(turn)

    def shown(self, step: str, text: str) -> str:
        """Recognized `text` as a CDR or log line may show it while the call is in `step`."""
        return REDACTED_TEXT if step in self.redacted_steps else text

    def shown_digit(self, step: str, digit: str) -> str:
        """A DTMF `digit` as a CDR or log line may show it while the call is in `step`."""
        return REDACTED_DIGIT if step in self.redacted_steps else digit

    def to_dict(self) -> dict[str, Any]:
        """The record as stored: `asdict` without the redaction settings, every string valid UTF-8."""
        data = asdict(self)
        del data["redacted_steps"]
        result: dict[str, Any] = _encodable(data)
        return result

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), **_JSON)


class CdrPhase(enum.Enum):
    """When a record is written: as the call starts (a row to complete), or as it ends (the whole record)."""

    START = "start"
    END = "end"


@dataclass(frozen=True)
class CdrWrite:
    """One record for the writer thread, taken on the caller's thread (the record itself stays mutable)."""

    phase: CdrPhase
    call_id: str
    channel_id: str
    start: str
    end: str | None
    dialplan: str
    caller: str
    callee: str
    hangup_cause: str | None
    route: str  # the steps taken, "a > b > c"
    json: str  # the whole record, as `CallRecord.to_json`

    @classmethod
    def of(cls, phase: CdrPhase, record: CallRecord) -> CdrWrite:
        d = record.to_dict()
        route = " > ".join(entry.partition("<")[0] for entry in d["route"])
        return cls(
            phase,
            d["call_id"],
            d["channel_id"],
            d["start"],
            d["end"],
            d["dialplan"],
            d["caller"],
            d["callee"],
            d["hangup_cause"],
            route,
            json.dumps(d, **_JSON),
        )


class CdrSink(Protocol):
    """Where calls' records go: `start` as a call begins, `write` as it ends; neither blocks nor raises."""

    def start(self, record: CallRecord) -> None: ...
    def write(self, record: CallRecord) -> None: ...
    def flush(self, timeout: float | None = 5.0) -> bool: ...
    def close(self, timeout: float | None = 5.0) -> bool: ...
    async def aclose(self, timeout: float = 5.0) -> None: ...


_Item = CdrWrite | threading.Event | None  # a record, a flush marker, or stop


class BackgroundWriter(abc.ABC):
    """Writes records from one background thread, so the event loop never waits on disk or a database.

    `start`/`write` serialize on the caller's thread and queue; the thread hands what has queued up to
    `_store` as one batch, in order. A failed batch is logged with the call ids it lost and never reaches
    the caller. Records still queued when the process exits without `aclose`/`close` are lost (a daemon
    thread, so a missing close cannot hang exit).
    """

    def __init__(self, name: str = "cdr-writer") -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()  # so no record is queued behind the stop marker
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the records go, for log lines (never a password)."""

    @abc.abstractmethod
    def _store(self, batch: list[CdrWrite]) -> None:
        """Write one batch (on the writer thread); raise to have it logged as lost."""

    def start(self, record: CallRecord) -> None:
        """Queue the row of a call that has just started; returns at once and never raises."""
        self._submit(CdrPhase.START, record)

    def write(self, record: CallRecord) -> None:
        """Queue the complete record of a call that has ended; returns at once and never raises."""
        self._submit(CdrPhase.END, record)

    def _submit(self, phase: CdrPhase, record: CallRecord) -> None:
        try:
            item = CdrWrite.of(phase, record)
        except Exception:
            log.exception("cdr record not serializable, dropped", call_id=repr(record.call_id))
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put(item)
        if closed:
            log.warning("cdr writer closed, record dropped", call_id=item.call_id, channel_id=item.channel_id)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Block until every record written so far is stored (or logged as lost); False on timeout.

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
            log.warning("cdr writer did not finish in time", where=self.where, timeout=timeout)

    def _stop(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)

    def _closed_down(self) -> None:
        """Called on the writer thread after the last batch: release connections."""
        return

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[CdrWrite] = []
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
                self._store_logged(batch)
            for marker in markers:
                marker.set()
        with contextlib.suppress(Exception):
            self._closed_down()

    def _store_logged(self, batch: list[CdrWrite]) -> None:
        try:
            self._store(batch)
        except Exception as exc:  # disk full, permissions, a database gone: report it and keep serving
            with contextlib.suppress(Exception):  # a broken log sink must not kill the writer thread
                log.error(
                    "cdr write failed",
                    where=self.where,
                    error=f"{type(exc).__name__}: {exc}",
                    call_ids=[w.call_id for w in batch],
                    channel_ids=[w.channel_id for w in batch],
                )


class CdrWriter(BackgroundWriter):
    """Appends one JSON line per call to a file as the call ends (`cdr_url: jsonl:///path`).

    The lines hold ended calls only: `start` writes nothing, so a call in progress at a crash leaves no line
    (the SQL stores in ivr.cdrstore keep those). Each batch is one open/append/close.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # At startup, where blocking is fine and a bad path fails loudly, not at the first call's end.
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__()

    @property
    def where(self) -> str:
        return str(self.path)

    def start(self, record: CallRecord) -> None:
        pass

    def _store(self, batch: list[CdrWrite]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(w.json + "\n" for w in batch if w.phase is CdrPhase.END))
