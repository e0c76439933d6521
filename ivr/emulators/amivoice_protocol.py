"""Sans-I/O server core of the AmiVoice API WebSocket interface, written from the vendor documents.

Sources: ../shared/specs/002-amivoice-websocket.md (commands s/p/e, events S/E/C/U/A, timeouts, the sample
client and its session log), 001-amivoice-result-format.md (result JSON), protocol-notes.md Part 2 (what the
Wrp libraries send and need). Never written from our client codec (`ivr.asr.amivoice`, DESIGN.md rule 4).

One connection carries any number of sessions, each `s ... e`::

    s <audio_format> <grammar_file_names> [key=value ...]   -> "s" | "s <error>"
    p<audio>  (binary)                                      -> nothing | "p <error>"
    (server)  S <ms>, C, U <json> every resultUpdatedInterval ms, E <ms>, A <json>
    e                                                       -> remaining E/A, then "e"

Times are integer milliseconds of the session's audio and restart at every `s` (document 001, "결과에 포함된
시각 정보": "새로운 세션이 시작될 때마다 기준 시간이 리셋됩니다"). Every S is closed by an A (Wrp counts
them), also when `e` arrives in mid-utterance with no trailing silence.

Faults for the bridge's failover tests (`fault`): the shared ones (`ivr.emulators.session.Fault`; the 401 is
the server's) and the document's own errors: `busy` ("s can't connect to recognizer server" to every s),
`feed-error` ("p can't feed audio data to recognizer server" once the caller speaks), `timeout` ("e timeout
occurred while recognizing audio data from client", then the close, once the caller speaks).

`AmiVoiceServerProtocol` takes frames and engine events in, with time passed in, and returns typed events;
`ivr.emulators.amivoice` carries them out over `ivr.emulators.wsserver`. Audio of every documented format is
converted to 16-bit 8 kHz by `ivr.emulators.amivoice_audio`.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ivr.emulators.amivoice_audio import (
    AUDIO_FORMATS,
    ENGINE_RATE,
    AudioConverter,
    AudioFormat,
    parse_wav_header,
)
from ivr.emulators.recognizer import EngineEvent, SpeechStarted, TimedWord, Utterance

log = logging.getLogger(__name__)

# Connection engine names (document 002: `-a-general`; docs.amivoice.com engine list) -> engine language.
ENGINE_LANGUAGES: dict[str, str] = {
    "-a-general": "ja",
    "-a-general-input": "ja",
    "-a-general-en": "en",
    "-a-general-ko": "ko",
    "-a-general-zh": "zh",
}

# Reply texts. Documented: 002 ("s received unsupported audio format", "s can't connect to recognizer
# server", the two timeouts) and the p reference (protocol-notes 2.5). The authorization text is the one
# AmiVoice returns for a bad APPKEY; the unknown-engine text is ours (no document lists one).
UNSUPPORTED_AUDIO_FORMAT = "received unsupported audio format"
ILLEGAL_AUTHORIZATION = "received illegal service authorization"
CANT_CONNECT = "can't connect to recognizer server"
CANT_FEED = "can't feed audio data to recognizer server"
NO_COMMUNICATION = "timeout occurred while recognizing audio data from client"


class Fault(Enum):
    """Faults the core commits (`--fault`); the names are the command line's."""

    CLOSE_MID_UTTERANCE = "close-mid-utterance"  # the socket dropped (1011) at the S event
    NO_REPLY = "no-reply"  # s never answered
    MALFORMED = "malformed"  # s answered, then an A cut off mid-JSON
    BUSY = "busy"  # every s answered "s can't connect to recognizer server" (002: retry)
    FEED_ERROR = "feed-error"  # "p can't feed audio data to recognizer server" at the S event
    TIMEOUT = "timeout"  # "e timeout occurred ..." and the close at the S event (002: reconnect)


UNKNOWN_ENGINE = "can't find grammar file"
ALREADY_STARTED = "can't start feeding data (a session is already started)"

DEFAULT_RESULT_UPDATED_INTERVAL = 1000  # ms; 0 = no U events
DEFAULT_SILENCE_TIMEOUT = 600.0  # s of audio without speech (document 002, "Maintaining the Session")
DEFAULT_NO_COMMUNICATION_TIMEOUT = 60.0  # s without any frame from the client (document 002)


