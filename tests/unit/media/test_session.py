"""RtpSession against peers on real UDP sockets on 127.0.0.1."""

import asyncio
import itertools
import struct
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import numpy as np
import pytest

try:
    import uvloop
except ImportError:  # uvloop has a platform marker
    uvloop = None

from ivr.media import g711
from ivr.media.dtmf import encode_event
from ivr.media.rtp import RtpPacket, parse_rtp
from ivr.media.session import PortAllocator, PortsExhausted, RtpSession

HOST = "127.0.0.1"
WAIT = 5.0  # generous upper bound for things that happen in milliseconds


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    async def next_packet(self) -> RtpPacket:
        return parse_rtp(await asyncio.wait_for(self.received.get(), WAIT))


async def open_peer() -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, 0))
    return peer


class Recorder:
    def __init__(self) -> None:
        self.audio = bytearray()
        self.digits: list[str] = []
        self.timeouts = 0
        self.changed = asyncio.Event()

    def on_audio(self, pcm: bytes) -> None:
        self.audio += pcm
        self.changed.set()

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        self.changed.set()

    def on_timeout(self) -> None:
        self.timeouts += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), WAIT)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await open_peer()
    yield p
    assert p.transport is not None
    p.transport.close()


_BATCH_RECEIVE = True


@pytest.fixture(autouse=True, params=["batch", "transport"])
def receive_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both receive paths: the compiled batch receiver and the loop's transport."""
    monkeypatch.setattr(sys.modules[__name__], "_BATCH_RECEIVE", request.param == "batch")
    return str(request.param)


def make_session(recorder: Recorder, remote_port: int, **kwargs: Any) -> RtpSession:
    options: dict[str, Any] = {
        "batch_receive": _BATCH_RECEIVE,
        "local_host": HOST,
        "port": 0,
        "remote_host": HOST,
        "remote_port": remote_port,
        "payload_type": g711.PCMU,
        "dtmf_payload_type": 101,
        "on_audio": recorder.on_audio,
        "on_dtmf": recorder.on_dtmf,
        "on_timeout": recorder.on_timeout,
        "inactivity_timeout": 30.0,
        "keepalive": False,  # the tests of keepalive turn it on; elsewhere it would interleave with prompts
    }
    options.update(kwargs)
    return RtpSession(**options)


@pytest.fixture
async def session_and_recorder(peer: Peer) -> AsyncIterator[tuple[RtpSession, Recorder]]:
    recorder = Recorder()
    session = make_session(recorder, peer.port)
    await session.start()
    yield session, recorder
    await session.close()


def rtp(
    seq: int, payload: bytes, *, pt: int = 0, ts: int | None = None, ssrc: int = 0x5EED, marker: bool = False
) -> bytes:
    ts = seq * 160 if ts is None else ts
    return (
        struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        + payload
    )


def frame(seq: int) -> bytes:
    """A 20 ms µ-law frame whose content identifies its sequence number."""
    return bytes([0x10 + seq % 0x60]) * 160


def pcm_of(seq: int) -> bytes:
    return g711.decode(frame(seq), g711.PCMU)


SILENCE_FRAME = bytes(320)


def runs(audio: bytes) -> list[tuple[int | None, int]]:
    """The PCM as (sequence number or None for silence, samples) runs; frame(seq) decodes to one value."""
    values = np.frombuffer(audio, "<i2")
    by_value = {int(np.frombuffer(pcm_of(seq), "<i2")[0]): seq for seq in range(0x60)}
    out: list[tuple[int | None, int]] = []
    for value in values:
        key = None if value == 0 else by_value[int(value)]
        if out and out[-1][0] == key:
            out[-1] = (key, out[-1][1] + 1)
        else:
            out.append((key, 1))
    return out


