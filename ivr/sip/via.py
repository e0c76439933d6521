"""Where responses go and what the top Via must say about where a request came from (RFC 3261 §18.2,
RFC 3581), sans-I/O."""

from __future__ import annotations

from ivr.sip.dialog import reconnect_address
from ivr.sip.events import Peer
from ivr.sip.message import Request, SipParseError, parse_via

__all__ = ["fix_via", "response_peer"]


def fix_via(req: Request, peer: Peer) -> None:
    """Add received/rport to the top Via (§18.2.1, RFC 3581 §4)."""
    vias = req.headers.get_all("Via")
    if not vias:
        return
    try:
        top = parse_via(vias[0])
    except SipParseError:
        return
    rport_key = next((k for k in top.params if k.lower() == "rport"), None)
    if top.host == peer.host and rport_key is None:
        return
    for key in [k for k in top.params if k.lower() == "received"]:
        del top.params[key]
    top.params["received"] = peer.host
    if rport_key is not None and top.params[rport_key] is None:
        top.params[rport_key] = str(peer.port)
    req.headers.remove("Via")
    for value in [str(top), *vias[1:]]:
        req.headers.add("Via", value)


def response_peer(req: Request, peer: Peer) -> Peer:
    """Where a response goes (§18.2.2): the same connection on TCP; received/rport or sent-by on UDP."""
    if peer.transport != "udp":
        return Peer(peer.transport, peer.host, peer.port, peer.conn_id, reconnect_address(req, peer))
    via = req.top_via
    if via is None:
        return peer
    host = via.received or via.host
    port = via.rport or via.port or 5060
    return Peer("udp", host, port)
