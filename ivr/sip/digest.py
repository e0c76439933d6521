"""SIP digest authentication for a UAS (RFC 3261 §22.4, RFC 7616 semantics, RFC 8760 algorithms), sans-I/O.

Decisions:
- Challenges offer SHA-256 first, then MD5 (RFC 8760 §2.4: one WWW-Authenticate per algorithm, in order of
  preference); both with qop="auth" only. `algorithms` changes the list and order: some UACs read only the
  first challenge and give up on SHA-256 (sipp 3.6 "authentication must use MD5", sipvicious), so a trunk of
  such peers is served ["MD5"] or ["MD5", "SHA-256"]. Only the algorithms offered are accepted.
- Requests without qop (RFC 2069 style) are refused: without nc there is no replay protection.
- Nonces are stateless: hex timestamp + HMAC-SHA-256(per-process secret, timestamp, source host). Nothing is
  stored per challenge, so a flood of unauthenticated requests costs no memory, and a nonce issued to one host
  does not work from another. After a restart (a new secret) a right response on an old nonce is "stale".
- A nonce older than `nonce_lifetime` gets a fresh challenge with stale=true (RFC 7616 §3.3), so a client with
  the right password retries without asking its user.
- Replay protection: after a request verifies, the highest nc seen per nonce is kept; a request whose nc is
  not higher is refused. Only verified requests create entries, and entries leave with their nonce's lifetime
  (and a hard cap), so unauthenticated sources cannot grow this table.
- Digests are compared with `hmac.compare_digest`; the password is only ever an argument, never stored here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["ALGORITHMS", "Credentials", "DigestAuthenticator", "DigestOutcome", "parse_authorization"]

# RFC 8760 §2.2 names -> hash functions; the key order is the order of our challenges.
ALGORITHMS: dict[str, str] = {"SHA-256": "sha256", "MD5": "md5"}
DEFAULT_NONCE_LIFETIME = 300.0
_MAX_TRACKED_NONCES = 65536
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')


class DigestOutcome(Enum):
    """What checking a request's Authorization headers found."""

    ACCEPTED = "accepted"
    MISSING = "missing"  # no Authorization for our realm: challenge
    STALE = "stale"  # right password, expired nonce: challenge with stale=true
    REJECTED = "rejected"  # wrong user, password, nonce, uri, algorithm or qop
    REPLAYED = "replayed"  # a valid response whose nc was already used


@dataclass(frozen=True)
class Credentials:
    """A username and its password; the password never appears in a repr."""

    username: str
    password: str = field(repr=False)


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a `Digest ...` credentials value (RFC 3261 §25.1 quoted-strings unescaped), or None
    for another scheme or a value that does not parse."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            return None
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
        pos = match.end()
    return params


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(ALGORITHMS[algorithm], text.encode("utf-8")).hexdigest()


def expected_response(
    params: dict[str, str], method: str, password: str, algorithm: str, *, username: str | None = None
) -> str:
    """The request-digest for qop=auth (RFC 7616 §3.4.1): H(H(A1):nonce:nc:cnonce:qop:H(A2))."""
    user = params.get("username", "") if username is None else username
    ha1 = _hash(algorithm, f"{user}:{params.get('realm', '')}:{password}")
    ha2 = _hash(algorithm, f"{method}:{params.get('uri', '')}")
    return _hash(
        algorithm,
        f"{ha1}:{params.get('nonce', '')}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}",
    )


