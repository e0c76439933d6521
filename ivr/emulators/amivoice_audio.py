"""AmiVoice audio in: the documented `<audio_format>` names, WAV headers, and conversion of any of them to
the 16-bit 8 kHz mono PCM the local engines take.

Formats: the header-less names of protocol-notes 2.4/2.5 (8K/11K/16K/22K, LSB/MSB) and 8 kHz G.711
(MULAW/ALAW); a WAV file's header is read from the first audio frame (document 002 sends test.wav as `16K`).
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib below 3.13, audioop-lts above (pyproject)

ENGINE_RATE = 8000  # every format is converted to 16-bit mono at this rate for the local engines


class Encoding(Enum):
    """Sample encodings of the documented audio formats."""

    PCM_LE = "pcm-le"
    PCM_BE = "pcm-be"
    MULAW = "mulaw"
    ALAW = "alaw"


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """An `<audio_format>` of the s command: its name, encoding and sample rate."""

    name: str
    encoding: Encoding
    rate: int


_RATES = {"8K": 8000, "11K": 11025, "16K": 16000, "22K": 22050}


def _formats() -> dict[str, AudioFormat]:
    # Header-less names of protocol-notes 2.4/2.5: 8K/11K/16K/22K with LSB/MSB prefixes (bare = LSB), and the
    # 8 kHz G.711 pair.
    formats: dict[str, AudioFormat] = {}
    for suffix, rate in _RATES.items():
        for prefix, encoding in (("", Encoding.PCM_LE), ("LSB", Encoding.PCM_LE), ("MSB", Encoding.PCM_BE)):
            formats[prefix + suffix] = AudioFormat(prefix + suffix, encoding, rate)
    formats["MULAW"] = AudioFormat("MULAW", Encoding.MULAW, 8000)
    formats["ALAW"] = AudioFormat("ALAW", Encoding.ALAW, 8000)
    return formats


AUDIO_FORMATS: dict[str, AudioFormat] = _formats()


def parse_wav_header(data: bytes) -> tuple[AudioFormat, int] | None:
    """(format, offset of the samples) of a mono WAV header at the start of `data`; None if there is none.

    Document 002 sends test.wav, header and all, as `16K`: the server reads the header. Formats other than
    mono 16-bit PCM, µ-law or A-law raise ValueError (answered as an unsupported audio format).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(data):
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("WAV data before its fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if channels != 1:
                raise ValueError(f"{channels} channels")
            if tag == 1 and bits == 16 and rate in _RATES.values():
                name = next(k for k, v in _RATES.items() if v == rate)
                return AudioFormat(f"WAV {name}", Encoding.PCM_LE, rate), body
            if tag in (6, 7) and bits == 8 and rate == 8000:
                return AudioFormat("WAV G.711", Encoding.ALAW if tag == 6 else Encoding.MULAW, 8000), body
            raise ValueError(f"WAV format tag {tag}, {bits} bits, {rate} Hz")
        offset = body + size + (size & 1)
    raise ValueError("WAV header without a data chunk in the first audio frame")


def _lowpass(rate: int, cutoff: float = 3700.0, taps: int = 63) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / rate * n) * np.hamming(taps)
    return np.asarray(h / h.sum())


class AudioConverter:
    """Any documented format -> 16-bit little-endian 8 kHz mono, chunk by chunk, state carried across chunks.

    Higher rates are low-passed (63-tap windowed sinc at 3.7 kHz) and resampled by linear interpolation, so a
    16 kHz engine's audio and an 8 kHz engine's audio reach the 8 kHz local engine alike.
    """

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._odd = b""
        rate = audio_format.rate
        self._taps = _lowpass(rate) if rate != ENGINE_RATE else None
        self._history = np.zeros(0 if self._taps is None else len(self._taps) - 1)
        self._step = rate / ENGINE_RATE
        self._carry = np.zeros(0)  # the last filtered sample, for interpolation across chunks
        self._position = 0.0  # where the next output sample falls, in filtered samples from _carry[0]

    def convert(self, data: bytes) -> bytes:
        encoding = self.format.encoding
        if encoding is Encoding.MULAW:
            return audioop.ulaw2lin(data, 2)
        if encoding is Encoding.ALAW:
            return audioop.alaw2lin(data, 2)
        data = self._odd + data  # a p command may split a sample
        cut = len(data) & ~1
        self._odd = data[cut:]
        samples = np.frombuffer(data[:cut], dtype="<i2" if encoding is Encoding.PCM_LE else ">i2")
        if self._taps is None:
            return samples.astype("<i2").tobytes()
        return self._resample(samples.astype(np.float64))

    def _resample(self, x: np.ndarray) -> bytes:
        assert self._taps is not None
        if not len(x):
            return b""
        padded = np.concatenate((self._history, x))
        self._history = padded[len(padded) - (len(self._taps) - 1) :]
        filtered = np.convolve(padded, self._taps, mode="valid")
        buf = np.concatenate((self._carry, filtered))
        last = len(buf) - 1
        count = math.floor((last - self._position) / self._step) + 1 if last >= self._position else 0
        t = self._position + np.arange(count) * self._step
        i = np.minimum(t.astype(np.int64), last)
        frac = t - i
        nxt = np.minimum(i + 1, last)
        out = buf[i] * (1 - frac) + buf[nxt] * frac
        self._position = self._position + count * self._step - last
        self._carry = buf[last:]
        return bytes(np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes())
