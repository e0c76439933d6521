"""The bridge process: SIP transport, the registry of live calls, admission (trunks, auth, limits), drain,
dialplan reload."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml

from ivr import metrics
from ivr.asr.base import AsrEvent
from ivr.asr.breaker import CircuitBreaker
from ivr.asr.registry import make_codec
from ivr.asr.stream import RecognizerStream, websocket_connector
from ivr.call import Call, CallSettings, EngineFactory, PromptCache, dialplan_engine
from ivr.cdrstore import open_store
from ivr.config import Settings, VendorEndpoint, stream_limits, tls_listener, vendor_endpoint
from ivr.dialplan.loader import DialplanError, load_dialplan
from ivr.dialplan.schema import Dialplan
from ivr.media.session import PortAllocator
from ivr.overload import LoopLag
from ivr.sip.admission import Admission, Limits, Refusal, Trunk
from ivr.sip.digest import Credentials, DigestAuthenticator
from ivr.sip.events import IncomingCall, Registered, SipEvent
from ivr.sip.message import Request
from ivr.sip.registrar import Registrar, RegistrarLimits
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent
from ivr.tts import EspeakSynthesizer, SpeechCache
from ivr.webhook import WebhookClient

log = structlog.get_logger()

DEFAULT_TRUNK = "default"
LAG_PROBE_INTERVAL = 0.05  # seconds between the overload probe's timers (ivr.overload)
BYE_WAIT = 10.0  # after the drain deadline, how long the BYEs (retransmitted per §17.1.2) may take


ReloadCheck = Callable[[Dialplan], str | None]  # what keeps a new dialplan from being served, or None


class ConfigurationError(ValueError):
    """Settings that cannot be served safely (a trunk with a username but no password)."""


def _password_variable(name: str) -> str:
    return f"IVR_TRUNK_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_PASSWORD"


def load_trunks(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[Trunk]:
    """The trunks, named ones first, then "default" from `trunk_allow`. A trunk with a username needs its
    password from the environment (`IVR_TRUNK_<NAME>_PASSWORD`) or else `secrets_file` (read here, at
    start-up); a missing one is an error, not an open trunk."""
    secrets: dict[str, str] = {}
    if settings.secrets_file is not None:
        loaded = yaml.safe_load(settings.secrets_file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"{settings.secrets_file}: must map trunk names to passwords")
        secrets = {str(k): str(v) for k, v in loaded.items()}
    specs = [(t.name, t.allow, t.username) for t in settings.trunks]
    specs.append((DEFAULT_TRUNK, settings.trunk_allow, settings.trunk_username))
    trunks = []
    for name, allow, username in specs:
        credentials = None
        if username is not None:
            password = environ.get(_password_variable(name), secrets.get(name))
            if not password:
                raise ConfigurationError(f"trunk {name}: username set but no {_password_variable(name)}")
            credentials = Credentials(username, password)
        trunks.append(Trunk.from_cidrs(name, allow, credentials))
    return trunks


def _count_refusal(request: Request, refusal: Refusal) -> None:
    if request.method == "INVITE":
        metrics.admission_refused(refusal.status, refusal.cause)


@dataclass(frozen=True)
class DrainReport:
    """How a drain went: calls that ended by themselves before the deadline, and those we hung up."""

    finished: int
    hung_up: int
    seconds: float


class Bridge:
    """The bridge process: one SIP user agent, the live calls, admission settings, drain and close."""

    def __init__(
        self,
        settings: Settings,
        dialplan: Dialplan,
        dialplan_path: Path,
        reload_check: ReloadCheck = lambda dialplan: None,
        engine: EngineFactory = dialplan_engine,  # the dialplan engine of each call (tests script their own)
    ) -> None:
        self.settings = settings
        self.dialplan = dialplan
        self.dialplan_path = dialplan_path
        self._reload_check = reload_check
        self._engine = engine
        self._reloading: asyncio.Task[bool] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lag = LoopLag(settings.overload_lag) if settings.overload_lag > 0 else None
        self._probe_handle: asyncio.TimerHandle | None = None
        self.calls: dict[str, Call] = {}
        self._listening = False  # the SIP socket is bound
        metrics.track_active_calls(lambda: len(self.calls))
        self._idle = asyncio.Event()
        self._idle.set()
        self._ports = PortAllocator(settings.rtp_port_low, settings.rtp_port_high)
        self._prompts = PromptCache()
        self._speech = SpeechCache(
            EspeakSynthesizer(settings.tts_speed), settings.tts_cache_dir, settings.tts_memory_bytes
        )
        self._webhooks = WebhookClient(
            max_reply_bytes=settings.webhook_max_reply_bytes, user_agent=settings.user_agent or "ivr"
        )
        # At start-up (blocking is fine here): migrate the CDR schema and mark the calls a crash of this node
        # left open as interrupted. `instance` tells this run's rows from an earlier run's.
        store = open_store(settings.cdr_store_url, settings.node, uuid.uuid4().hex)
        self._cdr = store.sink
        if store.interrupted:
            log.warning("calls interrupted by a crash", node=settings.node, channel_ids=store.interrupted)
        self._endpoints: dict[str, VendorEndpoint | None] = {}
        self._breakers: dict[str, CircuitBreaker] = {}  # per endpoint URL, shared by every call
        self._call_settings = CallSettings(
            rtp_host=settings.rtp_host,
            sdp_host=settings.contact_host,
            rtp_timeout=settings.rtp_timeout,
            refer_timeout=settings.refer_timeout,
            ring_time=settings.ring_time,
            rtp_nat=settings.rtp_nat,
            rtp_comfort_noise=settings.rtp_comfort_noise,
            rtp_sparse_silence=settings.rtp_sparse_silence,
            rtp_batch_receive=settings.rtp_batch_receive,
        )
        limits = Limits(
            max_calls=settings.max_calls,
            max_unacked_per_source=settings.max_unacked_per_source,
            call_rate=settings.call_rate_per_source,
            call_burst=settings.call_burst_per_source,
            retry_after=settings.busy_retry_after,
        )
        registrar = RegistrarLimits(
            max_aors=settings.max_aors,
            max_bindings_per_aor=settings.max_bindings_per_aor,
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            default_expires=min(settings.max_expires, RegistrarLimits.default_expires),
        )
        admission = Admission(load_trunks(settings), limits)
        ua = UserAgent(
            host=settings.contact_host,
            port=settings.sip_port,
            registrar_allow=lambda peer: True,  # the trunk allow-list and digest auth already ran
            user_agent=settings.user_agent or None,
            admission=admission,
            authenticator=DigestAuthenticator(
                settings.auth_realm,
                nonce_lifetime=settings.nonce_lifetime,
                algorithms=tuple(settings.auth_algorithms),
            ),
            registrar=Registrar(registrar),
            drain_retry_after=settings.drain_retry_after,
            on_refusal=_count_refusal,
        )
        self.sip = SipTransport(
            ua,
            self._on_sip_event,
            accept=admission.admits,  # the trunks' networks, parsed once
            limits=stream_limits(settings),
            tls=tls_listener(settings),
        )

    async def start(self) -> None:
        for error in await self._preload(self.dialplan):
            log.error("prompt unreadable", error=error)
        await self.sip.start(self.settings.sip_host, self.settings.sip_port)
        self._listening = True
        if self._lag is not None:
            due = asyncio.get_running_loop().time() + LAG_PROBE_INTERVAL
            self._probe_handle = asyncio.get_running_loop().call_at(due, self._probe_lag, due)
        if self.settings.dialplan_watch_interval > 0:
            self._watcher = asyncio.create_task(self._watch(self.settings.dialplan_watch_interval))
        log.info(
            "bridge listening",
            host=self.settings.sip_host,
            port=self.sip.port,
            dialplan=str(self.dialplan_path),
        )

    @property
    def port(self) -> int:
        return self.sip.port

    @property
    def ready(self) -> bool:
        """Takes new calls: SIP is bound, the bridge neither drains nor is overloaded (GET /readyz)."""
        return self._listening and not self.draining and not self.sip.ua.overloaded

    @property
    def draining(self) -> bool:
        """True once `drain` has begun: OPTIONS and new INVITEs are answered 503."""
        return self.sip.ua.draining

    @property
    def live_dialogs(self) -> int:
        """Dialogs the SIP core still holds (a call whose BYE awaits its answer counts)."""
        return self.sip.ua.admission.live_calls

    async def drain(
        self, timeout: float, bye_wait: float = BYE_WAIT, cause: str = "drain-timeout"
    ) -> DrainReport:
        """Answer OPTIONS and new INVITEs 503 (Retry-After), let live calls finish for up to `timeout`
        seconds, then end the rest with a BYE (hangup cause `cause`) and wait (at most `bye_wait`) for those
        transactions to end."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.sip.ua.draining = True
        before = len(self.calls)
        log.info("draining", live_calls=before, timeout=timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        left = list(self.calls.values())
        if left:
            log.warning("drain deadline, hanging up", live_calls=len(left))
        for call in left:
            call.end(cause)
        deadline = loop.time() + bye_wait
        while (self.calls or self.live_dialogs) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        report = DrainReport(before - len(left), len(left), loop.time() - started)
        log.info(
            "drained",
            finished=report.finished,
            hung_up=report.hung_up,
            seconds=round(report.seconds, 3),
            unfinished=len(self.calls) + self.live_dialogs,
        )
        return report

    def request_reload(self) -> None:
        """SIGHUP: reload the dialplan in the background (one reload at a time)."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self.reload())

    async def reload(self) -> bool:
        """Load the dialplan file again and serve it to new calls; calls in progress finish on the version
        they started with (each CDR names its `dialplan_version`). A file that does not pass the checks of
        `ivr check`, names a vendor with no URL, or cannot be served as it is (`reload_check`), is refused
        with its errors and the running version stays."""
        try:
            dialplan = await asyncio.to_thread(load_dialplan, self.dialplan_path)  # file I/O off the loop
        except DialplanError as exc:
            return self._refuse(str(exc).splitlines())
        if dialplan.version == self.dialplan.version:
            log.info("dialplan unchanged", version=dialplan.version)
            return True
        unconfigured = sorted(v for v in dialplan.vendors() if vendor_endpoint(self.settings, v) is None)
        problem = self._reload_check(dialplan) or (
            f"no URL configured for {', '.join(unconfigured)}" if unconfigured else None
        )
        if problem is not None:
            return self._refuse([f"{self.dialplan_path}: {problem}"])
        unreadable = await self._preload(dialplan)
        if unreadable:
            return self._refuse(unreadable)
        previous, self.dialplan = self.dialplan, dialplan
        metrics.dialplan_reloaded(True)
        log.info(
            "dialplan reloaded",
            version=dialplan.version,
            previous=previous.version,
            live_calls=len(self.calls),
        )
        return True

    async def _preload(self, dialplan: Dialplan) -> list[str]:
        """Read and convert the dialplan's prompts once, off the event loop, so no call waits on a file; the
        errors, one line each."""
        paths = [
            flow.prompt_path(p)
            for flow in dialplan.flows()
            for step in flow.steps.values()
            for _, p in step.prompts()
        ]
        return await self._prompts.preload(paths)

    def _refuse(self, problems: list[str]) -> bool:
        metrics.dialplan_reloaded(False)
        log.error("dialplan reload refused", problems=problems, version=self.dialplan.version)
        return False

    async def _watch(self, interval: float) -> None:
        """Reload when the file changes (its mtime and size, read off the loop)."""

        def stamp() -> tuple[int, int] | None:
            try:
                found = os.stat(self.dialplan_path)
            except OSError:
                return None  # being replaced: look again next time
            return found.st_mtime_ns, found.st_size

        last = await asyncio.to_thread(stamp)
        while True:
            await asyncio.sleep(interval)
            now = await asyncio.to_thread(stamp)
            if now is not None and now != last:
                last = now
                self.request_reload()

    def _probe_lag(self, due: float) -> None:
        """How late this timer runs is how long the loop's turns take: past the threshold, refuse calls."""
        assert self._lag is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._lag.sample(now - due):
            self.sip.ua.overloaded = self._lag.overloaded
            report = log.warning if self._lag.overloaded else log.info
            report(
                "overloaded: new calls get 503" if self._lag.overloaded else "no longer overloaded",
                loop_lag_ms=round(self._lag.lag * 1000, 1),
                loop_lag_peak_ms=round(self._lag.peak * 1000, 1),
                threshold_ms=round(self._lag.threshold * 1000, 1),
                live_calls=len(self.calls),
            )
        due = now + LAG_PROBE_INTERVAL
        self._probe_handle = loop.call_at(due, self._probe_lag, due)

    async def close(self) -> None:
        if self._probe_handle is not None:
            self._probe_handle.cancel()
        for task in (self._watcher, self._reloading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks = [t for call in list(self.calls.values()) if (t := call.start_task) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the BYEs of the cancelled calls leave before the sockets close.
        await asyncio.sleep(0.05)
        await self.sip.close()
        await self._webhooks.aclose()
        await self._cdr.aclose()

    def _recognizer(self, vendor: str, on_event: Callable[[AsrEvent], None]) -> RecognizerStream | None:
        if vendor not in self._endpoints:  # once per vendor, not once per call
            self._endpoints[vendor] = vendor_endpoint(self.settings, vendor)
        endpoint = self._endpoints[vendor]
        if endpoint is None:
            return None
        credentials = endpoint.credentials
        breaker = self._breakers.get(endpoint.url)
        if breaker is None:
            breaker = self._breakers[endpoint.url] = CircuitBreaker(
                self.settings.asr_breaker_failures, self.settings.asr_breaker_cooldown
            )
        return RecognizerStream(
            vendor,
            websocket_connector(endpoint.url, headers=endpoint.headers, ca_file=endpoint.ca_file),
            lambda request: make_codec(
                vendor, dict(request.options), channel_id=request.channel_id, **credentials
            ),
            on_event,
            breaker=breaker,
        )

    def _on_sip_event(self, event: SipEvent) -> None:
        if isinstance(event, IncomingCall):
            try:
                self._admit(event)
            except Exception:
                # One INVITE's failure ends that call, not the server (and never another call).
                log.exception("call not started", call_id=event.call_id)
                self.calls.pop(event.call_id, None)
                self.sip.reject(event.call_id, 500)
                self._set_idle()
            return
        if isinstance(event, Registered):
            log.info("registered", aor=event.aor, expires=event.expires, source=event.peer.host)
            return
        call = self.calls.get(event.call_id)
        if call is None:
            return
        try:
            call.on_sip_event(event)
        except Exception:
            call.log.exception("sip event handler failed", sip_event=type(event).__name__)
            call.end("internal-error")

    def _admit(self, event: IncomingCall) -> None:
        """Start the call: the UA core has already applied the trunk allow-list, auth, limits and drain."""
        previous = self.calls.get(event.call_id)
        if previous is not None and not previous.ended:
            return  # the UA core has answered it (486): a new dialog under a live call's Call-ID
        call = Call(
            invite=event.invite,
            sip=self.sip,
            dialplan=self.dialplan,
            dialplan_path=self.dialplan_path,
            settings=self._call_settings,
            ports=self._ports,
            prompts=self._prompts,
            cdr=self._cdr,
            recognizers=self._recognizer,
            on_done=self._call_done,
            speech=self._speech,
            webhooks=self._webhooks,
            engine=self._engine,
        )
        self.calls[call.call_id] = call
        self._idle.clear()
        call.log.info(
            "incoming call", caller=call.record.caller, callee=call.record.callee, source=event.peer.host
        )
        call.start()

    def _call_done(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:  # not a newer call that reuses the Call-ID
            del self.calls[call.call_id]
        self._set_idle()

    def _set_idle(self) -> None:
        if not self.calls:
            self._idle.set()
