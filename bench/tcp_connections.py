"""What idle and hostile SIP/TCP connections cost a real `ivr serve`: RSS growth and how many stay open.

    .venv/bin/python bench/tcp_connections.py [--connections 300] [--tree DIR]

Starts `ivr serve` on a free loopback port (PYTHONPATH=DIR first when --tree is given, to measure another
checkout, e.g. `git archive HEAD | tar -x -C /tmp/before`), then, one scenario after the other:
  idle     N connections that send nothing;
  promise  N connections that each send an INVITE promising a 1 MB body and then 900 kB of it;
  loris    N/10 connections sending one header byte a second for 8 s.
For each it prints the bridge's RSS before and after (VmRSS from /proc) and how many connections the bridge
still holds (a 1-byte read on each of ours). Settings are the defaults, so the figures are what a
deployment gets; nothing is asserted here, the tests do that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def _bridge(tree: Path | None) -> Iterator[tuple[int, int]]:
    port = _free_port()
    tmp = Path(tempfile.mkdtemp())
    config = tmp / "bridge.yaml"
    config.write_text(
        f"sip_host: 127.0.0.1\nsip_port: {port}\nrtp_port_low: 31000\nrtp_port_high: 31098\n"
        f"asr_urls: {{mediazen: 'ws://127.0.0.1:9/'}}\ncdr_path: {tmp / 'cdr.jsonl'}\nlog_format: json\n",
        encoding="utf-8",
    )
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    log = (tmp / "bridge.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
        cwd=tree or REPO,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "answering on" in line:
                break
        else:
            raise RuntimeError(f"bridge did not start: {(tmp / 'bridge.log').read_text()[-2000:]}")
        time.sleep(0.5)
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(40)
        log.close()


def _open(port: int, count: int, sources: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        try:
            source = (f"127.0.0.{1 + i % sources}", 0)
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5, source_address=source))
        except OSError:
            break
    return socks


def _still_open(socks: list[socket.socket]) -> int:
    alive = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            while sock.recv(65536):  # a 413 or 513 may come before the close
                pass
        except BlockingIOError:
            alive += 1  # nothing more to read and no EOF: the bridge still holds it
        except OSError:
            pass
    return alive


def _invite(port: int, length: int) -> bytes:
    return (
        f"INVITE sip:1000@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-b\r\n"
        "From: <sip:bench@127.0.0.1>;tag=b\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: bench@x\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _scenario(name: str, pid: int, socks: list[socket.socket], attempted: int, before: float) -> None:
    time.sleep(1.0)
    after = _rss_mb(pid)
    print(
        f"{name:8s} attempted {attempted:4d}  held by the bridge {_still_open(socks):4d}  "
        f"RSS {before:6.1f} -> {after:6.1f} MB  (+{after - before:.1f} MB, "
        f"{(after - before) * 1024 / max(1, attempted):.1f} kB per connection)",
        flush=True,
    )
    for sock in socks:
        sock.close()
    time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--tree", type=Path, help="source tree to put first on PYTHONPATH")
    parser.add_argument("--sources", type=int, default=1, help="spread over 127.0.0.1..N (per-source cap)")
    args = parser.parse_args()
    n = args.connections
    with _bridge(args.tree) as (pid, port):
        print(
            f"ivr serve from {args.tree or REPO}, pid {pid}, RSS at start {_rss_mb(pid):.1f} MB, "
            f"{args.sources} source address(es)"
        )

        before = _rss_mb(pid)
        _scenario("idle", pid, _open(port, n, args.sources), n, before)

        before = _rss_mb(pid)
        socks = _open(port, n, args.sources)
        body = b"v" * 900_000
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.settimeout(2)
                sock.sendall(_invite(port, 1_000_000) + body)
        _scenario("promise", pid, socks, n, before)

        before = _rss_mb(pid)
        socks = _open(port, max(1, n // 10), args.sources)
        head = _invite(port, 0)
        for i in range(8):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(head[i : i + 1])
            time.sleep(1.0)
        _scenario("loris", pid, socks, len(socks), before)


if __name__ == "__main__":
    main()
