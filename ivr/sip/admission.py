"""Who may start a call or register, decided before any SIP state exists, sans-I/O.

Decisions:
- A request is matched to a trunk by its source address (first trunk whose CIDRs contain it). No trunk: 403.
  The source is the packet's address, not anything in Via, which the sender writes.
- Refusals are stateless (RFC 3261 §8.2.7): one response per request, no transaction, no Timer G
  retransmissions, no dialog, no 100 Trying, no event for the application (so no CDR). A spoofed source
  therefore gets exactly one response per request we receive: no amplification.
- Load refusals are 503 with Retry-After (§21.5.4): an overloaded event loop (`ivr.overload`), the global cap
  (`max_calls` live dialogs), the number of
  INVITEs from one source that have not completed with an ACK yet (pending or answered, not confirmed; a
  flood that never ACKs holds at most this many), and a token bucket of INVITEs per second per source.
- Token buckets are kept only for sources that passed the allow-list, at most `max_sources` of them (least
  recently used dropped first: a dropped bucket is a full one, the same as a source never seen).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ivr.sip.digest import Credentials, DigestAuthenticator, DigestOutcome

__all__ = ["Admission", "Limits", "Refusal", "Trunk"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Trunk:
    """A named set of source networks; with credentials, its INVITEs and REGISTERs must carry digest auth."""

    name: str
    networks: tuple[Network, ...]
    credentials: Credentials | None = field(default=None, repr=False)

    @classmethod
    def from_cidrs(cls, name: str, cidrs: Iterable[str], credentials: Credentials | None = None) -> Trunk:
        return cls(name, tuple(ipaddress.ip_network(c, strict=False) for c in cidrs), credentials)

    def contains(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


OPEN_TRUNK = Trunk.from_cidrs("any", ["0.0.0.0/0", "::/0"])


@dataclass(frozen=True)
class Limits:
    """Admission limits; `retry_after` is the Retry-After of 503s (seconds)."""

    max_calls: int = 1000
    max_unacked_per_source: int = 50
    call_rate: float = 20.0  # INVITEs per second per source, sustained
    call_burst: int = 40  # ... and in a burst
    retry_after: int = 5
    max_sources: int = 4096


@dataclass(frozen=True)
class Refusal:
    """A stateless final response to send instead of admitting the request; `cause` names it for metrics."""

    status: int
    reason: str | None = None
    retry_after: int | None = None
    cause: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # e.g. the WWW-Authenticate challenges of a 401


class Admission:
    """Trunk matching, per-source INVITE limits and the live-call count the limits are checked against."""

    def __init__(self, trunks: Sequence[Trunk] = (OPEN_TRUNK,), limits: Limits | None = None) -> None:
        self.trunks = tuple(trunks)
        self.limits = limits or Limits()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # host -> (tokens, at)
        self._live: dict[str, str] = {}  # call_id -> source host
        self._unacked: dict[str, str] = {}  # call_id -> source host, until the ACK of the first 2xx
        self._unacked_per_source: Counter[str] = Counter()

    def trunk_for(self, host: str) -> Trunk | None:
        return next((t for t in self.trunks if t.contains(host)), None)

    def admits(self, host: str) -> bool:
        """Whether `host` is in any trunk: the transports close a connection from anywhere else at accept."""
        return self.trunk_for(host) is not None

    @property
    def live_calls(self) -> int:
        return len(self._live)

    def unacked_from(self, host: str) -> int:
        return self._unacked_per_source[host]

    def decide(
        self,
        method: str,
        uri: str,
        authorizations: Sequence[str],
        host: str,
        now: float,
        authenticator: DigestAuthenticator,
        *,
        draining: bool = False,
        drain_retry_after: int = 30,
        overloaded: bool = False,
    ) -> Refusal | None:
        """The refusal for a new out-of-dialog request from `host`, or None to go on and create state.

        Order: trunk allow-list (403), drain (503), digest (401, never for OPTIONS), then overload, capacity
        and call rate (503). Rate after authentication: a token is a call, so the 401 round trip of each
        authenticated call does not halve a trunk's rate, and an unauthenticated flood cannot spend a trunk's
        tokens (each of its requests still gets one stateless 401 and creates nothing). OPTIONS answers only
        the allowed sources, without a challenge (a dispatcher's keepalive probe carries no credentials), so
        a scanner outside the allow-list learns nothing it would not from any 403; other methods are the
        UA's business.
        """
        if method not in ("INVITE", "REGISTER", "OPTIONS"):
            return None
        trunk = self.trunk_for(host)
        if trunk is None:
            return Refusal(403, cause="not-in-trunk")
        if method == "OPTIONS":
            # While draining or overloaded the probe says "unavailable", so a dispatcher stops sending calls
            # (RFC 3261 §11) until it answers 200 again.
            if draining:
                return Refusal(503, "Draining", drain_retry_after, "draining")
            return Refusal(503, "Overloaded", self.limits.retry_after, "overload") if overloaded else None
        if method == "INVITE" and draining:
            return Refusal(503, "Draining", drain_retry_after, "draining")
        if trunk.credentials is not None:
            outcome = authenticator.verify(method, uri, authorizations, trunk.credentials, host, now)
            if outcome is not DigestOutcome.ACCEPTED:
                challenges = authenticator.challenges(host, now, stale=outcome is DigestOutcome.STALE)
                return Refusal(401, cause=f"digest-{outcome.value}", headers=tuple(challenges))
        if method == "INVITE" and overloaded:
            return Refusal(503, "Overloaded", self.limits.retry_after, "overload")
        return self.check_invite(host, now) if method == "INVITE" else None

    def check_invite(self, host: str, now: float) -> Refusal | None:
        """Capacity and rate for a new INVITE from an allowed `host`; takes a token when admitted."""
        limits = self.limits
        if len(self._live) >= limits.max_calls:
            return Refusal(503, None, limits.retry_after, "max-calls")
        if self._unacked_per_source[host] >= limits.max_unacked_per_source:
            return Refusal(503, None, limits.retry_after, "unacked-per-source")
        tokens, at = self._buckets.pop(host, (float(limits.call_burst), now))
        tokens = min(float(limits.call_burst), tokens + (now - at) * limits.call_rate)
        admitted = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if admitted else tokens, now)
        while len(self._buckets) > limits.max_sources:
            self._buckets.popitem(last=False)
        return None if admitted else Refusal(503, None, limits.retry_after, "call-rate")

    # ---- the UA reports each dialog's progress -------------------------------------------------------------

    def opened(self, call_id: str, host: str) -> None:
        self._live[call_id] = host
        self._unacked[call_id] = host
        self._unacked_per_source[host] += 1

    def confirmed(self, call_id: str) -> None:
        host = self._unacked.pop(call_id, None)
        if host is not None:
            self._unacked_per_source[host] -= 1
            if not self._unacked_per_source[host]:
                del self._unacked_per_source[host]

    def closed(self, call_id: str) -> None:
        self.confirmed(call_id)
        self._live.pop(call_id, None)
