"""`ivr test` end to end: real `ivr serve` bridges on the embedded emulators, real SIP calls from the scripted
caller, espeak-ng speech. The bundled dialplans' own cases run here, which is how `make test` runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"


def ivr_test(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "ivr", "test", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env,
    )  # fmt: skip


def test_the_bundled_dialplans_pass_their_own_cases() -> None:
    require_tool("espeak-ng")
    require_tool("sox")
    run = ivr_test(str(DIALPLANS), "--json", "--jobs", "6")
    report = json.loads(run.stdout)
    failed = [c for s in report["suites"] for c in s["cases"] if not c["passed"]]
    assert run.returncode == 0 and report["ok"], json.dumps(failed, ensure_ascii=False, indent=1) + run.stderr
    suites = {Path(s["file"]).name: s for s in report["suites"]}
    assert set(suites) == {"demo.test.yaml", "banco.test.yaml", "takuhai.test.yaml"}
    for suite in suites.values():
        assert suite["cases"] and suite["coverage"]["steps"]["visited"], suite
        for case in suite["cases"]:
            events = [e["event"] for e in case["trace"]]
            assert events[0] == "INVITE -> 200 OK" and any(e.startswith("CDR: route") for e in events), case
    # the agitated caller took the emotion route, as the bridge's CDR and the REFER's headers show
    [agitated] = [c for c in suites["banco.test.yaml"]["cases"] if c["name"].startswith("agitated")]
    assert agitated["steps"] == ["saudacao", "prioridade"]
    assert any("X-IVR-Emotion: " in e["event"] for e in agitated["trace"])


def test_a_wrong_expected_route_fails_the_run_and_the_trace_says_why(tmp_path: Path) -> None:
    cases = tmp_path / "wrong.test.yaml"
    cases.write_text(
        f"dialplan: {DIALPLANS / 'demo.yaml'}\n"
        "cases:\n"
        "  balance_expected_to_reach_an_agent:\n"
        "    turns:\n"
        "      - press: '1'\n"
        "    expect: {route: agent, prompts: [greeting.wav, balance.wav]}\n",
        encoding="utf-8",
    )
    run = ivr_test(str(cases))
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    assert "FAIL balance_expected_to_reach_an_agent" in out, out
    assert "why: route: expected to end in 'agent', ended in 'balance'" in out, out
    assert "prompt balance.wav heard" in out and "pressing 1" in out, out  # the trace shows what happened
    assert "FAILED: 0 passed, 1 failed, 1 total" in out, out


def test_a_broken_case_file_is_reported_at_its_line_and_runs_nothing(tmp_path: Path) -> None:
    cases = tmp_path / "broken.test.yaml"
    cases.write_text(
        f"dialplan: {DIALPLANS / 'demo.yaml'}\n"
        "cases:\n"
        "  a:\n"
        "    turns:\n"
        "      - sya: 상담원 연결해 주세요\n"
        "    expect: {steps: [greeting, agnet]}\n",
        encoding="utf-8",
    )
    run = ivr_test(str(cases), timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{cases}:5:9: error: case a.turn 1: unknown key 'sya'" in run.stdout, run.stdout
    assert "0 total, 1 case file with errors" in run.stdout, run.stdout


def test_a_path_with_no_case_file_is_a_usage_error(tmp_path: Path) -> None:
    run = ivr_test(str(tmp_path), timeout=60)
    assert run.returncode == 2 and "no case files" in run.stderr, run.stderr
    run = ivr_test(str(tmp_path / "missing.test.yaml"), timeout=60)
    assert run.returncode == 2 and "no such case file" in run.stderr, run.stderr


def test_a_bridge_already_running_is_judged_by_what_the_caller_sees(tmp_path: Path) -> None:
    from tests.integration.harness import bridge, free_port

    cases = tmp_path / "external.test.yaml"
    cases.write_text(
        f"dialplan: {DIALPLANS / 'demo.yaml'}\n"
        "cases:\n"
        "  agent_by_keypad:\n"
        "    turns: [{press: '0'}]\n"
        "    expect:\n"
        "      prompts: [greeting.wav, agent.wav]\n"
        "      transfer: {to: 'sip:agents@127.0.0.1:5070', headers: {X-IVR-Channel-Id: '*'}}\n"
        "  steps_from_the_prompts_heard:\n"
        "    turns: [{press: '1'}]\n"
        "    expect: {steps: [greeting, balance], route: balance}\n"
        "  the_cause_needs_a_cdr:\n"
        "    turns: [{press: '2'}]\n"
        "    expect: {route: lost_card, hangup_cause: normal}\n",
        encoding="utf-8",
    )
    embedded = {"asr_urls": {"mediazen": "embedded"}, "emulator_port": free_port()}
    with bridge(tmp_path, "embedded", **embedded) as running:
        run = ivr_test(str(cases), "--bridge", f"127.0.0.1:{running.port}")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PASS agent_by_keypad" in run.stdout, run.stdout
    assert "PASS steps_from_the_prompts_heard" in run.stdout, run.stdout
    assert "steps inferred from the prompts heard (no CDR): ['greeting', 'balance']" in run.stdout
    assert "FAIL the_cause_needs_a_cdr" in run.stdout, run.stdout
    assert "why: hangup_cause not checked: no CDR" in run.stdout, run.stdout