class DigestAuthenticator:
    """Issues digest challenges and verifies credentials for one realm; time and source host are passed in."""

    def __init__(
        self,
        realm: str,
        *,
        secret: bytes | None = None,
        nonce_lifetime: float = DEFAULT_NONCE_LIFETIME,
        max_tracked: int = _MAX_TRACKED_NONCES,
        algorithms: tuple[str, ...] = tuple(ALGORITHMS),
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"digest algorithms must be among {list(ALGORITHMS)}: {list(algorithms)}")
        self.realm = realm
        self.algorithms = algorithms
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._max_tracked = max_tracked
        self._last_nc: OrderedDict[str, int] = OrderedDict()  # nonce -> highest nc verified, oldest first

    def challenges(self, host: str, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """WWW-Authenticate headers for a 401, one per algorithm in order of preference (RFC 8760 §2.4)."""
        nonce = self._nonce(host, now)
        extra = ", stale=true" if stale else ""
        realm = self.realm.replace("\\", "\\\\").replace('"', '\\"')
        return [
            (
                "WWW-Authenticate",
                f'Digest realm="{realm}", nonce="{nonce}", algorithm={name}, qop="auth"{extra}',
            )
            for name in self.algorithms
        ]

    def verify(
        self,
        method: str,
        uri: str,
        authorizations: Iterable[str],
        credentials: Credentials,
        host: str,
        now: float,
    ) -> DigestOutcome:
        """Check the Authorization header values of a request from `host` against `credentials`."""
        outcome = DigestOutcome.MISSING
        for value in authorizations:
            params = parse_authorization(value)
            if params is None or params.get("realm") != self.realm:
                continue
            outcome = self._verify_one(params, method, uri, credentials, host, now)
            if outcome is DigestOutcome.ACCEPTED:
                return outcome
        return outcome

    def _verify_one(
        self, params: dict[str, str], method: str, uri: str, credentials: Credentials, host: str, now: float
    ) -> DigestOutcome:
        algorithm = params.get("algorithm", "MD5").upper()  # absent means MD5 (RFC 7616 §3.3)
        nc_text = params.get("nc", "")
        if (
            algorithm not in self.algorithms
            or params.get("qop", "").lower() != "auth"
            or not params.get("cnonce")
            or len(nc_text) != 8
            or not all(c in "0123456789abcdefABCDEF" for c in nc_text)
            or params.get("uri") != uri  # the digest-uri is the Request-URI (§22.4)
        ):
            return DigestOutcome.REJECTED
        issued = self._issued_at(params.get("nonce", ""), host)
        # The username is compared in constant time too: its existence is no business of a scanner.
        user_ok = hmac.compare_digest(params.get("username", "").encode(), credentials.username.encode())
        wanted = expected_response(
            params, method, credentials.password, algorithm, username=credentials.username
        )
        digest_ok = hmac.compare_digest(params.get("response", "").lower().encode(), wanted.encode())
        if not (user_ok and digest_ok):
            return DigestOutcome.REJECTED
        if issued is None or issued > now or now - issued > self.nonce_lifetime:
            # The password is right but the nonce is not one of ours now (expired, another process's secret,
            # issued to another host): a fresh challenge with stale=true lets the UAC retry at once.
            return DigestOutcome.STALE
        nonce, nc = params["nonce"], int(nc_text, 16)
        if nc <= self._last_nc.get(nonce, 0):
            return DigestOutcome.REPLAYED
        self._remember(nonce, nc, now)
        return DigestOutcome.ACCEPTED

    # ---- nonces --------------------------------------------------------------------------------------------

    def _mac(self, stamp: str, host: str) -> str:
        return hmac.new(self._secret, f"{stamp}:{host}".encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce(self, host: str, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        return f"{stamp}.{self._mac(stamp, host)}"

    def _issued_at(self, nonce: str, host: str) -> float | None:
        stamp, _, mac = nonce.partition(".")
        if not stamp or len(stamp) > 16 or not all(c in "0123456789abcdef" for c in stamp):
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(stamp, host).encode()):
            return None
        return int(stamp, 16) / 1000

    def _remember(self, nonce: str, nc: int, now: float) -> None:
        self._last_nc[nonce] = nc  # keeps its first place: the order stays roughly the order of issue
        # Oldest first: drop nonces past their lifetime (they are refused as stale anyway), then any excess.
        while self._last_nc:
            oldest = next(iter(self._last_nc))
            issued = int(oldest.partition(".")[0], 16) / 1000
            if now - issued <= self.nonce_lifetime and len(self._last_nc) <= self._max_tracked:
                break
            del self._last_nc[oldest]

    @property
    def tracked_nonces(self) -> int:
        """How many nonces have an nc on record (bounded)."""
        return len(self._last_nc)
