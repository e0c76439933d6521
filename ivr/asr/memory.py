"""A ``Connection`` to an in-process peer, for tests and benchmarks that drive the real driver and codecs
without a socket (real objects connected in memory, as h11's tests do)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ivr.asr.base import Frame
from ivr.asr.stream import ConnectionLost


class MemoryConnection:
    """``respond(frame)`` is the peer: it gets every frame sent and returns its replies, in order."""

    def __init__(self, respond: Callable[[Frame], list[Frame]], on_close: Callable[[], None] | None = None):
        self._respond = respond
        self._on_close = on_close
        self._inbound: asyncio.Queue[Frame | None] = asyncio.Queue()

    def push(self, frame: Frame) -> None:
        """A frame the peer sends unprompted."""
        self._inbound.put_nowait(frame)

    async def send(self, frame: Frame) -> None:
        self.send_now(frame)

    def send_now(self, frame: Frame) -> bool:
        for reply in self._respond(frame):
            self._inbound.put_nowait(reply)
        return True

    async def recv(self) -> Frame:
        frame = await self._inbound.get()
        if frame is None:
            raise ConnectionLost(None)
        return frame

    async def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
        self._inbound.put_nowait(None)

    def abort(self) -> None:
        self._inbound.put_nowait(None)
