"""Real processes for the integration tests: `ivr serve`, the Mediazen emulator, sipp, test speech."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ivr.cdrstore import open_database
from tests.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
SIPP_SHARE = Path("/usr/share/sip-tester")
DEMO = REPO / "dialplans" / "demo.yaml"


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET `path` from 127.0.0.1:`port` (the bridge's /metrics, /healthz, /readyz): status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def free_port() -> int:
    """A port free for both UDP and TCP (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line)
            if marker in line:
                return lines
            continue
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {''.join(lines)}")
        time.sleep(0.05)
    raise TimeoutError(f"no {marker!r} within {timeout}s: {''.join(lines)}")


EMULATOR_PATHS = {"mediazen": "", "cpqd": "/asr/ws/v3/recognize", "amivoice": "/v1/"}


@dataclass(frozen=True)
class RunningEmulator:
    url: str  # the WebSocket URL its vendor's clients use
    port: int
    banner: str  # the line it printed when ready

    @property
    def root(self) -> str:
        """ws://host:port, for tests that choose the path."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_emulator(
    vendor: str, phrases: list[str], *args: str, log: Path | None = None, clean_exit: bool = False
) -> Iterator[RunningEmulator]:
    """`python -m ivr.emulators.<vendor>` on a free port with the phrases (stderr to `log`); with
    `clean_exit`, stopping it (SIGTERM) must end it with status 0."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(phrases) + "\n")
    argv = [sys.executable, "-m", f"ivr.emulators.{vendor}", "--host", "127.0.0.1", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(log.open("w")) if log is not None else None
        proc = subprocess.Popen(
            [*argv, "--phrases", f.name, *args], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            banner = _read_until(proc, "listening", timeout=120)[-1].strip()
            yield RunningEmulator(f"ws://127.0.0.1:{port}{EMULATOR_PATHS[vendor]}", port, banner)
        finally:
            proc.terminate()
            status = proc.wait(10)
            os.unlink(f.name)
        assert not clean_exit or status == 0, f"{vendor} emulator ended with {status}"


@contextmanager
def emulator(vendor: str, phrases: list[str], *args: str) -> Iterator[str]:
    """`start_emulator`, for tests that need only its URL."""
    with start_emulator(vendor, phrases, *args) as running:
        yield running.url


def mediazen_emulator(phrases: list[str]) -> contextlib.AbstractContextManager[str]:
    return emulator("mediazen", phrases)


@dataclass
class RunningBridge:
    port: int
    cdr_path: Path
    log_path: Path
    proc: subprocess.Popen[str]
    cdr_url: str = ""  # a bridge given another store (cdr_url=postgresql://...): read from there

    def cdrs(self) -> list[dict[str, Any]]:
        """The ended calls' records (`asdict(CallRecord)`) in the order they ended, from its store."""
        url = self.cdr_url or f"sqlite:///{self.cdr_path}"
        if url.startswith("sqlite:") and not self.cdr_path.exists():
            return []
        database = open_database(url)
        assert database is not None, f"{url}: not an SQL store"
        try:
            return [row.record_dict() for row in database.ended()]
        finally:
            database.close()

    def wait_cdrs(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.cdrs()
            if len(records) >= count:
                return records
            time.sleep(0.05)
        raise AssertionError(f"expected {count} CDRs, got {self.cdrs()}\n--- bridge log ---\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@contextmanager
def bridge(tmp: Path, asr_url: str, **settings: Any) -> Iterator[RunningBridge]:
    # A given sip_port restarts a bridge where a proxy expects it (the cluster test); otherwise a free one.
    port = int(settings.pop("sip_port", None) or free_port())
    rtp_low = 20000 + (port % 400) * 100
    config: dict[str, Any] = {
        "sip_host": "127.0.0.1",
        "sip_port": port,
        "rtp_port_low": rtp_low,
        "rtp_port_high": rtp_low + 98,
        "asr_urls": {"mediazen": asr_url},
        "cdr_url": f"sqlite:///{tmp / 'cdr.sqlite3'}",  # the default store, as a node runs it
        "log_format": "json",
        "dialplan": str(DEMO),
    }
    config.update(settings)
    cfg = tmp / "bridge.yaml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    log_path = tmp / "bridge.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "serve", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        running = RunningBridge(port, tmp / "cdr.sqlite3", log_path, proc, str(config["cdr_url"]))
        try:
            _read_until(proc, "answering on", timeout=30)
            yield running
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class SippResult:
    returncode: int
    output: str


def run_sipp(
    scenario: Path,
    bridge_port: int,
    tmp: Path,
    *,
    transport: str = "u1",
    timeout: float = 60.0,
    local_ip: str = "127.0.0.1",
    calls: int = 1,
    extra: tuple[str, ...] = (),
) -> SippResult:
    """One sipp run from `local_ip` (another loopback address is another source); `extra`: e.g. a rate."""
    require_tool("sipp")
    local = free_port()
    media = free_port()
    cmd = [
        "sipp", "-sf", str(scenario), "-m", str(calls), "-nostdin", "-timeout", f"{int(timeout)}s",
        "-i", local_ip, "-p", str(local), "-mi", "127.0.0.1", "-mp", str(media),
        "-s", "1000", "-t", transport, "-trace_err", "-error_file", str(tmp / "sipp_errors.log"),
        "-trace_msg", "-message_file", str(tmp / "sipp_messages.log"), *extra,
        f"127.0.0.1:{bridge_port}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15, cwd=tmp)
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("sipp_errors.log", "sipp_messages.log"):
        if (tmp / name).exists():
            output += f"\n--- {name} ---\n" + (tmp / name).read_text(errors="replace")[-8000:]
    return SippResult(proc.returncode, output)


def scenario_with(name: str, tmp: Path, **replacements: str) -> Path:
    text = (SIPP_DIR / name).read_text(encoding="utf-8")
    for key, value in replacements.items():
        text = text.replace(f"@{key}@", value)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def speak(
    text: str,
    out: Path,
    *,
    voice: str = "ko",
    args: tuple[str, ...] = (),
    lead: float = 0.3,
    tail: float = 1.5,
    ulaw_raw: bool = False,
) -> Path:
    """espeak-ng speech at 8 kHz through a µ-law round trip (as a G.711 trunk delivers it), silence-padded."""
    require_tool("espeak-ng")
    require_tool("sox")
    wav = out.with_suffix(".espeak.wav")
    ulaw = out.with_suffix(".ulaw.wav")
    subprocess.run(["espeak-ng", "-v", voice, *args, "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(
        ["sox", str(wav), "-r", "8000", "-c", "1", "-e", "u-law", str(ulaw), "pad", str(lead), str(tail)],
        check=True,
        capture_output=True,
    )
    # Headerless µ-law is what sipp's rtp_stream sends byte for byte; otherwise a 16-bit WAV.
    fmt = ["-e", "u-law", "-b", "8", "-t", "raw"] if ulaw_raw else ["-e", "signed", "-b", "16"]
    subprocess.run(["sox", str(ulaw), *fmt, str(out)], check=True, capture_output=True)
    return out
