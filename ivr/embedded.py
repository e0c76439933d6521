"""Local vendor emulators started as child processes, so `ivr serve` works with no vendor account.

A child process, not a thread: recognition is CPU-bound and must not share the bridge's event loop or GIL.
The children die with the bridge, even one killed with SIGKILL (see ivr.emulators.lifeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

from ivr.emulators.lifeline import PARENT_PID_VARIABLE

log = structlog.get_logger()

EMULATOR_MODULES = {
    "mediazen": "ivr.emulators.mediazen",
    "cpqd": "ivr.emulators.cpqd",
    "amivoice": "ivr.emulators.amivoice",
}
# The WebSocket path each vendor's clients connect to (CPQD document 003; AmiVoice document 002).
EMULATOR_PATHS = {"mediazen": "", "cpqd": "/asr/ws/v3/recognize", "amivoice": "/v1/"}


class EmbeddedEmulator:
    """One vendor emulator as a child process, serving the dialplan's phrases in the given languages."""

    def __init__(
        self, vendor: str, host: str, port: int, phrases: Sequence[str], languages: Sequence[str] = ()
    ) -> None:
        # `languages` limits the engines the emulator loads (empty: its own default), so a Japanese dialplan
        # on AmiVoice does not load Korean Vosk (~540 MiB).
        if vendor not in EMULATOR_MODULES:
            raise ValueError(f"no emulator for {vendor!r} (have: {', '.join(EMULATOR_MODULES)})")
        self.vendor = vendor
        self.host = host
        self.port = port
        self.phrases = list(phrases)
        self.languages = list(languages)
        self._proc: asyncio.subprocess.Process | None = None
        self._phrase_file: Path | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{EMULATOR_PATHS[self.vendor]}"

    async def start(self, timeout: float = 120.0) -> None:
        argv = [
            sys.executable,
            "-m",
            EMULATOR_MODULES[self.vendor],
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.phrases:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
                f.write("\n".join(self.phrases) + "\n")
                self._phrase_file = Path(f.name)
            argv += ["--phrases", str(self._phrase_file)]
        for language in self.languages:
            argv += ["--language", language]
        # The child asks Linux to kill it when we die (ivr.emulators.lifeline): a bridge killed with SIGKILL
        # must not leave an emulator holding the port the next `ivr serve` needs.
        env = {**os.environ, PARENT_PID_VARIABLE: str(os.getpid())}
        self._proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, env=env)
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):  # loading the Vosk model takes seconds
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"{self.vendor} emulator exited with {await self._proc.wait()}")
                    if b"listening" in line:
                        break
        except BaseException:
            await self.stop()
            raise
        # Keep reading what it prints, or a full pipe would one day stop the emulator mid-call.
        self._drain = asyncio.create_task(self._discard(self._proc.stdout))
        log.info("embedded emulator ready", vendor=self.vendor, url=self.url, phrases=len(self.phrases))

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def stop(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._phrase_file is not None:
            with contextlib.suppress(OSError):
                self._phrase_file.unlink()
