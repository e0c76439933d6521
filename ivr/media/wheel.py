"""One timer for the deadlines of every call: a hashed timing wheel, sans-I/O (time is passed in).

Each call has deadlines that recur all the time: a keepalive frame every 20 ms, a prompt frame every 20 ms, a
check for the caller's silence every ~100 ms. One event-loop timer each costs a heap entry and a dispatch per
deadline (~2.5 µs on uvloop), as much as the rest of a packet's work. The wheel groups deadlines into slots of
`tick` seconds, so one loop timer per slot runs all of that slot's callbacks in a plain loop. A callback runs
at the end of its slot, never before its time and at most `tick` after it (plus the loop's own lateness);
within a slot, in the order scheduled.

Deadlines that recur for as long as a call lasts (its 20 ms media tick) are cheaper still in a `Cadence`: a
ring of one period's slots, each callback placed once in the slot of its phase and run on every pass, so an
occurrence costs a call and nothing is scheduled, allocated or cancelled for it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

__all__ = ["Cadence", "TimerWheel", "WheelTimer"]


class WheelTimer:
    """A deadline in a `TimerWheel`; `cancel()` keeps its callback from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerWheel:
    """Deadlines in slots of `tick` seconds; `expire(now)` hands over the callbacks that are due."""

    __slots__ = ("_heap", "_slots", "tick")

    def __init__(self, tick: float = 0.001) -> None:
        if tick <= 0:
            raise ValueError("a wheel's tick must be positive")
        self.tick = tick
        self._slots: dict[int, list[WheelTimer]] = {}
        self._heap: list[int] = []  # the slot numbers in use, earliest first

    def __len__(self) -> int:
        """Timers scheduled and not yet expired (cancelled ones included until their slot passes)."""
        return sum(len(timers) for timers in self._slots.values())

    def schedule(self, when: float, callback: Callable[[], object]) -> WheelTimer:
        """Run `callback` once `when` has passed (in the slot that ends at or after it)."""
        timer = WheelTimer(when, callback)
        slot = math.ceil(when / self.tick)
        timers = self._slots.get(slot)
        if timers is None:
            self._slots[slot] = [timer]
            heapq.heappush(self._heap, slot)
        else:
            timers.append(timer)
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest slot in use ends, or None when nothing is scheduled."""
        return self._heap[0] * self.tick if self._heap else None

    def expire(self, now: float) -> list[WheelTimer]:
        """The timers of every slot that has ended by `now`, earliest first, cancelled ones left out."""
        due: list[WheelTimer] = []
        heap, slots, tick = self._heap, self._slots, self.tick
        while heap and heap[0] * tick <= now:
            for timer in slots.pop(heapq.heappop(heap)):
                if not timer.cancelled:
                    due.append(timer)
        return due


class Cadence:
    """Callbacks that recur every `period` seconds, in `period / tick` phase slots of `tick` seconds.

    `add(when, callback)` places the callback in the slot `when` falls in; from then on it runs each time
    that slot comes round, at most `tick` after its phase (the first time, possibly up to a period before
    `when`: a callback checks its own deadlines). A cancelled callback leaves its slot when the slot next
    runs. After a stall longer than a period, every callback runs once, not once per period missed.
    """

    __slots__ = ("_count", "_done", "_slots", "tick")

    def __init__(self, period: float, tick: float = 0.001) -> None:
        if tick <= 0 or period < tick:
            raise ValueError("a cadence needs a positive tick no longer than its period")
        self.tick = tick
        self._slots: list[list[WheelTimer]] = [[] for _ in range(max(1, round(period / tick)))]
        self._count = 0  # callbacks in the ring, cancelled ones included until their slot runs
        self._done: int | None = None  # the last slot number run

    def __len__(self) -> int:
        return self._count

    def add(self, when: float, callback: Callable[[], object]) -> WheelTimer:
        timer = WheelTimer(when, callback)
        self._slots[math.ceil(when / self.tick) % len(self._slots)].append(timer)
        self._count += 1
        return timer

    def next_deadline(self, now: float) -> float | None:
        """When the next slot to run ends, or None when the ring is empty."""
        if not self._count:
            return None
        if self._done is None:
            return math.ceil(now / self.tick) * self.tick
        return (self._done + 1) * self.tick

    def expire(self, now: float) -> list[WheelTimer]:
        """The callbacks of every slot that has ended by `now` since the last call, in slot order."""
        current = math.floor(now / self.tick + 1e-9)
        done = current - 1 if self._done is None else self._done
        if current <= done:
            return []
        slots = self._slots
        size = len(slots)
        due: list[WheelTimer] = []
        for number in range(max(done + 1, current - size + 1), current + 1):
            timers = slots[number % size]
            if not timers:
                continue
            live = [timer for timer in timers if not timer.cancelled]
            self._count -= len(timers) - len(live)
            slots[number % size] = live
            due.extend(live)
        self._done = current
        return due
