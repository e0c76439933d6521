"""The caller's audio as one continuous stream in wall-clock time, with silence where no audio came.

Recognizers endpoint on trailing silence, so a caller who stops sending (silence suppression, RFC 3389
comfort noise, a DTMF event, loss) must still be heard as silence, in real time. Silence is measured by
*time*, never by sequence numbers: a gap's length comes from RTP timestamps, and no gap is filled beyond the
wall-clock time that actually passed (nor beyond `max_fill` at once), so a jump of 50,000 sequence numbers
or timestamps costs the recognizer at most `max_fill` of silence, not minutes of it.

`until` is the wall-clock time the audio handed over so far reaches. While audio flows it runs just ahead of
the clock; once nothing has come for `hangover` (longer than the jitter buffer holds a packet), `silence_due`
supplies whole frames of silence that keep it `hangover` behind the clock, for as long as the quiet lasts.
"""

from __future__ import annotations

__all__ = ["Timeline"]

_TS_MASK = 0xFFFFFFFF
_TS_HALF = 0x80000000


class Timeline:
    """Silence to insert before a packet (`audio`) or during a quiet spell (`silence_due`), in samples."""

    __slots__ = ("_frame", "_hangover", "_max_fill", "_next_ts", "_rate", "silence", "until")

    def __init__(
        self, clock_rate: int = 8000, *, frame: int = 160, max_fill: float = 0.24, hangover: float = 0.08
    ) -> None:
        if frame < 1 or max_fill <= 0 or hangover < 0:
            raise ValueError("frame, max_fill and hangover must be positive")
        self._rate = clock_rate
        self._frame = frame  # samples per silence frame
        self._max_fill = round(max_fill * clock_rate)
        self._hangover = hangover
        self._next_ts: int | None = None  # RTP timestamp just past the last audio handed over
        self.until: float | None = None  # None until the stream starts
        self.silence = 0  # samples of silence supplied in all, for stats

    def start(self, now: float) -> None:
        """The caller's stream begins (its first packet, audio or not); silence may be due from here on."""
        if self.until is None:
            self.until = now

    def discontinuity(self) -> None:
        """The sender's timestamps start afresh (a new SSRC): the next audio is not measured against them."""
        self._next_ts = None

    def audio(self, timestamp: int, samples: int, now: float) -> int:
        """Samples of silence to hand over before this packet's audio; account for both."""
        until = self.until
        if until is None:
            until = now
        expected = self._next_ts
        if timestamp == expected:  # the next audio in order: no gap to measure
            self._next_ts = (timestamp + samples) & _TS_MASK
            self.until = until + samples / self._rate
            return 0
        fill = 0
        if expected is not None:
            gap = (timestamp - expected) & _TS_MASK
            if 0 < gap < _TS_HALF:  # a packet from the past (overlap, reordering) gets no fill
                budget = int((now - until) * self._rate)  # wall time not yet covered by audio
                fill = min(gap, self._max_fill, budget) if budget > 0 else 0
        self._next_ts = (timestamp + samples) & _TS_MASK
        self.until = until + (fill + samples) / self._rate
        self.silence += fill
        return fill

    @property
    def next_timestamp(self) -> int | None:
        """The RTP timestamp that continues the audio without a gap, once the stream has audio."""
        return None if self.until is None else self._next_ts

    def advance(self, next_timestamp: int, samples: int) -> None:
        """`samples` of audio in order up to `next_timestamp`, taken elsewhere (`batchrx`): accounted as
        `audio` would have, with no gap (only while `next_timestamp` is not None)."""
        assert self.until is not None
        self._next_ts = next_timestamp & _TS_MASK
        self.until += samples / self._rate

    def silence_due(self, now: float) -> int:
        """Samples of silence owed now (whole frames) because no audio has come for `hangover`; accounted."""
        until = self.until
        if until is None:
            return 0
        lag = now - self._hangover - until
        frames = int(lag * self._rate + 1e-6) // self._frame  # the epsilon: float error must not lose a frame
        if frames <= 0:
            return 0
        samples = frames * self._frame
        if samples > self._max_fill:
            # The loop stalled: catch up by at most max_fill, and let the rest of the time go unfilled.
            samples = self._max_fill - self._max_fill % self._frame or self._frame
            until = now - self._hangover - samples / self._rate
        self.until = until + samples / self._rate
        self.silence += samples
        return samples

    def next_check(self) -> float | None:
        """When silence may next be due (loop time), or None before the stream starts."""
        if self.until is None:
            return None
        return self.until + self._hangover + self._frame / self._rate
