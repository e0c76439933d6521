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


@pytest.mark.parametrize(
    ("session_c", "media_c", "shown"),
    [
        ("c=IN IP6 ::1\r\n", "", "IP6 ::1"),
        ("c=IN IP4 pbx.example.com\r\n", "", "IP4 pbx.example.com"),
        ("c=IN IP6 2001:db8::5\r\n", "", "IP6 2001:db8::5"),
        # A media-level c= overrides the session level (RFC 4566 §5.7), in both directions.
        ("c=IN IP4 192.0.2.10\r\n", "c=IN IP6 2001:db8::5\r\n", "IP6 2001:db8::5"),
        ("c=IN IP4 192.0.2.10\r\n", "c=IN IP4 media.example.com\r\n", "IP4 media.example.com"),
        ("c=IN IP6 192.0.2.10\r\n", "", "IP6 192.0.2.10"),  # the address type itself says IPv6
    ],
)
def test_connection_address_that_is_not_an_ipv4_literal_is_not_acceptable(
    session_c: str, media_c: str, shown: str
) -> None:
    # Our RTP sockets are IPv4 and the media path does no DNS: a 200 would only fail at the first send.
    with pytest.raises(SdpNotAcceptable) as info:
        negotiate(parse_sdp(offer("0", media_c, session_c=session_c)))
    assert (
        str(info.value) == f"connection address {shown!r} is not an IPv4 address; this bridge's RTP is IPv4"
    )


def test_media_level_ipv4_overrides_a_session_level_ipv6_connection() -> None:
    n = negotiate(parse_sdp(offer("0", "c=IN IP4 198.51.100.3\r\n", session_c="c=IN IP6 ::1\r\n")))
    assert (n.remote_host, n.remote_port) == ("198.51.100.3", 40000)


def test_ipv4_offers_still_negotiate_including_the_rfc2543_hold_address() -> None:
    assert negotiate(parse_sdp(offer("0"))).remote_host == "192.0.2.10"
    held = negotiate(parse_sdp(offer("0", session_c="c=IN IP4 0.0.0.0\r\n")))
    # RFC 3264 §8.4: c=0.0.0.0 means send nothing there, so we only receive: a hold.
    assert (held.remote_host, held.direction, held.held) == ("0.0.0.0", "recvonly", True)
    assert parse_sdp(offer("0", session_c="c=IN IP6 ::1\r\n")).connection_type == "IP6"


def _with(old: str, new: str) -> bytes:
    return offer("0 96", "a=rtpmap:96 pcmu/8000\r\na=ptime:20\r\n").decode().replace(old, new).encode()


def test_non_ascii_digits_are_an_sdp_error_or_ignored_never_a_crash() -> None:
    # str.isdigit() is True for "²" (UTF-8 C2 B2) and "١" (Arabic-Indic one); int() refuses the first and
    # reads the second as 1. Neither is an SDP digit (RFC 4566 §9: DIGIT is %x30-39).
    with pytest.raises(SdpError, match="bad m= line"):
        parse_sdp(_with("40000", "4²"))
    assert parse_sdp(_with("a=ptime:20", "a=ptime:2²")).ptime is None
    assert [f.payload_type for f in parse_sdp(_with("pcmu/8000", "pcmu/8²")).formats] == [0]
    assert [f.payload_type for f in parse_sdp(_with("RTP/AVP 0 96", "RTP/AVP ١ 96")).formats] == [96]


def test_comfort_noise_is_taken_when_offered_static_or_mapped_and_named_in_the_answer() -> None:
    for body in (offer("0 101 13"), offer("0 13", "a=rtpmap:13 CN/8000\r\n")):
        n = negotiate(parse_sdp(body))
        assert n.comfort_noise_payload_type == 13
        lines = build_answer(n, local_host="192.0.2.1", local_port=30000, session_id=1).decode().split("\r\n")
        assert any(line.startswith("m=audio 30000 RTP/AVP 0") and line.endswith(" 13") for line in lines)
        assert "a=rtpmap:13 CN/8000" in lines
    plain = negotiate(parse_sdp(offer("0 101")))
    assert plain.comfort_noise_payload_type is None
    answer = build_answer(plain, local_host="192.0.2.1", local_port=30000, session_id=1).decode()
    assert "CN/" not in answer and "m=audio 30000 RTP/AVP 0\r\n" in answer
    wideband = negotiate(parse_sdp(offer("0 105", "a=rtpmap:105 CN/16000\r\n")))
    assert wideband.comfort_noise_payload_type is None  # CN of another clock rate is not our stream's
