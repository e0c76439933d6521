"""Admission before state: trunk allow-list, per-source limits, drain, digest auth; refusals are stateless."""

from __future__ import annotations

import hashlib

import pytest

from ivr.sip.admission import Admission, Limits, Refusal, Trunk
from ivr.sip.digest import Credentials, DigestAuthenticator, parse_authorization
from ivr.sip.events import CallEnded, IncomingCall, Peer
from ivr.sip.message import Response
from ivr.sip.useragent import UserAgent
from tests.unit.sip.helpers import ANSWER, CALLER, OFFER, request, responses, run_timers, statuses

STRANGER = Peer("udp", "203.0.113.66", 5060)
TRUNK = Trunk.from_cidrs("carrier", ["192.0.2.0/24"])


def _ua(limits: Limits | None = None, trunk: Trunk = TRUNK) -> UserAgent:
    return UserAgent(
        host="192.0.2.1", port=5060, admission=Admission([trunk], limits), registrar_allow=lambda p: True
    )


def _invite(n: int, via_host: str = "192.0.2.10:5070") -> bytes:
    return request("INVITE", call_id=f"c{n}", branch=f"z9hG4bK-{n}", body=OFFER, via_host=via_host)


def _assert_stateless(ua: UserAgent) -> None:
    assert ua.next_deadline() is None  # no Timer G/H/J, no dialog, nothing to retransmit
    assert ua.admission.live_calls == 0


# ---- the core, table-driven ------------------------------------------------------------------------------


def test_trunk_matching_by_source() -> None:
    admission = Admission(
        [Trunk.from_cidrs("a", ["10.0.0.0/8"]), Trunk.from_cidrs("b", ["10.1.0.0/16", "::1/128"])]
    )
    assert [
        (t.name if (t := admission.trunk_for(h)) else None)
        for h in ["10.1.2.3", "::1", "192.0.2.1", "nonsense"]
    ] == ["a", "b", None, None]


def test_token_bucket_refills_at_the_call_rate() -> None:
    admission = Admission(limits=Limits(call_rate=2.0, call_burst=3, max_unacked_per_source=100))
    results = [admission.check_invite("h", 0.0) for _ in range(4)]
    assert results == [None, None, None, Refusal(503, None, 5, "call-rate")]
    assert admission.check_invite("h", 0.5) is None  # one token back after 1/rate seconds
    assert admission.check_invite("h", 0.5) is not None
    assert admission.check_invite("other", 0.5) is None  # buckets are per source


def test_unacked_and_global_caps() -> None:
    admission = Admission(limits=Limits(max_calls=3, max_unacked_per_source=2))
    admission.opened("c1", "h")
    admission.opened("c2", "h")
    assert admission.check_invite("h", 0.0) == Refusal(503, None, 5, "unacked-per-source")
    admission.confirmed("c1")  # the ACK came: no longer outstanding, still live
    assert admission.check_invite("h", 0.0) is None
    admission.opened("c3", "other")
    assert admission.live_calls == 3
    assert admission.check_invite("third", 0.0) == Refusal(503, None, 5, "max-calls")
    for call_id in ("c1", "c2", "c3"):
        admission.closed(call_id)
    assert admission.live_calls == 0 and admission.unacked_from("h") == 0


def test_bucket_table_is_bounded() -> None:
    admission = Admission(limits=Limits(max_sources=10))
    for i in range(100):
        admission.check_invite(f"10.0.0.{i}", 0.0)
    assert len(admission._buckets) == 10


def test_trunk_credentials_not_in_repr() -> None:
    trunk = Trunk.from_cidrs("t", ["10.0.0.0/8"], Credentials("u", "hunter2"))
    assert "hunter2" not in repr(trunk)


# ---- the UA applies it before any state ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
def test_source_outside_every_trunk_gets_one_403_and_no_state(method: str) -> None:
    ua = _ua()
    data = request(method, body=OFFER if method == "INVITE" else b"")
    assert ua.receive(data, STRANGER, 0.0) == []
    assert statuses(ua.take_outgoing()) == [403]  # no 100 Trying before it
    _assert_stateless(ua)
    run_timers(ua, 40.0)
    assert ua.take_outgoing() == []  # never retransmitted
    # Each retransmission of the request gets one response, no more: no amplification.
    ua.receive(data, STRANGER, 0.5)
    assert statuses(ua.take_outgoing()) == [403]


