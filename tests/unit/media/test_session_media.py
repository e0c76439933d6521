"""RtpSession on real UDP sockets: DTMF in the audio's sequence space, silence for the recognizer by time,
and keepalive silence between prompts."""

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.dtmf import encode_event
from ivr.media.rtp import RtpPacket
from ivr.media.session import RtpSession
from tests.unit.media.test_session import (
    HOST,
    WAIT,
    Peer,
    Recorder,
    frame,
    make_session,
    open_peer,
    pcm_of,
    receive_path,  # noqa: F401  (autouse: both receive paths here too)
    rtp,
    spoken,
)


@pytest.fixture
async def caller() -> AsyncIterator[Peer]:
    p = await open_peer()
    yield p
    assert p.transport is not None
    p.transport.close()


def trailing_silence(audio: bytes) -> int:
    """Samples of digital silence at the end of the PCM."""
    values = np.frombuffer(audio, "<i2")
    loud = np.flatnonzero(values)
    return len(values) - (int(loud[-1]) + 1 if len(loud) else 0)


async def test_dtmf_takes_audio_sequence_numbers_without_counting_as_loss_or_holding_audio(
    caller: Peer,
) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port)
    await session.start()
    addr = (HOST, caller.port)
    try:
        # The handler itself, called as the loop would: what it hands over is visible at once.
        for seq in (1, 2, 3):
            session._on_datagram(rtp(seq, frame(seq)), addr)
        for seq, end in ((4, False), (5, True)):  # a digit in between: two sequence numbers of the stream
            session._on_datagram(rtp(seq, encode_event("7", end, 10, 320), pt=101, ts=4 * 160), addr)
        session._on_datagram(rtp(6, frame(6), ts=6 * 160), addr)
        assert recorder.digits == ["7"]
        assert bytes(recorder.audio).endswith(pcm_of(6))  # released at once, not held for 4 and 5
        assert session._jitter.held == 0
        assert session.jitter_lost == 0
        assert session.stats.lost == 0
        session._on_datagram(rtp(7, b"\x40", pt=13, ts=7 * 160), addr)  # comfort noise: the same
        session._on_datagram(rtp(8, frame(8), ts=8 * 160), addr)
        assert bytes(recorder.audio).endswith(pcm_of(8))
        assert session.jitter_lost == 0
    finally:
        await session.close()


async def test_dtmf_of_another_ssrc_does_not_disturb_the_audio_stream(caller: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port)
    await session.start()
    addr = (HOST, caller.port)
    try:
        session._on_datagram(rtp(1, frame(1)), addr)
        session._on_datagram(rtp(9000, encode_event("3", True, 10, 320), pt=101, ssrc=0xD7), addr)
        session._on_datagram(rtp(2, frame(2)), addr)
        assert recorder.digits == ["3"]
        assert bytes(recorder.audio).endswith(pcm_of(2)) and session.jitter_lost == 0
    finally:
        await session.close()


@pytest.mark.parametrize("quiet", ["comfort-noise", "stops-sending"])
async def test_a_caller_who_goes_quiet_still_gives_the_recognizer_trailing_silence(
    caller: Peer, quiet: str
) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port)
    await session.start()
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        for seq in range(10):  # 200 ms of speech in real time
            caller.send(rtp(seq, frame(seq)), session.local_port)
            await asyncio.sleep(0.02)
        if quiet == "comfort-noise":  # RFC 3389: one SID packet, then updates now and then
            for i in range(3):
                caller.send(rtp(10 + i, b"\x40", pt=13, ts=(10 + 5 * i) * 160), session.local_port)
                await asyncio.sleep(0.1)
        # An endpointer wants most of a second of trailing silence; it comes in real time.
        await recorder.until(lambda: trailing_silence(bytes(recorder.audio)) >= 0.8 * 8000)
        elapsed = loop.time() - t0
        audio = bytes(recorder.audio)
        assert spoken(audio) == list(range(10))
        assert len(audio) // 2 <= (elapsed + 0.02) * 8000  # never more audio than time passed
        assert session.silence_filled >= trailing_silence(audio)  # the filler's, counted
    finally:
        await session.close()


@pytest.mark.parametrize("jump", [49, 50_000])
async def test_a_jump_in_sequence_numbers_gives_a_bounded_fill(caller: Peer, jump: int) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port)
    await session.start()
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        caller.send(rtp(1, frame(1)), session.local_port)
        # After a big jump, the jitter buffer believes a restart from the second packet in sequence.
        for seq in (1 + jump, 2 + jump):
            caller.send(rtp(seq, frame(seq)), session.local_port)
        await recorder.until(lambda: len(spoken(bytes(recorder.audio))) >= 2)
        elapsed = loop.time() - t0
        audio = bytes(recorder.audio)
        assert spoken(audio)[0] == 1 and spoken(audio)[-1] == (2 + jump) % 0x60
        # One packet must not turn into a second of silence: at most max_fill, and at most the time passed.
        assert session.silence_filled <= min(0.24, elapsed + 0.02) * 8000
        assert len(audio) // 2 <= (elapsed + 3 * 0.02) * 8000
    finally:
        await session.close()


