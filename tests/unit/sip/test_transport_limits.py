"""SipTransport's stream limits over real TCP sockets on loopback (ports from the OS), with short timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import structlog

from ivr.sip.connections import StreamLimits
from ivr.sip.events import IncomingCall, SipEvent
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent

from .helpers import OFFER, request

VIA = "127.0.0.1:1"
SHORT = StreamLimits(
    max_connections=6,
    max_per_source=4,
    header_timeout=0.6,
    body_timeout=0.6,
    idle_timeout=0.8,
    max_header_bytes=2048,
    max_body_bytes=4096,
)


class Bridge:
    """A transport on a free loopback port and the SIP events it delivered."""

    def __init__(self, transport: SipTransport, events: list[SipEvent]) -> None:
        self.transport = transport
        self.events = events

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.transport.port), 5)


async def _start(accept: Callable[[str], bool] = lambda host: True, limits: StreamLimits = SHORT) -> Bridge:
    events: list[SipEvent] = []
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append, accept=accept, limits=limits)
    await transport.start("127.0.0.1", 0)
    return Bridge(transport, events)


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    running = await _start()
    yield running
    await running.transport.close()


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


async def _closed_by_peer(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """True once the bridge has closed the connection (EOF or reset) without sending anything more."""
    try:
        rest = await asyncio.wait_for(reader.read(), within)
    except ConnectionError:
        return True
    return rest == b""


async def _options_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, branch: str) -> bool:
    writer.write(request("OPTIONS", via_host=VIA, branch=branch))
    return _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 200


async def test_a_source_outside_the_allow_list_is_closed_before_a_byte_is_read() -> None:
    running = await _start(accept=lambda host: host != "127.0.0.1")
    try:
        with structlog.testing.capture_logs() as logs:
            for attempt in range(5):
                reader, writer = await running.connect()
                writer.write(request("OPTIONS", via_host=VIA, branch=f"z9hG4bK-n{attempt}"))
                assert await _closed_by_peer(reader)  # no 200: the OPTIONS was never read
                writer.close()
        assert running.transport.connections == 0
        refused = [e for e in logs if e["event"] == "sip connection refused"]
        assert len(refused) == 1  # once per source per interval, not per attempt
        assert refused[0]["reason"] == "source not in any trunk allow-list"
    finally:
        await running.transport.close()


async def test_slow_loris_is_closed_at_the_header_timeout(bridge: Bridge) -> None:
    reader, writer = await bridge.connect()
    message = request("OPTIONS", via_host=VIA, branch="z9hG4bK-slow")
    sent = 0
    for byte in message:  # one byte every 0.1 s: the whole header would take ~30 s
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except OSError:
            break
        sent += 1
        if reader.at_eof():
            break
        await asyncio.sleep(0.1)
    assert await _closed_by_peer(reader)
    assert sent < len(message) // 2  # closed long before the header section could complete
    assert bridge.transport.connections == 0


async def test_a_promised_body_that_never_comes_is_closed_at_the_body_timeout(bridge: Bridge) -> None:
    reader, writer = await bridge.connect()
    head = request("OPTIONS", via_host=VIA, branch="z9hG4bK-body").replace(
        b"Content-Length: 0", b"Content-Length: 3000"
    )
    writer.write(head + b"x" * 100)
    assert await _closed_by_peer(reader)
    assert bridge.transport.connections == 0


async def test_a_1_mb_content_length_gets_413_and_the_connection_closes(bridge: Bridge) -> None:
    reader, writer = await bridge.connect()
    promise = request("INVITE", via_host=VIA, branch="z9hG4bK-big").replace(
        b"Content-Length: 0", b"Content-Length: 1000000"
    )
    writer.write(promise + b"v=0\r\n")
    assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 413
    assert await _closed_by_peer(reader)
    assert bridge.events == []  # never reached the UA as a call


async def test_the_buffer_is_capped_at_the_header_limit(bridge: Bridge) -> None:
    reader, writer = await bridge.connect()
    head = request("OPTIONS", via_host=VIA, branch="z9hG4bK-fat").split(b"\r\n\r\n")[0]
    writer.write(head + b"\r\nX-Padding: " + b"a" * 64 * 1024)  # no end of headers in sight
    assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 513
    assert await _closed_by_peer(reader)


async def test_connections_beyond_the_per_source_cap_are_refused(bridge: Bridge) -> None:
    held = [await bridge.connect() for _ in range(SHORT.max_per_source)]
    for i, (reader, writer) in enumerate(held):
        assert await _options_ok(reader, writer, f"z9hG4bK-h{i}")
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            reader, writer = await bridge.connect()
            assert await _closed_by_peer(reader)
            writer.close()
    assert [e["reason"] for e in logs if e["event"] == "sip connection refused"] == [
        "too many connections from this source"
    ]
    assert bridge.transport.connections == SHORT.max_per_source
    reader, writer = held[0]
    assert await _options_ok(reader, writer, "z9hG4bK-still")  # the admitted ones are unaffected
    for _, held_writer in held:
        held_writer.close()


async def test_connections_beyond_the_total_cap_are_refused() -> None:
    running = await _start(limits=StreamLimits(max_connections=2, max_per_source=10, idle_timeout=30))
    try:
        held = [await running.connect() for _ in range(2)]
        for i, (reader, writer) in enumerate(held):
            assert await _options_ok(reader, writer, f"z9hG4bK-t{i}")
        reader, writer = await running.connect()
        assert await _closed_by_peer(reader)
        held[0][1].close()
        assert await _closed_by_peer(held[0][0])
        for _ in range(50):  # the bridge notices the close on its next read
            if running.transport.connections < 2:
                break
            await asyncio.sleep(0.02)
        reader, writer = await running.connect()
        assert await _options_ok(reader, writer, "z9hG4bK-t9")  # a freed slot is usable again
    finally:
        await running.transport.close()


async def test_idle_connections_close_but_not_while_a_call_uses_them(bridge: Bridge) -> None:
    idle_reader, idle_writer = await bridge.connect()
    assert await _options_ok(idle_reader, idle_writer, "z9hG4bK-i1")
    call_reader, call_writer = await bridge.connect()
    call_writer.write(request("INVITE", via_host=VIA, branch="z9hG4bK-call", body=OFFER))
    assert _status(await asyncio.wait_for(call_reader.readuntil(b"\r\n\r\n"), 5)) == 100
    assert await _closed_by_peer(idle_reader)  # idle past 0.8 s: closed
    (incoming,) = bridge.events
    assert isinstance(incoming, IncomingCall)
    await asyncio.sleep(SHORT.idle_timeout * 2)
    assert bridge.transport.connections == 1  # the ringing call's connection stays
    bridge.transport.reject(incoming.call_id, 486)
    assert _status(await asyncio.wait_for(call_reader.readuntil(b"\r\n\r\n"), 5)) == 486
    call_writer.write(request("ACK", via_host=VIA, branch="z9hG4bK-call"))
    assert await _closed_by_peer(call_reader)  # call over: idle again, then closed
