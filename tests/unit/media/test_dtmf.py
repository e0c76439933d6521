import struct
from pathlib import Path

import pytest

from ivr.media.dtmf import DtmfDigit, DtmfReceiver, encode_event
from ivr.media.rtp import RtpPacket, parse_rtp
from tests.tools import require_tool

SIPP_PCAP = Path("/usr/share/sip-tester")


def event(
    digit: str, ts: int, duration: int, *, end: bool = False, seq: int = 0, volume: int = 10
) -> RtpPacket:
    return RtpPacket(101, False, seq, ts, 0xABC, encode_event(digit, end, volume, duration))


def rfc4733_digit(digit: str, ts: int, *, steps: int = 5, seq: int = 0) -> list[RtpPacket]:
    """RFC 4733 §2.5.1: updates every 50 ms with growing duration, then the end packet sent three times."""
    packets = [event(digit, ts, 400 * (i + 1), seq=seq + i) for i in range(steps)]
    end = event(digit, ts, 400 * steps + 80, end=True, seq=seq + steps)
    return [*packets, end, end, end]


def digits(receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[str]:
    return [d.digit for p in packets if (d := receiver.feed(p)) is not None]


def test_encode_event_layout() -> None:
    assert encode_event("#", True, 10, 1280) == bytes([11, 0x8A, 0x05, 0x00])
    assert encode_event("d", False, 0, 0) == bytes([15, 0, 0, 0])
    with pytest.raises(ValueError):
        encode_event("x", False, 10, 0)
    with pytest.raises(ValueError):
        encode_event("1", False, 64, 0)


def test_one_digit_per_event_with_redundant_end_packets() -> None:
    receiver = DtmfReceiver()
    packets = rfc4733_digit("5", 1000)
    first = receiver.feed(packets[0])
    assert first == DtmfDigit("5", 400, 10)
    assert digits(receiver, packets[1:]) == []


def test_every_event_code() -> None:
    receiver = DtmfReceiver()
    sent = "0123456789*#ABCD"
    packets = [p for i, d in enumerate(sent) for p in rfc4733_digit(d, 10_000 + 4000 * i)]
    assert "".join(digits(receiver, packets)) == sent


def test_repeated_digit_with_new_timestamp_is_a_new_digit() -> None:
    receiver = DtmfReceiver()
    assert digits(receiver, rfc4733_digit("1", 8000) + rfc4733_digit("1", 12000)) == ["1", "1"]


def test_lost_first_packet_or_lost_end_packets_still_one_digit() -> None:
    receiver = DtmfReceiver()
    first = rfc4733_digit("7", 5000)[1:]  # start lost
    second = rfc4733_digit("8", 9000)[:5]  # all end packets lost
    third = rfc4733_digit("9", 13000)[-1:]  # only an end packet arrived
    assert digits(receiver, first + second + third) == ["7", "8", "9"]


def test_late_retransmission_of_an_earlier_event_is_not_a_new_digit() -> None:
    receiver = DtmfReceiver()
    one = rfc4733_digit("1", 8000)
    two = rfc4733_digit("2", 12000)
    assert digits(receiver, one[:3] + two[:2] + one[3:] + two[2:]) == ["1", "2"]


def test_long_event_segments_are_one_digit() -> None:
    # RFC 4733 §2.5.1.3: a key held past the 16-bit duration restarts with timestamp + 0xFFFF
    receiver = DtmfReceiver()
    segment1 = [event("0", 100, d) for d in (400, 32000, 65535)]
    segment2 = [event("0", 100 + 0xFFFF, d) for d in (400, 8000)] + [event("0", 100 + 0xFFFF, 8080, end=True)]
    assert digits(receiver, segment1 + segment2) == ["0"]


def test_events_beyond_dtmf_are_ignored() -> None:
    receiver = DtmfReceiver()
    flash = RtpPacket(101, False, 1, 4000, 1, struct.pack("!BBH", 16, 10, 400))
    short = RtpPacket(101, False, 2, 8000, 1, b"\x01\x0a")
    assert receiver.feed(flash) is None
    assert receiver.feed(short) is None


def read_pcap_udp_payloads(path: Path) -> list[bytes]:
    """Classic libpcap file, Ethernet + IPv4 + UDP only (what sipp ships)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    order = "<" if magic == 0xA1B2C3D4 else ">"
    assert struct.unpack_from(order + "I", data)[0] == 0xA1B2C3D4
    assert struct.unpack_from(order + "I", data, 20)[0] == 1  # LINKTYPE_ETHERNET
    payloads = []
    offset = 24
    while offset + 16 <= len(data):
        captured = struct.unpack_from(order + "I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        ip_header = (frame[14] & 0x0F) * 4
        udp = frame[14 + ip_header :]
        udp_length = struct.unpack_from("!H", udp, 4)[0]
        payloads.append(udp[8:udp_length])
    return payloads


@pytest.mark.parametrize(("name", "digit"), [("1", "1"), ("pound", "#"), ("star", "*"), ("0", "0")])
def test_sipp_shipped_pcap(name: str, digit: str) -> None:
    require_tool("sipp")
    path = SIPP_PCAP / f"dtmf_2833_{name}.pcap"
    packets = [parse_rtp(p) for p in read_pcap_udp_payloads(path)]
    assert len(packets) >= 4
    assert {p.payload_type for p in packets} == {101}
    receiver = DtmfReceiver()
    assert digits(receiver, packets) == [digit]
