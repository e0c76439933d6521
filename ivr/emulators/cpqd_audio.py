"""CPQD audio in (notes 1.3): a recognition's SEND_AUDIO bodies as 16-bit PCM, a leading WAV header
stripped and checked.
"""

from __future__ import annotations

import struct

SAMPLE_WIDTH = 2  # 16-bit signed little-endian linear PCM (notes 1.3)


class AudioFormatError(Exception):
    """Audio we cannot take (a WAV that is not 16-bit mono PCM at the session's rate)."""


class AudioInput:
    """A recognition's audio stream as PCM: a leading WAV header stripped, samples kept whole across frames.

    The Python SDK sends a WAV file's bytes as is, header in the first chunk, and labels its last packet
    audio/wav whatever it sent before (notes 1.3), so the header is recognized by its RIFF magic at the start
    of the stream, not by the Content-Type.
    """

    MAX_HEADER = 1 << 20

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._head = bytearray()
        self._started = False  # past the header (or there is none)
        self._odd = b""
        self.received = 0  # PCM bytes handed out

    def feed(self, data: bytes) -> bytes:
        if not self._started:
            self._head += data
            if len(self._head) < 12 and b"RIFF".startswith(bytes(self._head[:4])):
                return b""
            if self._head[:4] != b"RIFF":
                self._started = True
                data, self._head = bytes(self._head), bytearray()
            else:
                offset = self._wav_data_offset()
                if offset is None:
                    if len(self._head) > self.MAX_HEADER:
                        raise AudioFormatError("no data chunk in the WAV header")
                    return b""
                self._started = True
                data, self._head = bytes(self._head[offset:]), bytearray()
        data = self._odd + data
        cut = len(data) & ~1
        self._odd = data[cut:]
        self.received += cut
        return data[:cut]

    def _wav_data_offset(self) -> int | None:
        head = bytes(self._head)
        if len(head) >= 12 and head[8:12] != b"WAVE":
            raise AudioFormatError("a RIFF stream that is not WAVE")
        pos = 12
        while pos + 8 <= len(head):
            chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
            if chunk == b"data":
                return pos + 8
            if chunk == b"fmt ":
                if pos + 8 + 16 > len(head):
                    return None
                fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
                if fmt not in (1, 0xFFFE) or channels != 1 or bits != 16:
                    raise AudioFormatError("WAV audio must be 16-bit mono linear PCM")
                if rate != self.sample_rate:
                    raise AudioFormatError(f"WAV audio at {rate} Hz on a {self.sample_rate} Hz session")
            pos += 8 + size + (size & 1)
        return None

    @property
    def seconds(self) -> float:
        return self.received / (SAMPLE_WIDTH * self.sample_rate)
