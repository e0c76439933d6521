"""Session timer negotiation and deadlines (RFC 4028), sans-I/O: header values in, intervals and times out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.sip.message import Headers

__all__ = [
    "DEFAULT_SESSION_EXPIRES",
    "MIN_SE",
    "IntervalTooBrief",
    "SessionExpires",
    "SessionTimer",
    "negotiate_uas",
    "parse_delta",
    "parse_session_expires",
    "supports_timer",
]

MIN_SE = 90  # the smallest interval RFC 4028 §4 allows, and our default minimum
DEFAULT_SESSION_EXPIRES = 1800  # what we ask for when the caller supports timers but names no interval (§4)

Refresher = Literal["uac", "uas"]


@dataclass(frozen=True)
class SessionExpires:
    """A parsed Session-Expires value: delta-seconds and the optional refresher parameter (§4)."""

    interval: int
    refresher: Refresher | None


@dataclass(frozen=True)
class IntervalTooBrief:
    """The request's Session-Expires is below our minimum: answer 422 with `Min-SE: min_se` (§9)."""

    min_se: int


@dataclass
class SessionTimer:
    """A dialog's running session timer: the interval and which side refreshes."""

    interval: int
    we_refresh: bool
    peer_supports: bool  # the peer listed "timer" in Supported/Require, so it may be asked to refresh

    def response_value(self) -> str:
        """Session-Expires for our 2xx to the peer's request: in that transaction we are the UAS."""
        return f"{self.interval};refresher={'uas' if self.we_refresh else 'uac'}"

    def request_value(self) -> str:
        """Session-Expires for a refresh we send: in that transaction we are the UAC."""
        return f"{self.interval};refresher={'uac' if self.we_refresh else 'uas'}"

    def refresh_due(self, since: float) -> float:
        """When the refresher sends its refresh: half the interval (§10)."""
        return since + self.interval / 2

    def expires_at(self, since: float) -> float:
        """When the session is given up without a refresh: the interval less min(32 s, interval/3) (§10)."""
        return since + self.interval - min(32.0, self.interval / 3)


def parse_delta(text: str | None) -> int | None:
    """delta-seconds, ignoring parameters (Min-SE may carry generic-params); None if absent or malformed."""
    if text is None:
        return None
    value = text.split(";")[0].strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def parse_session_expires(text: str | None) -> SessionExpires | None:
    interval = parse_delta(text)
    if text is None or interval is None:
        return None
    refresher: Refresher | None = None
    for param in text.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "refresher":
            value = value.strip().lower()
            if value == "uac":
                refresher = "uac"
            elif value == "uas":
                refresher = "uas"
    return SessionExpires(interval, refresher)


def supports_timer(headers: Headers) -> bool:
    tags = [*headers.get_all("Supported"), *headers.get_all("Require")]
    return any(tag.lower() == "timer" for tag in tags)


def negotiate_uas(
    headers: Headers,
    *,
    min_se: int,
    default: int,
    current: SessionTimer | None = None,
) -> SessionTimer | IntervalTooBrief | None:
    """The session timer our 2xx sets up for a request the peer sent us (§9); None: no timer.

    `current` is the dialog's timer for a refresh: a refresh without Session-Expires keeps it.
    """
    peer_supports = supports_timer(headers) or (current is not None and current.peer_supports)
    expires = parse_session_expires(headers.get("Session-Expires"))
    if expires is None:
        if current is not None:
            return SessionTimer(current.interval, current.we_refresh, peer_supports or current.peer_supports)
        if not peer_supports:
            return None  # a plain call: nothing changes
        their_min = parse_delta(headers.get("Min-SE")) or 0
        return SessionTimer(max(default, min_se, their_min), we_refresh=False, peer_supports=True)
    if expires.interval < min_se:
        return IntervalTooBrief(min_se)
    # A UAC without timer support cannot be made the refresher: then we refresh (§9).
    we_refresh = not peer_supports or expires.refresher == "uas"
    return SessionTimer(expires.interval, we_refresh, peer_supports)
