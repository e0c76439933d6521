"""A small reordering buffer for incoming RTP, counted in packets rather than time.

A trunk on a LAN or a good carrier delivers nearly everything in order, so the in-order path is a compare and
a return. Out-of-order packets wait until the missing ones arrive or until a packet `depth` sequence numbers
past the gap shows up; the gap is then given up (the caller sees it as a jump in sequence numbers and can fill
it with silence).
"""

from __future__ import annotations

from ivr.media.rtp import RtpPacket

__all__ = ["JitterBuffer"]

_SEQ_MASK = 0xFFFF
_HALF = 0x8000
_MAX_DROPOUT = 3000  # RFC 3550 A.1 thresholds: jumps beyond these mean the sender restarted its numbering
_MAX_MISORDER = 100


class JitterBuffer:
    __slots__ = ("_next", "_pending", "_resync", "depth", "dropped", "lost")

    def __init__(self, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError("jitter buffer depth must be at least 1")
        self.depth = depth
        self.lost = 0  # sequence numbers given up on
        self.dropped = 0  # duplicates and packets older than the last released
        self._next: int | None = None  # sequence number expected next
        self._pending: dict[int, RtpPacket] = {}
        self._resync: int | None = None

    @property
    def held(self) -> int:
        """Packets waiting for a gap before them to fill."""
        return len(self._pending)

    @property
    def expected(self) -> int | None:
        """The next sequence number in order while nothing waits, else None: where an in-order path kept
        elsewhere (`batchrx`) may take over."""
        return None if self._pending else self._next

    def advance(self, next_seq: int) -> None:
        """Packets up to `next_seq` went by in order, taken elsewhere (only while `expected` is not None)."""
        self._next = next_seq & _SEQ_MASK

    def next_in_order(self, seq: int) -> bool:
        """True, having taken it, when `seq` is the very next packet and nothing waits: the in-order fast path
        that needs no packet object (False: `push` it)."""
        if seq != self._next or self._pending:
            return False
        self._next = (seq + 1) & _SEQ_MASK
        return True

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """Packets now releasable, in sequence order (possibly none)."""
        seq = packet.sequence
        expected = self._next
        if expected is None or (seq == expected and not self._pending):
            self._next = (seq + 1) & _SEQ_MASK
            return [packet]
        delta = (seq - expected) & _SEQ_MASK
        if delta < _HALF:
            if delta > _MAX_DROPOUT:
                return self._restart(packet)
            if seq in self._pending:
                self.dropped += 1
                return []
            self._pending[seq] = packet
            return self._release()
        if _SEQ_MASK + 1 - delta > _MAX_MISORDER:
            # Far behind: a restarted sender, or one stray packet. RFC 3550 A.1 waits for a second
            # sequential packet before believing a restart.
            if seq == self._resync:
                return self._restart(packet)
            self._resync = (seq + 1) & _SEQ_MASK
        self.dropped += 1
        return []

    def flush(self) -> list[RtpPacket]:
        """Everything still held, in sequence order (end of stream, or before a new source)."""
        out: list[RtpPacket] = []
        expected = self._next
        if expected is None or not self._pending:
            return out
        for seq in sorted(self._pending, key=lambda s: (s - expected) & _SEQ_MASK):
            out.append(self._pending[seq])
        self._pending.clear()
        last = out[-1].sequence
        self.lost += ((last - expected) & _SEQ_MASK) + 1 - len(out)
        self._next = (last + 1) & _SEQ_MASK
        return out

    def reset(self) -> None:
        """Forget the stream (new SSRC); counters are kept."""
        self._next = None
        self._pending.clear()
        self._resync = None

    def _restart(self, packet: RtpPacket) -> list[RtpPacket]:
        out = self.flush()
        out.append(packet)
        self._next = (packet.sequence + 1) & _SEQ_MASK
        self._resync = None
        return out

    def _release(self) -> list[RtpPacket]:
        out: list[RtpPacket] = []
        pending = self._pending
        expected = self._next
        assert expected is not None
        while pending:
            packet = pending.pop(expected, None)
            if packet is not None:
                out.append(packet)
                expected = (expected + 1) & _SEQ_MASK
                continue
            ahead = [(seq - expected) & _SEQ_MASK for seq in pending]
            if max(ahead) < self.depth:
                break  # the gap may still fill
            skip = min(ahead)
            self.lost += skip
            expected = (expected + skip) & _SEQ_MASK
        self._next = expected
        return out
