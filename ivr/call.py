"""One call: the only module that joins sip + media + asr + dialplan (DESIGN.md, dependency rule 3).

The dialplan engine decides; this module carries its actions out, one small handler per kind of effect
(prompt or said text, recognition, webhook, transfer, redirect, hang up), and reports each outcome back as
an engine event echoing the action's id. The engine's timers are deadlines this loop sleeps until; nothing
polls. Every task the call starts is cancelled when the call ends, whichever side hangs up, and whatever
fails while it ends, the call is removed from the bridge and its CDR is written.

The engine starts before the call is answered, once the offer is negotiated (and the ringing is over), so a
flow can ask a webhook, redirect (302) or refuse (480) a call nobody has heard yet. `Answer` opens the media,
sends the 200 and waits for the ACK; so does the first Play, Say, Listen or Transfer when the engine did
not ask (answering is idempotent), so an engine that never emits Answer still works. No RTP (hence no
digit) can arrive before that. A Redirect after the answer is carried out as a transfer (REFER).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from ivr import metrics
from ivr.asr.base import (
    AsrEvent,
    AudioFormat,
    EndOfSpeech,
    Final,
    Partial,
    RecognitionRequest,
    ResultStatus,
    StartOfSpeech,
)
from ivr.asr.failover import Candidate, TurnRecognition
from ivr.asr.stream import RecognizerStream
from ivr.cdr import CallRecord, CdrSink, Transcript, utc_now
from ivr.dialplan.engine import (
    Action,
    Answer,
    Cancel,
    DialplanEngine,
    Digit,
    Event,
    Handoff,
    Hangup,
    Held,
    Listen,
    NotRecognized,
    PartialResult,
    Play,
    PromptFinished,
    Recognized,
    Redirect,
    Resumed,
    Routed,
    Say,
    SpeechEnded,
    SpeechStarted,
    StartInputTimers,
    Transfer,
    TransferEnded,
    Webhook,
    WebhookReplied,
)
from ivr.dialplan.schema import Dialplan
from ivr.handoff import URI_HEADERS, emotion_value, refer_target, transfer_headers
from ivr.media.prompt import load_prompt
from ivr.media.session import PortAllocator, RtpSession
from ivr.sip.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    InfoDtmf,
    MediaAnswered,
    ReferStatus,
    ReInvite,
    SipEvent,
)
from ivr.sip.message import Request, parse_name_addr
from ivr.sip.sdp import (
    Negotiated,
    SdpError,
    SdpNotAcceptable,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from ivr.sip.uri import parse_uri
from ivr.tts import SpeechCache
from ivr.webhook import WebhookClient, WebhookOutcome, url_host


def _source_host(invite: Request) -> str:
    """Where a late-offer caller's media will come from until its answer says: its Contact's host."""
    contact = invite.headers.get("Contact")
    if contact:
        host = parse_uri(parse_name_addr(contact).uri).host
        if host:
            return host
    return "0.0.0.0"


def _address_of(header: str | None) -> str:
    """The URI of a From/To value for the CDR, or the raw value when it does not parse."""
    try:
        return str(parse_name_addr(header or "").uri)
    except ValueError:
        return header or ""


def _number_of(address: str) -> str:
    """The user part of a From/To URI (the caller's or dialled number, as `{{ caller }}` is documented),
    or the whole address when it has none."""
    user, at, _ = address.partition(":")[2].partition("@")
    return user.partition(";")[0] if at and user else address


_TOKEN = re.compile(r"^[A-Za-z0-9!%*_+`'~.-]+$")  # a header name (RFC 3261 section 25.1 token)
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f]+")


def context_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The dialplan's context headers, safe to send: a CR/LF (or any control character) in a value would end
    the header and forge another, so they become spaces; a name that is not a token is dropped."""
    return [
        (name, " ".join(_LINE_BREAKS.sub(" ", value).split()))
        for name, value in headers
        if _TOKEN.match(name)
    ]


def new_channel_id() -> str:
    """32 hex characters, shared by every recognizer session of the call (CPQD `Channel-Identifier`)."""
    return secrets.token_hex(16)


class CallSignalling(Protocol):
    """What a call asks of SIP (``SipTransport`` on the wire, an in-memory user agent in tests)."""

    def ring(self, call_id: str) -> None: ...
    def answer(self, call_id: str, sdp: bytes) -> None: ...
    def reject(
        self,
        call_id: str,
        status: int,
        reason: str | None = None,
        warning: str | None = None,
        warn_code: int = 399,
    ) -> None: ...
    def redirect(self, call_id: str, contact: str, headers: Sequence[tuple[str, str]] = ()) -> None: ...
    def hangup(self, call_id: str) -> None: ...
    def refer(self, call_id: str, target: str, headers: Sequence[tuple[str, str]] = ()) -> None: ...


# vendor, event sink -> the call's stream for that vendor; None when no URL is configured for it.
RecognizerFactory = Callable[[str, Callable[[AsrEvent], None]], RecognizerStream | None]


class Engine(Protocol):
    """What the call drives: `DialplanEngine` (a scripted stand-in in call.py's own unit tests)."""

    @property
    def finished(self) -> bool: ...
    @property
    def next_deadline(self) -> float | None: ...
    @property
    def recognition(self) -> int | None: ...
    def start(self, now: float) -> list[Action]: ...
    def handle(self, event: Event, now: float) -> list[Action]: ...
    def tick(self, now: float) -> list[Action]: ...


# dialplan, channel id, the call's G.711, its variables (caller, callee, call_id) -> the engine of one call
EngineFactory = Callable[[Dialplan, str, AudioFormat, Mapping[str, str]], Engine]


def dialplan_engine(
    dialplan: Dialplan, channel_id: str, g711: AudioFormat, variables: Mapping[str, str]
) -> Engine:
    return DialplanEngine(dialplan, channel_id=channel_id, g711=g711, variables=variables)


@dataclass
class CallSettings:
    rtp_host: str
    sdp_host: str
    rtp_timeout: float
    refer_timeout: float
    ring_time: float = 0.0
    ack_timeout: float = 32.0
    bye_timeout: float = 5.0
    rtp_nat: bool = False  # accept media from a non-SDP address after a probation (NAT'd callers)
    rtp_comfort_noise: bool = True  # RFC 3389 CN for silence when the offer has it
    rtp_sparse_silence: bool = False  # without CN, a G.711 silence frame a second rather than every 20 ms
    rtp_batch_receive: bool = True  # the compiled batch receiver, when built (ivr/media/batchrx.py)


class PromptCache:
    """Prompts decoded and resampled once per process, off the event loop (loaded at start, or on first use
    in a worker thread), never once per call."""

    def __init__(self) -> None:
        self._pcm: dict[Path, bytes] = {}

    async def preload(self, paths: list[Path]) -> list[str]:
        """Load every prompt a dialplan plays; the errors, one line each (a broken prompt is logged, and
        the call skips it rather than stall)."""
        errors = []
        for path in dict.fromkeys(paths):
            try:
                await self.get(path)
            except Exception as exc:
                errors.append(str(exc))
        return errors

    async def get(self, path: Path) -> bytes:
        pcm = self._pcm.get(path)
        if pcm is None:
            pcm = self._pcm[path] = await asyncio.to_thread(load_prompt, path)
        return pcm


@dataclass
class _Recognition:
    """The listen in progress: its id, and the turn that takes its audio (failing over between vendors)."""

    id: int
    turn: TurnRecognition


@dataclass
class _Effects:
    """What runs for the engine right now, by action id."""

    prompts: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    recognition: _Recognition | None = None
    transfer: asyncio.Task[None] | None = None
    webhooks: dict[int, asyncio.Task[None]] = field(default_factory=dict)


class Call:
    """One call, from the INVITE to the CDR: carries out what its dialplan engine asks."""

    # Slots: over 30 attributes, an instance dict no longer shares its keys (1.3 KB more per call).
    __slots__ = (
        "_acked",
        "_answered",
        "_cause",
        "_cdr",
        "_dialplan",
        "_effects",
        "_ended",
        "_engine",
        "_events",
        "_g711",
        "_held",
        "_latency",
        "_media",
        "_on_done",
        "_port",
        "_ports",
        "_prompts",
        "_recognizers",
        "_refer_result",
        "_rtp",
        "_send_error_logged",
        "_settings",
        "_sip",
        "_speech",
        "_step",
        "_stopping",
        "_streams",
        "_task",
        "_waiter",
        "_webhooks",
        "call_id",
        "channel_id",
        "invite",
        "log",
        "record",
    )

    def __init__(
        self,
        *,
        invite: Request,
        sip: CallSignalling,
        dialplan: Dialplan,
        dialplan_path: Path,
        settings: CallSettings,
        ports: PortAllocator,
        prompts: PromptCache,
        cdr: CdrSink,
        recognizers: RecognizerFactory,
        on_done: Callable[[Call], None] = lambda call: None,
        speech: SpeechCache | None = None,
        webhooks: WebhookClient | None = None,
        engine: EngineFactory = dialplan_engine,
    ) -> None:
        self.call_id = invite.call_id
        self.invite = invite
        self.channel_id = new_channel_id()
        self._sip = sip
        self._dialplan = dialplan
        self._settings = settings
        self._ports = ports
        self._prompts = prompts
        self._cdr = cdr
        self._recognizers = recognizers
        self._on_done = on_done
        self._speech = speech
        self._webhooks = webhooks
        self._engine = engine
        self.log = structlog.get_logger().bind(call_id=self.call_id, channel_id=self.channel_id)
        self.record = CallRecord(
            call_id=self.call_id,
            channel_id=self.channel_id,
            caller=_address_of(invite.headers.get("From")),
            callee=_address_of(invite.headers.get("To")),
            dialplan=str(dialplan_path),
            dialplan_version=dialplan.version,
            redacted_steps=dialplan.redacted_steps(),  # sub-flows' too, as the engine names them
        )
        cdr.start(self.record)  # a row now, completed at the end: a crash leaves it to be marked interrupted
        # What the engine is told next, and the one wait for it: not an asyncio.Queue (four deques, 3 KB a
        # call) and two tasks per wait, for the few events a call has.
        self._events: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self._acked = asyncio.Event()
        self._media: Negotiated | None = None  # the negotiated offer, until the call is answered
        self._answered = False  # the 200 went out (answering is idempotent: Answer, or the first prompt)
        self._ended = asyncio.Event()
        self._refer_result: asyncio.Future[int] | None = None
        self._held = False  # the caller has put the call on hold (re-INVITE sendonly / inactive)
        self._rtp: RtpSession | None = None
        self._port: int | None = None
        self._g711 = AudioFormat.PCMU
        self._streams: dict[str, RecognizerStream] = {}
        self._effects = _Effects()
        self._send_error_logged = False
        self._step = ""
        self._cause: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # the call cancelled its own task (BYE, end()), which then ends quietly
        self._latency = metrics.RecognitionLatency()

    # ---- lifecycle

    @property
    def ended(self) -> bool:
        """The dialog is over (its cleanup may still be running)."""
        return self._ended.is_set()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"call {self.call_id}")
        return self._task

    @property
    def start_task(self) -> asyncio.Task[None] | None:
        return self._task

    async def _run(self) -> None:
        try:
            await self._answer_and_run()
        except asyncio.CancelledError:
            self._cause = self._cause or "shutdown"
            self._hangup_now()
            if not self._stopping:
                raise
            # The call stopped itself (BYE, end()): no exception left behind, whose traceback would hold
            # the whole call in a reference cycle that only a full collection frees.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            self.log.exception("call failed")
            self._cause = self._cause or "internal-error"
            self._hangup_now()
        finally:
            await self._cleanup()

    async def _answer_and_run(self) -> None:
        late_offer = not self.invite.body.strip()
        if late_offer:
            # A delayed-offer INVITE (RFC 3261 §13.2.1): our offer goes in the 200, the answer in the ACK.
            media = Negotiated(0, "PCMU", 101, _source_host(self.invite), 0, 20)
        else:
            try:
                media = negotiate(parse_sdp(self.invite.body))
                if not self._settings.rtp_comfort_noise:
                    media = dataclasses.replace(media, comfort_noise_payload_type=None)
            except SdpNotAcceptable as e:
                self.log.info("offer not acceptable", reason=str(e))
                self._reject(488, "rejected-488", warning=str(e), warn_code=e.warn_code)
                return
            except SdpError as e:
                self.log.info("bad SDP offer", reason=str(e))
                self._reject(488, "rejected-488", warning=f"bad SDP offer: {e}")
                return
            self._use_codec(media)
        if self._settings.ring_time > 0:
            self._sip.ring(self.call_id)
            await asyncio.sleep(self._settings.ring_time)  # a CANCEL meanwhile cancels this task
        self._media = media
        # The engine starts before the answer: a flow may redirect or refuse the call, or ask a webhook,
        # before anyone hears anything. It answers with `Answer`, or the call does at its first prompt/listen.
        variables = {
            "caller": _number_of(self.record.caller),
            "callee": _number_of(self.record.callee),
            "call_id": self.call_id,
        }
        await self._drive(self._engine(self._dialplan, self.channel_id, self._g711, variables))
        if not self._answered and not self._ended.is_set():
            # The flow ended without answering, redirecting or refusing: do not leave the caller ringing.
            self._cause = self._cause or "not-answered"
            self._reject(480, self._cause)

    async def _answer(self) -> None:
        """Open the media, send the 200 (our offer for a late-offer INVITE) and wait for the ACK; once."""
        if self._answered or self._media is None:
            return
        self._answered = True
        media = self._media
        late_offer = not self.invite.body.strip()
        self._rtp = await self._open_media(media)
        if late_offer:
            self._rtp.keepalive = False  # nowhere to send to before the ACK brings the answer
            sdp = build_offer(
                local_host=self._settings.sdp_host,
                local_port=self._rtp.local_port,
                session_id=int(time.time()),
            )
        else:
            sdp = build_answer(
                media,
                local_host=self._settings.sdp_host,
                local_port=self._rtp.local_port,
                session_id=int(time.time()),
            )
        self._sip.answer(self.call_id, sdp)
        self.log.info(
            "answered",
            codec=media.encoding,
            rtp_port=self._port,
            remote=media.remote_host,
            late_offer=late_offer,
        )
        # Media before the ACK would be lost on some PBXs; the UA core ends the call itself when no ACK comes.
        await self._wait_until(self._acked.is_set, self._settings.ack_timeout)

    async def _open_media(self, media: Negotiated) -> RtpSession:
        # A port from our range can still be taken by another process: try the next ones before giving up.
        for _ in range(8):
            port = self._ports.acquire()
            rtp = RtpSession(
                local_host=self._settings.rtp_host,
                port=port,
                remote_host=media.remote_host,
                remote_port=media.remote_port,
                payload_type=media.payload_type,
                dtmf_payload_type=media.dtmf_payload_type,
                comfort_noise_payload_type=media.comfort_noise_payload_type,
                on_audio=self._on_audio,
                on_dtmf=self._on_dtmf,
                on_timeout=self._on_rtp_timeout,
                inactivity_timeout=self._settings.rtp_timeout,
                nat=self._settings.rtp_nat,
                sparse_silence=self._settings.rtp_sparse_silence,
                batch_receive=self._settings.rtp_batch_receive,
            )
            try:
                await rtp.start()
            except OSError:
                self._ports.release(port)
                continue
            except BaseException:
                # Cancelled while binding (the caller hung up): the port goes back, the socket is closed.
                self._ports.release(port)
                await asyncio.shield(rtp.close())
                raise
            self._port = port
            return rtp
        raise OSError("no free RTP port")

    async def _drive(self, engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        actions = engine.start(loop.time())
        while True:
            for action in actions:
                await self._perform(action)
                if self._ended.is_set():
                    return
            if engine.finished or self._ended.is_set():
                return
            deadline = engine.next_deadline
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            event = await self._next_event(timeout)
            if self._ended.is_set():
                return
            now = loop.time()
            if event is None:
                actions = engine.tick(now)
                continue
            if isinstance(event, Recognized | NotRecognized) and event.id == engine.recognition:
                self._record_turn(event)
            elif isinstance(event, Digit):
                self.record.add_digit(self._step, event.digit)
            step = self._step
            actions = engine.handle(event, now)
            if isinstance(event, PartialResult) and any(isinstance(a, Routed) for a in actions):
                self._record_early(step, event)

    def _record_turn(self, event: Recognized | NotRecognized) -> None:
        if isinstance(event, Recognized):
            turn = Transcript.of(self._step, event.text, event.confidence, "recognized", event.classification)
        elif event.status is not ResultStatus.CANCELLED:
            turn = Transcript.of(self._step, "", 0.0, event.status.value, event.classification)
        else:
            return
        self.record.add_turn(turn)

    def _record_early(self, step: str, event: PartialResult) -> None:
        """The engine routed on a partial (early match): that partial is the turn's result."""
        self.record.add_turn(Transcript.of(step, event.text, event.confidence, "recognized", None))
        shown = self.record.shown(step, event.text)
        self.log.info("recognized early", text=shown, confidence=event.confidence)

    async def _next_event(self, timeout: float | None) -> Event | None:
        """The next event; None after `timeout` or once the dialog is over."""
        await self._wait_until(lambda: bool(self._events), timeout)
        return self._events.pop(0) if self._events else None

    async def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> None:
        """Until `ready()` or the dialog is over, `timeout` at most: one future, woken by `_wake()` (the
        call's one task is the only one that waits)."""
        try:
            async with asyncio.timeout(timeout):
                while not ready() and not self._ended.is_set():
                    waiter = self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await waiter
                    finally:
                        self._waiter = None
        except TimeoutError:
            pass

    def _post(self, event: Event) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_ended(self) -> None:
        self._ended.set()
        self._wake()  # the engine's wait for the next event ends with it

    async def _perform(self, action: Action) -> None:
        if isinstance(action, Answer | Play | Say | Listen | Transfer) and not self._answered:
            # An engine that never emits Answer (or a transfer first: a REFER needs a dialog) is answered
            # here, so nothing plays, listens or transfers on an unanswered call.
            await self._answer()
            if self._ended.is_set():
                return
        if isinstance(action, Routed):
            self._step = action.step
            self.record.route.append(f"{action.step}<{action.via}")
            self.log.info("routed", step=action.step, via=action.via)
        elif isinstance(action, Answer):
            pass  # answered above
        elif isinstance(action, Play | Say):
            self._start_prompt(action)
        elif isinstance(action, Listen):
            self._start_recognition(action)
        elif isinstance(action, Webhook):
            self._effects.webhooks[action.id] = asyncio.create_task(self._webhook(action))
        elif isinstance(action, StartInputTimers):
            recognition = self._effects.recognition
            if recognition is not None and recognition.id == action.id:
                recognition.turn.start_timers()
        elif isinstance(action, Cancel):
            self._cancel(action.id)
        elif isinstance(action, Transfer):
            self._effects.transfer = asyncio.create_task(self._transfer(action))
        elif isinstance(action, Redirect):
            if self._answered:
                # The engine redirects only before answering; after it, a REFER is the way to move the call.
                self.log.warning("redirect after answer: transferring instead", target=action.target)
                await self._perform(
                    Transfer(
                        action.id, action.target, Handoff(self.channel_id, step=self._step), action.headers
                    )
                )
            else:
                self._redirect(action)
        elif isinstance(action, Hangup):
            self._cause = self._cause or action.cause
            if self._answered:
                await self._hangup()
            else:
                self._reject(480, self._cause)

    # ---- prompts

    def _start_prompt(self, action: Play | Say) -> None:
        for task in self._effects.prompts.values():
            task.cancel()  # one prompt at a time; the cut one still reports its end
        self._effects.prompts[action.id] = asyncio.create_task(self._play(action))

    async def _audio_of(self, action: Play | Say) -> bytes:
        if isinstance(action, Play):
            return await self._prompts.get(action.path)
        if self._speech is None:
            raise RuntimeError("no text-to-speech configured for say")
        return await self._speech.get(action.text, action.language)

    async def _play(self, action: Play | Say) -> None:
        completed = False
        what = action.path.name if isinstance(action, Play) else f"say ({action.language})"
        try:
            assert self._rtp is not None
            pcm = await self._audio_of(action)
            completed = await self._rtp.play(pcm)
            self.log.debug("prompt done", prompt=what, completed=completed)
            if self._rtp.send_errors and not self._send_error_logged:
                # Once per call: the network ate the prompt; the flow goes on rather than stall.
                self._send_error_logged = True
                self.log.warning(
                    "RTP send failing", errors=self._rtp.send_errors, error=self._rtp.last_send_error
                )
        except asyncio.CancelledError:
            if self._rtp is not None:
                self._rtp.stop_playback()
            raise
        except Exception as e:  # a missing or broken prompt must not leave the caller in silence forever
            self.log.error("prompt failed", prompt=what, error=str(e))
        finally:
            self._effects.prompts.pop(action.id, None)
            self._post(PromptFinished(action.id, completed))

    # ---- recognition

    def _stream(self, vendor: str) -> RecognizerStream | None:
        stream = self._streams.get(vendor)
        if stream is None:
            stream = self._recognizers(vendor, self._on_asr_event)
            if stream is not None:
                self._streams[vendor] = stream
        return stream

    def _start_recognition(self, action: Listen) -> None:
        self._stop_recognition()
        candidates = [Candidate(action.vendor, self._in_call_codec(action.request))]
        candidates += [Candidate(v, self._in_call_codec(r)) for v, r in action.secondaries]
        turn = TurnRecognition(candidates, self._stream, on_failover=self._on_failover)
        request = action.request
        self.log.info(
            "listening", vendor=action.vendor, language=request.language, audio=request.audio_format.value
        )
        if self._rtp is not None:
            self._rtp.passthrough = action.request.audio_format is not AudioFormat.PCM16
            self._rtp.audio_frame_ms = turn.frame_ms  # audio handed over (and decoded) once per vendor frame
        self._effects.recognition = _Recognition(action.id, turn)
        if not turn.start():  # its audio is taken from now on; the streams own their tasks
            self._effects.recognition = None
            reason = f"no URL configured for {', '.join(c.vendor for c in candidates)}"
            self._post(NotRecognized(action.id, ResultStatus.ERROR, reason))
            return
        self._latency.started(request.id, action.vendor, time.monotonic())

    def _in_call_codec(self, request: RecognitionRequest) -> RecognitionRequest:
        """A pass-through request in the call's G.711 as it is now: the engine started before the answer,
        and a late-offer caller's ACK (or a re-INVITE) may have chosen the other law since."""
        if (
            request.audio_format in (AudioFormat.PCMU, AudioFormat.PCMA)
            and request.audio_format is not self._g711
        ):
            return dataclasses.replace(request, audio_format=self._g711)
        return request

    def _stop_recognition(self) -> None:
        recognition = self._effects.recognition
        if recognition is not None:
            self._effects.recognition = None
            recognition.turn.cancel()

    def _cancel(self, action_id: int) -> None:
        task = self._effects.prompts.get(action_id)
        if task is not None and self._rtp is not None:
            self._rtp.stop_playback()  # the play task ends at once and reports PromptFinished
        webhook = self._effects.webhooks.get(action_id)
        if webhook is not None:
            webhook.cancel()  # the flow moved on: its reply would be stale by id anyway
        recognition = self._effects.recognition
        if recognition is not None and recognition.id == action_id:
            self._stop_recognition()

    def _on_asr_event(self, event: AsrEvent) -> None:
        """Recognizer events, as engine events that echo the recognition id."""
        self._latency.observe(event, time.monotonic())
        if isinstance(event, StartOfSpeech):
            self._post(SpeechStarted(event.recognition))
        elif isinstance(event, EndOfSpeech):
            self._post(SpeechEnded(event.recognition))
        elif isinstance(event, Partial):
            # Partials come when their text changes (not per packet); only the current turn's may route.
            recognition = self._effects.recognition
            if recognition is not None and recognition.id == event.recognition:
                self._post(PartialResult(event.recognition, event.text, event.confidence))
        elif isinstance(event, Final):
            recognition = self._effects.recognition
            if recognition is not None and recognition.id == event.recognition:
                if recognition.turn.take(event):
                    return  # the turn goes on with the next vendor, the caller's audio replayed
                self._effects.recognition = None
            if event.status is ResultStatus.RECOGNIZED:
                shown = self.record.shown(self._step, event.text)
                self.log.info("recognized", text=shown, confidence=event.confidence)
                self._post(
                    Recognized(
                        event.recognition,
                        event.text,
                        event.confidence,
                        event.alternatives,
                        event.classification,
                    )
                )
            else:
                reason = str(event.error) if event.error else ""
                if event.status is ResultStatus.ERROR:
                    self.log.warning("recognizer failed", reason=reason)
                self._post(NotRecognized(event.recognition, event.status, reason, event.classification))

    # ---- media callbacks (called from the RTP datagram handler: never block)

    def _on_audio(self, pcm: bytes) -> None:
        recognition = self._effects.recognition
        if recognition is not None:
            recognition.turn.audio(pcm)

    def _on_failover(self, source: str, target: str | None, kind: str) -> None:
        self.log.warning("recognizer failover", source=source, target=target or "none", kind=kind)
        self.record.failovers.append(f"{self._step}:{source}->{target or 'none'}:{kind}")
        recognition = self._effects.recognition
        if target is not None and recognition is not None:
            # The turn goes on under the same id: timed and counted for the vendor that answers it.
            self._latency.started(recognition.id, target, time.monotonic())

    def _on_dtmf(self, digit: str) -> None:
        self.log.info("dtmf", digit=self.record.shown_digit(self._step, digit))
        self._post(Digit(digit))

    def _on_rtp_timeout(self) -> None:
        self.log.warning("no RTP from caller", timeout=self._settings.rtp_timeout)
        # Before the ACK (rtp_timeout can be shorter than the 64*T1 ACK wait) the call was never set up.
        self._cause = self._cause or ("rtp-timeout" if self._acked.is_set() else "no-ack")
        self._hangup_now()

    # ---- SIP events, delivered by the server

    def on_sip_event(self, event: SipEvent) -> None:
        """A SIP event of this call's dialog."""
        if isinstance(event, CallEstablished):
            # Answered means the caller ACKed our 2xx: a 2xx that never got its ACK ends "no-ack", unanswered.
            self.record.answer = self.record.answer or utc_now()
            self._acked.set()
            self._wake()
        elif isinstance(event, CallCancelled):
            self.on_ended("cancelled")
        elif isinstance(event, CallEnded):
            self.on_ended(event.cause)
        elif isinstance(event, ReferStatus):
            self.on_refer_status(event.status, event.final)
        elif isinstance(event, InfoDtmf):
            self._on_dtmf(event.digit)
        elif isinstance(event, MediaAnswered):
            self._media_changed(event.media)  # the answer to our offer of a late-offer INVITE, in the ACK
        elif isinstance(event, ReInvite):
            self.on_reinvite(event)

    def on_refer_status(self, status: int, final: bool) -> None:
        self.log.info("transfer progress", status=status, final=final)
        self.record.transfer_status = status
        if final and self._refer_result is not None and not self._refer_result.done():
            self._refer_result.set_result(status)

    def on_reinvite(self, event: ReInvite) -> None:
        """The UA core has answered the re-INVITE (RFC 3264); follow what it negotiated."""
        if event.media is None:
            return  # a session refresh without SDP, or one whose ACK brought no answer: nothing changed
        self._media_changed(event.media)
        if event.held != self._held:
            self._held = event.held
            self.log.info("on hold" if event.held else "off hold")
            if self._rtp is not None:
                self._rtp.keepalive = not event.held  # recvonly / inactive: we send nothing
            self._post(Held() if event.held else Resumed())

    def _use_codec(self, media: Negotiated) -> None:
        self.record.codec = media.encoding
        self._g711 = AudioFormat.PCMA if media.payload_type == 8 else AudioFormat.PCMU

    def _media_changed(self, media: Negotiated) -> None:
        """A new answer or offer: the caller's address (unless it is a c=0.0.0.0 hold) and codec."""
        self._use_codec(media)
        if self._rtp is None:
            return
        if media.remote_host != "0.0.0.0" and media.remote_port:
            self._rtp.update_remote(media.remote_host, media.remote_port)
            self._rtp.keepalive = not self._held
        if (
            media.payload_type != self._rtp.payload_type
            or media.dtmf_payload_type != self._rtp.dtmf_payload_type
            or media.comfort_noise_payload_type != self._rtp.comfort_noise_payload_type
        ):
            self._rtp.set_codec(media.payload_type, media.dtmf_payload_type, media.comfort_noise_payload_type)

    def end(self, cause: str) -> None:
        """End the call from outside (drain deadline, a failed handler): BYE or reject, then cleanup."""
        self._cause = self._cause or cause
        if self._task is not None and not self._task.done():
            self._stop()  # _run hangs up and cleans up
        else:
            self._hangup_now()

    def on_ended(self, cause: str) -> None:
        self._cause = self._cause or cause
        self._set_ended()
        if cause != "local-bye" and self._task is not None and not self._task.done():
            # Remote BYE or cancel: stop whatever the call is doing; _run's finally cleans up.
            self._stop()

    def _stop(self) -> None:
        assert self._task is not None
        self._stopping = True
        self._task.cancel()

    # ---- SIP actions

    async def _transfer(self, action: Transfer) -> None:
        self._stop_recognition()
        self.record.transfer_target = action.target
        self._refer_result = asyncio.get_running_loop().create_future()
        own = context_headers(action.headers)
        headers = [*transfer_headers(action.handoff), *own]
        self.log.info("transfer", target=action.target, emotion=emotion_value(action.handoff))
        # The dialplan's headers are context for the agent: embedded in Refer-To like the short handoff ones,
        # so the transferee copies them into its INVITE, and on the REFER itself.
        embed = {*URI_HEADERS, *(name for name, _ in own)}
        self._sip.refer(self.call_id, refer_target(action.target, headers, embed), headers)
        try:
            status = await asyncio.wait_for(asyncio.shield(self._refer_result), self._settings.refer_timeout)
        except TimeoutError:
            status = 408
        self.record.transfer_status = status
        self._post(TransferEnded(action.id, status))

    def _redirect(self, action: Redirect) -> None:
        """302 to the target before answering (RFC 3261 §21.3.3); the caller's side places the new call."""
        own = context_headers(action.headers)
        handoff = [(n, v) for n, v in transfer_headers(Handoff(self.channel_id)) if n in URI_HEADERS]
        headers = [*handoff, *own]
        contact = refer_target(action.target, headers, {*URI_HEADERS, *(name for name, _ in own)})
        self.record.transfer_target = action.target
        self._cause = "redirected"
        self.log.info("redirect", target=action.target)
        self._sip.redirect(self.call_id, contact, headers)
        self._set_ended()

    async def _webhook(self, action: Webhook) -> None:
        host = url_host(action.url)
        outcome = WebhookOutcome(0, reason="webhooks are not configured")
        try:
            if self._webhooks is not None:
                outcome = await self._webhooks.post(action.url, action.body, action.timeout)
        except Exception as e:  # a bug in the client must still answer the flow
            self.log.exception("webhook failed", host=host)
            outcome = WebhookOutcome(0, reason=f"internal error: {type(e).__name__}")
        finally:
            self._effects.webhooks.pop(action.id, None)
        # Host and status only: the body may carry card digits, the URL credentials.
        self.log.info("webhook", host=host, status=outcome.status, reason=outcome.reason or None)
        self._post(WebhookReplied(action.id, outcome.status, outcome.reply, outcome.reason))

    async def _hangup(self) -> None:
        self._hangup_now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), self._settings.bye_timeout)

    def _hangup_now(self) -> None:
        if not self._ended.is_set():
            self._sip.hangup(self.call_id)

    def _reject(self, status: int, cause: str, warning: str | None = None, warn_code: int = 399) -> None:
        self._cause = cause
        self._sip.reject(self.call_id, status, warning=warning, warn_code=warn_code)
        self._set_ended()

    async def _cleanup(self) -> None:
        # Each part on its own: one that fails must not keep the call in the registry or lose its CDR.
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop recognition", self._stop_recognition),
            ("stop tasks", self._cancel_tasks),
            ("close recognizers", self._close_streams),
            ("close media", self._close_media),
        ]
        for name, step in steps:
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except BaseException as exc:
                self.log.error("cleanup step failed", step=name, error=repr(exc))
        try:
            self.record.end = utc_now()
            self.record.hangup_cause = self._cause or "normal"
            self._cdr.write(self.record)
            metrics.call_ended(self.record, self._rtp.stats if self._rtp is not None else None)
            self.log.info("call ended", cause=self.record.hangup_cause, route=self.record.route)
        except Exception as exc:
            self.log.error("CDR not written", error=repr(exc))
        finally:
            self._on_done(self)

    async def _cancel_tasks(self) -> None:
        tasks = [*self._effects.prompts.values(), *self._effects.webhooks.values()]
        if self._effects.transfer is not None:
            tasks.append(self._effects.transfer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_streams(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(stream.close() for stream in streams), return_exceptions=True)

    async def _close_media(self) -> None:
        try:
            if self._rtp is not None:
                await self._rtp.close()
        finally:
            if self._port is not None:
                self._ports.release(self._port)
                self._port = None
