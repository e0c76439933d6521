"""SDP offer parsing and answer building for one G.711 audio stream (RFC 4566, RFC 3264), sans-I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "HOLD_ADDRESS",
    "MediaFormat",
    "Negotiated",
    "Origin",
    "SdpError",
    "SdpNotAcceptable",
    "SessionDescription",
    "build_answer",
    "build_offer",
    "negotiate",
    "parse_sdp",
]


class SdpError(ValueError):
    pass


class SdpNotAcceptable(SdpError):
    """No acceptable audio stream in the offer: the caller gets 488 (RFC 3261 §13.3.1.3).

    `warn_code` is the RFC 3261 §20.43 warn-code that says why (304/305 media, 301 address, 399 other).
    """

    def __init__(self, reason: str, warn_code: int = 399) -> None:
        super().__init__(reason)
        self.warn_code = warn_code


@dataclass(frozen=True)
class MediaFormat:
    payload_type: int
    encoding: str
    clock_rate: int
    fmtp: str | None = None


# RFC 3551 §6 static payload types that may appear without an rtpmap.
_STATIC = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# Our direction once sending is ruled out by an RFC 2543 hold address (RFC 3264 §8.4: send nothing there).
_WITHOUT_SEND = {
    "sendrecv": "recvonly",
    "sendonly": "inactive",
    "recvonly": "recvonly",
    "inactive": "inactive",
}
HOLD_ADDRESS = "0.0.0.0"
DEFAULT_DTMF_PAYLOAD_TYPE = 101
_STATIC_PT = {"PCMU": 0, "PCMA": 8}


@dataclass(frozen=True)
class Origin:
    """The o= line (RFC 4566 §5.2): later SDP of the session keeps it, with a higher version (RFC 3264 §8)."""

    username: str
    session_id: int
    version: int
    addrtype: str
    address: str


@dataclass
class SessionDescription:
    """The first audio stream of an SDP body, plus the m= lines of all streams (an answer must echo each)."""

    connection: str
    port: int
    proto: str
    formats: list[MediaFormat]
    direction: str = "sendrecv"
    ptime: int | None = None
    media_lines: list[str] = field(default_factory=list)  # "audio 49170 RTP/AVP 0 8" per m= line, in order
    audio_index: int = 0
    connection_type: str = "IP4"  # the c= addrtype ("IP4" or "IP6") that goes with `connection`
    origin: Origin | None = None  # None when the o= line is missing or not numeric

    @property
    def connection_address(self) -> str:
        return self.connection

    @property
    def media_port(self) -> int:
        return self.port


@dataclass
class _Media:
    line: str
    kind: str
    port: int
    proto: str
    pts: list[str]
    connection: tuple[str, str] | None = None  # (addrtype, address)
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    ptime: int | None = None


def _is_number(text: str) -> bool:
    # RFC 4566 §9 DIGIT is %x30-39; str.isdigit() also takes "²", which int() then refuses. No field we read
    # needs more than 20 digits (64-bit o= ids), and int() refuses over 4,300 with a plain ValueError.
    return text.isascii() and text.isdigit() and len(text) <= 20


def _connection(value: str) -> tuple[str, str]:
    """(addrtype, address) of a c= line, without a multicast /ttl/count suffix (RFC 4566 §5.7)."""
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value!r}")
    return parts[1], parts[2].split("/")[0]


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    session_conn: tuple[str, str] | None = None
    session_dir: str | None = None
    origin: Origin | None = None
    media: list[_Media] = []
    for line in text.splitlines():
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line: {line!r}")
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        if kind == "o" and not media:
            origin = _origin(value)
        elif kind == "m":
            parts = value.split()
            port = parts[1].split("/")[0] if len(parts) >= 4 else ""
            if not _is_number(port) or int(port) > 65535:
                raise SdpError(f"bad m= line (port must be 0-65535): {line[:200]!r}")
            media.append(_Media(value, parts[0], int(port), parts[2], parts[3:]))
        elif kind == "c":
            if current is None:
                session_conn = _connection(value)
            else:
                current.connection = _connection(value)  # overrides the session level (RFC 4566 §5.7)
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in _DIRECTIONS:
                if current is None:
                    session_dir = name
                else:
                    current.direction = name
            elif current is not None:
                _media_attribute(current, name, arg)
    audio = [i for i, m in enumerate(media) if m.kind == "audio"]
    if not audio:
        raise SdpError("no audio stream in SDP")
    index = next((i for i in audio if media[i].port != 0), audio[0])
    chosen = media[index]
    conn = chosen.connection or session_conn
    if conn is None:
        raise SdpError("no c= line for the audio stream")
    formats = []
    for pt_text in chosen.pts:
        if not _is_number(pt_text) or int(pt_text) > 127:
            continue  # RTP payload types are 7 bits (RFC 3550 §5.1)
        pt = int(pt_text)
        enc, rate = chosen.rtpmap.get(pt) or _STATIC.get(pt, ("", 0))
        if enc:
            formats.append(MediaFormat(pt, enc, rate, chosen.fmtp.get(pt)))
    return SessionDescription(
        connection=conn[1],
        port=chosen.port,
        proto=chosen.proto,
        formats=formats,
        direction=chosen.direction or session_dir or "sendrecv",
        ptime=chosen.ptime,
        media_lines=[m.line for m in media],
        audio_index=index,
        connection_type=conn[0],
        origin=origin,
    )


def _origin(value: str) -> Origin | None:
    parts = value.split()
    if len(parts) != 6 or not (_is_number(parts[1]) and _is_number(parts[2])):
        return None
    return Origin(parts[0], int(parts[1]), int(parts[2]), parts[4], parts[5])


def _media_attribute(media: _Media, name: str, arg: str) -> None:
    if name == "rtpmap":
        pt_text, _, spec = arg.partition(" ")
        enc, _, rest = spec.strip().partition("/")
        rate = rest.split("/")[0]
        if _is_number(pt_text) and _is_number(rate) and enc:
            media.rtpmap[int(pt_text)] = (enc, int(rate))
    elif name == "fmtp":
        pt_text, _, params = arg.partition(" ")
        if _is_number(pt_text):
            media.fmtp[int(pt_text)] = params.strip()
    elif name == "ptime" and _is_number(arg.strip()):
        media.ptime = int(arg.strip())


@dataclass(frozen=True)
class Negotiated:
    payload_type: int
    encoding: str
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    ptime: int  # the offerer's a=ptime (default 20); we always send 20 ms frames and say so in the answer
    direction: str = "sendrecv"  # our direction in the answer (RFC 3264 §6.1)
    offer_media: tuple[str, ...] = ()  # offer m= lines, echoed with port 0 except the audio stream
    audio_index: int = 0
    # RFC 3389 comfort noise, when the offer has it: silence then goes as a CN packet now and then, not as
    # a G.711 frame every packet time.
    comfort_noise_payload_type: int | None = None

    @property
    def held(self) -> bool:
        """The peer takes no media from us (sendonly/inactive offer, or c=0.0.0.0): play nothing to it."""
        return self.direction in ("recvonly", "inactive")


def negotiate(
    offer: SessionDescription, supported: tuple[str, ...] = ("PCMU", "PCMA"), *, prefer: str | None = None
) -> Negotiated:
    """Pick the first offered codec we support (the offerer's preference order, RFC 3264 §6.1).

    `prefer` (the running call's codec) wins when offered, so a re-offer does not switch codecs needlessly.
    """
    if offer.port == 0 or offer.proto.upper() != "RTP/AVP":
        raise SdpNotAcceptable(
            f"no usable RTP/AVP audio stream (proto {offer.proto}, port {offer.port})", 302
        )
    if not _is_ipv4_literal(offer.connection_type, offer.connection):
        # Our RTP sockets are IPv4 and the media path does no DNS lookups, so an IPv6 address or a host name
        # would be answered 200 and then fail at the first RTP send; 488 tells the caller now (RFC 3264 §6).
        # 0.0.0.0 (RFC 2543 hold) is an IPv4 literal and passes, as before.
        shown = f"{offer.connection_type} {offer.connection}"
        raise SdpNotAcceptable(
            f"connection address {shown!r} is not an IPv4 address; this bridge's RTP is IPv4", 301
        )
    wanted = {name.upper() for name in supported}
    usable = [f for f in offer.formats if f.encoding.upper() in wanted and f.clock_rate == 8000]
    preferred = [f for f in usable if prefer is not None and f.encoding.upper() == prefer.upper()]
    if not usable:
        offered = ", ".join(f"{f.encoding}/{f.clock_rate}" for f in offer.formats) or "none"
        raise SdpNotAcceptable(f"no supported audio codec offered ({offered})", 305)
    codec = (preferred or usable)[0]
    direction = _ANSWER_DIRECTION.get(offer.direction, "sendrecv")
    if offer.connection == HOLD_ADDRESS:
        direction = _WITHOUT_SEND[direction]
    dtmf = next(
        (f for f in offer.formats if f.encoding.lower() == "telephone-event" and f.clock_rate == 8000), None
    )
    cn = next((f for f in offer.formats if f.encoding.upper() == "CN" and f.clock_rate == 8000), None)
    return Negotiated(
        payload_type=codec.payload_type,
        encoding=codec.encoding.upper(),
        dtmf_payload_type=dtmf.payload_type if dtmf else None,
        remote_host=offer.connection,
        remote_port=offer.port,
        ptime=offer.ptime or 20,
        direction=direction,
        offer_media=tuple(offer.media_lines),
        audio_index=offer.audio_index,
        comfort_noise_payload_type=cn.payload_type if cn else None,
    )


def _is_ipv4_literal(addrtype: str, address: str) -> bool:
    if addrtype != "IP4":
        return False
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


def build_answer(
    negotiated: Negotiated,
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    version: int | None = None,
    username: str = "ivr",
) -> bytes:
    """Our answer: the chosen codec (+ telephone-event, CN), our direction, each offered m= line in order."""
    n = negotiated
    codecs = [(n.payload_type, n.encoding)]
    return _session(
        _audio(local_port, codecs, n.dtmf_payload_type, n.direction, n.comfort_noise_payload_type),
        n.offer_media,
        n.audio_index,
        local_host=local_host,
        origin=(username, session_id, session_id if version is None else version),
    )


def build_offer(
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    version: int | None = None,
    username: str = "ivr",
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE,
    direction: str = "sendrecv",
    media_lines: tuple[str, ...] = (),
    audio_index: int = 0,
) -> bytes:
    """An offer of G.711 (static payload types, in `codecs` order) and telephone-event (RFC 3264 §5).

    Used when the INVITE had no SDP (late offer: ours goes in the 2xx, the answer comes in the ACK).
    `media_lines`/`audio_index` keep the m= lines of the session so far: a later offer may not drop any
    (RFC 3264 §8); the other streams stay declined with port 0.
    """
    unknown = [c for c in codecs if c.upper() not in _STATIC_PT]
    if unknown or not codecs:
        raise ValueError(f"can only offer PCMU/PCMA, not {unknown or 'nothing'}")
    pairs = [(_STATIC_PT[c.upper()], c.upper()) for c in codecs]
    return _session(
        _audio(local_port, pairs, dtmf_payload_type, direction),
        media_lines,
        audio_index,
        local_host=local_host,
        origin=(username, session_id, session_id if version is None else version),
    )


def _audio(
    port: int, codecs: list[tuple[int, str]], dtmf: int | None, direction: str, cn: int | None = None
) -> list[str]:
    pts = [str(pt) for pt, _ in codecs] + [str(pt) for pt in (dtmf, cn) if pt is not None]
    lines = [f"m=audio {port} RTP/AVP {' '.join(pts)}"]
    lines += [f"a=rtpmap:{pt} {encoding}/8000" for pt, encoding in codecs]
    if dtmf is not None:
        lines += [f"a=rtpmap:{dtmf} telephone-event/8000", f"a=fmtp:{dtmf} 0-16"]
    if cn is not None:
        lines.append(f"a=rtpmap:{cn} CN/8000")
    return [*lines, "a=ptime:20", f"a={direction}"]  # we always send 20 ms frames


def _session(
    audio: list[str],
    media_lines: tuple[str, ...],
    audio_index: int,
    *,
    local_host: str,
    origin: tuple[str, int, int],
) -> bytes:
    family = "IP6" if ":" in local_host else "IP4"
    username, session_id, version = origin
    lines = [
        "v=0",
        f"o={username} {session_id} {version} IN {family} {local_host}",
        "s=ivr",
        f"c=IN {family} {local_host}",
        "t=0 0",
    ]
    if not media_lines:
        lines += audio
    for index, mline in enumerate(media_lines):
        if index == audio_index:
            lines += audio
        else:
            # Streams we decline stay with port 0, same order (RFC 3264 §6, §8).
            kind, _, proto, *fmts = mline.split()
            lines.append(f"m={kind} 0 {proto} {' '.join(fmts)}")
    return ("\r\n".join(lines) + "\r\n").encode()
