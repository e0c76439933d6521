"""What passes between the dialplan engine and the call: events in (what happened), actions out (what to
do), each small and frozen; `ivr.dialplan.engine`'s docstring is the contract between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ivr.asr.base import Alternative, Classification, RecognitionRequest, ResultStatus
from ivr.dialplan.speaker import SpeakerSummary

# ---- events (what happened), reported by the call


@dataclass(frozen=True)
class PromptFinished:
    """Prompt `id` ended: ran to the end, or was cut (barge-in, cancel, send trouble)."""

    id: int
    completed: bool = True


@dataclass(frozen=True)
class SpeechStarted:
    id: int


@dataclass(frozen=True)
class SpeechEnded:
    id: int


@dataclass(frozen=True)
class Recognized:
    """Recognition `id` ended with a result."""

    id: int
    text: str
    confidence: float
    alternatives: tuple[Alternative, ...] = ()
    classification: Classification | None = None


@dataclass(frozen=True)
class PartialResult:
    """An interim hypothesis of recognition `id`: the caller is still speaking (confidence 0: none given)."""

    id: int
    text: str
    confidence: float = 0.0


@dataclass(frozen=True)
class NotRecognized:
    """Recognition `id` ended without a result: no-match, no-input, max-speech, cancelled or error."""

    id: int
    status: ResultStatus
    reason: str = ""
    classification: Classification | None = None  # a no-match still tells how the caller sounded


@dataclass(frozen=True)
class Digit:
    """A DTMF key (not the outcome of an action: it applies to whatever step is listening)."""

    digit: str


@dataclass(frozen=True)
class Held:
    """The caller put the call on hold (a re-INVITE with sendonly / inactive): the menu pauses."""


@dataclass(frozen=True)
class Resumed:
    """The caller took the call off hold: the current step starts again from its prompt."""


@dataclass(frozen=True)
class WebhookReplied:
    """Webhook `id` ended: the HTTP status (0 when no reply came: refused, timed out) and the reply's JSON
    object (None when the reply was not a JSON object)."""

    id: int
    status: int
    reply: dict[str, object] | None = None
    reason: str = ""


@dataclass(frozen=True)
class TransferEnded:
    """Transfer `id` ended with the final status the transfer target reported (408 when none came)."""

    id: int
    status: int


Event = (
    PromptFinished
    | SpeechStarted
    | SpeechEnded
    | Recognized
    | PartialResult
    | NotRecognized
    | Digit
    | TransferEnded
    | Held
    | Resumed
    | WebhookReplied
)


# ---- actions (what to do), carried out by the call


@dataclass(frozen=True)
class Play:
    id: int
    path: Path
    barge_in: bool


@dataclass(frozen=True)
class Say:
    """Speak `text` with the TTS backend in `language`; it ends with a `PromptFinished` like a `Play`."""

    id: int
    text: str
    language: str
    barge_in: bool


@dataclass(frozen=True)
class Answer:
    """Answer the call (200 OK with the SDP answer): emitted before the first Play, Say or Listen, so a call
    the dialplan redirects or refuses before any prompt is never answered."""

    id: int


@dataclass(frozen=True)
class Redirect:
    """Before the call is answered: send 302 Moved Temporarily to `target` (RFC 3261 section 21.3.3) with
    the context `headers`; the call then ends."""

    id: int
    target: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Webhook:
    """POST `body` (the call's context, a JSON object) to `url`; the outcome comes back as `WebhookReplied`
    within `timeout` seconds (the call reports status 0 when none came)."""

    id: int
    url: str
    body: dict[str, object]
    timeout: float


@dataclass(frozen=True)
class Listen:
    """Recognize the caller on `vendor`; `secondaries` (vendor, request with the same id) take the same
    turn over, in order, when it fails."""

    id: int
    vendor: str
    request: RecognitionRequest
    barge_in: bool
    secondaries: tuple[tuple[str, RecognitionRequest], ...] = ()


@dataclass(frozen=True)
class StartInputTimers:
    """The prompt of listen `id` has ended: the vendor's input timers start now."""

    id: int


@dataclass(frozen=True)
class Cancel:
    """Stop prompt or recognition `id`: the flow has moved on."""

    id: int


@dataclass(frozen=True)
class Handoff:
    """What the agent should know when the call reaches them: the call's id, what was said, how it sounded."""

    channel_id: str
    transcript: tuple[str, ...] = ()  # every recognized text of the call, oldest first
    speaker: SpeakerSummary = field(default_factory=SpeakerSummary)
    step: str = ""  # the step that transfers


@dataclass(frozen=True)
class Transfer:
    id: int
    target: str
    handoff: Handoff = Handoff("")
    headers: tuple[tuple[str, str], ...] = ()  # the dialplan's own context headers, values expanded


@dataclass(frozen=True)
class Hangup:
    id: int
    cause: str


@dataclass(frozen=True)
class Routed:
    """Informational (CDR, logs): the step entered and why: start, goto, say:<word>, dtmf:<key>, digits,
    regex, confidence, when:<var>, open:<calendar>, closed:<calendar>, default, emotion:<group or labels>,
    age, gender:<M|F>, no_input, no_match, recognizer_failed, transfer_failed:<status> (on_failure),
    resumed (off hold), branch:<condition>, webhook:<condition>, webhook_failed:<status|reason|timeout>,
    call:<file>, return:<file>, confirm:<via> (asking) and <via>(confirmed); a match on a partial result
    ends in "(early)", e.g. say:상담원(early). A reprompt re-enters the same step with reason no_input or
    no_match."""

    id: int
    step: str
    via: str


Action = (
    Answer | Play | Say | Listen | StartInputTimers | Cancel | Transfer | Redirect | Webhook | Hangup | Routed
)
