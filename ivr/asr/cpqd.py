"""Sans-I/O codec of the CPQD ASR WebSocket API, versions 2.4 (CPQD Speech Server) and 2.3.

Sources: ../shared/specs/003-cpqd-asr-websocket-2.4.md (what 2.4 adds: ``Channel-Identifier``,
``Infer-*-enabled``, ``Verify-Buffer-Utterance``, the classifier results) and protocol-notes.md Part 1
(the 2.3 base protocol as CPQD's SDKs speak it). Framing, result bodies and options live in
``cpqd_message``. One session per call carries many recognitions (``base`` has the sequence). The mapping:

- The settings every request has a value for (input timers off until START_INPUT_TIMERS, no-input and
  recognition timeouts, n-best, confidence threshold, continuous mode, the 2.4 classifiers, and raw options
  naming one of those) go in SET_PARAMETERS, sent only when they differ from what the session has; as every
  request sets all of them, nothing one step asks for lingers into the next. Other raw CPQD parameters
  (``endpointer.levelThreshold``, ``hints.words``...) and the end-of-speech silence go on START_RECOGNITION
  as headers, so they apply to that recognition only.
- Inline grammars (SRGS text, or phrases made into a one-rule ABNF grammar) go by DEFINE_GRAMMAR once per
  session, under an id derived from their text, named ``session:<id>`` in the START_RECOGNITION URI list
  beside any builtin URI; no grammar at all means ``builtin:slm/general``.
- Requests are pipelined (as the Python SDK does). A failed SET_PARAMETERS or DEFINE_GRAMMAR ends the
  recognition with Final(ERROR) and is followed by CANCEL_RECOGNITION, whose RESPONSE shows the server is
  past the abandoned START_RECOGNITION: the session is READY again then. A cancel works the same way.
- ``Partial`` comes from ``Result-Status: PROCESSING`` (dropped when the request wants none: CPQD has no
  parameter for them). Continuous mode: a segment's final result that is not the last
  (``last_segment: false``) comes out as a Partial with the segment's text; the one Final, at the last
  segment (or ``Session-Status: IDLE``), carries the recognized segments' texts joined by spaces as one
  alternative, with the lowest segment confidence and all their words (a single segment keeps its n-best).
- ``result_status``: RECOGNIZED; NO_MATCH and EARLY_SPEECH (speech before the timers allowed it) ->
  NO_MATCH; NO_INPUT_TIMEOUT and NO_SPEECH -> NO_INPUT; MAX_SPEECH and RECOGNITION_TIMEOUT -> MAX_SPEECH;
  CANCELED -> CANCELLED; FAILURE, NONE and unknown values -> ERROR. A best alternative scoring below the
  request's threshold is NO_MATCH even when the server said RECOGNIZED.
- Classifiers (2.4): emotion label and ``p`` over the ten emotions, ``groups`` = ``p_groups``; age label
  ``str(age)``, ``p`` over the decade bins, its ``confidence`` level ("mid") as the one group (score 1.0);
  gender label "M"/"F", ``p`` = (("M", p[0]), ("F", p[1])).
No keepalive: an idle server closes the socket ("timeout.", protocol-notes 1.1) and the driver opens a new
connection for the next request; CREATE_SESSION's ``Expires`` is kept in ``expires`` (units unknown).
DTMF is not CPQD's business (the bridge detects digits itself).
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    AudioFormat,
    Classification,
    CodecBase,
    EndOfSpeech,
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
from ivr.asr.cpqd_message import (
    CLASSIFIER_HEADERS,
    OPTIONS,
    PARAMETERS,
    VERSIONS,
    AsrMessage,
    CpqdOptions,
    CpqdParseError,
    ResultBody,
    encode,
    encode_audio,
    parse_message,
    parse_options,
    parse_result,
    phrases_grammar,
)

__all__ = [
    "AUDIO_FORMATS",
    "LANGUAGES",
    "OPTIONS",
    "PARAMETERS",
    "VERSIONS",
    "CpqdCodec",
    "CpqdOptions",
    "Parameters",
    "codec_from_options",
    "parse_options",
    "phrases_grammar",
    "validate_options",
    "vendor_language",
]

LANGUAGES = ("pt-BR", "ko")  # CPQD speaks Brazilian Portuguese; the local emulator also serves Korean
AUDIO_FORMATS = frozenset({AudioFormat.PCM16})  # audio/raw: 16-bit linear PCM, 8 kHz (protocol-notes 1.3)
DEFAULT_LM = "builtin:slm/general"
_CHANNEL_ID = re.compile(r"[0-9a-fA-F]{32}")  # DESIGN.md: one 32-hex Channel-Identifier per call


_STATUSES = {
    "RECOGNIZED": ResultStatus.RECOGNIZED,
    "NO_MATCH": ResultStatus.NO_MATCH,
    "EARLY_SPEECH": ResultStatus.NO_MATCH,
    "NO_INPUT_TIMEOUT": ResultStatus.NO_INPUT,
    "NO_SPEECH": ResultStatus.NO_INPUT,
    "MAX_SPEECH": ResultStatus.MAX_SPEECH,
    "RECOGNITION_TIMEOUT": ResultStatus.MAX_SPEECH,
    "CANCELED": ResultStatus.CANCELLED,
}
# RESPONSE headers that are not parameters echoed by GET_PARAMETERS (protocol-notes 1.4).
_RESPONSE_HEADERS = frozenset(
    {"handle", "method", "result", "session-status", "error-code", "message", "expires"}
    | {"content-length", "content-type"}
)


def vendor_language(tag: str) -> str | None:
    """The CPQD language for a BCP 47 tag (pt, pt-BR -> pt-BR; ko, ko-KR -> ko), or None."""
    parts = tag.strip().replace("_", "-").split("-")
    primary = parts[0].lower()
    if primary == "pt" and (len(parts) == 1 or parts[1].upper() == "BR"):
        return "pt-BR"
    if primary == "ko" and (len(parts) == 1 or parts[1].upper() == "KR"):
        return "ko"
    return None


def validate_options(options: dict[str, object]) -> dict[str, object]:
    """CPQD ``options:`` as a plain dict (the registry's shape); ValueError names the bad one."""
    checked = parse_options(options)
    return {
        "version": checked.version,
        "continuous_mode": checked.continuous_mode,
        "chunk_ms": checked.chunk_ms,
        "parameters": checked.parameters,
    }


def codec_from_options(options: Mapping[str, object], channel_id: str = "") -> CpqdCodec:
    """A fresh codec for one connection: only the connection-level options count here (each request's
    options are read again by ``send``)."""
    checked = parse_options(options)
    return CpqdCodec(channel_id=channel_id, version=checked.version, chunk_ms=checked.chunk_ms)


@dataclass(frozen=True, slots=True)
class Parameters:
    """The RESPONSE to GET_PARAMETERS: the parameters the server echoed, or why it refused."""

    values: tuple[tuple[str, str], ...]
    error: VendorError | None = None

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.values if key.lower() == wanted), None)


