"""UserAgent: transactions, timers, dialogs, CANCEL, REFER/NOTIFY, INFO, REGISTER, response routing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    IncomingCall,
    InfoDtmf,
    Peer,
    ReferStatus,
    Registered,
    ReInvite,
)
from ivr.sip.message import Request, Response, parse_message, serialize
from ivr.sip.useragent import UserAgent

from .helpers import (
    ANSWER,
    CALLER,
    OFFER,
    confirmed_call,
    new_call,
    request,
    requests,
    responses,
    run_timers,
    statuses,
)


def test_invite_gets_100_and_duplicate_is_absorbed() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    events = ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    (incoming,) = events
    assert isinstance(incoming, IncomingCall) and incoming.invite.body == OFFER and incoming.peer == CALLER
    assert statuses(ua.take_outgoing()) == [100]
    assert ua.receive(request("INVITE", body=OFFER), CALLER, 0.2) == []
    assert statuses(ua.take_outgoing()) == [100]
    ua.ring("call-1", 0.3)
    (ringing,) = responses(ua.take_outgoing())
    assert ringing.status == 180 and ringing.to_tag
    assert ua.receive(request("INVITE", body=OFFER), CALLER, 0.4) == []
    assert statuses(ua.take_outgoing()) == [180]


def test_2xx_retransmitted_until_ack_timeout_then_bye() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ok = new_call(ua)
    assert ok.status == 200 and ok.body == ANSWER and ok.headers.get("Content-Type") == "application/sdp"
    assert ok.headers.get("Contact") == "<sip:192.0.2.1:5060>"
    sent, events = run_timers(ua, 40.0)
    # T1 doubling up to T2 (§13.3.1.4), then the ACK wait ends at 64*T1 with a BYE.
    assert sent[:8] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5]
    assert 32.0 in sent
    assert events.count(CallEnded("call-1", "no-ack")) == 1
    assert not any(isinstance(e, CallEnded) and e.cause == "local-bye" for e in events)


def test_ack_stops_retransmission() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    confirmed_call(ua)
    sent, events = run_timers(ua, 100.0)
    assert sent == [] and events == []


def test_2xx_not_retransmitted_over_tcp() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tcp = Peer("tcp", "192.0.2.10", 40000, conn_id=7)
    ok = new_call(ua, tcp)
    assert ok.headers.get("Contact") == "<sip:192.0.2.1:5060;transport=tcp>"
    sent, events = run_timers(ua, 31.0)
    assert sent == [] and events == []


def test_cancel_before_answer() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    events = ua.receive(request("CANCEL", cseq_method="CANCEL"), CALLER, 1.0)
    assert events == [CallCancelled("call-1")]
    out = responses(ua.take_outgoing())
    assert [(r.status, r.cseq[1]) for r in out] == [(200, "CANCEL"), (487, "INVITE")]
    # The ACK for the 487 is absorbed by the transaction and stops Timer G.
    assert ua.receive(request("ACK", to_tag=out[1].to_tag), CALLER, 1.1) == []
    sent, _ = run_timers(ua, 60.0)
    assert sent == []
    ua.answer("call-1", ANSWER, 2.0)
    assert ua.take_outgoing() == []


def test_cancel_without_match_is_481() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("CANCEL", branch="z9hG4bK-none"), CALLER, 0.0)
    assert statuses(ua.take_outgoing()) == [481]


def test_reject_retransmits_over_udp_until_ack() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 486, 0.0)
    assert ua.take_events() == [CallEnded("call-1", "rejected")]
    assert statuses(ua.take_outgoing()) == [486]
    sent, _ = run_timers(ua, 3.6)
    assert sent == [0.5, 1.5, 3.5]  # Timer G
    ua.receive(request("ACK", to_tag="x"), CALLER, 3.7)
    sent, _ = run_timers(ua, 60.0)
    assert sent == []


def test_remote_bye() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    events = ua.receive(request("BYE", cseq=2, to_tag=tag, branch="z9hG4bK-bye"), CALLER, 5.0)
    assert events == [CallEnded("call-1", "remote-bye")]
    assert statuses(ua.take_outgoing()) == [200]
    # A retransmitted BYE gets the same 200 again and no second event.
    assert ua.receive(request("BYE", cseq=2, to_tag=tag, branch="z9hG4bK-bye"), CALLER, 5.5) == []
    assert statuses(ua.take_outgoing()) == [200]


def test_local_bye_completes_once() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    ua.hangup("call-1", 1.0)
    (bye,) = requests(ua.take_outgoing())
    assert bye.method == "BYE" and bye.uri == "sip:alice@192.0.2.10:5070"
    assert bye.from_tag == tag and bye.to_tag == "caller-tag" and (bye.via_branch or "").startswith("z9hG4bK")
    ok = serialize(Response(200, "OK", bye.headers.copy()))
    assert ua.receive(ok, CALLER, 1.1) == [CallEnded("call-1", "local-bye")]
    assert ua.receive(ok, CALLER, 1.2) == []


def test_local_bye_timeout_and_retransmission() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    confirmed_call(ua)
    ua.hangup("call-1", 0.0)
    ua.take_outgoing()
    sent, events = run_timers(ua, 40.0)
    assert sent[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # Timer E, capped at T2
    assert events == [CallEnded("call-1", "local-bye")]


def test_hangup_before_answer_sends_480() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.hangup("call-1", 0.5)
    assert statuses(ua.take_outgoing()) == [480]
    assert ua.take_events() == [CallEnded("call-1", "rejected")]


def test_refer_and_notify_sipfrag() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    ua.refer("call-1", "sip:agent@192.0.2.50", 1.0)
    (refer,) = requests(ua.take_outgoing())
    assert refer.method == "REFER" and refer.headers.get("Refer-To") == "<sip:agent@192.0.2.50>"
    assert refer.headers.get("Contact") is not None
    accepted = serialize(Response(202, "Accepted", refer.headers.copy()))
    assert ua.receive(accepted, CALLER, 1.1) == []
    for cseq, frag, expected in (
        (2, b"SIP/2.0 100 Trying\r\n", (100, False)),
        (3, b"SIP/2.0 200 OK\r\n", (200, True)),
    ):
        notify = request(
            "NOTIFY",
            cseq=cseq,
            to_tag=tag,
            branch=f"z9hG4bK-n{cseq}",
            extra="Event: refer\r\nSubscription-State: active\r\nContent-Type: message/sipfrag\r\n",
            body=frag,
        )
        assert ua.receive(notify, CALLER, 2.0) == [ReferStatus("call-1", *expected)]
        assert statuses(ua.take_outgoing()) == [200]


def test_refer_rejected() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    confirmed_call(ua)
    ua.refer("call-1", "<sip:agent@192.0.2.50>", 1.0)
    (refer,) = requests(ua.take_outgoing())
    assert refer.headers.get("Refer-To") == "<sip:agent@192.0.2.50>"
    forbidden = serialize(Response(403, "Forbidden", refer.headers.copy()))
    assert ua.receive(forbidden, CALLER, 1.1) == [ReferStatus("call-1", 403, True)]


def test_info_dtmf_and_reinvite_and_options_in_dialog() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    relay = request(
        "INFO", cseq=2, to_tag=tag, branch="z9hG4bK-i1",
        extra="Content-Type: application/dtmf-relay\r\n", body=b"Signal=5\r\nDuration=160\r\n",
    )  # fmt: skip
    assert ua.receive(relay, CALLER, 1.0) == [InfoDtmf("call-1", "5")]
    plain = request(
        "INFO", cseq=3, to_tag=tag, branch="z9hG4bK-i2", extra="Content-Type: application/dtmf\r\n", body=b"#"
    )
    assert ua.receive(plain, CALLER, 1.1) == [InfoDtmf("call-1", "#")]
    assert statuses(ua.take_outgoing()) == [200, 200]
    reinvite = request("INVITE", cseq=4, to_tag=tag, branch="z9hG4bK-re", body=OFFER)
    (event,) = ua.receive(reinvite, CALLER, 2.0)
    assert isinstance(event, ReInvite) and event.invite.cseq == (4, "INVITE")
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.body == ANSWER  # same offer (a session refresh): the very same SDP back
    assert ua.receive(request("ACK", cseq=4, to_tag=tag, branch="z9hG4bK-a4"), CALLER, 2.1) == []
    ua.receive(request("OPTIONS", cseq=5, to_tag=tag, branch="z9hG4bK-o"), CALLER, 3.0)
    assert statuses(ua.take_outgoing()) == [200]


def test_unknown_dialog_and_cseq_order() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    tag = confirmed_call(ua)
    ua.receive(request("BYE", cseq=2, to_tag="nope", branch="z9hG4bK-x"), CALLER, 1.0)
    assert statuses(ua.take_outgoing()) == [481]
    ua.receive(request("INFO", cseq=5, to_tag=tag, branch="z9hG4bK-y"), CALLER, 1.0)
    ua.receive(request("INFO", cseq=3, to_tag=tag, branch="z9hG4bK-z"), CALLER, 1.0)
    assert statuses(ua.take_outgoing()) == [200, 500]


def test_options_out_of_dialog() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("OPTIONS"), CALLER, 0.0)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and "REFER" in ok.headers.get_all("Allow")
    assert ok.headers.get("Accept") == "application/sdp" and ok.to_tag


def test_register_allowed_and_denied() -> None:
    reg = request("REGISTER", extra="Expires: 120\r\n", uri="sip:192.0.2.1")
    denied = UserAgent(host="192.0.2.1", port=5060, registrar_allow=lambda peer: peer.host == "10.9.9.9")
    assert denied.receive(reg, CALLER, 0.0) == []
    assert statuses(denied.take_outgoing()) == [403]
    ua = UserAgent(host="192.0.2.1", port=5060, registrar_allow=lambda peer: True)
    events = ua.receive(reg, CALLER, 0.0)
    assert events == [Registered("sip:ivr@192.0.2.1", "sip:alice@192.0.2.10:5070", 120, CALLER)]
    (ok,) = responses(ua.take_outgoing())
    assert ok.headers.get("Contact") == "<sip:alice@192.0.2.10:5070>;expires=120"
    remove = request("REGISTER", cseq=2, branch="z9hG4bK-r2", extra="Expires: 0\r\n", uri="sip:192.0.2.1")
    assert ua.receive(remove, CALLER, 1.0)[0].expires == 0  # type: ignore[union-attr]
    (ok,) = responses(ua.take_outgoing())
    assert ok.headers.get("Contact") is None


def test_response_routing_received_and_rport() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    nat = Peer("udp", "203.0.113.5", 61000)
    ua.receive(request("OPTIONS", via_host="10.0.0.5:5070"), nat, 0.0)
    (out,) = ua.take_outgoing()
    assert out.peer == Peer("udp", "203.0.113.5", 5070)  # received= host, sent-by port (§18.2.2)
    via = parse_message(out.data).top_via
    assert via is not None and via.received == "203.0.113.5"
    ua.receive(request("OPTIONS", via_host="10.0.0.5:5070;rport", branch="z9hG4bK-2"), nat, 0.0)
    (out,) = ua.take_outgoing()
    assert out.peer == Peer("udp", "203.0.113.5", 61000)  # RFC 3581
    via = parse_message(out.data).top_via
    assert via is not None and via.rport == 61000


def test_unsupported_require_and_content_type() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", extra="Require: precondition\r\n", body=OFFER), CALLER, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 420 and resp.headers.get("Unsupported") == "precondition"
    ua.receive(
        request("INVITE", branch="z9hG4bK-2", call_id="c2", extra="Content-Type: text/plain\r\n", body=b"x"),
        CALLER,
        0,
    )
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 415 and resp.headers.get("Accept") == "application/sdp"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_receive_never_raises(data: bytes) -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(data, CALLER, 0.0)
    ua.receive(request("INVITE", body=OFFER) + data, CALLER, 0.0)
    ua.tick(100.0)


def test_request_helper_is_parseable() -> None:
    assert isinstance(parse_message(request("INVITE", body=OFFER)), Request)


def test_ack_with_a_fresh_to_tag_still_confirms_the_dialog() -> None:
    # pyVoIP 1.6.8 sends its 2xx ACK with a random To tag; Call-ID, From tag and CSeq still name our dialog.
    ua = UserAgent(host="192.0.2.1", port=5060)
    new_call(ua)
    ack = request("ACK", branch="z9hG4bK-ack", to_tag="not-ours")
    assert ua.receive(ack, CALLER, 0.1) == [CallEstablished("call-1")]
    sent, events = run_timers(ua, 100.0)
    assert sent == [] and events == []  # no 2xx retransmission, no ack-timeout BYE


def test_ack_from_another_party_does_not_confirm_the_dialog() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    new_call(ua)
    ack = request("ACK", branch="z9hG4bK-ack", to_tag="not-ours", from_tag="someone-else")
    assert ua.receive(ack, CALLER, 0.1) == []


def test_reject_with_a_warning_adds_a_quoted_escaped_399_warning_header() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    text = "connection address 'IP6 ::1' is \"not\" IPv4 \\ here\r\nInjected: x\x00\udcff"
    ua.reject("call-1", 488, 0.0, None, warning=text)
    assert ua.take_events() == [CallEnded("call-1", "rejected")]
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 488 and resp.reason == "Not Acceptable Here"
    assert "Injected" not in resp.headers  # no control character survives to split the header (§20.43)
    # quoted-string (§25.1): '"' and '\' escaped; a lone surrogate shown as text, not sent as a raw byte.
    assert resp.headers.lines("Warning") == [
        '399 192.0.2.1 "connection address \'IP6 ::1\' is \\"not\\" IPv4 \\\\ here Injected: x \\\\udcff"'
    ]


def test_reject_with_a_warning_brackets_an_ipv6_warn_agent_and_keeps_the_reason() -> None:
    ua = UserAgent(host="2001:db8::1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 488, 0.0, "No IPv6 Media", warning="ipv4 only")
    (resp,) = responses(ua.take_outgoing())
    assert resp.reason == "No IPv6 Media"
    assert resp.headers.lines("Warning") == ['399 [2001:db8::1] "ipv4 only"']  # warn-agent is a hostport


def test_reject_without_a_warning_has_no_warning_header() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", body=OFFER), CALLER, 0.0)
    ua.take_outgoing()
    ua.reject("call-1", 486, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 486 and "Warning" not in resp.headers


def test_register_with_a_non_ascii_digit_in_expires_gets_the_default_not_silence() -> None:
    # "6²0": the raw octets C2 B2 decode to "²", which str.isdigit() accepts and int() does not.
    ua = UserAgent(host="192.0.2.1", port=5060, registrar_allow=lambda peer: True)
    events = ua.receive(request("REGISTER", extra="Expires: 6²0\r\n".replace("²", "\u00b2")), CALLER, 0.0)
    assert ua.take_diagnostics() == []
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.headers.get("Contact") == "<sip:alice@192.0.2.10:5070>;expires=3600"
    assert [(e.contact, e.expires) for e in events if isinstance(e, Registered)] == [
        ("sip:alice@192.0.2.10:5070", 3600)
    ]
