"""`kill -9` of a real `ivr serve` mid-call: its embedded emulator dies with it and frees its port, the call
in progress keeps its CDR row, and the restarted bridge marks that row interrupted and takes new calls."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivr.config import EMBEDDED
from tests.integration.harness import (
    SIPP_SHARE,
    bridge,
    free_port,
    require_tool,
    run_sipp,
    scenario_with,
)

pytestmark = pytest.mark.integration
CALLS = 3  # in progress at the kill


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting to be reaped (it holds no ports then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def port_free(port: int) -> bool:
    # As the next emulator binds it: asyncio servers set SO_REUSEADDR, so TIME_WAIT leftovers do not count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cdr_rows(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM cdr ORDER BY start_time")]


def wait_for(what: str, check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def start_long_calls(tmp: Path, bridge_port: int, calls: int) -> subprocess.Popen[str]:
    """sipp places `calls` calls at once, each waiting up to a minute for a BYE that never comes (the bridge
    dies)."""
    scenario = scenario_with("wait_for_bye.xml", tmp, WAIT_BYE="60000")
    cmd = [
        "sipp", "-sf", str(scenario), "-m", str(calls), "-l", str(calls), "-r", "20",
        "-nostdin", "-timeout", "70s",
        "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()),
        f"127.0.0.1:{bridge_port}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=tmp)


def test_kill_9_mid_call_frees_the_emulator_port_and_the_restart_marks_the_call_interrupted(
    tmp_path: Path,
) -> None:
    require_tool("sipp")
    port, emulator_port = free_port(), free_port()
    settings = {"sip_port": port, "emulator_port": emulator_port, "rtp_timeout": 60.0}
    db = tmp_path / "cdr.sqlite3"
    with bridge(tmp_path, EMBEDDED, **settings) as first:
        [emulator] = children(first.proc.pid)
        assert "ivr.emulators.mediazen" in Path(f"/proc/{emulator}/cmdline").read_text()
        assert not port_free(emulator_port)
        sipp = start_long_calls(tmp_path, port, CALLS)
        try:
            wait_for("the calls' rows, written as they start", lambda: len(cdr_rows(db)) == CALLS)
            assert [(r["status"], r["end_time"]) for r in cdr_rows(db)] == [("active", None)] * CALLS
            first.proc.kill()  # SIGKILL: no handler runs, no cleanup, no CDR written at the end
            first.proc.wait(10)
            wait_for("the emulator to die with the bridge", lambda: not alive(emulator), timeout=10)
            wait_for("the emulator's port to be free", lambda: port_free(emulator_port), timeout=10)
        finally:
            sipp.kill()
            sipp.wait(10)
    open_rows = cdr_rows(db)
    assert [r["status"] for r in open_rows] == ["active"] * CALLS  # still open: nobody has looked yet

    with bridge(tmp_path, EMBEDDED, **settings) as second:  # the same node: same host and SIP port
        found = cdr_rows(db)  # every call in progress at the kill is there, marked interrupted
        assert [r["channel_id"] for r in found] == [r["channel_id"] for r in open_rows]
        assert {(r["status"], r["hangup_cause"]) for r in found} == {("interrupted", "interrupted")}
        assert all(r["end_time"] is not None for r in found)
        assert "calls interrupted by a crash" in second.log()
        # A new call works, and completes its own row.
        scenario = scenario_with("dtmf_balance.xml", tmp_path, DTMF=str(SIPP_SHARE / "dtmf_2833_1.pcap"))
        result = run_sipp(scenario, second.port, tmp_path)
        assert result.returncode == 0, result.output + second.log()
        records = second.wait_cdrs(CALLS + 1)
    assert [r["hangup_cause"] for r in records[:CALLS]] == ["interrupted"] * CALLS
    assert records[0]["end"] == found[0]["end_time"]
    assert records[-1]["route"][-1] == "balance<dtmf:1" and records[-1]["hangup_cause"] == "normal", records
    statuses = [r["status"] for r in cdr_rows(db)]
    assert sorted(statuses) == ["completed"] + ["interrupted"] * CALLS


CHILD = (
    "from ivr.emulators.lifeline import die_with_parent; import time;"
    " print(die_with_parent(), flush=True); time.sleep(60)"
)
PARENT = f"""
import os, subprocess, sys
env = {{**os.environ, "IVR_PARENT_PID": str(os.getpid())}}
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], env=env, stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
child.wait()
"""


def test_a_child_dies_when_its_parent_is_killed_with_sigkill() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid, armed = parent.stdout.readline().split()
    assert armed == "True" and alive(int(pid))
    parent.kill()
    parent.wait(10)
    wait_for("the child to die with its parent", lambda: not alive(int(pid)), timeout=10)


def test_a_child_whose_parent_died_before_it_asked_exits_at_once() -> None:
    # IVR_PARENT_PID names a process that is not (any more) our parent: the death signal would never come.
    env = {**os.environ, "IVR_PARENT_PID": "999999999"}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "")
    alone = subprocess.run(
        [sys.executable, "-c", CHILD.replace("time.sleep(60)", "pass")],
        env={k: v for k, v in os.environ.items() if k != "IVR_PARENT_PID"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (alone.returncode, alone.stdout) == (0, "False\n")  # not started by a bridge: nothing to do
