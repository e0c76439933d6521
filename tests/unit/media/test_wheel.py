"""TimerWheel: every session's deadlines in slots, none run early, in time order, cancellable."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.media.wheel import TimerWheel


def names(timers: list) -> list[str]:
    return [timer.callback() for timer in timers]


def test_nothing_runs_before_its_time_and_everything_by_the_end_of_its_slot() -> None:
    wheel = TimerWheel(tick=0.001)
    wheel.schedule(10.0202, lambda: "keepalive")
    assert wheel.next_deadline() == pytest.approx(10.021)
    assert wheel.expire(10.0201) == []
    assert wheel.expire(10.0205) == []  # due, but its slot has not ended: never early
    assert names(wheel.expire(10.021)) == ["keepalive"]
    assert wheel.next_deadline() is None and len(wheel) == 0


def test_due_timers_come_out_earliest_first_and_in_order_within_a_slot() -> None:
    wheel = TimerWheel(tick=0.001)
    for when, name in ((5.0104, "c"), (5.0021, "a"), (5.0025, "b"), (5.0101, "c2"), (7.0, "later")):
        wheel.schedule(when, lambda name=name: name)
    assert names(wheel.expire(5.02)) == ["a", "b", "c", "c2"]  # a late run catches up in order
    assert wheel.next_deadline() == pytest.approx(7.0)
    assert len(wheel) == 1


def test_cancelled_timers_never_run() -> None:
    wheel = TimerWheel(tick=0.005)
    keep = wheel.schedule(1.0, lambda: "kept")
    gone = wheel.schedule(1.0, lambda: "cancelled")
    gone.cancel()
    assert names(wheel.expire(1.0)) == ["kept"]
    assert not keep.cancelled


def test_a_timer_scheduled_while_expiring_waits_for_its_own_slot() -> None:
    wheel = TimerWheel(tick=0.001)
    wheel.schedule(0.02, lambda: "frame 1")
    due = wheel.expire(0.02)
    wheel.schedule(0.04, lambda: "frame 2")  # what a 20 ms sender does from its callback
    assert names(due) == ["frame 1"]
    assert wheel.expire(0.039) == []
    assert names(wheel.expire(0.04)) == ["frame 2"]


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TimerWheel(tick=0)


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_every_timer_runs_once_never_early_at_most_a_tick_late(deadlines: list[float]) -> None:
    wheel = TimerWheel(tick=0.01)
    for i, when in enumerate(deadlines):
        wheel.schedule(when, lambda i=i: i)
    seen: list[int] = []
    now = 0.0
    while wheel.next_deadline() is not None:
        now = max(now, wheel.next_deadline() or now)
        for timer in wheel.expire(now):
            assert now >= timer.when - 1e-9
            assert now <= timer.when + 0.01 + 1e-9
            seen.append(timer.callback())
    assert sorted(seen) == list(range(len(deadlines)))


def test_a_cadence_runs_each_callback_once_per_period_in_its_phase() -> None:
    from ivr.media.wheel import Cadence

    ring = Cadence(period=0.02, tick=0.001)
    ring.add(10.0032, lambda: "a")  # phase: the slot ending at 10.004
    ring.add(10.0151, lambda: "b")  # the slot ending at 10.016
    assert ring.next_deadline(10.0031) == pytest.approx(10.004)
    seen: list[tuple[float, str]] = []
    now = 10.004
    while now < 10.1:
        seen += [(round(now, 3), name) for name in names(ring.expire(now))]
        now = round(now + 0.001, 3)
    assert [t for t, name in seen if name == "a"] == [10.004, 10.024, 10.044, 10.064, 10.084]
    assert [t for t, name in seen if name == "b"] == [10.016, 10.036, 10.056, 10.076, 10.096]


def test_a_cadence_catches_up_once_after_a_stall_and_drops_cancelled_callbacks() -> None:
    from ivr.media.wheel import Cadence

    ring = Cadence(period=0.02, tick=0.001)
    kept = ring.add(1.0005, lambda: "kept")
    gone = ring.add(1.0105, lambda: "gone")
    assert ring.expire(1.0) == []  # the first run: the current slot only
    assert names(ring.expire(1.02)) == ["kept", "gone"]  # a late run catches up, in slot order
    assert names(ring.expire(1.5)) in (["kept", "gone"], ["gone", "kept"])  # a 480 ms stall: once each
    gone.cancel()
    assert names(ring.expire(1.52)) == ["kept"]
    assert len(ring) == 1 and not kept.cancelled
    assert ring.expire(1.52) == []  # nothing runs twice for one slot
    kept.cancel()
    ring.expire(1.54)
    assert len(ring) == 0 and ring.next_deadline(1.54) is None


def test_a_cadence_period_must_hold_a_tick() -> None:
    from ivr.media.wheel import Cadence

    with pytest.raises(ValueError):
        Cadence(period=0.0005, tick=0.001)
