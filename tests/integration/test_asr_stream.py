"""RecognizerStream against a scripted Mediazen peer: a real websockets server on 127.0.0.1 that speaks the
vendor document's protocol and records what it receives."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ivr.asr.base import (
    AsrEvent,
    EndOfSpeech,
    PartialResult,
    RecognitionError,
    RecognitionResult,
    RecognizerError,
    SessionClosed,
    SessionReady,
    StartOfSpeech,
)
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.registry import make_codec
from ivr.asr.stream import RecognizerStream
from tests.integration.harness import mediazen_emulator, speak

REPLY_OK = '{"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}'
CLOSE = '{"topic":"asr:ko","payload":{},"event":"close"}'
WAIT = 5.0  # generous bound on any single wait; the tests never assert durations


def new_text(text: str, *, epd: bool) -> str:
    payload = {"stt_cnt": 1, "stt": [{"id": 0, "text": text, "confidence": 0.87}], "epd": epd}
    return json.dumps({"topic": "asr:ko", "payload": payload, "event": "new:text"}, ensure_ascii=False)


@dataclass
class Peer:
    """What the scripted server says, and what it heard."""

    reply: str | None = REPLY_OK  # None: never answer the join
    script: dict[int, list[str]] = field(default_factory=dict)  # after N audio bytes, send these
    on_quit: list[str] = field(default_factory=lambda: [new_text("주변 맛집", epd=True), CLOSE])
    drop_after: int | None = None  # abort the TCP connection after N audio bytes
    messages: list[str | bytes] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    close_code: int | None = None

    async def handle(self, ws: ServerConnection) -> None:
        self.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()} if ws.request else {}
        self.messages.append(await ws.recv())
        if self.reply is not None:
            await ws.send(self.reply)
        async for message in ws:
            self.messages.append(message)
            if isinstance(message, bytes):
                before = len(self.audio)
                self.audio += message
                if self.drop_after is not None and len(self.audio) >= self.drop_after:
                    ws.transport.abort()
                    return
                for at, replies in self.script.items():
                    if before < at <= len(self.audio):
                        for reply in replies:
                            await ws.send(reply)
            elif json.loads(message).get("cmd") == "quit":
                for reply in self.on_quit:
                    await ws.send(reply)
        self.close_code = ws.close_code

    def check_wire(self, chunk_bytes: int) -> None:
        """join first, then binary frames of exactly chunk_bytes except the last, then quit."""
        assert json.loads(self.messages[0]) == {"language": "ko", "cmd": "join"}
        assert json.loads(self.messages[-1]) == {"language": "ko", "cmd": "quit"}
        frames = self.messages[1:-1]
        assert frames and all(isinstance(f, bytes) for f in frames)
        assert all(len(f) == chunk_bytes for f in frames[:-1])
        assert 0 < len(frames[-1]) <= chunk_bytes


@asynccontextmanager
async def scripted(peer: Peer) -> AsyncIterator[str]:
    async with serve(peer.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/asr"


def speech(seconds: float, seed: int = 7) -> bytes:
    size = int(seconds * 16000) & ~1
    return random.Random(seed).randbytes(size)


async def stream_live(stream: RecognizerStream, pcm: bytes, frame: int = 320) -> None:
    """Feed PCM the way RTP does: 20 ms at a time, giving the loop a turn between packets."""
    for start in range(0, len(pcm), frame):
        stream.send_audio(pcm[start : start + frame])
        await asyncio.sleep(0)


async def events_until_closed(stream: RecognizerStream) -> list[AsrEvent]:
    events: list[AsrEvent] = []
    while not events or not isinstance(events[-1], SessionClosed):
        event = await stream.next_event(timeout=WAIT)
        assert event is not None, f"no event within {WAIT} s after {events}"
        events.append(event)
    return events


async def test_audio_arrives_complete_in_order_and_finish_returns_the_final_result() -> None:
    peer = Peer()
    pcm = speech(3.33)  # not a whole number of 100 ms chunks: the last frame is short
    async with scripted(peer) as url:
        stream = RecognizerStream(url, MediazenCodec())
        await stream.open()
        await stream_live(stream, pcm)
        events = await stream.finish()
    assert bytes(peer.audio) == pcm
    peer.check_wire(chunk_bytes=1600)
    assert peer.close_code == 1000  # a clean closing handshake, not a dropped socket
    assert events[0] == SessionReady()
    assert events[-3:] == [EndOfSpeech(), RecognitionResult("주변 맛집", 0.87), SessionClosed()]
    assert await stream.next_event(timeout=0) == SessionClosed()


async def test_results_arrive_while_audio_streams() -> None:
    peer = Peer(
        script={
            1600: [new_text("", epd=False), new_text("주변", epd=False)],
            4800: [new_text("주변 맛집", epd=True)],
        },
        on_quit=[CLOSE],
    )
    async with scripted(peer) as url, RecognizerStream(url, MediazenCodec()) as stream:
        await stream_live(stream, speech(0.5))
        received = [await stream.next_event(timeout=WAIT) for _ in range(5)]
        assert received == [
            SessionReady(),
            StartOfSpeech(),
            PartialResult("주변", 0.87),
            EndOfSpeech(),
            RecognitionResult("주변 맛집", 0.87),
        ]
        assert await stream.finish() == [SessionClosed()]
    peer.check_wire(chunk_bytes=1600)


async def test_audio_sent_before_the_reply_is_delivered() -> None:
    peer = Peer()
    pcm = speech(1.01, seed=3)
    async with scripted(peer) as url:
        stream = RecognizerStream(url, MediazenCodec(chunk_ms=20))
        stream.send_audio(pcm[:8000])  # before connecting at all
        await stream.open()
        await stream_live(stream, pcm[8000:])
        await stream.finish()
    assert bytes(peer.audio) == pcm
    peer.check_wire(chunk_bytes=320)


async def test_no_reply_raises_recognizer_error() -> None:
    async with scripted(Peer(reply=None)) as url:
        stream = RecognizerStream(url, MediazenCodec(), reply_timeout=0.3)
        with pytest.raises(RecognizerError, match="no reply"):
            await stream.open()
        assert await stream.next_event(timeout=0) is not None  # closed, not hanging


async def test_refused_session_raises_naming_the_status() -> None:
    refusal = '{"topic":"asr:ko","payload":{"status":"busy"},"event":"reply"}'
    async with scripted(Peer(reply=refusal)) as url:
        with pytest.raises(RecognizerError, match="busy"):
            await RecognizerStream(url, MediazenCodec()).open()


async def test_connection_refused_raises_recognizer_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RecognizerError, match="connect"):
        await RecognizerStream(f"ws://127.0.0.1:{port}/asr", MediazenCodec(), connect_timeout=2).open()


@pytest.mark.parametrize("drop_after", [4800, 16000], ids=["while-sending", "while-idle"])
async def test_dropped_connection_yields_error_then_closed_instead_of_hanging(drop_after: int) -> None:
    peer = Peer(drop_after=drop_after)
    async with scripted(peer) as url:
        stream = RecognizerStream(url, MediazenCodec())
        await stream.open()
        await stream_live(stream, speech(1.0))
        events = await events_until_closed(stream)
        assert events[0] == SessionReady()
        assert isinstance(events[-2], RecognitionError)
        assert await stream.next_event() == SessionClosed()  # sticky, even without a timeout
        stream.send_audio(speech(0.1))  # ignored, not raised: the RTP callback keeps calling
        assert (await stream.finish())[-1] == SessionClosed()


async def test_server_closing_without_close_event_mid_session_is_an_error() -> None:
    class Hangup(Peer):
        async def handle(self, ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send(REPLY_OK)
            await ws.recv()
            await ws.close()

    async with scripted(Hangup()) as url, RecognizerStream(url, MediazenCodec()) as stream:
        await stream_live(stream, speech(0.3))
        events = await events_until_closed(stream)
        assert isinstance(events[-2], RecognitionError)


async def test_finish_without_a_close_from_the_vendor_still_closes() -> None:
    peer = Peer(on_quit=[new_text("네", epd=True)])
    async with scripted(peer) as url:
        stream = RecognizerStream(url, MediazenCodec(), close_timeout=0.3)
        await stream.open()
        await stream_live(stream, speech(0.2))
        events = await stream.finish()
    assert events[-3:] == [EndOfSpeech(), RecognitionResult("네", 0.87), SessionClosed()]


async def test_backlog_beyond_five_seconds_fails_the_stream() -> None:
    stream = RecognizerStream("ws://127.0.0.1:9/asr", MediazenCodec())
    pcm = speech(0.02)
    for _ in range(int(RecognizerStream.MAX_BACKLOG_SECONDS / 0.02)):
        stream.send_audio(pcm)
    with pytest.raises(RecognizerError, match="not keeping up"):
        stream.send_audio(pcm)
    stream.send_audio(pcm)  # the stream is over: later audio is ignored, not raised again
    error = await stream.next_event(timeout=WAIT)
    assert isinstance(error, RecognitionError) and "not keeping up" in error.reason
    assert await stream.next_event(timeout=WAIT) == SessionClosed()
    await stream.close()


async def test_headers_are_sent_and_compression_is_off() -> None:
    peer = Peer()
    headers = {"Authorization": "Bearer t0k"}
    async with scripted(peer) as url, RecognizerStream(url, MediazenCodec(), headers=headers) as stream:
        await stream.finish()
        await stream.close()  # idempotent
    assert peer.headers["authorization"] == "Bearer t0k"
    assert "sec-websocket-extensions" not in peer.headers


def test_odd_length_audio_is_rejected() -> None:
    stream = RecognizerStream("ws://127.0.0.1:9/asr", MediazenCodec())
    with pytest.raises(ValueError, match="whole samples"):
        stream.send_audio(b"\x00\x01\x02")


@pytest.mark.integration
async def test_interoperates_with_the_mediazen_emulator(tmp_path: Path) -> None:
    """The emulator was written from the same document by someone else and recognizes with Vosk."""
    phrase = "상담원 연결해 주세요"
    pcm = speak(phrase, tmp_path / "phrase.raw").read_bytes()
    with mediazen_emulator([phrase, "메인 메뉴", "네"]) as url:
        stream = RecognizerStream(url, make_codec("mediazen", language="ko"), close_timeout=WAIT)
        await stream.open()
        await stream_live(stream, pcm)
        events = await stream.finish()
    results = [e for e in events if isinstance(e, RecognitionResult)]
    assert [r.text for r in results] == [phrase]
    assert events.index(StartOfSpeech()) < events.index(EndOfSpeech()) < events.index(results[0])
    assert events[-1] == SessionClosed()


async def test_cancelled_open_releases_the_connection() -> None:
    peer = Peer(reply=None)
    async with scripted(peer) as url:
        stream = RecognizerStream(url, MediazenCodec(), reply_timeout=WAIT)
        opening = asyncio.create_task(stream.open())
        async with asyncio.timeout(WAIT):
            while not peer.messages:  # the join has arrived: connected, waiting for the reply
                await asyncio.sleep(0.01)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert await stream.next_event(timeout=WAIT) == SessionClosed()
