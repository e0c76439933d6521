"""The benchmark's packet marker survives the bridge's G.711 decode and is found in the PCM16 it sends."""

from __future__ import annotations

import audioop

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load.marker import (
    MAX_CALL,
    MAX_SEQ,
    MAX_TIME_US,
    PAYLOAD_LEN,
    Mark,
    call_prefix,
    decode_pcm16,
    decode_ulaw,
    payload,
)


@given(st.integers(0, MAX_CALL - 1), st.integers(0, MAX_SEQ - 1), st.integers(0, MAX_TIME_US - 1))
def test_a_marker_round_trips_through_ulaw_and_pcm16(call: int, seq: int, sent_us: int) -> None:
    data = payload(call_prefix(call), seq, sent_us)
    assert len(data) == PAYLOAD_LEN
    assert 0x7F not in data  # the one µ-law byte that does not come back from PCM16
    assert decode_pcm16(audioop.ulaw2lin(data, 2)) == [Mark(call, seq, sent_us)]


def test_every_frame_of_a_message_is_found_in_order_and_silence_is_not_a_marker() -> None:
    prefix = call_prefix(42)
    frames = [payload(prefix, seq, 1_000_000 + 20_000 * seq) for seq in range(5)]
    silence = audioop.lin2ulaw(bytes(2 * PAYLOAD_LEN), 2)
    pcm = audioop.ulaw2lin(frames[0] + silence + b"".join(frames[1:]), 2)
    assert decode_pcm16(pcm) == [Mark(42, seq, 1_000_000 + 20_000 * seq) for seq in range(5)]
    assert decode_ulaw(silence * 3) == []


def test_wraps_sequence_and_time_and_refuses_a_call_index_out_of_range() -> None:
    data = payload(call_prefix(1), MAX_SEQ + 7, MAX_TIME_US + 9)
    assert decode_ulaw(data) == [Mark(1, 7, 9)]
    with pytest.raises(ValueError, match="out of range"):
        call_prefix(MAX_CALL)
