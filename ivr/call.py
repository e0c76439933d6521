"""One call: the only module that joins sip + media + asr + dialplan (DESIGN.md, dependency rule 3).

The dialplan engine decides; this module carries its actions out on the call's RTP session, recognizer
streams and SIP dialog, and feeds back what happened as engine events. Every task the call starts is cancelled
when the call ends, whichever side hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ivr.asr.base import (
    PartialResult,
    RecognitionError,
    RecognitionResult,
    RecognizerError,
    SessionClosed,
    StartOfSpeech,
)
from ivr.asr.registry import make_codec
from ivr.asr.stream import RecognizerStream
from ivr.cdr import CallRecord, CdrWriter, Transcript, utc_now
from ivr.dialplan.engine import (
    Action,
    DialplanEngine,
    Digit,
    Event,
    Hangup,
    Heard,
    Listen,
    NoInput,
    Play,
    PromptFinished,
    RecognizerFailed,
    Routed,
    Transfer,
)
from ivr.dialplan.schema import Dialplan
from ivr.media.prompt import load_prompt
from ivr.media.session import PortAllocator, RtpSession
from ivr.sip.message import Request, parse_name_addr
from ivr.sip.sdp import Negotiated, SdpError, SdpNotAcceptable, build_answer, negotiate, parse_sdp
from ivr.sip.transport import SipTransport


def _address_of(header: str | None) -> str:
    """The URI of a From/To value for the CDR, or the raw value when it does not parse."""
    try:
        return str(parse_name_addr(header or "").uri)
    except ValueError:
        return header or ""


def new_channel_id() -> str:
    """32 hex characters, shared by every recognizer session of the call (CPQD `Channel-Identifier`)."""
    return secrets.token_hex(16)


@dataclass
class CallSettings:
    rtp_host: str
    sdp_host: str
    rtp_timeout: float
    refer_timeout: float
    asr_urls: dict[str, str]
    ring_time: float = 0.0
    ack_timeout: float = 32.0
    bye_timeout: float = 5.0


class PromptCache:
    """Prompts are decoded and resampled once per process, not once per call."""

    def __init__(self) -> None:
        self._pcm: dict[Path, bytes] = {}

    def get(self, path: Path) -> bytes:
        pcm = self._pcm.get(path)
        if pcm is None:
            pcm = self._pcm[path] = load_prompt(path)
        return pcm


@dataclass
class _Listening:
    action: Listen
    stream: RecognizerStream | None = None
    speech_started: bool = False


class Call:
    def __init__(
        self,
        *,
        invite: Request,
        sip: SipTransport,
        dialplan: Dialplan,
        dialplan_path: Path,
        settings: CallSettings,
        ports: PortAllocator,
        prompts: PromptCache,
        cdr: CdrWriter,
        on_done: Callable[[Call], None] = lambda call: None,
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
        self._on_done = on_done
        self.log = structlog.get_logger().bind(call_id=self.call_id, channel_id=self.channel_id)
        self.record = CallRecord(
            call_id=self.call_id,
            channel_id=self.channel_id,
            caller=_address_of(invite.headers.get("From")),
            callee=_address_of(invite.headers.get("To")),
            dialplan=str(dialplan_path),
        )
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._acked = asyncio.Event()
        self._ended = asyncio.Event()
        self._refer_result: asyncio.Future[int] | None = None
        self._rtp: RtpSession | None = None
        self._port: int | None = None
        self._play_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening: _Listening | None = None
        self._step = ""
        self._cause: str | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle

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
            raise
        except Exception:
            self.log.exception("call failed")
            self._cause = self._cause or "internal-error"
            self._hangup_now()
        finally:
            await self._cleanup()

    async def _answer_and_run(self) -> None:
        try:
            offer = parse_sdp(self.invite.body)
            media = negotiate(offer)
        except SdpNotAcceptable as e:
            self.log.info("no acceptable codec", reason=str(e))
            self._reject(488, "rejected-488")
            return
        except SdpError as e:
            self.log.info("bad SDP offer", reason=str(e))
            self._reject(488, "rejected-488")
            return
        self.record.codec = media.encoding
        if self._settings.ring_time > 0:
            self._sip.ring(self.call_id)
            await asyncio.sleep(self._settings.ring_time)  # a CANCEL meanwhile cancels this task
        self._rtp = await self._open_media(media)
        answer = build_answer(
            media,
            local_host=self._settings.sdp_host,
            local_port=self._rtp.local_port,
            session_id=int(time.time()),
        )
        self._sip.answer(self.call_id, answer)
        self.record.answer = utc_now()
        self.log.info("answered", codec=media.encoding, rtp_port=self._port, remote=media.remote_host)
        # Media before the ACK would be lost on some PBXs; the UA core ends the call itself when no ACK comes.
        await self._wait_either(self._acked, self._settings.ack_timeout)
        if self._ended.is_set():
            return
        await self._drive(DialplanEngine(self._dialplan))

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
                on_audio=self._on_audio,
                on_dtmf=self._on_dtmf,
                on_timeout=self._on_rtp_timeout,
                inactivity_timeout=self._settings.rtp_timeout,
            )
            try:
                await rtp.start()
            except OSError:
                self._ports.release(port)
                continue
            self._port = port
            return rtp
        raise OSError("no free RTP port")

    async def _drive(self, engine: DialplanEngine) -> None:
        actions = engine.start()
        while True:
            for action in actions:
                await self._perform(action)
                if self._ended.is_set():
                    return
            if engine.finished or self._ended.is_set():
                return
            getter = asyncio.ensure_future(self._events.get())
            ended = asyncio.ensure_future(self._ended.wait())
            done, _ = await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                ended.cancel()
                return
            ended.cancel()
            event = getter.result()
            if isinstance(event, Heard):
                self.record.transcripts.append(Transcript(self._step, event.text, event.confidence))
            elif isinstance(event, Digit):
                self.record.digits.append(event.digit)
            actions = engine.handle(event)

    async def _perform(self, action: Action) -> None:
        if isinstance(action, Routed):
            self._step = action.step
            self.record.route.append(f"{action.step}<{action.via}")
            self.log.info("routed", step=action.step, via=action.via)
            self._stop_listening()
            self._stop_playback()
        elif isinstance(action, Play):
            self._stop_playback()
            self._play_task = asyncio.create_task(self._play(action))
        elif isinstance(action, Listen):
            self._stop_listening()
            self._listening = _Listening(action)
            self._listen_task = asyncio.create_task(self._listen(self._listening))
        elif isinstance(action, Transfer):
            await self._transfer(action.target)
        elif isinstance(action, Hangup):
            self._cause = self._cause or action.cause
            await self._hangup()

    # ---- prompts

    async def _play(self, action: Play) -> None:
        assert self._rtp is not None
        try:
            pcm = self._prompts.get(action.path)
        except Exception as e:  # a missing or broken prompt must not leave the caller in silence forever
            self.log.error("prompt unreadable", path=str(action.path), error=str(e))
        else:
            completed = await self._rtp.play(pcm)
            self.log.debug("prompt done", path=action.path.name, completed=completed)
        self._events.put_nowait(PromptFinished())

    def _stop_playback(self) -> None:
        if self._play_task is not None and not self._play_task.done() and self._rtp is not None:
            self._rtp.stop_playback()

    def _playing(self) -> bool:
        return self._play_task is not None and not self._play_task.done()

    # ---- listening

    async def _listen(self, listening: _Listening) -> None:
        result = await self._recognize_with(listening)
        if isinstance(result, RecognizerFailed):
            # Fallback when the vendor is down or fails mid-call: the prompt plays to the end and the keypad
            # still works; only when the no-input timer runs out does the dialplan take its no_input route.
            await self._wait_no_input(listening.action)
        self._events.put_nowait(result)

    async def _recognize_with(self, listening: _Listening) -> Event:
        action = listening.action
        url = self._settings.asr_urls.get(action.vendor)
        if url is None:
            self.log.error("no URL configured for recognizer", vendor=action.vendor)
            return RecognizerFailed(f"no URL for {action.vendor}")
        stream = RecognizerStream(url, make_codec(action.vendor, language=action.language))
        # Audio that arrives while the session is being set up is buffered by the driver, not lost.
        listening.stream = stream
        try:
            await stream.open()
            return await self._recognize(listening, stream)
        except RecognizerError as e:
            self.log.warning("recognizer unavailable", vendor=action.vendor, error=str(e))
            return RecognizerFailed(str(e))
        finally:
            listening.stream = None
            await stream.close()

    async def _wait_no_input(self, action: Listen) -> None:
        if self._play_task is not None:
            await asyncio.wait({self._play_task})
        await asyncio.sleep(action.timeout)

    async def _recognize(self, listening: _Listening, stream: RecognizerStream) -> Event:
        """Wait for one final result. The no-input timer starts when the prompt ends, not while it plays."""
        action = listening.action
        loop = asyncio.get_running_loop()
        no_input_at: float | None = None
        speech_deadline: float | None = None
        while True:
            now = loop.time()
            started = listening.speech_started
            if no_input_at is None and not self._playing():
                no_input_at = now + action.timeout
            if started and speech_deadline is None and action.max_speech:
                speech_deadline = now + action.max_speech
            if not started and no_input_at is not None and now >= no_input_at:
                return NoInput()
            if speech_deadline is not None and now >= speech_deadline:
                return NoInput()
            if no_input_at is None:
                wait = 0.1  # prompt still playing: look again soon so the no-input timer starts on time
            elif started:
                wait = speech_deadline - now if speech_deadline is not None else 1.0
            else:
                wait = no_input_at - now
            event = await stream.next_event(timeout=wait)
            if event is None:
                continue
            if isinstance(event, StartOfSpeech) or (isinstance(event, PartialResult) and event.text):
                if not started:
                    listening.speech_started = True
                    if action.barge_in:
                        self._stop_playback()
            elif isinstance(event, RecognitionResult):
                if event.text.strip():
                    self.log.info("recognized", text=event.text, confidence=event.confidence)
                    return Heard(event.text, event.confidence)
                # An empty final (noise) is not an answer: keep listening under the same no-input timer.
                listening.speech_started = False
                speech_deadline = None
            elif isinstance(event, RecognitionError):
                self.log.warning("recognizer error", reason=event.reason)
                return RecognizerFailed(event.reason)
            elif isinstance(event, SessionClosed):
                return RecognizerFailed("recognizer closed the session")

    def _stop_listening(self) -> None:
        if self._listen_task is not None and not self._listen_task.done():
            self._listen_task.cancel()
        self._listen_task = None
        self._listening = None

    # ---- media callbacks (called from the RTP datagram handler: never block)

    def _on_audio(self, pcm: bytes) -> None:
        listening = self._listening
        if listening is not None and listening.stream is not None:
            try:
                listening.stream.send_audio(pcm)
            except RecognizerError as e:
                self.log.warning("recognizer backlog", error=str(e))

    def _on_dtmf(self, digit: str) -> None:
        self.log.info("dtmf", digit=digit)
        listening = self._listening
        if listening is not None and listening.action.barge_in:
            self._stop_playback()
        self._events.put_nowait(Digit(digit))

    def _on_rtp_timeout(self) -> None:
        self.log.warning("no RTP from caller", timeout=self._settings.rtp_timeout)
        self._cause = self._cause or "rtp-timeout"
        self._hangup_now()

    # ---- SIP events, delivered by the server

    def on_established(self) -> None:
        self._acked.set()

    def on_info_dtmf(self, digit: str) -> None:
        self._on_dtmf(digit)

    def on_refer_status(self, status: int, final: bool) -> None:
        self.log.info("transfer progress", status=status, final=final)
        self.record.transfer_status = status
        if final and self._refer_result is not None and not self._refer_result.done():
            self._refer_result.set_result(status)

    def on_reinvite(self, invite: Request) -> None:
        try:
            media = negotiate(parse_sdp(invite.body))
        except SdpError:
            return
        if self._rtp is not None:
            self._rtp.update_remote(media.remote_host, media.remote_port)

    def on_ended(self, cause: str) -> None:
        self._cause = self._cause or cause
        self._ended.set()
        if cause != "local-bye" and self._task is not None and not self._task.done():
            # Remote BYE or cancel: stop whatever the call is doing; _run's finally cleans up.
            self._task.cancel()

    # ---- SIP actions

    async def _transfer(self, target: str) -> None:
        self._stop_listening()
        self.record.transfer_target = target
        self._refer_result = asyncio.get_running_loop().create_future()
        self.log.info("transfer", target=target)
        self._sip.refer(self.call_id, target)
        try:
            status = await asyncio.wait_for(asyncio.shield(self._refer_result), self._settings.refer_timeout)
        except TimeoutError:
            status = 408
        self.record.transfer_status = status
        self._cause = "transferred" if 200 <= status < 300 else f"transfer-failed-{status}"
        await self._hangup()

    async def _hangup(self) -> None:
        self._hangup_now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), self._settings.bye_timeout)

    def _hangup_now(self) -> None:
        if not self._ended.is_set():
            self._sip.hangup(self.call_id)

    def _reject(self, status: int, cause: str) -> None:
        self._cause = cause
        self._sip.reject(self.call_id, status)
        self._ended.set()

    async def _wait_either(self, event: asyncio.Event, timeout: float) -> None:
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._ended.wait())}
        _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()

    async def _cleanup(self) -> None:
        self._stop_listening()
        self._stop_playback()
        for task in (self._play_task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._rtp is not None:
            await self._rtp.close()
        if self._port is not None:
            self._ports.release(self._port)
        self.record.end = utc_now()
        self.record.hangup_cause = self._cause or "normal"
        self._cdr.write(self.record)
        self.log.info("call ended", cause=self.record.hangup_cause, route=self.record.route)
        self._on_done(self)
