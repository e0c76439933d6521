"""Early match in a real call: sipp speaks to `ivr serve` with the Mediazen emulator (Vosk Korean), and the
transfer starts on a partial result, before the recognizer's final."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import DEMO, bridge, run_sipp, scenario_with, speak

pytestmark = pytest.mark.integration


def demo_with_early_match(tmp: Path, on: bool) -> Path:
    """The demo flow with `early_match` set on its greeting, its prompts beside it as in dialplans/."""
    text = DEMO.read_text(encoding="utf-8")
    marked = text.replace(
        "      barge_in: true\n", f"      barge_in: true\n      early_match: {str(on).lower()}\n"
    )
    assert marked.count("early_match") == 1, "the demo's greeting listen block changed"
    path = tmp / f"demo-early-{'on' if on else 'off'}.yaml"
    path.write_text(marked, encoding="utf-8")
    prompts = tmp / "prompts"
    if not prompts.exists():
        prompts.symlink_to(DEMO.parent / "prompts")
    return path


def log_events(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_the_agent_request_is_transferred_on_a_partial_before_the_final(
    tmp_path: Path, mediazen_url: str
) -> None:
    audio = speak("상담원 연결해 주세요", tmp_path / "agent.ulaw", ulaw_raw=True, lead=0.5, tail=2.0)
    scenario = scenario_with("speech_agent.xml", tmp_path, AUDIO=str(audio))
    dialplan = demo_with_early_match(tmp_path, on=True)
    with bridge(tmp_path, mediazen_url, dialplan=str(dialplan)) as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        (cdr,) = b.wait_cdrs(1)
        log = b.log()
    assert cdr["route"][0] == "greeting<start", cdr
    assert cdr["route"][1].startswith("agent<say:") and cdr["route"][1].endswith("(early)"), cdr
    assert cdr["transfer_status"] == 200 and cdr["hangup_cause"] == "transferred", cdr
    (turn,) = cdr["transcripts"]
    assert "상담원" in turn["text"] and turn["status"] == "recognized", cdr
    events = log_events(log)
    names = [e["event"] for e in events]
    assert "recognized early" in names, log
    # The recognizer's final never reached the call: the turn ended on the partial, its recognition cancelled.
    assert "recognized" not in names, log
    assert names.index("recognized early") < names.index("transfer"), log
