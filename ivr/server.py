"""The bridge process: SIP transport, the registry of live calls, admission (allow-list, capacity), drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from ivr.asr.base import AsrEvent
from ivr.asr.registry import make_codec
from ivr.asr.stream import RecognizerStream, websocket_connector
from ivr.call import Call, CallSettings, PromptCache
from ivr.cdr import CdrWriter
from ivr.config import Settings, VendorEndpoint, vendor_endpoint
from ivr.dialplan.schema import Dialplan
from ivr.media.session import PortAllocator
from ivr.sip.events import IncomingCall, Registered, SipEvent
from ivr.sip.transport import SipTransport
from ivr.sip.useragent import UserAgent

log = structlog.get_logger()


class Bridge:
    def __init__(self, settings: Settings, dialplan: Dialplan, dialplan_path: Path) -> None:
        self.settings = settings
        self.dialplan = dialplan
        self.dialplan_path = dialplan_path
        self.calls: dict[str, Call] = {}
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._ports = PortAllocator(settings.rtp_port_low, settings.rtp_port_high)
        self._prompts = PromptCache()
        self._cdr = CdrWriter(settings.cdr_path)
        self._endpoints: dict[str, VendorEndpoint | None] = {}
        self._call_settings = CallSettings(
            rtp_host=settings.rtp_host,
            sdp_host=settings.contact_host,
            rtp_timeout=settings.rtp_timeout,
            refer_timeout=settings.refer_timeout,
            ring_time=settings.ring_time,
            rtp_nat=settings.rtp_nat,
        )
        ua = UserAgent(
            host=settings.contact_host,
            port=settings.sip_port,
            registrar_allow=lambda peer: settings.allows(peer.host),
            user_agent=settings.user_agent or None,
        )
        self.sip = SipTransport(ua, self._on_sip_event)

    async def start(self) -> None:
        # Prompts are read and converted once, here, off the event loop: no call waits on a file.
        paths = [
            self.dialplan.prompt_path(p) for step in self.dialplan.steps.values() for _, p in step.prompts()
        ]
        for error in await self._prompts.preload(paths):
            log.error("prompt unreadable", error=error)
        await self.sip.start(self.settings.sip_host, self.settings.sip_port)
        log.info(
            "bridge listening",
            host=self.settings.sip_host,
            port=self.sip.port,
            dialplan=str(self.dialplan_path),
        )

    @property
    def port(self) -> int:
        return self.sip.port

    async def drain(self, timeout: float) -> None:
        """Refuse new calls with 503 and wait for the live ones to finish."""
        self.draining = True
        log.info("draining", live_calls=len(self.calls))
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("drain timeout, hanging up", live_calls=len(self.calls))

    async def close(self) -> None:
        tasks = [t for call in list(self.calls.values()) if (t := call.start_task) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the BYEs of the cancelled calls leave before the sockets close.
        await asyncio.sleep(0.05)
        await self.sip.close()
        await self._cdr.aclose()

    def _recognizer(self, vendor: str, on_event: Callable[[AsrEvent], None]) -> RecognizerStream | None:
        if vendor not in self._endpoints:  # once per vendor, not once per call
            self._endpoints[vendor] = vendor_endpoint(self.settings, vendor)
        endpoint = self._endpoints[vendor]
        if endpoint is None:
            return None
        credentials = endpoint.credentials
        return RecognizerStream(
            vendor,
            websocket_connector(endpoint.url, headers=endpoint.headers),
            lambda request: make_codec(
                vendor, dict(request.options), channel_id=request.channel_id, **credentials
            ),
            on_event,
        )

    def _on_sip_event(self, event: SipEvent) -> None:
        if isinstance(event, IncomingCall):
            self._admit(event)
            return
        if isinstance(event, Registered):
            log.info("registered", aor=event.aor, expires=event.expires, source=event.peer.host)
            return
        call = self.calls.get(event.call_id)
        if call is not None:
            call.on_sip_event(event)

    def _admit(self, event: IncomingCall) -> None:
        if not self.settings.allows(event.peer.host):
            log.warning("call refused: source not in trunk allow-list", source=event.peer.host)
            self.sip.reject(event.call_id, 403)
            return
        if self.draining or len(self.calls) >= self.settings.max_calls:
            log.warning("call refused: at capacity or draining", live_calls=len(self.calls))
            self.sip.reject(event.call_id, 503)
            return
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
        if not self.calls:
            self._idle.set()
