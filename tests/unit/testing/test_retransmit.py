"""The caller's client transactions over real loopback UDP: an INVITE is sent again per Timer A until a
final response comes, and a request from the peer that is sent again gets the same answer again."""

from __future__ import annotations

import asyncio
from typing import Any

from ivr.sip.message import Request, Response, make_response, parse_message, serialize
from ivr.testing.caller import ScriptedCall
from ivr.testing.cases import Case
from ivr.testing.uac import UacDialog


class Peer(asyncio.DatagramProtocol):
    """A UAS that ignores the first `drop` requests, then answers 200."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.received: list[Request | Response] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = parse_message(data)
        self.received.append(message)
        if isinstance(message, Request) and len(self.received) > self.drop:
            assert self.transport is not None
            self.transport.sendto(serialize(make_response(message, 200, to_tag="uas")), addr)


def test_an_invite_is_retransmitted_until_answered() -> None:
    async def scenario() -> tuple[list[Request | Response], int]:
        loop = asyncio.get_running_loop()
        peer = Peer(drop=2)
        server, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        call = ScriptedCall(Case(), address, {}, {})
        client, _ = await loop.create_datagram_endpoint(lambda: call.sip, local_addr=("127.0.0.1", 0))
        call.sip.transport, call.sip.remote = client, address
        dialog = UacDialog("127.0.0.1", client.get_extra_info("sockname")[1], *address)
        call.dialog = dialog
        response = await asyncio.wait_for(call.sip.transact(dialog.request("INVITE")), 5)
        # the peer's BYE, sent twice (its first 200 "lost"): answered twice, the same way
        bye = Request("BYE", dialog.contact.strip("<>"), make_response(dialog.request("BYE"), 200).headers)
        bye.headers.set("CSeq", "7 BYE")
        assert peer.transport is not None
        for _ in range(2):
            peer.transport.sendto(serialize(bye), client.get_extra_info("sockname"))
        await asyncio.sleep(0.2)
        client.close()
        server.close()
        return peer.received, response.status

    received, status = asyncio.run(scenario())
    assert status == 200
    invites = [m for m in received if isinstance(m, Request)]
    assert [m.method for m in invites] == ["INVITE"] * 3
    assert len({m.via_branch for m in invites}) == 1  # one transaction, sent three times (0, 0.5, 1.5 s)
    answers = [serialize(m) for m in received if isinstance(m, Response)]
    assert len(answers) == 2 and answers[0] == answers[1] and answers[0].startswith(b"SIP/2.0 200")


class Ringing(asyncio.DatagramProtocol):
    """A UAS that rings (180) at once and answers 200 after 1.5 s."""

    def __init__(self) -> None:
        self.invites = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Request) and message.method == "INVITE":
            self.invites += 1
            assert self.transport is not None
            self.transport.sendto(serialize(make_response(message, 180, to_tag="uas")), addr)
            answer = serialize(make_response(message, 200, to_tag="uas"))
            asyncio.get_running_loop().call_later(1.5, self.transport.sendto, answer, addr)


def test_a_provisional_response_stops_the_retransmissions() -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        peer = Ringing()
        server, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        call = ScriptedCall(Case(), address, {}, {})
        client, _ = await loop.create_datagram_endpoint(lambda: call.sip, local_addr=("127.0.0.1", 0))
        call.sip.transport, call.sip.remote = client, address
        dialog = UacDialog("127.0.0.1", client.get_extra_info("sockname")[1], *address)
        response = await asyncio.wait_for(call.sip.transact(dialog.request("INVITE")), 5)
        client.close()
        server.close()
        return peer.invites, response.status

    invites, status = asyncio.run(scenario())
    assert (invites, status) == (1, 200)  # Timer A would have sent it at 0.5 s and 1.5 s too
