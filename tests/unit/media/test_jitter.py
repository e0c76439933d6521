import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.media.jitter import JitterBuffer
from ivr.media.rtp import RtpPacket


def pkt(seq: int) -> RtpPacket:
    seq %= 65536
    return RtpPacket(0, False, seq, seq * 160, 1, bytes([seq & 0xFF]))


def run(buffer: JitterBuffer, seqs: list[int]) -> list[list[int]]:
    return [[p.sequence for p in buffer.push(pkt(s))] for s in seqs]


def test_in_order_released_immediately() -> None:
    assert run(JitterBuffer(), [10, 11, 12, 13]) == [[10], [11], [12], [13]]


def test_reordered_packet_waits_for_the_missing_one() -> None:
    assert run(JitterBuffer(), [10, 12, 11, 13]) == [[10], [], [11, 12], [13]]


def test_duplicates_and_late_packets_dropped() -> None:
    buffer = JitterBuffer()
    assert run(buffer, [10, 11, 11, 13, 13, 12, 10, 14]) == [[10], [11], [], [], [], [12, 13], [], [14]]
    assert buffer.dropped == 3
    assert buffer.lost == 0


def test_gap_skipped_once_depth_packets_past_it() -> None:
    buffer = JitterBuffer(depth=3)
    assert run(buffer, [10, 12, 13, 14, 15]) == [[10], [], [], [12, 13, 14], [15]]
    assert buffer.lost == 1
    assert run(buffer, [11]) == [[]]  # arrived after it was given up: too late


def test_burst_loss_beyond_depth_released_at_once() -> None:
    buffer = JitterBuffer(depth=3)
    assert run(buffer, [1, 2, 9, 10]) == [[1], [2], [9], [10]]
    assert buffer.lost == 6


def test_wrap_around() -> None:
    assert run(JitterBuffer(), [65534, 0, 65535, 1]) == [[65534], [], [65535, 0], [1]]


def test_flush_returns_held_packets_in_order() -> None:
    buffer = JitterBuffer(depth=5)
    assert run(buffer, [65534, 1, 0]) == [[65534], [], []]
    assert [p.sequence for p in buffer.flush()] == [0, 1]
    assert buffer.lost == 1
    assert buffer.flush() == []
    assert run(buffer, [2]) == [[2]]


def test_sender_restart_far_behind_needs_two_sequential_packets() -> None:
    buffer = JitterBuffer()
    assert run(buffer, [30000, 30001]) == [[30000], [30001]]
    assert run(buffer, [500]) == [[]]  # one stray packet is dropped
    assert run(buffer, [501, 502]) == [[501], [502]]


def test_sender_restart_far_ahead() -> None:
    buffer = JitterBuffer()
    assert run(buffer, [100, 101, 20000, 20001]) == [[100], [101], [20000], [20001]]


def test_reset_forgets_the_stream() -> None:
    buffer = JitterBuffer()
    run(buffer, [100, 102])
    buffer.reset()
    assert run(buffer, [7]) == [[7]]


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(depth=0)


@given(st.integers(0, 65535), st.lists(st.integers(-4, 4), min_size=1, max_size=60), st.integers(1, 5))
def test_output_is_ordered_unique_and_from_input(start: int, jitter: list[int], depth: int) -> None:
    # each packet displaced by a few places, some duplicated or lost: what comes out is ordered and unique
    order = sorted(range(len(jitter)), key=lambda i: i + jitter[i])
    arrivals = [(start + i) % 65536 for i in order if jitter[i] != 4]
    arrivals += [arrivals[k] for k in range(0, len(arrivals), 7)]
    buffer = JitterBuffer(depth)
    out = [p.sequence for s in arrivals for p in buffer.push(pkt(s))] + [p.sequence for p in buffer.flush()]
    unwrapped = [(s - start) % 65536 for s in out]
    assert unwrapped == sorted(set(unwrapped))
    assert set(out) <= set(arrivals)
    if all(j == 0 for j in jitter):
        assert out == arrivals[: len(jitter)]


def test_held_counts_waiting_packets() -> None:
    buffer = JitterBuffer()
    run(buffer, [1, 3, 4])
    assert buffer.held == 2
    buffer.flush()
    assert buffer.held == 0


def test_next_in_order_takes_only_the_expected_packet_with_nothing_held() -> None:
    buffer = JitterBuffer()
    assert not buffer.next_in_order(10)  # no stream yet: the first packet goes through push
    assert run(buffer, [10]) == [[10]]
    assert buffer.next_in_order(11) and buffer.next_in_order(12)
    assert not buffer.next_in_order(14)  # a gap: push holds it
    assert run(buffer, [14]) == [[]]
    assert not buffer.next_in_order(13)  # expected, but 14 waits behind it: push releases both in order
    assert run(buffer, [13]) == [[13, 14]]
    assert buffer.next_in_order(15) and buffer.lost == 0
