"""Engine: scripted conversations against the demo flow and small flows, plus random event sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ivr.dialplan import (
    Action,
    Dialplan,
    DialplanEngine,
    Digit,
    Event,
    Hangup,
    Heard,
    Listen,
    NoInput,
    Play,
    PromptFinished,
    RecognizerFailed,
    Routed,
    Transfer,
    load_dialplan,
)

DEMO = Path(__file__).parents[3] / "dialplans" / "demo.yaml"
PROMPTS = DEMO.parent / "prompts"
AGENT = "sip:agents@127.0.0.1:5070"


@pytest.fixture(scope="module")
def demo() -> Dialplan:
    return load_dialplan(DEMO)


def greeting_listen(demo: Dialplan) -> Listen:
    return Listen("mediazen", "ko", 5.0, 10.0, tuple(demo.phrases()), True, True)


def started(demo: Dialplan) -> DialplanEngine:
    engine = DialplanEngine(demo)
    engine.start()
    return engine


def test_start_plays_the_greeting_and_listens_during_it(demo: Dialplan) -> None:
    engine = DialplanEngine(demo)
    assert engine.start() == [
        Routed("greeting", "start"),
        Play(PROMPTS / "greeting.wav", True),
        greeting_listen(demo),
    ]
    assert not engine.finished
    assert engine.handle(PromptFinished()) == []  # still listening: the no-input timer is the call's


def test_spoken_agent_request_transfers_after_the_agent_prompt(demo: Dialplan) -> None:
    engine = started(demo)
    assert engine.handle(Heard("상담원 연결해 주세요", 0.9)) == [
        Routed("agent", "say:상담원"),
        Play(PROMPTS / "agent.wav", False),
    ]
    assert not engine.finished
    assert engine.handle(PromptFinished()) == []  # the greeting, cut by barge-in
    assert engine.handle(PromptFinished()) == [Transfer(AGENT)]
    assert engine.finished


@pytest.mark.parametrize("text", ["상담원연결해주세요", "  상담사   바꿔 주세요 ", "저 상담원이요"])
def test_keywords_match_regardless_of_spacing(demo: Dialplan, text: str) -> None:
    assert started(demo).handle(Heard(text, 0.5))[0].step == "agent"  # type: ignore[union-attr]


def test_digit_one_plays_balance_then_hangs_up(demo: Dialplan) -> None:
    engine = started(demo)
    engine.handle(PromptFinished())
    assert engine.handle(Digit("1")) == [Routed("balance", "dtmf:1"), Play(PROMPTS / "balance.wav", False)]
    assert engine.handle(Digit("0")) == []  # not listening any more
    assert engine.handle(PromptFinished()) == [Hangup("normal")]
    assert engine.finished


def test_digit_two_reports_a_lost_card(demo: Dialplan) -> None:
    engine = started(demo)
    assert engine.handle(Digit("2"))[0] == Routed("lost_card", "dtmf:2")


def test_silence_reprompts_once_then_goes_to_an_agent(demo: Dialplan) -> None:
    engine = started(demo)
    engine.handle(PromptFinished())
    assert engine.handle(NoInput()) == [
        Routed("greeting", "no_input"),
        Play(PROMPTS / "reprompt.wav", True),
        greeting_listen(demo),
    ]
    engine.handle(PromptFinished())
    assert engine.handle(NoInput()) == [Routed("agent", "no_input"), Play(PROMPTS / "agent.wav", False)]
    assert engine.handle(PromptFinished()) == [Transfer(AGENT)]


def test_two_unmatched_answers_go_to_an_agent(demo: Dialplan) -> None:
    engine = started(demo)
    assert engine.handle(Heard("오늘 날씨 어때요", 0.9)) == [
        Routed("greeting", "no_match"),
        Play(PROMPTS / "nomatch.wav", True),
        greeting_listen(demo),
    ]
    assert engine.handle(Digit("9")) == [Routed("agent", "no_match"), Play(PROMPTS / "agent.wav", False)]


def test_no_input_and_no_match_are_counted_apart(demo: Dialplan) -> None:
    engine = started(demo)
    assert engine.handle(NoInput())[0] == Routed("greeting", "no_input")
    assert engine.handle(Heard("뭐라고요", 0.9))[0] == Routed("greeting", "no_match")
    assert engine.handle(Digit("1"))[0] == Routed("balance", "dtmf:1")


def test_empty_result_counts_as_silence(demo: Dialplan) -> None:
    assert started(demo).handle(Heard("  ", 0.0))[0] == Routed("greeting", "no_input")


def test_recognizer_failure_goes_to_the_no_input_target_at_once(demo: Dialplan) -> None:
    engine = started(demo)
    assert engine.handle(RecognizerFailed("connection refused")) == [
        Routed("agent", "recognizer_failed"),
        Play(PROMPTS / "agent.wav", False),
    ]
    assert engine.handle(RecognizerFailed("again")) == []  # not listening: stale


def test_events_after_the_end_are_ignored(demo: Dialplan) -> None:
    engine = started(demo)
    engine.handle(Digit("0"))
    engine.handle(PromptFinished())
    engine.handle(PromptFinished())
    assert engine.finished
    for event in (PromptFinished(), Heard("잔액", 1.0), Digit("1"), NoInput(), RecognizerFailed("x")):
        assert engine.handle(event) == []


FLOW = """\
name: small
start: intro
steps:
  intro:
    play: intro.wav
    goto: menu
  menu:
    play: menu.wav
    listen: {barge_in: false, min_confidence: 0.6, timeout: 3, vendor: cpqd, language: pt-BR}
    routes:
      - {say: [sim], phrases: [sim por favor], goto: bye}
      - {dtmf: "#", goto: quiet}
    no_input: {goto: bye}
    no_match: {retries: 0, goto: bye}
  quiet:
    listen: true
    routes: [{dtmf: "*", goto: bye}]
    no_input: {retries: 2, goto: bye}
    no_match: {goto: bye}
  bye:
    hangup: true
