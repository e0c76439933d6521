"""AmiVoice API WebSocket server, emulated from the vendor documents, with local engines behind it.

`python -m ivr.emulators.amivoice --host H --port N [--phrases F]` (default port 8011) serves
`ws://H:N/v1/` and `ws://H:N/v1/nolog/` (with or without the trailing slash; both behave the same: the
emulator keeps no logs of audio or results). The protocol core is `ivr.emulators.amivoice_protocol`; the
WebSocket layer is `ivr.emulators.wsserver`, lenient enough for AmiVoice's own Wrp Python client, which a
strict server refuses (protocol-notes 2.8).

Connection engines (the `<grammar_file_names>` of the s command) and what answers them here:

| engine | language | local engine |
|---|---|---|
| `-a-general`, `-a-general-input` | ja | the best-effort Japanese matcher of `ivr.emulators.engine` |
| `-a-general-en` | en | pocketsphinx en-us, JSGF of the phrase list |
| `-a-general-ko` | ko | Vosk Korean, grammar of the phrase list |
| `-a-general-zh` | zh | none: `s can't connect to recognizer server (...)` |

Every local engine is a menu matcher over the phrases given with `--phrases`/`--phrase` plus the s command's
`profileWords`, not a dictation engine: it names the closest phrase or nothing. `U` events are sent every
`resultUpdatedInterval` ms of speech but carry no words ("..."): the local engines give no partial hypotheses.
Tokens' `spoken` is the hiragana reading (pykakasi) for Japanese, the written form otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from ivr.emulators import session as shared
from ivr.emulators import wsserver
from ivr.emulators.amivoice_audio import ENGINE_RATE
from ivr.emulators.amivoice_protocol import (
    CANT_CONNECT,
    DEFAULT_NO_COMMUNICATION_TIMEOUT,
    DEFAULT_SILENCE_TIMEOUT,
    ENGINE_LANGUAGES,
    AbortRecognition,
    AmiVoiceServerProtocol,
    AudioReceived,
    CloseConnection,
    EndRequested,
    Event,
    Fault,
    SendText,
    StartCommand,
    StartRequested,
)
from ivr.emulators.engine import LocalEngines
from ivr.emulators.recognizer import GrammarError, RecognizerSession

log = logging.getLogger(__name__)

DEFAULT_PORT = 8011
PATHS = ("/v1/", "/v1", "/v1/nolog/", "/v1/nolog")
# The languages that have a local engine (zh has none; its engine name is answered with the reason).
SERVED_LANGUAGES = {"ja": "ja", "en": "en", "ko": "ko"}
MAX_CHUNK = ENGINE_RATE * 2 // 5  # feed a recognizer that fell behind 200 ms at a time
POLL = 0.5  # s: how often an idle connection looks at its no-communication deadline
FAULTS = (*shared.COMMON_FAULTS, *(f.value for f in Fault if f.value not in shared.COMMON_FAULTS))


@functools.lru_cache(maxsize=1)
def _kakasi() -> object | None:
    try:
        import pykakasi  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        log.warning("pykakasi is not installed: Japanese tokens' spoken form is their written form")
        return None
    return pykakasi.kakasi()  # type: ignore[no-untyped-call, unused-ignore]


@functools.lru_cache(maxsize=4096)
def reading(language: str, written: str) -> str:
    """A token's `spoken` form: hiragana for Japanese (document 001), the written form otherwise."""
    if language != "ja":
        return written
    kakasi = _kakasi()
    if kakasi is None:
        return written
    parts = kakasi.convert(written)  # type: ignore[attr-defined]
    return "".join(str(p["hira"]) for p in parts) or written


async def _guarded(work: Coroutine[Any, Any, None]) -> None:
    """Run a connection's side task; a closed connection ends it quietly, anything else is logged."""
    try:
        await work
    except wsserver.ConnectionClosed:
        pass
    except Exception:
        log.exception("amivoice session task failed")


