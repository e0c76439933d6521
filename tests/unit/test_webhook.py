"""Webhooks against a real HTTP server on loopback (`asyncio.start_server`), over the real httpx client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from ivr.webhook import WebhookClient, WebhookOutcome, url_host


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    """Answers by path: /ok echoes the JSON it got, /error 500, /text plain text, /list a JSON array,
    /moved a 302, /big 100 kB of JSON, /slow never answers, /held answers as /ok once `release` is set."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    open_connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)  # /held answers like /ok once it is set

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.seen.append(Seen(method, path, headers, body))
            if path == "/slow":
                await reader.read()  # until the client gives up and closes
                return
            if path == "/held":
                await self.release.wait()
                path = "/ok"
            status, extra, reply = {
                "/ok": (200, "", json.dumps({"ok": True, "got": json.loads(body)}).encode()),
                "/error": (500, "", b'{"error": "down"}'),
                "/text": (200, "", b"hello"),
                "/list": (200, "", b"[1, 2]"),
                "/empty": (204, "", b""),
                "/moved": (302, "Location: http://127.0.0.1:1/elsewhere\r\n", b""),
                "/big": (200, "", json.dumps({"x": "y" * 100_000}).encode()),
            }[path]
            top = f"HTTP/1.1 {status} X\r\nContent-Length: {len(reply)}\r\n{extra}Connection: close\r\n\r\n"
            writer.write(top.encode() + reply)
            await writer.drain()
        finally:
            self.open_connections -= 1
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    http = HttpServer()
    listener = await asyncio.start_server(http.handle, "127.0.0.1", 0)
    http.port = listener.sockets[0].getsockname()[1]
    yield http
    listener.close()


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    webhooks = WebhookClient(max_reply_bytes=64 * 1024)
    yield webhooks
    await webhooks.aclose()


async def test_a_json_reply_comes_back_as_a_dict_and_the_request_is_json(
    server: HttpServer, client: WebhookClient
) -> None:
    body: dict[str, object] = {"caller": "sip:alice@example.com", "card": "4111", "step": "menu"}
    outcome = await client.post(server.url("/ok"), body, timeout=5)
    assert outcome == WebhookOutcome(200, {"ok": True, "got": body}, "")
    [seen] = server.seen
    assert seen.method == "POST" and seen.path == "/ok"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "ivr"
    assert json.loads(seen.body) == body


async def test_one_client_serves_many_webhooks(server: HttpServer, client: WebhookClient) -> None:
    outcomes = await asyncio.gather(*(client.post(server.url("/ok"), {"n": n}, 5) for n in range(5)))
    assert sorted(o.reply["got"]["n"] for o in outcomes if o.reply) == list(range(5))  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/error", 500, "HTTP 500"),
        ("/text", 200, "reply is not JSON"),
        ("/list", 200, "reply is not a JSON object"),
        ("/empty", 204, "empty reply"),
        ("/moved", 302, "redirect not followed"),
        ("/big", 200, "reply over 65536 bytes"),
    ],
)
async def test_a_reply_that_is_not_a_json_object_gives_its_status_and_a_reason(
    server: HttpServer, client: WebhookClient, path: str, status: int, reason: str
) -> None:
    outcome = await client.post(server.url(path), {}, timeout=5)
    assert outcome == WebhookOutcome(status, None, reason)
    assert [s.path for s in server.seen] == [path]  # the redirect was not followed


async def test_a_server_that_does_not_answer_in_time_gives_status_0(
    server: HttpServer, client: WebhookClient
) -> None:
    outcome = await client.post(server.url("/slow"), {}, timeout=0.3)
    assert outcome.status == 0 and outcome.reply is None and "no reply within 0.3 s" in outcome.reason
    async with asyncio.timeout(5):
        while server.open_connections:  # the client dropped the connection it gave up on
            await asyncio.sleep(0.01)


async def test_a_refused_connection_gives_status_0(client: WebhookClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the socket is closed
    outcome = await client.post(f"http://127.0.0.1:{port}/hook", {}, timeout=5)
    assert outcome.status == 0 and outcome.reply is None and outcome.reason.startswith("cannot connect")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "not a url", "http://"])
async def test_a_bad_url_gives_status_0_not_an_exception(client: WebhookClient, url: str) -> None:
    outcome = await client.post(url, {}, timeout=1)
    assert outcome.status == 0 and outcome.reason


def test_logs_see_the_host_only() -> None:
    assert url_host("https://user:secret@hooks.example.com:8443/cards?token=abc") == "hooks.example.com:8443"
    assert url_host("http://hooks.example.com/x") == "hooks.example.com"
