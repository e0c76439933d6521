"""The load side's fast paths give what the slow ones give: the generator's bulk packets are byte for byte
the per-packet ones, and the sink's marker-only read counts and times exactly what the full decode does."""

from __future__ import annotations

import argparse
import asyncio
import audioop
import os
import random
import socket
import struct

import numpy as np
import pytest

from bench.load import generator, marker, mmsg, sink
from bench.load.marker import PAYLOAD_LEN, call_prefix, fill_payloads, payload, static_payloads


def test_the_bulk_payloads_are_the_per_packet_ones() -> None:
    rng = random.Random(7)
    calls = [rng.randrange(marker.MAX_CALL) for _ in range(257)] + [0, marker.MAX_CALL - 1]
    seqs = [rng.randrange(2**40) for _ in calls[:-2]] + [marker.MAX_SEQ - 1, marker.MAX_SEQ]
    for sent_us in (0, rng.randrange(2**60), marker.MAX_TIME_US - 1, marker.MAX_TIME_US + 5):
        rows = np.zeros((len(calls), 12 + PAYLOAD_LEN), np.uint8)
        static_payloads(rows, 12, [call_prefix(c) for c in calls])
        fill_payloads(rows, 12, np.array(seqs, np.int64), sent_us)
        for i, (call, seq) in enumerate(zip(calls, seqs, strict=True)):
            assert rows[i, 12:].tobytes() == payload(call_prefix(call), seq, sent_us)


def _generator(bulk: bool) -> generator.Generator:
    args = argparse.Namespace(local_host="127.0.0.1", target="127.0.0.1:5060", mode="direct")
    gen = generator.Generator(args)
    gen.bulk = bulk and mmsg.available()
    return gen


def _receiver(count: int) -> tuple[list[socket.socket], list[tuple[str, int]]]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks.append(s)
    return socks, [s.getsockname() for s in socks]


def _drain(socks: list[socket.socket]) -> list[list[bytes]]:
    got = []
    for s in socks:
        s.setblocking(False)
        packets = []
        while True:
            try:
                packets.append(s.recv(2048))
            except BlockingIOError:
                break
        got.append(packets)
    return got


