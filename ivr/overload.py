"""Overload: how late the event loop runs, and whether the bridge should take new calls, sans-I/O.

A bridge past its capacity does not fail loudly: every datagram waits a little longer, each recognizer
falls seconds behind, and the calls it took last break the ones it took first (their audio backs up past the
stream's allowance and the vendor's circuit breaker opens for everyone). The symptom that comes first is the
event loop's lag: a timer due now runs late by as long as one turn of the loop takes. `LoopLag` is fed that
lateness by a probe timer; while its smoothed value is above `threshold`, new INVITEs and OPTIONS probes
get 503 with Retry-After (`ivr.sip.admission`), so a dispatcher sends calls to another bridge and the calls
in progress keep their real time. Hysteresis (back under half the threshold) keeps it from flapping call by
call.
"""

from __future__ import annotations

__all__ = ["LoopLag"]


class LoopLag:
    """Smoothed event-loop lateness (seconds) from probe samples; `overloaded` with hysteresis."""

    __slots__ = ("_smoothing", "lag", "overloaded", "peak", "threshold")

    def __init__(self, threshold: float, smoothing: float = 0.25) -> None:
        if threshold <= 0 or not 0 < smoothing <= 1:
            raise ValueError("a lag threshold must be positive and smoothing in (0, 1]")
        self.threshold = threshold
        self._smoothing = smoothing  # the weight of each new sample (probes every 50 ms: ~0.2 s to react)
        self.lag = 0.0
        self.peak = 0.0  # the largest sample seen, for the logs
        self.overloaded = False

    def sample(self, lateness: float) -> bool:
        """One probe's lateness; True when `overloaded` changed."""
        lateness = max(0.0, lateness)
        self.peak = max(self.peak, lateness)
        self.lag += (lateness - self.lag) * self._smoothing
        before = self.overloaded
        if self.lag > self.threshold:
            self.overloaded = True
        elif self.lag < self.threshold / 2:
            self.overloaded = False
        return self.overloaded is not before
