"""Per-packet cost of handing caller audio to a recognizer: RecognizerStream.audio() with the Mediazen codec.

Many calls stream at once; each 20 ms packet of PCM16 goes into the call's stream, which coalesces it into
the codec's 100 ms frames and wakes its writer once per frame. The connection is in memory and only counts,
so the figure is the bridge's own cost, not the network's. Prints µs of CPU per packet, everything included
(the writer task, the event loop's scheduling).
"""

from __future__ import annotations

import asyncio
import logging
import time

import structlog

from ivr.asr.base import AsrEvent, Frame, RecognitionRequest
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.memory import MemoryConnection
from ivr.asr.stream import Connection, RecognizerStream

REPLY_OK = '{"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}'
CLOSE = '{"topic":"asr:ko","payload":{},"event":"close"}'
PACKET = bytes(320)  # 20 ms of PCM16 at 8 kHz


class CountingPeer:
    """A Mediazen server that accepts every join and quit, and only counts the audio."""

    def __init__(self) -> None:
        self.audio_bytes = 0

    def respond(self, frame: Frame) -> list[Frame]:
        if isinstance(frame, bytes):
            self.audio_bytes += len(frame)
            return []
        if '"join"' in frame:
            return [REPLY_OK]
        return [CLOSE] if '"quit"' in frame else []


async def measure(calls: int, packets: int) -> float:
    peers: list[CountingPeer] = []

    async def connect() -> Connection:
        peers.append(CountingPeer())
        return MemoryConnection(peers[-1].respond)

    def ignore(event: AsrEvent) -> None:
        pass

    streams = [RecognizerStream("mediazen", connect, lambda r: MediazenCodec(), ignore) for _ in range(calls)]
    for i, stream in enumerate(streams):
        await stream.recognize(RecognitionRequest(i + 1, "ko"))
    await asyncio.sleep(0.01)
    start = time.process_time()
    for _ in range(packets):
        for stream in streams:
            stream.audio(PACKET)
        await asyncio.sleep(0)  # the loop's turn, as between datagrams
    await asyncio.sleep(0)
    elapsed = time.process_time() - start
    sent = sum(p.audio_bytes for p in peers)
    assert sent >= calls * (packets - 5) * len(PACKET), f"only {sent} bytes reached the connections"
    await asyncio.gather(*(stream.close() for stream in streams))
    return elapsed / (calls * packets) * 1e6


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{'path':<60} {'µs/packet':>10}")
    for calls in (100, 1000):
        us = asyncio.run(measure(calls, 250))
        print(f"{f'RecognizerStream.audio(), {calls} calls, 20 ms packets -> 100 ms frames':<60} {us:>10.2f}")


if __name__ == "__main__":
    main()
