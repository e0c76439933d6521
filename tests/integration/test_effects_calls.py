"""The call's effects end to end, through YAML dialplans run by the real engine: a real caller (sipp) against
the real `Bridge` (SIP over UDP on loopback, admission, the shared TTS cache and webhook client, the CDR
store), real espeak-ng and a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ivr.config import Settings
from ivr.dialplan import load_dialplan
from ivr.server import Bridge
from tests.integration.harness import free_port, run_sipp, scenario_with
from tests.tools import require_tool
from tests.unit.test_webhook import HttpServer, server

__all__ = ["Rig", "rigs", "server"]  # fixtures, and the rig test_language_calls.py shares


class Rig:
    """A bridge running one dialplan (written by the test), with a JSON-lines CDR and a TTS cache in `tmp`."""

    def __init__(self, tmp: Path, text: str) -> None:
        self.tmp = tmp
        path = tmp / "flow.yaml"
        path.write_text(text, encoding="utf-8")
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
        self.bridge = Bridge(self.settings, load_dialplan(path), path)

    async def sipp(self, name: str, **replacements: str) -> str:
        scenario = scenario_with(name, self.tmp, **replacements)
        result = await asyncio.to_thread(run_sipp, scenario, self.settings.sip_port, self.tmp, timeout=20)
        assert result.returncode == 0, result.output
        return (self.tmp / "sipp_messages.log").read_text(errors="replace")

    async def cdrs(self) -> list[dict[str, object]]:
        await self.bridge.close()
        text = (self.tmp / "cdr.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


StartRig = Callable[[str], Awaitable[Rig]]


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[StartRig]:
    """Starts a bridge on the dialplan text it is given; closes it after the test."""
    require_tool("sipp")
    started: list[Rig] = []

    async def start(text: str) -> Rig:
        rig = Rig(tmp_path, text)
        await rig.bridge.start()
        started.append(rig)
        return rig

    yield start
    for rig in started:
        await rig.bridge.close()


def lookup_flow(url: str, agent: str, account: str) -> str:
    return f"""\
name: lookup before answer
asr: {{vendor: mediazen, language: ko}}
start: lookup
steps:
  lookup:
    webhook:
      url: {url}
      body: {{agent: "{agent.removeprefix("sip:")}"}}
      routes:
        - when: {{key: ok, equals: "true"}}
          goto: agent
      goto: refuse
      on_failure: refuse
  agent:
    transfer: {{to: "sip:{{{{ webhook.got.agent }}}}", headers: {{X-Account: {account}}}}}
  refuse:
    hangup: true
"""


async def test_the_webhook_reply_picks_where_the_caller_is_redirected(
    rigs: StartRig, server: HttpServer
) -> None:
    agent, account = "sip:agent7@192.0.2.7:5062", "A-123"
    rig = await rigs(lookup_flow(server.url("/ok"), agent, account))
    messages = await rig.sipp("redirect.xml", TARGET=re.escape(agent), ACCOUNT=account)
    # One 302 reached the caller: its ACK stopped the retransmissions (RFC 3261 §17.2.1).
    assert len(re.findall(r"^SIP/2.0 302 Moved Temporarily", messages, re.M)) == 1, messages
    assert not re.search(r"^SIP/2.0 200", messages, re.M)
    assert [json.loads(s.body) for s in server.seen] == [{"agent": agent.removeprefix("sip:")}]
    assert server.seen[0].headers["user-agent"] == "ivr"
    [record] = await rig.cdrs()
    assert record["hangup_cause"] == "redirected" and record["transfer_target"] == agent
    assert record["answer"] is None
    assert [str(r).partition("<")[0] for r in record["route"]] == ["lookup", "agent"]  # type: ignore[attr-defined]


async def test_a_flow_that_hangs_up_before_answering_refuses_with_480(
    rigs: StartRig, server: HttpServer
) -> None:
    # the service is down (500): on_failure leads to a hangup, reached before anything answered the call
    rig = await rigs(lookup_flow(server.url("/error"), "sip:agent7@192.0.2.7", "A-1"))
    messages = await rig.sipp("refused.xml")
    assert re.search(r"^SIP/2.0 480", messages, re.M), messages
    assert not re.search(r"^SIP/2.0 200", messages, re.M)
    assert [s.path for s in server.seen] == ["/error"]
    [record] = await rig.cdrs()
    assert record["answer"] is None and record["transfer_target"] in (None, "")
    assert [str(r).partition("<")[0] for r in record["route"]] == ["lookup", "refuse"]  # type: ignore[attr-defined]


async def test_said_text_is_synthesized_once_for_two_calls(rigs: StartRig) -> None:
    require_tool("espeak-ng")
    rig = await rigs(
        "name: say\nasr: {vendor: mediazen, language: ko}\nstart: hello\n"
        "steps:\n  hello:\n    say: 상담원을 연결합니다\n    hangup: true\n"
    )
    mtimes = []
    for _ in range(2):
        await rig.sipp("wait_for_bye.xml", WAIT_BYE="15000")
        files = list((rig.tmp / "tts").rglob("*.wav"))
        assert len(files) == 1
        mtimes.append(files[0].stat().st_mtime_ns)
    assert mtimes[0] == mtimes[1]  # the second call's speech came from the cache, not espeak-ng
    records = await rig.cdrs()
    assert [r["hangup_cause"] for r in records] == ["normal", "normal"]
    assert all(r["answer"] is not None for r in records)
    assert [r["route"] for r in records] == [["hello<start"]] * 2
