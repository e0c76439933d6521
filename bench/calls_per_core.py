"""Calls per core (issue 10): real SIP calls streaming marked G.711 at real time through the bridge to a
counting recognizer sink, side by side with the receive-only limit and a pyVoIP baseline, at N calls.

Every packet carries a marker (call, sequence, send time) that survives the bridge's G.711 decode, so the
sink counts loss and times each WebSocket message (arrival minus the send time of the last packet in it)
without the bridge's own numbers. Recognition is not measured: the sink recognizes nothing. CPU comes from
/proc/<pid>/stat over the steady window; the system under test runs on CPU 1, generator and sink on CPU 0.

Run: python bench/calls_per_core.py                      (N = 500, 1000, 2000, 3000; about 8 minutes)
     python bench/calls_per_core.py --calls 500 --seconds 10   (a quick run)
     python bench/calls_per_core.py --self-test           (the marker codec's round trip only)
Writes var/bench/calls_per_core-<time>.json and var/bench/calls_per_core.json (the latest).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import marker  # noqa: E402
from bench.load.procs import Child, core_busy, cpu_seconds, free_port, rss_kib, sip_ready  # noqa: E402

DIALPLAN = ROOT / "bench" / "calls_dialplan.yaml"
SYSTEMS = ("limit", "pyvoip", "ivr")
# Media ports stay below Linux's ephemeral range (32768+), where WebSocket clients and the load take theirs.
DIRECT_BASE = 12000  # the limit's and the baseline's per-call ports: DIRECT_BASE + call index
BRIDGE_CPU, LOAD_CPU = 1, 0


def bridge_config(
    path: Path,
    sip_port: int,
    rtp_low: int,
    sink_port: int,
    calls: int,
    *,
    batch_receive: bool = True,
    sparse_silence: bool = False,
) -> Path:
    """Settings for one `ivr serve` under load: every admission limit opened up past the load's own rate."""
    config = {
        "rtp_batch_receive": batch_receive,
        "rtp_sparse_silence": sparse_silence,
        "sip_host": "127.0.0.1",
        "sip_port": sip_port,
        "rtp_port_low": rtp_low,
        "rtp_port_high": rtp_low + 9998,
        "asr_urls": {"mediazen": f"ws://127.0.0.1:{sink_port}"},
        "dialplan": str(DIALPLAN),
        "max_calls": calls + 2000,  # the load, the churn of the setup test and the test calls
        "max_unacked_per_source": 5000,  # the load comes from one source
        "call_rate_per_source": 5000.0,
        "call_burst_per_source": 5000,
        "drain_timeout": 1.0,
        "dialplan_watch_interval": 0,
        "rtp_timeout": 60.0,
        "cdr_url": f"jsonl:///{path.parent / f'cdr-{sip_port}.jsonl'}",
        "log_format": "json",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


def _runnable() -> int:
    """Threads runnable right now (/proc/stat procs_running, this process included): the load average lags
    a minute behind, which after the pyVoIP baseline's thousands of threads says nothing of the next run."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("procs_running "):
            return int(line.split()[1])
    return 0


def _wait_quiet(most: float = 30.0) -> int:
    """Wait (at most `most` s) until the machine is idle but for this process, so one run cannot load the
    next; the runnable count seen last, for the notes."""
    quiet, deadline = 0, time.monotonic() + most
    seen = _runnable()
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.5)
        seen = _runnable()
        quiet = quiet + 1 if seen <= 2 else 0
    return seen


def run_point(
    system: str, calls: int, args: argparse.Namespace, out_dir: Path, churn: float = 0.0
) -> dict[str, Any]:
    """One system at one N: start it, load it, measure the steady window, stop everything."""
    name = f"{system}-{calls}" + (f"-churn{int(churn)}" if churn else "")
    run_dir = out_dir / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _env()
    children: list[Child] = []
    row: dict[str, Any] = {"system": system, "calls": calls, "churn_rate": churn}
    try:
        sink = None
        window_file = run_dir / "window.json"
        window_file.unlink(missing_ok=True)
        sink_port = free_port()
        if system != "limit":
            sink = Child(
                "sink",
                [
                    "-m",
                    "bench.load.sink",
                    "--port",
                    str(sink_port),
                    "--out",
                    str(run_dir / "sink.json"),
                    "--window-file",
                    str(window_file),
                ],
                LOAD_CPU,
                run_dir,
                env,
            )
            children.append(sink)
            if sink.wait_line("sink ready", 20) is None:
                raise RuntimeError("the sink did not start")
        targets: list[Child] = []
        gen_args: list[list[str]] = []
        # No call setup to pace in direct mode (the limit, pyVoIP): its streams start fast.
        common = [
            "--calls",
            str(calls),
            "--seconds",
            str(args.seconds),
            "--ramp",
            str(max(args.ramp, 1000.0)),
        ]
        if system == "limit":
            targets.append(
                Child(
                    "limit",
                    [
                        "-m",
                        "bench.load.limit",
                        "--base",
                        str(DIRECT_BASE),
                        "--calls",
                        str(calls),
                        "--out",
                        str(run_dir / "limit.json"),
                    ],
                    BRIDGE_CPU,
                    run_dir,
                    env,
                )
            )
            gen_args.append(["--mode", "direct", "--direct-base", str(DIRECT_BASE), *common])
        elif system == "pyvoip":
            targets.append(
                Child(
                    "pyvoip",
                    [
                        "-m",
                        "bench.load.pyvoip_baseline",
                        "--base",
                        str(DIRECT_BASE),
                        "--calls",
                        str(calls),
                        "--asr",
                        f"ws://127.0.0.1:{sink_port}",
                        "--out",
                        str(run_dir / "pyvoip.json"),
                    ],
                    BRIDGE_CPU,
                    run_dir,
                    env,
                )
            )
            gen_args.append(["--mode", "direct", "--direct-base", str(DIRECT_BASE), *common])
        else:
            bridges = 2 if system == "ivr-x2" else 1
            for b in range(bridges):
                port = free_port()
                cpu = BRIDGE_CPU if bridges == 1 else b
                config = bridge_config(
                    run_dir / f"bridge{b}.json",
                    port,
                    10000 + 10000 * b,
                    sink_port,
                    calls,
                    batch_receive=not args.transport_receive,
                    sparse_silence=args.sparse_silence,
                )
                targets.append(
                    Child(f"bridge{b}", ["-m", "ivr", "serve", "--config", str(config)], cpu, run_dir, env)
                )
                per = calls // bridges
                gen_args.append(
                    [
                        "--mode",
                        "sip",
                        "--target",
                        f"127.0.0.1:{port}",
                        "--calls",
                        str(per),
                        "--seconds",
                        str(args.seconds),
                        "--ramp",
                        str(args.ramp / bridges),
                        "--test-calls",
                        str(args.test_calls),
                        "--churn-rate",
                        str(churn),
                        *(["--comfort-noise"] if args.comfort_noise else []),
                    ]
                )
            for target, g in zip(targets, gen_args, strict=True):
                if not sip_ready("127.0.0.1", int(g[3].rsplit(":", 1)[1]), 30):
                    raise RuntimeError(f"{target.name} did not answer OPTIONS")
        children.extend(targets)
        for target in targets:
            if system in ("limit", "pyvoip") and target.wait_line("ready", 120 + calls / 20) is None:
                raise RuntimeError(f"{target.name} did not start (collapsed?)")
        time.sleep(1.0)
        rss_idle = sum(rss_kib(t.pid) for t in targets)
        gens = [
            Child(
                f"gen{i}",
                ["-m", "bench.load.generator", *g, "--out", str(run_dir / f"gen{i}.json")],
                LOAD_CPU,
                run_dir,
                env,
            )
            for i, g in enumerate(gen_args)
        ]
        children.extend(gens)
        windows = [gen.wait_line("WINDOW", 60 + calls / args.ramp * 3) for gen in gens]
        if any(w is None for w in windows):
            raise RuntimeError("the generator never reached its steady window (see gen*.log)")
        t0 = max(int(w.split()[1]) for w in windows if w)
        t1 = min(int(w.split()[2]) for w in windows if w)
        if t1 - t0 < min(5, args.seconds):  # one bridge took far longer to ramp up than the other
            raise RuntimeError(f"the generators' steady windows overlap for {t1 - t0} s only")
        watched = {
            "target": [t.pid for t in targets],
            "gen": [g.pid for g in gens],
            "sink": [sink.pid] if sink else [],
        }
        _sleep_until(t0)
        before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in watched.items()}
        cores0 = core_busy()
        row["loadavg"] = os.getloadavg()[0]
        wall0 = time.monotonic()
        _sleep_until(t1)
        after = {k: sum(cpu_seconds(p) for p in pids) for k, pids in watched.items()}
        wall = time.monotonic() - wall0
        cores1 = core_busy()
        # How busy each core was, whoever used it: on a shared machine, the rest is other people's work.
        row["core_busy_pct"] = {
            core: (cores1[core][0] - cores0[core][0]) / max(1, cores1[core][1] - cores0[core][1]) * 100
            for core in cores1
        }
        rss_load = sum(rss_kib(t.pid) for t in targets)
        for gen in gens:
            if gen.wait_line("DONE", 60) is None:
                raise RuntimeError(f"{gen.name} did not finish")
        gen_results = [json.loads((run_dir / f"gen{i}.json").read_text()) for i in range(len(gens))]
        window_file.write_text(json.dumps([t0, t1]))
        for target in targets:
            target.stop()  # before the sink, so that the sink's going away is not counted as a stream failure
        if sink is not None:
            sink.stop()
            row["sink"] = json.loads((run_dir / "sink.json").read_text())
        row["gen"] = gen_results
        # The generators each chose a window; the common one is what every figure covers.
        sent = sum(g["sent_by_second"].get(str(s), 0) for g in gen_results for s in range(t0, t1))
        share = {k: (after[k] - before[k]) / wall * 100 for k in watched}
        row.update(
            window_s=t1 - t0,
            cpu_pct=share["target"] / len(targets),
            cores=len(targets),
            gen_cpu_pct=share["gen"],
            sink_cpu_pct=share["sink"],
            packets_in_window=sent,
            us_per_packet=(after["target"] - before["target"]) / sent * 1e6 if sent else None,
            gen_us_per_packet=(after["gen"] - before["gen"]) / sent * 1e6 if sent else None,
            rss_idle_kib=rss_idle,
            # Per call the system holds: the bridge's refused calls (503 under overload) hold nothing.
            rss_per_call_kib=(rss_load - rss_idle)
            / max(1, sum(g["answered"] for g in gen_results) if system.startswith("ivr") else calls),
            answered=sum(g["answered"] for g in gen_results),
            live_at_end=sum(g["live_at_end"] for g in gen_results),
            statuses=[g["statuses"] for g in gen_results],
            setup_p50_ms=max((g["setup_p50_ms"] or 0) for g in gen_results) or None,
            setup_p99_ms=max((g["setup_p99_ms"] or 0) for g in gen_results) or None,
            send_errors=sum(g["send_errors"] for g in gen_results),
            late_ticks=sum(g["late_ticks"] for g in gen_results),
        )
        if system == "limit":
            received = json.loads((run_dir / "limit.json").read_text())["received"]
            total = sum(g["sent_total"] for g in gen_results)
            row["loss_pct"] = (1 - received / total) * 100 if total else None
        elif "sink" in row:
            marks = row["sink"]["marks_in_window"]
            row["loss_pct"] = (1 - marks / sent) * 100 if sent else None
            row["latency_p50_ms"] = row["sink"]["latency_p50_ms"]
            row["latency_p99_ms"] = row["sink"]["latency_p99_ms"]
        if system == "pyvoip":
            row["pyvoip"] = json.loads((run_dir / "pyvoip.json").read_text())
        if churn:
            row["churn_rate_achieved"] = sum(g["churn_rate_achieved"] for g in gen_results)
            row["churn_setup_p50_ms"] = max((g["churn_setup_p50_ms"] or 0) for g in gen_results) or None
            row["churn_setup_p99_ms"] = max((g["churn_setup_p99_ms"] or 0) for g in gen_results) or None
        tests: dict[str, dict[str, int]] = {}
        for g in gen_results:
            for kind, verdicts in g["test_outcomes"].items():
                for verdict, count in verdicts.items():
                    tests.setdefault(kind, {}).setdefault(verdict, 0)
                    tests[kind][verdict] += count
        row["routing"] = tests
        if row["cpu_pct"] > 0:
            row["calls_per_core"] = calls / (row["cpu_pct"] / 100)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        row["error"] = str(exc)
    finally:
        for child in reversed(children):
            child.stop()
    return row


def _collapsed(row: dict[str, Any]) -> bool:
    """A run that failed, lost more than 5 % of the packets or delivered them a second late (p99)."""
    return "error" in row or (row.get("loss_pct") or 0.0) > 5.0 or (row.get("latency_p99_ms") or 0.0) > 1000


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    limits = {r["calls"]: r.get("calls_per_core") for r in rows if r["system"] == "limit"}
    head = (
        f"{'system':<8} {'N':>5} {'CPU%':>6} {'µs/pkt':>7} {'calls/core':>10} {'vs limit':>8} {'loss%':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'setup p50/p99 ms':>17} {'RSS/call':>9} {'gen CPU%':>8} {'sink%':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['system']:<8} {r['calls']:>5}  failed: {r['error']}")
            continue
        limit = limits.get(r["calls"])
        ratio = r["calls_per_core"] / limit if limit and r.get("calls_per_core") else None
        setup = (
            f"{_fmt(r.get('setup_p50_ms'))}/{_fmt(r.get('setup_p99_ms'))}" if r.get("setup_p50_ms") else "-"
        )
        if r.get("churn_rate"):
            setup = f"{_fmt(r.get('churn_setup_p50_ms'))}/{_fmt(r.get('churn_setup_p99_ms'))}"
        name = r["system"] + ("+setup" if r.get("churn_rate") else "")
        lines.append(
            f"{name:<8} {r['calls']:>5} {_fmt(r['cpu_pct']):>6} {_fmt(r['us_per_packet']):>7} "
            f"{_fmt(r.get('calls_per_core'), '.0f'):>10} {_fmt(ratio, '.2f'):>8} "
            f"{_fmt(r.get('loss_pct'), '.3f'):>7} "
            f"{_fmt(r.get('latency_p50_ms')):>7} {_fmt(r.get('latency_p99_ms')):>7} {setup:>17} "
            f"{_fmt(r['rss_per_call_kib']):>9} {_fmt(r['gen_cpu_pct']):>8} {_fmt(r['sink_cpu_pct']):>6}"
        )
    return "\n".join(lines)


# The issue's targets for the bridge (issue 10), checked on every ivr row.
TARGET_LOSS_PCT, TARGET_P99_MS, TARGET_US_PER_PACKET, TARGET_RSS_KIB = 0.1, 20.0, 8.0, 64.0
TARGET_SETUPS, TARGET_SETUP_P99_MS = 500.0, 50.0


def verdicts(r: dict[str, Any]) -> str:
    """Which of the issue's targets one ivr row meets."""
    checks: list[tuple[str, bool]] = []
    if r.get("churn_rate"):
        achieved = r.get("churn_rate_achieved") or 0.0
        checks.append((f">= {TARGET_SETUPS:.0f} setups/s", achieved >= 0.95 * TARGET_SETUPS))
        p99 = r.get("churn_setup_p99_ms") or 1e9
        checks.append((f"setup p99 <= {TARGET_SETUP_P99_MS:.0f} ms", p99 <= TARGET_SETUP_P99_MS))
    else:
        checks.append((f"loss < {TARGET_LOSS_PCT} %", (r.get("loss_pct") or 0.0) < TARGET_LOSS_PCT))
        checks.append((f"p99 <= {TARGET_P99_MS:.0f} ms", (r.get("latency_p99_ms") or 1e9) <= TARGET_P99_MS))
        us = r.get("us_per_packet") or 1e9
        checks.append((f"<= {TARGET_US_PER_PACKET:.0f} µs/packet", us <= TARGET_US_PER_PACKET))
        checks.append((f"<= {TARGET_RSS_KIB:.0f} KiB/call", r.get("rss_per_call_kib", 1e9) <= TARGET_RSS_KIB))
    routing = r.get("routing") or {}
    wrong = sum(v for outcome in routing.values() for k, v in outcome.items() if k != "right")
    if routing:
        checks.append(("DTMF and speech routed", wrong == 0))
    return ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks)


