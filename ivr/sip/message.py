"""SIP message parsing, framing and serialization (RFC 3261 §7, §18.3, §20), sans-I/O.

The parser is strict where RFC 4475 expects a 400 and lenient where it says either outcome is fine. Header
text is decoded as UTF-8 with surrogateescape so any octet survives a parse/serialize round trip.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ivr.sip.uri import (
    NameAddr,
    SipParseError,
    SipTooLargeError,
    SipUri,
    SipVersionError,
    Via,
    is_token,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_outside,
)

__all__ = [
    "Headers",
    "NameAddr",
    "Request",
    "Response",
    "SipParseError",
    "SipTooLargeError",
    "SipUri",
    "SipVersionError",
    "StreamFramer",
    "Via",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "serialize",
]

COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
}
_CANONICAL = {
    name.lower(): name
    for name in [
        *COMPACT_FORMS.values(),
        *[
            "CSeq",
            "Max-Forwards",
            "Record-Route",
            "Route",
            "Allow",
            "Require",
            "Proxy-Require",
            "Unsupported",
            "Accept",
            "Expires",
            "User-Agent",
            "Server",
            "Warning",
            "WWW-Authenticate",
            "Authorization",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "Retry-After",
            "Date",
            "Min-Expires",
            "Subscription-State",
            "Reason",
            "Timestamp",
            "Accept-Encoding",
            "Accept-Language",
            "Alert-Info",
            "Call-Info",
            "Error-Info",
            "Path",
            "Service-Route",
            "Organization",
            "Priority",
            "RSeq",
            "RAck",
            "P-Asserted-Identity",
        ],
    ]
}
# Comma-list headers (RFC 3261 §7.3.1); others, such as Authorization, are never split on commas.
_LIST_HEADERS = frozenset(
    [
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "alert-info",
        "call-info",
        "error-info",
        "path",
        "service-route",
        "warning",
        "p-asserted-identity",
    ]
)
_SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq")
MAX_CSEQ = 2**32 - 1
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


def canonical_name(name: str) -> str:
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


@functools.lru_cache(maxsize=1024)  # the names in use are few; a flood of made-up ones only churns the cache
def _key(name: str) -> str:
    return canonical_name(name).lower()


class Headers:
    """Ordered, case-insensitive multi-map of header lines; compact names are stored in their long form.

    Each line is also indexed by its name: a request's handling looks up a dozen headers, and a scan of every
    line per lookup was most of the cost of parsing an INVITE."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}  # _key(name) -> the values of its lines, in order
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        self._index.setdefault(_key(name), []).append(value)

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = _key(name)
        if self._index.pop(key, None) is not None:
            self._items = [(n, v) for n, v in self._items if _key(n) != key]

    def get(self, name: str) -> str | None:
        values = self._index.get(_key(name))
        return values[0] if values else None

    def lines(self, name: str) -> list[str]:
        """Values of each header line with this name, unsplit."""
        return list(self._index.get(_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        if _key(name) not in _LIST_HEADERS:
            return self.lines(name)
        out: list[str] = []
        for value in self.lines(name):
            out.extend(part.strip() for part in _split_list(value) if part.strip())
        return out

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _split_list(value: str) -> list[str]:
    try:
        return split_outside(value, ",")
    except SipParseError:
        return [value]


class _MessageMixin:
    headers: Headers
    # Parsed header values by (header, raw value): a request's handling asks for its top Via and tags a dozen
    # times, and each parse cost as much as a lookup of every header. Keyed by the raw text, so a header that
    # changes (fix_via) is parsed again.
    _parsed: dict[tuple[str, str], Any]

    def _memo(self, name: str, value: str, parser: Callable[[str], Any]) -> Any:
        key = (name, value)
        parsed = self._parsed
        if key not in parsed:
            try:
                parsed[key] = parser(value)
            except SipParseError:
                parsed[key] = None
        return parsed[key]

    @property
    def call_id(self) -> str:
        return (self.headers.get("Call-ID") or "").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        match = _CSEQ_RE.fullmatch((self.headers.get("CSeq") or "").strip())
        return (int(match.group(1)), match.group(2)) if match else (0, "")

    @property
    def top_via(self) -> Via | None:
        vias = self.headers.get_all("Via")
        return self._memo("Via", vias[0], parse_via) if vias else None  # the callers only read it

    @property
    def via_branch(self) -> str | None:
        via = self.top_via
        return via.branch if via else None

    def _tag(self, name: str) -> str | None:
        address = self._memo(name, self.headers.get(name) or "", parse_name_addr)
        return address.tag if address is not None else None

    @property
    def from_tag(self) -> str | None:
        return self._tag("From")

    @property
    def to_tag(self) -> str | None:
        return self._tag("To")


@dataclass
class Request(_MessageMixin):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"
    _parsed: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False, compare=False)


@dataclass
class Response(_MessageMixin):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"
    _parsed: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False, compare=False)


