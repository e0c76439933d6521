"""The dialplan's `webhook`: POST the call's context as JSON, read back a JSON object.

One `httpx.AsyncClient` per bridge process (its connection pool is shared by every call), created on first
use and closed at shutdown. Redirects are not followed: a webhook that moved is a configuration error to
see, not a hop to take with the caller's data. Every outcome is a value (`WebhookOutcome`), never an
exception, so the dialplan can route on a failed webhook like on any other reply.

Logs name the URL's host and the status only: the body may carry card digits and the URL credentials.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

__all__ = ["WebhookClient", "WebhookOutcome", "url_host"]

MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True)
class WebhookOutcome:
    """The HTTP status (0 when no reply came), the reply's JSON object (None otherwise), and why not."""

    status: int
    reply: dict[str, object] | None = None
    reason: str = ""


def url_host(url: str) -> str:
    """The host (and port) of `url` for a log line: no userinfo, path or query, which may hold secrets."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "(invalid url)"
    host = parsed.host or "(no host)"
    return f"{host}:{parsed.port}" if parsed.port else host


class WebhookClient:
    """POSTs webhooks over one shared HTTP client."""

    def __init__(self, *, max_reply_bytes: int = MAX_REPLY_BYTES, user_agent: str = "ivr") -> None:
        self.max_reply_bytes = max_reply_bytes
        self.user_agent = user_agent
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False, headers={"User-Agent": self.user_agent}, trust_env=False
            )
        return self._client

    async def post(self, url: str, body: dict[str, object], timeout: float) -> WebhookOutcome:
        """POST `body` to `url`; the whole exchange (connect, send, reply) within `timeout` seconds."""
        try:
            data = json.dumps(body, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            return WebhookOutcome(0, reason=f"body is not JSON: {exc}")
        try:
            # httpx's timeout is per phase (connect, read, ...): the outer one bounds the total.
            async with asyncio.timeout(timeout):
                return await self._exchange(url, data, timeout)
        except TimeoutError:
            return WebhookOutcome(0, reason=f"no reply within {timeout:g} s")
        except httpx.InvalidURL as exc:
            return WebhookOutcome(0, reason=f"invalid URL: {exc}")
        except httpx.UnsupportedProtocol:
            return WebhookOutcome(0, reason="not an http or https URL")
        except httpx.TimeoutException:
            return WebhookOutcome(0, reason=f"no reply within {timeout:g} s")
        except httpx.ConnectError as exc:
            return WebhookOutcome(0, reason=f"cannot connect: {exc or 'connection refused'}")
        except httpx.HTTPError as exc:
            return WebhookOutcome(0, reason=f"{type(exc).__name__}: {exc}")

    async def _exchange(self, url: str, data: bytes, timeout: float) -> WebhookOutcome:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        request = self._http().build_request("POST", url, content=data, headers=headers, timeout=timeout)
        response = await self._http().send(request, stream=True)
        try:
            status = response.status_code
            if not 200 <= status < 300:
                kind = "redirect not followed" if response.is_redirect else f"HTTP {status}"
                return WebhookOutcome(status, reason=kind)
            reply = bytearray()
            async for chunk in response.aiter_bytes():
                reply += chunk
                if len(reply) > self.max_reply_bytes:
                    return WebhookOutcome(status, reason=f"reply over {self.max_reply_bytes} bytes")
        finally:
            await response.aclose()
        if not reply.strip():
            return WebhookOutcome(status, reason="empty reply")
        try:
            value = json.loads(reply)
        except ValueError:
            return WebhookOutcome(status, reason="reply is not JSON")
        if not isinstance(value, dict):
            return WebhookOutcome(status, reason="reply is not a JSON object")
        return WebhookOutcome(status, value)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
