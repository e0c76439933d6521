"""The one recognizer interface: events every vendor codec emits and the sans-I/O codec protocol.

Nothing outside ``ivr/asr/`` knows a vendor's wire format; ``call.py`` sees only these events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# A WebSocket text frame (str) or binary frame (bytes).
Frame = str | bytes


@dataclass(frozen=True)
class SessionReady:
    """The vendor accepted the recognition session; audio may flow."""


@dataclass(frozen=True)
class StartOfSpeech:
    """The caller started speaking (explicit vendor event, or inferred from the first non-empty partial)."""


@dataclass(frozen=True)
class PartialResult:
    """An interim hypothesis; the utterance is still going on."""

    text: str
    confidence: float


@dataclass(frozen=True)
class Alternative:
    """A lower-ranked hypothesis of a final result (n-best)."""

    text: str
    confidence: float


@dataclass(frozen=True)
class Emotion:
    """Emotion classification, for vendors that report it (CPQD)."""

    label: str
    scores: Mapping[str, float]


@dataclass(frozen=True)
class RecognitionResult:
    """The final text of one utterance; ``alternatives`` holds the hypotheses below the best one."""

    text: str
    confidence: float
    alternatives: tuple[Alternative, ...] = ()
    emotion: Emotion | None = None


@dataclass(frozen=True)
class EndOfSpeech:
    """The vendor detected the end of the utterance; its RecognitionResult follows."""


@dataclass(frozen=True)
class RecognitionError:
    """The vendor reported an error or sent something we cannot read; ``reason`` is for logs and CDRs."""

    reason: str


@dataclass(frozen=True)
class SessionClosed:
    """The recognition session is over; no further events follow."""


AsrEvent = (
    SessionReady
    | StartOfSpeech
    | PartialResult
    | RecognitionResult
    | EndOfSpeech
    | RecognitionError
    | SessionClosed
)


class RecognizerError(Exception):
    """Raised by the driver: connect or reply timeouts, a session the vendor refused, a stalled vendor."""


@runtime_checkable
class RecognizerCodec(Protocol):
    """Sans-I/O wire codec of one vendor; one instance per recognition session.

    Audio is PCM16 little-endian, 8 kHz mono. The codec never touches sockets or clocks: the driver
    (``ivr.asr.stream``) sends the frames it returns and feeds it every frame it receives.
    """

    vendor: str
    chunk_bytes: int  # preferred PCM16 bytes per audio frame on the wire

    def open(self) -> list[Frame]:
        """Frames to send right after the WebSocket connects."""
        ...

    def audio(self, pcm: bytes) -> list[Frame]:
        """Frames carrying one coalesced chunk of PCM16 8 kHz audio."""
        ...

    def finish(self) -> list[Frame]:
        """Frames that tell the vendor the audio has ended."""
        ...

    def receive(self, frame: Frame) -> list[AsrEvent]:
        """Events carried by one frame from the vendor; malformed input gives a RecognitionError event."""
        ...

    @property
    def ready(self) -> bool:
        """The vendor accepted the session."""
        ...

    @property
    def closed(self) -> bool:
        """The vendor ended the session."""
        ...
