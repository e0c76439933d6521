"""Vendor faults over real calls: sipp callers, `ivr serve` on the Korean demo flow whose greeting listens on
faulty primary (an emulator told `--fault NAME`, or nothing listening) with a healthy secondary.

The caller says 상담원 연결해 주세요 (the phrase Vosk Korean recognizes reliably, TOOLBOX.md) once, while the
greeting plays. When the primary fails, the secondary gets the turn with that audio replayed, so the caller
reaches the agent by what they said (`agent<say:상담원`), not by the fallback (`agent<no_input` or
`agent<recognizer_failed`), and the CDR records the failover. Faults that strike before any recognition run
on emulators with only a light engine loaded; those that strike mid-utterance need the Korean one.

Ports: every process binds a free port (harness.free_port); the bridge's RTP range follows its SIP port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.dialplan.loader import load_dialplan
from tests.integration.harness import (
    DEMO,
    bridge,
    free_port,
    run_sipp,
    scenario_with,
    speak,
    start_emulator,
)

pytestmark = pytest.mark.integration

PHRASES = load_dialplan(DEMO).phrases()
KOREAN = ("--language", "ko")
LIGHT = ("--language", "en")  # pocketsphinx English: loads in a moment; the request faults need no engine
SPOKEN = "agent<say:상담원"


@pytest.fixture(scope="module")
def mediazen_ok() -> Iterator[str]:
    with start_emulator("mediazen", PHRASES, *KOREAN) as running:
        yield running.url


@pytest.fixture(scope="module")
def amivoice_ok() -> Iterator[str]:
    with start_emulator("amivoice", PHRASES, *KOREAN) as running:
        yield running.url


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "agent.ulaw"
    return speak("상담원 연결해 주세요", out, ulaw_raw=True, lead=0.5, tail=2.0)


def flow(tmp: Path, primary: str, secondary: str | None) -> Path:
    """The demo flow with its greeting on `primary`, failing over to `secondary`."""
    plan = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    listen = plan["steps"]["greeting"]["listen"]
    listen["vendor"] = primary
    if secondary is not None:
        listen["secondary"] = {"vendor": secondary}
    del plan["steps"]["agent"]["play"]  # straight to the transfer: seconds less per call
    path = tmp / "faults.yaml"
    path.write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    if not (tmp / "prompts").exists():
        (tmp / "prompts").symlink_to(DEMO.parent / "prompts")
    return path


def calls(
    tmp: Path, speech: Path, urls: dict[str, str], dialplan: Path, count: int = 1, **settings: Any
) -> list[dict[str, Any]]:
    """`count` sipp calls one after the other on one bridge; their CDRs (the bridge log in LOGS)."""
    scenario = scenario_with("speech_agent.xml", tmp, AUDIO=str(speech))
    with bridge(tmp, "", asr_urls=urls, dialplan=str(dialplan), **settings) as b:
        for _ in range(count):
            result = run_sipp(scenario, b.port, tmp)
            assert result.returncode == 0, result.output + b.log()
        records = b.wait_cdrs(count)
    LOGS[tmp] = b.log()
    return records


LOGS: dict[Path, str] = {}


def reached_the_agent_by_speech(cdr: dict[str, Any]) -> None:
    assert cdr["route"] == ["greeting<start", SPOKEN], cdr
    assert cdr["transfer_status"] == 200 and cdr["hangup_cause"] == "transferred", cdr


def test_connection_refused_fails_over_and_the_caller_need_not_repeat(
    tmp_path: Path, speech: Path, amivoice_ok: str
) -> None:
    urls = {"mediazen": f"ws://127.0.0.1:{free_port()}", "amivoice": amivoice_ok}
    (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "mediazen", "amivoice"))
    reached_the_agent_by_speech(cdr)
    assert cdr["failovers"] == ["greeting:mediazen->amivoice:unreachable"], cdr


def test_with_no_secondary_a_dead_vendor_takes_the_fallback(tmp_path: Path, speech: Path) -> None:
    urls = {"mediazen": f"ws://127.0.0.1:{free_port()}"}
    (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "mediazen", None))
    assert cdr["route"] == ["greeting<start", "agent<recognizer_failed"], cdr
    assert cdr["failovers"] == [], cdr


def test_the_circuit_breaker_skips_a_dead_vendor_on_the_next_call(
    tmp_path: Path, speech: Path, amivoice_ok: str
) -> None:
    urls = {"mediazen": f"ws://127.0.0.1:{free_port()}", "amivoice": amivoice_ok}
    dialplan = flow(tmp_path, "mediazen", "amivoice")
    first, second = calls(tmp_path, speech, urls, dialplan, count=2, asr_breaker_failures=1)
    reached_the_agent_by_speech(first)
    reached_the_agent_by_speech(second)
    assert first["failovers"] == ["greeting:mediazen->amivoice:unreachable"], first
    assert second["failovers"] == ["greeting:mediazen->amivoice:circuit-open"], second


# (fault, engine the faulty emulator loads, the failure kind the failover records)
MEDIAZEN_FAULTS = [
    ("unauthorized", LIGHT, "unauthorized"),
    ("no-reply", LIGHT, "timeout"),
    ("malformed", LIGHT, "vendor-error"),
    ("close-mid-utterance", KOREAN, "closed"),
    ("close", KOREAN, "closed"),  # the document's own close event, sent mid-utterance unasked
]
CPQD_FAULTS = [
    ("unauthorized", LIGHT, "unauthorized"),
    ("start-failure", LIGHT, "vendor-error"),
    ("invalid-action", LIGHT, "vendor-error"),
    ("no-reply", LIGHT, "timeout"),
    ("malformed", LIGHT, "vendor-error"),
    ("close-mid-utterance", KOREAN, "closed"),
]
AMIVOICE_FAULTS = [
    ("unauthorized", LIGHT, "unauthorized"),
    ("no-reply", LIGHT, "timeout"),
    ("malformed", LIGHT, "vendor-error"),
    ("busy", LIGHT, "vendor-error"),  # "s can't connect to recognizer server": retried once (002), then over
    ("close-mid-utterance", KOREAN, "closed"),
    ("feed-error", KOREAN, "vendor-error"),  # "p can't feed audio data ...": retried once (002), then over
    ("timeout", KOREAN, "vendor-error"),  # "e timeout occurred ...": reconnect, retried once (002), then over
]
RETRIED = ("busy", "feed-error", "timeout")  # documented as worth a retry: the stream tries once more


def faulty(vendor: str, fault: str, engine: tuple[str, ...]) -> Any:
    return start_emulator(vendor, PHRASES, *engine, "--fault", fault)


@pytest.mark.parametrize(("fault", "engine", "kind"), MEDIAZEN_FAULTS)
def test_mediazen_faults_fail_over_to_amivoice(
    tmp_path: Path, speech: Path, amivoice_ok: str, fault: str, engine: tuple[str, ...], kind: str
) -> None:
    with faulty("mediazen", fault, engine) as primary:
        urls = {"mediazen": primary.url, "amivoice": amivoice_ok}
        (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "mediazen", "amivoice"))
    reached_the_agent_by_speech(cdr)
    assert cdr["failovers"] == [f"greeting:mediazen->amivoice:{kind}"], cdr


@pytest.mark.parametrize(("fault", "engine", "kind"), CPQD_FAULTS)
def test_cpqd_faults_fail_over_to_mediazen(
    tmp_path: Path, speech: Path, mediazen_ok: str, fault: str, engine: tuple[str, ...], kind: str
) -> None:
    with faulty("cpqd", fault, engine) as primary:
        urls = {"cpqd": primary.url, "mediazen": mediazen_ok}
        (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "cpqd", "mediazen"))
    reached_the_agent_by_speech(cdr)
    assert cdr["failovers"] == [f"greeting:cpqd->mediazen:{kind}"], cdr


@pytest.mark.parametrize(("fault", "engine", "kind"), AMIVOICE_FAULTS)
def test_amivoice_faults_fail_over_to_mediazen(
    tmp_path: Path, speech: Path, mediazen_ok: str, fault: str, engine: tuple[str, ...], kind: str
) -> None:
    with faulty("amivoice", fault, engine) as primary:
        urls = {"amivoice": primary.url, "mediazen": mediazen_ok}
        (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "amivoice", "mediazen"))
    reached_the_agent_by_speech(cdr)
    assert cdr["failovers"] == [f"greeting:amivoice->mediazen:{kind}"], cdr
    retried = '"event": "asr.retry"' in LOGS[tmp_path]
    assert retried == (fault in RETRIED), LOGS[tmp_path]


def test_amivoice_refusing_the_appkey_fails_over_to_mediazen(
    tmp_path: Path, speech: Path, mediazen_ok: str
) -> None:
    # Document 002's own refusal of a bad APPKEY ("s received illegal service authorization"): not retried.
    with start_emulator("amivoice", PHRASES, *LIGHT, "--appkey", "not-the-bridges") as primary:
        urls = {"amivoice": primary.url, "mediazen": mediazen_ok}
        (cdr,) = calls(tmp_path, speech, urls, flow(tmp_path, "amivoice", "mediazen"))
    reached_the_agent_by_speech(cdr)
    assert cdr["failovers"] == ["greeting:amivoice->mediazen:vendor-error"], cdr
    assert '"event": "asr.retry"' not in LOGS[tmp_path]
