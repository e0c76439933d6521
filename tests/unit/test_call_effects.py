"""The call's newer effects: answer on demand, 302 redirect and 480 before answer, say, webhooks, the
dialplan's transfer headers.

The same rig as test_call.py (our real UserAgent in memory, real RTP on loopback, real espeak-ng, a real
HTTP server on loopback). Most tests drive the call with `ScriptedEngine`, a stand-in for the dialplan
engine that emits a fixed list of actions: the engine is this unit's collaborator, and the dialplan
language that emits Answer, Say, Redirect and Webhook is built elsewhere. One test runs today's real engine,
which never emits Answer.
"""

from __future__ import annotations

import asyncio
import audioop
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from ivr.dialplan.engine import (
    Action,
    Answer,
    Event,
    Handoff,
    Hangup,
    Play,
    PromptFinished,
    Redirect,
    Routed,
    Say,
    Transfer,
    TransferEnded,
    Webhook,
    WebhookReplied,
)
from ivr.media.rtp import parse_rtp
from ivr.sip.message import Request, Response, make_response, serialize
from ivr.tts import EspeakSynthesizer, SpeechCache
from ivr.webhook import WebhookClient
from tests.tools import require_tool
from tests.unit.sip.helpers import request
from tests.unit.test_call import AGENT, Rig, ended, is_method, is_status, rig
from tests.unit.test_webhook import HttpServer, server

__all__ = ["rig", "server"]  # fixtures


class ScriptedEngine:
    """Emits `script[0]` at start, then the next batch after each outcome event; records every event."""

    def __init__(self, script: Sequence[Sequence[Action]]) -> None:
        self.script = [list(batch) for batch in script]
        self.events: list[Event] = []
        self._next = 0

    @property
    def finished(self) -> bool:
        return self._next >= len(self.script)

    @property
    def next_deadline(self) -> float | None:
        return None

    @property
    def recognition(self) -> int | None:
        return None

    def _batch(self) -> list[Action]:
        batch = self.script[self._next] if self._next < len(self.script) else []
        self._next += 1
        return batch

    def start(self, now: float) -> list[Action]:
        return self._batch()

    def handle(self, event: Event, now: float) -> list[Action]:
        self.events.append(event)
        if isinstance(event, PromptFinished | WebhookReplied | TransferEnded):
            return self._batch()
        return []

    def tick(self, now: float) -> list[Action]:
        return []


def scripted(engine: ScriptedEngine) -> object:
    return lambda dialplan, channel_id, g711, variables: engine


@pytest.fixture
async def webhooks() -> AsyncIterator[WebhookClient]:
    client = WebhookClient()
    yield client
    await client.aclose()


@pytest.fixture
def speech(tmp_path: Path) -> SpeechCache:
    require_tool("espeak-ng")
    return SpeechCache(EspeakSynthesizer(), tmp_path / "tts")


def responses(rig: Rig, status: int) -> list[Response]:
    return [m for m in rig.sip.sent if isinstance(m, Response) and m.status == status]


def energy(pcm: bytes) -> int:
    return sum(s * s for s in memoryview(pcm).cast("h"))


async def hang_up_on_bye(rig: Rig) -> None:
    bye = await rig.sip.wait_for(is_method("BYE"))
    assert isinstance(bye, Request)
    rig.sip.deliver(serialize(make_response(bye, 200)))
    await ended(rig)