def spoken(audio: bytes) -> list[int]:
    """The sequence numbers (mod 0x60) of the frames heard, in order; each must be whole."""
    heard = [(seq, samples) for seq, samples in runs(audio) if seq is not None]
    assert all(samples % 160 == 0 for _, samples in heard)
    return [seq for seq, samples in heard for _ in range(samples // 160)]


async def test_receive_reordered_duplicated_and_lost_audio_and_one_digit(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, recorder = session_and_recorder
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for seq in [100, 102, 101, 101, 103, 105, 106, 107, 108]:  # 101 late and duplicated, 104 lost
        peer.send(rtp(seq, frame(seq)), session.local_port)
    peer.send(rtp(109, b"", pt=13), session.local_port)  # comfort noise
    dtmf_ts = 109 * 160
    for i, (end, duration) in enumerate([(False, 400), (False, 800), (False, 1200), (True, 1360)]):
        for _ in range(3 if end else 1):  # RFC 4733 §2.5.1.4: the end packet goes out three times
            peer.send(
                rtp(110 + i, encode_event("5", end, 10, duration), pt=101, ts=dtmf_ts), session.local_port
            )
    peer.send(rtp(114, frame(114)), session.local_port)  # audio resumes after the event

    await recorder.until(lambda: len(spoken(bytes(recorder.audio))) == 9)
    elapsed = loop.time() - t0
    assert spoken(bytes(recorder.audio)) == [s % 0x60 for s in [100, 101, 102, 103, 105, 106, 107, 108, 114]]
    # Whatever silence went in (for 104, the event, or the quiet after), never more than the time that passed.
    assert len(recorder.audio) // 2 <= (elapsed + 9 * 0.02) * 8000
    assert recorder.digits == ["5"]
    assert session.stats.duplicate >= 3  # the duplicate audio packet and the repeated end packets
    assert session.stats.received == 17
    assert session.stats.lost == 1
    assert session.jitter_lost == 1  # 104 only: comfort noise and the event are not loss
    assert recorder.timeouts == 0


async def test_play_sends_paced_numbered_frames_then_continues_across_prompts(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, _ = session_and_recorder
    pcm = np.round(8000 * np.sin(np.arange(840) / 5)).astype("<i2").tobytes()  # 105 ms: 6 frames
    assert await session.play(pcm) is True
    first = [await peer.next_packet() for _ in range(6)]
    assert peer.received.empty()
    assert [p.marker for p in first] == [True] + [False] * 5
    assert {p.payload_type for p in first} == {g711.PCMU}
    assert len({p.ssrc for p in first}) == 1
    for a, b in itertools.pairwise(first):
        assert b.sequence == (a.sequence + 1) & 0xFFFF
        assert b.timestamp == (a.timestamp + 160) & 0xFFFFFFFF
    assert b"".join(p.payload for p in first)[:840] == g711.encode(pcm, g711.PCMU)
    assert first[-1].payload[40:] == g711.silence(g711.PCMU, 120)

    await asyncio.sleep(0.2)  # a silent pause between prompts
    assert await session.play(pcm[:320]) is True
    second = await peer.next_packet()
    assert second.marker
    assert second.sequence == (first[-1].sequence + 1) & 0xFFFF
    # RFC 3550 §5.1: the timestamp kept counting through the pause (at least 0.2 s = 1600 units)
    assert (second.timestamp - first[-1].timestamp) & 0xFFFFFFFF >= 160 + 1600


async def test_stop_playback_returns_false_early(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, _ = session_and_recorder
    task = asyncio.create_task(session.play(bytes(2 * 8000 * 3)))  # 3 s: 150 frames
    await peer.next_packet()
    assert session.playing
    session.stop_playback()
    assert await asyncio.wait_for(task, WAIT) is False
    assert not session.playing
    sent = 1 + peer.received.qsize()
    assert sent < 150
    await asyncio.sleep(0.1)
    assert 1 + peer.received.qsize() == sent  # nothing more after the stop


async def test_new_play_replaces_running_one(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, _ = session_and_recorder
    long = asyncio.create_task(session.play(bytes(2 * 8000 * 3)))
    first = await peer.next_packet()
    assert await session.play(bytes(320)) is True
    assert await asyncio.wait_for(long, WAIT) is False
    packets = [first]
    while not peer.received.empty():
        packets.append(await peer.next_packet())
    assert packets[-1].marker  # the replacing prompt is a new talkspurt
    seqs = [p.sequence for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    timestamps = [p.timestamp for p in packets]
    assert timestamps == sorted(timestamps)


async def open_peer_on(host: str) -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    return peer


def close_peers(*peers: Peer) -> None:
    for p in peers:
        assert p.transport is not None
        p.transport.close()


async def test_latches_to_another_port_of_the_sdp_host_and_never_moves_mid_call(peer: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, peer.port)  # the SDP address is `peer`
    await session.start()
    caller = await open_peer()  # but the caller's RTP comes from another port of that host (NAT)
    other_port = await open_peer()
    try:
        await session.play(bytes(320))
        assert (await peer.next_packet()).marker  # before any caller packet: to the SDP address

        caller.send(rtp(1, frame(1), ssrc=111), session.local_port)
        await recorder.until(lambda: len(recorder.audio) == 320)
        assert session.remote_address[1] == caller.port
        await session.play(bytes(320))
        await caller.next_packet()
        assert peer.received.empty()

        # The same host from yet another port, even with the caller's SSRC and next sequence number: once
        # latched, it is dropped (no re-latching mid-call).
        other_port.send(rtp(2, frame(50), ssrc=111), session.local_port)
        caller.send(rtp(3, frame(3), ssrc=111), session.local_port)
        await recorder.until(lambda: 3 in spoken(bytes(recorder.audio)))
        assert 50 not in spoken(bytes(recorder.audio))
        assert session.foreign == 1
        assert session.remote_address[1] == caller.port

        session.update_remote(HOST, peer.port)  # re-INVITE: back to the SDP address until the caller sends
        await session.play(bytes(320))
        await peer.next_packet()
        caller.send(rtp(4, frame(4), ssrc=111), session.local_port)  # the latched caller latches again
        await recorder.until(lambda: 4 in spoken(bytes(recorder.audio)))
        assert session.remote_address[1] == caller.port
    finally:
        await session.close()
        close_peers(caller, other_port)


async def test_spoofed_rtp_before_the_callers_first_packet_never_reaches_the_call(peer: Peer) -> None:
    # The stranger knows the port and sprays audio and DTMF at it before the caller sends anything.
    recorder = Recorder()
    session = make_session(recorder, peer.port, keepalive=True)
    await session.start()
    stranger = await open_peer_on("127.0.0.2")
    try:
        for seq in range(40):
            stranger.send(rtp(seq, frame(60 + seq % 20), ssrc=666), session.local_port)
            stranger.send(
                rtp(1000 + seq, encode_event("9", False, 10, 160), pt=101, ts=seq), session.local_port
            )
        await asyncio.sleep(0.05)
        assert recorder.audio == b"" and recorder.digits == []
        for seq in range(5):
            peer.send(rtp(seq, frame(seq), ssrc=111), session.local_port)
        peer.send(rtp(5, encode_event("1", True, 10, 800), pt=101, ts=5 * 160, ssrc=111), session.local_port)
        for seq in range(40, 60):  # still spraying after the caller latched
            stranger.send(rtp(seq, frame(60 + seq % 20), ssrc=666), session.local_port)
        await recorder.until(lambda: recorder.digits == ["1"] and len(spoken(bytes(recorder.audio))) == 5)
        assert spoken(bytes(recorder.audio)) == [0, 1, 2, 3, 4]
        await session.play(bytes(320))  # the prompt, and the keepalive silence, go to the caller only
        await peer.next_packet()
        await asyncio.sleep(0.05)
        assert stranger.received.empty()
        assert session.remote_address == (HOST, peer.port)
        assert session.foreign >= 100
        assert session.stats.received == 6  # the stranger's packets are not even counted as received
    finally:
        await session.close()
        close_peers(stranger)


async def test_nat_mode_latches_a_foreign_host_only_after_probation(peer: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, peer.port, nat=True, probation=5)
    await session.start()
    natted = await open_peer_on("127.0.0.3")  # the caller, behind a NAT the SDP does not reveal
    late = await open_peer_on("127.0.0.4")
    try:
        for seq in range(8):
            natted.send(rtp(seq, frame(seq), ssrc=222), session.local_port)
        await recorder.until(lambda: len(spoken(bytes(recorder.audio))) == 4)
        assert spoken(bytes(recorder.audio)) == [4, 5, 6, 7]  # the 5th packet in sequence latched
        assert session.remote_address[0] == "127.0.0.3"
        for seq in range(10):  # another host passing probation later: too late, nothing re-latches
            late.send(rtp(seq, frame(50), ssrc=333), session.local_port)
        peer.send(rtp(0, frame(51), ssrc=444), session.local_port)  # nor the SDP host itself
        natted.send(rtp(8, frame(8), ssrc=222), session.local_port)
        await recorder.until(lambda: 8 in spoken(bytes(recorder.audio)))
        assert 50 not in spoken(bytes(recorder.audio)) and 51 not in spoken(bytes(recorder.audio))
        assert session.remote_address[0] == "127.0.0.3"
    finally:
        await session.close()
        close_peers(natted, late)


async def test_strict_mode_drops_a_foreign_host_however_many_packets(peer: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, peer.port)  # nat=False is the default
    await session.start()
    natted = await open_peer_on("127.0.0.3")
    try:
        for seq in range(20):
            natted.send(rtp(seq, frame(seq), ssrc=222), session.local_port)
        peer.send(rtp(0, frame(40), ssrc=111), session.local_port)
        await recorder.until(lambda: len(recorder.audio) >= 320)
        assert spoken(bytes(recorder.audio)) == [40]
        assert session.foreign == 20
    finally:
        await session.close()
        close_peers(natted)


async def test_inactivity_timeout_fires_once_and_rtp_defers_it(peer: Peer) -> None:
    recorder = Recorder()
    session = make_session(recorder, peer.port, inactivity_timeout=0.3)
    await session.start()
    try:
        for seq in range(8):  # RTP every 50 ms keeps the session alive past the timeout
            peer.send(rtp(seq, frame(seq)), session.local_port)
            await asyncio.sleep(0.05)
        assert recorder.timeouts == 0
        await recorder.until(lambda: recorder.timeouts > 0)
        await asyncio.sleep(0.4)
        assert recorder.timeouts == 1
    finally:
        await session.close()


async def test_busy_port_raises_and_close_is_idempotent(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, recorder = session_and_recorder
    other = make_session(recorder, peer.port, port=session.local_port)
    with pytest.raises(OSError):
        await other.start()
    await session.close()
    await session.close()
    assert await session.play(bytes(320)) is False


def test_rejects_non_g711_codec() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError):
        make_session(recorder, 4000, payload_type=18)


def test_port_allocator_is_still_importable_from_session() -> None:
    ports = PortAllocator(10001, 10004)
    assert {ports.acquire(), ports.acquire()} == {10002, 10004}
    with pytest.raises(PortsExhausted):
        ports.acquire()


async def test_packets_held_behind_a_loss_are_released_when_the_caller_goes_quiet(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, recorder = session_and_recorder
    for seq in (1, 3):  # 2 lost, then silence suppression: nothing more arrives to push 3 out
        peer.send(rtp(seq, frame(seq)), session.local_port)
    await recorder.until(lambda: len(recorder.audio) >= 3 * 320)
    assert bytes(recorder.audio[: 3 * 320]) == pcm_of(1) + SILENCE_FRAME + pcm_of(3)


# The bridge runs on uvloop, whose sendto raises ValueError for an address the socket cannot use; the stock
# loop instead resolves host names inside sendto (blocking DNS on the loop) and reports a gaierror later.
LOOPS = [
    pytest.param(asyncio.new_event_loop, id="stock-loop"),
    pytest.param(
        uvloop.new_event_loop if uvloop else None,
        id="uvloop",
        marks=pytest.mark.skipif(uvloop is None, reason="uvloop not installed"),
    ),
]


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize(
    "remote_host",
    [
        "::1",  # IPv6 on an IPv4 socket
        "pbx.invalid",  # a host name that does not resolve
        "localhost",  # one that does: sending there would need a DNS lookup on the loop, so it is refused too
    ],
)
def test_unusable_remote_address_counts_send_errors_and_play_still_completes(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], remote_host: str
) -> None:
    async def scenario() -> None:
        peer = await open_peer()
        recorder = Recorder()
        session = make_session(recorder, peer.port, remote_host=remote_host)
        await session.start()
        try:
            # 60 ms: three frames, each failing; the prompt still "plays" so the dialplan moves on.
            assert await asyncio.wait_for(session.play(bytes(2 * 480)), WAIT) is True
            assert session.send_errors >= 3
            assert session.last_send_error is not None and remote_host in session.last_send_error
            assert peer.received.empty()
            # The socket is intact: the caller's RTP still arrives, and latching to its source address
            # (a usable one by construction; no caller can come from the SDP's, so after probation) makes
            # sending work again.
            for seq in range(5):
                peer.send(rtp(seq, frame(seq)), session.local_port)
            await recorder.until(lambda: len(recorder.audio) >= 320)
            assert session.remote_address == (HOST, peer.port)
            errors = session.send_errors
            assert await asyncio.wait_for(session.play(bytes(320)), WAIT) is True
            assert (await peer.next_packet()).marker
            assert session.send_errors == errors
        finally:
            await session.close()
            assert peer.transport is not None
            peer.transport.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())


async def test_a_send_that_raises_is_counted_and_playback_keeps_pacing(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the loop's sendto raises for an address it cannot use (ValueError on uvloop, TypeError for a
    # non-string host), play() must not end early with an exception.
    session, _ = session_and_recorder
    calls: list[float] = []

    def failing_sendto(data: bytes, addr: Any = None) -> None:
        calls.append(asyncio.get_running_loop().time())
        raise (ValueError if len(calls) % 2 else TypeError)(f"cannot send to {addr!r}")

    monkeypatch.setattr(session, "_sendto", failing_sendto)
    assert await asyncio.wait_for(session.play(bytes(2 * 800)), WAIT) is True  # 100 ms: five frames
    assert len(calls) == 5 and session.send_errors == 5
    assert calls[-1] - calls[0] >= 4 * 0.02 - 0.005  # still paced, not dumped at once
    assert session.last_send_error is not None and "cannot send to" in session.last_send_error


async def test_passthrough_hands_over_the_g711_payload_as_received(
    peer: Peer, session_and_recorder: tuple[RtpSession, Recorder]
) -> None:
    session, recorder = session_and_recorder
    session.passthrough = True  # a recognizer that takes MULAW/ALAW: no decode at all
    peer.send(rtp(200, frame(200)), session.local_port)
    await recorder.until(lambda: len(recorder.audio) >= 160)
    await asyncio.sleep(0.04)  # the wall clock must pass for a loss to be filled
    peer.send(rtp(202, frame(202)), session.local_port)  # 201 lost
    peer.send(rtp(203, frame(203)), session.local_port)
    await recorder.until(lambda: frame(203) in bytes(recorder.audio))
    audio = bytes(recorder.audio)
    quiet = g711.silence_byte(session.payload_type)
    assert audio.startswith(frame(200))
    gap = audio[160 : audio.index(frame(202))]
    assert len(gap) >= 160 and set(gap) == {quiet}  # the loss (and any quiet before it) as µ-law silence
    assert audio.endswith(frame(202) + frame(203))
