"""Fuzzing the RTP packet parser and what consumes parsed packets: receiver statistics, the jitter
buffer, the silence timeline (sequence/timestamp wrap-around) and the source latch (issue 12)."""

from __future__ import annotations

import struct

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.media.jitter import JitterBuffer
from ivr.media.latch import SourceLatch, Verdict
from ivr.media.rtp import RtpError, RtpPacket, RtpSender, RtpStats, parse_rtp
from ivr.media.timeline import Timeline
from tests.unit.fuzz.strategies import fuzz


@st.composite
def rtp_like(draw: st.DrawFn) -> bytes:
    """A header whose flags, CSRC count, extension length and padding count are drawn, then any payload;
    the declared lengths need not fit the packet."""
    b0 = draw(st.integers(0, 255))
    b1, seq = draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFF))
    header = struct.pack(
        "!BBHII", b0, b1, seq, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    )
    body = draw(st.binary(max_size=4 * 15))
    if b0 & 0x10:
        body += struct.pack("!HH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)))
        body += draw(st.binary(max_size=64))
    body += draw(st.binary(max_size=200))
    if b0 & 0x20:
        body += bytes([draw(st.integers(0, 255))])
    return (
        (header + body)[: draw(st.integers(0, len(header + body)))] if draw(st.booleans()) else header + body
    )


@fuzz(1000)
@given(st.binary(max_size=300) | rtp_like())
@example(b"\x90\x00" + b"\x00" * 10 + b"\x00\x00\xff\xff")  # extension claims 256 KiB
@example(b"\xa0\x00" + b"\x00" * 10 + b"\xff")  # padding longer than the packet
@example(b"\x8f\x00" + b"\x00" * 10)  # 15 CSRCs announced, none there
def test_parse_rtp_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert data[0] >> 6 == 2
    assert 0 <= packet.payload_type <= 127
    assert len(packet.payload) <= len(data) - 12
    assert packet.payload in data


@fuzz(300)
@given(
    st.integers(0, 127),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.binary(max_size=200), st.integers(0, 2**16), st.booleans()), max_size=5),
)
def test_sender_packets_parse_back(
    pt: int, ssrc: int, seq: int, ts: int, frames: list[tuple[bytes, int, bool]]
) -> None:
    sender = RtpSender(pt, ssrc=ssrc, sequence=seq, timestamp=ts)
    for i, (payload, samples, marker) in enumerate(frames):
        packet = parse_rtp(sender.packet(payload, samples, marker=marker))
        assert (packet.payload_type, packet.marker, packet.payload, packet.ssrc) == (
            pt,
            marker,
            payload,
            ssrc,
        )
        assert packet.sequence == (seq + i) % 65536


# Packets of one or two sources with sequence numbers near the wrap and arbitrary jumps.
packets = st.lists(
    st.builds(
        lambda ssrc, seq, ts: RtpPacket(0, False, seq, ts, ssrc, b"\xff" * 160),
        st.sampled_from([1, 2]),
        st.integers(65500, 65535) | st.integers(0, 40) | st.integers(0, 65535),
        st.integers(2**32 - 2000, 2**32 - 1) | st.integers(0, 2000) | st.integers(0, 2**32 - 1),
    ),
    max_size=60,
)


@fuzz(500)
@given(packets, st.lists(st.floats(0, 1.0), min_size=1, max_size=60))
def test_stats_never_raise_and_stay_sane(stream: list[RtpPacket], gaps: list[float]) -> None:
    stats = RtpStats()
    now = 0.0
    for i, packet in enumerate(stream):
        now += gaps[i % len(gaps)]
        stats.update(packet, now)
        assert stats.lost >= 0 and stats.jitter >= 0.0 and stats.duplicate <= stats.received
    assert stats.received == len(stream)


@fuzz(500)
@given(packets, st.integers(1, 6))
def test_jitter_buffer_loses_nothing_silently(stream: list[RtpPacket], depth: int) -> None:
    jb = JitterBuffer(depth)
    released: list[RtpPacket] = []
    for packet in stream:
        released += jb.push(packet)
        assert jb.held < depth  # a gap is given up once a packet `depth` past it waits
    released += jb.flush()
    assert jb.held == 0
    # Every packet pushed was released once or counted as dropped; none came out twice.
    assert len({id(p) for p in released}) == len(released)
    assert len(released) + jb.dropped == len(stream)
    assert jb.lost >= 0


@fuzz(500)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1) | st.integers(2**32 - 500, 2**32 - 1),
            st.sampled_from([0, 80, 160, 320, 65535]),
            st.floats(0, 2.0),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_timeline_fills_only_within_limits(steps: list[tuple[int, int, float, bool]]) -> None:
    timeline = Timeline()
    max_fill = round(0.24 * 8000)
    now = 10.0
    timeline.start(now)
    for ts, samples, wait, restart in steps:
        now += wait
        if restart:
            timeline.discontinuity()
        before = timeline.until
        fill = timeline.audio(ts, samples, now)
        assert 0 <= fill <= max_fill
        assert before is not None and timeline.until is not None and timeline.until >= before
        due = timeline.silence_due(now + wait)
        assert 0 <= due <= max_fill and due % 160 == 0
        check = timeline.next_check()
        assert check is not None


hosts = st.sampled_from(
    ["192.0.2.10", "::ffff:192.0.2.10", "198.51.100.7", "fe80::1%eth0", "0.0.0.0", "host", ""]
)


@fuzz(500)
@given(
    hosts,
    st.booleans(),
    st.lists(
        st.tuples(st.tuples(hosts, st.integers(0, 65535)), st.integers(0, 3), st.integers(0, 65535))
        | st.tuples(st.just(None), hosts, st.just(0)),
        max_size=40,
    ),
)
def test_latch_never_raises_and_holds_one_source(
    sdp_host: str, nat: bool, steps: list[tuple[object, object, int]]
) -> None:
    latch = SourceLatch(sdp_host, nat=nat, probation=3)
    for addr, ssrc, seq in steps:
        if addr is None:
            assert isinstance(ssrc, str)
            latch.reset(ssrc)  # a re-INVITE naming another host
            continue
        assert isinstance(addr, tuple) and isinstance(ssrc, int)
        held = latch.latched
        verdict = latch.check(addr, ssrc, seq)
        assert isinstance(verdict, Verdict)
        if held is not None:
            assert latch.latched == held  # once latched, only a reset changes the source
            assert verdict is (Verdict.ACCEPT if addr == held else Verdict.DROP)
        if verdict is Verdict.LATCH:
            assert latch.latched == addr
