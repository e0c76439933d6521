"""Sans-I/O codec of the Mediazen speech recognition WebSocket server.

Source: "음성인식 WebSocket Server Message", Mediazen, 2025-07-31
(../shared/specs/000-mediazen-asr-websocket.md).
The exchange: text ``{"language","cmd":"join"}`` -> ``event: reply`` with ``payload.status``; binary frames of
live 16-bit 8 kHz mono raw PCM; ``new:text`` results with ``epd`` (end point detected); text ``cmd: quit`` ->
``event: close``. The join names the language and nothing else (no grammar, timers or classifiers), so one
connection carries one recognition: its first end point with text is the result, then quit -> close.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    AudioFormat,
    CodecBase,
    EndOfSpeech,
    Failure,
    Frame,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    UnsupportedRequest,
    VendorError,
)

# Document §1, "language: 언어 구분(ko,en,jp)"; BCP 47 primary subtag -> Mediazen code.
LANGUAGES = {"ko": "ko", "en": "en", "ja": "jp", "jp": "jp"}
SAMPLE_RATE = 8000  # document §2, "16bit 8k mono raw data"
BYTES_PER_SAMPLE = 2
OPTIONS = ("chunk_ms",)
_MAX_REASON_EXCERPT = 80


def vendor_language(tag: str) -> str | None:
    """The Mediazen code for a BCP 47 tag (ko-KR -> ko, ja -> jp), or None."""
    return LANGUAGES.get(tag.replace("_", "-").split("-", 1)[0].lower())


def validate_options(options: dict[str, object]) -> dict[str, int]:
    """Dialplan ``options:`` for Mediazen; ValueError naming what is wrong."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown Mediazen option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    chunk_ms = options.get("chunk_ms", 100)
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int) or not 10 <= chunk_ms <= 1000:
        raise ValueError(f"Mediazen chunk_ms must be a whole number of ms from 10 to 1000, not {chunk_ms!r}")
    return {"chunk_ms": chunk_ms}


