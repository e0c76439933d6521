"""SipTransport over real UDP and TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

from ivr.sip.events import IncomingCall, SipEvent
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent

from .helpers import request


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


async def test_udp_and_tcp_options_and_malformed() -> None:
    events: list[SipEvent] = []
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append)
    await transport.start("127.0.0.1", 0)
    assert transport.port > 0
    loop = asyncio.get_running_loop()
    try:
        client = _Client()
        udp, _ = await loop.create_datagram_endpoint(lambda: client, local_addr=("127.0.0.1", 0))
        udp_port = udp.get_extra_info("sockname")[1]
        via = f"127.0.0.1:{udp_port}"
        udp.sendto(request("OPTIONS", via_host=via), ("127.0.0.1", transport.port))
        assert _status(await asyncio.wait_for(client.queue.get(), 5)) == 200
        udp.sendto(
            request("OPTIONS", via_host=via, branch="z9hG4bK-b").replace(b"CSeq: 1", b"CSeq: x"),
            ("127.0.0.1", transport.port),
        )
        assert _status(await asyncio.wait_for(client.queue.get(), 5)) == 400
        udp.sendto(request("OPTIONS", via_host=via, branch="z9hG4bK-c"), ("127.0.0.1", transport.port))
        assert _status(await asyncio.wait_for(client.queue.get(), 5)) == 200
        udp.close()

        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", transport.port), 5)
        tcp_via = "127.0.0.1:1"
        writer.write(b"\r\n\r\n" + request("OPTIONS", via_host=tcp_via, branch="z9hG4bK-t1"))
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 200
        writer.write(
            request("OPTIONS", via_host=tcp_via, branch="z9hG4bK-t2").replace(
                b"Content-Length: 0", b"Content-Length: -1"
            )
        )
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 400
        assert await asyncio.wait_for(reader.read(), 5) == b""  # framing lost: connection closed
        writer.close()

        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", transport.port), 5)
        writer.write(request("OPTIONS", via_host=tcp_via, branch="z9hG4bK-t3"))
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 200
        writer.close()
    finally:
        await transport.close()
    assert events == []


async def test_reject_with_a_warning_reaches_the_caller() -> None:
    events: list[SipEvent] = []
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append)
    await transport.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    client = _Client()
    udp, _ = await loop.create_datagram_endpoint(lambda: client, local_addr=("127.0.0.1", 0))
    try:
        via = f"127.0.0.1:{udp.get_extra_info('sockname')[1]}"
        udp.sendto(request("INVITE", via_host=via), ("127.0.0.1", transport.port))
        assert _status(await asyncio.wait_for(client.queue.get(), 5)) == 100
        (incoming,) = events
        assert isinstance(incoming, IncomingCall)
        transport.reject(incoming.call_id, 488, warning="not IPv4")
        final = await asyncio.wait_for(client.queue.get(), 5)
        assert _status(final) == 488
        assert b'\r\nWarning: 399 127.0.0.1 "not IPv4"\r\n' in final
    finally:
        udp.close()
        await transport.close()
