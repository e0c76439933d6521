"""G.711 µ-law / A-law (ITU-T G.711) to and from 16-bit little-endian PCM.

Per-packet work goes through `audioop` (C, ~0.3 µs per 20 ms frame); the numpy variants are for whole
buffers (prompt conversion, emulators, analysis), where a table lookup over many frames wins.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    # Deprecated in 3.11-3.12 and removed in 3.13, where the `audioop-lts` package provides the same module.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "PCMA",
    "PCMU",
    "decode",
    "decode_array",
    "encode",
    "encode_array",
    "silence",
    "silence_byte",
]

PCMU = 0  # RFC 3551 §6 static payload types
PCMA = 8

_SILENCE = {PCMU: 0xFF, PCMA: 0xD5}  # codes that decode to (near) zero: µ-law +0, A-law +8


def _check(payload_type: int) -> None:
    if payload_type not in _SILENCE:
        raise ValueError(f"not a G.711 payload type: {payload_type}")


def decode(payload: bytes, payload_type: int) -> bytes:
    """G.711 -> PCM16 little-endian, one sample per input byte."""
    if payload_type == PCMU:
        return audioop.ulaw2lin(payload, 2)
    if payload_type == PCMA:
        return audioop.alaw2lin(payload, 2)
    raise ValueError(f"not a G.711 payload type: {payload_type}")


def encode(pcm: bytes, payload_type: int) -> bytes:
    """PCM16 little-endian -> G.711, one byte per sample (a trailing odd byte is ignored)."""
    if len(pcm) & 1:
        pcm = pcm[:-1]
    if payload_type == PCMU:
        return audioop.lin2ulaw(pcm, 2)
    if payload_type == PCMA:
        return audioop.lin2alaw(pcm, 2)
    raise ValueError(f"not a G.711 payload type: {payload_type}")


def silence_byte(payload_type: int) -> int:
    _check(payload_type)
    return _SILENCE[payload_type]


def silence(payload_type: int, samples: int) -> bytes:
    _check(payload_type)
    return bytes((_SILENCE[payload_type],)) * samples


def _ulaw_table() -> npt.NDArray[np.int16]:
    # ITU-T G.711 µ-law expansion, written from the standard's segment/mantissa layout (not from audioop),
    # so the tests comparing both implementations check one against the other.
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    # ITU-T G.711 A-law expansion: even bits inverted (xor 0x55), segment 0 is linear.
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_TABLES = {PCMU: _ulaw_table(), PCMA: _alaw_table()}


def decode_array(data: bytes, payload_type: int) -> npt.NDArray[np.int16]:
    """Whole-buffer G.711 decode by table lookup."""
    _check(payload_type)
    return _TABLES[payload_type][np.frombuffer(data, dtype=np.uint8)]


def encode_array(pcm: npt.NDArray[np.int16], payload_type: int) -> bytes:
    """Whole-buffer G.711 encode (audioop is already one C pass over the buffer)."""
    return encode(np.ascontiguousarray(pcm, dtype="<i2").tobytes(), payload_type)
