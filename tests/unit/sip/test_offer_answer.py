"""Re-INVITE answers per RFC 3264 §6.1/§8 (hold, re-offer, SDP-less re-INVITE) and late-offer INVITEs."""

from __future__ import annotations

import pytest

from ivr.sip.events import CallEnded, CallEstablished, IncomingCall, MediaAnswered, ReInvite
from ivr.sip.message import Response
from ivr.sip.sdp import SessionDescription, build_offer, parse_sdp
from ivr.sip.useragent import UserAgent

from .helpers import ANSWER, CALLER, confirmed_call, request, requests, responses, statuses


def sdp(
    fmts: str, extra: str = "", *, host: str = "192.0.2.10", port: int = 40000, version: int = 2
) -> bytes:
    rtpmap = "a=rtpmap:101 telephone-event/8000\r\n" if "101" in fmts.split() else ""
    return (
        f"v=0\r\no=- 1 {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {fmts}\r\n{rtpmap}{extra}"
    ).encode()


class Call:
    """A confirmed PCMA call (OFFER is 8 0 101) and the caller's next CSeq."""

    def __init__(self) -> None:
        self.ua = UserAgent(host="192.0.2.1", port=5060)
        self.tag = confirmed_call(self.ua)
        self.cseq = 1

    def reinvite(self, body: bytes, now: float = 1.0) -> tuple[list[object], Response]:
        self.cseq += 1
        events = self.ua.receive(
            request("INVITE", cseq=self.cseq, to_tag=self.tag, branch=f"z9hG4bK-re{self.cseq}", body=body),
            CALLER,
            now,
        )
        (resp,) = responses(self.ua.take_outgoing())
        return list(events), resp

    def ack(self, body: bytes = b"", now: float = 1.1) -> list[object]:
        ack = request("ACK", cseq=self.cseq, to_tag=self.tag, branch=f"z9hG4bK-ack{self.cseq}", body=body)
        return list(self.ua.receive(ack, CALLER, now))


def _origin_version(body: bytes) -> int:
    origin = parse_sdp(body).origin
    assert origin is not None and (origin.username, origin.session_id) == ("ivr", 1)
    return origin.version


@pytest.mark.parametrize(
    ("offer_direction", "connection", "answer_direction", "held"),
    [
        ("a=sendonly\r\n", "192.0.2.10", "recvonly", True),
        ("a=inactive\r\n", "192.0.2.10", "inactive", True),
        ("a=recvonly\r\n", "192.0.2.10", "sendonly", False),
        ("a=sendrecv\r\n", "192.0.2.20", "sendrecv", False),
        ("", "0.0.0.0", "recvonly", True),  # RFC 2543 hold: send nothing to 0.0.0.0 (RFC 3264 §8.4)
    ],
)
def test_reinvite_is_answered_with_the_mirrored_direction_and_reports_the_hold(
    offer_direction: str, connection: str, answer_direction: str, held: bool
) -> None:
    call = Call()
    events, ok = call.reinvite(sdp("8 0 101", offer_direction, host=connection, port=41000))
    assert ok.status == 200
    answer = parse_sdp(ok.body)
    assert answer.direction == answer_direction
    assert (answer.connection, answer.port) == ("192.0.2.1", 30000)  # our RTP address does not move
    (event,) = events
    assert isinstance(event, ReInvite) and event.held is held
    assert event.media is not None and event.media.direction == answer_direction
    assert (event.media.encoding, event.media.payload_type, event.media.dtmf_payload_type) == ("PCMA", 8, 101)
    assert (event.media.remote_host, event.media.remote_port) == (connection, 41000)
    # RFC 3264 §8: the version goes up exactly when our SDP changes (here: when the direction does).
    changed = answer_direction != "sendrecv"
    assert _origin_version(ok.body) == _origin_version(ANSWER) + changed


def test_hold_then_resume_and_a_plain_refresh_keep_the_version_rules() -> None:
    call = Call()
    _, held = call.reinvite(sdp("8 0 101", "a=sendonly\r\n"))
    call.ack()
    events, resumed = call.reinvite(sdp("8 0 101", "a=sendrecv\r\n", version=3), now=2.0)
    call.ack(now=2.1)
    assert parse_sdp(resumed.body).direction == "sendrecv"
    assert [e.held for e in events if isinstance(e, ReInvite)] == [False]
    assert [_origin_version(b) for b in (ANSWER, held.body, resumed.body)] == [1, 2, 3]
    _, refreshed = call.reinvite(sdp("8 0 101", "a=sendrecv\r\n", version=3), now=3.0)
    assert refreshed.body == resumed.body  # nothing changed: identical SDP, same version


