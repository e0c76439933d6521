"""The asyncio driver of a recognizer codec: connect, send what the codec queues, feed it what arrives.

One ``RecognizerStream`` per call and vendor. It keeps the vendor session across the call's listen steps
where the codec allows it (CPQD: one session, many recognitions; AmiVoice: ``s ... e`` repeated) and opens a
new connection with a fresh codec where the codec's session is over (Mediazen: one utterance per join).
Whatever happens, every request gets exactly one ``Final``: a refused request, an unreachable or stalled
vendor, a dropped connection and a codec bug all end as ``Final(ERROR)`` with the reason, never as silence.
The codec owns the protocol state; this module keeps no flags of its own beyond the request in progress.
Each failure carries its kind (``Failure``); the endpoint's circuit breaker (``ivr.asr.breaker``), shared by
the bridge's calls, hears every request's outcome and may refuse a request at once; handing a failed turn to
another vendor is ``ivr.asr.failover``'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus, WebSocketException
from websockets.protocol import State
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from ivr.asr.base import (
    AsrEvent,
    Failure,
    Final,
    Frame,
    RecognitionRequest,
    RecognizerCodec,
    RecognizerError,
    ResultStatus,
    SessionClosed,
    SessionState,
    UnsupportedRequest,
    VendorError,
)
from ivr.asr.breaker import CircuitBreaker
from ivr.asr.wsframe import MaskPool, binary_frame

__all__ = ["Connection", "ConnectionLost", "Connector", "RecognizerStream", "websocket_connector"]


class ConnectionLost(Exception):
    """The connection ended; ``error`` is None for a clean close by the vendor."""

    def __init__(self, error: VendorError | None) -> None:
        super().__init__(str(error) if error else "closed")
        self.error = error


class Connection(Protocol):
    """The few things the driver needs of a WebSocket (and what an in-memory pair offers in tests)."""

    async def send(self, frame: Frame) -> None: ...

    def send_now(self, frame: Frame) -> bool:
        """Write ``frame`` without waiting if nothing holds it back (flow control); False: ``send`` it."""
        ...

    async def recv(self) -> Frame:
        """The next frame; ConnectionLost when the connection is over."""
        ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


Connector = Callable[[], Awaitable[Connection]]
CodecFactory = Callable[[RecognitionRequest], RecognizerCodec]


_MASKS = MaskPool()  # one for every connection: each frame's key is fresh all the same, 4 KiB less per call


class _WebSocket:
    """``websockets`` client connection as a ``Connection``."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        # send_now writes through the connection's sans-I/O protocol, as its own send() does; with a
        # websockets version that lacks these internals every frame takes send().
        self._direct = all(
            hasattr(ws, name) for name in ("protocol", "send_data", "paused", "send_in_progress")
        ) and all(hasattr(ws.protocol, name) for name in ("writes", "extensions"))
        self._masks = _MASKS

    def send_now(self, frame: Frame) -> bool:
        ws = self._ws
        if (
            not self._direct
            or ws.protocol.state is not State.OPEN
            or ws.send_in_progress is not None  # a fragmented message: send() waits for it
            or ws.paused  # the vendor's socket is backed up: send() waits, bounded by the writer's timeout
            or ws.transport.is_closing()
        ):
            return False
        protocol = ws.protocol
        try:
            if isinstance(frame, str):
                protocol.send_text(frame.encode())
            elif not protocol.writes and not protocol.extensions:
                # Audio, nearly every frame: written whole, in order behind nothing (wsframe.py).
                ws.transport.write(binary_frame(frame, self._masks.take()))
                return True
            else:
                protocol.send_binary(frame)
            ws.send_data()
        except Exception as exc:  # what send() turns into ConnectionClosed: the socket failed under us
            ws.transport.abort()
            raise ConnectionLost(VendorError("", f"connection lost: {exc}", kind=Failure.CLOSED)) from exc
        return True

    async def send(self, frame: Frame) -> None:
        try:
            await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise ConnectionLost(VendorError("", f"connection lost: {exc}", kind=Failure.CLOSED)) from exc

    async def recv(self) -> Frame:
        try:
            return await self._ws.recv()
        except ConnectionClosedOK as exc:
            raise ConnectionLost(None) from exc
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code if exc.rcvd else "")
            raise ConnectionLost(VendorError(code, str(exc), kind=Failure.CLOSED)) from exc

    async def close(self) -> None:
        await self._ws.close()

    def abort(self) -> None:
        self._ws.transport.abort()


