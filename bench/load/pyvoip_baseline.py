"""The baseline a Python user would write with the obvious library: pyVoIP 1.6.8's RTP client (its own receive
and transmit threads per call) and one thread per stream that reads the decoded audio and forwards it to the
recognizer over a websocket-client connection, speaking the Mediazen join/audio/quit exchange.

What was adapted, and why: pyVoIP's SIP side only works as a phone registered to a PBX (it REGISTERs first
and sends its replies to its registrar), so the SIP is left out and each call's RTPClient is created on a
known port that the load generator streams to directly (no call setup is measured for this baseline).
pyVoIP decodes PCMU to 8-bit linear audio; a recognizer wants 16-bit, and 8 bits would also destroy the
packet markers, so `parse_pcmu` is overridden (one line) to decode to 16-bit PCM instead. Everything else,
including pyVoIP's 10 ms polling receive loop and its timestamp-indexed buffer, is pyVoIP's own.

Run: python -m bench.load.pyvoip_baseline --base 40000 --calls N --asr ws://127.0.0.1:P (SIGTERM ends it)
"""

from __future__ import annotations

import argparse
import audioop
import json
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)

import websocket  # noqa: E402  (websocket-client)
from pyVoIP.RTP import PayloadType, RTPClient, TransmitType  # noqa: E402

FRAME = 320  # 20 ms of 16-bit 8 kHz PCM
CHUNK = 1600  # 100 ms per WebSocket message, as the bridge sends to Mediazen


class Pcm16RtpClient(RTPClient):
    """pyVoIP's RTPClient, decoding PCMU to 16-bit PCM instead of 8-bit."""

    def parse_pcmu(self, packet: Any) -> None:
        self.pmin.write(packet.timestamp * 2, audioop.ulaw2lin(packet.payload, 2))


def forward(rtp: Pcm16RtpClient, url: str, running: threading.Event, errors: list[int]) -> None:
    """One stream: join, then read 20 ms at a time and send 100 ms per message, until stopped."""
    try:
        ws = websocket.create_connection(url, timeout=10)
        ws.send(json.dumps({"language": "ko", "cmd": "join"}))
        ws.recv()
        buffered = b""
        while running.is_set():
            buffered += rtp.read(FRAME)
            if len(buffered) >= CHUNK:
                ws.send_binary(buffered)
                buffered = b""
        ws.send(json.dumps({"language": "ko", "cmd": "quit"}))
        ws.close()
    except Exception as exc:
        if running.is_set():  # not the shutdown's own errors
            errors[0] += 1
            print(f"stream failed: {exc!r}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--asr", required=True, help="the recognizer's ws:// URL")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running = threading.Event()
    running.set()
    errors = [0]
    clients = []
    threads = []
    started = time.monotonic()
    for i in range(args.calls):
        if stop.is_set():
            break
        rtp = Pcm16RtpClient(
            {0: PayloadType.PCMU, 101: PayloadType.EVENT},
            args.host,
            args.base + i,
            "127.0.0.1",
            9,
            TransmitType.SENDRECV,
        )
        try:
            rtp.start()
            thread = threading.Thread(target=forward, args=(rtp, args.asr, running, errors), daemon=True)
            thread.start()
        except (OSError, RuntimeError):
            errors[0] += 1  # out of threads or descriptors: the baseline cannot hold this many calls
            break
        clients.append(rtp)
        threads.append(thread)
    result = {
        "streams": len(clients),
        "errors": errors[0],
        "start_seconds": time.monotonic() - started,
        "threads": threading.active_count(),
    }
    # Written now as well: a baseline that collapsed under its threads may not get the GIL back in time to
    # write it after SIGTERM, and is killed.
    args.out.write_text(json.dumps(result))
    print("ready", flush=True)
    stop.wait()
    running.clear()
    for rtp in clients:
        rtp.NSD = False
    result["errors"] = errors[0]
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
