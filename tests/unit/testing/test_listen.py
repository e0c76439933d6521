"""The prompt detector on real prompt files framed as the bridge frames them, and the end-of-prompt rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.prompt import frames, load_prompt
from ivr.testing.listen import Activity, PromptDetector, is_silent

PROMPTS = Path(__file__).resolve().parents[3] / "dialplans" / "prompts"
KEEPALIVE = g711.silence(g711.PCMU, 160)


@pytest.fixture(scope="module")
def prompts() -> dict[str, list[bytes]]:
    names = ("greeting.wav", "reprompt.wav", "agent.wav", "busy.wav")
    return {name: frames(load_prompt(PROMPTS / name), g711.PCMU) for name in names}


def play(detector: PromptDetector, payloads: list[bytes], start: float = 0.0) -> float:
    now = start
    for payload in payloads:
        detector.feed(payload, now)
        now += 0.02
    return now


def test_a_whole_prompt_is_heard_once_complete(prompts: dict[str, list[bytes]]) -> None:
    detector = PromptDetector(prompts)
    play(detector, [KEEPALIVE] * 10 + prompts["greeting.wav"] + [KEEPALIVE] * 10)
    [heard] = detector.heard + detector.close()
    assert heard.name == "greeting.wav" and heard.complete and heard.fraction == 1.0
    assert heard.start == pytest.approx(0.2, abs=0.1)


def test_prompts_in_sequence_and_a_repeat_are_each_heard_in_order(prompts: dict[str, list[bytes]]) -> None:
    detector = PromptDetector(prompts)
    stream = prompts["greeting.wav"] + [KEEPALIVE] * 5 + prompts["reprompt.wav"] + prompts["agent.wav"]
    play(detector, stream + [KEEPALIVE] * 60 + prompts["agent.wav"])
    detector.close()
    assert [h.name for h in detector.heard] == ["greeting.wav", "reprompt.wav", "agent.wav", "agent.wav"]
    assert all(h.complete for h in detector.heard)


def test_a_prompt_cut_by_barge_in_counts_once_it_played_long_enough(prompts: dict[str, list[bytes]]) -> None:
    greeting = prompts["greeting.wav"]
    long_cut = PromptDetector(prompts)
    play(long_cut, greeting[: len(greeting) // 3] + [KEEPALIVE] * 80)
    [heard] = long_cut.heard
    assert heard.name == "greeting.wav" and not heard.complete and 0.1 < heard.fraction < 0.5
    short_cut = PromptDetector(prompts, min_run=25)
    play(short_cut, greeting[:20] + [KEEPALIVE] * 80)  # 0.4 s, under min_run and min_fraction
    assert short_cut.close() == [] and short_cut.heard == []


def test_other_audio_and_a_slightly_changed_prompt_are_not_a_prompt(prompts: dict[str, list[bytes]]) -> None:
    detector = PromptDetector(prompts)
    rng = np.random.default_rng(7)
    noise = [g711.encode_array(rng.integers(-8000, 8000, 160, dtype=np.int16), g711.PCMU) for _ in range(200)]
    louder = load_prompt(PROMPTS / "busy.wav")
    samples = np.frombuffer(louder, dtype=np.int16).astype(np.int32) * 2
    changed = frames(np.clip(samples, -32768, 32767).astype(np.int16).tobytes(), g711.PCMU)
    play(detector, noise + changed)
    assert detector.close() == [] and detector.heard == []


def test_silence_is_told_from_speech(prompts: dict[str, list[bytes]]) -> None:
    assert is_silent(KEEPALIVE) and is_silent(b"")
    assert not all(is_silent(f) for f in prompts["agent.wav"])


def test_a_prompt_has_finished_after_speech_then_quiet() -> None:
    activity = Activity(quiet=0.9, settle=0.25)
    speech = g711.encode_array(np.full(160, 6000, dtype=np.int16), g711.PCMU)
    assert not activity.finished_since(0.0, 5.0)  # nothing heard yet: not finished
    activity.feed(speech, 1.0)
    activity.feed(KEEPALIVE, 1.5)
    assert not activity.finished_since(0.0, 1.5)
    assert activity.finished_since(0.0, 1.95)
    assert not activity.finished_since(1.2, 3.0)  # that speech came before the turn started
    # packets stopping altogether (the bridge holds) ends it too: only time passes
    assert activity.finished_since(0.5, 10.0)
