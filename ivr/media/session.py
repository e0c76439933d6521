"""The asyncio RTP endpoint of one call: receive, reorder, decode and dispatch caller RTP; send paced prompts.

Symmetric RTP (RFC 4961): packets go to the address from the SDP until the caller's source is latched, then to
that source, which is what gets through a NAT. Which source may latch is `latch.SourceLatch`'s strict policy
(the SDP host, or a NAT-ed source after probation); after latching, packets from any other address are dropped
unparsed. A new SSRC from the latched address is accepted as the same caller restarting its stream.

The caller's audio reaches `on_audio` as one real-time stream, in frames of `audio_frame_ms` (the recognizer's
frame size: audio is decoded and handed on once per frame, not per packet, by `assembler.FrameAssembler`).
`timeline.Timeline` fills losses, DTMF events, comfort noise and silence suppression with silence by time, so
the recognizer's endpointer always hears the caller stop. RFC 4733 and RFC 3389 packets share the audio's
sequence numbers, so they pass through the jitter buffer too (as placeholders): they are neither loss nor a
gap to wait for. The latched caller's next audio packet in sequence, nearly every packet, takes a fast path
that builds no packet object.

Between prompts the session keeps sending 20 ms frames of G.711 silence (`keepalive`): SBC media timers end
calls that send nothing. Silence can also be *sparse*: one packet at its start and one a second after
(`_SPARSE_REFRESH`), which keeps those timers and NAT bindings alive with a fiftieth of the packets. It is
when the offer negotiated RFC 3389 comfort noise (CN packets), and with `sparse_silence` otherwise (G.711
silence frames, each after the first with the marker bit of a talkspurt's start, RFC 3551 §4.1). Prompts and
silence share one timestamp clock, so the stream is continuous.
Every session's deadlines share one loop timer per event loop: a media tick per call every packet time (a
`wheel.Cadence`: the keepalive frame, the caller's silence, the inactivity timeout), and prompt frames in a
`wheel.TimerWheel`. Nothing is scheduled per packet, and no loop timer per call.

A send that fails (an SDP address the socket cannot use, ICMP errors, a full buffer) is counted, never raised:
the prompt still "plays" on schedule, so the dialplan moves on instead of stalling on a dead media path.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import select
import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ivr.media import batchrx, g711
from ivr.media.assembler import FrameAssembler
from ivr.media.dtmf import DtmfReceiver
from ivr.media.jitter import JitterBuffer
from ivr.media.latch import SourceLatch, Verdict
from ivr.media.ports import DescriptorsExhausted, PortAllocator, PortsExhausted
from ivr.media.prompt import SAMPLE_RATE, frames
from ivr.media.rtp import HEADER, HEADER_SIZE, PLAIN, RtpError, RtpPacket, RtpSender, RtpStats, parse_rtp
from ivr.media.timeline import Timeline
from ivr.media.wheel import Cadence, TimerWheel, WheelTimer

if TYPE_CHECKING:
    from ivr.media._batchrx import Counters, Lane

__all__ = ["PortAllocator", "PortsExhausted", "RtpSession"]

_COMFORT_NOISE = 13  # RFC 3389: its level is not used; the quiet it stands for is filled by time
_SPARSE_REFRESH = 1.0  # seconds between our packets during a sparse silence (RFC 3389 leaves the rate to us)
_CN_SILENCE = bytes((127,))  # RFC 3389 §3: noise level -127 dBov, no spectral information: digital silence
_MAX_LATE_FRAMES = 3  # playback this far behind schedule (a stalled loop) re-bases instead of bursting
_TIMER_SLACK = 0.001  # asyncio may run a timer up to its clock resolution early
_WHEEL_TICK = 0.001  # the shared timers' slot: keepalive and prompt frames leave at most this late
_MAX_FILL_DEFERRED = 3  # media ticks a silence fill waits for datagrams not read yet


class _SharedTimers:
    """The deadlines of every session on one event loop, driven by a single loop timer: one-off ones in a
    `TimerWheel`, each session's media tick in a `Cadence` per packet time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wheel = TimerWheel(_WHEEL_TICK)
        self._cadences: dict[float, Cadence] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None  # when the loop timer is set to fire

    def call_at(self, when: float, callback: Callable[[], object]) -> WheelTimer:
        timer = self._wheel.schedule(when, callback)
        self._arm()
        return timer

    def every(self, period: float, when: float, callback: Callable[[], object]) -> WheelTimer:
        """Run `callback` every `period` from about `when` (in its phase) until cancelled."""
        cadence = self._cadences.get(period)
        if cadence is None:
            cadence = self._cadences[period] = Cadence(period, _WHEEL_TICK)
        timer = cadence.add(when, callback)
        self._arm()
        return timer

    def _next_deadline(self) -> float | None:
        deadline = self._wheel.next_deadline()
        now = self._loop.time()
        for cadence in self._cadences.values():
            at = cadence.next_deadline(now)
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        return deadline

    def _arm(self) -> None:
        deadline = self._next_deadline()
        if deadline is None or (self._armed is not None and self._armed <= deadline):
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed = deadline
        self._handle = self._loop.call_at(deadline, self._run)

    def _run(self) -> None:
        self._handle = self._armed = None
        now = self._loop.time() + _TIMER_SLACK
        due = self._wheel.expire(now)
        for cadence in self._cadences.values():
            due += cadence.expire(now)
        for timer in due:
            if timer.cancelled:  # by an earlier callback of this run
                continue
            try:
                timer.callback()
            except Exception as exc:  # one session's bug must not stop every other session's timers
                self._loop.call_exception_handler(
                    {"message": "RTP session timer failed", "exception": exc, "handle": timer}
                )
        self._arm()


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedTimers] = weakref.WeakKeyDictionary()


