"""`feed`/`flush`: timed events on espeak-ng speech, grammars per session, for pocketsphinx and Vosk."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.emulators.engine import (
    EngineEvent,
    GrammarError,
    PocketsphinxEngine,
    SpeechStarted,
    Utterance,
    VoskEngine,
    load_engines,
    transcribe_events,
)
from tests.integration.harness import speak

FRAME = 320  # 20 ms of 16-bit 8 kHz
LEAD = 0.5
MENU_GRAMMAR = """#ABNF 1.0 UTF-8;
language en-US;
root $menu;
$menu = [please] (check my balance {balance} | main menu {menu} | yes {yes} | no {no});
"""


def _pcm(text: str, directory: Path, *, voice: str = "en-us", tail: float = 0.8) -> bytes:
    stem = f"{voice}-{abs(hash(text))}-{tail}"
    wav = speak(text, directory / f"{stem}.wav", voice=voice, lead=LEAD, tail=tail)
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 8000
        return bytes(w.readframes(w.getnframes()))


def _seconds(pcm: bytes) -> float:
    return len(pcm) / 16000


def _check_order_and_times(events: list[EngineEvent], total: float) -> list[Utterance]:
    """Each utterance is preceded by its SpeechStarted; times are ordered and inside the audio."""
    utterances: list[Utterance] = []
    last = 0.0
    for started, utterance in zip(events[0::2], events[1::2], strict=True):
        assert isinstance(started, SpeechStarted) and isinstance(utterance, Utterance), events
        assert last <= started.time == utterance.start < utterance.end <= total
        for word in utterance.words:
            assert utterance.start <= word.start < word.end <= utterance.end
        last = utterance.end
        utterances.append(utterance)
    return utterances


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events")


@pytest.fixture(scope="module")
def english() -> Iterator[PocketsphinxEngine]:
    engine = PocketsphinxEngine(workers=1)  # no phrases: every session brings its grammar
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def korean() -> Iterator[VoskEngine]:
    engine = VoskEngine(workers=1)
    yield engine
    engine.close()


# --- pocketsphinx ---


def test_two_utterances_in_order_with_times_and_tags(english: PocketsphinxEngine, speech_dir: Path) -> None:
    first, second = _pcm("check my balance", speech_dir), _pcm("main menu", speech_dir)
    pcm = first + second
    events = asyncio.run(transcribe_events(english.new_session(8000, MENU_GRAMMAR), pcm, FRAME))
    utterances = _check_order_and_times(events, _seconds(pcm))
    assert [(u.text, u.tag) for u in utterances] == [("check my balance", "balance"), ("main menu", "menu")]
    assert [w.text for w in utterances[0].words] == ["check", "my", "balance"]
    # espeak-ng starts speaking a few ms into its file, after the LEAD of padding
    assert LEAD - 0.1 <= utterances[0].start <= LEAD + 0.3
    assert _seconds(first) + LEAD - 0.1 <= utterances[1].start <= _seconds(first) + LEAD + 0.3
    assert all(0.7 <= u.confidence <= 1.0 for u in utterances)


def test_flush_gives_the_utterance_when_audio_ends_without_silence(
    english: PocketsphinxEngine, speech_dir: Path
) -> None:
    pcm = _pcm("check my balance", speech_dir, tail=0.0)

    async def run() -> tuple[list[EngineEvent], list[EngineEvent], list[EngineEvent]]:
        session = english.new_session(8000, MENU_GRAMMAR)
        fed: list[EngineEvent] = []
        for i in range(0, len(pcm), FRAME):
            fed += await session.feed(pcm[i : i + FRAME])
        return fed, await session.flush(), await session.flush()

    fed, flushed, again = asyncio.run(run())
    assert len(fed) == 1 and isinstance(fed[0], SpeechStarted)
    assert len(flushed) == 1 and isinstance(flushed[0], Utterance)
    assert flushed[0].text == "check my balance"
    assert fed[0].time < flushed[0].end <= _seconds(pcm)
    assert again == []


def test_the_clock_carries_on_after_a_flush(english: PocketsphinxEngine, speech_dir: Path) -> None:
    pcm = _pcm("yes", speech_dir)

    async def run() -> list[EngineEvent]:
        session = english.new_session(8000, MENU_GRAMMAR)
        events: list[EngineEvent] = []
        for _ in range(2):
            for i in range(0, len(pcm), FRAME):
                events += await session.feed(pcm[i : i + FRAME])
            events += await session.flush()
        return events

    utterances = _check_order_and_times(asyncio.run(run()), 2 * _seconds(pcm))
    assert [u.text for u in utterances] == ["yes", "yes"]
    assert utterances[1].start - utterances[0].start == pytest.approx(_seconds(pcm), abs=0.05)


def test_off_grammar_speech_is_a_no_match_and_silence_is_nothing(
    english: PocketsphinxEngine, speech_dir: Path
) -> None:
    events = asyncio.run(
        transcribe_events(english.new_session(8000, MENU_GRAMMAR), _pcm("hello there", speech_dir))
    )
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    rejected = events[1]
    assert isinstance(rejected, Utterance)
    assert rejected == Utterance("", 0.0, rejected.start, rejected.end)
    silence = bytes(2 * 8000 * 2)
    assert asyncio.run(transcribe_events(english.new_session(8000, MENU_GRAMMAR), silence)) == []


def test_the_engine_phrases_serve_a_session_without_grammar(speech_dir: Path) -> None:
    engine = PocketsphinxEngine(["Yes!", "main menu"], workers=1)
    try:
        events = asyncio.run(transcribe_events(engine.new_session(), _pcm("yes", speech_dir)))
        assert [e.text for e in events if isinstance(e, Utterance)] == ["Yes!"]  # the caller's spelling
    finally:
        engine.close()


def test_grammar_errors(english: PocketsphinxEngine) -> None:
    with pytest.raises(GrammarError, match=r"^no grammar$"):
        english.new_session()
    with pytest.raises(GrammarError, match=r"<grammar>:3: "):
        english.new_session(grammar="#ABNF 1.0;\nroot $r;\n$r = (yes | no;\n")
    with pytest.raises(GrammarError, match="can say no word"):
        asyncio.run(english.load_grammar("zorblax\nquuxian frobnitz\n"))


def test_load_engines_with_session_grammars() -> None:
    engines = load_engines(["en"], session_grammars=True, workers=1)
    try:
        engine = engines.get("en")
        assert engine is not None and engine.phrases == []
        engine.new_session(grammar="yes\nno\n")
    finally:
        engines.close()


# --- Vosk ---


def test_vosk_events_with_a_session_grammar(korean: VoskEngine, speech_dir: Path) -> None:
    # 네 and 아니요 are right in every espeak-ng setting on a yes/no grammar (TOOLBOX.md).
    pcm = _pcm("네", speech_dir, voice="ko") + _pcm("아니요", speech_dir, voice="ko")
    grammar = "#ABNF 1.0 UTF-8;\nroot $yn;\n$yn = 네 {yes} | 예 {yes} | 아니요 {no};\n"
    events = asyncio.run(transcribe_events(korean.new_session(8000, grammar), pcm, FRAME))
    utterances = _check_order_and_times(events, _seconds(pcm))
    assert [(u.text, u.tag) for u in utterances] == [("네", "yes"), ("아니요", "no")]
    assert all(len(u.words) == 1 and u.words[0].text == u.text for u in utterances)


def test_vosk_flush_without_trailing_silence(korean: VoskEngine, speech_dir: Path) -> None:
    pcm = _pcm("아니요", speech_dir, voice="ko", tail=0.0)

    async def run() -> tuple[list[EngineEvent], list[EngineEvent]]:
        session = korean.new_session(8000, "네\n아니요\n")
        fed: list[EngineEvent] = []
        for i in range(0, len(pcm), FRAME):
            fed += await session.feed(pcm[i : i + FRAME])
        return fed, await session.flush()

    fed, flushed = asyncio.run(run())
    assert [type(e) for e in fed] == [SpeechStarted]
    assert [(type(e), getattr(e, "text", None)) for e in flushed] == [(Utterance, "아니요")]
