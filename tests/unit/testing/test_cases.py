"""The `ivr test` case file: valid files load; every mistake is reported at its file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dialplan.loader import load_dialplan
from ivr.testing.cases import (
    CaseFileError,
    ReferAnswer,
    Style,
    cases_of,
    declared_dialplan,
    dialplan_of,
    load_cases,
)

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "dialplans" / "demo.yaml"
DIALPLAN = load_dialplan(DEMO)


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "demo.test.yaml"
    path.write_text(text, encoding="utf-8")
    return load_cases(path, DIALPLAN, DEMO)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(CaseFileError) as info:
        load(tmp_path, text)
    return [str(p).removeprefix(str(tmp_path / "demo.test.yaml") + ":") for p in info.value.problems]


def test_a_valid_file_loads_with_its_turns_and_expectations(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        """cases:
  agent:
    transfer: decline
    turns:
      - say: 상담원 연결해 주세요
        style: agitated
      - press: "0#"
      - silence: 2
      - hold: 1.5
        after: 0.5
      - hangup: true
    expect:
      steps: [greeting, agent]
      route: agent
      prompts: [greeting.wav]
      transfer: {to: "sip:agents@127.0.0.1:5070", headers: {X-IVR-Channel-Id: "*"}}
""",
    )
    case = loaded.cases.cases["agent"]  # type: ignore[attr-defined]
    assert [t.action for t in case.turns] == ["say", "press", "silence", "hold", "hangup"]
    assert case.turns[0].style is Style.AGITATED and case.turns[3].after == 0.5
    assert case.transfer is ReferAnswer.DECLINE
    assert case.expect.transfer.headers == {"X-IVR-Channel-Id": "*"}


def test_press_0_stays_the_digit_0_not_a_number(tmp_path: Path) -> None:
    loaded = load(tmp_path, "cases:\n  a:\n    turns:\n      - press: 0\n")
    assert loaded.cases.cases["a"].turns[0].press == "0"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases:\n  a:\n    turns:\n      - sya: hello\n", "4:9: error: case a.turn 1: unknown key 'sya'"),
        (
            "cases:\n  a:\n    turns:\n      - say: hi\n        press: '1'\n",
            "4:9: error: case a.turn 1: a turn does exactly one of say, press, silence, hold, hangup "
            "(got say, press)",
        ),
        (
            "cases:\n  a:\n    turns:\n      - press: '12x'\n",
            "4:9: error: case a.turn 1.press: String should match",
        ),
        ("cases:\n  a:\n    timeout: soon\n", "3:5: error: case a.timeout: Input should be a valid number"),
        (
            "cases:\n  a:\n    transfer: maybe\n",
            "3:5: error: case a.transfer: Input should be 'accept', 'decline' or 'busy'",
        ),
        ("cases: {}\n", "1:1: error: cases: Dictionary should have at least 1 item"),
        ("cases:\n  a:\n    turns: [\n", "4:1: error: YAML syntax error"),
        ("cases:\n  a: {}\n  a: {}\n", "3:3: error: duplicate key 'a' (first at line 2)"),
        ("- just a list\n", "1:1: error: a case file is a mapping with cases:"),
    ],
)
def test_a_broken_file_gets_file_line_col(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert found and found[0].startswith(expected), found


def test_unknown_step_route_and_prompt_names_are_errors_with_a_did_you_mean(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """cases:
  a:
    expect:
      steps: [greeting, agnet]
      route: balanse
      prompts: [greting.wav]
""",
    )
    assert found == [
        "4:25: error: unknown step 'agnet' (did you mean 'agent'?)",
        "5:7: error: unknown step 'balanse' (did you mean 'balance'?)",
        "6:17: error: unknown prompt 'greting.wav' (did you mean 'greeting.wav'?)",
    ]


def test_prompts_of_sub_flows_and_reprompts_are_known_names(tmp_path: Path) -> None:
    for name in ("menu", "again", "birth"):
        (tmp_path / f"{name}.wav").write_bytes((REPO / "dialplans" / "prompts" / "agent.wav").read_bytes())
    (tmp_path / "sub.yaml").write_text(
        "name: sub\nstart: birth\nsteps:\n  birth:\n    play: birth.wav\n    return: true\n", encoding="utf-8"
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        "name: main\nstart: menu\nsteps:\n  menu:\n    play: menu.wav\n    routes:\n"
        "      - {dtmf: '1', goto: sub}\n    no_input: {reprompts: [again.wav], goto: bye}\n"
        "    no_match: {goto: bye}\n  sub:\n    call: sub.yaml\n    goto: bye\n  bye:\n    hangup: true\n",
        encoding="utf-8",
    )
    cases = tmp_path / "main.test.yaml"
    cases.write_text(
        "cases:\n  a:\n    expect: {prompts: [menu.wav, again.wav, birth.wav]}\n", encoding="utf-8"
    )
    loaded = load_cases(cases, load_dialplan(main), main)
    assert loaded is not None  # no "unknown prompt" for the reprompt's nor the sub-flow's file


def test_a_case_file_pairs_with_the_dialplan_beside_it(tmp_path: Path) -> None:
    assert dialplan_of(Path("d/banco.test.yaml")) == Path("d/banco.yaml")
    assert cases_of(Path("d/banco.yaml")) == Path("d/banco.test.yaml")
    named = tmp_path / "x.test.yaml"
    named.write_text("dialplan: other.yaml\ncases: {}\n", encoding="utf-8")
    assert declared_dialplan(named) == tmp_path / "other.yaml"
    broken = tmp_path / "y.test.yaml"
    broken.write_text("cases: [\n", encoding="utf-8")
    assert declared_dialplan(broken) == tmp_path / "y.yaml"  # its own errors come when it is loaded


def test_ivr_check_does_not_take_the_bundled_case_files_for_dialplans() -> None:
    from ivr.dialplan.report import find_dialplans

    found, skipped = find_dialplans([REPO / "dialplans"])
    assert {p.name for p in found} == {"demo.yaml", "banco.yaml", "takuhai.yaml"}
    assert not any(s.path.endswith(".test.yaml") for s in skipped)  # not even noted as skipped
