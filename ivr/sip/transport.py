"""asyncio UDP + TCP adapter around the sans-I/O UserAgent: sockets, one timer handle, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence

import structlog

from ivr.sip.events import Outgoing, Peer, SipEvent
from ivr.sip.message import SipParseError, StreamFramer
from ivr.sip.useragent import UserAgent

__all__ = ["SipTransport"]

log = structlog.get_logger()
READ_SIZE = 65536
CONNECT_TIMEOUT = 5.0


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._owner._on_datagram(data, str(addr[0]), int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.warning("sip udp error", error=str(exc))


class SipTransport:
    def __init__(self, ua: UserAgent, on_event: Callable[[SipEvent], None]) -> None:
        self.ua = ua
        self.on_event = on_event
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[int, asyncio.StreamWriter] = {}
        self._conn_addr: dict[int, tuple[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                self._server = await asyncio.start_server(self._on_tcp_client, host, bound)
            except OSError:
                udp.close()
                if port != 0:
                    raise
                continue  # the UDP port picked by the OS is taken on TCP: try another one
            self._udp = udp
            self.port = bound
            return
        raise OSError("could not bind UDP and TCP on the same port")

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._server is not None:
            self._server.close()
        for writer in list(self._conns.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._udp is not None:
            self._udp.close()

    # ---- app actions ---------------------------------------------------------------------------------------

    def ring(self, call_id: str) -> None:
        self.ua.ring(call_id, time.monotonic())
        self._after()

    def answer(self, call_id: str, sdp: bytes) -> None:
        self.ua.answer(call_id, sdp, time.monotonic())
        self._after()

    def reject(
        self,
        call_id: str,
        status: int,
        reason: str | None = None,
        warning: str | None = None,
        warn_code: int = 399,
    ) -> None:
        self.ua.reject(call_id, status, time.monotonic(), reason, warning, warn_code)
        self._after()

    def hangup(self, call_id: str) -> None:
        self.ua.hangup(call_id, time.monotonic())
        self._after()

    def refer(self, call_id: str, target: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.ua.refer(call_id, target, time.monotonic(), headers)
        self._after()

    # ---- input ---------------------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, host: str, port: int) -> None:
        if data.strip(b"\r\n") == b"":
            return  # CRLF keep-alive (RFC 5626 §3.5.1)
        events = self.ua.receive(data, Peer("udp", host, port), time.monotonic())
        self._after(events)

    async def _on_tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        conn_id = self._register(writer, str(peername[0]), int(peername[1]))
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        await self._read_loop(conn_id, reader, writer)

    def _register(self, writer: asyncio.StreamWriter, host: str, port: int) -> int:
        conn_id = next(self._conn_ids)
        self._conns[conn_id] = writer
        self._conn_addr[conn_id] = (host, port)
        return conn_id

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(
        self, conn_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = self._conn_addr[conn_id]
        peer = Peer("tcp", host, port, conn_id)
        framer = StreamFramer()
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    # The framing cannot be recovered: answer 400 if we can, then drop the connection.
                    self.ua.reject_malformed(exc, peer)
                    self._after()
                    with contextlib.suppress(Exception):
                        await writer.drain()
                    break
                for message in messages:
                    self._after(self.ua.receive(message, peer, time.monotonic()))
        except (ConnectionError, OSError) as exc:
            log.info("sip tcp connection error", peer=f"{host}:{port}", error=str(exc))
        finally:
            self._conns.pop(conn_id, None)
            self._conn_addr.pop(conn_id, None)
            writer.close()

    # ---- output and timers ---------------------------------------------------------------------------------

    def _after(self, events: list[SipEvent] | None = None) -> None:
        """Flush what the UA queued, log its notes, deliver events, re-arm the single timer."""
        all_events = (events or []) + self.ua.take_events()
        for note in self.ua.take_diagnostics():
            log.warning("sip input dropped or rejected", detail=note)
        for out in self.ua.take_outgoing():
            self._send(out)
        for event in all_events:
            try:
                self.on_event(event)
            except Exception:
                log.exception("sip event handler failed", sip_event=type(event).__name__)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.ua.next_deadline()
        if deadline is None or self._closing:
            return
        loop = asyncio.get_running_loop()
        # The UA's clock is time.monotonic(); the loop's may differ (uvloop), so convert to a delay.
        self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._after(self.ua.tick(time.monotonic()))

    def _send(self, out: Outgoing) -> None:
        peer = out.peer
        if peer.transport == "udp":
            if self._udp is not None:
                try:
                    self._udp.sendto(out.data, (peer.host, peer.port))
                except OSError as exc:
                    log.warning("sip udp send failed", peer=f"{peer.host}:{peer.port}", error=str(exc))
            return
        writer = self._conns.get(peer.conn_id) if peer.conn_id is not None else None
        if writer is None or writer.is_closing():
            writer = self._conn_to(peer.host, peer.port)
        # The connection is gone: its source port was ephemeral, so connect where the peer listens (§18.2.2).
        host, port = peer.reconnect or (peer.host, peer.port)
        if (writer is None or writer.is_closing()) and peer.reconnect is not None:
            writer = self._conn_to(host, port)
        if writer is not None and not writer.is_closing():
            writer.write(out.data)
            return
        if not self._closing:
            self._track(asyncio.get_running_loop().create_task(self._connect_and_send(host, port, out.data)))

    def _conn_to(self, host: str, port: int) -> asyncio.StreamWriter | None:
        return next((self._conns[c] for c, addr in self._conn_addr.items() if addr == (host, port)), None)

    async def _connect_and_send(self, host: str, port: int, data: bytes) -> None:
        """Best effort: open a new connection to the peer's listening address and send."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.warning("sip tcp connect failed", peer=f"{host}:{port}", error=str(exc))
            return
        conn_id = self._register(writer, host, port)
        writer.write(data)
        await self._read_loop(conn_id, reader, writer)
