"""What the recognizer's classifiers said of the caller over the call's turns, and the route conditions on it.

Each recognized turn may carry a `Classification` (CPQD 2.4 `emotion_scores`, `age_scores`,
`gender_scores`). A single reading is noisy, so conditions look at the average of the call's last few turns
(`window`), and `turns` asks for a reading that held on each of the last turns on its own ("agitated two
turns in a row"). Pure: no I/O, no clock.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ivr.asr.base import Classification, Scores
from ivr.dialplan.schema import AgeCondition, EmotionCondition

MAX_TURNS = 20  # the schema's largest window / turns


@dataclass(frozen=True)
class SpeakerSummary:
    """The caller as the classifiers heard them, averaged over a window: for logs, CDRs and the agent."""

    emotion: str | None = None  # the label with the highest average p
    emotion_p: float = 0.0
    group: str | None = None  # the p_groups entry with the highest average
    group_p: float = 0.0
    age: int | None = None
    gender: str | None = None
    turns: int = 0  # turns with an emotion reading


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _labels_p(scores: Scores, labels: Iterable[str]) -> float:
    wanted = set(labels)
    if not scores.p:  # a vendor that gives only the label
        return 1.0 if scores.label in wanted else 0.0
    return sum(p for label, p in scores.p if label in wanted)


def _group_p(scores: Scores, group: str) -> float:
    # Looked up in the groups only: "neutro" names both an emotion and a group.
    return next((p for name, p in scores.groups if name == group), 0.0)


def _top(pairs: dict[str, list[float]]) -> tuple[str | None, float]:
    if not pairs:
        return None, 0.0
    label = max(pairs, key=lambda name: _mean(pairs[name]))
    return label, _mean(pairs[label])


class SpeakerHistory:
    """The classifications of one call's turns, oldest first (the last `MAX_TURNS` are kept)."""

    def __init__(self, window: int = 3) -> None:
        self.window = window
        self._emotion: list[Scores] = []
        self._age: list[int] = []
        self._gender: list[str] = []

    def add(self, classification: Classification | None) -> None:
        if classification is None:
            return
        if classification.emotion is not None:
            self._emotion = [*self._emotion, classification.emotion][-MAX_TURNS:]
        if classification.age is not None:
            # A label that is not a number says nothing we can compare.
            with contextlib.suppress(ValueError):
                self._age = [*self._age, int(float(classification.age.label))][-MAX_TURNS:]
        if classification.gender is not None and classification.gender.label:
            self._gender = [*self._gender, classification.gender.label.upper()][-MAX_TURNS:]

    # ---- conditions

    def _emotion_value(self, condition: EmotionCondition, readings: list[Scores]) -> bool:
        if condition.labels and _mean([_labels_p(s, condition.labels) for s in readings]) < condition.min:
            return False
        group = condition.group
        return group is None or _mean([_group_p(s, group) for s in readings]) >= condition.min

    def emotion_matches(self, condition: EmotionCondition) -> bool:
        if len(self._emotion) < condition.turns or not self._emotion:
            return False
        window = condition.window or self.window
        if not self._emotion_value(condition, self._emotion[-window:]):
            return False
        return all(self._emotion_value(condition, [s]) for s in self._emotion[-condition.turns :])

    def age_matches(self, condition: AgeCondition) -> bool:
        age = self.age()
        if age is None:
            return False
        return (condition.min is None or age >= condition.min) and (
            condition.max is None or age <= condition.max
        )

    def gender_matches(self, gender: str) -> bool:
        return self.gender() == gender

    # ---- summaries

    def age(self) -> int | None:
        recent = self._age[-self.window :]
        return round(_mean([float(a) for a in recent])) if recent else None

    def gender(self) -> str | None:
        recent = self._gender[-self.window :]
        if not recent:
            return None
        counts = Counter(recent)
        best = max(counts.values())
        # A tie goes to the latest reading.
        return next(label for label in reversed(recent) if counts[label] == best)

    def summary(self) -> SpeakerSummary:
        recent = self._emotion[-self.window :]
        labels: dict[str, list[float]] = {}
        groups: dict[str, list[float]] = {}
        for scores in recent:
            for label, p in scores.p:
                labels.setdefault(label, []).append(p)
            for name, p in scores.groups:
                groups.setdefault(name, []).append(p)
        emotion, emotion_p = _top(labels)
        if emotion is None and recent:
            emotion = recent[-1].label  # a vendor that gives only the label
        group, group_p = _top(groups)
        return SpeakerSummary(
            emotion=emotion,
            emotion_p=emotion_p,
            group=group,
            group_p=group_p,
            age=self.age(),
            gender=self.gender(),
            turns=len(self._emotion),
        )
