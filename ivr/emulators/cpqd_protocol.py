"""CPQD ASR WebSocket protocol 2.3/2.4, the server side, sans-I/O: framing, parameters, the session machine.

Sources: /work/shared/specs/003-cpqd-asr-websocket-2.4.md (the 2.4 additions: Channel-Identifier,
Verify-Buffer-Utterance, Infer-*-enabled, the classifier objects) and protocol-notes.md part 1 (the 2.3
protocol as CPQD's public SDKs speak it). Written from those documents only, never from our client codec.

A message is one WebSocket frame: `ASR 2.x TYPE`, header lines `Name: value`, a blank line, then exactly
Content-Length bytes of body. The SDKs differ (notes 1.2), so parsing is tolerant: LF or CRLF, a missing blank
line or final newline, no space after the colon, any header order, case-insensitive names, `true/false/1/0` in
any case, stray CR/LF after the body. Replies are strict: CRLF, plain-ASCII header values, `Handle` on every
message, `Error-Code`/`Message` only on failures (the Python SDK aborts on any `Error-Code`, notes 1.4).

`CpqdServerSession` is one connection's session: bytes in, events out (`SendMessage` to write,
`RecognitionRequested` for the adapter to open a recognizer, `AudioReceived`, `AudioEnded`,
`RecognitionStopped`, `CloseConnection`); the recognizer's findings come back through `speech_started`,
`utterance`, `audio_processed`, `audio_finished`; time is always passed in and timers are deadlines
(`next_deadline`/`on_timer`). `ChannelRegistry` is the per-process record of Channel-Identifiers (sessions,
recognitions, verify buffer), pure data shared by every session of the process.
"""

from __future__ import annotations

import json
import re
import struct
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

PROTOCOL_MAJOR = "2"
DEFAULT_VERSION = "2.4"
SAMPLE_WIDTH = 2  # 16-bit signed little-endian linear PCM (notes 1.3)


class MessageType(StrEnum):
    """Every message type of the protocol (the Java SDK's AsrMessageType, notes 1.4)."""

    CREATE_SESSION = "CREATE_SESSION"
    SET_PARAMETERS = "SET_PARAMETERS"
    GET_PARAMETERS = "GET_PARAMETERS"
    DEFINE_GRAMMAR = "DEFINE_GRAMMAR"
    START_RECOGNITION = "START_RECOGNITION"
    START_INPUT_TIMERS = "START_INPUT_TIMERS"
    SEND_AUDIO = "SEND_AUDIO"
    CANCEL_RECOGNITION = "CANCEL_RECOGNITION"
    INTERPRET_TEXT = "INTERPRET_TEXT"
    RELEASE_SESSION = "RELEASE_SESSION"
    RESPONSE = "RESPONSE"
    START_OF_SPEECH = "START_OF_SPEECH"
    END_OF_SPEECH = "END_OF_SPEECH"
    RECOGNITION_RESULT = "RECOGNITION_RESULT"


SERVER_MESSAGES = frozenset(
    {
        MessageType.RESPONSE,
        MessageType.START_OF_SPEECH,
        MessageType.END_OF_SPEECH,
        MessageType.RECOGNITION_RESULT,
    }
)


class ResponseResult(StrEnum):
    """`Result` of a RESPONSE (Java ResponseMessage.Result)."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"  # not executed: server failure
    INVALID_ACTION = "INVALID_ACTION"  # not executable in the session's state
    INVALID_MESSAGE = "INVALID_MESSAGE"  # badly formatted


class SessionStatus(StrEnum):
    """`Session-Status` on the wire: exactly these three (Java SessionStatus)."""

    IDLE = "IDLE"
    LISTENING = "LISTENING"
    RECOGNIZING = "RECOGNIZING"


class RecognitionStatus(StrEnum):
    """`Result-Status` / `result_status` (Java RecognitionStatus)."""

    NONE = "NONE"
    PROCESSING = "PROCESSING"
    RECOGNIZED = "RECOGNIZED"
    NO_MATCH = "NO_MATCH"
    NO_INPUT_TIMEOUT = "NO_INPUT_TIMEOUT"
    MAX_SPEECH = "MAX_SPEECH"
    EARLY_SPEECH = "EARLY_SPEECH"
    RECOGNITION_TIMEOUT = "RECOGNITION_TIMEOUT"
    NO_SPEECH = "NO_SPEECH"
    CANCELED = "CANCELED"
    FAILURE = "FAILURE"


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


class ErrorCode(StrEnum):
    """The emulator's own `Error-Code` values: the real server's are not in the documents (notes 1.7)."""

    FAILURE = "001"
    INVALID_ACTION = "002"
    INVALID_MESSAGE = "003"
    INVALID_PARAMETER = "004"
    GRAMMAR = "005"
    AUDIO = "006"


class MessageError(Exception):
    """The peer sent a message we cannot parse; answered with INVALID_MESSAGE."""

    def __init__(self, reason: str, method: MessageType | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.method = method


# --- framing ---


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed protocol message; header names keep their spelling, lookups ignore case."""

    version: str
    type: MessageType
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of a header (the last one if repeated), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


