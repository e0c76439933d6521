"""The call's effects end to end: a real caller (sipp) against the real `Bridge` (SIP over UDP on loopback,
admission, the shared TTS cache and webhook client, the CDR store), real espeak-ng and a real HTTP server.

The dialplan language that emits Answer, Say, Redirect and Webhook is being built in parallel, so the bridge
runs `FlowEngine` here through its `engine` hook: a small engine that reacts to real outcomes (the webhook's
reply picks the redirect target). Once the language lands these flows can be written as YAML instead.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from ivr.asr.base import AudioFormat
from ivr.config import Settings
from ivr.dialplan import load_dialplan
from ivr.dialplan.engine import (
    Action,
    Answer,
    Event,
    Hangup,
    PromptFinished,
    Redirect,
    Routed,
    Say,
    Webhook,
    WebhookReplied,
)
from ivr.dialplan.schema import Dialplan
from ivr.server import Bridge
from tests.integration.harness import free_port, run_sipp, scenario_with
from tests.tools import require_tool
from tests.unit.test_call import FLOW, tone_wav
from tests.unit.test_webhook import HttpServer, server

__all__ = ["server"]  # fixture

Step = Callable[[Event | None], list[Action]]


class FlowEngine:
    """Runs `step(None)` at start and `step(event)` on each event until `step` returns a Hangup/Redirect."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.events: list[Event] = []
        self.finished = False
        self.next_deadline: float | None = None
        self.recognition: int | None = None

    def _after(self, actions: list[Action]) -> list[Action]:
        self.finished = any(isinstance(a, Hangup | Redirect) for a in actions)
        return actions

    def start(self, now: float) -> list[Action]:
        return self._after(self.step(None))

    def handle(self, event: Event, now: float) -> list[Action]:
        self.events.append(event)
        return self._after(self.step(event))

    def tick(self, now: float) -> list[Action]:
        return []


class Rig:
    def __init__(self, tmp: Path, dialplan: Dialplan, path: Path) -> None:
        self.tmp = tmp
        self.engines: list[FlowEngine] = []
        self.step: Step = lambda event: [Hangup(0, "no-flow")]
        port = free_port()
        low = 40000 + (port % 200) * 50
        self.settings = Settings(
            sip_host="127.0.0.1",
            sip_port=port,
            rtp_port_low=low,
            rtp_port_high=low + 48,
            asr_urls={},
            cdr_url=f"jsonl:///{tmp / 'cdr.jsonl'}",
            tts_cache_dir=tmp / "tts",
            dialplan=path,
            dialplan_watch_interval=0,
        )
        self.bridge = Bridge(self.settings, dialplan, path, engine=self.engine)

    def engine(
        self, dialplan: Dialplan, channel_id: str, g711: AudioFormat, variables: Mapping[str, str]
    ) -> FlowEngine:
        engine = FlowEngine(self.step)
        self.engines.append(engine)
        return engine

    async def sipp(self, name: str, **replacements: str) -> str:
        scenario = scenario_with(name, self.tmp, **replacements)
        result = await asyncio.to_thread(run_sipp, scenario, self.settings.sip_port, self.tmp, timeout=20)
        assert result.returncode == 0, result.output
        return (self.tmp / "sipp_messages.log").read_text(errors="replace")

    async def cdrs(self) -> list[dict[str, object]]:
        await self.bridge.close()
        text = (self.tmp / "cdr.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    require_tool("sipp")
    tone_wav(tmp_path / "menu.wav", 0.2)
    tone_wav(tmp_path / "bye.wav", 0.1)
    path = tmp_path / "call.yaml"
    path.write_text(FLOW, encoding="utf-8")
    running = Rig(tmp_path, load_dialplan(path), path)
    await running.bridge.start()
    yield running
    await running.bridge.close()


async def test_the_webhook_reply_picks_where_the_caller_is_redirected(rig: Rig, server: HttpServer) -> None:
    agent, account = "sip:agent7@192.0.2.7:5062", "A-123"

    def step(event: Event | None) -> list[Action]:
        if event is None:
            return [Routed(1, "lookup", "start"), Webhook(2, server.url("/ok"), {"agent": agent}, 5)]
        if isinstance(event, WebhookReplied) and event.reply is not None:
            got = event.reply["got"]
            assert isinstance(got, dict)
            return [Redirect(3, str(got["agent"]), (("X-Account", account),))]
        return [Hangup(4, "webhook-failed")]

    rig.step = step
    messages = await rig.sipp("redirect.xml", TARGET=re.escape(agent), ACCOUNT=account)
    # One 302 reached the caller: its ACK stopped the retransmissions (RFC 3261 §17.2.1).
    assert len(re.findall(r"^SIP/2.0 302 Moved Temporarily", messages, re.M)) == 1, messages
    assert not re.search(r"^SIP/2.0 200", messages, re.M)
    assert [json.loads(s.body) for s in server.seen] == [{"agent": agent}]
    assert server.seen[0].headers["user-agent"] == "ivr"
    [record] = await rig.cdrs()
    assert record["hangup_cause"] == "redirected" and record["transfer_target"] == agent
    assert record["answer"] is None and record["route"] == ["lookup<start"]


async def test_a_flow_that_hangs_up_before_answering_refuses_with_480(rig: Rig) -> None:
    rig.step = lambda event: [Routed(1, "closed", "start"), Hangup(2, "closed-hours")]
    messages = await rig.sipp("refused.xml")
    assert not re.search(r"^SIP/2.0 200", messages, re.M)
    [record] = await rig.cdrs()
    assert record["hangup_cause"] == "closed-hours" and record["answer"] is None


async def test_said_text_is_synthesized_once_for_two_calls(rig: Rig) -> None:
    require_tool("espeak-ng")
    text = "상담원을 연결합니다"

    def step(event: Event | None) -> list[Action]:
        if event is None:
            return [Answer(1), Say(2, text, "ko-KR", barge_in=False)]
        if isinstance(event, PromptFinished):
            return [Hangup(3, "normal")]
        return []

    rig.step = step
    mtimes = []
    for _ in range(2):
        await rig.sipp("wait_for_bye.xml", WAIT_BYE="15000")
        files = list((rig.tmp / "tts").rglob("*.wav"))
        assert len(files) == 1
        mtimes.append(files[0].stat().st_mtime_ns)
    assert mtimes[0] == mtimes[1]  # the second call's speech came from the cache, not espeak-ng
    assert [e.events for e in rig.engines] == [[PromptFinished(2, True)]] * 2
    records = await rig.cdrs()
    assert [r["hangup_cause"] for r in records] == ["normal", "normal"]
    assert all(r["answer"] is not None for r in records)
