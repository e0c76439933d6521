"""A small registrar (RFC 3261 §10.3) with bounded memory, sans-I/O.

Decisions:
- Expires above `max_expires` is shortened to it (§10.3 step 7 lets the registrar shorten); a non-zero
  Expires below `min_expires` is answered 423 Interval Too Brief with Min-Expires (§10.3 step 7, §20.23).
- At most `max_aors` AORs and `max_bindings_per_aor` contacts per AOR: a REGISTER that would add more is
  refused (503 + Retry-After for the table, 403 for one AOR's list), leaving what exists untouched.
- Bindings expire on a heap of deadlines; `purge(now)` drops them and their empty AORs, so memory comes back.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ivr.sip.events import Peer, Registered
from ivr.sip.message import MAX_CSEQ, Request, SipParseError, parse_name_addr, parse_uri

__all__ = ["RegisterOutcome", "Registrar", "RegistrarLimits"]


@dataclass(frozen=True)
class RegistrarLimits:
    """Bounds on what the registrar keeps."""

    max_aors: int = 10000
    max_bindings_per_aor: int = 10
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    retry_after: int = 60


@dataclass(frozen=True)
class RegisterOutcome:
    """The final response to send and the bindings that changed."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    events: tuple[Registered, ...] = field(default=())


def _expires(text: str | None, default: int) -> int:
    # Overlarge or malformed values fall back to the default (RFC 4475 scalar02 discussion); isascii() because
    # isdigit() also takes "²" (octets C2 B2), which int() refuses.
    if text is None:
        return default
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) <= MAX_CSEQ else default


class Registrar:
    """AOR -> contact bindings with expiry; time is passed in."""

    def __init__(self, limits: RegistrarLimits | None = None) -> None:
        self.limits = limits or RegistrarLimits()
        self._bindings: dict[str, dict[str, float]] = {}  # AOR -> contact URI -> expiry time
        self._deadlines: list[tuple[float, str, str]] = []  # (expiry, AOR, contact); stale entries skipped

    def __len__(self) -> int:
        return sum(len(b) for b in self._bindings.values())

    @property
    def aors(self) -> int:
        return len(self._bindings)

    def bindings(self, aor: str, now: float) -> dict[str, int]:
        """Contact URI -> seconds left, for `aor`."""
        return {uri: int(when - now) for uri, when in self._bindings.get(aor, {}).items() if when > now}

    def register(self, req: Request, peer: Peer, now: float) -> RegisterOutcome:
        self.purge(now)
        limits = self.limits
        to = parse_uri(parse_name_addr(req.headers.get("To") or "").uri)
        if not to.is_sip:
            return RegisterOutcome(400, "AOR must be a SIP or SIPS URI")  # §10.3 step 3, RFC 4475 unksm2
        aor = f"{to.scheme.lower()}:{to.user + '@' if to.user else ''}{to.host.lower()}"
        default = min(_expires(req.headers.get("Expires"), limits.default_expires), limits.max_expires)
        contacts = req.headers.get_all("Contact")
        current = self._bindings.get(aor, {})
        if any(c.strip() == "*" for c in contacts):
            if len(contacts) != 1 or default != 0:
                return RegisterOutcome(400, "Contact * needs Expires: 0")  # §10.3 step 6
            self._bindings.pop(aor, None)
            return RegisterOutcome(200, events=tuple(Registered(aor, uri, 0, peer) for uri in current))
        wanted: dict[str, int] = {}
        for contact in contacts:
            try:
                addr = parse_name_addr(contact)
            except SipParseError:
                return RegisterOutcome(400, "Bad Contact")
            expires = min(_expires(addr.param("expires"), default), limits.max_expires)
            if 0 < expires < limits.min_expires:
                return RegisterOutcome(423, headers=(("Min-Expires", str(limits.min_expires)),))
            wanted[addr.uri] = expires
        added = [uri for uri, expires in wanted.items() if expires and uri not in current]
        if added and not current and len(self._bindings) >= limits.max_aors:
            return RegisterOutcome(503, "Registrar Full", (("Retry-After", str(limits.retry_after)),))
        removed = sum(1 for uri, expires in wanted.items() if not expires and uri in current)
        if len(current) + len(added) - removed > limits.max_bindings_per_aor:
            return RegisterOutcome(403, "Too Many Bindings")
        bindings = self._bindings.setdefault(aor, {})
        for uri, expires in wanted.items():
            if expires == 0:
                bindings.pop(uri, None)
            else:
                bindings[uri] = now + expires
                heapq.heappush(self._deadlines, (now + expires, aor, uri))
        if not bindings:
            del self._bindings[aor]
        if len(self._deadlines) > 4 * len(self) + 1024:
            self._compact()  # refreshes leave stale deadlines behind: keep the heap near the bindings' size
        headers = tuple(("Contact", f"<{uri}>;expires={int(when - now)}") for uri, when in bindings.items())
        events = tuple(Registered(aor, uri, expires, peer) for uri, expires in wanted.items())
        return RegisterOutcome(200, headers=headers, events=events)

    def next_expiry(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def purge(self, now: float) -> int:
        """Drop the bindings that have expired by `now`; returns how many."""
        dropped = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            when, aor, uri = heapq.heappop(self._deadlines)
            bindings = self._bindings.get(aor)
            if bindings is None or bindings.get(uri) != when:
                continue  # refreshed or removed since
            del bindings[uri]
            dropped += 1
            if not bindings:
                del self._bindings[aor]
        return dropped

    def _compact(self) -> None:
        self._deadlines = [
            (when, aor, uri) for aor, bindings in self._bindings.items() for uri, when in bindings.items()
        ]
        heapq.heapify(self._deadlines)