_START_LINE = re.compile(r"ASR\s+(\d+)\.(\d+)\s+([A-Za-z_]+)\s*")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def parse_message(data: bytes | str) -> Message:
    """Parse one client frame; raises MessageError."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    end = _HEADER_END.search(raw)
    head, rest = (raw[: end.start()], raw[end.end() :]) if end else (raw, b"")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("headers are not UTF-8 text") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    match = _START_LINE.fullmatch(lines[0].strip("\r"))
    if match is None:
        raise MessageError("the first line must be 'ASR <version> <message type>'")
    major, minor, name = match.groups()
    try:
        kind = MessageType(name.upper())  # the Java decoder upper-cases the type
    except ValueError:
        raise MessageError("unknown message type") from None
    if major != PROTOCOL_MAJOR:
        raise MessageError(f"protocol version {major}.{minor} is not supported", kind)
    if kind in SERVER_MESSAGES:
        raise MessageError(f"{kind} is a server message", kind)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        line = line.strip("\r")
        if not line.strip():
            continue
        key, _, value = line.partition(":")  # a line with no colon is a name with an empty value (Java)
        if not key.strip():
            raise MessageError("a header line has no name", kind)
        headers.append((key.strip(), value.strip()))
    message = Message(f"{major}.{minor}", kind, tuple(headers))
    length_text = message.header("Content-Length")
    if length_text is None:
        # No length: whatever follows the blank line, unless it is only stray line ends.
        body = b"" if not rest.strip(b"\r\n") else rest
    else:
        if not re.fullmatch(r"[0-9]+", length_text):  # str.isdigit() takes "²", which int() refuses
            raise MessageError("Content-Length must be a whole number of bytes", kind)
        length = int(length_text)
        if length > len(rest):
            raise MessageError(f"Content-Length {length} but {len(rest)} body bytes", kind)
        body = rest[:length]
    return Message(message.version, kind, message.headers, body)


def _ascii(value: str) -> str:
    # Header values go out as plain ASCII on one line: accents dropped, anything else replaced.
    folded = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    text = " ".join(text.split())
    return text.encode("ascii", "replace").decode("ascii")


def build_message(
    version: str, kind: MessageType, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """One server frame: CRLF line ends, Content-Length in bytes, the blank line always."""
    lines = [f"ASR {version} {kind}"]
    lines += [f"{name}: {_ascii(value)}" for name, value in headers]
    if body:
        lines += [f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def _message_text(reason: str) -> str:
    # The Python SDK's parser drops a header line with a second colon, and takes any line containing
    # "ASR" for a start line: keep both out of our Message texts.
    return reason.replace(": ", " - ").replace(":", " ").replace("ASR", "asr")


# --- recognition parameters (notes 1.5, document 003) ---


class ParameterType(Enum):
    """The Java field type of a recognition parameter."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One recognition parameter: its canonical name, type and the emulator's default."""

    name: str
    type: ParameterType
    default: str


