"""The asyncio RTP endpoint of one call: receive, reorder, decode and dispatch caller RTP; send paced prompts.

Symmetric RTP (RFC 4961): packets go to the address from the SDP until the first valid packet arrives from
the caller, then to the source address of the caller's packets, which is what gets through a NAT. After
latching, a packet from another address is accepted (and re-latched to) only if it carries the latched SSRC
(a NAT rebinding); a new SSRC from the latched address is accepted as the same caller restarting its stream.

A send that fails (an SDP address the socket cannot use, ICMP errors, a full buffer) is counted, never raised:
the prompt still "plays" on schedule, so the dialplan moves on instead of stalling on a dead media path.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

from ivr.media import g711
from ivr.media.dtmf import DtmfReceiver
from ivr.media.jitter import JitterBuffer
from ivr.media.prompt import SAMPLE_RATE, frames
from ivr.media.rtp import RtpError, RtpPacket, RtpSender, RtpStats, parse_rtp

__all__ = ["PortAllocator", "PortsExhausted", "RtpSession"]

_COMFORT_NOISE = 13  # RFC 3389; accepted for latching and stats, otherwise ignored
_MAX_FILL_FRAMES = 50  # a longer sequence gap is a discontinuity, not loss to paper over with silence
_MAX_LATE_FRAMES = 3  # playback this far behind schedule (a stalled loop) re-bases instead of bursting
_TIMER_SLACK = 0.001  # asyncio may run a timer up to its clock resolution early


class PortsExhausted(RuntimeError):
    """No free RTP port in the configured range."""


class PortAllocator:
    """Even RTP ports in [low, high] (RFC 3550 §11 leaves the odd one above for RTCP), handed out round-robin
    so a just-released port is not reused at once (stray packets of the previous call)."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        if not 0 < first <= high <= 65535:
            raise ValueError(f"no even port in {low}-{high}")
        self._ports = range(first, high + 1, 2)
        self._cursor = 0
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def acquire(self) -> int:
        count = len(self._ports)
        for _ in range(count):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % count
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise PortsExhausted(f"all {count} RTP ports in use")

    def release(self, port: int) -> None:
        self._in_use.discard(port)


class _Playback:
    __slots__ = ("stopped", "waiter")

    def __init__(self) -> None:
        self.stopped = False
        self.waiter: asyncio.Future[None] | None = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._session._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the caller's RTP port is not open yet: RTP carries on regardless.
        self._session._send_failed(f"{type(exc).__name__}: {exc}")


