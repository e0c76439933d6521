"""The local engines: phrase routing by script, and pocketsphinx English on real espeak-ng speech."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.emulators.engine import (
    MIN_COVERAGE,
    PocketsphinxEngine,
    Script,
    load_engines,
    phrase_script,
    phrases_for,
    read_phrases,
    transcribe,
)
from tests.integration.harness import speak

BANK_MENU = ["agent", "speak to an agent", "representative", "check my balance", "yes", "no", "main menu"]
# Right in every one of 15 espeak-ng settings measured (en-us default, -s 140/170, -p 30/60, -g 5, agitated;
# en-us+m3/+f2/+klatt at three speeds). "agent" and "speak to an agent" failed in one setting each.
RELIABLE = ["representative", "check my balance", "yes", "no", "main menu"]
FRAME = 320  # 20 ms of 16-bit 8 kHz


def _pcm(text: str, directory: Path, *, tail: float = 0.8) -> bytes:
    wav = speak(text, directory / f"{text.replace(' ', '_')}-{tail}.wav", voice="en-us", lead=0.3, tail=tail)
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 8000
        return bytes(w.readframes(w.getnframes()))


async def _recognize(engine: PocketsphinxEngine, pcm: bytes) -> list[tuple[str, float]]:
    """Every non-empty final of one stream fed in 20 ms frames, the flush included."""
    return await transcribe(engine.new_session(8000), pcm, FRAME)


@pytest.fixture(scope="module")
def english() -> Iterator[PocketsphinxEngine]:
    engine = PocketsphinxEngine(BANK_MENU, workers=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("english")


# --- phrases ---


def test_read_phrases_skips_comments_and_blank_lines() -> None:
    assert read_phrases(["# menu\n", "\n", "  main   menu  # the top\n", "메인 메뉴\n"]) == [
        "main menu",
        "메인 메뉴",
    ]


@pytest.mark.parametrize(
    ("phrase", "script"),
    [
        ("상담원 연결해 주세요", Script.HANGUL),
        ("ARS 메뉴", Script.HANGUL),
        ("オペレーター", Script.JAPANESE),
        ("残高照会", Script.JAPANESE),
        ("speak to an agent", Script.LATIN),
        ("não", Script.LATIN),
        ("1234", None),
    ],
)
def test_phrase_script(phrase: str, script: Script | None) -> None:
    assert phrase_script(phrase) is script


def test_a_mixed_phrase_list_goes_to_each_language_by_script() -> None:
    mixed = ["상담원 연결", "agent", "メニュー", "main menu", "네"]
    assert phrases_for("ko", mixed) == ["상담원 연결", "네"]
    assert phrases_for("en", mixed) == ["agent", "main menu"]
    assert phrases_for("ja", mixed) == ["メニュー"]


def test_load_engines_names_what_is_missing() -> None:
    engines = load_engines(["en", "ja", "pt-BR", "de"], ["네", "Main Menu", "yes"], workers=1)
    try:
        english = engines.get("en")
        assert english is not None and english.phrases == ["Main Menu", "yes"]
        # pt-BR and ja always load (their sessions bring grammars); Latin phrases go to pt-BR as well.
        portuguese, japanese = engines.get("pt-BR"), engines.get("ja")
        assert portuguese is not None and portuguese.phrases == ["Main Menu", "yes"]
        assert japanese is not None and japanese.phrases == []
        assert engines.get("de") is None
        assert engines.why_unavailable("de") == "no local 'de' engine is installed"
    finally:
        engines.close()
    no_english = load_engines(["en"], ["네"], workers=1)
    try:
        assert no_english.get("en") is None
        assert "English phrase" in no_english.why_unavailable("en")
    finally:
        no_english.close()


def test_grammar_drops_phrases_the_dictionary_cannot_say() -> None:
    engine = PocketsphinxEngine(["Yes!", "check my balance", "zorblax menu", "yes"], workers=1)
    try:
        assert engine.phrases == ["Yes!", "check my balance"]
        assert engine.missing_words == ["zorblax"]
        assert engine.phrase_of("yes") == "Yes!"  # the caller's spelling comes back
        assert engine.phrase_of("check my") is None  # a fragment is not a phrase
    finally:
        engine.close()


# --- pocketsphinx on speech ---


def test_reliable_phrases_are_recognized(english: PocketsphinxEngine, speech_dir: Path) -> None:
    for phrase in RELIABLE:
        finals = asyncio.run(_recognize(english, _pcm(phrase, speech_dir)))
        assert [text for text, _ in finals] == [phrase], finals
        confidence = finals[0][1]
        assert MIN_COVERAGE <= confidence <= 1.0


def test_a_spoken_fragment_is_not_a_result(english: PocketsphinxEngine, speech_dir: Path) -> None:
    # The grammar's best path for "speak to an" is that fragment of "speak to an agent": no result at all.
    for fragment in ["speak to an", "check my"]:
        assert asyncio.run(_recognize(english, _pcm(fragment, speech_dir))) == []


def test_off_grammar_speech_is_rejected(english: PocketsphinxEngine, speech_dir: Path) -> None:
    # Forced onto the grammar this comes back "no", covering only part of the utterance.
    assert asyncio.run(_recognize(english, _pcm("hello there", speech_dir))) == []


def test_finish_flushes_speech_without_trailing_silence(
    english: PocketsphinxEngine, speech_dir: Path
) -> None:
    pcm = _pcm("main menu", speech_dir, tail=0.0)

    async def run() -> tuple[list[bool], tuple[str, float], tuple[str, float]]:
        session = english.new_session(8000)
        endpoints = [(await session.accept(pcm[i : i + FRAME]))[2] for i in range(0, len(pcm), FRAME)]
        return endpoints, await session.finish(), await session.finish()

    endpoints, flushed, again = asyncio.run(run())
    assert not any(endpoints)
    assert flushed[0] == "main menu"
    assert again == ("", 0.0)


def test_one_session_carries_successive_utterances(english: PocketsphinxEngine, speech_dir: Path) -> None:
    pcm = _pcm("yes", speech_dir) + _pcm("check my balance", speech_dir)
    finals = asyncio.run(_recognize(english, pcm))
    assert [text for text, _ in finals] == ["yes", "check my balance"]


def test_sixteen_kilohertz_is_taken_as_is_and_other_rates_refused(english: PocketsphinxEngine) -> None:
    english.new_session(16000)
    with pytest.raises(ValueError, match="8000 or 16000"):
        english.new_session(11025)
