"""SIP URIs, name-addr values and Via values (RFC 3261 §19.1, §20.10, §20.42, §25.1).

Values are kept as the raw text the peer sent (escapes untouched, RFC 4475 §3.1.1.3): we only split them into
parts, never unescape, so a URI round-trips exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.sip.message import Request

__all__ = [
    "NameAddr",
    "SipParseError",
    "SipTooLargeError",
    "SipUri",
    "SipVersionError",
    "Via",
    "is_token",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "split_outside",
]


class SipParseError(ValueError):
    """A message (or a value in it) does not follow the RFC 3261 grammar; `status` is what to answer."""

    status = 400

    def __init__(self, reason: str, line: str | None = None, partial: Request | None = None) -> None:
        super().__init__(reason if line is None else f"{reason}: {line[:200]!r}")
        self.reason = reason
        self.line = line
        self.partial = partial


class SipVersionError(SipParseError):
    """The start line names a SIP version other than 2.0: answer 505 (RFC 4475 §3.1.2.16)."""

    status = 505


class SipTooLargeError(SipParseError):
    """A body larger than we take (413, RFC 3261 §21.4.11) or a header section too large (513, §21.5.14)."""

    def __init__(
        self, reason: str, line: str | None = None, partial: Request | None = None, *, status: int = 413
    ) -> None:
        super().__init__(reason, line, partial)
        self.status = status


_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+")
_URI_PARAM_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
_HOSTISH_RE = re.compile(r"[0-9A-Za-z:.\[\]\-]+")
_LWS = " \t"


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def split_outside(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings and <> (RFC 3261 §7.3.1: commas inside those are not separators).

    Raises SipParseError on an unterminated quoted string.
    """
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_angle = False
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _end_of_quoted(text, i)
            continue
        if ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _end_of_quoted(text: str, start: int) -> int:
    """Index just past the closing quote of the quoted-string starting at `start` (quoted-pair aware)."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError("unterminated quoted string", text)


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1], flags=re.DOTALL)


def parse_params(text: str, *, what: str) -> dict[str, str | None]:
    """`;name[=value]` list; LWS around ; and = is allowed (RFC 3261 §25.1 SEMI/EQUAL, RFC 4475 wsinv)."""
    params: dict[str, str | None] = {}
    text = text.strip(_LWS)
    if not text:
        return params
    if not text.startswith(";"):
        raise SipParseError(f"bad {what} parameters", text)
    plain = _URI_PARAM_RE if what == "URI" else _HOSTISH_RE
    for raw in split_outside(text[1:], ";"):
        name, eq, value = raw.partition("=")
        name = name.strip(_LWS)
        if not (is_token(name) or (what == "URI" and plain.fullmatch(name))):
            raise SipParseError(f"bad {what} parameter", raw)
        if eq:
            value = value.strip(_LWS)
            if not value:
                raise SipParseError(f"empty {what} parameter value", raw)
            if value.startswith('"'):
                if _end_of_quoted(value, 0) != len(value):
                    raise SipParseError(f"bad quoted {what} parameter", raw)
            elif not (is_token(value) or plain.fullmatch(value)):
                raise SipParseError(f"bad {what} parameter value", raw)
            params[name] = value
        else:
            params[name] = None
    return params


def _param(params: dict[str, str | None], name: str) -> str | None:
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None


def _has_param(params: dict[str, str | None], name: str) -> bool:
    return any(key.lower() == name for key in params)


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    """sip:/sips: URI split into parts (raw, still escaped). Other schemes keep their text in `opaque`."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    password: str | None = None
    opaque: str | None = None

    def param(self, name: str) -> str | None:
        return _param(self.params, name.lower())

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name.lower())

    @property
    def is_sip(self) -> bool:
        return self.scheme.lower() in ("sip", "sips")

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers is not None else ""
        return f"{self.scheme}:{userinfo}{host}{port}{_format_params(self.params)}{headers}"