def test_unacked_flood_from_one_source_is_capped_and_others_still_get_in() -> None:
    ua = _ua(Limits(max_unacked_per_source=3, call_rate=1000.0, call_burst=1000))
    admitted = []
    for n in range(10):
        events = ua.receive(_invite(n), CALLER, 0.0)
        admitted += [e.call_id for e in events if isinstance(e, IncomingCall)]
        for e in events:
            if isinstance(e, IncomingCall):
                ua.answer(e.call_id, ANSWER, 0.0)
    assert admitted == ["c0", "c1", "c2"]
    out = responses(ua.take_outgoing())
    busy = [r for r in out if r.status == 503]
    assert len(busy) == 7 and all(r.headers.get("Retry-After") == "5" for r in busy)
    other = Peer("udp", "192.0.2.99", 5060)
    events = ua.receive(_invite(99, via_host="192.0.2.99:5060"), other, 0.0)
    assert [type(e) for e in events] == [IncomingCall]
    # The flood never ACKs: each held call ends "no-ack" at 64*T1 and frees its slot.
    _, timer_events = run_timers(ua, 40.0)
    assert sorted(e.call_id for e in timer_events if isinstance(e, CallEnded) and e.cause == "no-ack") == [
        "c0",
        "c1",
        "c2",
    ]
    ua.take_outgoing()
    assert [type(e) for e in ua.receive(_invite(20), CALLER, 41.0)] == [IncomingCall]


def test_call_rate_per_source() -> None:
    ua = _ua(Limits(call_rate=1.0, call_burst=2))
    got = [len(ua.receive(_invite(n), CALLER, 0.0)) for n in range(3)]
    assert got == [1, 1, 0]
    assert statuses(ua.take_outgoing())[-1] == 503


def test_retransmitted_invite_of_an_admitted_call_is_not_counted_again() -> None:
    ua = _ua(Limits(call_rate=1.0, call_burst=1))
    assert len(ua.receive(_invite(1), CALLER, 0.0)) == 1
    ua.take_outgoing()
    assert ua.receive(_invite(1), CALLER, 0.1) == []
    assert statuses(ua.take_outgoing()) == [100]  # the transaction answers, the bucket is not asked


def test_draining_options_and_invite_503_calls_in_progress_go_on() -> None:
    ua = _ua()
    assert len(ua.receive(_invite(1), CALLER, 0.0)) == 1
    ua.answer("c1", ANSWER, 0.0)
    ua.take_outgoing()
    ua.draining = True
    ua.receive(request("OPTIONS", call_id="o1", branch="z9hG4bK-o1"), CALLER, 1.0)
    ua.receive(_invite(2), CALLER, 1.0)
    out = responses(ua.take_outgoing())
    assert [(r.status, r.headers.get("Retry-After")) for r in out] == [(503, "30"), (503, "30")]
    assert ua.admission.live_calls == 1  # c1 is untouched
    ua.draining = False
    ua.receive(request("OPTIONS", call_id="o2", branch="z9hG4bK-o2"), CALLER, 2.0)
    assert statuses(ua.take_outgoing()) == [200]


def test_overloaded_invites_and_options_503_with_retry_after_calls_in_progress_go_on() -> None:
    ua = _ua(Limits(retry_after=9))
    assert len(ua.receive(_invite(1), CALLER, 0.0)) == 1
    ua.answer("c1", ANSWER, 0.0)
    ua.take_outgoing()
    ua.overloaded = True
    assert ua.receive(_invite(2), CALLER, 1.0) == []  # no IncomingCall: no state, no CDR
    ua.receive(request("OPTIONS", call_id="o1", branch="z9hG4bK-o1"), CALLER, 1.0)
    out = responses(ua.take_outgoing())
    assert [(r.status, r.reason, r.headers.get("Retry-After")) for r in out] == [
        (503, "Overloaded", "9"),
        (503, "Overloaded", "9"),  # a dispatcher's probe: stop sending calls here for now
    ]
    assert ua.admission.live_calls == 1
    ua.overloaded = False
    assert len(ua.receive(_invite(3), CALLER, 2.0)) == 1
    ua.receive(request("OPTIONS", call_id="o2", branch="z9hG4bK-o2"), CALLER, 2.0)
    assert 200 in statuses(ua.take_outgoing())


# ---- digest on a trunk with credentials ------------------------------------------------------------------


