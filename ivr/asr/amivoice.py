"""Sans-I/O codec of the AmiVoice API WebSocket interface.

Sources: AmiVoice "WebSocket Interface" (../shared/specs/002-amivoice-websocket.md: commands, events,
timeouts, the sample client's session log), "음성 인식 결과 형식" (001-amivoice-result-format.md: the
U/A JSON), and protocol-notes.md Part 2 (what the official Wrp library sends and parses).

One connection carries many recognitions, each an ``s ... e`` session::

    send(request)  -> text  s <LSB8K|MULAW|ALAW> <engine> key=value ...   (Wrp's parameter order)  STARTING
    "s"            -> RecognitionStarted                                                           LISTENING
    audio(chunk)   -> binary  b"p" + chunk  (the caller's G.711 passes through untouched)
    "S 250" / "E 8800" / "U {...}" -> StartOfSpeech(0.25) / EndOfSpeech(8.8) / Partial
    "A {...}"      -> the first A with text is the turn's answer: Final(RECOGNIZED), then we send e     ENDING
    end()          -> e; the remaining A results, then the e reply (NO_MATCH / NO_INPUT if none)        ENDING
    "e"            -> the session is over, the connection takes the next s                             READY

Times: document 001 says the time base of S/E and of every ``starttime``/``endtime`` is reset at each
``s``, so an AmiVoice time is already relative to the recognition's first audio (the driver sends nothing
before LISTENING); milliseconds become seconds and no per-recognition offset is needed.

Errors (``VendorError.code``):
    "s" / "p" / "e"  the server's error reply to that command (``s <message>`` ...), message verbatim.
    "busy"           ``s can't connect to recognizer server``: transient (002 says retry the s); READY again.
    "timeout"        the server ended the session on its own: the unsolicited ``e <message>`` of its
                     60 s no-communication timeout, ``p can't feed audio data to recognizer server`` after
                     600 s of silence. The connection is unusable (002: reconnect and send the audio again):
                     the codec goes CLOSED, so the driver opens a new connection for what comes next.
    <result code>    a non-empty ``code`` of an A result (001: failure has code and message set and empty
                     text); the code is passed on verbatim with Final(ERROR): 001 has no table of codes.
    ""               what the codec itself saw: a malformed result, no reply to ``e`` within reply_timeout.

Deadlines: 002 asks clients to time out a server that does not answer; the codec waits ``reply_timeout`` for
the ``e`` reply. A READY session idle for ``idle_timeout`` (below the server's documented 60 s) is given up
by the codec first (CLOSED), so that the next turn starts on a fresh connection instead of racing the
server's timeout ``e``. AmiVoice documents no keepalive command.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ivr.asr.base import (
    Alternative,
    AsrEvent,
    AudioFormat,
    CodecBase,
    EndOfSpeech,
    Frame,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    UnsupportedRequest,
    VendorError,
    Word,
)

# BCP 47 primary subtag -> connection engine. Only -a-general (Japanese, "the most general" engine) is
# named in documents 001/002; 001 mentions English and Chinese engines without naming them. The other
# names follow AmiVoice's -a-general-<lang> pattern and are assumptions: the ``engine`` option overrides.
LANGUAGES: dict[str, str] = {
    "ja": "-a-general",
    "en": "-a-general-en",
    "zh": "-a-general-zh",
    "ko": "-a-general-ko",
}
AUDIO_FORMATS = frozenset({AudioFormat.PCM16, AudioFormat.PCMU, AudioFormat.PCMA})
# Header-less format names of protocol-notes 2.4/2.5: 16-bit little-endian 8 kHz, G.711 mu-law / A-law.
AUDIO_FORMAT_NAMES: dict[AudioFormat, str] = {
    AudioFormat.PCM16: "LSB8K",
    AudioFormat.PCMU: "MULAW",
    AudioFormat.PCMA: "ALAW",
}
# The s command's key=value parameters in the order Wrp.feedDataResume writes them (protocol-notes 2.2).
S_PARAMETERS = (
    "profileId",
    "profileWords",
    "segmenterProperties",
    "keepFillerToken",
    "resultUpdatedInterval",
    "extension",
    "authorization",
    "resultType",
)
# Wrp quotes these when they hold a double quote too, doubling it; the others only when they hold a space.
_DOUBLING = frozenset({"profileWords", "segmenterProperties", "extension"})
OPTIONS = (
    "engine",
    "profileId",
    "profileWords",
    "keepFillerToken",
    "resultUpdatedInterval",
    "segmenterProperties",
    "extension",
    "resultType",
    "chunk_ms",
)
_TEXT_OPTIONS = ("profileWords", "segmenterProperties", "extension", "resultType")
_ENGINE = re.compile(r"-[A-Za-z0-9][A-Za-z0-9_-]*")
_PROFILE_ID = re.compile(r"[A-Za-z0-9_-]*")  # 2.5: alphanumerics, - and _; __ starts reserved names
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Error codes after which the same turn may be tried again (busy: the next s; timeout: a new connection).
RETRYABLE = frozenset({"busy", "timeout"})
_BUSY = "can't connect to recognizer server"  # 002: "retry the s command several times"
_SESSION_LOST = "can't feed audio data to recognizer server"  # 002: after 600 s without speech
_INTERIM_MARK = "..."  # 002's U texts end with it: the utterance goes on
_MAX_EXCERPT = 80
_CLOCK_SLACK = 0.005  # asyncio may run a timer up to its clock resolution early


def vendor_language(tag: str) -> str | None:
    """The connection engine for a BCP 47 tag (ja-JP -> -a-general), or None."""
    return LANGUAGES.get(tag.replace("_", "-").split("-", 1)[0].lower())


def validate_options(options: Mapping[str, object]) -> dict[str, str | int | bool]:
    """Dialplan ``options:`` for AmiVoice, normalized; ValueError naming the option at fault."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown AmiVoice option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    valid: dict[str, str | int | bool] = {}
    for name, value in options.items():
        if name == "chunk_ms":
            valid[name] = _whole(name, value, 10, 1000)
        elif name == "resultUpdatedInterval":
            valid[name] = _whole(name, value, 0, 60000)
        elif name == "keepFillerToken":
            if value not in (True, False, 0, 1):  # YAML gives true/false or 0/1
                raise ValueError(f"AmiVoice keepFillerToken must be true/false or 0/1, not {value!r}")
            valid[name] = bool(value)
        else:
            valid[name] = _text(name, value)
    engine = valid.get("engine")
    if isinstance(engine, str) and not _ENGINE.fullmatch(engine):
        raise ValueError(f"AmiVoice engine must be a connection engine name like -a-general, not {engine!r}")
    profile = valid.get("profileId")
    if isinstance(profile, str) and (not _PROFILE_ID.fullmatch(profile) or profile.startswith("__")):
        raise ValueError(
            f"AmiVoice profileId takes letters, digits, - and _ (not starting with __), not {profile!r}"
        )
    if '"' in str(valid.get("resultType", "")):
        raise ValueError("AmiVoice resultType cannot hold a double quote (the s command cannot escape it)")
    words = valid.get("profileWords")
    if isinstance(words, str) and words:
        for entry in words.split("|"):
            if len(entry.split()) < 2:
                raise ValueError(f"AmiVoice profileWords entry {entry!r} is not 'written spoken'")
    return valid


