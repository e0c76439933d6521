"""CPQD ASR WebSocket protocol 2.3/2.4 framing: the wire's enums, and parsing and building one message.

Sources: ../shared/specs/003-cpqd-asr-websocket-2.4.md and protocol-notes.md part 1. A message is one
WebSocket frame: `ASR 2.x TYPE`, header lines `Name: value`, a blank line, then exactly Content-Length bytes
of body. The SDKs differ (notes 1.2), so parsing is tolerant: LF or CRLF, a missing blank line or final
newline, no space after the colon, any header order, case-insensitive names, stray CR/LF after the body.
Replies are strict: CRLF, plain-ASCII header values.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

PROTOCOL_MAJOR = "2"
DEFAULT_VERSION = "2.4"


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
        if len(length_text.lstrip("0")) > 20:  # past any frame, and int() refuses over 4,300 digits
            raise MessageError(f"Content-Length of {len(length_text)} digits, {len(rest)} body bytes", kind)
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


def message_text(reason: str) -> str:
    """A reason as a `Message` header value both SDKs read whole."""
    # The Python SDK's parser drops a header line with a second colon, and takes any line containing
    # "ASR" for a start line: keep both out of our Message texts.
    return reason.replace(": ", " - ").replace(":", " ").replace("ASR", "asr")
