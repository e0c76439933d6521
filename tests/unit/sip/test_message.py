"""Parser, framer, serializer and header-value helpers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.events import Peer
from ivr.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    SipVersionError,
    StreamFramer,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    serialize,
)
from ivr.sip.via import fix_via

from .helpers import request

BASE = request("OPTIONS")


def test_compact_forms_expand_to_canonical_names() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:x@y>;tag=1\r\n"
        b"t: <sip:a@b>\r\n"
        b"i: abc\r\nCSEQ: 1 OPTIONS\r\nm: <sip:x@h>\r\nk: timer\r\no: refer\r\nr: <sip:c@d>\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    names = [name for name, _ in msg.headers.items()]
    assert names == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported", "Event", "Refer-To", "Content-Length",
    ]  # fmt: skip
    assert msg.call_id == "abc" and msg.cseq == (1, "OPTIONS") and msg.from_tag == "1" and msg.to_tag is None


def test_folded_lines_are_unfolded() -> None:
    data = BASE.replace(b"Max-Forwards: 70\r\n", b"Subject: first\r\n  second\r\n\tthird\r\n")
    assert parse_message(data).headers.get("Subject") == "first second third"


def test_multi_value_headers_split_outside_quotes_and_brackets() -> None:
    extra = (
        "Route: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:p3;lr>\r\nAllow: INVITE,BYE , ACK\r\n"
        'Record-Route: "a, b" <sip:rr@x;lr>\r\nAuthorization: Digest a="1", b="2"\r\n'
    )
    msg = parse_message(request("OPTIONS", extra=extra))
    assert msg.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert msg.headers.get_all("allow") == ["INVITE", "BYE", "ACK"]
    assert msg.headers.get_all("Record-Route") == ['"a, b" <sip:rr@x;lr>']
    assert msg.headers.get_all("Authorization") == ['Digest a="1", b="2"']


def test_headers_set_remove_contains() -> None:
    h = Headers([("v", "a"), ("Via", "b"), ("X-Custom", "1")])
    assert "VIA" in h and h.get_all("via") == ["a", "b"]
    h.set("Via", "c")
    assert h.get_all("Via") == ["c"]
    h.remove("x-custom")
    assert "X-Custom" not in h and len(h) == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda d: d.replace(b"OPTIONS sip:ivr@192.0.2.1 SIP/2.0", b"OPTIONS  sip:ivr@192.0.2.1 SIP/2.0"),
            "Request-Line",
        ),
        (lambda d: d.replace(b"SIP/2.0\r\nVia", b"SIP/2.0 \r\nVia"), "Request-Line"),
        (lambda d: d.replace(b"sip:ivr@192.0.2.1 SIP", b"<sip:ivr@192.0.2.1> SIP"), "<>"),
        (lambda d: d.replace(b"Call-ID: call-1\r\n", b""), "missing Call-ID"),
        (lambda d: d.replace(b"CSeq: 1 OPTIONS", b"CSeq: 4294967296 OPTIONS"), "CSeq"),
        (lambda d: d.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), "CSeq method"),
        (lambda d: d.replace(b"Call-ID: call-1\r\n", b"Call-ID: a\r\nCall-ID: b\r\n"), "multiple Call-ID"),
        (lambda d: d.replace(b'"Caller"', b'"Caller'), "quoted"),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: -1"), "Content-Length"),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: x"), "Content-Length"),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: 5"), "larger"),
        (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3"), "conflicting"),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "header line"),
        (lambda d: d.replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-1;;"), "Via"),
    ],
)
def test_invalid_requests_raise_with_partial(mutate: object, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(mutate(BASE))  # type: ignore[operator]
    assert reason in info.value.reason
    assert isinstance(info.value.partial, Request) and info.value.partial.method == "OPTIONS"


def test_other_version_is_a_version_error() -> None:
    with pytest.raises(SipVersionError):
        parse_message(BASE.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"))


def test_body_framed_by_content_length_and_excess_discarded() -> None:
    msg = parse_message(request("INVITE", body=b"v=0\r\n") + b"garbage")
    assert msg.body == b"v=0\r\n"


def test_responses_with_bad_scalars_raise() -> None:
    ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
    ok += b"Call-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    msg = parse_message(ok)
    assert isinstance(msg, Response) and msg.status == 200 and msg.cseq == (2, "BYE")
    for bad in (
        ok.replace(b"200 OK", b"2000 OK"),
        ok.replace(b"200 OK", b"099 Low"),
        ok.replace(b"2 BYE", b"x BYE"),
    ):
        with pytest.raises(SipParseError):
            parse_message(bad)


def test_serialize_round_trip_sets_content_length() -> None:
    msg = parse_message(request("INVITE", body=b"v=0\r\n"))
    msg.body = b"v=0\r\ns=-\r\n"
    again = parse_message(serialize(msg))
    assert isinstance(again, Request) and again.body == b"v=0\r\ns=-\r\n"
    assert again.headers.get("Content-Length") == "10" and again.call_id == "call-1"


def test_make_response_copies_headers_and_adds_to_tag() -> None:
    req = parse_message(request("INVITE", extra="Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n"))
    assert isinstance(req, Request)
    resp = make_response(req, 486, to_tag="t1", headers=[("Retry-After", "5")])
    assert resp.reason == "Busy Here" and resp.to_tag == "t1"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("Retry-After") == "5" and resp.cseq == (1, "INVITE")
    tagged = parse_message(request("BYE", to_tag="mine"))
    assert isinstance(tagged, Request)
    assert make_response(tagged, 200, to_tag="other").to_tag == "mine"


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, {}),
        (
            "sips:bob:pw@[2001:db8::1]:5061;transport=tcp;lr",
            "bob",
            "2001:db8::1",
            5061,
            {"transport": "tcp", "lr": None},
        ),
        ("sip:192.0.2.1:5080", None, "192.0.2.1", 5080, {}),
    ],
)
def test_parse_uri(
    text: str, user: str | None, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    uri = parse_uri(text)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert str(uri) == text


def test_parse_uri_other_scheme_and_errors() -> None:
    uri = parse_uri("tel:+1-201-555-0123")
    assert uri.scheme == "tel" and not uri.is_sip and str(uri) == "tel:+1-201-555-0123"
    for bad in ("alice@example.com", "sip:", "sip:a b@c", "sip:host:99999"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_parse_name_addr_forms() -> None:
    quoted = parse_name_addr('"A \\"B\\"" <sip:a@b;lr>;tag=x ; q = 0.5')
    assert quoted.display == 'A "B"' and quoted.uri == "sip:a@b;lr" and quoted.tag == "x"
    assert quoted.params == {"tag": "x", "q": "0.5"}
    bare = parse_name_addr("sip:a@b;tag=y")
    assert bare.display is None and bare.uri == "sip:a@b" and bare.tag == "y"
    tokens = parse_name_addr("Alice  Smith<sip:a@b>")
    assert tokens.display == "Alice Smith"
    for bad in ('"open <sip:a@b>', "Bell, A <sip:a@b>", "sip:a@b?x=1", "<sip:a@b>;;"):
        with pytest.raises(SipParseError):
            parse_name_addr(bad)


def test_parse_via() -> None:
    via = parse_via("SIP / 2.0 / tcp  host.example.com : 5070 ; branch = z9hG4bKx ;rport;received=10.0.0.1")
    assert (via.transport, via.host, via.port, via.branch) == ("TCP", "host.example.com", 5070, "z9hG4bKx")
    assert via.has_rport and via.rport is None and via.received == "10.0.0.1"
    assert parse_via("SIP/2.0/UDP [2001:db8::1]:5060;rport=1234").rport == 1234
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0/UDP")


# ---- stream framing ----------------------------------------------------------------------------------------

STREAM = request("INVITE", body=b"v=0\r\n") + b"\r\n\r\n" + request("OPTIONS", cseq=2, branch="z9hG4bK-2")


def test_framer_every_split_point() -> None:
    expected = [request("INVITE", body=b"v=0\r\n"), request("OPTIONS", cseq=2, branch="z9hG4bK-2")]
    for cut in range(len(STREAM) + 1):
        framer = StreamFramer()
        got = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:])
        assert got == expected, cut


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    got: list[bytes] = []
    for i in range(len(STREAM)):
        got += framer.feed(STREAM[i : i + 1])
    assert [parse_message(m).cseq for m in got] == [(1, "INVITE"), (2, "OPTIONS")]


@pytest.mark.parametrize(
    "data",
    [
        request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: -4"),
        request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: abc"),
        request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 1\r\nl: 2"),
        request("OPTIONS").replace(b"Content-Length: 0\r\n", b""),
        b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Long: " + b"a" * 70000,
    ],
)
def test_framer_unrecoverable(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(data)
    if data.startswith(b"OPTIONS sip:ivr"):
        assert info.value.partial is not None and info.value.partial.call_id == "call-1"


def test_framer_waits_for_body() -> None:
    framer = StreamFramer()
    data = request("INVITE", body=b"0123456789")
    assert framer.feed(data[:-3]) == []
    assert framer.feed(data[-3:]) == [data]


# ---- fuzz --------------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_messages(data: st.DataObject) -> None:
    raw = bytearray(request("INVITE", body=b"v=0\r\n", extra='Route: <sip:p;lr>, "x" <sip:q>\r\n'))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b' \t\r\n;,"<>:=@%\\\x00\xff0'))
    with contextlib.suppress(SipParseError):
        parse_message(bytes(raw))
    framer = StreamFramer()
    with contextlib.suppress(SipParseError):
        framer.feed(bytes(raw))


def test_the_top_via_and_tags_follow_their_headers_when_they_change() -> None:
    msg = parse_message(
        b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport\r\n"
        b"From: <sip:a@example.com>;tag=one\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Request)
    via = msg.top_via
    assert via is not None and via.received is None and msg.from_tag == "one" and msg.to_tag is None
    fix_via(msg, Peer("udp", "192.0.2.7", 6000))
    via = msg.top_via
    assert via is not None and (via.received, via.rport) == ("192.0.2.7", 6000)
    msg.headers.set("To", "<sip:bob@example.com>;tag=two")
    msg.headers.set("From", "<sip:a@example.com")  # unparseable now: no tag, no exception
    assert (msg.to_tag, msg.from_tag) == ("two", None)