@pytest.mark.skipif(not mmsg.available(), reason="no sendmmsg in this libc")
def test_the_generator_sends_the_same_packets_with_sendmmsg_as_with_sendto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same calls (load, a speech test call, a DTMF call keying a digit mid-way), same ticks, same clock:
    the same datagrams to the same ports, and the same accounting."""
    now = [0]

    def monotonic_ns() -> int:
        return now[0]

    monkeypatch.setattr(generator.time, "monotonic_ns", monotonic_ns)
    results = []
    for bulk in (False, True):

        async def run(bulk: bool = bulk) -> tuple[list[list[bytes]], dict[int, int], int]:
            gen = _generator(bulk)
            clock = iter(range(1_000_000_000_000, 10**18, 7_000_000))  # 7 ms a tick
            indexes = [(i, generator.Kind.LOAD) for i in range(0, 40, 3)]
            indexes += [
                (generator.SPEECH_BASE, generator.Kind.SPEECH),
                (generator.DTMF_BASE + 1, generator.Kind.DTMF),
            ]
            socks, addresses = _receiver(len(indexes))
            calls = []
            for (index, kind), address in zip(indexes, addresses, strict=True):
                call = gen.new_call(index, kind)
                call.rtp = address
                call.seq, call.timestamp = 65530 + index, 2**32 - 320 + index
                gen.start_media(call)
                calls.append(call)
            gen.tick_start = 0.0
            for step in range(4 * generator.GROUPS):
                now[0] = next(clock)
                if step == 13:
                    gen.queue_dtmf(calls[-1], generator.DTMF_DIGIT)
                if step == 17:
                    gen.stop_media(calls[0])
                gen.tick_index = step
                monkeypatch.setattr(generator.time, "monotonic", lambda step=step: step * generator.TICK)
                gen.tick()
            gen.rtp.close()
            got = _drain(socks)
            for s in socks:
                s.close()
            return got, dict(gen.sent), gen.send_errors

        results.append(asyncio.run(run()))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert x.hex() == y.hex()
    assert results[0] == results[1]
    got = results[0][0]
    assert any(p[1] & 0x7F == generator.DTMF_PT for p in got[-1])  # the digit was keyed
    assert sum(results[0][1].values()) > 0


def _frame(pcm: bytes, key: bytes, opcode: int = 2) -> bytes:
    n = len(pcm)
    head = (
        bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
        if n >= 126
        else bytes((0x80 | opcode, 0x80 | n))
    )
    return head + key + sink.unmask(pcm, key)


def _messages() -> list[bytes]:
    """Masked frames of every kind: the usual ones, straddling a second, silence, partly silent, test calls,
    other sizes, a chance magic in a marker's digits and among the samples, a marker that does not decode."""
    rng = random.Random(11)
    ulaw_silence = audioop.lin2ulaw(bytes(2 * PAYLOAD_LEN), 2)
    out = []
    seq = 0
    for n in range(400):
        call = rng.choice([3, 999, 1234, sink.TEST_CALLS_FROM + 1, 62000])
        frames = rng.choice([5, 5, 5, 5, 1, 2, 10])
        base = rng.choice([5_000_000, 5_960_000, 6_999_990 - 20_000 * frames, rng.randrange(2**40)])
        parts = [payload(call_prefix(call), seq + i, base + 20_000 * i) for i in range(frames)]
        seq += frames
        kind = n % 9
        if kind == 1:
            parts[rng.randrange(frames)] = ulaw_silence
        elif kind == 2:
            parts = [ulaw_silence] * frames
        elif kind == 3:  # a magic by chance in the digits: A5 5A as the call pair
            parts[0] = marker.MAGIC + marker.MAGIC + parts[0][4:]
        elif kind == 4:  # a magic among the samples
            i = rng.randrange(frames)
            parts[i] = parts[i][:100] + marker.MAGIC + parts[i][102:]
        elif kind == 5:  # a marker that does not decode (0xFF in a digit)
            i = rng.randrange(frames)
            parts[i] = parts[i][:6] + b"\xff" + parts[i][7:]
        ulaw = b"".join(parts)
        if kind == 6:
            ulaw = ulaw[:-2]  # not whole frames
        elif kind == 7:
            ulaw = ulaw[80:] + ulaw[:80]  # not aligned on frames
        out.append(_frame(audioop.ulaw2lin(ulaw, 2), os.urandom(4)))
    return out


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def _run_sink(
    frames: list[bytes], quick: bool, chunks: list[int]
) -> tuple[dict[str, object], list[bytes], dict[int, int], dict[int, list[float]]]:
    tally = sink.Tally()
    protocol = sink.SinkProtocol(tally)
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.quick = quick
    stream = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    stream += _frame(b'{"cmd": "join", "language": "ko"}', os.urandom(4), 1)
    stream += b"".join(frames)
    pos, i = 0, 0
    while pos < len(stream):  # the stream cut at arbitrary points, as TCP may
        size = chunks[i % len(chunks)]
        protocol.data_received(stream[pos : pos + size])
        pos += size
        i += 1
    return (
        tally.summary(4, 8),
        transport.written,
        dict(tally.marks),
        {k: list(v) for k, v in tally.latency.items()},
    )


def test_the_sink_counts_and_times_what_the_full_decode_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink.time, "monotonic", lambda: 7.25)
    frames = _messages()
    full = _run_sink(frames, False, [1 << 20])
    assert full[0]["messages"] == len(frames)
    for chunks in ([1 << 20], [1608, 1608, 700, 3000], [1, 7, 4096]):
        assert _run_sink(frames, True, chunks) == full
    assert full[0]["unmarked_messages"] and full[0]["speech_results_sent"] == 1  # 60001 answered, once


def test_quick_marks_agrees_with_the_full_decode_or_declines() -> None:
    read = declined = 0
    for data in _messages():
        key, body = data[4:8], data[8:]
        pcm = sink.unmask(body, key)
        quick = sink.quick_marks(body, key)
        if quick is None:
            declined += 1
            continue
        read += 1
        frames, call, times = quick
        marks = marker.decode_pcm16(pcm)
        assert frames == len(marks) == (len(pcm) // 320 if marks else 0)
        if marks:
            assert call == marks[0].call
            assert times[0] == marks[0].sent_us and times[-1] == marks[-1].sent_us
            if len(times) > 2 or times[0] // 1_000_000 != times[-1] // 1_000_000:
                assert times == [m.sent_us for m in marks]
    assert read > 150 and declined > 100


def test_unmask_is_its_own_inverse() -> None:
    body, key = os.urandom(1603), os.urandom(4)
    assert sink.unmask(sink.unmask(body, key), key) == body
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == sink.unmask(body, key)
