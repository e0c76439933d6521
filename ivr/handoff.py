"""The transfer's context for the agent, as SIP headers: who the caller is to the IVR and how they sounded.

The headers go on the REFER and into its Refer-To URI (RFC 3261 §19.1.5 URI headers), so the transferee
(trunk or PBX) copies them into the INVITE it sends the agent: `X-IVR-Channel-Id`, `X-IVR-Emotion`,
`X-IVR-Transcript`, and `User-to-User` (RFC 7433) for contact-center platforms that read only UUI.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from urllib.parse import quote

from ivr.dialplan.engine import Handoff

# ISDN UUI (Q.931 §4.5.30) as contact-center platforms read it: protocol discriminator 0x04 (IA5 text),
# then the text, at most 128 octets in all; RFC 7433 carries it hex-encoded.
_UUI_LIMIT = 128
_IA5 = b"\x04"
TRANSCRIPT_LIMIT = 256  # bytes of UTF-8: a header, not a log
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def _clean(text: str) -> str:
    """No control characters (a CR or LF would end the header) and single spaces."""
    return " ".join(_UNSAFE.sub(" ", text).split())


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def emotion_value(handoff: Handoff) -> str | None:
    """`frustrado;p=0.67;group=negativo_ativado;group-p=0.81;turns=2`, or None when nothing was heard."""
    speaker = handoff.speaker
    if speaker.emotion is None:
        return None
    value = f"{speaker.emotion};p={speaker.emotion_p:.2f}"
    if speaker.group is not None:
        value += f";group={speaker.group};group-p={speaker.group_p:.2f}"
    return value + f";turns={speaker.turns}"


def user_to_user(handoff: Handoff) -> str:
    """The RFC 7433 header value: the channel id and emotion as IA5 text, hex-encoded."""
    speaker = handoff.speaker
    fields = [f"ch={handoff.channel_id}"]
    if speaker.emotion is not None:
        fields.append(f"em={speaker.emotion}")
    if speaker.group is not None:
        fields.append(f"eg={speaker.group}")
    text = ";".join(fields).encode("ascii", "replace")[: _UUI_LIMIT - len(_IA5)]
    return f"{(_IA5 + text).hex()};encoding=hex"


def transfer_headers(handoff: Handoff) -> list[tuple[str, str]]:
    headers = [("X-IVR-Channel-Id", handoff.channel_id)]
    emotion = emotion_value(handoff)
    if emotion is not None:
        headers.append(("X-IVR-Emotion", emotion))
    if handoff.speaker.age is not None:
        headers.append(("X-IVR-Age", str(handoff.speaker.age)))
    if handoff.speaker.gender is not None:
        headers.append(("X-IVR-Gender", handoff.speaker.gender))
    transcript = _clean(" | ".join(handoff.transcript))
    if transcript:
        headers.append(("X-IVR-Transcript", _clip_utf8(transcript, TRANSCRIPT_LIMIT)))
    headers.append(("User-to-User", user_to_user(handoff)))
    return headers


# The short ones: a UDP REFER should stay well under the path MTU (RFC 3261 §18.1.1), so the transcript
# rides on the REFER only.
URI_HEADERS = ("X-IVR-Channel-Id", "X-IVR-Emotion", "User-to-User")


def refer_target(
    target: str, headers: Sequence[tuple[str, str]], embed: Collection[str] = URI_HEADERS
) -> str:
    """`target` with the headers named in `embed` embedded (escaped) for the transferee to copy into its
    INVITE (the short ones by default)."""
    uri = target[1:-1] if target.startswith("<") and target.endswith(">") else target
    if not uri.startswith(("sip:", "sips:")):
        return target  # tel: URIs have no header part
    embedded = [(name, value) for name, value in headers if name in embed]
    joined = "&".join(f"{name}={quote(value, safe='')}" for name, value in embedded)
    return f"<{uri}{'&' if '?' in uri else '?'}{joined}>"
