# The compiled half of ivr/media/batchrx.py (ivr/media/_batchrx.c).
from collections.abc import Callable
from typing import Any

BATCH: int
PASSTHROUGH: int
ULAW: int
ALAW: int

Counters = tuple[int, int, int, int, int, float, float, float, int]

class Lane:
    @property
    def armed(self) -> bool: ...
    @property
    def arrival(self) -> float: ...
    @property
    def held(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def due(self) -> float | None: ...
    def arm(
        self,
        source: tuple[Any, ...],
        payload_type: int,
        ssrc: int,
        sequence: int,
        timestamp: int,
        frame: int,
        held: bytes,
        jitter: float,
        transit: float | None,
        codec: int,
    ) -> None: ...
    def sync(self) -> Counters: ...
    def disarm(self) -> tuple[bytes, Counters]: ...
    def close(self) -> None: ...

class Receiver:
    def __init__(
        self, on_error: Callable[[BaseException], object] | None = None, pace_ms: int = 0
    ) -> None: ...
    def add(
        self,
        fd: int,
        on_datagram: Callable[[bytes, tuple[Any, ...]], object],
        on_audio: Callable[[bytes], object],
        clock_rate: float = 8000.0,
    ) -> Lane: ...
    def receive(self, now: float) -> int: ...
    def fileno(self) -> int: ...
    def counters(self) -> tuple[int, int, int, int, int]: ...
