"""The recognizer interface the emulators see, and what its engines share.

A session takes 16-bit mono PCM and returns typed events with times in seconds from the session's first
sample: `SpeechStarted` when the endpointer hears speech begin, `Utterance` when it ends (or when `flush()`
says the audio ended). An utterance's text is a complete sentence of the session's grammar, or "" when the
engine heard speech but nothing in the grammar (a no-match). The older `accept()`/`finish()` pair (partial
text and one final per call) stays for the Mediazen emulator; a session is driven by one pair, not both.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import pocketsphinx

from ivr.emulators.grammar import GrammarError

__all__ = [
    "EngineEvent",
    "EngineUnavailable",
    "GrammarError",
    "RecognizerEngine",
    "RecognizerSession",
    "SpeechStarted",
    "TimedWord",
    "Utterance",
]


@dataclass(frozen=True, slots=True)
class TimedWord:
    """One word of an utterance; times in seconds from the session's first sample."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The endpointer heard speech begin."""

    time: float  # seconds from the session's first sample


@dataclass(frozen=True, slots=True)
class Utterance:
    """An utterance ended (endpoint or flush): the grammar sentence recognized, or "" for a no-match."""

    text: str
    confidence: float  # 0..1
    start: float  # seconds from the session's first sample
    end: float
    words: tuple[TimedWord, ...] = ()
    tag: str | None = None  # the SRGS semantic tag(s) of the sentence's path, space-joined; None without any


EngineEvent = SpeechStarted | Utterance


class RecognizerSession(Protocol):
    """One audio stream: `feed(pcm)` / `flush()` events, or the older `accept()` / `finish()` steps."""

    async def feed(self, pcm: bytes) -> list[EngineEvent]: ...
    async def flush(self) -> list[EngineEvent]: ...
    async def accept(self, pcm: bytes) -> tuple[str, float, bool]: ...
    async def finish(self) -> tuple[str, float]: ...


class RecognizerEngine(Protocol):
    """What an emulator needs from a recognizer: one per language and process, a session per stream."""

    language: str
    phrases: list[str]

    @property
    def description(self) -> str: ...

    def new_session(self, sample_rate: int = 8000, grammar: str | None = None) -> RecognizerSession: ...

    async def load_grammar(self, grammar: str) -> None: ...

    def close(self) -> None: ...


class EngineUnavailable(Exception):
    """An engine cannot serve its language with what it was given (the message says why)."""


class PooledSession(abc.ABC):
    """Runs a session's blocking steps in the pool, one at a time: neither recognizer is thread-safe."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._lock = asyncio.Lock()

    @abc.abstractmethod
    def _accept(self, pcm: bytes) -> tuple[str, float, bool]: ...

    @abc.abstractmethod
    def _finish(self) -> tuple[str, float]: ...

    @abc.abstractmethod
    def _feed(self, pcm: bytes) -> list[EngineEvent]: ...

    @abc.abstractmethod
    def _flush(self) -> list[EngineEvent]: ...

    async def accept(self, pcm: bytes) -> tuple[str, float, bool]:
        """Feed 16-bit PCM; (text, confidence, endpoint): the final result if endpoint, else the partial."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._accept, pcm)

    async def finish(self) -> tuple[str, float]:
        """Flush the pending utterance; the session is reset and may be used again."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._finish)

    async def feed(self, pcm: bytes) -> list[EngineEvent]:
        """Feed 16-bit mono PCM at the session's rate; the events it completed, in order.

        The first call compiles the session's grammar if no session did before: GrammarError here means
        the engine can say no sentence of it (`engine.load_grammar()` finds that out ahead).
        """
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._feed, pcm)

    async def flush(self) -> list[EngineEvent]:
        """The audio ended (no trailing silence needed): the pending utterance, if speech had started.

        Later audio continues the session's clock: times stay relative to its first sample.
        """
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._flush)


# --- endpointing shared by the engines ---

# pocketsphinx's endpointer (a WebRTC VAD inside its wheel, at 8 or 16 kHz): speech starts and ends when
# `ratio` of the last `window` seconds is speech or non-speech: an endpoint comes ~0.3 s after the last word.
ENDPOINT_WINDOW = 0.3
ENDPOINT_RATIO = 0.9
TRAILING_SILENCE = ENDPOINT_WINDOW * ENDPOINT_RATIO  # of non-speech inside a segment, before its end


def utterance_end(start: float, segment_end: float, words: tuple[TimedWord, ...]) -> float:
    """When an utterance's speech ended: its last word's end, else the segment's less the endpointer wait."""
    if words:
        return words[-1].end
    return round(max(start, segment_end - TRAILING_SILENCE), 3)


class SegmentKind(Enum):
    """What a step of the segmenter says."""

    START = "start"
    AUDIO = "audio"
    END = "end"


@dataclass(frozen=True, slots=True)
class Segment:
    """A step of the segmenter: speech began (at `time`), audio of the segment, or speech ended."""

    kind: SegmentKind
    time: float = 0.0
    pcm: bytes = b""


class Segmenter:
    """Splits a stream into speech segments, timed from its first sample (sans-I/O: bytes in, steps out)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._offset = 0.0  # seconds of the stream before the current endpointer
        self._pending = bytearray()
        self._new_endpointer()

    def _new_endpointer(self) -> None:
        self._endpointer = pocketsphinx.Endpointer(
            window=ENDPOINT_WINDOW, ratio=ENDPOINT_RATIO, sample_rate=self.sample_rate
        )
        self._fed = 0  # bytes given to the current endpointer
        self._recent = bytearray()  # the last second of them: see end()
        self._segment_start = 0  # byte of the current endpointer where the segment in progress began
        self._delivered = 0  # bytes of that segment handed out so far

    @property
    def in_speech(self) -> bool:
        return bool(self._endpointer.in_speech)

    def push(self, pcm: bytes) -> Iterator[Segment]:
        """The steps the audio completes; audio short of a whole VAD frame waits for the next call."""
        self._pending += pcm
        size = self._endpointer.frame_bytes
        keep = 2 * self.sample_rate  # one second, more than the endpointer's window
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            self._fed += size
            self._recent += frame
            del self._recent[:-keep]
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            if not was_in_speech:
                start = float(self._endpointer.speech_start)
                self._segment_start = 2 * round(start * self.sample_rate)
                self._delivered = 0
                yield Segment(SegmentKind.START, round(self._offset + start, 3))
            self._delivered += len(speech)
            yield Segment(SegmentKind.AUDIO, pcm=speech)
            if not self._endpointer.in_speech:
                yield Segment(SegmentKind.END, round(self._offset + float(self._endpointer.speech_end), 3))

    def end(self) -> Iterator[Segment]:
        """The stream ended: the rest of a segment in progress and its end; the clock carries on after."""
        total = self._fed + len(self._pending)
        if self._endpointer.in_speech:
            # pocketsphinx's end_stream() drops the frames still in its window (it returns at most the
            # last partial frame), which would cut off the last ~0.3 s of a caller who hangs up mid-word:
            # hand out the stream from where the segment's audio stopped, from our own copy.
            handed = self._segment_start + self._delivered
            first = self._fed - len(self._recent)
            rest = bytes(self._recent[max(0, handed - first) :]) + bytes(self._pending)
            if rest:
                yield Segment(SegmentKind.AUDIO, pcm=rest)
            yield Segment(SegmentKind.END, round(self._offset + total / (2 * self.sample_rate), 3))
        self._pending.clear()
        self._offset += total / (2 * self.sample_rate)
        self._new_endpointer()
