"""A marker in each G.711 µ-law payload that survives the bridge's decode to PCM16, so the sink can count and
time every packet without trusting the bridge's own numbers.

µ-law round-trips (ulaw -> lin16 -> ulaw) every byte except 0x7F (0x7F and 0xFF both decode to 0,
which encodes back as 0xFF). The marker uses a base-254 code over the other bytes, 0xFF excluded too so
that silence is never read as a digit: magic (2 bytes), call index (2 digits), sequence number
(4 digits), send time in µs of CLOCK_MONOTONIC (6 digits). The rest of the 160-byte payload is a quiet,
slightly varying signal.
"""

from __future__ import annotations

import audioop
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

SYMBOLS = bytes(b for b in range(256) if b not in (0x7F, 0xFF))
BASE = len(SYMBOLS)  # 254
PAIR = BASE * BASE  # the code is read and written two digits at a time, through tables
_PAIRS = [bytes((SYMBOLS[i // BASE], SYMBOLS[i % BASE])) for i in range(PAIR)]
_PAIR_VALUE = {pair: value for value, pair in enumerate(_PAIRS)}
MAGIC = b"\xa5\x5a"
CALL_PAIRS, SEQ_PAIRS, TIME_PAIRS = 1, 2, 3
MARKER_LEN = len(MAGIC) + 2 * (CALL_PAIRS + SEQ_PAIRS + TIME_PAIRS)  # 14 bytes
PAYLOAD_LEN = 160  # 20 ms of 8 kHz G.711
MAX_CALL = PAIR**CALL_PAIRS  # 64,516 calls
MAX_SEQ = PAIR**SEQ_PAIRS
MAX_TIME_US = PAIR**TIME_PAIRS  # ~8.6 years of µs: CLOCK_MONOTONIC (time since boot) never wraps it
# Quiet µ-law values (small magnitudes around zero, no magic byte among them): a hiss, not digital silence.
QUIET = bytes([0xFE, 0xFC, 0xFD, 0x7E, 0x7C, 0x7D, 0xFB, 0x7B] * 20)[: PAYLOAD_LEN - MARKER_LEN]


class Mark(NamedTuple):
    """What one packet's marker says."""

    call: int
    seq: int
    sent_us: int


def call_prefix(call: int) -> bytes:
    """The part of every marker of one call that never changes (magic and call index)."""
    if not 0 <= call < MAX_CALL:
        raise ValueError(f"call index {call} out of range 0..{MAX_CALL - 1}")
    return MAGIC + _PAIRS[call]


def payload(prefix: bytes, seq: int, sent_us: int) -> bytes:
    """One 160-byte µ-law payload carrying a marker."""
    pairs = _PAIRS
    seq %= MAX_SEQ
    sent_us %= MAX_TIME_US
    high, low = divmod(sent_us, PAIR)
    top, mid = divmod(high, PAIR)
    return b"".join(
        (prefix, pairs[seq // PAIR], pairs[seq % PAIR], pairs[top], pairs[mid], pairs[low], QUIET)
    )


_SYMBOL_ARRAY = np.frombuffer(SYMBOLS, np.uint8)
_PAIR_CODES = (_SYMBOL_ARRAY[np.arange(PAIR) // BASE].astype(np.uint16) << 8) | _SYMBOL_ARRAY[
    np.arange(PAIR) % BASE
]
_QUIET_ARRAY = np.frombuffer(QUIET, np.uint8)


@lru_cache(maxsize=16)
def _seq_fields(at: int, width: int) -> np.dtype[np.void]:
    """The sequence number's two big-endian pairs, in rows of `width` bytes, the payload at column `at`."""
    offset = at + len(MAGIC) + 2 * CALL_PAIRS
    return np.dtype(
        {"names": ["s1", "s0"], "formats": [">u2", ">u2"], "offsets": [offset, offset + 2], "itemsize": width}
    )


def static_payloads(rows: npt.NDArray[np.uint8], at: int, prefixes: list[bytes]) -> None:
    """Write the parts of a payload that never change (prefix and quiet signal) into every row of `rows`
    (a C-contiguous (K, width) uint8 array, one packet a row, the payload at column `at`)."""
    count = rows.shape[0]
    if count:
        rows[:, at : at + len(MAGIC) + 2 * CALL_PAIRS] = np.frombuffer(b"".join(prefixes), np.uint8).reshape(
            count, -1
        )
    rows[:, at + MARKER_LEN : at + PAYLOAD_LEN] = _QUIET_ARRAY


def fill_payloads(rows: npt.NDArray[np.uint8], at: int, seq: npt.NDArray[np.int64], sent_us: int) -> None:
    """The bulk `payload`: after `static_payloads`, make row i's payload byte for byte
    `payload(prefix_i, seq[i], sent_us)` (one send time for the whole batch)."""
    seqs = seq % MAX_SEQ
    fields = rows.reshape(-1).view(_seq_fields(at, rows.shape[1]))
    fields["s1"] = _PAIR_CODES[seqs // PAIR]
    fields["s0"] = _PAIR_CODES[seqs % PAIR]
    pairs = _PAIRS
    sent_us %= MAX_TIME_US
    high, low = divmod(sent_us, PAIR)
    top, mid = divmod(high, PAIR)
    start = at + len(MAGIC) + 2 * (CALL_PAIRS + SEQ_PAIRS)
    rows[:, start : start + 2 * TIME_PAIRS] = np.frombuffer(pairs[top] + pairs[mid] + pairs[low], np.uint8)


def mark_at(data: bytes, pos: int) -> Mark | None:
    """The marker whose magic starts at `pos` in µ-law `data`, or None if what follows is not one."""
    if pos < 0 or pos + MARKER_LEN > len(data):
        return None
    get = _PAIR_VALUE.get
    p = pos + 2
    call, s1, s0 = get(data[p : p + 2]), get(data[p + 2 : p + 4]), get(data[p + 4 : p + 6])
    t2, t1, t0 = get(data[p + 6 : p + 8]), get(data[p + 8 : p + 10]), get(data[p + 10 : p + 12])
    if call is None or s1 is None or s0 is None or t2 is None or t1 is None or t0 is None:
        return None
    return Mark(call, s1 * PAIR + s0, (t2 * PAIR + t1) * PAIR + t0)


def decode_ulaw(data: bytes) -> list[Mark]:
    """Every marker in a µ-law byte string (one payload, or frames joined)."""
    marks: list[Mark] = []
    pos = data.find(MAGIC)
    while pos >= 0:
        mark = mark_at(data, pos)
        if mark is not None:
            marks.append(mark)
        pos = data.find(MAGIC, pos + (MARKER_LEN if mark is not None else 1))
    return marks


def decode_pcm16(pcm: bytes) -> list[Mark]:
    """Every marker in 16-bit linear PCM that came from marked µ-law (the bridge's output)."""
    return decode_ulaw(audioop.lin2ulaw(pcm, 2))


def self_test() -> None:
    """Round-trip markers through µ-law -> PCM16 -> µ-law; AssertionError on any mismatch."""
    for call, seq, sent in (
        (0, 0, 0),
        (1, 65535, 123_456_789),
        (MAX_CALL - 1, MAX_SEQ - 1, MAX_TIME_US - 1),
        (300, 40000, 3_000_000_000),
    ):
        data = payload(call_prefix(call), seq, sent)
        assert len(data) == PAYLOAD_LEN
        assert 0x7F not in data and 0xFF not in data[:MARKER_LEN]
        frames = data + audioop.lin2ulaw(bytes(320), 2) + data
        got = decode_pcm16(audioop.ulaw2lin(frames, 2))
        assert got == [Mark(call, seq, sent)] * 2, got
