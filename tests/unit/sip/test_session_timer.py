"""RFC 4028 session timers and RFC 3311 UPDATE in the sans-I/O UserAgent: negotiation, refreshes, expiry."""

from __future__ import annotations

from ivr.sip.events import CallEnded, CallEstablished, IncomingCall, Outgoing
from ivr.sip.message import Headers, Request, Response, make_response, serialize
from ivr.sip.session_timer import SessionTimer, negotiate_uas, parse_session_expires
from ivr.sip.useragent import UserAgent

from .helpers import ANSWER, CALLER, OFFER, request, requests, responses, run_timers, statuses

PEER_ALLOW = "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n"


def timer_call(ua: UserAgent, extra: str, *, answer_at: float = 0.0) -> tuple[Response, str]:
    """An INVITE with `extra` headers, answered at `answer_at` and ACKed 0.1 s later."""
    assert [type(e) for e in ua.receive(request("INVITE", extra=extra, body=OFFER), CALLER, 0.0)] == [
        IncomingCall
    ]
    assert statuses(ua.take_outgoing()) == [100]
    ua.answer("call-1", ANSWER, answer_at)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.to_tag
    events = ua.receive(request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack"), CALLER, answer_at + 0.1)
    assert events == [CallEstablished("call-1")]
    return ok, ok.to_tag


def sent_until(ua: UserAgent, until: float) -> tuple[list[tuple[float, Outgoing]], list[object]]:
    """Fire every deadline up to `until`, keeping what went out and when."""
    out: list[tuple[float, Outgoing]] = []
    events: list[object] = []
    while (deadline := ua.next_deadline()) is not None and deadline <= until:
        events += ua.tick(deadline)
        out += [(deadline, o) for o in ua.take_outgoing()]
    return out, events


def reply(req: Request, status: int, headers: list[tuple[str, str]] | None = None) -> bytes:
    return serialize(make_response(req, status, headers=headers or []))


def test_session_expires_below_min_se_gets_422() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    extra = "Supported: timer\r\nSession-Expires: 60\r\n"
    assert ua.receive(request("INVITE", extra=extra, body=OFFER), CALLER, 0.0) == []
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 422 and resp.headers.get("Min-SE") == "90"
    # The caller retries with our minimum, which is accepted.
    retry = "Supported: timer\r\nSession-Expires: 90\r\nMin-SE: 90\r\n"
    events = ua.receive(request("INVITE", cseq=2, branch="z9hG4bK-2", extra=retry, body=OFFER), CALLER, 0.2)
    assert [type(e) for e in events] == [IncomingCall]


def test_configured_min_se_is_enforced() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060, min_se=300)
    ua.receive(request("INVITE", extra="Session-Expires: 200\r\n", body=OFFER), CALLER, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 422 and resp.headers.get("Min-SE") == "300"


def test_200_carries_session_expires_and_require_timer() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ok, _ = timer_call(ua, "Require: timer\r\nSupported: timer\r\nSession-Expires: 1800;refresher=uac\r\n")
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get_all("Require") == ["timer"]
    assert "timer" in ok.headers.get_all("Supported")
    assert "UPDATE" in ok.headers.get_all("Allow")


def test_supported_timer_without_interval_gets_ours_with_caller_refreshing() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060, session_expires=600)
    ok, _ = timer_call(ua, "Supported: timer\r\n")
    assert ok.headers.get("Session-Expires") == "600;refresher=uac"
    assert ok.headers.get_all("Require") == ["timer"]


def test_caller_without_timer_support_makes_us_the_refresher_without_require() -> None:
    # A proxy inserted Session-Expires for a UAC that does not support timers (RFC 4028 §9).
    ua = UserAgent(host="192.0.2.1", port=5060)
    ok, _ = timer_call(ua, "Session-Expires: 300;refresher=uac\r\n")
    assert ok.headers.get("Session-Expires") == "300;refresher=uas"
    assert ok.headers.get_all("Require") == []


def test_no_refresh_from_the_caller_ends_the_call_with_bye() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n")
    # Expiry: 90 s less min(32, 90/3) = 60 s after the 200.
    out, events = sent_until(ua, 59.9)
    assert out == [] and events == []
    out, events = sent_until(ua, 60.0)
    assert events == [CallEnded("call-1", "session-expired")]
    (bye,) = requests([o for _, o in out])
    assert bye.method == "BYE" and [t for t, _ in out] == [60.0]
    # The BYE's 200 ends nothing more.
    assert ua.receive(reply(bye, 200), CALLER, 60.1) == []