def quote_value(name: str, value: str) -> str:
    """A parameter value as Wrp writes it in the s command (protocol-notes 2.2)."""
    if name in _DOUBLING and (" " in value or '"' in value):
        return '"' + value.replace('"', '""') + '"'
    return f'"{value}"' if " " in value else value


def s_command(audio_format: str, grammar: str, parameters: Mapping[str, str]) -> str:
    """``s <audio_format> <grammar> key=value ...``: parameters in Wrp's order, empty ones left out."""
    unknown = sorted(set(parameters) - set(S_PARAMETERS))
    if unknown:
        raise ValueError(f"not s command parameters: {', '.join(unknown)}")
    parts = ["s", audio_format, grammar]
    parts += [
        f"{name}={quote_value(name, parameters[name])}" for name in S_PARAMETERS if parameters.get(name)
    ]
    return " ".join(parts)


def phrase_profile_words(phrases: tuple[str, ...] | list[str]) -> list[str]:
    """``written spoken`` entries for the phrases whose reading is known: those written in kana alone.

    A profileWords entry needs the spoken form (hiragana for Japanese engines, 001); a phrase in kanji or
    in Latin letters has none we could derive, so it is left to the engine's own vocabulary (register such
    words with their readings through the ``profileWords`` option). ``・`` is not read (002's
    アドバンスト・メディア -> あどばんすとめでぃあ)."""
    entries = []
    for phrase in phrases:
        spoken = _hiragana(phrase.strip())
        if spoken:
            entries.append(f"{phrase.strip()} {spoken}")
    return entries