async def test_webhook_before_answer_then_answer_and_say_what_the_caller_hears(
    rig: Rig, server: HttpServer, webhooks: WebhookClient, speech: SpeechCache
) -> None:
    text = "your balance is ready"
    engine = ScriptedEngine(
        [
            [Routed(1, "lookup", "start"), Webhook(2, server.url("/held"), {"caller": "alice"}, 5)],
            [Answer(3), Say(4, text, "en-US", barge_in=False)],
            [Answer(5), Hangup(6, "normal")],  # a second Answer changes nothing
        ]
    )
    rig.start_call(engine=scripted(engine), webhooks=webhooks, speech=speech)
    async with asyncio.timeout(5):
        while not server.seen:
            await asyncio.sleep(0.01)
    # The webhook runs while the call is unanswered: no 200 yet, no RTP port taken.
    assert not responses(rig, 200) and rig.ports.in_use == 0
    server.release.set()
    await rig.answered()
    await hang_up_on_bye(rig)
    assert engine.events[0] == WebhookReplied(2, 200, {"ok": True, "got": {"caller": "alice"}}, "")
    assert PromptFinished(4, True) in engine.events
    assert len(responses(rig, 200)) == 1
    # What the caller heard is the synthesized speech: the same energy after the µ-law round trip, in as
    # many packets (keepalive silence decodes to zero and adds nothing).
    said = await speech.get(text, "en-US")
    heard = b"".join(audioop.ulaw2lin(parse_rtp(p).payload, 2) for p in rig.phone.received)
    expected = energy(audioop.ulaw2lin(audioop.lin2ulaw(said, 2), 2))
    assert 0.98 < energy(heard) / expected < 1.02
    voiced = [p for p in rig.phone.received if set(parse_rtp(p).payload) != {0xFF}]
    assert 0.5 * len(said) / 320 < len(voiced) <= -(-len(said) // 320)
    [record] = rig.records()
    assert record["answer"] is not None and record["hangup_cause"] == "normal"
    assert record["route"] == ["lookup<start"]


async def test_the_same_text_on_a_second_call_comes_from_the_cache(
    rig: Rig, speech: SpeechCache, tmp_path: Path
) -> None:
    for n, call_id in enumerate(["call-a", "call-b"]):
        rig.call_id, rig.done = call_id, asyncio.Event()
        rig.sip.sent.clear()  # wait_for looks at this call's messages only
        engine = ScriptedEngine([[Say(1, "um momento", "pt-BR", barge_in=True)], [Hangup(2, "normal")]])
        rig.start_call(
            request("INVITE", call_id=call_id, branch=f"z9hG4bK-{call_id}", body=rig.offer()),
            engine=scripted(engine),
            speech=speech,
        )
        await rig.answered()
        await hang_up_on_bye(rig)
        assert engine.events == [PromptFinished(1, True)]
        files = sorted((tmp_path / "tts").rglob("*.wav"))
        if n == 0:
            [first], mtime = files, files[0].stat().st_mtime_ns
    assert files == [first] and first.stat().st_mtime_ns == mtime  # espeak-ng did not run again


async def test_a_say_that_cannot_be_synthesized_ends_at_once_and_the_flow_goes_on(
    rig: Rig, speech: SpeechCache
) -> None:
    engine = ScriptedEngine([[Say(1, "hello", "xx-NOPE", barge_in=False)], [Hangup(2, "normal")]])
    rig.start_call(engine=scripted(engine), speech=speech)
    await rig.answered()  # Say answers the call itself
    await hang_up_on_bye(rig)
    assert engine.events == [PromptFinished(1, False)]


async def test_a_redirect_before_answer_is_a_302_with_the_context_and_its_ack_ends_the_transaction(
    rig: Rig,
) -> None:
    target = "sip:agents@192.0.2.50:5080"
    headers = (("X-Account", "12\r\nEvil: injected"), ("Bad Name", "x"))
    engine = ScriptedEngine([[Routed(1, "route", "start"), Redirect(2, target, headers)]])
    call = rig.start_call(engine=scripted(engine))
    moved = await rig.sip.wait_for(is_status(302))
    assert isinstance(moved, Response) and moved.reason == "Moved Temporarily"
    contact = moved.headers.get("Contact") or ""
    assert (
        contact.startswith(f"<{target}?X-IVR-Channel-Id={call.channel_id}&")
        and "X-Account=12%20Evil" in contact
    )
    assert moved.headers.get("X-Account") == "12 Evil: injected"  # one header: the CR/LF forged none
    assert moved.headers.get("Evil") is None and moved.headers.get("Bad Name") is None
    assert moved.headers.get("X-IVR-Channel-Id") == call.channel_id
    await ended(rig)
    assert not responses(rig, 200) and rig.ports.in_use == 0
    # Unacknowledged, the 302 is retransmitted (Timer G); the caller's ACK ends that (RFC 3261 §17.2.1).
    now = asyncio.get_running_loop().time()
    ua = rig.sip.ua
    ua.tick(now + 0.6)
    assert [o for o in ua.take_outgoing() if o.data.startswith(b"SIP/2.0 302")]
    tag = re.search(r"tag=([^;>\s]+)", moved.headers.get("To") or "")
    assert tag is not None
    rig.sip.deliver(request("ACK", call_id=rig.call_id, to_tag=tag.group(1)))
    for later in (2.0, 5.0, 40.0):
        ua.tick(now + later)
        assert ua.take_outgoing() == []
    [record] = rig.records()
    assert record["hangup_cause"] == "redirected" and record["transfer_target"] == target
    assert record["answer"] is None


async def test_a_hangup_before_answer_is_a_480_with_the_flows_cause(rig: Rig) -> None:
    engine = ScriptedEngine([[Routed(1, "closed", "start"), Hangup(2, "closed-hours")]])
    rig.start_call(engine=scripted(engine))
    refusal = await rig.sip.wait_for(is_status(480))
    assert isinstance(refusal, Response) and refusal.reason == "Temporarily Unavailable"
    await ended(rig)
    assert not responses(rig, 200) and rig.ports.in_use == 0
    [record] = rig.records()
    assert record["hangup_cause"] == "closed-hours" and record["answer"] is None


async def test_the_flow_gets_the_caller_and_callee_as_numbers_not_uris(rig: Rig) -> None:
    """Defect: `{{ caller }}` was the whole From URI, so `when: {var: caller, matches: '^010'}` never held."""
    seen: list[Mapping[str, str]] = []
    engine = ScriptedEngine([[Hangup(1, "closed")]])

    def factory(dialplan: object, channel_id: str, g711: object, variables: Mapping[str, str]) -> object:
        seen.append(variables)
        return engine

    invite = request("INVITE", call_id=rig.call_id, body=rig.offer())
    rig.start_call(invite.replace(b"sip:alice@", b"sip:01012345678@"), engine=factory)
    await rig.sip.wait_for(is_status(480))
    await ended(rig)
    [variables] = seen
    [record] = rig.records()
    assert variables["caller"] == "01012345678" and str(record["caller"]).startswith("sip:01012345678@")
    assert variables["callee"] == "ivr"


async def test_todays_engine_without_answer_is_answered_at_its_first_prompt(rig: Rig) -> None:
    """The real `DialplanEngine` emits no Answer: the call answers before its first Play, once."""
    rig.start_call()
    ok = await rig.sip.wait_for(is_status(200))
    assert isinstance(ok, Response)
    assert rig.phone.received == []  # nothing played before the answer
    port = await rig.answered()
    await rig.send_audio(port, 3)
    rig.send_digit(port, 1)
    await hang_up_on_bye(rig)
    assert len(responses(rig, 200)) == 1 and rig.phone.received
    [record] = rig.records()
    assert record["answer"] is not None and record["route"] == ["menu<start", "bye<dtmf:1"]


@pytest.mark.parametrize("kind", ["transfer", "redirect-after-answer"])
async def test_the_dialplans_headers_go_on_the_refer_and_into_refer_to(rig: Rig, kind: str) -> None:
    headers = (("X-Account", "12\n34"),)
    channel = Handoff("0" * 32)
    move: Action = Transfer(2, AGENT, channel, headers) if kind == "transfer" else Redirect(2, AGENT, headers)
    engine = ScriptedEngine([[Answer(1), move], [Hangup(3, "normal")]])
    call = rig.start_call(engine=scripted(engine))
    await rig.answered()
    refer = await rig.sip.wait_for(is_method("REFER"))
    assert isinstance(refer, Request)
    assert refer.headers.get("X-Account") == "12 34"
    refer_to = refer.headers.get("Refer-To") or ""
    assert refer_to.startswith(f"<{AGENT}?X-IVR-Channel-Id=") and refer_to.endswith("&X-Account=12%2034>")
    if kind == "redirect-after-answer":
        assert f"X-IVR-Channel-Id={call.channel_id}" in refer_to
    assert refer.headers.get("User-to-User")  # the handoff headers are still there
    rig.sip.deliver(serialize(make_response(refer, 603)))
    await hang_up_on_bye(rig)
    assert TransferEnded(2, 603) in engine.events


async def test_a_webhook_still_running_when_the_caller_hangs_up_is_cancelled(
    rig: Rig, server: HttpServer, webhooks: WebhookClient
) -> None:
    engine = ScriptedEngine(
        [[Answer(1), Webhook(2, server.url("/slow"), {"card": "4111"}, 60)], [Hangup(3, "normal")]]
    )
    rig.start_call(engine=scripted(engine), webhooks=webhooks)
    await rig.answered()
    async with asyncio.timeout(5):
        while not server.open_connections:
            await asyncio.sleep(0.01)
    rig.bye()
    await ended(rig)
    async with asyncio.timeout(5):
        while server.open_connections:  # the request was abandoned, not left to run for 60 s
            await asyncio.sleep(0.01)
    assert engine.events == []  # no reply reached the flow
    [record] = rig.records()
    assert record["hangup_cause"] == "remote-bye"


async def test_a_webhook_without_a_client_replies_status_0_not_silence(rig: Rig) -> None:
    engine = ScriptedEngine([[Webhook(1, "http://127.0.0.1:1/x", {}, 1)], [Hangup(2, "no-hook")]])
    rig.start_call(engine=scripted(engine))
    await rig.sip.wait_for(is_status(480))
    await ended(rig)
    assert engine.events == [WebhookReplied(1, 0, None, "webhooks are not configured")]


async def test_a_flow_that_ends_without_answering_does_not_leave_the_caller_ringing(rig: Rig) -> None:
    engine = ScriptedEngine([[Routed(1, "nothing", "start")]])
    rig.start_call(engine=scripted(engine))
    await rig.sip.wait_for(is_status(480))
    await ended(rig)
    [record] = rig.records()
    assert record["hangup_cause"] == "not-answered"


async def test_a_play_answers_a_late_offer_call_with_our_offer(rig: Rig, tmp_path: Path) -> None:
    engine = ScriptedEngine([[Play(1, tmp_path / "menu.wav", barge_in=False)], [Hangup(2, "normal")]])
    rig.start_call(request("INVITE", call_id=rig.call_id), engine=scripted(engine))
    ok = await rig.sip.wait_for(is_status(200))
    assert isinstance(ok, Response) and b"m=audio" in ok.body
    tag = re.search(r"tag=([^;>\s]+)", ok.headers.get("To") or "")
    assert tag is not None
    rig.to_tag = tag.group(1)
    rig.sip.deliver(
        request("ACK", call_id=rig.call_id, to_tag=rig.to_tag, body=rig.offer())  # the answer in the ACK
    )
    await hang_up_on_bye(rig)
    assert engine.events == [PromptFinished(1, True)] and rig.phone.received
