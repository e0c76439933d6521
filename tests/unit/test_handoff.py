"""Transfer context headers: what the agent's INVITE learns about the call."""

from __future__ import annotations

from urllib.parse import unquote

from ivr.dialplan.engine import Handoff
from ivr.dialplan.speaker import SpeakerSummary
from ivr.handoff import TRANSCRIPT_LIMIT, refer_target, transfer_headers, user_to_user
from ivr.sip.message import parse_message

CHANNEL = "698dc19d489c4e4db73e28a713eab07b"
ANGRY = SpeakerSummary("irritado", 0.61, "negativo_ativado", 0.83, age=34, gender="F", turns=2)


def test_headers_name_the_channel_the_emotion_and_what_was_said() -> None:
    headers = dict(transfer_headers(Handoff(CHANNEL, ("quero falar com atendente", "sim"), ANGRY)))
    assert headers["X-IVR-Channel-Id"] == CHANNEL
    assert headers["X-IVR-Emotion"] == "irritado;p=0.61;group=negativo_ativado;group-p=0.83;turns=2"
    assert headers["X-IVR-Transcript"] == "quero falar com atendente | sim"
    assert headers["X-IVR-Age"] == "34" and headers["X-IVR-Gender"] == "F"


def test_user_to_user_is_rfc7433_hex_of_ia5_text() -> None:
    value = user_to_user(Handoff(CHANNEL, (), ANGRY))
    payload, params = value.split(";", 1)
    assert params == "encoding=hex"
    data = bytes.fromhex(payload)
    assert data[0] == 0x04 and len(data) <= 128  # Q.931 IA5 discriminator, ISDN UUI size
    assert data[1:].decode() == f"ch={CHANNEL};em=irritado;eg=negativo_ativado"


def test_a_calm_unclassified_call_carries_only_its_channel() -> None:
    headers = dict(transfer_headers(Handoff(CHANNEL)))
    assert set(headers) == {"X-IVR-Channel-Id", "User-to-User"}


def test_transcript_is_clipped_and_has_no_control_characters() -> None:
    said = ("olá\r\nX-Evil: 1", "ç" * 400)
    transcript = dict(transfer_headers(Handoff(CHANNEL, said)))["X-IVR-Transcript"]
    assert "\r" not in transcript and "\n" not in transcript
    assert transcript.startswith("olá X-Evil: 1 | ç")
    assert len(transcript.encode()) <= TRANSCRIPT_LIMIT and transcript.endswith("...")
    transcript.encode("utf-8")  # cut on a character boundary


def test_refer_to_embeds_the_short_headers_escaped() -> None:
    headers = transfer_headers(Handoff(CHANNEL, ("fala comigo & já",), ANGRY))
    target = refer_target("sip:prioridade@pbx.example.com;transport=tcp", headers)
    assert target.startswith("<sip:prioridade@pbx.example.com;transport=tcp?") and target.endswith(">")
    embedded = dict(part.split("=", 1) for part in target[1:-1].split("?", 1)[1].split("&"))
    assert unquote(embedded["X-IVR-Emotion"]) == dict(headers)["X-IVR-Emotion"]
    assert unquote(embedded["User-to-User"]) == dict(headers)["User-to-User"]
    assert "X-IVR-Transcript" not in embedded  # long: on the REFER only
    assert refer_target("tel:+551130000000", headers) == "tel:+551130000000"
    already = refer_target("<sip:a@b?Priority=urgent>", headers)
    assert already.startswith("<sip:a@b?Priority=urgent&X-IVR-Channel-Id=")
    # the whole Refer-To still parses as a SIP header
    message = (
        "REFER sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        f"To: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 REFER\r\nRefer-To: {target}\r\nContent-Length: 0\r\n\r\n"
    )
    parsed = parse_message(message.encode())
    assert parsed.headers.get("Refer-To") == target