_CSEQ_RE = re.compile(r"(\d+)[ \t\r\n]+([A-Za-z0-9\-.!%*_+`'~]+)")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)")
_STATUS_RE = re.compile(r"(SIP/\d+\.\d+) (\d{3}) (.*)", re.DOTALL)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header section and everything after the empty line (RFC 3261 §7: leading CRLFs are ignored)."""
    data = data.lstrip(b"\r\n")
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    # No empty line (RFC 4475 baddn as bundled): treat the whole datagram as headers.
    return data, b""


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """Start line, (name, value) pairs, and problems (reason, line) found while reading them."""
    raw_lines = re.split(r"\r?\n", head.rstrip("\r\n"))
    start = raw_lines[0]
    unfolded: list[str] = []
    for line in raw_lines[1:]:
        # Folded continuation lines (RFC 3261 §7.3.1) join the previous line with one SP.
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] = unfolded[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            unfolded.append(line)
    pairs: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for line in unfolded:
        if "\r" in line:
            # A CR not followed by LF: some stacks end a line there, so a value carrying it could smuggle a
            # header into anything that echoes it (RFC 3261 §7.3: CR only occurs in CRLF).
            problems.append(("bare CR in header line", line))
            line = line.replace("\r", " ")
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            problems.append(("malformed header line", line))
            continue
        pairs.append((name, value.strip(" \t")))
    return start, pairs, problems


def _parse_request_line(start: str, problems: list[tuple[str, str]]) -> tuple[str, str, str]:
    parts = start.split(" ")
    words = start.split()
    method = words[0] if words else ""
    uri = words[1] if len(words) > 1 else ""
    version = words[-1] if len(words) > 2 else ""
    if len(parts) != 3 or not all(parts):
        # Extra/trailing SP or embedded LWS in the Request-URI (RFC 4475 lwsstart, trws, lwsruri).
        problems.append(("malformed Request-Line", start))
    if not is_token(method):
        problems.append(("bad method", start))
    if uri.startswith("<"):
        problems.append(("Request-URI enclosed in <>", start))
    else:
        try:
            parsed = parse_uri(uri)
            if parsed.is_sip and parsed.headers is not None:
                problems.append(("headers in Request-URI", start))  # RFC 4475 escruri
        except SipParseError as exc:
            problems.append((exc.reason, start))
    return method, uri, version


def _validate_common(headers: Headers, problems: list[tuple[str, str]]) -> None:
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in headers:
            problems.append((f"missing {name}", name))
    for name in _SINGLE_HEADERS:
        values = headers.lines(name)
        if len(values) > 1:
            problems.append((f"multiple {name} headers", values[1]))
    cseq = headers.get("CSeq")
    if cseq is not None:
        match = _CSEQ_RE.fullmatch(cseq)
        if match is None:
            problems.append(("bad CSeq", cseq))
        elif len(match.group(1).lstrip("0")) > 10 or int(match.group(1)) > MAX_CSEQ:
            # The length first: int() refuses over 4,300 digits, and this 400 must still go out (§8.2.6).
            problems.append(("CSeq number too large", cseq))
    call_id = headers.get("Call-ID")
    if call_id is not None and (not call_id or any(ch in call_id for ch in " \t")):
        problems.append(("bad Call-ID", call_id))
    for value in headers.lines("Via"):
        for part in split_outside(value, ","):
            _check(parse_via, part, problems)
    for name in ("From", "To"):
        for value in headers.lines(name):
            _check(parse_name_addr, value, problems)
    for name in ("Contact", "Route", "Record-Route"):
        for value in headers.lines(name):
            if name == "Contact" and value.strip() == "*":
                continue
            for part in split_outside(value, ","):
                _check(parse_name_addr, part, problems)


def _check(parser: object, value: str, problems: list[tuple[str, str]]) -> None:
    try:
        parser(value)  # type: ignore[operator]
    except SipParseError as exc:
        problems.append((exc.reason, value))


def _content_length(headers: Headers) -> int | None:
    values = [v.strip() for v in headers.lines("Content-Length")]
    if not values:
        return None
    for value in values:
        if not value.isdigit() or not value.isascii():
            raise SipParseError("bad Content-Length", value)
        if len(value.lstrip("0")) > 18:
            # Past any body limit, whatever it says; and int() refuses over 4,300 digits (a plain ValueError).
            raise SipTooLargeError("Content-Length too large", value)
    if len({int(v) for v in values}) > 1:
        raise SipParseError("conflicting Content-Length values", ", ".join(values))
    return int(values[0])


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram (or one framed stream message). Raises SipParseError, never anything else."""
    try:
        return _parse(data)
    except SipParseError:
        raise
    except (
        ValueError,
        IndexError,
        KeyError,
        RecursionError,
    ) as exc:  # defensive: fuzzing must only see one type
        raise SipParseError(f"malformed message ({type(exc).__name__})") from exc