def check_continuous(packets: list[RtpPacket]) -> None:
    for a, b in itertools.pairwise(packets):
        assert b.sequence == (a.sequence + 1) & 0xFFFF
        assert b.timestamp == (a.timestamp + 160) & 0xFFFFFFFF  # no jump between silence and prompts
    assert len({p.ssrc for p in packets}) == 1


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
async def test_keepalive_sends_g711_silence_between_prompts_on_one_continuous_clock(
    caller: Peer, payload_type: int
) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port, payload_type=payload_type, keepalive=True)
    await session.start()
    quiet = {g711.PCMU: 0xFF, g711.PCMA: 0xD5}[payload_type]
    try:
        idle = [await caller.next_packet() for _ in range(5)]  # no prompt yet: silence
        assert all(p.payload == bytes([quiet]) * 160 and p.payload_type == payload_type for p in idle)
        prompt = np.round(8000 * np.sin(np.arange(480) / 5)).astype("<i2").tobytes()  # 3 frames
        assert await session.play(prompt) is True
        packets = idle
        while not caller.received.empty():
            packets.append(await caller.next_packet())
        packets += [await caller.next_packet() for _ in range(3)]  # silence again after the prompt
        check_continuous(packets)
        spoken_at = [i for i, p in enumerate(packets) if p.payload != bytes([quiet]) * 160]
        assert len(spoken_at) == 3 and spoken_at == list(range(spoken_at[0], spoken_at[0] + 3))
        assert packets[spoken_at[0]].marker
        assert b"".join(packets[i].payload for i in spoken_at) == g711.encode(prompt, payload_type)
        assert packets[-1].payload == bytes([quiet]) * 160
    finally:
        await session.close()


async def sparse_then_prompt(session: RtpSession, caller: Peer) -> tuple[RtpPacket, RtpPacket, RtpPacket]:
    """A sparse silence's first two packets (a second apart, the clock counting the time between), then a
    two-frame prompt on the same clock: the first two packets and the one straight after the prompt."""
    first = await caller.next_packet()
    second = await caller.next_packet()  # about a second later: nothing in between
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == 8000
    assert caller.received.empty()
    prompt = np.round(8000 * np.sin(np.arange(320) / 5)).astype("<i2").tobytes()  # 2 frames
    assert await session.play(prompt) is True
    spoken = [await caller.next_packet() for _ in range(2)]
    assert [p.payload for p in spoken] == [g711.encode(prompt[:320], 0), g711.encode(prompt[320:], 0)]
    assert all(p.payload_type == g711.PCMU for p in spoken) and spoken[0].marker
    assert spoken[0].sequence == (second.sequence + 1) & 0xFFFF
    gap = (spoken[0].timestamp - second.timestamp) & 0xFFFFFFFF
    assert gap >= 160 and gap % 160 == 0  # the clock ran on through the silence, frame by frame
    after = await caller.next_packet()  # the silence after the prompt starts at once
    assert after.timestamp == (spoken[1].timestamp + 160) & 0xFFFFFFFF
    return first, second, after


async def test_with_comfort_noise_silence_is_a_cn_packet_a_second_on_the_same_clock(caller: Peer) -> None:
    """RFC 3389: a CN packet (level -127 dBov) when silence starts and one a second after, nothing else; the
    timestamp counts the silent time, so a prompt after it carries on the clock (RFC 3550 §5.1)."""
    recorder = Recorder()
    session = make_session(recorder, caller.port, keepalive=True, comfort_noise_payload_type=13)
    await session.start()
    try:
        packets = await sparse_then_prompt(session, caller)
        assert [(p.payload_type, p.payload) for p in packets] == [(13, bytes((127,)))] * 3
    finally:
        await session.close()
    assert recorder.timeouts == 0


async def test_sparse_silence_without_comfort_noise_is_a_g711_frame_a_second(caller: Peer) -> None:
    """`sparse_silence`: the CN cadence with G.711 silence frames; each after the first starts a talkspurt
    (marker bit, RFC 3551 §4.1), but not the one straight after a prompt."""
    recorder = Recorder()
    session = make_session(recorder, caller.port, keepalive=True, sparse_silence=True)
    await session.start()
    quiet = bytes([g711.silence_byte(g711.PCMU)]) * 160
    try:
        packets = await sparse_then_prompt(session, caller)
        assert [(p.payload_type, p.payload) for p in packets] == [(g711.PCMU, quiet)] * 3
        assert [p.marker for p in packets] == [False, True, False]
    finally:
        await session.close()
    assert recorder.timeouts == 0


