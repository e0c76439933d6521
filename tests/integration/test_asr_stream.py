"""RecognizerStream against a scripted Mediazen peer: a real websockets server on 127.0.0.1 that speaks the
vendor document's protocol and records what it receives."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ivr.asr.base import (
    AsrEvent,
    EndOfSpeech,
    Final,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    StartOfSpeech,
)
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.registry import make_codec
from ivr.asr.stream import Connector, RecognizerStream, websocket_connector
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
        frames = [m for m in self.messages[1:-1] if isinstance(m, bytes)]
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


class Events:
    """The stream's event sink, with a way to wait for the Final of a recognition."""

    def __init__(self) -> None:
        self.seen: list[AsrEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: AsrEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    async def final(self, recognition: int = 1) -> Final:
        async with asyncio.timeout(WAIT):
            while True:
                finals = [e for e in self.seen if isinstance(e, Final) and e.recognition == recognition]
                if finals:
                    return finals[0]
                self._changed.clear()
                await self._changed.wait()


def new_stream(
    connector: Connector | str, events: Events, *, chunk_ms: int = 100, reply_timeout: float = WAIT
) -> RecognizerStream:
    if isinstance(connector, str):
        connector = websocket_connector(connector)
    return RecognizerStream(
        "mediazen",
        connector,
        lambda request: MediazenCodec(chunk_ms=chunk_ms),
        events,
        reply_timeout=reply_timeout,
        close_timeout=WAIT,
    )


async def stream_live(stream: RecognizerStream, pcm: bytes, frame: int = 320) -> None:
    """Feed PCM the way RTP does: 20 ms at a time, giving the loop a turn between packets."""
    for start in range(0, len(pcm), frame):
        stream.audio(pcm[start : start + frame])
        await asyncio.sleep(0)


async def test_audio_arrives_complete_in_order_and_the_final_follows_the_end() -> None:
    peer = Peer()
    events = Events()
    pcm = speech(1.03)
    async with scripted(peer) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream_live(stream, pcm)
        stream.end(1)
        final = await events.final()
        await stream.close()
    assert final == Final(1, ResultStatus.RECOGNIZED, final.alternatives)
    assert final.text == "주변 맛집"
    assert bytes(peer.audio) == pcm
    peer.check_wire(1600)
    assert [type(e) for e in events.seen] == [RecognitionStarted, StartOfSpeech, EndOfSpeech, Final]


async def test_a_result_while_audio_streams_ends_the_recognition_with_quit_and_close() -> None:
    peer = Peer(
        script={3200: [new_text("주변", epd=False)], 9600: [new_text("주변 맛집", epd=True)]}, on_quit=[CLOSE]
    )
    events = Events()
    async with scripted(peer) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream_live(stream, speech(1.0))
        final = await events.final()
        await stream.close()
    assert final.text == "주변 맛집" and final.alternatives[0].confidence == 0.87
    assert events.seen[:3] == [RecognitionStarted(1), StartOfSpeech(1), Partial(1, "주변", 0.87)]
    quits = [m for m in peer.messages if isinstance(m, str) and json.loads(m).get("cmd") == "quit"]
    assert len(quits) == 1  # the document's closing exchange, once
    assert peer.close_code == 1000


async def test_audio_sent_before_the_reply_is_delivered() -> None:
    peer = Peer()
    events = Events()
    pcm = speech(0.5)
    async with scripted(peer) as url:
        stream = new_stream(url, events)
        starting = stream.recognize(RecognitionRequest(1, "ko"))
        stream.audio(pcm)  # before the connection exists
        await starting
        stream.end(1)
        await events.final()
        await stream.close()
    assert bytes(peer.audio) == pcm


async def test_no_reply_ends_the_recognition_with_an_error() -> None:
    events = Events()
    async with scripted(Peer(reply=None)) as url:
        stream = new_stream(url, events, reply_timeout=0.3)
        await stream.recognize(RecognitionRequest(1, "ko"))
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR and final.error is not None
    assert "did not start listening" in final.error.message


async def test_refused_session_names_the_status() -> None:
    events = Events()
    refusal = '{"topic":"asr:ko","payload":{"status":"busy"},"event":"reply"}'
    async with scripted(Peer(reply=refusal)) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR and final.error is not None and "'busy'" in final.error.message


async def test_an_unsupported_request_is_an_error_final_not_an_exception() -> None:
    events = Events()
    async with scripted(Peer()) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "pt-BR"))
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR and final.error is not None and "pt-BR" in final.error.message


async def test_connection_refused_is_an_error_final() -> None:
    events = Events()
    async with scripted(Peer()) as url:
        pass  # the server is gone: its port refuses
    stream = new_stream(url, events)
    await stream.recognize(RecognitionRequest(1, "ko"))
    final = await events.final()
    await stream.close()
    assert final.status is ResultStatus.ERROR and final.error is not None and "connect" in final.error.message


@pytest.mark.parametrize("drop_after", [1600, 8000])
async def test_dropped_connection_is_an_error_final_instead_of_a_hang(drop_after: int) -> None:
    events = Events()
    async with scripted(Peer(drop_after=drop_after)) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream_live(stream, speech(1.0))
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR


