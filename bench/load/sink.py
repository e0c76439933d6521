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
import struct
import time
from array import array
from collections import defaultdict
from pathlib import Path
from typing import cast

from bench.load.marker import MAGIC, PAYLOAD_LEN, decode_ulaw, mark_at

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEST_CALLS_FROM = 60000  # call indexes from here on are routing test and churn calls (see generator.py)
SPEECH_CALLS = range(60000, 61000)  # the speech test calls
SPEECH_AFTER_FRAMES = 50  # a second of audio before the test result
SPEECH_TEXT = "bench"


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
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

        return {
            "window": [start, end],
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
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.language = "ko"
        self.frames = 0
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tally = self.tally
        tally.connections += 1
        tally.open += 1
        tally.peak_connections = max(tally.peak_connections, tally.open)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.open -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._handshake(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
        self._frames()

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

    def _frames(self) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            masked = buf[1] & 0x80
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = struct.unpack_from("!H", buf, 2)[0]
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            mask = b""
            if masked:
                mask = bytes(buf[pos : pos + 4])
                pos += 4
            if len(buf) < pos + length:
                return
            body = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            if masked and length:
                key = (mask * (length // 4 + 1))[:length]
                body = (int.from_bytes(body, "little") ^ int.from_bytes(key, "little")).to_bytes(
                    length, "little"
                )
            self._message(opcode, body)

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
        arrived = time.monotonic()
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

    def _maybe_answer(self, call: int, count: int) -> None:
        self.frames += count
        if not self.answered and call in SPEECH_CALLS and self.frames >= SPEECH_AFTER_FRAMES:
            self.answered = True
            self.tally.results_sent += 1
            stt = [{"text": SPEECH_TEXT, "confidence": 0.9}]
            payload = {"stt": stt, "stt_cnt": 1, "epd": True}
            self._send_json({"topic": f"asr:{self.language}", "payload": payload, "event": "new:text"})


async def serve(host: str, port: int, out: Path, window_file: Path) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    server = await loop.create_server(lambda: SinkProtocol(tally), host, port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("sink ready", flush=True)
    await stop.wait()
    server.close()
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
