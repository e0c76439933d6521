"""GET /metrics, /healthz and /readyz on one small HTTP/1.1 server in the bridge's own event loop.

Orchestrators probe /healthz (the process is alive and its event loop answers: this handler runs on it) and
/readyz (ready for calls: 503 before the SIP socket is bound and while draining, so a load balancer stops
sending INVITEs before the bridge refuses them); Prometheus scrapes /metrics. One request per connection,
no thread per request; every read from a client has a deadline, so an idle or slow client cannot hold on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from http import HTTPStatus

import structlog

from ivr.metrics import CONTENT_TYPE_LATEST, exposition

log = structlog.get_logger()

_MAX_HEAD = 8192  # a probe's request head is a few hundred bytes
_TEXT = "text/plain; charset=utf-8"


class HealthServer:
    """The /metrics, /healthz and /readyz endpoints; `ready` says whether the bridge takes calls now."""

    def __init__(self, ready: Callable[[], bool], *, read_timeout: float = 5.0) -> None:
        self._ready = ready
        self._read_timeout = read_timeout
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=_MAX_HEAD)
        log.info("metrics and health endpoints listening", host=host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None

    def respond(self, method: str, target: str) -> tuple[HTTPStatus, str, bytes]:
        """Status, content type and body for one request (method and request-target of its request line)."""
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, _TEXT, b"GET only\n"
        if path == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, exposition()
        if path == "/healthz":
            return HTTPStatus.OK, _TEXT, b"ok\n"
        if path == "/readyz":
            if self._ready():
                return HTTPStatus.OK, _TEXT, b"ready\n"
            return HTTPStatus.SERVICE_UNAVAILABLE, _TEXT, b"not ready\n"
        return HTTPStatus.NOT_FOUND, _TEXT, b"not found: /metrics, /healthz, /readyz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
                status, ctype, body = HTTPStatus.BAD_REQUEST, _TEXT, b"bad request\n"
                method = "GET"
            else:
                method, target, _ = request_line
                status, ctype, body = self.respond(method, target)
            head_out = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head_out.encode("ascii"))
            if method != "HEAD":
                writer.write(body)
            async with asyncio.timeout(self._read_timeout):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a probe that went away or sent too much: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
