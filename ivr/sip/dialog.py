"""UAS dialog state and in-dialog request construction (RFC 3261 §12), sans-I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ivr.sip.events import Peer, Transport
from ivr.sip.message import Headers, Request, SipParseError, parse_name_addr, parse_uri
from ivr.sip.offeranswer import LocalSession
from ivr.sip.session_timer import SessionTimer
from ivr.sip.transaction import new_branch

__all__ = ["Dialog", "build_request", "destination", "reconnect_address"]


@dataclass
class Dialog:
    """One call as the UAS sees it: the dialog (§12.1.1) plus the INVITE transaction's progress."""

    call_id: str
    invite: Request
    peer: Peer  # where the INVITE came from
    invite_tx: str  # id of the INVITE server transaction
    local_tag: str
    remote_tag: str
    local_uri: str  # the INVITE's To (without tag): our From in requests we send
    remote_uri: str  # the INVITE's From (with its tag): our To
    remote_target: str  # Contact URI of the INVITE
    route_set: list[str] = field(default_factory=list)  # Record-Route values in received order (§12.1.1)
    remote_cseq: int = 0
    local_cseq: int = 0
    state: str = "pending"  # pending -> answered (2xx sent) -> confirmed (ACK) ; ended
    local_sdp: bytes | None = None
    pending_2xx: bytes | None = None  # 2xx being retransmitted until ACK (§13.3.1.4)
    pending_2xx_cseq: int = 0
    pending_2xx_peer: Peer | None = None
    retransmit_interval: float = 0.5
    session: LocalSession | None = None  # our SDP so far; None until answered (or unreadable)
    late_offer: bool = False  # the INVITE had no SDP: our 2xx carries the offer, the ACK the answer
    pending_reinvite: Request | None = None  # a re-INVITE without SDP whose answer the ACK brings
    hangup_requested: bool = False
    reliable_1xx: bool = False  # the INVITE Required 100rel: our 1xx wait for a PRACK (RFC 3262)
    rseq: int = 0  # RSeq of our last reliable provisional response
    unacked_1xx: bytes | None = None  # that response while no PRACK has come for it
    unacked_1xx_interval: float = 0.5
    timer: SessionTimer | None = None  # RFC 4028 session timer, once our 2xx has set it up
    refreshing: bool = False  # a session refresh of ours awaits its final response
    peer_allows_update: bool = False  # the INVITE's Allow lists UPDATE: refresh with it, not a re-INVITE
    bye_sent: bool = False
    ended: bool = False

    @classmethod
    def from_invite(cls, invite: Request, peer: Peer, invite_tx: str, local_tag: str) -> Dialog:
        contacts = invite.headers.get_all("Contact")
        target = ""
        if contacts:
            try:
                target = parse_name_addr(contacts[0]).uri
            except SipParseError:
                target = ""
        if not target:
            # No usable Contact (RFC 2543 peers): fall back to the From URI.
            target = parse_name_addr(invite.headers.get("From") or "").uri
        local = parse_name_addr(invite.headers.get("To") or "")
        local.params.pop("tag", None)
        return cls(
            call_id=invite.call_id,
            invite=invite,
            peer=peer,
            invite_tx=invite_tx,
            local_tag=local_tag,
            remote_tag=invite.from_tag or "",
            local_uri=str(local),
            remote_uri=invite.headers.get("From") or "",
            remote_target=target,
            route_set=invite.headers.get_all("Record-Route"),
            remote_cseq=invite.cseq[0],
            peer_allows_update=any(m.upper() == "UPDATE" for m in invite.headers.get_all("Allow")),
        )

    @property
    def answered(self) -> bool:
        return self.state in ("answered", "confirmed")


def build_request(
    dialog: Dialog,
    method: str,
    *,
    via_host: str,
    via_port: int,
    transport: Transport,
    user_agent: str | None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    cseq: int | None = None,
    branch: str | None = None,
) -> tuple[Request, str]:
    """An in-dialog request (§12.2.1.1) and its branch. Loose routing when the first route has ;lr.

    `cseq` (the INVITE's number) and `branch` are for an ACK, which takes no new CSeq (§13.2.2.4, §17.1.1.3).
    """
    if cseq is None:
        dialog.local_cseq += 1
        cseq = dialog.local_cseq
    uri = dialog.remote_target
    routes = list(dialog.route_set)
    if routes and not _is_loose(routes[0]):
        # Strict router (RFC 2543): it goes in the Request-URI and the remote target goes last (§12.2.1.1).
        uri = parse_name_addr(routes[0]).uri
        routes = [*routes[1:], f"<{dialog.remote_target}>"]
    branch = branch or new_branch()
    host = f"[{via_host}]" if ":" in via_host else via_host
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport.upper()} {host}:{via_port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{dialog.local_uri};tag={dialog.local_tag}"),
            ("To", dialog.remote_uri),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    for route in routes:
        headers.add("Route", route)
    if user_agent is not None:
        headers.add("User-Agent", user_agent)
    for name, value in extra or []:
        headers.add(name, value)
    if body:
        headers.add("Content-Type", "application/sdp")
    return Request(method, uri, headers, body), branch


def _is_loose(route: str) -> bool:
    try:
        return parse_uri(parse_name_addr(route).uri).has_param("lr")
    except SipParseError:
        return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def destination(dialog: Dialog) -> Peer:
    """Where an in-dialog request goes: the first Route, else the remote target (§12.2.1.1, §8.1.2).

    We cannot resolve names (sans-I/O), so a host name falls back to the peer the INVITE came from; over TCP
    the INVITE's connection is reused when the destination is that peer or there is no other way.
    """
    target = parse_name_addr(dialog.route_set[0]).uri if dialog.route_set else dialog.remote_target
    peer = dialog.peer
    if peer.transport != "udp":
        peer = Peer(
            peer.transport, peer.host, peer.port, peer.conn_id, reconnect_address(dialog.invite, peer)
        )
    try:
        uri = parse_uri(target)
    except SipParseError:
        return peer
    if not uri.is_sip or not _is_ip(uri.host):
        return peer
    transport_param = (uri.param("transport") or "").lower()
    transport: Transport = (
        "tls"
        if transport_param == "tls" or uri.scheme.lower() == "sips"
        else "tcp"
        if transport_param == "tcp"
        else "udp"
        if transport_param == "udp"
        else peer.transport
    )
    port = uri.port or (5061 if transport == "tls" else 5060)
    if transport != "udp":
        if peer.transport == transport and (uri.host, port) == (peer.host, peer.port):
            return peer
        return Peer(transport, uri.host, port)
    return Peer("udp", uri.host, port)


def reconnect_address(request: Request, peer: Peer) -> tuple[str, int]:
    """Where to open a TCP connection to a peer whose connection is gone: the source IP with the top Via's
    sent-by port, or 5060 (§18.2.2). The source port itself is ephemeral and nothing listens there."""
    via = request.top_via
    port = via.port if via is not None and via.port else 5060
    return peer.host, port
