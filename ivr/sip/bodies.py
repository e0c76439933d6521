"""What the UA reads from or writes into message bodies and header values: DTMF in INFO, REFER NOTIFY
sipfrags, quoted-strings (RFC 3261 §25.1), sans-I/O."""

from __future__ import annotations

import re

from ivr.sip.message import Request, Response

__all__ = ["content_type", "dtmf_digit", "quoted_string", "sipfrag_status"]


def content_type(msg: Request | Response) -> str:
    return (msg.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def dtmf_digit(req: Request) -> str | None:
    ctype = content_type(req)
    text = req.body.decode("ascii", "replace")
    value: str | None = None
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, arg = line.partition("=")
            if name.strip().lower() == "signal":
                value = arg.strip()
    elif ctype == "application/dtmf":
        value = text.strip()
    if value is None:
        return None
    value = {"10": "*", "11": "#"}.get(value, value).upper()
    return value if len(value) == 1 and value in "0123456789*#ABCD" else None


_CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f]+")


def quoted_string(text: str) -> str:
    """`text` as an RFC 3261 §25.1 quoted-string: '"' and '\\' escaped, no control characters (a CR or LF
    cannot even be a quoted-pair), and a lone surrogate (an undecodable octet of a parsed header) shown as
    text so the header stays valid UTF-8."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL_RUN.sub(" ", text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sipfrag_status(req: Request) -> tuple[int, bool] | None:
    """Status and finality of a REFER NOTIFY (RFC 3515 §2.4.5)."""
    event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
    if event != "refer" or content_type(req) != "message/sipfrag":
        return None
    match = re.match(rb"\s*SIP/2\.0 (\d{3})", req.body)
    if match is None:
        return None
    status = int(match.group(1))
    terminated = "terminated" in (req.headers.get("Subscription-State") or "").lower()
    return status, status >= 200 or terminated
