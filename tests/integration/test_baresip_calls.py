"""Calls from a real softphone, baresip 1.0 (Debian), against `ivr serve`: spoken transfer, hold, resume."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.baresip_caller import call
from tests.integration.harness import bridge, speak
from tests.tools import require_tool

pytestmark = pytest.mark.integration


def silence(out: Path, seconds: float) -> Path:
    """A silent 8 kHz WAV: aufile ends the call when its file ends, so this sets how long baresip stays."""
    require_tool("sox")
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(out), "trim", "0", str(seconds)],
        check=True,
        capture_output=True,
    )
    return out


def test_baresip_asking_for_an_agent_is_transferred(tmp_path: Path, mediazen_url: str) -> None:
    # The long tail keeps baresip's microphone (and so the call) open through the agent prompt and the REFER;
    # once the REFER is in, baresip is stopped: what it does with the REFER is its own business.
    wav = speak("상담원 연결해 주세요", tmp_path / "agent.wav", tail=14)
    with bridge(tmp_path, mediazen_url) as b:
        done = call(f"sip:1000@127.0.0.1:{b.port}", wav, "until-request REFER 20", tmp_path)
        (cdr,) = b.wait_cdrs(1)
    assert done.established, done.log
    assert "c=IN IP4 127.0.0.1" in done.requests("INVITE", sent=True)[0], done.log
    assert cdr["route"][:2] == ["greeting<start", "agent<say:상담원"], cdr
    assert cdr["transfer_target"] is not None and cdr["transfer_target"].startswith("sip:agents@"), cdr
    (refer,) = done.requests("REFER", sent=False)
    assert "Refer-To: <sip:agents@" in refer or "Refer-To: sip:agents@" in refer, refer


def test_baresip_held_past_the_no_input_timeouts_resumes_in_the_greeting(
    tmp_path: Path, mediazen_url: str
) -> None:
    # Held for 16 s: without hold, the greeting's two no-input timeouts would have sent it to an agent.
    wav = silence(tmp_path / "silence.wav", 30)
    with bridge(tmp_path, mediazen_url) as b:
        done = call(
            f"sip:1000@127.0.0.1:{b.port}", wav, "wait 2; hold; wait 16; resume; wait 2; hangup", tmp_path
        )
        (cdr,) = b.wait_cdrs(1)
    invites = done.requests("INVITE", sent=True)
    assert len(invites) == 3 and "a=sendonly" in invites[1], done.log  # baresip really held, then resumed
    assert "a=sendonly" not in invites[2], invites[2]
    answers = done.responses("INVITE", 200)
    assert len(answers) == 3 and "a=recvonly" in answers[1], done.log  # RFC 3264 §6.1 answer to sendonly
    assert "a=sendrecv" in answers[2], answers[2]
    assert cdr["route"] == ["greeting<start", "greeting<resumed"], cdr
    assert cdr["transfer_target"] is None and done.requests("REFER", sent=False) == [], cdr
