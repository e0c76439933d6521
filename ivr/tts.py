"""Text to speech for the dialplan's `say`: synthesized once, cached on disk by content, kept in memory.

The backend sits behind `Synthesizer`, so another engine can replace espeak-ng; the cache key covers the
text, the voice, the speed and the backend's version, so upgrading espeak-ng re-synthesizes instead of
replaying stale audio. Nothing here blocks the event loop: espeak-ng runs as an asyncio subprocess and files
are read and written in a worker thread.

Japanese: espeak-ng reads kana but not kanji (it says "Chinese letter" for each one, TOOLBOX.md); give `say`
texts in kana. A kanji text is spoken as is, with a warning in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import wave
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import structlog

from ivr.media.prompt import PromptError, load_prompt

__all__ = ["EspeakSynthesizer", "SpeechCache", "Synthesizer", "TtsError", "voice_for"]

log = structlog.get_logger()

# BCP 47 tags whose espeak-ng voice is not simply the lower-cased tag.
_VOICES = {"ko-kr": "ko", "ja-jp": "ja", "en": "en-us", "pt": "pt-br", "pt-pt": "pt", "es-es": "es"}
_KANJI = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
SYNTHESIS_TIMEOUT = 30.0  # seconds: a wedged espeak-ng must not hold a prompt (and the caller) forever


class TtsError(Exception):
    """The text could not be synthesized (missing voice, backend crashed or timed out)."""


def voice_for(language: str) -> str:
    """The espeak-ng voice for a BCP 47 language tag: pt-BR -> pt-br, ko-KR -> ko, en -> en-us."""
    tag = language.strip().lower().replace("_", "-")
    return _VOICES.get(tag, tag)


class Synthesizer(Protocol):
    """A TTS backend: writes `text` spoken in `voice` as a WAV file (any rate; the cache converts it)."""

    async def version(self) -> str:
        """What identifies this backend's output (name, version, settings) for the cache key."""
        ...

    async def synthesize(self, text: str, voice: str, out: Path) -> None: ...


class EspeakSynthesizer:
    """espeak-ng as an asyncio subprocess."""

    def __init__(self, speed: int = 180, program: str = "espeak-ng") -> None:
        self.speed = speed
        self.program = program
        self._version: str | None = None

    async def version(self) -> str:
        if self._version is None:
            out = await self._run([self.program, "--version"])
            self._version = f"{out.decode(errors='replace').split('Data at')[0].strip()} -s {self.speed}"
        return self._version

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        # "--" ends the options: a text starting with "-" is spoken, not parsed as a flag.
        await self._run([self.program, "-v", voice, "-s", str(self.speed), "-w", str(out), "--", text])

    async def _run(self, argv: list[str]) -> bytes:
        if shutil.which(argv[0]) is None:
            raise TtsError(f"{argv[0]} is not installed (Debian: apt-get install espeak-ng)")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(SYNTHESIS_TIMEOUT):
                stdout, stderr = await proc.communicate()
        except BaseException:  # timed out, or the call ended meanwhile: no orphan process
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            detail = stderr.decode(errors="replace").strip().splitlines()
            raise TtsError(f"{argv[0]} exited {proc.returncode}: {detail[-1] if detail else 'no message'}")
        return stdout


def _store(source: Path, target: Path) -> bytes:
    """Convert the backend's WAV to 8 kHz mono PCM16, write it to `target` atomically; return the PCM."""
    pcm = load_prompt(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(pcm)
        os.replace(tmp, target)  # a reader never sees half a file, even from another bridge process
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return pcm


def _read(path: Path) -> bytes | None:
    """The cached speech, or None when it is missing or unreadable (then it is synthesized again)."""
    try:
        return load_prompt(path)
    except PromptError:
        return None


class SpeechCache:
    """Speech by (text, language): from memory, else the disk cache, else synthesized once however many
    calls ask at the same moment."""

    def __init__(self, synthesizer: Synthesizer, directory: Path, memory_bytes: int = 32 << 20) -> None:
        self.synthesizer = synthesizer
        self.directory = directory
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._warned_kanji = False

    async def path_for(self, text: str, language: str) -> Path:
        """Where the speech of `text` is (or will be) cached: named by a hash of what determines it."""
        identity = [text, voice_for(language), await self.synthesizer.version()]
        digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.wav"

    async def get(self, text: str, language: str) -> bytes:
        """PCM16 8 kHz mono of `text` spoken in `language`; raises `TtsError`."""
        path = await self.path_for(text, language)
        key = path.stem
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
            return pcm
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.ensure_future(self._load(text, language, path))
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # shield: one caller hanging up must not cancel the synthesis the others wait on
        pcm = await asyncio.shield(pending)
        self._remember(key, pcm)
        return pcm

    async def _load(self, text: str, language: str, path: Path) -> bytes:
        pcm = await asyncio.to_thread(_read, path)
        if pcm is not None:
            return pcm
        voice = voice_for(language)
        if voice.startswith("ja") and _KANJI.search(text) and not self._warned_kanji:
            self._warned_kanji = True
            log.warning("espeak-ng cannot read kanji: give Japanese say texts in kana", voice=voice)
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ivr-tts-"))
        try:
            raw = tmp / "speech.wav"
            await self.synthesizer.synthesize(text, voice, raw)
            try:
                return await asyncio.to_thread(_store, raw, path)
            except PromptError as exc:
                raise TtsError(f"the synthesizer wrote no usable audio: {exc}") from exc
            except OSError as exc:
                raise TtsError(f"cannot cache speech in {path.parent}: {exc}") from exc
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)

    def _remember(self, key: str, pcm: bytes) -> None:
        if key in self._memory or len(pcm) > self.memory_bytes:
            return
        self._memory[key] = pcm
        self._held += len(pcm)
        while self._held > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._held -= len(evicted)
