"""The one recognizer interface: what a call asks for, the events every vendor reports, the codec protocol.

Nothing outside ``ivr/asr/`` knows a vendor's wire format. The dialplan engine builds a vendor-neutral
``RecognitionRequest`` for each listen step; a vendor's sans-I/O codec turns it into frames; the driver
(``ivr.asr.stream``) moves the frames and hands the typed events back, each carrying the id of the
recognition it belongs to, so a result that arrives after its step has ended is dropped by construction.

A codec is shaped like h11 and the sans-I/O core of ``websockets``: calls and received frames go in
(``open``, ``send``, ``audio``, ``start_timers``, ``end``, ``cancel``, ``close``, ``receive``), events come
out, and after any of them ``data_to_send()`` holds the frames to write, in order. Time is passed in; the
codec's ``deadline()`` is when the driver must call ``timeout(now)`` (vendor idle timeouts, keepalives).
One session (one WebSocket) can carry many recognitions where the vendor allows it; ``state`` says what
the session can take next.

How each vendor maps onto it:

Mediazen (``mediazen.py``; document 000). One utterance per connection::

    open()            -> nothing (the join carries the language, so it waits for a request)   READY
    send(request)     -> {"language":"ko","cmd":"join"}                                        STARTING
    receive(reply ok) -> RecognitionStarted                                                    LISTENING
    audio(pcm)        -> binary PCM16 8 kHz frames
    receive(new:text epd=false) -> StartOfSpeech (first one), Partial
    receive(new:text epd=true)  -> EndOfSpeech, Final(RECOGNIZED), then {"cmd":"quit"}         CLOSING
    receive(close)    -> SessionClosed                                                         CLOSED
    end() / cancel() / close() before a result -> {"cmd":"quit"}; cancel also gives Final(CANCELLED)

CPQD 2.4 (``cpqd.py``, next issue; document 003 and protocol-notes Part 1). One session per call, many
recognitions, every CREATE_SESSION of the call carrying the call's ``Channel-Identifier``::

    open()            -> ASR 2.4 CREATE_SESSION / Channel-Identifier: <request.channel_id>     OPENING
    receive(RESPONSE CREATE_SESSION SUCCESS) -> (nothing)                                       READY
    send(request)     -> SET_PARAMETERS (Infer-emotion-enabled: true, timers, n-best)
                         [DEFINE_GRAMMAR for inline phrases], START_RECOGNITION (text/uri-list,
                         Verify-Buffer-Utterance)                                               STARTING
    receive(RESPONSE START_RECOGNITION SUCCESS) -> RecognitionStarted                           LISTENING
    start_timers()    -> START_INPUT_TIMERS
    audio(pcm)        -> SEND_AUDIO LastPacket: false;  end() -> SEND_AUDIO LastPacket: true
    receive(START_OF_SPEECH / END_OF_SPEECH / RECOGNITION_RESULT PROCESSING)
                      -> StartOfSpeech / EndOfSpeech / Partial
    receive(RECOGNITION_RESULT final, emotion_scores) -> Final(status from result_status,
                         classification=Classification(emotion=Emotion(...)))                   READY
    cancel()          -> CANCEL_RECOGNITION;  close() -> RELEASE_SESSION                        CLOSED

AmiVoice (``amivoice.py``, next issue; documents 001/002, protocol-notes Part 2). ``s ... e`` repeated on
one socket; the caller's G.711 passes through untouched with ``AudioFormat.PCMU``/``PCMA``::

    open()            -> nothing                                                               READY
    send(request)     -> s MULAW -a-general authorization=... profileWords="..."               STARTING
    receive("s")      -> RecognitionStarted                                                    LISTENING
    audio(mulaw)      -> b"p" + payload
    receive("S 1230" / "E 3450" / "U {...}") -> StartOfSpeech(1.23) / EndOfSpeech(3.45) / Partial
    receive("A {...}") -> Final(RECOGNIZED, words with written/spoken forms and times)
    end()             -> "e"  (ENDING: the remaining A results, then "e")                      READY
    deadline()        -> the server's no-communication timeout, to be answered before it fires
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

# A WebSocket text frame (str) or binary frame (bytes).
Frame = str | bytes
# A vendor option value from the dialplan, validated by that vendor's codec factory.
OptionValue = str | int | float | bool


class AudioFormat(Enum):
    """What the call streams: decoded PCM16, or the caller's G.711 payload as received (no decode)."""

    PCM16 = "pcm16"  # 16-bit little-endian linear, 8 kHz mono
    PCMU = "pcmu"  # G.711 µ-law, 8 kHz (RTP payload type 0)
    PCMA = "pcma"  # G.711 A-law, 8 kHz (RTP payload type 8)

    @property
    def bytes_per_second(self) -> int:
        return 16000 if self is AudioFormat.PCM16 else 8000


