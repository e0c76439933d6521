"""Fuzzing SDP offer parsing, negotiation and the answer built from it (issue 12).

Contracts: `parse_sdp` raises only `SdpError`; `negotiate` only `SdpNotAcceptable`; what negotiates is
something the RTP path can use (a port a socket takes, payload types that fit RTP's 7 bits), and the answer
built from it parses again.
"""

from __future__ import annotations

from hypothesis import example, given

from ivr.sip.sdp import SdpError, SdpNotAcceptable, build_answer, negotiate, parse_sdp
from tests.unit.fuzz.strategies import fuzz, wire
from tests.unit.sip.helpers import OFFER

SEEDS = [
    OFFER,
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 host.example.com\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
    b"m=video 51372 RTP/AVP 31\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:97 iLBC/8000\r\na=sendonly\r\n"
    b"a=ptime:30\r\n",
    b"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000/2 RTP/AVP 18 0\r\n"
    b"a=inactive\r\n",
    b"v=0\nc=IN IP6 ::1\nm=audio 4000 RTP/SAVP 0\nm=audio 0 RTP/AVP 8\nc=IN IP4 224.2.1.1/127/3\n",
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\nm=audio 40000 RTP/AVP 96 101\r\n"
    b"c=IN IP4 192.0.2.10\r\na=rtpmap:96 PCMA/8000/1\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n",
]
HUGE = b"9" * 5000


@fuzz(1000)
@given(wire(SEEDS, max_size=500))
@example(OFFER.replace(b"40000", HUGE))
@example(OFFER.replace(b"rtpmap:101", b"rtpmap:" + HUGE).replace(b" 101\r\n", b" " + HUGE + b"\r\n"))
@example(OFFER.replace(b"o=- 1 1", b"o=- " + HUGE + b" 1"))
@example(OFFER + b"a=ptime:" + HUGE + b"\r\n")
@example(OFFER.replace(b"40000", b"70000"))
@example(OFFER.replace(b"101", b"300"))
def test_parse_and_negotiate_raise_only_their_errors(data: bytes) -> None:
    try:
        offer = parse_sdp(data)
    except SdpError:
        return
    try:
        chosen = negotiate(offer)
    except SdpNotAcceptable as exc:
        assert exc.warn_code in (301, 302, 304, 305, 399)
        return
    assert 0 < chosen.remote_port <= 65535, chosen.remote_port
    assert 0 <= chosen.payload_type <= 127
    assert chosen.dtmf_payload_type is None or 0 <= chosen.dtmf_payload_type <= 127, chosen.dtmf_payload_type
    answer = build_answer(chosen, local_host="192.0.2.1", local_port=30000, session_id=7)
    again = parse_sdp(answer)
    assert again.port == 30000 and again.formats[0].payload_type == chosen.payload_type


def test_out_of_range_numbers_are_sdp_errors_or_ignored() -> None:
    # Each of these escaped as ValueError or negotiated a port/payload type RTP cannot use (issue 12).
    try:
        parse_sdp(OFFER.replace(b"40000", b"70000"))
    except SdpError as exc:
        assert "port" in str(exc)
    else:
        raise AssertionError("a port above 65535 parsed")
    assert negotiate(parse_sdp(OFFER.replace(b"101", b"300"))).dtmf_payload_type is None
    assert parse_sdp(OFFER + b"a=ptime:" + HUGE + b"\r\n").ptime is None
    assert parse_sdp(OFFER.replace(b"o=- 1 1", b"o=- " + HUGE + b" 1")).origin is None