def _shared_timers(loop: asyncio.AbstractEventLoop) -> _SharedTimers:
    timers = _SHARED.get(loop)
    if timers is None:
        timers = _SHARED[loop] = _SharedTimers(loop)
    return timers


class _Playback:
    __slots__ = ("stopped", "waiter")

    def __init__(self) -> None:
        self.stopped = False
        self.waiter: asyncio.Future[None] | None = None


def _nothing(*_: object) -> None:
    pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._session = session
        # Every datagram goes straight to the session: no call through this class per packet.
        self.datagram_received = session._on_datagram  # type: ignore[method-assign]

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the caller's RTP port is not open yet: RTP carries on regardless.
        self._session._send_failed(f"{type(exc).__name__}: {exc}")


class RtpSession:
    """One call's RTP endpoint: strict-source receive, silence filled by time, paced prompts, keepalive."""

    # Slots: over 30 attributes, an instance dict no longer shares its keys (1.3 KB more per call).
    __slots__ = (
        "_accepted",
        "_armed",
        "_assembler",
        "_batch",
        "_clock",
        "_close_lane",
        "_closed",
        "_dtmf",
        "_fill_deferred",
        "_inactivity_timeout",
        "_jitter",
        "_keepalive",
        "_lane",
        "_last_rx",
        "_latch",
        "_loop",
        "_on_audio",
        "_on_dtmf",
        "_on_timeout",
        "_playback",
        "_ptime",
        "_samples_per_frame",
        "_sdp_remote",
        "_send_to",
        "_sender",
        "_sendto",
        "_silence_frame",
        "_sock",
        "_sockname",
        "_source",
        "_sparse_due",
        "_stats",
        "_stream_ssrc",
        "_tick_every",
        "_ticker",
        "_timed_out",
        "_timeline",
        "_timers",
        "_transport",
        "_unusable_remote",
        "_waiting",
        "comfort_noise_payload_type",
        "dtmf_payload_type",
        "ignored",
        "invalid",
        "last_send_error",
        "local_host",
        "local_port",
        "payload_type",
        "send_errors",
        "sparse_silence",
    )

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
        nat: bool = False,
        probation: int = 5,
        keepalive: bool = True,
        max_fill: float = 0.24,
        comfort_noise_payload_type: int | None = None,
        sparse_silence: bool = False,
        batch_receive: bool = True,
    ) -> None:
        """`nat`: also latch to a host other than the SDP's, after `probation` packets in sequence (before
        any latch only). `keepalive`: send silence whenever no prompt plays: G.711 frames, or RFC 3389 CN
        packets with `comfort_noise_payload_type`; `sparse_silence`: without CN too, a G.711 frame a second
        rather than every packet time. `max_fill`: the most silence (seconds) put in for one gap in the
        caller's stream. `batch_receive`: read through the loop's `batchrx` receiver when it is
        built (else, and for a host name, through the loop's datagram transport)."""
        g711.silence_byte(payload_type)  # ValueError for a codec we cannot decode
        self.local_host = local_host
        self.local_port = port
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.comfort_noise_payload_type = comfort_noise_payload_type
        self.sparse_silence = sparse_silence
        self._sparse_due: float | None = None  # clock time of a sparse silence's next packet; None: at once
        self._stats = RtpStats(SAMPLE_RATE)
        self.invalid = 0  # datagrams that are not RTP
        self.ignored = 0  # RTP of a payload type we do not use (foreign sources: `foreign`)
        self.send_errors = 0
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
        self._latch = SourceLatch(remote_host, nat=nat, probation=probation)
        self._source: tuple[Any, ...] | None = None  # latched caller address
        self._accepted = {payload_type, _COMFORT_NOISE}
        if dtmf_payload_type is not None:
            self._accepted.add(dtmf_payload_type)
        self._sender = RtpSender(payload_type)
        self._jitter = JitterBuffer()
        self._dtmf = DtmfReceiver()
        self._timeline = Timeline(SAMPLE_RATE, frame=self._samples_per_frame, max_fill=max_fill)
        self._assembler = FrameAssembler(payload_type, self._samples_per_frame)
        self._stream_ssrc: int | None = None  # the SSRC whose sequence numbers the jitter buffer follows
        self._keepalive = keepalive
        self._silence_frame = g711.silence(payload_type, self._samples_per_frame)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: _SharedTimers | None = None  # every session's deadlines on one loop timer
        self._transport: asyncio.DatagramTransport | None = None  # the loop's, without batch receive
        self._batch = batch_receive and batchrx.AVAILABLE
        self._sock: socket.socket | None = None  # our own, with batch receive
        self._lane: Lane | None = None
        self._close_lane: Callable[[], None] | None = None
        self._armed = False  # the lane takes the in-order path (see batchrx)
        self._sendto: Callable[[bytes, tuple[Any, ...]], object] | None = None
        self._sockname: tuple[Any, ...] = ()
        self._ticker: WheelTimer | None = None  # the media tick: see _tick and _tick_period
        self._tick_every = self._ptime
        self._waiting: select.poll | None = None  # has the socket datagrams not read yet (see _fill_silence)
        self._fill_deferred = 0
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

    @property
    def stats(self) -> RtpStats:
        """The caller's stream statistics, up to the last packet received."""
        if self._armed:
            self._sync()
        return self._stats

    @property
    def foreign(self) -> int:
        """Packets dropped because they came from a source other than the caller's (strict RTP)."""
        if self._armed:
            self._sync()
        return self._latch.dropped

    @property
    def jitter_lost(self) -> int:
        """Sequence numbers the jitter buffer gave up on (real loss: not DTMF or comfort noise)."""
        return self._jitter.lost

    @property
    def silence_filled(self) -> int:
        """Samples of silence handed to `on_audio` in place of audio that never came."""
        return self._timeline.silence

    @property
    def passthrough(self) -> bool:
        """True: on_audio gets the G.711 as received (for recognizers that take it), not PCM16."""
        return self._assembler.passthrough

    @passthrough.setter
    def passthrough(self, enabled: bool) -> None:
        if enabled != self._assembler.passthrough:
            self._reframe(self.payload_type, self._assembler.frame, passthrough=enabled)

    @property
    def audio_frame_ms(self) -> int:
        """How much audio each on_audio call carries (the recognizer's frame): at least the packet time."""
        return self._assembler.frame * 1000 // SAMPLE_RATE

    @audio_frame_ms.setter
    def audio_frame_ms(self, ms: int) -> None:
        frame = max(self._samples_per_frame, SAMPLE_RATE * ms // 1000)
        if frame != self._assembler.frame:
            self._reframe(self.payload_type, frame, passthrough=self._assembler.passthrough)

    @property
    def keepalive(self) -> bool:
        """Whether silence is sent between prompts; off while the call is on hold (RFC 3264 recvonly)."""
        return self._keepalive

    @keepalive.setter
    def keepalive(self, enabled: bool) -> None:
        self._keepalive = enabled
        if enabled:
            self._sparse_due = None  # a silence starts: its first packet goes out at once
            self._arm_keepalive()
        else:
            self._retick()

    async def start(self) -> None:
        """Bind the UDP socket; OSError if the port is busy."""
        loop = asyncio.get_running_loop()
        try:
            sock = batchrx.bind(self.local_host, self.local_port) if self._batch else None
            if sock is None:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), local_addr=(self.local_host, self.local_port)
                )
        except OSError as exc:
            _raise_if_out_of_descriptors(exc)
            raise
        if sock is not None:
            self._sock = sock
            self._sendto = sock.sendto
            self._sockname = sock.getsockname()
            fileno = sock.fileno()
            self._lane, self._close_lane = batchrx.open_lane(
                loop, sock, self._on_lane_datagram, self._on_audio
            )
        else:
            self._transport = transport
            self._sendto = transport.sendto
            self._sockname = transport.get_extra_info("sockname")
            fileno = transport.get_extra_info("socket").fileno()
        self._loop = loop
        self._timers = _shared_timers(loop)
        self.local_port = self._sockname[1]
        self._unusable_remote = self._check_remote(self._send_to)
        if self._unusable_remote is not None:
            self._latch.reset("")  # no caller sends from an address we cannot send to: latch on probation
        self._waiting = select.poll()
        self._waiting.register(fileno, select.POLLIN)
        self._last_rx = loop.time()
        self._retick(self._last_rx)
        self._arm_keepalive()

    def update_remote(self, host: str, port: int) -> None:
        """New SDP (re-INVITE): send to its address, and latch again by the strict policy (the source
        latched so far may latch again at once)."""
        if self._armed:
            self._disarm()
        self._sdp_remote = self._send_to = (host, port)
        self._source = None
        self._latch.reset(host)
        if self._sendto is not None:
            self._unusable_remote = self._check_remote(self._send_to)
            if self._unusable_remote is not None:
                self._latch.reset("")

    def set_codec(
        self,
        payload_type: int,
        dtmf_payload_type: int | None,
        comfort_noise_payload_type: int | None = None,
    ) -> None:
        """A re-INVITE changed the codec (e.g. PCMU to PCMA): send and accept the new payload types from now
        on. The stream (SSRC, sequence numbers, timestamps) runs on, as RFC 3550 §5.1 allows; a prompt that
        is playing keeps its frames (already encoded), and the next one is in the new codec."""
        g711.silence_byte(payload_type)  # ValueError for a codec we cannot decode
        if self._armed:
            self._disarm()
        if payload_type != self.payload_type:
            self._reframe(payload_type, self._assembler.frame, passthrough=self._assembler.passthrough)
        self.payload_type = self._sender.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        if comfort_noise_payload_type != self.comfort_noise_payload_type:
            self.comfort_noise_payload_type = comfort_noise_payload_type
            self._sparse_due = None
        self._accepted = {payload_type, _COMFORT_NOISE}
        if dtmf_payload_type is not None:
            self._accepted.add(dtmf_payload_type)
        self._silence_frame = g711.silence(payload_type, self._samples_per_frame)
        self._retick()
        self._try_arm()

    async def play(self, pcm: bytes) -> bool:
        """Send PCM16 8 kHz mono as paced G.711 frames. True if it ran to the end, False if stopped.

        A play() while another is running replaces it (the earlier one returns False).
        """
        if self._closed or self._loop is None or self._sendto is None:
            return False
        self.stop_playback()
        token = _Playback()
        self._playback = token  # the media tick sends no keepalive while it is set
        self._sparse_due = None  # a sparse silence after this prompt starts at once
        loop = self._loop
        ptime = self._ptime
        spf = self._samples_per_frame
        pt = self.payload_type  # a set_codec() during the prompt must not relabel frames encoded for this one
        payload = frames(pcm, pt, spf)
        now = loop.time()
        start = now
        if self._clock is not None:
            if self._clock > now - _MAX_LATE_FRAMES * ptime:
                # The previous prompt's or the keepalive's last frame is still playing out (or only just
                # finished): carry on from its clock, so the timestamps run on without a jump.
                start = self._clock
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
                self._send(self._sender.packet(frame, spf, marker=index == 0, payload_type=pt))
                self._clock = deadline + ptime
            await self._wait(token, start + len(payload) * ptime)  # let the last frame play out
            return True
        finally:
            if self._playback is token:
                self._playback = None
                self._arm_keepalive()

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
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._armed:
            self._disarm()  # the statistics up to the last packet, for the call's record
        if self._close_lane is not None:
            self._close_lane()  # before the socket: the receiver forgets the descriptor first
            self._close_lane = self._lane = None
        if self._sock is not None:
            self._sock.close()
        # The call's callbacks hold the call, which holds this session: let go of them, so that an ended
        # call is freed at once rather than by a full collection.
        self._on_audio = self._on_dtmf = self._on_timeout = _nothing
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)  # let the transport finish closing the socket

    async def _wait(self, token: _Playback, deadline: float) -> None:
        assert self._loop is not None and self._timers is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        token.waiter = waiter
        handle = self._timers.call_at(deadline, functools.partial(_wake, waiter))
        try:
            await waiter
        finally:
            handle.cancel()
            token.waiter = None

    def _reframe(self, payload_type: int, frame: int, *, passthrough: bool) -> None:
        """Hand over what the assembler holds in the old form, then assemble anew."""
        if self._armed:
            self._disarm()
        held = self._assembler.flush()
        if held is not None:
            self._on_audio(held)
        self._assembler.reset(payload_type, frame, passthrough=passthrough)
        self._retick()
        self._try_arm()

    def _check_remote(self, addr: tuple[Any, ...]) -> str | None:
        """Why the socket cannot send to this SDP address, or None.

        Only an IP literal of the socket's own family is usable: uvloop raises ValueError for anything else,
        and the stock loop resolves a host name inside sendto, a blocking DNS lookup on the event loop.
        """
        family = 6 if len(self._sockname) == 4 else 4  # an IPv6 sockname is a 4-tuple
        host = addr[0]
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return f"remote address {host!r} is not an IP address (no DNS lookups on the media path)"
        if version != family:
            return f"remote address {host!r} is IPv{version}; this RTP socket is IPv{family}"
        return None

    def _send(self, data: bytes) -> None:
        assert self._sendto is not None
        if self._unusable_remote is not None:
            self._send_failed(self._unusable_remote)
            return
        try:
            self._sendto(data, self._send_to)
        except (OSError, ValueError, TypeError) as exc:  # ValueError/TypeError: uvloop, for a bad address
            self._send_failed(f"{type(exc).__name__}: {exc}")

    def _send_failed(self, reason: str) -> None:
        self.send_errors += 1
        self.last_send_error = reason

    def _tick(self) -> None:
        """The media tick, once per packet time in the phase of the keepalive clock: the silence due, the
        caller's quiet filled in, the inactivity timeout. One callback per call, nothing scheduled."""
        loop = self._loop
        if self._closed or loop is None:
            return
        now = loop.time()
        soon = now + _TIMER_SLACK
        clock = self._clock
        if clock is not None and clock <= soon and self._keepalive and self._playback is None:
            self._send_due(now)
        if not self._timed_out:
            at = self._timeline.next_check()
            lane = self._lane
            if at is not None and lane is not None and self._armed:
                at += lane.pending / SAMPLE_RATE  # the audio the lane took since the timeline last heard
                due = lane.due
                if due is not None and due + self._ptime > at:
                    # A paced lane reads its frame at `due`: only a read that comes up short means quiet.
                    at = due + self._ptime
            if at is not None and soon >= at:
                self._fill_silence(now)
            elif self._fill_deferred:
                self._fill_deferred = 0  # the caller was only unread: the next quiet spell waits as long
            if soon >= self._last_rx + self._inactivity_timeout and self._armed:
                self._sync()
            if soon >= self._last_rx + self._inactivity_timeout:
                self._timed_out = True
                self._on_timeout()

    def _arm_keepalive(self) -> None:
        """Silence from the stream's clock on (at start, after a prompt, off hold), with the media tick moved
        to the clock's phase so that each frame leaves on time."""
        loop, timers = self._loop, self._timers
        if (
            not self._keepalive
            or self._closed
            or loop is None
            or timers is None
            or self._playback is not None
        ):
            return
        now = loop.time()
        clock = self._clock
        if clock is None or clock < now - _MAX_LATE_FRAMES * self._ptime:
            if clock is not None:
                self._sender.skip(round((now - clock) * SAMPLE_RATE))  # time passed unsent (keepalive off)
            self._clock = clock = now
        self._retick(clock)
        self._send_due(now)  # what the tick in its new phase would have sent already

    @property
    def _sparse(self) -> bool:
        return self.sparse_silence or self.comfort_noise_payload_type is not None

    def _tick_period(self) -> float:
        """Every packet time while G.711 silence leaves in each; otherwise once per recognizer frame: sparse
        silence goes a second apart, and the caller's silence is handed on in whole frames anyway."""
        if self._keepalive and not self._sparse:
            return self._ptime
        return max(self._ptime, self._assembler.frame / SAMPLE_RATE)

    def _retick(self, phase: float | None = None) -> None:
        """The media tick at its period, in the phase of the stream's clock (`phase`, else the clock)."""
        timers, ticker = self._timers, self._ticker
        if timers is None or self._closed:
            return
        if phase is None:
            phase = self._clock if self._clock is not None else self._last_rx
        period = self._tick_period()
        if ticker is not None:
            if period == self._tick_every and not round((ticker.when - phase) / _WHEEL_TICK) % round(
                self._ptime / _WHEEL_TICK
            ):
                return
            ticker.cancel()
        self._tick_every = period
        self._ticker = timers.every(period, phase, self._tick)

    def _send_due(self, now: float) -> None:
        """The keepalive frames due by `now`: one a tick, a few after a late tick, re-based after a stall."""
        clock = self._clock
        if clock is None or clock > now + _TIMER_SLACK:
            return
        sender, spf, ptime = self._sender, self._samples_per_frame, self._ptime
        cn = self.comfort_noise_payload_type
        sparse = self._sparse
        if sparse and self._sparse_due is not None:
            # Between sparse packets, nearly every tick: the frames' time passes unsent, in one step.
            frames = int((now + _TIMER_SLACK - clock) // ptime) + 1
            if clock + (frames - 1) * ptime + _TIMER_SLACK < self._sparse_due:
                sender.skip(frames * spf)
                self._clock = clock + frames * ptime
                return
        # A stalled loop: re-base rather than burst (sparse, ticks a frame apart are not a stall).
        if now - clock > _MAX_LATE_FRAMES * ptime + (self._tick_every if sparse else 0.0):
            sender.skip(round((now - clock) * SAMPLE_RATE))
            clock = now
        while clock <= now + _TIMER_SLACK:
            if not sparse:
                self._send(sender.packet(self._silence_frame, spf))
            else:
                due = self._sparse_due
                if due is None or clock + _TIMER_SLACK >= due:
                    if cn is not None:
                        self._send(sender.packet(_CN_SILENCE, 0, payload_type=cn))
                    else:  # after a second unsent, a talkspurt of one frame: the marker tells the receiver
                        self._send(sender.packet(self._silence_frame, 0, marker=due is not None))
                    self._sparse_due = clock + _SPARSE_REFRESH
                sender.skip(spf)  # the frame's time passes, sent or not (RFC 3550 §5.1)
            clock += ptime
        self._clock = clock

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = self._source
        if source is not None:
            if addr != source:
                self._latch.dropped += 1  # strict RTP: not even parsed
                return
            # The fast path, nearly every packet: the latched caller's next audio packet in sequence, with a
            # plain header. No RtpPacket, no list from the jitter buffer.
            if len(data) > HEADER_SIZE:
                b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
                if (
                    b0 == PLAIN
                    and b1 & 0x7F == self.payload_type
                    and ssrc == self._stream_ssrc
                    and self._jitter.next_in_order(seq)
                ):
                    now = self._loop.time()  # type: ignore[union-attr]  # set by start(), before any packet
                    self._last_rx = now
                    self._stats.record(ssrc, seq, ts, now)
                    self._audio(ts, data[HEADER_SIZE:], now)
                    return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.invalid += 1
            return
        pt = packet.payload_type
        if pt not in self._accepted:
            self.ignored += 1
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if source is None:
            if self._latch.check(addr, packet.ssrc, packet.sequence) is Verdict.DROP:
                return
            self._source = self._send_to = addr
            self._unusable_remote = None  # the caller's own source address: the socket can always reach it
            self._timeline.start(now)
        self._last_rx = now
        self._stats.update(packet, now)
        if pt == self.payload_type:
            if packet.ssrc != self._stream_ssrc:
                for held in self._jitter.flush():
                    self._deliver(held, now)
                self._jitter.reset()
                self._stream_ssrc = packet.ssrc
                self._timeline.discontinuity()
        else:
            if pt == self.dtmf_payload_type:
                digit = self._dtmf.feed(packet)
                if digit is not None:
                    self._on_dtmf(digit.digit)
            if packet.ssrc != self._stream_ssrc:
                return  # another stream's sequence numbers: nothing to do with the audio's
        # DTMF and comfort noise too: they take sequence numbers of the audio stream, so the buffer must see
        # them (a placeholder, skipped in _deliver) or it would take them for loss and hold the audio behind.
        for ready in self._jitter.push(packet):
            self._deliver(ready, now)

    def _fill_silence(self, now: float) -> None:
        """The caller has been quiet for the timeline's hangover: release what the jitter buffer holds (no
        later packet is coming to push it out), then hand over silence in real time.

        Unless datagrams wait unread: a loop that ran late runs its timers before its sockets, and the caller
        who seems quiet is only not read yet. Filling then would put silence in the middle of speech and push
        the audio late, so it waits, for a few ticks at most (a flood on the port must not hold it off)."""
        waiting = self._waiting
        if waiting is not None and self._fill_deferred < _MAX_FILL_DEFERRED and waiting.poll(0):
            self._fill_deferred += 1
            return
        self._fill_deferred = 0
        if self._armed:
            self._disarm()  # the silence goes after the lane's part of a frame
        for held in self._jitter.flush():
            self._deliver(held, now)
        samples = self._timeline.silence_due(now)
        if samples:
            frames = self._assembler.add_silence(samples)
            if frames is not None:
                self._on_audio(frames)
        self._try_arm()

    def _deliver(self, packet: RtpPacket, now: float) -> None:
        if packet.payload_type != self.payload_type:
            return  # a DTMF or comfort-noise placeholder; the timeline covers the time it stood for
        self._audio(packet.timestamp, packet.payload, now)

    def _audio(self, timestamp: int, payload: bytes, now: float) -> None:
        assembler = self._assembler
        fill = self._timeline.audio(timestamp, len(payload), now)
        if fill:
            frames = assembler.add_silence(fill)
            if frames is not None:
                self._on_audio(frames)
        frames = assembler.add(payload)
        if frames is not None:
            self._on_audio(frames)

    # The batch receiver (batchrx): the lane takes the in-order path while armed, the session everything else.

    def _on_lane_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._armed:
            self._disarm()  # this one breaks the order: the session takes it, with its state up to date
        self._on_datagram(data, addr)
        self._try_arm()

    def _try_arm(self) -> None:
        """Hand the in-order path to the lane when the stream is in order and nothing waits."""
        lane = self._lane
        if lane is None or self._armed or self._closed:
            return
        source, ssrc = self._source, self._stream_ssrc
        sequence, timestamp = self._jitter.expected, self._timeline.next_timestamp
        stats = self._stats
        if (
            source is None
            or ssrc is None
            or sequence is None
            or timestamp is None
            or stats.ssrc != ssrc
            or stats.next_sequence != sequence
        ):
            return
        assembler = self._assembler
        lane.arm(
            source,
            self.payload_type,
            ssrc,
            sequence,
            timestamp,
            assembler.frame,
            assembler.take(),
            stats.jitter,
            stats.transit,
            batchrx.codec(self.payload_type, passthrough=assembler.passthrough),
        )
        self._armed = True

    def _disarm(self) -> None:
        assert self._lane is not None
        held, counters = self._lane.disarm()
        self._armed = False
        self._apply(counters)
        if held:
            self._assembler.add(held)  # less than a frame: nothing is released

    def _sync(self) -> None:
        assert self._lane is not None
        self._apply(self._lane.sync())

    def _apply(self, counters: Counters) -> None:
        """Bring the statistics, jitter buffer and timeline up to what the lane took in order."""
        packets, wraps, sequence, timestamp, samples, arrival, jitter, transit, foreign = counters
        if foreign:
            self._latch.dropped += foreign
        if packets:
            self._last_rx = arrival
            self._stats.advance(packets, wraps, sequence, jitter, transit)
            self._jitter.advance(sequence)
            self._timeline.advance(timestamp, samples)


def _raise_if_out_of_descriptors(exc: OSError) -> None:
    """DescriptorsExhausted for an EMFILE or ENFILE (uvloop wraps it in "could not bind to local_addr": look
    down the cause chain)."""
    cause: BaseException | None = exc
    while cause is not None and getattr(cause, "errno", None) not in (errno.EMFILE, errno.ENFILE):
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.errno is not None:
        scope = "process" if cause.errno == errno.EMFILE else "system"
        name = errno.errorcode[cause.errno]
        raise DescriptorsExhausted(
            f"no RTP socket: the {scope} is out of file descriptors ({name}); "
            "raise `ulimit -n` or lower sip_max_connections / max_calls"
        ) from exc
