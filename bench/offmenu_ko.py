"""Off-menu rejection of the Korean (Vosk) engine: correct accepts, false rejects and false accepts, measured.

Held-out set of espeak-ng Korean speech at 8 kHz through a G.711 µ-law round trip, decoded with the emulator's
own `VoskEngine` (feed/flush in 20 ms frames) at two prompts: the demo menu (8 phrases) and a yes/no menu.
- in-grammar: every phrase of the prompt's grammar;
- far: sentences sharing no word with any menu (weather, food, numbers, ...);
- near: phrases sharing words with the menu, fragments of its phrases, or another prompt's answers.
Each clip is decoded once per background size with the confidence threshold off, keeping the hypothesis;
the minimum word confidence is then tuned on the TUNE espeak settings and reported on the TEST ones.
"before" is the Mediazen path as it was (accept/finish sent whatever Vosk decoded, sentence or not).

    .venv/bin/python bench/offmenu_ko.py [--background 0 300 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' shared data

from ivr.emulators.engine import Utterance, VoskEngine, VoskSession, transcribe
from ivr.emulators.vosk_engine import MIN_CONFIDENCE, MIN_COVERAGE
from tests.tools import KOREAN_MENU

MENUS = {
    "demo": list(KOREAN_MENU),
    "yesno": ["네", "예", "아니요"],
}
# Right in every good espeak-ng setting (TOOLBOX.md); 잔액 조회 and 카드 분실 신고 never are.
RELIABLE = {"상담원 연결해 주세요", "상담원 연결해 줘", "상담사 바꿔 주세요", "네", "아니요", "메인 메뉴"}
FAR = [
    "오늘 날씨가 정말 좋네요",
    "내일은 비가 온대요",
    "점심에 김치찌개를 먹었어요",
    "저는 커피를 좋아합니다",
    "일 이 삼 사 오",
    "지하철역이 어디에 있어요",
    "주말에 영화를 봤어요",
    "회의는 세 시에 시작합니다",
    "고양이가 귀여워요",
    "버스가 늦게 왔어요",
]
NEAR = {
    "demo": [
        "상담원",
        "연결해 주세요",
        "메인",
        "메뉴 주세요",
        "상담원 필요 없어요",
        "카드 바꿔 주세요",
        "잔액",
        "상담 예약",
    ],
    "yesno": ["잔액 조회", "메인 메뉴", "상담원 연결해 주세요", "예약", "아니 근데요"],
}
# espeak-ng settings (voice, arguments): thresholds are tuned on TUNE and reported on TEST.
TUNE = [("ko", ()), ("ko", ("-s", "170", "-p", "60"))]
TEST = [
    ("ko", ("-g", "5")),
    ("ko", ("-a", "180", "-p", "80", "-s", "190")),
    ("ko", ("-s", "160", "-p", "45")),
    ("ko+f2", ()),
]
THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
COVERAGES = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
FRAME = 320  # 20 ms of 16-bit 8 kHz
BYTES_PER_SECOND = 16000


@dataclass(frozen=True)
class Clip:
    """One decoded clip: the prompt, what was said and how, what Vosk decoded and the sentence it matched."""

    menu: str
    kind: str  # "in", "far", "near"
    said: str
    setting: str
    hypothesis: str
    sentence: str  # the matched grammar sentence with no confidence threshold, or ""
    min_confidence: float
    coverage: float  # the share of the endpointer's speech segment the decoded words span


def synthesize(text: str, voice: str, args: tuple[str, ...], directory: Path) -> bytes:
    stem = directory / f"clip-{abs(hash((text, voice, args)))}"
    subprocess.run(["espeak-ng", "-v", voice, *args, "-w", f"{stem}.wav", text], check=True)
    subprocess.run(
        [
            "sox",
            "-V1",
            f"{stem}.wav",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "u-law",
            f"{stem}.ul.wav",
            "pad",
            "0.3",
            "0.8",
        ],
        check=True,
    )
    subprocess.run(
        ["sox", "-V1", f"{stem}.ul.wav", "-e", "signed", "-b", "16", "-t", "raw", f"{stem}.raw"], check=True
    )
    return Path(f"{stem}.raw").read_bytes()


async def decode(engine: VoskEngine, grammar: str, pcm: bytes) -> tuple[str, str, float, float]:
    """(hypothesis, matched sentence, lowest word confidence, coverage) of the first utterance with words."""
    session = engine.new_session(8000, grammar)
    assert isinstance(session, VoskSession)
    for i in range(0, len(pcm) + FRAME, FRAME):
        events = await (session.feed(pcm[i : i + FRAME]) if i < len(pcm) else session.flush())
        for event in events:
            words = session.last_hypothesis
            if isinstance(event, Utterance) and words:
                hypothesis = " ".join(w.text for w in words)
                return hypothesis, event.text, min(w.confidence for w in words), session.last_coverage
    return "", "", 0.0, 0.0


Threshold = tuple[float, float]  # (lowest word confidence, least coverage)
NONE: Threshold = (0.0, 0.0)


def accepted(clip: Clip, threshold: Threshold) -> str:
    confidence, least = threshold
    ok = clip.sentence and clip.min_confidence >= confidence and clip.coverage >= least
    return clip.sentence if ok else ""


def rates(clips: list[Clip], threshold: Threshold) -> dict[str, float]:
    """Shares in %: in-grammar clips right, rejected, wrong; off-menu clips accepted (far, near)."""

    def share(chosen: list[Clip], test: Callable[[Clip], object]) -> float:
        return round(100.0 * sum(bool(test(c)) for c in chosen) / max(1, len(chosen)), 1)

    inside = [c for c in clips if c.kind == "in"]
    reliable = [c for c in inside if c.said in RELIABLE]
    return {
        "correct_accepts": share(inside, lambda c: accepted(c, threshold) == c.said),
        "false_rejects": share(inside, lambda c: not accepted(c, threshold)),
        "wrong_accepts": share(inside, lambda c: accepted(c, threshold) not in ("", c.said)),
        "reliable_correct": share(reliable, lambda c: accepted(c, threshold) == c.said),
        "reliable_false_rejects": share(reliable, lambda c: not accepted(c, threshold)),
        "false_accepts_far": share([c for c in clips if c.kind == "far"], lambda c: accepted(c, threshold)),
        "false_accepts_near": share([c for c in clips if c.kind == "near"], lambda c: accepted(c, threshold)),
    }


def tune(clips: list[Clip]) -> Threshold:
    """The thresholds that maximize correct accepts minus the mean of far and near false accepts."""

    def score(threshold: Threshold) -> tuple[float, float, float]:
        r = rates(clips, threshold)
        gain = r["correct_accepts"] - (r["false_accepts_far"] + r["false_accepts_near"]) / 2
        return gain, -threshold[0], -threshold[1]  # ties: the loosest thresholds

    return max(itertools.product(THRESHOLDS, COVERAGES), key=score)


def label(voice: str, args: tuple[str, ...]) -> str:
    return " ".join((voice, *args))


async def measure(
    engine: VoskEngine, audio: dict[tuple[str, str, str, str], bytes]
) -> tuple[list[Clip], float]:
    clips: list[Clip] = []
    processing = 0.0
    for (menu, kind, said, setting), pcm in audio.items():
        start = time.perf_counter()
        hypothesis, sentence, low, covered = await decode(engine, "\n".join(MENUS[menu]), pcm)
        processing += time.perf_counter() - start
        clips.append(Clip(menu, kind, said, setting, hypothesis, sentence, low, covered))
    seconds = sum(len(p) for p in audio.values()) / BYTES_PER_SECOND
    return clips, processing / seconds


async def mediazen_path(
    audio: dict[tuple[str, str, str, str], bytes], held_out: set[str]
) -> tuple[list[Clip], float]:
    """The held-out clips through accept/finish (the Mediazen emulator's steps), engine defaults."""
    engine = VoskEngine(workers=1)
    clips: list[Clip] = []
    processing = 0.0
    seconds = 0.0
    for (menu, kind, said, setting), pcm in audio.items():
        if setting not in held_out:
            continue
        start = time.perf_counter()
        finals = await transcribe(engine.new_session(8000, "\n".join(MENUS[menu])), pcm, FRAME)
        processing += time.perf_counter() - start
        seconds += len(pcm) / BYTES_PER_SECOND
        text = finals[0][0] if finals else ""
        clips.append(Clip(menu, kind, said, setting, text, text, 1.0, 1.0))
    engine.close()
    return clips, processing / seconds


def row(name: str, r: dict[str, float], rtf: float) -> str:
    return (
        f"  {name:34} {r['correct_accepts']:5.1f} {r['false_rejects']:5.1f} {r['wrong_accepts']:5.1f}"
        f" {r['reliable_correct']:5.1f} {r['reliable_false_rejects']:5.1f}"
        f" {r['false_accepts_far']:5.1f} {r['false_accepts_near']:5.1f}  {rtf:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--background", type=int, nargs="+", default=[0, 150, 300])
    parser.add_argument("--weight", type=int, default=1, help="each phrase listed this many times")
    parser.add_argument("--json", type=Path, default=Path("var/bench/offmenu_ko.json"))
    args = parser.parse_args()
    settings = {label(v, a): (v, a) for v, a in TUNE + TEST}
    tune_labels = {label(v, a) for v, a in TUNE}
    audio: dict[tuple[str, str, str, str], bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for menu, phrases in MENUS.items():
            for kind, said in (
                [("in", p) for p in phrases] + [("far", p) for p in FAR] + [("near", p) for p in NEAR[menu]]
            ):
                for name, (voice, extra) in settings.items():
                    audio[(menu, kind, said, name)] = synthesize(said, voice, extra, Path(tmp))
    counts = {k: sum(key[1] == k for key in audio) for k in ("in", "far", "near")}
    print(f"{len(audio)} clips ({counts}), {len(settings)} espeak-ng settings, {len(TUNE)} for tuning")
    print("  (%)                                 right rej   wrong relOK relRj  FAfar FAnear RTF")
    report: dict[str, object] = {
        "clips": counts,
        "tune": sorted(tune_labels),
        "test": [label(*s) for s in TEST],
    }
    runs: dict[str, object] = {}
    for size in args.background:
        engine = VoskEngine(
            workers=1, background=size, min_confidence=0.0, min_coverage=0.0, phrase_weight=args.weight
        )
        clips, rtf = await_run(engine, audio)
        engine.close()
        held_out = [c for c in clips if c.setting not in tune_labels]
        threshold = tune([c for c in clips if c.setting in tune_labels])
        plain = rates(held_out, NONE)
        tuned = rates(held_out, threshold)
        if size == 0:
            # The Mediazen emulator's accept/finish path sent whatever Vosk decoded, sentence or not.
            raw = [
                Clip(c.menu, c.kind, c.said, c.setting, c.hypothesis, c.hypothesis, 1.0, 1.0)
                for c in held_out
            ]
            print(row("before: any hypothesis (mediazen)", rates(raw, NONE), rtf))
        print(row(f"background {size}, no threshold", plain, rtf))
        print(row(f"bg {size}, conf>={threshold[0]}, coverage>={threshold[1]}", tuned, rtf))
        shipped = rates(held_out, (MIN_CONFIDENCE, MIN_COVERAGE))
        print(row(f"bg {size}, engine's {MIN_CONFIDENCE} and {MIN_COVERAGE}", shipped, rtf))
        grid = itertools.product(THRESHOLDS, COVERAGES)
        sweep = {f"{c} {v}": rates(held_out, (c, v)) for c, v in grid}
        runs[str(size)] = {
            "background_words": len(engine.background),
            "rtf": round(rtf, 4),
            "min_confidence": threshold[0],
            "min_coverage": threshold[1],
            "held_out_no_threshold": plain,
            "held_out_tuned": tuned,
            "held_out_engine_defaults": shipped,
            "all_clips_tuned": rates(clips, threshold),
            "all_clips_no_threshold": rates(clips, NONE),
            "sweep_held_out": sweep,
            "clips": [asdict(c) for c in clips],
        }
        misses = sorted(
            {
                f"{c.menu}:{c.said}->{c.hypothesis or '-'}"
                for c in held_out
                if c.kind == "in" and c.sentence != c.said
            }
        )
        passes = sorted(
            {
                f"{c.menu}:{c.said}->{c.sentence}"
                for c in held_out
                if c.kind != "in" and accepted(c, threshold)
            }
        )
        print(f"    in-grammar misses: {', '.join(misses[:14])}")
        print(f"    off-menu accepted: {', '.join(passes[:14])}")
    report["runs"] = runs
    test_labels = {label(v, a) for v, a in TEST}
    clips, rtf = asyncio.run(mediazen_path(audio, test_labels))
    print(row("mediazen accept/finish, defaults", rates(clips, NONE), rtf))
    report["mediazen_path_held_out"] = {
        "rtf": round(rtf, 4),
        **rates(clips, NONE),
        "clips": [asdict(c) for c in clips],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"written {args.json}")


def await_run(engine: VoskEngine, audio: dict[tuple[str, str, str, str], bytes]) -> tuple[list[Clip], float]:
    return asyncio.run(measure(engine, audio))


if __name__ == "__main__":
    main()
