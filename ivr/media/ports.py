"""RTP port allocation: even ports (RFC 3550 §11 leaves the odd one above for RTCP), in unpredictable order.

A predictable next port lets a stranger spray it before the caller's first packet arrives, so ports are
drawn at random (from the OS's CSPRNG). A released port also waits behind later releases before it can be
drawn again, so stray packets of the previous call do not land in the next one, unless the range runs dry.
"""

from __future__ import annotations

import random
from collections import deque

__all__ = ["DescriptorsExhausted", "PortAllocator", "PortsExhausted"]


class PortsExhausted(RuntimeError):
    """No free RTP port in the configured range."""


class DescriptorsExhausted(RuntimeError):
    """The process (EMFILE) or the system (ENFILE) is out of file descriptors: not a port problem, so it is
    not an OSError that a retry on the next port would swallow as a busy port."""


class PortAllocator:
    """Even RTP ports in [low, high], handed out at random and never to two calls at once."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        if not 0 < first <= high <= 65535:
            raise ValueError(f"no even port in {low}-{high}")
        self._random = random.SystemRandom()
        self._free = list(range(first, high + 1, 2))  # drawn from at random
        self._cooling: deque[int] = deque()  # released, oldest first; back into _free after _quarantine more
        self._quarantine = len(self._free) // 2
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def acquire(self) -> int:
        free = self._free
        if free:
            index = self._random.randrange(len(free))
            free[index], free[-1] = free[-1], free[index]  # swap-remove: O(1)
            port = free.pop()
        elif self._cooling:
            port = self._cooling.popleft()  # the range is nearly all in use: the longest-released port
        else:
            raise PortsExhausted(f"all {len(self._in_use)} RTP ports in use")
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        if port not in self._in_use:
            return
        self._in_use.remove(port)
        self._cooling.append(port)
        while len(self._cooling) > self._quarantine:
            self._free.append(self._cooling.popleft())