class _Connection:
    """One WebSocket connection: the core's events carried out, one recognition worker per session."""

    def __init__(self, ws: wsserver.WebSocketConnection, engines: LocalEngines, options: Options) -> None:
        self.ws = ws
        self.engines = engines
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
        self.core = AmiVoiceServerProtocol(
            appkey=options.appkey,
            silence_timeout=options.silence_timeout,
            no_communication_timeout=options.no_communication_timeout,
            connection_id=f"{stamp}/emulator@{uuid.uuid4().hex[:24]}",
            reading=reading,
            now=time.monotonic(),
            fault=options.fault,
        )
        self.audio: shared.AudioQueue | None = None
        self.worker: asyncio.Task[None] | None = None
        self.starting: asyncio.Task[None] | None = None
        self.closing = False

    async def run(self) -> None:
        try:
            while not self.closing:
                # The deadline moves when a side task changes the state (a session accepted, a flush done):
                # look again at least every POLL seconds. recv() is cancel-safe.
                deadline = self.core.deadline
                wait = POLL if deadline is None else min(POLL, max(0.0, deadline - time.monotonic()))
                try:
                    message = await asyncio.wait_for(self.ws.recv(), wait)
                except TimeoutError:
                    await self.handle(self.core.timeout(time.monotonic()))
                    continue
                if isinstance(message, str):
                    await self.handle(self.core.receive_text(message, time.monotonic()))
                else:
                    await self.handle(self.core.receive_bytes(message, time.monotonic()))
        except wsserver.ConnectionClosed:
            pass
        finally:
            for task in (self.starting, self.worker):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, wsserver.ConnectionClosed):
                        await task

    async def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SendText):
                await self.ws.send(event.text)
            elif isinstance(event, AudioReceived):
                if self.audio is not None:
                    self.audio.put(event.pcm)
            elif isinstance(event, StartRequested):
                # Building a grammar can take a while (pronunciations, a decoder): off this loop iteration,
                # so timeouts and other frames keep flowing; the core buffers audio meanwhile.
                self.starting = asyncio.create_task(_guarded(self.start(event.command)))
            elif isinstance(event, EndRequested):
                if self.audio is not None:
                    self.audio.close()
            elif isinstance(event, AbortRecognition):
                self.stop_worker()
            elif isinstance(event, CloseConnection):
                self.closing = True
                await self.ws.close(event.code)

    def stop_worker(self) -> None:
        # The worker itself may be the one handling the abort: it then ends on its own (see recognize).
        if self.worker is not None and self.worker is not asyncio.current_task():
            self.worker.cancel()
        self.worker, self.audio = None, None

    async def start(self, command: StartCommand) -> None:
        session = await self.open_session(command)
        if isinstance(session, str):
            await self.handle(self.core.reject_start(session))
            return
        self.audio = shared.AudioQueue(MAX_CHUNK)
        self.worker = asyncio.create_task(self.recognize_guarded(session, self.audio))
        await self.handle(self.core.accept_start())

    async def open_session(self, command: StartCommand) -> RecognizerSession | str:
        """A recognizer session for the s command, or the s error text."""
        language = command.language
        engine = self.engines.get(language) if language in SERVED_LANGUAGES else None
        if engine is None:
            return f"{CANT_CONNECT} ({self.engines.why_unavailable(language)})"
        grammar: str | None = None
        if command.profile_words:
            words = [w.written for w in command.profile_words]
            grammar = "\n".join(dict.fromkeys([*engine.phrases, *words]))
        try:
            if grammar is not None:
                await engine.load_grammar(grammar)
            return engine.new_session(ENGINE_RATE, grammar=grammar)
        except GrammarError as exc:
            return f"{CANT_CONNECT} ({exc})"

    async def recognize_guarded(self, session: RecognizerSession, audio: shared.AudioQueue) -> None:
        try:
            await self.recognize(session, audio)
        except (wsserver.ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            # A broken engine must not leave the client waiting for an A or an e that never comes.
            log.exception("recognizer failed")
            if self.audio is audio:
                self.worker, self.audio = None, None
            await _guarded(self.handle(self.core.recognizer_failed()))

    async def recognize(self, session: RecognizerSession, audio: shared.AudioQueue) -> None:
        """Feed the session's audio to the engine; the only sender of its events, so they stay in order."""
        fed = 0.0
        while True:
            await audio.wake.wait()
            audio.wake.clear()
            while audio.pending:
                chunk = audio.take()
                events = await session.feed(chunk)
                fed += len(chunk) / (2 * ENGINE_RATE)
                await self.handle(self.core.recognized(events, fed))
                if self.audio is not audio:  # the session was ended (silence timeout)
                    return
            if audio.closed:
                events = await session.flush()
                await self.handle(self.core.recognized(events, fed))
                if self.audio is audio:  # not yet replaced by the next session's
                    self.worker, self.audio = None, None
                await self.handle(self.core.finished())
                return


class Options:
    """Per-connection settings from the command line."""

    def __init__(
        self,
        appkey: str | None = None,
        silence_timeout: float = DEFAULT_SILENCE_TIMEOUT,
        no_communication_timeout: float = DEFAULT_NO_COMMUNICATION_TIMEOUT,
        fault: str | None = None,
    ) -> None:
        self.appkey = appkey
        self.silence_timeout = silence_timeout
        self.no_communication_timeout = no_communication_timeout
        self.unauthorized = fault == shared.Fault.UNAUTHORIZED  # the handshake's, not the core's
        self.fault = Fault(fault) if fault is not None and not self.unauthorized else None


def connection_handler(engines: LocalEngines, options: Options) -> wsserver.Handler:
    """The per-connection coroutine `wsserver.serve()` runs."""

    async def handle(ws: wsserver.WebSocketConnection) -> None:
        await _Connection(ws, engines, options).run()

    return handle


async def serve(
    host: str,
    port: int,
    engines: LocalEngines,
    options: Options | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve AmiVoice sessions on /v1/ and /v1/nolog/ until cancelled."""
    options = options or Options()
    refuse = 401 if options.unauthorized else None
    await wsserver.serve(
        connection_handler(engines, options), host, port, paths=PATHS, ready=ready, refuse=refuse
    )


DESCRIPTION = (
    "AmiVoice API WebSocket emulator (s/p/e over ws://HOST:PORT/v1/ and /v1/nolog/) backed by local menu"
    " matchers, not AmiVoice's dictation engines: -a-general/-a-general-input (Japanese) on a best-effort"
    " pocketsphinx matcher with an English acoustic model (bench/phonetic_accuracy.py on 378 espeak-ng clips"
    " through µ-law: 83 % of 8 menu phrases right, false accepts 0 % of far off-menu speech and 11 % of near"
    " misses); -a-general-en on pocketsphinx en-us;"
    " -a-general-ko on Vosk Korean. Each recognizes only the --phrases/--phrase list plus the s command's"
    " profileWords."
)


def _parser() -> argparse.ArgumentParser:
    parser = shared.argument_parser("amivoice", DESCRIPTION, port=DEFAULT_PORT, faults=FAULTS)
    parser.add_argument("--appkey", help="require this authorization= value in every s command")
    parser.add_argument(
        "--silence-timeout",
        type=float,
        default=DEFAULT_SILENCE_TIMEOUT,
        metavar="SECONDS",
        help="seconds of audio without speech that end a session with 'p can't feed ...' (default 600)",
    )
    parser.add_argument(
        "--no-communication-timeout",
        type=float,
        default=DEFAULT_NO_COMMUNICATION_TIMEOUT,
        metavar="SECONDS",
        help="seconds without a frame from the client before 'e timeout occurred ...' and close (default 60)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`ivr emulate amivoice`: load the engines, serve until SIGTERM/SIGINT; the exit status."""
    args = _parser().parse_args(argv)
    options = Options(args.appkey, args.silence_timeout, args.no_communication_timeout, args.fault)

    def server(engines: LocalEngines) -> shared.Server:
        for name, language in ENGINE_LANGUAGES.items():
            if engines.get(language) is None:
                log.info("%s (%s): not served: %s", name, language, engines.why_unavailable(language))
        if engines.get("ja") is not None:
            _kakasi()  # load the reading dictionary (about 1 s) before serving, not in the first session
        return functools.partial(serve, engines=engines, options=options)

    return shared.run_emulator(
        args, vendor="amivoice", languages=SERVED_LANGUAGES, server=server, path=PATHS[0]
    )


if __name__ == "__main__":
    raise SystemExit(main())
