"""RFC 4733 telephone-events (DTMF digits carried in RTP)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ivr.media.rtp import RtpPacket

__all__ = ["EVENT_CODES", "DtmfDigit", "DtmfReceiver", "encode_event"]

_EVENT = struct.Struct("!BBH")
_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2, events 0-15
EVENT_CODES = {digit: code for code, digit in enumerate(_DIGITS)}
_MAX_DURATION = 0xFFFF
_RECENT = 4  # event timestamps remembered, so a late retransmission of an older event is not a new digit


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str
    duration: int  # timestamp units, as reported by the packet that announced the event
    volume: int  # power level in -dBm0 (0 loudest, 63 quietest)


def encode_event(digit: str, end: bool, volume: int, duration: int) -> bytes:
    """One RFC 4733 §2.3 event payload: event, E bit, volume, duration."""
    code = EVENT_CODES.get(digit.upper())
    if code is None:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if not 0 <= volume <= 63 or not 0 <= duration <= _MAX_DURATION:
        raise ValueError(f"volume {volume} or duration {duration} out of range")
    return _EVENT.pack(code, (0x80 if end else 0) | volume, duration)


class DtmfReceiver:
    """Turns telephone-event packets into digits, one per event.

    An event is identified by its RTP timestamp (RFC 4733 §2.5.1.2), so the digit is reported by whichever
    packet of the event arrives first: a lost start packet or lost end packets still give exactly one digit,
    and the three redundant end packets (§2.5.1.4) and retransmissions give none. A long event continued in a
    new segment (§2.5.1.3: new timestamp = old timestamp + 0xFFFF, same event, no end bit yet) is not a new
    digit.
    """

    __slots__ = ("_ended", "_last_code", "_last_ts", "_recent")

    def __init__(self) -> None:
        self._recent: list[int] = []
        self._last_ts: int | None = None
        self._last_code = -1
        self._ended = False

    def feed(self, packet: RtpPacket) -> DtmfDigit | None:
        payload = packet.payload
        if len(payload) < 4:
            return None
        code, flags, duration = _EVENT.unpack_from(payload)
        ts = packet.timestamp
        if ts == self._last_ts:
            if code == self._last_code and flags & 0x80:
                self._ended = True
            return None
        if ts in self._recent:
            return None
        continued = (
            self._last_ts is not None
            and not self._ended
            and code == self._last_code
            and ts == (self._last_ts + _MAX_DURATION) & 0xFFFFFFFF
        )
        self._recent.append(ts)
        if len(self._recent) > _RECENT:
            del self._recent[0]
        self._last_ts = ts
        self._last_code = code
        self._ended = bool(flags & 0x80)
        if continued or code >= len(_DIGITS):
            return None
        return DtmfDigit(_DIGITS[code], duration, flags & 0x3F)
