"""The scripted caller's sans-I/O parts: its dialog's messages, its RFC 4733 digits, how it reads a REFER."""

from __future__ import annotations

from ivr.media.dtmf import DtmfReceiver
from ivr.media.rtp import RtpSender, parse_rtp
from ivr.sip.message import Headers, Request, Response, parse_message, serialize
from ivr.testing.caller import refer_of
from ivr.testing.rtpleg import DTMF_PAYLOAD_TYPE, digit_packets
from ivr.testing.uac import UacDialog


def test_the_invite_ack_and_bye_of_one_dialog() -> None:
    dialog = UacDialog("127.0.0.1", 5999, "127.0.0.1", 5060)
    invite = dialog.request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    parsed = parse_message(serialize(invite))
    assert (
        isinstance(parsed, Request)
        and parsed.uri == "sip:1000@127.0.0.1:5060"
        and parsed.cseq == (1, "INVITE")
    )
    ok = Response(200, "OK", Headers([*invite.headers.items()]))
    ok.headers.set("To", "<sip:1000@127.0.0.1:5060>;tag=bridge")
    ok.headers.set("Contact", "<sip:ivr@127.0.0.1:5060>")
    dialog.answered(ok)
    ack = dialog.ack(invite, ok)
    assert ack.cseq == (1, "ACK") and ack.via_branch != invite.via_branch  # a 2xx ACK is its own transaction
    assert ack.uri == "sip:ivr@127.0.0.1:5060" and ack.to_tag == "bridge"
    bye = dialog.request("BYE")
    assert bye.cseq == (2, "BYE") and bye.call_id == invite.call_id and bye.from_tag == dialog.local_tag


def test_a_non_2xx_is_acked_on_the_invite_branch() -> None:
    dialog = UacDialog("127.0.0.1", 5999, "127.0.0.1", 5060)
    invite = dialog.request("INVITE")
    busy = Response(486, "Busy Here", Headers([*invite.headers.items()]))
    busy.headers.set("To", "<sip:1000@127.0.0.1:5060>;tag=x")
    ack = dialog.ack(invite, busy)
    assert ack.via_branch == invite.via_branch and ack.uri == invite.uri and ack.to_tag == "x"


def test_digits_are_one_rfc4733_event_each_and_the_timestamp_runs_on() -> None:
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    receiver = DtmfReceiver()
    got = []
    for digit in "1#":
        for payload, marker, advance in digit_packets(digit):
            packet = parse_rtp(sender.packet(payload, advance, marker=marker, payload_type=DTMF_PAYLOAD_TYPE))
            event = receiver.feed(packet)
            if event is not None:
                got.append(event.digit)
    assert got == ["1", "#"]
    assert sender.timestamp == 2 * 8 * 160  # 8 ticks of 20 ms per digit


def test_a_refer_target_without_its_headers_and_the_headers_it_carried() -> None:
    refer = Request("REFER", "sip:c@h", Headers([
        ("Refer-To", "<sip:agents@127.0.0.1:5070?X-IVR-Channel-Id=abc&User-to-User=04%3Bencoding%3Dhex>"),
        ("X-IVR-Transcript", "상담원 연결해 주세요"),
        ("Referred-By", "<sip:ivr@h>"),
    ]))  # fmt: skip
    seen = refer_of(refer)
    assert seen.target == "sip:agents@127.0.0.1:5070"
    assert dict(seen.headers) == {
        "X-IVR-Channel-Id": "abc",
        "User-to-User": "04;encoding=hex",
        "X-IVR-Transcript": "상담원 연결해 주세요",
    }
