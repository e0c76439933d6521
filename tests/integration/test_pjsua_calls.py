"""Calls from a real PJSIP softphone (pjsua2-python, PyPI) against `ivr serve`: hold and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import bridge

pytestmark = pytest.mark.integration

CALLER = Path(__file__).with_name("pjsua_caller.py")


def pjsua(target: str, script: str, timeout: float = 90) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, str(CALLER), target, script], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_held_call_is_not_reprompted_or_transferred_and_resumes_where_it_was(
    tmp_path: Path, mediazen_url: str
) -> None:
    # Held for 16 s: without hold, the greeting's two no-input timeouts would have sent it to an agent.
    with bridge(tmp_path, mediazen_url) as b:
        events = pjsua(
            f"sip:1000@127.0.0.1:{b.port}",
            "wait 2; hold; wait 16; unhold; wait 2; dtmf 1; until-disconnected 20",
        )
        (cdr,) = b.wait_cdrs(1)
    assert {"event": "media", "status": 2} in events, events  # pjsua saw its hold answered
    assert {"event": "disconnected", "value": True} in events, events  # the bridge hung up after the balance
    assert cdr["route"] == ["greeting<start", "greeting<resumed", "balance<dtmf:1"], cdr
    assert cdr["transfer_target"] is None and cdr["hangup_cause"] == "normal", cdr
