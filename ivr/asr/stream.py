"""The asyncio WebSocket driver of a recognizer codec: connect, pump audio, surface events, close.

The codec (``ivr.asr.base.RecognizerCodec``) knows the vendor's wire format; this module only moves frames,
bounds every network await with a timeout and turns a dead connection into events rather than a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from ivr.asr.base import (
    AsrEvent,
    Frame,
    RecognitionError,
    RecognizerCodec,
    RecognizerError,
    SessionClosed,
)

PCM16_BYTES_PER_SECOND = 8000 * 2


class RecognizerStream:
    """One recognition session over one WebSocket.

    ``send_audio`` never blocks: it appends to a buffer that a writer task drains in ``codec.chunk_bytes``
    chunks once the vendor has accepted the session. Events come out of ``next_event`` in arrival order; a
    connection that dies yields RecognitionError then SessionClosed, and SessionClosed is sticky afterwards.
    """

    # Past this much unsent audio the vendor is not keeping up with real time; fail instead of growing.
    MAX_BACKLOG_SECONDS: float = 5.0

    def __init__(
        self,
        url: str,
        codec: RecognizerCodec,
        *,
        connect_timeout: float = 5.0,
        reply_timeout: float = 5.0,
        close_timeout: float = 3.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = url
        self._codec = codec
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._close_timeout = close_timeout
        self._headers = headers
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[AsrEvent] = asyncio.Queue()
        self._buffer = bytearray()
        self._audio_waiting = asyncio.Event()
        self._settled = asyncio.Event()  # the session is ready, refused or over
        self._close_done = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._refusal: str | None = None
        self._finishing = False
        self._ended = False  # SessionClosed has been queued
        self._closing = False
        self._bytes_sent = 0
        self._log = structlog.get_logger().bind(vendor=codec.vendor, asr_host=urlsplit(url).hostname)

    async def __aenter__(self) -> RecognizerStream:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        if self._ws is not None or self._closing:
            raise RuntimeError("a RecognizerStream is opened once")
        try:
            # Audio does not compress: permessage-deflate would only cost CPU (DESIGN.md, Decisions).
            self._ws = await connect(
                self._url,
                compression=None,
                additional_headers=self._headers,
                open_timeout=self._connect_timeout,
                close_timeout=self._close_timeout,
                ping_timeout=self._reply_timeout,
            )
        except TimeoutError as exc:
            await self.close()
            raise RecognizerError(
                f"no connection to {self._codec.vendor} within {self._connect_timeout} s"
            ) from exc
        except (OSError, WebSocketException) as exc:
            await self.close()
            raise RecognizerError(f"cannot connect to {self._codec.vendor}: {exc}") from exc
        except asyncio.CancelledError:
            await self.close()
            raise
        self._log.debug("asr.connected")
        self._reader = asyncio.create_task(self._read(self._ws))
        try:
            await self._send(self._ws, self._codec.open())
            async with asyncio.timeout(self._reply_timeout):
                await self._settled.wait()
        except TimeoutError as exc:
            await self.close()
            raise RecognizerError(
                f"no reply from {self._codec.vendor} within {self._reply_timeout} s"
            ) from exc
        except (RecognizerError, asyncio.CancelledError):
            # Cancelled too (the caller hung up while we connected): __aexit__ does not run after a failed
            # __aenter__, so the socket and the reader task are released here.
            await self.close()
            raise
        if not self._codec.ready:
            await self.close()
            raise RecognizerError(
                self._refusal or f"{self._codec.vendor} closed the session before accepting it"
            )
        self._log.debug("asr.ready")
        self._writer = asyncio.create_task(self._write(self._ws))

    def send_audio(self, pcm: bytes) -> None:
        """Queue PCM16 8 kHz audio without blocking; RecognizerError when the backlog overflows."""
        if len(pcm) % 2:
            raise ValueError(f"PCM16 audio must be whole samples, got {len(pcm)} bytes")
        if self._ended or self._finishing or self._closing:
            return  # the session is over or ending: there is nowhere to send it
        self._buffer += pcm
        if len(self._buffer) > self.MAX_BACKLOG_SECONDS * PCM16_BYTES_PER_SECOND:
            backlog = len(self._buffer) / PCM16_BYTES_PER_SECOND
            self._buffer.clear()
            reason = f"{self._codec.vendor} is not keeping up: {backlog:.1f} s of audio unsent"
            self._fail(reason)
            raise RecognizerError(reason)  # once; the events say it too, and later audio is ignored
        self._audio_waiting.set()

    async def next_event(self, timeout: float | None = None) -> AsrEvent | None:
        if self._ended and self._events.empty():
            return SessionClosed()
        try:
            async with asyncio.timeout(timeout):
                return await self._events.get()
        except TimeoutError:
            return None

    async def finish(self) -> list[AsrEvent]:
        self._finishing = True
        ws = self._ws
        if ws is not None and not self._ended:
            self._audio_waiting.set()
            if self._writer is not None:
                done, _ = await asyncio.wait({self._writer}, timeout=self._reply_timeout)
                if not done:
                    self._fail(f"{self._codec.vendor} did not take the remaining audio in time")
            if not self._ended:
                try:
                    await self._send(ws, self._codec.finish())
                except RecognizerError as exc:
                    self._fail(str(exc))
        events: list[AsrEvent] = []
        if ws is None:
            await self.close()  # never opened: nothing to wait for
        try:
            async with asyncio.timeout(self._close_timeout):
                while not (self._ended and self._events.empty()):
                    event = await self._events.get()
                    events.append(event)
                    if isinstance(event, SessionClosed):
                        break
        except TimeoutError:
            self._log.warning("asr.no_close", timeout=self._close_timeout)
        await self.close()
        while not self._events.empty():
            events.append(self._events.get_nowait())
        if not events or not isinstance(events[-1], SessionClosed):
            events.append(SessionClosed())
        return events

    async def close(self) -> None:
        if self._closing:
            await self._close_done.wait()
            return
        self._closing = True
        current = asyncio.current_task()
        tasks = [
            t for t in (self._writer, self._reader) if t is not None and t is not current and not t.done()
        ]
        try:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._ws is not None:
                async with asyncio.timeout(self._close_timeout):
                    await self._ws.close()
        except (TimeoutError, OSError, WebSocketException):
            pass  # the transport is aborted below
        finally:
            # Also when this close() is itself cancelled: a later close() waits on _close_done.
            if self._ws is not None:
                self._ws.transport.abort()
            self._buffer.clear()
            self._end()
            self._log.debug("asr.closed", audio_bytes_sent=self._bytes_sent)
            self._close_done.set()

    async def _send(self, ws: ClientConnection, frames: list[Frame]) -> None:
        for frame in frames:
            try:
                # A vendor that stops reading fills the TCP window and send() waits: bound it.
                async with asyncio.timeout(self._reply_timeout):
                    await ws.send(frame)
            except TimeoutError as exc:
                raise RecognizerError(
                    f"{self._codec.vendor} stopped reading for {self._reply_timeout} s"
                ) from exc
            except ConnectionClosed as exc:
                raise RecognizerError(f"connection to {self._codec.vendor} lost: {exc}") from exc
            if isinstance(frame, bytes):
                self._bytes_sent += len(frame)

    async def _read(self, ws: ClientConnection) -> None:
        # No timeout on the wait for messages: silence is legitimate; the keepalive pings (ping_timeout)
        # close a dead connection, which ends this loop.
        try:
            async for message in ws:
                for event in self._codec.receive(message):
                    if isinstance(event, SessionClosed):
                        self._end()
                        continue
                    if isinstance(event, RecognitionError):
                        self._log.warning("asr.error", reason=event.reason)
                        if not self._codec.ready:
                            self._refusal = event.reason
                    self._events.put_nowait(event)
                if self._codec.ready or self._refusal is not None:
                    self._settled.set()
                if self._codec.closed:
                    return
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            self._fail(f"connection to {self._codec.vendor} lost: {exc}")
            return
        except Exception as exc:  # a codec bug must end the session, not leave the caller waiting
            self._log.exception("asr.reader_failed")
            self._fail(f"internal error reading from {self._codec.vendor}: {exc!r}")
            return
        if self._finishing:
            self._end()  # closed after our quit without the vendor's close message: not a failure
        else:
            self._fail(f"{self._codec.vendor} closed the connection mid-session")

    async def _write(self, ws: ClientConnection) -> None:
        size = self._codec.chunk_bytes
        try:
            while not self._ended:
                await self._audio_waiting.wait()
                self._audio_waiting.clear()
                while not self._ended and (len(self._buffer) >= size or (self._finishing and self._buffer)):
                    chunk = bytes(self._buffer[:size])
                    del self._buffer[:size]
                    await self._send(ws, self._codec.audio(chunk))
                if self._finishing:
                    return
        except RecognizerError as exc:
            self._fail(str(exc))

    def _fail(self, reason: str) -> None:
        if self._ended:
            return
        self._log.warning("asr.failed", reason=reason)
        if not self._codec.ready:
            self._refusal = reason
        self._events.put_nowait(RecognitionError(reason))
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._events.put_nowait(SessionClosed())
        self._settled.set()
        self._audio_waiting.set()
        if not self._closing:
            # Without a running loop (audio before open) open() or close() cleans up instead.
            with contextlib.suppress(RuntimeError):
                self._closer = asyncio.get_running_loop().create_task(self.close())
