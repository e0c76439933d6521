"""Call-ID reuse (§8.2.2.2), 488 Warning, 413/513 for oversized requests, bare CR, the Server header, and
where in-dialog TCP requests go once the caller's connection is gone."""

from __future__ import annotations

import asyncio

import pytest

from ivr.sip.events import CallEnded, IncomingCall, Peer, SipEvent
from ivr.sip.message import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    SipTooLargeError,
    StreamFramer,
    parse_message,
)
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent

from .helpers import ANSWER, CALLER, OFFER, confirmed_call, request, requests, responses, run_timers, statuses


def _rejected_with_488(ua: UserAgent) -> None:
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 488, 0.0, warning="no G.711")
    assert ua.take_events() == [CallEnded("call-1", "rejected")]
    (resp,) = responses(ua.take_outgoing())
    ua.receive(request("ACK", to_tag=resp.to_tag), CALLER, 0.1)


def test_retry_after_488_with_the_same_call_id_is_a_new_call_not_482() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    _rejected_with_488(ua)
    # §8.1.3.5: the retry keeps Call-ID and From tag, with a higher CSeq and a new branch.
    retry = request("INVITE", cseq=2, branch="z9hG4bK-retry", body=OFFER)
    (incoming,) = ua.receive(retry, CALLER, 2.0)
    assert isinstance(incoming, IncomingCall) and incoming.invite.cseq == (2, "INVITE")
    assert statuses(ua.take_outgoing()) == [100]
    ua.answer("call-1", ANSWER, 2.1)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.cseq == (2, "INVITE")


def test_call_id_of_an_ended_call_survives_the_old_calls_cleanup() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    ua.receive(request("BYE", cseq=2, to_tag=tag, branch="z9hG4bK-bye"), CALLER, 1.0)
    ua.take_outgoing()
    again = request("INVITE", branch="z9hG4bK-new", from_tag="other-tag", body=OFFER)
    assert [type(e) for e in ua.receive(again, CALLER, 5.0)] == [IncomingCall]
    ua.take_outgoing()
    run_timers(ua, 40.0)  # past the ended call's 32 s garbage collection
    ua.answer("call-1", ANSWER, 40.0)
    assert statuses(ua.take_outgoing()) == [200]


def test_merged_request_still_gets_482() -> None:
    # Same From tag, Call-ID and CSeq as an ongoing INVITE transaction, another branch: a fork that met again.
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    assert ua.receive(request("INVITE", branch="z9hG4bK-other", body=OFFER), CALLER, 0.1) == []
    assert statuses(ua.take_outgoing()) == [482]


def test_new_dialog_under_a_live_calls_call_id_is_busy_with_a_warning() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    confirmed_call(ua)
    other = request("INVITE", branch="z9hG4bK-2", from_tag="other-tag", body=OFFER)
    assert ua.receive(other, CALLER, 1.0) == []
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 486 and resp.headers.lines("Warning")


def test_488_always_carries_a_warning() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 488, 0.0)
    (resp,) = responses(ua.take_outgoing())
    (warning,) = resp.headers.lines("Warning")
    assert warning.startswith('399 192.0.2.1 "') and len(warning) > len('399 192.0.2.1 ""')


def test_488_warning_takes_the_sdp_warn_code() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 488, 0.0, warning="no supported audio codec offered (G729/8000)", warn_code=305)
    (resp,) = responses(ua.take_outgoing())
    assert resp.headers.lines("Warning") == ['305 192.0.2.1 "no supported audio codec offered (G729/8000)"']


def test_oversized_body_on_a_stream_is_413() -> None:
    big = request("INVITE").replace(b"Content-Length: 0", f"Content-Length: {MAX_BODY_BYTES + 1}".encode())
    with pytest.raises(SipTooLargeError) as info:
        StreamFramer().feed(big)
    assert info.value.status == 413
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.reject_malformed(info.value, Peer("tcp", "192.0.2.10", 40000, conn_id=1))
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 413 and resp.cseq == (1, "INVITE")


def test_oversized_content_length_on_udp_is_413() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    big = request("OPTIONS").replace(b"Content-Length: 0", f"Content-Length: {MAX_BODY_BYTES + 1}".encode())
    ua.receive(big, CALLER, 0.0)
    assert statuses(ua.take_outgoing()) == [413]


