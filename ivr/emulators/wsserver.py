"""A small, lenient RFC 6455 WebSocket server on asyncio streams, for clients that strict servers refuse.

AmiVoice's official Wrp Python client (protocol-notes 2.8) sends an upgrade request without
`Sec-WebSocket-Version`, reads back only `HTTP/1.1 101 `, sends its frames unmasked, and ends by shutting the
TCP connection down without a close frame. A real AmiVoice server accepts it; the default `websockets` server
answers HTTP 400. So this server:

- answers the handshake per RFC 6455 section 4.2.2 (`Sec-WebSocket-Accept`), tolerating a missing version
  header (a version other than 13 still gets 426 with the one it speaks, section 4.4);
- takes masked and unmasked client frames (section 5.1 says a server MUST close on an unmasked frame: this
  is the one rule bent on purpose), reassembles fragmented messages, answers pings and a client close;
- never sends a ping, nor a close frame of its own unless the handler asks for one (Wrp's reader thread
  dies on either in mid-session);
- treats a TCP shutdown as the end of the connection, like a close without a frame (code 1006).

`FrameParser` is the sans-I/O part (bytes in, frames out); `WebSocketConnection` and `serve()` the asyncio
part. No extension (permessage-deflate) is negotiated: the payload is audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger(__name__)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_HEADER_BYTES = 16 * 1024
# AmiVoice allows up to 16 MB of audio in one p command (document 002); room for that and the 'p'.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024 + 1024
HANDSHAKE_TIMEOUT = 10.0
SEND_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0


class Opcode(IntEnum):
    """Frame opcodes, RFC 6455 section 5.2."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """The close codes this server sends or reports (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005
    ABNORMAL = 1006  # never on the wire: the TCP connection ended without a close frame
    INVALID_DATA = 1007
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class WebSocketProtocolError(Exception):
    """The peer broke RFC 6455; `code` is the close code to answer with."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ConnectionClosed(Exception):
    """The connection is closed: `code` is the peer's close code, 1006 if it left without one."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as received (payload already unmasked)."""

    fin: bool
    opcode: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: `str` for text, `bytes` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Control:
    """A control frame: close, ping or pong."""

    opcode: Opcode
    payload: bytes


ParsedEvent = Message | Control


def _unmask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    # Whole-buffer XOR through big integers: no Python loop over bytes.
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


class FrameParser:
    """Sans-I/O frame reader: `feed(bytes)` returns whole messages and control frames in order."""

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[ParsedEvent]:
        """Parse what has arrived; raises `WebSocketProtocolError` on a frame RFC 6455 forbids."""
        self._buffer += data
        events: list[ParsedEvent] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return events
            event = self._assemble(frame)
            if event is not None:
                events.append(event)

    def _next_frame(self) -> Frame | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set without an extension")
        masked = bool(second & 0x80)
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack_from("!H", buf, 2)[0]
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack_from("!Q", buf, 2)[0]
            offset = 10
        if length > self.max_message:
            raise WebSocketProtocolError(CloseCode.TOO_BIG, f"frame of {length} bytes")
        key = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            key = bytes(buf[offset : offset + 4])
            offset += 4
        if len(buf) < offset + length:
            return None
        payload = bytes(buf[offset : offset + length])
        del buf[: offset + length]
        if masked:
            payload = _unmask(payload, key)
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    def _assemble(self, frame: Frame) -> ParsedEvent | None:
        try:
            opcode = Opcode(frame.opcode)
        except ValueError:
            raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {frame.opcode}") from None
        if opcode >= Opcode.CLOSE:
            # Section 5.5: control frames are never fragmented and carry at most 125 bytes.
            if not frame.fin or len(frame.payload) > 125:
                raise WebSocketProtocolError(
                    CloseCode.PROTOCOL_ERROR, "fragmented or oversized control frame"
                )
            return Control(opcode, frame.payload)
        if opcode is Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, "continuation without a first frame")
        elif self._fragment_opcode is not None:
            raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
        else:
            self._fragment_opcode = opcode
        self._fragment_size += len(frame.payload)
        if self._fragment_size > self.max_message:
            raise WebSocketProtocolError(CloseCode.TOO_BIG, f"message over {self.max_message} bytes")
        self._fragments.append(frame.payload)
        if not frame.fin:
            return None
        payload = b"".join(self._fragments)
        kind = self._fragment_opcode
        self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
        if kind is Opcode.TEXT:
            try:
                return Message(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise WebSocketProtocolError(CloseCode.INVALID_DATA, "text message is not UTF-8") from None
        return Message(payload)


def encode_frame(opcode: Opcode, payload: bytes) -> bytes:
    """One unfragmented, unmasked server frame (section 5.1: servers never mask)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()).decode("ascii")


class HandshakeError(Exception):
    """An upgrade request this server refuses: `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A parsed opening handshake: the request target and its headers (names lower-cased)."""

    path: str
    headers: dict[str, str]


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
}


def parse_upgrade(head: bytes) -> UpgradeRequest:
    """Check an HTTP upgrade request (up to and including the blank line) per section 4.2.1."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError(400, "malformed request line")
    method, target, _version = parts
    if method != "GET":
        raise HandshakeError(405, "the opening handshake is a GET")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HandshakeError(400, f"malformed header line {line!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeError(426, "not a WebSocket upgrade", (("Upgrade", "websocket"),))
    if "upgrade" not in headers.get("connection", "").lower():
        raise HandshakeError(400, "Connection header lacks 'upgrade'")
    key = headers.get("sec-websocket-key", "")
    try:
        raw_key = base64.b64decode(key, validate=True)
    except ValueError:
        raw_key = b""
    if len(raw_key) != 16:
        raise HandshakeError(400, "missing or malformed Sec-WebSocket-Key")
    version = headers.get("sec-websocket-version")
    # A missing version is tolerated (Wrp Python sends none); a different one is refused per section 4.4.
    if version is not None and version.strip() != "13":
        raise HandshakeError(
            426, f"unsupported WebSocket version {version}", (("Sec-WebSocket-Version", "13"),)
        )
    path = target.split("?", 1)[0]
    return UpgradeRequest(path, headers)


def _http_response(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Content-Type: text/plain; charset=utf-8", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class WebSocketConnection:
    """One accepted connection: `recv()`, `send()`, `close()`, plus the request's `path` and headers."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: UpgradeRequest,
        *,
        max_message: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.path = request.path
        self.request_headers = request.headers
        self.remote_address: tuple[str, int] | None = writer.get_extra_info("peername")
        self._reader = reader
        self._writer = writer
        self._parser = FrameParser(max_message)
        self._inbox: asyncio.Queue[str | bytes | ConnectionClosed] = asyncio.Queue()
        self._write_lock = asyncio.Lock()
        self._close_sent = False
        self._closed: ConnectionClosed | None = None
        self._reading = asyncio.create_task(self._read_loop())

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def recv(self) -> str | bytes:
        """The next data message; raises `ConnectionClosed` once the connection has ended. Cancel-safe."""
        if self._closed is not None and self._inbox.empty():
            raise self._closed
        item = await self._inbox.get()
        if isinstance(item, ConnectionClosed):
            self._inbox.put_nowait(item)  # every later recv() raises too
            raise item
        return item

    async def send(self, data: str | bytes) -> None:
        """Send one text (`str`) or binary (`bytes`) message; raises `ConnectionClosed` if it cannot."""
        if isinstance(data, str):
            await self._write(encode_frame(Opcode.TEXT, data.encode("utf-8")))
        else:
            await self._write(encode_frame(Opcode.BINARY, bytes(data)))

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send a close frame (once), wait briefly for the peer's, then drop the TCP connection."""
        if not self._close_sent and not self._writer.is_closing():
            payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
            with contextlib.suppress(ConnectionClosed):
                await self._write(encode_frame(Opcode.CLOSE, payload))
            self._close_sent = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reading), CLOSE_TIMEOUT)
        await self.abort()

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reading
        self._finish(ConnectionClosed(CloseCode.ABNORMAL))
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise self._closed or ConnectionClosed(CloseCode.ABNORMAL)
        async with self._write_lock:
            try:
                self._writer.write(data)
                await asyncio.wait_for(self._writer.drain(), SEND_TIMEOUT)
            except (TimeoutError, ConnectionError) as exc:
                self._writer.close()
                raise ConnectionClosed(CloseCode.ABNORMAL, str(exc) or type(exc).__name__) from exc

    def _finish(self, closed: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = closed
            self._inbox.put_nowait(closed)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    # TCP shutdown with no close frame: how Wrp Python ends a connection.
                    self._finish(ConnectionClosed(CloseCode.ABNORMAL, "TCP connection ended"))
                    return
                for event in self._parser.feed(data):
                    if isinstance(event, Message):
                        self._inbox.put_nowait(event.data)
                    elif await self._control(event):
                        return
        except WebSocketProtocolError as exc:
            log.info("websocket protocol error from %s: %s", self.remote_address, exc.reason)
            with contextlib.suppress(ConnectionClosed):
                await self._write(encode_frame(Opcode.CLOSE, struct.pack("!H", exc.code)))
            self._close_sent = True
            self._finish(ConnectionClosed(exc.code, exc.reason))
            self._writer.close()
        except ConnectionError as exc:
            self._finish(ConnectionClosed(CloseCode.ABNORMAL, str(exc)))

    async def _control(self, event: Control) -> bool:
        """Answer a control frame; True once the connection is closed."""
        if event.opcode is Opcode.PING:
            with contextlib.suppress(ConnectionClosed):
                await self._write(encode_frame(Opcode.PONG, event.payload))
            return False
        if event.opcode is Opcode.PONG:
            return False  # we never ping; an unsolicited pong is allowed and ignored (section 5.5.3)
        code, reason = CloseCode.NO_STATUS, ""
        if len(event.payload) >= 2:
            code = struct.unpack_from("!H", event.payload)[0]
            reason = event.payload[2:].decode("utf-8", "replace")
        if not self._close_sent:
            # Section 5.5.1: answer with a close frame echoing the status code.
            echo = event.payload[:2] if len(event.payload) >= 2 else b""
            with contextlib.suppress(ConnectionClosed):
                await self._write(encode_frame(Opcode.CLOSE, echo))
            self._close_sent = True
        self._finish(ConnectionClosed(code, reason))
        self._writer.close()
        return True


Handler = Callable[[WebSocketConnection], Awaitable[None]]


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANDSHAKE_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HandshakeError(400, "request headers too large") from None
    except asyncio.IncompleteReadError:
        raise HandshakeError(400, "connection ended inside the request") from None


async def _handle_client(
    handler: Handler,
    paths: Collection[str] | None,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    refuse: int | None = None,
) -> None:
    try:
        head = await _read_head(reader)
        request = parse_upgrade(head)
        if paths is not None and request.path not in paths:
            raise HandshakeError(404, f"no WebSocket endpoint at {request.path}")
        if refuse is not None:
            raise HandshakeError(refuse, "emulated fault", (("WWW-Authenticate", 'Basic realm="emulator"'),))
    except (TimeoutError, HandshakeError, ConnectionError) as exc:
        if isinstance(exc, HandshakeError):
            log.info("refused upgrade: %d %s", exc.status, exc.reason)
            body = (exc.reason + "\n").encode("utf-8")
            with contextlib.suppress(ConnectionError):
                writer.write(_http_response(exc.status, exc.headers, body))
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
        writer.close()
        return
    # Wrp Python checks that the reply starts with exactly "HTTP/1.1 101 ".
    response = (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(request.headers['sec-websocket-key'])}\r\n\r\n"
    )
    try:
        writer.write(response.encode("ascii"))
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
    except (TimeoutError, ConnectionError):
        writer.close()
        return
    ws = WebSocketConnection(reader, writer, request)
    try:
        await handler(ws)
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("websocket handler failed")
        with contextlib.suppress(Exception):
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        if not ws.closed:
            await ws.close()
        else:
            await ws.abort()


async def start(
    handler: Handler,
    host: str,
    port: int,
    *,
    paths: Collection[str] | None = None,
    refuse: int | None = None,
) -> asyncio.Server:
    """Listen on host:port (0 = any free port); `paths` limits the request targets (others get 404);
    `refuse` answers every handshake with that status (an emulated fault: 401)."""
    allowed = frozenset(paths) if paths is not None else None

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle_client(handler, allowed, reader, writer, refuse)

    return await asyncio.start_server(on_client, host, port, limit=MAX_HEADER_BYTES)


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    paths: Collection[str] | None = None,
    ready: asyncio.Event | None = None,
    refuse: int | None = None,
) -> None:
    """Serve until cancelled; `ready` is set once the socket is bound."""
    server = await start(handler, host, port, paths=paths, refuse=refuse)
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()
