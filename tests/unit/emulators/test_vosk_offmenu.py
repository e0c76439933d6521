"""Vosk Korean in grammar mode: off-menu speech is a no-match, the reliable menu phrases are still results."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.emulators.engine import Utterance, VoskEngine, transcribe, transcribe_events
from ivr.emulators.grammar import Grammar
from ivr.emulators.recognizer import TimedWord
from ivr.emulators.srgs import parse_grammar
from ivr.emulators.vosk_engine import judge
from tests.integration.harness import speak
from tests.tools import KOREAN_MENU

FRAME = 320  # 20 ms of 16-bit 8 kHz
DEMO_MENU = list(KOREAN_MENU)
# Accepted in every espeak-ng setting of bench/offmenu_ko.py, with the background vocabulary.
RELIABLE = ["상담원 연결해 주세요", "상담사 바꿔 주세요", "네", "메인 메뉴"]
# Off-menu sentences (weather, food, numbers) that grammar mode alone turns into menu words.
OFF_MENU = ["오늘 날씨가 정말 좋네요", "점심에 김치찌개를 먹었어요", "일 이 삼 사 오"]


def _pcm(text: str, directory: Path) -> bytes:
    wav = speak(text, directory / f"{abs(hash(text))}.wav", lead=0.3, tail=0.8)
    with wave.open(str(wav)) as w:
        return bytes(w.readframes(w.getnframes()))


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offmenu")


@pytest.fixture(scope="module")
def korean() -> Iterator[VoskEngine]:
    engine = VoskEngine(phrases=DEMO_MENU, workers=1)  # the model loads once for the module
    yield engine
    engine.close()


def _finals(engine: VoskEngine, pcm: bytes) -> list[str]:
    events = asyncio.run(transcribe_events(engine.new_session(8000), pcm, FRAME))
    return [e.text for e in events if isinstance(e, Utterance)]


def test_a_background_is_frequent_model_words_outside_the_grammar(korean: VoskEngine) -> None:
    assert korean.background == [] and json.loads(korean.compile(None).phrases_json or "[]")[:8] == DEMO_MENU
    background = korean._background_words(150)
    assert 100 <= len(background) <= 150 and all(len(w) > 1 and not w.isascii() for w in background)
    korean.background, korean.phrase_weight = background, 2
    try:
        own = [w for p in DEMO_MENU for w in p.split()]
        listed = json.loads(korean._decoded_list(DEMO_MENU, own))
    finally:
        korean.background, korean.phrase_weight = [], 1
    assert listed[:16] == DEMO_MENU * 2
    assert set(listed[16:]) == (set(background) - set(own)) | {"<UNK>"}


@pytest.mark.parametrize("phrase", RELIABLE)
def test_reliable_phrases_are_accepted(korean: VoskEngine, speech_dir: Path, phrase: str) -> None:
    assert _finals(korean, _pcm(phrase, speech_dir)) == [phrase]


@pytest.mark.parametrize("sentence", OFF_MENU)
def test_off_menu_speech_is_a_no_match(korean: VoskEngine, speech_dir: Path, sentence: str) -> None:
    finals = _finals(korean, _pcm(sentence, speech_dir))
    assert finals and all(text == "" for text in finals), finals


def test_the_mediazen_steps_judge_their_finals_too(korean: VoskEngine, speech_dir: Path) -> None:
    # accept/finish (the Mediazen emulator) sent any decoded words before; now only a sentence, or nothing.
    agent = asyncio.run(transcribe(korean.new_session(8000), _pcm("상담원 연결해 주세요", speech_dir), FRAME))
    assert [text for text, _ in agent] == ["상담원 연결해 주세요"]
    assert 0.0 < agent[0][1] <= 1.0
    for sentence in OFF_MENU:
        assert asyncio.run(transcribe(korean.new_session(8000), _pcm(sentence, speech_dir), FRAME)) == []


def _words(*pairs: tuple[str, float]) -> list[TimedWord]:
    return [TimedWord(text, i * 0.5, i * 0.5 + 0.4, conf) for i, (text, conf) in enumerate(pairs)]


def test_judge_takes_only_a_whole_confident_sentence() -> None:
    grammar: Grammar = parse_grammar("#ABNF 1.0 UTF-8;\nroot $m;\n$m = 메인 메뉴 {menu} | 네 {yes};\n")
    assert judge(_words(("메인", 0.9), ("메뉴", 1.0)), grammar, 0.5) == ("메인 메뉴", "menu")
    assert judge(_words(("메인", 0.9), ("메뉴", 1.0), ("사람", 1.0)), grammar, 0.5) == ("", None)
    assert judge(_words(("메인", 0.4), ("메뉴", 1.0)), grammar, 0.5) == ("", None)
    assert judge(_words(("메인", 1.0)), grammar, 0.0) == ("", None)
    assert judge(_words(("사람", 1.0)), None) == ("사람", None)


def test_a_short_answer_found_in_longer_speech_is_a_no_match(korean: VoskEngine, speech_dir: Path) -> None:
    # At a yes/no prompt, grammar mode hears 잔액 조회 as 예 (TOOLBOX.md); its one word spans a fifth of
    # the speech, where a real 네 spans about half.
    yes_no = "네\n예\n아니요\n"
    events = asyncio.run(
        transcribe_events(korean.new_session(8000, yes_no), _pcm("잔액 조회", speech_dir), FRAME)
    )
    assert [e.text for e in events if isinstance(e, Utterance)] == [""]
    events = asyncio.run(transcribe_events(korean.new_session(8000, yes_no), _pcm("네", speech_dir), FRAME))
    assert [e.text for e in events if isinstance(e, Utterance)] == ["네"]


def test_judge_wants_the_words_to_cover_the_speech() -> None:
    grammar = parse_grammar("네\n아니요\n")
    yes = _words(("네", 1.0))  # 0.0 to 0.4 s
    assert judge(yes, grammar, 0.5, 0.25, speech=0.8) == ("네", None)
    assert judge(yes, grammar, 0.5, 0.25, speech=2.0) == ("", None)
    assert judge(yes, grammar, 0.5, 0.25, speech=None) == ("네", None)  # no endpointer: not tested
