"""The scripted caller's RTP: one UDP socket, a 20 ms µ-law frame out every tick (silence when it says
nothing, so RTP keeps flowing), RFC 4733 digits in place of audio, and every frame received handed on."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivr.media import g711
from ivr.media.dtmf import encode_event
from ivr.media.prompt import frames
from ivr.media.rtp import RtpError, RtpSender, parse_rtp

SAMPLES = 160  # 20 ms at 8 kHz
TICK = SAMPLES / 8000
DTMF_PAYLOAD_TYPE = 101
DIGIT_TICKS = 5  # 100 ms tone
GAP_TICKS = 4  # 80 ms between digits
END_REPEATS = 3  # the end packet goes out three times (RFC 4733 §2.5.1.4)


@dataclass(frozen=True)
class _Packet:
    payload: bytes
    payload_type: int
    marker: bool
    samples: int  # timestamp advance after this packet
    done: asyncio.Future[None] | None = None  # set once sent: the end of a phrase or a digit string


def digit_packets(digit: str) -> list[tuple[bytes, bool, int]]:
    """(payload, marker, timestamp advance) of one digit: updates every 20 ms, then the end packet three
    times; all share the event's timestamp, which then moves on by the event's length."""
    out = []
    for tick in range(1, DIGIT_TICKS + 1):
        out.append((encode_event(digit, False, 10, tick * SAMPLES), tick == 1, 0))
    end = encode_event(digit, True, 10, DIGIT_TICKS * SAMPLES)
    out += [(end, False, 0)] * (END_REPEATS - 1)
    out.append((end, False, (DIGIT_TICKS + END_REPEATS) * SAMPLES))
    return out


class RtpLeg(asyncio.DatagramProtocol):
    """Sends paced frames to the bridge's SDP address; calls `on_frame(payload, now)` for received PCMU."""

    def __init__(self, on_frame: Callable[[bytes, float], None]) -> None:
        self.on_frame = on_frame
        self.remote: tuple[str, int] | None = None
        self.sender = RtpSender(g711.PCMU)
        self.sent = 0
        self.received = 0
        self._queue: collections.deque[_Packet] = collections.deque()
        self._silence = g711.silence(g711.PCMU, SAMPLES)
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, host: str) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self._transport = transport
        return int(transport.get_extra_info("sockname")[1])

    def start(self, remote: tuple[str, int]) -> None:
        self.remote = remote
        self._task = asyncio.create_task(self._pace())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for packet in self._queue:
            if packet.done is not None and not packet.done.done():
                packet.done.cancel()
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        self.received += 1
        if packet.payload_type == g711.PCMU:
            self.on_frame(packet.payload, asyncio.get_running_loop().time())

    async def say(self, pcm: bytes) -> None:
        """Queue speech and wait until its last frame is sent."""
        done = asyncio.get_running_loop().create_future()
        chunks = frames(pcm, g711.PCMU, SAMPLES)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self._queue.append(_Packet(chunk, g711.PCMU, i == 0, SAMPLES, done if last else None))
        await done

    async def press(self, digits: str) -> None:
        done = asyncio.get_running_loop().create_future()
        for n, digit in enumerate(digits):
            for payload, marker, advance in digit_packets(digit):
                self._queue.append(_Packet(payload, DTMF_PAYLOAD_TYPE, marker, advance))
            for i in range(GAP_TICKS):
                last = n == len(digits) - 1 and i == GAP_TICKS - 1
                self._queue.append(_Packet(self._silence, g711.PCMU, False, SAMPLES, done if last else None))
        await done

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            packet = (
                self._queue.popleft() if self._queue else _Packet(self._silence, g711.PCMU, False, SAMPLES)
            )
            if self._transport is not None and self.remote is not None:
                data = self.sender.packet(
                    packet.payload, packet.samples, marker=packet.marker, payload_type=packet.payload_type
                )
                self._transport.sendto(data, self.remote)
                self.sent += 1
            if packet.done is not None and not packet.done.done():
                packet.done.set_result(None)
            tick += 1
            # Paced against the start, not the last send, so a slow tick does not slow the stream.
            await asyncio.sleep(max(0.0, start + tick * TICK - loop.time()))
