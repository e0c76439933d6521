"""The sans-I/O stream connection table: admission, caps, deadlines; and the framer's limits it relies on."""

from __future__ import annotations

import pytest

from ivr.sip.connections import CloseReason, ConnectionTable, Refusal, StreamLimits
from ivr.sip.message import SipTooLargeError, StreamFramer

from .helpers import request

LIMITS = StreamLimits(
    max_connections=3, max_per_source=2, header_timeout=2.0, body_timeout=3.0, idle_timeout=10.0
)


def test_admission_caps_per_source_and_in_total() -> None:
    table = ConnectionTable(LIMITS)
    assert table.admit("192.0.2.1", allowed=False) is Refusal.NOT_ALLOWED
    for conn_id in (1, 2):
        assert table.admit("192.0.2.1", allowed=True) is None
        table.opened(conn_id, "192.0.2.1", 0.0)
    assert table.admit("192.0.2.1", allowed=True) is Refusal.SOURCE_CAP
    assert table.admit("192.0.2.2", allowed=True) is None
    table.opened(3, "192.0.2.2", 0.0)
    assert table.admit("192.0.2.3", allowed=True) is Refusal.TOTAL_CAP
    table.closed(1)
    table.closed(1)  # twice (sweep, then the read loop's cleanup) is harmless
    assert table.count("192.0.2.1") == 1 and len(table) == 2
    assert table.admit("192.0.2.1", allowed=True) is None


def test_a_refused_source_is_logged_once_per_interval() -> None:
    table = ConnectionTable(StreamLimits(refusal_log_interval=60.0))
    assert [table.should_log_refusal("192.0.2.9", t) for t in (0.0, 1.0, 59.0, 60.0, 61.0)] == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert table.should_log_refusal("192.0.2.8", 61.0)  # per source


def test_header_timeout_counts_from_the_first_byte_not_the_last() -> None:
    table = ConnectionTable(LIMITS)
    table.opened(1, "192.0.2.1", 0.0)
    for second in range(5):  # a slow-loris: one byte a second keeps arriving
        table.received(1, float(second), messages=0, pending=second + 1, awaiting_body=False)
        expired = table.sweep(float(second))
        if second >= 2:
            assert expired == [(1, CloseReason.HEADER_TIMEOUT)]
            break
        assert expired == []
    else:
        pytest.fail("never expired")


def test_body_timeout_from_the_end_of_the_header_section() -> None:
    table = ConnectionTable(LIMITS)
    table.opened(1, "192.0.2.1", 0.0)
    table.received(1, 1.0, messages=0, pending=500, awaiting_body=True)
    assert table.sweep(3.9) == []  # past the header timeout, but the header section is complete
    assert table.sweep(4.0) == [(1, CloseReason.BODY_TIMEOUT)]


def test_a_completed_message_restarts_the_clock() -> None:
    table = ConnectionTable(LIMITS)
    table.opened(1, "192.0.2.1", 0.0)
    table.received(1, 1.0, messages=0, pending=10, awaiting_body=False)
    table.received(1, 2.5, messages=1, pending=0, awaiting_body=False)
    assert table.sweep(4.0) == []
    table.received(1, 5.0, messages=1, pending=3, awaiting_body=False)  # a message done, the next begun
    assert table.sweep(6.9) == []
    assert table.sweep(7.0) == [(1, CloseReason.HEADER_TIMEOUT)]


def test_idle_unless_a_call_uses_the_connection() -> None:
    table = ConnectionTable(LIMITS)
    table.opened(1, "192.0.2.1", 0.0)
    table.opened(2, "192.0.2.2", 0.0)
    table.bind_call("call-a", 2)
    assert table.sweep(10.0) == [(1, CloseReason.IDLE_TIMEOUT)]
    table.closed(1)
    assert table.sweep(100.0) == []
    table.release_call("call-a", 100.0)
    assert table.sweep(109.0) == []
    table.sent(2, 105.0)
    assert table.sweep(114.9) == []
    assert table.sweep(115.0) == [(2, CloseReason.IDLE_TIMEOUT)]


def test_sweep_interval_follows_the_shortest_timeout() -> None:
    assert StreamLimits(header_timeout=0.4, body_timeout=5, idle_timeout=5).sweep_interval == pytest.approx(
        0.1
    )
    assert StreamLimits().sweep_interval == 1.0


def test_framer_refuses_a_body_above_its_limit_with_413() -> None:
    framer = StreamFramer(max_body_bytes=1024)
    promise = request("INVITE", extra="", body=b"").replace(b"Content-Length: 0", b"Content-Length: 1000000")
    with pytest.raises(SipTooLargeError) as caught:
        framer.feed(promise)
    assert caught.value.status == 413
    assert caught.value.partial is not None  # enough of the request to answer it


def test_framer_reports_what_it_holds() -> None:
    framer = StreamFramer(max_header_bytes=2048, max_body_bytes=1024)
    whole = request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcd"
    head_end = whole.index(b"\r\n\r\n") + 4
    assert framer.feed(whole[:10]) == [] and framer.pending == 10 and not framer.awaiting_body
    assert framer.feed(whole[10 : head_end + 1]) == [] and framer.awaiting_body
    assert framer.feed(whole[head_end + 1 :]) == [whole]
    assert framer.pending == 0 and not framer.awaiting_body
    with pytest.raises(SipTooLargeError) as caught:
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 4096)
    assert caught.value.status == 513
