"""An ended call is freed by reference counting alone: nothing of it waits for the cycle collector.

`ivr serve` keeps long-lived objects out of the collector's sight (ivr/gcpolicy.py), so a call that ended
inside a reference cycle would stay in memory until a rare full collection. Each way a call ends runs here
with the collector off, a real caller (sipp) against the real `Bridge`, and a real WebSocket recognizer (the
benchmark's counting Mediazen sink); afterwards no `Call`, `RtpSession` or `RecognizerStream` may be left.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.load.sink import SinkProtocol, Tally
from ivr.asr.stream import RecognizerStream
from ivr.call import Call
from ivr.media.session import RtpSession
from tests.integration.test_effects_calls import Rig
from tests.tools import require_tool

LISTEN = """\
name: listen
asr: {vendor: mediazen, language: ko}
start: listen
steps:
  listen:
    listen: {timeout: 30}
    routes:
      - say: [bench]
        goto: bye
    no_input: {retries: 0, goto: bye}
    no_match: {retries: 0, goto: bye}
  bye:
    hangup: true
"""
SAY_AND_HANG_UP = """\
name: say
asr: {vendor: mediazen, language: ko}
start: hello
steps:
  hello:
    say: 안녕하세요
    hangup: true
"""
REFUSE = """\
name: refuse
asr: {vendor: mediazen, language: ko}
start: bye
steps:
  bye:
    hangup: true
"""


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cycle collector off for the test: whatever is left in a cycle stays visible."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture
async def sink_url() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    tally = Tally()
    server = await loop.create_server(lambda: SinkProtocol(tally), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.close()


def _alive() -> dict[int, str]:
    """The calls, RTP sessions and recognizer streams in memory, by id."""
    kinds = (Call, RtpSession, RecognizerStream)
    found = {}
    for obj in gc.get_objects():
        for kind in kinds:
            if issubclass(type(obj), kind):  # not isinstance: a dead weak proxy raises ReferenceError
                found[id(obj)] = kind.__name__
    return found


@pytest.mark.parametrize(
    ("flow", "scenario", "replacements", "cause"),
    [
        pytest.param(LISTEN, "caller_bye.xml", {}, "remote-bye", id="caller-hangs-up-while-listening"),
        pytest.param(
            SAY_AND_HANG_UP, "wait_for_bye.xml", {"WAIT_BYE": "15000"}, "normal", id="flow-hangs-up"
        ),
        pytest.param(REFUSE, "refused.xml", {}, "rejected", id="refused-before-answer"),
    ],
)
async def test_an_ended_call_leaves_nothing_for_the_cycle_collector(
    tmp_path: Path,
    sink_url: str,
    no_collector: None,
    flow: str,
    scenario: str,
    replacements: dict[str, str],
    cause: str,
) -> None:
    require_tool("sipp")
    if flow is SAY_AND_HANG_UP:
        require_tool("espeak-ng")
    rig = Rig(tmp_path, flow)
    rig.settings.asr_urls["mediazen"] = sink_url
    await rig.bridge.start()
    try:
        before = _alive()  # what earlier tests in this process still hold is theirs
        await rig.sipp(scenario, **replacements)
        for _ in range(100):
            if not rig.bridge.calls:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the call's own task returns after its cleanup
        assert not rig.bridge.calls
        left = [kind for key, kind in _alive().items() if key not in before]
        assert left == []
    finally:
        [record] = await rig.cdrs()
    assert record["hangup_cause"] == cause
