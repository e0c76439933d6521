"""The compiled batch receiver on real UDP sockets, driven with explicit loop times: the lane's in-order path
must count exactly what RtpStats, the jitter buffer and the timeline would have counted in Python."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ivr.media import (
    _batchrx,
    batchrx,
    g711,
)  # `make test` builds it (setup.py): an ImportError here is a failure
from ivr.media.rtp import RtpStats

SSRC = 0x5EED


def test_sessions_use_the_batch_receiver() -> None:
    # Without it every session falls back to the loop's transport, which works, only slower: say so here.
    assert batchrx.AVAILABLE


def rtp(seq: int, ts: int, payload: bytes, *, pt: int = 0, ssrc: int = SSRC, first: int = 0x80) -> bytes:
    return struct.pack("!BBHII", first, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class Events:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.datagrams: list[tuple[bytes, tuple[Any, ...]]] = []

    def on_audio(self, frame: bytes) -> None:
        self.frames.append(frame)

    def on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.datagrams.append((data, addr))


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    receiving = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiving.bind(("127.0.0.1", 0))
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    yield receiving, caller, stranger
    for s in (receiving, caller, stranger):
        s.close()


class Listening:
    """A receiver with one lane on the receiving socket, and what reached its callbacks."""

    def __init__(self, receiving: socket.socket, pace_ms: int = 0) -> None:
        self.events = Events()
        self.receiver = _batchrx.Receiver(pace_ms=pace_ms)
        self.lane = self.receiver.add(receiving.fileno(), self.events.on_datagram, self.events.on_audio)


@pytest.fixture
def listening(sockets: tuple[socket.socket, socket.socket, socket.socket]) -> Iterator[Listening]:
    it = Listening(sockets[0])
    yield it
    it.lane.close()


def receive_all(receiver: Any, now: float, expected: int) -> None:
    got = 0
    for _ in range(200):  # loopback delivery is immediate, but not inside sendto
        got += receiver.receive(now)
        if got >= expected:
            return
    raise AssertionError(f"{got} of {expected} datagrams arrived")


def test_in_order_audio_becomes_frames_with_the_counters_rtpstats_would_keep(
    sockets: tuple[socket.socket, socket.socket, socket.socket], listening: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = listening.events, listening.receiver, listening.lane
    source = caller.getsockname()
    stats = RtpStats(8000)
    stats.record(SSRC, 65533, 1000, 10.0)  # what Python saw before arming: one packet
    lane.arm(
        source,
        0,
        SSRC,
        65534,
        1160,
        800,
        b"\x01" * 160,
        stats.jitter,
        stats.transit,
        _batchrx.PASSTHROUGH,
    )
    assert lane.armed and lane.held == 160
    reference = RtpStats(8000)
    reference.record(SSRC, 65533, 1000, 10.0)
    for i in range(9):  # 65534 .. 6: the sequence number wraps
        seq, ts, now = (65534 + i) & 0xFFFF, 1160 + 160 * i, 10.02 + 0.02 * i + (0.003 if i % 2 else 0)
        caller.sendto(rtp(seq, ts, bytes([i + 2]) * 160), receiving.getsockname())
        receive_all(receiver, now, 1)
        reference.record(SSRC, seq, ts, now)
    # 160 held + 9 x 160 = 1,600 samples: two frames of 800, the second released by the ninth packet
    assert [len(f) for f in events.frames] == [800, 800]
    assert events.frames[0] == b"\x01" * 160 + b"".join(bytes([i + 2]) * 160 for i in range(4))
    assert events.datagrams == []
    assert lane.pending == 9 * 160
    packets, wraps, sequence, timestamp, samples, arrival, jitter, transit, foreign = lane.sync()
    assert (packets, wraps, foreign) == (9, 1, 0)  # one wrap through 0
    assert sequence == 7 and timestamp == 1160 + 160 * 9 and samples == 9 * 160
    assert arrival == 10.02 + 0.02 * 8 and lane.pending == 0 and lane.armed
    stats.advance(packets, wraps, sequence, jitter, transit)
    assert (stats.received, stats.expected, stats.lost) == (reference.received, reference.expected, 0)
    assert stats.jitter == reference.jitter and stats.transit == reference.transit
    assert stats.next_sequence == reference.next_sequence == 7


def test_anything_out_of_order_goes_to_python_and_strangers_are_counted(
    sockets: tuple[socket.socket, socket.socket, socket.socket], listening: Listening
) -> None:
    receiving, caller, stranger = sockets
    events, receiver, lane = listening.events, listening.receiver, listening.lane
    lane.arm(caller.getsockname(), 0, SSRC, 100, 16000, 800, b"", 0.0, None, _batchrx.PASSTHROUGH)
    to = receiving.getsockname()
    odd = [
        rtp(101, 16000, bytes(160)),  # a sequence number ahead: loss
        rtp(100, 16160, bytes(160)),  # a timestamp jump
        rtp(100, 16000, bytes(4), pt=101),  # RFC 4733
        rtp(100, 16000, bytes(160), ssrc=7),  # another SSRC
        rtp(100, 16000, bytes(160), first=0x90),  # a header extension bit
        rtp(100, 16000, b""),  # a header and nothing else
        b"\x00" * 3,  # not RTP
    ]
    for data in odd:
        caller.sendto(data, to)
    stranger.sendto(rtp(100, 16000, bytes(160)), to)
    receive_all(receiver, 1.0, len(odd) + 1)
    assert [d for d, _ in events.datagrams] == odd  # unchanged, in order
    assert {a for _, a in events.datagrams} == {caller.getsockname()}
    assert events.frames == []
    held, counters = lane.disarm()
    assert held == b"" and counters[0] == 0 and counters[8] == 1  # the stranger, counted and dropped
    assert not lane.armed
    caller.sendto(rtp(100, 16000, bytes(160)), to)  # disarmed: even the next in order goes to Python
    receive_all(receiver, 1.1, 1)
    assert len(events.datagrams) == len(odd) + 1


def test_a_callback_that_closes_its_lane_or_raises_stops_nothing_else(
    sockets: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    receiving, caller, stranger = sockets
    failures: list[BaseException] = []
    receiver = _batchrx.Receiver(on_error=failures.append)
    seen: list[bytes] = []
    lane: Any = None

    def closing(data: bytes, addr: tuple[Any, ...]) -> None:
        seen.append(data)
        lane.close()

    def failing(data: bytes, addr: tuple[Any, ...]) -> None:
        seen.append(data)
        raise RuntimeError("a session bug")

    lane = receiver.add(receiving.fileno(), closing, failing)
    other = receiver.add(stranger.fileno(), failing, failing)
    try:
        for n in range(3):
            caller.sendto(bytes([n]) * 20, receiving.getsockname())
            caller.sendto(bytes([9]) * 20, stranger.getsockname())
        receive_all(receiver, 1.0, 4)  # the first lane stops at its first datagram; the other reads all 3
        assert seen.count(bytes([9]) * 20) == 3 and seen.count(bytes(20)) == 1
        assert len(failures) == 3 and all(isinstance(f, RuntimeError) for f in failures)
        assert receiver.receive(1.1) == 0  # the closed lane is out of the epoll set
    finally:
        other.close()


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_frames_are_decoded_exactly_as_g711_decode_does(
    sockets: tuple[socket.socket, socket.socket, socket.socket], listening: Listening, payload_type: int
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = listening.events, listening.receiver, listening.lane
    codec = batchrx.codec(payload_type, passthrough=False)
    lane.arm(caller.getsockname(), payload_type, SSRC, 1, 0, 256, b"", 0.0, None, codec)
    every_code = bytes(range(256))
    caller.sendto(rtp(1, 0, every_code[:128], pt=payload_type), receiving.getsockname())
    caller.sendto(rtp(2, 128, every_code[128:], pt=payload_type), receiving.getsockname())
    receive_all(receiver, 1.0, 2)
    assert events.frames == [g711.decode(every_code, payload_type)]


@pytest.fixture
def paced(sockets: tuple[socket.socket, socket.socket, socket.socket]) -> Iterator[Listening]:
    it = Listening(sockets[0], pace_ms=4)
    yield it
    it.lane.close()


def send(caller: socket.socket, to: tuple[Any, ...], first: int, last: int) -> None:
    """20 ms packets of sequence numbers `first` to `last` (five make an 800-sample frame), all at once."""
    for seq in range(first, last + 1):
        caller.sendto(rtp(seq, 160 * (seq - 1), bytes([seq]) * 160), to)


def first_frame(paced: Listening, caller: socket.socket, to: tuple[Any, ...]) -> float:
    """Arm the paced lane, hand it one frame as it arrives; when its next paced read is due."""
    paced.lane.arm(caller.getsockname(), 0, SSRC, 1, 0, 800, b"", 0.0, None, _batchrx.PASSTHROUGH)
    assert paced.lane.due is None  # armed, not yet paced: read as it arrives
    send(caller, to, 1, 5)
    receive_all(paced.receiver, time.monotonic(), 5)
    assert len(paced.events.frames) == 1
    due = paced.lane.due
    assert due is not None
    return due


def wait_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()) + 0.002)


def test_a_paced_lane_reads_the_next_frame_whole_when_it_is_due_with_kernel_arrival_times(
    sockets: tuple[socket.socket, socket.socket, socket.socket], paced: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = paced.events, paced.receiver, paced.lane
    to = receiving.getsockname()
    due = first_frame(paced, caller, to)
    assert 0.104 <= due - lane.arrival < 0.106  # the next frame's last packet is due in 5 x 20 ms, + 4 ms
    send(caller, to, 6, 10)
    time.sleep(0.01)
    assert receiver.receive(time.monotonic()) == 0  # it waits in the socket until then
    assert len(events.frames) == 1
    wait_until(due)
    read_at = time.monotonic()
    assert receiver.receive(read_at) == 5  # the whole frame in one read
    assert events.frames[1] == b"".join(bytes([seq]) * 160 for seq in range(6, 11))
    assert lane.due is not None and lane.due > due  # and the next one is paced too
    # The arrival is the kernel's, of the last packet, long before the read: the jitter is measured on it.
    assert lane.arrival < read_at - 0.05
    packets, _, sequence, *_ = lane.sync()
    assert (packets, sequence) == (10, 11) and events.datagrams == []


def test_a_paced_read_that_comes_up_short_looks_once_more_then_waits_for_the_rest_on_arrival(
    sockets: tuple[socket.socket, socket.socket, socket.socket], paced: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = paced.events, paced.receiver, paced.lane
    to = receiving.getsockname()
    due = first_frame(paced, caller, to)
    send(caller, to, 6, 9)  # the second frame's last packet is late
    wait_until(due)
    assert receiver.receive(time.monotonic()) == 4
    again = lane.due
    assert len(events.frames) == 1 and again is not None and again - due < 0.01  # a second look, soon
    send(caller, to, 10, 10)
    wait_until(again)
    assert receiver.receive(time.monotonic()) == 1 and len(events.frames) == 2
    due = lane.due
    assert due is not None  # paced again, with a wider margin for this caller: 4 + 4 ms
    assert 0.108 <= due - lane.arrival < 0.110
    send(caller, to, 11, 14)  # the third frame's last packet is later still
    wait_until(due)
    assert receiver.receive(time.monotonic()) == 4
    again = lane.due
    assert again is not None
    wait_until(again)
    assert receiver.receive(time.monotonic()) == 0
    assert lane.due is None  # back under epoll
    send(caller, to, 15, 15)
    receive_all(receiver, time.monotonic(), 1)  # read as soon as it comes
    assert len(events.frames) == 3 and lane.due is not None
    reads, datagrams, paced_reads, short_reads, parked = receiver.counters()
    assert (datagrams, paced_reads, short_reads, parked) == (15, 4, 3, 1) and reads > paced_reads


def test_disarming_a_paced_lane_hands_python_every_datagram_as_it_comes(
    sockets: tuple[socket.socket, socket.socket, socket.socket], paced: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = paced.events, paced.receiver, paced.lane
    to = receiving.getsockname()
    first_frame(paced, caller, to)
    lane.disarm()
    assert lane.due is None
    dtmf = rtp(6, 800, bytes(4), pt=101)
    caller.sendto(dtmf, to)
    receive_all(receiver, time.monotonic(), 1)  # now, not when the frame would have been due
    assert [d for d, _ in events.datagrams] == [dtmf]


def test_a_payload_larger_than_the_lanes_room_is_taken_whole(
    sockets: tuple[socket.socket, socket.socket, socket.socket], listening: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = listening.events, listening.receiver, listening.lane
    lane.arm(caller.getsockname(), 0, SSRC, 1, 0, 800, b"", 0.0, None, _batchrx.PASSTHROUGH)
    payload = bytes(i % 251 for i in range(6000))  # 750 ms in one packet: legal, if odd
    caller.sendto(rtp(1, 0, payload), receiving.getsockname())
    receive_all(receiver, 1.0, 1)
    assert events.frames == [payload[:5600]] and lane.held == 400 and events.datagrams == []  # 7 frames


def test_30_ms_packets_grow_the_lanes_room_past_its_first_size(
    sockets: tuple[socket.socket, socket.socket, socket.socket], listening: Listening
) -> None:
    receiving, caller, _ = sockets
    events, receiver, lane = listening.events, listening.receiver, listening.lane
    lane.arm(caller.getsockname(), 0, SSRC, 1, 0, 800, b"", 0.0, None, _batchrx.PASSTHROUGH)
    audio = bytes(i % 251 for i in range(2400))
    for n in range(10):  # the room is a frame and a 20 ms packet: a 240-byte one does not fit at first
        caller.sendto(rtp(1 + n, 240 * n, audio[240 * n : 240 * (n + 1)]), receiving.getsockname())
    receive_all(receiver, 1.0, 10)
    assert b"".join(events.frames) == audio[:2400] and lane.held == 0 and events.datagrams == []
