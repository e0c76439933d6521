"""Per-packet cost of handing caller audio to a recognizer, with the Mediazen codec.

Many calls stream at once. Two paths are measured:
- RecognizerStream.audio(): each 20 ms packet of PCM16 goes into the call's stream, which coalesces it into
  the codec's 100 ms frames and wakes its writer once per frame;
- the whole path: an RTP datagram into RtpSession's handler (latch check, parse, stats, jitter buffer, silence
  timeline, G.711 decode), through the listen turn (TurnRecognition, its replay buffer) into the stream, the
  codec and the writer, up to the connection's send.
The connection is in memory and only counts, so the figure is the bridge's own cost, not the network's (nor
the event loop's socket read, TOOLBOX.md). Prints µs of CPU per packet, everything included (the writer
task, the event loop's scheduling).

Run: .venv/bin/python bench/asr_audio_path.py
"""

from __future__ import annotations

import asyncio
import logging
import time

import structlog

from ivr.asr.base import AsrEvent, Frame, RecognitionRequest
from ivr.asr.failover import Candidate, TurnRecognition
from ivr.asr.mediazen import MediazenCodec
from ivr.asr.memory import MemoryConnection
from ivr.asr.stream import Connection, RecognizerStream
from ivr.media import g711
from ivr.media.rtp import RtpSender
from ivr.media.session import RtpSession

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


async def measure_whole_path(calls: int, packets: int) -> float:
    """RTP datagrams -> RtpSession -> TurnRecognition -> RecognizerStream -> codec -> writer -> send."""
    peers: list[CountingPeer] = []

    async def connect() -> Connection:
        peers.append(CountingPeer())
        return MemoryConnection(peers[-1].respond)

    def ignore(event: AsrEvent) -> None:
        pass

    sessions: list[RtpSession] = []
    turns: list[TurnRecognition] = []
    for i in range(calls):
        stream = RecognizerStream("mediazen", connect, lambda r: MediazenCodec(), ignore)
        turn = TurnRecognition(
            [Candidate("mediazen", RecognitionRequest(i + 1, "ko"))], lambda v, s=stream: s
        )
        session = RtpSession(
            local_host="127.0.0.1",
            port=0,
            remote_host="127.0.0.1",
            remote_port=9,
            payload_type=g711.PCMU,
            dtmf_payload_type=101,
            on_audio=turn.audio,
            on_dtmf=lambda digit: None,
            on_timeout=lambda: None,
            keepalive=False,
        )
        await session.start()
        session.audio_frame_ms = turn.frame_ms  # as the call sets it
        turn.start()
        sessions.append(session)
        turns.append(turn)
    await asyncio.sleep(0.01)
    sender = RtpSender(g711.PCMU, ssrc=1, sequence=0, timestamp=0)
    datagrams = [sender.packet(bytes(range(160)), 160) for _ in range(packets)]
    addr = ("127.0.0.1", 40000)
    start = time.process_time()
    for datagram in datagrams:
        for session in sessions:
            session._on_datagram(datagram, addr)
        await asyncio.sleep(0)  # the loop's turn, as between datagrams
    await asyncio.sleep(0)
    elapsed = time.process_time() - start
    sent = sum(p.audio_bytes for p in peers)
    assert sent >= calls * (packets - 10) * 320, f"only {sent} bytes reached the connections"
    for turn in turns:
        turn.cancel()
    for session in sessions:
        await session.close()
    return elapsed / (calls * packets) * 1e6


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{'path':<60} {'µs/packet':>10}")
    for calls in (100, 1000):
        us = asyncio.run(measure(calls, 250))
        print(f"{f'RecognizerStream.audio(), {calls} calls, 20 ms packets -> 100 ms frames':<60} {us:>10.2f}")
    for calls in (100, 1000):
        us = asyncio.run(measure_whole_path(calls, 250))
        print(f"{f'RTP datagram -> RtpSession -> turn -> stream -> send, {calls} calls':<60} {us:>10.2f}")


if __name__ == "__main__":
    main()
