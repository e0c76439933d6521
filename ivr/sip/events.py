"""What the SIP core tells the application, and where bytes go. Small frozen dataclasses only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from ivr.sip.message import Request
from ivr.sip.sdp import Negotiated

Transport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to."""

    transport: Transport
    host: str
    port: int
    conn_id: int | None = None  # the TCP connection a message came on / should leave by
    # TCP: where to open a new connection if `conn_id` is gone: received host + Via sent-by port (§18.2.2),
    # not the peer's ephemeral source port, which nothing listens on.
    reconnect: tuple[str, int] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outgoing:
    """Bytes to send."""

    peer: Peer
    data: bytes


@dataclass(frozen=True)
class IncomingCall:
    """A new INVITE; the core has already sent 100 Trying.

    `late_offer`: the INVITE has no SDP, so the app's `answer()` must pass our *offer* (`sdp.build_offer`);
    the caller's answer arrives in the ACK as `MediaAnswered` (RFC 3261 §13.2.1, RFC 3264 §5).
    """

    call_id: str
    invite: Request
    peer: Peer
    late_offer: bool = False


@dataclass(frozen=True)
class CallEstablished:
    """The ACK for our 2xx arrived."""

    call_id: str


@dataclass(frozen=True)
class MediaAnswered:
    """A late-offer call's ACK carried an acceptable answer to our offer: start RTP with `media`.

    Comes just before `CallEstablished`. An ACK without a usable answer ends the call instead (BYE sent):
    `CallEnded` with cause "no-answer-in-ack" or "answer-not-acceptable".
    """

    call_id: str
    media: Negotiated
    sdp: bytes


@dataclass(frozen=True)
class CallCancelled:
    """CANCEL before answer: 200 to the CANCEL and 487 to the INVITE have been sent."""

    call_id: str


@dataclass(frozen=True)
class CallEnded:
    """cause: "remote-bye", "local-bye", "no-ack" (our 2xx never got its ACK within 64*T1; we sent BYE),
    "rejected", "transport-error", or for a late offer
    "no-answer-in-ack" / "answer-not-acceptable" (the ACK had no SDP we could use; we sent BYE);
    "session-expired" (RFC 4028: no session refresh came in time, or ours got 408/481; we sent BYE);
    "prack-timeout" (RFC 3262: our reliable 180 got no PRACK within 64*T1; we answered the INVITE 504)."""

    call_id: str
    cause: str


@dataclass(frozen=True)
class ReInvite:
    """An in-dialog INVITE, answered 200 with our answer to *its* offer (RFC 3264 §8).

    `media` is what was negotiated (codec, payload types, remote address, our direction); `held` is True when
    the peer takes no media from us (a=sendonly/inactive, or c=0.0.0.0): play nothing, do not transfer.
    A re-INVITE without SDP gets our offer in the 200; this event then comes with the ACK's answer.
    `media` is None only when our first SDP could not be read, and the old SDP was sent back unchanged.
    An offer we cannot take gets 488 and no event: the call goes on as before.
    """

    call_id: str
    invite: Request
    media: Negotiated | None = None
    held: bool = False


@dataclass(frozen=True)
class ReferStatus:
    """A REFER failure response (>= 300, or 408 on timeout), or a NOTIFY message/sipfrag (RFC 3515 §2.4.5)."""

    call_id: str
    status: int
    final: bool


@dataclass(frozen=True)
class InfoDtmf:
    """A digit sent by SIP INFO (application/dtmf-relay or application/dtmf)."""

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
    IncomingCall,
    CallEstablished,
    MediaAnswered,
    CallCancelled,
    CallEnded,
    ReInvite,
    ReferStatus,
    InfoDtmf,
    Registered,
]
