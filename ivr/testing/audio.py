"""Speech for `say:` turns: espeak-ng in the dialplan's language, 8 kHz PCM16, cached on disk by text+voice.

espeak-ng runs as an asyncio subprocess and the WAV is read in a thread, so many callers can synthesize at
once without stalling the loop that paces their RTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from pathlib import Path

from ivr.media.prompt import load_prompt
from ivr.testing.cases import Style

# TOOLBOX.md's prosody table: agitated is loud (clips), high and fast; the CPQD emulator's classifier, which
# reads loudness, pitch and rate, hears it as negativo_ativado.
STYLE_ARGS: dict[Style, tuple[str, ...]] = {
    Style.NORMAL: (),
    Style.AGITATED: ("-a", "180", "-p", "80", "-s", "190"),
}
_REGIONAL_VOICES = {"pt-br", "en-us", "en-gb"}  # espeak-ng voices named with their region


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def voice_for(language: str) -> str:
    """The espeak-ng voice of a dialplan's `asr.language` (ko, pt-BR, ja, en-US)."""
    tag = language.lower()
    return tag if tag in _REGIONAL_VOICES else tag.split("-")[0]


def default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "ivr-test-speech"


class Synthesizer:
    """espeak-ng phrases, each synthesized once per cache directory."""

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache or default_cache()
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    async def speech(self, text: str, language: str, style: Style = Style.NORMAL) -> bytes:
        """PCM16 little-endian, 8 kHz mono."""
        voice = voice_for(language)
        args = STYLE_ARGS[style]
        key = hashlib.sha256("\0".join((voice, *args, text)).encode()).hexdigest()[:24]
        if key not in self._pending:  # concurrent cases saying the same phrase share one synthesis
            self._pending[key] = asyncio.ensure_future(self._synthesize(key, text, voice, args))
        return await asyncio.shield(self._pending[key])

    async def _synthesize(self, key: str, text: str, voice: str, args: tuple[str, ...]) -> bytes:
        wav = self.cache / f"{key}.wav"
        if not wav.exists():
            for tool in ("espeak-ng", "sox"):
                if shutil.which(tool) is None:
                    raise SpeechError(f"{tool} is not installed (Debian package {tool}; `make deb-tools`)")
            await asyncio.to_thread(self.cache.mkdir, parents=True, exist_ok=True)
            raw = wav.with_suffix(".espeak.wav")
            partial = wav.with_suffix(".partial.wav")
            await _run("espeak-ng", "-v", voice, *args, "-w", str(raw), text)
            # sox low-passes before it decimates espeak-ng's 22 kHz to 8 kHz; a plain rate conversion aliases,
            # and the recognizers hear the difference.
            await _run("sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(partial))
            await asyncio.to_thread(partial.replace, wav)  # a cut-off run leaves no half file behind
            await asyncio.to_thread(raw.unlink)
        return await asyncio.to_thread(load_prompt, wav)


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SpeechError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