def _authorize(challenge: Response, method: str, uri: str, password: str, nc: int = 1) -> str:
    params = parse_authorization(challenge.headers.get_all("WWW-Authenticate")[1])  # the MD5 one
    assert params is not None and params["algorithm"] == "MD5"
    md5 = hashlib.md5
    ha1 = md5(f"bob:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = md5(f"{method}:{uri}".encode()).hexdigest()
    resp = md5(f"{ha1}:{params['nonce']}:{nc:08x}:abc:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="bob", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce="abc"\r\n'
    )


@pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
def test_trunk_with_credentials_challenges_then_admits(method: str) -> None:
    ua = _ua(trunk=Trunk.from_cidrs("carrier", ["192.0.2.0/24"], Credentials("bob", "pw-1")))
    body = OFFER if method == "INVITE" else b""
    extra = "Expires: 120\r\n" if method == "REGISTER" else ""
    assert ua.receive(request(method, body=body, extra=extra), CALLER, 0.0) == []
    (challenge,) = responses(ua.take_outgoing())
    assert challenge.status == 401
    assert [v.split(",")[2].strip() for v in challenge.headers.get_all("WWW-Authenticate")] == [
        "algorithm=SHA-256",
        "algorithm=MD5",
    ]
    _assert_stateless(ua)
    uri = "sip:ivr@192.0.2.1"
    wrong = _authorize(challenge, method, uri, "guess")
    ua.receive(request(method, cseq=2, branch="z9hG4bK-2", body=body, extra=extra + wrong), CALLER, 1.0)
    assert statuses(ua.take_outgoing()) == [401]
    right = _authorize(challenge, method, uri, "pw-1")
    events = ua.receive(
        request(method, cseq=3, branch="z9hG4bK-3", body=body, extra=extra + right), CALLER, 1.0
    )
    assert len(events) == 1
    # The same Authorization again (a replay with a fresh branch): refused.
    ua.receive(request(method, cseq=4, branch="z9hG4bK-4", body=body, extra=extra + right), CALLER, 1.0)
    assert statuses(ua.take_outgoing())[-1] == 401


DECISIONS = [
    # method, source, draining, expected (status, cause) or None
    ("OPTIONS", "203.0.113.66", False, (403, "not-in-trunk")),  # a scanner's probe learns nothing
    ("OPTIONS", "192.0.2.10", False, None),  # a dispatcher's probe: answered, never challenged
    ("OPTIONS", "192.0.2.10", True, (503, "draining")),
    ("INVITE", "203.0.113.66", False, (403, "not-in-trunk")),
    ("INVITE", "203.0.113.66", True, (403, "not-in-trunk")),  # the allow-list comes first
    ("REGISTER", "203.0.113.66", False, (403, "not-in-trunk")),
    ("INVITE", "192.0.2.10", True, (503, "draining")),
    ("REGISTER", "192.0.2.10", True, None),  # a registrar keeps working while calls drain
    ("INVITE", "192.0.2.10", False, None),
    ("BYE", "203.0.113.66", False, None),  # in/out-of-dialog handling is the UA's (481)
]


@pytest.mark.parametrize(("method", "source", "draining", "expected"), DECISIONS)
def test_decide_order(method: str, source: str, draining: bool, expected: tuple[int, str] | None) -> None:
    admission = Admission([TRUNK])
    refusal = admission.decide(
        method, "sip:ivr@192.0.2.1", [], source, 0.0, DigestAuthenticator("ivr"), draining=draining
    )
    assert (None if refusal is None else (refusal.status, refusal.cause)) == expected
    if refusal is not None and refusal.status == 503:
        assert refusal.retry_after == 30


def test_options_refused_registers_and_stray_requests_leave_no_transaction_behind() -> None:
    ua = _ua()
    for n in range(100):
        ua.receive(request("OPTIONS", call_id=f"o{n}", branch=f"z9hG4bK-o{n}"), STRANGER, 0.0)
    assert set(statuses(ua.take_outgoing())) == {403}
    too_brief = request("REGISTER", extra="Expires: 5\r\n", uri="sip:192.0.2.1")
    ua.receive(too_brief, CALLER, 0.0)
    (brief,) = responses(ua.take_outgoing())
    assert (brief.status, brief.headers.get("Min-Expires")) == (423, "60")
    # Requests for dialogs or transactions that do not exist (a scanner's or a spoofer's): one 481 each.
    for n in range(50):
        ua.receive(request("BYE", call_id=f"b{n}", branch=f"z9hG4bK-b{n}", to_tag="x"), STRANGER, 0.0)
        ua.receive(request("CANCEL", call_id=f"k{n}", branch=f"z9hG4bK-k{n}"), STRANGER, 0.0)
        ua.receive(request("INFO", call_id=f"i{n}", branch=f"z9hG4bK-i{n}"), STRANGER, 0.0)
    assert statuses(ua.take_outgoing()) == [481] * 150
    assert ua.next_deadline() is None and ua._server == {}


def test_a_token_is_a_call_the_401_round_trip_costs_none() -> None:
    trunk = Trunk.from_cidrs("carrier", ["192.0.2.0/24"], Credentials("bob", "pw-1"))
    ua = _ua(Limits(call_rate=0.001, call_burst=1), trunk=trunk)
    for n in range(5):  # unauthenticated attempts: one stateless 401 each, no token spent
        ua.receive(_invite(n), CALLER, 0.0)
    challenges = responses(ua.take_outgoing())
    assert {r.status for r in challenges} == {401}
    uri = "sip:ivr@192.0.2.1"
    first = request(
        "INVITE",
        call_id="c10",
        branch="z9hG4bK-10",
        body=OFFER,
        extra=_authorize(challenges[0], "INVITE", uri, "pw-1"),
    )
    assert [type(e) for e in ua.receive(first, CALLER, 0.1)] == [IncomingCall]
    second = request(
        "INVITE",
        call_id="c11",
        branch="z9hG4bK-11",
        body=OFFER,
        extra=_authorize(challenges[0], "INVITE", uri, "pw-1", nc=2),
    )
    ua.take_outgoing()
    assert ua.receive(second, CALLER, 0.2) == []
    (busy,) = responses(ua.take_outgoing())
    assert (busy.status, busy.headers.get("Retry-After")) == (503, "5")  # the bucket held one call