class AmiVoiceCodec(CodecBase):
    """One AmiVoice WebSocket connection: ``s ... e`` recognitions, one after the other."""

    vendor: str = "amivoice"
    retries: bool = True  # a busy server, a session it timed out

    def __init__(
        self,
        authorization: str = "",
        engine: str | None = None,
        profile_id: str = "",
        profile_words: str = "",
        keep_filler_token: bool | None = None,
        result_updated_interval: int | None = None,
        segmenter_properties: str = "",
        extension: str = "",
        result_type: str = "",
        chunk_ms: int = 100,
        idle_timeout: float | None = 50.0,
        reply_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        given: dict[str, object] = {
            "engine": engine,
            "profileId": profile_id,
            "profileWords": profile_words,
            "keepFillerToken": keep_filler_token,
            "resultUpdatedInterval": result_updated_interval,
            "segmenterProperties": segmenter_properties,
            "extension": extension,
            "resultType": result_type,
            "chunk_ms": chunk_ms,
        }
        self._settings = validate_options({k: v for k, v in given.items() if v is not None and v != ""})
        self.chunk_ms = int(self._settings.pop("chunk_ms"))
        self.engine = engine or None  # None: from the request's language
        self._authorization = authorization  # the APPKEY: in the s command only, never in repr or errors
        self.idle_timeout = idle_timeout
        self.reply_timeout = reply_timeout
        self._last_sent: float | None = None
        self._reply_due: float | None = None
        self._stop_due = False  # end/cancel came before the s reply: e goes out once it arrives
        self._close_due = False
        self._speech_seen = False
        self._partials = True
        self._threshold = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, object], authorization: str = "") -> AmiVoiceCodec:
        """A codec from dialplan options (validated here) and the APPKEY from the environment."""
        valid = validate_options(options)
        names = {
            "profileId": "profile_id",
            "profileWords": "profile_words",
            "keepFillerToken": "keep_filler_token",
            "resultUpdatedInterval": "result_updated_interval",
            "segmenterProperties": "segmenter_properties",
            "extension": "extension",
            "resultType": "result_type",
            "engine": "engine",
            "chunk_ms": "chunk_ms",
        }
        return cls(authorization, **{names[k]: v for k, v in valid.items()})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        key = "<set>" if self._authorization else "<none>"
        return (
            f"AmiVoiceCodec(engine={self.engine!r}, state={self._state.value}, "
            f"recognition={self._recognition}, authorization={key})"
        )

    def open(self, now: float) -> None:
        """Nothing to send: each recognition's s command carries everything."""
        self._last_sent = now

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        if self._state is not SessionState.READY:
            raise RuntimeError(f"AmiVoice session is {self._state.value}: a new s waits for the e reply")
        audio_format = AUDIO_FORMAT_NAMES.get(request.audio_format)
        if audio_format is None:
            raise UnsupportedRequest(f"AmiVoice takes LSB8K, MULAW or ALAW, not {request.audio_format}")
        if request.grammar.srgs is not None:
            raise UnsupportedRequest("AmiVoice API takes no SRGS grammar (rule grammars are Private only)")
        try:
            settings = {**self._settings, **validate_options(dict(request.options))}
        except ValueError as exc:
            raise UnsupportedRequest(str(exc)) from exc
        uri = request.grammar.uri
        engine = uri if uri and _ENGINE.fullmatch(uri) else settings.get("engine")
        if not isinstance(engine, str):
            engine = vendor_language(request.language)
            if engine is None:
                raise UnsupportedRequest(
                    f"AmiVoice has no engine for language {request.language!r} "
                    f"(it offers {', '.join(LANGUAGES)}; set the engine option for others)"
                )
        command = s_command(audio_format, engine, self._parameters(settings, request))
        self._recognition = request.id
        self._state = SessionState.STARTING
        self._stop_due = self._close_due = self._speech_seen = False
        self._partials = request.partial_results
        self._threshold = request.confidence_threshold
        self._queue(command, now)
        return []

    def audio(self, chunk: bytes, now: float) -> None:
        if self._state is SessionState.LISTENING and chunk:
            self._queue(b"p" + chunk, now)

    def end(self, now: float) -> list[AsrEvent]:
        """No more audio: e; the results still due and the e reply end the recognition."""
        self._stop(now)
        return []

    def cancel(self, now: float) -> list[AsrEvent]:
        if self._recognition is None:
            return []
        final = self._final(ResultStatus.CANCELLED)
        self._stop(now)  # whatever the server still says of it is swallowed until the e reply
        return [final]

    def close(self, now: float) -> list[AsrEvent]:
        """AmiVoice has no goodbye of its own: a recognition on the way is stopped, then CLOSED."""
        events = self.cancel(now)
        if self._state is SessionState.READY:
            self._state = SessionState.CLOSED
            events.append(SessionClosed())
        elif self._state is not SessionState.CLOSED:
            self._close_due = True
            if self._state is SessionState.ENDING:
                self._state = SessionState.CLOSING  # the e reply is the goodbye
        return events

    def deadline(self) -> float | None:
        if (
            self._state is SessionState.READY
            and self.idle_timeout is not None
            and self._last_sent is not None
        ):
            return self._last_sent + self.idle_timeout
        if self._state in (SessionState.ENDING, SessionState.CLOSING):
            return self._reply_due
        return None

    def timeout(self, now: float) -> list[AsrEvent]:
        due = self.deadline()
        if due is None or now + _CLOCK_SLACK < due:
            return []
        if self._state is SessionState.READY:
            self._state = SessionState.CLOSED  # idle: leave before the server's no-communication timeout
            return [SessionClosed()]
        error = VendorError("", f"AmiVoice did not answer e within {self.reply_timeout} s")
        return self._session_over(error)

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        if self._state is SessionState.CLOSED:
            return []
        if isinstance(frame, bytes):
            try:
                frame = frame.decode("utf-8")
            except UnicodeDecodeError:
                return self._malformed(f"undecodable frame from AmiVoice: {_excerpt(frame)}", now)
        text = frame.rstrip("\r\n")  # Wrp strips the trailing newline before parsing
        if not text:
            return []
        letter, payload = text[0], text[1:]
        payload = payload[1:] if payload.startswith(" ") else payload
        if letter == "s":
            return self._on_s_reply(payload.strip(), now)
        if letter == "p":
            return self._on_p_reply(payload.strip(), now)
        if letter == "e":
            return self._on_e_reply(payload.strip(), now)
        recognition = self._recognition
        if recognition is None or self._state not in (
            SessionState.LISTENING,
            SessionState.ENDING,
            SessionState.CLOSING,
        ):
            return []  # answered, cancelled or not started: nothing of it is wanted any more
        if letter == "S":
            self._speech_seen = True
            return [StartOfSpeech(recognition, _seconds(payload))]
        if letter == "E":
            return [EndOfSpeech(recognition, _seconds(payload))]
        if letter == "U":
            return self._on_interim(recognition, payload)
        if letter in "AR":
            return self._on_result(letter, payload, now)
        return []  # C (recognition started), G and Q (server information), and letters to come

    # ---- internals

    def _parameters(self, settings: Mapping[str, object], request: RecognitionRequest) -> dict[str, str]:
        parameters: dict[str, str] = {}
        for name, value in settings.items():
            if name not in S_PARAMETERS:
                continue  # engine goes in the grammar slot; chunk_ms is the driver's
            if isinstance(value, bool):
                parameters[name] = "1" if value else "0"
            else:
                parameters[name] = str(value)
        explicit = [e.strip() for e in parameters.get("profileWords", "").split("|") if e.strip()]
        known = {entry.split()[0] for entry in explicit}
        derived = [e for e in phrase_profile_words(request.grammar.phrases) if e.split()[0] not in known]
        if derived:
            parameters["profileWords"] = "|".join(dict.fromkeys([*explicit, *derived]))
        if self._authorization:
            parameters["authorization"] = self._authorization
        return parameters

    def _queue(self, frame: Frame, now: float) -> None:
        self._out.append(frame)
        self._last_sent = now

    def _stop(self, now: float) -> None:
        """e for the s ... e in progress, now or as soon as the s reply allows another command."""
        if self._state is SessionState.STARTING:
            self._stop_due = True
        elif self._state is SessionState.LISTENING:
            self._queue("e", now)
            self._reply_due = now + self.reply_timeout
            self._state = SessionState.CLOSING if self._close_due else SessionState.ENDING

    def _on_s_reply(self, message: str, now: float) -> list[AsrEvent]:
        if self._state is not SessionState.STARTING:
            return []  # a stray reply starts nothing
        events: list[AsrEvent] = []
        if message:
            busy = message.startswith(_BUSY)
            error = VendorError("busy" if busy else "s", message, retryable=busy)
            if self._recognition is not None:
                events.append(self._final(ResultStatus.ERROR, error=error))
            if self._close_due:
                self._state = SessionState.CLOSED
                return [*events, SessionClosed()]
            self._state = SessionState.READY
            return events
        self._state = SessionState.LISTENING
        if self._recognition is not None:
            events.append(RecognitionStarted(self._recognition))
        if self._stop_due:
            self._stop(now)
        return events

    def _on_p_reply(self, message: str, now: float) -> list[AsrEvent]:
        if not message:
            return []  # p alone is "OK", normally not sent
        if message.startswith(_SESSION_LOST):
            return self._session_over(VendorError("timeout", message, retryable=True))
        events: list[AsrEvent] = []
        if self._recognition is not None:
            events.append(self._final(ResultStatus.ERROR, error=VendorError("p", message)))
        self._stop(now)
        return events

    def _on_e_reply(self, message: str, now: float) -> list[AsrEvent]:
        if message:
            # Our e refused, or the server's own e after its no-communication timeout: reconnect (002).
            timeout = "timeout" in message
            return self._session_over(VendorError("timeout" if timeout else "e", message, retryable=timeout))
        if self._state is SessionState.READY:
            return []
        events: list[AsrEvent] = []
        if self._recognition is not None:
            status = ResultStatus.NO_MATCH if self._speech_seen else ResultStatus.NO_INPUT
            events.append(self._final(status))
        self._reply_due = None
        if self._state is SessionState.CLOSING or self._close_due:
            self._state = SessionState.CLOSED
            return [*events, SessionClosed()]
        self._state = SessionState.READY
        self._last_sent = now  # the server's idle clock starts again with the session's end
        return events

    def _on_interim(self, recognition: int, payload: str) -> list[AsrEvent]:
        result = _json_object(payload)
        if result is None or not self._partials:
            return []  # an interim result lost is no loss: the A carries the utterance
        text = _result_text(result).removesuffix(_INTERIM_MARK).strip()
        if not text:
            return []
        self._speech_seen = True
        return [Partial(recognition, text)]

    def _on_result(self, letter: str, payload: str, now: float) -> list[AsrEvent]:
        self._speech_seen = True
        result = _json_object(payload)
        if result is None:
            if letter == "R":
                return []  # the old result format is not documented; a JSON one is read as an A
            return self._malformed(f"malformed A result from AmiVoice: {_excerpt(payload)}", now)
        code, message = result.get("code"), result.get("message")
        if isinstance(code, str) and code:
            error = VendorError(code, message if isinstance(message, str) else "")
            final = self._final(ResultStatus.ERROR, error=error)
            self._stop(now)
            return [final]
        alternative = _alternative(result)
        if alternative is None:
            return []  # an utterance without words (noise, a cough): the caller may still answer
        status = ResultStatus.RECOGNIZED
        if alternative.confidence < self._threshold:
            status = ResultStatus.NO_MATCH
        final = self._final(status, alternatives=(alternative,))
        self._stop(now)  # the first answer ends the turn; later utterances are swallowed until the e reply
        return [final]

    def _malformed(self, reason: str, now: float) -> list[AsrEvent]:
        if self._recognition is None or self._state is SessionState.READY:
            return []
        final = self._final(ResultStatus.ERROR, error=VendorError("", reason))
        self._stop(now)
        return [final]

    def _session_over(self, error: VendorError) -> list[AsrEvent]:
        """The server's session is gone: the recognition in progress fails, the connection is done."""
        events: list[AsrEvent] = []
        if self._recognition is not None:
            events.append(self._final(ResultStatus.ERROR, error=error))
        self._state = SessionState.CLOSED
        self._reply_due = None
        self._out.clear()
        return [*events, SessionClosed(error)]


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"AmiVoice {name} must be a whole number of ms from {low} to {high}, not {value!r}")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"AmiVoice {name} must be text, not {value!r}")
    if _CONTROL.search(value):
        raise ValueError(f"AmiVoice {name} cannot hold control characters (tabs, newlines): {value!r}")
    return value


