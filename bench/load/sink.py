"""A counting recognizer sink that speaks enough of the Mediazen WebSocket protocol for the bridge's client.

It recognizes nothing: a join gets `reply ok`, audio is only counted and timed through the markers it carries
(bench/load/marker.py), a quit gets `close`. Calls whose index is in the speech-test range get one
`new:text` result (text "bench", end point) after a second of audio, so speech routing is checked at load.
A minimal WebSocket server (RFC 6455, unfragmented frames) on uvloop keeps the sink's own cost low enough to
share a core with the load generator.

Run: python -m bench.load.sink --port P --out result.json --window-file window.json (SIGTERM ends it)
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import base64
import hashlib
import json
import signal
import socket
import struct
import time
from array import array
from collections import defaultdict
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

from bench.load.marker import BASE, MAGIC, MARKER_LEN, PAYLOAD_LEN, QUIET, SYMBOLS, decode_ulaw, mark_at

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_U16, _U64 = struct.Struct("!H"), struct.Struct("!Q")
TEST_CALLS_FROM = 60000  # call indexes from here on are routing test and churn calls (see generator.py)
SPEECH_CALLS = range(60000, 61000)  # the speech test calls
SPEECH_AFTER_FRAMES = 50  # a second of audio before the test result
SPEECH_TEXT = "bench"
FRAME_PCM = 2 * PAYLOAD_LEN  # one 20 ms packet decoded to PCM16: 320 bytes
MARKER_PCM = 2 * MARKER_LEN  # its marker: the first 28 of them
QUIET_PCM = audioop.ulaw2lin(QUIET, 2)  # the rest: the generator's quiet signal, decoded


_QUIET_INT = int.from_bytes(QUIET_PCM, "little")
_QUIET_REPEAT = sum(1 << (32 * i) for i in range(len(QUIET_PCM) // 4))
_DIGIT = bytes(SYMBOLS.find(b) % BASE for b in range(256))  # µ-law byte -> its digit (0x7F, 0xFF: 0)
_MAGIC0, _MAGIC1 = MAGIC[:1], MAGIC[1:]


def unmask(body: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3: XOR with the 4-byte key, repeated from the body's first byte."""
    length = len(body)
    if not key or not length:
        return body
    tiled = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(body, "little") ^ int.from_bytes(tiled, "little")).to_bytes(length, "little")


def _time_at(d: bytes, i: int) -> int:
    """The send time of the marker at `i` of `d` (its µ-law bytes translated to digits)."""
    return (
        (((d[i + 8] * BASE + d[i + 9]) * BASE + d[i + 10]) * BASE + d[i + 11]) * BASE + d[i + 12]
    ) * BASE + d[i + 13]