async def test_keepalive_can_be_paused_for_hold_and_off_sends_nothing_idle(caller: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port, keepalive=True)
    await session.start()
    try:
        before = await caller.next_packet()
        session.keepalive = False  # e.g. the caller put the call on hold: we must not send
        await asyncio.sleep(0.01)
        while not caller.received.empty():
            before = await caller.next_packet()
        await asyncio.sleep(0.1)
        assert caller.received.empty()
        session.keepalive = True
        after = await caller.next_packet()
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        # RFC 3550 §5.1: the timestamp counted the paused time (over 100 ms, less the frame due next) too.
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF >= 800
    finally:
        await session.close()
    silent = make_session(recorder, caller.port)  # keepalive=False: nothing at all while idle
    await silent.start()
    try:
        await asyncio.sleep(0.1)
        assert caller.received.empty()
    finally:
        await silent.close()


async def test_keepalive_stops_on_close(caller: Peer) -> None:
    session = make_session(Recorder(), caller.port, keepalive=True)
    await session.start()
    await caller.next_packet()
    await session.close()
    while not caller.received.empty():
        await caller.next_packet()
    await asyncio.sleep(0.06)
    assert caller.received.empty()
    assert isinstance(session, RtpSession)
    assert WAIT > 0


async def test_set_codec_switches_both_directions_on_the_same_stream(caller: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, caller.port, keepalive=True)
    await session.start()
    try:
        before = await caller.next_packet()
        assert before.payload_type == g711.PCMU
        session.set_codec(g711.PCMA, 96)  # a re-INVITE offering only PCMA, telephone-event on 96
        packets = [await caller.next_packet() for _ in range(4)]
        after = [p for p in packets if p.payload_type == g711.PCMA]
        assert after and after[0].payload == bytes([0xD5]) * 160  # A-law silence now
        assert after[-1].ssrc == before.ssrc  # the same stream runs on
        assert after[-1].sequence == (before.sequence + len(packets)) & 0xFFFF
        alaw = g711.encode(pcm_of(1), g711.PCMA)
        caller.send(rtp(1, frame(1)), session.local_port)  # µ-law no longer accepted
        caller.send(rtp(2, alaw, pt=g711.PCMA), session.local_port)
        caller.send(rtp(3, encode_event("4", True, 10, 320), pt=96), session.local_port)
        await recorder.until(lambda: recorder.digits == ["4"] and len(recorder.audio) >= 320)
        assert session.ignored == 1
        assert g711.decode(alaw, g711.PCMA) in bytes(recorder.audio)
        with pytest.raises(ValueError):
            session.set_codec(18, None)  # G.729: not ours to decode
    finally:
        await session.close()


async def test_audio_reaches_the_recognizer_in_its_frame_size_in_order_across_loss_and_reordering(
    caller: Peer,
) -> None:
    recorder = Recorder()
    chunks: list[bytes] = []
    session = make_session(recorder, caller.port)
    session._on_audio = chunks.append  # type: ignore[assignment]
    await session.start()
    session.audio_frame_ms = 100  # the vendor's frame: five packets each
    addr = (HOST, caller.port)
    try:
        # The handler itself, called as the loop would (no wall time passes, so no silence is due).
        for seq in (1, 2, 4, 3, 5):  # one reordered pair: held, then released in sequence
            session._on_datagram(rtp(seq, frame(seq)), addr)
        assert [len(c) for c in chunks] == [1600]
        assert spoken(chunks[0]) == [1, 2, 3, 4, 5]
        for seq in (6, 7, 9, 10, 11, 12, 13):  # 8 lost: given up once the buffer's depth is past it
            session._on_datagram(rtp(seq, frame(seq)), addr)
        assert [len(c) for c in chunks] == [1600, 1600]
        assert spoken(chunks[1]) == [6, 7, 9, 10, 11]
        assert session.jitter_lost == 1
        session.passthrough = True  # the format changes: what is held goes out first, in the old one
        assert spoken(chunks[2]) == [12, 13]
        for seq in range(14, 19):
            session._on_datagram(rtp(seq, frame(seq)), addr)
        assert chunks[3:] == [b"".join(frame(seq) for seq in range(14, 19))]  # G.711 as received
        session.audio_frame_ms = 5  # never less than a packet
        assert session.audio_frame_ms == 20
    finally:
        await session.close()
