"""One scripted call: a UDP UAC on loopback placing a real SIP call to the bridge and playing a case's turns.

INVITE with SDP (PCMU, telephone-event), retransmitted per Timer A; ACK; RTP at real time throughout; digits
as RFC 4733 events; hold as a re-INVITE with a=sendonly, resume with sendrecv; the bridge's REFER answered
202 and reported by a NOTIFY sipfrag (200, or 603/486 to refuse it); its BYE answered; our BYE sent.
What happened goes into a trace with time offsets from the INVITE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ivr.sip.message import Request, Response, SipParseError, parse_message, parse_name_addr, serialize
from ivr.sip.sdp import SdpError, build_offer, parse_sdp
from ivr.testing.cases import Case, ReferAnswer, Style, Turn
from ivr.testing.listen import Activity, PromptDetector, PromptHeard
from ivr.testing.rtpleg import RtpLeg
from ivr.testing.uac import UacDialog

T1 = 0.5  # RFC 3261 §17.1.1.1
T2 = 4.0
TRANSACTION_TIMEOUT = 64 * T1  # Timer B / F
PROMPT_WAIT = 20.0  # the longest a turn waits for the bridge to finish talking
SIPFRAG = {
    ReferAnswer.ACCEPT: "200 OK",
    ReferAnswer.DECLINE: "603 Declined",
    ReferAnswer.BUSY: "486 Busy Here",
}


@dataclass(frozen=True)
class Refer:
    """The REFER as received: its target without the URI's ?headers, and the headers (REFER's X-*,
    User-to-User and those embedded in Refer-To)."""

    target: str
    headers: Mapping[str, str]


@dataclass
class CallOutcome:
    """What the caller saw of one call."""

    call_id: str
    trace: list[tuple[float, str]] = field(default_factory=list)
    answered: int | None = None  # the INVITE's final status
    refer: Refer | None = None
    prompts: list[PromptHeard] = field(default_factory=list)
    ended_by: str = ""  # "bridge" (its BYE), "caller" (our BYE), "timeout", "rejected", "error"
    error: str | None = None
    turns_done: int = 0


def refer_of(request: Request) -> Refer:
    refer_to = request.headers.get("Refer-To") or ""
    try:
        uri = parse_name_addr(refer_to).uri
    except SipParseError:
        uri = refer_to.strip("<> ")
    target, _, query = uri.partition("?")
    headers: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        headers[unquote(name)] = unquote(value)
    for name, value in request.headers:
        if name.lower().startswith("x-") or name.lower() == "user-to-user":
            headers[name] = value
    return Refer(target, headers)


class SipTimeout(RuntimeError):
    """No final response to one of our requests within 64*T1 (Timer B / F)."""


class _SipLeg(asyncio.DatagramProtocol):
    """One UDP socket: our client transactions (retransmitted until a final response) and the bridge's
    requests (each answered once; a retransmission gets the same answer again)."""

    def __init__(self, call: ScriptedCall) -> None:
        self.call = call
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] = ("", 0)
        self._waiting: dict[tuple[str, str], asyncio.Future[Response]] = {}
        self._proceeding: set[tuple[str, str]] = set()
        self._answered: dict[tuple[str, str], bytes] = {}
        self.last_ack: bytes | None = None

    def send(self, message: Request | Response) -> None:
        self._send(serialize(message))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and data:
            self.transport.sendto(data, self.remote)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        if isinstance(message, Response):
            key = (message.via_branch or "", message.cseq[1])
            waiter = self._waiting.get(key)
            if waiter is not None and message.status >= 200 and not waiter.done():
                waiter.set_result(message)
            elif waiter is not None and message.cseq[1] == "INVITE":
                self._proceeding.add(key)  # a 1xx: stop retransmitting (§17.1.1.2), wait for the final
            elif waiter is None and message.cseq[1] == "INVITE" and 200 <= message.status < 300:
                self._send(self.last_ack or b"")  # the 2xx came again: our ACK was lost
            return
        key = (message.via_branch or "", message.method)
        if message.method == "ACK":
            return
        if key in self._answered:
            self._send(self._answered[key])
            return
        response = self.call.on_request(message)
        self._answered[key] = serialize(response)
        self._send(self._answered[key])
        self.call.after_answer(message)

    async def transact(self, request: Request) -> Response:
        """Send until a final response; Timer A/E doubling (INVITE: until T1*64, others capped at T2)."""
        loop = asyncio.get_running_loop()
        key = (request.via_branch or "", request.cseq[1])
        waiter = self._waiting[key] = loop.create_future()
        data = serialize(request)
        interval, deadline = T1, loop.time() + TRANSACTION_TIMEOUT
        try:
            while True:
                if self.transport is not None:
                    self.transport.sendto(data, self.remote)
                timeout = min(interval, deadline - loop.time())
                if timeout <= 0:
                    raise SipTimeout(
                        f"no final response to {request.method} within {TRANSACTION_TIMEOUT:.0f}s"
                    )
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter), timeout)
                if key in self._proceeding:
                    final: Response = await waiter  # ringing: bounded by the case timeout
                    return final
                interval = interval * 2 if request.method == "INVITE" else min(interval * 2, T2)
        finally:
            self._waiting.pop(key, None)
            self._proceeding.discard(key)


class ScriptedCall:
    """Places one call to `bridge` and plays `case`'s turns; `run()` returns what was seen."""

    def __init__(
        self, case: Case, bridge: tuple[str, int], speech: Mapping[int, bytes],
        prompts: Mapping[str, list[bytes]], host: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        self.case = case
        self.bridge = bridge
        self.speech = speech  # turn index -> PCM16 of its `say`
        self.host = host
        self.detector = PromptDetector(prompts)
        self.activity = Activity()
        self.sip = _SipLeg(self)
        self.rtp = RtpLeg(self._on_frame)
        self.dialog: UacDialog | None = None
        self.outcome = CallOutcome("")
        self.ended = asyncio.Event()
        self._t0 = 0.0
        self._rtp_port = 0
        self._sdp_version = 0
        self._notify: asyncio.Task[None] | None = None

    def note(self, text: str) -> None:
        self.outcome.trace.append((asyncio.get_running_loop().time() - self._t0, text))

    def _offer(self, direction: str = "sendrecv") -> bytes:
        self._sdp_version += 1
        return build_offer(
            local_host=self.host, local_port=self._rtp_port, session_id=int(self._t0 * 1000) % 10**9,
            version=self._sdp_version, username="ivr-test", codecs=("PCMU",), direction=direction,
        )  # fmt: skip

    def _on_frame(self, payload: bytes, now: float) -> None:
        self.activity.feed(payload, now)
        for heard in self.detector.feed(payload, now):
            self._heard(heard)

    def _heard(self, heard: PromptHeard) -> None:
        self.activity.prompt_completed(heard)
        self.outcome.prompts.append(heard)
        cut = "" if heard.complete else f", cut at {heard.fraction:.0%}"
        self.outcome.trace.append((heard.end - self._t0, f"prompt {heard.name} heard{cut}"))

    async def run(self) -> CallOutcome:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        transport, _ = await loop.create_datagram_endpoint(lambda: self.sip, local_addr=(self.host, 0))
        self.sip.transport, self.sip.remote = transport, self.bridge
        sip_port = int(transport.get_extra_info("sockname")[1])
        self._rtp_port = await self.rtp.open(self.host)
        self.dialog = UacDialog(self.host, sip_port, *self.bridge)
        self.outcome.call_id = self.dialog.call_id
        try:
            await asyncio.wait_for(self._call(), self.case.timeout)
        except TimeoutError:
            self.outcome.ended_by = self.outcome.ended_by or "timeout"
            self.note(f"case timeout ({self.case.timeout:g}s): hanging up")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bye(), 5)
        except Exception as exc:  # a transaction that timed out, an unusable answer: the case fails
            self.outcome.ended_by, self.outcome.error = "error", f"{type(exc).__name__}: {exc}"
            self.note(f"error: {self.outcome.error}")
        finally:
            for heard in self.detector.close():
                self._heard(heard)
            if self._notify is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._notify, 5)
            await self.rtp.close()
            transport.close()
        self.outcome.trace.sort(key=lambda entry: entry[0])
        return self.outcome

    async def _call(self) -> None:
        assert self.dialog is not None
        invite = self.dialog.request("INVITE", body=self._offer(), content_type="application/sdp")
        response = await self.sip.transact(invite)
        self.outcome.answered = response.status
        self.note(f"INVITE -> {response.status} {response.reason}")
        if response.status >= 300:
            self.sip.send(self.dialog.ack(invite, response))
            self.outcome.ended_by = "rejected"
            return
        self.dialog.answered(response)
        answer = parse_sdp(response.body)
        ack = self.dialog.ack(invite, response)
        self.sip.last_ack = serialize(ack)
        self.sip.send(ack)
        self.rtp.start((answer.connection, answer.port))
        since = asyncio.get_running_loop().time()
        for index, turn in enumerate(self.case.turns):
            if self.ended.is_set():
                self.note(f"call ended before turn {index + 1} ({turn.action})")
                break
            await self._before(turn, since)
            if self.ended.is_set():
                self.note(f"call ended before turn {index + 1} ({turn.action})")
                break
            await self._turn(index, turn)
            self.outcome.turns_done += 1
            since = asyncio.get_running_loop().time()
        if not self.ended.is_set() and not (self.case.turns and self.case.turns[-1].hangup):
            await self.ended.wait()  # the bridge hangs up (bounded by the case timeout)

    async def _before(self, turn: Turn, since: float) -> None:
        loop = asyncio.get_running_loop()
        if turn.after is not None or not turn.wait_prompt:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), turn.after or 0)
            return
        deadline = loop.time() + PROMPT_WAIT
        while not self.activity.finished_since(since, loop.time()) and not self.ended.is_set():
            if loop.time() > deadline:
                self.note(f"no prompt ended within {PROMPT_WAIT:g}s; going on")
                return
            await asyncio.sleep(0.05)

    async def _turn(self, index: int, turn: Turn) -> None:
        if turn.say is not None:
            style = "" if turn.style is Style.NORMAL else f" ({turn.style.value})"
            self.note(f"saying '{turn.say}'{style}")
            await self._until_ended(self.rtp.say(self.speech[index]))
            self.note(f"said '{turn.say}'")
        elif turn.press is not None:
            self.note(f"pressing {turn.press}")
            await self._until_ended(self.rtp.press(turn.press))
        elif turn.silence is not None:
            self.note(f"silent for {turn.silence:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), turn.silence)
        elif turn.hold is not None:
            await self._reinvite("sendonly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), turn.hold)
            if not self.ended.is_set():
                await self._reinvite("sendrecv")
        elif turn.hangup:
            await self._bye()

    async def _until_ended(self, work: Awaitable[None]) -> None:
        """Run `work` (sending audio) unless the bridge hangs up first."""
        task = asyncio.ensure_future(work)
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reinvite(self, direction: str) -> None:
        assert self.dialog is not None
        invite = self.dialog.request("INVITE", body=self._offer(direction), content_type="application/sdp")
        response = await self.sip.transact(invite)
        verb = "hold" if direction == "sendonly" else "resume"
        self.note(f"{verb}: re-INVITE a={direction} -> {response.status} {response.reason}")
        ack = self.dialog.ack(invite, response)
        if response.status < 300:
            self.sip.last_ack = serialize(ack)
            with contextlib.suppress(SdpError):
                answer = parse_sdp(response.body)
                if answer.connection != "0.0.0.0":
                    self.rtp.remote = (answer.connection, answer.port)
        self.sip.send(ack)

    async def _bye(self) -> None:
        if self.dialog is None or self.ended.is_set() or self.outcome.answered is None:
            return
        self.ended.set()
        self.outcome.ended_by = self.outcome.ended_by or "caller"
        response = await self.sip.transact(self.dialog.request("BYE"))
        self.note(f"BYE -> {response.status} {response.reason}")

    # ---- the bridge's requests

    def on_request(self, request: Request) -> Response:
        assert self.dialog is not None
        if request.method == "BYE":
            self.note("BYE from the bridge -> 200")
            self.outcome.ended_by = self.outcome.ended_by or "bridge"
            self.ended.set()
            return self.dialog.reply(request, 200)
        if request.method == "REFER":
            refer = self.outcome.refer = refer_of(request)
            shown = ", ".join(f"{k}: {v}" for k, v in refer.headers.items())
            self.note(f"REFER {refer.target} headers {shown} -> 202")
            return self.dialog.reply(request, 202, headers=[("Contact", self.dialog.contact)])
        if request.method == "INVITE":  # a session refresh or the bridge's own re-offer: our session as is
            return self.dialog.reply(
                request, 200, headers=[("Contact", self.dialog.contact)], body=self._offer(),
                content_type="application/sdp",
            )  # fmt: skip
        if request.method in ("OPTIONS", "UPDATE", "NOTIFY", "INFO"):
            return self.dialog.reply(request, 200)
        return self.dialog.reply(request, 501)

    def after_answer(self, request: Request) -> None:
        if request.method == "REFER":
            self._notify = asyncio.ensure_future(self._report_transfer())

    async def _report_transfer(self) -> None:
        assert self.dialog is not None
        status = SIPFRAG[self.case.transfer]
        notify = self.dialog.request(
            "NOTIFY", body=f"SIP/2.0 {status}\r\n".encode(), content_type="message/sipfrag;version=2.0",
            extra=(("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")),
        )  # fmt: skip
        response = await self.sip.transact(notify)
        self.note(f"NOTIFY sipfrag '{status}' -> {response.status}")
