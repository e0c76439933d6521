"""The load caller's SIP, as templates and a minimal parser: just what INVITE/200/ACK/BYE (and a REFER or BYE
from the bridge) need. Not a SIP stack: the bridge's own is what is under test."""

from __future__ import annotations

from dataclasses import dataclass

SDP = (
    "v=0\r\no=load {session} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101{cn_pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n{cn_map}a=ptime:20\r\na=sendrecv\r\n"
)


@dataclass(frozen=True)
class Message:
    """A parsed SIP message: start line, headers by lower-case name (first value), body."""

    start: str
    headers: dict[str, str]
    body: str

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        return self.headers.get("cseq", " ").split(" ", 1)[1].strip()

    def sdp_audio(self) -> tuple[str, int] | None:
        host, port = None, None
        for line in self.body.splitlines():
            if line.startswith("c=IN IP4 "):
                host = line[9:].strip()
            elif line.startswith("m=audio "):
                port = int(line.split()[1])
        return (host, port) if host and port else None


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


def parse(data: bytes) -> Message:
    text = data.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    vias: list[str] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key == "via":
            vias.append(value.strip())
        headers.setdefault(key, value.strip())
    if vias:
        headers["via"] = "\r\nVia: ".join(vias)  # every Via, to copy into a response
    return Message(lines[0], headers, body)


def tag_of(header: str) -> str:
    for part in header.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip() == "tag":
            return value.strip()
    return ""


def uri_of(header: str) -> str:
    start, end = header.find("<"), header.find(">")
    return header[start + 1 : end] if 0 <= start < end else header.split(";", 1)[0].strip()


def invite(
    target: str,
    local: str,
    call_id: str,
    branch: str,
    from_tag: str,
    rtp: tuple[str, int],
    session: int,
    *,
    comfort_noise: bool = False,
) -> bytes:
    """`comfort_noise`: offer RFC 3389 CN too, as trunks on FreeSWITCH and many SBCs do."""
    cn_pt, cn_map = (" 13", "a=rtpmap:13 CN/8000\r\n") if comfort_noise else ("", "")
    body = SDP.format(session=session, host=rtp[0], port=rtp[1], cn_pt=cn_pt, cn_map=cn_map)
    return (
        f"INVITE sip:bench@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:load@{local}>;tag={from_tag}\r\nTo: <sip:bench@{target}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:load@{local}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def in_dialog(
    method: str,
    request_uri: str,
    local: str,
    call_id: str,
    branch: str,
    from_tag: str,
    target: str,
    to_tag: str,
    cseq: int,
) -> bytes:
    """ACK (for a 2xx or, with the INVITE's branch and cseq 1, for a failure) or BYE."""
    to = f"<sip:bench@{target}>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:load@{local}>;tag={from_tag}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def response(request: Message, status: int, reason: str) -> bytes:
    h = request.headers
    return (
        f"SIP/2.0 {status} {reason}\r\nVia: {h.get('via', '')}\r\nFrom: {h.get('from', '')}\r\n"
        f"To: {h.get('to', '')}\r\nCall-ID: {h.get('call-id', '')}\r\nCSeq: {h.get('cseq', '')}\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
