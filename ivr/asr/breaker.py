"""A circuit breaker per vendor endpoint: a dead vendor is skipped at once instead of costing every call a
connect wait. Sans-I/O: time is passed in; one breaker is shared by every call of the bridge.

closed --N consecutive failures--> open --cool-down over--> half-open (one probe request)
half-open --probe succeeds--> closed;  half-open --probe fails--> open (a new cool-down)
"""

from __future__ import annotations

from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(Enum):
    """Whether requests reach the endpoint."""

    CLOSED = "closed"  # requests go through; consecutive failures are counted
    OPEN = "open"  # requests are refused at once until the cool-down is over
    HALF_OPEN = "half-open"  # one probe request goes through; the others are refused while it runs


class CircuitBreaker:
    """Consecutive-failure breaker of one vendor endpoint; ``allow`` before a request, then one outcome."""

    def __init__(self, failure_threshold: int = 3, cooldown: float = 30.0) -> None:
        if failure_threshold < 1 or cooldown < 0:
            raise ValueError("failure_threshold must be at least 1 and cooldown not negative")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def state(self, now: float) -> BreakerState:
        """The state at ``now`` (an open breaker whose cool-down is over reads as half-open)."""
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.cooldown:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures so far."""
        return self._failures

    def allow(self, now: float) -> bool:
        """Whether a request may go to the endpoint now; a True in half-open makes it the probe."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def success(self, now: float) -> None:
        """The endpoint answered a request: closed again, the count starts over."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False

    def failure(self, now: float) -> None:
        """The endpoint failed a request (unreachable, refused, stalled, dropped)."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = now
        self._probing = False

    def release(self, now: float) -> None:
        """A request ended with no verdict on the endpoint (cancelled): a probe slot is free again."""
        self._probing = False