class _Slices(
    dict[int, tuple[Callable[[bytes], tuple[bytes, ...]], Callable[[bytes], tuple[bytes, ...]], int]]
):
    """frames -> (the marker parts of a message, its quiet parts, the key repeated over its markers)."""

    def __missing__(self, frames: int) -> tuple[Any, Any, int]:
        ends = range(0, frames * FRAME_PCM, FRAME_PCM)
        heads = itemgetter(*[slice(o, o + MARKER_PCM) for o in ends], slice(0, 0))  # always a tuple
        quiets = itemgetter(*[slice(o + MARKER_PCM, o + FRAME_PCM) for o in ends], slice(0, 0))
        repeat = sum(1 << (32 * i) for i in range(frames * MARKER_PCM // 4))
        value = self[frames] = (heads, quiets, repeat)
        return value


_SLICES = _Slices()


def quick_marks(masked: bytes, key: bytes) -> tuple[int, int, list[int]] | None:
    """What a still-masked audio message's markers say, read from the marker bytes alone, when the message is
    the usual one: whole 20 ms frames, each the generator's marker then its quiet signal unchanged. Returns
    (frames, call index of the first marker, send times in µs: of every frame when they fall in more than
    one second, else of the first and the last only); (0, -1, []) when the message is all digital silence.
    None for anything else, which the caller decodes in full: only then could the full decode
    (`SinkProtocol._audio`) find something else (a chance magic among the samples, silence filled in,
    other frame sizes, a marker that does not decode).

    Every frame starts at a multiple of 320 bytes, so of 4, and the key's phase there is 0: the markers of
    all frames join into one string unmasked with one key, and every quiet part (28 bytes on, phase 0 too)
    is compared with one masked copy of the expected signal."""
    length = len(masked)
    if len(key) != 4 or not length or length % FRAME_PCM:
        return None
    frames = length // FRAME_PCM
    heads, quiets, repeat = _SLICES[frames]
    key_int = int.from_bytes(key, "little")
    joined = b"".join(heads(masked))
    ulaw = audioop.lin2ulaw(
        (int.from_bytes(joined, "little") ^ key_int * repeat).to_bytes(len(joined), "little"), 2
    )
    if (
        ulaw[0::MARKER_LEN] != _MAGIC0 * frames
        or ulaw[1::MARKER_LEN] != _MAGIC1 * frames
        or b"\x7f" in ulaw
        or b"\xff" in ulaw
    ):  # not every frame starts with a marker that decodes
        if masked == key * (length // 4):
            return 0, -1, []  # all zeros: what the full decode calls an unmarked message
        return None
    quiet = (_QUIET_INT ^ key_int * _QUIET_REPEAT).to_bytes(len(QUIET_PCM), "little")
    if quiets(masked) != (quiet,) * frames + (b"",):
        return None
    d = ulaw.translate(_DIGIT)
    last = MARKER_LEN * (frames - 1)
    first_us, last_us = _time_at(d, 0), _time_at(d, last)
    if first_us // 1_000_000 == last_us // 1_000_000:
        times = [first_us, last_us]
    else:
        times = [_time_at(d, i) for i in range(0, last + 1, MARKER_LEN)]
    return frames, d[2] * BASE + d[3], times


def _quantile(ordered: list[float], q: float) -> float:
    """The `q` quantile of a sorted, non-empty list (nearest rank, as the generator's)."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Tally:
    """What every connection saw: markers per second of send time, and latency per WebSocket message."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = defaultdict(int)  # int(send time s) -> markers received
        self.latency: dict[int, array[float]] = defaultdict(lambda: array("d"))  # by send second of the last
        self.messages = 0
        self.unmarked = 0  # audio messages without any marker (silence the bridge filled in)
        self.joins = 0
        self.handshakes = 0
        self.quits = 0
        self.results_sent = 0
        self.connections = 0
        self.peak_connections = 0
        self.open = 0

    def summary(self, start: int, end: int) -> dict[str, object]:
        marks = sum(self.marks.get(s, 0) for s in range(start, end))
        latencies = sorted(x for s in range(start, end) for x in self.latency.get(s, ()))

        def pct(q: float) -> float | None:
            return _quantile(latencies, q) * 1000 if latencies else None

        def p99_ms(second: int) -> float | None:
            ordered = sorted(self.latency.get(second, ()))
            return round(_quantile(ordered, 0.99) * 1000, 1) if ordered else None

        return {
            "window": [start, end],
            "latency_p99_ms_by_second": [p99_ms(s) for s in range(start, end)],
            "marks_in_window": marks,
            "latency_samples": len(latencies),
            "latency_p50_ms": pct(0.50),
            "latency_p99_ms": pct(0.99),
            "latency_max_ms": latencies[-1] * 1000 if latencies else None,
            "messages": self.messages,
            "unmarked_messages": self.unmarked,
            "handshakes": self.handshakes,
            "joins": self.joins,
            "quits": self.quits,
            "speech_results_sent": self.results_sent,
            "connections": self.connections,
            "peak_open": self.peak_connections,
        }


class SinkProtocol(asyncio.Protocol):
    """One WebSocket connection from the bridge (one recognition)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.pending = b""  # the start of a frame still to come
        self.quick = True  # read the usual messages' markers alone (quick_marks); False: decode all
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.language = "ko"
        self.frames = 0
        self.answered = False
        self.arrived = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tally = self.tally
        tally.connections += 1
        tally.open += 1
        tally.peak_connections = max(tally.peak_connections, tally.open)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.open -= 1

    def data_received(self, data: bytes) -> None:
        self.received(data, time.monotonic())

    def received(self, data: bytes, arrived: float) -> None:
        """`data` from the connection, the kernel's arrival time of its last byte (CLOCK_MONOTONIC)."""
        self.arrived = arrived
        if self.pending:
            data = self.pending + data
            self.pending = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.pending = data
                return
            self._handshake(data[:end])
            data = data[end + 4 :]
        used = self._frames(data)
        if used < len(data):
            self.pending = data[used:]

    def _handshake(self, head: bytes) -> None:
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True
        self.tally.handshakes += 1

    def _frames(self, data: bytes) -> int:
        """Handle every whole frame in `data`; how many bytes they took."""
        pos, size = 0, len(data)
        while size - pos >= 2:
            opcode = data[pos] & 0x0F
            length = data[pos + 1] & 0x7F
            masked = data[pos + 1] & 0x80
            head = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = _U16.unpack_from(data, pos + 2)[0]
                head = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = _U64.unpack_from(data, pos + 2)[0]
                head = pos + 10
            key = b""
            if masked:
                key = data[head : head + 4]
                head += 4
            if size < head + length:
                break
            body = data[head : head + length]
            pos = head + length
            if opcode == 2 and self.quick:
                quick = quick_marks(body, key)
                if quick is not None:
                    self._count(*quick, self.arrived)
                    continue
            self._message(opcode, unmask(body, key))
        return pos

    def _send(self, opcode: int, body: bytes) -> None:
        n = len(body)
        head = bytes((0x80 | opcode, n)) if n < 126 else bytes((0x80 | opcode, 126)) + struct.pack("!H", n)
        assert self.transport is not None
        self.transport.write(head + body)

    def _send_json(self, message: dict[str, object]) -> None:
        self._send(1, json.dumps(message).encode())

    def _message(self, opcode: int, body: bytes) -> None:
        if opcode == 2:
            self._audio(body)
        elif opcode == 1:
            self._command(body)
        elif opcode == 9:
            self._send(10, body)  # the client's keepalive ping
        elif opcode == 8:
            self._send(8, body[:2])
            assert self.transport is not None
            self.transport.close()

    def _command(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        cmd = message.get("cmd") if isinstance(message, dict) else None
        self.language = str(message.get("language", "ko")) if isinstance(message, dict) else "ko"
        topic = f"asr:{self.language}"
        if cmd == "join":
            self.tally.joins += 1
            self._send_json({"topic": topic, "payload": {"status": "ok"}, "event": "reply"})
        elif cmd == "quit":
            self.tally.quits += 1
            self._send_json({"topic": topic, "payload": {}, "event": "close"})

    def _audio(self, pcm: bytes) -> None:
        arrived = self.arrived
        tally = self.tally
        tally.messages += 1
        ulaw = audioop.lin2ulaw(pcm, 2)
        count = ulaw.count(MAGIC)
        if not count:
            tally.unmarked += 1
            return
        first = last = None
        if count == len(ulaw) // PAYLOAD_LEN:  # the usual case: one marker at the start of every 20 ms frame
            first = mark_at(ulaw, ulaw.find(MAGIC))
            last = mark_at(ulaw, ulaw.rfind(MAGIC))
        marks = None
        if first is None or last is None:  # filled-in silence, or a chance magic inside a marker's digits
            marks = decode_ulaw(ulaw)
            if not marks:
                return
            first, last, count = marks[0], marks[-1], len(marks)
        if first.call >= TEST_CALLS_FROM:
            self._maybe_answer(first.call, count)
            return  # routing test calls end early by design: only the load is counted and timed
        last_s = last.sent_us / 1e6
        tally.latency[int(last_s)].append(arrived - last_s)
        second = last.sent_us // 1_000_000
        if first.sent_us // 1_000_000 == second:
            tally.marks[second] += count
        else:  # the message straddles a second of send time: each marker counts in its own
            for mark in marks or decode_ulaw(ulaw):
                tally.marks[mark.sent_us // 1_000_000] += 1

    def _count(self, frames: int, call: int, times: list[int], arrived: float) -> None:
        """`_audio`'s accounting, for a message `quick_marks` read."""
        tally = self.tally
        tally.messages += 1
        if not frames:
            tally.unmarked += 1
            return
        if call >= TEST_CALLS_FROM:
            self._maybe_answer(call, frames)
            return
        last_us = times[-1]
        last_s = last_us / 1e6
        tally.latency[int(last_s)].append(arrived - last_s)
        second = last_us // 1_000_000
        if times[0] // 1_000_000 == second:
            tally.marks[second] += frames
        else:  # then `times` has every frame's
            for sent_us in times:
                tally.marks[sent_us // 1_000_000] += 1

    def _maybe_answer(self, call: int, count: int) -> None:
        self.frames += count
        if not self.answered and call in SPEECH_CALLS and self.frames >= SPEECH_AFTER_FRAMES:
            self.answered = True
            self.tally.results_sent += 1
            stt = [{"text": SPEECH_TEXT, "confidence": 0.9}]
            payload = {"stt": stt, "stt_cnt": 1, "epd": True}
            self._send_json({"topic": f"asr:{self.language}", "payload": payload, "event": "new:text"})


class _Socket:
    """A connection read with recvmsg, for the kernel's receive time of what it read (SO_TIMESTAMPNS): the
    sink shares a core with the generator, and its own delays must not count as the bridge's latency."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: SinkProtocol) -> None:
        self.loop, self.sock, self.protocol = loop, sock, protocol
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        protocol.connection_made(cast(asyncio.Transport, self))
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, 64)  # under malloc's mmap threshold
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.close()
            return
        arrived = time.monotonic()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(value)
                arrived = sec + nsec * 1e-9 - _realtime_ahead()
        self.protocol.received(data, arrived)

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)  # replies are small, and the socket's buffer is nearly empty
        except OSError:
            self.close()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.protocol.connection_lost(None)


_TIMESPEC = struct.Struct("@qq")
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Python < 3.14 lacks it; Linux's asm-generic value


def _realtime_ahead() -> float:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC now: the markers carry monotonic time, the kernel stamps real."""
    return time.time() - time.monotonic()


async def serve(host: str, port: int, out: Path, window_file: Path) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    listener = socket.create_server((host, port), backlog=4096)
    listener.setblocking(False)

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Socket(loop, sock, SinkProtocol(tally))

    loop.add_reader(listener.fileno(), accept)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("sink ready", flush=True)
    await stop.wait()
    loop.remove_reader(listener.fileno())
    listener.close()
    window = json.loads(window_file.read_text()) if window_file.exists() else [0, 0]
    out.write_text(json.dumps(tally.summary(int(window[0]), int(window[1]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--window-file", type=Path, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port, args.out, args.window_file))


if __name__ == "__main__":
    main()
