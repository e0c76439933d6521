"""FrameAssembler: the caller's G.711 in whole frames of the recognizer's size, decoded once per frame."""

import pytest

from ivr.media import g711
from ivr.media.assembler import FrameAssembler


def payload(seq: int, size: int = 160) -> bytes:
    return bytes((seq + i) & 0x7F for i in range(size))


def test_a_frame_comes_out_when_its_last_packet_arrives_decoded_as_one() -> None:
    assembler = FrameAssembler(g711.PCMU, frame=800)  # 100 ms: five 20 ms packets
    packets = [payload(seq) for seq in range(5)]
    assert [assembler.add(p) for p in packets[:4]] == [None] * 4
    assert assembler.held == 640
    out = assembler.add(packets[4])
    assert out == g711.decode(b"".join(packets), g711.PCMU)
    assert assembler.held == 0


def test_frames_keep_the_order_and_the_remainder_across_boundaries() -> None:
    assembler = FrameAssembler(g711.PCMA, frame=300, passthrough=True)
    stream = b"".join(payload(seq) for seq in range(10))  # 1600 bytes in 160-byte packets
    out = [assembler.add(stream[i : i + 160]) for i in range(0, len(stream), 160)]
    frames = [chunk for chunk in out if chunk is not None]
    assert all(len(chunk) % 300 == 0 for chunk in frames)
    assert b"".join(frames) == stream[:1500]  # nothing lost, nothing reordered
    assert assembler.flush() == stream[1500:]  # the short last frame on request
    assert assembler.flush() is None


def test_a_payload_larger_than_a_frame_gives_every_whole_frame_at_once() -> None:
    assembler = FrameAssembler(g711.PCMU, frame=160, passthrough=True)
    assert assembler.add(payload(0, 100)) is None
    out = assembler.add(payload(1, 400))  # 500 bytes held: three whole frames
    assert out == (payload(0, 100) + payload(1, 400))[:480]
    assert assembler.held == 20


def test_silence_fills_in_the_codec_s_own_silence_and_counts_toward_the_frame() -> None:
    assembler = FrameAssembler(g711.PCMA, frame=320, passthrough=True)
    assert assembler.add(payload(3)) is None
    out = assembler.add_silence(160)
    assert out == payload(3) + bytes([g711.silence_byte(g711.PCMA)]) * 160
    decoded = FrameAssembler(g711.PCMU, frame=160)
    assert decoded.add_silence(160) == g711.decode(g711.silence(g711.PCMU, 160), g711.PCMU)


def test_reset_changes_codec_and_frame_and_drops_what_was_held() -> None:
    assembler = FrameAssembler(g711.PCMU, frame=800)
    assembler.add(payload(1))
    assembler.reset(g711.PCMA, 160, passthrough=True)
    assert assembler.held == 0
    assert assembler.add(payload(2)) == payload(2)
    with pytest.raises(ValueError):
        assembler.reset(18, 160, passthrough=False)  # G.729: nothing we can decode
    with pytest.raises(ValueError):
        FrameAssembler(g711.PCMU, frame=0)
