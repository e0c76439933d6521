"""`ivr serve | check | emulate`: parses arguments and wires the parts together, nothing else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from ivr.config import EMBEDDED, Settings, load_settings
from ivr.dialplan.loader import DialplanError, load_dialplan, validate_only
from ivr.embedded import EMULATOR_MODULES, EmbeddedEmulator
from ivr.observability import configure_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ivr", description="SIP/RTP IVR bridge")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bridge")
    serve.add_argument("--config", type=Path, help="settings YAML (IVR_* environment variables override it)")
    serve.add_argument("--host", dest="sip_host", help="SIP bind address (default 127.0.0.1)")
    serve.add_argument("--port", dest="sip_port", type=int, help="SIP port, UDP and TCP (default 5060)")
    serve.add_argument("--dialplan", type=Path, help="dialplan YAML (default: the bundled demo)")
    serve.add_argument("--log-format", choices=["console", "json"])
    check = sub.add_parser("check", help="validate a dialplan; prints file:line errors")
    check.add_argument("dialplan", type=Path)
    emulate = sub.add_parser("emulate", help="run a local vendor emulator")
    emulate.add_argument("vendor", choices=sorted(EMULATOR_MODULES))
    emulate.add_argument(
        "args", nargs=argparse.REMAINDER, help="--host H --port N [--phrases FILE]; `--help` for the rest"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.dialplan)
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
    try:
        _run_loop(_serve(settings))
    except DialplanError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _check(path: Path) -> int:
    problems = validate_only(path)
    for line in problems:
        print(line, file=sys.stderr)
    if any(": warning: " not in line for line in problems):
        return 1
    print(f"{path}: ok")
    return 0


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
        bridge = Bridge(settings, dialplan, settings.dialplan)
        await bridge.start()
        print(
            f"\nivr is answering on sip:{settings.contact_host}:{bridge.port} (UDP and TCP) "
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
        await stop.wait()
        await bridge.drain(timeout=30.0)
        await bridge.close()
    finally:
        for emulator in emulators:
            await emulator.stop()


if __name__ == "__main__":
    raise SystemExit(main())
