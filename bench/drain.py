"""Drain time of `ivr serve` with 100 calls in progress (issue 12).

Starts a real bridge on loopback with a dialplan that holds each call (60 s of silence), places 100 sipp
calls: half hang up by themselves 3 s after they are answered, half stay up until the bridge sends BYE. Once
all 100 are answered it sends SIGTERM and prints how long the process took to exit, how many calls finished
on their own and how many got our BYE at `drain_timeout`, and the CDR hangup causes.

    .venv/bin/python bench/drain.py [--calls 100] [--drain-timeout 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.harness import bridge, free_port, scenario_with
from tests.integration.test_sip_attacks import NO_ASR, hold_dialplan


def _sipp(scenario: Path, port: int, calls: int, source: str, cwd: Path) -> subprocess.Popen[bytes]:
    cmd = [
        "sipp", "-sf", str(scenario), "-m", str(calls), "-l", str(calls), "-r", "50", "-nostdin",
        "-timeout", "120s", "-i", source, "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-s", "1000", "-t", "u1", f"127.0.0.1:{port}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _events(log: str, name: str) -> list[dict[str, object]]:
    return [
        r for line in log.splitlines() if line.startswith("{") and (r := json.loads(line))["event"] == name
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    args = parser.parse_args()
    half = args.calls // 2
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for sub in ("self", "bye"):
            (tmp / sub).mkdir()
        plan = hold_dialplan(tmp, 60.0)
        settings = {
            "dialplan": str(plan),
            "drain_timeout": args.drain_timeout,
            "rtp_port_low": 40000,
            "rtp_port_high": 40000 + 4 * args.calls,
            "call_burst_per_source": args.calls,
            "call_rate_per_source": 100.0,
            "max_unacked_per_source": args.calls,
            "rtp_timeout": 120.0,
        }
        with bridge(tmp, NO_ASR, **settings) as b:
            ends_itself = scenario_with("hold_then_bye.xml", tmp / "self", HOLD="3000")
            waits = scenario_with("wait_for_bye.xml", tmp / "bye", WAIT_BYE="60000")
            callers = [
                _sipp(ends_itself, b.port, half, "127.0.0.1", tmp / "self"),
                _sipp(waits, b.port, args.calls - half, "127.0.0.2", tmp / "bye"),
            ]
            deadline = time.monotonic() + 60
            while len(_events(b.log(), "answered")) < args.calls and time.monotonic() < deadline:
                time.sleep(0.05)
            answered = len(_events(b.log(), "answered"))
            time.sleep(0.5)  # the last ACKs arrive
            started = time.monotonic()
            b.proc.send_signal(signal.SIGTERM)
            status = b.proc.wait(120)
            exit_seconds = time.monotonic() - started
            for caller in callers:
                caller.wait(120)
            (drained,) = _events(b.log(), "drained")
            causes = collections.Counter(str(r["hangup_cause"]) for r in b.cdrs())
    print(f"calls answered before SIGTERM: {answered} (of {args.calls})")
    print(f"drain_timeout: {args.drain_timeout:.1f} s")
    print(f"SIGTERM -> exit: {exit_seconds:.2f} s (exit status {status})")
    print(
        f"bridge drain: {drained['seconds']} s; finished before the deadline: {drained['finished']}, "
        f"ended by our BYE at the deadline: {drained['hung_up']}, still open after the BYE wait: "
        f"{drained['unfinished']}"
    )
    print(f"CDR hangup causes: {dict(causes)}")
    print(f"sipp exit codes: ends-itself {callers[0].returncode}, waits-for-BYE {callers[1].returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
