"""SDP offer parsing, codec choice and the RFC 3264 answer."""

from __future__ import annotations

import pytest

from ivr.sip.sdp import SdpError, SdpNotAcceptable, build_answer, negotiate, parse_sdp


def offer(fmts: str, extra: str = "", session_c: str = "c=IN IP4 192.0.2.10\r\n") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n{session_c}t=0 0\r\n"
        f"m=audio 40000 RTP/AVP {fmts}\r\n{extra}"
    ).encode()


def test_first_offered_supported_codec_wins() -> None:
    n = negotiate(parse_sdp(offer("18 0 8 101", "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")))
    assert (n.payload_type, n.encoding, n.dtmf_payload_type) == (0, "PCMU", 101)
    assert (n.remote_host, n.remote_port, n.ptime) == ("192.0.2.10", 40000, 20)


def test_pcma_first_offer() -> None:
    n = negotiate(parse_sdp(offer("8 0", "a=ptime:30\r\n")))
    assert (n.payload_type, n.encoding, n.dtmf_payload_type, n.ptime) == (8, "PCMA", None, 30)


def test_dynamic_rtpmap_and_media_level_connection() -> None:
    body = offer("96", "c=IN IP4 198.51.100.3\r\na=rtpmap:96 pcmu/8000\r\na=sendonly\r\n")
    sd = parse_sdp(body)
    assert sd.connection == "198.51.100.3" and sd.direction == "sendonly"
    n = negotiate(sd)
    assert (n.payload_type, n.encoding, n.remote_host, n.direction) == (
        96,
        "PCMU",
        "198.51.100.3",
        "recvonly",
    )


def test_no_supported_codec() -> None:
    with pytest.raises(SdpNotAcceptable):
        negotiate(parse_sdp(offer("18 9")))
    with pytest.raises(SdpNotAcceptable):
        negotiate(parse_sdp(offer("0").replace(b"RTP/AVP", b"RTP/SAVP")))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"v=0\r\nnot sdp\r\n",
        offer("0", session_c=""),
        b"v=0\r\nm=video 1 RTP/AVP 31\r\nc=IN IP4 1.2.3.4\r\n",
    ],
)
def test_bad_sdp(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)


def test_answer_is_rfc3264() -> None:
    sd = parse_sdp(offer("8 0 101", "a=rtpmap:101 telephone-event/8000\r\nm=video 3227 RTP/AVP 31\r\n"))
    n = negotiate(sd)
    answer = build_answer(n, local_host="192.0.2.1", local_port=30000, session_id=42).decode()
    lines = answer.split("\r\n")
    assert lines[:5] == ["v=0", "o=ivr 42 42 IN IP4 192.0.2.1", "s=ivr", "c=IN IP4 192.0.2.1", "t=0 0"]
    assert "m=audio 30000 RTP/AVP 8 101" in lines
    assert {"a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"} <= set(lines)
    assert {"a=ptime:20", "a=sendrecv", "m=video 0 RTP/AVP 31"} <= set(lines)
    assert lines.index("m=video 0 RTP/AVP 31") > lines.index("m=audio 30000 RTP/AVP 8 101")
    again = negotiate(parse_sdp(answer.encode()))
    assert (again.payload_type, again.remote_port, again.dtmf_payload_type) == (8, 30000, 101)
