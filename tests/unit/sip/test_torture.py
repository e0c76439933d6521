"""Every RFC 4475 torture message through UserAgent.receive, with the verdict its README expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.sip.events import IncomingCall, Peer, Registered
from ivr.sip.message import Request, Response, SipParseError, parse_message
from ivr.sip.useragent import UserAgent

from .helpers import statuses

TORTURE = Path(__file__).parents[3].parent / "shared" / "sip-torture"
ANY_BUT_400: set[int | None] = {100, 200, 481, 404, 501}

# File -> acceptable first response (100 = INVITE accepted: 100 Trying + IncomingCall); None = dropped.
REQUESTS: dict[str, set[int | None]] = {
    "wsinv": ANY_BUT_400,  # valid, but its To tag names no dialog of ours: 481
    "intmeth": {501},
    "esc01": {100},
    "escnull": {200},
    "esc02": {501},
    "lwsdisp": {200},
    "longreq": {100},
    "dblreq": {200},
    "semiuri": {200},
    "transports": {200},
    "mpart01": {501},  # MESSAGE is not a method we implement
    "badinv01": {400},
    "clerr": {400},
    "ncl": {400},
    "scalar02": {400},
    "quotbal": {400},
    "ltgtruri": {400},
    "lwsruri": {400},
    "lwsstart": {400},
    "trws": {400},
    "escruri": {400},
    "baddate": {100, 400},
    "regbadct": {400, 200},
    "badaspec": {200, 400},
    "baddn": {400},
    "badvers": {505},
    "mismatch01": {400},
    "mismatch02": {501, 400},
    "badbranch": {200, 400},
    "insuf": {400, None},
    "unkscm": {416},
    "novelsc": {416},
    "unksm2": {400},  # a registrar rejects a non-SIP AOR
    "bext01": {420},
    "invut": {415},
    "regaut01": {200},
    "multi01": {400},
    "mcl01": {400},
    "zeromf": {200},
    "cparam01": {200},
    "cparam02": {200},
    "regescrt": {200},
    "sdp01": {406, 400},
    "inv2543": {100},
    "test": {400, None},
}
RESPONSES_VALID = ["unreason", "noreason", "bcast"]
RESPONSES_INVALID = ["scalarlg", "bigcode"]
SOURCE = Peer("udp", "198.51.100.7", 5099)


def _load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def _ua() -> UserAgent:
    return UserAgent(host="192.0.2.1", port=5060, registrar_allow=lambda peer: True)


def test_every_file_is_graded() -> None:
    names = {p.stem for p in TORTURE.glob("*.dat")}
    assert names == set(REQUESTS) | set(RESPONSES_VALID) | set(RESPONSES_INVALID)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_verdict(name: str) -> None:
    ua = _ua()
    events = ua.receive(_load(name), SOURCE, 0.0)
    got = statuses(ua.take_outgoing())
    first = got[0] if got else None
    assert first in REQUESTS[name], f"{name}: responses {got}"
    if first == 100:
        assert [type(e) for e in events] == [IncomingCall]
    else:
        assert not any(isinstance(e, IncomingCall) for e in events)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_verdict_over_tcp(name: str) -> None:
    ua = _ua()
    ua.receive(_load(name), Peer("tcp", "198.51.100.7", 40000, conn_id=3), 0.0)
    for out in ua.take_outgoing():
        assert out.peer.conn_id == 3  # responses go back on the connection (§18.2.2)


@pytest.mark.parametrize("name", RESPONSES_VALID)
def test_valid_responses_parse_and_are_dropped(name: str) -> None:
    assert isinstance(parse_message(_load(name)), Response)
    ua = _ua()
    assert ua.receive(_load(name), SOURCE, 0.0) == []
    assert ua.take_outgoing() == []


@pytest.mark.parametrize("name", RESPONSES_INVALID)
def test_invalid_responses_raise_and_are_dropped(name: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(_load(name))
    ua = _ua()
    assert ua.receive(_load(name), SOURCE, 0.0) == []
    assert ua.take_outgoing() == []


def test_baddn_with_completed_header_section_is_still_400() -> None:
    ua = _ua()
    ua.receive(_load("baddn") + b"\r\n", SOURCE, 0.0)
    assert statuses(ua.take_outgoing()) == [400]


def test_dblreq_trailing_invite_is_discarded() -> None:
    msg = parse_message(_load("dblreq"))
    assert isinstance(msg, Request) and msg.method == "REGISTER" and msg.body == b""
    ua = _ua()
    events = ua.receive(_load("dblreq"), SOURCE, 0.0)
    assert len(ua.take_outgoing()) == 1
    assert not any(isinstance(e, IncomingCall) for e in events)


def test_escnull_registers_two_distinct_contacts() -> None:
    events = _ua().receive(_load("escnull"), SOURCE, 0.0)
    contacts = [e.contact for e in events if isinstance(e, Registered)]
    assert len(contacts) == 2 and len(set(contacts)) == 2


def test_contact_parameter_vs_uri_parameter() -> None:
    (header_param,) = [e for e in _ua().receive(_load("cparam01"), SOURCE, 0.0) if isinstance(e, Registered)]
    (uri_param,) = [e for e in _ua().receive(_load("cparam02"), SOURCE, 0.0) if isinstance(e, Registered)]
    assert "unknownparam" not in header_param.contact
    assert "unknownparam" in uri_param.contact


def test_semiuri_user_part_keeps_semicolon() -> None:
    msg = parse_message(_load("semiuri"))
    assert isinstance(msg, Request)
    from ivr.sip.message import parse_uri

    uri = parse_uri(msg.uri)
    assert uri.user == "user;par=u%40example.net" and uri.host == "example.com" and uri.params == {}


def test_mpart01_binary_body_framed_by_content_length() -> None:
    data = _load("mpart01")
    msg = parse_message(data)
    length = int(msg.headers.get("Content-Length") or 0)
    assert len(msg.body) == length and b"\x00" in msg.body


def test_inv2543_body_runs_to_end_of_datagram() -> None:
    msg = parse_message(_load("inv2543"))
    assert msg.headers.get("Content-Length") is None
    assert msg.body.startswith(b"v=0")