class Classifier(Enum):
    """Speaker classifiers a vendor can run beside recognition (CPQD 2.4 ``Infer-*-enabled``)."""

    EMOTION = "emotion"
    AGE = "age"
    GENDER = "gender"


@dataclass(frozen=True, slots=True)
class Grammar:
    """What the caller may say: inline phrases, an SRGS document, and/or a vendor builtin URI."""

    phrases: tuple[str, ...] = ()
    srgs: str | None = None  # SRGS text (ABNF or XML), read when the dialplan loads
    uri: str | None = None  # e.g. "builtin:slm/general" (CPQD), "-a-general" (AmiVoice engine name)

    @property
    def empty(self) -> bool:
        return not self.phrases and self.srgs is None and self.uri is None


@dataclass(frozen=True, slots=True)
class Timers:
    """Recognition timers in seconds, with MRCP/VoiceXML meaning; None = the vendor's default.

    ``no_input`` runs from the end of the prompt (the driver is told by ``start_timers``), not while it plays.
    """

    no_input: float = 5.0
    speech_complete: float | None = None  # silence after speech that completes the grammar
    speech_incomplete: float | None = None  # silence after speech that does not (yet) complete it
    max_speech: float | None = None  # longest utterance before MAX_SPEECH


@dataclass(frozen=True, slots=True)
class RecognitionRequest:
    """One recognition, built by the dialplan engine for a listen step; vendor-neutral and hashable."""

    id: int
    language: str  # BCP 47 (ko, en-US, pt-BR, ja); each codec maps it to its vendor's code
    grammar: Grammar = field(default_factory=Grammar)
    dtmf: tuple[str, ...] = ()  # the keys that end the recognition (the DTMF grammar)
    timers: Timers = field(default_factory=Timers)
    confidence_threshold: float = 0.0  # results below it are NO_MATCH
    n_best: int = 1
    partial_results: bool = True
    classifiers: frozenset[Classifier] = frozenset()
    verify_buffer: bool = False  # CPQD Verify-Buffer-Utterance: keep the audio for voice biometrics
    options: tuple[tuple[str, OptionValue], ...] = ()  # vendor options, validated by that vendor's codec
    audio_format: AudioFormat = AudioFormat.PCM16
    channel_id: str = ""  # the call's 32-hex Channel-Identifier, shared by every session of the call


# ---- events


class ResultStatus(Enum):
    """How a recognition ended (MRCP completion causes, reduced to what a dialplan routes on)."""

    RECOGNIZED = "recognized"
    NO_MATCH = "no-match"
    NO_INPUT = "no-input"
    MAX_SPEECH = "max-speech"
    CANCELLED = "cancelled"
    ERROR = "error"


class Failure(Enum):
    """What kind of trouble ended a recognition: the word a failover is recorded with (CDR, logs)."""

    VENDOR = "vendor-error"  # the vendor answered with an error, or sent what the codec cannot read
    UNREACHABLE = "unreachable"  # refused connection, DNS, TLS: no WebSocket
    UNAUTHORIZED = "unauthorized"  # the handshake was refused (401/403)
    CLOSED = "closed"  # the connection ended under the recognition
    TIMEOUT = "timeout"  # a reply that never came within its deadline
    CIRCUIT_OPEN = "circuit-open"  # skipped: the endpoint's breaker is open
    INTERNAL = "internal"  # our own bug (codec, reader), or a request no vendor could take


