"""Timeline: silence for the recognizer by time (timestamps and the wall clock), never by sequence number."""

import pytest

from ivr.media.timeline import Timeline

FRAME = 160  # 20 ms at 8 kHz
PTIME = 0.02


def speak(timeline: Timeline, frames: int, *, t0: float, ts0: int = 0) -> list[int]:
    """`frames` packets in real time from t0; the fills asked for before each."""
    return [timeline.audio(ts0 + i * FRAME, FRAME, t0 + i * PTIME) for i in range(frames)]


def test_a_steady_stream_gets_no_fill_and_no_silence() -> None:
    timeline = Timeline()
    timeline.start(0.0)
    assert speak(timeline, 50, t0=0.0) == [0] * 50
    assert timeline.silence_due(1.0) == 0
    assert timeline.silence == 0


def test_lost_packet_is_filled_by_its_timestamp_gap() -> None:
    timeline = Timeline()
    timeline.start(0.0)
    speak(timeline, 3, t0=0.0)
    assert timeline.audio(4 * FRAME, FRAME, 4 * PTIME) == FRAME  # packet 3 lost: one frame of silence
    assert timeline.audio(5 * FRAME, FRAME, 5 * PTIME) == 0


def test_fill_never_exceeds_the_wall_time_that_passed() -> None:
    timeline = Timeline()
    timeline.start(0.0)
    timeline.audio(0, FRAME, 0.0)
    # The next packet claims a 10 s timestamp gap but arrives 20 ms later: there is nothing to fill.
    assert timeline.audio(80_000, FRAME, 0.02) == 0
    # A burst (all at one instant) with lost packets in it: no fill either.
    assert timeline.audio(80_000 + 3 * FRAME, FRAME, 0.02) == 0


@pytest.mark.parametrize("jump", [49, 50_000])
def test_a_jump_in_sequence_and_timestamps_gets_a_bounded_fill(jump: int) -> None:
    timeline = Timeline(max_fill=0.24)
    timeline.start(0.0)
    timeline.audio(0, FRAME, 0.0)
    # It arrives a whole 2 s later, so the wall clock does not bound it: max_fill does.
    fill = timeline.audio((jump * FRAME) & 0xFFFFFFFF, FRAME, 2.0)
    assert 0 < fill <= 0.24 * 8000


def test_packet_from_the_past_gets_no_fill() -> None:
    timeline = Timeline()
    timeline.start(0.0)
    speak(timeline, 5, t0=0.0)
    assert timeline.audio(2 * FRAME, FRAME, 1.0) == 0  # overlapping timestamps (a late duplicate source)


def test_quiet_caller_gets_real_time_silence_after_the_hangover() -> None:
    timeline = Timeline(hangover=0.08)
    timeline.start(0.0)
    speak(timeline, 10, t0=0.0)  # audio up to 0.2 s
    assert timeline.until == pytest.approx(0.2)
    assert timeline.silence_due(0.25) == 0  # within the hangover: the jitter buffer may still deliver
    check = timeline.next_check()
    assert check == pytest.approx(0.2 + 0.08 + 0.02)
    total = 0
    now = check
    for _ in range(100):  # a timer that wakes when told to, for 2 s
        assert now is not None
        total += timeline.silence_due(now)
        now = timeline.next_check()
        if now is None or now > 2.3:
            break
    assert total % FRAME == 0  # whole frames
    # 2 s of quiet: ~1.9 s of silence handed over by 2.3 s, never more than the time that passed.
    assert 1.8 * 8000 <= total <= (2.3 - 0.2) * 8000
    # The caller speaks again: the fill before it covers only the hangover not yet filled.
    fill = timeline.audio(10 * FRAME + 16_000, FRAME, 2.3)
    assert fill <= 0.1 * 8000
    assert timeline.until is not None and timeline.until <= 2.3 + 0.02 + 1e-9


def test_comfort_noise_from_the_start_still_yields_silence() -> None:
    timeline = Timeline()
    assert timeline.silence_due(5.0) == 0  # before the stream starts: nothing
    assert timeline.next_check() is None
    timeline.start(0.0)  # the first packet was comfort noise, not audio
    total, now = 0, timeline.next_check()
    while now is not None and now <= 1.0 + 1e-9:
        total += timeline.silence_due(now)
        now = timeline.next_check()
    assert total == 46 * FRAME  # every whole frame up to the hangover before 1 s: 0.92 s


def test_a_stalled_loop_catches_up_by_at_most_max_fill() -> None:
    timeline = Timeline(max_fill=0.24)
    timeline.start(0.0)
    timeline.audio(0, FRAME, 0.0)
    assert timeline.silence_due(30.0) == 0.24 * 8000  # not 30 s of audio at once
    assert timeline.silence_due(30.0) == 0
    assert timeline.silence_due(30.04) == 2 * FRAME  # then real time again


def test_discontinuity_forgets_the_timestamps() -> None:
    timeline = Timeline()
    timeline.start(0.0)
    timeline.audio(0, FRAME, 0.0)
    timeline.discontinuity()  # a new SSRC with random timestamps
    assert timeline.audio(123_456_789, FRAME, 0.1) == 0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Timeline(max_fill=0)
