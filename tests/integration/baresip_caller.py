"""baresip 1.0 (Debian) as a caller: a throwaway config dir, its menu driven over stdin, its log kept.

Steps of a script: `wait S`, `hold` (baresip's re-INVITE a=sendonly), `resume`, `hangup`, `until-closed S`
(wait for the call to end), `until-request METHOD S` (wait for the bridge to send one). `aufile` plays
the WAV as the microphone and ends the call when the file ends (`menu: audio error (0,end of file)`), so
the WAV must last as long as the call should.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.harness import free_port
from tests.tools import require_tool

# Only what a G.711 call from a WAV needs: no stun/turn/ice, no sound card (ALSA's `null` plugin plays).
MODULES = """module_path\t\t/usr/lib/baresip/modules
module\t\t\tstdio.so
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\talsa.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
"""

ESTABLISHED = "Call established"
TERMINATED = "terminated (duration"


def write_config(directory: Path, wav: Path, sip_port: int) -> Path:
    """A baresip config dir: SIP and media on loopback, the WAV as microphone, one local account."""
    directory.mkdir(parents=True, exist_ok=True)
    # net_interface takes an address: without it baresip 1.0 binds SIP to sip_listen but puts the host's
    # first interface address (here 192.0.2.2 on eth0) in c=; `net_interface lo` fails ("No such device").
    (directory / "config").write_text(
        f"poll_method\t\tepoll\n"
        f"sip_listen\t\t127.0.0.1:{sip_port}\n"
        f"net_interface\t\t127.0.0.1\n"
        f"net_af\t\t\tipv4\n"
        f"audio_source\t\taufile,{wav}\n"
        f"audio_player\t\talsa,null\n"
        f"audio_alert\t\talsa,null\n"
        f"call_local_timeout\t120\n" + MODULES,
        encoding="utf-8",
    )
    # regint=0: no registrar; PCMU only, the bridge's first codec.
    (directory / "accounts").write_text(
        "<sip:baresip@127.0.0.1>;regint=0;audio_codecs=pcmu\n", encoding="utf-8"
    )
    return directory


@dataclass
class BaresipCall:
    """What one baresip run printed (with `-s`, every SIP message it sent and received)."""

    returncode: int | None
    port: int  # its SIP port, which tells its own messages from the bridge's in the trace
    log: str

    @property
    def established(self) -> bool:
        return ESTABLISHED in self.log

    @property
    def closed(self) -> bool:
        return TERMINATED in self.log

    def requests(self, method: str, *, sent: bool) -> list[str]:
        """The SIP requests with this method that baresip sent (or received), as traced."""
        return [m for m, ours in self._messages() if m.startswith(f"{method} sip:") and ours == sent]

    def responses(self, method: str, status: int) -> list[str]:
        """The responses baresip received to its requests of this method, with this status."""
        return [
            m
            for m, ours in self._messages()
            if not ours
            and m.startswith(f"SIP/2.0 {status} ")
            and re.search(rf"^CSeq: \d+ {method}$", m, re.M)
        ]

    def _messages(self) -> list[tuple[str, bool]]:
        # The trace prints each message as "#", "UDP src -> dst", then the message.
        ours = f"UDP 127.0.0.1:{self.port} ->"
        found = []
        for chunk in self.log.split("#\n")[1:]:
            head, _, message = chunk.partition("\n")
            found.append((message, head.startswith(ours)))
        return found


def call(target: str, wav: Path, script: str, tmp: Path, *, timeout: float = 60.0) -> BaresipCall:
    """Dial `target` from baresip, run the script's steps, stop it (hanging up), and return its log."""
    require_tool("baresip")
    port = free_port()
    directory = write_config(tmp / "baresip", wav, port)
    log_path = tmp / "baresip.log"
    deadline = time.monotonic() + timeout
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            ["baresip", "-f", str(directory), "-s"],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdin is not None

        def log() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        def until(marker: str, seconds: float) -> None:
            end = min(time.monotonic() + seconds, deadline)
            while marker not in log() and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)

        def command(text: str) -> None:
            assert proc.stdin is not None
            proc.stdin.write(text + "\n")
            proc.stdin.flush()

        try:
            until("baresip is ready", 10)
            command(f"/dial {target}")
            until(ESTABLISHED, 10)
            for step in (s.strip() for s in script.split(";") if s.strip()):
                verb, _, argument = step.partition(" ")
                if verb == "wait":
                    end = min(time.monotonic() + float(argument), deadline)
                    while proc.poll() is None and time.monotonic() < end:
                        time.sleep(0.05)
                elif verb in ("hold", "resume", "hangup"):
                    command(f"/{verb}")
                elif verb == "until-closed":
                    until(TERMINATED, float(argument))
                elif verb == "until-request":
                    method, _, seconds = argument.partition(" ")
                    end = min(time.monotonic() + float(seconds), deadline)
                    while proc.poll() is None and time.monotonic() < end:
                        if BaresipCall(None, port, log()).requests(method, sent=False):
                            break
                        time.sleep(0.05)
                else:
                    raise ValueError(f"unknown step {step!r}")
            # SIGTERM, not /quit: 1.0's /quit leaves it waiting for calls to close; SIGTERM hangs them up
            # (BYE) and exits.
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return BaresipCall(proc.returncode, port, log())
