"""The UAS core the application drives: transactions + dialogs + a small registrar (RFC 3261), sans-I/O.

Bytes and a `now` go in; events come back and datagrams queue up for `take_outgoing()`. Actions taken by the
app (ring, answer, ...) queue their own events, returned by the next `receive`/`tick` or by `take_events()`.

Admission (`ivr.sip.admission`), digest authentication (`ivr.sip.digest`) and draining are decided for a new
INVITE, REGISTER or OPTIONS before any transaction or dialog exists; a refusal is one stateless response.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from ivr.sip.admission import Admission, Refusal
from ivr.sip.bodies import content_type, dtmf_digit, quoted_string, sipfrag_status
from ivr.sip.dialog import Dialog, build_request, destination
from ivr.sip.digest import DigestAuthenticator
from ivr.sip.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    IncomingCall,
    InfoDtmf,
    MediaAnswered,
    Outgoing,
    Peer,
    ReferStatus,
    ReInvite,
    SipEvent,
    Transport,
)
from ivr.sip.message import (
    Request,
    Response,
    SipParseError,
    SipVersionError,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    serialize,
)
from ivr.sip.offeranswer import LocalSession
from ivr.sip.prack import first_rseq, parse_rack
from ivr.sip.registrar import Registrar
from ivr.sip.sdp import Negotiated, SdpError, SdpNotAcceptable, negotiate, parse_sdp
from ivr.sip.session_timer import (
    DEFAULT_SESSION_EXPIRES,
    MIN_SE,
    IntervalTooBrief,
    SessionTimer,
    negotiate_uas,
    parse_delta,
    parse_session_expires,
)
from ivr.sip.transaction import (
    T1,
    T2,
    T4,
    TIMEOUT_64T1,
    ClientTransaction,
    ServerTransaction,
    Timer,
    TimerQueue,
    new_tag,
    server_key,
)
from ivr.sip.via import fix_via, response_peer

__all__ = ["ALLOW", "UserAgent"]

ALLOW = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "REFER",
    "NOTIFY",
    "REGISTER",
    "UPDATE",
    "PRACK",
)
ALLOW_HEADER = ", ".join(ALLOW)
SUPPORTED: frozenset[str] = frozenset({"100rel", "timer"})  # others in Require get 420 (§8.2.2.3)
SUPPORTED_HEADER = ", ".join(sorted(SUPPORTED))
DEFAULT_USER_AGENT = "ivr"  # no version: it only helps whoever scans for a vulnerable release
_SDP_TYPES = ("application/sdp", "application/*", "*/*")


class UserAgent:
    """The sans-I/O SIP user agent (UAS, plus the BYE/REFER it sends and a small registrar).

    `user_agent` is the Server / User-Agent header value; None sends neither header. `min_se` is the shortest
    session timer interval we accept (RFC 4028 Min-SE) and `session_expires` the one we ask for when a caller
    supports timers without naming an interval.

    `admission` matches sources to trunks and applies the call limits (default: any source, default limits);
    `authenticator` challenges the requests of trunks with credentials (default: a realm named after `host`);
    `registrar` keeps the bindings. Setting `draining` answers OPTIONS and new INVITEs 503 (a dispatcher
    takes this node out of rotation) while calls in progress go on. `on_refusal` hears of each stateless
    refusal (for metrics); it must not raise.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user_agent: str | None = DEFAULT_USER_AGENT,
        registrar_allow: Callable[[Peer], bool] | None = None,
        min_se: int = MIN_SE,
        session_expires: int = DEFAULT_SESSION_EXPIRES,
        admission: Admission | None = None,
        authenticator: DigestAuthenticator | None = None,
        registrar: Registrar | None = None,
        drain_retry_after: int = 30,
        on_refusal: Callable[[Request, Refusal], None] | None = None,
    ) -> None:
        self.min_se = min_se
        self.session_expires = session_expires
        self.host = host
        self.port = port
        self.tls_port = 0  # set by the transport when it listens for TLS
        self.user_agent = user_agent
        self.registrar_allow = registrar_allow
        self._out: list[Outgoing] = []
        self._events: list[SipEvent] = []
        self._diagnostics: list[str] = []
        self._timers = TimerQueue()
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._server_by_id: dict[str, ServerTransaction] = {}
        self._client: dict[str, ClientTransaction] = {}
        self._calls: dict[str, Dialog] = {}
        self.admission = admission or Admission()
        self.authenticator = authenticator or DigestAuthenticator(host)
        self.registrar = registrar or Registrar()
        self.draining = False
        self.overloaded = False  # the event loop lags (ivr.overload): new INVITEs and OPTIONS get 503
        self.drain_retry_after = drain_retry_after
        self.on_refusal = on_refusal
        self._ids = itertools.count(1)

    # ---- driving the core ----------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer, now: float) -> list[SipEvent]:
        events = self.take_events()
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self.reject_malformed(exc, peer)
            return events
        try:
            if isinstance(msg, Request):
                events += self._on_request(msg, peer, now)
            else:
                events += self._on_response(msg, now)
        except Exception as exc:  # the contract: receive never raises; the transport logs diagnostics
            self._diagnostics.append(f"internal error on message from {peer.host}:{peer.port}: {exc!r}")
        return events

    def reject_malformed(self, exc: SipParseError, peer: Peer) -> None:
        """Answer 400 (505 for the version) statelessly when the partial request says where to (§18.2.2)."""
        self._diagnostics.append(f"malformed message from {peer.host}:{peer.port}: {exc}")
        req = exc.partial
        if req is None or req.method == "ACK" or "Via" not in req.headers:
            return
        fix_via(req, peer)
        status = exc.status
        reason = None if isinstance(exc, SipVersionError) else exc.reason
        self._respond(req, response_peer(req, peer), status, reason)

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[SipEvent]:
        events, self._events = self._events, []
        return events

    def take_diagnostics(self) -> list[str]:
        """Human-readable notes on dropped/malformed input, for the adapter to log."""
        notes, self._diagnostics = self._diagnostics, []
        return notes

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def tick(self, now: float) -> list[SipEvent]:
        events = self.take_events()
        for kind, ident in self._timers.pop_due(now):
            try:
                events += self._on_timer(kind, ident, now)
            except Exception as exc:
                self._diagnostics.append(f"internal error in timer {kind.value}: {exc!r}")
        events += self.take_events()
        return events

    # ---- app actions ---------------------------------------------------------------------------------------

    def ring(self, call_id: str, now: float) -> None:
        found = self._pending(call_id)
        if found is not None:
            call, tx = found
            headers = self._dialog_headers(call, initial=True)
            if not call.reliable_1xx:
                self._send_response(
                    tx, make_response(tx.request, 180, to_tag=call.local_tag, headers=headers)
                )
                return
            if not tx.request.body or call.unacked_1xx is not None:
                # A late offer would have to go in the first reliable response, and only one may be
                # unacknowledged at a time (RFC 3262 §3, §5): this ringing is left out, the 200 follows.
                return
            call.rseq = call.rseq + 1 if call.rseq else first_rseq()
            headers += [("Require", "100rel"), ("RSeq", str(call.rseq))]
            self._send_response(tx, make_response(tx.request, 180, to_tag=call.local_tag, headers=headers))
            call.unacked_1xx = tx.last_bytes
            call.unacked_1xx_interval = T1
            if not tx.reliable:
                self._timers.set((Timer.RETRANSMIT_1XX, call.call_id), now + T1)
            self._timers.set((Timer.PRACK_WAIT, call.call_id), now + TIMEOUT_64T1)

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        found = self._pending(call_id)
        if found is None:
            return
        call, tx = found
        call.local_sdp = sdp
        call.late_offer = not tx.request.body
        try:
            call.session = LocalSession.from_local_sdp(sdp, offer=call.late_offer)
        except SdpError as exc:
            # Re-INVITEs then get this SDP back unchanged, as before RFC 3264 §8 handling.
            self._diagnostics.append(f"cannot read our own SDP for {call_id}: {exc}")
        call.state = "answered"
        self._stop_1xx(call)
        headers = [*self._dialog_headers(call, initial=True), *self._timer_headers(call)]
        resp = make_response(
            tx.request, 200, to_tag=call.local_tag, headers=headers, body=sdp, content_type="application/sdp"
        )
        self._send_2xx(call, tx, resp, now)
        self._arm_session_timer(call, now)

    def reject(
        self,
        call_id: str,
        status: int,
        now: float,
        reason: str | None = None,
        warning: str | None = None,
        warn_code: int = 399,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Final non-2xx answer to a pending INVITE; `warning` becomes a Warning header (§20.43) with
        `warn_code` (e.g. `SdpNotAcceptable.warn_code`), so the caller's logs say why. A 488 always has one
        (§13.3.1.3 asks for it): a generic text when `warning` is None. `headers` go on the response."""
        found = self._pending(call_id)
        if found is not None:
            call, tx = found
            if warning is None and status == 488:
                warning = "the session description offered is not acceptable"
            extra = [*headers]
            if warning is not None:
                extra.append(("Warning", self._warning(warning, warn_code)))
            self._final(tx, status, now, reason, headers=extra, to_tag=call.local_tag)
            self._events += self._end(call, "rejected", now)

    def redirect(
        self, call_id: str, contact: str, now: float, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """302 Moved Temporarily to a pending INVITE (§21.3.3): the caller retries at `contact`. The ACK
        of this non-2xx is hop-by-hop and absorbed by the INVITE server transaction (§17.2.1)."""
        target = contact if contact.startswith("<") else f"<{contact}>"
        self.reject(call_id, 302, now, headers=[("Contact", target), *headers])

    def hangup(self, call_id: str, now: float) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended:
            return
        if call.state == "pending":
            self.reject(call_id, 480, now)
        elif call.state == "answered":
            # No BYE before the ACK (§15): it goes out when the ACK arrives or the ACK wait times out.
            call.hangup_requested = True
        else:
            self._send_bye(call, now)

    def refer(self, call_id: str, target: str, now: float, headers: Sequence[tuple[str, str]] = ()) -> None:
        """REFER the peer to `target`; `headers` go on the REFER itself (transfer context for the agent)."""
        call = self._calls.get(call_id)
        if call is None or call.ended or call.state != "confirmed":
            self._events.append(ReferStatus(call_id, 481 if call is None or call.ended else 491, True))
            return
        refer_to = target if target.startswith("<") else f"<{target}>"
        extra = [
            ("Refer-To", refer_to),
            ("Referred-By", f"<{parse_name_addr(call.local_uri).uri}>"),
            ("Contact", self._contact(call.peer.transport)),
            *headers,
        ]
        self._send_request(call, "REFER", now, extra)

    # ---- requests ------------------------------------------------------------------------------------------

    def _on_request(self, req: Request, peer: Peer, now: float) -> list[SipEvent]:
        fix_via(req, peer)
        if req.method == "ACK":
            return self._on_ack(req, now)
        existing = self._server.get(server_key(req))
        if existing is not None:
            # A retransmission: re-send the last response, nothing new for the app (§17.2.1, §17.2.2).
            if existing.last_bytes is not None:
                self._out.append(Outgoing(existing.peer, existing.last_bytes))
            return []
        if self._refused(req, peer, now):
            return []
        tx = self._new_tx(req, response_peer(req, peer))
        if req.method == "INVITE" and req.to_tag is None and self._merged(req, tx):
            self._final(tx, 482, now)  # the same request arrived by another path (§8.2.2.2)
            return []
        if req.method not in ALLOW:
            self._final(tx, 501, now, headers=[("Allow", ALLOW_HEADER)])  # §8.2.1
            return []
        if not parse_uri(req.uri).is_sip:
            self._final(tx, 416, now)  # §8.2.2.1
            return []
        unsupported = [tag for tag in req.headers.get_all("Require") if tag.lower() not in SUPPORTED]
        if unsupported and req.method != "CANCEL":
            self._final(tx, 420, now, headers=[("Unsupported", ", ".join(unsupported))])  # §8.2.2.3
            return []
        if req.method == "CANCEL":
            return self._on_cancel(req, tx, now)
        if req.method == "INVITE" and not self._acceptable_content(req, tx, now):
            return []
        if req.to_tag is not None:
            return self._in_dialog(req, tx, now)
        if req.method == "INVITE":
            return self._on_invite(req, tx, peer, now)
        if req.method == "OPTIONS":
            self._answer_and_forget(tx, 200, headers=self._capabilities())
            return []
        if req.method == "REGISTER":
            return self._on_register(req, tx, peer, now)
        self._answer_and_forget(tx, 481)  # BYE/INFO/NOTIFY/REFER outside any dialog (§15.1.2)
        return []

    def _refused(self, req: Request, peer: Peer, now: float) -> bool:
        """Refuse a new out-of-dialog INVITE/REGISTER/OPTIONS before any state exists; True if answered."""
        if req.to_tag is not None:
            return False
        refusal = self.admission.decide(
            req.method,
            req.uri,
            req.headers.get_all("Authorization"),
            peer.host,
            now,
            self.authenticator,
            draining=self.draining,
            drain_retry_after=self.drain_retry_after,
            overloaded=self.overloaded,
        )
        if refusal is None:
            return False
        if refusal.cause in ("digest-rejected", "digest-replayed", "digest-stale"):
            self._diagnostics.append(f"{req.method} from {peer.host}: {refusal.cause}")
        self._stateless(req, peer, refusal)
        return True

    def _stateless(self, req: Request, peer: Peer, refusal: Refusal) -> None:
        """A final response sent without a transaction (§8.2.7): no retransmission, nothing remembered."""
        extra = list(refusal.headers)
        if refusal.retry_after is not None:
            extra.append(("Retry-After", str(refusal.retry_after)))
        self._respond(req, response_peer(req, peer), refusal.status, refusal.reason, extra)
        if self.on_refusal is not None:
            self.on_refusal(req, refusal)

    def _answer_and_forget(
        self,
        tx: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer, then drop the transaction (§8.2.7 stateless UAS): an out-of-dialog OPTIONS (no side
        effects), a refused REGISTER or a 481 for a dialog or transaction we do not have then costs no memory
        for Timer J's (or H's) 64*T1, so a flood of them, spoofed or not, cannot grow the server; a
        retransmission is simply answered again, and the ACK of a stateless 481 to an INVITE is dropped."""
        self._server.pop(tx.key, None)
        self._server_by_id.pop(tx.id, None)
        self._respond(tx.request, tx.peer, status, reason, headers)

    def _respond(
        self,
        req: Request,
        peer: Peer,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """One final response to `req`, remembered nowhere (a malformed request, a refusal, a forgotten
        transaction): a fresh To tag, our Server header."""
        resp = make_response(
            req, status, reason, to_tag=new_tag(), headers=[*headers, *self._server_header()]
        )
        self._out.append(Outgoing(peer, serialize(resp)))

    def _acceptable_content(self, req: Request, tx: ServerTransaction, now: float) -> bool:
        if req.body and content_type(req) != "application/sdp":
            self._final(tx, 415, now, headers=[("Accept", "application/sdp")])  # §8.2.3, RFC 4475 invut
            return False
        accept = req.headers.get_all("Accept")
        if accept and not any(a.split(";")[0].strip().lower() in _SDP_TYPES for a in accept):
            # Our answer would be SDP, which the caller says it cannot take (RFC 4475 sdp01).
            warning = self._warning("only application/sdp bodies are supported")
            self._final(tx, 406, now, headers=[("Warning", warning), ("Accept", "application/sdp")])
            return False
        return True

    def _merged(self, req: Request, tx: ServerTransaction) -> bool:
        """From tag, Call-ID and CSeq of an ongoing INVITE transaction, but another transaction (§8.2.2.2)."""
        old = self._calls.get(req.call_id)
        old_tx = self._server_by_id.get(old.invite_tx) if old is not None else None
        return (
            old_tx is not None
            and old_tx.key != tx.key
            and old_tx.request.from_tag == req.from_tag
            and old_tx.request.cseq == req.cseq
        )

    def _on_invite(self, req: Request, tx: ServerTransaction, peer: Peer, now: float) -> list[SipEvent]:
        old = self._calls.get(req.call_id)
        if old is not None and not old.ended:
            # A second dialog under a live call's Call-ID: legal (§8.2.2.2 merges only exact repeats), but the
            # app knows calls by Call-ID, so it has to wait until that call is over.
            warning = self._warning("this Call-ID belongs to a call in progress")
            self._final(tx, 486, now, headers=[("Warning", warning)])
            return []
        timer = negotiate_uas(req.headers, min_se=self.min_se, default=self.session_expires)
        if isinstance(timer, IntervalTooBrief):
            self._final(tx, 422, now, headers=[("Min-SE", str(timer.min_se))])  # RFC 4028 §9
            return []
        if old is not None:
            # The Call-ID of an ended call, e.g. a trunk retrying after our 488: a new call.
            self._timers.cancel((Timer.FORGET_DIALOG, old.call_id))
        tx.state = "proceeding"
        self._send_response(tx, make_response(req, 100, headers=self._server_header()))
        call = Dialog.from_invite(req, peer, tx.id, new_tag())
        call.timer = timer
        call.reliable_1xx = any(tag.lower() == "100rel" for tag in req.headers.get_all("Require"))
        self._calls[call.call_id] = call
        self.admission.opened(call.call_id, peer.host)
        return [IncomingCall(call.call_id, req, peer, late_offer=not req.body)]

    def _on_cancel(self, req: Request, tx: ServerTransaction, now: float) -> list[SipEvent]:
        invite_tx = self._server.get(server_key(req, "INVITE"))
        if invite_tx is None:
            self._answer_and_forget(tx, 481)  # §9.2
            return []
        call = self._calls.get(invite_tx.request.call_id)
        self._final(tx, 200, now, to_tag=call.local_tag if call else None)
        if call is None or call.ended or invite_tx.state not in ("trying", "proceeding"):
            return []  # already answered: the CANCEL has no effect
        self._final(invite_tx, 487, now, to_tag=call.local_tag)
        self._finish(call, now)
        return [CallCancelled(call.call_id)]

    def _on_ack(self, req: Request, now: float) -> list[SipEvent]:
        tx = self._server.get(server_key(req))
        if tx is not None and tx.state == "completed":
            # ACK for our non-2xx final response: absorbed by the transaction (§17.2.1).
            tx.state = "confirmed"
            self._timers.cancel((Timer.G, tx.id))
            self._timers.cancel((Timer.H, tx.id))
            self._timers.set((Timer.I, tx.id), now + (0 if tx.reliable else T4))
            return []
        call = self._calls.get(req.call_id)
        if call is None or call.pending_2xx is None or req.cseq[0] != call.pending_2xx_cseq:
            return []
        if (req.from_tag or "") != call.remote_tag:
            return []
        if req.to_tag != call.local_tag:
            # Some UAs (pyVoIP 1.6.8) put a fresh To tag in the ACK. A UAS never forks, so Call-ID, From tag
            # and CSeq already name the one dialog; accepting it beats dropping an answered call after 32 s.
            self._diagnostics.append(f"ACK for {call.call_id} with a wrong To tag accepted")
        call.pending_2xx = None
        self._timers.cancel((Timer.RETRANSMIT_2XX, call.call_id))
        self._timers.cancel((Timer.ACK_WAIT, call.call_id))
        if call.state != "answered":
            return self._reinvite_answer(call, req)  # ACK of a re-INVITE's 2xx
        call.state = "confirmed"
        self.admission.confirmed(call.call_id)
        if call.hangup_requested:
            self._send_bye(call, now)
            return []
        if not call.late_offer:
            return [CallEstablished(call.call_id)]
        try:
            media = self._take_answer(call, req.body)
        except SdpError as exc:
            # Our offer went unanswered: there is no session to set up (RFC 3261 §13.2.2.4, RFC 3264 §5).
            self._diagnostics.append(f"late-offer call {call.call_id} ended: {exc}")
            self._send_bye(call, now)
            cause = "no-answer-in-ack" if not req.body else "answer-not-acceptable"
            return self._end(call, cause, now)
        return [MediaAnswered(call.call_id, media, req.body), CallEstablished(call.call_id)]

    @staticmethod
    def _take_answer(call: Dialog, body: bytes) -> Negotiated:
        if call.session is None:
            if not body:
                raise SdpError("no SDP answer in the ACK")
            return negotiate(parse_sdp(body))  # our offer was unreadable: take what G.711 we can
        return call.session.take_answer(body)

    def _reinvite_answer(self, call: Dialog, ack: Request) -> list[SipEvent]:
        """The ACK of our 2xx to a re-INVITE without SDP: it carries the answer to the offer in that 2xx."""
        reinvite, call.pending_reinvite = call.pending_reinvite, None
        if reinvite is None:
            return []
        try:
            media = self._take_answer(call, ack.body)
        except SdpError as exc:
            # The session stays as it was before this re-INVITE.
            self._diagnostics.append(f"re-INVITE of {call.call_id} left the session as it was: {exc}")
            return []
        return [ReInvite(call.call_id, reinvite, media, media.held)]

    def _in_dialog(self, req: Request, tx: ServerTransaction, now: float) -> list[SipEvent]:
        call = self._calls.get(req.call_id)
        if (
            call is None
            or call.ended
            or req.to_tag != call.local_tag
            or (req.from_tag or "") != call.remote_tag
        ):
            self._answer_and_forget(tx, 481)  # §12.2.2
            return []
        if req.cseq[0] < call.remote_cseq:
            self._final(tx, 500, now, "CSeq out of order")  # §12.2.2
            return []
        call.remote_cseq = req.cseq[0]
        if req.method == "BYE":
            self._final(tx, 200, now)
            invite_tx = self._server_by_id.get(call.invite_tx)
            if invite_tx is not None and invite_tx.state in ("trying", "proceeding"):
                self._final(invite_tx, 487, now, to_tag=call.local_tag)  # §15.1.2
            return self._end(call, "remote-bye", now)
        if req.method == "INVITE":
            return self._on_reinvite(call, req, tx, now)
        if req.method == "UPDATE":
            return self._on_update(call, req, tx, now)
        if req.method == "PRACK":
            return self._on_prack(call, req, tx, now)
        if req.method == "INFO":
            self._final(tx, 200, now)
            digit = dtmf_digit(req)
            return [InfoDtmf(call.call_id, digit)] if digit else []
        if req.method == "NOTIFY":
            self._final(tx, 200, now)
            frag = sipfrag_status(req)
            return [ReferStatus(call.call_id, frag[0], frag[1])] if frag else []
        if req.method == "OPTIONS":
            self._final(tx, 200, now, headers=self._capabilities())
            return []
        self._final(tx, 403, now)  # REFER/REGISTER towards us inside a call: we do not take transfers
        return []

    def _answer_offer(
        self, call: Dialog, req: Request, tx: ServerTransaction, now: float
    ) -> tuple[Negotiated, bytes] | None:
        """Our answer to an in-dialog offer, or None after refusing it with 488 and a Warning saying why."""
        assert call.session is not None
        try:
            return call.session.answer(req.body)
        except SdpError as exc:
            code = exc.warn_code if isinstance(exc, SdpNotAcceptable) else 399
            text = str(exc) if isinstance(exc, SdpNotAcceptable) else f"bad SDP offer: {exc}"
            self._final(tx, 488, now, headers=[("Warning", self._warning(text, code))])
            return None

    def _on_reinvite(self, call: Dialog, req: Request, tx: ServerTransaction, now: float) -> list[SipEvent]:
        if call.state == "pending" or call.pending_2xx is not None or call.local_sdp is None:
            # An earlier INVITE of the peer is still in progress (§14.2).
            self._final(tx, 500, now, headers=[("Retry-After", "1")])
            return []
        if call.refreshing and any(
            c.call_id == call.call_id and c.method == "INVITE" and c.state != "completed"
            for c in self._client.values()
        ):
            self._final(tx, 491, now, to_tag=call.local_tag)  # glare with our refresh re-INVITE (§14.2)
            return []
        timer = self._refresh_timer(call, req, tx, now)
        if timer is False:
            return []
        events: list[SipEvent] = []
        body = call.local_sdp
        if call.session is not None and not req.body:
            # No offer: ours goes in the 200, the answer comes in the ACK (RFC 3261 §14.2, RFC 3264 §8).
            body = call.session.offer()
            call.pending_reinvite = req
        elif call.session is not None:
            answered = self._answer_offer(call, req, tx, now)
            if answered is None:
                return []  # refused with 488: the session goes on unchanged (RFC 3261 §14.2)
            media, body = answered
            events.append(ReInvite(call.call_id, req, media, media.held))
        else:
            events.append(ReInvite(call.call_id, req))
        call.local_sdp = body
        contacts = req.headers.get_all("Contact")
        if contacts:
            call.remote_target = parse_name_addr(contacts[0]).uri  # target refresh (§12.2.2), on 2xx only
        tx.state = "proceeding"
        call.timer = timer
        resp = make_response(
            req,
            200,
            to_tag=call.local_tag,
            headers=[*self._dialog_headers(call, initial=False), *self._timer_headers(call)],
            body=body,
            content_type="application/sdp",
        )
        self._send_2xx(call, tx, resp, now)
        self._arm_session_timer(call, now)  # a re-INVITE is a session refresh (RFC 4028 §10)
        return events

    def _refresh_timer(
        self, call: Dialog, req: Request, tx: ServerTransaction, now: float
    ) -> SessionTimer | Literal[False] | None:
        """The session timer a peer's re-INVITE/UPDATE asks for; False when it was refused with 422."""
        current = call.timer
        timer = negotiate_uas(req.headers, min_se=self.min_se, default=self.session_expires, current=current)
        if isinstance(timer, IntervalTooBrief):
            self._final(tx, 422, now, headers=[("Min-SE", str(timer.min_se))])  # RFC 4028 §9
            return False
        return timer

    def _on_prack(self, call: Dialog, req: Request, tx: ServerTransaction, now: float) -> list[SipEvent]:
        """Acknowledge our reliable provisional response (RFC 3262 §3); anything else is 481."""
        rack = parse_rack(req.headers.get("RAck"))
        invite = call.invite
        if (
            rack is None
            or call.unacked_1xx is None
            or (rack.rseq, rack.cseq, rack.method) != (call.rseq, invite.cseq[0], invite.method)
        ):
            self._final(tx, 481, now, to_tag=call.local_tag)
            return []
        self._stop_1xx(call)
        self._final(tx, 200, now, to_tag=call.local_tag)
        return []

    def _stop_1xx(self, call: Dialog) -> None:
        call.unacked_1xx = None
        self._timers.cancel((Timer.RETRANSMIT_1XX, call.call_id))
        self._timers.cancel((Timer.PRACK_WAIT, call.call_id))

    def _on_update(self, call: Dialog, req: Request, tx: ServerTransaction, now: float) -> list[SipEvent]:
        """RFC 3311: without SDP a session refresh; with SDP an offer answered in the 200, as a re-INVITE."""
        timer = self._refresh_timer(call, req, tx, now)
        if timer is False:
            return []
        events: list[SipEvent] = []
        body = b""
        if req.body:
            if call.session is None or call.session.awaiting_answer or call.pending_2xx is not None:
                # An offer of ours is outstanding, or we cannot build an answer (RFC 3311 §5.2).
                status = 491 if call.session is not None else 488
                self._final(tx, status, now, to_tag=call.local_tag)
                return []
            answered = self._answer_offer(call, req, tx, now)
            if answered is None:
                return []
            media, body = answered
            call.local_sdp = body
            events.append(ReInvite(call.call_id, req, media, media.held))
        contacts = req.headers.get_all("Contact")
        if contacts:
            call.remote_target = parse_name_addr(contacts[0]).uri  # a target refresh (RFC 3311 §5.2)
        call.timer = timer
        resp = make_response(
            req,
            200,
            to_tag=call.local_tag,
            headers=[*self._dialog_headers(call, initial=False), *self._timer_headers(call)],
            body=body,
            content_type="application/sdp" if body else None,
        )
        self._send_response(tx, resp)
        tx.state = "completed"
        self._timers.set((Timer.J, tx.id), now + (0 if tx.reliable else TIMEOUT_64T1))
        if call.answered:  # in an early dialog the timer starts with our 2xx to the INVITE
            self._arm_session_timer(call, now)
        return events

    def _on_register(self, req: Request, tx: ServerTransaction, peer: Peer, now: float) -> list[SipEvent]:
        if self.registrar_allow is None or not self.registrar_allow(peer):
            self._final(tx, 403, now)
            return []
        outcome = self.registrar.register(req, peer, now)
        if outcome.status != 200:
            self._answer_and_forget(tx, outcome.status, outcome.reason, outcome.headers)
            return []
        self._final(tx, outcome.status, now, outcome.reason, headers=outcome.headers)
        self._arm_registrar()
        return list(outcome.events)

    def _arm_registrar(self) -> None:
        """One timer for the earliest binding expiry: expired bindings are purged even with no REGISTER."""
        when = self.registrar.next_expiry()
        if when is None:
            self._timers.cancel((Timer.REGISTRAR_PURGE, "purge"))
        else:
            self._timers.set((Timer.REGISTRAR_PURGE, "purge"), when)

    # ---- responses to our requests -------------------------------------------------------------------------

    def _on_response(self, resp: Response, now: float) -> list[SipEvent]:
        ctx = self._client.get(resp.via_branch or "")
        if ctx is None or resp.cseq[1] != ctx.method:
            return []  # no transaction: drop (§18.1.2; RFC 4475 bcast)
        if resp.status < 200:
            if ctx.state == "trying":
                ctx.state = "proceeding"
            return []
        if ctx.state == "completed":
            if ctx.ack is not None:
                self._out.append(Outgoing(ctx.peer, ctx.ack))  # a retransmitted final response to our INVITE
            return []  # retransmitted final response
        ctx.state = "completed"
        self._timers.cancel((Timer.E, ctx.branch))
        self._timers.cancel((Timer.F, ctx.branch))
        if ctx.method == "INVITE":
            self._ack(ctx, resp)
            # Keep the transaction for 64*T1 to answer retransmitted finals (Timers D and M, RFC 6026).
            self._timers.set((Timer.K, ctx.branch), now + TIMEOUT_64T1)
        else:
            self._timers.set((Timer.K, ctx.branch), now + (0 if ctx.reliable else T4))
        return self._client_done(ctx, resp.status, now, resp)

    def _ack(self, ctx: ClientTransaction, resp: Response) -> None:
        """ACK our INVITE's final response: a new branch for a 2xx, else the INVITE's (§17.1.1.3)."""
        call = self._dialog_of(ctx)
        if call is None:
            return
        ack, _ = build_request(
            call,
            "ACK",
            via_host=self.host,
            via_port=self._via_port(ctx.peer.transport),
            transport=ctx.peer.transport,
            user_agent=self.user_agent,
            cseq=resp.cseq[0],
            branch=None if resp.status < 300 else ctx.branch,
        )
        ctx.ack = serialize(ack)
        self._out.append(Outgoing(ctx.peer, ctx.ack))

    def _client_done(
        self, ctx: ClientTransaction, status: int, now: float, resp: Response | None = None
    ) -> list[SipEvent]:
        call = self._dialog_of(ctx)
        if ctx.method == "BYE" and call is not None:
            return self._end(call, "local-bye", now)
        if ctx.method == "REFER" and status >= 300 and call is not None:
            return [ReferStatus(ctx.call_id, status, True)]
        if ctx.method in ("INVITE", "UPDATE") and call is not None and not call.ended:
            return self._refresh_done(call, status, now, resp)
        return []

    def _dialog_of(self, ctx: ClientTransaction) -> Dialog | None:
        """The dialog of a request we sent; None once it is gone, even if a new call reuses its Call-ID."""
        call = self._calls.get(ctx.call_id)
        return call if call is not None and call.local_tag == ctx.local_tag else None

    def _refresh_done(self, call: Dialog, status: int, now: float, resp: Response | None) -> list[SipEvent]:
        """The outcome of a session refresh we sent (RFC 4028 §10)."""
        call.refreshing = False
        if call.timer is None:
            return []
        if 200 <= status < 300 and resp is not None:
            expires = parse_session_expires(resp.headers.get("Session-Expires"))
            if expires is not None and expires.interval >= self.min_se:
                call.timer.interval = expires.interval
                call.timer.we_refresh = expires.refresher != "uas"
            self._arm_session_timer(call, now)
            return []
        if status == 422 and resp is not None:
            # The peer wants a longer interval: ask again with its Min-SE (RFC 4028 §7.4).
            their_min = parse_delta(resp.headers.get("Min-SE"))
            if their_min is not None and their_min > call.timer.interval:
                call.timer.interval = their_min
                self._send_refresh(call, now)
            return []
        if status in (408, 481):
            # The dialog is gone at the other end: end it here (RFC 4028 §10).
            self._send_bye(call, now)
            return self._end(call, "session-expired", now)
        return []  # another failure: the session expiry deadline still stands

    # ---- timers --------------------------------------------------------------------------------------------

    def _on_timer(self, kind: Timer, ident: str, now: float) -> list[SipEvent]:
        if kind in (Timer.G, Timer.H, Timer.I, Timer.J):
            tx = self._server_by_id.get(ident)
            if tx is None:
                return []
            if kind is Timer.G and tx.state == "completed" and tx.last_bytes is not None:
                self._out.append(Outgoing(tx.peer, tx.last_bytes))
                tx.interval = min(tx.interval * 2, T2)
                self._timers.set((Timer.G, tx.id), now + tx.interval)
            elif kind is not Timer.G:
                self._server.pop(tx.key, None)
                del self._server_by_id[tx.id]
            return []
        if kind in (Timer.E, Timer.F, Timer.K):
            ctx = self._client.get(ident)
            if ctx is None:
                return []
            if kind is Timer.E and ctx.method == "INVITE" and ctx.state == "trying":
                # Timer A doubles without the T2 cap and stops at the first provisional (§17.1.1.2).
                self._out.append(Outgoing(ctx.peer, ctx.data))
                ctx.interval *= 2
                self._timers.set((Timer.E, ctx.branch), now + ctx.interval)
            elif kind is Timer.E and ctx.method != "INVITE" and ctx.state != "completed":
                self._out.append(Outgoing(ctx.peer, ctx.data))
                ctx.interval = T2 if ctx.state == "proceeding" else min(ctx.interval * 2, T2)
                self._timers.set((Timer.E, ctx.branch), now + ctx.interval)
            elif kind is Timer.F and ctx.state != "completed":
                del self._client[ctx.branch]
                self._timers.cancel((Timer.E, ctx.branch))
                return self._client_done(ctx, 408, now)  # Timer F: treated as 408 (§8.1.3.1)
            elif kind is Timer.K:
                del self._client[ctx.branch]
            return []
        if kind is Timer.REGISTRAR_PURGE:
            self.registrar.purge(now)
            self._arm_registrar()
            return []
        call = self._calls.get(ident)
        if call is None:
            return []
        if (
            kind is Timer.RETRANSMIT_2XX
            and call.pending_2xx is not None
            and call.pending_2xx_peer is not None
        ):
            self._out.append(Outgoing(call.pending_2xx_peer, call.pending_2xx))
            call.retransmit_interval = min(call.retransmit_interval * 2, T2)
            self._timers.set((Timer.RETRANSMIT_2XX, call.call_id), now + call.retransmit_interval)
        elif kind is Timer.ACK_WAIT and call.pending_2xx is not None:
            # No ACK within 64*T1: confirm and end the dialog with a BYE (§13.3.1.4). "no-ack", so that the
            # record says the call was never set up although we answered it.
            call.pending_2xx = None
            self._timers.cancel((Timer.RETRANSMIT_2XX, call.call_id))
            call.state = "confirmed"
            self._send_bye(call, now)
            return self._end(call, "no-ack", now)
        elif kind is Timer.FORGET_DIALOG and call.ended:
            del self._calls[call.call_id]
        elif (
            kind is Timer.RETRANSMIT_1XX
            and call.unacked_1xx is not None
            and (found := self._pending(call.call_id))
        ):
            self._out.append(Outgoing(found[1].peer, call.unacked_1xx))
            call.unacked_1xx_interval *= 2  # T1 doubling until the PRACK or 64*T1 (RFC 3262 §3)
            self._timers.set((Timer.RETRANSMIT_1XX, call.call_id), now + call.unacked_1xx_interval)
        elif kind is Timer.PRACK_WAIT and call.unacked_1xx is not None and call.state == "pending":
            # No PRACK: the caller cannot see our responses, so the INVITE is refused (RFC 3262 §3).
            found = self._pending(call.call_id)
            self._stop_1xx(call)
            if found is not None:
                self._final(found[1], 504, now, "No PRACK", to_tag=call.local_tag)
            return self._end(call, "prack-timeout", now)
        elif kind is Timer.SESSION_REFRESH and not call.ended:
            self._send_refresh(call, now)
        elif kind is Timer.SESSION_EXPIRY and not call.ended:
            # No refresh came in time: the peer is gone, so end the call (RFC 4028 §10).
            self._diagnostics.append(f"session timer of {call.call_id} expired")
            if call.state == "answered":
                call.pending_2xx = None
                self._timers.cancel((Timer.RETRANSMIT_2XX, call.call_id))
                self._timers.cancel((Timer.ACK_WAIT, call.call_id))
                call.state = "confirmed"
            self._send_bye(call, now)
            return self._end(call, "session-expired", now)
        return []

    # ---- session timers (RFC 4028) -------------------------------------------------------------------------

    def _arm_session_timer(self, call: Dialog, now: float) -> None:
        """(Re)start the dialog's session timer at a 2xx for a refresh: our refresh at half time if we are the
        refresher, and in any case the expiry, which only a refresh moves on."""
        self._timers.cancel((Timer.SESSION_REFRESH, call.call_id))
        self._timers.cancel((Timer.SESSION_EXPIRY, call.call_id))
        timer = call.timer
        if timer is None:
            return
        if timer.we_refresh:
            self._timers.set((Timer.SESSION_REFRESH, call.call_id), timer.refresh_due(now))
        self._timers.set((Timer.SESSION_EXPIRY, call.call_id), timer.expires_at(now))

    def _send_refresh(self, call: Dialog, now: float) -> None:
        """A session refresh: UPDATE when the peer allows it (no offer/answer needed), else a re-INVITE with
        our current SDP, which the peer answers unchanged (RFC 4028 §7.4, RFC 3264 §8)."""
        timer = call.timer
        if timer is None:
            return
        if call.state != "confirmed" or call.pending_2xx is not None or call.refreshing:
            # Another INVITE exchange is under way (§14.1): try again shortly.
            self._timers.set((Timer.SESSION_REFRESH, call.call_id), now + T4)
            return
        call.refreshing = True
        extra = [
            ("Contact", self._contact(call.peer.transport)),
            ("Session-Expires", timer.request_value()),
            ("Min-SE", str(self.min_se)),
            ("Supported", SUPPORTED_HEADER),
            ("Allow", ALLOW_HEADER),
        ]
        if timer.peer_supports:
            extra.append(("Require", "timer"))
        if call.peer_allows_update or call.local_sdp is None:
            self._send_request(call, "UPDATE", now, extra)
        else:
            self._send_request(call, "INVITE", now, extra, body=call.local_sdp)

    def _timer_headers(self, call: Dialog) -> list[tuple[str, str]]:
        """Session-Expires for our 2xx; Require: timer only towards a peer that supports it (RFC 4028 §9)."""
        if call.timer is None:
            return []
        headers = [("Session-Expires", call.timer.response_value())]
        if call.timer.peer_supports:
            headers.append(("Require", "timer"))
        return headers

    # ---- helpers -------------------------------------------------------------------------------------------

    def _pending(self, call_id: str) -> tuple[Dialog, ServerTransaction] | None:
        call = self._calls.get(call_id)
        if call is None or call.ended or call.state != "pending":
            return None
        tx = self._server_by_id.get(call.invite_tx)
        if tx is None or tx.state not in ("trying", "proceeding"):
            return None
        return call, tx

    def _new_tx(self, req: Request, peer: Peer) -> ServerTransaction:
        tx = ServerTransaction(f"s{next(self._ids)}", server_key(req), req, peer)
        self._server[tx.key] = tx
        self._server_by_id[tx.id] = tx
        return tx

    def _send_response(self, tx: ServerTransaction, resp: Response) -> None:
        tx.last_response = resp
        tx.last_bytes = serialize(resp)
        self._out.append(Outgoing(tx.peer, tx.last_bytes))

    def _final(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        to_tag: str | None = None,
    ) -> None:
        resp = make_response(
            tx.request,
            status,
            reason,
            to_tag=to_tag or new_tag(),
            headers=[*headers, *self._server_header()],
        )
        self._send_response(tx, resp)
        if tx.is_invite:
            tx.state = "completed"
            if not tx.reliable:
                tx.interval = T1
                self._timers.set((Timer.G, tx.id), now + T1)
            self._timers.set((Timer.H, tx.id), now + TIMEOUT_64T1)
        else:
            tx.state = "completed"
            self._timers.set((Timer.J, tx.id), now + (0 if tx.reliable else TIMEOUT_64T1))

    def _send_2xx(self, call: Dialog, tx: ServerTransaction, resp: Response, now: float) -> None:
        self._send_response(tx, resp)
        tx.state = "accepted"  # RFC 6026: absorb INVITE retransmissions by re-sending the 2xx until Timer L
        self._timers.set((Timer.H, tx.id), now + TIMEOUT_64T1)
        call.pending_2xx = tx.last_bytes
        call.pending_2xx_cseq = tx.request.cseq[0]
        call.pending_2xx_peer = tx.peer
        call.retransmit_interval = T1
        if not tx.reliable:
            self._timers.set(
                (Timer.RETRANSMIT_2XX, call.call_id), now + T1
            )  # §13.3.1.4: T1 doubling up to T2
        self._timers.set((Timer.ACK_WAIT, call.call_id), now + TIMEOUT_64T1)

    def _send_request(
        self,
        call: Dialog,
        method: str,
        now: float,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        dest = destination(call)
        req, branch = build_request(
            call,
            method,
            via_host=self.host,
            via_port=self._via_port(dest.transport),
            transport=dest.transport,
            user_agent=self.user_agent,
            extra=extra,
            body=body,
        )
        ctx = ClientTransaction(branch, method, call.call_id, serialize(req), dest, local_tag=call.local_tag)
        self._client[branch] = ctx
        self._out.append(Outgoing(dest, ctx.data))
        if not ctx.reliable:
            self._timers.set((Timer.E, branch), now + T1)
        self._timers.set((Timer.F, branch), now + TIMEOUT_64T1)

    def _send_bye(self, call: Dialog, now: float) -> None:
        if not call.bye_sent:
            call.bye_sent = True
            self._send_request(call, "BYE", now)

    def _finish(self, call: Dialog, now: float) -> None:
        call.ended = True
        self.admission.closed(call.call_id)
        call.pending_2xx = None
        self._timers.cancel((Timer.RETRANSMIT_2XX, call.call_id))
        self._timers.cancel((Timer.ACK_WAIT, call.call_id))
        self._timers.cancel((Timer.SESSION_REFRESH, call.call_id))
        self._timers.cancel((Timer.SESSION_EXPIRY, call.call_id))
        self._stop_1xx(call)
        # Keep the dialog a while so late retransmissions still match it, then forget it.
        self._timers.set((Timer.FORGET_DIALOG, call.call_id), now + TIMEOUT_64T1)

    def _end(self, call: Dialog, cause: str, now: float) -> list[SipEvent]:
        if call.ended:
            return []
        self._finish(call, now)
        return [CallEnded(call.call_id, cause)]

    def _warning(self, text: str, code: int = 399) -> str:
        # warn-agent is a hostport (§20.43), so an IPv6 host goes in brackets; 399 is "miscellaneous".
        agent = f"[{self.host}]" if ":" in self.host else self.host
        return f"{code:03d} {agent} {quoted_string(text)}"

    def _server_header(self) -> list[tuple[str, str]]:
        return [("Server", self.user_agent)] if self.user_agent is not None else []

    def _contact(self, transport: Transport) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if transport == "tls" and self.tls_port:
            # In-dialog requests of a call that came over TLS come back over TLS, not to the clear-text port.
            return f"<sip:{host}:{self.tls_port};transport=tls>"
        return f"<sip:{host}:{self.port}{';transport=tcp' if transport == 'tcp' else ''}>"

    def _via_port(self, transport: Transport) -> int:
        return self.tls_port if transport == "tls" and self.tls_port else self.port

    def _dialog_headers(self, call: Dialog, *, initial: bool) -> list[tuple[str, str]]:
        headers = [("Contact", self._contact(call.peer.transport))]
        if initial:
            # The UAS copies Record-Route into dialog-creating responses (§12.1.1).
            headers += [("Record-Route", rr) for rr in call.invite.headers.lines("Record-Route")]
        headers += [("Allow", ALLOW_HEADER), ("Supported", SUPPORTED_HEADER), *self._server_header()]
        return headers

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW_HEADER), ("Accept", "application/sdp"), ("Supported", SUPPORTED_HEADER)]
