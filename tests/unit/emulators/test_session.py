"""The shared emulator pieces: the coalescing audio queue and the recognition worker, on a real engine."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from ivr.emulators.engine import PocketsphinxEngine
from ivr.emulators.session import AudioQueue, argument_parser, engine_language, recognize
from tests.integration.harness import speak


def test_audio_queue_coalesces_and_hands_out_bounded_chunks() -> None:
    async def run() -> list[bytes]:
        queue = AudioQueue(max_chunk=6)
        for piece in (b"ab", b"cd", b"ef", b"gh"):
            queue.put(piece)
        assert queue.wake.is_set()
        return [queue.take(), queue.take(), queue.take()]

    assert asyncio.run(run()) == [b"abcdef", b"gh", b""]


def test_audio_queue_chunks_are_whole_samples() -> None:
    with pytest.raises(ValueError):
        AudioQueue(max_chunk=3)


def test_worker_sends_steps_in_order_then_the_flush(tmp_path: Path) -> None:
    wav = speak("yes", tmp_path / "yes.wav", voice="en-us", lead=0.3, tail=0.8)
    with wave.open(str(wav)) as w:
        pcm = w.readframes(w.getnframes())
    engine = PocketsphinxEngine(["yes", "no"], workers=1)
    steps: list[tuple[str, float, bool]] = []
    finished: list[tuple[str, float]] = []

    async def on_step(text: str, confidence: float, endpoint: bool) -> None:
        steps.append((text, confidence, endpoint))

    async def on_finish(text: str, confidence: float) -> None:
        finished.append((text, confidence))

    async def run() -> None:
        queue = AudioQueue(max_chunk=3200)
        worker = asyncio.create_task(recognize(engine.new_session(8000), queue, on_step, on_finish))
        for i in range(0, len(pcm), 320):
            queue.put(pcm[i : i + 320])
            await asyncio.sleep(0)
        queue.close()
        await asyncio.wait_for(worker, 10)

    try:
        asyncio.run(run())
    finally:
        engine.close()
    assert [(text, endpoint) for text, _, endpoint in steps if endpoint] == [("yes", True)]
    assert finished == [("", 0.0)]


def test_every_emulator_takes_the_same_options() -> None:
    args = argument_parser("cpqd", "test", port=9000).parse_args(
        [
            *("--phrases", "menu.txt", "--phrase", "yes", "--phrase", "네", "--model", "ja=/models/ja"),
            *("--language", "ja", "--language", "en"),
        ]
    )
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 9000, 2)
    assert args.phrase == ["yes", "네"] and args.model == ["ja=/models/ja"]
    assert args.language == ["ja", "en"]


@pytest.mark.parametrize(
    ("spec", "language"),
    [("pt-BR", "pt-BR"), ("pt", "pt-BR"), ("en-US", "en"), ("jp", "ja"), ("ja", "ja"), ("fr", None)],
)
def test_language_flag_names_vendor_codes_and_engine_languages(spec: str, language: str | None) -> None:
    # Mediazen's codes (jp is Japanese) with CPQD's pt-BR: a vendor code, an engine language or a subtag.
    assert engine_language(spec, {"ko": "ko", "en": "en", "jp": "ja", "pt-BR": "pt-BR"}) == language