@dataclass(frozen=True, slots=True)
class VendorError:
    """An error as the vendor reported it (code may be empty), or as the driver saw it (code "")."""

    code: str
    message: str
    # A fresh attempt can succeed (the vendor was busy, or ended an idle session on its own): the driver
    # tries the recognition once more, replaying the caller's audio, before giving up on it.
    retryable: bool = False
    kind: Failure = Failure.VENDOR

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip()


@dataclass(frozen=True, slots=True)
class Word:
    """One recognized word; times in seconds from the start of the recognition's audio, when known."""

    text: str
    start: float | None = None
    end: float | None = None
    confidence: float | None = None
    spoken: str | None = None  # pronunciation form where the vendor gives one (AmiVoice ``spoken``)


@dataclass(frozen=True, slots=True)
class Alternative:
    """One hypothesis (n-best entry) of a final result."""

    text: str
    confidence: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Scores:
    """A classifier's label and its distribution: ``p`` per class, ``groups`` per group of classes."""

    label: str
    p: tuple[tuple[str, float], ...] = ()
    groups: tuple[tuple[str, float], ...] = ()

    def score(self, name: str) -> float:
        return next((v for k, v in (*self.p, *self.groups) if k == name), 0.0)


@dataclass(frozen=True, slots=True)
class Classification:
    """Speaker classifier results delivered with a final result (CPQD 2.4 emotion/age/gender scores)."""

    emotion: Scores | None = None
    age: Scores | None = None
    gender: Scores | None = None


@dataclass(frozen=True, slots=True)
class RecognitionStarted:
    """The vendor is listening: audio of this recognition flows from now on."""

    recognition: int


@dataclass(frozen=True, slots=True)
class StartOfSpeech:
    """The caller started speaking; ``time`` in seconds from the recognition's first audio, when known."""

    recognition: int
    time: float | None = None


@dataclass(frozen=True, slots=True)
class EndOfSpeech:
    """The vendor detected the end of the utterance; its Final follows."""

    recognition: int
    time: float | None = None


@dataclass(frozen=True, slots=True)
class Partial:
    """An interim hypothesis; the utterance is still going on."""

    recognition: int
    text: str
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Final:
    """How one recognition ended: exactly one per request, whatever happens (the driver guarantees it)."""

    recognition: int
    status: ResultStatus
    alternatives: tuple[Alternative, ...] = ()
    classification: Classification | None = None
    error: VendorError | None = None

    @property
    def text(self) -> str:
        return self.alternatives[0].text if self.alternatives else ""

    @property
    def confidence(self) -> float:
        return self.alternatives[0].confidence if self.alternatives else 0.0


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session (and its connection) is over; ``error`` says why when it was not a clean close."""

    error: VendorError | None = None


AsrEvent = RecognitionStarted | StartOfSpeech | EndOfSpeech | Partial | Final | SessionClosed


class SessionState(Enum):
    """What a codec's session can take next; the driver reads it instead of keeping flags of its own."""

    OPENING = "opening"  # session-open frames sent, waiting for the vendor
    READY = "ready"  # send() a request
    STARTING = "starting"  # request sent, the vendor is not listening yet: the driver holds audio
    LISTENING = "listening"  # audio() flows
    ENDING = "ending"  # audio ended or cancelled, waiting for the last results
    CLOSING = "closing"  # session end sent, waiting for the vendor's goodbye
    CLOSED = "closed"  # nothing more on this connection: a new request needs a new connection and codec


class RecognizerError(Exception):
    """A recognition cannot start or go on: refused request, unreachable or stalled vendor."""

    def __init__(self, message: str, kind: Failure = Failure.UNREACHABLE) -> None:
        super().__init__(message)
        self.kind = kind


