"""`ivr serve | check | schema | cdr | test | emulate`: parses arguments and wires the parts, nothing else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ivr import __version__
from ivr.config import BUNDLED_DIALPLAN, EMBEDDED, Settings, load_settings
from ivr.dialplan.loader import DialplanError, load_dialplan
from ivr.dialplan.schema import Dialplan
from ivr.embedded import EMULATOR_MODULES, EmbeddedEmulator
from ivr.gcpolicy import Collector
from ivr.health import HealthServer
from ivr.observability import configure_logging

if TYPE_CHECKING:
    from ivr.server import Bridge


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ivr", description="SIP/RTP IVR bridge")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bridge")
    serve.add_argument("--config", type=Path, help="settings YAML (IVR_* environment variables override it)")
    serve.add_argument("--host", dest="sip_host", help="SIP bind address (default 127.0.0.1)")
    serve.add_argument("--port", dest="sip_port", type=int, help="SIP port, UDP and TCP (default 5060)")
    serve.add_argument("--dialplan", type=Path, help="dialplan YAML (default: the bundled demo)")
    serve.add_argument("--log-format", choices=["console", "json"])
    check = sub.add_parser(
        "check", help="validate dialplans; prints file:line:col: error|warning: message (exit 1 on errors)"
    )
    check.add_argument(
        "paths",
        type=Path,
        nargs="*",
        metavar="PATH",
        help="dialplan files, or folders checked for every dialplan YAML in them; default: the bundled demo",
    )
    check.add_argument(
        "--config", type=Path, help="settings YAML whose asr_urls say which vendors are configured"
    )
    check.add_argument("--json", action="store_true", help="one JSON document with every problem")
    check.add_argument("--verbose", action="store_true", help="also list the YAML files skipped, and why")
    schema = sub.add_parser("schema", help="print the dialplan JSON Schema (for editors and CI validators)")
    schema.add_argument("--output", type=Path, help="write to FILE instead of stdout")
    cdr = sub.add_parser("cdr", help="recent calls from the CDR store; --csv exports every column")
    cdr.add_argument("--config", type=Path, help="settings YAML: its cdr_url (IVR_CDR_URL overrides it)")
    cdr.add_argument("--url", help="the store URL (sqlite:///, postgresql://, jsonl:///), not the settings'")
    cdr.add_argument("--limit", type=int, help="at most N calls, the latest first (table: 20; CSV: all)")
    cdr.add_argument("--since", help="calls started since: 2026-12-01, 2026-12-01T08:00+09:00, 30m, 2h, 7d")
    cdr.add_argument("--csv", action="store_true", help="CSV with every column, the whole record as JSON")
    cdr.add_argument("--output", type=Path, help="write to FILE instead of stdout")
    test = sub.add_parser(
        "test", help="run a dialplan's scripted callers (X.test.yaml beside X.yaml); exit 1 when one fails"
    )
    test.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="case files, dialplans or folders")
    test.add_argument("--jobs", type=int, default=4, help="calls placed at once (default 4)")
    test.add_argument("--json", action="store_true", help="one JSON document: verdicts, traces, coverage")
    test.add_argument("--quiet", action="store_true", help="traces of failed cases only")
    test.add_argument("--workdir", type=Path, help="keep each bridge's settings, log and CDRs here")
    test.add_argument(
        "--bridge", metavar="HOST:PORT", help="call a bridge already running (no CDR: steps are not checked)"
    )
    emulate = sub.add_parser("emulate", help="run a local vendor emulator")
    emulate.add_argument("vendor", choices=sorted(EMULATOR_MODULES))
    emulate.add_argument(
        "args", nargs=argparse.REMAINDER, help="--host H --port N [--phrases FILE]; `--help` for the rest"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
    if args.command == "schema":
        from ivr.dialplan.schema import json_schema_text

        if args.output is None:
            sys.stdout.write(json_schema_text())
        else:
            args.output.write_text(json_schema_text(), encoding="utf-8")
        return 0
    if args.command == "cdr":
        return _cdr(args)
    if args.command == "test":
        return _test(args)
    if args.command == "emulate":
        emulator: Any = importlib.import_module(EMULATOR_MODULES[args.vendor])
        return int(emulator.main(args.args))
    settings = load_settings(
        args.config,
        sip_host=args.sip_host,
        sip_port=args.sip_port,
        dialplan=args.dialplan,
        log_format=args.log_format,
    )
    configure_logging(settings.log_format)
    _raise_descriptor_limit(settings)
    try:
        _run_loop(_serve(settings))
    except DialplanError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _raise_descriptor_limit(settings: Settings) -> None:
    """Each SIP connection, RTP socket and vendor WebSocket is a descriptor: take the soft limit up to the
    hard one (Debian's soft default is 1024), and say so when even that cannot hold the configured caps."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    needed = settings.sip_max_connections + 2 * settings.max_calls + 100
    if soft != resource.RLIM_INFINITY and soft < needed:
        log = structlog.get_logger()
        log.warning("descriptor limit below the configured caps", nofile=soft, needed=needed)


def _cdr(args: argparse.Namespace) -> int:
    from ivr.cdrstore.report import TABLE_LIMIT, fetch, since_bound, write_csv, write_table

    settings = load_settings(args.config)
    configure_logging(settings.log_format)  # to stderr: stdout carries the table or the CSV
    url = args.url or settings.cdr_store_url
    try:
        since = None if args.since is None else since_bound(args.since)
        limit = args.limit if args.limit is not None or args.csv else TABLE_LIMIT
        rows = fetch(url, limit, since, os.environ)
    except Exception as exc:  # a bad URL, a database that cannot be reached: say so, no traceback
        print(f"ivr cdr: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        out = sys.stdout
        if args.output is not None:
            out = stack.enter_context(args.output.open("w", encoding="utf-8", newline=""))
        (write_csv if args.csv else write_table)(rows, out)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ivr.config import vendor_endpoint
    from ivr.dialplan.report import check_paths
    from ivr.dialplan.schema import VENDORS

    paths: list[Path] = args.paths or [BUNDLED_DIALPLAN]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(f"ivr check: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)  # no --config: the defaults (all vendors embedded) and IVR_*
    except Exception as exc:  # an unreadable or invalid settings file is a usage error, not a traceback
        print(f"ivr check: settings {args.config}: {exc}", file=sys.stderr)
        return 2
    configured = {vendor for vendor in VENDORS if vendor_endpoint(settings, vendor) is not None}
    report = check_paths(paths, configured)
    if not report.checked:
        print(
            f"ivr check: no dialplan (a YAML file with steps:) in {', '.join(map(str, paths))}",
            file=sys.stderr,
        )
        return 2
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(report.lines(args.verbose)))
    return 0 if report.ok else 1


def _test(args: argparse.Namespace) -> int:
    from ivr.testing.runner import Runner, UsageError

    bridge = None
    if args.bridge:
        host, _, port = args.bridge.rpartition(":")
        if not host or not port.isdigit():
            print(f"ivr test: --bridge {args.bridge!r}: expected HOST:PORT", file=sys.stderr)
            return 2
        bridge = (host, int(port))
    if args.jobs < 1:
        print("ivr test: --jobs must be at least 1", file=sys.stderr)
        return 2
    configure_logging("console")
    try:
        report = asyncio.run(Runner(args.jobs, bridge, args.workdir).run(args.paths))
    except UsageError as exc:
        print(f"ivr test: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(report.lines(args.quiet)))
    return 0 if report.ok else 1


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    # uvloop receives an RTP packet in ~5 µs, the stock loop in ~33 µs (TOOLBOX.md); stock loop as fallback.
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(settings: Settings) -> None:
    from ivr.server import Bridge

    log = structlog.get_logger()
    dialplan = load_dialplan(settings.dialplan)
    used = dialplan.vendors()
    # Up before the emulators load their models: /healthz answers at once, /readyz is 503 until the bridge is.
    serving: list[Bridge] = []
    health = HealthServer(lambda: bool(serving) and serving[0].ready)
    if settings.metrics_port is not None:
        await health.start(settings.metrics_host, settings.metrics_port)
    emulators = [
        EmbeddedEmulator(
            vendor, "127.0.0.1", settings.emulator_port + i, dialplan.phrases(), dialplan.languages(vendor)
        )
        for i, vendor in enumerate(v for v, url in settings.asr_urls.items() if url == EMBEDDED and v in used)
    ]
    try:
        if emulators:
            log.info("starting embedded emulators (loading recognizer models)", vendors=list(used))
            # Started together: each loads its own models, in its own process.
            await asyncio.gather(*(emulator.start() for emulator in emulators))
        for emulator in emulators:
            settings.asr_urls[emulator.vendor] = emulator.url
        bridge = Bridge(settings, dialplan, settings.dialplan, _same_emulators(emulators, settings))
        await bridge.start()
        serving.append(bridge)
        collector = Collector(bridge.calls)  # the long-lived out of the collector's sight (gcpolicy.py)
        collector.start()
        print(
            f"\nivr is answering on sip:{settings.contact_host}:{bridge.port} (UDP and TCP"
            f"{f'; TLS on port {bridge.sip.tls_port}' if bridge.sip.tls_port else ''}) "
            f"with dialplan {settings.dialplan}.\n"
            f"Call it from any SIP phone or trunk (G.711 PCMU/PCMA), e.g. sip:1000@{settings.contact_host}:"
            f"{bridge.port}\nor with sipp: sipp -sn uac -s 1000 -m 1 {settings.contact_host}:{bridge.port}\n"
            "Ctrl-C drains and stops.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
            loop.add_signal_handler(signal.SIGHUP, bridge.request_reload)
        await stop.wait()
        collector.stop()
        await _drain(bridge, settings.drain_timeout, loop)
        await bridge.close()
    finally:
        await health.close()
        for emulator in emulators:
            await emulator.stop()


def _same_emulators(
    emulators: list[EmbeddedEmulator], settings: Settings
) -> Callable[[Dialplan], str | None]:
    """What keeps a reloaded dialplan from running on the embedded emulators started for the first one: they
    took its phrases and languages at start, and a vendor that had none was never started."""

    def check(dialplan: Dialplan) -> str | None:
        for emulator in emulators:
            if emulator.phrases != dialplan.phrases() or emulator.languages != dialplan.languages(
                emulator.vendor
            ):
                return (
                    f"the embedded {emulator.vendor} emulator serves the phrases and languages it started "
                    "with: restart ivr serve to use the new ones"
                )
        missing = sorted(v for v in dialplan.vendors() if settings.asr_urls.get(v) == EMBEDDED)
        if missing:
            return f"no embedded emulator runs for {', '.join(missing)}: restart ivr serve to start it"
        return None

    return check


async def _drain(bridge: Bridge, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
    """The drain of a first SIGTERM/SIGINT; a second one cuts it short: every call gets its BYE now."""
    again = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, again.set)
    drain = asyncio.ensure_future(bridge.drain(timeout=timeout))
    second = asyncio.ensure_future(again.wait())
    await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
    second.cancel()
    if drain.done():
        return
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    structlog.get_logger().warning("second signal: hanging up every call now", live_calls=len(bridge.calls))
    await bridge.drain(timeout=0, cause="shutdown")


if __name__ == "__main__":
    raise SystemExit(main())
