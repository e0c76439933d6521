"""Mediazen speech-recognition WebSocket server, emulated from the vendor document.

Source: "음성인식 WebSocket Server Message", MEDIAZEN, 2025-07-31
(../shared/specs/000-mediazen-asr-websocket.md). Written from that document only, never from our client
codec (`ivr.asr`), so a misreading on either side fails a test instead of passing against itself.

The wire protocol, per the document:
  1. text {"language":"ko","cmd":"join"} -> {"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}
  2. binary: live 16-bit 8 kHz mono raw PCM ->
     {"topic":"asr:ko","payload":{"stt_cnt":1,"stt":[{"id":0,"text":"...","confidence":0.0}],"epd":false},
      "event":"new:text"}  (epd true: end of utterance detected)
  3. text {"language":"ko","cmd":"quit"} -> {"topic":"asr:ko","payload":{},"event":"close"}

Faults for the bridge's failover tests (`--fault`): the shared ones (`ivr.emulators.session.Fault`:
unauthorized, close-mid-utterance, no-reply, malformed) and `close`, the document's own close event sent by
the server in mid-utterance, unasked.

`MediazenServerProtocol` is the sans-I/O core (messages in, events out); `serve()` is the asyncio adapter over
`websockets`, one connection = one recognition session; `main()` is the command line. The queue, worker,
server and command line are the ones every emulator shares (`ivr.emulators.session`); the recognizers are the
local engines (`ivr.emulators.engine`): ko on Vosk, en on pocketsphinx, jp on the best-effort Japanese
matcher, which needs Japanese phrases (`--phrases`) and refuses the join without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ivr.emulators import session as shared
from ivr.emulators.engine import GrammarError, LocalEngines

log = logging.getLogger(__name__)

# "language: 언어 구분(ko,en,jp)" (To Server table).
LANGUAGES = ("ko", "en", "jp")
# The document's language codes -> the BCP-47 codes of the local engines.
ENGINE_LANGUAGES = {"ko": "ko", "en": "en", "jp": "ja"}
SAMPLE_RATE = 8000  # "16bit 8k mono raw data"
# When the recognizer falls behind, queued audio is fed in chunks of at most this size (200 ms).
MAX_CHUNK = SAMPLE_RATE * 2 // 5


# The vendor's own fault beside the shared ones: its close event (document §2, To Client) in mid-utterance.
CLOSE = "close"
FAULTS = (*shared.COMMON_FAULTS, CLOSE)


class SessionState(Enum):
    """Where one Mediazen connection is: idle -> joining -> joined -> quitting -> closed."""

    IDLE = "idle"
    JOINING = "joining"  # a well-formed join, waiting for the adapter's accept_join/reject_join
    JOINED = "joined"
    QUITTING = "quitting"  # quit received, the recognizer is flushing
    CLOSED = "closed"


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
    """Close the WebSocket (after the messages before it); 1011 for an emulated crash."""

    code: int = 1000
    reason: str = ""


Event = SendMessage | JoinRequested | AudioReceived | QuitRequested | CloseConnection


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class MediazenServerProtocol:
    """Sans-I/O server side of one Mediazen session."""

    def __init__(self, fault: str | None = None) -> None:
        self.fault = fault
        self.state = SessionState.IDLE
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
        if self.state in (SessionState.QUITTING, SessionState.CLOSED):
            return []
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder's stack
            return [SendMessage(self.reply_error("malformed JSON"))]
        if not isinstance(message, dict):
            return [SendMessage(self.reply_error("expected a JSON object"))]
        cmd, language = message.get("cmd"), message.get("language")
        if not isinstance(cmd, str) or not isinstance(language, str):
            return [SendMessage(self.reply_error('"cmd" and "language" must be strings'))]
        if cmd == "join":
            return self._join(language)
        if cmd == "quit":
            if self.state is not SessionState.JOINED:
                # Nothing to flush: answer the close straight away.
                self.state = SessionState.CLOSED
                return [SendMessage(self.close_message()), CloseConnection()]
            self.state = SessionState.QUITTING
            return [QuitRequested()]
        return [SendMessage(self.reply_error(f"unknown cmd {cmd!r}"))]

    def _join(self, language: str) -> list[Event]:
        if self.state is not SessionState.IDLE:
            return [SendMessage(self.reply_error("already joined"))]
        if language not in LANGUAGES:
            self.state = SessionState.CLOSED
            return [
                SendMessage(
                    self.reply_error(f"unsupported language {language!r}: one of {', '.join(LANGUAGES)}")
                ),
                CloseConnection(),
            ]
        self.language = language
        self.state = SessionState.JOINING
        # The request faults strike before any recognizer is asked for (an emulator needs none loaded).
        if self.fault == shared.Fault.NO_REPLY:
            return []  # joining for ever: no reply, no close
        if self.fault == shared.Fault.MALFORMED:
            return [SendMessage('{"topic":"asr:' + language + '","payload":')]  # a reply cut off mid-JSON
        return [JoinRequested(language)]

    def accept_join(self) -> list[Event]:
        self.state = SessionState.JOINED
        return [SendMessage(self.reply_ok())]

    def reject_join(self, reason: str) -> list[Event]:
        self.state = SessionState.CLOSED
        return [SendMessage(self.reply_error(reason)), CloseConnection()]

    def receive_bytes(self, data: bytes) -> list[Event]:
        if self.state is not SessionState.JOINED:
            if self.state is SessionState.IDLE and not self._warned_early_audio:
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
        if self.state not in (SessionState.JOINED, SessionState.QUITTING):
            return []
        if not endpoint:
            if not text or text == self._last_partial:
                return []
            if self.fault in (shared.Fault.CLOSE_MID_UTTERANCE, CLOSE):
                # The caller is speaking: the server goes away, crashing (1011) or with its close event.
                self.state = SessionState.CLOSED
                if self.fault == CLOSE:
                    return [SendMessage(self.close_message()), CloseConnection()]
                return [CloseConnection(1011, "emulated fault")]
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
        events = self._final(text, confidence) if self.state is SessionState.QUITTING else []
        self.state = SessionState.CLOSED
        return [*events, SendMessage(self.close_message()), CloseConnection()]


# --- asyncio adapter ---


class _Connection:
    """One WebSocket connection: the core's events carried out, one recognition worker after the join."""

    def __init__(self, ws: ServerConnection, engines: LocalEngines, fault: str | None = None) -> None:
        self.ws = ws
        self.engines = engines
        self.core = MediazenServerProtocol(fault)
        self.audio = shared.AudioQueue(MAX_CHUNK)
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
                if self.core.state is not SessionState.QUITTING:
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
                self.audio.close()
            elif isinstance(event, CloseConnection):
                await self.ws.close(event.code, event.reason)

    def join(self, language: str) -> list[Event]:
        engine_language = ENGINE_LANGUAGES[language]
        engine = self.engines.get(engine_language)
        if engine is None:
            reason = self.engines.why_unavailable(engine_language)
            return self.core.reject_join(f"language {language!r} is not served: {reason}")
        try:
            session = engine.new_session(SAMPLE_RATE)
        except (GrammarError, ValueError) as exc:
            # A grammar matcher (Japanese) with none of its language's phrases has nothing to match.
            return self.core.reject_join(f"language {language!r} is not served: {exc} (no phrases in it)")
        self.worker = asyncio.create_task(shared.recognize(session, self.audio, self.on_step, self.on_finish))
        return self.core.accept_join()

    async def on_step(self, text: str, confidence: float, endpoint: bool) -> None:
        await self.handle(self.core.recognized(text, confidence, endpoint))

    async def on_finish(self, text: str, confidence: float) -> None:
        await self.handle(self.core.finished(text, confidence))