def test_reoffer_without_the_running_codec_switches_to_an_offered_one() -> None:
    call = Call()  # PCMA
    events, ok = call.reinvite(sdp("0 101"))
    answer = parse_sdp(ok.body)
    assert [(f.payload_type, f.encoding) for f in answer.formats] == [(0, "PCMU"), (101, "telephone-event")]
    (event,) = events
    assert isinstance(event, ReInvite) and event.media is not None
    assert (event.media.encoding, event.media.payload_type) == ("PCMU", 0)


def test_reoffer_listing_another_codec_first_keeps_the_running_one() -> None:
    call = Call()  # PCMA
    _, ok = call.reinvite(sdp("0 8"))
    assert [f.encoding for f in parse_sdp(ok.body).formats] == ["PCMA"]  # no DTMF offered: none answered


def test_dynamic_payload_type_of_the_reoffer_is_used() -> None:
    call = Call()
    _, ok = call.reinvite(sdp("97 101", "a=rtpmap:97 PCMA/8000\r\n"))
    assert parse_sdp(ok.body).formats[0].payload_type == 97


def test_reoffer_without_a_supported_codec_gets_488_and_the_call_goes_on() -> None:
    call = Call()
    events, refused = call.reinvite(sdp("18 9"))
    assert events == [] and refused.status == 488
    (warning,) = refused.headers.lines("Warning")
    assert warning.startswith('305 192.0.2.1 "no supported audio codec offered')
    assert call.ack() == []  # the 488's ACK is absorbed by its transaction
    _, ok = call.reinvite(sdp("8 0 101"), now=2.0)  # the session was left as it was
    assert ok.status == 200 and ok.body == ANSWER
    call.ack(now=2.1)
    bye = request("BYE", cseq=call.cseq + 1, to_tag=call.tag, branch="z9hG4bK-bye")
    assert call.ua.receive(bye, CALLER, 3.0) == [CallEnded("call-1", "remote-bye")]


def test_unreadable_reoffer_gets_488_with_a_warning() -> None:
    call = Call()
    events, refused = call.reinvite(b"v=0\r\nnot sdp\r\n")
    assert events == [] and refused.status == 488
    assert refused.headers.lines("Warning")[0].startswith('399 192.0.2.1 "bad SDP offer')


def test_answer_keeps_the_reoffer_m_lines_in_count_and_order() -> None:
    call = Call()
    body = (
        b"v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=video 41002 RTP/AVP 31\r\nm=audio 41000 RTP/AVP 0\r\nm=audio 41004 RTP/AVP 8\r\n"
    )
    _, ok = call.reinvite(body)
    mlines = [line for line in ok.body.decode().split("\r\n") if line.startswith("m=")]
    assert mlines == ["m=video 0 RTP/AVP 31", "m=audio 30000 RTP/AVP 0", "m=audio 0 RTP/AVP 8"]


def test_reinvite_without_sdp_gets_our_offer_and_the_ack_brings_the_answer() -> None:
    call = Call()  # PCMA
    events, ok = call.reinvite(b"")
    assert events == [] and ok.status == 200
    offer = parse_sdp(ok.body)
    assert [f.encoding for f in offer.formats] == ["PCMA", "PCMU", "telephone-event"]  # the running one first
    assert (offer.direction, offer.port, _origin_version(ok.body)) == ("sendrecv", 30000, 2)
    (event,) = call.ack(sdp("8 101", "a=sendonly\r\n", port=41010))
    assert isinstance(event, ReInvite) and event.invite.body == b"" and event.held
    assert event.media is not None
    media = event.media
    assert (media.encoding, media.remote_port, media.direction) == ("PCMA", 41010, "recvonly")


