"""Our side of one dialog's SDP offer/answer exchanges after the first (RFC 3264 §8), sans-I/O.

The application builds the first SDP (answer, or offer for a late-offer INVITE); the UA core answers
re-INVITEs by itself, so it keeps what it needs from that SDP here: origin, RTP address and codec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ivr.sip.sdp import (
    Negotiated,
    SdpError,
    SdpNotAcceptable,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)

__all__ = ["SUPPORTED_CODECS", "LocalSession"]

SUPPORTED_CODECS = ("PCMU", "PCMA")


@dataclass
class LocalSession:
    """The SDP we last sent in a dialog, and the codec in use, so the next answer/offer can follow on."""

    sdp: bytes
    host: str
    port: int
    username: str
    session_id: int
    version: int
    codec: str | None  # the codec in use; None while our offer awaits its answer
    media_lines: tuple[str, ...]
    audio_index: int
    offered: tuple[str, ...] = ()  # codecs of our outstanding offer
    comfort_noise: bool = False  # our first SDP took RFC 3389 CN: later answers may (the setting allowed it)

    @classmethod
    def from_local_sdp(cls, sdp: bytes, *, offer: bool) -> LocalSession:
        """What the app sent in our 2xx; `offer` when it is an offer (late-offer INVITE). Raises SdpError."""
        sd = parse_sdp(sdp)
        origin = sd.origin
        codecs = tuple(f.encoding.upper() for f in sd.formats if f.encoding.upper() in SUPPORTED_CODECS)
        if not codecs:
            raise SdpError("our SDP names no G.711 codec")
        return cls(
            sdp=sdp,
            host=sd.connection,
            port=sd.port,
            username=origin.username if origin else "ivr",
            session_id=origin.session_id if origin else 0,
            version=origin.version if origin else 0,
            codec=None if offer else codecs[0],
            media_lines=tuple(sd.media_lines),
            audio_index=sd.audio_index,
            offered=codecs if offer else (),
            comfort_noise=any(f.encoding.upper() == "CN" for f in sd.formats),
        )

    @property
    def awaiting_answer(self) -> bool:
        return bool(self.offered)

    def answer(self, offer_body: bytes) -> tuple[Negotiated, bytes]:
        """Answer a re-offer; raises SdpNotAcceptable (488, session unchanged) or SdpError (bad SDP).

        Only offered codecs are used, the running one first; our origin stays, its version going up only when
        the SDP changes, so a plain session refresh gets back byte-identical SDP (RFC 3264 §8).
        """
        if not offer_body:
            raise SdpError("no SDP offer")
        media = negotiate(parse_sdp(offer_body), SUPPORTED_CODECS, prefer=self.codec)
        if not self.comfort_noise:
            media = replace(media, comfort_noise_payload_type=None)
        body = self._next(
            lambda version: build_answer(
                media,
                local_host=self.host,
                local_port=self.port,
                session_id=self.session_id,
                version=version,
                username=self.username,
            )
        )
        self.codec, self.offered = media.encoding, ()
        self.media_lines, self.audio_index = media.offer_media or self.media_lines, media.audio_index
        return media, body

    def offer(self) -> bytes:
        """Our offer for a re-INVITE without SDP: every codec we take, the running one first, sendrecv."""
        codecs = tuple(sorted(SUPPORTED_CODECS, key=lambda c: c != self.codec))
        body = self._next(
            lambda version: build_offer(
                local_host=self.host,
                local_port=self.port,
                session_id=self.session_id,
                version=version,
                username=self.username,
                codecs=codecs,
                media_lines=self.media_lines,
                audio_index=self.audio_index,
            )
        )
        self.offered = codecs
        return body

    def take_answer(self, answer_body: bytes) -> Negotiated:
        """The answer to our offer (in the ACK); SdpError / SdpNotAcceptable when there is none we can use."""
        if not answer_body:
            self.offered = ()
            raise SdpError("no SDP answer in the ACK")
        offered, self.offered = self.offered, ()  # answered or not, the offer is over
        answer = parse_sdp(answer_body)
        if len(answer.media_lines) != len(self.media_lines):
            # RFC 3264 §6: the answer has exactly as many m= lines as the offer.
            raise SdpNotAcceptable("the answer's m= lines do not match our offer")
        media = negotiate(answer, offered)
        self.codec = media.encoding
        return media

    def _next(self, build: Callable[[int], bytes]) -> bytes:
        body = build(self.version)
        if body != self.sdp:
            self.version += 1
            body = build(self.version)
        self.sdp = body
        return body
