"""The stream half of the SIP transport: TCP and TLS connections, their limits, one sweep timer.

Connections are admitted and expired by the sans-I/O `ConnectionTable` (sip/connections.py): the allow-list
and the caps at accept, before a byte is read; one periodic sweep closes the slow and the idle ones, never
a timer per connection or per byte. Framed messages go to the UA core; what it answers comes back through
`SipTransport` to `send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Callable

import structlog

from ivr.sip.connections import ConnectionTable, StreamLimits
from ivr.sip.events import Outgoing, Peer, SipEvent
from ivr.sip.message import SipParseError, StreamFramer
from ivr.sip.tls import TlsListener
from ivr.sip.useragent import UserAgent

__all__ = ["StreamConnections"]

log = structlog.get_logger()
# Small reads and a small StreamReader limit (it pauses reading at twice this): with the framer's own caps a
# connection holds tens of KiB at most, not megabytes.
READ_SIZE = 16 * 1024
CONNECT_TIMEOUT = 5.0
MAX_WRITE_BUFFER = 64 * 1024  # a peer that never reads our responses is dropped, not buffered for
_TLS_HISTORY = 4096  # closed TLS connection ids remembered, so a dialog of one never reconnects in clear


class StreamConnections:
    """The TCP and TLS connections of one SipTransport: accept, frame, expire, send."""

    def __init__(
        self,
        ua: UserAgent,
        deliver: Callable[[list[SipEvent]], None],
        *,
        accept: Callable[[str], bool],
        limits: StreamLimits,
        tls: TlsListener | None,
    ) -> None:
        self.ua = ua
        self.limits = limits
        self.tls_port = 0
        self._deliver = deliver  # flushes the UA's output and hands its events on (SipTransport)
        self._accept = accept
        self._tls = tls
        self._table = ConnectionTable(limits)
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, asyncio.StreamWriter] = {}
        self._conn_addr: dict[int, tuple[str, int]] = {}
        self._tls_ids: dict[int, None] = {}  # insertion-ordered, trimmed to _TLS_HISTORY
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)
        self._sweeper: asyncio.TimerHandle | None = None
        self._tls_accepter: asyncio.Task[None] | None = None
        self._closing = False

    def __len__(self) -> int:
        return len(self._table)

    async def listen_tcp(self, host: str, port: int) -> None:
        """Listen for TCP on `port`; OSError if it is taken."""
        self._servers.append(await asyncio.start_server(self._on_tcp_client, host, port, limit=READ_SIZE))

    def listen_tls(self, host: str) -> None:
        """Listen for TLS on the listener's port (sets `tls_port`); a no-op without a listener."""
        if self._tls is None:
            return
        # Accepted by hand and upgraded after the allow-list and the caps (RFC 3261 §26.2: TLS is hop by
        # hop), so a refused source never costs us a handshake.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, self._tls.port), family=family)
        listener.setblocking(False)
        self.tls_port = int(listener.getsockname()[1])
        self._tls_accepter = asyncio.get_running_loop().create_task(self._accept_tls(listener))

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self._servers:
            server.close()
        if self._tls_accepter is not None:
            self._tls_accepter.cancel()
            await asyncio.gather(self._tls_accepter, return_exceptions=True)
        for writer in list(self._conns.values()):
            writer.close()  # after what is queued (the BYEs of a shutdown) has gone
        if self._tasks:
            # The read loops see EOF and end; only stragglers are cut off (Python 3.11's start_server logs
            # an error for a client task that ends cancelled).
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for writer in list(self._conns.values()):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def bind_call(self, call_id: str, conn_id: int) -> None:
        """A call's INVITE came on this connection: not idle while the call lasts."""
        self._table.bind_call(call_id, conn_id)

    def release_call(self, call_id: str) -> None:
        self._table.release_call(call_id, time.monotonic())

    def send(self, out: Outgoing) -> None:
        """Over the message's connection, another one to the same peer, or a new one (never for TLS)."""
        peer = out.peer
        conn_id = peer.conn_id
        writer = self._conns.get(conn_id) if conn_id is not None else None
        tls = peer.transport == "tls"
        if writer is None or writer.is_closing():
            conn_id, writer = self._conn_to(peer.host, peer.port, tls)
        # The connection is gone: its source port was ephemeral, so connect where the peer listens (§18.2.2).
        host, port = peer.reconnect or (peer.host, peer.port)
        if (writer is None or writer.is_closing()) and peer.reconnect is not None:
            conn_id, writer = self._conn_to(host, port, tls)
        if writer is not None and conn_id is not None and not writer.is_closing():
            if writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                log.warning("sip connection not reading, closed", peer=f"{host}:{port}")
                writer.transport.abort()
                return
            writer.write(out.data)
            self._table.sent(conn_id, time.monotonic())
            return
        if peer.transport == "tls" or (peer.conn_id is not None and peer.conn_id in self._tls_ids):
            # We do not open TLS connections (no client certificate policy): never fall back to clear text.
            log.warning("sip tls connection gone, message dropped", peer=f"{host}:{port}")
            return
        if not self._closing:
            self._track(asyncio.get_running_loop().create_task(self._connect_and_send(host, port, out.data)))

    async def _on_tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        host, port = str(peername[0]), int(peername[1])
        if not self._admit(host, tls=False):
            writer.transport.abort()  # closed before a byte is read
            return
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        conn_id = self._open(host, port)
        self._conns[conn_id] = writer
        await self._read_loop(conn_id, reader, writer)

    async def _accept_tls(self, listener: socket.socket) -> None:
        """Accepts TLS connections by hand: the allow-list and the caps come before the handshake, and no
        byte is read before the TLS layer owns the socket (a protocol of our own would see the ClientHello
        first on uvloop, which starts reading before it can be paused)."""
        loop = asyncio.get_running_loop()
        with listener:
            while True:
                try:
                    sock, addr = await loop.sock_accept(listener)
                except OSError as exc:  # EMFILE and the like: back off as asyncio's own accept loop does
                    log.warning("sip tls accept failed", error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                host, port = str(addr[0]), int(addr[1])
                if not self._admit(host, tls=True):
                    sock.close()  # no handshake for a refused source
                    continue
                self._track(loop.create_task(self._tls_handshake(sock, host, port)))

    async def _tls_handshake(self, sock: socket.socket, host: str, port: int) -> None:
        assert self._tls is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        conn_id = self._open(host, port)  # a handshake in progress counts against the caps
        self._remember_tls(conn_id)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=self._tls.context,
                ssl_handshake_timeout=self.limits.header_timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.info("sip tls handshake failed", peer=f"{host}:{port}", error=str(exc) or type(exc).__name__)
            self._forget(conn_id)
            sock.close()
            return
        if conn_id not in self._conn_addr:  # swept meanwhile (closing)
            transport.abort()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._conns[conn_id] = writer
        await self._read_loop(conn_id, reader, writer)

    def _admit(self, host: str, *, tls: bool) -> bool:
        refusal = self._table.admit(host, self._accept(host))
        if refusal is None:
            return True
        # Logged once per source per interval, not per attempt: a flood of refusals is not a flood of logs.
        if self._table.should_log_refusal(host, time.monotonic()):
            log.warning("sip connection refused", source=host, reason=refusal.value, tls=tls)
        return False

    def _open(self, host: str, port: int) -> int:
        conn_id = next(self._conn_ids)
        self._conn_addr[conn_id] = (host, port)
        self._table.opened(conn_id, host, time.monotonic())
        if self._sweeper is None and not self._closing:
            self._sweeper = asyncio.get_running_loop().call_later(self.limits.sweep_interval, self._sweep)
        return conn_id

    def _forget(self, conn_id: int) -> None:
        self._conns.pop(conn_id, None)
        self._conn_addr.pop(conn_id, None)
        self._table.closed(conn_id)

    def _remember_tls(self, conn_id: int) -> None:
        self._tls_ids[conn_id] = None
        if len(self._tls_ids) > _TLS_HISTORY:
            del self._tls_ids[next(iter(self._tls_ids))]

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(
        self, conn_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = self._conn_addr[conn_id]
        peer = Peer("tls" if conn_id in self._tls_ids else "tcp", host, port, conn_id)
        framer = StreamFramer(self.limits.max_header_bytes, self.limits.max_body_bytes)
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    # The framing cannot be recovered: answer 400/413/513 if we can, then drop the connection.
                    self.ua.reject_malformed(exc, peer)
                    self._deliver([])
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT)
                    break
                now = time.monotonic()
                self._table.received(
                    conn_id,
                    now,
                    messages=len(messages),
                    pending=framer.pending,
                    awaiting_body=framer.awaiting_body,
                )
                for message in messages:
                    self._deliver(self.ua.receive(message, peer, now))
        except (ConnectionError, OSError) as exc:
            log.info("sip tcp connection error", peer=f"{host}:{port}", error=str(exc))
        finally:
            self._forget(conn_id)
            writer.close()

    def _sweep(self) -> None:
        """The one periodic timer of the stream connections: close those past a deadline."""
        self._sweeper = None
        for conn_id, reason in self._table.sweep(time.monotonic()):
            host, port = self._conn_addr.get(conn_id, ("?", 0))
            log.info("sip connection closed", peer=f"{host}:{port}", reason=reason.value)
            writer = self._conns.get(conn_id)
            self._forget(conn_id)
            if writer is not None:
                writer.transport.abort()  # a slow-loris gets no graceful close to wait on
        if len(self._table) and not self._closing:
            self._sweeper = asyncio.get_running_loop().call_later(self.limits.sweep_interval, self._sweep)

    def _conn_to(self, host: str, port: int, tls: bool) -> tuple[int | None, asyncio.StreamWriter | None]:
        # Never a clear-text connection for a message of a TLS peer, nor the other way round.
        conn_id = next(
            (
                c
                for c, addr in self._conn_addr.items()
                if addr == (host, port) and (c in self._tls_ids) == tls
            ),
            None,
        )
        return conn_id, self._conns.get(conn_id) if conn_id is not None else None

    async def _connect_and_send(self, host: str, port: int, data: bytes) -> None:
        """Best effort: open a new connection to the peer's listening address and send."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_SIZE), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            log.warning("sip tcp connect failed", peer=f"{host}:{port}", error=str(exc))
            return
        conn_id = self._open(host, port)
        self._conns[conn_id] = writer
        writer.write(data)
        self._table.sent(conn_id, time.monotonic())
        await self._read_loop(conn_id, reader, writer)