class UnsupportedRequest(RecognizerError, ValueError):
    """The vendor cannot do what the request asks (language, audio format, option); raised by ``send``."""


@runtime_checkable
class RecognizerCodec(Protocol):
    """Sans-I/O wire codec of one vendor session; see the module docstring for each vendor's mapping."""

    vendor: str
    chunk_ms: int  # preferred audio per frame on the wire
    # Its errors can be retryable (VendorError.retryable): only then does the driver keep each request's
    # audio for a replay (up to 5 s of it, 80 KB a call at PCM16 8 kHz).
    retries: bool

    @property
    def state(self) -> SessionState: ...

    @property
    def recognition(self) -> int | None:
        """The id of the recognition in progress (STARTING to ENDING), if any."""
        ...

    def open(self, now: float) -> None:
        """The connection is up: queue whatever opens the session."""
        ...

    def send(self, request: RecognitionRequest, now: float) -> list[AsrEvent]:
        """Start a recognition (state READY); UnsupportedRequest when the vendor cannot do it."""
        ...

    def audio(self, chunk: bytes, now: float) -> None:
        """One coalesced chunk of the request's audio format (state LISTENING)."""
        ...

    def start_timers(self, now: float) -> None:
        """The prompt has ended: the no-input timer starts now (MRCP START-INPUT-TIMERS)."""
        ...

    def end(self, now: float) -> list[AsrEvent]:
        """The caller's audio for this recognition is over; the last results follow."""
        ...

    def cancel(self, now: float) -> list[AsrEvent]:
        """The step moved on: stop the recognition; its Final(CANCELLED) comes out now or later."""
        ...

    def close(self, now: float) -> list[AsrEvent]:
        """End the session politely (after any recognition in progress is cancelled)."""
        ...

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        """Events carried by one vendor frame; malformed input ends the recognition with Final(ERROR)."""
        ...

    def connection_lost(self, error: VendorError | None) -> list[AsrEvent]:
        """The connection is gone: a Final(ERROR) for the recognition in progress, then SessionClosed."""
        ...

    def data_to_send(self) -> list[Frame]:
        """Frames queued by the calls above, oldest first; the queue is emptied."""
        ...

    def deadline(self) -> float | None:
        """When the driver must call ``timeout``; None for no deadline."""
        ...

    def timeout(self, now: float) -> list[AsrEvent]: ...


class CodecBase:
    """What every codec shares: the outgoing frame queue, the state and the recognition in progress."""

    vendor: str = ""
    chunk_ms: int = 100
    retries: bool = False

    def __init__(self) -> None:
        self._out: list[Frame] = []
        self._state = SessionState.READY
        self._recognition: int | None = None

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def recognition(self) -> int | None:
        return self._recognition

    def data_to_send(self) -> list[Frame]:
        out, self._out = self._out, []
        return out

    def deadline(self) -> float | None:
        return None

    def timeout(self, now: float) -> list[AsrEvent]:
        return []

    def start_timers(self, now: float) -> None:
        """Vendors without input timers of their own: the dialplan engine's no-input deadline decides."""

    def connection_lost(self, error: VendorError | None) -> list[AsrEvent]:
        if self._state is SessionState.CLOSED:
            return []
        events: list[AsrEvent] = []
        if self._recognition is not None:
            failure = error or VendorError("", f"{self.vendor} closed the connection", kind=Failure.CLOSED)
            events.append(self._final(ResultStatus.ERROR, error=failure))
        self._state = SessionState.CLOSED
        self._out.clear()
        events.append(SessionClosed(error))
        return events

    def _final(self, status: ResultStatus, **values: object) -> Final:
        """The Final of the recognition in progress; the codec takes no more of its results."""
        assert self._recognition is not None
        final = Final(self._recognition, status, **values)  # type: ignore[arg-type]
        self._recognition = None
        return final
