"""Accuracy of the best-effort pt-BR and ja engines on espeak-ng speech: in-grammar hits and false accepts.

Every phrase is synthesized by espeak-ng in 2 voices x 3 speeds x 3 pitches, converted to 8 kHz through a
G.711 µ-law round trip (as a trunk delivers it), and decoded with a phrase-list grammar of the menu. Each
clip is decoded once with rejection off, recording the sentence, its speech coverage and its margin over
the background loop; the rejection thresholds are then tuned on the first voice and applied to the second.
Far out-of-grammar phrases share no word with the menu, near ones share some.

    .venv/bin/python bench/phonetic_accuracy.py [--language pt-BR|ja] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.emulators.engine import PhoneticEngine, PocketsphinxSession, Utterance, transcribe_events
from ivr.emulators.lexicon import KanaLexicon

MENUS = {
    "pt-BR": {
        "voices": ["pt-br", "pt-br+f2"],
        "grammar": [
            "sim",
            "não",
            "saldo",
            "falar com atendente",
            "segunda via do boleto",
            "cartão de crédito",
            "cancelar",
            "menu principal",
        ],
        "far": [
            "qual é a previsão do tempo",
            "eu gosto de futebol",
            "bom dia tudo bem",
            "o carro está na garagem",
            "amanhã vai chover",
            "a reunião foi adiada",
            "preciso de um médico",
            "onde fica a estação",
        ],
        "near": ["saldo da poupança", "cartão de débito", "falar com gerente", "segunda via", "menu"],
    },
    "ja": {
        "voices": ["ja", "ja+f2"],
        "grammar": [
            "はい",
            "いいえ",
            "オペレーター",
            "残高照会",
            "料金プラン",
            "住所変更",
            "メインメニュー",
            "解約",
        ],
        "far": [
            "今日は天気がいいですね",
            "駅はどこですか",
            "昨日映画を見ました",
            "お腹が空きました",
            "電車が遅れています",
            "明日は雨です",
            "猫が好きです",
            "会議は三時からです",
        ],
        "near": ["残高", "オペレーターさん", "料金", "住所", "メニュー"],
    },
}
SPEEDS = (140, 175, 210)
PITCHES = (35, 50, 65)


@dataclass(frozen=True)
class Clip:
    """One decoded clip: what was said, in which voice, and what the engine made of it."""

    kind: str  # "in", "far", "near"
    said: str
    voice: str
    text: str
    coverage: float
    margin: float | None


_KANA = KanaLexicon()


def synthesize(text: str, voice: str, speed: int, pitch: int, directory: Path) -> bytes:
    if voice.startswith("ja"):
        text = _KANA.kana(text)  # espeak-ng reads kanji as "Chinese letter"
    stem = directory / f"clip-{abs(hash((text, voice, speed, pitch)))}"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f"{stem}.wav", text], check=True
    )
    subprocess.run(
        ["sox", f"{stem}.wav", "-r", "8000", "-c", "1", "-e", "u-law", f"{stem}.ul.wav", "pad", "0.3", "0.8"],
        check=True,
    )
    subprocess.run(
        ["sox", f"{stem}.ul.wav", "-e", "signed", "-b", "16", "-t", "raw", f"{stem}.raw"], check=True
    )
    return Path(f"{stem}.raw").read_bytes()


async def decode(engine: PhoneticEngine, grammar: str, pcm: bytes) -> tuple[str, float, float | None]:
    """(sentence, coverage, background margin) of the clip's first utterance, rejection off."""
    session = engine.new_session(8000, grammar)
    assert isinstance(session, PocketsphinxSession)
    events = await transcribe_events(session, pcm)
    utterances = [e for e in events if isinstance(e, Utterance)]
    if not utterances or not utterances[0].text:
        return "", 0.0, None
    return utterances[0].text, utterances[0].confidence, session.last_margin


def accepted(clip: Clip, min_coverage: float, margin: float) -> bool:
    return (
        bool(clip.text) and clip.coverage >= min_coverage and (clip.margin is None or clip.margin >= -margin)
    )


