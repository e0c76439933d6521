"""The lenient WebSocket server: real `websockets` and websocket-client clients, and a raw socket speaking
the dialect of AmiVoice's Wrp Python client (no Sec-WebSocket-Version, unmasked frames, TCP shutdown)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator

import pytest
import websocket  # websocket-client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as ClientSawClose

from ivr.emulators import wsserver
from ivr.emulators.wsserver import (
    CloseCode,
    ConnectionClosed,
    Control,
    FrameParser,
    Message,
    Opcode,
    WebSocketConnection,
    WebSocketProtocolError,
    accept_key,
)

TIMEOUT = 5.0


class Echo:
    """A handler that echoes every message and records how each connection ended."""

    def __init__(self) -> None:
        self.closed: list[ConnectionClosed] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.done = asyncio.Event()

    async def __call__(self, ws: WebSocketConnection) -> None:
        self.paths.append(ws.path)
        self.headers.append(ws.request_headers)
        try:
            while True:
                message = await ws.recv()
                await ws.send(message)
        except ConnectionClosed as exc:
            self.closed.append(exc)
            self.done.set()


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[Echo, int]]:
    echo = Echo()
    server = await wsserver.start(echo, "127.0.0.1", 0, paths=["/v1/", "/v1"])
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield echo, port
        server.close()


# --- standard clients ---


async def test_websockets_client_text_binary_ping_and_close(echo_server: tuple[Echo, int]) -> None:
    echo, port = echo_server
    async with connect(f"ws://127.0.0.1:{port}/v1/", compression=None) as ws:
        await ws.send("s 8K -a-general")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "s 8K -a-general"
        payload = b"p" + os.urandom(70000)  # a 64-bit length on the way back, a 16-bit one would not do
        await ws.send(payload)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == payload
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, TIMEOUT)  # answered
        await ws.send(["frag", "mented ", "日本語"])  # a fragmented text message
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fragmented 日本語"
    await asyncio.wait_for(echo.done.wait(), TIMEOUT)
    assert echo.closed[0].code == CloseCode.NORMAL
    assert echo.paths == ["/v1/"]
    assert echo.headers[0]["sec-websocket-version"] == "13"


async def test_client_close_is_answered_with_its_code(echo_server: tuple[Echo, int]) -> None:
    echo, port = echo_server
    async with connect(f"ws://127.0.0.1:{port}/v1", compression=None) as ws:
        await ws.close(4001, "bye")
        assert ws.close_code == 4001  # the server echoed the code back: a clean closing handshake
    with pytest.raises(ClientSawClose):
        await ws.recv()
    await asyncio.wait_for(echo.done.wait(), TIMEOUT)
    assert (echo.closed[0].code, echo.closed[0].reason) == (4001, "bye")


async def test_websocket_client_library_round_trip(echo_server: tuple[Echo, int]) -> None:
    _, port = echo_server

    def client() -> tuple[str, bytes]:
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/v1/", timeout=TIMEOUT)
        ws.send("e")
        text = ws.recv()
        ws.send_binary(b"p\x00\x01")
        data = ws.recv()
        ws.close()
        return text, data

    assert await asyncio.to_thread(client) == ("e", b"p\x00\x01")


# --- the Wrp dialect on a raw socket ---


def _wrp_handshake(port: int, path: str = "/v1/", extra: str = "") -> tuple[socket.socket, bytes, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head, key


def _frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 65536:
        head = bytes([first, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + payload
    return head + payload


def _read_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    parser = FrameParser()
    got: list[tuple[int, bytes]] = []
    while len(got) < count:
        data = sock.recv(65536)
        if not data:
            break
        for event in parser.feed(data):
            if isinstance(event, Message):
                op = Opcode.TEXT if isinstance(event.data, str) else Opcode.BINARY
                raw = event.data.encode() if isinstance(event.data, str) else event.data
                got.append((op, raw))
            else:
                got.append((event.opcode, event.payload))
    return got


async def test_wrp_dialect_unmasked_frames_and_tcp_shutdown(echo_server: tuple[Echo, int]) -> None:
    echo, port = echo_server

    def client() -> tuple[bytes, str, list[tuple[int, bytes]], bytes]:
        sock, head, key = _wrp_handshake(port)
        sock.sendall(_frame(Opcode.TEXT, b"s LSB8K -a-general"))  # unmasked, as Wrp sends
        audio = b"p" + bytes(range(256)) * 20
        sock.sendall(_frame(Opcode.BINARY, audio[:100], fin=False) + _frame(Opcode.CONTINUATION, audio[100:]))
        frames = _read_frames(sock, 2)
        sock.shutdown(socket.SHUT_WR)  # Wrp's way of ending: no close frame
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
        sock.close()
        return head, key, frames, rest

    head, key, frames, rest = await asyncio.to_thread(client)
    assert head.startswith(b"HTTP/1.1 101 ")  # exactly what Wrp Python checks
    assert f"Sec-WebSocket-Accept: {accept_key(key)}".encode() in head
    assert frames == [(Opcode.TEXT, b"s LSB8K -a-general"), (Opcode.BINARY, b"p" + bytes(range(256)) * 20)]
    assert rest == b"", "no ping and no close frame from the server"
    await asyncio.wait_for(echo.done.wait(), TIMEOUT)
    assert echo.closed[0].code == CloseCode.ABNORMAL


async def test_masked_fragments_with_a_ping_between_them(echo_server: tuple[Echo, int]) -> None:
    _, port = echo_server

    def client() -> list[tuple[int, bytes]]:
        sock, head, _ = _wrp_handshake(port, extra="Sec-WebSocket-Version: 13\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        mask = b"\x11\x22\x33\x44"
        sock.sendall(
            _frame(Opcode.TEXT, "エミュ".encode()[:4], fin=False, mask=mask)  # split inside a character
            + _frame(Opcode.PING, b"ping!", mask=mask)
            + _frame(Opcode.CONTINUATION, "エミュ".encode()[4:], mask=mask)
        )
        frames = _read_frames(sock, 2)
        sock.sendall(_frame(Opcode.CLOSE, struct.pack("!H", 1000), mask=mask))
        frames += _read_frames(sock, 1)
        sock.close()
        return frames

    assert await asyncio.to_thread(client) == [
        (Opcode.PONG, b"ping!"),
        (Opcode.TEXT, "エミュ".encode()),
        (Opcode.CLOSE, struct.pack("!H", 1000)),
    ]


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/v1/", "Sec-WebSocket-Version: 8\r\n", b"426"),
        ("/elsewhere", "", b"404"),
    ],
)
async def test_refused_handshakes(
    echo_server: tuple[Echo, int], path: str, extra: str, status: bytes
) -> None:
    _, port = echo_server

    def client() -> bytes:
        sock, head, _ = _wrp_handshake(port, path, extra)
        sock.close()
        return head

    head = await asyncio.to_thread(client)
    assert head.startswith(b"HTTP/1.1 " + status), head
    if status == b"426":
        assert b"Sec-WebSocket-Version: 13" in head


async def test_a_request_without_a_key_gets_400(echo_server: tuple[Echo, int]) -> None:
    _, port = echo_server

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /v1/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            return sock.recv(4096)

    assert (await asyncio.to_thread(client)).startswith(b"HTTP/1.1 400 ")


async def test_server_close_sends_one_close_frame_and_waits_for_the_answer() -> None:
    closed = threading.Event()

    async def handler(ws: WebSocketConnection) -> None:
        await ws.recv()
        await ws.close(CloseCode.NORMAL, "done")

    server = await wsserver.start(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def client() -> list[tuple[int, bytes]]:
        sock, _, _ = _wrp_handshake(port, "/anything")
        sock.sendall(_frame(Opcode.TEXT, b"e", mask=b"abcd"))
        frames = _read_frames(sock, 1)
        sock.sendall(_frame(Opcode.CLOSE, frames[0][1][:2], mask=b"abcd"))
        closed.set()
        sock.close()
        return frames

    async with server:
        frames = await asyncio.to_thread(client)
    assert frames == [(Opcode.CLOSE, struct.pack("!H", 1000) + b"done")]
    assert closed.is_set()


# --- the frame parser on its own ---


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes([0xC1, 0x00]), CloseCode.PROTOCOL_ERROR),  # RSV1 without an extension
        (bytes([0x83, 0x00]), CloseCode.PROTOCOL_ERROR),  # reserved opcode 3
        (bytes([0x09, 0x00]), CloseCode.PROTOCOL_ERROR),  # fragmented ping
        (bytes([0x89, 126, 0, 126]) + b"x" * 126, CloseCode.PROTOCOL_ERROR),  # ping over 125 bytes
        (bytes([0x80, 0x00]), CloseCode.PROTOCOL_ERROR),  # continuation with nothing to continue
        (bytes([0x01, 0x01, 0x61, 0x81, 0x01, 0x62]), CloseCode.PROTOCOL_ERROR),  # new text inside a text
        (bytes([0x81, 0x02, 0xC3, 0x28]), CloseCode.INVALID_DATA),  # text that is not UTF-8
        (bytes([0x82, 127]) + struct.pack("!Q", 1 << 40), CloseCode.TOO_BIG),
    ],
)
def test_parser_rejects_what_rfc_6455_forbids(data: bytes, code: CloseCode) -> None:
    with pytest.raises(WebSocketProtocolError) as info:
        FrameParser().feed(data)
    assert info.value.code is code


def test_parser_takes_frames_split_anywhere() -> None:
    stream = _frame(Opcode.TEXT, b"a" * 300, mask=b"\x01\x02\x03\x04") + _frame(Opcode.PONG, b"")
    parser = FrameParser()
    events = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert events == [Message("a" * 300), Control(Opcode.PONG, b"")]


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # section 1.3
