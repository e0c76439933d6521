"""wss:// to a vendor: a real TLS WebSocket server on 127.0.0.1 with a certificate made at test time.

Verification is websockets' default (the system CAs, host name checked): a self-signed vendor is refused
unless its CA bundle is configured, and a configured bundle that cannot be read fails the connection
instead of falling back to no verification.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ivr.asr.base import RecognizerError
from ivr.asr.stream import websocket_connector
from ivr.config import Settings, vendor_endpoint
from tests.certs import SelfSigned, self_signed


@asynccontextmanager
async def _echo_server(certs: SelfSigned) -> AsyncIterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)

    async def echo(ws: ServerConnection) -> None:
        async for frame in ws:
            await ws.send(frame)

    async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"wss://127.0.0.1:{port}/asr"


async def test_self_signed_vendor_refused_without_its_ca_and_accepted_with_it(tmp_path: Path) -> None:
    certs = self_signed(tmp_path)
    async with _echo_server(certs) as url:
        with pytest.raises(RecognizerError, match="CERTIFICATE_VERIFY_FAILED"):
            await websocket_connector(url)()

        connection = await websocket_connector(url, ca_file=certs.cert)()
        await connection.send(b"\x00\x01")
        assert await connection.recv() == b"\x00\x01"
        await connection.close()

        with pytest.raises(RecognizerError, match="cannot connect"):  # unreadable bundle: no silent fallback
            await websocket_connector(url, ca_file=tmp_path / "missing.pem")()

        (tmp_path / "other").mkdir()
        other = self_signed(tmp_path / "other")
        with pytest.raises(RecognizerError, match="CERTIFICATE_VERIFY_FAILED"):  # some other CA: refused
            await websocket_connector(url, ca_file=other.cert)()


def test_the_ca_file_comes_from_settings_or_the_environment(tmp_path: Path) -> None:
    settings = Settings(asr_urls={"cpqd": "wss://asr.example/ws"}, asr_ca_files={"cpqd": tmp_path / "a.pem"})
    endpoint = vendor_endpoint(settings, "cpqd", environ={})
    assert endpoint is not None and endpoint.ca_file == tmp_path / "a.pem"
    endpoint = vendor_endpoint(settings, "cpqd", environ={"IVR_CPQD_CA_FILE": str(tmp_path / "b.pem")})
    assert endpoint is not None and endpoint.ca_file == tmp_path / "b.pem"
    endpoint = vendor_endpoint(Settings(asr_urls={"cpqd": "wss://asr.example/ws"}), "cpqd", environ={})
    assert endpoint is not None and endpoint.ca_file is None  # the system CAs, still verified