_CA_CONTEXTS: dict[Path, ssl.SSLContext] = {}


async def _verifying_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` (read once per process, off the event loop)."""
    context = _CA_CONTEXTS.get(ca_file)
    if context is None:
        # create_default_context verifies the chain and the host name; nothing here turns either off.
        context = await asyncio.to_thread(ssl.create_default_context, cafile=str(ca_file))
        _CA_CONTEXTS[ca_file] = context
    return context


# vendor URL -> its proxy from the environment (HTTPS_PROXY, NO_PROXY...)
_PROXIES: dict[str, str | None] = {}


def _proxy(url: str) -> str | None:
    """The proxy for `url` as websockets would find it, looked up once: the lookup reads the whole environment
    (1 % of the bridge's CPU at 400 call setups a second)."""
    if url not in _PROXIES:
        _PROXIES[url] = get_proxy(parse_uri(url))
    return _PROXIES[url]


def websocket_connector(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ca_file: Path | None = None,
    connect_timeout: float = 5.0,
    ping_timeout: float = 5.0,
    close_timeout: float = 3.0,
) -> Connector:
    """Connections to ``url``; handshake ``headers`` (credentials) are sent and never logged. ``wss://`` is
    verified against the system CAs (websockets' default context), or ``ca_file`` when given."""
    vendorless = urlsplit(url).hostname
    secure = urlsplit(url).scheme == "wss"

    async def open_connection() -> Connection:
        try:
            tls: dict[str, Any] = {"ssl": await _verifying_context(ca_file)} if secure and ca_file else {}
            # Audio does not compress: permessage-deflate would only cost CPU (DESIGN.md, Decisions).
            ws = await connect(
                url,
                compression=None,
                proxy=_proxy(url),
                additional_headers=headers,
                open_timeout=connect_timeout,
                close_timeout=close_timeout,
                ping_timeout=ping_timeout,
                **tls,
            )
        except TimeoutError as exc:
            message = f"no connection to {vendorless} within {connect_timeout} s"
            raise RecognizerError(message, Failure.TIMEOUT) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            kind = Failure.UNAUTHORIZED if status in (401, 403) else Failure.UNREACHABLE
            raise RecognizerError(f"{vendorless} refused the handshake with {status}", kind) from exc
        except (OSError, WebSocketException) as exc:
            raise RecognizerError(f"cannot connect to {vendorless}: {exc}") from exc
        return _WebSocket(ws)

    return open_connection


class RecognizerStream:
    """Recognitions of one call on one vendor; events go to ``on_event`` as they happen."""

    # Slots: over 30 attributes, an instance dict no longer shares its keys (1.3 KB more per call).
    __slots__ = (
        "_changed",
        "_chunk_bytes",
        "_close_timeout",
        "_closed",
        "_codec",
        "_codec_factory",
        "_conn",
        "_connecting",
        "_connector",
        "_deadline",
        "_ending",
        "_log",
        "_loop",
        "_max_backlog",
        "_on_event",
        "_open",
        "_outbox",
        "_outbox_bytes",
        "_pending",
        "_reader",
        "_replay",
        "_reply_timeout",
        "_request",
        "_retried",
        "_start_guard",
        "_starting",
        "_timers_due",
        "_wake",
        "_writer",
        "breaker",
        "bytes_sent",
        "vendor",
    )

    # Past this much unsent audio the vendor is not keeping up with real time; fail instead of growing.
    MAX_BACKLOG_SECONDS: float = 5.0
    RETRY_DELAY: float = 0.1  # before a retryable error's second attempt (a busy vendor needs a moment)
    # A vendor that does not answer the session open or the request's start gives up after half the step's
    # no-input time (at most reply_timeout), so a secondary vendor still has the other half.
    MIN_REPLY_GUARD: float = 1.0

    def __init__(
        self,
        vendor: str,
        connector: Connector,
        codec_factory: CodecFactory,
        on_event: Callable[[AsrEvent], None],
        *,
        reply_timeout: float = 5.0,
        close_timeout: float = 3.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.vendor = vendor
        self.breaker = breaker  # the endpoint's, shared by every call of the bridge
        self._connector = connector
        self._codec_factory = codec_factory
        self._on_event = on_event
        self._reply_timeout = reply_timeout
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        self._codec: RecognizerCodec | None = None
        self._conn: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: deque[Frame] = deque()
        self._outbox_bytes = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # set after every codec call: wakes whoever waits on its state
        self._deadline: asyncio.TimerHandle | None = None
        self._start_guard: asyncio.TimerHandle | None = None
        self._request: RecognitionRequest | None = None  # the recognition whose audio we take
        self._open: set[int] = set()  # requests without a Final yet
        self._pending = bytearray()  # audio of the request not yet given to the codec
        self._replay: bytearray | None = bytearray()  # for a codec that retries; None: too much to replay
        self._retried: set[int] = set()  # requests tried twice already
        self._ending: int | None = None  # end() came before the vendor listened: end once it does
        self._timers_due: int | None = None  # start_timers() came before the vendor had the request
        self._starting: set[asyncio.Task[None]] = set()
        self._chunk_bytes = 1600
        self._max_backlog = 80000
        self._closed = False
        self.bytes_sent = 0
        self._log = structlog.get_logger().bind(vendor=vendor)

    # ---- what a call does

    def recognize(self, request: RecognitionRequest, replay: bytes = b"") -> asyncio.Task[None]:
        """Start ``request``: its audio is taken from now on (held until the vendor listens).

        ``replay`` is audio of the turn heard before (by a vendor that failed): it goes out first, as fast as
        the vendor takes it, and the backlog allowance grows by its size. The task connects if needed; it
        never raises for vendor trouble, which comes out as the request's Final(ERROR)."""
        if self._request is not None:
            self.cancel(self._request.id)
        self._open.add(request.id)
        if self._closed:
            self._end_request(request.id, ResultStatus.ERROR, "the call's recognizer stream is closed")
        else:
            self._request = request
            self._ending = None
            self._pending[:] = replay
            self._replay = bytearray()
            allowance = self.MAX_BACKLOG_SECONDS * request.audio_format.bytes_per_second
            self._max_backlog = int(allowance) + len(replay)
        return self._spawn(self._start(request))

    async def _start(self, request: RecognitionRequest, *, retry: bool = False) -> None:
        if self._request is not request:
            return
        per_second = request.audio_format.bytes_per_second
        # A retry is the same request: the breaker let it through once (maybe as its half-open probe).
        if not retry and self.breaker is not None and not self.breaker.allow(self._loop.time()):
            self._log.info("asr.circuit_open")
            error = VendorError(
                "", f"{self.vendor} skipped: its circuit breaker is open", kind=Failure.CIRCUIT_OPEN
            )
            self._end_request(request.id, ResultStatus.ERROR, error)
            return
        try:
            await self._ready_for(request)
            codec = self._codec
            if self._request is not request or codec is None:
                return  # cancelled or failed meanwhile: its Final is out already
            self._chunk_bytes = max(2, codec.chunk_ms * per_second // 1000)
            self._dispatch(codec.send(request, self._loop.time()))
            if self._timers_due == request.id and codec.recognition == request.id:
                codec.start_timers(self._loop.time())
        except UnsupportedRequest as exc:
            self._log.warning("asr.request_refused", reason=str(exc))
            self._end_request(request.id, ResultStatus.ERROR, VendorError("", str(exc)))
            return
        except (RecognizerError, ConnectionLost, OSError) as exc:
            self._fail(VendorError("", str(exc) or f"{self.vendor} did not answer", kind=_kind_of(exc)))
            return
        except asyncio.CancelledError:
            if self._connecting is not None:
                self._teardown()  # a half-open connection must not outlive its caller
            raise
        except Exception as exc:  # a codec bug must end the recognition, not leave the caller waiting
            self._codec_failed(exc)
            return
        self._after()
        if self._codec is not None and self._codec.state is SessionState.STARTING:
            self._start_guard = self._loop.call_later(self._guard(request), self._check_started, request.id)

    def audio(self, chunk: bytes) -> None:
        """Audio of the current request, in its format; held while the vendor is not listening yet."""
        if self._request is None:
            return
        pending = self._pending
        codec = self._codec
        if codec is not None and codec.state is SessionState.LISTENING:
            if not pending and len(chunk) == self._chunk_bytes:
                self._pump(codec, chunk)  # a whole frame with nothing held: straight on, no copy
                return
            pending += chunk
            if len(pending) >= self._chunk_bytes:
                self._pump(codec)
            return
        pending += chunk
        if len(pending) > self._max_backlog:
            self._overflow(len(pending))

    def start_timers(self) -> None:
        """The prompt has ended; before the vendor has the request, the timers start as soon as it does."""
        codec = self._codec
        if self._request is None:
            return
        if codec is not None and codec.recognition == self._request.id:
            codec.start_timers(self._loop.time())
            self._after()
        else:
            self._timers_due = self._request.id

    def end(self, recognition: int) -> None:
        """The caller's audio for ``recognition`` is over; its last results and Final follow."""
        codec = self._codec
        if self._request is None or self._request.id != recognition:
            return
        if codec is None or codec.state in (SessionState.READY, SessionState.STARTING):
            self._ending = recognition  # the held audio goes out first, when the vendor listens
            return
        if codec.state is SessionState.LISTENING:
            self._pump(codec, everything=True)
        self._request = None
        self._pending.clear()
        self._call(lambda now: codec.end(now))

    def cancel(self, recognition: int) -> None:
        """The step moved on: the recognition's Final(CANCELLED) comes out now."""
        if self._request is not None and self._request.id == recognition:
            self._request = None  # before the codec hears of it: no more of its audio, whatever it says
            self._pending.clear()
        codec = self._codec
        if codec is not None and codec.recognition == recognition:
            self._call(lambda now: codec.cancel(now))
        self._end_request(recognition, ResultStatus.CANCELLED)

    async def close(self) -> None:
        """End the session politely (the vendor's goodbye, bounded by close_timeout), then the socket."""
        if self._closed:
            return
        self._closed = True
        if self._request is not None:
            self.cancel(self._request.id)
        codec, conn = self._codec, self._conn
        try:
            if codec is not None and conn is not None and codec.state is not SessionState.CLOSED:
                self._call(lambda now: codec.close(now))
                async with asyncio.timeout(self._close_timeout):
                    while self._codec is codec and _state(codec) is not SessionState.CLOSED:
                        self._changed.clear()
                        await self._changed.wait()
                    while self._outbox and self._writer is not None and not self._writer.done():
                        await asyncio.sleep(0.01)
                    if self._conn is conn:  # else the reader has closed it after the goodbye
                        await conn.close()
        except (TimeoutError, ConnectionLost, OSError, WebSocketException):
            self._log.info("asr.close_unclean")
        finally:
            self._teardown()
            for task in self._starting:
                task.cancel()
            for recognition in sorted(self._open):
                self._end_request(recognition, ResultStatus.CANCELLED)

    # ---- internals

    async def _ready_for(self, request: RecognitionRequest) -> None:
        """A codec that can take ``request``: the current session's, or a new connection's."""
        codec = self._codec
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._reply_timeout):
                while codec is not None and codec.state not in (SessionState.READY, SessionState.CLOSED):
                    self._changed.clear()
                    await self._changed.wait()
                    codec = self._codec
        if codec is not None and codec.state is SessionState.READY:
            return
        if self._closed:
            raise RecognizerError("the call's recognizer stream is closed")
        for earlier in sorted(self._open - {request.id}):
            error = VendorError("", f"{self.vendor} did not finish the recognition")
            self._end_request(earlier, ResultStatus.ERROR, error)
        self._teardown()
        codec = self._codec_factory(request)
        self._connecting = connecting = asyncio.ensure_future(self._connector())
        await asyncio.wait({connecting})
        # Failed meanwhile (backlog, close): _teardown cancelled it, or let go of it as it finished.
        if connecting.cancelled() or self._connecting is not connecting:
            if not connecting.cancelled() and connecting.exception() is None:
                connecting.result().abort()
            return  # the Final is out already
        conn = connecting.result()  # raises the connect error
        self._connecting = None
        if self._closed:
            conn.abort()
            return
        self._codec, self._conn = codec, conn
        self._log.debug("asr.connected")
        self._reader = asyncio.create_task(self._read(codec, conn))
        self._writer = asyncio.create_task(self._write(conn))

        def open_session(now: float) -> list[AsrEvent]:
            codec.open(now)
            return []

        self._call(open_session)
        async with asyncio.timeout(self._guard(request)):
            while self._codec is codec and _state(codec) is SessionState.OPENING:
                self._changed.clear()
                await self._changed.wait()
        if self._codec is not codec or codec.state is not SessionState.READY:
            raise RecognizerError(f"{self.vendor} did not open a session", Failure.VENDOR)

    def _call(self, step: Callable[[float], list[AsrEvent]]) -> None:
        try:
            events = step(self._loop.time())
        except Exception as exc:
            self._codec_failed(exc)
            return
        self._dispatch(events)
        self._after()

    def _after(self) -> None:
        """After any codec call: send what it queued, honour its deadline, let waiters look again."""
        codec = self._codec
        if codec is None or not self._queue(codec.data_to_send()):
            return
        deadline = codec.deadline()
        if self._deadline is not None and (deadline is None or deadline != self._deadline.when()):
            self._deadline.cancel()
            self._deadline = None
        if deadline is not None and self._deadline is None:
            self._deadline = self._loop.call_at(deadline, self._on_deadline)
        if codec.state is SessionState.LISTENING:
            if self._ending is not None and self._request is not None and self._ending == self._request.id:
                self._ending = None
                self.end(self._request.id)
                return
            if len(self._pending) >= self._chunk_bytes:
                self._pump(codec)
        self._changed.set()

    def _pump(self, codec: RecognizerCodec, whole: bytes | None = None, *, everything: bool = False) -> None:
        """Held audio to the codec in its chunks (`everything`: the short rest too), or one `whole` chunk."""
        pending, size = self._pending, self._chunk_bytes
        now = self._loop.time()
        replay = self._replay if codec.retries else None  # no retry to replay it to
        try:
            if whole is not None:
                codec.audio(whole, now)
                if replay is not None:
                    replay += whole
            while len(pending) >= size or (everything and pending):
                chunk = bytes(pending[:size])
                codec.audio(chunk, now)
                del pending[:size]
                if replay is not None:
                    replay += chunk
            if replay is not None and len(replay) > self._max_backlog:
                self._replay = None  # a retry could not catch up with real time: give up on it
        except Exception as exc:
            self._codec_failed(exc)
            return
        self._queue(codec.data_to_send())

    def _queue(self, frames: list[Frame]) -> bool:
        """Frames out: written at once while the writer has nothing waiting (no task switch, no timer), else
        to the writer, woken once per batch; False on backlog overflow or a lost connection."""
        if not frames:
            return True
        conn = self._conn
        if not self._outbox and conn is not None:
            sent = 0
            try:
                for frame in frames:
                    if not conn.send_now(frame):
                        break
                    sent += 1
                    if isinstance(frame, bytes):
                        self.bytes_sent += len(frame)
            except ConnectionLost as exc:
                self._fail(
                    exc.error or VendorError("", f"{self.vendor} closed the connection", kind=Failure.CLOSED)
                )
                return False
            if sent == len(frames):
                return True
            frames = frames[sent:]  # backed up: the writer sends the rest once the socket drains
        for frame in frames:
            self._outbox_bytes += len(frame)
        self._outbox.extend(frames)
        self._wake.set()
        if self._outbox_bytes > self._max_backlog:
            self._overflow(self._outbox_bytes)
            return False
        return True

    def _guard(self, request: RecognitionRequest) -> float:
        return min(self._reply_timeout, max(self.MIN_REPLY_GUARD, request.timers.no_input / 2))

    def _codec_failed(self, exc: Exception) -> None:
        self._log.exception("asr.codec_failed")
        self._fail(
            VendorError("", f"internal error in the {self.vendor} codec: {exc!r}", kind=Failure.INTERNAL)
        )

    def _overflow(self, backlog: int) -> None:
        seconds = backlog / (self._request.audio_format.bytes_per_second if self._request else 16000)
        message = f"{self.vendor} is not keeping up: {seconds:.1f} s of audio unsent"
        self._fail(VendorError("", message, kind=Failure.TIMEOUT))

    def _on_deadline(self) -> None:
        self._deadline = None
        codec = self._codec
        if codec is not None:
            self._call(lambda now: codec.timeout(now))

    def _check_started(self, recognition: int) -> None:
        self._start_guard = None
        codec = self._codec
        if codec is not None and codec.recognition == recognition and codec.state is SessionState.STARTING:
            waited = self._guard(self._request) if self._request is not None else self._reply_timeout
            message = f"{self.vendor} did not start listening within {waited:g} s"
            self._fail(VendorError("", message, kind=Failure.TIMEOUT))

    def _retry(self, final: Final) -> bool:
        """Try the current request once more for a retryable vendor error, with its audio replayed."""
        request, error = self._request, final.error
        if (
            error is None
            or not error.retryable
            or request is None
            or request.id != final.recognition
            or request.id in self._retried
            or self._replay is None
            or self._closed
        ):
            return False
        self._retried.add(request.id)
        self._pending[:0] = self._replay
        self._replay = bytearray()
        self._log.info("asr.retry", reason=str(error), replayed=len(self._pending))

        async def again() -> None:
            await asyncio.sleep(self.RETRY_DELAY)
            await self._start(request, retry=True)

        self._spawn(again())
        return True

    def _spawn(self, start: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that starts a request, kept so close() can cancel it."""
        task = asyncio.ensure_future(start)
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return task

    def _dispatch(self, events: list[AsrEvent]) -> None:
        for event in events:
            if isinstance(event, Final):
                if event.status is ResultStatus.ERROR and self._retry(event):
                    continue  # the caller's turn goes on, on a fresh attempt
                if not self._forget(event.recognition):
                    continue  # cancelled already: its Final went out then
                if event.error is not None:
                    self._log.warning(
                        "asr.recognition_failed", status=event.status.value, error=str(event.error)
                    )
            elif isinstance(event, SessionClosed):
                if event.error is not None:
                    self._log.warning("asr.session_closed", error=str(event.error))
                continue  # the driver's own business: the next request opens a new connection
            self._emit(event)

    def _emit(self, event: AsrEvent) -> None:
        """An event to the call; a Final is also the endpoint's verdict for its breaker."""
        breaker = self.breaker
        if breaker is not None and isinstance(event, Final):
            now = self._loop.time()
            if event.status is ResultStatus.CANCELLED:
                breaker.release(now)
            elif event.status is not ResultStatus.ERROR:
                breaker.success(now)
            elif event.error is None or event.error.kind is not Failure.CIRCUIT_OPEN:
                breaker.failure(now)
        self._on_event(event)

    async def _read(self, codec: RecognizerCodec, conn: Connection) -> None:
        # No timeout on the wait for frames: silence is legitimate; keepalive pings close a dead connection.
        try:
            while codec.state is not SessionState.CLOSED:
                frame = await conn.recv()
                self._call(lambda now, frame=frame: codec.receive(frame, now))  # type: ignore[misc]
        except ConnectionLost as exc:
            if self._codec is codec:
                self._dispatch(codec.connection_lost(exc.error))
                self._changed.set()
        except Exception as exc:
            self._log.exception("asr.reader_failed")
            message = f"internal error reading from {self.vendor}: {exc!r}"
            self._fail(VendorError("", message, kind=Failure.INTERNAL))
            return
        if codec.state is SessionState.CLOSED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._close_timeout):
                    await conn.close()  # the WebSocket closing handshake after the vendor's goodbye
        if self._codec is codec:
            self._teardown()

    async def _write(self, conn: Connection) -> None:
        outbox = self._outbox
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while outbox:
                    frame = outbox.popleft()
                    self._outbox_bytes -= len(frame)
                    # A vendor that stops reading fills the TCP window and send() waits: bound it.
                    async with asyncio.timeout(self._reply_timeout):
                        await conn.send(frame)
                    if isinstance(frame, bytes):
                        self.bytes_sent += len(frame)
        except TimeoutError:
            message = f"{self.vendor} stopped reading for {self._reply_timeout} s"
            self._fail(VendorError("", message, kind=Failure.TIMEOUT))
        except ConnectionLost as exc:
            self._fail(
                exc.error or VendorError("", f"{self.vendor} closed the connection", kind=Failure.CLOSED)
            )

    def _fail(self, error: VendorError) -> None:
        """The session is unusable: end every open request with Final(ERROR) and drop the connection."""
        self._log.warning("asr.failed", reason=str(error))
        codec = self._codec
        if codec is not None:
            self._dispatch(codec.connection_lost(error))
        for recognition in sorted(self._open):
            self._end_request(recognition, ResultStatus.ERROR, error)
        self._teardown()

    def _forget(self, recognition: int) -> bool:
        """Take no more audio for ``recognition`` and close its books; False if its Final is out already."""
        if self._request is not None and self._request.id == recognition:
            self._request = None
            self._pending.clear()
        if recognition not in self._open:
            return False
        self._open.discard(recognition)
        return True

    def _end_request(
        self, recognition: int, status: ResultStatus, error: VendorError | str | None = None
    ) -> None:
        """The driver's own Final for ``recognition`` (refused, failed, cancelled), unless one is out."""
        if self._forget(recognition):
            if isinstance(error, str):
                error = VendorError("", error, kind=Failure.INTERNAL)
            self._emit(Final(recognition, status, error=error))

    def _teardown(self) -> None:
        """Drop the connection and everything running for it (also mid-connect): nothing leaks."""
        current = asyncio.current_task()
        for task in (self._connecting, self._reader, self._writer):
            if task is not None and task is not current and not task.done():
                task.cancel()
        for timer in (self._deadline, self._start_guard):
            if timer is not None:
                timer.cancel()
        self._connecting = self._reader = self._writer = None
        self._deadline = self._start_guard = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.abort()
        self._conn = None
        self._codec = None
        self._outbox.clear()
        self._outbox_bytes = 0
        self._changed.set()


def _kind_of(exc: Exception) -> Failure:
    """The failure kind of an exception that ended a request's start."""
    if isinstance(exc, RecognizerError):
        return exc.kind
    if isinstance(exc, ConnectionLost):
        return Failure.CLOSED
    return Failure.TIMEOUT if isinstance(exc, TimeoutError) else Failure.UNREACHABLE


def _state(codec: RecognizerCodec) -> SessionState:
    """The codec's state now (a call, so a type checker does not carry a narrowing across an await)."""
    return codec.state
