"""Hot reload of a running `ivr serve`: SIGHUP or a changed file; calls in progress keep their version."""

from __future__ import annotations

import hashlib
import json
import signal
import time
import wave
from pathlib import Path

import pytest

from tests.integration.harness import RunningBridge, bridge, scenario_with
from tests.integration.test_drain import _in_background, _wait_for_log
from tests.integration.test_sip_attacks import NO_ASR

pytestmark = pytest.mark.integration


def _silence(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))


def _plan(path: Path, name: str, prompt: str) -> str:
    """A dialplan that plays `prompt`, then hangs up; its version (the loader's hash of the text)."""
    text = f"name: {name}\nstart: hold\nsteps:\n  hold:\n    play: {prompt}\n    hangup: true\n"
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _events(b: RunningBridge, event: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in b.log().splitlines() if line.startswith("{"))
    return [e for e in lines if e.get("event") == event]


def test_sighup_serves_new_calls_the_new_version_while_a_call_in_progress_keeps_its_own(
    tmp_path: Path,
) -> None:
    _silence(tmp_path / "long.wav", 4.0)
    _silence(tmp_path / "short.wav", 0.5)
    plan = tmp_path / "flow.yaml"
    first = _plan(plan, "first", "long.wav")
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), dialplan_watch_interval=0) as b:
        scenario = scenario_with("wait_for_bye.xml", tmp_path, WAIT_BYE="30000")
        old_call, old_result = _in_background(scenario, b, tmp_path)
        _wait_for_log(b, "answered")
        second = _plan(plan, "second", "short.wav")
        b.proc.send_signal(signal.SIGHUP)
        _wait_for_log(b, "dialplan reloaded")
        new_call, new_result = _in_background(scenario, b, tmp_path)
        new_call.join(30)
        # A broken edit is refused with its file:line, and the version in service stays.
        plan.write_text(
            "name: broken\nstart: hold\nsteps:\n  hold:\n    play: short.wav\n    goto: nowhere\n",
            encoding="utf-8",
        )
        b.proc.send_signal(signal.SIGHUP)
        _wait_for_log(b, "dialplan reload refused")
        after_call, after_result = _in_background(scenario, b, tmp_path)
        after_call.join(30)
        old_call.join(30)
        for result in (*old_result, *new_result, *after_result):
            assert result.returncode == 0, result.output + b.log()
        records = b.wait_cdrs(3)
        (refused,) = _events(b, "dialplan reload refused")
    versions = sorted((r["start"], r["dialplan_version"]) for r in records)
    assert [v for _, v in versions] == [first, second, second], records
    assert first != second
    problems = refused["problems"]
    assert isinstance(problems, list) and any(f"{plan}:6:" in p and "nowhere" in p for p in problems), (
        problems
    )


def test_a_changed_file_is_reloaded_without_a_signal(tmp_path: Path) -> None:
    _silence(tmp_path / "short.wav", 0.3)
    plan = tmp_path / "flow.yaml"
    _plan(plan, "first", "short.wav")
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), dialplan_watch_interval=0.2) as b:
        time.sleep(0.5)  # the watcher has read the file's first stamp
        second = _plan(plan, "second, with a longer name", "short.wav")
        _wait_for_log(b, "dialplan reloaded")
        scenario = scenario_with("wait_for_bye.xml", tmp_path, WAIT_BYE="30000")
        call, result = _in_background(scenario, b, tmp_path)
        call.join(30)
        assert result[0].returncode == 0, result[0].output + b.log()
        (record,) = b.wait_cdrs(1)
    assert record["dialplan_version"] == second