class CpqdCodec(CodecBase):
    """One CPQD session (one WebSocket): CREATE_SESSION once, then recognitions until RELEASE_SESSION."""

    vendor: str = "cpqd"

    def __init__(self, channel_id: str = "", version: str = "2.4", chunk_ms: int = 100) -> None:
        super().__init__()
        checked = parse_options({"version": version, "chunk_ms": chunk_ms})
        if channel_id and not _CHANNEL_ID.fullmatch(channel_id):
            raise ValueError(f"a Channel-Identifier is 32 hex characters, not {channel_id!r}")
        self.version = checked.version
        self.chunk_ms = checked.chunk_ms
        self.channel_id = channel_id
        self.handle: str | None = None  # the server's session handle (every server message carries it)
        self.expires: str | None = None
        self._state = SessionState.OPENING  # until open() has sent CREATE_SESSION and the server agreed
        self._opened = False
        self._request: RecognitionRequest | None = None
        self._interpreting = False  # INTERPRET_TEXT: no audio, the result follows the response
        self._timers_started = False
        self._last_packet_due = False  # end() before the server listened
        self._cancel_pending = False  # CANCEL_RECOGNITION sent: READY again on its RESPONSE
        self._session_parameters: dict[str, str] = {}  # what SET_PARAMETERS has set (lower-case names)
        self._grammars: set[str] = set()  # grammar ids defined on this session
        self._defining: deque[str] = deque()  # DEFINE_GRAMMAR sent, RESPONSE awaited
        self._segments: list[tuple[ResultStatus, tuple[Alternative, ...], Classification | None]] = []
        self._extra: list[Parameters] = []

    # ---- the recognizer interface

    def open(self, now: float) -> None:
        if self._opened:
            return
        self._opened = True
        headers = (
            [("Channel-Identifier", self.channel_id)] if self.version == "2.4" and self.channel_id else []
        )
        self._queue("CREATE_SESSION", headers)

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        self._begin(request, interpreting=False)
        return []

    def interpret_text(self, request: RecognitionRequest, text: str, now: float) -> list[AsrEvent]:
        """INTERPRET_TEXT: ``text`` is matched against the request's grammar; its result is the Final."""
        self._begin(request, interpreting=True, text=" ".join(text.split()))
        return []

    def get_parameters(self, names: tuple[str, ...], now: float) -> None:
        """GET_PARAMETERS; ``cpqd_events()`` has the values as ``Parameters`` once the server answers."""
        if not self._opened or self._state in (SessionState.CLOSING, SessionState.CLOSED):
            raise RuntimeError(f"CPQD session is {self._state.value}: no parameters to get")
        for name in names:
            if not name.strip() or ":" in name:
                raise ValueError(f"not a CPQD parameter name: {name!r}")
        self._queue("GET_PARAMETERS", [(name.strip(), "") for name in names])

    def cpqd_events(self) -> list[Parameters]:
        """CPQD-only events (answers to ``get_parameters``) since the last call, oldest first."""
        events, self._extra = self._extra, []
        return events

    def audio(self, chunk: bytes, now: float) -> None:
        if self._state is SessionState.LISTENING and chunk:
            self._out.append(encode_audio(self.version, chunk, last=False))

    def start_timers(self, now: float) -> None:
        if self._recognition is None or self._interpreting or self._timers_started:
            return
        if self._state in (SessionState.STARTING, SessionState.LISTENING):
            self._timers_started = True
            self._queue("START_INPUT_TIMERS")

    def end(self, now: float) -> list[AsrEvent]:
        if self._recognition is None or self._interpreting:
            return []
        if self._state is SessionState.LISTENING:
            self._out.append(encode_audio(self.version, b"", last=True))
            self._state = SessionState.ENDING
        elif self._state is SessionState.STARTING:
            self._last_packet_due = True
        return []

    def cancel(self, now: float) -> list[AsrEvent]:
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.CANCELLED)
        self._stop()
        return [final]

    def close(self, now: float) -> list[AsrEvent]:
        events = self.cancel(now)
        if not self._opened:
            self._state = SessionState.CLOSED  # nothing was sent: nothing to release
            return [*events, SessionClosed()]
        if self._state is not SessionState.CLOSED:
            self._queue("RELEASE_SESSION")
            self._state = SessionState.CLOSING
        return events

    def receive(self, frame: bytes | str, now: float) -> list[AsrEvent]:
        if self._state is SessionState.CLOSED:
            return []
        try:
            message = parse_message(frame)
        except CpqdParseError as exc:
            return self._garbage(f"malformed message from CPQD: {exc}")
        if message.kind == "RESPONSE":
            return self._on_response(message)
        if not self._hearing():
            return []  # of a recognition that is over, or a stray one before START_RECOGNITION's answer
        assert self._recognition is not None
        if message.kind == "START_OF_SPEECH":
            return [StartOfSpeech(self._recognition)]
        if message.kind == "END_OF_SPEECH":
            return [EndOfSpeech(self._recognition)]
        if message.kind == "RECOGNITION_RESULT":
            return self._on_result(message)
        return []  # a well-formed message of a type these SDKs do not know: a newer server's, tolerated

    # ---- requests

    def _begin(self, request: RecognitionRequest, *, interpreting: bool, text: str = "") -> None:
        if self._state is not SessionState.READY:
            raise RuntimeError(f"CPQD session is {self._state.value}, not ready for a recognition")
        language, options = self._check(request)
        parameters, extra = self._parameters(request, options)
        changed = [
            (name, value) for name, value in parameters if self._session_parameters.get(name.lower()) != value
        ]
        if changed:
            self._queue("SET_PARAMETERS", changed)
            self._session_parameters.update((name.lower(), value) for name, value in changed)
        uris = "".join(f"{uri}\n" for uri in self._grammar_uris(request, language)).encode("utf-8")
        if interpreting:
            self._queue(
                "INTERPRET_TEXT", [("Accept", "application/json"), ("Text", text)], uris, "text/uri-list"
            )
        else:
            headers = [("Accept", "application/json"), ("Media-Type", "audio/raw")]
            if request.verify_buffer:
                headers.append(("Verify-Buffer-Utterance", "true"))
            self._queue("START_RECOGNITION", headers + extra, uris, "text/uri-list")
        self._recognition, self._request = request.id, request
        self._interpreting = interpreting
        self._timers_started = self._last_packet_due = False
        self._segments = []
        self._state = SessionState.ENDING if interpreting else SessionState.STARTING

    def _check(self, request: RecognitionRequest) -> tuple[str, CpqdOptions]:
        language = vendor_language(request.language)
        if language is None:
            raise UnsupportedRequest(
                f"CPQD has no language {request.language!r} (it offers {', '.join(LANGUAGES)})"
            )
        if request.audio_format not in AUDIO_FORMATS:
            raise UnsupportedRequest(
                f"CPQD takes audio/raw 16-bit linear PCM at 8 kHz, not {request.audio_format.value}"
            )
        try:
            options = parse_options(dict(request.options))
        except ValueError as exc:
            raise UnsupportedRequest(str(exc)) from exc
        if self.version == "2.3" and (request.classifiers or request.verify_buffer):
            raise UnsupportedRequest(
                "CPQD 2.3 has no emotion/age/gender classifiers or Verify-Buffer-Utterance (they are 2.4)"
            )
        if request.channel_id and self.channel_id and request.channel_id != self.channel_id:
            raise UnsupportedRequest(
                f"the request's Channel-Identifier {request.channel_id} is not the session's "
                f"{self.channel_id}"
            )
        if request.verify_buffer and not self.channel_id:
            raise UnsupportedRequest(
                "Verify-Buffer-Utterance needs a session opened with a Channel-Identifier"
            )
        return language, options

    def _parameters(
        self, request: RecognitionRequest, options: CpqdOptions
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(SET_PARAMETERS values, START_RECOGNITION headers) for ``request``: see the module docstring."""
        timers = request.timers
        managed: dict[str, str] = {
            "decoder.startInputTimers": "false"
        }  # prompt-and-collect: START_INPUT_TIMERS
        if timers.no_input > 0:
            managed |= {"noInputTimeout.enabled": "true", "noInputTimeout.value": _ms(timers.no_input)}
        else:
            managed["noInputTimeout.enabled"] = "false"
        if timers.max_speech:
            managed |= {
                "recognitionTimeout.enabled": "true",
                "recognitionTimeout.value": _ms(timers.max_speech),
            }
        else:
            managed["recognitionTimeout.enabled"] = "false"
        managed["decoder.maxSentences"] = str(max(1, request.n_best))
        managed["decoder.confidenceThreshold"] = str(
            round(min(1.0, max(0.0, request.confidence_threshold)) * 100)
        )
        managed["decoder.continuousMode"] = "true" if options.continuous_mode else "false"
        if self.version == "2.4":
            for classifier, header in CLASSIFIER_HEADERS.items():
                managed[header] = "true" if classifier in request.classifiers else "false"
        extra: list[tuple[str, str]] = []
        silence = timers.speech_complete or timers.speech_incomplete  # CPQD has one end-of-speech silence
        if silence:
            extra.append(("endpointer.waitEnd", _ms(silence)))
        for name, value in options.parameters:
            if name in managed:
                managed[name] = value
            else:
                extra = [(key, old) for key, old in extra if key != name] + [(name, value)]
        return list(managed.items()), extra

    def _grammar_uris(self, request: RecognitionRequest, language: str) -> list[str]:
        grammar = request.grammar
        texts = []
        if grammar.srgs is not None and grammar.srgs.strip():
            texts.append(grammar.srgs)
        if any(phrase.split() for phrase in grammar.phrases):
            texts.append(phrases_grammar(grammar.phrases, language))
        uris = []
        for text in texts:
            grammar_id = "ivr-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
            if grammar_id not in self._grammars:
                kind = "application/srgs+xml" if text.lstrip().startswith("<") else "application/srgs"
                self._queue("DEFINE_GRAMMAR", [("Content-ID", grammar_id)], text.encode("utf-8"), kind)
                self._grammars.add(grammar_id)
                self._defining.append(grammar_id)
            uris.append(f"session:{grammar_id}")
        if grammar.uri:
            uris.append(grammar.uri.strip())
        return uris or [DEFAULT_LM]

    def _queue(
        self,
        kind: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        content_type: str = "",
    ) -> None:
        self._out.append(encode(self.version, kind, headers or (), body, content_type))

    def _stop(self) -> None:
        """Leave the recognition on the server: CANCEL_RECOGNITION, READY again on its RESPONSE."""
        self._request = None
        if self._state in (SessionState.STARTING, SessionState.LISTENING, SessionState.ENDING):
            if not self._cancel_pending:
                self._cancel_pending = True
                self._queue("CANCEL_RECOGNITION")
            self._state = SessionState.ENDING

    # ---- what the server says

    def _hearing(self) -> bool:
        return (
            self._recognition is not None
            and not self._cancel_pending
            and self._state in (SessionState.LISTENING, SessionState.ENDING)
        )

    def _preparing(self) -> bool:
        """SET_PARAMETERS/DEFINE_GRAMMAR of the recognition in progress may still be answered: a failure
        of theirs is followed by a cancel, whose answer says the server is past START_RECOGNITION."""
        return self._recognition is not None and (
            self._state is SessionState.STARTING or (self._interpreting and not self._cancel_pending)
        )

    def _garbage(self, reason: str) -> list[AsrEvent]:
        error = VendorError("", reason)
        if self._state is SessionState.OPENING:
            self._state = SessionState.CLOSED
            return [SessionClosed(error)]
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.ERROR, error=error)
        self._stop()
        return [final]

    def _fail(self, error: VendorError, *, idle: bool) -> list[AsrEvent]:
        """A request of the recognition in progress failed: its Final(ERROR); READY at once only when the
        server says it is idle and nothing else of the recognition is to be answered, else after a cancel."""
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.ERROR, error=error)
        if idle and not self._cancel_pending:
            self._request = None
            self._state = SessionState.READY
        else:
            self._stop()
        return [final]

    def _on_response(self, message: AsrMessage) -> list[AsrEvent]:
        method = (message.header("Method") or "").upper()
        result = (message.header("Result") or "").upper()
        status = (message.header("Session-Status") or "").upper() or None
        ok = result == "SUCCESS"
        detail = message.header("Message")
        error = VendorError(
            message.header("Error-Code") or result,
            f"CPQD {method or 'RESPONSE'} {result or 'without Result'}" + (f": {detail}" if detail else ""),
        )
        if method == "CREATE_SESSION":
            if self._state is not SessionState.OPENING:
                return []
            self.handle, self.expires = message.header("Handle"), message.header("Expires")
            self._state = SessionState.READY if ok else SessionState.CLOSED
            return [] if ok else [SessionClosed(error)]
        if method == "RELEASE_SESSION":
            self._state = SessionState.CLOSED
            return [SessionClosed(None if ok else error)]
        if method == "GET_PARAMETERS":
            values = tuple((k, v) for k, v in message.headers if k.lower() not in _RESPONSE_HEADERS)
            self._extra.append(Parameters(values, None if ok else error))
            return []
        if method == "CANCEL_RECOGNITION":
            # INVALID_ACTION = nothing was running any more (the C++ SDK treats it as done, too).
            if self._cancel_pending:
                self._cancel_pending = False
                if self._state is SessionState.ENDING:
                    self._state = SessionState.READY
            return []
        if method == "SET_PARAMETERS":
            if ok:
                return []
            self._session_parameters.clear()  # what the server holds now is unknown: send all next time
            return self._fail(error, idle=False) if self._preparing() else []
        if method == "DEFINE_GRAMMAR":
            grammar_id = self._defining.popleft() if self._defining else None
            if ok:
                return []
            self._grammars.discard(grammar_id or "")
            return self._fail(error, idle=False) if self._preparing() else []
        if method == "START_RECOGNITION":
            return self._on_started(ok, error, status)
        if method == "INTERPRET_TEXT":
            if not (self._interpreting and self._recognition is not None and not self._cancel_pending):
                return []
            if not ok:
                return self._fail(error, idle=status in (None, "IDLE"))
            return self._on_result(message) if message.body.strip() else []
        if method == "SEND_AUDIO":
            # Audio that crossed the end of its recognition is INVALID_ACTION (protocol-notes 1.8): harmless.
            if ok or result == "INVALID_ACTION" or self._state is not SessionState.LISTENING:
                return []
            return self._fail(error, idle=False)
        return []  # START_INPUT_TIMERS and others: the Python SDK ignores these too

    def _on_started(self, ok: bool, error: VendorError, status: str | None) -> list[AsrEvent]:
        if self._state is not SessionState.STARTING or self._recognition is None or self._interpreting:
            return []  # abandoned meanwhile: the pending CANCEL_RECOGNITION's answer makes us READY
        if not ok:
            return self._fail(error, idle=status in (None, "IDLE"))
        self._state = SessionState.LISTENING
        events: list[AsrEvent] = [RecognitionStarted(self._recognition)]
        if self._last_packet_due:
            self.end(0.0)
        return events

    def _on_result(self, message: AsrMessage) -> list[AsrEvent]:
        assert self._recognition is not None and self._request is not None
        recognition, request = self._recognition, self._request
        header_status = (message.header("Result-Status") or "").strip().upper() or None
        session_status = (message.header("Session-Status") or "").strip().upper()
        content_type = (message.header("Content-Type") or "").lower()
        body: ResultBody | None = None
        if message.body.strip():
            if "xml" in content_type:
                return self._garbage("CPQD sent an XML result; this client asks for and reads JSON only")
            try:
                body = parse_result(message.body)
            except CpqdParseError as exc:
                return self._garbage(f"bad CPQD result: {exc}")
        status_name = (body.result_status if body else None) or header_status
        alternatives = body.alternatives if body else ()
        if status_name == "PROCESSING" or (status_name is None and body and body.final_result is False):
            best = alternatives[0] if alternatives else None
            if request.partial_results and best is not None and best.text:
                return [Partial(recognition, best.text, best.confidence)]
            return []
        status, error = _status(status_name)
        classification = body.classification if body else None
        last = body is None or body.last_segment is not False or session_status == "IDLE"
        if not last:
            self._segments.append((status, alternatives, classification))
            if request.partial_results and alternatives and alternatives[0].text:
                return [Partial(recognition, alternatives[0].text, alternatives[0].confidence)]
            return []
        if self._segments:
            status, alternatives, classification = _joined(
                [*self._segments, (status, alternatives, classification)]
            )
            error = error if status is ResultStatus.ERROR else None
        if (
            status is ResultStatus.RECOGNIZED
            and alternatives
            and alternatives[0].confidence < request.confidence_threshold
        ):
            status = ResultStatus.NO_MATCH
        final = self._final(status, alternatives=alternatives, classification=classification, error=error)
        self._request, self._segments = None, []
        if not self._cancel_pending:
            self._state = SessionState.READY
        return [final]


def _status(name: str | None) -> tuple[ResultStatus, VendorError | None]:
    if name in _STATUSES:
        return _STATUSES[name], None
    if name == "FAILURE":
        return ResultStatus.ERROR, VendorError("FAILURE", "CPQD recognition failed")
    return ResultStatus.ERROR, VendorError(name or "", f"CPQD result with status {name or 'missing'}")


def _joined(
    segments: list[tuple[ResultStatus, tuple[Alternative, ...], Classification | None]],
) -> tuple[ResultStatus, tuple[Alternative, ...], Classification | None]:
    """Continuous mode: the recognized segments as one alternative; else NO_MATCH if a segment had speech
    that matched nothing, else the last segment's status."""
    recognized = [alts[0] for status, alts, _ in segments if status is ResultStatus.RECOGNIZED and alts]
    classification = next((c for _, _, c in reversed(segments) if c is not None), None)
    if not recognized:
        statuses = [status for status, _, _ in segments]
        status = ResultStatus.NO_MATCH if ResultStatus.NO_MATCH in statuses else statuses[-1]
        return status, segments[-1][1], classification
    joined = Alternative(
        " ".join(best.text for best in recognized if best.text),
        min(best.confidence for best in recognized),
        tuple(word for best in recognized for word in best.words),
    )
    return ResultStatus.RECOGNIZED, (joined,), classification


def _ms(seconds: float) -> str:
    return str(max(0, round(seconds * 1000)))
