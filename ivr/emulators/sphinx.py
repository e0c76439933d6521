"""pocketsphinx behind the recognizer interface: a JSGF grammar over the bundled en-us acoustic model.

The pronunciations come from a `Lexicon`: CMUdict for English (`CmuLexicon`), espeak-ng phonemes mapped to
ARPAbet for the best-effort pt-BR and ja engines (`ivr.emulators.phonetic`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pocketsphinx

from ivr.emulators.grammar import Grammar, GrammarError
from ivr.emulators.recognizer import (
    ENDPOINT_RATIO,
    ENDPOINT_WINDOW,
    EngineEvent,
    EngineUnavailable,
    PooledSession,
    Segment,
    Segmenter,
    SegmentKind,
    SpeechStarted,
    TimedWord,
    Utterance,
    utterance_end,
)
from ivr.emulators.srgs import parse_grammar

log = logging.getLogger(__name__)

POCKETSPHINX_RATE = 16000  # the bundled en-us model's config overrides samprate=8000 (TOOLBOX.md)
# Wide beams, no lattice rescoring (TOOLBOX.md). On endpointed espeak-ng menu phrases: 103 of 105 right
# against 102 with the defaults and 95 with bestpath=True; on whole clips with their silence, 33 of 42 vs 27.
DECODER_SETTINGS: dict[str, Any] = {"bestpath": False, "beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
BACKGROUND_SETTINGS: dict[str, Any] = {"bestpath": False}
_FRAMES_PER_SECOND = 100  # the model's frame rate
# Off-grammar speech comes back as the nearest phrase with the rest of the utterance aligned to silence
# ("hello there" -> "no" over half of it); measured on espeak-ng, a right phrase covers 0.89-1.0 of its
# utterance and off-grammar speech forced onto a phrase 0.4-0.58. Below this: no result.
MIN_COVERAGE = 0.7
SPEECH_FLOOR_DB = 18.0  # frames this far below an utterance's loud frames are not speech (coverage)
_GRAMMAR_CACHE = 64
_TOKEN = re.compile(r"[a-z0-9']+")
_VARIANT = re.compile(r"\(\d+\)$")


def _words(phrase: str) -> tuple[str, ...]:
    """A phrase as the dictionary spells it: case-folded, punctuation other than apostrophes dropped."""
    return tuple(_TOKEN.findall(phrase.casefold()))


def _is_filler(word: str) -> bool:
    # <s>, </s>, <sil>, [NOISE], [SPEECH], and the (NULL) transitions of a grammar
    return word[:1] in "<[("


def _read_pronunciations(path: str, words: set[str] | None) -> dict[str, list[str]]:
    """Every pronunciation of the given words (all words: None) in a CMUdict-format file."""
    found: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry, _, phones = line.partition(" ")
            base = entry.split("(", 1)[0]
            if words is None or base in words:
                found.setdefault(base, []).append(phones.split("#", 1)[0].strip())
    return found


class Lexicon(Protocol):
    """Pronunciations of grammar tokens as ARPAbet phone strings; may block (it runs in the pool)."""

    def pronounce(self, tokens: Sequence[str]) -> dict[str, list[str]]:
        """token -> its pronunciation variants; a token it cannot say is left out."""
        ...


class CmuLexicon:
    """English pronunciations from the CMU dictionary shipped with pocketsphinx, loaded on first use."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
        self._entries: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    def pronounce(self, tokens: Sequence[str]) -> dict[str, list[str]]:
        with self._lock:
            if self._entries is None:
                self._entries = _read_pronunciations(self.path, None)
        found: dict[str, list[str]] = {}
        for token in tokens:
            parts = _words(token)
            # A token the dictionary splits ("e-mail") is said as its parts in a row.
            if parts and all(p in self._entries for p in parts):
                variants = [""]
                for part in parts:
                    variants = [f"{v} {p}".strip() for v in variants for p in self._entries[part]][:8]
                found[token] = variants
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


@dataclass(slots=True)
class SphinxGrammar:
    """A grammar compiled for the decoder: JSGF over dictionary ids, their phones, and ids -> tokens."""

    grammar: Grammar
    jsgf: str
    phones: dict[str, list[str]]  # dictionary id -> variants
    token_of: dict[str, str]  # dictionary id -> the grammar's token
    missing: list[str] = field(default_factory=list)


