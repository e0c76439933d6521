"""RFC 3262 reliable provisional responses in the sans-I/O UserAgent: RSeq, retransmission, PRACK, timeout."""

from __future__ import annotations

from ivr.sip.events import CallEnded, CallEstablished, IncomingCall
from ivr.sip.message import Response
from ivr.sip.prack import parse_rack
from ivr.sip.useragent import UserAgent

from .helpers import ANSWER, CALLER, OFFER, request, responses, run_timers, statuses


def ringing_call(ua: UserAgent, extra: str, body: bytes = OFFER) -> Response | None:
    events = ua.receive(request("INVITE", extra=extra, body=body), CALLER, 0.0)
    assert [type(e) for e in events] == [IncomingCall]
    assert statuses(ua.take_outgoing()) == [100]
    ua.ring("call-1", 0.0)
    out = responses(ua.take_outgoing())
    return out[0] if out else None


def prack(rack: str, tag: str, *, cseq: int = 2, branch: str = "z9hG4bK-pr") -> bytes:
    return request("PRACK", cseq=cseq, branch=branch, to_tag=tag, extra=f"RAck: {rack}\r\n")


def test_required_100rel_sends_reliable_180_until_prack() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ringing = ringing_call(ua, "Require: 100rel\r\nSupported: 100rel, timer\r\n")
    assert ringing is not None and ringing.status == 180 and ringing.to_tag
    assert ringing.headers.get_all("Require") == ["100rel"]
    rseq = int(ringing.headers.get("RSeq") or "0")
    assert 1 <= rseq < 2**31
    # Retransmitted with T1 doubling while no PRACK comes (RFC 3262 §3).
    sent, _ = run_timers(ua, 4.0)
    assert sent == [0.5, 1.5, 3.5]
    assert ua.receive(prack(f"{rseq} 1 INVITE", ringing.to_tag), CALLER, 4.0) == []
    assert statuses(ua.take_outgoing()) == [200]
    sent, _ = run_timers(ua, 20.0)
    assert sent == []
    ua.answer("call-1", ANSWER, 20.0)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.to_tag == ringing.to_tag
    ack = request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack")
    assert ua.receive(ack, CALLER, 20.1) == [CallEstablished("call-1")]
    # The next reliable 1xx of a dialog would take the next RSeq; none is outstanding now.
    assert ua.receive(prack(f"{rseq} 1 INVITE", ok.to_tag, cseq=3, branch="z9hG4bK-p3"), CALLER, 21) == []
    assert statuses(ua.take_outgoing()) == [481]


def test_prack_for_another_response_is_481_and_retransmission_goes_on() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ringing = ringing_call(ua, "Require: 100rel\r\n")
    assert ringing is not None and ringing.to_tag
    rseq = int(ringing.headers.get("RSeq") or "0")
    ua.receive(prack(f"{rseq + 1} 1 INVITE", ringing.to_tag), CALLER, 0.1)
    assert statuses(ua.take_outgoing()) == [481]
    sent, _ = run_timers(ua, 0.6)
    assert sent == [0.5]


def test_no_prack_refuses_the_invite_after_64_t1() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    assert ringing_call(ua, "Require: 100rel\r\n") is not None
    while (deadline := ua.next_deadline()) is not None and deadline < 32.0:
        assert ua.tick(deadline) == []
        assert statuses(ua.take_outgoing()) == [180]
    assert ua.tick(32.0) == [CallEnded("call-1", "prack-timeout")]
    assert statuses(ua.take_outgoing()) == [504]
    ua.answer("call-1", ANSWER, 33.0)
    assert ua.take_outgoing() == []


def test_late_offer_with_100rel_skips_the_ringing_and_answers_with_the_offer() -> None:
    # The first reliable response would have to carry our offer (RFC 3262 §5): the 200 does instead.
    ua = UserAgent(host="192.0.2.1", port=5060)
    assert ringing_call(ua, "Require: 100rel\r\n", body=b"") is None
    ua.answer("call-1", ANSWER, 1.0)
    assert statuses(ua.take_outgoing()) == [200]


def test_supported_100rel_alone_keeps_ringing_unreliable() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ringing = ringing_call(ua, "Supported: 100rel\r\n")
    assert ringing is not None and ringing.headers.get("RSeq") is None
    assert ringing.headers.get_all("Require") == []
    sent, _ = run_timers(ua, 10.0)
    assert sent == []


def test_other_required_extensions_still_get_420() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", extra="Require: 100rel, precondition\r\n", body=OFFER), CALLER, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 420 and resp.headers.get("Unsupported") == "precondition"


def test_rack_parsing() -> None:
    rack = parse_rack(" 776656 1  invite ")
    assert rack is not None and (rack.rseq, rack.cseq, rack.method) == (776656, 1, "INVITE")
    assert parse_rack("1 INVITE") is None and parse_rack(None) is None and parse_rack("x 1 INVITE") is None
