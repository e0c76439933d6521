"""Where in-dialog requests of a call go, by transport: a TLS call never falls back to clear text."""

from __future__ import annotations

import pytest

from ivr.sip.dialog import Dialog, destination
from ivr.sip.events import Peer
from ivr.sip.message import Request, parse_message
from tests.unit.sip.helpers import request

TLS_PEER = Peer("tls", "192.0.2.10", 40123, conn_id=7)


def dialog(contact: str, peer: Peer = TLS_PEER) -> Dialog:
    invite = parse_message(request("INVITE").replace(b"<sip:alice@192.0.2.10:5070>", contact.encode()))
    assert isinstance(invite, Request)
    return Dialog.from_invite(invite, peer, "tx-1", "our-tag")


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        # The caller's connection is reused while it is the target: the same TLS connection.
        ("<sip:alice@192.0.2.10:40123;transport=tls>", TLS_PEER),
        # Another listening address: still TLS, never clear-text TCP or UDP.
        ("<sip:alice@192.0.2.10:5061;transport=tls>", Peer("tls", "192.0.2.10", 5061)),
        ("<sips:alice@192.0.2.10>", Peer("tls", "192.0.2.10", 5061)),
        ("<sip:alice@192.0.2.10:5060;transport=tcp>", Peer("tcp", "192.0.2.10", 5060)),
    ],
)
def test_in_dialog_requests_keep_the_calls_transport(contact: str, expected: Peer) -> None:
    found = destination(dialog(contact))
    assert (found.transport, found.host, found.port, found.conn_id) == (
        expected.transport,
        expected.host,
        expected.port,
        expected.conn_id,
    )
