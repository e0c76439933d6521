"""Pronunciations for the best-effort pt-BR and ja engines, as ARPAbet for pocketsphinx's English model.

Portuguese words go through espeak-ng (`espeak-ng -v pt-br -q -x --sep=' '`, a subprocess, one call per batch
of words) and each espeak phoneme becomes the nearest English phone, with the variants that helped on
espeak-ng speech (TOOLBOX.md): the tap as D or R, a final r dropped, a final U as UW, -tchi as IH. Japanese
words are read as kana by `pykakasi` (espeak-ng cannot read kanji, and its own kana reading has bugs) and
the Hepburn romanization becomes phones by simple rules. Both cache per word, behind a lock; both block,
so they run in the recognizer pool, never on the event loop.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

_MAX_VARIANTS = 4

# espeak-ng pt-br phonemes (stress marks stripped) -> ARPAbet. Nasal vowels lose their nasality: espeak
# writes the coda nasal as its own N where Portuguese has one.
_PT_PHONES: dict[str, str] = {
    "a": "AA", "a:": "AA", "&": "AH", "&~": "AH", "e": "EY", "E": "EH", "i": "IY", "i~": "IY", "I": "IH",
    "o": "OW", "o~": "OW", "O": "AO", "u": "UW", "u~": "UW", "U": "UH", "y": "IY", "@-": "AH",
    "eI": "EY", "EI": "EY", "aI": "AY", "oI": "OY", "OI": "OY", "uI": "UW IY", "aU": "AW", "&U~": "AW",
    "eU": "EY W", "EU": "EH W", "iU": "IY W",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V", "s": "S", "s#": "S",
    "z": "Z", "S": "SH", "Z": "ZH", "tS": "CH", "dZ": "JH", "ts": "T S", "m": "M", "n": "N", "N": "N",
    "n^": "N Y", "l": "L", "l^": "L Y", "j": "Y", "w": "W", "*": "D", "r": "R", "R": "R", "x": "HH",
    "h": "HH",
}  # fmt: skip
_IGNORED = {";", "_|", "_", "_:", "||"}


def pt_phones(espeak: str) -> list[str] | None:
    """ARPAbet variants of one word's espeak-ng pt-br phonemes; None when a phoneme has no mapping."""
    symbols = [p.lstrip("',") for p in espeak.split()]
    symbols = [p for p in symbols if p and p not in _IGNORED and not p.startswith("(")]
    if not symbols or any(p not in _PT_PHONES for p in symbols):
        return None
    base = [_PT_PHONES[p] for p in symbols]
    variants = [base]

    def variant(change: list[str]) -> None:
        if change != base and change not in variants:
            variants.append(change)

    variant([("R" if p == "*" else phone) for p, phone in zip(symbols, base, strict=True)])  # tap as R
    if symbols[-1] == "r" and len(base) > 1:
        variant(base[:-1])  # a final r dropped, as most of Brazil says it
    if symbols[-1] == "U":
        variant([*base[:-1], "UW"])
    if len(symbols) > 1 and symbols[-2:] == ["tS", "y"]:
        variant([*base[:-1], "IH"])  # -te/-de said -tchi, -dji
    return [" ".join(v).replace("  ", " ") for v in variants[:_MAX_VARIANTS]]


