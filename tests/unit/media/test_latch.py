"""SourceLatch: which source address may carry the caller's media (strict RTP)."""

import pytest

from ivr.media.latch import SourceLatch, Verdict, host_key

SDP = "192.0.2.10"
CALLER = (SDP, 40000)
STRANGER = ("198.51.100.7", 40000)


def test_sdp_host_latches_at_once_on_any_port_and_nothing_else_is_accepted_after() -> None:
    latch = SourceLatch(SDP)
    assert latch.check((SDP, 41234), 1, 10) is Verdict.LATCH  # the NAT kept the address, not the port
    assert latch.latched == (SDP, 41234)
    assert latch.check((SDP, 41234), 1, 11) is Verdict.ACCEPT
    assert latch.check((SDP, 40000), 1, 12) is Verdict.DROP  # the SDP host, but no longer the latched port
    assert latch.check(STRANGER, 1, 13) is Verdict.DROP  # even with the caller's SSRC and next sequence
    assert latch.dropped == 2


def test_other_host_is_dropped_in_strict_mode_however_long_it_sprays() -> None:
    latch = SourceLatch(SDP)
    for seq in range(100):
        assert latch.check(STRANGER, 7, seq) is Verdict.DROP
    assert latch.latched is None and latch.dropped == 100
    assert latch.check(CALLER, 1, 0) is Verdict.LATCH  # the caller's first packet still wins


def test_nat_mode_latches_a_foreign_source_after_probation_packets_in_sequence() -> None:
    latch = SourceLatch(SDP, nat=True, probation=5)
    verdicts = [latch.check(STRANGER, 7, seq) for seq in (65534, 65535, 0, 1, 2)]  # across the wrap
    assert verdicts == [Verdict.DROP] * 4 + [Verdict.LATCH]
    assert latch.latched == STRANGER
    assert latch.check(CALLER, 1, 0) is Verdict.DROP  # never re-latched mid-call, not even to the SDP host


def test_nat_probation_restarts_on_a_break_in_sequence_or_ssrc() -> None:
    latch = SourceLatch(SDP, nat=True, probation=3)
    assert latch.check(STRANGER, 7, 1) is Verdict.DROP
    assert latch.check(STRANGER, 7, 2) is Verdict.DROP
    assert latch.check(STRANGER, 7, 9) is Verdict.DROP  # a jump: count starts over at 1
    assert latch.check(STRANGER, 8, 10) is Verdict.DROP  # another SSRC: starts over
    assert latch.check(STRANGER, 8, 11) is Verdict.DROP
    assert latch.check(STRANGER, 8, 12) is Verdict.LATCH


def test_nat_mode_interleaved_sources_are_counted_apart_and_the_sdp_host_wins_at_any_time() -> None:
    latch = SourceLatch(SDP, nat=True, probation=3)
    other = ("203.0.113.5", 5000)
    for seq in range(2):
        assert latch.check(STRANGER, 7, seq) is Verdict.DROP
        assert latch.check(other, 9, 100 + seq) is Verdict.DROP
    assert latch.check(CALLER, 1, 0) is Verdict.LATCH  # before either finished probation
    assert latch.check(STRANGER, 7, 2) is Verdict.DROP


def test_reset_opens_the_choice_again_and_the_previous_source_may_latch_at_once() -> None:
    latch = SourceLatch(SDP, nat=True, probation=5)
    for seq in range(5):
        latch.check(STRANGER, 7, seq)
    assert latch.latched == STRANGER
    latch.reset(SDP)  # a session-refresh re-INVITE with the same SDP
    assert latch.latched is None
    assert latch.check(STRANGER, 7, 5) is Verdict.LATCH  # no second probation for the NAT-ed caller
    latch.reset("192.0.2.99")  # a re-INVITE that moves the media
    assert latch.check(("192.0.2.99", 6000), 3, 0) is Verdict.LATCH


def test_unmatchable_sdp_host_falls_back_to_probation_even_in_strict_mode() -> None:
    for host in ("pbx.example.com", "0.0.0.0", "::"):
        latch = SourceLatch(host, probation=2)
        assert latch.check(STRANGER, 7, 1) is Verdict.DROP
        assert latch.check(STRANGER, 7, 2) is Verdict.LATCH


def test_probation_candidates_are_bounded() -> None:
    latch = SourceLatch(SDP, nat=True, probation=2)
    for i in range(10_000):  # a spray from many addresses keeps a bounded table
        latch.check(("198.51.100.7", 1024 + i), 7, 0)
    assert len(latch._candidates) <= 16
    assert latch.check(("198.51.100.7", 1024 + 9999), 7, 1) is Verdict.LATCH  # the newest is still there


def test_host_key_normalises_ipv4_mapped_and_zones() -> None:
    assert host_key("::ffff:192.0.2.10") == host_key("192.0.2.10") == "192.0.2.10"
    assert host_key("fe80::1%eth0") == host_key("FE80::1")
    assert host_key("pbx.example.com") is None
    latch = SourceLatch(SDP)
    assert latch.check(("::ffff:192.0.2.10", 4000, 0, 0), 1, 0) is Verdict.LATCH  # a dual-stack socket


def test_probation_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SourceLatch(SDP, probation=0)