def test_long_interval_expires_32_s_early() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n", answer_at=10.0)
    _, events = sent_until(ua, 10.0 + 1800 - 32 - 0.1)
    assert events == []
    _, events = sent_until(ua, 10.0 + 1800 - 32)
    assert events == [CallEnded("call-1", "session-expired")]


def test_refresh_reinvite_resets_the_expiry() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    _, tag = timer_call(ua, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n")
    refresh = request(
        "INVITE",
        cseq=2,
        branch="z9hG4bK-re",
        to_tag=tag,
        extra="Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        body=OFFER,
    )
    ua.receive(refresh, CALLER, 40.0)
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert ua.receive(request("ACK", cseq=2, to_tag=tag, branch="z9hG4bK-ack2"), CALLER, 40.1) == []
    out, events = sent_until(ua, 99.9)
    assert out == [] and events == []
    _, events = sent_until(ua, 100.0)
    assert events == [CallEnded("call-1", "session-expired")]


def test_refresh_update_without_sdp_gets_200_and_resets_the_expiry() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    _, tag = timer_call(ua, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n")
    update = request(
        "UPDATE", cseq=2, branch="z9hG4bK-up", to_tag=tag, extra="Session-Expires: 90;refresher=uac\r\n"
    )
    assert ua.receive(update, CALLER, 50.0) == []
    (ok,) = responses(ua.take_outgoing())
    assert (ok.status, ok.body, ok.headers.get("Session-Expires")) == (200, b"", "90;refresher=uac")
    # An UPDATE without Session-Expires is still a refresh of the same interval.
    ua.receive(request("UPDATE", cseq=3, branch="z9hG4bK-up2", to_tag=tag), CALLER, 100.0)
    assert statuses(ua.take_outgoing()) == [200]
    _, events = sent_until(ua, 159.9)
    assert events == []
    _, events = sent_until(ua, 160.0)
    assert events == [CallEnded("call-1", "session-expired")]


def test_we_refresh_with_update_at_half_time_when_the_peer_allows_it() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, PEER_ALLOW + "Supported: timer\r\nSession-Expires: 120;refresher=uas\r\n")
    out, _ = sent_until(ua, 59.9)
    assert out == []
    out, events = sent_until(ua, 60.0)
    (update,) = requests([o for _, o in out])
    assert update.method == "UPDATE" and update.body == b"" and events == []
    assert update.headers.get("Session-Expires") == "120;refresher=uac"
    assert update.headers.get_all("Require") == ["timer"]
    ok = reply(update, 200, [("Session-Expires", "120;refresher=uac"), ("Require", "timer")])
    assert ua.receive(ok, CALLER, 60.2) == []
    # The next refresh comes half an interval after that 200; answered each time, the call never expires.
    firsts: list[float] = []
    now = 60.2
    while now < 1000.0:
        out, events = sent_until(ua, now + 60.0)
        assert events == []
        (again, *_) = requests([o for _, o in out])
        firsts.append(out[0][0])
        now = out[0][0] + 0.1
        assert ua.receive(reply(again, 200, [("Session-Expires", "120;refresher=uac")]), CALLER, now) == []
    assert firsts[:3] == [120.2, 180.3, 240.4]


def test_we_refresh_with_reinvite_and_ack_its_200_when_update_is_not_allowed() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, "Supported: timer\r\nSession-Expires: 100;refresher=uas\r\n")
    out, _ = sent_until(ua, 50.0)
    (invite,) = requests([o for _, o in out])
    assert invite.method == "INVITE" and invite.body == ANSWER
    assert invite.headers.get("Content-Type") == "application/sdp"
    assert invite.headers.get("Session-Expires") == "100;refresher=uac"
    ok = serialize(
        make_response(
            invite,
            200,
            headers=[("Session-Expires", "100;refresher=uac"), ("Contact", "<sip:alice@192.0.2.10:5070>")],
            body=OFFER,
            content_type="application/sdp",
        )
    )
    assert ua.receive(ok, CALLER, 50.1) == []
    (ack,) = requests(ua.take_outgoing())
    assert ack.method == "ACK" and ack.cseq == (invite.cseq[0], "ACK")
    assert ack.via_branch != invite.via_branch  # a 2xx ACK is its own transaction (§17.1.1.3)
    # A retransmitted 200 gets the same ACK again.
    ua.receive(ok, CALLER, 50.6)
    (again,) = ua.take_outgoing()
    assert again.data == serialize(ack)
    out, events = sent_until(ua, 100.1)
    assert events == [] and [t for t, _ in out] == [100.1]


