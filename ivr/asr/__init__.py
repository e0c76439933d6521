"""Speech recognizers: one interface (base), one sans-I/O codec per vendor, one asyncio WebSocket driver."""

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    Emotion,
    EndOfSpeech,
    Frame,
    PartialResult,
    RecognitionError,
    RecognitionResult,
    RecognizerCodec,
    RecognizerError,
    SessionClosed,
    SessionReady,
    StartOfSpeech,
)
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.registry import known_vendors, make_codec
from ivr.asr.stream import RecognizerStream

__all__ = [
    "Alternative",
    "AsrEvent",
    "Emotion",
    "EndOfSpeech",
    "Frame",
    "MediazenCodec",
    "PartialResult",
    "RecognitionError",
    "RecognitionResult",
    "RecognizerCodec",
    "RecognizerError",
    "RecognizerStream",
    "SessionClosed",
    "SessionReady",
    "StartOfSpeech",
    "known_vendors",
    "make_codec",
]
