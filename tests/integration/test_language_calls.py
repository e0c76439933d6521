"""The dialplan language on real calls: `ivr test` runs the case files of tests/integration/flows/ (their
scripted callers, all at once) against real `ivr serve` bridges on the embedded Mediazen and AmiVoice
emulators, with a real local HTTP server behind the webhook; the tests then read the run's report, the
bridges' CDRs and the requests the server got. Business hours are a separate call (sipp against the
in-process `Bridge`), since a 302 before answer is not a call `ivr test` places."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from ivr.dialplan import load_dialplan
from ivr.prompts import synthesize
from tests.integration.test_effects_calls import StartRig, rigs
from tests.tools import require_tool

__all__ = ["rigs"]  # fixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).with_name("flows")


class Crm(BaseHTTPRequestHandler):
    """Answers every POST with {"tier": "gold"}, keeping the JSON bodies it got."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Crm.seen.append({"path": self.path, "body": json.loads(body)})
        reply = b'{"tier": "gold", "name": "Kim"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Run:
    """One `ivr test` run of features.test.yaml: its JSON report, the bridge's CDRs, the CRM's requests."""

    report: dict[str, Any]
    cdrs: dict[str, dict[str, Any]]  # by Call-ID
    crm: list[dict[str, Any]]
    output: str

    def case(self, name: str) -> dict[str, Any]:
        [found] = [c for s in self.report["suites"] for c in s["cases"] if c["name"] == name]
        assert found["passed"], json.dumps(found, ensure_ascii=False, indent=1) + self.output
        return found

    def cdr(self, name: str) -> dict[str, Any]:
        return self.cdrs[self.case(name)["call_id"]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require_tool("espeak-ng")
    require_tool("sox")
    tmp = tmp_path_factory.mktemp("language")
    http = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        flows = tmp / "flows"
        shutil.copytree(FLOWS, flows)
        features = flows / "features.yaml"
        text = features.read_text(encoding="utf-8")
        features.write_text(text.replace("WEBHOOK_PORT", str(http.server_address[1])), encoding="utf-8")
        for name in ("verify.yaml", "features.yaml", "confirm.yaml"):  # each file's prompts, by espeak-ng
            dialplan = load_dialplan(flows / name, check_prompts=False)
            for prompt, said in dialplan.prompts.items():
                synthesize(said, flows / "prompts" / prompt, voice=dialplan.asr.language.lower())
        work = tmp / "work"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-m", "ivr", "test", str(flows),
             "--json", "--jobs", "6", "--workdir", str(work)],
            capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
        )  # fmt: skip
        report = json.loads(done.stdout)
        records = [
            json.loads(line) for cdr in work.rglob("cdr.jsonl") for line in cdr.read_text().splitlines()
        ]
        yield Run(report, {r["call_id"]: r for r in records}, list(Crm.seen), done.stdout + done.stderr)
    finally:
        http.shutdown()
        http.server_close()


def test_every_case_passed(run: Run) -> None:
    failed = [c for s in run.report["suites"] for c in s["cases"] if not c["passed"]]
    assert run.report["ok"] and not failed, json.dumps(failed, ensure_ascii=False, indent=1) + run.output


def test_a_redacted_card_number_routes_on_its_digits_but_shows_only_stars(run: Run) -> None:
    record = run.cdr("card_number_redacted")
    # the 4... number took the Visa route, so routing saw the real keys ...
    assert [r.partition("<")[0] for r in record["route"]] == ["menu", "card", "visa"]
    # ... while the record keeps the menu's key, one * per card key, and the # that ended the collection
    assert record["digits"] == ["1", *"*" * 16, "#"], record["digits"]
    dumped = json.dumps(record)
    assert "4111222233334444" not in dumped and "4111" not in dumped
    refer = next(
        e["event"] for e in run.case("card_number_redacted")["trace"] if e["event"].startswith("REFER")
    )
    assert "X-Card: [redacted]" in refer and "4111" not in refer, refer