def test_oversized_header_section_on_a_stream_is_513_from_the_lines_that_fit() -> None:
    head = request("OPTIONS").split(b"Content-Length")[0]
    data = head + b"Subject: " + b"x" * 70 + b"\r\n"
    data += b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 60) for i in range(MAX_HEADER_BYTES // 70 + 10))
    with pytest.raises(SipTooLargeError) as info:
        StreamFramer().feed(data)
    assert info.value.status == 513 and info.value.partial is not None
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.reject_malformed(info.value, Peer("tcp", "192.0.2.10", 40000, conn_id=1))
    assert statuses(ua.take_outgoing()) == [513]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSubject: hi\rInjected: yes\r\n"),
        (b"To: <sip:ivr@192.0.2.1>", b"To: <sip:ivr@192.0.2.1>\rInjected: yes"),  # To is echoed
    ],
)
def test_bare_cr_in_a_header_is_400_and_never_echoed(old: bytes, new: bytes) -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("OPTIONS").replace(old, new), CALLER, 0.0)
    (out,) = ua.take_outgoing()
    assert out.data.startswith(b"SIP/2.0 400 bare CR in header line")
    assert out.data.count(b"\r") == out.data.count(b"\r\n")  # every CR ends a line
    assert not any(line.startswith(b"Injected") for line in out.data.split(b"\r\n"))


def test_server_header_is_configurable_and_carries_no_version_by_default() -> None:
    for user_agent, expected in ((None, None), ("Acme IVR", "Acme IVR")):
        ua = UserAgent(host="192.0.2.1", port=5060, user_agent=user_agent)
        ua.receive(request("OPTIONS"), CALLER, 0.0)
        (resp,) = responses(ua.take_outgoing())
        assert resp.headers.get("Server") == expected
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("OPTIONS"), CALLER, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.headers.get("Server") == "ivr"
    quiet = UserAgent(host="192.0.2.1", port=5060, user_agent=None)
    confirmed_call(quiet)
    quiet.hangup("call-1", 1.0)
    (bye,) = requests(quiet.take_outgoing())
    assert "User-Agent" not in bye.headers


def test_bye_over_tcp_says_where_to_reconnect_when_contact_is_a_name() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tcp = Peer("tcp", "192.0.2.10", 40000, conn_id=7)
    invite = request("INVITE", body=OFFER, via_host="phone.example.com:5072").replace(
        b"Contact: <sip:alice@192.0.2.10:5070>", b"Contact: <sip:alice@phone.example.com;transport=tcp>"
    )
    ua.receive(invite, tcp, 0.0)
    (trying,) = ua.take_outgoing()
    assert trying.peer.reconnect == ("192.0.2.10", 5072)  # responses too (§18.2.2)
    ua.answer("call-1", ANSWER, 0.0)
    (ok,) = responses(ua.take_outgoing())
    ua.receive(request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack"), tcp, 0.1)
    ua.hangup("call-1", 1.0)
    (bye,) = ua.take_outgoing()
    assert bye.peer == tcp and bye.peer.reconnect == ("192.0.2.10", 5072)


async def test_bye_reaches_the_callers_listening_port_after_its_connection_dropped() -> None:
    events: list[SipEvent] = []
    transport = SipTransport(UserAgent(host="127.0.0.1", port=0), events.append)
    await transport.start("127.0.0.1", 0)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    listen_port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", transport.port), 5)
        # Contact is a name we cannot resolve; the Via sent-by port is where the phone listens.
        invite = request("INVITE", body=OFFER, via_host=f"127.0.0.1:{listen_port}").replace(
            b"Contact: <sip:alice@192.0.2.10:5070>", b"Contact: <sip:alice@phone.invalid;transport=tcp>"
        )
        writer.write(invite.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # 100 Trying
        (incoming,) = events
        assert isinstance(incoming, IncomingCall)
        transport.answer(incoming.call_id, ANSWER)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        ok = parse_message(head + await reader.readexactly(len(ANSWER)))
        ack = request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack", via_host=f"127.0.0.1:{listen_port}")
        writer.write(ack.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        await asyncio.sleep(0.05)
        writer.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.sleep(0.05)  # let the bridge see the connection go
        transport.hangup(incoming.call_id)
        bye = await asyncio.wait_for(received.get(), 5)
        assert bye.startswith(b"BYE sip:alice@phone.invalid;transport=tcp SIP/2.0\r\n")
    finally:
        listener.close()
        await transport.close()
