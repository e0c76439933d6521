"""PortAllocator: even ports, unpredictable order, never twice at once."""

import itertools

import pytest

from ivr.media.ports import PortAllocator, PortsExhausted


def test_hands_out_every_even_port_once_then_is_exhausted() -> None:
    ports = PortAllocator(10001, 10040)
    got = [ports.acquire() for _ in range(20)]
    assert sorted(got) == list(range(10002, 10041, 2))
    assert ports.in_use == 20
    with pytest.raises(PortsExhausted):
        ports.acquire()


def test_order_is_unpredictable() -> None:
    # 500 ports: the chance that 20 random draws come out ascending, or that two allocators agree, is nil.
    first = [PortAllocator(20000, 20999).acquire() for _ in range(20)]
    assert len(set(first)) > 1
    ports = PortAllocator(20000, 20999)
    sequence = [ports.acquire() for _ in range(20)]
    assert sequence != sorted(sequence)
    steps = {b - a for a, b in itertools.pairwise(sequence)}
    assert steps != {2}


def test_released_port_returns_but_not_at_once_while_others_are_free() -> None:
    ports = PortAllocator(30000, 30199)  # 100 ports
    port = ports.acquire()
    ports.release(port)
    again = [ports.acquire() for _ in range(49)]
    assert port not in again  # quarantined behind half the range
    assert ports.in_use == 49
    for p in again:
        ports.release(p)
    rest = [ports.acquire() for _ in range(100)]
    assert sorted(rest) == list(range(30000, 30200, 2))  # every port, the released ones included


def test_small_range_reuses_the_longest_released_port_rather_than_failing() -> None:
    ports = PortAllocator(4000, 4003)  # 4000 and 4002
    a, b = ports.acquire(), ports.acquire()
    ports.release(a)
    assert ports.acquire() == a
    ports.release(b)
    ports.release(b)  # releasing twice is harmless
    assert ports.acquire() == b
    with pytest.raises(PortsExhausted):
        ports.acquire()


def test_no_even_port_is_an_error() -> None:
    with pytest.raises(ValueError):
        PortAllocator(10001, 10001)
