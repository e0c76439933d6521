"""`say` speech: real espeak-ng, a real disk cache in a temporary folder (no stand-in synthesizer: the one
wrapper here only counts how often the real one runs)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from ivr.tts import EspeakSynthesizer, SpeechCache, TtsError, voice_for
from tests.tools import require_tool


class Counting:
    """The real espeak-ng synthesizer, counting its runs."""

    def __init__(self) -> None:
        self.inner = EspeakSynthesizer()
        self.runs = 0

    async def version(self) -> str:
        return await self.inner.version()

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        self.runs += 1
        await self.inner.synthesize(text, voice, out)


@pytest.fixture(autouse=True)
def _espeak() -> None:
    require_tool("espeak-ng")


def cached_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.wav"))


@pytest.mark.parametrize(
    ("tag", "voice"),
    [
        ("pt-BR", "pt-br"),
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("en", "en-us"),
        ("en-US", "en-us"),
        ("en_GB", "en-gb"),
        ("pt", "pt-br"),
        ("pt-PT", "pt"),
    ],
)
def test_bcp47_tags_name_espeak_voices(tag: str, voice: str) -> None:
    assert voice_for(tag) == voice


async def test_speech_is_8khz_mono_pcm_cached_on_disk_and_read_back_without_espeak(tmp_path: Path) -> None:
    first = Counting()
    pcm = await SpeechCache(first, tmp_path).get("your balance is ready", "en-US")
    assert first.runs == 1
    assert len(pcm) > 8000 * 2 * 0.5 and len(pcm) % 2 == 0  # more than half a second of 16-bit samples
    [stored] = cached_files(tmp_path)
    with wave.open(str(stored), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.readframes(wav.getnframes()) == pcm
    mtime = stored.stat().st_mtime_ns
    # A new process (a fresh memory cache) finds the file: espeak-ng does not run again.
    second = Counting()
    again = await SpeechCache(second, tmp_path).get("your balance is ready", "en-US")
    assert again == pcm and second.runs == 0
    assert cached_files(tmp_path) == [stored] and stored.stat().st_mtime_ns == mtime


async def test_concurrent_requests_for_one_text_synthesize_it_once(tmp_path: Path) -> None:
    synth = Counting()
    cache = SpeechCache(synth, tmp_path)
    results = await asyncio.gather(*(cache.get("상담원을 연결합니다", "ko-KR") for _ in range(5)))
    assert synth.runs == 1 and len(set(results)) == 1
    assert len(cached_files(tmp_path)) == 1


async def test_one_waiter_cancelled_does_not_cancel_the_synthesis_the_others_wait_on(tmp_path: Path) -> None:
    synth = Counting()
    cache = SpeechCache(synth, tmp_path)
    hurried = asyncio.ensure_future(cache.get("um momento por favor", "pt-BR"))
    patient = asyncio.ensure_future(cache.get("um momento por favor", "pt-BR"))
    await asyncio.sleep(0.01)
    hurried.cancel()  # that caller hung up
    assert len(await patient) > 0 and synth.runs == 1
    assert hurried.cancelled()


async def test_text_language_and_speed_each_name_their_own_file(tmp_path: Path) -> None:
    await SpeechCache(EspeakSynthesizer(), tmp_path).get("sim", "pt-BR")
    await SpeechCache(EspeakSynthesizer(), tmp_path).get("sim", "en-US")
    await SpeechCache(EspeakSynthesizer(), tmp_path).get("não", "pt-BR")
    await SpeechCache(EspeakSynthesizer(speed=140), tmp_path).get("sim", "pt-BR")
    assert len(cached_files(tmp_path)) == 4


async def test_a_missing_voice_is_a_tts_error_and_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match=r"exited 1: .*voice does not exist"):
        await SpeechCache(EspeakSynthesizer(), tmp_path).get("hello", "xx-NOPE")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


async def test_a_text_that_looks_like_an_option_is_spoken_not_parsed(tmp_path: Path) -> None:
    pcm = await SpeechCache(EspeakSynthesizer(), tmp_path).get("--help me", "en-US")
    assert len(pcm) > 8000  # espeak-ng would print its usage and write no audio for an option


async def test_memory_holds_at_most_its_bound_and_the_disk_still_serves_the_rest(tmp_path: Path) -> None:
    synth = Counting()
    cache = SpeechCache(synth, tmp_path, memory_bytes=40_000)
    one = await cache.get("one two three four", "en-US")
    two = await cache.get("five six seven eight", "en-US")
    assert len(one) + len(two) > 40_000  # both cannot stay in memory
    assert await cache.get("one two three four", "en-US") == one
    assert synth.runs == 2  # the evicted one came back from disk, not from espeak-ng