def test_a_silent_caller_hears_reprompt_1_then_reprompt_2(run: Run) -> None:
    case = run.case("silent_caller_hears_both_reprompts")
    heard = [e["event"] for e in case["trace"] if e["event"].startswith("prompt ")]
    assert [h.split()[1] for h in heard] == ["menu.wav", "again1.wav", "again2.wav", "agent.wav"], heard
    vias = [r.partition("<")[2] for r in run.cdr("silent_caller_hears_both_reprompts")["route"]]
    assert vias[1:3] == ["no_input", "no_input"] or all("no_input" in v for v in vias[1:3]), vias


def test_a_spoken_choice_is_confirmed_by_key_1_and_refused_by_key_2(run: Run) -> None:
    yes = run.cdr("confirmed_yes_by_key_1")
    assert yes["route"][1].startswith("uketsuke<confirm:"), yes["route"]  # the question was asked
    assert yes["route"][-1].startswith("operator<") and yes["route"][-1].endswith("(confirmed)"), yes["route"]
    assert yes["hangup_cause"] == "transferred" and yes["transfer_target"] == "sip:operator@127.0.0.1:5070"
    no = run.cdr("confirmed_no_by_key_2")
    assert no["route"][1].startswith("uketsuke<confirm:"), no["route"]
    assert no["route"][-1] == "owari<no_match", no["route"]  # a no is the step's no-match
    assert no["transfer_target"] in (None, "") and no["hangup_cause"] == "normal"


def test_a_sub_flow_runs_its_steps_and_returns_to_the_callers_goto(run: Run) -> None:
    route = run.cdr("verified_in_a_sub_flow")["route"]
    steps = [r.partition("<")[0] for r in route]
    assert steps[:2] == ["menu", "verify"] and steps[-2:] == ["checked", "verified"], route
    inner = steps[2:-2]  # the sub-flow's own steps, named by their file
    assert inner and all(s.startswith("verify") and ":" in s for s in inner), route
    assert any(s.endswith(":ok") for s in inner), route  # the birth date was accepted, then `return`


def test_a_webhook_after_answer_routes_the_caller_on_its_reply(run: Run) -> None:
    record = run.cdr("webhook_routes_to_gold")
    assert record["answer"] is not None  # the menu answered the call before the lookup
    assert record["transfer_target"] == "sip:gold@127.0.0.1:5070"
    [request] = run.crm
    assert request == {"path": "/tier", "body": {"ani": "ivr-test"}}  # {{ caller }}: the From's user


NIGHT = """\
name: business hours
asr: {{vendor: mediazen, language: ko}}
start: hours
calendars:
  office:
    tz: Asia/Seoul
    hours: {{mon-sun: "00:00-24:00"}}
    holidays: [{holidays}]
steps:
  hours:
    branch:
      - closed: office
        goto: night
      - goto: day
  night:
    transfer: {{to: "sip:night@192.0.2.9:5060", headers: {{X-Account: after-hours}}}}
  day:
    transfer: sip:day@192.0.2.9:5060
"""


async def test_closed_for_a_holiday_redirects_to_the_night_service_before_answering(rigs: StartRig) -> None:
    # open around the clock except today (and its neighbours, should the call cross midnight in Seoul)
    today = dt.datetime.now(ZoneInfo("Asia/Seoul")).date()
    days = ", ".join(f'"{today + dt.timedelta(days=d)}"' for d in (-1, 0, 1))
    rig = await rigs(NIGHT.format(holidays=days))
    target = "sip:night@192.0.2.9:5060"
    messages = await rig.sipp("redirect.xml", TARGET=re.escape(target), ACCOUNT="after-hours")
    assert len(re.findall(r"^SIP/2.0 302 Moved Temporarily", messages, re.M)) == 1, messages
    assert not re.search(r"^SIP/2.0 200", messages, re.M)
    [record] = await rig.cdrs()
    assert record["transfer_target"] == target and record["answer"] is None
    assert [str(r).partition("<")[0] for r in record["route"]] == ["hours", "night"]  # type: ignore[attr-defined]