class RtpSession:
    def __init__(
        self,
        *,
        local_host: str,
        port: int,
        remote_host: str,
        remote_port: int,
        payload_type: int,
        dtmf_payload_type: int | None,
        on_audio: Callable[[bytes], None],
        on_dtmf: Callable[[str], None],
        on_timeout: Callable[[], None],
        inactivity_timeout: float = 30.0,
        ptime_ms: int = 20,
    ) -> None:
        g711.silence_byte(payload_type)  # ValueError for a codec we cannot decode
        self.local_host = local_host
        self.local_port = port
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.stats = RtpStats(SAMPLE_RATE)
        self.invalid = 0  # datagrams that are not RTP
        self.ignored = 0  # RTP from a foreign source, or of a payload type we do not use
        self.send_errors = 0
        # True: on_audio gets the G.711 payload as received (for recognizers that take it), not PCM16.
        self.passthrough = False
        self.last_send_error: str | None = None  # the latest send failure, for the call to log once
        self._on_audio = on_audio
        self._on_dtmf = on_dtmf
        self._on_timeout = on_timeout
        self._inactivity_timeout = inactivity_timeout
        self._ptime = ptime_ms / 1000.0
        self._samples_per_frame = SAMPLE_RATE * ptime_ms // 1000
        self._sdp_remote: tuple[Any, ...] = (remote_host, remote_port)
        self._send_to: tuple[Any, ...] = self._sdp_remote
        # Why _send_to cannot be sent to: checked when it changes, not per packet.
        self._unusable_remote: str | None = None
        self._source: tuple[Any, ...] | None = None  # latched caller address
        self._source_ssrc: int | None = None
        self._accepted = {payload_type, _COMFORT_NOISE}
        if dtmf_payload_type is not None:
            self._accepted.add(dtmf_payload_type)
        self._sender = RtpSender(payload_type)
        self._jitter = JitterBuffer()
        self._dtmf = DtmfReceiver()
        self._audio_ssrc: int | None = None
        self._last_audio_seq: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._timed_out = False
        self._closed = False
        self._playback: _Playback | None = None
        self._clock: float | None = None  # loop time that the sender's next timestamp stands for

    @property
    def remote_address(self) -> tuple[Any, ...]:
        """Where outgoing RTP goes: the SDP address, or the latched source of the caller's packets."""
        return self._send_to

    @property
    def playing(self) -> bool:
        return self._playback is not None

    async def start(self) -> None:
        """Bind the UDP socket; OSError if the port is busy."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.local_host, self.local_port)
        )
        self._loop = loop
        self._transport = transport
        self.local_port = transport.get_extra_info("sockname")[1]
        self._unusable_remote = self._check_remote(self._send_to)
        self._last_rx = loop.time()
        self._timer = loop.call_at(self._last_rx + self._inactivity_timeout, self._check_inactivity)

    def update_remote(self, host: str, port: int) -> None:
        """New SDP address (re-INVITE): send there, and latch again to the caller's next packet."""
        self._sdp_remote = self._send_to = (host, port)
        self._source = None
        self._source_ssrc = None
        if self._transport is not None:
            self._unusable_remote = self._check_remote(self._send_to)

    async def play(self, pcm: bytes) -> bool:
        """Send PCM16 8 kHz mono as paced G.711 frames. True if it ran to the end, False if stopped.

        A play() while another is running replaces it (the earlier one returns False).
        """
        if self._closed or self._loop is None or self._transport is None:
            return False
        self.stop_playback()
        token = _Playback()
        self._playback = token
        loop = self._loop
        ptime = self._ptime
        spf = self._samples_per_frame
        payload = frames(pcm, self.payload_type, spf)
        now = loop.time()
        start = now
        if self._clock is not None:
            if self._clock > now:
                start = self._clock  # the replaced prompt's last frame is still playing out
            else:
                # RFC 3550 §5.1: the timestamp keeps counting through silence, so the receiver sees it pass.
                self._sender.skip(round((now - self._clock) * SAMPLE_RATE))
        try:
            for index, frame in enumerate(payload):
                deadline = start + index * ptime  # absolute deadlines: no drift
                lateness = loop.time() - deadline
                if lateness < 0:
                    await self._wait(token, deadline)
                elif lateness > _MAX_LATE_FRAMES * ptime:
                    start += lateness
                    deadline += lateness
                    self._sender.skip(round(lateness * SAMPLE_RATE))
                if token.stopped or self._closed:
                    return False
                self._send(self._sender.packet(frame, spf, marker=index == 0))
                self._clock = deadline + ptime
            await self._wait(token, start + len(payload) * ptime)  # let the last frame play out
            return True
        finally:
            if self._playback is token:
                self._playback = None

    def stop_playback(self) -> None:
        """Barge-in: a running play() returns False at once, sending nothing more."""
        token = self._playback
        if token is not None:
            token.stopped = True
            if token.waiter is not None:
                _wake(token.waiter)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop_playback()
        for timer in (self._timer, self._flush_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._flush_timer = None
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)  # let the transport finish closing the socket

    async def _wait(self, token: _Playback, deadline: float) -> None:
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        token.waiter = waiter
        handle = self._loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            token.waiter = None

    def _check_remote(self, addr: tuple[Any, ...]) -> str | None:
        """Why the socket cannot send to this SDP address, or None.

        Only an IP literal of the socket's own family is usable: uvloop raises ValueError for anything else,
        and the stock loop resolves a host name inside sendto, a blocking DNS lookup on the event loop.
        """
        assert self._transport is not None
        sockname = self._transport.get_extra_info("sockname")
        family = 6 if len(sockname) == 4 else 4  # an IPv6 sockname is a 4-tuple
        host = addr[0]
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return f"remote address {host!r} is not an IP address (no DNS lookups on the media path)"
        if version != family:
            return f"remote address {host!r} is IPv{version}; this RTP socket is IPv{family}"
        return None

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        if self._unusable_remote is not None:
            self._send_failed(self._unusable_remote)
            return
        try:
            self._transport.sendto(data, self._send_to)
        except (OSError, ValueError, TypeError) as exc:  # ValueError/TypeError: uvloop, for a bad address
            self._send_failed(f"{type(exc).__name__}: {exc}")

    def _send_failed(self, reason: str) -> None:
        self.send_errors += 1
        self.last_send_error = reason

    def _check_inactivity(self) -> None:
        assert self._loop is not None
        deadline = self._last_rx + self._inactivity_timeout
        if self._loop.time() + _TIMER_SLACK >= deadline:
            self._timer = None
            if not self._timed_out and not self._closed:
                self._timed_out = True
                self._on_timeout()
        else:
            self._timer = self._loop.call_at(deadline, self._check_inactivity)

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.invalid += 1
            return
        if packet.payload_type not in self._accepted:
            self.ignored += 1
            return
        if addr != self._source:
            if self._source is not None and packet.ssrc != self._source_ssrc:
                self.ignored += 1
                return
            self._source = self._send_to = addr
            self._unusable_remote = None  # the caller's own source address: the socket can always reach it
        self._source_ssrc = packet.ssrc
        assert self._loop is not None
        now = self._last_rx = self._loop.time()
        self.stats.update(packet, now)
        if packet.payload_type == self.payload_type:
            if packet.ssrc != self._audio_ssrc:
                for held in self._jitter.flush():
                    self._deliver(held)
                self._jitter.reset()
                self._audio_ssrc = packet.ssrc
                self._last_audio_seq = None
            for ready in self._jitter.push(packet):
                self._deliver(ready)
            if self._jitter.held and self._flush_timer is None:
                # Packets leave the buffer only when later ones arrive; if the caller goes quiet (silence
                # suppression, hold) right after a loss, release what is held instead of keeping it.
                self._flush_timer = self._loop.call_later(
                    2 * self._jitter.depth * self._ptime, self._flush_jitter
                )
        elif packet.payload_type == self.dtmf_payload_type:
            digit = self._dtmf.feed(packet)
            if digit is not None:
                self._on_dtmf(digit.digit)

    def _flush_jitter(self) -> None:
        self._flush_timer = None
        if not self._closed:
            for held in self._jitter.flush():
                self._deliver(held)

    def _deliver(self, packet: RtpPacket) -> None:
        previous = self._last_audio_seq
        self._last_audio_seq = packet.sequence
        if previous is not None:
            # Lost frames (or frames replaced by RFC 4733 events) become silence, so the recognizer's timeline
            # stays continuous.
            gap = (packet.sequence - previous - 1) & 0xFFFF
            if 0 < gap <= _MAX_FILL_FRAMES:
                if self.passthrough:
                    self._on_audio(g711.silence(self.payload_type, len(packet.payload) * gap))
                else:
                    self._on_audio(bytes(2 * len(packet.payload) * gap))
        if self.passthrough:
            self._on_audio(packet.payload)  # the caller's G.711 as received: no decode at all
        else:
            self._on_audio(g711.decode(packet.payload, self.payload_type))
