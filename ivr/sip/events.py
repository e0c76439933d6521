"""What the SIP core tells the application, and where bytes go. Small frozen dataclasses only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ivr.sip.message import Request

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True)
class Peer:
    transport: Transport
    host: str
    port: int
    conn_id: int | None = None  # the TCP connection a message came on / should leave by


@dataclass(frozen=True)
class Outgoing:
    peer: Peer
    data: bytes


@dataclass(frozen=True)
class IncomingCall:
    """A new INVITE; the core has already sent 100 Trying."""

    call_id: str
    invite: Request
    peer: Peer


@dataclass(frozen=True)
class CallEstablished:
    """The ACK for our 2xx arrived."""

    call_id: str


@dataclass(frozen=True)
class CallCancelled:
    """CANCEL before answer: 200 to the CANCEL and 487 to the INVITE have been sent."""

    call_id: str


@dataclass(frozen=True)
class CallEnded:
    """cause: "remote-bye", "local-bye", "ack-timeout", "rejected" or "transport-error"."""

    call_id: str
    cause: str


@dataclass(frozen=True)
class ReInvite:
    """An in-dialog INVITE, already answered with 200 and our current SDP (session refresh)."""

    call_id: str
    invite: Request


@dataclass(frozen=True)
class ReferStatus:
    """A REFER failure response (>= 300, or 408 on timeout), or a NOTIFY message/sipfrag (RFC 3515 §2.4.5)."""

    call_id: str
    status: int
    final: bool


@dataclass(frozen=True)
class InfoDtmf:
    call_id: str
    digit: str


@dataclass(frozen=True)
class Registered:
    """A binding was added, refreshed (expires > 0) or removed (expires == 0)."""

    aor: str
    contact: str
    expires: int
    peer: Peer


SipEvent = Union[  # noqa: UP007 - a named alias reads better than a long | chain here
    IncomingCall, CallEstablished, CallCancelled, CallEnded, ReInvite, ReferStatus, InfoDtmf, Registered
]
