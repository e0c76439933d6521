"""Fuzzing the RFC 4733 telephone-event receiver and encoder (issue 12).

Contracts: `DtmfReceiver.feed` never raises, whatever the payload; a digit it reports is one of the 16 DTMF
events with its §2.3 fields in range; a packet repeated at once (a retransmission, or the three end packets
of §2.5.1.4) is never a second digit; `encode_event` refuses bad arguments with ValueError only.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.media.dtmf import EVENT_CODES, DtmfReceiver, encode_event
from ivr.media.rtp import RtpError, RtpPacket, parse_rtp
from tests.unit.fuzz.strategies import fuzz

payloads = st.binary(max_size=12) | st.builds(
    lambda code, flags, duration, tail: bytes([code, flags]) + duration.to_bytes(2, "big") + tail,
    st.integers(0, 20) | st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
)
timestamps = st.sampled_from([0, 160, 0xFFFF, 0xFFFF * 2, 2**32 - 1, 2**32 - 0xFFFF]) | st.integers(
    0, 2**32 - 1
)


@fuzz(1000)
@given(st.lists(st.tuples(timestamps, payloads), max_size=30))
@example(
    [(2**32 - 1, b"\x05\x0a\xff\xff"), (0xFFFE, b"\x05\x0a\x00\xa0")]
)  # a continued segment across the wrap
def test_feed_never_raises_and_reports_real_digits(packets: list[tuple[int, bytes]]) -> None:
    receiver = DtmfReceiver()
    for ts, payload in packets:
        packet = RtpPacket(101, False, 1, ts, 7, payload)
        digit = receiver.feed(packet)
        # The same packet again (a retransmission, or one of the three end packets) is never a second digit.
        assert receiver.feed(packet) is None
        if digit is not None:
            assert digit.digit in EVENT_CODES
            assert 0 <= digit.volume <= 63 and 0 <= digit.duration <= 0xFFFF


@fuzz(500)
@given(st.binary(max_size=40))
def test_wire_bytes_through_rtp_then_dtmf(data: bytes) -> None:
    receiver = DtmfReceiver()
    try:
        packet = parse_rtp(b"\x80\x65\x00\x01\x00\x00\x00\xa0\x00\x00\x00\x07" + data)
    except RtpError:
        return
    digit = receiver.feed(packet)
    assert digit is None or digit.digit in EVENT_CODES


@fuzz(300)
@given(st.text(max_size=3), st.booleans(), st.integers(-5, 70), st.integers(-5, 0x10005))
def test_encode_event_refuses_with_value_error_only(
    digit: str, end: bool, volume: int, duration: int
) -> None:
    try:
        payload = encode_event(digit, end, volume, duration)
    except ValueError:
        assert digit.upper() not in EVENT_CODES or not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF
        return
    fed = DtmfReceiver().feed(RtpPacket(101, False, 1, 160, 7, payload))
    assert fed is not None and fed.digit == digit.upper() and (fed.volume, fed.duration) == (volume, duration)