def compile_sphinx_grammar(grammar: Grammar, lexicon: Lexicon) -> SphinxGrammar:
    """Pronounce the grammar's words and write its JSGF (blocking: run it in the pool)."""
    tokens = grammar.words()
    pronounced = lexicon.pronounce(tokens)
    ids: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if token in pronounced:
            folded = token.casefold()
            # JSGF and the dictionary want plain ids; other spellings ("não", "はい") get numbered ones.
            plain = re.fullmatch(r"[a-z0-9']+", folded) and folded not in ids.values()
            ids[token] = folded if plain else f"w{i}"
    missing = [t for t in tokens if t not in ids]
    if missing:
        log.warning("%s: words the engine cannot say: %s", grammar.source, ", ".join(missing))
    if not ids:
        raise GrammarError(f"{grammar.source}: the engine can say no word of the grammar")
    if grammar.sentences(1) == [] or (missing and not _sayable(grammar, set(ids))):
        raise GrammarError(f"{grammar.source}: no sentence of the grammar can be said (missing: {missing})")
    phones = {ids[t]: pronounced[t] for t in ids}
    token_of = {i: t for t, i in ids.items()}
    jsgf = grammar.to_jsgf(ids.get)
    return SphinxGrammar(grammar, jsgf, phones, token_of, missing)


def _sayable(grammar: Grammar, known: set[str]) -> bool:
    sentences = grammar.sentences(2000)
    if sentences is None:
        return True  # too many to check: some path is likely sayable; the decoder says otherwise
    return any(all(w in known for w in s.words) for s in sentences)


