"""A bridge whose event loop lags refuses new calls with 503 + Retry-After, keeps the calls it has, and takes
calls again once the loop keeps time (`overload_lag`, ivr/overload.py).

The lag is real: the bridge process is stopped and continued (SIGSTOP/SIGCONT) over and over, so its timers
run late by as much as a loop far past its capacity makes them."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import bridge, run_sipp, scenario_with
from tests.integration.test_drain import _first_line_and_retry_after, _in_background, _wait_for_log
from tests.integration.test_sip_attacks import NO_ASR, hold_dialplan, invite, options, udp_exchange

pytestmark = pytest.mark.integration


def _stall(pid: int, stop: threading.Event) -> None:
    """Stop the process 150 ms of every 200 ms: each of its timers runs up to 150 ms late."""
    while not stop.is_set():
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.15)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)


def test_a_lagging_loop_refuses_new_calls_keeps_its_call_and_recovers(tmp_path: Path) -> None:
    plan = hold_dialplan(tmp_path, 20.0)
    with bridge(tmp_path, NO_ASR, dialplan=str(plan), overload_lag=0.05, busy_retry_after=7) as b:
        ongoing, results = _in_background(
            scenario_with("hold_then_bye.xml", tmp_path, HOLD="6000"), b, tmp_path
        )
        _wait_for_log(b, "answered")
        (ok,) = udp_exchange(b.port, options(), source="127.0.0.1", listen=0.5)
        assert _first_line_and_retry_after(ok)[0] == "SIP/2.0 200 OK"
        stop = threading.Event()
        staller = threading.Thread(target=_stall, args=(b.proc.pid, stop))
        staller.start()
        try:
            _wait_for_log(b, "overloaded: new calls get 503")
            replies = udp_exchange(b.port, invite("while-lagging"), source="127.0.0.1", listen=1.5)
            assert [_first_line_and_retry_after(r) for r in replies] == [("SIP/2.0 503 Overloaded", "7")]
            (probe,) = udp_exchange(b.port, options(), source="127.0.0.1", listen=1.0)
            assert _first_line_and_retry_after(probe) == ("SIP/2.0 503 Overloaded", "7")
        finally:
            stop.set()
            staller.join()
            os.kill(b.proc.pid, signal.SIGCONT)
        _wait_for_log(b, "no longer overloaded")
        after = run_sipp(scenario_with("hold_then_bye.xml", tmp_path, HOLD="500"), b.port, tmp_path)
        assert after.returncode == 0, after.output + b.log()
        ongoing.join(30)
        (first,) = results
        assert first.returncode == 0, (
            first.output + b.log()
        )  # the call taken before the lag went on to its BYE
        cdrs = b.wait_cdrs(2)
    assert sorted(c["hangup_cause"] for c in cdrs) == ["remote-bye", "remote-bye"], cdrs
    assert "while-lagging" not in {c["call_id"] for c in cdrs}  # refused statelessly: no call, no CDR
