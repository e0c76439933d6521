"""Vosk figures for the emulators: model load time, RSS, real-time factor in grammar and free-form mode.

Speech is espeak-ng Korean at 8 kHz through a µ-law round trip (as a phone carries it), fed through the
emulator's own `VoskEngine` in 20 ms frames, one session at a time (one core).

    .venv/bin/python bench/vosk_rtf.py [--free-form N]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' shared data

from ivr.emulators.engine import VoskEngine, VoskSession, transcribe
from tests.tools import KOREAN_MENU

DEMO_MENU = list(KOREAN_MENU)
FRAME = 320  # 20 ms at 8 kHz, 16-bit
BYTES_PER_SECOND = 16000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def speech(text: str, directory: Path) -> bytes:
    stem = directory / str(abs(hash(text)))
    subprocess.run(["espeak-ng", "-v", "ko", "-w", f"{stem}.wav", text], check=True)
    subprocess.run(
        ["sox", f"{stem}.wav", "-r", "8000", "-c", "1", "-e", "u-law", f"{stem}.ul.wav"], check=True
    )
    subprocess.run(
        ["sox", f"{stem}.ul.wav", "-e", "signed", "-b", "16", "-t", "raw", f"{stem}.raw", "pad", "0", "0.8"],
        check=True,
    )
    return Path(f"{stem}.raw").read_bytes()


async def recognize(engine: VoskEngine, pcm: bytes) -> tuple[str, float, float]:
    """(final text, confidence, seconds of processing)."""
    session = engine.new_session(8000)
    start = time.perf_counter()
    finals = await transcribe(session, pcm, FRAME)
    elapsed = time.perf_counter() - start
    return " ".join(t for t, _ in finals), (finals[0][1] if finals else 0.0), elapsed


async def touch(sessions: list[VoskSession]) -> None:
    """Sessions build their recognizer on first audio (in the pool): feed each 20 ms of silence."""
    for session in sessions:
        await session.accept(bytes(FRAME))


def run_mode(engine: VoskEngine, clips: dict[str, bytes], label: str) -> None:
    audio = processing = 0.0
    right = 0
    print(f"\n{label}")
    for phrase, pcm in clips.items():
        text, confidence, elapsed = asyncio.run(recognize(engine, pcm))
        seconds = len(pcm) / BYTES_PER_SECOND
        audio += seconds
        processing += elapsed
        right += text == phrase
        mark = "ok " if text == phrase else "BAD"
        print(f"  {mark} {phrase!r:24} -> {text!r:28} conf {confidence:.2f}  RTF {elapsed / seconds:.3f}")
    print(
        f"  {right}/{len(clips)} exact, audio {audio:.1f} s, processing {processing:.2f} s,"
        f" RTF {processing / audio:.3f}"
    )


async def parallel(engine: VoskEngine, clips: dict[str, bytes], sessions: int) -> None:
    """Many sessions at once on the engine's pool: how many live streams the machine carries."""
    pcms = [list(clips.values())[i % len(clips)] for i in range(sessions)]
    start = time.perf_counter()
    await asyncio.gather(*(recognize(engine, pcm) for pcm in pcms))
    wall = time.perf_counter() - start
    audio = sum(len(p) for p in pcms) / BYTES_PER_SECOND
    print(
        f"  {sessions} concurrent sessions, {engine.workers} workers: {audio:.1f} s of audio in {wall:.2f} s,"
    )
    print(f"  {audio / wall:.0f}x real time in aggregate (about that many live streams)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--free-form", type=int, default=3, help="phrases to decode free-form (about RTF 1 each)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = {phrase: speech(phrase, Path(tmp)) for phrase in DEMO_MENU}
    rss0 = rss_mib()
    start = time.perf_counter()
    grammar = VoskEngine(phrases=DEMO_MENU, workers=2)
    print(f"model load {time.perf_counter() - start:.2f} s, RSS {rss0:.0f} -> {rss_mib():.0f} MiB")
    print(
        f"grammar: {len(grammar.phrases)} of {len(DEMO_MENU)} phrases kept;"
        f" missing words: {grammar.missing_words}"
    )
    before = rss_mib()
    sessions = [grammar.new_session() for _ in range(10)]
    asyncio.run(touch(sessions))
    print(f"10 idle grammar recognizers: +{rss_mib() - before:.0f} MiB")
    del sessions
    run_mode(grammar, clips, "grammar mode (demo menu)")
    print("\ngrammar mode, in parallel")
    asyncio.run(parallel(grammar, clips, 16))
    grammar.close()
    free = VoskEngine(workers=1)
    run_mode(free, dict(list(clips.items())[: args.free_form]), "free-form mode")
    print(f"RSS at the end {rss_mib():.0f} MiB (two model copies loaded)")
    free.close()


if __name__ == "__main__":
    main()