class PocketsphinxEngine:
    """English on pocketsphinx's bundled en-us model, decoding a JSGF grammar (its phrases or a session's).

    Measured on espeak-ng at 8 kHz through µ-law, seven bank-menu phrases ("agent", "speak to an agent",
    "representative", "check my balance", "yes", "no", "main menu") x 15 voice settings: 103 of 105 right, the
    two misses coming back empty; RTF ~0.02 in 20-200 ms chunks, load ~0.08 s and ~15 MiB, ~6 MiB and ~14 ms
    per session (its own decoder). Only a hypothesis that is a whole sentence of the grammar is a result; a
    fragment ("speak to an") comes back empty (an `Utterance` with text "").

    Confidence is the sentence's coverage, in [0, 1]: for `accept()` the share of the utterance (the
    endpointer's trailing silence left out) that the grammar path aligns to words rather than to silence or
    noise; for `feed()` the share of its speech frames (within 18 dB of its loud frames, so a recording's
    noise floor and a flush before the endpoint do not count) aligned to words. It is not a posterior
    probability (lattice posteriors need bestpath, which costs accuracy here); it is high for a sentence
    said in full and low for off-grammar speech squeezed onto a short one, and below `min_coverage` the
    result is dropped. Near misses ("main" -> "agent") still pass: English has no background loop. Word
    confidences are the utterance's. `feed()` decodes each utterance whole at its endpoint (batch
    cepstral normalization), which got CPqD's "sim" right where live decoding did not.

    Without phrases the engine loads anyway and every session brings its grammar (`new_session(grammar=...)`);
    then `new_session()` without one raises GrammarError("no grammar").

    The binding holds the GIL while it decodes (unlike Vosk's cffi calls): the pool keeps decoding off the
    event loop, but the loop may wait a GIL switch interval (5 ms) while workers are busy. Measured: 10 live
    streams cost 19 % of a core with a loop lag p99 of 5 ms; 40 streams 47 %, p99 14 ms.
    """

    language = "en"
    min_coverage = MIN_COVERAGE
    # A loop of frequent words that every accepted sentence is scored against (none for English): a sentence
    # whose path scores more than `background_margin` per frame below the loop's is rejected.
    background: Sequence[str] = ()
    background_margin = float("inf")

    def __init__(
        self,
        phrases: Sequence[str] = (),
        *,
        model_dir: str | None = None,
        dictionary: str | None = None,
        lexicon: Lexicon | None = None,
        workers: int = 2,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.model_path = model_dir or pocketsphinx.get_model_path("en-us/en-us")
        self.lexicon: Lexicon = lexicon or CmuLexicon(dictionary)
        self.phrases: list[str] = []
        self.missing_words: list[str] = []
        self._phrase_of: dict[str, str] = {}  # decoded words -> the phrase as the caller spelled it
        self._pronunciations: dict[str, list[str]] = {}
        self.grammar = ""
        if phrases:
            self._build_phrase_grammar(phrases, dictionary)
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sphinx")
        self._compiled: OrderedDict[str, SphinxGrammar] = OrderedDict()
        self._compiled_lock = threading.Lock()
        self._background: SphinxGrammar | None = None
        self._idle_background: queue.SimpleQueue[pocketsphinx.Decoder] = queue.SimpleQueue()

    def _build_phrase_grammar(self, phrases: Sequence[str], dictionary: str | None) -> None:
        dictionary = dictionary or pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
        wanted = {w for p in phrases for w in _words(p)}
        self._pronunciations = _read_pronunciations(dictionary, wanted)
        self.missing_words = sorted(wanted - self._pronunciations.keys())
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

    @property
    def description(self) -> str:
        if not self.phrases:
            return f"pocketsphinx model {self.model_path} (a grammar per session)"
        return f"pocketsphinx model {self.model_path} (grammar of {len(self.phrases)} phrases)"

    def phrase_of(self, hypothesis: str) -> str | None:
        """The grammar phrase a decoded word string is, or None for a fragment or anything else."""
        return self._phrase_of.get(" ".join(hypothesis.split()))

    def _base_decoder(self, settings: dict[str, Any]) -> pocketsphinx.Decoder:
        return pocketsphinx.Decoder(
            hmm=self.model_path,
            dict=None,
            lm=None,
            samprate=POCKETSPHINX_RATE,
            loglevel="FATAL",  # else every fragment logs "Final result does not match the grammar"
            **settings,
        )

    def new_decoder(
        self, compiled: SphinxGrammar | None = None, *, background: bool = False
    ) -> pocketsphinx.Decoder:
        """A decoder on the phrase grammar or a compiled one (~14 ms, ~6 MiB), built in the pool."""
        # The loop is only scored, not read: pocketsphinx's default beams keep it cheap.
        decoder = self._base_decoder(BACKGROUND_SETTINGS if background else DECODER_SETTINGS)
        phones = compiled.phones if compiled is not None else self._pronunciations
        for word, variants in phones.items():
            for i, variant in enumerate(variants):
                decoder.add_word(word if i == 0 else f"{word}({i + 1})", variant, False)
        decoder.add_jsgf_string(
            "g", compiled.jsgf if compiled is not None else self.grammar
        )  # commits the words
        decoder.activate_search("g")
        return decoder

    # --- the background loop ---

    def _background_grammar(self) -> SphinxGrammar | None:
        """The loop of background words, compiled once (in the pool, on first use)."""
        with self._compiled_lock:
            if self._background is None and self.background:
                loop = parse_grammar(
                    "#ABNF 1.0;\nroot $bg;\n$bg = $word<1->;\n$word = "
                    + " | ".join(f'"{w}"' for w in self.background)
                    + ";\n",
                    "background",
                )
                self._background = compile_sphinx_grammar(loop, self.lexicon)
            return self._background

    def background_score(self, pcm16k: bytes) -> float | None:
        """The best path score of the background loop over an utterance (blocking; None: no loop)."""
        compiled = self._background_grammar()
        if compiled is None:
            return None
        try:
            decoder = self._idle_background.get_nowait()
        except queue.Empty:
            decoder = self.new_decoder(compiled, background=True)
        try:
            decoder.start_utt()
            decoder.process_raw(pcm16k, full_utt=True)
            decoder.end_utt()
            return _path_score(decoder)
        finally:
            self._idle_background.put(decoder)

    # --- grammars per session ---

    def _grammar_text(self, grammar: str | None) -> str:
        if grammar is not None:
            return grammar
        if not self.phrases:
            raise GrammarError("no grammar")
        return "\n".join(self.phrases)

    def compiled(self, text: str, parsed: Grammar) -> SphinxGrammar:
        """A grammar compiled for the decoder, cached per text (blocking: call it in the pool)."""
        with self._compiled_lock:
            cached = self._compiled.get(text)
            if cached is not None:
                self._compiled.move_to_end(text)
                return cached
        # Compiled outside the lock: espeak-ng may take a while, and other grammars need not wait.
        result = compile_sphinx_grammar(parsed, self.lexicon)
        with self._compiled_lock:
            self._compiled[text] = result
            if len(self._compiled) > _GRAMMAR_CACHE:
                self._compiled.popitem(last=False)
        return result

    async def load_grammar(self, grammar: str) -> None:
        """Compile a grammar ahead of its sessions, in the pool (raises GrammarError)."""
        parsed = parse_grammar(grammar)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.compiled, grammar, parsed)

    def new_session(self, sample_rate: int = 8000, grammar: str | None = None) -> PocketsphinxSession:
        """A session on `grammar` (SRGS ABNF/XML or phrases) or the engine's phrases; raises GrammarError.

        Only parsing happens here; pronouncing and compiling run in the pool when the session first decodes.
        """
        if sample_rate not in (8000, POCKETSPHINX_RATE):
            raise ValueError(f"pocketsphinx sessions take 8000 or 16000 Hz audio, not {sample_rate}")
        text = self._grammar_text(grammar)
        return PocketsphinxSession(
            self,
            self._executor,
            sample_rate=sample_rate,
            grammar=(text, parse_grammar(text)),
            via_feed=grammar is not None,
        )

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


