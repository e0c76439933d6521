import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.media.rtp import RtpError, RtpPacket, RtpSender, RtpStats, parse_rtp


def header(
    *, pt: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 0x1234, marker: bool = False, b0: int = 0x80
) -> bytes:
    return struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)


def test_parse_basic() -> None:
    packet = parse_rtp(header(pt=8, seq=65535, ts=2**32 - 1, ssrc=0xDEADBEEF, marker=True) + b"abc")
    assert packet == RtpPacket(8, True, 65535, 2**32 - 1, 0xDEADBEEF, b"abc")


def test_parse_skips_csrcs_extension_and_padding() -> None:
    csrcs = struct.pack("!II", 1, 2)
    extension = struct.pack("!HH", 0xBEDE, 2) + b"\x00" * 8
    padding = b"\x00\x00\x03"
    data = header(b0=0x80 | 0x20 | 0x10 | 2) + csrcs + extension + b"payload" + padding
    assert parse_rtp(data).payload == b"payload"


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00\x00",  # short
        header(b0=0x40) + b"x",  # version 1
        header(b0=0xA0) + b"xy\x00",  # padding count zero
        header(b0=0xA0) + b"xy\x10",  # padding longer than the packet
        header(b0=0x83) + b"\x00" * 8,  # CSRC count past the end
        header(b0=0x90) + b"\x00\x00",  # truncated extension header
        header(b0=0x90) + struct.pack("!HH", 0, 5),  # extension longer than the packet
    ],
)
def test_parse_rejects(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_sender_numbers_and_wraps() -> None:
    sender = RtpSender(0, ssrc=7, sequence=65535, timestamp=2**32 - 100)
    first = parse_rtp(sender.packet(b"a" * 160, 160, marker=True))
    second = parse_rtp(sender.packet(b"\x0a\x80\x00\xa0", 160, payload_type=101))
    sender.skip(800)
    third = parse_rtp(sender.packet(b"c", 160))
    assert (first.sequence, first.timestamp, first.marker) == (65535, 2**32 - 100, True)
    assert (second.sequence, second.timestamp, second.marker) == (0, 60, False)
    assert (first.payload_type, second.payload_type) == (0, 101)
    assert (third.sequence, third.timestamp, third.ssrc) == (1, 60 + 160 + 800, 7)


def test_sender_random_initial_values() -> None:
    senders = [RtpSender(0) for _ in range(8)]
    assert len({s.ssrc for s in senders}) > 1
    assert len({s.sequence for s in senders}) > 1
    assert len({s.timestamp for s in senders}) > 1


def packet(seq: int, ts: int | None = None, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(0, False, seq % 65536, (seq * 160 if ts is None else ts) % 2**32, ssrc, b"")


def test_stats_counts_loss_duplicates_reordering_across_wrap() -> None:
    stats = RtpStats()
    order = [65530, 65531, 65533, 65532, 65532, 65534, 1, 2, 2, 3]  # 65535 and 0 lost
    for i, seq in enumerate(order):
        stats.update(packet(seq), i * 0.02)
    assert stats.received == 10
    assert stats.duplicate == 2
    assert stats.out_of_order == 1
    assert stats.expected == 10  # 65530 .. 3
    assert stats.lost == 2


def test_stats_jitter_zero_for_perfect_pacing_and_grows_with_delay_variation() -> None:
    steady = RtpStats()
    for i in range(100):
        steady.update(packet(i), 10.0 + i * 0.02)
    assert steady.jitter == pytest.approx(0.0, abs=1e-6)

    jittery = RtpStats()
    for i in range(100):
        jittery.update(packet(i), 10.0 + i * 0.02 + (0.01 if i % 2 else 0.0))
    # |D| = 80 timestamp units every packet: J converges to 80 (RFC 3550 A.8)
    assert jittery.jitter == pytest.approx(80.0, rel=0.01)
    assert jittery.jitter_seconds == pytest.approx(0.01, rel=0.01)


def test_stats_new_ssrc_and_restart_do_not_count_as_loss() -> None:
    stats = RtpStats()
    for i in range(5):
        stats.update(packet(100 + i), i * 0.02)
    for i in range(5):
        stats.update(packet(40000 + i, ssrc=2), 1 + i * 0.02)
    assert stats.lost == 0
    assert stats.expected == 10
    # a big sequence jump within one SSRC: believed after two sequential packets (RFC 3550 A.1)
    stats.update(packet(20000, ssrc=2), 2.0)
    stats.update(packet(20001, ssrc=2), 2.02)
    stats.update(packet(20002, ssrc=2), 2.04)
    assert stats.lost == 0


@given(st.binary(max_size=64))
def test_parse_arbitrary_bytes_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert len(packet.payload) <= len(data) - 12


@given(
    st.integers(0, 127),
    st.booleans(),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=200),
)
def test_sender_parse_round_trip(pt: int, marker: bool, seq: int, ts: int, payload: bytes) -> None:
    sender = RtpSender(pt, ssrc=99, sequence=seq, timestamp=ts)
    assert parse_rtp(sender.packet(payload, 160, marker=marker)) == RtpPacket(
        pt, marker, seq, ts, 99, payload
    )
