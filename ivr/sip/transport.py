"""asyncio UDP + TCP (+ optional TLS) adapter around the sans-I/O UserAgent: sockets, one timer handle.

UDP and the dispatch of the UA's output live here; TCP and TLS connections, their limits and their sweep
in transport_tcp.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import structlog

from ivr.sip.connections import StreamLimits
from ivr.sip.events import CallCancelled, CallEnded, IncomingCall, Outgoing, Peer, SipEvent
from ivr.sip.tls import TlsListener
from ivr.sip.transport_tcp import StreamConnections
from ivr.sip.useragent import UserAgent

__all__ = ["SipTransport"]

log = structlog.get_logger()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._owner._on_datagram(data, str(addr[0]), int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.warning("sip udp error", error=str(exc))


class SipTransport:
    """The bridge's SIP sockets: UDP and TCP on one port, TLS on its own; `accept` is the allow-list."""

    def __init__(
        self,
        ua: UserAgent,
        on_event: Callable[[SipEvent], None],
        *,
        accept: Callable[[str], bool] = lambda host: True,
        limits: StreamLimits | None = None,
        tls: TlsListener | None = None,
    ) -> None:
        self.ua = ua
        self.on_event = on_event
        self.port = 0
        self.limits = limits or StreamLimits()
        self._streams = StreamConnections(ua, self._after, accept=accept, limits=self.limits, tls=tls)
        self._udp: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # the UA's next deadline that _timer is armed for
        self._closing = False

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                await self._streams.listen_tcp(host, bound)
            except OSError:
                udp.close()
                if port != 0:
                    raise
                continue  # the UDP port picked by the OS is taken on TCP: try another one
            self._udp = udp
            self.port = bound
            break
        else:
            raise OSError("could not bind UDP and TCP on the same port")
        self._streams.listen_tls(host)
        self.ua.tls_port = self._streams.tls_port  # Contact and Via of calls that came over TLS

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._streams.close()
        if self._udp is not None:
            self._udp.close()

    @property
    def tls_port(self) -> int:
        """The TLS port (0 without TLS)."""
        return self._streams.tls_port

    @property
    def connections(self) -> int:
        """Open stream connections (TCP and TLS)."""
        return len(self._streams)

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
        self._streams.release_call(call_id)
        self._after()

    def redirect(self, call_id: str, contact: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.ua.redirect(call_id, contact, time.monotonic(), headers)
        self._streams.release_call(call_id)
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

    # ---- output and timers ---------------------------------------------------------------------------------

    def _after(self, events: list[SipEvent] | None = None) -> None:
        """Flush what the UA queued, log its notes, deliver events, re-arm the single timer."""
        all_events = (events or []) + self.ua.take_events()
        for note in self.ua.take_diagnostics():
            log.warning("sip input dropped or rejected", detail=note)
        for out in self.ua.take_outgoing():
            self._send(out)
        for event in all_events:
            if isinstance(event, IncomingCall) and event.peer.conn_id is not None:
                self._streams.bind_call(event.call_id, event.peer.conn_id)
            elif isinstance(event, CallEnded | CallCancelled):
                self._streams.release_call(event.call_id)
            try:
                self.on_event(event)
            except Exception:
                log.exception("sip event handler failed", sip_event=type(event).__name__)
        self._arm()

    def _arm(self) -> None:
        deadline = None if self._closing else self.ua.next_deadline()
        if deadline == self._deadline and self._timer is not None:
            return  # armed for it already: most messages leave the earliest deadline where it was
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # The UA's clock is time.monotonic(); the loop's may differ (uvloop), so convert to a delay.
        self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self._after(self.ua.tick(time.monotonic()))

    def _send(self, out: Outgoing) -> None:
        peer = out.peer
        if peer.transport != "udp":
            self._streams.send(out)
        elif self._udp is not None:
            try:
                self._udp.sendto(out.data, (peer.host, peer.port))
            except OSError as exc:
                log.warning("sip udp send failed", peer=f"{peer.host}:{peer.port}", error=str(exc))
