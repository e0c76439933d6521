"""The scripted caller's side of one SIP dialog (RFC 3261 §12 as the UAC sees it), sans-I/O.

It only builds and reads messages with `ivr.sip.message`; sockets, retransmission and timing are the asyncio
caller's. One call, no proxies in between (the bridge is on loopback), so no route set.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from ivr.sip.message import Headers, Request, Response, SipParseError, make_response, parse_name_addr
from ivr.sip.transaction import new_branch, new_tag

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REFER"


@dataclass
class UacDialog:
    """Call-ID, tags, CSeq and the remote target of one outgoing call."""

    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    callee: str = "1000"
    caller: str = "ivr-test"
    call_id: str = field(default_factory=lambda: f"ivr-test-{secrets.token_hex(8)}")
    local_tag: str = field(default_factory=new_tag)
    remote_tag: str | None = None
    local_cseq: int = 0
    remote_target: str = ""

    def __post_init__(self) -> None:
        self.remote_target = self.request_uri

    @property
    def request_uri(self) -> str:
        return f"sip:{self.callee}@{self.remote_host}:{self.remote_port}"

    @property
    def local_uri(self) -> str:
        return f"<sip:{self.caller}@{self.local_host}:{self.local_port}>"

    @property
    def contact(self) -> str:
        return f"<sip:{self.caller}@{self.local_host}:{self.local_port};transport=udp>"

    def request(
        self, method: str, *, body: bytes = b"", content_type: str | None = None,
        extra: tuple[tuple[str, str], ...] = (), cseq: int | None = None, branch: str | None = None,
    ) -> Request:  # fmt: skip
        """A request of this dialog (the INVITE too: it is sent before there is a remote tag)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        to = f"<{self.request_uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        headers = Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/UDP {self.local_host}:{self.local_port};branch={branch or new_branch()};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"{self.local_uri};tag={self.local_tag}"),
                ("To", to),
                ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {'ACK' if method == 'ACK' else method}"),
                ("Contact", self.contact),
                ("User-Agent", "ivr-test"),
            ]
        )
        if method in ("INVITE", "OPTIONS"):
            headers.add("Allow", ALLOW)
        for name, value in extra:
            headers.add(name, value)
        if body and content_type:
            headers.add("Content-Type", content_type)
        uri = self.request_uri if method == "INVITE" and self.remote_tag is None else self.remote_target
        return Request(method, uri, headers, body)

    def answered(self, response: Response) -> None:
        """A 2xx to the INVITE: the dialog's remote tag and target (§12.1.2)."""
        self.remote_tag = response.to_tag or self.remote_tag
        contacts = response.headers.get_all("Contact")
        if contacts:
            with contextlib.suppress(SipParseError):
                self.remote_target = parse_name_addr(contacts[0]).uri

    def ack(self, invite: Request, response: Response) -> Request:
        """The ACK of `response`: end to end with a new branch for a 2xx (§13.2.2.4), else on the INVITE's
        branch with its To (§17.1.1.3)."""
        cseq = invite.cseq[0]
        if 200 <= response.status < 300:
            return self.request("ACK", cseq=cseq)
        ack = self.request("ACK", cseq=cseq, branch=invite.via_branch)
        ack.uri = invite.uri
        ack.headers.set("To", response.headers.get("To") or "")
        return ack

    def reply(
        self, request: Request, status: int, *, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:  # fmt: skip
        """A response to the bridge's request, with our tag on To."""
        return make_response(
            request, status, to_tag=self.local_tag, headers=headers, body=body, content_type=content_type
        )
