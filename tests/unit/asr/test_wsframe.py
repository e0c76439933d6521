"""The audio path's own WebSocket frames: what websockets' frame parser reads back, every key fresh."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ivr.asr.wsframe import MaskPool, binary_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1600, 65535, 65536, 70000])
def test_a_frame_parses_back_to_its_payload_at_every_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    mask = b"\x11\x22\x33\x44"
    data = binary_frame(payload, mask)
    frame = parse(data)
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert data[2 if size < 126 else 4 if size < 65536 else 10 :][:4] == mask
    if size >= 8:
        assert data[-size:] != payload  # masked on the wire


def test_mask_keys_are_four_bytes_and_not_repeated() -> None:
    pool = MaskPool(keys=8)
    keys = [pool.take() for _ in range(40)]  # past several refills
    assert all(len(key) == 4 for key in keys)
    assert len(set(keys)) > 35  # 32 random bits each: a repeat among 40 is a one-in-millions event
