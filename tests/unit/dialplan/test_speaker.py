"""The caller's emotion over the call's turns, and the route conditions on it."""

from __future__ import annotations

import pytest

from ivr.asr.base import Classification, Scores
from ivr.dialplan.schema import AgeCondition, EmotionCondition
from ivr.dialplan.speaker import SpeakerHistory

CALM = Scores(
    "neutro",
    (("neutro", 0.7), ("feliz", 0.1), ("irritado", 0.1), ("frustrado", 0.1)),
    (("neutro", 0.7), ("positivo", 0.1), ("negativo_ativado", 0.2), ("negativo_desativado", 0.0)),
)
ANGRY = Scores(
    "irritado",
    (("neutro", 0.1), ("feliz", 0.0), ("irritado", 0.6), ("frustrado", 0.3)),
    (("neutro", 0.1), ("positivo", 0.0), ("negativo_ativado", 0.9), ("negativo_desativado", 0.0)),
)
AGITATED = EmotionCondition(group="negativo_ativado", min=0.6)


def history(*readings: Scores, window: int = 3) -> SpeakerHistory:
    speaker = SpeakerHistory(window)
    for scores in readings:
        speaker.add(Classification(emotion=scores))
    return speaker


def test_no_reading_matches_no_emotion_condition() -> None:
    speaker = SpeakerHistory()
    speaker.add(None)
    speaker.add(Classification())
    assert not speaker.emotion_matches(AGITATED)
    assert speaker.summary().emotion is None and speaker.summary().turns == 0


def test_one_agitated_turn_after_calm_ones_is_averaged_away() -> None:
    assert history(ANGRY).emotion_matches(AGITATED)
    # mean(0.2, 0.2, 0.9) = 0.43: one noisy reading does not flip the route
    assert not history(CALM, CALM, ANGRY).emotion_matches(AGITATED)
    # unless the condition looks at this turn alone
    alone = EmotionCondition(group="negativo_ativado", min=0.6, window=1)
    assert history(CALM, CALM, ANGRY).emotion_matches(alone)


def test_turns_asks_for_each_of_the_last_turns() -> None:
    twice = EmotionCondition(group="negativo_ativado", min=0.6, turns=2, window=2)
    assert not history(ANGRY).emotion_matches(twice)  # only one turn so far
    assert not history(ANGRY, CALM).emotion_matches(twice)
    assert history(CALM, ANGRY, ANGRY).emotion_matches(twice)


@pytest.mark.parametrize(
    ("labels", "minimum", "expected"),
    [
        (["irritado"], 0.5, True),  # 0.6
        (["frustrado"], 0.5, False),  # 0.3
        (["irritado", "frustrado", "enojado"], 0.85, True),  # the sum: 0.9
        (["feliz"], 0.0, True),
    ],
)
def test_labels_sum_their_probabilities(labels: list[str], minimum: float, expected: bool) -> None:
    assert history(ANGRY).emotion_matches(EmotionCondition(labels=labels, min=minimum)) is expected


def test_neutro_the_group_is_not_neutro_the_emotion() -> None:
    scores = Scores("feliz", (("neutro", 0.1), ("feliz", 0.9)), (("neutro", 0.8), ("positivo", 0.2)))
    speaker = history(scores)
    assert speaker.emotion_matches(EmotionCondition(group="neutro", min=0.8))
    assert not speaker.emotion_matches(EmotionCondition(labels=["neutro"], min=0.8))


def test_a_label_without_probabilities_counts_as_certain() -> None:
    speaker = history(Scores("irritado"))
    assert speaker.emotion_matches(EmotionCondition(labels=["irritado"], min=0.9))
    assert speaker.summary().emotion == "irritado"


def test_summary_is_the_average_over_the_window() -> None:
    summary = history(CALM, ANGRY, ANGRY, window=2).summary()
    assert summary.emotion == "irritado" and summary.emotion_p == pytest.approx(0.6)
    assert summary.group == "negativo_ativado" and summary.group_p == pytest.approx(0.9)
    assert summary.turns == 3


def test_age_and_gender() -> None:
    speaker = SpeakerHistory(window=2)
    for age, gender in (("70", "M"), ("30", "F"), ("20", "F"), ("not a number", "")):
        speaker.add(Classification(age=Scores(age), gender=Scores(gender) if gender else None))
    assert speaker.age() == 25 and speaker.gender() == "F"
    assert speaker.age_matches(AgeCondition(max=30)) and not speaker.age_matches(AgeCondition(min=40))
    tie = SpeakerHistory(window=2)
    tie.add(Classification(gender=Scores("F")))
    tie.add(Classification(gender=Scores("m")))
    assert tie.gender() == "M"  # a tie goes to the latest reading
    assert not SpeakerHistory().age_matches(AgeCondition(min=0))
