"""When `ivr serve` runs which collection (ivr/gcpolicy.py): the policy alone, fed time, live calls and the
number of frozen objects (counted only while idle)."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from ivr.gcpolicy import IDLE_GROWTH, NO_OLDER, YOUNG_THRESHOLD, Collection, Collector, CollectorPolicy

FROZEN = 50_000  # what start-up leaves frozen


def count(frozen: int) -> Callable[[], int]:
    return lambda: frozen


def never() -> int:
    raise AssertionError("the frozen objects were counted while calls were live")


def test_busy_bridge_only_freezes_until_the_full_interval() -> None:
    policy = CollectorPolicy(now=0.0, frozen=FROZEN, full_interval=60.0)
    seen = [policy.next(float(t), 2000, count(FROZEN + 500 * t)) for t in range(1, 60)]
    assert set(seen) == {Collection.FREEZE}
    assert policy.next(60.0, 2000, count(FROZEN)) is Collection.FULL
    assert (
        policy.next(61.0, 2000, count(FROZEN)) is Collection.FREEZE
    )  # the interval counts from the last full one
    assert policy.next(119.0, 2000, count(FROZEN)) is Collection.FREEZE
    assert policy.next(120.0, 2000, count(FROZEN)) is Collection.FULL


def test_the_first_idle_tick_after_calls_collects_everything_once() -> None:
    policy = CollectorPolicy(now=0.0, frozen=FROZEN)
    assert policy.next(1.0, 0, count(FROZEN)) is Collection.FREEZE  # idle since start-up: nothing to look for
    assert policy.next(2.0, 3, count(FROZEN + 200)) is Collection.FREEZE
    assert policy.next(3.0, 1, count(FROZEN + 300)) is Collection.FREEZE
    assert policy.next(4.0, 0, count(FROZEN + 300)) is Collection.FULL
    policy.collected(FROZEN + 10)
    assert [policy.next(t, 0, count(FROZEN + 10)) for t in (5.0, 6.0, 7.0)] == [
        Collection.FREEZE
    ] * 3  # still idle
    assert policy.next(8.0, 1, count(FROZEN + 50)) is Collection.FREEZE
    assert policy.next(9.0, 0, count(FROZEN + 50)) is Collection.FULL


def test_calls_too_short_for_a_tick_count_by_what_they_left_frozen() -> None:
    policy = CollectorPolicy(now=0.0, frozen=FROZEN)
    assert (
        policy.next(1.0, 0, count(FROZEN + IDLE_GROWTH)) is Collection.FREEZE
    )  # a call or two: not worth it
    assert policy.next(2.0, 0, count(FROZEN + IDLE_GROWTH + 1)) is Collection.FULL
    policy.collected(FROZEN + 100)
    assert (
        policy.next(3.0, 0, count(FROZEN + IDLE_GROWTH)) is Collection.FREEZE
    )  # measured from what survived


def test_a_full_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        CollectorPolicy(now=0.0, frozen=0, full_interval=0)


def test_a_busy_bridge_never_counts_its_frozen_objects() -> None:
    # Counting walks the whole permanent generation: 25 ms a tick at 1,000 calls, a stall every second.
    policy = CollectorPolicy(now=0.0, frozen=FROZEN, full_interval=5.0)
    assert [policy.next(float(t), 1000, never) for t in range(1, 6)] == [Collection.FREEZE] * 4 + [
        Collection.FULL
    ]
    assert policy.next(6.0, 1000, never) is Collection.FREEZE
    assert policy.next(7.0, 0, never) is Collection.FULL  # idle after calls a tick saw: no count needed


async def test_the_collector_takes_over_from_cpythons_older_collections_and_gives_them_back() -> None:
    before = gc.get_threshold()
    collector = Collector([])
    collector.start()
    try:
        young, older, oldest = gc.get_threshold()
        assert young == YOUNG_THRESHOLD and older == oldest == NO_OLDER  # the tick collects the rest
    finally:
        collector.stop()
    assert gc.get_threshold() == before