def connection_handler(engines: LocalEngines, fault: str | None = None) -> shared.ConnectionHandler:
    """The per-connection coroutine `session.serve()` runs."""

    async def handle(ws: ServerConnection) -> None:
        await _Connection(ws, engines, fault).run()

    return handle


async def serve(
    host: str,
    port: int,
    engines: LocalEngines,
    *,
    ready: asyncio.Event | None = None,
    fault: str | None = None,
) -> None:
    """Serve Mediazen sessions until cancelled, committing `fault` (one of FAULTS) on every one."""
    handler = connection_handler(engines, fault)
    await shared.serve(host, port, handler, vendor="mediazen", ready=ready, fault=fault)


def main(argv: list[str] | None = None) -> int:
    """`ivr emulate mediazen`: load the engines, serve until SIGTERM/SIGINT; the exit status."""
    description = "Mediazen ASR WebSocket emulator backed by local engines (ko: Vosk, en: pocketsphinx)."
    args = shared.argument_parser("mediazen", description, port=8765, faults=FAULTS).parse_args(argv)

    def server(engines: LocalEngines) -> shared.Server:
        return functools.partial(serve, engines=engines, fault=args.fault)

    return shared.run_emulator(args, vendor="mediazen", languages=ENGINE_LANGUAGES, server=server)


if __name__ == "__main__":
    raise SystemExit(main())
