"""When `ivr serve` runs which collection (ivr/gcpolicy.py): the policy alone, fed time and live calls."""

from __future__ import annotations

import pytest

from ivr.gcpolicy import Collection, CollectorPolicy


def test_busy_bridge_only_freezes_until_the_full_interval() -> None:
    policy = CollectorPolicy(now=0.0, full_interval=60.0)
    seen = [policy.next(float(t), live_calls=2000) for t in range(1, 60)]
    assert set(seen) == {Collection.FREEZE}
    assert policy.next(60.0, 2000) is Collection.FULL
    assert policy.next(61.0, 2000) is Collection.FREEZE  # the interval counts from the last full one
    assert policy.next(119.0, 2000) is Collection.FREEZE
    assert policy.next(120.0, 2000) is Collection.FULL


def test_the_first_idle_tick_after_calls_collects_everything_once() -> None:
    policy = CollectorPolicy(now=0.0, full_interval=3600.0)
    assert policy.next(1.0, 0) is Collection.FREEZE  # idle since start-up: nothing to look for
    assert policy.next(2.0, 3) is Collection.FREEZE
    assert policy.next(3.0, 1) is Collection.FREEZE
    assert policy.next(4.0, 0) is Collection.FULL
    assert [policy.next(t, 0) for t in (5.0, 6.0, 7.0)] == [Collection.FREEZE] * 3  # still idle: done
    assert policy.next(8.0, 1) is Collection.FREEZE
    assert policy.next(9.0, 0) is Collection.FULL


def test_a_full_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        CollectorPolicy(now=0.0, full_interval=0)