# Defaults are the emulator's own: the documents do not give the real server's.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("noInputTimeout.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("noInputTimeout.value", ParameterType.INTEGER, "5000"),
    Parameter("recognitionTimeout.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("recognitionTimeout.value", ParameterType.INTEGER, "30000"),
    Parameter("decoder.startInputTimers", ParameterType.BOOLEAN, "true"),
    Parameter("decoder.maxSentences", ParameterType.INTEGER, "1"),
    Parameter("endpointer.headMargin", ParameterType.INTEGER, "250"),
    Parameter("endpointer.tailMargin", ParameterType.INTEGER, "450"),
    Parameter("endpointer.waitEnd", ParameterType.INTEGER, "900"),
    Parameter("endpointer.levelThreshold", ParameterType.FLOAT, "3.0"),
    Parameter("endpointer.levelMode", ParameterType.INTEGER, "2"),
    Parameter("endpointer.autoLevelLen", ParameterType.INTEGER, "350"),
    Parameter("endpointer.useToneDetectors", ParameterType.BOOLEAN, "false"),
    Parameter("decoder.confidenceThreshold", ParameterType.INTEGER, "0"),
    Parameter("decoder.continuousMode", ParameterType.BOOLEAN, "false"),
    Parameter("decoder.wordDetails", ParameterType.INTEGER, "0"),
    Parameter("endpointer.maxSegmentDuration", ParameterType.INTEGER, "60000"),
    Parameter("endpointer.segmentOverlapTime", ParameterType.INTEGER, "0"),
    Parameter("hints.words", ParameterType.STRING, ""),
    Parameter("textify.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("textify.formatting.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("textify.formatting.rules", ParameterType.STRING, ""),
    Parameter("loggingTag", ParameterType.STRING, ""),
    Parameter("license.manager.accountTag", ParameterType.STRING, ""),
    Parameter("Infer-age-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Infer-gender-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Infer-emotion-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Verify-Buffer-Utterance", ParameterType.BOOLEAN, "false"),
    Parameter("Media-Type", ParameterType.STRING, "audio/raw"),
)
PARAMETER_BY_NAME = {p.name.lower(): p for p in PARAMETERS}
# Other spellings seen in the SDKs (the C++ SDK's, notes 1.5) and in our brief.
ALIASES = {
    "licensemanager.accounttag": "license.manager.accountTag",
    "ver-buffer-utterance": "Verify-Buffer-Utterance",
    "continuous-mode": "decoder.continuousMode",
}
MEDIA_TYPES = ("audio/raw", "audio/wav", "application/octet-stream")
# What GET_PARAMETERS reports about the shared verify buffer of the session's Channel-Identifier.
VERIFY_BUFFER_UTTERANCES = "Verify-Buffer-Utterances"
VERIFY_BUFFER_DURATION = "Verify-Buffer-Duration"
CHANNEL_IDENTIFIER = "Channel-Identifier"
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def lookup_parameter(name: str) -> Parameter | None:
    key = name.lower()
    return PARAMETER_BY_NAME.get(ALIASES.get(key, key).lower())


def normalize_value(parameter: Parameter, raw: str) -> str:
    """A parameter value in its canonical spelling; raises ValueError."""
    value = raw.strip()
    if parameter.type is ParameterType.BOOLEAN:
        if value.lower() in _TRUE:
            return "true"
        if value.lower() in _FALSE:
            return "false"
        raise ValueError(f"{parameter.name} takes true or false")
    if parameter.type is ParameterType.INTEGER:
        number = int(value)
        if number < 0:
            raise ValueError(f"{parameter.name} must not be negative")
        return str(number)
    if parameter.type is ParameterType.FLOAT:
        return repr(float(value))
    if parameter.name == "Media-Type" and value.lower() not in MEDIA_TYPES:
        raise ValueError(f"Media-Type must be one of {', '.join(MEDIA_TYPES)}")
    return value.lower() if parameter.name == "Media-Type" else value


@dataclass(frozen=True, slots=True)
class RecognitionConfig:
    """The parameters one recognition runs with (session values overridden by START_RECOGNITION's)."""

    values: Mapping[str, str]

    def flag(self, name: str) -> bool:
        return self.values[name] == "true"

    def number(self, name: str) -> int:
        return int(self.values[name])

    @property
    def continuous(self) -> bool:
        return self.flag("decoder.continuousMode")

    @property
    def no_input_timeout(self) -> float | None:
        enabled = self.flag("noInputTimeout.enabled")
        return self.number("noInputTimeout.value") / 1000 if enabled else None

    @property
    def recognition_timeout(self) -> float | None:
        enabled = self.flag("recognitionTimeout.enabled")
        return self.number("recognitionTimeout.value") / 1000 if enabled else None

    @property
    def max_segment(self) -> float | None:
        value = self.number("endpointer.maxSegmentDuration")
        return value / 1000 if value > 0 else None

    @property
    def infer(self) -> frozenset[str]:
        """The classifier objects to add: a subset of age_scores, gender_scores, emotion_scores."""
        names = (("age", "age_scores"), ("gender", "gender_scores"), ("emotion", "emotion_scores"))
        return frozenset(key for kind, key in names if self.flag(f"Infer-{kind}-enabled"))


def default_parameters() -> dict[str, str]:
    return {p.name: p.default for p in PARAMETERS}


# --- the per-process record of Channel-Identifiers ---


@dataclass
class ChannelRecord:
    """What happened under one Channel-Identifier in this process."""

    sessions: list[str] = field(default_factory=list)  # handles, in creation order
    sessions_released: int = 0
    recognitions: int = 0
    verify_buffer: deque[tuple[str, float, bytes]] = field(default_factory=deque)  # (handle, seconds, pcm)

    @property
    def verify_seconds(self) -> float:
        return sum(seconds for _, seconds, _ in self.verify_buffer)


class ChannelRegistry:
    """Channel-Identifier -> its sessions, recognitions and verify buffer, shared by the process's sessions.

    The verify buffer keeps the last `max_utterances` utterances and at most `max_seconds` of audio: a
    biometric verifier wants recent speech, not the whole call.
    """

    def __init__(self, *, max_utterances: int = 20, max_seconds: float = 120.0) -> None:
        self.channels: dict[str, ChannelRecord] = {}
        self.max_utterances = max_utterances
        self.max_seconds = max_seconds

    def record(self, channel: str) -> ChannelRecord:
        return self.channels.setdefault(channel, ChannelRecord())

    def session_created(self, channel: str, handle: str) -> None:
        self.record(channel).sessions.append(handle)

    def session_released(self, channel: str) -> None:
        self.record(channel).sessions_released += 1

    def recognition_started(self, channel: str) -> None:
        self.record(channel).recognitions += 1

    def keep_utterance(self, channel: str, handle: str, pcm: bytes, sample_rate: int) -> None:
        buffer = self.record(channel).verify_buffer
        buffer.append((handle, len(pcm) / (SAMPLE_WIDTH * sample_rate), pcm))
        while len(buffer) > self.max_utterances or (
            len(buffer) > 1 and sum(s for _, s, _ in buffer) > self.max_seconds
        ):
            buffer.popleft()

    def status(self, channel: str) -> dict[str, Any] | None:
        """The JSON the HTTP status endpoint serves, or None for a channel never seen."""
        record = self.channels.get(channel)
        if record is None:
            return None
        return {
            "channel_identifier": channel,
            "sessions": list(record.sessions),
            "sessions_created": len(record.sessions),
            "sessions_released": record.sessions_released,
            "recognitions": record.recognitions,
            "verify_buffer": {
                "utterances": len(record.verify_buffer),
                "seconds": round(record.verify_seconds, 3),
                "sessions": sorted({handle for handle, _, _ in record.verify_buffer}),
            },
        }


# --- audio in ---


class AudioFormatError(Exception):
    """Audio we cannot take (a WAV that is not 16-bit mono PCM at the session's rate)."""


class AudioInput:
    """A recognition's audio stream as PCM: a leading WAV header stripped, samples kept whole across frames.

    The Python SDK sends a WAV file's bytes as is, header in the first chunk, and labels its last packet
    audio/wav whatever it sent before (notes 1.3), so the header is recognized by its RIFF magic at the start
    of the stream, not by the Content-Type.
    """

    MAX_HEADER = 1 << 20

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._head = bytearray()
        self._started = False  # past the header (or there is none)
        self._odd = b""
        self.received = 0  # PCM bytes handed out

    def feed(self, data: bytes) -> bytes:
        if not self._started:
            self._head += data
            if len(self._head) < 12 and b"RIFF".startswith(bytes(self._head[:4])):
                return b""
            if self._head[:4] != b"RIFF":
                self._started = True
                data, self._head = bytes(self._head), bytearray()
            else:
                offset = self._wav_data_offset()
                if offset is None:
                    if len(self._head) > self.MAX_HEADER:
                        raise AudioFormatError("no data chunk in the WAV header")
                    return b""
                self._started = True
                data, self._head = bytes(self._head[offset:]), bytearray()
        data = self._odd + data
        cut = len(data) & ~1
        self._odd = data[cut:]
        self.received += cut
        return data[:cut]

    def _wav_data_offset(self) -> int | None:
        head = bytes(self._head)
        if len(head) >= 12 and head[8:12] != b"WAVE":
            raise AudioFormatError("a RIFF stream that is not WAVE")
        pos = 12
        while pos + 8 <= len(head):
            chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
            if chunk == b"data":
                return pos + 8
            if chunk == b"fmt ":
                if pos + 8 + 16 > len(head):
                    return None
                fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
                if fmt not in (1, 0xFFFE) or channels != 1 or bits != 16:
                    raise AudioFormatError("WAV audio must be 16-bit mono linear PCM")
                if rate != self.sample_rate:
                    raise AudioFormatError(f"WAV audio at {rate} Hz on a {self.sample_rate} Hz session")
            pos += 8 + size + (size & 1)
        return None

    @property
    def seconds(self) -> float:
        return self.received / (SAMPLE_WIDTH * self.sample_rate)


# --- events out of the core ---


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A server message to send as one binary frame (the Java SDK decodes only binary, notes 1.1)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class GrammarSource:
    """What a recognition decodes: a grammar (SRGS ABNF/XML or phrases), or None for the free-form SLM."""

    uri: str
    text: str | None


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
class TimedWord:
    """A word of a result with its times in seconds from the recognition's first sample."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True, slots=True)
class UtteranceResult:
    """What the recognizer found in one utterance; text "" means rejected (NO_MATCH)."""

    text: str
    confidence: float  # 0..1
    start: float
    end: float
    words: tuple[TimedWord, ...] = ()
    tag: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # the 2.4 classifier objects to merge in
    audio: bytes = b""  # the utterance's PCM, for the verify buffer


# --- language models ---

GRAMMAR_TYPES = (
    "application/srgs",
    "application/srgs+xml",
    "application/grammar+xml",
    "application/xml",
    "text/plain",
    "text/xml",
)
URI_LIST = "text/uri-list"
SLM_PREFIX = "builtin:slm/"
BUILTIN_PREFIX = "builtin:grammar/"
_DIGITS = "zero | um | dois | três | quatro | cinco | seis | sete | oito | nove | meia"
# The emulator's own built-in grammars: the real server's catalogue is not in the documents.
BUILTIN_GRAMMARS = {
    "yes_no": "#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $yes_no;\n"
    "$yes_no = sim {sim} | não {nao} | claro {sim} | com certeza {sim} | de jeito nenhum {nao};\n",
    "digits": f"#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $digits;\n$digits = ({_DIGITS})<1->;\n",
}
BUILTIN_GRAMMARS["phone"] = BUILTIN_GRAMMARS["digits"]
BUILTIN_GRAMMARS["number"] = BUILTIN_GRAMMARS["digits"]


class LanguageModelError(Exception):
    """A language model URI or grammar the emulator cannot serve (answered with FAILURE)."""


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _uri_list(body: bytes) -> list[str]:
    # One URI per line, LF or CRLF, with or without a final line end (notes 1.3).
    lines = body.decode("utf-8", "replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


# --- the session machine ---


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
            headers += [("Error-Code", str(code or ErrorCode.FAILURE)), ("Message", _message_text(reason))]
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
        content_type = _media_type(message.header("Content-Type"))
        if not grammar_id:
            return self._invalid_message(
                message, MessageError("Content-ID names the grammar"), ErrorCode.GRAMMAR
            )
        if not message.body:
            return self._invalid_message(message, MessageError("no grammar in the body"), ErrorCode.GRAMMAR)
        try:
            if content_type == URI_LIST:
                uris = _uri_list(message.body)
                if not uris:
                    raise LanguageModelError("an empty URI list")
                source = self._resolve(uris[0])
            elif content_type in ("", *GRAMMAR_TYPES):
                source = GrammarSource(f"session:{grammar_id}", self._grammar_text(message.body))
            else:
                raise MessageError(f"unsupported content-type {content_type}")
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.GRAMMAR)
        except LanguageModelError as exc:
            return [
                self._response(
                    message.type,
                    ResponseResult.FAILURE,
                    code=ErrorCode.GRAMMAR,
                    reason=str(exc),
                    version=message.version,
                )
            ]
        self.grammars[grammar_id] = GrammarSource(f"session:{grammar_id}", source.text)
        return [self._response(message.type, version=message.version)]

    @staticmethod
    def _grammar_text(body: bytes) -> str:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("the grammar is not UTF-8 text") from None
        from ivr.emulators.grammar import GrammarError, parse_grammar

        try:
            parse_grammar(text, "grammar")
        except GrammarError as exc:
            raise LanguageModelError(f"grammar error {exc}") from None
        return text

    def _resolve(self, uri: str) -> GrammarSource:
        """A language model URI as the recognizer's input; raises LanguageModelError."""
        if uri.startswith(SLM_PREFIX):
            return GrammarSource(uri, None)
        if uri.startswith(BUILTIN_PREFIX):
            name = uri[len(BUILTIN_PREFIX) :].rsplit("/", 1)[-1]  # builtin:grammar/samples/phone too
            if name not in BUILTIN_GRAMMARS:
                raise LanguageModelError(
                    f"no built-in grammar {uri} (have {', '.join(sorted(BUILTIN_GRAMMARS))})"
                )
            return GrammarSource(uri, BUILTIN_GRAMMARS[name])
        grammar_id = uri.removeprefix("session:")
        if grammar_id in self.grammars:
            return self.grammars[grammar_id]
        if uri.split(":", 1)[0] in ("file", "http", "https"):
            raise LanguageModelError(f"the emulator does not fetch grammars ({uri})")
        raise LanguageModelError(f"no grammar {grammar_id} was defined in this session")

    def _language_model(self, message: Message) -> GrammarSource:
        content_type = _media_type(message.header("Content-Type"))
        if not message.body.strip():
            raise MessageError("no language model in the body", message.type)
        if content_type in ("", URI_LIST):
            uris = _uri_list(message.body)
            if not uris:
                raise MessageError("an empty URI list", message.type)
            sources = [self._resolve(uri) for uri in uris]
            # One decoder per recognition here: the first grammar wins over the SLM (notes 1.8 sends both).
            return next((s for s in sources if s.text is not None), sources[0])
        if content_type in GRAMMAR_TYPES:
            grammar_id = message.header("Content-ID") or "inline"
            source = GrammarSource(f"session:{grammar_id}", self._grammar_text(message.body))
            self.grammars[grammar_id] = source
            return source
        raise MessageError(f"unsupported content-type {content_type}", message.type)

    def _on_start_recognition(self, message: Message, now: float) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return self._invalid_action(message, "a recognition is running")
        if self.fault is Fault.NO_REPLY:
            self._hung = True
            return []
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
            grammar = self._language_model(message)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.INVALID_MESSAGE)
        except LanguageModelError as exc:
            return [
                self._response(
                    message.type,
                    ResponseResult.FAILURE,
                    code=ErrorCode.GRAMMAR,
                    reason=str(exc),
                    version=message.version,
                )
            ]
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
        if last_text.lower() not in (*_TRUE, *_FALSE):
            return self._invalid_message(
                message, MessageError("LastPacket takes true or false"), ErrorCode.AUDIO
            )
        last = last_text.lower() in _TRUE
        content_type = _media_type(message.header("Content-Type"))
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
            source = self._language_model(message)
        except MessageError as exc:
            return self._invalid_message(message, exc, ErrorCode.INVALID_MESSAGE)
        except LanguageModelError as exc:
            return [
                self._response(
                    message.type,
                    ResponseResult.FAILURE,
                    code=ErrorCode.GRAMMAR,
                    reason=str(exc),
                    version=message.version,
                )
            ]
        tag: str | None = None
        matched = True
        if source.text is not None:
            from ivr.emulators.grammar import parse_grammar

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
