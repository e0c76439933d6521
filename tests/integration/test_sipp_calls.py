"""Whole calls placed by sipp (a real SIP stack we did not write) against `ivr serve`, over loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import (
    SIPP_DIR,
    SIPP_SHARE,
    bridge,
    free_port,
    require_tool,
    run_sipp,
    scenario_with,
    speak,
)

pytestmark = pytest.mark.integration


def test_spoken_request_is_transferred_to_agent(tmp_path: Path, mediazen_url: str) -> None:
    audio = speak("상담원 연결해 주세요", tmp_path / "agent.ulaw", ulaw_raw=True, lead=0.5, tail=2.0)
    scenario = scenario_with("speech_agent.xml", tmp_path, AUDIO=str(audio))
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert "상담원" in " ".join(t["text"] for t in cdr["transcripts"]), cdr
    assert cdr["route"][-1].startswith("agent<say"), cdr
    assert cdr["transfer_target"].startswith("sip:agents@")
    assert cdr["transfer_status"] == 200
    assert cdr["hangup_cause"] == "transferred"
    assert cdr["codec"] == "PCMU"
    assert len(cdr["channel_id"]) == 32


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_dtmf_routes_to_balance_and_hangs_up(tmp_path: Path, mediazen_url: str, transport: str) -> None:
    require_tool("sipp")
    scenario = scenario_with("dtmf_balance.xml", tmp_path, DTMF=str(SIPP_SHARE / "dtmf_2833_1.pcap"))
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(scenario, b.port, tmp_path, transport=transport)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["digits"] == ["1"], cdr
    assert cdr["route"][-1] == "balance<dtmf:1", cdr
    assert cdr["hangup_cause"] == "normal", cdr


def test_cancel_before_answer(tmp_path: Path, mediazen_url: str) -> None:
    with bridge(tmp_path, mediazen_url, ring_time=3.0) as b:
        result = run_sipp(_plain("cancel.xml"), b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["hangup_cause"] == "cancelled", cdr
    assert cdr["answer"] is None


def test_caller_bye_mid_prompt(tmp_path: Path, mediazen_url: str) -> None:
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(_plain("caller_bye.xml"), b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["hangup_cause"] == "remote-bye", cdr
    assert cdr["route"] == ["greeting<start"], cdr


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_malformed_request_gets_400_and_bridge_keeps_serving(
    tmp_path: Path, mediazen_url: str, transport: str
) -> None:
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(_plain("malformed_then_options.xml"), b.port, tmp_path, transport=transport)
        assert result.returncode == 0, result.output + b.log()


def _plain(name: str) -> Path:
    return SIPP_DIR / name


def test_no_rtp_from_caller_hangs_up_with_bye(tmp_path: Path, mediazen_url: str) -> None:
    with bridge(tmp_path, mediazen_url, rtp_timeout=1.5) as b:
        result = run_sipp(_plain("silent_caller.xml"), b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["hangup_cause"] == "rtp-timeout", cdr


def test_recognizer_down_falls_back_to_agent_instead_of_a_dead_line(tmp_path: Path) -> None:
    # Nothing listens on this port: every recognizer session fails to connect.
    audio = speak("네", tmp_path / "yes.ulaw", ulaw_raw=True)
    scenario = scenario_with("speech_agent.xml", tmp_path, AUDIO=str(audio))
    with bridge(tmp_path, f"ws://127.0.0.1:{free_port()}") as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["route"] == ["greeting<start", "agent<recognizer_failed"], cdr
    assert cdr["transfer_status"] == 200, cdr


def test_keypad_still_works_when_the_recognizer_is_down(tmp_path: Path) -> None:
    scenario = scenario_with("dtmf_balance.xml", tmp_path, DTMF=str(SIPP_SHARE / "dtmf_2833_1.pcap"))
    with bridge(tmp_path, f"ws://127.0.0.1:{free_port()}") as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["route"][-1] == "balance<dtmf:1", cdr


def test_hold_is_answered_recvonly_and_resume_sendrecv_and_the_menu_waits(
    tmp_path: Path, mediazen_url: str
) -> None:
    scenario = scenario_with("hold_resume.xml", tmp_path, HOLD_MS="3000")
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["route"] == ["greeting<start", "greeting<resumed"], cdr
    assert cdr["hangup_cause"] == "remote-bye", cdr


def test_a_late_offer_invite_gets_our_offer_and_the_call_runs(tmp_path: Path, mediazen_url: str) -> None:
    with bridge(tmp_path, mediazen_url) as b:
        result = run_sipp(_plain("late_offer.xml"), b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
    assert cdr["answer"] is not None and cdr["codec"] == "PCMU", cdr
    assert cdr["route"] == ["greeting<start"] and cdr["hangup_cause"] == "remote-bye", cdr