"""


@pytest.fixture
def small(tmp_path: Path) -> Dialplan:
    for name in ("intro.wav", "menu.wav"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "small.yaml"
    path.write_text(FLOW, encoding="utf-8")
    return load_dialplan(path)


def test_without_barge_in_listening_starts_after_the_prompt(small: Dialplan, tmp_path: Path) -> None:
    engine = DialplanEngine(small)
    assert engine.start() == [Routed("intro", "start"), Play(tmp_path / "intro.wav", False)]
    assert engine.handle(PromptFinished()) == [Routed("menu", "goto"), Play(tmp_path / "menu.wav", False)]
    assert engine.handle(Digit("#")) == []  # no barge-in: the prompt is still playing
    listen = Listen("cpqd", "pt-BR", 3.0, None, ("sim por favor", "sim"), True, False)
    assert engine.handle(PromptFinished()) == [listen]
    assert engine.handle(Digit("#")) == [Routed("quiet", "dtmf:#"), listen_quiet()]


def listen_quiet() -> Listen:
    return Listen("mediazen", "ko", 5.0, None, (), True, True)


def test_low_confidence_does_not_match(small: Dialplan) -> None:
    engine = DialplanEngine(small)
    engine.start()
    engine.handle(PromptFinished())
    engine.handle(PromptFinished())
    assert engine.handle(Heard("sim", 0.5)) == [Routed("bye", "no_match"), Hangup("normal")]
    assert engine.finished


def test_step_without_prompt_listens_at_once_and_retries(small: Dialplan) -> None:
    engine = DialplanEngine(small)
    engine.start()
    engine.handle(PromptFinished())
    engine.handle(PromptFinished())
    engine.handle(Digit("#"))
    assert engine.handle(NoInput()) == [Routed("quiet", "no_input"), listen_quiet()]
    assert engine.handle(NoInput()) == [Routed("quiet", "no_input"), listen_quiet()]
    assert engine.handle(NoInput()) == [Routed("bye", "no_input"), Hangup("normal")]


def test_a_flow_built_in_code_is_checked_too() -> None:
    with pytest.raises(ValidationError, match="routes to unknown step 'nowhere'"):
        Dialplan.model_validate(
            {"name": "x", "start": "a", "steps": {"a": {"play": "a.wav", "goto": "nowhere"}}}
        )


EVENTS = st.one_of(
    st.just(PromptFinished()),
    st.just(NoInput()),
    st.builds(RecognizerFailed, st.text(max_size=5)),
    st.builds(Digit, st.sampled_from(list("0123456789*#ABCD"))),
    st.builds(
        Heard,
        st.one_of(
            st.sampled_from(["상담원 연결해 주세요", "잔액", "분실", "sim", "", "뭐요"]), st.text(max_size=10)
        ),
        st.floats(0, 1),
    ),
)


def check_run(dialplan: Dialplan, events: list[Event]) -> None:
    engine = DialplanEngine(dialplan)
    actions: list[Action] = engine.start()
    for event in events:
        actions += engine.handle(event)
    # A caller who goes silent (prompts end, no answer) is always let go within a bounded number of turns.
    for _ in range(4 * len(dialplan.steps) * 12):
        if engine.finished:
            break
        actions += engine.handle(PromptFinished())
        actions += engine.handle(NoInput())
    assert engine.finished
    endings = [a for a in actions if isinstance(a, Transfer | Hangup)]
    assert len(endings) == 1 and actions[-1] == endings[0]
    assert all(a.step in dialplan.steps for a in actions if isinstance(a, Routed))
    assert engine.handle(NoInput()) == [] and engine.handle(PromptFinished()) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=30))
def test_random_events_on_the_demo_end_in_transfer_or_hangup(events: list[Event]) -> None:
    check_run(load_dialplan(DEMO), events)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=30))
def test_random_events_on_a_flow_without_barge_in(events: list[Event]) -> None:
    dialplan = Dialplan.model_validate(
        {
            "name": "nested",
            "start": "intro",
            "steps": {
                "intro": {"play": "i.wav", "goto": "menu"},
                "menu": {
                    "play": "m.wav",
                    "listen": {"barge_in": False},
                    "routes": [{"say": "sim", "goto": "more"}, {"dtmf": "1", "goto": "intro"}],
                    "no_input": {"retries": 2, "goto": "more"},
                    "no_match": {"retries": 0, "goto": "intro"},
                },
                "more": {
                    "routes": [{"dtmf": "2", "goto": "menu"}],
                    "no_input": {"reprompt": "r.wav", "goto": "bye"},
                    "no_match": {"goto": "more"},
                },
                "bye": {"play": "b.wav", "transfer": "tel:+82215880000"},
            },
        }
    )
    check_run(dialplan, events)
