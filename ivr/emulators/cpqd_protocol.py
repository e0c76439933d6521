"""CPQD ASR WebSocket protocol 2.3/2.4, the server side's session machine, sans-I/O.

Sources: ../shared/specs/003-cpqd-asr-websocket-2.4.md (the 2.4 additions: Channel-Identifier,
Verify-Buffer-Utterance, Infer-*-enabled, the classifier objects) and protocol-notes.md part 1 (the 2.3
protocol as CPQD's public SDKs speak it). Written from those documents only, never from our client codec.

`CpqdServerSession` is one connection's session: bytes in, events out (`SendMessage` to write,
`RecognitionRequested` for the adapter to open a recognizer, `AudioReceived`, `AudioEnded`,
`RecognitionStopped`, `CloseConnection`); the recognizer's findings come back through `speech_started`,
`utterance`, `audio_processed`, `audio_finished`; time is always passed in and timers are deadlines
(`next_deadline`/`on_timer`). Replies carry `Handle` on every message and `Error-Code`/`Message` only on
failures (the Python SDK aborts on any `Error-Code`, notes 1.4).

The pieces it is made of: `cpqd_framing` (messages), `cpqd_parameters`, `cpqd_grammars` (language models),
`cpqd_audio` (audio in), `cpqd_channels` (the per-process Channel-Identifier registry), `cpqd_events`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from ivr.emulators.cpqd_audio import AudioFormatError, AudioInput
from ivr.emulators.cpqd_channels import ChannelRegistry
from ivr.emulators.cpqd_events import (
    AudioEnded,
    AudioReceived,
    CloseConnection,
    Event,
    RecognitionRequested,
    RecognitionStopped,
    SendMessage,
    UtteranceResult,
)
from ivr.emulators.cpqd_framing import (
    DEFAULT_VERSION,
    ErrorCode,
    Message,
    MessageError,
    MessageType,
    RecognitionStatus,
    ResponseResult,
    SessionStatus,
    build_message,
    message_text,
    parse_message,
)
from ivr.emulators.cpqd_grammars import (
    GrammarSource,
    LanguageModelError,
    definition,
    language_model,
    media_type,
)
from ivr.emulators.cpqd_parameters import (
    CHANNEL_IDENTIFIER,
    FALSE_SPELLINGS,
    TRUE_SPELLINGS,
    VERIFY_BUFFER_DURATION,
    VERIFY_BUFFER_UTTERANCES,
    RecognitionConfig,
    default_parameters,
    lookup_parameter,
    normalize_value,
)
from ivr.emulators.srgs import parse_grammar


class SessionState(Enum):
    """Where one connection's session is; LISTENING and RECOGNIZING are the wire's, the others ours."""

    NEW = "new"  # connected, no CREATE_SESSION yet
    IDLE = "idle"
    STARTING = "starting"  # START_RECOGNITION accepted by the core, the adapter opening the recognizer
    LISTENING = "listening"
    RECOGNIZING = "recognizing"  # speech detected
    RELEASED = "released"


class Fault(StrEnum):
    """Vendor faults the emulator can be told to commit (`--fault`), for the bridge's fallback tests."""

    START_FAILURE = "start-failure"  # START_RECOGNITION answered FAILURE
    INVALID_ACTION = "invalid-action"  # START_RECOGNITION answered INVALID_ACTION
    CLOSE_MID_UTTERANCE = "close-mid-utterance"  # the socket closed right after START_OF_SPEECH
    NO_REPLY = "no-reply"  # START_RECOGNITION and everything after it never answered
    UNAUTHORIZED = "unauthorized"  # the handshake answered 401 (ivr.emulators.session)
    MALFORMED = "malformed"  # START_RECOGNITION answered with a frame that is no ASR message


