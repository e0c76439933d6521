"""Registrar bounds: Expires clamped, 423 + Min-Expires, caps on AORs and bindings, expired ones purged."""

from __future__ import annotations

import pytest

from ivr.sip.events import Registered
from ivr.sip.message import Request, parse_message
from ivr.sip.registrar import Registrar, RegistrarLimits
from ivr.sip.useragent import UserAgent
from tests.unit.sip.helpers import CALLER, request, responses

LIMITS = RegistrarLimits(max_aors=3, max_bindings_per_aor=2, min_expires=60, max_expires=600)


def _register(
    aor_user: str = "alice", contacts: tuple[str, ...] = ("<sip:a@192.0.2.10>",), expires: str = ""
) -> Request:
    head = (
        f"REGISTER sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-r\r\n"
        f"From: <sip:{aor_user}@example.com>;tag=1\r\nTo: <sip:{aor_user}@example.com>\r\n"
        "Call-ID: reg\r\nCSeq: 1 REGISTER\r\n"
        + "".join(f"Contact: {c}\r\n" for c in contacts)
        + (f"Expires: {expires}\r\n" if expires else "")
        + "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(head.encode())
    assert isinstance(msg, Request)
    return msg


@pytest.mark.parametrize(
    ("expires", "status", "granted"),
    [
        ("", 200, 600),  # the default (3600) is clamped to max_expires
        ("100000", 200, 600),
        ("120", 200, 120),
        ("60", 200, 60),
        ("59", 423, None),
        ("1", 423, None),
    ],
)
def test_expires_clamped_or_too_brief(expires: str, status: int, granted: int | None) -> None:
    registrar = Registrar(LIMITS)
    outcome = registrar.register(_register(expires=expires), CALLER, 0.0)
    assert outcome.status == status
    if status == 423:
        assert dict(outcome.headers) == {"Min-Expires": "60"}
        assert len(registrar) == 0
    else:
        assert [e.expires for e in outcome.events] == [granted]
        assert dict(outcome.headers)["Contact"] == f"<sip:a@192.0.2.10>;expires={granted}"


def test_contact_expires_param_wins_and_is_checked_too() -> None:
    registrar = Registrar(LIMITS)
    outcome = registrar.register(
        _register(contacts=("<sip:a@192.0.2.10>;expires=30",), expires="300"), CALLER, 0
    )
    assert outcome.status == 423


def test_caps_on_aors_and_bindings_leave_existing_state_alone() -> None:
    registrar = Registrar(LIMITS)
    for user in ("a", "b", "c"):
        assert registrar.register(_register(user), CALLER, 0.0).status == 200
    full = registrar.register(_register("d"), CALLER, 0.0)
    assert (full.status, dict(full.headers).get("Retry-After")) == (503, "60")
    assert registrar.register(_register("a", ("<sip:a2@192.0.2.10>",)), CALLER, 0.0).status == 200  # 2 of 2
    too_many = registrar.register(_register("a", ("<sip:a3@192.0.2.10>",)), CALLER, 0.0)
    assert too_many.status == 403
    assert registrar.bindings("sip:a@example.com", 0.0) == {"sip:a@192.0.2.10": 600, "sip:a2@192.0.2.10": 600}
    # A refresh of a known contact, and replacing one contact by another in one request, stay within the cap.
    swap = registrar.register(
        _register("a", ("<sip:a2@192.0.2.10>;expires=0", "<sip:a3@192.0.2.10>")), CALLER, 1.0
    )
    assert swap.status == 200 and set(registrar.bindings("sip:a@example.com", 1.0)) == {
        "sip:a@192.0.2.10",
        "sip:a3@192.0.2.10",
    }


def test_expired_bindings_are_purged_and_refreshes_do_not_grow_the_heap() -> None:
    registrar = Registrar(RegistrarLimits(max_aors=100000))
    for i in range(2000):
        registrar.register(_register(f"u{i}", expires="120"), CALLER, 0.0)
    for t in range(50):  # one AOR refreshed over and over
        registrar.register(_register("u0", expires="120"), CALLER, float(t))
    assert (registrar.aors, len(registrar)) == (2000, 2000)
    assert len(registrar._deadlines) <= 4 * len(registrar) + 1024
    assert registrar.next_expiry() == 120.0
    assert registrar.purge(120.0) == 1999
    assert (registrar.aors, len(registrar)) == (1, 1)
    assert registrar.purge(200.0) == 1
    assert registrar.aors == 0 and registrar.next_expiry() is None


def test_the_ua_purges_on_its_timer_with_no_further_register() -> None:
    ua = UserAgent(host="192.0.2.1", port=5060, registrar_allow=lambda peer: True)
    events = ua.receive(request("REGISTER", extra="Expires: 120\r\n", uri="sip:192.0.2.1"), CALLER, 0.0)
    assert [type(e) for e in events] == [Registered]
    assert [r.status for r in responses(ua.take_outgoing())] == [200]
    assert len(ua.registrar) == 1
    while (deadline := ua.next_deadline()) is not None:
        ua.tick(deadline)
    assert len(ua.registrar) == 0 and ua.registrar.aors == 0


def test_star_removes_all_bindings() -> None:
    registrar = Registrar(LIMITS)
    registrar.register(_register("a", ("<sip:a1@h>", "<sip:a2@h>")), CALLER, 0.0)
    outcome = registrar.register(_register("a", ("*",), expires="0"), CALLER, 1.0)
    assert outcome.status == 200 and {e.contact for e in outcome.events} == {"sip:a1@h", "sip:a2@h"}
    assert registrar.aors == 0
