"""CPQD Speech Server 2.4 (ASR WebSocket API 2.3/2.4) emulated on local engines: `ivr emulate cpqd`.

Written from ../shared/specs/003-cpqd-asr-websocket-2.4.md and protocol-notes.md part 1, never from our
client codec (`ivr.asr`), so that a misreading on either side fails a test instead of passing against itself;
the aim is a local server CPQD's own SDKs (asr-sdk-python, -java, -cpp) use unchanged.

`ivr.emulators.cpqd_protocol` is the sans-I/O core; this module is the asyncio side: a `websockets` server on
the SDKs' paths (`/asr/ws/v3/recognize` of document 003, `/asr/ws/v2/recognize/8k`, `/asr-server/asr`,
`/ws/v1/recognize`; a `/16k` suffix selects 16 kHz), optional HTTP Basic auth on the upgrade, an HTTP status
endpoint on the same port (`GET /status/channels/<Channel-Identifier>`), one writer per connection so messages
leave in the order the core made them, one timer driven by the core's deadline, and one recognition worker
feeding the local engine (`ivr.emulators.engine`) and, for `Infer-*-enabled`, the prosody classifier
(`ivr.emulators.classifier`) in an executor.

What a real Speech Server does that this one does not: free-form dictation (`builtin:slm/general` decodes the
`--phrases` vocabulary, not open speech), n-best lists (one alternative), XML results, fetching
`file:`/`http:` grammars. The real server's idle-session timeout, error codes and parameter defaults are not
in the documents; the emulator's are its own (`--idle-timeout`, `cpqd_protocol.ErrorCode`, `PARAMETERS`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ivr.emulators import session as shared
from ivr.emulators.cpqd_channels import ChannelRegistry
from ivr.emulators.cpqd_events import (
    AudioEnded,
    AudioReceived,
    CloseConnection,
    Event,
    RecognitionRequested,
    RecognitionStopped,
    SendMessage,
    UtteranceResult,
)
from ivr.emulators.cpqd_grammars import GrammarSource
from ivr.emulators.cpqd_parameters import RecognitionConfig
from ivr.emulators.cpqd_protocol import CpqdServerSession, Fault
from ivr.emulators.engine import (
    GrammarError,
    LocalEngines,
    RecognizerSession,
    SpeechStarted,
    Utterance,
    parse_grammar,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000  # document 003: http://{ip_speech_server}:8000/asr/ws/v3/recognize
# The paths the SDKs and documents use (notes 1.1, document 003, the C++ example); a /8k or /16k suffix
# picks the sample rate, 8 kHz otherwise.
PATHS = ("/asr/ws/v3/recognize", "/asr/ws/v2/recognize", "/asr-server/asr", "/ws/v1/recognize")
RATE_SUFFIXES = {"/8k": 8000, "/16k": 16000}
STATUS_PATH = "/status/channels"
REALM = "cpqd-emulator"
# Engine languages by the language a grammar declares (`language pt-BR;`), by BCP-47 primary subtag.
ENGINE_LANGUAGES = {"pt": "pt-BR", "en": "en", "ko": "ko", "ja": "ja"}
DEFAULT_LANGUAGES = ("pt-BR", "en")
CHUNK_SECONDS = 0.2  # a recognizer that fell behind is fed at most this much audio per step


def sample_rate_of(path: str) -> int | None:
    """The sample rate a request path selects, or None when it is not a recognizer path."""
    path = path.split("?", 1)[0].rstrip("/")
    rate = 8000
    for suffix, suffix_rate in RATE_SUFFIXES.items():
        if path.endswith(suffix):
            path, rate = path[: -len(suffix)], suffix_rate
    return rate if path in PATHS else None


def engine_language(declared: str | None, default: str) -> str:
    """The local engine for a grammar's declared language (`pt-BR`, `en-US`, `ko-KR`...)."""
    if not declared:
        return default
    return ENGINE_LANGUAGES.get(declared.split("-", 1)[0].lower(), declared)


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulator behaves beyond the protocol: auth, timeouts, faults, the default language."""

    default_language: str = "pt-BR"
    user: str | None = None
    password: str | None = None
    idle_timeout: float | None = None
    fault: Fault | None = None


class CpqdEmulator:
    """The process-wide state: engines, the Channel-Identifier registry, options; serves connections."""

    def __init__(self, engines: LocalEngines, options: EmulatorOptions | None = None) -> None:
        self.engines = engines
        self.options = options or EmulatorOptions()
        self.registry = ChannelRegistry()
        self._handles = itertools.count(1)
        self._classifier: Any = None

    def new_handle(self) -> str:
        # "a long integer" (notes 1.4, e.g. 201604081523970032): the time and a process-wide counter.
        return time.strftime("%Y%m%d%H%M%S") + f"{next(self._handles) % 10000:04d}"

    @property
    def classifier(self) -> Any:
        if self._classifier is None:
            from ivr.emulators.classifier import ProsodyClassifier

            self._classifier = ProsodyClassifier()
        return self._classifier

    # --- HTTP before the upgrade ---

    def _authorized(self, request: Request) -> bool:
        if self.options.user is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.options.user) and hmac.compare_digest(
            password, self.options.password or ""
        )

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Auth, the status endpoint and unknown paths, answered before any WebSocket upgrade."""
        if self.options.fault is Fault.UNAUTHORIZED:
            return shared.unauthorized(connection)
        if not self._authorized(request):
            # A challenge for the Java SDK (Tyrus answers it); the Python SDK sends Basic pre-emptively.
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication required\n")
            response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
            return response
        path = request.path.split("?", 1)[0]
        if path.rstrip("/") == STATUS_PATH or path.startswith(STATUS_PATH + "/"):
            return self._status(connection, path[len(STATUS_PATH) :].strip("/"))
        if sample_rate_of(path) is None:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no recognizer at {path}\n")
        return None

    def _status(self, connection: ServerConnection, channel: str) -> Response:
        body = self.registry.status(channel) if channel else {"channels": sorted(self.registry.channels)}
        status = HTTPStatus.OK if body is not None else HTTPStatus.NOT_FOUND
        text = json.dumps(body if body is not None else {"error": f"no session used channel {channel}"})
        response = connection.respond(status, text + "\n")
        del response.headers["Content-Type"]  # respond() made it text/plain
        response.headers["Content-Type"] = "application/json"
        return response

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        rate = sample_rate_of(ws.request.path) or 8000
        await _Connection(self, ws, rate).run()

    async def serve(self, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled; `ready` is set once the socket is bound."""
        # No keepalive pings: the SDKs do not expect them.
        await shared.serve(
            host,
            port,
            self.handle,
            vendor="cpqd",
            ready=ready,
            process_request=self.process_request,
            ping_interval=None,
        )


class _Worker:
    """One recognition's recognizer and audio queue."""

    def __init__(self, recognition: int, session: RecognizerSession, config: RecognitionConfig, rate: int):
        self.recognition = recognition
        self.session = session
        self.config = config
        self.rate = rate
        self.audio = shared.AudioQueue(int(CHUNK_SECONDS * rate) * 2)
        self.pcm = bytearray()  # the recognition's audio so far, sliced for the classifier and verify buffer
        self.stopped = False
        self.task: asyncio.Task[None] | None = None


class _Connection:
    """One WebSocket connection carrying one CPQD session."""

    def __init__(self, emulator: CpqdEmulator, ws: ServerConnection, sample_rate: int) -> None:
        self.emulator = emulator
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.core = CpqdServerSession(
            emulator.new_handle(),
            now=self.loop.time(),
            registry=emulator.registry,
            sample_rate=sample_rate,
            idle_timeout=emulator.options.idle_timeout,
            fault=emulator.options.fault,
        )
        self.outbox: asyncio.Queue[bytes | CloseConnection] = asyncio.Queue()
        self.workers: dict[int, _Worker] = {}
        self.rearm = asyncio.Event()

    def now(self) -> float:
        return self.loop.time()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        timer = asyncio.create_task(self._timer())
        try:
            async for frame in self.ws:
                await self.dispatch(self.core.receive(frame, self.now()))
        except ConnectionClosed:
            pass
        finally:
            await self.dispatch(self.core.connection_lost())
            timer.cancel()
            writer.cancel()
            for worker in list(self.workers.values()):
                self._stop(worker)
            tasks = [t for t in (timer, writer, *(w.task for w in self.workers.values())) if t is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                item = await self.outbox.get()
                if isinstance(item, CloseConnection):
                    await self.ws.close(item.code, item.reason)
                    return
                await self.ws.send(item)  # bytes: a binary frame, which is all the Java SDK decodes

    async def _timer(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            self.rearm.clear()
            timeout = None if deadline is None else max(0.0, deadline - self.now())
            try:
                async with asyncio.timeout(timeout):
                    await self.rearm.wait()
            except TimeoutError:
                await self.dispatch(self.core.on_timer(self.now()))

    async def dispatch(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, SendMessage):
                self.outbox.put_nowait(event.data)
            elif isinstance(event, RecognitionRequested):
                await self.dispatch(await self._start(event))
            elif isinstance(event, AudioReceived):
                worker = self.workers.get(event.recognition)
                if worker is not None:
                    worker.audio.put(event.pcm)
            elif isinstance(event, AudioEnded):
                worker = self.workers.get(event.recognition)
                if worker is not None:
                    worker.audio.close()
            elif isinstance(event, RecognitionStopped):
                worker = self.workers.get(event.recognition)
                if worker is not None:
                    self._stop(worker)
            elif isinstance(event, CloseConnection):
                self.outbox.put_nowait(event)
        self.rearm.set()  # the core's deadline may have moved

    def _stop(self, worker: _Worker) -> None:
        worker.stopped = True
        self.workers.pop(worker.recognition, None)
        if worker.task is not None and worker.task is not asyncio.current_task():
            worker.task.cancel()

    async def _start(self, request: RecognitionRequested) -> list[Event]:
        """Open the recognizer for a START_RECOGNITION; the core's answer is the RESPONSE."""
        options = self.emulator.options
        grammar = request.grammar
        declared = None
        if grammar.text is not None:
            with contextlib.suppress(GrammarError):
                declared = parse_grammar(grammar.text, grammar.uri).language
        language = engine_language(declared, options.default_language)
        engine = self.emulator.engines.get(language)
        if engine is None:
            reason = (
                f"language {language} is not served here - {self.emulator.engines.why_unavailable(language)}"
            )
            return self.core.reject_recognition(request.recognition, reason, self.now())
        try:
            if grammar.text is not None:
                await engine.load_grammar(grammar.text)  # compiled in the pool, not on the loop
            session = engine.new_session(request.sample_rate, grammar.text)
        except (GrammarError, ValueError) as exc:
            reason = f"{grammar.uri} - {exc}"
            if grammar.text is None:
                reason += " (no free-form recognizer here: the SLM decodes the --phrases vocabulary)"
            return self.core.reject_recognition(request.recognition, reason, self.now())
        worker = _Worker(request.recognition, session, request.config, request.sample_rate)
        self.workers[worker.recognition] = worker
        worker.task = asyncio.create_task(self._recognize(worker, grammar))
        return self.core.accept_recognition(request.recognition, self.now())

    async def _recognize(self, worker: _Worker, grammar: GrammarSource) -> None:
        rid, bytes_per_second = worker.recognition, 2 * worker.rate
        try:
            while not worker.stopped:
                await worker.audio.wake.wait()
                worker.audio.wake.clear()
                while worker.audio.pending and not worker.stopped:
                    chunk = worker.audio.take()
                    worker.pcm += chunk
                    events = await worker.session.feed(chunk)
                    await self._deliver(worker, events)
                    seconds = len(worker.pcm) / bytes_per_second
                    await self.dispatch(self.core.audio_processed(rid, seconds, self.now()))
                if worker.audio.closed and not worker.stopped:
                    await self._deliver(worker, await worker.session.flush())
                    await self.dispatch(self.core.audio_finished(rid, self.now()))
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("recognizer failed on %s", grammar.uri)
            await self.dispatch(self.core.recognition_failed(rid, str(exc), self.now()))

    async def _deliver(self, worker: _Worker, events: Sequence[SpeechStarted | Utterance]) -> None:
        for event in events:
            if worker.stopped:
                return
            if isinstance(event, SpeechStarted):
                await self.dispatch(self.core.speech_started(worker.recognition, event.time, self.now()))
            else:
                result = await self._utterance(worker, event)
                await self.dispatch(self.core.utterance(worker.recognition, result, self.now()))

    async def _utterance(self, worker: _Worker, utterance: Utterance) -> UtteranceResult:
        start = max(0, int(utterance.start * worker.rate)) * 2
        end = max(start, int(utterance.end * worker.rate)) * 2
        audio = bytes(worker.pcm[start:end])
        extra: dict[str, Any] = {}
        if worker.config.infer and audio:
            from ivr.emulators.classifier import to_cpqd_json

            classifier = self.emulator.classifier
            scores = await self.loop.run_in_executor(None, classifier.classify, audio, worker.rate)
            extra = {k: v for k, v in to_cpqd_json(scores).items() if k in worker.config.infer}
        return UtteranceResult(
            utterance.text,
            utterance.confidence,
            utterance.start,
            utterance.end,
            utterance.words,
            utterance.tag,
            extra,
            audio,
        )


# --- command line ---

DESCRIPTION = (
    "CPQD Speech Server 2.4 emulator (ASR WebSocket API 2.3/2.4) on local engines: pt-BR is a best-effort"
    " grammar matcher (pocketsphinx's English acoustic model with an espeak-ng derived dictionary), en-US"
    " pocketsphinx, ko Vosk. Measured by bench/phonetic_accuracy.py on 378 espeak-ng clips through µ-law:"
    " pt-BR 95 % of in-grammar phrases right; false accepts 3 % of far off-menu speech but 41 % of near"
    " misses; spoken digits unusable. There is no free-form recognizer: builtin:slm/general decodes the"
    " --phrases vocabulary only. Emotion, age and gender come from loudness, pitch and speaking rate"
    " (bench/classifier.py: espeak-ng default, agitated and sad styles told apart 16/16 each on held-out"
    " phrases), not from a trained model: they say how a voice sounds, not what a caller feels."
)
EPILOG = (
    "Paths: /asr/ws/v3/recognize (document 003), /asr/ws/v2/recognize/8k, /asr-server/asr, /ws/v1/recognize;"
    " /16k selects 16 kHz. Status: GET /status/channels/<Channel-Identifier> (JSON: sessions, recognitions,"
    " verify buffer). The real server's idle timeout is not documented; --idle-timeout sets the emulator's."
    " --fault makes every session fail START_RECOGNITION for fallback tests: start-failure (Result FAILURE),"
    " invalid-action (Result INVALID_ACTION), close-mid-utterance (socket closed after START_OF_SPEECH),"
    " no-reply (START_RECOGNITION and all after it unanswered), unauthorized (401 on the handshake),"
    " malformed (START_RECOGNITION answered with a frame that is no ASR message)."
    " Engines: --language pt-BR --language en unless given (ko for Vosk Korean, ~540 MiB; ja)."
)


def argument_parser() -> argparse.ArgumentParser:
    parser = shared.argument_parser("cpqd", DESCRIPTION, port=DEFAULT_PORT, faults=[f.value for f in Fault])
    parser.epilog = EPILOG
    parser.add_argument(
        "--default-language",
        default="pt-BR",
        help="the language of grammars that declare none (default pt-BR)",
    )
    parser.add_argument("--user", default=os.environ.get("IVR_CPQD_EMULATOR_USER"), help="require Basic auth")
    parser.add_argument("--password", default=os.environ.get("IVR_CPQD_EMULATOR_PASSWORD"))
    parser.add_argument(
        "--idle-timeout", type=float, default=None, metavar="SECONDS", help="close sessions idle this long"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`ivr emulate cpqd`: load the engines (pt-BR and en unless --language says), serve; the exit status."""
    args = argument_parser().parse_args(argv)
    if (args.user is None) != (args.password is None):
        raise SystemExit("--user and --password go together")
    options = EmulatorOptions(
        default_language=engine_language(args.default_language, args.default_language),
        user=args.user,
        password=args.password,
        idle_timeout=args.idle_timeout,
        fault=Fault(args.fault) if args.fault else None,
    )
    return shared.run_emulator(
        args,
        vendor="cpqd",
        languages={language: language for language in ENGINE_LANGUAGES.values()},
        default_languages=DEFAULT_LANGUAGES,
        # CPQD sessions bring their own grammars (DEFINE_GRAMMAR), so engines load without phrases too.
        session_grammars=True,
        server=lambda engines: CpqdEmulator(engines, options).serve,
        path=PATHS[0],
    )


if __name__ == "__main__":
    raise SystemExit(main())
