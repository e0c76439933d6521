"""Sans-I/O codec of the Mediazen speech recognition WebSocket server.

Source: "음성인식 WebSocket Server Message", Mediazen, 2025-07-31
(/work/shared/specs/000-mediazen-asr-websocket.md).
The exchange: text ``{"language","cmd":"join"}`` -> ``event: reply`` with ``payload.status``; binary frames of
live 16-bit 8 kHz mono raw PCM; ``new:text`` results with ``epd`` (end point detected); text ``cmd: quit`` ->
``event: close``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    EndOfSpeech,
    Frame,
    PartialResult,
    RecognitionError,
    RecognitionResult,
    SessionClosed,
    SessionReady,
    StartOfSpeech,
)

LANGUAGES = frozenset({"ko", "en", "jp"})  # document §1, "language: 언어 구분(ko,en,jp)"
SAMPLE_RATE = 8000  # document §2, "16bit 8k mono raw data"
BYTES_PER_SAMPLE = 2
_MAX_REASON_EXCERPT = 80


class MediazenCodec:
    """One Mediazen recognition session, from ``join`` to ``close``.

    Mediazen sends no speech-start event: StartOfSpeech is inferred from the first non-empty partial
    (or from an end point whose text arrives without any partial before it).
    """

    vendor: str = "mediazen"

    def __init__(self, language: str = "ko", chunk_ms: int = 100) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"Mediazen language must be one of {sorted(LANGUAGES)}, not {language!r}")
        if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int) or not 10 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be an int between 10 and 1000, not {chunk_ms!r}")
        self.language = language
        self.chunk_bytes: int = SAMPLE_RATE * BYTES_PER_SAMPLE * chunk_ms // 1000
        self._joined = False
        self._ready = False
        self._finished = False
        self._closed = False
        self._in_speech = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self) -> list[Frame]:
        if self._joined:
            raise RuntimeError("join already sent")
        self._joined = True
        return [self._command("join")]

    def audio(self, pcm: bytes) -> list[Frame]:
        # Accepted before the reply too: the driver holds frames until the session is ready.
        if self._finished:
            raise RuntimeError("audio after quit")
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError(f"PCM16 audio must be whole samples, got {len(pcm)} bytes")
        return [bytes(pcm)] if pcm else []

    def finish(self) -> list[Frame]:
        if self._finished or self._closed:
            return []
        self._finished = True
        return [self._command("quit")]

    def receive(self, frame: Frame) -> list[AsrEvent]:
        if self._closed:
            return []
        try:
            text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
            message = json.loads(text)
        except (ValueError, RecursionError):
            return [RecognitionError(f"malformed message from Mediazen: {_excerpt(frame)}")]
        if not isinstance(message, dict):
            return [RecognitionError(f"Mediazen message is not a JSON object: {_excerpt(frame)}")]
        event = message.get("event")
        payload = message.get("payload")
        # The topic ("asr:ko", "currently the only value used", document §2) is not checked on purpose.
        if event == "reply":
            return self._on_reply(payload)
        if event == "close":
            self._closed = True
            self._in_speech = False
            return [SessionClosed()]
        # The document's own new:text example has no "event" key: a payload with "stt" is a result too.
        if event == "new:text" or (event is None and isinstance(payload, dict) and "stt" in payload):
            return self._on_text(payload)
        if event in ("error", "phx_error"):
            return [RecognitionError(f"Mediazen error event: {_excerpt(frame)}")]
        return []  # unknown events are tolerated, as are unknown keys

    def _command(self, cmd: str) -> str:
        return json.dumps({"language": self.language, "cmd": cmd})

    def _on_reply(self, payload: object) -> list[AsrEvent]:
        status = payload.get("status") if isinstance(payload, dict) else None
        if status != "ok":
            detail = payload.get("message") if isinstance(payload, dict) else None  # not documented; emulator
            suffix = f" ({_excerpt(detail)})" if detail is not None else ""
            return [RecognitionError(f"Mediazen refused the session: status={status!r}{suffix}")]
        if self._ready:
            return []  # a repeated reply (e.g. to quit) changes nothing
        self._ready = True
        return [SessionReady()]

    def _on_text(self, payload: object) -> list[AsrEvent]:
        if not isinstance(payload, dict):
            return [RecognitionError("Mediazen new:text without a payload object")]
        stt = payload.get("stt", [])
        if not isinstance(stt, list):
            return [RecognitionError(f"Mediazen stt is not an array: {_excerpt(stt)}")]
        # stt_cnt is not trusted: the array itself is the result list.
        hypotheses = [_hypothesis(item) for item in stt if isinstance(item, dict)]
        best_text, best_confidence = hypotheses[0] if hypotheses else ("", 0.0)
        events: list[AsrEvent] = []
        if not _flag(payload.get("epd")):
            if best_text:
                if not self._in_speech:
                    self._in_speech = True
                    events.append(StartOfSpeech())
                events.append(PartialResult(best_text, best_confidence))
            return events
        if not best_text and not self._in_speech:
            return []  # an end point on silence: nothing was said
        if not self._in_speech:
            events.append(StartOfSpeech())
        self._in_speech = False  # the server keeps listening: the next partial starts a new utterance
        alternatives = tuple(Alternative(text, confidence) for text, confidence in hypotheses[1:])
        events += [EndOfSpeech(), RecognitionResult(best_text, best_confidence, alternatives)]
        return events


def _hypothesis(item: dict[str, Any]) -> tuple[str, float]:
    text = item.get("text")
    return (text.strip() if isinstance(text, str) else "", _confidence(item.get("confidence")))


def _confidence(value: object) -> float:
    # The document types confidence as Double, but its own example (0.0) is easily sent as int 0.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True or (isinstance(value, int | float) and value == 1)


def _excerpt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REASON_EXCERPT else text[:_MAX_REASON_EXCERPT] + "..."
