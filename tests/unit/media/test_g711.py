import numpy as np
import pytest

from ivr.media import g711

ALL_CODES = bytes(range(256))


def pcm(values: list[int]) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


@pytest.mark.parametrize(
    ("payload_type", "code", "value"),
    [
        (g711.PCMU, 0xFF, 0),
        (g711.PCMU, 0x7F, 0),
        (g711.PCMU, 0x00, -32124),
        (g711.PCMU, 0x80, 32124),
        (g711.PCMU, 0xF0, 120),  # segment 0 step of 8 (ITU-T G.711 table 2a, scaled to 16 bits)
        (g711.PCMA, 0xD5, 8),
        (g711.PCMA, 0x55, -8),
        (g711.PCMA, 0xAA, 32256),
        (g711.PCMA, 0x2A, -32256),
    ],
)
def test_reference_values(payload_type: int, code: int, value: int) -> None:
    assert g711.decode(bytes([code]), payload_type) == pcm([value])
    assert int(g711.decode_array(bytes([code]), payload_type)[0]) == value


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_audioop_and_numpy_agree_on_all_codes(payload_type: int) -> None:
    via_audioop = np.frombuffer(g711.decode(ALL_CODES, payload_type), dtype="<i2")
    via_numpy = g711.decode_array(ALL_CODES, payload_type)
    assert via_numpy.dtype == np.int16
    assert np.array_equal(via_audioop, via_numpy)


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_round_trip_is_monotonic_and_close(payload_type: int) -> None:
    ramp = np.arange(-32768, 32768, 7, dtype=np.int16)
    decoded = g711.decode_array(g711.encode(ramp.tobytes(), payload_type), payload_type)
    assert np.all(np.diff(decoded.astype(np.int32)) >= 0)
    # G.711 keeps about 12.5 bits: error within half a quantization step (1/32 of the value, at least 16 LSB)
    error = np.abs(decoded.astype(np.int32) - ramp.astype(np.int32))
    assert np.all(error <= np.maximum(np.abs(ramp.astype(np.int32)) // 16, 64))
    # every code word decodes and re-encodes to itself (except µ-law's negative zero 0x7F)
    codes = g711.encode(g711.decode(ALL_CODES, payload_type), payload_type)
    differing = {c for c, r in zip(ALL_CODES, codes, strict=True) if c != r}
    assert differing <= {0x7F}


@pytest.mark.parametrize(("payload_type", "byte"), [(g711.PCMU, 0xFF), (g711.PCMA, 0xD5)])
def test_silence(payload_type: int, byte: int) -> None:
    frame = g711.silence(payload_type, 160)
    assert frame == bytes([byte]) * 160
    assert np.abs(g711.decode_array(frame, payload_type)).max() <= 8


def test_encode_array_matches_encode() -> None:
    samples = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    assert g711.encode_array(samples, g711.PCMA) == g711.encode(samples.tobytes(), g711.PCMA)


def test_rejects_other_payload_types() -> None:
    with pytest.raises(ValueError):
        g711.decode(b"\x00", 18)
    with pytest.raises(ValueError):
        g711.silence(3, 10)
