"""A real `ivr serve` started for a test run: generated settings on free loopback ports, the dialplan's
vendors on their embedded emulators, and a JSON-lines CDR the runner reads each call's steps from."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from ivr.dialplan.schema import Dialplan

READY = "answering on"  # the line `ivr serve` prints once it takes calls
START_TIMEOUT = 180.0  # the emulators load their recognizer models first (Vosk Korean: ~5 s, more under load)


class BridgeError(RuntimeError):
    """The bridge did not start."""


def free_port() -> int:
    """A loopback port free for both UDP and TCP (the bridge's SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise BridgeError("no free loopback port")


class TestBridge:
    """`python -m ivr serve` in a child process, for one dialplan."""

    __test__ = False  # not a pytest class

    def __init__(self, dialplan_path: Path, dialplan: Dialplan, workdir: Path) -> None:
        self.dialplan_path = dialplan_path
        self.dialplan = dialplan
        self.workdir = workdir
        self.cdr_path = workdir / "cdr.jsonl"
        self.log_path = workdir / "bridge.log"
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    def _settings(self) -> dict[str, Any]:
        self.port = free_port()
        rtp_low = 30000 + 2 * secrets.randbelow(4000)  # each bridge its own range; busy ports are skipped
        return {
            "sip_host": "127.0.0.1",
            "sip_port": self.port,
            "rtp_port_low": rtp_low,
            "rtp_port_high": rtp_low + 198,
            "dialplan": str(self.dialplan_path.resolve()),
            "asr_urls": {vendor: "embedded" for vendor in sorted(self.dialplan.vendors())},
            "emulator_port": free_port(),
            "cdr_url": f"jsonl:///{self.cdr_path.resolve()}",
            "log_format": "json",
            "dialplan_watch_interval": 0,
            "node_id": f"ivr-test-{self.port}",
        }

    async def start(self) -> None:
        await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
        config = self.workdir / "bridge.yaml"
        text = yaml.safe_dump(self._settings(), allow_unicode=True)
        await asyncio.to_thread(config.write_text, text, "utf-8")
        log = await asyncio.to_thread(self.log_path.open, "wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ivr", "serve", "--config", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=log, env=dict(os.environ),
            )  # fmt: skip
        finally:
            log.close()  # the child has its own descriptor
        assert self._proc.stdout is not None
        try:
            await asyncio.wait_for(self._ready(self._proc.stdout), START_TIMEOUT)
        except TimeoutError as exc:
            await self.stop()
            raise BridgeError(
                f"ivr serve printed no {READY!r} within {START_TIMEOUT:g}s; {self.log_tail()}"
            ) from exc
        self._drain = asyncio.create_task(self._discard(self._proc.stdout))

    async def _ready(self, stdout: asyncio.StreamReader) -> None:
        while True:
            line = await stdout.readline()
            if not line:
                code = await self._proc.wait() if self._proc else None
                raise BridgeError(f"ivr serve exited with {code} before it was ready; {self.log_tail()}")
            if READY in line.decode(errors="replace"):
                return

    @staticmethod
    async def _discard(stdout: asyncio.StreamReader) -> None:
        while await stdout.read(4096):
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")  # only after a failure
        except OSError:
            return "no bridge log"
        return f"bridge log {self.log_path}:\n" + "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # drains: calls still up get their BYE
        try:
            await asyncio.wait_for(proc.wait(), 40)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain

    async def record(self, call_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The CDR of `call_id` once the bridge has written it (a line per ended call), or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await asyncio.to_thread(_find_record, self.cdr_path, call_id)
            if found is not None or loop.time() > deadline:
                return found
            await asyncio.sleep(0.1)


def _find_record(path: Path, call_id: str) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if call_id in line:
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if record.get("call_id") == call_id:
                    return dict(record)
    return None
