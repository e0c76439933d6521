"""structlog setup: JSON lines in production, readable console lines for `make run`; safe to print either way.

Log values come from the network (a From display name, a vendor's error text), so before rendering every
string key and value is made safe: control characters (C0 including ESC, DEL, C1) become visible escapes, so
`ESC[2J` in a From URI cannot clear or drive an operator's terminal and a CR/LF cannot forge a log line;
undecodable SIP octets (lone surrogates from surrogateescape, PEP 383) become `\\xNN` as in the CDR; values
under credential-like keys and the password of a `user:password@` URI are redacted.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

REDACTED = "[redacted]"

# C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F; U+009B is a one-byte CSI on some terminals), and the
# lone surrogates that surrogateescape makes of undecodable octets.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Multi-line text by design (a traceback): keep its newlines and tabs, escape the rest.
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_MULTILINE_KEYS = frozenset({"exception", "stack"})
_SECRET_KEY = re.compile(r"passw(or)?d|secret|token|authori[sz]ation|appkey|api_?key|credential", re.I)
# RFC 3986 userinfo `user:password@` (ws://, wss://, http://) and the deprecated password in a SIP URI's
# userinfo (RFC 3261 section 19.1.1: `sip:user:password@host`).
_URI_PASSWORD = re.compile(r"(\b(?:wss?|https?|sips?):(?://)?[^:@/\s<>\"';]+):[^@/\s<>\"']*@", re.I)


_REDACT_PASSWORD = rf"\1:{REDACTED}@"


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # an undecodable octet: show the octet, as the CDR does
    if code >= 0xD800:
        return f"\\u{code:04x}"
    return f"\\x{code:02x}"


def safe_text(text: str, *, multiline: bool = False) -> str:
    """`text` with control characters and lone surrogates escaped and URI passwords redacted."""
    pattern = _CONTROL_BUT_LINES if multiline else _CONTROL
    if pattern.search(text):
        text = pattern.sub(_escape_char, text)
    # A password needs a second colon before the "@" (after the scheme's): a cheap test first, the regex
    # only then (this runs on every value of every log line).
    at = text.find("@")
    if at > 0 and text.count(":", 0, at) >= 2:
        text = _URI_PASSWORD.sub(_REDACT_PASSWORD, text)
    return text


def _safe(value: Any, multiline: bool = False) -> Any:
    if isinstance(value, str):
        return safe_text(value, multiline=multiline)
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, dict | Mapping):
        return {_safe_key(k): REDACTED if _is_secret(k) else _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(item) for item in value]
    return value  # other objects are rendered by repr, which escapes control characters


@functools.lru_cache(maxsize=1024)  # keys are a small set (the code's own names): check each once
def _key(key: str) -> tuple[str, bool]:
    """A key made safe, and whether its value is a credential."""
    return safe_text(key), _SECRET_KEY.search(key) is not None


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and _key(key)[1]


def _safe_key(key: object) -> object:
    return _key(key)[0] if isinstance(key, str) else key


def escape_control_characters(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: every string key and value made safe to print (see the module docstring)."""
    out: EventDict = {}
    for key, value in event_dict.items():
        shown, secret = _key(key)
        out[shown] = REDACTED if secret else _safe(value, multiline=key in _MULTILINE_KEYS)
    return out


class _LibraryLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr handler for the standard library's loggers (websockets, asyncio), through the same chain."""


def configure_logging(fmt: str = "console", level: int = logging.INFO) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    safe: list[structlog.types.Processor] = [
        # The traceback as text before escaping, so an exception message is escaped like any value.
        structlog.processors.format_exc_info,
        escape_control_characters,
        renderer,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            *safe,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library warnings (a vendor's close reason in a websockets message, say) carry peer text too: they go
    # through the same escaping and renderer instead of logging's last-resort handler, which prints raw.
    handler = _LibraryLogHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, timestamper],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *safe],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))


class SafeFormatter(logging.Formatter):
    """A stdlib `logging` formatter with the same guarantees as the structlog chain, for processes that log
    with `logging` (the vendor emulators, which log what clients send them): the message is one line with
    control characters escaped and URI passwords redacted; a traceback keeps its line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe_text(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return safe_text(super().formatException(ei), multiline=True)
