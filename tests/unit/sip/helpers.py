"""Builders for SIP requests used by the UAS tests, and the steps of a call every test goes through."""

from __future__ import annotations

from ivr.sip.events import CallEstablished, IncomingCall, Outgoing, Peer
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.sdp import build_answer, negotiate, parse_sdp
from ivr.sip.useragent import UserAgent

CALLER = Peer("udp", "192.0.2.10", 5070)
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def request(
    method: str,
    *,
    call_id: str = "call-1",
    cseq: int = 1,
    branch: str = "z9hG4bK-1",
    to_tag: str | None = None,
    from_tag: str = "caller-tag",
    via_host: str = "192.0.2.10:5070",
    cseq_method: str | None = None,
    extra: str = "",
    body: bytes = b"",
    uri: str = "sip:ivr@192.0.2.1",
) -> bytes:
    to = "<sip:ivr@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    ctype = "Content-Type: application/sdp\r\n" if body and "Content-Type" not in extra else ""
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch}\r\n"
        f'From: "Caller" <sip:alice@192.0.2.10>;tag={from_tag}\r\n'
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5070>\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}{ctype}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def responses(out: list[Outgoing]) -> list[Response]:
    parsed = [parse_message(o.data) for o in out]
    return [m for m in parsed if isinstance(m, Response)]


def requests(out: list[Outgoing]) -> list[Request]:
    parsed = [parse_message(o.data) for o in out]
    return [m for m in parsed if isinstance(m, Request)]


def statuses(out: list[Outgoing]) -> list[int]:
    """Status codes from the status lines only (a 400 echoes the malformed headers it complains about)."""
    lines = [o.data.split(b"\r\n", 1)[0].split(b" ") for o in out]
    return [int(parts[1]) for parts in lines if parts[0] == b"SIP/2.0"]


# What the app sends (call.py builds its answer this way): re-INVITE answers follow on from it.
ANSWER = build_answer(negotiate(parse_sdp(OFFER)), local_host="192.0.2.1", local_port=30000, session_id=1)


def new_call(ua: UserAgent, peer: Peer = CALLER) -> Response:
    events = ua.receive(request("INVITE", body=OFFER), peer, 0.0)
    assert [type(e) for e in events] == [IncomingCall]
    assert statuses(ua.take_outgoing()) == [100]
    ua.answer("call-1", ANSWER, 0.0)
    (ok,) = responses(ua.take_outgoing())
    return ok


def confirmed_call(ua: UserAgent) -> str:
    ok = new_call(ua)
    tag = ok.to_tag
    assert tag
    events = ua.receive(request("ACK", to_tag=tag, branch="z9hG4bK-ack"), CALLER, 0.1)
    assert events == [CallEstablished("call-1")]
    return tag


def run_timers(ua: UserAgent, until: float) -> tuple[list[float], list[object]]:
    """Fire every deadline up to `until`; return the times something was sent, and the events."""
    sent: list[float] = []
    events: list[object] = []
    while (deadline := ua.next_deadline()) is not None and deadline <= until:
        events += ua.tick(deadline)
        if ua.take_outgoing():
            sent.append(deadline)
    return sent, events
