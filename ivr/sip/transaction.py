"""Transaction records, their matching keys and a deadline queue (RFC 3261 §17), sans-I/O.

The UserAgent drives the state machines; this module holds the data and the timer arithmetic.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from dataclasses import dataclass
from enum import Enum

from ivr.sip.events import Peer
from ivr.sip.message import Request, Response

__all__ = [
    "T1",
    "T2",
    "T4",
    "TIMEOUT_64T1",
    "ClientTransaction",
    "ServerTransaction",
    "Timer",
    "TimerQueue",
    "new_branch",
    "new_tag",
    "server_key",
]

T1 = 0.5  # RTT estimate (§17.1.1.1)
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message stays in the network
TIMEOUT_64T1 = 64 * T1  # Timers B, F, H, J and the 2xx ACK wait (§13.3.1.4)

MAGIC_COOKIE = "z9hG4bK"


class Timer(Enum):
    """The UA's named deadlines: the §17 transaction timers by their RFC letters, then the dialog ones."""

    G = "G"  # INVITE final response retransmission (§17.2.1)
    H = "H"  # wait for the ACK of an INVITE final response
    I = "I"  # noqa: E741 - RFC 3261's name; absorbs ACK retransmissions
    J = "J"  # absorbs non-INVITE request retransmissions (§17.2.2)
    E = "E"  # our request's retransmission (Timer A for an INVITE, §17.1)
    F = "F"  # our request's timeout (Timer B for an INVITE)
    K = "K"  # absorbs retransmitted final responses to our request
    RETRANSMIT_2XX = "2xx"  # our 2xx until its ACK (§13.3.1.4)
    ACK_WAIT = "ack"  # 64*T1 for that ACK, then BYE, cause "no-ack"
    FORGET_DIALOG = "gc"  # an ended dialog kept for late retransmissions
    RETRANSMIT_1XX = "1xx"  # a reliable provisional until its PRACK (RFC 3262 §3)
    PRACK_WAIT = "prack"
    SESSION_REFRESH = "st-refresh"  # RFC 4028 §10
    SESSION_EXPIRY = "st-expire"
    REGISTRAR_PURGE = "reg"  # the earliest registrar binding expiry


TimerKey = tuple[Timer, str]


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(8)


def server_key(request: Request, method: str | None = None) -> tuple[str, ...]:
    """Server transaction key (§17.2.3). ACK and CANCEL look up the INVITE with method="INVITE".

    Without an RFC 3261 branch (RFC 2543 peers, RFC 4475 inv2543/badbranch) fall back to the older matching on
    Call-ID, From tag, CSeq number and the top Via sent-by.
    """
    method = method or ("INVITE" if request.method == "ACK" else request.method)
    via = request.top_via
    sent_by = via.sent_by.lower() if via else ""
    branch = via.branch if via else None
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, sent_by, method)
    return ("2543", request.call_id, request.from_tag or "", str(request.cseq[0]), sent_by, method)


@dataclass
class ServerTransaction:
    id: str
    key: tuple[str, ...]
    request: Request
    peer: Peer  # where responses go (§18.2.2)
    # INVITE: proceeding -> accepted (2xx) | completed (>= 300) -> confirmed (ACK).
    # Non-INVITE: trying -> completed.
    state: str = "trying"
    last_response: Response | None = None
    last_bytes: bytes | None = None
    interval: float = T1  # Timer G

    @property
    def reliable(self) -> bool:
        return self.peer.transport != "udp"  # TCP and TLS

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


@dataclass
class ClientTransaction:
    """A request we sent (BYE, REFER, UPDATE; a refresh INVITE): Timer E/A retransmission, Timer F/B timeout
    (§17.1.1, §17.1.2)."""

    branch: str
    method: str
    call_id: str
    data: bytes
    peer: Peer
    state: str = "trying"  # trying -> proceeding (1xx) -> completed
    interval: float = T1
    ack: bytes | None = None  # INVITE: the ACK we sent for its final response, re-sent for retransmissions
    # The dialog it belongs to, by our tag: a Call-ID can be reused by a new call (a trunk retrying after our
    # 488, or after a call that never got its ACK) while the old call's BYE is still timing out.
    local_tag: str = ""

    @property
    def reliable(self) -> bool:
        return self.peer.transport != "udp"  # TCP and TLS


class TimerQueue:
    """Named deadlines. Setting a key again moves it; stale heap entries are skipped lazily."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._due: dict[TimerKey, float] = {}
        self._seq = itertools.count()

    def set(self, key: TimerKey, when: float) -> None:
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))

    def cancel(self, key: TimerKey) -> None:
        self._due.pop(key, None)

    def __contains__(self, key: TimerKey) -> bool:
        return key in self._due

    def next_deadline(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[TimerKey]:
        fired: list[TimerKey] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == when:
                del self._due[key]
                fired.append(key)
        return fired