# --- the s command ---


class CommandError(Exception):
    """An s command the server refuses; `message` is the text after "s "."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def split_fields(line: str) -> list[str]:
    """Space-separated fields; double quotes group spaces, and `""` inside quotes is one quote (002, 2.2)."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    i = 0
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == '"':
                if line[i + 1 : i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = started = True
        elif ch == " ":
            if started:
                fields.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
        i += 1
    if started:
        fields.append("".join(current))
    return fields


@dataclass(frozen=True, slots=True)
class ProfileWord:
    """One `profileWords` entry ("written spoken"): a word added to the recognition and its reading."""

    written: str
    spoken: str


def parse_profile_words(value: str) -> tuple[ProfileWord, ...]:
    """`written spoken|written spoken|...` (the reading defaults to the written form)."""
    words: list[ProfileWord] = []
    for entry in value.split("|"):
        parts = entry.split()
        if parts:
            words.append(ProfileWord(parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return tuple(words)


@dataclass(frozen=True, slots=True)
class StartCommand:
    """A parsed s command."""

    audio_format: AudioFormat
    engine_name: str
    language: str
    parameters: Mapping[str, str]
    profile_words: tuple[ProfileWord, ...] = ()
    result_updated_interval: int = DEFAULT_RESULT_UPDATED_INTERVAL


def parse_start(
    line: str, *, appkey: str | None, engines: Mapping[str, str] = ENGINE_LANGUAGES
) -> StartCommand:
    """Parse `s <audio_format> <grammar_file_names> key=value ...`; raises CommandError with the reply."""
    fields = split_fields(line)
    if not fields or fields[0] != "s":
        raise CommandError("received illegal command")
    audio_format = AUDIO_FORMATS.get(fields[1]) if len(fields) > 1 else None
    if audio_format is None:
        raise CommandError(UNSUPPORTED_AUDIO_FORMAT)
    # Wrp appends \x01 to the grammar field, or sends \x01 alone when none is set (protocol-notes 2.2).
    names = [n for n in (fields[2] if len(fields) > 2 else "").split("\x01") if n.strip()]
    parameters: dict[str, str] = {}
    for item in fields[3:]:
        key, sep, value = item.partition("=")
        if sep:
            parameters[key] = value
    if appkey is not None and parameters.get("authorization") != appkey:
        raise CommandError(ILLEGAL_AUTHORIZATION)
    engine_name = next((n for n in names if n in engines), None)
    if engine_name is None:
        shown = " ".join(names) if names else "(none)"
        raise CommandError(f"{UNKNOWN_ENGINE} ({shown})")
    interval = DEFAULT_RESULT_UPDATED_INTERVAL
    raw_interval = parameters.get("resultUpdatedInterval", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses (as it does over 4,300 digits).
    if raw_interval.strip().isascii() and raw_interval.strip().isdigit() and len(raw_interval.strip()) <= 9:
        interval = int(raw_interval)
    return StartCommand(
        audio_format,
        engine_name,
        engines[engine_name],
        parameters,
        parse_profile_words(parameters.get("profileWords", "")),
        interval,
    )


# --- results ---


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _dumps(payload: dict[str, Any]) -> str:
    # Non-ASCII text as \uXXXX, as every example of documents 001/002 shows it.
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":"))


def interim_result(text: str = "") -> str:
    """A U payload (001, "중간 결과"): tokens' written forms and the text so far, ending with "..."."""
    tokens = [{"written": w} for w in text.split()] + [{"written": "..."}]
    return _dumps({"results": [{"tokens": tokens, "text": text + "..."}], "text": text + "..."})


def final_result(
    utterance: Utterance, utterance_id: str, spoken: Callable[[str], str], *, word_separator: str = " "
) -> str:
    """An A payload (001, "발화 구간의 결과"): tokens, confidence, times, text; code/message empty."""
    tokens: list[dict[str, Any]] = []
    words = utterance.words
    if not words and utterance.text:
        parts = utterance.text.split() if word_separator else [utterance.text]
        span = (utterance.end - utterance.start) / max(1, len(parts))
        words = tuple(
            TimedWord(p, utterance.start + k * span, utterance.start + (k + 1) * span, utterance.confidence)
            for k, p in enumerate(parts)
        )
    for word in words:
        tokens.append(
            {
                "written": word.text,
                "confidence": round(float(word.confidence), 2),
                "starttime": _ms(word.start),
                "endtime": _ms(word.end),
                "spoken": spoken(word.text),
            }
        )
    end = _ms(utterance.end)
    if tokens:
        end = min(end, max(int(t["endtime"]) for t in tokens))  # 001: results[0].endtime <= E
    segment = {
        "tokens": tokens,
        "confidence": round(float(utterance.confidence), 3) if utterance.text else 0.0,
        "starttime": _ms(utterance.start),
        "endtime": end,
        "tags": [],
        "rulename": "",
        "text": utterance.text,
    }
    return _dumps(
        {"results": [segment], "utteranceid": utterance_id, "text": utterance.text, "code": "", "message": ""}
    )


# --- events out of the core ---


@dataclass(frozen=True, slots=True)
class SendText:
    """A text frame to send: a command response or an event."""

    text: str


@dataclass(frozen=True, slots=True)
class StartRequested:
    """A valid s command: the adapter answers with `accept_start()` or `reject_start()`."""

    command: StartCommand


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """Audio to recognize, already 16-bit little-endian 8 kHz mono."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class EndRequested:
    """e received: flush the engine, pass its events to `recognized()`, then call `finished()`."""


@dataclass(frozen=True, slots=True)
class AbortRecognition:
    """Drop the session's recognition without waiting for results (a timeout ended it)."""


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the connection after the frames before it; 1011 for an emulated crash."""

    code: int = 1000


Event = SendText | StartRequested | AudioReceived | EndRequested | AbortRecognition | CloseConnection


class SessionState(Enum):
    """Where the connection is: idle <-> starting -> streaming -> ending -> idle; closed after a timeout."""

    IDLE = "idle"
    STARTING = "starting"  # a valid s, waiting for accept_start/reject_start
    STREAMING = "streaming"
    ENDING = "ending"  # e received, the engine is flushing
    CLOSED = "closed"


@dataclass(slots=True)
class _Session:
    command: StartCommand
    converter: AudioConverter
    audio_seconds: float = 0.0  # audio received in this session
    in_utterance: bool = False
    last_update: float = 0.0  # engine audio time of the last U
    last_speech: float = 0.0  # audio time speech was last heard (start of session, S or end of utterance)
    pending: list[bytes] = field(default_factory=list)  # audio received before accept_start
    header_checked: bool = False


class AmiVoiceServerProtocol:
    """Sans-I/O server side of one AmiVoice WebSocket connection (any number of s ... e sessions)."""

    def __init__(
        self,
        *,
        appkey: str | None = None,
        engines: Mapping[str, str] = ENGINE_LANGUAGES,
        silence_timeout: float = DEFAULT_SILENCE_TIMEOUT,
        no_communication_timeout: float = DEFAULT_NO_COMMUNICATION_TIMEOUT,
        connection_id: str = "emulator",
        reading: Callable[[str, str], str] | None = None,
        now: float = 0.0,
        fault: Fault | None = None,
    ) -> None:
        self.fault = fault
        self.appkey = appkey
        self.engines = dict(engines)
        self.silence_timeout = silence_timeout
        self.no_communication_timeout = no_communication_timeout
        self.connection_id = connection_id
        self._reading = reading  # (language, written) -> spoken; None: the written form
        self.state = SessionState.IDLE
        self.session: _Session | None = None
        self._sessions = 0
        self._utterances = 0
        self._last_received = now
        self._refused_audio = False  # one p error per idle period, not one per frame

    # --- time ---

    @property
    def deadline(self) -> float | None:
        """When `timeout()` must be called: the no-communication timeout, unless the server is busy."""
        if self.state in (SessionState.CLOSED, SessionState.ENDING, SessionState.STARTING):
            return None
        return self._last_received + self.no_communication_timeout

    def timeout(self, now: float) -> list[Event]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        events: list[Event] = [AbortRecognition()] if self.session is not None else []
        self._end_session(SessionState.CLOSED)
        return [*events, SendText(f"e {NO_COMMUNICATION}"), CloseConnection()]

    # --- frames from the client ---

    def receive_text(self, text: str, now: float) -> list[Event]:
        if self.state is SessionState.CLOSED:
            return []
        self._last_received = now
        # Some clients end commands with a newline; Wrp strips one from replies, so be as lenient here.
        command = text.rstrip("\r\n")
        if command == "s" or command.startswith("s "):
            return self._start(command)
        if command == "e":
            return self._end()
        if command[:1] == "p":
            return self._audio(command[1:].encode("latin-1", "replace"))
        log.debug("ignored text frame %r", command[:40])
        return []

    def receive_bytes(self, data: bytes, now: float) -> list[Event]:
        if self.state is SessionState.CLOSED:
            return []
        self._last_received = now
        if data[:1] == b"p":
            return self._audio(data[1:])
        if data[:1] in (b"s", b"e"):
            try:
                return self.receive_text(data.decode("utf-8"), now)
            except UnicodeDecodeError:
                return []
        return []

    def _start(self, line: str) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return [SendText(f"s {ALREADY_STARTED}")]
        try:
            command = parse_start(line, appkey=self.appkey, engines=self.engines)
        except CommandError as exc:
            return [SendText(f"s {exc.message}")]
        # The request faults strike before any recognizer is asked for (an emulator needs none loaded).
        if self.fault is Fault.BUSY:
            return [SendText(f"s {CANT_CONNECT}")]
        if self.fault is Fault.MALFORMED:
            return [SendText("s"), SendText('A {"results":[{"tokens":[')]  # an A cut off mid-JSON
        self.state = SessionState.STARTING
        self.session = _Session(command, AudioConverter(command.audio_format))
        if self.fault is Fault.NO_REPLY:
            return []  # STARTING for ever: audio is held, nothing answers
        return [StartRequested(command)]

    def accept_start(self) -> list[Event]:
        """The engine is ready: "s", then any audio that arrived meanwhile."""
        if self.state is not SessionState.STARTING or self.session is None:
            return []
        self.state = SessionState.STREAMING
        self._sessions += 1
        self._refused_audio = False
        pending, self.session.pending = self.session.pending, []
        events: list[Event] = [SendText("s")]
        for chunk in pending:
            events += self._audio(chunk)
        return events

    def reject_start(self, reason: str) -> list[Event]:
        """The engine cannot serve the session: "s <reason>" and back to idle."""
        if self.state is not SessionState.STARTING:
            return []
        self._end_session(SessionState.IDLE)
        return [SendText(f"s {reason}")]

    def _audio(self, data: bytes) -> list[Event]:
        session = self.session
        if self.state is SessionState.STARTING and session is not None:
            session.pending.append(data)
            return []
        if self.state is not SessionState.STREAMING or session is None:
            if self.state is SessionState.IDLE and not self._refused_audio:
                self._refused_audio = True
                return [SendText(f"p {CANT_FEED}")]
            return []
        if not session.header_checked:
            session.header_checked = True
            try:
                found = parse_wav_header(data)
            except (ValueError, struct.error):
                self._end_session(SessionState.IDLE)
                self._refused_audio = True
                return [AbortRecognition(), SendText(f"p {UNSUPPORTED_AUDIO_FORMAT}")]
            if found is not None:
                session.converter = AudioConverter(found[0])
                data = data[found[1] :]
        pcm = session.converter.convert(data)
        session.audio_seconds += len(pcm) / (2 * ENGINE_RATE)
        return [AudioReceived(pcm)] if pcm else []

    def _end(self) -> list[Event]:
        if self.state is SessionState.STREAMING:
            self.state = SessionState.ENDING
            return [EndRequested()]
        if self.state is SessionState.IDLE:
            self._refused_audio = False
            return [SendText("e")]  # nothing to end (e.g. after a p error ended the session)
        return []

    # --- events from the engine ---

    def recognized(self, events: Sequence[EngineEvent], audio_time: float) -> list[Event]:
        """Engine events of this session; `audio_time`: seconds of audio the engine has been fed so far."""
        session = self.session
        if session is None or self.state not in (SessionState.STREAMING, SessionState.ENDING):
            return []
        out: list[Event] = []
        for event in events:
            if isinstance(event, SpeechStarted):
                if not session.in_utterance:
                    out += self._speech_started(session, event.time)
                if self.session is not session:
                    return out  # a fault ended the session at its S
            else:
                if not session.in_utterance:
                    out += self._speech_started(session, event.start)
                if self.session is not session:
                    return out
                out += self._utterance_ended(session, event)
        if not session.in_utterance and audio_time - session.last_speech >= self.silence_timeout:
            # 002: after 600 s of audio without speech the server ends the session with this p response.
            # Counted on the engine's clock: a client may send audio far faster than it is recognized.
            self._end_session(SessionState.IDLE)
            self._refused_audio = True
            return [*out, SendText(f"p {CANT_FEED}"), AbortRecognition()]
        interval = session.command.result_updated_interval / 1000
        if session.in_utterance and interval > 0 and audio_time - session.last_update >= interval:
            session.last_update = audio_time
            out.append(SendText(f"U {interim_result()}"))
        return out

    def _speech_started(self, session: _Session, time: float) -> list[Event]:
        session.in_utterance = True
        session.last_update = time
        session.last_speech = time
        if self.fault in (Fault.CLOSE_MID_UTTERANCE, Fault.FEED_ERROR, Fault.TIMEOUT):
            return self._fail_mid_utterance(time)
        # C (recognition started) right after S, as in the document's session log.
        return [SendText(f"S {_ms(time)}"), SendText("C")]

    def _fail_mid_utterance(self, time: float) -> list[Event]:
        speech = SendText(f"S {_ms(time)}")
        if self.fault is Fault.FEED_ERROR:
            self._end_session(SessionState.IDLE)
            self._refused_audio = True
            return [speech, SendText(f"p {CANT_FEED}"), AbortRecognition()]
        self._end_session(SessionState.CLOSED)
        if self.fault is Fault.TIMEOUT:
            return [speech, AbortRecognition(), SendText(f"e {NO_COMMUNICATION}"), CloseConnection()]
        return [speech, AbortRecognition(), CloseConnection(1011)]

    def _utterance_ended(self, session: _Session, utterance: Utterance) -> list[Event]:
        session.in_utterance = False
        session.last_speech = max(session.last_speech, utterance.end)
        self._utterances += 1
        utterance_id = f"{self.connection_id}-{self._sessions:03d}{self._utterances:04d}"
        language = session.command.language
        readings = {w.written: w.spoken for w in session.command.profile_words}

        def spoken(written: str) -> str:
            if written in readings:
                return readings[written]
            return self._reading(language, written) if self._reading is not None else written

        separator = "" if language in ("ja", "zh") else " "
        payload = final_result(utterance, utterance_id, spoken, word_separator=separator)
        return [SendText(f"E {_ms(utterance.end)}"), SendText(f"A {payload}")]

    def finished(self) -> list[Event]:
        """The engine has flushed after e: close an open utterance, then "e"."""
        if self.state is not SessionState.ENDING or self.session is None:
            return []
        session = self.session
        events: list[Event] = []
        if session.in_utterance:
            end = session.audio_seconds
            events += self._utterance_ended(session, Utterance("", 0.0, session.last_speech, end))
        self._end_session(SessionState.IDLE)
        return [*events, SendText("e")]

    def recognizer_failed(self) -> list[Event]:
        """The engine broke mid-session: close an open S with an empty A, then fail the p (or the e)."""
        session = self.session
        if session is None or self.state not in (SessionState.STREAMING, SessionState.ENDING):
            return []
        events: list[Event] = []
        if session.in_utterance:
            events += self._utterance_ended(
                session, Utterance("", 0.0, session.last_speech, session.audio_seconds)
            )
        command = "e" if self.state is SessionState.ENDING else "p"
        self._end_session(SessionState.IDLE)
        self._refused_audio = command == "p"
        return [*events, SendText(f"{command} {CANT_FEED}")]

    def _end_session(self, state: SessionState) -> None:
        self.session = None
        self.state = state
