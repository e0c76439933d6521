"""SIGTERM drains `ivr serve`: OPTIONS and new INVITEs get 503 + Retry-After, calls in progress finish (or get
a BYE at `drain_timeout`), then the process exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import RunningBridge, SippResult, bridge, run_sipp, scenario_with
from tests.integration.test_sip_attacks import NO_ASR, hold_dialplan, invite, options, udp_exchange

pytestmark = pytest.mark.integration


def _in_background(scenario: Path, b: RunningBridge, tmp: Path) -> tuple[threading.Thread, list[SippResult]]:
    """One sipp call in a thread, so the test can signal the bridge meanwhile."""
    results: list[SippResult] = []
    thread = threading.Thread(target=lambda: results.append(run_sipp(scenario, b.port, tmp)))
    thread.start()
    return thread, results


def _wait_for_log(b: RunningBridge, event: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            line.startswith("{") and json.loads(line).get("event") == event for line in b.log().splitlines()
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} in the bridge log:\n{b.log()}")


def _first_line_and_retry_after(reply: bytes) -> tuple[str, str | None]:
    lines = reply.decode().split("\r\n")
    retry = next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("retry-after:")), None
    )
    return lines[0], retry


def test_sigterm_mid_call_refuses_new_work_lets_the_call_finish_and_exits_0(tmp_path: Path) -> None:
    plan = hold_dialplan(tmp_path, 20.0)
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), drain_timeout=20.0, drain_retry_after=45) as b:
        scenario = scenario_with("hold_then_bye.xml", tmp_path, HOLD="3000")
        thread, results = _in_background(scenario, b, tmp_path)
        _wait_for_log(b, "answered")
        probe = udp_exchange(b.port, options(), source="127.0.0.1", listen=0.5)
        assert [_first_line_and_retry_after(r)[0] for r in probe] == ["SIP/2.0 200 OK"]
        b.proc.send_signal(signal.SIGTERM)
        _wait_for_log(b, "draining")
        (busy,) = udp_exchange(b.port, options(), source="127.0.0.1", listen=0.5)
        assert _first_line_and_retry_after(busy) == ("SIP/2.0 503 Draining", "45")
        (refused,) = udp_exchange(b.port, invite("during-drain"), source="127.0.0.1", listen=0.5)
        assert _first_line_and_retry_after(refused) == ("SIP/2.0 503 Draining", "45")
        thread.join(30)
        (result,) = results
        assert result.returncode == 0, result.output + b.log()
        assert b.proc.wait(30) == 0, b.log()
        (cdr,) = b.cdrs()
    assert cdr["hangup_cause"] == "remote-bye" and cdr["answer"] is not None, cdr
    assert '"finished": 1, "hung_up": 0' in b.log()


def test_call_still_up_at_the_drain_deadline_gets_a_bye_then_exit_0(tmp_path: Path) -> None:
    plan = hold_dialplan(tmp_path, 30.0)
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), drain_timeout=1.0) as b:
        scenario = scenario_with("wait_for_bye.xml", tmp_path, WAIT_BYE="30000")
        thread, results = _in_background(scenario, b, tmp_path)
        _wait_for_log(b, "answered")
        time.sleep(0.3)  # the ACK is in: the call is confirmed, so our BYE may go at once (§15)
        b.proc.send_signal(signal.SIGTERM)
        thread.join(30)
        (result,) = results
        assert result.returncode == 0, result.output + b.log()  # it received our BYE and answered it
        assert b.proc.wait(30) == 0, b.log()
        (cdr,) = b.cdrs()
    assert cdr["hangup_cause"] == "drain-timeout" and cdr["answer"] is not None, cdr
    assert '"finished": 0, "hung_up": 1' in b.log()


def test_a_second_sigterm_cuts_the_drain_short_and_every_call_gets_its_bye(tmp_path: Path) -> None:
    # An operator who cannot wait for drain_timeout signals again: the calls are hung up now, not dropped.
    plan = hold_dialplan(tmp_path, 60.0)
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), drain_timeout=60.0) as b:
        scenario = scenario_with("wait_for_bye.xml", tmp_path, WAIT_BYE="30000")
        thread, results = _in_background(scenario, b, tmp_path)
        _wait_for_log(b, "answered")
        time.sleep(0.3)  # the ACK is in (§15)
        b.proc.send_signal(signal.SIGTERM)
        _wait_for_log(b, "draining")
        b.proc.send_signal(signal.SIGTERM)
        thread.join(30)
        (result,) = results
        assert result.returncode == 0, result.output + b.log()  # it received our BYE and answered it
        assert b.proc.wait(30) == 0, b.log()
        (cdr,) = b.cdrs()
    assert cdr["hangup_cause"] == "shutdown" and cdr["answer"] is not None, cdr
    assert '"event": "second signal: hanging up every call now"' in b.log(), b.log()
