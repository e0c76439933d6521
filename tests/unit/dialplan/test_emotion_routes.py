"""The bundled bank dialplan routes by what the caller says and by how they sound (CPQD 2.4 emotion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.asr.base import Classification, Classifier, ResultStatus, Scores
from ivr.dialplan import load_dialplan
from ivr.dialplan.engine import (
    Action,
    DialplanEngine,
    Listen,
    NotRecognized,
    Play,
    PromptFinished,
    Recognized,
    Routed,
    Transfer,
)

BANCO = Path(__file__).parents[3] / "dialplans" / "banco.yaml"
CHANNEL = "698dc19d489c4e4db73e28a713eab07b"


def emotion(p: dict[str, float], groups: dict[str, float]) -> Classification:
    label = max(p, key=lambda k: p[k])
    return Classification(emotion=Scores(label, tuple(p.items()), tuple(groups.items())))


CALM = emotion(
    {"neutro": 0.7, "feliz": 0.1, "irritado": 0.1, "ansioso": 0.1},
    {"neutro": 0.7, "positivo": 0.1, "negativo_ativado": 0.2, "negativo_desativado": 0.0},
)
ANGRY = emotion(
    {"neutro": 0.1, "irritado": 0.5, "frustrado": 0.3, "ansioso": 0.1},
    {"neutro": 0.1, "positivo": 0.0, "negativo_ativado": 0.9, "negativo_desativado": 0.0},
)
# Tense but not angry: anxious, so the anger labels stay low while the activated-negative group is high.
TENSE = emotion(
    {"neutro": 0.3, "ansioso": 0.5, "irritado": 0.1, "frustrado": 0.1},
    {"neutro": 0.3, "positivo": 0.0, "negativo_ativado": 0.7, "negativo_desativado": 0.0},
)


class Caller:
    def __init__(self) -> None:
        self.engine = DialplanEngine(load_dialplan(BANCO), channel_id=CHANNEL)
        self.now = 10.0
        self.play: Play | None = None
        self.listen: Listen | None = None
        self.actions = self._seen(self.engine.start(self.now))

    def _seen(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Play):
                self.play = action
            elif isinstance(action, Listen):
                self.listen = action
        return actions

    def says(self, text: str, classification: Classification | None) -> list[Action]:
        assert self.listen is not None
        self.now += 3
        return self._seen(
            self.engine.handle(Recognized(self.listen.id, text, 0.9, (), classification), self.now)
        )


def routed(actions: list[Action]) -> tuple[str, str]:
    [route] = [a for a in actions if isinstance(a, Routed)]
    return route.step, route.via


def test_a_calm_caller_gets_the_menu() -> None:
    caller = Caller()
    assert routed(caller.says("consultar saldo", CALM)) == ("saldo", "say:saldo")


def test_an_agitated_caller_goes_to_the_priority_queue_whatever_was_said() -> None:
    caller = Caller()
    actions = caller.says("consultar saldo", ANGRY)
    assert routed(actions) == ("prioridade", "emotion:irritado|enojado|frustrado")
    assert caller.play is not None
    [transfer] = caller._seen(caller.engine.handle(PromptFinished(caller.play.id), caller.now))
    assert isinstance(transfer, Transfer) and transfer.target == "sip:prioridade@127.0.0.1:5070"
    handoff = transfer.handoff
    assert handoff.channel_id == CHANNEL and handoff.transcript == ("consultar saldo",)
    assert handoff.speaker.emotion == "irritado" and handoff.speaker.group == "negativo_ativado"
    assert handoff.step == "prioridade"


def test_tense_two_turns_in_a_row_goes_to_the_priority_queue() -> None:
    caller = Caller()
    # Tense once: the anger labels sum to 0.2, so the menu goes on.
    assert routed(caller.says("cartão de crédito", TENSE)) == ("cartao", "say:cartão")
    assert routed(caller.says("sim", TENSE)) == ("prioridade", "emotion:negativo_ativado")


def test_one_tense_turn_after_a_calm_one_does_not_flip_the_route() -> None:
    caller = Caller()
    assert routed(caller.says("cartão", CALM)) == ("cartao", "say:cartão")
    assert routed(caller.says("sim", TENSE)) == ("bloqueado", "say:sim")


def test_a_no_match_still_counts_as_a_turn() -> None:
    caller = Caller()
    assert routed(caller.says("cartão", TENSE)) == ("cartao", "say:cartão")
    assert caller.listen is not None
    caller.now += 3
    missed = NotRecognized(caller.listen.id, ResultStatus.NO_MATCH, "", TENSE)
    assert routed(caller.engine.handle(missed, caller.now)) == ("cartao", "no_match")
    assert caller.engine.speaker.turns == 2


def test_each_step_asks_cpqd_for_what_its_routes_need() -> None:
    caller = Caller()
    assert caller.listen is not None
    first = caller.listen.request
    assert caller.listen.vendor == "cpqd" and first.language == "pt-BR"
    assert first.classifiers == frozenset(Classifier)  # listed under classifiers
    assert first.verify_buffer and first.channel_id == CHANNEL
    caller.says("cartão", CALM)
    second = caller.listen.request
    assert second.classifiers == frozenset({Classifier.EMOTION})  # implied by the emotion route
    assert not second.verify_buffer and second.channel_id == CHANNEL


@pytest.mark.parametrize("classification", [None, Classification()])
def test_without_a_reading_the_emotion_routes_never_match(classification: Classification | None) -> None:
    caller = Caller()
    assert routed(caller.says("cartão", classification)) == ("cartao", "say:cartão")
    assert routed(caller.says("sim", classification)) == ("bloqueado", "say:sim")
