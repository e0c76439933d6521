"""The cycle collector kept away from the calls in progress: what `ivr serve` collects, and when.

CPython's full collection walks every tracked object, and it runs each time the old generation has grown
by a quarter. A bridge carrying 2,000 calls holds about half a million of them: measured under the
calls-per-core benchmark, each full collection stopped the event loop for 100-440 ms, late audio for every
caller, and the overload guard refused new calls meanwhile. Calls live for minutes, and an ended call is
freed by reference counting alone (no cycles: tests/integration/test_call_memory.py), so what survives a
second is long-lived: four times a second the young objects are collected (garbage cycles among them
freed) and the survivors frozen out of the collector's sight (`gc.freeze`); every collection then walks only
what the last quarter second made (a pause of at most 16 ms at 1,000 calls and 400 setups a second, 53 ms
once a second). Between ticks CPython collects only the youngest generation, and less often than by default.

What ends up in a cycle after it was frozen would stay in memory, so a full collection of everything
(unfreeze, collect, freeze) still runs: as soon as the bridge is idle after calls (those a tick saw live, or
short ones that left frozen objects behind), where it costs little, and at the latest an hour after the
last one. It logs what it freed; anything there is a leak to fix.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sized
from enum import Enum

import structlog

__all__ = ["Collection", "Collector", "CollectorPolicy"]

FREEZE_INTERVAL = 0.25  # seconds between young collections (each freezes what survived)
FULL_INTERVAL = 3600.0  # seconds at most between full collections while calls never stop
IDLE_GROWTH = 500  # frozen objects past what survived the last full collection: calls came and went
# CPython's own collections while the collector ticks: the youngest generation less often, and no older one
# (the tick collects everything unfrozen). With the defaults (700, 10), a new object that lived was walked
# three times before the tick froze it: at 1,000 calls and 400 setups/s, collections took 12 % of the core.
YOUNG_THRESHOLD = 2_000  # allocations net of deallocations between collections of the youngest generation
NO_OLDER = 1_000_000  # youngest-generation collections before an automatic older one: never, between ticks


class Collection(Enum):
    FREEZE = "freeze"  # collect the unfrozen objects, freeze the survivors
    FULL = "full"  # unfreeze everything, collect it all, freeze the survivors


class CollectorPolicy:
    """Which collection is due at each tick, from the time, live calls and frozen objects (sans-I/O).

    The number of frozen objects is asked for (`frozen()`) only while no call is live: CPython counts them by
    walking the whole permanent generation, which took 25 ms a tick at 1,000 calls."""

    __slots__ = ("_baseline", "_full_interval", "_last_full", "_since_full")

    def __init__(self, now: float, frozen: int, full_interval: float = FULL_INTERVAL) -> None:
        if full_interval <= 0:
            raise ValueError("the full collection interval must be positive")
        self._full_interval = full_interval
        self._last_full = now
        self._since_full = 0  # ticks that saw calls since the last full collection
        self._baseline = frozen  # what stayed frozen after the last full collection

    def next(self, now: float, live_calls: int, frozen: Callable[[], int]) -> Collection:
        if live_calls:
            self._since_full += 1
        # Idle after calls: those the ticks saw, or the short ones in between, which leave frozen objects.
        idle_after_calls = not live_calls and (self._since_full or frozen() > self._baseline + IDLE_GROWTH)
        if idle_after_calls or now - self._last_full >= self._full_interval:
            self._last_full = now
            self._since_full = 0
            return Collection.FULL
        return Collection.FREEZE

    def collected(self, frozen: int) -> None:
        """A full collection is over: `frozen` objects survived it."""
        self._baseline = frozen


class Collector:
    """Runs a `CollectorPolicy` on the event loop, once per FREEZE_INTERVAL; `len(live)` counts the calls."""

    def __init__(self, live: Sized, full_interval: float = FULL_INTERVAL) -> None:
        self._live = live
        self._full_interval = full_interval
        self._policy: CollectorPolicy | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._thresholds: tuple[int, int, int] | None = None  # CPython's, put back by stop()
        self._log = structlog.get_logger()

    def start(self) -> None:
        """Freeze what start-up built (modules, settings, the dialplan), then tick."""
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, NO_OLDER, NO_OLDER)
        self._policy = CollectorPolicy(time.monotonic(), gc.get_freeze_count(), self._full_interval)
        self._handle = asyncio.get_running_loop().call_later(FREEZE_INTERVAL, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def _tick(self) -> None:
        policy = self._policy
        assert policy is not None  # set by start(), which schedules the first tick
        live = len(self._live)
        full = policy.next(time.monotonic(), live, gc.get_freeze_count) is Collection.FULL
        start = time.perf_counter()
        if full:
            gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        if full:
            frozen = gc.get_freeze_count()
            policy.collected(frozen)
            self._log.info(
                "full garbage collection",
                freed=freed,
                frozen=frozen,
                live_calls=live,
                ms=round((time.perf_counter() - start) * 1000, 1),
            )
        self._handle = asyncio.get_running_loop().call_later(FREEZE_INTERVAL, self._tick)