def notes(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            continue
        busy = ", ".join(f"CPU {c} {v:.0f} %" for c, v in sorted(r.get("core_busy_pct", {}).items()))
        bits = [f"load average {r.get('loadavg', 0):.1f}, cores busy (all processes) {busy}"]
        if "runnable_before" in r:
            bits.append(f"runnable threads before the run {r['runnable_before']}")
        if r["system"].startswith("ivr"):
            refused = {k: v for s in r["statuses"] for k, v in s.items() if k != "200"}
            bits.append(f"answered {r['answered']}/{r['calls']}, live at the end {r['live_at_end']}")
            if refused:
                bits.append(f"refused {refused}")
            sink = r.get("sink", {})
            bits.append(
                f"recognitions joined {sink.get('joins')}, unmarked messages {sink.get('unmarked_messages')}"
            )
            if r["routing"]:
                bits.append("routing " + ", ".join(f"{k}: {v}" for k, v in sorted(r["routing"].items())))
            bits.append("targets: " + verdicts(r))
            if r.get("churn_rate"):
                bits.append(
                    f"setups/s achieved {_fmt(r.get('churn_rate_achieved'))} (asked {r['churn_rate']:.0f})"
                )
        if r["system"] == "pyvoip":
            bits.append(
                f"pyVoIP streams {r['pyvoip']['streams']}, errors {r['pyvoip']['errors']}, "
                f"threads {r['pyvoip']['threads']}"
            )
        if r["send_errors"] or r["late_ticks"]:
            bits.append(f"generator send errors {r['send_errors']}, late ticks {r['late_ticks']}")
        out.append(
            f"  {r['system']} N={r['calls']}{' +setup' if r.get('churn_rate') else ''}: " + "; ".join(bits)
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[500, 1000, 2000, 3000],
        help="comma-separated N (default 500,1000,2000,3000)",
    )
    parser.add_argument("--seconds", type=int, default=15, help="steady window per N (default 15)")
    parser.add_argument("--ramp", type=float, default=150.0, help="calls set up per second while ramping")
    parser.add_argument(
        "--systems",
        type=lambda s: s.split(","),
        default=list(SYSTEMS),
        help="comma-separated, of limit,pyvoip,ivr (default all)",
    )
    parser.add_argument("--test-calls", type=int, default=3, help="speech and DTMF routing test calls, each")
    parser.add_argument(
        "--setup-rate", type=float, default=500.0, help="setups/s of the setup test (0: skip)"
    )
    parser.add_argument("--setup-calls", type=int, default=1000, help="calls streaming during the setup test")
    parser.add_argument(
        "--two-bridges", type=int, default=2000, help="N for two bridges, one per core (0: skip)"
    )
    parser.add_argument(
        "--comfort-noise",
        action="store_true",
        help="the load offers RFC 3389 CN, so the bridge sends CN between prompts, not G.711 silence",
    )
    parser.add_argument(
        "--sparse-silence",
        action="store_true",
        help="no CN offered; ivr sends a G.711 silence frame a second between prompts (rtp_sparse_silence)",
    )
    parser.add_argument(
        "--transport-receive",
        action="store_true",
        help="ivr reads RTP through the event loop's datagram transport, not its batch receiver",
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--report", type=Path, help="print the table of a JSON written before, and exit")
    parser.add_argument("--self-test", action="store_true", help="check the marker codec and exit")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # through the finally clauses: children stopped
    marker.self_test()
    if args.self_test:
        print("marker codec: ok")
        return 0
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print(table(saved["rows"]) + "\n\n" + notes(saved["rows"]))
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # Thousands of sockets per child (the limit, the sink, the baseline): Debian's soft default is 1024.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    collapsed: dict[str, int] = {}
    for calls in args.calls:
        for system in args.systems:
            if system in collapsed:
                rows.append(
                    {
                        "system": system,
                        "calls": calls,
                        "error": f"skipped: collapsed at N={collapsed[system]}",
                    }
                )
                continue
            print(f"... {system} N={calls}", flush=True)
            runnable = _wait_quiet()
            row = run_point(system, calls, args, args.out_dir)
            row["runnable_before"] = runnable
            rows.append(row)
            if system == "pyvoip" and _collapsed(row):
                collapsed[system] = calls  # more calls only take longer to fail, and load the shared machine
    if args.setup_rate > 0 and "ivr" in args.systems:
        print(f"... ivr N={args.setup_calls} + {args.setup_rate:.0f} setups/s", flush=True)
        _wait_quiet()
        rows.append(run_point("ivr", args.setup_calls, args, args.out_dir, churn=args.setup_rate))
    if args.two_bridges > 0 and "ivr" in args.systems:
        print(f"... two bridges, N={args.two_bridges}", flush=True)
        _wait_quiet()
        rows.append(run_point("ivr-x2", args.two_bridges, args, args.out_dir))
    load = os.getloadavg()
    report = (
        f"calls per core: {len(rows)} runs in {time.monotonic() - started:.0f} s, "
        f"steady window {args.seconds} s, "
        f"load average before the last run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
        "system on CPU 1 (ivr-x2: one bridge per core, CPU% per bridge; the generator and the sink"
        " share CPU 0 with one of them); generator and sink on CPU 0.\n"
        "Recognition is not measured: the sink only counts, times and answers the speech test calls.\n"
        + (
            "The load offers RFC 3389 CN: the bridge sends a CN packet a second between prompts.\n"
            if args.comfort_noise
            else "No CN offered; rtp_sparse_silence: a G.711 silence frame a second between prompts.\n"
            if args.sparse_silence
            else "No CN offered: the bridge sends a G.711 silence frame every 20 ms, between prompts.\n"
        )
        + (
            "ivr reads RTP through the event loop's datagram transport (--transport-receive).\n"
            if args.transport_receive
            else "ivr reads RTP with its batch receiver (rtp_batch_receive).\n"
        )
        + "ivr refuses new calls with 503 while its event loop lags over 100 ms (overload_lag).\n"
        "limit: receive-only uvloop, one socket per call (loss over the whole run, no latency);"
        " pyvoip: pyVoIP RTPClient + a forwarding thread per call, no SIP"
        " (see bench/load/pyvoip_baseline.py).\n"
        "calls/core = N / CPU share; latency = sink arrival - send time of the last packet in a 100 ms"
        " message.\n\n" + table(rows) + "\n\n" + notes(rows)
    )
    print(report)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    data = {"args": {k: str(v) for k, v in vars(args).items()}, "loadavg": load, "rows": rows}
    for path in (args.out_dir / f"calls_per_core-{stamp}.json", args.out_dir / "calls_per_core.json"):
        path.write_text(json.dumps(data, indent=1))
    print(f"\nwrote {args.out_dir / f'calls_per_core-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
