"""The driver honours a codec's deadline (vendor idle timeouts, keepalives) with no polling."""

from __future__ import annotations

import asyncio

from ivr.asr.base import (
    AsrEvent,
    CodecBase,
    Frame,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    SessionState,
)
from ivr.asr.memory import MemoryConnection
from ivr.asr.stream import Connection, RecognizerStream


class KeepaliveCodec(CodecBase):
    """Listens at once; asks to be woken 50 ms after anything it sent, and then sends a keepalive."""

    vendor = "keepalive"
    chunk_ms = 20

    def __init__(self) -> None:
        super().__init__()
        self.due: float | None = None

    def open(self, now: float) -> None:
        pass

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        self._recognition = request.id
        self._state = SessionState.LISTENING
        self.due = now + 0.05
        return [RecognitionStarted(request.id)]

    def audio(self, chunk: bytes, now: float) -> None:
        self._out.append(chunk)

    def deadline(self) -> float | None:
        return self.due

    def timeout(self, now: float) -> list[AsrEvent]:
        self._out.append(f"keepalive {len(self._out)}")
        self.due = None
        return []

    def end(self, now: float) -> list[AsrEvent]:
        return []

    def cancel(self, now: float) -> list[AsrEvent]:
        return [self._final(ResultStatus.CANCELLED)] if self._recognition is not None else []

    def close(self, now: float) -> list[AsrEvent]:
        self._state = SessionState.CLOSED
        return self.cancel(now)

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        return []


async def test_the_codec_deadline_is_honoured() -> None:
    sent: list[Frame] = []

    async def connect() -> Connection:
        return MemoryConnection(lambda frame: sent.append(frame) or [])

    events: list[AsrEvent] = []
    stream = RecognizerStream(
        "keepalive", connect, lambda r: KeepaliveCodec(), events.append, close_timeout=0.1
    )
    await stream.recognize(RecognitionRequest(1, "ko"))
    async with asyncio.timeout(2):
        while "keepalive 0" not in sent:
            await asyncio.sleep(0.01)
    assert events == [RecognitionStarted(1)]
    await stream.close()
