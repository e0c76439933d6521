"""The best-effort pt-BR and ja engines: derived pronunciations, CPqD recordings, espeak-ng Japanese."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator

import pytest

from ivr.emulators.engine import (
    GrammarError,
    PhoneticEngine,
    SpeechStarted,
    Utterance,
    load_engines,
    transcribe_events,
)
from ivr.emulators.lexicon import EspeakLexicon, KanaLexicon, ja_phones, pt_phones
from tests.integration.harness import speak
from tests.tools import SHARED

AUDIO = SHARED / "audio/cpqd-sdk"
YES_NO = (AUDIO / "yes_no.gram").read_text(encoding="utf-8")
PIZZA = (AUDIO / "pizza.gram").read_text(encoding="utf-8")
JA_MENU = ["はい", "いいえ", "オペレーター", "残高照会"]


def _wav(name: str) -> bytes:
    with wave.open(str(AUDIO / name)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        return bytes(w.readframes(w.getnframes()))


def _utterances(engine: PhoneticEngine, grammar: str, pcm: bytes) -> list[Utterance]:
    events = asyncio.run(transcribe_events(engine.new_session(8000, grammar), pcm))
    assert all(isinstance(e, SpeechStarted) for e in events[0::2]), events
    return [e for e in events if isinstance(e, Utterance)]


@pytest.fixture(scope="module")
def portuguese() -> Iterator[PhoneticEngine]:
    engine = PhoneticEngine("pt-BR", workers=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def japanese() -> Iterator[PhoneticEngine]:
    engine = PhoneticEngine("ja", workers=1)
    yield engine
    engine.close()


# --- pronunciations ---


@pytest.mark.parametrize(
    ("espeak", "variants"),
    [
        ("s 'i N", ["S IY N"]),
        ("n '&U~", ["N AW"]),
        ("k 'E * U", ["K EH D UH", "K EH R UH", "K EH D UW"]),  # tap as D or R, final U as UW
        ("p 'o r", ["P OW R", "P OW"]),  # a final r dropped
        (",a t eI N d 'eI N tS y", ["AA T EY N D EY N CH IY", "AA T EY N D EY N CH IH"]),  # -tchi
        ("p 'i ts &", ["P IY T S AH"]),
        ("(fr) l w 'i (pt)", ["L W IY"]),  # language switches ignored
        ("q 'i", None),  # an unknown phoneme
    ],
)
def test_portuguese_phones(espeak: str, variants: list[str] | None) -> None:
    assert pt_phones(espeak) == variants


@pytest.mark.parametrize(
    ("romaji", "variants"),
    [
        ("hai", ["HH AY", "HH AA IY"]),  # a diphthong, or two morae
        ("opereetaa", ["OW P EH R EH T AA", "OW P EH D EH T AA"]),  # long vowels held, the flap as D
        ("zandakashoukai", ["Z AA N D AA K AA SH OW K AY", "Z AA N D AA K AA SH OW K AA IY"]),
        ("gakkou", ["G AA K OW"]),  # small tsu
        ("shinbun", ["SH IY N B UW N"]),
        ("genki", ["G EH NG K IY"]),  # moraic n before k
        ("desu", ["D EH S UW", "D EH S"]),  # a devoiced final u
        ("wo", ["OW"]),
        ("xyz", None),
    ],
)
def test_japanese_phones(romaji: str, variants: list[str] | None) -> None:
    assert ja_phones(romaji) == variants


def test_lexicons_read_words_through_espeak_and_pykakasi() -> None:
    portuguese = EspeakLexicon().pronounce(["sim", "Florença", "42", "não"])
    assert portuguese["sim"] == ["S IY N"]
    assert portuguese["Florença"][0] == "F L OW D EY N S AH"
    assert "42" not in portuguese  # digits are not a spoken word
    japanese = KanaLexicon()
    assert japanese.pronounce(["残高照会"])["残高照会"][0] == "Z AA N D AA K AA SH OW K AY"
    assert japanese.kana("残高照会") == "ざんだかしょうかい"


# --- pt-BR on CPqD's own recordings ---


def test_yes_is_sim(portuguese: PhoneticEngine) -> None:
    utterances = _utterances(portuguese, YES_NO, _wav("yes-8k.wav"))
    assert [(u.text, u.tag) for u in utterances] == [("sim", None)]
    assert utterances[0].confidence >= 0.7
    assert [w.text for w in utterances[0].words] == ["sim"]


def test_pizza_multi_gives_three_recognized_orders(portuguese: PhoneticEngine) -> None:
    # CPqD's SDK test expects exactly three RECOGNIZED results, each with a score of at least 70.
    utterances = _utterances(portuguese, PIZZA, _wav("pizza-multi-8k.wav"))
    recognized = [u for u in utterances if u.text]
    assert len(recognized) == 3, utterances
    for utterance in recognized:
        assert utterance.confidence >= 0.7
        assert utterance.tag is not None and utterance.tag.startswith("pizza_")
    starts = [u.start for u in recognized]
    assert starts == sorted(starts) and starts[-1] - starts[0] > 5  # spread over the 14.5 s recording


def test_silence_has_no_utterance(portuguese: PhoneticEngine) -> None:
    pcm = _wav("silence-8k.wav")
    assert _utterances(portuguese, YES_NO, pcm) == []
    assert _utterances(portuguese, PIZZA, pcm) == []


def test_gibberish_is_rejected_by_every_grammar(portuguese: PhoneticEngine) -> None:
    pcm = _wav("gibberish-8k.wav")
    for grammar in (YES_NO, PIZZA):
        utterances = _utterances(portuguese, grammar, pcm)
        assert utterances and all(u.text == "" and u.confidence == 0.0 for u in utterances), utterances


def test_portuguese_loads_without_phrases_and_needs_a_grammar() -> None:
    engines = load_engines(["pt-BR", "ja"], workers=1)
    try:
        for language in ("pt-BR", "ja"):
            engine = engines.get(language)
            assert engine is not None
            with pytest.raises(GrammarError, match=r"^no grammar$"):
                engine.new_session()
            engine.new_session(grammar=YES_NO)
    finally:
        engines.close()


# --- ja on espeak-ng speech (given kana: espeak-ng reads kanji as "Chinese letter") ---


@pytest.fixture(scope="module")
def japanese_speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("ja")
    kana = KanaLexicon()
    clips: dict[str, bytes] = {}
    for i, phrase in enumerate([*JA_MENU, "今日は天気がいいですね"]):
        wav = speak(kana.kana(phrase), directory / f"{i}.wav", voice="ja", lead=0.3, tail=0.8)
        with wave.open(str(wav)) as w:
            clips[phrase] = bytes(w.readframes(w.getnframes()))
    return clips


def test_japanese_menu_phrases(japanese: PhoneticEngine, japanese_speech: dict[str, bytes]) -> None:
    grammar = "\n".join(JA_MENU)
    for phrase in JA_MENU:
        utterances = _utterances(japanese, grammar, japanese_speech[phrase])
        assert [u.text for u in utterances] == [phrase], (phrase, utterances)


def test_japanese_off_menu_speech_is_rejected(
    japanese: PhoneticEngine, japanese_speech: dict[str, bytes]
) -> None:
    utterances = _utterances(japanese, "\n".join(JA_MENU), japanese_speech["今日は天気がいいですね"])
    assert utterances and all(u.text == "" for u in utterances), utterances
