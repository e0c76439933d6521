"""The vendor circuit breaker, as a table of outcomes against time."""

from __future__ import annotations

import pytest

from ivr.asr.breaker import BreakerState, CircuitBreaker

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (time, what happens), then the state after the last step
        ([(0, "fail"), (1, "fail")], CLOSED),
        ([(0, "fail"), (1, "fail"), (2, "fail")], OPEN),
        ([(0, "fail"), (1, "fail"), (2, "ok"), (3, "fail"), (4, "fail")], CLOSED),  # consecutive only
        ([(0, "fail"), (0, "fail"), (0, "fail")], OPEN),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (9.9, "state")], OPEN),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "state")], HALF),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "allow"), (10.5, "ok")], CLOSED),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "allow"), (10.5, "fail")], OPEN),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "allow"), (10.5, "fail"), (19, "state")], OPEN),
        ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "allow"), (10.5, "fail"), (20.5, "state")], HALF),
    ],
)
def test_states(steps: list[tuple[float, str]], expected: BreakerState) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10)
    now = 0.0
    for now, what in steps:
        if what == "fail":
            breaker.failure(now)
        elif what == "ok":
            breaker.success(now)
        elif what == "allow":
            assert breaker.allow(now)
    assert breaker.state(now) is expected


def test_an_open_breaker_refuses_until_the_cooldown_then_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=5)
    assert breaker.allow(0)
    breaker.failure(0)
    assert breaker.allow(1)
    breaker.failure(1)
    assert not breaker.allow(1) and not breaker.allow(5.9)
    assert breaker.allow(6)  # the probe
    assert not breaker.allow(6.1)  # only one at a time
    breaker.release(6.2)  # the probe was cancelled: no verdict, the next request probes
    assert breaker.allow(6.3)
    breaker.success(7)
    assert breaker.allow(7) and breaker.allow(7) and breaker.failures == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