def test_our_refresh_answered_481_ends_the_call() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, PEER_ALLOW + "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n")
    out, _ = sent_until(ua, 45.0)
    (update,) = requests([o for _, o in out])
    events = ua.receive(reply(update, 481), CALLER, 45.1)
    assert events == [CallEnded("call-1", "session-expired")]
    (bye,) = requests(ua.take_outgoing())
    assert bye.method == "BYE"


def test_our_refresh_answered_422_is_retried_with_the_peer_minimum() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    timer_call(ua, PEER_ALLOW + "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n")
    out, _ = sent_until(ua, 45.0)
    (update,) = requests([o for _, o in out])
    assert ua.receive(reply(update, 422, [("Min-SE", "600")]), CALLER, 45.1) == []
    (retry,) = requests(ua.take_outgoing())
    assert retry.method == "UPDATE" and retry.cseq[0] == update.cseq[0] + 1
    assert retry.headers.get("Session-Expires") == "600;refresher=uac"


def test_plain_call_without_timer_support_is_unchanged() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ok, _ = timer_call(ua, "")
    assert ok.headers.get("Session-Expires") is None and ok.headers.get_all("Require") == []
    sent, events = run_timers(ua, 100_000.0)
    assert sent == [] and events == []


def test_update_outside_a_dialog_is_481_and_options_lists_timer_and_update() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("UPDATE"), CALLER, 0.0)
    assert statuses(ua.take_outgoing()) == [481]
    ua.receive(request("OPTIONS", branch="z9hG4bK-o"), CALLER, 0.0)
    (resp,) = responses(ua.take_outgoing())
    assert "UPDATE" in resp.headers.get_all("Allow") and "timer" in resp.headers.get_all("Supported")


def test_negotiation_reads_compact_form_and_refresher() -> None:
    headers = Headers([("k", "timer"), ("x", "300 ; refresher=UAS")])
    assert parse_session_expires(headers.get("Session-Expires")) is not None
    timer = negotiate_uas(headers, min_se=90, default=1800)
    assert timer == SessionTimer(300, we_refresh=True, peer_supports=True)
    assert parse_session_expires("soon") is None


def test_peer_reinvite_during_our_refresh_reinvite_gets_491() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    _, tag = timer_call(ua, "Supported: timer\r\nSession-Expires: 100;refresher=uas\r\n")
    out, _ = sent_until(ua, 50.0)
    assert [r.method for r in requests([o for _, o in out])] == ["INVITE"]
    ua.receive(request("INVITE", cseq=2, branch="z9hG4bK-g", to_tag=tag, body=OFFER), CALLER, 50.05)
    assert statuses(ua.take_outgoing()) == [491]


def test_refresh_below_min_se_gets_422_and_leaves_the_timer_running() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    _, tag = timer_call(ua, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n")
    update = request("UPDATE", cseq=2, branch="z9hG4bK-up", to_tag=tag, extra="Session-Expires: 30\r\n")
    ua.receive(update, CALLER, 30.0)
    (resp,) = responses(ua.take_outgoing())
    assert resp.status == 422 and resp.headers.get("Min-SE") == "90"
    _, events = sent_until(ua, 60.0)
    assert events == [CallEnded("call-1", "session-expired")]


def test_update_in_an_early_dialog_gets_200_and_the_timer_starts_with_the_answer() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060)
    ua.receive(request("INVITE", extra="Supported: timer\r\n", body=OFFER), CALLER, 0.0)
    ua.ring("call-1", 0.0)
    ringing = responses(ua.take_outgoing())[-1]
    assert ringing.status == 180 and ringing.to_tag
    update = request(
        "UPDATE", cseq=2, branch="z9hG4bK-up", to_tag=ringing.to_tag, extra="Session-Expires: 90\r\n"
    )
    ua.receive(update, CALLER, 1.0)
    assert statuses(ua.take_outgoing()) == [200]
    _, events = sent_until(ua, 200.0)
    assert events == []  # no session timer runs before the call is answered
    ua.answer("call-1", ANSWER, 200.0)
    (ok,) = responses(ua.take_outgoing())
    assert ok.headers.get("Session-Expires") == "90;refresher=uac"
    ua.receive(request("ACK", to_tag=ok.to_tag, branch="z9hG4bK-ack"), CALLER, 200.1)
    _, events = sent_until(ua, 260.0)
    assert events == [CallEnded("call-1", "session-expired")]
