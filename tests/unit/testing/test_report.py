"""A case's expectations against what the caller saw and the CDR; coverage of steps and routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.dialplan.loader import load_dialplan
from ivr.testing.caller import CallOutcome, Refer
from ivr.testing.cases import Case
from ivr.testing.listen import PromptHeard
from ivr.testing.report import (
    CaseResult,
    Coverage,
    Edge,
    RunReport,
    SuiteResult,
    evaluate,
    infer_steps,
    taken,
)

REPO = Path(__file__).resolve().parents[3]
DEMO = load_dialplan(REPO / "dialplans" / "demo.yaml")


def outcome(refer: Refer | None = None, prompts: tuple[str, ...] = ()) -> CallOutcome:
    heard = [PromptHeard(name, i, i + 1, 1.0, True) for i, name in enumerate(prompts)]
    return CallOutcome("c1", answered=200, refer=refer, prompts=heard, ended_by="bridge")


AGENT_CDR: dict[str, Any] = {"route": ["greeting<start", "greeting<no_input", "agent<no_input"],
                             "hangup_cause": "transferred"}  # fmt: skip


def case(**expect: Any) -> Case:
    return Case.model_validate({"expect": expect})


def test_steps_are_a_subsequence_unless_exact() -> None:
    assert evaluate(case(steps=["greeting", "agent"], route="agent"), outcome(), AGENT_CDR) == []
    [why] = evaluate(case(steps=["greeting", "agent"], exact_steps=True), outcome(), AGENT_CDR)
    assert "exactly ['greeting', 'agent']" in why and "['greeting', 'greeting', 'agent']" in why
    [why] = evaluate(case(steps=["agent", "greeting"]), outcome(), AGENT_CDR)
    assert why.startswith("steps: expected in this order")


def test_a_wrong_route_and_cause_say_what_happened() -> None:
    failures = evaluate(case(route="busy", hangup_cause="normal"), outcome(), AGENT_CDR)
    assert failures == [
        "route: expected to end in 'busy', ended in 'agent'",
        "hangup_cause: expected 'normal', got 'transferred'",
    ]


def test_transfer_target_and_headers_exact_present_or_pattern() -> None:
    refer = Refer(
        "sip:agents@127.0.0.1:5070", {"X-IVR-Channel-Id": "ab" * 16, "X-IVR-Emotion": "irritado;p=0.4"}
    )
    headers = {"x-ivr-channel-id": "*", "X-IVR-Emotion": "re:^irritado;"}
    good = case(transfer={"to": "sip:agents@127.0.0.1:5070", "headers": headers})
    assert evaluate(good, outcome(refer), None) == []
    bad = case(transfer={"to": "sip:other@h", "headers": {"X-IVR-Emotion": "neutro", "X-IVR-Age": "*"}})
    assert evaluate(bad, outcome(refer), None) == [
        "transfer: expected REFER to sip:other@h, got sip:agents@127.0.0.1:5070",
        "transfer header X-IVR-Emotion: expected 'neutro', got 'irritado;p=0.4'",
        "transfer header X-IVR-Age: expected '*', got None",
    ]
    assert evaluate(case(transfer={}), outcome(), None) == ["transfer: expected a REFER, none came"]
    assert evaluate(case(no_transfer=True), outcome(refer), None) == [
        "no transfer expected, got REFER sip:agents@127.0.0.1:5070"
    ]


def test_prompts_heard_in_order() -> None:
    heard = outcome(prompts=("greeting.wav", "reprompt.wav", "agent.wav"))
    assert evaluate(case(prompts=["greeting.wav", "agent.wav"]), heard, None) == []
    [why] = evaluate(case(prompts=["agent.wav", "greeting.wav"]), heard, None)
    assert why.startswith("prompts: expected to hear ['agent.wav', 'greeting.wav']")


def test_without_a_cdr_steps_come_from_the_prompts_heard_and_the_cause_cannot_be_checked() -> None:
    heard = ["greeting.wav", "reprompt.wav", "agent.wav", "busy.wav"]
    assert infer_steps(DEMO, heard) == ["greeting", "greeting", "agent", "busy"]
    assert infer_steps(DEMO, ["nomatch.wav", "balance.wav"]) == ["greeting", "balance"]
    seen = outcome(prompts=tuple(heard))
    assert (
        evaluate(case(steps=["greeting", "busy"], route="busy"), seen, None, infer_steps(DEMO, heard)) == []
    )
    [why] = evaluate(case(route="agent"), seen, None, infer_steps(DEMO, heard))
    assert why.startswith("route: expected to end in 'agent', ended in 'busy' (steps inferred from")
    [why] = evaluate(case(hangup_cause="normal"), seen, None, [])
    assert "not checked" in why and "--bridge" in why
    [why] = evaluate(case(route="agent"), seen, None, None)
    assert why == "steps and route not checked: no CDR for this call"


def test_an_unanswered_or_timed_out_call_fails() -> None:
    rejected = CallOutcome("c", answered=486, ended_by="rejected")
    assert evaluate(case(), rejected, None) == ["the call was not answered (INVITE final status 486)"]


def test_coverage_counts_steps_and_the_edges_cdr_routes_took() -> None:
    assert taken(DEMO, AGENT_CDR) == {Edge("greeting", "agent", "no_input")}
    dtmf = {"route": ["greeting<start", "agent<dtmf:0", "busy<transfer_failed:603"]}
    assert taken(DEMO, dtmf) == {Edge("greeting", "agent", "route 1"), Edge("agent", "busy", "on_failure")}
    coverage = Coverage.of(DEMO, [AGENT_CDR, dtmf])
    assert coverage.visited == {"greeting", "agent", "busy"}
    [summary, steps, routes] = coverage.lines()
    assert summary == "  coverage: steps 3/6, routes 3/10"
    assert steps == "    steps not visited: balance, lost_card, lost_card_done"
    assert "greeting -[route 2]-> balance" in routes and "greeting -[no_match]-> agent" in routes


def test_the_summary_counts_and_a_broken_file_fails_the_run() -> None:
    passed = CaseResult("a", (), ((0.0, "INVITE -> 200 OK"),), "c1", ("greeting",), 1.0)
    failed = CaseResult("b", ("route: wrong",), (), "c2", None, 2.0)
    report = RunReport([SuiteResult("x.test.yaml", "x.yaml", cases=[passed, failed])], 3.0)
    assert not report.ok and report.summary() == "FAILED: 1 passed, 1 failed, 2 total in 3.0s"
    assert "    why: route: wrong" in report.lines()
    broken = RunReport([SuiteResult("y.test.yaml", "y.yaml", problems=["y.test.yaml:1:1: error: x"])], 0.1)
    assert not broken.ok and "1 case file with errors" in broken.summary()
    assert report.as_json()["failed"] == 1