class EspeakLexicon:
    """Brazilian Portuguese pronunciations from espeak-ng's phonemes, cached per word."""

    def __init__(self, voice: str = "pt-br", espeak: str | None = None) -> None:
        self.voice = voice
        self.espeak = espeak or shutil.which("espeak-ng") or "espeak-ng"
        self._cache: dict[str, list[str] | None] = {}
        self._lock = threading.Lock()

    def phonemes(self, words: Sequence[str]) -> list[str]:
        """espeak-ng's phoneme string of each word (one subprocess for the batch; one line per word)."""
        if not words:
            return []
        out = subprocess.run(
            [self.espeak, "-v", self.voice, "-q", "-x", "--sep= "],
            input="\n".join(words) + "\n",
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.splitlines()
        if len(out) != len(words):  # a word espeak split into clauses: ask for each word alone
            return [self.phonemes([w])[0] if len(words) > 1 else " ".join(out) for w in words]
        return out

    def pronounce(self, tokens: Sequence[str]) -> dict[str, list[str]]:
        with self._lock:
            wanted = list(dict.fromkeys(t for t in tokens if t not in self._cache))
            words = [t.casefold() for t in wanted]
            # Digits and symbols would be read out as words; a grammar token is one spoken word.
            sayable = [(t, w) for t, w in zip(wanted, words, strict=True) if re.fullmatch(r"[^\W\d_]+", w)]
            for token in wanted:
                self._cache[token] = None
            for (token, _), phonemes in zip(sayable, self.phonemes([w for _, w in sayable]), strict=True):
                self._cache[token] = pt_phones(phonemes)
            return {t: v for t in tokens if (v := self._cache.get(t))}


# --- Japanese ---

_JA_VOWELS = {"a": "AA", "i": "IY", "u": "UW", "e": "EH", "o": "OW"}
_JA_DIPHTHONGS = {"ai": "AY", "ei": "EY", "ou": "OW", "oi": "OY"}
_JA_SPLIT = {"AY": "AA IY", "OY": "OW IY"}
_JA_ONSETS = {
    "ts": "T S", "sh": "SH", "ch": "CH", "j": "JH", "f": "F", "k": "K", "g": "G", "s": "S", "z": "Z",
    "t": "T", "d": "D", "n": "N", "h": "HH", "b": "B", "p": "P", "m": "M", "y": "Y", "r": "R", "w": "W",
    "v": "V",
}  # fmt: skip
_JA_SYLLABLE = re.compile(
    r"(ts|sh|ch|[kgszjtdnhbpmyrwfv])?(y)?([aiueo])|(n)(?![aiueoy])|([kgsztdhbpmcfj])(?=\5|ch)"
)


def ja_phones(romaji: str) -> list[str] | None:
    """ARPAbet variants of a Hepburn romanization (as pykakasi gives it); None if it does not parse."""
    text = romaji.casefold().replace("-", "")
    if text == "wo":  # the particle を is said "o"
        text = "o"
    phones: list[str] = []
    pos = 0
    while pos < len(text):
        m = _JA_SYLLABLE.match(text, pos)
        if m is None:
            return None
        onset, glide, vowel, moraic_n, geminate = m.groups()
        pos = m.end()
        if geminate:  # small tsu: the next consonant is held; the phone is not repeated
            continue
        if moraic_n:
            phones.append("NG" if text[pos : pos + 1] in ("k", "g") else "N")
            continue
        if onset:
            phones.append(_JA_ONSETS[onset])
        if glide:
            phones.append("Y")
        # a long vowel (aa, ou, ...) is one phone held longer; a diphthong one English phone
        pair = vowel + text[pos : pos + 1]
        if pair in _JA_DIPHTHONGS:
            phones.append(_JA_DIPHTHONGS[pair])
            pos += 1
        else:
            phones.append(_JA_VOWELS[vowel])
            if text[pos : pos + 1] == vowel:
                pos += 1
    if not phones:
        return None
    base = " ".join(phones)
    variants = [base]
    # "ai", "ei", "oi" are two morae: as two vowels too (espeak-ng's はい is much longer than "high")
    split = " ".join(_JA_SPLIT.get(p, p) for p in phones)
    if split != base:
        variants.append(split)
    if " R " in f" {base} ":
        variants.append(re.sub(r"\bR\b", "D", base))  # the flap heard as d by an English model
    if base.endswith("S UW") and len(phones) > 2:
        variants.append(base[: -len(" UW")])  # a devoiced final u: desu -> des
    return variants[:_MAX_VARIANTS]


class KanaLexicon:
    """Japanese pronunciations: kana readings from pykakasi (kanji included), then romaji -> phones rules."""

    def __init__(self) -> None:
        self._kakasi: Any = None
        self._cache: dict[str, list[str] | None] = {}
        self._lock = threading.Lock()

    def _convert(self, text: str) -> list[dict[str, str]]:
        if self._kakasi is None:
            import pykakasi  # ~0.5 s to load its dictionaries: on first use, in the pool

            self._kakasi = pykakasi.kakasi()  # type: ignore[no-untyped-call]
        return list(self._kakasi.convert(text))

    def reading(self, token: str) -> str:
        """The Hepburn romanization of a token's kana reading."""
        return "".join(str(part["hepburn"]) for part in self._convert(token))

    def kana(self, text: str) -> str:
        """The text in hiragana (what espeak-ng can say: it reads kanji as "Chinese letter")."""
        return "".join(str(part["hira"]) for part in self._convert(text))

    def pronounce(self, tokens: Sequence[str]) -> dict[str, list[str]]:
        with self._lock:
            for token in tokens:
                if token not in self._cache:
                    romaji = self.reading(token)
                    self._cache[token] = ja_phones(romaji) if re.fullmatch(r"[a-z-]+", romaji) else None
            return {t: v for t in tokens if (v := self._cache.get(t))}
