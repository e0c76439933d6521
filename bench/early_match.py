"""Time from the end of the caller's speech to the next prompt, with and without early match (issue 9).

Real sipp calls (one at a time) say 상담원 연결해 주세요 (espeak-ng, µ-law) to a real `ivr serve` running
the demo flow against the Mediazen emulator (Vosk Korean); the greeting step has `early_match` off, then
on. The figures do not trust the bridge: a packet socket on the loopback interface (AF_PACKET, kernel
receive timestamps) sees both RTP directions as they cross the wire.

- End of speech: the caller's packet carrying the last voiced 20 ms frame of the audio file (found in the
  file by energy, then on the wire by its payload).
- Next prompt: the bridge's packet carrying the first voiced frame of agent.wav, encoded as the bridge
  plays it (found by payload). `audible` is that packet; `prompt_start` subtracts the prompt's own
  leading silence (frame index x 20 ms). Negative: the prompt started while the caller was still speaking.

    .venv/bin/python bench/early_match.py [--calls 20] [--out var/bench/early_match.json]

Needs root (a packet socket), sipp, espeak-ng, sox. Ports: the harness's free ports (bound to port 0).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.dialplan.loader import load_dialplan
from ivr.media import g711
from ivr.media.prompt import frames, load_prompt
from tests.integration.harness import (
    DEMO,
    bridge,
    free_port,
    mediazen_emulator,
    scenario_with,
    speak,
)
from tests.integration.test_early_match_calls import demo_with_early_match

PHRASE = "상담원 연결해 주세요"
FRAME = 160  # bytes of µ-law in a 20 ms packet
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>
PACKET_OUTGOING = 4  # loopback shows each packet twice; keep one copy (the outgoing one)


@dataclass(frozen=True)
class Packet:
    """One RTP datagram seen on lo: kernel time, UDP ports, RTP payload."""

    time: float
    src: int
    dst: int
    payload: bytes


class LoopbackCapture:
    """Every UDP datagram on lo to or from a port in [low, high], with its kernel receive timestamp."""

    def __init__(self, low: int, high: int) -> None:
        self._low, self._high = low, high
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self.packets: list[Packet] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _, addr = self._sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            if addr[2] != PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12:
                continue
            ip = data[14:]
            if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            udp = ip[(ip[0] & 0x0F) * 4 :]
            src, dst = struct.unpack("!HH", udp[:4])
            if not (self._low <= src <= self._high or self._low <= dst <= self._high):
                continue
            stamp = next((d for level, kind, d in ancillary if kind == SO_TIMESTAMPNS), None)
            seconds, nanos = struct.unpack("qq", stamp[:16]) if stamp else (time.time(), 0)
            rtp = udp[8:]
            header = 12 + 4 * (rtp[0] & 0x0F)
            self.packets.append(Packet(seconds + nanos / 1e9, src, dst, bytes(rtp[header:])))

    def stop(self) -> list[Packet]:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.packets


def voiced(frames_: list[bytes], fraction: float = 0.05) -> list[int]:
    """Indexes of the 20 ms µ-law frames whose RMS is above `fraction` of the loudest frame's."""
    rms = [float(np.sqrt(np.mean(g711.decode_array(f, 0).astype(np.float64) ** 2))) for f in frames_]
    loudest = max(rms)
    return [i for i, value in enumerate(rms) if value > fraction * loudest]


@dataclass
class CallTiming:
    mode: str
    route: str
    speech_end: float  # wall time of the caller's last voiced packet
    audible: float  # seconds from it to the bridge's first voiced packet of the next prompt
    prompt_start: float  # the same, to the start of that prompt (its leading silence taken off)


def measure(
    packets: list[Packet], bridge_low: int, bridge_high: int, last_voiced: bytes, prompt: list[bytes], k: int
) -> tuple[float, float, float]:
    caller = [p for p in packets if bridge_low <= p.dst <= bridge_high]
    sent = [p for p in packets if bridge_low <= p.src <= bridge_high]
    end = next(p.time for p in caller if p.payload == last_voiced)
    first = next(p.time for p in sent if p.payload == prompt[k] and p.time > caller[0].time)
    return end, first - end, first - k * 0.020 - end


def run_call(tmp: Path, scenario: Path, port: int) -> None:
    cmd = [
        "sipp", "-sf", str(scenario), "-m", "1", "-nostdin", "-timeout", "60s",
        "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-t", "u1", f"127.0.0.1:{port}",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, timeout=75)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per mode")
    parser.add_argument("--out", type=Path, default=Path("var/bench/early_match.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: the capture is a packet socket on lo", file=sys.stderr)
        return 2
    agent = frames(load_prompt(DEMO.parent / "prompts" / "agent.wav"), 0)
    k = voiced(agent)[0]
    timings: list[CallTiming] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        audio = speak(PHRASE, tmp / "agent.ulaw", ulaw_raw=True, lead=0.5, tail=2.0)
        said = [audio.read_bytes()[i : i + FRAME] for i in range(0, audio.stat().st_size - FRAME + 1, FRAME)]
        last_voiced = said[voiced(said)[-1]]
        ends = (voiced(said)[-1] + 1) * 0.02
        print(f"speech ends {ends:.2f} s into the file; agent.wav voiced from frame {k}")
        scenario = scenario_with("speech_agent.xml", tmp, AUDIO=str(audio))
        with mediazen_emulator(load_dialplan(DEMO).phrases()) as url:
            for mode in ("off", "on"):
                run = tmp / mode
                run.mkdir()
                dialplan = demo_with_early_match(run, on=mode == "on")
                with bridge(run, url, dialplan=str(dialplan)) as b:
                    low = 20000 + (b.port % 400) * 100  # the harness's RTP range for this bridge
                    for i in range(args.calls):
                        capture = LoopbackCapture(low, low + 98)
                        run_call(run, scenario, b.port)
                        packets = capture.stop()
                        route = b.wait_cdrs(i + 1)[-1]["route"][-1]
                        end, audible, start = measure(packets, low, low + 98, last_voiced, agent, k)
                        timings.append(CallTiming(mode, route, end, audible, start))
                        print(f"{mode} {i + 1:2d} {route:28s} audible {audible * 1000:7.0f} ms", flush=True)
    summary: dict[str, Any] = {}
    for mode in ("off", "on"):
        rows = [t for t in timings if t.mode == mode]
        summary[mode] = {
            "calls": len(rows),
            "early_routes": sum(t.route.endswith("(early)") for t in rows),
            **{
                f"{field}_{q}_ms": round(percentile([getattr(t, field) for t in rows], q) * 1000, 1)
                for field in ("audible", "prompt_start")
                for q in (50, 95)
            },
        }
    print("\nend of caller speech -> next prompt (RTP on lo), ms")
    head = ("mode", "calls", "early", "audible p50", "p95", "start p50", "p95")
    print("{:5s} {:>5s} {:>5s} {:>12s} {:>7s} {:>10s} {:>7s}".format(*head))
    for mode, s in summary.items():
        print(
            f"{mode:5s} {s['calls']:5d} {s['early_routes']:5d} {s['audible_50_ms']:12.0f}"
            f" {s['audible_95_ms']:7.0f} {s['prompt_start_50_ms']:10.0f} {s['prompt_start_95_ms']:7.0f}"
        )
    load = os.getloadavg()
    result = {"summary": summary, "load_average": load, "calls": [asdict(t) for t in timings]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