def _parse(data: bytes) -> Request | Response:
    head_bytes, rest = _split_head(data)
    if not head_bytes:
        raise SipParseError("empty message")
    start, pairs, problems = _header_lines(_decode(head_bytes))
    headers = Headers(pairs)
    msg: Request | Response
    if start.startswith("SIP/"):
        match = _STATUS_RE.fullmatch(start)
        if match is None or not 100 <= int(match.group(2)) <= 699:
            raise SipParseError("bad Status-Line", start)
        if match.group(1) != "SIP/2.0":
            raise SipVersionError("unsupported SIP version", start)
        msg = Response(int(match.group(2)), match.group(3), headers)
        version = "SIP/2.0"
    else:
        method, uri, version = _parse_request_line(start, problems)
        msg = Request(method, uri, headers, version=version or "SIP/2.0")
        if not problems and not _VERSION_RE.fullmatch(version):
            problems.append(("bad SIP version", start))
    partial = msg if isinstance(msg, Request) else None
    if isinstance(msg, Request) and _VERSION_RE.fullmatch(version) and version != "SIP/2.0":
        raise SipVersionError("SIP version not supported", start, partial)
    try:
        _validate_common(headers, problems)
        if isinstance(msg, Request) and not problems and msg.cseq[1] != msg.method:
            problems.append(("CSeq method does not match the request method", headers.get("CSeq") or ""))
        length = _content_length(headers)
    except SipParseError as exc:
        exc.partial = partial
        raise
    if problems:
        reason, line = problems[0]
        raise SipParseError(reason, line, partial)
    if length is None:
        msg.body = rest  # RFC 3261 §18.3: no Content-Length on UDP means the rest of the datagram
    elif length > MAX_BODY_BYTES:
        raise SipTooLargeError("Content-Length too large", str(length), partial)
    elif length > len(rest):
        raise SipParseError("Content-Length larger than the message", str(length), partial)
    else:
        msg.body = rest[:length]  # octets past Content-Length are discarded (§18.3, RFC 4475 dblreq)
    return msg


