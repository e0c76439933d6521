"""The caller's G.711 gathered into the recognizer's frame size, decoded once per frame, not per packet.

A recognizer takes audio in frames (100 ms for every vendor by default), so handing it each 20 ms packet only
to have the stream glue five of them together costs five callbacks, five decodes and the copies between them.
The assembler keeps the G.711 bytes (1 byte a sample, half the PCM16) until a frame is whole, then releases it
in one piece: decoded to PCM16, or as received for a recognizer that takes G.711 (AmiVoice pass-through).
Silence filled by time goes in the same way, as G.711 silence, so the frames stay in step with the clock.
"""

from __future__ import annotations

from ivr.media import g711

__all__ = ["FrameAssembler"]


class FrameAssembler:
    """G.711 in, whole frames of `frame` samples out (several at once when a packet completes several)."""

    __slots__ = ("_buffer", "_payload_type", "_silence", "frame", "passthrough")

    def __init__(self, payload_type: int, frame: int = 160, *, passthrough: bool = False) -> None:
        if frame < 1:
            raise ValueError("a frame must hold at least one sample")
        self._payload_type = payload_type
        self._silence = g711.silence_byte(payload_type)  # ValueError for a codec we cannot decode
        self._buffer = bytearray()
        self.frame = frame
        self.passthrough = passthrough

    @property
    def held(self) -> int:
        """Samples waiting for the rest of their frame."""
        return len(self._buffer)

    def add(self, payload: bytes) -> bytes | None:
        """The frames this G.711 payload completes (PCM16, or G.711 with `passthrough`), or None."""
        buffer = self._buffer
        frame = self.frame
        if not buffer and len(payload) == frame:
            return self._out(payload)  # a packet that is exactly one frame: no copy at all
        buffer += payload
        whole = len(buffer) - len(buffer) % frame
        if not whole:
            return None
        out = bytes(buffer[:whole])
        del buffer[:whole]
        return self._out(out)

    def take(self) -> bytes:
        """What is held, as G.711, to be assembled elsewhere (`batchrx`); held no more here."""
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def add_silence(self, samples: int) -> bytes | None:
        """Like `add`, for `samples` of silence in place of audio that never came."""
        return self.add(bytes((self._silence,)) * samples)

    def flush(self) -> bytes | None:
        """What is held, as a short frame (the codec or the format changes, the stream restarts)."""
        if not self._buffer:
            return None
        out = bytes(self._buffer)
        self._buffer.clear()
        return self._out(out)

    def reset(self, payload_type: int, frame: int, *, passthrough: bool) -> None:
        """New codec, frame size or format; the caller flushes first what it wants of the old."""
        self._silence = g711.silence_byte(payload_type)
        self._payload_type = payload_type
        self._buffer.clear()
        self.frame = frame
        self.passthrough = passthrough

    def _out(self, g711_bytes: bytes) -> bytes:
        if self.passthrough:
            return g711_bytes
        return g711.decode(g711_bytes, self._payload_type)