def test_reinvite_without_sdp_whose_ack_has_no_answer_leaves_the_session() -> None:
    call = Call()
    call.reinvite(b"")
    assert call.ack() == []
    assert any("left the session as it was" in note for note in call.ua.take_diagnostics())
    _, ok = call.reinvite(sdp("8 0 101"), now=2.0)
    assert ok.status == 200  # the dialog still works


def _late_offer_call(ua: UserAgent) -> tuple[str, bytes]:
    (incoming,) = ua.receive(request("INVITE"), CALLER, 0.0)
    assert isinstance(incoming, IncomingCall) and incoming.late_offer
    assert statuses(ua.take_outgoing()) == [100]  # not 488
    ours = build_offer(local_host="192.0.2.1", local_port=30000, session_id=7)
    ua.answer("call-1", ours, 0.0)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.body == ours and ok.to_tag
    return ok.to_tag, ours


def test_build_offer_lists_pcmu_pcma_and_telephone_event() -> None:
    offer: SessionDescription = parse_sdp(build_offer(local_host="192.0.2.1", local_port=30000, session_id=7))
    assert [(f.payload_type, f.encoding) for f in offer.formats] == [
        (0, "PCMU"),
        (8, "PCMA"),
        (101, "telephone-event"),
    ]
    assert (offer.connection, offer.port, offer.direction) == ("192.0.2.1", 30000, "sendrecv")


def test_late_offer_answer_in_the_ack_starts_the_call() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag, _ = _late_offer_call(ua)
    answer = sdp("8 101", port=42000)
    events = ua.receive(request("ACK", to_tag=tag, branch="z9hG4bK-ack", body=answer), CALLER, 0.1)
    assert [type(e) for e in events] == [MediaAnswered, CallEstablished]
    media = events[0]
    assert isinstance(media, MediaAnswered) and media.sdp == answer
    m = media.media
    assert (m.encoding, m.payload_type, m.dtmf_payload_type) == ("PCMA", 8, 101)
    assert (m.remote_host, m.remote_port, m.direction, m.held) == ("192.0.2.10", 42000, "sendrecv", False)
    # A later re-offer is answered on from our offer: same origin, next version.
    reinvite = request("INVITE", cseq=2, to_tag=tag, branch="z9hG4bK-re", body=sdp("0"))
    (event,) = ua.receive(reinvite, CALLER, 1.0)
    (ok,) = responses(ua.take_outgoing())
    origin = parse_sdp(ok.body).origin
    assert origin is not None and (origin.session_id, origin.version) == (7, 8)
    assert isinstance(event, ReInvite) and event.media is not None and event.media.encoding == "PCMU"


@pytest.mark.parametrize(
    ("ack_body", "cause"),
    [
        (b"", "no-answer-in-ack"),
        (sdp("18"), "answer-not-acceptable"),  # G.729: not a codec we offered
        (b"v=0\r\nnot sdp\r\n", "answer-not-acceptable"),
    ],
)
def test_late_offer_without_a_usable_answer_in_the_ack_is_ended_with_bye(ack_body: bytes, cause: str) -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag, _ = _late_offer_call(ua)
    events = ua.receive(request("ACK", to_tag=tag, branch="z9hG4bK-ack", body=ack_body), CALLER, 0.1)
    assert events == [CallEnded("call-1", cause)]
    (bye,) = requests(ua.take_outgoing())
    assert bye.method == "BYE" and bye.from_tag == tag


def test_a_reoffer_gets_comfort_noise_only_if_the_first_answer_took_it() -> None:
    from ivr.sip.offeranswer import LocalSession
    from ivr.sip.sdp import build_answer, negotiate

    reoffer = sdp("0 13", version=3)
    with_cn = build_answer(
        negotiate(parse_sdp(sdp("0 13"))), local_host="192.0.2.1", local_port=30000, session_id=1
    )
    media, body = LocalSession.from_local_sdp(with_cn, offer=False).answer(reoffer)
    assert media.comfort_noise_payload_type == 13 and b"a=rtpmap:13 CN/8000" in body
    # The setting turned CN off, or the call began without it: a re-INVITE does not bring it in.
    without = build_answer(
        negotiate(parse_sdp(sdp("0"))), local_host="192.0.2.1", local_port=30000, session_id=1
    )
    media, body = LocalSession.from_local_sdp(without, offer=False).answer(reoffer)
    assert media.comfort_noise_payload_type is None and b"CN/" not in body
