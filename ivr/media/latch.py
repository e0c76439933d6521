"""Which source address may carry the caller's media (strict RTP), as a sans-I/O policy.

Symmetric RTP (RFC 4961) sends back to wherever the caller's packets come from, so whoever gets latched hears
the call and drives it with DTMF. The first source is therefore chosen carefully:

- a packet from the host named in the SDP latches at once, on any port (a NAT that keeps the address but
  rewrites the port, or a phone that sends from another port than it receives on);
- a packet from any other host is dropped, unless NAT mode is on: then a foreign source latches only after
  `probation` packets in sequence (one SSRC, consecutive sequence numbers), and only while nothing is
  latched yet. An SDP host that is not a usable IP literal (a host name, 0.0.0.0) can never match, so it
  falls back to that probation as well instead of refusing all media;
- once latched, every other source is dropped for the rest of the call; only a re-INVITE (`reset`) opens the
  choice again, and then the source latched before may latch again at once (a session refresh must not put
  a NAT-ed caller back on probation).
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import Any

__all__ = ["SourceLatch", "Verdict"]

_MAX_CANDIDATES = 16  # foreign sources on probation at once; a spray from many addresses evicts the oldest


class Verdict(Enum):
    """What to do with one packet."""

    ACCEPT = "accept"  # from the latched source
    LATCH = "latch"  # from a source that has just been latched: accept, and send there from now on
    DROP = "drop"


def host_key(host: str) -> str | None:
    """A comparable form of an IP literal (IPv4-mapped IPv6 as IPv4, no zone), or None for anything else."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return None
    return str(address)


class SourceLatch:
    """Strict-RTP source selection for one call: latch to the SDP host, or to a NAT-ed source on probation."""

    __slots__ = ("_candidates", "_previous", "_sdp_key", "dropped", "latched", "nat", "probation")

    def __init__(self, sdp_host: str, *, nat: bool = False, probation: int = 5) -> None:
        if probation < 1:
            raise ValueError("probation must be at least one packet")
        self.nat = nat
        self.probation = probation
        self.dropped = 0  # packets refused because of where they came from
        self.latched: tuple[Any, ...] | None = None
        self._previous: tuple[Any, ...] | None = None  # the source latched before the last reset
        self._sdp_key = host_key(sdp_host)
        # source address -> (ssrc, next expected sequence number, packets in sequence so far)
        self._candidates: dict[tuple[Any, ...], tuple[int, int, int]] = {}

    def check(self, addr: tuple[Any, ...], ssrc: int, sequence: int) -> Verdict:
        """The verdict on one packet from `addr`."""
        if addr == self.latched:
            return Verdict.ACCEPT
        if self.latched is None:
            key = host_key(str(addr[0]))
            if (key is not None and key == self._sdp_key) or addr == self._previous:
                return self._latch(addr)
            if self.nat or self._sdp_key is None:
                return self._probe(addr, ssrc, sequence)
        self.dropped += 1
        return Verdict.DROP

    def reset(self, sdp_host: str) -> None:
        """A new SDP address (re-INVITE): forget the latch and choose again."""
        self._sdp_key = host_key(sdp_host)
        if self.latched is not None:
            self._previous = self.latched
        self.latched = None
        self._candidates.clear()

    def _latch(self, addr: tuple[Any, ...]) -> Verdict:
        self.latched = addr
        self._candidates.clear()
        return Verdict.LATCH

    def _probe(self, addr: tuple[Any, ...], ssrc: int, sequence: int) -> Verdict:
        candidates = self._candidates
        previous = candidates.pop(addr, None)
        if previous is not None and previous[0] == ssrc and previous[1] == sequence:
            count = previous[2] + 1
        else:
            count = 1  # a new source, or a break in its sequence: probation starts over
        if count >= self.probation:
            return self._latch(addr)
        if len(candidates) >= _MAX_CANDIDATES:
            del candidates[next(iter(candidates))]
        candidates[addr] = (ssrc, (sequence + 1) & 0xFFFF, count)  # re-inserted: the newest
        self.dropped += 1
        return Verdict.DROP