class MediazenCodec(CodecBase):
    """One Mediazen connection: one recognition from ``join`` to ``close``.

    Mediazen sends no speech-start event: StartOfSpeech is inferred from the first non-empty partial (or
    from an end point whose text arrives without any partial before it). An end point without text (noise)
    is reported as EndOfSpeech only; the server keeps listening and so does the recognition.
    """

    vendor: str = "mediazen"

    def __init__(self, chunk_ms: int = 100) -> None:
        super().__init__()
        self.chunk_ms = validate_options({"chunk_ms": chunk_ms})["chunk_ms"]
        self.language: str | None = None
        self._in_speech = False

    def open(self, now: float) -> None:
        """Nothing to send yet: the join carries the request's language."""

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        if self._state is not SessionState.READY:
            raise RuntimeError(f"Mediazen session is {self._state.value}: one recognition per connection")
        language = vendor_language(request.language)
        if language is None:
            raise UnsupportedRequest(
                f"Mediazen has no language {request.language!r} (it offers ko, en, jp; ja is sent as jp)"
            )
        if request.audio_format is not AudioFormat.PCM16:
            raise UnsupportedRequest("Mediazen takes 16-bit 8 kHz PCM only, not G.711")
        if request.options:
            validate_options(dict(request.options))
        self.language = language
        self._recognition = request.id
        self._state = SessionState.STARTING
        self._out.append(self._command("join"))
        return []

    def audio(self, chunk: bytes, now: float) -> None:
        if self._state is SessionState.LISTENING and chunk:
            self._out.append(chunk)

    def end(self, now: float) -> list[AsrEvent]:
        """No more audio: quit flushes the server; a result still on its way belongs to this recognition."""
        if self._state in (SessionState.STARTING, SessionState.LISTENING):
            self._quit()
        return []

    def cancel(self, now: float) -> list[AsrEvent]:
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.CANCELLED)
        if self._state in (SessionState.STARTING, SessionState.LISTENING, SessionState.ENDING):
            self._quit()
        return [final]

    def close(self, now: float) -> list[AsrEvent]:
        events = self.cancel(now)
        if self._state is SessionState.READY:
            self._state = SessionState.CLOSED  # never joined: nothing to say goodbye to
            events.append(SessionClosed())
        return events

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        if self._state is SessionState.CLOSED:
            return []
        try:
            text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
            message = json.loads(text)
        except (ValueError, RecursionError):
            return self._error(f"malformed message from Mediazen: {_excerpt(frame)}")
        if not isinstance(message, dict):
            return self._error(f"Mediazen message is not a JSON object: {_excerpt(frame)}")
        event = message.get("event")
        payload = message.get("payload")
        # The topic ("asr:ko", "currently the only value used", document §2) is not checked on purpose.
        if event == "reply":
            return self._on_reply(payload)
        if event == "close":
            events: list[AsrEvent] = []
            if self._recognition is not None and self._state is SessionState.CLOSING:
                # The answer to our quit before any result: speech that never became text is no match,
                # else no input.
                events.append(
                    self._final(ResultStatus.NO_MATCH if self._in_speech else ResultStatus.NO_INPUT)
                )
            elif self._recognition is not None:
                # A close we did not ask for: the server ended the session under the caller's turn, which
                # is a vendor failure (the turn can go to a secondary vendor), not the caller's silence.
                reason = "Mediazen closed the session before a result"
                events.append(
                    self._final(ResultStatus.ERROR, error=VendorError("", reason, kind=Failure.CLOSED))
                )
            self._state = SessionState.CLOSED
            return [*events, SessionClosed()]
        # The document's own new:text example has no "event" key: a payload with "stt" is a result too.
        if event == "new:text" or (event is None and isinstance(payload, dict) and "stt" in payload):
            return self._on_text(payload)
        if event in ("error", "phx_error"):
            return self._error(f"Mediazen error event: {_excerpt(frame)}")
        return []  # unknown events are tolerated, as are unknown keys

    def _quit(self) -> None:
        self._state = SessionState.CLOSING
        self._out.append(self._command("quit"))

    def _command(self, cmd: str) -> str:
        return json.dumps({"language": self.language, "cmd": cmd})

    def _error(self, reason: str, code: str = "") -> list[AsrEvent]:
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.ERROR, error=VendorError(code, reason))
        if self._state is not SessionState.CLOSING:
            self._quit()
        return [final]

    def _on_reply(self, payload: object) -> list[AsrEvent]:
        status = payload.get("status") if isinstance(payload, dict) else None
        if status != "ok":
            detail = payload.get("message") if isinstance(payload, dict) else None  # not documented; emulator
            suffix = f" ({_excerpt(detail)})" if detail is not None else ""
            return self._error(f"Mediazen refused the session: status={status!r}{suffix}", str(status or ""))
        if self._state is not SessionState.STARTING or self._recognition is None:
            return []  # a repeated reply (e.g. to quit) changes nothing
        self._state = SessionState.LISTENING
        return [RecognitionStarted(self._recognition)]

    def _on_text(self, payload: object) -> list[AsrEvent]:
        recognition = self._recognition
        if recognition is None:
            return []  # after the result or a cancel: nothing of it is wanted any more
        if not isinstance(payload, dict):
            return self._error("Mediazen new:text without a payload object")
        stt = payload.get("stt", [])
        if not isinstance(stt, list):
            return self._error(f"Mediazen stt is not an array: {_excerpt(stt)}")
        # stt_cnt is not trusted: the array itself is the result list.
        hypotheses = [_hypothesis(item) for item in stt if isinstance(item, dict)]
        best_text, best_confidence = hypotheses[0] if hypotheses else ("", 0.0)
        events: list[AsrEvent] = []
        if not _flag(payload.get("epd")):
            if best_text:
                if not self._in_speech:
                    self._in_speech = True
                    events.append(StartOfSpeech(recognition))
                events.append(Partial(recognition, best_text, best_confidence))
            return events
        if not best_text:
            if self._in_speech:
                self._in_speech = False  # noise: the server keeps listening for a real utterance
                events.append(EndOfSpeech(recognition))
            return events
        if not self._in_speech:
            events.append(StartOfSpeech(recognition))
        self._in_speech = False
        alternatives = tuple(Alternative(text, confidence) for text, confidence in hypotheses if text)
        events += [EndOfSpeech(recognition), self._final(ResultStatus.RECOGNIZED, alternatives=alternatives)]
        if self._state is not SessionState.CLOSING:
            self._quit()  # the document's closing exchange: quit -> close
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