def rates(clips: list[Clip], min_coverage: float, margin: float) -> tuple[float, float, float]:
    """(correct accepts of in-grammar clips, false accepts far, false accepts near), in %."""

    def share(kind: str, hit: bool) -> float:
        chosen = [c for c in clips if c.kind == kind]
        good = [c for c in chosen if accepted(c, min_coverage, margin) and (c.text == c.said) == hit]
        return 100.0 * len(good) / max(1, len(chosen))

    return share("in", True), share("far", False), share("near", False)


def tune(clips: list[Clip]) -> tuple[float, float]:
    """The thresholds that maximize correct accepts minus far false accepts."""
    best = (-1e9, 0.0, float("inf"))
    for coverage, margin in itertools.product(
        (0.0, 0.6, 0.7, 0.8), (float("inf"), 2, 1, 0.5, 0.25, 0.1, 0.0, -0.25)
    ):
        hits, far, _ = rates(clips, coverage, margin)
        best = max(best, (hits - far, coverage, margin))
    return best[1], best[2]


async def run(language: str, quick: bool) -> None:
    menu = MENUS[language]
    grammar = "\n".join(menu["grammar"])
    engine = PhoneticEngine(language, workers=1, background_margin=float("inf"))
    engine.min_coverage = 0.0
    speeds, pitches = ((175,), (50,)) if quick else (SPEEDS, PITCHES)
    clips: list[Clip] = []
    started = time.perf_counter()
    audio = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("in", "far", "near"):
            phrases = menu["grammar"] if kind == "in" else menu[kind]
            for phrase, voice, speed, pitch in itertools.product(phrases, menu["voices"], speeds, pitches):
                pcm = synthesize(phrase, voice, speed, pitch, Path(tmp))
                audio += len(pcm) / 16000
                text, coverage, margin = await decode(engine, grammar, pcm)
                clips.append(Clip(kind, phrase, voice, text, coverage, margin))
    elapsed = time.perf_counter() - started
    engine.close()
    first, second = menu["voices"]
    raw = rates(clips, 0.0, float("inf"))
    print(
        f"{language}: {len(clips)} clips ({sum(c.kind == 'in' for c in clips)} in-grammar), "
        f"{elapsed:.0f} s for {audio:.0f} s of audio (RTF {elapsed / audio:.2f}, synthesis included)"
    )
    print(
        f"  no rejection: {raw[0]:.0f} % exact in-grammar,"
        f" false accepts {raw[1]:.0f} % far, {raw[2]:.0f} % near"
    )
    coverage, margin = tune([c for c in clips if c.voice == first])
    hits, far, near = rates([c for c in clips if c.voice == second], coverage, margin)
    print(
        f"  tuned on {first} (coverage >= {coverage}, margin >= {-margin}), tested on {second}: "
        f"{hits:.0f} % correct accepts, false accepts {far:.0f} % far, {near:.0f} % near"
    )
    hits, far, near = rates(clips, engine_defaults(language)[0], engine_defaults(language)[1])
    print(
        f"  with the engine's defaults, all clips: {hits:.0f} % correct accepts, "
        f"false accepts {far:.0f} % far, {near:.0f} % near"
    )
    default_coverage, default_margin = engine_defaults(language)
    sweep = ", ".join(
        "{:.2f}: {:.0f}/{:.0f}/{:.0f}".format(cut, *rates(clips, cut, default_margin))
        for cut in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8)
    )
    print(f"  by min coverage (default {default_coverage}), correct/far/near %: {sweep}")
    wrong = [c for c in clips if c.kind == "in" and c.text != c.said]
    if wrong:
        print("  in-grammar misses:", ", ".join(sorted({f"{c.said}->{c.text or '-'}" for c in wrong})))


def engine_defaults(language: str) -> tuple[float, float]:
    from ivr.emulators.phonetic import BACKGROUND_MARGIN, PHONETIC_MIN_COVERAGE

    return PHONETIC_MIN_COVERAGE, BACKGROUND_MARGIN[language]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=sorted(MENUS), action="append")
    parser.add_argument("--quick", action="store_true", help="one speed and pitch per voice")
    args = parser.parse_args()
    for language in args.language or sorted(MENUS):
        asyncio.run(run(language, args.quick))


if __name__ == "__main__":
    main()
