"""RTP packets (RFC 3550 §5.1), a sender that numbers them, and receiver statistics (RFC 3550 A.1, A.8)."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

__all__ = ["HEADER", "HEADER_SIZE", "PLAIN", "RtpError", "RtpPacket", "RtpSender", "RtpStats", "parse_rtp"]

# The fixed header (first octet, marker + payload type, sequence, timestamp, SSRC), for a receive fast path
# that reads it without building an RtpPacket: a first octet of PLAIN means version 2 with no padding,
# header extension or CSRC, so the payload is everything after HEADER_SIZE.
HEADER = struct.Struct("!BBHII")
HEADER_SIZE = 12
PLAIN = 0x80
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_MAX_DROPOUT = 3000  # RFC 3550 A.1: larger forward jumps mean the source restarted
_MAX_MISORDER = 100  # RFC 3550 A.1: larger backward jumps too
_DUP_WINDOW = 64  # sequence numbers remembered behind the highest, for duplicate detection
_DUP_MASK = (1 << _DUP_WINDOW) - 1


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes  # without CSRCs, header extension and padding


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {len(data)} bytes")
    b0, b1, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    start = HEADER_SIZE + 4 * (b0 & 0x0F)  # CSRC list
    end = len(data)
    if b0 & 0x10:  # header extension, RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words
        if end < start + 4:
            raise RtpError("RTP header extension truncated")
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    if b0 & 0x20:  # padding, RFC 3550 §5.1: the last octet counts the padding octets, itself included
        padding = data[-1]
        if padding == 0:
            raise RtpError("RTP padding count of zero")
        end -= padding
    if end < start:
        raise RtpError("RTP header, extension or padding longer than the packet")
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), sequence, timestamp, ssrc, data[start:end])


class RtpSender:
    """Numbers outgoing packets of one SSRC; initial values are random (RFC 3550 §5.1)."""

    __slots__ = ("payload_type", "sequence", "ssrc", "timestamp")

    def __init__(
        self,
        payload_type: int,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.sequence = secrets.randbits(16) if sequence is None else sequence % _SEQ_MOD
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp % _TS_MOD

    def packet(
        self, payload: bytes, samples: int, *, marker: bool = False, payload_type: int | None = None
    ) -> bytes:
        """The next packet; `samples` is the payload's duration in timestamp units."""
        pt = self.payload_type if payload_type is None else payload_type
        header = HEADER.pack(0x80, (0x80 if marker else 0) | pt, self.sequence, self.timestamp, self.ssrc)
        self.sequence = (self.sequence + 1) % _SEQ_MOD
        self.timestamp = (self.timestamp + samples) % _TS_MOD
        return header + payload

    def skip(self, samples: int) -> None:
        """Let time pass unsent (between talkspurts): the timestamp advances, the sequence does not."""
        self.timestamp = (self.timestamp + samples) % _TS_MOD


class RtpStats:
    """Receiver statistics for one stream: counters per RFC 3550 A.1/A.3, interarrival jitter per A.8.

    A change of SSRC starts a new source: sequence tracking restarts, counters keep accumulating.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_max_seq",
        "_recent",
        "_transit",
        "clock_rate",
        "duplicate",
        "jitter",
        "out_of_order",
        "received",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.received = 0  # every valid packet fed, duplicates included (as RFC 3550 A.3 counts)
        self.duplicate = 0
        self.out_of_order = 0
        self.jitter = 0.0  # timestamp units
        self.ssrc: int | None = None
        self._expected_prior = 0  # expected packets of earlier sources
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = -1
        self._recent = 0  # bit k set: sequence max_seq - k was received
        self._transit: float | None = None

    @property
    def expected(self) -> int:
        if self.ssrc is None:
            return self._expected_prior
        return self._expected_prior + self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (RFC 3550 A.3), not counting duplicates as received; never negative."""
        return max(0, self.expected - (self.received - self.duplicate))

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    def _start_source(self, ssrc: int, sequence: int) -> None:
        if self.ssrc is not None:
            self._expected_prior = self.expected
        self.ssrc = ssrc
        self._base_seq = self._max_seq = sequence
        self._cycles = 0
        self._bad_seq = -1
        self._recent = 1
        self._transit = None

    @property
    def next_sequence(self) -> int | None:
        """The sequence number that would be the next in order, or None before any packet."""
        return None if self.ssrc is None else (self._max_seq + 1) & 0xFFFF

    @property
    def transit(self) -> float | None:
        """The last packet's relative transit time (RFC 3550 A.8), timestamp units."""
        return self._transit

    def advance(self, packets: int, wraps: int, next_sequence: int, jitter: float, transit: float) -> None:
        """Account for `packets` that came in order after the last one, counted elsewhere (the batch
        receiver, `batchrx`): what `record` would have made of them, with the jitter it computed."""
        if not packets:
            return
        self.received += packets
        self._cycles += wraps * _SEQ_MOD
        self._max_seq = (next_sequence - 1) & 0xFFFF
        self._recent = ((self._recent << packets) | ((1 << packets) - 1)) & _DUP_MASK
        self._bad_seq = -1
        self.jitter = jitter
        self._transit = transit

    def update(self, packet: RtpPacket, arrival: float) -> None:
        """Account for one packet; `arrival` is the receive time in seconds (any fixed origin)."""
        self.record(packet.ssrc, packet.sequence, packet.timestamp, arrival)

    def record(self, ssrc: int, seq: int, timestamp: int, arrival: float) -> None:
        """`update` from the header fields, for a receive path that builds no RtpPacket."""
        self.received += 1
        if seq == (self._max_seq + 1) & 0xFFFF and ssrc == self.ssrc:  # the next in order: nearly every one
            if not seq:
                self._cycles += _SEQ_MOD
            self._max_seq = seq
            self._recent = ((self._recent << 1) | 1) & _DUP_MASK
            self._bad_seq = -1
        elif ssrc != self.ssrc:
            self._start_source(ssrc, seq)
        else:
            delta = (seq - self._max_seq) % _SEQ_MOD
            if delta == 0:
                self.duplicate += 1
                return
            if delta < _MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
                self._recent = ((self._recent << delta) | 1) & _DUP_MASK
                self._bad_seq = -1
            elif delta >= _SEQ_MOD - _MAX_MISORDER:
                back = _SEQ_MOD - delta
                if back < _DUP_WINDOW and self._recent >> back & 1:
                    self.duplicate += 1
                    return
                if back < _DUP_WINDOW:
                    self._recent |= 1 << back
                self.out_of_order += 1
            elif seq == self._bad_seq:
                # Two sequential packets after a big jump: the source restarted (RFC 3550 A.1).
                self._start_source(ssrc, seq)
            else:
                self._bad_seq = (seq + 1) % _SEQ_MOD
                return
        # RFC 3550 A.8: J += (|D(i-1,i)| - J) / 16, in timestamp units.
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < _TS_MOD / 2:  # a timestamp wrap between two packets is not jitter
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
