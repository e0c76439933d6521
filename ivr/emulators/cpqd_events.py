"""What the CPQD session machine hands its adapter (events out) and what the recognizer hands back
(`UtteranceResult`): small frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.emulators.cpqd_grammars import GrammarSource
from ivr.emulators.cpqd_parameters import RecognitionConfig
from ivr.emulators.recognizer import TimedWord


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A server message to send as one binary frame (the Java SDK decodes only binary, notes 1.1)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class RecognitionRequested:
    """A well-formed START_RECOGNITION: open a recognizer, then `accept_recognition`/`reject_recognition`."""

    recognition: int
    grammar: GrammarSource
    sample_rate: int
    config: RecognitionConfig


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """PCM for the recognizer of `recognition`, a whole number of samples."""

    recognition: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class AudioEnded:
    """LastPacket: flush the recognizer, then call `audio_finished`."""

    recognition: int


@dataclass(frozen=True, slots=True)
class RecognitionStopped:
    """The recognition is over (result, timeout, cancel): stop its recognizer and drop its audio."""

    recognition: int


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the WebSocket after the messages before it."""

    code: int
    reason: str


Event = SendMessage | RecognitionRequested | AudioReceived | AudioEnded | RecognitionStopped | CloseConnection


@dataclass(frozen=True, slots=True)
class UtteranceResult:
    """What the recognizer found in one utterance; text "" means rejected (NO_MATCH)."""

    text: str
    confidence: float  # 0..1
    start: float
    end: float
    words: tuple[TimedWord, ...] = ()  # the engine's, times from the recognition's first sample
    tag: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # the 2.4 classifier objects to merge in
    audio: bytes = b""  # the utterance's PCM, for the verify buffer
