"""Early match: which partial results route at once, and which wait for the final."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ivr.asr.base import Classification, Scores
from ivr.dialplan import (
    Cancel,
    Dialplan,
    DialplanEngine,
    Listen,
    PartialResult,
    Play,
    PromptFinished,
    Recognized,
    Routed,
    SpeechStarted,
    Transfer,
)

AGENT = {"say": ["상담원", "상담사"], "phrases": ["상담원 연결해 주세요"], "goto": "agent"}
BALANCE = {"say": ["잔액"], "phrases": ["잔액 조회"], "goto": "balance"}
AGENT_PHRASE = {"phrases": ["상담원 연결해 주세요"], "goto": "agent"}
AGENT_WORD = {"say": ["상담원"], "goto": "quick"}
KEYPAD = {"dtmf": "9", "goto": "balance"}
ANGRY = {"emotion": ["irritado"], "goto": "quick"}


def flow(routes: list[dict[str, Any]], redact: bool = False, **listen: Any) -> Dialplan:
    end = {"play": "x.wav", "hangup": True}
    return Dialplan.model_validate(
        {
            "name": "early",
            "asr": {"vendor": "cpqd", "language": "pt-BR"},  # CPQD reports how the caller sounds
            "start": "menu",
            "steps": {
                "menu": {
                    "play": "menu.wav",
                    "listen": {"early_match": True, **listen},
                    "routes": routes,
                    "no_input": {"goto": "balance"},
                    "no_match": {"goto": "balance"},
                    "redact": redact,
                },
                "agent": {"play": "agent.wav", "transfer": "sip:agents@127.0.0.1:5070"},
                "balance": end,
                "quick": end,
            },
        }
    )


def listening(dialplan: Dialplan) -> tuple[DialplanEngine, Listen]:
    engine = DialplanEngine(dialplan)
    listen = next(a for a in engine.start(0.0) if isinstance(a, Listen))
    engine.handle(SpeechStarted(listen.id), 0.5)
    return engine, listen


def first_route(actions: list[Any]) -> tuple[str, str] | None:
    return next(((a.step, a.via) for a in actions if isinstance(a, Routed)), None)


@pytest.mark.parametrize(
    ("routes", "listen", "partial", "expected"),
    [
        # The first speech route, keyword present: at once.
        ([AGENT, BALANCE], {}, "상담원", ("agent", "say:상담원(early)")),
        ([AGENT, BALANCE], {}, "상담사 바꿔", ("agent", "say:상담사(early)")),
        # Spacing differs between recognizers (상담원연결): normalized as the final is.
        ([AGENT_PHRASE, BALANCE], {}, "상담원연결 해주세요", ("agent", "say:상담원 연결해 주세요(early)")),
        # Keypad-only routes ahead are not reachable by speech: they do not block.
        ([KEYPAD, AGENT, BALANCE], {}, "상담원", ("agent", "say:상담원(early)")),
        # A phrase route matches on the whole phrase: half of it waits.
        ([AGENT_PHRASE, BALANCE], {}, "상담원 연결", None),
        # Route 2 matches, but more words could still complete route 1's phrase: first match wins, wait.
        ([AGENT_PHRASE, AGENT_WORD], {}, "상담원", None),
        # Route 2's keyword, while route 1's could still come ("잔액 말고 상담원" is not the only future).
        ([BALANCE, AGENT], {}, "상담원", None),
        # A partial matching nothing yet.
        ([AGENT, BALANCE], {}, "음", None),
        ([AGENT, BALANCE], {}, "  ", None),
        # A route on how the caller sounds needs the final's classification: never early, and it blocks
        # every route after it.
        ([ANGRY, AGENT], {}, "상담원", None),
        ([{**AGENT, "emotion": ["irritado"]}, BALANCE], {}, "상담원", None),
        # A step running classifiers keeps the turn's classification for the handoff: no early match.
        ([AGENT, BALANCE], {"classifiers": ["gender"]}, "상담원", None),
        # min_confidence applies to the partial's confidence; a partial without one (0) cannot pass it.
        ([AGENT, BALANCE], {"min_confidence": 0.6}, ("상담원", 0.8), ("agent", "say:상담원(early)")),
        ([AGENT, BALANCE], {"min_confidence": 0.6}, ("상담원", 0.5), None),
        ([AGENT, BALANCE], {"min_confidence": 0.6}, "상담원", None),
        # Off: partials never route.
        ([AGENT, BALANCE], {"early_match": False}, "상담원", None),
    ],
)
def test_which_partials_route_early(
    routes: list[dict[str, Any]],
    listen: dict[str, Any],
    partial: str | tuple[str, float],
    expected: tuple[str, str] | None,
) -> None:
    engine, recognition = listening(flow(routes, **listen))
    text, confidence = partial if isinstance(partial, tuple) else (partial, 0.0)
    actions = engine.handle(PartialResult(recognition.id, text, confidence), 1.0)
    assert first_route(actions) == expected
    if expected is None:
        assert actions == [] and engine.recognition == recognition.id  # still listening, nothing touched


def test_an_early_route_cancels_the_recognition_and_its_late_final_is_dropped() -> None:
    engine, recognition = listening(flow([AGENT, BALANCE]))
    actions = engine.handle(PartialResult(recognition.id, "상담원", 0.7), 1.0)
    # The greeting was cut by barge-in at speech start; the recognition is cancelled, the agent prompt plays.
    assert [type(a).__name__ for a in actions] == ["Cancel", "Routed", "Play"]
    assert actions[0] == Cancel(recognition.id)
    assert engine.step == "agent" and engine.recognition is None
    play = actions[2]
    assert isinstance(play, Play) and play.path.name == "agent.wav"
    # The recognizer's final (or another partial) of the cancelled recognition arrives late: dropped.
    assert engine.handle(Recognized(recognition.id, "잔액 조회", 0.9), 1.2) == []
    assert engine.handle(PartialResult(recognition.id, "잔액", 0.9), 1.2) == []
    (transfer,) = engine.handle(PromptFinished(play.id), 3.0)
    assert isinstance(transfer, Transfer)
    assert transfer.handoff.transcript == ("상담원",)  # what routed the call reaches the agent


def test_a_partial_after_the_final_is_stale() -> None:
    engine, recognition = listening(flow([AGENT, BALANCE]))
    assert first_route(engine.handle(Recognized(recognition.id, "잔액 조회", 0.9), 2.0)) == (
        "balance",
        "say:잔액",
    )
    # A partial queued behind the final: the recognition has ended, the partial is dropped.
    assert engine.handle(PartialResult(recognition.id, "상담원", 0.9), 2.1) == []
    assert engine.step == "balance"


def test_a_stale_partial_of_a_replaced_recognition_does_not_route_the_new_one() -> None:
    dialplan = Dialplan.model_validate(
        {
            "name": "retry",
            "start": "menu",
            "steps": {
                "menu": {
                    "play": "menu.wav",
                    "listen": {"early_match": True},
                    "routes": [AGENT, BALANCE],
                    "no_input": {"goto": "bye"},
                    "no_match": {"retries": 1, "goto": "bye"},
                },
                "agent": {"play": "agent.wav", "transfer": "sip:agents@127.0.0.1:5070"},
                "balance": {"play": "b.wav", "hangup": True},
                "bye": {"play": "bye.wav", "hangup": True},
            },
        }
    )
    engine, first = listening(dialplan)
    reprompt = engine.handle(Recognized(first.id, "몰라요", 0.9), 2.0)
    assert first_route(reprompt) == ("menu", "no_match")
    second = next(a for a in reprompt if isinstance(a, Listen))
    assert engine.handle(PartialResult(first.id, "상담원", 0.9), 2.1) == []  # the old turn's partial
    assert engine.recognition == second.id
    assert first_route(engine.handle(PartialResult(second.id, "상담원", 0.9), 2.5)) == (
        "agent",
        "say:상담원(early)",
    )


def test_a_redacted_step_keeps_the_early_text_out_of_the_handoff() -> None:
    engine, recognition = listening(flow([AGENT, BALANCE], redact=True))
    play = next(a for a in engine.handle(PartialResult(recognition.id, "상담원"), 1.0) if isinstance(a, Play))
    (transfer,) = engine.handle(PromptFinished(play.id), 3.0)
    assert isinstance(transfer, Transfer) and transfer.handoff.transcript == ("[redacted]",)


def test_early_match_without_partial_results_is_refused_at_load() -> None:
    with pytest.raises(ValidationError, match="needs partial_results"):
        flow([AGENT], partial_results=False)


def test_the_classification_guard_sees_a_classified_final_as_before() -> None:
    # With classifiers the step waits; its final still routes as without early match.
    engine, recognition = listening(flow([AGENT, BALANCE], classifiers=["emotion"]))
    assert engine.handle(PartialResult(recognition.id, "상담원", 0.9), 1.0) == []
    calm = Classification(emotion=Scores("neutro", (("neutro", 0.9),)))
    actions = engine.handle(Recognized(recognition.id, "상담원", 0.9, classification=calm), 2.0)
    assert first_route(actions) == ("agent", "say:상담원")


WORDS = st.sampled_from(
    ["상담원", "상담사", "연결해", "주세요", "잔액", "조회", "분실", "신고", "카드", "아니", " "]
)
SAID = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)
UTTERANCE = st.lists(st.one_of(WORDS, WORDS, WORDS, st.text(max_size=3)), max_size=5).map(" ".join)
ROUTE_SETS = st.permutations([AGENT, BALANCE, AGENT_PHRASE, AGENT_WORD, KEYPAD, ANGRY]).flatmap(
    lambda routes: st.integers(1, 4).map(lambda n: routes[:n])
)


@settings(max_examples=300, deadline=None)
@given(ROUTE_SETS, SAID, UTTERANCE)
def test_an_early_route_is_where_any_longer_final_would_have_gone(
    routes: list[dict[str, Any]], partial: str, rest: str
) -> None:
    """What early match promises: whatever the caller goes on to say, the final would route the same way."""
    engine, recognition = listening(flow(routes))
    taken = first_route(engine.handle(PartialResult(recognition.id, partial), 1.0))
    if taken is None:
        return
    for final in (f"{partial} {rest}", f"{partial}{rest}"):
        waiting, later = listening(flow(routes, early_match=False))
        assert waiting.handle(PartialResult(later.id, partial), 1.0) == []
        routed = first_route(waiting.handle(Recognized(later.id, final, 0.9), 2.0))
        assert routed is not None and routed[0] == taken[0], (routes, partial, final)
    # (The keyword named may differ: the final names the route's first word present, 상담원 before 상담사.)
    assert taken[1].startswith("say:") and taken[1].endswith("(early)")
