"""Sans-I/O bookkeeping of SIP stream connections (TCP, TLS): who may open one, and when one must close.

One stranger must not be able to exhaust the bridge: connections are counted per source and in total,
a message must arrive whole within its timeouts (a slow-loris byte per second, a body promised but never
sent), and a connection carrying no message and no call is closed when idle. The transport feeds this table
what happens on its sockets and calls `sweep` from one periodic timer; no timer per connection or per byte.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["CloseReason", "ConnectionTable", "Refusal", "StreamLimits"]


@dataclass(frozen=True)
class StreamLimits:
    """Limits on stream connections; the defaults suit a trunk or a Kamailio in front."""

    max_connections: int = 1000  # in total, leaving descriptors for RTP (2 per call would be generous)
    max_per_source: int = 64  # one trunk or proxy rarely needs more than a handful
    header_timeout: float = 5.0  # from a message's first byte to the end of its header section
    body_timeout: float = 5.0  # from the end of the header section to the last byte of the body
    idle_timeout: float = 120.0  # no message and no call on the connection
    max_header_bytes: int = 16 * 1024  # larger: 513 (RFC 3261 §21.5.14)
    max_body_bytes: int = 16 * 1024  # a larger Content-Length: 413 (§21.4.14); SDP is a few hundred bytes
    refusal_log_interval: float = 60.0  # a refused source is logged once per interval, not per attempt

    @property
    def sweep_interval(self) -> float:
        """How often the transport should call `sweep`: a quarter of the shortest timeout, within bounds."""
        shortest = min(self.header_timeout, self.body_timeout, self.idle_timeout)
        return min(1.0, max(0.05, shortest / 4))


class Refusal(enum.Enum):
    """Why a new connection is closed at accept, before any byte is read."""

    NOT_ALLOWED = "source not in any trunk allow-list"
    SOURCE_CAP = "too many connections from this source"
    TOTAL_CAP = "too many connections in total"


class CloseReason(enum.Enum):
    """Why an open connection is closed by the sweep."""

    HEADER_TIMEOUT = "header section not complete in time"
    BODY_TIMEOUT = "body not complete in time"
    IDLE_TIMEOUT = "idle: no message and no call"


@dataclass
class _Connection:
    source: str
    last_message: float  # opened, or the last complete message received or sent
    message_started: float | None = None  # first byte of the message being received
    header_done: float | None = None  # its header section complete, body pending
    calls: set[str] = field(default_factory=set)


class ConnectionTable:
    """Open stream connections, their per-source counts and their deadlines; time is passed in."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._conns: dict[int, _Connection] = {}
        self._per_source: Counter[str] = Counter()
        self._call_conn: dict[str, int] = {}
        self._refusal_logged: dict[str, float] = {}  # source -> when its refusal was last logged

    def __len__(self) -> int:
        return len(self._conns)

    def count(self, source: str) -> int:
        return self._per_source[source]

    def admit(self, source: str, allowed: bool) -> Refusal | None:
        """Whether a connection from `source` may open; None: yes (then call `opened`)."""
        if not allowed:
            return Refusal.NOT_ALLOWED
        if self._per_source[source] >= self.limits.max_per_source:
            return Refusal.SOURCE_CAP
        if len(self._conns) >= self.limits.max_connections:
            return Refusal.TOTAL_CAP
        return None

    def should_log_refusal(self, source: str, now: float) -> bool:
        """True once per source per `refusal_log_interval`: a flood of attempts is not a flood of logs."""
        last = self._refusal_logged.get(source)
        if last is not None and now - last < self.limits.refusal_log_interval:
            return False
        if len(self._refusal_logged) > 4096:  # a sweep of spoofed sources must not grow this without bound
            self._refusal_logged = {s: t for s, t in self._refusal_logged.items() if now - t < 60.0}
        self._refusal_logged[source] = now
        return True

    def opened(self, conn_id: int, source: str, now: float) -> None:
        self._conns[conn_id] = _Connection(source, now)
        self._per_source[source] += 1

    def closed(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return
        self._per_source[conn.source] -= 1
        if self._per_source[conn.source] <= 0:
            del self._per_source[conn.source]
        for call_id in conn.calls:
            self._call_conn.pop(call_id, None)

    def received(self, conn_id: int, now: float, *, messages: int, pending: int, awaiting_body: bool) -> None:
        """After bytes were framed: `messages` completed, `pending` bytes of an incomplete one remain."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        if messages:
            conn.last_message = now
        if pending == 0:
            conn.message_started = conn.header_done = None
            return
        if conn.message_started is None or messages:
            conn.message_started = now  # a new message began within these bytes
            conn.header_done = None
        if awaiting_body and conn.header_done is None:
            conn.header_done = now

    def sent(self, conn_id: int, now: float) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.last_message = now

    def bind_call(self, call_id: str, conn_id: int) -> None:
        """A call's INVITE came on this connection: it is not idle while the call lasts."""
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.calls.add(call_id)
            self._call_conn[call_id] = conn_id

    def release_call(self, call_id: str, now: float) -> None:
        conn_id = self._call_conn.pop(call_id, None)
        conn = self._conns.get(conn_id) if conn_id is not None else None
        if conn is not None:
            conn.calls.discard(call_id)
            conn.last_message = now  # the BYE or final response just went by

    def sweep(self, now: float) -> list[tuple[int, CloseReason]]:
        """The connections past a deadline, with the reason; the caller closes them (then `closed`)."""
        limits = self.limits
        expired: list[tuple[int, CloseReason]] = []
        for conn_id, conn in self._conns.items():
            if conn.header_done is not None:
                if now - conn.header_done >= limits.body_timeout:
                    expired.append((conn_id, CloseReason.BODY_TIMEOUT))
            elif conn.message_started is not None:
                if now - conn.message_started >= limits.header_timeout:
                    expired.append((conn_id, CloseReason.HEADER_TIMEOUT))
            elif not conn.calls and now - conn.last_message >= limits.idle_timeout:
                expired.append((conn_id, CloseReason.IDLE_TIMEOUT))
        return expired