def _hiragana(phrase: str) -> str:
    """The hiragana reading of a phrase written in kana alone, else ""."""
    reading = []
    for char in phrase:
        code = ord(char)
        if 0x3041 <= code <= 0x3096 or code in (0x309D, 0x309E, 0x30FC):  # hiragana, ゝゞ, ー
            reading.append(char)
        elif 0x30A1 <= code <= 0x30F6 or code in (0x30FD, 0x30FE):  # katakana, ヽヾ: 0x60 below
            reading.append(chr(code - 0x60))
        elif char != "・":
            return ""
    return "".join(reading)


def _json_object(payload: str) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _utterance(result: dict[str, Any]) -> dict[str, Any]:
    """results[0]: "always exactly one element" (001)."""
    results = result.get("results")
    first = results[0] if isinstance(results, list) and results else None
    return first if isinstance(first, dict) else {}


def _result_text(result: dict[str, Any]) -> str:
    for text in (result.get("text"), _utterance(result).get("text")):
        if isinstance(text, str) and text.strip():
            return text.strip()
    return ""


def _alternative(result: dict[str, Any]) -> Alternative | None:
    text = _result_text(result)
    if not text:
        return None
    utterance = _utterance(result)
    tokens = utterance.get("tokens")
    words = tuple(w for w in map(_word, tokens if isinstance(tokens, list) else []) if w is not None)
    return Alternative(text, _number(utterance.get("confidence")) or 0.0, words)


def _word(token: object) -> Word | None:
    if not isinstance(token, dict):
        return None
    written = token.get("written")
    if not isinstance(written, str) or not written:
        return None
    spoken = token.get("spoken")  # kept as sent: "_" is AmiVoice's "no reading" (punctuation)
    return Word(
        text=written,
        start=_milliseconds(token.get("starttime")),
        end=_milliseconds(token.get("endtime")),
        confidence=_number(token.get("confidence")),
        spoken=spoken if isinstance(spoken, str) else None,
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _milliseconds(value: object) -> float | None:
    number = _number(value)
    return number / 1000 if number is not None and number >= 0 else None


def _seconds(payload: str) -> float | None:
    """An S/E payload (milliseconds, Wrp reads it with int()) in seconds; None when unreadable."""
    try:
        return _milliseconds(float(payload.strip()))
    except (ValueError, OverflowError):
        return None


def _excerpt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_EXCERPT else text[:_MAX_EXCERPT] + "..."