def parse_uri(text: str) -> SipUri:
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme) or not rest:
        raise SipParseError("bad URI", text)
    if any(ch in rest for ch in ' \t\r\n<>"'):
        raise SipParseError("bad character in URI", text)
    if scheme.lower() not in ("sip", "sips"):
        return SipUri(scheme=scheme, user=None, host="", opaque=rest)
    user: str | None = None
    password: str | None = None
    # '@' is never legal unescaped after the userinfo (§25.1), so the first one ends it even when the user
    # part holds ';', '?' or '/' (RFC 4475 intmeth, semiuri).
    userinfo, at, hostpart = rest.partition("@")
    if at:
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipParseError("empty user in URI", text)
    else:
        hostpart = rest
    hostpart, qmark, headers = hostpart.partition("?")
    hostport, _, params_text = hostpart.partition(";")
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(\d{1,5}))?", hostport)
    if match is None:
        raise SipParseError("bad host in URI", text)
    host = match.group(1)
    if host.startswith("["):
        host = host[1:-1]
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and port > 65535:
        raise SipParseError("bad port in URI", text)
    params = parse_params(";" + params_text, what="URI") if params_text else {}
    return SipUri(scheme, user, host, port, params, headers if qmark else None, password)


@dataclass
class NameAddr:
    """name-addr or addr-spec (From/To/Contact/Route): `uri` is the raw URI, `params` the header params."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name.lower())

    def __str__(self) -> str:
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    s = text.strip(_LWS)
    display: str | None = None
    if s.startswith('"'):
        end = _end_of_quoted(s, 0)
        display = _unquote(s[:end])
        s = s[end:].lstrip(_LWS)
        if not s.startswith("<"):
            raise SipParseError("quoted display name without <URI>", text)
    lt = s.find("<")
    if lt >= 0:
        words = s[:lt].strip(_LWS)
        if words:
            # Unquoted display names are tokens and LWS only (RFC 4475 baddn); "name<uri>" is fine (lwsdisp).
            if not all(is_token(w) for w in words.split()):
                raise SipParseError("bad display name", text)
            display = " ".join(words.split())
        gt = s.find(">", lt)
        if gt < 0:
            raise SipParseError("missing >", text)
        # Spaces inside <> (RFC 4475 badaspec) are dropped: the meaning is unambiguous.
        uri = s[lt + 1 : gt].strip(_LWS)
        rest = s[gt + 1 :]
    else:
        # addr-spec without <>: ';' starts header params, and ',' '?' are not allowed (RFC 3261 §20).
        uri, semi, tail = s.partition(";")
        uri = uri.strip(_LWS)
        rest = semi + tail
        if "?" in uri or "," in uri or " " in uri:
            raise SipParseError("URI with ? , or space must be enclosed in <>", text)
    if not uri:
        raise SipParseError("empty URI", text)
    parsed = parse_uri(uri)
    if parsed.is_sip and parsed.user is None and not parsed.host:
        raise SipParseError("bad URI", text)
    return NameAddr(display, uri, parse_params(rest, what="header"))


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def has_rport(self) -> bool:
        return _has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        value = _param(self.params, "rport")
        # A port (RFC 3581 §4): up to 5 ASCII digits (int() refuses "²" and over 4,300 digits), 1-65535.
        if value is None or not (value.isascii() and value.isdigit() and len(value) <= 5):
            return None
        return int(value) if 0 < int(value) <= 65535 else None

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{_format_params(self.params)}"


_VIA_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*/[ \t]*[A-Za-z0-9\-.!%*_+`'~]+[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*(\d{1,5}))?[ \t]*(;.*)?",
    re.DOTALL,
)


def parse_via(text: str) -> Via:
    """One via-parm (one comma-separated element of a Via header)."""
    match = _VIA_RE.fullmatch(text.strip(_LWS))
    if match is None:
        raise SipParseError("bad Via", text)
    host = match.group(2)
    if host.startswith("["):
        host = host[1:-1]
    port = int(match.group(3)) if match.group(3) else None
    if port is not None and port > 65535:
        raise SipParseError("bad Via port", text)
    params = parse_params(match.group(4) or "", what="Via")
    return Via(match.group(1).upper(), host, port, params)
