"""SipTransport's TLS listener over real sockets on loopback, with a certificate made at test time."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from ivr.sip.connections import StreamLimits
from ivr.sip.events import IncomingCall, SipEvent
from ivr.sip.tls import TlsListener, server_context
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent
from tests.certs import self_signed

from .helpers import OFFER, request


def _tls(message: bytes) -> bytes:
    return message.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


async def test_options_and_invite_over_tls_and_the_limits_apply(tmp_path: Path) -> None:
    certs = self_signed(tmp_path, password="s3cret")
    with pytest.raises(ssl.SSLError):
        server_context(certs.cert, certs.key, password="wrong")
    listener = TlsListener(0, server_context(certs.cert, certs.key, password="s3cret"))
    events: list[SipEvent] = []
    limits = StreamLimits(header_timeout=0.5, max_body_bytes=4096)
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append, limits=limits, tls=listener)
    await transport.start("127.0.0.1", 0)
    client = ssl.create_default_context(cafile=str(certs.cert))
    try:
        assert transport.tls_port not in (0, transport.port)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", transport.tls_port, ssl=client), 5
        )
        writer.write(_tls(request("OPTIONS", via_host="127.0.0.1:5061", branch="z9hG4bK-o")))
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 200
        writer.write(_tls(request("INVITE", via_host="127.0.0.1:5061", branch="z9hG4bK-i", body=OFFER)))
        trying = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert _status(trying) == 100 and b"SIP/2.0/TLS 127.0.0.1:5061" in trying
        (incoming,) = events
        assert isinstance(incoming, IncomingCall)
        transport.reject(incoming.call_id, 480)
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 480  # same connection

        big = request("INVITE", via_host="127.0.0.1:5061", branch="z9hG4bK-b", call_id="c2")
        writer.write(_tls(big.replace(b"Content-Length: 0", b"Content-Length: 1000000")))
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 413
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

        # A client that connects and never starts the handshake is cut off at the header timeout.
        raw_reader, raw_writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", transport.tls_port), 5
        )
        assert await asyncio.wait_for(raw_reader.read(), 5) == b""
        raw_writer.close()
    finally:
        await transport.close()


async def test_tls_from_a_source_outside_the_allow_list_gets_no_handshake(tmp_path: Path) -> None:
    certs = self_signed(tmp_path)
    listener = TlsListener(0, server_context(certs.cert, certs.key))
    events: list[SipEvent] = []
    ua = UserAgent(host="127.0.0.1", port=0)
    transport = SipTransport(ua, events.append, accept=lambda h: False, tls=listener)
    await transport.start("127.0.0.1", 0)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(
                asyncio.open_connection(
                    "127.0.0.1", transport.tls_port, ssl=ssl.create_default_context(cafile=str(certs.cert))
                ),
                5,
            )
        assert transport.connections == 0
    finally:
        await transport.close()


async def test_a_lost_tls_connection_is_never_replaced_by_clear_text(tmp_path: Path) -> None:
    certs = self_signed(tmp_path)
    listener = TlsListener(0, server_context(certs.cert, certs.key))
    events: list[SipEvent] = []
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append, tls=listener)
    await transport.start("127.0.0.1", 0)
    dialled: list[bytes] = []

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dialled.append(await reader.read(65536))
        writer.close()

    # Where the INVITE's Via says the caller listens: a clear-text reconnect (§18.2.2) would land here.
    sent_by = await asyncio.start_server(plain, "127.0.0.1", 0)
    via = f"127.0.0.1:{sent_by.sockets[0].getsockname()[1]}"
    try:
        client = ssl.create_default_context(cafile=str(certs.cert))
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", transport.tls_port, ssl=client), 5
        )
        writer.write(_tls(request("INVITE", via_host=via, branch="z9hG4bK-lost", body=OFFER)))
        assert _status(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)) == 100
        writer.close()
        for _ in range(100):  # the bridge notices the close
            if transport.connections == 0:
                break
            await asyncio.sleep(0.02)
        (incoming,) = events
        assert isinstance(incoming, IncomingCall)
        transport.reject(incoming.call_id, 480)
        await asyncio.sleep(0.3)
        assert dialled == []
    finally:
        sent_by.close()
        await transport.close()
