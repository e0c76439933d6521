"""One listen turn across the step's recognizers: when the vendor in use fails, the same turn goes on with the
next one, the caller's audio since the start of the turn replayed first, so the caller need not repeat.

The streams keep their own guarantees (one Final per request, a documented retry inside the stream); this
module only decides, on a request's Final(ERROR), whether the turn is over or goes to the next vendor. The
next vendor takes the same recognition id, so the dialplan engine sees one recognition whatever happened.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from ivr.asr.base import CodecBase, Failure, Final, RecognitionRequest, ResultStatus
from ivr.asr.stream import RecognizerStream

__all__ = ["Candidate", "TurnAudio", "TurnRecognition"]

# A turn's audio kept for a replay: 30 s of PCM16 8 kHz (a prompt with barge-in, the no-input time and an
# utterance fit in it); past it the oldest audio goes, so memory per call stays bounded.
MAX_TURN_BYTES = 30 * 16000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recognizer a turn may use: the vendor and the request in its terms (same id, same audio format)."""

    vendor: str
    request: RecognitionRequest


class TurnAudio:
    """The caller's audio since the start of the turn, bounded in bytes (the newest whole chunks kept)."""

    def __init__(self, max_bytes: int = MAX_TURN_BYTES) -> None:
        self.max_bytes = max_bytes
        self._chunks: deque[bytes] = deque()  # as they came (the vendor's frames): O(1) to add and to drop
        self._size = 0
        self.dropped = 0  # bytes of the turn's start no longer kept

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size > self.max_bytes:
            oldest = self._chunks.popleft()
            self._size -= len(oldest)
            self.dropped += len(oldest)

    def replay(self) -> bytes:
        return b"".join(self._chunks)


# from vendor, to vendor (None: no vendor left), the failure kind
FailoverHandler = Callable[[str, str | None, str], None]


class TurnRecognition:
    """The recognition of one listen turn, on the first of its candidates that works."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        streams: Callable[[str], RecognizerStream | None],
        *,
        on_failover: FailoverHandler = lambda source, target, kind: None,
        max_bytes: int = MAX_TURN_BYTES,
    ) -> None:
        if not candidates or len({c.request.id for c in candidates}) != 1:
            raise ValueError("a turn needs candidates, all with the same recognition id")
        self._candidates = list(candidates)
        self._streams = streams
        self._on_failover = on_failover
        # Nothing to keep for a turn with one vendor (most of them): not even an empty deque, 0.8 KB a call.
        self._audio = TurnAudio(max_bytes) if len(self._candidates) > 1 else None
        self._index = -1
        self._timers_started = False
        self.stream: RecognizerStream | None = None
        self._log = structlog.get_logger()

    @property
    def id(self) -> int:
        return self._candidates[0].request.id

    @property
    def frame_ms(self) -> int:
        """The audio per frame the turn's first vendor takes (its chunk_ms option, else the codecs' default):
        the size to hand audio over in, so it goes to the vendor as it comes, in one piece."""
        value = dict(self._candidates[0].request.options).get("chunk_ms", CodecBase.chunk_ms)
        return value if isinstance(value, int) and not isinstance(value, bool) else CodecBase.chunk_ms

    def start(self) -> bool:
        """Start on the first candidate with a stream; False when none has one (no URL for any)."""
        return self._next(None, "unconfigured")

    def audio(self, chunk: bytes) -> None:
        if self._audio is not None and self._index + 1 < len(self._candidates):
            self._audio.add(chunk)  # kept only while there is a vendor left to replay it to
        if self.stream is not None:
            self.stream.audio(chunk)

    def start_timers(self) -> None:
        self._timers_started = True
        if self.stream is not None:
            self.stream.start_timers()

    def cancel(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel(self.id)

    def take(self, final: Final) -> bool:
        """A Final of this turn from the vendor in use: True when it is consumed because the turn went on
        to the next vendor; False when it is the turn's outcome (a result, or no vendor left)."""
        if final.recognition != self.id or final.status is not ResultStatus.ERROR or self.stream is None:
            return False
        kind = final.error.kind.value if final.error is not None else Failure.VENDOR.value
        return self._next(self._candidates[self._index].vendor, kind)

    def _next(self, failed: str | None, kind: str) -> bool:
        while self._index + 1 < len(self._candidates):
            self._index += 1
            candidate = self._candidates[self._index]
            stream = self._streams(candidate.vendor)
            if stream is None:
                self._log.error("no URL configured for recognizer", vendor=candidate.vendor)
                if failed is None:
                    failed, kind = candidate.vendor, "unconfigured"
                continue
            replay = self._audio.replay() if self._audio is not None else b""
            if failed is not None:
                self._on_failover(failed, candidate.vendor, kind)
                self._log.info(
                    "asr.failover", source=failed, target=candidate.vendor, kind=kind, replayed=len(replay)
                )
            self.stream = stream
            stream.recognize(candidate.request, replay)
            if self._timers_started:
                stream.start_timers()
            return True
        if failed is not None and self._index > 0:
            self._on_failover(failed, None, kind)  # the last vendor failed too: the dialplan's fallback
        self.stream = None
        return False
