"""Prompts: a WAV file converted once to PCM16 8 kHz mono, then cut into G.711 frames for playback."""

from __future__ import annotations

import io
import struct
import warnings
import wave
from pathlib import Path

from ivr.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["SAMPLE_RATE", "PromptError", "frames", "load_prompt"]

SAMPLE_RATE = 8000
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_ALAW = 6
_WAVE_FORMAT_MULAW = 7
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class PromptError(ValueError):
    """A prompt file that cannot be read or converted."""


def load_prompt(path: str | Path) -> bytes:
    """Read a WAV file and return it as PCM16 little-endian, 8 kHz, mono."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"{path}: {exc.strerror or exc}") from exc
    try:
        fmt, channels, rate, width, frames_data = _read_wav(data)
    except (wave.Error, EOFError, struct.error, ValueError) as exc:
        raise PromptError(f"{path}: not a readable WAV file ({exc})") from exc
    if fmt == _WAVE_FORMAT_MULAW:
        pcm, width = audioop.ulaw2lin(frames_data, 2), 2
    elif fmt == _WAVE_FORMAT_ALAW:
        pcm, width = audioop.alaw2lin(frames_data, 2), 2
    elif fmt == _WAVE_FORMAT_PCM and width in (1, 2, 3, 4):
        pcm = frames_data
        if width == 1:  # 8-bit WAV samples are unsigned
            pcm = audioop.bias(pcm, 1, -128)
    else:
        raise PromptError(f"{path}: unsupported WAV encoding (format tag {fmt}, {8 * width}-bit)")
    if channels < 1 or rate < 1:
        raise PromptError(f"{path}: {channels} channels at {rate} Hz")
    pcm = pcm[: len(pcm) - len(pcm) % (width * channels)]
    if channels == 2:
        pcm = audioop.tomono(pcm, width, 0.5, 0.5)
    elif channels > 2:
        raise PromptError(f"{path}: {channels} channels; only mono and stereo prompts are supported")
    if width != 2:
        pcm = audioop.lin2lin(pcm, width, 2)
    if rate != SAMPLE_RATE:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, SAMPLE_RATE, None)
    return pcm


def frames(pcm: bytes, payload_type: int, samples_per_frame: int = 160) -> list[bytes]:
    """G.711 frames of `samples_per_frame` samples; the last one is padded with codec silence."""
    if samples_per_frame < 1:
        raise ValueError("samples_per_frame must be positive")
    encoded = g711.encode(pcm, payload_type)
    short = -len(encoded) % samples_per_frame
    if short:
        encoded += g711.silence(payload_type, short)
    return [encoded[i : i + samples_per_frame] for i in range(0, len(encoded), samples_per_frame)]


def _read_wav(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(format tag, channels, rate, bytes per sample, sample data)."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return (
                _WAVE_FORMAT_PCM,
                wav.getnchannels(),
                wav.getframerate(),
                wav.getsampwidth(),
                wav.readframes(wav.getnframes()),
            )
    except wave.Error:
        # `wave` reads integer PCM only (and WAVE_FORMAT_EXTENSIBLE only from 3.12); telephony prompts are
        # often µ-law/A-law WAVs (format tags 7/6), so walk the RIFF chunks here.
        return _read_riff(data)


def _read_riff(data: bytes) -> tuple[int, int, int, int, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("no RIFF/WAVE header")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, (bits + 7) // 8)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            return (*fmt, body)
        offset += 8 + size + (size & 1)  # chunks are word-aligned
    raise ValueError("no fmt/data chunk")
