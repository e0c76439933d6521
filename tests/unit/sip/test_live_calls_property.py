"""Property: after any sequence of SIP events, with the timers run to completion, no call is left alive.

An app like the Bridge keeps a registry of calls (added on IncomingCall, removed on CallEnded/CallCancelled);
the UA core keeps dialogs, transactions and the admission counts. Both must come back to zero, whatever the
peer and the app did, in whatever order, including retransmissions, garbage and actions on ended calls.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.admission import Admission, Limits
from ivr.sip.events import CallCancelled, CallEnded, IncomingCall, SipEvent
from ivr.sip.message import Response, parse_message
from ivr.sip.useragent import UserAgent
from tests.unit.sip.helpers import ANSWER, CALLER, OFFER, request

CALL_IDS = ["a", "b", "c"]

Op = tuple[str, int, int]  # (kind, call index, variant)
KINDS = [
    "invite",
    "invite-again",
    "ack",
    "cancel",
    "bye",
    "reinvite",
    "answer",
    "ring",
    "reject",
    "hangup",
    "garbage",
    "wait",
    "bye-response",
]
ops = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, len(CALL_IDS) - 1), st.integers(0, 3)), max_size=40
)


class _App:
    """The Bridge's bookkeeping, reduced to the registry of live calls."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.started = 0
        self.ended = 0

    def feed(self, events: list[SipEvent]) -> None:
        for event in events:
            if isinstance(event, IncomingCall):
                assert event.call_id not in self.live
                self.live.add(event.call_id)
                self.started += 1
            elif isinstance(event, CallEnded | CallCancelled) and event.call_id in self.live:
                self.live.discard(event.call_id)
                self.ended += 1


def _step(ua: UserAgent, app: _App, op: Op, now: float, tags: dict[str, str]) -> None:
    kind, index, variant = op
    call_id = CALL_IDS[index]
    branch = f"z9hG4bK-{call_id}-{variant}"
    if kind in ("invite", "invite-again"):
        branch = f"z9hG4bK-{call_id}-inv" if kind == "invite-again" else branch
        app.feed(ua.receive(request("INVITE", call_id=call_id, branch=branch, body=OFFER), CALLER, now))
    elif kind == "ack":
        app.feed(
            ua.receive(request("ACK", call_id=call_id, to_tag=tags.get(call_id), branch=branch), CALLER, now)
        )
    elif kind == "cancel":
        app.feed(ua.receive(request("CANCEL", call_id=call_id, branch=f"z9hG4bK-{call_id}-inv"), CALLER, now))
    elif kind in ("bye", "reinvite"):
        method = "BYE" if kind == "bye" else "INVITE"
        data = request(
            method, call_id=call_id, cseq=2 + variant, to_tag=tags.get(call_id, "x"), branch=branch
        )
        app.feed(ua.receive(data, CALLER, now))
    elif kind == "answer":
        ua.answer(call_id, ANSWER, now)
    elif kind == "ring":
        ua.ring(call_id, now)
    elif kind == "reject":
        ua.reject(call_id, 486, now)
    elif kind == "hangup":
        ua.hangup(call_id, now)
    elif kind == "garbage":
        app.feed(ua.receive(b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", CALLER, now))
    elif kind == "bye-response":
        _answer_our_requests(ua, app, now, status=200 if variant else 481)
    app.feed(ua.take_events())
    for out in ua.take_outgoing():
        if out.data.startswith(b"SIP/2.0 400"):
            continue  # our 400 to the garbage echoes its broken headers
        msg = parse_message(out.data)
        if isinstance(msg, Response) and msg.to_tag and msg.call_id in CALL_IDS:
            tags.setdefault(msg.call_id, msg.to_tag)
        elif not isinstance(msg, Response) and msg.method in ("BYE", "INVITE", "UPDATE"):
            ua._pending_requests.append(out.data)  # type: ignore[attr-defined]


def _answer_our_requests(ua: UserAgent, app: _App, now: float, status: int) -> None:
    pending: list[bytes] = getattr(ua, "_pending_requests", [])
    for data in pending:
        req = parse_message(data)
        if isinstance(req, Response):
            continue
        head = [f"SIP/2.0 {status} X"] + [
            f"{name}: {value}"
            for name in ("Via", "From", "To", "Call-ID", "CSeq")
            for value in req.headers.get_all(name)
        ]
        app.feed(ua.receive(("\r\n".join([*head, "Content-Length: 0", "", ""])).encode(), CALLER, now))
    pending.clear()


@settings(max_examples=300, deadline=None)
@given(ops)
def test_live_call_count_returns_to_zero(sequence: list[Op]) -> None:
    ua = UserAgent(
        host="192.0.2.1",
        port=5060,
        admission=Admission(limits=Limits(max_unacked_per_source=2, call_burst=5)),
    )
    ua._pending_requests = []  # type: ignore[attr-defined]
    app = _App()
    tags: dict[str, str] = {}
    now = 0.0
    for op in sequence:
        now += 5.0 if op[0] == "wait" else 0.01
        _step(ua, app, op, now, tags)
    # Whatever the app still holds, it hangs up (as Bridge.drain does); then every timer runs out.
    for call_id in list(app.live):
        ua.hangup(call_id, now)
    for _ in range(10000):
        deadline = ua.next_deadline()
        if deadline is None:
            break
        app.feed(ua.tick(deadline))
        ua.take_outgoing()
    assert ua.next_deadline() is None
    assert app.live == set() and app.started == app.ended
    assert ua.admission.live_calls == 0 and ua.admission._unacked_per_source == {}
    assert ua._calls == {} and ua._server == {} and ua._client == {}
    assert not [note for note in ua.take_diagnostics() if "internal error" in note]
