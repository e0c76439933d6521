"""LoopLag: the loop's smoothed lateness, overloaded past the threshold, back under half of it."""

import pytest

from ivr.overload import LoopLag


def test_one_late_timer_is_not_overload_a_lasting_lag_is_and_it_clears_with_hysteresis() -> None:
    lag = LoopLag(threshold=0.1, smoothing=0.25)
    assert lag.sample(0.2) is False and not lag.overloaded  # one 200 ms hiccup (a GC pass): 50 ms smoothed
    changes = [lag.sample(0.2) for _ in range(5)]
    assert lag.overloaded and changes.count(True) == 1 and lag.peak == pytest.approx(0.2)
    lag.sample(0.07)
    lag.sample(0.07)
    assert lag.overloaded  # under the threshold, not yet under half of it: no flapping call by call
    while lag.overloaded:
        lag.sample(0.0)
    assert lag.lag < 0.05
    assert lag.sample(-0.001) is False and lag.lag >= 0.0  # a timer a hair early is no lag


@pytest.mark.parametrize(("threshold", "smoothing"), [(0.0, 0.25), (0.1, 0.0), (0.1, 1.5)])
def test_nonsense_settings_are_refused(threshold: float, smoothing: float) -> None:
    with pytest.raises(ValueError):
        LoopLag(threshold, smoothing)
