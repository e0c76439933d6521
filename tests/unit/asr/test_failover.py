"""Failover of one turn between recognizers, over the real driver and in-memory connections: which vendor
gets the turn, what audio it gets (the turn's so far, replayed, then the live audio, in order), what the
call sees, and the circuit breaker skipping a dead endpoint without a connect attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    CodecBase,
    Final,
    Frame,
    RecognitionRequest,
    RecognitionStarted,
    RecognizerError,
    ResultStatus,
    SessionState,
    Timers,
    VendorError,
)
from ivr.asr.breaker import BreakerState, CircuitBreaker
from ivr.asr.failover import Candidate, TurnAudio, TurnRecognition
from ivr.asr.memory import MemoryConnection
from ivr.asr.stream import Connection, Connector, RecognizerStream

CHUNK = 320  # 20 ms of PCM16 8 kHz


class ToyCodec(CodecBase):
    """start -> "started" (listening); binary audio; "heard:N" ends the recognition with "N bytes"."""

    vendor = "toy"
    chunk_ms = 20
    retries = True  # "busy" is retryable

    def open(self, now: float) -> None:
        pass

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        self._recognition = request.id
        self._state = SessionState.STARTING
        self._out.append("start")
        return []

    def audio(self, chunk: bytes, now: float) -> None:
        self._out.append(chunk)

    def end(self, now: float) -> list[AsrEvent]:
        return []

    def cancel(self, now: float) -> list[AsrEvent]:
        self._state = SessionState.READY
        return [self._final(ResultStatus.CANCELLED)] if self._recognition is not None else []

    def close(self, now: float) -> list[AsrEvent]:
        events = self.cancel(now)
        self._state = SessionState.CLOSED
        return events

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        if frame == "started" and self._recognition is not None:
            self._state = SessionState.LISTENING
            return [RecognitionStarted(self._recognition)]
        if frame == "busy" and self._recognition is not None:
            self._state = SessionState.READY
            error = VendorError("busy", "try again", retryable=True)
            return [self._final(ResultStatus.ERROR, error=error)]
        if isinstance(frame, str) and frame.startswith("heard:") and self._recognition is not None:
            self._state = SessionState.READY
            text = f"{frame[6:]} bytes"
            return [self._final(ResultStatus.RECOGNIZED, alternatives=(Alternative(text, 0.9),))]
        return []


class Peer:
    """A toy vendor: answers the start (unless silent), takes audio, and after `die_after` bytes drops the
    connection, or after `answer_after` bytes answers with how much it heard."""

    def __init__(
        self,
        *,
        die_after: int | None = None,
        answer_after: int | None = None,
        silent: bool = False,
        busy_once: bool = False,
    ) -> None:
        self.busy_once = busy_once
        self.die_after = die_after
        self.answer_after = answer_after
        self.silent = silent
        self.audio = bytearray()
        self.connects = 0

    def connector(self) -> Connector:
        async def connect() -> Connection:
            self.connects += 1
            conn: MemoryConnection

            def respond(frame: Frame) -> list[Frame]:
                if frame == "start":
                    if self.busy_once:
                        self.busy_once = False
                        return ["busy"]
                    return [] if self.silent else ["started"]
                if isinstance(frame, bytes):
                    self.audio += frame
                    if self.die_after is not None and len(self.audio) >= self.die_after:
                        conn.abort()
                    if self.answer_after is not None and len(self.audio) >= self.answer_after:
                        self.answer_after = None
                        return [f"heard:{len(self.audio)}"]
                return []

            conn = MemoryConnection(respond)
            return conn

        return connect


async def refused() -> Connection:
    raise RecognizerError("cannot connect to 127.0.0.1: [Errno 111] Connection refused")


def request(no_input: float = 5.0) -> RecognitionRequest:
    return RecognitionRequest(7, "ko", timers=Timers(no_input=no_input))


class Call:
    """What ivr.call does with a turn: audio in, Finals through `take`, failovers recorded."""

    def __init__(self) -> None:
        self.events: list[AsrEvent] = []
        self.failovers: list[str] = []
        self.turn: TurnRecognition | None = None
        self.done = asyncio.Event()

    def on_event(self, event: AsrEvent) -> None:
        if isinstance(event, Final):
            assert self.turn is not None
            if self.turn.take(event):
                return
            self.done.set()
        self.events.append(event)

    def on_failover(self, source: str, target: str | None, kind: str) -> None:
        self.failovers.append(f"{source}->{target or 'none'}:{kind}")

    def stream(
        self, vendor: str, connector: Connector, breaker: CircuitBreaker | None = None
    ) -> RecognizerStream:
        return RecognizerStream(
            vendor, connector, lambda r: ToyCodec(), self.on_event, breaker=breaker, close_timeout=0.1
        )

    def start(self, streams: dict[str, RecognizerStream], req: RecognitionRequest) -> TurnRecognition:
        getter: Callable[[str], RecognizerStream | None] = streams.get
        self.turn = TurnRecognition(
            [Candidate(v, req) for v in streams], getter, on_failover=self.on_failover
        )
        assert self.turn.start()
        return self.turn

    def final(self) -> Final:
        finals = [e for e in self.events if isinstance(e, Final)]
        assert len(finals) == 1, self.events
        return finals[0]


def speech(chunks: int) -> list[bytes]:
    return [bytes([i % 251 + 1]) * CHUNK for i in range(chunks)]


async def feed(turn: TurnRecognition, chunks: list[bytes]) -> None:
    for chunk in chunks:
        turn.audio(chunk)
        await asyncio.sleep(0.002)


async def test_a_dropped_connection_hands_the_turn_over_with_all_its_audio_in_order() -> None:
    call = Call()
    primary, secondary = Peer(die_after=5 * CHUNK), Peer(answer_after=20 * CHUNK)
    streams = {"a": call.stream("a", primary.connector()), "b": call.stream("b", secondary.connector())}
    turn = call.start(streams, request())
    audio = speech(20)
    await feed(turn, audio)
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.failovers == ["a->b:closed"]
    assert len(primary.audio) >= 5 * CHUNK  # the first vendor heard part of the turn ...
    assert bytes(secondary.audio) == b"".join(audio)  # ... the second all of it, once, in order
    final = call.final()
    assert final.status is ResultStatus.RECOGNIZED and final.text == f"{20 * CHUNK} bytes"
    assert final.recognition == 7  # the same recognition as far as the call knows
    for stream in streams.values():
        await stream.close()


async def test_an_unreachable_vendor_fails_over_before_any_audio_is_lost() -> None:
    call = Call()
    secondary = Peer(answer_after=8 * CHUNK)
    streams = {"a": call.stream("a", refused), "b": call.stream("b", secondary.connector())}
    turn = call.start(streams, request())
    audio = speech(8)
    await feed(turn, audio)
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.failovers == ["a->b:unreachable"]
    assert bytes(secondary.audio) == b"".join(audio)
    assert call.final().status is ResultStatus.RECOGNIZED
    for stream in streams.values():
        await stream.close()


async def test_a_start_that_is_never_answered_fails_over_within_half_the_no_input_time() -> None:
    call = Call()
    primary, secondary = Peer(silent=True), Peer(answer_after=4 * CHUNK)
    streams = {"a": call.stream("a", primary.connector()), "b": call.stream("b", secondary.connector())}
    turn = call.start(streams, request(no_input=2.0))  # the guard: max(1 s, 2 s / 2)
    await feed(turn, speech(4))
    async with asyncio.timeout(2.5):
        await call.done.wait()
    assert call.failovers == ["a->b:timeout"]
    assert call.final().status is ResultStatus.RECOGNIZED
    for stream in streams.values():
        await stream.close()


async def test_when_every_vendor_fails_the_call_gets_one_error_final() -> None:
    call = Call()
    streams = {"a": call.stream("a", refused), "b": call.stream("b", refused)}
    call.start(streams, request())
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.failovers == ["a->b:unreachable", "b->none:unreachable"]
    final = call.final()
    assert final.status is ResultStatus.ERROR and final.error is not None
    for stream in streams.values():
        await stream.close()


async def test_an_open_breaker_skips_the_endpoint_without_connecting() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    first = Call()
    dead = Peer(die_after=CHUNK)
    streams = {
        "a": first.stream("a", dead.connector(), breaker),
        "b": first.stream("b", Peer(answer_after=CHUNK).connector()),
    }
    await feed(first.start(streams, request()), speech(3))
    async with asyncio.timeout(3):
        await first.done.wait()
    assert first.failovers == ["a->b:closed"] and dead.connects == 1
    assert breaker.state(asyncio.get_running_loop().time()) is BreakerState.OPEN
    # The next call on the same endpoint goes straight to its secondary: no connect, no wait.
    second = Call()
    skipped = Peer(answer_after=CHUNK)
    streams2 = {
        "a": second.stream("a", skipped.connector(), breaker),
        "b": second.stream("b", Peer(answer_after=CHUNK).connector()),
    }
    await feed(second.start(streams2, request()), speech(3))
    async with asyncio.timeout(3):
        await second.done.wait()
    assert second.failovers == ["a->b:circuit-open"] and skipped.connects == 0
    for stream in (*streams.values(), *streams2.values()):
        await stream.close()


async def test_a_half_open_breaker_closes_after_a_successful_probe() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0)
    breaker.failure(0)
    call = Call()
    healthy = Peer(answer_after=2 * CHUNK)
    streams = {"a": call.stream("a", healthy.connector(), breaker)}
    await feed(call.start(streams, request()), speech(2))
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.final().status is ResultStatus.RECOGNIZED and call.failovers == []
    assert breaker.state(asyncio.get_running_loop().time()) is BreakerState.CLOSED
    await streams["a"].close()


def test_the_turn_buffer_keeps_the_newest_audio_within_its_bound() -> None:
    audio = TurnAudio(max_bytes=1000)
    for i in range(7):
        audio.add(bytes([i]) * 300)
    assert audio.replay() == bytes([4]) * 300 + bytes([5]) * 300 + bytes([6]) * 300
    assert audio.dropped == 1200


async def test_a_retried_probe_is_still_the_probe() -> None:
    # Half-open lets one request through; its documented retry (a busy vendor) must not be refused as a
    # second request, or the probe would never report and the breaker would stay half-open for ever.
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0)
    breaker.failure(0)
    call = Call()
    busy = Peer(busy_once=True, answer_after=2 * CHUNK)
    streams = {"a": call.stream("a", busy.connector(), breaker)}
    await feed(call.start(streams, request()), speech(2))
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.final().status is ResultStatus.RECOGNIZED
    assert breaker.state(asyncio.get_running_loop().time()) is BreakerState.CLOSED
    await streams["a"].close()


class NoRetryCodec(ToyCodec):
    retries = False  # as Mediazen and CPQD: none of their errors is retryable


async def test_a_vendor_that_never_retries_keeps_no_audio_for_a_replay() -> None:
    call = Call()
    peer = Peer(answer_after=20 * CHUNK)
    stream = RecognizerStream("a", peer.connector(), lambda r: NoRetryCodec(), call.on_event)
    await feed(call.start({"a": stream}, request()), speech(20))
    async with asyncio.timeout(3):
        await call.done.wait()
    assert call.final().status is ResultStatus.RECOGNIZED and len(peer.audio) == 20 * CHUNK
    assert not stream._replay  # 5 s of it would be 80 KB per call
    await stream.close()
