"""Per-packet cost of the media hot paths (one 20 ms G.711 frame), and what it means in packets/s per core.

Run: .venv/bin/python bench/media_path.py
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import timeit
from collections.abc import Callable

from ivr.media import g711
from ivr.media.dtmf import DtmfReceiver, encode_event
from ivr.media.jitter import JitterBuffer
from ivr.media.rtp import RtpPacket, RtpSender, RtpStats, parse_rtp
from ivr.media.session import RtpSession

FRAME = bytes(range(160))
PCM = g711.decode(FRAME, g711.PCMU)
ITERATIONS = 200_000


def per_call_us(func: Callable[[], object], number: int = ITERATIONS) -> float:
    best = min(timeit.repeat(func, number=number, repeat=5))
    return best / number * 1e6


def receive_path() -> Callable[[], object]:
    sender = RtpSender(g711.PCMU, ssrc=1, sequence=0, timestamp=0)
    packets = [sender.packet(FRAME, 160) for _ in range(65536)]
    jitter = JitterBuffer()
    state = {"i": 0}

    def step() -> object:
        i = state["i"]
        state["i"] = (i + 1) & 0xFFFF
        out = None
        for packet in jitter.push(parse_rtp(packets[i])):
            out = g711.decode(packet.payload, g711.PCMU)
        return out

    return step


def stats_update() -> Callable[[], object]:
    stats = RtpStats()
    packets = [RtpPacket(0, False, i, i * 160, 1, FRAME) for i in range(65536)]
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        state["i"] = (i + 1) & 0xFFFF
        stats.update(packets[i], i * 0.02)

    return step


def send_path() -> Callable[[], object]:
    sender = RtpSender(g711.PCMU)
    return lambda: sender.packet(g711.encode(PCM, g711.PCMU), 160)


def dtmf_path() -> Callable[[], object]:
    receiver = DtmfReceiver()
    # A digit's life: 6 updates and 3 end packets, one new event every 9 packets.
    packets = [
        RtpPacket(101, False, i, (i // 9) * 1600, 1, encode_event("5", i % 9 >= 6, 10, 160 * (i % 9 + 1)))
        for i in range(9 * 1000)
    ]
    state = {"i": 0}

    def step() -> object:
        i = state["i"]
        state["i"] = (i + 1) % len(packets)
        return receiver.feed(packets[i])

    return step


def session_datagram_us(*, passthrough: bool = False, frame_ms: int = 20) -> float:
    """RtpSession's whole per-datagram handler (parse, latch check, stats, jitter, decode, callback), called
    directly: the socket read itself is the event loop's cost (TOOLBOX.md). With `passthrough` the caller's
    G.711 goes to the callback as received (AmiVoice MULAW/ALAW): no decode. `frame_ms`: the audio handed
    over per callback (a call sets the recognizer's frame, 100 ms by default: one decode per five packets)."""

    async def measure() -> float:
        sender = RtpSender(g711.PCMU, ssrc=1, sequence=0, timestamp=0)
        packets = [sender.packet(FRAME, 160) for _ in range(65536)]
        session = RtpSession(
            local_host="127.0.0.1",
            port=0,
            remote_host="127.0.0.1",
            remote_port=9,
            payload_type=g711.PCMU,
            dtmf_payload_type=101,
            on_audio=lambda pcm: None,
            on_dtmf=lambda digit: None,
            on_timeout=lambda: None,
            keepalive=False,
        )
        await session.start()
        session.passthrough = passthrough
        session.audio_frame_ms = frame_ms
        addr = ("127.0.0.1", 40000)
        state = {"i": 0}

        def step() -> None:
            i = state["i"]
            state["i"] = (i + 1) & 0xFFFF
            session._on_datagram(packets[i], addr)

        try:
            return per_call_us(step)
        finally:
            await session.close()

    return asyncio.run(measure())


def sending_sessions(calls: int) -> tuple[socket.socket, list[RtpSession]]:
    """`calls` sessions sending to one socket nobody reads (so receiving costs nothing), keepalive off."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sessions = [
        RtpSession(
            local_host="127.0.0.1",
            port=0,
            remote_host="127.0.0.1",
            remote_port=sink.getsockname()[1],
            payload_type=g711.PCMU,
            dtmf_payload_type=None,
            on_audio=lambda pcm: None,
            on_dtmf=lambda digit: None,
            on_timeout=lambda: None,
            keepalive=False,
        )
        for _ in range(calls)
    ]
    return sink, sessions


def playback_us_per_frame(calls: int = 200, seconds: float = 1.0, *, use_uvloop: bool = False) -> float:
    """CPU per frame of `calls` concurrent play() loops (deadline timer, future, encode, sendto) on the
    running loop; the frames go to a socket nobody reads, so receiving costs nothing."""

    async def measure() -> float:
        sink, sessions = sending_sessions(calls)
        for session in sessions:
            await session.start()
        pcm = bytes(int(2 * 8000 * seconds))
        cpu = time.process_time()
        await asyncio.gather(*(session.play(pcm) for session in sessions))
        cpu = time.process_time() - cpu
        for session in sessions:
            await session.close()
        sink.close()
        return cpu / (calls * seconds * 50) * 1e6

    if use_uvloop:
        import uvloop

        return float(uvloop.run(measure()))
    return asyncio.run(measure())


def keepalive_us_per_frame(calls: int = 200, seconds: float = 1.0, *, use_uvloop: bool = False) -> float:
    """CPU per silence frame of `calls` idle sessions sending keepalive silence (one timer per frame, packet,
    sendto) for `seconds`, to a socket nobody reads."""

    async def measure() -> float:
        sink, sessions = sending_sessions(calls)
        for session in sessions:
            await session.start()
        cpu = time.process_time()
        for session in sessions:
            session.keepalive = True
        await asyncio.sleep(seconds)
        for session in sessions:
            session.keepalive = False
        cpu = time.process_time() - cpu
        for session in sessions:
            await session.close()
        sink.close()
        return cpu / (calls * seconds * 50) * 1e6

    if use_uvloop:
        import uvloop

        return float(uvloop.run(measure()))
    return asyncio.run(measure())


def main() -> None:
    rows = [
        (
            "parse_rtp alone",
            per_call_us(lambda: parse_rtp(b"\x80\x00\x00\x01\x00\x00\x00\xa0\x00\x00\x00\x01" + FRAME)),
        ),
        ("g711.decode alone (audioop)", per_call_us(lambda: g711.decode(FRAME, g711.PCMU))),
        (
            "g711.decode_array on one frame (numpy)",
            per_call_us(lambda: g711.decode_array(FRAME, g711.PCMU), 50_000),
        ),
        ("receive: parse_rtp + jitter push + decode", per_call_us(receive_path())),
        ("RtpStats.update", per_call_us(stats_update())),
        ("RtpSession datagram handler (all of the above + callback)", session_datagram_us()),
        ("the same, G.711 passed through (no decode)", session_datagram_us(passthrough=True)),
        ("the same, 100 ms frames to the callback (as a call listens)", session_datagram_us(frame_ms=100)),
        ("send: g711.encode + RtpSender.packet", per_call_us(send_path())),
        ("DtmfReceiver.feed", per_call_us(dtmf_path())),
        ("play(): 200 concurrent prompts, per frame sent (stock loop)", playback_us_per_frame()),
    ]
    with contextlib.suppress(ImportError):
        rows.append(("play(): the same on uvloop", playback_us_per_frame(use_uvloop=True)))
    play_row = rows[-1]
    rows.append(("keepalive silence: 200 idle calls, per frame sent (stock loop)", keepalive_us_per_frame()))
    with contextlib.suppress(ImportError):
        rows.append(("keepalive silence: the same on uvloop", keepalive_us_per_frame(use_uvloop=True)))
    width = max(len(name) for name, _ in rows)
    print(f"{'path':<{width}}  µs/packet  packets/s/core")
    for name, us in rows:
        print(f"{name:<{width}}  {us:9.2f}  {1e6 / us:14,.0f}")
    decoded, passed = rows[5][1], rows[6][1]
    saved = decoded - passed
    print(
        f"\npass-through saves {saved:.2f} µs per packet ({100 * saved / decoded:.0f} % of the handler),"
        " and halves the bytes sent to the vendor (8 kB/s instead of 16 kB/s)"
    )
    receive = decoded
    send = play_row[1]
    per_call = 50 * (receive + send)  # 50 packets/s each way per call at 20 ms ptime
    print(
        f"\none call (50 packets/s in through the session handler, 50 played out; {play_row[0]}):"
        f" {per_call:.0f} µs CPU per second -> {1e6 / per_call:,.0f} calls per core"
        " (the loop's socket read per received packet, ~5 µs uvloop / ~33 µs stock, is not included)"
    )
    keepalive = rows[-1]
    print(
        f"keepalive between prompts ({keepalive[0]}): {50 * keepalive[1]:.0f} µs CPU per second per"
        " idle call, in place of (not on top of) the prompt frames it stands in for"
    )


if __name__ == "__main__":
    main()
