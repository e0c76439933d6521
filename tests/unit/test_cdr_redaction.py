"""Redaction over a whole call: a step marked `redact: true` routes on what the caller keys in or says,
and neither the CDR (the SQLite store) nor the log lines show it. Driven as tests/unit/test_call.py does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from structlog.testing import capture_logs

from ivr.cdr import REDACTED_DIGIT, REDACTED_TEXT
from ivr.cdrstore import SqlCdrStore, open_store
from ivr.media.session import PortAllocator
from ivr.sip.message import Request, make_response, serialize
from tests.unit.test_call import AGENT, MemorySip, Phone, Rig, ScriptedServer, ended, is_method, tone_wav

FLOW = f"""\
name: card flow
asr: {{vendor: mediazen, language: ko}}
start: card
steps:
  card:
    play: menu.wav
    redact: true
    listen: {{timeout: 0.3, barge_in: true}}
    routes:
      - {{say: [상담원], dtmf: "0", goto: agent}}
      - {{dtmf: "7", goto: bye}}
    no_input: {{retries: 0, goto: bye}}
    no_match: {{retries: 0, goto: bye}}
  agent:
    transfer: {AGENT}
    on_failure: bye
  bye:
    play: bye.wav
    hangup: true
"""


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    tone_wav(tmp_path / "menu.wav", 0.2)
    tone_wav(tmp_path / "bye.wav", 0.1)
    (tmp_path / "call.yaml").write_text(FLOW, encoding="utf-8")
    loop = asyncio.get_running_loop()
    phone = Phone()
    transport, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=("127.0.0.1", 0))
    phone.transport = transport
    store = open_store(f"sqlite:///{tmp_path / 'cdr.sqlite3'}", "node", "run").sink
    assert isinstance(store, SqlCdrStore)
    yield Rig(
        MemorySip(),
        phone,
        ScriptedServer(),
        store,  # type: ignore[arg-type]  # Rig names the JSON-lines writer; any CdrSink drives a call
        PortAllocator(31200, 31300),
        tmp_path / "call.yaml",
        tmp_path,
        asyncio.Event(),
    )
    transport.close()
    store.close()


def stored(rig: Rig) -> dict[str, object]:
    store = rig.cdr
    assert isinstance(store, SqlCdrStore) and store.flush()
    [row] = store.database.ended()
    return row.record_dict()


async def test_keyed_digits_route_the_call_but_the_cdr_and_logs_show_stars(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.start_call()
        port = await rig.answered()
        await rig.send_audio(port, 3)
        rig.send_digit(port, 7)
        bye = await rig.sip.wait_for(is_method("BYE"))  # "7" took the route to bye: routing saw the real key
        assert isinstance(bye, Request)
        rig.sip.deliver(serialize(make_response(bye, 200)))
        await ended(rig)
    record = stored(rig)
    assert record["digits"] == [REDACTED_DIGIT]
    assert record["route"] == ["card<start", "bye<dtmf:7"]  # the route taken names the dialplan's pattern
    assert [e["digit"] for e in logs if e["event"] == "dtmf"] == [REDACTED_DIGIT]
    assert "'7'" not in repr([e for e in logs if e["event"] != "routed"])


async def test_recognized_text_routes_the_call_but_the_cdr_and_logs_show_a_marker(rig: Rig) -> None:
    rig.server.text = "상담원 연결해 주세요"
    with capture_logs() as logs:
        rig.start_call()
        port = await rig.answered()
        await rig.send_audio(port, 30)
        refer = await rig.sip.wait_for(is_method("REFER"))  # the words matched the agent route
        assert isinstance(refer, Request)
        # Nor does the agent's side get them in the transfer's context headers (X-IVR-Transcript).
        wire = unquote(serialize(refer).decode("utf-8", "replace"))
        assert "연결해" not in wire and REDACTED_TEXT in wire
        rig.bye()
        await ended(rig)
    record = stored(rig)
    transcripts = record["transcripts"]
    assert isinstance(transcripts, list)
    assert [(t["step"], t["text"]) for t in transcripts] == [("card", REDACTED_TEXT)]
    assert "연결해" not in json.dumps(record, ensure_ascii=False)
    assert [e["text"] for e in logs if e["event"] == "recognized"] == [REDACTED_TEXT]
    assert "연결해" not in repr(logs)
