"""Fuzzing the SIP parsers (message, URI/name-addr/Via values, stream framing) and the UAS core (issue 12).

Contracts: `parse_message` and `StreamFramer.feed` raise only `SipParseError` (and subclasses); the value
parsers the same; `UserAgent.receive`/`tick` never raise and never hit their internal-error guard, and every
dialog ends (and is collected) once the app has let go of its calls and all timers have run.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.sip.events import CallCancelled, CallEnded, IncomingCall, Peer
from ivr.sip.message import (
    Response,
    SipParseError,
    SipTooLargeError,
    StreamFramer,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    serialize,
)
from ivr.sip.uri import parse_params, split_outside
from ivr.sip.useragent import UserAgent
from tests.tools import SHARED
from tests.unit.fuzz.strategies import as_text, fuzz, mutated, nasty, wire
from tests.unit.sip.helpers import ANSWER, CALLER, OFFER, request

TORTURE = sorted((SHARED / "sip-torture").glob("*.dat"))
OWN = [
    request("INVITE", body=OFFER),
    request("ACK", to_tag="t1"),
    request("BYE", to_tag="t1", cseq=2),
    request("CANCEL"),
    request("OPTIONS"),
    request("REGISTER", extra="Expires: 60\r\n"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
]
STATUS_LINE = re.compile(rb"SIP/2\.0 [1-6]\d\d [^\r\n]*\r\n")
SEEDS = [p.read_bytes() for p in TORTURE] + OWN
VALUE_SEEDS = [
    b"sip:user;par=u%40example.net:pass@[2001:db8::1]:5060;transport=tcp;lr?subject=x",
    b'"Bob \\"B\\"" <sip:bob@example.com;maddr=1.2.3.4>;tag=abc;q=0.5',
    b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport;received=203.0.113.1",
    b"tel:+1-555-0100",
    b"<sip:a@b>, <sip:c@d>;expires=60",
]


def test_the_torture_seeds_are_there() -> None:
    assert len(TORTURE) >= 40  # a missing directory would quietly shrink the seeds to our own messages


def _parse_or_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599 and exc.reason
        # The parser's last-resort wrapper turns a stray ValueError/IndexError into SipParseError, but without
        # the partial request that lets the UAS answer 400: reaching it means a check is missing.
        assert not exc.reason.startswith("malformed message ("), exc.__cause__
        return
    # What parsed must be usable: the accessors the UAS reads, and a serialization that parses again.
    _ = (msg.call_id, msg.cseq, msg.top_via, msg.via_branch, msg.from_tag, msg.to_tag)
    with contextlib.suppress(SipParseError):
        parse_message(serialize(msg))


@fuzz(1000)
@given(wire(SEEDS, max_size=800))
@example(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nCSeq: " + b"9" * 5000 + b" INVITE\r\n\r\n")
def test_parse_message_raises_only_sip_parse_error(data: bytes) -> None:
    _parse_or_error(data)


@fuzz(500)
@given(mutated(VALUE_SEEDS), st.sampled_from(["uri", "name-addr", "via", "params", "split"]))
def test_value_parsers_raise_only_sip_parse_error(data: bytes, which: str) -> None:
    text = as_text(data)
    try:
        if which == "uri":
            parse_uri(text)
        elif which == "name-addr":
            parse_name_addr(text)
        elif which == "via":
            parse_via(text)
        elif which == "params":
            parse_params(";" + text, what="URI")
            parse_params(";" + text, what="Via")
        else:
            split_outside(text, ",")
    except SipParseError:
        pass


@fuzz(500)
@given(st.lists(wire(SEEDS, max_size=300), min_size=1, max_size=4), st.integers(1, 200))
@example([b"INVITE sip:a@b SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"], 7)
@example([b"INVITE sip:a@b SIP/2.0\r\nl: \xb2\r\n\r\n"], 50)
def test_stream_framer_raises_only_sip_parse_error(messages: list[bytes], chunk: int) -> None:
    stream = b"\r\n".join(messages)
    framer = StreamFramer()
    try:
        for at in range(0, len(stream), chunk):
            for framed in framer.feed(stream[at : at + chunk]):
                _parse_or_error(framed)
    except SipParseError as exc:
        assert exc.status in (400, 413, 513)


def _no_internal_error(ua: UserAgent) -> None:
    notes = ua.take_diagnostics()
    assert not [n for n in notes if n.startswith("internal error")], notes


@fuzz(1000)
@given(wire(SEEDS, max_size=800))
@example(request("INVITE", body=OFFER, via_host="192.0.2.10:5070;rport=" + "9" * 5000))
@example(request("INVITE", body=OFFER, via_host="192.0.2.10:5070;rport=99999"))
@example(request("INVITE", body=OFFER).replace(b"CSeq: 1 ", b"CSeq: " + b"9" * 5000 + b" "))
def test_receive_answers_or_drops_and_keeps_serving(data: bytes) -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(data, CALLER, 0.0)
    sent = ua.take_outgoing()
    for out in sent:
        # One datagram in, at most a response out (a 400 copies only what the request had: it may lack From).
        assert STATUS_LINE.match(out.data), out.data[:80]
    try:
        parse_message(data)
    except SipParseError as exc:
        # A malformed request that says where to answer gets its 400 (505, 413, 513), statelessly (§18.2.2).
        if exc.partial is not None and exc.partial.method != "ACK" and "Via" in exc.partial.headers:
            assert [out.data.split(b" ", 2)[1] for out in sent] == [str(exc.status).encode()], exc
    ua.tick(100.0)
    _no_internal_error(ua)
    # Still serving: a well-formed INVITE afterwards is a call.
    events = ua.receive(request("INVITE", call_id="after", branch="z9hG4bK-after", body=OFFER), CALLER, 101.0)
    assert [type(e) for e in events] == [IncomingCall]
    _no_internal_error(ua)


# ---- sequences: INVITE/ACK/BYE/CANCEL/garbage interleaved with the app's answers and timers

CALL_IDS = ["c0", "c1", "c2"]
step = st.one_of(
    st.tuples(st.sampled_from(["invite", "ack", "bye", "cancel", "reinvite"]), st.sampled_from(CALL_IDS)),
    st.tuples(st.sampled_from(["answer", "reject", "hangup", "ring"]), st.sampled_from(CALL_IDS)),
    st.tuples(st.just("tick"), st.sampled_from([0.1, 0.5, 4.0, 32.0, 40.0])),
    st.tuples(st.just("garbage"), wire(SEEDS, max_size=300)),
    # One of the caller's own requests for a call in progress, with one header line's value mangled.
    st.tuples(
        st.just("mangled"),
        st.tuples(
            st.sampled_from(["invite", "ack", "bye", "cancel", "reinvite"]),
            st.sampled_from(CALL_IDS),
            st.integers(0, 12),
            nasty,
        ),
    ),
)


def mangle(data: bytes, line: int, value: bytes) -> bytes:
    lines = data.split(b"\r\n")
    i = line % len(lines)
    name, colon, _ = lines[i].partition(b":")
    lines[i] = name + colon + b" " + value if colon else value
    return b"\r\n".join(lines)


class Caller:
    """The far end reduced to what the sequence needs: fresh branches, CSeqs and the tags our UAS gave."""

    def __init__(self) -> None:
        self.n = 0
        self.cseq: dict[str, int] = {}
        self.to_tag: dict[str, str] = {}

    def message(self, kind: str, call_id: str) -> bytes:
        self.n += 1
        branch = f"z9hG4bK-{self.n}"
        tag = self.to_tag.get(call_id)
        if kind == "invite":
            self.cseq[call_id] = self.cseq.get(call_id, 0) + 1
            return request("INVITE", call_id=call_id, cseq=self.cseq[call_id], branch=branch, body=OFFER)
        if kind == "reinvite":
            self.cseq[call_id] = self.cseq.get(call_id, 0) + 1
            return request(
                "INVITE", call_id=call_id, cseq=self.cseq[call_id], branch=branch, to_tag=tag, body=OFFER
            )
        if kind == "ack":
            return request("ACK", call_id=call_id, cseq=self.cseq.get(call_id, 1), branch=branch, to_tag=tag)
        if kind == "cancel":
            # A CANCEL carries the INVITE's branch and CSeq number (RFC 3261 §9.1).
            return request(
                "CANCEL", call_id=call_id, cseq=self.cseq.get(call_id, 1), branch=f"z9hG4bK-{self.n - 1}"
            )
        self.cseq[call_id] = self.cseq.get(call_id, 0) + 1
        return request("BYE", call_id=call_id, cseq=self.cseq[call_id], branch=branch, to_tag=tag)

    def heard(self, ua: UserAgent) -> None:
        for out in ua.take_outgoing():
            try:
                msg = parse_message(out.data)
            except SipParseError:
                continue  # a 400 to garbage copies only what it was sent: it may lack From or CSeq
            if isinstance(msg, Response) and msg.to_tag and msg.call_id in CALL_IDS:
                self.to_tag[msg.call_id] = msg.to_tag


def _drain_timers(ua: UserAgent, caller: Caller, now: float) -> tuple[float, list[object]]:
    events: list[object] = []
    for _ in range(10_000):
        deadline = ua.next_deadline()
        if deadline is None:
            return now, events
        now = max(now, deadline)
        events += ua.tick(now)
        caller.heard(ua)
    raise AssertionError("timers never stop")


@fuzz(400)
@given(st.lists(step, max_size=25))
def test_sequences_never_raise_and_every_dialog_ends(steps: list[tuple[str, object]]) -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    caller = Caller()
    now = 0.0
    started: set[str] = set()
    ended: set[str] = set()

    def note(events: Sequence[object]) -> None:
        for e in events:
            if isinstance(e, IncomingCall):
                started.add(e.call_id)
            elif isinstance(e, CallEnded | CallCancelled):
                ended.add(e.call_id)

    for kind, arg in steps:
        if kind == "tick":
            assert isinstance(arg, float)
            now += arg
            note(ua.tick(now))
        elif kind == "garbage":
            assert isinstance(arg, bytes)
            note(ua.receive(arg, Peer("udp", "192.0.2.99", 5999), now))
        elif kind in ("answer", "reject", "hangup", "ring"):
            assert isinstance(arg, str)
            if kind == "answer":
                ua.answer(arg, ANSWER, now)
            elif kind == "reject":
                ua.reject(arg, 486, now)
            elif kind == "hangup":
                ua.hangup(arg, now)
            else:
                ua.ring(arg, now)
        elif kind == "mangled":
            assert isinstance(arg, tuple)
            what, call_id, line, value = arg
            note(ua.receive(mangle(caller.message(what, call_id), line, value), CALLER, now))
        else:
            assert isinstance(arg, str)
            note(ua.receive(caller.message(kind, arg), CALLER, now))
        note(ua.take_events())
        caller.heard(ua)
        _no_internal_error(ua)
    # The app lets go of every call it was offered, then all timers run out.
    for call_id in sorted(started):
        ua.hangup(call_id, now)
        caller.heard(ua)
    note(ua.take_events())
    now, events = _drain_timers(ua, caller, now)
    note(events)
    note(ua.take_events())
    _no_internal_error(ua)
    assert started <= ended, f"calls that never ended: {started - ended}"
    assert ua._calls == {} and ua._server == {} and ua._client == {}  # dialogs and transactions collected


# ---- what the fuzzing found, as plain regressions

HUGE_LENGTH = b"INVITE sip:ivr@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bK-1\r\n" + (
    b"From: <sip:a@192.0.2.10>;tag=1\r\nTo: <sip:ivr@192.0.2.1>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n"
)


def test_a_content_length_past_int_digits_is_413_not_a_value_error() -> None:
    # int() refuses over 4,300 digits with ValueError, which escaped StreamFramer.feed (issue 12).
    try:
        StreamFramer().feed(HUGE_LENGTH)
    except SipTooLargeError as exc:
        assert exc.status == 413 and exc.partial is not None and exc.partial.method == "INVITE"
    else:
        raise AssertionError("no error")
    try:
        parse_message(HUGE_LENGTH)
    except SipTooLargeError as exc:
        assert exc.status == 413 and exc.reason == "Content-Length too large"
    else:
        raise AssertionError("no error")


def test_a_cseq_or_rport_past_int_digits_is_answered() -> None:
    # A 5,000-digit CSeq reached parse_message's last-resort wrapper (no partial request: no 400 went out);
    # a 5,000-digit rport raised inside the UAS (its internal-error guard: no answer at all) (issue 12).
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(
        request("INVITE", body=OFFER).replace(b"CSeq: 1 ", b"CSeq: " + b"9" * 5000 + b" "), CALLER, 0.0
    )
    (out,) = ua.take_outgoing()
    assert out.data.startswith(b"SIP/2.0 400 CSeq number too large\r\n")
    via = "192.0.2.10:5070;rport=" + "9" * 5000
    events = ua.receive(request("INVITE", body=OFFER, via_host=via, branch="z9hG4bK-2"), CALLER, 0.0)
    assert [type(e) for e in events] == [IncomingCall]
    (trying,) = ua.take_outgoing()
    assert trying.data.startswith(b"SIP/2.0 100 ") and trying.peer.port == 5070  # the sent-by port
    _no_internal_error(ua)


def test_a_stale_bye_does_not_end_a_new_call_with_the_same_call_id() -> None:
    # Found by test_sequences_never_raise_and_every_dialog_ends at IVR_FUZZ_EXAMPLES=20000 (issue 12).
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", call_id="c0", body=OFFER), CALLER, 0.0)
    ua.answer("c0", ANSWER, 0.0)
    assert [e.cause for e in ua.tick(32.0) if isinstance(e, CallEnded)] == ["no-ack"]  # and our BYE goes out
    again = ua.receive(request("INVITE", call_id="c0", cseq=2, branch="z9hG4bK-2", body=OFFER), CALLER, 32.0)
    assert [type(e) for e in again] == [IncomingCall]
    assert ua.tick(64.0) == []  # Timer F of the first call's BYE: nothing to do with the new call
    ua.reject("c0", 486, 64.0)
    _drain_timers(ua, Caller(), 64.0)
    assert ua._server == {} and ua._calls == {}
