"""Calls placed by pyVoIP 1.6.8, a second SIP stack we did not write: it REGISTERs first, then INVITEs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import RunningBridge, bridge, free_port, speak

pytestmark = pytest.mark.integration
CALLER = Path(__file__).resolve().parent / "pyvoip_caller.py"


def pyvoip_call(b: RunningBridge, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    rtp_low = 40000 + (free_port() % 200) * 50
    cmd = [
        sys.executable, str(CALLER), "--server", "127.0.0.1", "--port", str(b.port), "--user", "alice",
        "--password", "unused", "--local-ip", "127.0.0.1", "--sip-port", str(free_port()),
        "--rtp-low", str(rtp_low), "--rtp-high", str(rtp_low + 40), "--call", "1000", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the pyVoIP caller\n{proc.stderr[-4000:]}\n{b.log()}"
    report: dict[str, Any] = json.loads(lines[-1])
    report["_stderr"] = proc.stderr[-4000:]
    return report


def test_pyvoip_caller_says_agent_and_is_transferred(tmp_path: Path, mediazen_url: str) -> None:
    wav = speak("상담원 연결해 주세요", tmp_path / "agent.wav", lead=0.3, tail=2.0)
    with bridge(tmp_path, mediazen_url) as b:
        report = pyvoip_call(b, "--wav", str(wav), "--after-answer-wait", "0.5", "--max-duration", "30")
        assert report["registered"] and report["answered"], report
        assert report["refer_to"] and report["refer_to"].startswith("sip:agents@"), report
        assert report["rtp_packets_received"] > 50, report  # the greeting was heard
        assert report["received_audio_rms"] > 100, report
        (cdr,) = b.wait_cdrs(1)
    assert "상담원" in " ".join(t["text"] for t in cdr["transcripts"]), cdr
    assert cdr["transfer_status"] == 200 and cdr["hangup_cause"] == "transferred", cdr
    assert "registered" in b.log()


def test_stock_pyvoip_hears_the_greeting_and_hangs_up(tmp_path: Path, mediazen_url: str) -> None:
    # pyVoIP exactly as shipped (its ACK carries a fresh To tag, its BYE reuses the INVITE branch).
    with bridge(tmp_path, mediazen_url) as b:
        report = pyvoip_call(b, "--stock-sip", "--hangup-after", "2.5", "--max-duration", "20")
        assert report["registered"] and report["answered"], report
        assert report["ended_by"] == "local", report
        assert report["rtp_packets_received"] > 50, report
        (cdr,) = b.wait_cdrs(1)
    assert cdr["hangup_cause"] == "remote-bye", cdr
    assert cdr["route"] == ["greeting<start"], cdr
