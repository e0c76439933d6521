"""Child processes of the benchmark, pinned with taskset, and what /proc says they cost."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class Child:
    """One pinned child process, its stdout read line by line."""

    def __init__(
        self, name: str, args: list[str], cpu: int | str, log_dir: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.stderr = (log_dir / f"{name}.log").open("w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, "-W", "ignore", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        """The first stdout line starting with `prefix`, or None after `timeout` or at exit."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            line = self.proc.stdout.readline()
            if not line:
                return None
            if line.startswith(prefix):
                return line.strip()
        return None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def core_busy() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies so far, from /proc/stat: what every process on it used, ours or not."""
    cores: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            jiffies = [int(v) for v in values]
            idle = jiffies[3] + jiffies[4]  # idle + iowait
            cores[int(name[3:])] = (sum(jiffies[:8]) - idle, sum(jiffies[:8]))
    return cores


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sip_ready(host: str, port: int, timeout: float) -> bool:
    """True once the bridge answers an OPTIONS."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(0.3)
        local = "{}:{}".format(*sock.getsockname()[:2])
        n = 0
        while time.monotonic() < deadline:
            n += 1
            request = (
                f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local};branch=z9hG4bKping{n}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:ping@{local}>;tag=p{n}\r\nTo: <sip:ping@{host}:{port}>\r\n"
                f"Call-ID: ping{n}-{os.getpid()}@bench\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (host, port))
            try:
                if sock.recv(65535).startswith(b"SIP/2.0 "):
                    return True
            except OSError:
                time.sleep(0.2)
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