class StreamFramer:
    """Splits a TCP byte stream into whole messages by Content-Length (mandatory on streams, §18.3)."""

    def __init__(
        self, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._buffer = bytearray()  # at most max_header_bytes + max_body_bytes + one read
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes

    @property
    def pending(self) -> int:
        """Bytes held of a message not yet complete (0 between messages)."""
        return len(self._buffer)

    @property
    def awaiting_body(self) -> bool:
        """The pending message's header section is complete; its body is not."""
        return self._buffer.find(b"\r\n\r\n") >= 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            # CRLF keep-alives between messages (RFC 5626 §3.5.1) are skipped.
            skip = 0
            while skip < len(self._buffer) and self._buffer[skip] in (0x0D, 0x0A):
                skip += 1
            if skip:
                del self._buffer[:skip]
            idx = self._buffer.find(b"\r\n\r\n")
            if (idx < 0 and len(self._buffer) > self._max_header) or idx > self._max_header:
                # Answer from the complete lines within the limit (Via, From, ... usually come first).
                head = bytes(self._buffer[: self._max_header])
                head = head[: head.rfind(b"\r\n")] if b"\r\n" in head else b""
                raise SipTooLargeError("header section too large", None, _partial_of(head), status=513)
            if idx < 0:
                return out
            head = bytes(self._buffer[:idx])
            length = self._stream_content_length(head, self._max_body)
            end = idx + 4 + length
            if len(self._buffer) < end:
                return out
            out.append(bytes(self._buffer[:end]))
            del self._buffer[:end]

    @staticmethod
    def _stream_content_length(head: bytes, max_body: int) -> int:
        _, pairs, _ = _header_lines(_decode(head))
        headers = Headers(pairs)
        try:
            length = _content_length(headers)
            if length is None:
                raise SipParseError("missing Content-Length on a stream transport")
            if length > max_body:
                raise SipTooLargeError("Content-Length too large", str(length))
        except SipParseError as exc:
            exc.partial = _partial_of(head)
            raise
        return length


def _partial_of(head: bytes) -> Request | None:
    """Whatever request can be read from a header section, so the transport can still answer 400."""
    start, pairs, _ = _header_lines(_decode(head))
    kept = [f"{n}: {v}" for n, v in pairs if canonical_name(n) != "Content-Length"]
    try:
        msg = parse_message(_encode("\r\n".join([start, *kept]) + "\r\n\r\n"))
    except SipParseError as exc:
        return exc.partial
    return msg if isinstance(msg, Request) else None


_LINE_BREAK = re.compile(r"[\r\n]")


def serialize(msg: Request | Response) -> bytes:
    if isinstance(msg, Request):
        start = f"{msg.method} {msg.uri} {msg.version}"
    else:
        start = f"{msg.version} {msg.status} {msg.reason}"
    lines = [start]
    # No CR or LF inside a value, wherever it came from (a parsed request, our configuration): each would
    # end the header line at the receiver and let the rest pose as a header of its own.
    lines.extend(
        f"{name}: {_LINE_BREAK.sub(' ', value)}" for name, value in msg.headers if name != "Content-Length"
    )
    lines.append(f"Content-Length: {len(msg.body)}")
    return _encode("\r\n".join(lines) + "\r\n\r\n") + msg.body


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Response with Via/From/To/Call-ID/CSeq copied from the request (RFC 3261 §8.2.6.2)."""
    out = Headers()
    for via in request.headers.lines("Via"):
        out.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag and request.to_tag is None:
            value = f"{value};tag={to_tag}"
        out.add(name, value)
    for name, value in headers:
        out.add(name, value)
    if body and content_type:
        out.set("Content-Type", content_type)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
    # A reason phrase must not break the status line (it may carry a parser's message).
    phrase = re.sub(r"[\r\n\x00]", " ", phrase)
    return Response(status, phrase, out, body)
