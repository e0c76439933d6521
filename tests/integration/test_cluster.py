"""A cluster on loopback: Kamailio's dispatcher (deploy/kamailio/kamailio.cfg, unchanged) in front of
`ivr serve` bridges, calls placed by sipp through it: spread by load, one bridge drained mid-run, CDRs in a
throwaway PostgreSQL; failover from a bridge that never answers; what the proxy refuses to route."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, SIPP_DIR, RunningBridge, bridge, free_port
from tests.postgres import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.integration

KAMAILIO_CFG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
CALLS = 20
RATE = 4  # new calls per second
HOLD_MS = 3000  # how long each caller stays on before its BYE
DRAIN_AFTER = 6  # calls answered before bridge B is sent SIGTERM
CDR_PASSWORD = "cluster-test"  # of the throwaway PostgreSQL: given to the bridges in IVR_CDR_PASSWORD only


def _require(tool: str) -> str:
    """The cluster test cannot run without its processes: a missing one is a failure, never a skip."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make deb-tools` installs it (Makefile DEB_TOOLS)")
    return path


@dataclass(frozen=True)
class RunningKamailio:
    """A Kamailio dispatcher on loopback, as the test started it."""

    port: int
    ctl: str  # the binrpc socket kamcmd talks to

    def dispatcher_flags(self) -> dict[int, str]:
        """Bridge port -> dispatcher state flags (A active, I inactive, P probing), from `kamcmd`."""
        out = subprocess.run(
            [_require("kamcmd"), "-s", self.ctl, "dispatcher.list"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        flags: dict[int, str] = {}
        uri: str | None = None
        for line in out.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "URI":
                uri = value.strip()
            elif key == "FLAGS" and uri is not None:
                flags[int(uri.rsplit(":", 1)[1])] = value.strip()
                uri = None
        return flags

    def wait_state(self, ports: set[int], state: str, timeout: float = 10.0) -> None:
        """Wait until every bridge of `ports` is in `state` ("A" active, "I" inactive) in the dispatcher."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flags = self.dispatcher_flags()
            if all(flags.get(port, "").startswith(state) for port in ports):
                return
            time.sleep(0.1)
        raise AssertionError(f"bridges {ports} not {state} in the dispatcher: {self.dispatcher_flags()}")


def _final_status(
    port: int, method: str, uri: str, *, max_forwards: int = 70, to_tag: str = "", timeout: float = 2.0
) -> int | None:
    """Send one request over UDP to the proxy on `port`; the status of its final response, None if none."""
    branch = "z9hG4bK" + uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        s.settimeout(timeout)
        request = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            f"From: <sip:probe@127.0.0.1:{local}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{uri}>{to_tag and ';tag=' + to_tag}\r\nCall-ID: {uuid.uuid4().hex}\r\n"
            f"CSeq: 1 {method}\r\nContact: <sip:probe@127.0.0.1:{local}>\r\n"
            f"Max-Forwards: {max_forwards}\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(request.encode(), ("127.0.0.1", port))
        while True:
            try:
                reply = s.recv(65535).decode(errors="replace")
            except OSError:
                return None
            status = int(reply.split(" ", 2)[1])
            if status >= 200:
                return status


def _options_ok(port: int) -> bool:
    """True when a SIP OPTIONS to the proxy itself gets a 200 (Kamailio is up and routing)."""
    return _final_status(port, "OPTIONS", f"sip:127.0.0.1:{port}", timeout=0.5) == 200


@contextlib.contextmanager
def kamailio(
    tmp: Path, bridges: list[int], *, flags: int = 0, defines: tuple[str, ...] = ()
) -> Iterator[RunningKamailio]:
    """deploy/kamailio/kamailio.cfg unchanged, its defines set on the command line for loopback (and
    `defines`, NAME=value); `flags` is each bridge's initial state in the list (0 active, 1 inactive)."""
    binary = _require("kamailio")
    tmp.mkdir(parents=True, exist_ok=True)
    ds_list = tmp / "dispatcher.list"
    ds_list.write_text(
        "".join(
            f"1 sip:127.0.0.1:{port} {flags} 0 duid=bridge{i};maxload=100\n" for i, port in enumerate(bridges)
        ),
        encoding="utf-8",
    )
    port = free_port()
    ctl = f"unix:{tmp / 'kamailio_ctl'}"
    cmd = [
        binary, "-DD", "-E", "-f", str(KAMAILIO_CFG), "-P", str(tmp / "kamailio.pid"), "-Y", str(tmp),
        "-w", str(tmp), "-m", "64", "-M", "8",
        "-A", "LISTEN_ADDR=127.0.0.1", "-A", f"SIP_PORT={port}", "-A", f'DISPATCHER_LIST="{ds_list}"',
        "-A", f'CTL_SOCKET="{ctl}"', "-A", "PING_INTERVAL=1", "-A", "WORKERS=2",
    ]  # fmt: skip
    for define in defines:
        cmd += ["-A", define]
    log_path = tmp / "kamailio.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while not _options_ok(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"kamailio did not start:\n{log_path.read_text(errors='replace')}")
            yield RunningKamailio(port, ctl)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sipp(
    scenario: Path,
    proxy_port: int,
    tmp: Path,
    *,
    calls: int = CALLS,
    rate: int = RATE,
    hold_ms: int = HOLD_MS,
) -> subprocess.Popen[str]:
    cmd = [
        _require("sipp"), "-sf", str(scenario), "-m", str(calls), "-r", str(rate), "-l", str(calls),
        "-d", str(hold_ms), "-nostdin", "-timeout", "60s", "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-mp", str(free_port()), "-s", "1000", "-t", "u1",
        "-trace_logs", "-log_file", str(tmp / "sipp_calls.log"),
        "-trace_err", "-error_file", str(tmp / "sipp_errors.log"),
        f"127.0.0.1:{proxy_port}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)


def _sipp_log(tmp: Path) -> list[list[str]]:
    path = tmp / "sipp_calls.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text(errors="replace").splitlines() if line.strip()]


def _answered(tmp: Path) -> dict[str, int]:
    """Call-ID -> port of the bridge whose 200 answered it, as the caller saw it."""
    return {words[1]: int(words[2]) for words in _sipp_log(tmp) if words[0] == "answered"}


def _drain_started(b: RunningBridge) -> datetime:
    """When bridge `b` logged the start of its drain (its own clock, as its CDR times)."""
    for line in b.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "drain" in str(entry.get("event", "")):
                return datetime.fromisoformat(entry["timestamp"])
    raise AssertionError(f"bridge {b.port} never logged its drain:\n{b.log()}")


def _cdr_rows(pg: PostgresCluster, expected: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The `cdr` table's rows once `expected` of them are complete (the bridges write from a thread)."""
    query = (
        "SELECT json_build_object('call_id', call_id, 'node', node, 'status', status, 'start', start_time, "
        "'end', end_time, 'hangup_cause', hangup_cause, 'answer', record->>'answer') FROM cdr"
    )
    deadline = time.monotonic() + timeout
    while True:
        rows = [json.loads(line) for line in pg.psql(query).splitlines() if line.strip()]
        if sum(row["status"] == "completed" for row in rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_calls_spread_over_two_bridges_and_survive_a_drain(
    tmp_path: Path, mediazen_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = SIPP_DIR / "cluster_call.xml"
    for node in ("a", "b", "b2"):
        (tmp_path / node).mkdir()
    # Both bridges write to one PostgreSQL; the password reaches them only through the environment.
    monkeypatch.setenv("IVR_CDR_PASSWORD", CDR_PASSWORD)
    with (
        postgres_cluster(password=CDR_PASSWORD) as pg,
        bridge(tmp_path / "a", mediazen_url, cdr_url=pg.dsn, node_id="a") as a,
        bridge(tmp_path / "b", mediazen_url, cdr_url=pg.dsn, node_id="b") as b,
        kamailio(tmp_path / "kamailio", [a.port, b.port]) as proxy,
    ):
        proxy.wait_state({a.port, b.port}, "A")
        sipp = _sipp(scenario, proxy.port, tmp_path)
        deadline = time.monotonic() + 30
        while len(_answered(tmp_path)) < DRAIN_AFTER and sipp.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        b.proc.send_signal(signal.SIGTERM)
        # Its keepalives get 503 (or a new INVITE did): Kamailio takes it out of the selection.
        proxy.wait_state({b.port}, "I", timeout=5)
        output, _ = sipp.communicate(timeout=90)
        errors = tmp_path / "sipp_errors.log"
        context = (
            output[-3000:]
            + (errors.read_text(errors="replace")[-5000:] if errors.exists() else "")
            + "\n--- kamailio ---\n"
            + (tmp_path / "kamailio" / "kamailio.log").read_text(errors="replace")[-5000:]
        )
        assert sipp.returncode == 0, context  # every call answered and ended by its caller, none dropped
        # The drained bridge ends by itself once its last call is over (its live calls were let finish).
        assert b.proc.wait(30) == 0, b.log()
        # A bridge started again where the drained one was answers the keepalives with 200 and is back.
        with bridge(tmp_path / "b2", mediazen_url, sip_port=b.port, cdr_url=pg.dsn, node_id="b"):
            proxy.wait_state({a.port, b.port}, "A")
        rows = _cdr_rows(pg, CALLS)

    answered = _answered(tmp_path)
    # sipp's Call-IDs are "<call number>-<its pid>@<local ip>": every one of them was answered and ended.
    placed = {f"{n}-{sipp.pid}@127.0.0.1" for n in range(1, CALLS + 1)}
    assert set(answered) == placed, answered
    ended = {words[1] for words in _sipp_log(tmp_path) if words[0] == "ended"}
    assert ended == placed, "a call was answered but not ended by its caller"
    by_port = {port: {cid for cid, p in answered.items() if p == port} for port in (a.port, b.port)}
    assert by_port[a.port] and by_port[b.port], f"calls not spread over both bridges: {answered}"
    # One row per call in the shared table, from the bridge the caller saw answer, complete, ended by the
    # caller's BYE (none hung up by the drain, none left open).
    assert sorted(row["call_id"] for row in rows) == sorted(placed), rows
    nodes = {"a": by_port[a.port], "b": by_port[b.port]}
    for row in rows:
        assert row["call_id"] in nodes[row["node"]], row
        assert row["status"] == "completed" and row["hangup_cause"] == "remote-bye", row
        assert row["answer"] is not None and row["end"] is not None, row
    # No call was admitted by B once it drained; the calls that came after all went to A.
    drain = _drain_started(b)
    starts = {row["call_id"]: datetime.fromisoformat(row["start"]) for row in rows}
    assert all(starts[cid] < drain for cid in by_port[b.port]), (drain, rows)
    after = [cid for cid, start in starts.items() if start > drain]
    assert set(after) <= by_port[a.port]
    assert len(after) >= CALLS // 2, (drain, sorted(starts.values()))


def test_a_bridge_that_does_not_answer_is_failed_over(tmp_path: Path, mediazen_url: str) -> None:
    """A stalled bridge (a socket that reads and never replies): its calls go to the other after FR_TIMER."""
    (tmp_path / "a").mkdir()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stalled,
        bridge(tmp_path / "a", mediazen_url) as a,
    ):
        stalled.bind(("127.0.0.1", 0))
        with kamailio(tmp_path / "kamailio", [stalled.getsockname()[1], a.port]) as proxy:
            # Two calls at once: with equal loads the second goes to the other bridge, so one of them meets
            # the stalled one, whichever the dispatcher picks first.
            sipp = _sipp(SIPP_DIR / "cluster_call.xml", proxy.port, tmp_path, calls=2, rate=10, hold_ms=500)
            output, _ = sipp.communicate(timeout=60)
            assert sipp.returncode == 0, output[-3000:]
            stalled.setblocking(False)
            seen: list[bytes] = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    seen.append(stalled.recv(65535))
    assert any(datagram.startswith(b"INVITE ") for datagram in seen), "no INVITE reached the stalled bridge"
    assert set(_answered(tmp_path).values()) == {a.port}


def test_proxy_routes_only_calls_to_the_service(tmp_path: Path) -> None:
    """No open relay, loop protection, and 503 when no bridge is up (the only one is down from the start)."""
    down = free_port()  # nothing listens there
    with kamailio(tmp_path, [down], flags=1) as proxy:
        me = f"127.0.0.1:{proxy.port}"
        assert _final_status(proxy.port, "OPTIONS", f"sip:{me}") == 200  # a trunk's keepalive
        assert _final_status(proxy.port, "INVITE", "sip:1000@198.51.100.7") == 403  # another domain
        assert _final_status(proxy.port, "INVITE", f"sip:1000@{me}", max_forwards=0) == 483
        assert _final_status(proxy.port, "REGISTER", f"sip:{me}") == 405
        # In-dialog, but along no route this proxy recorded.
        assert _final_status(proxy.port, "BYE", f"sip:1000@{me}", to_tag="abc") == 404
        assert _final_status(proxy.port, "INVITE", f"sip:1000@{me}") == 503  # no bridge active
    # Callers only from the trunks' networks: loopback is not one of them here.
    with kamailio(
        tmp_path / "trunks", [down], defines=('TRUNK_SUBNETS="198.51.100.0/24,203.0.113.0/24"',)
    ) as proxy:
        assert _final_status(proxy.port, "INVITE", f"sip:1000@127.0.0.1:{proxy.port}") == 403