class PocketsphinxSession(PooledSession):
    """One decoder and endpointer; audio is decoded only between the endpointer's speech start and end.

    `accept`/`finish` decode the engine's phrase grammar; `feed`/`flush` the session's grammar.
    """

    def __init__(
        self,
        engine: PocketsphinxEngine,
        executor: ThreadPoolExecutor,
        *,
        sample_rate: int = 8000,
        grammar: tuple[str, Grammar] | None = None,
        upsample: bool | None = None,
        via_feed: bool = False,
    ) -> None:
        super().__init__(executor)
        self._engine = engine
        self._upsample = sample_rate == 8000 if upsample is None else upsample
        self._sample_rate = sample_rate
        self._grammar = grammar
        self._decoder: pocketsphinx.Decoder | None = None
        self._feed_decoder: pocketsphinx.Decoder | None = None
        self._compiled: SphinxGrammar | None = None
        self._segmenter = Segmenter(sample_rate)
        self._feed_upsampler = _Upsampler() if self._upsample else None
        self._utterance_start = 0.0
        self._speech = bytearray()  # the utterance in progress, at the decoder's rate
        self.last_margin: float | None = None  # of the last sentence scored against the background loop
        # accept()/finish() decode the engine's phrase JSGF when it has one, else go through feed().
        self._via_feed = not engine.grammar or via_feed
        self._finals: list[tuple[str, float]] = []
        self._reset()

    # --- accept / finish: the phrase grammar, as the Mediazen emulator uses it ---

    def _reset(self) -> None:
        self._endpointer = pocketsphinx.Endpointer(
            window=ENDPOINT_WINDOW, ratio=ENDPOINT_RATIO, sample_rate=POCKETSPHINX_RATE
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
        if self._via_feed:
            return self._accept_via_feed(pcm)
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
        coverage = _coverage(decoder)
        if coverage < self._engine.min_coverage:
            log.debug("%r rejected: it covers %.0f %% of the utterance", phrase, 100 * coverage)
            return "", 0.0
        return phrase, coverage

    def _accept_via_feed(self, pcm: bytes) -> tuple[str, float, bool]:
        # A session grammar: the steps of feed(), one final per call as accept() promises.
        self._finals += [(e.text, e.confidence) for e in self._feed(pcm) if isinstance(e, Utterance)]
        if self._finals:
            text, confidence = self._finals.pop(0)
            return text, confidence, True
        return "", 0.0, False

    def _finish(self) -> tuple[str, float]:
        if self._via_feed:
            finals = self._finals + [
                (e.text, e.confidence) for e in self._flush() if isinstance(e, Utterance)
            ]
            self._finals = []
            return finals[-1] if finals else ("", 0.0)
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

    # --- feed / flush: the session's grammar, with times ---

    def _get_feed_decoder(self) -> pocketsphinx.Decoder:
        if self._feed_decoder is None:
            if self._grammar is None:
                raise GrammarError("no grammar")
            self._compiled = self._engine.compiled(
                *self._grammar
            )  # we are in the pool; may raise GrammarError
            self._feed_decoder = self._engine.new_decoder(self._compiled)
        return self._feed_decoder

    def _feed(self, pcm: bytes) -> list[EngineEvent]:
        return self._steps(self._segmenter.push(pcm))

    def _flush(self) -> list[EngineEvent]:
        return self._steps(self._segmenter.end())

    def _steps(self, segments: Iterable[Segment]) -> list[EngineEvent]:
        decoder = self._get_feed_decoder()
        events: list[EngineEvent] = []
        for segment in segments:
            if segment.kind is SegmentKind.START:
                self._utterance_start = segment.time
                self._speech.clear()
                events.append(SpeechStarted(segment.time))
            elif segment.kind is SegmentKind.AUDIO:
                self._speech += self._feed_upsampler(segment.pcm) if self._feed_upsampler else segment.pcm
            else:
                # Decoded whole at its end: cepstral mean normalization over the utterance itself. Live
                # CMN starts from the model's prior and, on a segment that begins 0.1 s before speech,
                # turned CPqD's "sim" into "não"; batch CMN gets it right.
                decoder.start_utt()
                decoder.process_raw(bytes(self._speech), full_utt=True)
                events.append(self._utterance(decoder, segment.time))
                self._speech.clear()
        return events

    def _background_margin(self, decoder: pocketsphinx.Decoder) -> float | None:
        """(grammar path score - background loop score) per frame; None without a loop."""
        if not self._engine.background:
            return None
        path = _path_score(decoder)
        loop = self._engine.background_score(bytes(self._speech))
        if path is None or loop is None:
            return None
        return 1000 * (path - loop) / max(1, int(decoder.n_frames()))

    def _utterance(self, decoder: pocketsphinx.Decoder, end: float) -> Utterance:
        decoder.end_utt()
        start = self._utterance_start
        compiled = self._compiled
        assert compiled is not None
        segments = [s for s in decoder.seg() or () if not _is_filler(s.word)]
        tokens = [compiled.token_of.get(_VARIANT.sub("", s.word), s.word) for s in segments]
        sentence = compiled.grammar.match(tokens) if tokens else None
        if sentence is None:
            return Utterance("", 0.0, start, utterance_end(start, end, ()))
        coverage = speech_coverage(decoder, bytes(self._speech))
        if coverage < self._engine.min_coverage:
            log.debug("%r rejected: it covers %.0f %% of the speech", sentence.text, 100 * coverage)
            return Utterance("", 0.0, start, utterance_end(start, end, ()))
        self.last_margin = self._background_margin(decoder)
        if self.last_margin is not None and self.last_margin < -self._engine.background_margin:
            log.debug(
                "%r rejected: %.0f per frame below the background loop", sentence.text, -self.last_margin
            )
            return Utterance("", 0.0, start, utterance_end(start, end, ()))
        words = tuple(
            TimedWord(
                token,
                round(start + s.start_frame / _FRAMES_PER_SECOND, 3),
                round(start + (s.end_frame + 1) / _FRAMES_PER_SECOND, 3),
                coverage,
            )
            for token, s in zip(tokens, segments, strict=True)
        )
        return Utterance(
            sentence.text, coverage, start, utterance_end(start, end, words), words, sentence.tag
        )


def _path_score(decoder: pocketsphinx.Decoder) -> float | None:
    """The natural log of the best path's score (the binding hands it out as a probability-like exp)."""
    hypothesis = decoder.hyp()
    if hypothesis is None or hypothesis.best_score <= 0:
        return None
    return math.log(hypothesis.best_score)


def speech_coverage(decoder: pocketsphinx.Decoder, pcm16k: bytes, floor_db: float = SPEECH_FLOOR_DB) -> float:
    """The share of the utterance's speech frames (10 ms) that the grammar path aligns to words.

    Speech frames are those within `floor_db` of the utterance's loud frames (its 95th percentile), so a
    recording's noise floor and a segment that runs on in silence (a flush before the endpoint) do not
    count against a sentence, while off-grammar speech forced onto a short sentence leaves loud frames to
    silence. (WebRTC VAD counted the CPqD recordings' noise floor as speech.)
    """
    frame = 2 * POCKETSPHINX_RATE // _FRAMES_PER_SECOND
    count = len(pcm16k) // frame
    if not count:
        return 0.0
    x = np.frombuffer(pcm16k[: count * frame], dtype="<i2").astype(np.float64).reshape(count, -1)
    level = 10 * np.log10((x * x).mean(axis=1) + 1.0)
    speech = level >= np.percentile(level, 95) - floor_db
    worded = np.zeros(count, dtype=bool)
    for s in decoder.seg() or ():
        if not _is_filler(s.word):
            worded[max(0, s.start_frame) : s.end_frame + 1] = True
    return float((speech & worded).sum()) / max(1, int(speech.sum()))


def _coverage(decoder: pocketsphinx.Decoder) -> float:
    """The share of the utterance's frames (trailing endpointer silence left out) aligned to words."""
    spoken = sum(s.end_frame - s.start_frame + 1 for s in decoder.seg() or () if not _is_filler(s.word))
    trailing = int(ENDPOINT_WINDOW * ENDPOINT_RATIO * _FRAMES_PER_SECOND)
    return min(1.0, float(spoken) / max(1, int(decoder.n_frames()) - trailing))