async def test_server_closing_without_close_event_mid_session_is_an_error() -> None:
    class Closer(Peer):
        async def handle(self, ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send(REPLY_OK)
            await ws.recv()
            await ws.close()

    events = Events()
    async with scripted(Closer()) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream_live(stream, speech(0.3))
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR


async def test_close_without_a_goodbye_from_the_vendor_still_closes() -> None:
    events = Events()
    async with scripted(Peer(on_quit=[])) as url:
        stream = RecognizerStream(
            "mediazen", websocket_connector(url), lambda r: MediazenCodec(), events, close_timeout=0.3
        )
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream.close()
        await stream.close()  # idempotent
    assert (await events.final()).status is ResultStatus.CANCELLED


async def test_backlog_beyond_five_seconds_fails_the_recognition() -> None:
    class Deaf(Peer):
        async def handle(self, ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send(REPLY_OK)
            await ws.wait_closed()  # never reads again: the TCP window fills

    events = Events()
    async with scripted(Deaf()) as url:
        stream = new_stream(url, events, reply_timeout=60)
        await stream.recognize(RecognitionRequest(1, "ko"))
        second = speech(1.0)
        for _ in range(600):  # 10 minutes of audio: more than the kernel's socket buffers hold
            stream.audio(second)
            await asyncio.sleep(0.01)
            if any(isinstance(e, Final) for e in events.seen):
                break
        final = await events.final()
        await stream.close()
    assert final.status is ResultStatus.ERROR and final.error is not None
    assert "not keeping up" in final.error.message


async def test_backlog_overflow_while_connecting_releases_the_socket() -> None:
    """Defect: audio piling up while the WebSocket was still connecting leaked the socket and its reader."""
    accepted: list[asyncio.StreamReader] = []
    gone = asyncio.Event()

    async def silent_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        await reader.read()  # never answers the handshake; returns when the client lets go
        gone.set()
        writer.close()

    server = await asyncio.start_server(silent_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events = Events()
    stream = new_stream(websocket_connector(f"ws://127.0.0.1:{port}/", connect_timeout=60), events)
    starting = stream.recognize(RecognitionRequest(1, "ko"))
    async with asyncio.timeout(WAIT):
        while not accepted:
            await asyncio.sleep(0.01)
    stream.audio(speech(6.0))  # more than the 5 s backlog, before the handshake has finished
    final = await events.final()
    assert final.status is ResultStatus.ERROR and "not keeping up" in str(final.error)
    async with asyncio.timeout(WAIT):
        await gone.wait()  # the half-open connection is closed, not left behind
    await starting
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    await stream.close()
    server.close()
    await server.wait_closed()


async def test_each_recognition_gets_its_own_connection_and_one_final() -> None:
    peer = Peer()
    events = Events()
    async with scripted(peer) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream.recognize(RecognitionRequest(2, "en"))  # the first is cancelled: the step moved on
        stream.audio(speech(0.2))
        stream.end(2)
        second = await events.final(2)
        await stream.close()
    finals = [e for e in events.seen if isinstance(e, Final)]
    assert finals == [Final(1, ResultStatus.CANCELLED), second]
    assert second.status is ResultStatus.RECOGNIZED
    joins = [json.loads(m) for m in peer.messages if isinstance(m, str) and "join" in m]
    assert joins == [{"language": "ko", "cmd": "join"}, {"language": "en", "cmd": "join"}]


async def test_headers_are_sent_and_compression_is_off() -> None:
    peer = Peer()
    events = Events()
    async with scripted(peer) as url:
        connector = websocket_connector(url, headers={"Authorization": "Basic dTpw"})
        stream = new_stream(connector, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream.close()
    assert peer.headers["authorization"] == "Basic dTpw"
    assert "sec-websocket-extensions" not in peer.headers


@pytest.mark.integration
async def test_interoperates_with_the_mediazen_emulator(tmp_path: Path) -> None:
    """The emulator was written from the same document by someone else and recognizes with Vosk."""
    phrase = "상담원 연결해 주세요"
    pcm = speak(phrase, tmp_path / "phrase.raw").read_bytes()
    events = Events()
    with mediazen_emulator([phrase, "메인 메뉴", "네"]) as url:
        stream = RecognizerStream(
            "mediazen", websocket_connector(url), lambda r: make_codec("mediazen"), events, close_timeout=WAIT
        )
        await stream.recognize(RecognitionRequest(1, "ko"))
        await stream_live(stream, pcm)
        stream.end(1)
        final = await events.final()
        await stream.close()
    assert final.text == phrase
    kinds = [type(e) for e in events.seen]
    assert kinds.index(StartOfSpeech) < kinds.index(EndOfSpeech) < kinds.index(Final)


async def test_cancelled_recognize_releases_the_connection() -> None:
    peer = Peer(reply=None)
    events = Events()
    async with scripted(peer) as url:
        stream = new_stream(url, events)
        await stream.recognize(RecognitionRequest(1, "ko"))
        async with asyncio.timeout(WAIT):
            while not peer.messages:  # the join has arrived: connected, waiting for the reply
                await asyncio.sleep(0.01)
        stream.cancel(1)
        assert (await events.final()).status is ResultStatus.CANCELLED
        await stream.close()
        async with asyncio.timeout(WAIT):
            while peer.close_code is None:
                await asyncio.sleep(0.01)