@dataclass
class _Recognition:
    """The running recognition of a session (mutable: the machine's own bookkeeping)."""

    id: int
    config: RecognitionConfig
    grammar: GrammarSource
    audio: AudioInput
    timers_at: tuple[float, float] | None = None  # (audio seconds, wall time) when the input timers started
    speech_at: float | None = None  # audio seconds the current segment's speech started at
    heard_speech: bool = False
    segment: int = 0
    processed: float = 0.0  # audio seconds the recognizer has consumed
    last_packet: bool = False
    held: UtteranceResult | None = None  # continuous mode after LastPacket: the final that may be the last


class CpqdServerSession:
    """Sans-I/O server side of one CPQD ASR WebSocket connection (one session)."""

    def __init__(
        self,
        handle: str,
        *,
        now: float,
        registry: ChannelRegistry | None = None,
        sample_rate: int = 8000,
        idle_timeout: float | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.handle = handle
        self.registry = registry if registry is not None else ChannelRegistry()
        self.sample_rate = sample_rate
        self.idle_timeout = idle_timeout
        self.fault = fault
        self.state = SessionState.NEW
        self.version = DEFAULT_VERSION
        self.channel: str | None = None
        self.user_agent: str | None = None
        self.parameters = default_parameters()
        self.grammars: dict[str, GrammarSource] = {}
        self.closed = False
        self._last_activity = now
        self._hung = False  # Fault.NO_REPLY struck
        self._next_id = 1
        self._starting: tuple[int, RecognitionConfig, GrammarSource] | None = None
        self._start_version = DEFAULT_VERSION
        self._current: _Recognition | None = None
        # After the server ended a recognition, audio the client had in flight up to its LastPacket, and a
        # CANCEL_RECOGNITION that crossed the result, are not client errors: no Error-Code for them.
        self._draining = False

    # --- wire helpers ---

    @property
    def session_status(self) -> SessionStatus:
        if self.state is SessionState.LISTENING:
            return SessionStatus.LISTENING
        if self.state is SessionState.RECOGNIZING:
            return SessionStatus.RECOGNIZING
        return SessionStatus.IDLE

    def _response(
        self,
        method: MessageType | None,
        result: ResponseResult = ResponseResult.SUCCESS,
        *,
        code: ErrorCode | None = None,
        reason: str = "",
        parameters: Iterable[tuple[str, str]] = (),
        version: str | None = None,
    ) -> SendMessage:
        headers = [("Handle", self.handle)]
        if method is not None:
            headers.append(("Method", str(method)))
        headers += [("Result", str(result)), ("Session-Status", str(self.session_status))]
        if result is not ResponseResult.SUCCESS:
            headers += [("Error-Code", str(code or ErrorCode.FAILURE)), ("Message", message_text(reason))]
        headers += list(parameters)
        return SendMessage(build_message(version or self.version, MessageType.RESPONSE, headers))

    def _invalid_action(self, message: Message, why: str) -> list[Event]:
        return [
            self._response(
                message.type,
                ResponseResult.INVALID_ACTION,
                code=ErrorCode.INVALID_ACTION,
                reason=why,
                version=message.version,
            )
        ]

    def _late_audio(self, message: Message) -> SendMessage:
        headers = [
            ("Handle", self.handle),
            ("Method", str(message.type)),
            ("Result", str(ResponseResult.INVALID_ACTION)),
            ("Session-Status", str(self.session_status)),
            ("Message", "the recognition has ended"),
        ]
        return SendMessage(build_message(message.version, MessageType.RESPONSE, headers))

    def _speech_event(self, kind: MessageType) -> SendMessage:
        headers = [("Handle", self.handle), ("Session-Status", str(self.session_status))]
        return SendMessage(build_message(self.version, kind, headers))

    def _result(self, status: RecognitionStatus, body: Mapping[str, Any]) -> SendMessage:
        headers = [
            ("Handle", self.handle),
            ("Result-Status", str(status)),
            ("Session-Status", str(self.session_status)),
            ("Content-Type", "application/json"),
        ]
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return SendMessage(build_message(self.version, MessageType.RECOGNITION_RESULT, headers, data))

    # --- input from the client ---

    def receive(self, data: bytes | str, now: float) -> list[Event]:
        """One WebSocket frame (text or binary); never raises."""
        self._last_activity = now
        if self._hung or self.closed:
            return []
        if not (data.strip() if isinstance(data, str) else bytes(data).strip()):
            return []  # an empty frame is no message: nothing to answer
        try:
            message = parse_message(data)
        except MessageError as exc:
            return [
                self._response(
                    exc.method,
                    ResponseResult.INVALID_MESSAGE,
                    code=ErrorCode.INVALID_MESSAGE,
                    reason=exc.reason,
                )
            ]
        if self.state is SessionState.NEW and message.type is not MessageType.CREATE_SESSION:
            return self._invalid_action(message, "no session: send CREATE_SESSION first")
        if self.state is SessionState.RELEASED:
            return self._invalid_action(message, "the session was released")
        handler = getattr(self, f"_on_{message.type.lower()}")
        events: list[Event] = handler(message, now)
        return events

    def _on_create_session(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.NEW:
            return self._invalid_action(message, "the session exists already")
        self.version = message.version
        self.state = SessionState.IDLE
        self.user_agent = message.header("User-Agent")
        tag = message.header("loggingTag")
        if tag:
            self.parameters["loggingTag"] = tag
        self._set_channel(message.header(CHANNEL_IDENTIFIER))
        return [self._response(message.type, version=message.version)]

    def _set_channel(self, channel: str | None) -> None:
        # The Python SDK's example passes a missing value through str(): "None" is no identifier.
        if self.channel is None and channel and channel != "None":
            self.channel = channel
            self.registry.session_created(channel, self.handle)

    def _parse_parameters(self, message: Message) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, raw in message.headers:
            parameter = lookup_parameter(name)
            if parameter is None:
                continue  # transport headers (Content-*, Accept) and names we do not know
            try:
                values[parameter.name] = normalize_value(parameter, raw)
            except ValueError as exc:
                raise MessageError(f"invalid value for {parameter.name}: {exc}", message.type) from None
        return values

    def _invalid_message(self, message: Message, exc: MessageError, code: ErrorCode) -> list[Event]:
        return [
            self._response(
                message.type,
                ResponseResult.INVALID_MESSAGE,
                code=code,
                reason=exc.reason,
                version=message.version,
            )
        ]

    def _language_model_failure(self, message: Message, exc: LanguageModelError) -> list[Event]:
        return [
            self._response(
                message.type,
                ResponseResult.FAILURE,
                code=ErrorCode.GRAMMAR,
                reason=str(exc),
                version=message.version,
            )
        ]

    def _on_set_parameters(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return self._invalid_action(message, "parameters are set between recognitions")
        try:
            values = self._parse_parameters(message)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.INVALID_PARAMETER)
        self.parameters.update(values)
        self._set_channel(message.header(CHANNEL_IDENTIFIER))  # the C++ SDK sends it here (notes 1.5)
        return [self._response(message.type, parameters=values.items(), version=message.version)]

    def _on_get_parameters(self, message: Message, now: float) -> list[Event]:
        record = self.registry.channels.get(self.channel) if self.channel else None
        extra = {
            CHANNEL_IDENTIFIER: self.channel or "",
            VERIFY_BUFFER_UTTERANCES: str(len(record.verify_buffer) if record else 0),
            VERIFY_BUFFER_DURATION: f"{record.verify_seconds if record else 0.0:.3f}",
        }
        wanted = [
            name for name, _ in message.headers if name.lower() not in ("content-length", "content-type")
        ]
        found: list[tuple[str, str]] = []
        extra_by_name = {name.lower(): name for name in extra}
        for name in wanted or [*self.parameters, *extra]:
            parameter = lookup_parameter(name)
            if parameter is not None:
                found.append((parameter.name, self.parameters[parameter.name]))
            elif name.lower() in extra_by_name:
                canonical = extra_by_name[name.lower()]
                found.append((canonical, extra[canonical]))
        return [self._response(message.type, parameters=found, version=message.version)]

    def _on_define_grammar(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return self._invalid_action(message, "grammars are defined between recognitions")
        grammar_id = message.header("Content-ID")
        if not grammar_id:
            return self._invalid_message(
                message, MessageError("Content-ID names the grammar"), ErrorCode.GRAMMAR
            )
        if not message.body:
            return self._invalid_message(message, MessageError("no grammar in the body"), ErrorCode.GRAMMAR)
        try:
            source = definition(grammar_id, message, self.grammars)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.GRAMMAR)
        except LanguageModelError as exc:
            return self._language_model_failure(message, exc)
        self.grammars[grammar_id] = source
        return [self._response(message.type, version=message.version)]

    def _on_start_recognition(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return self._invalid_action(message, "a recognition is running")
        if self.fault is Fault.NO_REPLY:
            self._hung = True
            return []
        if self.fault is Fault.MALFORMED:
            return [SendMessage(b'{"error":"emulated fault"}')]  # JSON, where every frame is "ASR 2.x ..."
        if self.fault in (Fault.START_FAILURE, Fault.INVALID_ACTION):
            result = (
                ResponseResult.FAILURE if self.fault is Fault.START_FAILURE else ResponseResult.INVALID_ACTION
            )
            code = ErrorCode.FAILURE if self.fault is Fault.START_FAILURE else ErrorCode.INVALID_ACTION
            return [
                self._response(
                    message.type, result, code=code, reason="emulated fault", version=message.version
                )
            ]
        try:
            values = {**self.parameters, **self._parse_parameters(message)}
            grammar = language_model(message, self.grammars)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.INVALID_MESSAGE)
        except LanguageModelError as exc:
            return self._language_model_failure(message, exc)
        recognition, self._next_id = self._next_id, self._next_id + 1
        config = RecognitionConfig(values)
        self._starting = (recognition, config, grammar)
        self.state = SessionState.STARTING
        self._start_version = message.version
        return [RecognitionRequested(recognition, grammar, self.sample_rate, config)]

    def accept_recognition(self, recognition: int, now: float) -> list[Event]:
        """The adapter opened the recognizer: the recognition listens."""
        if self._starting is None or self._starting[0] != recognition:
            return []
        _, config, grammar = self._starting
        self._starting = None
        current = _Recognition(recognition, config, grammar, AudioInput(self.sample_rate))
        if config.flag("decoder.startInputTimers"):
            current.timers_at = (0.0, now)
        self._current = current
        self._draining = False
        self.state = SessionState.LISTENING
        if self.channel:
            self.registry.recognition_started(self.channel)
        return [self._response(MessageType.START_RECOGNITION, version=self._start_version)]

    def reject_recognition(self, recognition: int, reason: str, now: float) -> list[Event]:
        """The adapter could not open a recognizer (no engine for the language, a grammar it cannot use)."""
        if self._starting is None or self._starting[0] != recognition:
            return []
        self._starting = None
        self.state = SessionState.IDLE
        return [
            self._response(
                MessageType.START_RECOGNITION,
                ResponseResult.FAILURE,
                code=ErrorCode.GRAMMAR,
                reason=reason,
                version=self._start_version,
            )
        ]

    def _on_start_input_timers(self, message: Message, now: float) -> list[Event]:
        current = self._current
        if current is None:
            if self._draining:
                return [self._response(message.type, version=message.version)]
            return self._invalid_action(message, "no recognition is running")
        if current.timers_at is None:
            current.timers_at = (current.audio.seconds, now)
        return [self._response(message.type, version=message.version), *self._check_timers(now)]

    def _on_send_audio(self, message: Message, now: float) -> list[Event]:
        last_text = message.header("LastPacket") or "false"
        if last_text.lower() not in (*TRUE_SPELLINGS, *FALSE_SPELLINGS):
            return self._invalid_message(
                message, MessageError("LastPacket takes true or false"), ErrorCode.AUDIO
            )
        last = last_text.lower() in TRUE_SPELLINGS
        content_type = media_type(message.header("Content-Type"))
        if content_type and not (
            content_type.startswith("audio/") or content_type == "application/octet-stream"
        ):
            return self._invalid_message(
                message, MessageError(f"unsupported audio type {content_type}"), ErrorCode.AUDIO
            )
        current = self._current
        if current is None or current.last_packet:
            if self._draining and current is None:
                # Audio the client sent before it saw the result: INVALID_ACTION as in the notes' transcript
                # (1.8), but without Error-Code, which the Python SDK takes for a fatal error (notes 1.4).
                self._draining = not last
                return [self._late_audio(message)]
            return self._invalid_action(message, "no recognition is listening")
        try:
            pcm = current.audio.feed(message.body)
        except AudioFormatError as exc:
            events: list[Event] = [
                self._response(
                    message.type,
                    ResponseResult.FAILURE,
                    code=ErrorCode.AUDIO,
                    reason=str(exc),
                    version=message.version,
                )
            ]
            return events + self._end(current, RecognitionStatus.FAILURE)
        out: list[Event] = [AudioReceived(current.id, pcm)] if pcm else []
        if last:
            current.last_packet = True
            out.append(AudioEnded(current.id))
        return out

    def _on_cancel_recognition(self, message: Message, now: float) -> list[Event]:
        current = self._current
        if current is None:
            if self._draining:
                return [self._response(message.type, version=message.version)]
            return self._invalid_action(message, "no recognition to cancel")
        # As in MRCP's STOP, the RESPONSE is the answer: no RECOGNITION_RESULT follows a cancel.
        self._stop(current)
        return [self._response(message.type, version=message.version), RecognitionStopped(current.id)]

    def _on_interpret_text(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return self._invalid_action(message, "a recognition is running")
        text = message.header("Text")
        if not text:
            return self._invalid_message(
                message, MessageError("Text holds what to interpret"), ErrorCode.INVALID_MESSAGE
            )
        try:
            source = language_model(message, self.grammars)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.INVALID_MESSAGE)
        except LanguageModelError as exc:
            return self._language_model_failure(message, exc)
        tag: str | None = None
        matched = True
        if source.text is not None:
            sentence = parse_grammar(source.text, source.uri).match(text.split())
            matched = sentence is not None
            tag = sentence.tag if sentence else None
        status = RecognitionStatus.RECOGNIZED if matched else RecognitionStatus.NO_MATCH
        alternatives = []
        if matched:
            alternative: dict[str, Any] = {"text": text, "score": 100, "lm": source.uri}
            if source.text is not None:
                alternative["interpretations"] = [tag or text]
                alternative["interpretation_scores"] = [100]
            alternatives.append(alternative)
        body = {
            "alternatives": alternatives,
            "segment_index": 0,
            "last_segment": True,
            "final_result": True,
            "result_status": str(status),
        }
        return [self._response(message.type, version=message.version), self._result(status, body)]

    def _on_release_session(self, message: Message, now: float) -> list[Event]:
        events: list[Event] = []
        current = self._current
        if current is not None:
            self._stop(current)
            body = self._body(current, RecognitionStatus.CANCELED, None, last=True)
            events += [self._result(RecognitionStatus.CANCELED, body), RecognitionStopped(current.id)]
        self._starting = None
        self.state = SessionState.RELEASED
        if self.channel:
            self.registry.session_released(self.channel)
        return [*events, self._response(message.type, version=message.version)]

    # --- input from the recognizer ---

    def _running(self, recognition: int) -> _Recognition | None:
        current = self._current
        return current if current is not None and current.id == recognition and not self.closed else None

    def speech_started(self, recognition: int, time: float, now: float) -> list[Event]:
        current = self._running(recognition)
        if current is None or current.speech_at is not None:
            return []
        return self._start_of_speech(current, time)

    def _start_of_speech(self, current: _Recognition, time: float) -> list[Event]:
        current.speech_at = time
        current.heard_speech = True
        self.state = SessionState.RECOGNIZING
        events: list[Event] = [self._speech_event(MessageType.START_OF_SPEECH)]
        if self.fault is Fault.CLOSE_MID_UTTERANCE:
            self.closed = True
            events += [RecognitionStopped(current.id), CloseConnection(1011, "emulated fault")]
        return events

    def utterance(self, recognition: int, result: UtteranceResult, now: float) -> list[Event]:
        """The recognizer closed an utterance: END_OF_SPEECH, a partial, then the final (or hold it)."""
        current = self._running(recognition)
        if current is None:
            return []
        events: list[Event] = []
        if current.speech_at is None:
            events += self._start_of_speech(current, result.start)
            if self.closed:
                return events
        events.append(self._speech_event(MessageType.END_OF_SPEECH))
        if self.channel and result.audio and current.config.flag("Verify-Buffer-Utterance"):
            self.registry.keep_utterance(self.channel, self.handle, result.audio, self.sample_rate)
        status = self._status_of(current, result)
        if status is RecognitionStatus.RECOGNIZED:
            partial = self._body(current, RecognitionStatus.PROCESSING, result, last=False, final=False)
            events.append(self._result(RecognitionStatus.PROCESSING, partial))
        current.speech_at = None
        if not current.config.continuous:
            return events + self._end(current, status, result)
        self.state = SessionState.LISTENING
        if current.last_packet:
            # After LastPacket any final may be the last segment: send the previous one, hold this one.
            if current.held is not None:
                events += self._segment(current, current.held, last=False)
            current.held = result
            return events
        return events + self._segment(current, result, last=False)

    def _status_of(self, current: _Recognition, result: UtteranceResult) -> RecognitionStatus:
        if not result.text or round(100 * result.confidence) < current.config.number(
            "decoder.confidenceThreshold"
        ):
            return RecognitionStatus.NO_MATCH
        return RecognitionStatus.RECOGNIZED

    def _segment(self, current: _Recognition, result: UtteranceResult, *, last: bool) -> list[Event]:
        status = self._status_of(current, result)
        if last:
            return self._end(current, status, result)
        body = self._body(current, status, result, last=False)
        current.segment += 1
        return [self._result(status, body)]

    def audio_processed(self, recognition: int, seconds: float, now: float) -> list[Event]:
        """The recognizer has consumed `seconds` of the recognition's audio: the input timers may expire."""
        current = self._running(recognition)
        if current is None:
            return []
        current.processed = seconds
        return self._check_timers(now)

    def audio_finished(self, recognition: int, now: float) -> list[Event]:
        """The recognizer flushed after LastPacket: the last result."""
        current = self._running(recognition)
        if current is None:
            return []
        if current.held is not None:
            held, current.held = current.held, None
            return self._segment(current, held, last=True)
        status = RecognitionStatus.NO_MATCH if current.speech_at is not None else RecognitionStatus.NO_SPEECH
        return self._end(current, status)

    def recognition_failed(self, recognition: int, reason: str, now: float) -> list[Event]:
        """The recognizer broke: a FAILURE result ends the recognition."""
        current = self._running(recognition)
        return self._end(current, RecognitionStatus.FAILURE) if current is not None else []

    # --- ending a recognition, timers ---

    def _body(
        self,
        current: _Recognition,
        status: RecognitionStatus,
        result: UtteranceResult | None,
        *,
        last: bool,
        final: bool = True,
    ) -> dict[str, Any]:
        alternatives: list[dict[str, Any]] = []
        if result is not None and status in (RecognitionStatus.RECOGNIZED, RecognitionStatus.PROCESSING):
            score = round(100 * result.confidence)
            alternative: dict[str, Any] = {"text": result.text, "score": score, "lm": current.grammar.uri}
            if current.config.number("decoder.wordDetails") > 0 and result.words and final:
                alternative["words"] = [
                    {
                        "text": w.text,
                        "score": round(100 * w.confidence),
                        "start_time": round(w.start, 3),
                        "end_time": round(w.end, 3),
                    }
                    for w in result.words
                ]
            if current.grammar.text is not None and final:
                # SISR: a grammar path with no tag is interpreted as the words it matched.
                alternative["interpretations"] = [result.tag or result.text]
                alternative["interpretation_scores"] = [score]
            alternatives.append(alternative)
        body: dict[str, Any] = {
            "alternatives": alternatives,
            "segment_index": current.segment,
            "last_segment": last,
            "final_result": final,
        }
        if result is not None:
            body["start_time"], body["end_time"] = round(result.start, 3), round(result.end, 3)
        body["result_status"] = str(status)
        if result is not None and final:
            body.update({k: v for k, v in result.extra.items() if k in current.config.infer})
        return body

    def _stop(self, current: _Recognition) -> None:
        self._current = None
        self._draining = not current.last_packet
        self.state = SessionState.IDLE

    def _end(
        self, current: _Recognition, status: RecognitionStatus, result: UtteranceResult | None = None
    ) -> list[Event]:
        self._stop(current)
        body = self._body(current, status, result, last=True)
        return [self._result(status, body), RecognitionStopped(current.id)]

    def _no_input_deadline(self, current: _Recognition) -> float | None:
        limit = current.config.no_input_timeout
        if limit is None or current.timers_at is None or current.heard_speech or current.segment:
            return None
        return current.timers_at[1] + limit

    def _check_timers(self, now: float) -> list[Event]:
        current = self._current
        if current is None or self.closed:
            return []
        config = current.config
        deadline = self._no_input_deadline(current)
        if deadline is not None and current.timers_at is not None:
            limit = deadline - current.timers_at[1]
            # Audio time decides when the client streams faster than real time; the wall clock when it
            # stops streaming, once the recognizer has caught up with what was sent.
            by_audio = current.processed - current.timers_at[0] >= limit
            by_clock = (
                now >= deadline and current.processed >= current.audio.seconds and not current.last_packet
            )
            if by_audio or by_clock:
                return self._end(current, RecognitionStatus.NO_INPUT_TIMEOUT)
        if current.speech_at is not None:
            spoken = current.processed - current.speech_at
            if config.max_segment is not None and spoken >= config.max_segment:
                return self._end(current, RecognitionStatus.MAX_SPEECH)
            if config.recognition_timeout is not None and spoken >= config.recognition_timeout:
                return self._end(current, RecognitionStatus.RECOGNITION_TIMEOUT)
        return []

    def next_deadline(self) -> float | None:
        """The wall-clock time `on_timer` wants to be called at, or None."""
        if self.closed or (self._hung and self.idle_timeout is None):
            return None
        deadlines = []
        if self.idle_timeout is not None:
            deadlines.append(self._last_activity + self.idle_timeout)
        current = self._current
        if current is not None:
            deadline = self._no_input_deadline(current)
            # While the recognizer is behind, audio_processed re-checks; a past deadline would spin the timer.
            if (
                deadline is not None
                and current.processed >= current.audio.seconds
                and not current.last_packet
            ):
                deadlines.append(deadline)
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> list[Event]:
        if self.closed:
            return []
        if self.idle_timeout is not None and now >= self._last_activity + self.idle_timeout:
            # The Java SDK maps a close reason containing "timeout." to SESSION_TIMEOUT (notes 1.1).
            self.closed = True
            events: list[Event] = []
            if self._current is not None:
                events.append(RecognitionStopped(self._current.id))
                self._stop(self._current)
            return [*events, CloseConnection(1000, "Session timeout.")]
        return self._check_timers(now)

    def connection_lost(self) -> list[Event]:
        """The socket closed: stop any recognition."""
        self.closed = True
        current = self._current
        if current is None:
            return []
        self._stop(current)
        return [RecognitionStopped(current.id)]
