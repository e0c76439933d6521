"""Batched receive of every call's RTP on one event loop: one callback per loop iteration, one Python call per
audio frame instead of one per packet.

The event loop's datagram transport costs one callback per packet: a system call, the source address turned
into a string, a bytes object, and the session's Python. At 2,000 calls that is 100,000 packets a second,
more than a core can carry in Python (the receive-only limit alone, in `bench/`, is about 5.5 µs a packet).
So the compiled `_batchrx` keeps every call's RTP socket in one epoll set, which the loop watches as a single
descriptor. When it is ready, `Receiver.receive` reads each ready socket with one `recvmmsg()`.

Each socket is a `Lane`, and the session decides what the lane may do on its own:

- While the session has *armed* it (the caller latched, nothing waiting in the jitter buffer, the stream's
  next sequence number and timestamp known), the lane takes the in-order path. It accepts the latched
  source's next audio packet (plain header, the audio payload type, the stream's SSRC, exactly the next
  sequence number and timestamp), appends the payload to the frame being assembled and keeps the RFC 3550
  A.8 jitter. Once per whole frame it hands the frame, decoded as `g711.decode` would (or as received, for
  pass-through), straight to the session's `on_audio`. It keeps counters (packets, the next sequence number
  and timestamp, the jitter), and the session takes them when it needs its statistics, jitter buffer and
  timeline up to date: before it handles a datagram itself, fills silence, reports statistics or closes.
- It counts and drops packets from any other source (strict RTP), as the session would.
- Once it has handed on a frame, it reads by the clock rather than on each arrival (*paced reads*): its
  socket leaves the epoll set's attention until the packet that completes the next frame is due, plus
  `PACE_MS`; then one `recvmmsg()` takes that frame's packets, with the kernel's arrival time of each, so
  the jitter is unchanged. A read that comes up short (late or lost audio, the caller gone quiet) puts the
  socket back under epoll until the frame completes. A frame costs one system call instead of one per
  packet; anything else (DTMF, comfort noise) reaches the session at most a frame late.
- It hands every other datagram (DTMF, comfort noise, loss, reordering, a new SSRC, a timestamp jump) to
  the session unchanged, and the session disarms the lane before it handles that datagram in Python. It
  arms the lane again once the stream is back in order.

The Python path stays the reference: `RtpSession` on the loop's own transport (no compiler, or
`rtp_batch_receive: false`) behaves the same, and the tests compare the two on the same packets.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ivr.media import g711

try:
    from ivr.media import _batchrx
except ImportError:  # built without a C compiler: every session reads through the loop's transport
    _batchrx = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "Reads", "bind", "codec", "open_lane", "reads"]

AVAILABLE = _batchrx is not None
# Paced reads: a lane that handed on a frame reads again this long after the next frame's last packet is due,
# all of that frame's packets in one system call (a frame then leaves at most this late).
PACE_MS = 4

if TYPE_CHECKING:
    from ivr.media._batchrx import Lane, Receiver


class _LoopReceiver:
    """One loop's receiver, watched by the loop while any lane is open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _batchrx is not None
        self._loop = loop
        self.receiver = _batchrx.Receiver(on_error=self._failed, pace_ms=PACE_MS)
        self.lanes = 0
        loop.add_reader(self.receiver.fileno(), self._ready)

    def _ready(self) -> None:
        self.receiver.receive(self._loop.time())

    def _failed(self, exc: BaseException) -> None:
        # One session's bug must not stop every other call's audio (the receiver carries on after it).
        self._loop.call_exception_handler({"message": "RTP receive failed", "exception": exc})

    def close(self) -> None:
        self._loop.remove_reader(self.receiver.fileno())
        global _RETIRED
        _RETIRED = _RETIRED.plus(Reads.of(self.receiver))


class Reads(NamedTuple):
    """What the receivers' socket reads came to, since the process started (for /metrics)."""

    reads: int = 0  # system calls that read a lane's socket
    datagrams: int = 0
    paced: int = 0  # reads at a frame's due time, not on arrival
    short: int = 0  # paced reads that found the frame incomplete (late or missing audio)

    @classmethod
    def of(cls, receiver: Receiver) -> Reads:
        return cls(*receiver.counters()[:4])

    def plus(self, other: Reads) -> Reads:
        return Reads(*(a + b for a, b in zip(self, other, strict=True)))


_RETIRED = Reads()  # of the receivers that closed with their last lane


def reads() -> Reads:
    """Every receiver's reads so far, the closed ones' included."""
    total = _RETIRED
    for receiver in list(_RECEIVERS.values()):
        total = total.plus(Reads.of(receiver.receiver))
    return total


_RECEIVERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopReceiver] = weakref.WeakKeyDictionary()


def open_lane(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    on_datagram: Callable[[bytes, tuple[Any, ...]], None],
    on_audio: Callable[[bytes], None],
) -> tuple[Lane, Callable[[], None]]:
    """A lane for a bound socket in `loop`'s receiver, and the function that closes it (before the socket)."""
    receiver = _RECEIVERS.get(loop)
    if receiver is None:
        receiver = _RECEIVERS[loop] = _LoopReceiver(loop)
    lane = receiver.receiver.add(sock.fileno(), on_datagram, on_audio)
    receiver.lanes += 1

    def close() -> None:
        lane.close()
        receiver.lanes -= 1
        if not receiver.lanes and _RECEIVERS.get(loop) is receiver:
            # No lane left: the loop stops watching, and the epoll descriptor goes with the receiver.
            receiver.close()
            del _RECEIVERS[loop]

    return lane, close


def codec(payload_type: int, *, passthrough: bool) -> int:
    """What a lane hands on_audio: the G.711 as received, or PCM16 decoded from PCMU or PCMA."""
    assert _batchrx is not None
    if passthrough:
        return _batchrx.PASSTHROUGH
    return _batchrx.ULAW if payload_type == g711.PCMU else _batchrx.ALAW


def bind(host: str, port: int) -> socket.socket | None:
    """A non-blocking UDP socket bound to an IP literal (OSError if the port is taken), or None for a host
    name: that one is left to the loop's transport, which resolves it without blocking."""
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE
        )
    except socket.gaierror:
        return None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock
