"""The dialplan as a pure state machine: call events in, actions with ids out. No I/O; time is passed in.

Contract with `ivr/call.py` (the call's effect boundary):
- Every action carries an `id`. The events that report an action's outcome (`PromptFinished`,
  `SpeechStarted`, `SpeechEnded`, `PartialResult`, `Recognized`, `NotRecognized`, `TransferEnded`) echo
  it; an event whose id is not the engine's current prompt, recognition or transfer is stale and
  dropped, so a result or a prompt end already queued when a step ended can never act on the next step.
- `Cancel(id)` asks the call to stop a running prompt or recognition; the call still reports the
  prompt's `PromptFinished` (harmless: the id is no longer current).
- Entering a step emits `Routed`, then `Play` (if the step has a prompt) and `Listen` (if it listens).
  With barge-in the `Listen` comes together with the `Play`; without, it comes after the prompt ends.
- Timers are deadlines the engine owns (`next_deadline`, `tick(now)`): the no-input timer runs from the
  end of the prompt (the call is told with `StartInputTimers`), max-speech from the start of speech.
- A step's `secondary` recognizer rides along in its `Listen`; the call fails over to it on its own (same
  recognition id), so a `NotRecognized` ERROR means every recognizer of the step has failed.
- A recognizer that fails (`NotRecognized` with status ERROR) leaves the prompt playing and the keypad
  working; only when the no-input timer runs out does the caller take the step's no_input target, without
  reprompts (a caller must never wait on retries of a recognizer that is gone). Validation guarantees that
  following no_input targets always ends in a transfer or a hangup.
- An empty recognized text counts as no input (recognizers return one for noise).
- Early match (`listen.early_match`): a `PartialResult` routes at once, cancelling the recognition (its late
  final is stale by id), when the final could not route elsewhere if the caller's words only grow: routes
  are tried in order and keywords match anywhere, so more words could always bring an earlier route's
  keyword; only the first route the caller can reach by speech is ever taken early, and never one that
  needs the speaker classification (only the final carries it). Its `Routed` via ends in "(early)".
- Hold (`Held` / `Resumed`, from re-INVITEs) pauses the walk: the prompt and recognition are cancelled, no
  timer runs, and resuming starts the current step again from its prompt. A transfer already under way
  goes on (phones hold the call before they transfer it). A failed transfer takes the step's `on_failure`
  (once; a second failure of the same step ends the call) instead of hanging up on the caller.
- Routes may also match on how the caller sounds (emotion, age, gender from the recognizer's classifiers,
  `ivr.dialplan.speaker`): every turn's classification is kept, averaged over `asr.emotion_window` turns,
  and a `Transfer` carries a `Handoff` (transcript, the averaged emotion, the Channel-Identifier) for the
  agent.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from ivr.asr.base import (
    Alternative,
    AudioFormat,
    Classification,
    Grammar,
    RecognitionRequest,
    ResultStatus,
    Timers,
)
from ivr.dialplan.schema import Dialplan, Fallback, Route, Step, step_vocabulary
from ivr.dialplan.speaker import SpeakerHistory, SpeakerSummary

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
    """Informational (CDR, logs): the step entered and why: start, goto, say:<word>, dtmf:<key>,
    emotion:<group or labels>, age, gender:<M|F>, no_input, no_match, recognizer_failed,
    transfer_failed:<status> (on_failure), resumed (off hold); a match on a partial result ends in
    "(early)", e.g. say:상담원(early). A reprompt re-enters the same step with
    reason no_input or no_match."""

    id: int
    step: str
    via: str


Action = (
    Answer | Play | Say | Listen | StartInputTimers | Cancel | Transfer | Redirect | Webhook | Hangup | Routed
)


def normalize(text: str) -> str:
    """NFC, case-folded, whitespace removed: recognizers disagree on spacing (상담원연결 / 상담원 연결)."""
    return "".join(unicodedata.normalize("NFC", text).casefold().split())


# A step without max_speech still gets an answer this long after speech starts: a vendor that never sends
# its result must not hold the caller on a silent line.
SPEECH_GUARD = 30.0


class _Phase(Enum):
    PLAYING = "playing"  # a prompt without barge-in: waiting for its end before listening
    LISTENING = "listening"  # waiting for speech, a result, a digit or the no-input deadline
    TRANSFERRING = "transferring"
    HELD = "held"  # on hold: nothing plays, listens or times out until the caller resumes
    DONE = "done"


class _Timer(Enum):
    NO_INPUT = "no-input"
    MAX_SPEECH = "max-speech"


class DialplanEngine:
    """One call's walk through a dialplan."""

    def __init__(
        self, dialplan: Dialplan, *, channel_id: str = "", g711: AudioFormat = AudioFormat.PCMU
    ) -> None:
        self._dialplan = dialplan
        self._channel_id = channel_id
        self._g711 = g711  # the call's codec, for steps that pass the caller's audio through
        self._name = dialplan.start
        self._phase = _Phase.PLAYING
        self._no_input = 0
        self._no_match = 0
        self._next_id = 0
        self._prompt: int | None = None  # the prompt playing
        self._listen: int | None = None  # the recognition whose outcome we wait for
        self._transfer: int | None = None
        self._speaking = False
        self._recognizer_failed = False
        self._deadline: float | None = None
        self._timer: _Timer | None = None
        self._speaker = SpeakerHistory(dialplan.asr.emotion_window)
        self._transcript: list[str] = []
        self._failed_transfers: set[str] = set()  # steps whose transfer failed once: the next failure ends

    @property
    def finished(self) -> bool:
        return self._phase is _Phase.DONE

    @property
    def step(self) -> str:
        """The current step's name."""
        return self._name

    @property
    def recognition(self) -> int | None:
        """The id of the recognition whose outcome the engine waits for (others are stale)."""
        return self._listen if self._phase is _Phase.LISTENING else None

    @property
    def speaker(self) -> SpeakerSummary:
        """The caller's emotion, age and gender as heard so far (averaged over the emotion window)."""
        return self._speaker.summary()

    @property
    def next_deadline(self) -> float | None:
        """When the call must call `tick` (the loop time it passes in)."""
        return self._deadline

    def start(self, now: float) -> list[Action]:
        return self._enter(self._dialplan.start, "start", now)

    def handle(self, event: Event, now: float) -> list[Action]:
        if self._phase is _Phase.DONE:
            return []
        step = self._dialplan.steps[self._name]
        if isinstance(event, PromptFinished):
            return self._prompt_finished(step, event, now)
        if isinstance(event, TransferEnded):
            return self._transfer_ended(step, event, now)
        if isinstance(event, Held | Resumed):
            return self._hold(event, now)
        if isinstance(event, WebhookReplied):
            return []  # no step calls a webhook yet (the dialplan language issue adds `webhook:`)
        if self._phase is not _Phase.LISTENING:
            return []
        if isinstance(event, Digit):
            if self._prompt is not None and not step.settings.barge_in:
                return []
            return self._matched(step, self._match_digit(step, event.digit), now)
        if event.id != self._listen:
            return []  # stale: an outcome of a recognition that has been replaced or cancelled
        if isinstance(event, SpeechStarted):
            return self._speech_started(step, now)
        if isinstance(event, SpeechEnded):
            # The vendor heard an end but no result yet (or noise): keep listening, never forever.
            self._speaking = False
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
            return []
        if isinstance(event, PartialResult):
            return self._partial(step, event, now)
        self._listen = None
        self._speaker.add(event.classification)
        if isinstance(event, NotRecognized):
            return self._not_recognized(step, event, now)
        if not normalize(event.text):
            return self._fallback(step, "no_input", now)
        self._heard(step, event.text)
        if event.confidence < step.settings.min_confidence:
            return self._fallback(step, "no_match", now)
        return self._matched(step, self._match_speech(step, event.text), now)

    def _heard(self, step: Step, text: str) -> None:
        """Keep what the caller said for the handoff; what a redacted step heard (a card number) never
        leaves in the transfer's headers, as it never reaches the CDR (ivr.cdr.REDACTED_TEXT)."""
        self._transcript.append("[redacted]" if step.redact else text)

    def _partial(self, step: Step, event: PartialResult, now: float) -> list[Action]:
        settings = step.settings
        # A step with classifiers waits for the final: its classification feeds the speaker history and
        # the handoff. A partial without a confidence (0) cannot pass a threshold.
        if not settings.early_match or step.classifiers or event.confidence < settings.min_confidence:
            return []
        match = self._early_match(step, normalize(event.text))
        if match is None:
            return []
        self._heard(step, event.text)
        return self._enter(*match, now)  # the recognition is still current: entering cancels it

    def _transfer_ended(self, step: Step, event: TransferEnded, now: float) -> list[Action]:
        if event.id != self._transfer:
            return []
        self._transfer = None
        if 200 <= event.status < 300:
            self._phase = _Phase.DONE
            return [Hangup(self._new_id(), "transferred")]
        # A refused or unanswered transfer must not hang up on the caller: on_failure, once per step (a
        # second failure of the same transfer would loop).
        if step.on_failure is not None and self._name not in self._failed_transfers:
            self._failed_transfers.add(self._name)
            return self._enter(step.on_failure, f"transfer_failed:{event.status}", now)
        self._phase = _Phase.DONE
        return [Hangup(self._new_id(), f"transfer-failed-{event.status}")]

    def _hold(self, event: Held | Resumed, now: float) -> list[Action]:
        if isinstance(event, Held):
            if self._phase in (_Phase.PLAYING, _Phase.LISTENING):
                self._phase = _Phase.HELD
                return self._stop_all()
            return []  # a transfer in progress goes on (phones hold the call before transferring it)
        if self._phase is not _Phase.HELD:
            return []
        return self._enter(self._name, "resumed", now)

    def tick(self, now: float) -> list[Action]:
        """The deadline has come: the no-input or max-speech timer ran out."""
        if self._deadline is None or now < self._deadline or self._phase is not _Phase.LISTENING:
            return []
        timer = self._timer
        self._deadline = self._timer = None
        step = self._dialplan.steps[self._name]
        if timer is _Timer.NO_INPUT and self._recognizer_failed:
            assert step.no_input is not None  # validated: every listening step has no_input
            return self._enter(step.no_input.goto, "recognizer_failed", now)
        return self._fallback(step, "no_input", now)

    # ---- steps

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _arm(self, timer: _Timer | None, deadline: float | None) -> None:
        self._timer, self._deadline = (timer, deadline) if deadline is not None else (None, None)

    def _stop_all(self) -> list[Action]:
        """Cancel whatever still runs of the step being left."""
        stops: list[Action] = [Cancel(i) for i in (self._prompt, self._listen) if i is not None]
        self._prompt = self._listen = None
        self._speaking = False
        self._arm(None, None)
        return stops

    def _enter(self, name: str, via: str, now: float) -> list[Action]:
        stops = self._stop_all()
        self._name = name
        self._no_input = self._no_match = 0
        self._recognizer_failed = False
        step = self._dialplan.steps[name]
        return [*stops, Routed(self._new_id(), name, via), *self._prompt_then(step, step.play, now)]

    def _prompt_then(self, step: Step, prompt: str | None, now: float) -> list[Action]:
        """Play `prompt` (if any), then whatever the step does next."""
        if prompt is None:
            return self._after_prompt(step, now)
        barge_in = step.listens and step.settings.barge_in
        play = Play(self._new_id(), self._dialplan.prompt_path(prompt), barge_in)
        self._prompt = play.id
        if barge_in:
            self._phase = _Phase.LISTENING
            return [play, self._start_listening(step)]
        self._phase = _Phase.PLAYING
        return [play]

    def _prompt_finished(self, step: Step, event: PromptFinished, now: float) -> list[Action]:
        if event.id != self._prompt:
            return []  # a superseded prompt: its end must not end the next step's prompt early
        self._prompt = None
        if self._phase is _Phase.PLAYING:
            return self._after_prompt(step, now)
        if self._phase is _Phase.LISTENING and not self._speaking:
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
            return [StartInputTimers(self._listen)] if self._listen is not None else []
        return []

    def _after_prompt(self, step: Step, now: float) -> list[Action]:
        if step.listens:
            self._phase = _Phase.LISTENING
            listen = self._start_listening(step)
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
            return [listen, StartInputTimers(listen.id)]
        if step.goto is not None:
            return self._enter(step.goto, "goto", now)
        if step.transfer is not None:
            self._phase = _Phase.TRANSFERRING
            handoff = Handoff(self._channel_id, tuple(self._transcript), self._speaker.summary(), self._name)
            transfer = Transfer(self._new_id(), step.transfer, handoff)
            self._transfer = transfer.id
            return [transfer]
        self._phase = _Phase.DONE
        return [Hangup(self._new_id(), "normal")]

    def _start_listening(self, step: Step) -> Listen:
        recognition = self._new_id()
        request = self._request(step, recognition)
        secondary = step.settings.secondary
        secondaries: tuple[tuple[str, RecognitionRequest], ...] = ()
        if secondary is not None:
            language = secondary.language or request.language
            options = tuple(sorted(secondary.options.items()))
            secondaries = ((secondary.vendor, replace(request, language=language, options=options)),)
        listen = Listen(
            recognition,
            step.settings.vendor or self._dialplan.asr.vendor,
            request,
            step.settings.barge_in,
            secondaries,
        )
        self._listen = listen.id
        self._speaking = False
        return listen

    def _request(self, step: Step, recognition: int) -> RecognitionRequest:
        settings = step.settings
        grammar_file = settings.grammar_file
        return RecognitionRequest(
            id=recognition,
            language=settings.language or self._dialplan.asr.language,
            grammar=Grammar(
                phrases=step_vocabulary(step),
                srgs=self._dialplan.grammar_text(grammar_file) if grammar_file else None,
                uri=settings.grammar,
            ),
            dtmf=tuple(route.dtmf for route in step.routes if route.dtmf is not None),
            timers=Timers(
                no_input=settings.timeout,
                speech_complete=settings.complete_timeout,
                speech_incomplete=settings.incomplete_timeout,
                max_speech=settings.max_speech,
            ),
            confidence_threshold=settings.min_confidence,
            n_best=settings.n_best,
            partial_results=settings.partial_results,
            classifiers=step.classifiers,
            verify_buffer=settings.verify_buffer,
            options=tuple(sorted(settings.options.items())),
            audio_format=AudioFormat.PCM16 if settings.audio == "pcm16" else self._g711,
            channel_id=self._channel_id,
        )

    def _speech_started(self, step: Step, now: float) -> list[Action]:
        self._speaking = True
        self._arm(_Timer.MAX_SPEECH, now + (step.settings.max_speech or SPEECH_GUARD))
        if step.settings.barge_in and self._prompt is not None:
            stop = Cancel(self._prompt)
            self._prompt = None  # cut: its PromptFinished is stale, and the no-input timer is not started
            return [stop]
        return []

    def _not_recognized(self, step: Step, event: NotRecognized, now: float) -> list[Action]:
        if event.status is ResultStatus.NO_MATCH:
            return self._fallback(step, "no_match", now)
        if event.status in (ResultStatus.NO_INPUT, ResultStatus.MAX_SPEECH):
            return self._fallback(step, "no_input", now)
        if event.status is ResultStatus.CANCELLED:
            return []
        # The recognizer is gone: keep the prompt and the keypad; the no-input deadline decides.
        self._recognizer_failed = True
        self._speaking = False
        if self._prompt is None and (self._timer is not _Timer.NO_INPUT or self._deadline is None):
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
        return []

    def _fallback(self, step: Step, kind: str, now: float) -> list[Action]:
        fallback: Fallback | None = getattr(step, kind)
        assert fallback is not None  # validated: every listening step has no_input and no_match
        if kind == "no_input":
            self._no_input += 1
            tries = self._no_input
        else:
            self._no_match += 1
            tries = self._no_match
        if tries > fallback.retries:
            return self._enter(fallback.goto, kind, now)
        stops = self._stop_all()
        return [
            *stops,
            Routed(self._new_id(), self._name, kind),
            *self._prompt_then(step, fallback.reprompt or step.play, now),
        ]

    def _matched(self, step: Step, match: tuple[str, str] | None, now: float) -> list[Action]:
        if match is None:
            return self._fallback(step, "no_match", now)
        return self._enter(*match, now)

    @staticmethod
    def _match_digit(step: Step, digit: str) -> tuple[str, str] | None:
        for route in step.routes:
            if route.dtmf == digit.upper():
                return route.goto, f"dtmf:{route.dtmf}"
        return None

    def _match_speech(self, step: Step, text: str) -> tuple[str, str] | None:
        said = normalize(text)
        for route in step.routes:
            if not (route.say or route.phrases or route.speaker):
                continue  # a keypad-only route
            via = self._words_match(route, said)
            if via is None or not self._speaker_matches(route):
                continue
            return route.goto, via or self._speaker_via(route)
        return None

    @classmethod
    def _early_match(cls, step: Step, said: str) -> tuple[str, str] | None:
        """The route a partial takes now, when no longer utterance could take an earlier one."""
        if not said:
            return None
        for route in step.routes:
            if not (route.say or route.phrases or route.speaker):
                continue  # a keypad-only route: speech never takes it
            via = cls._words_match(route, said)
            if via is None or route.speaker:
                # This route could still match the final (more words, or its classification): any
                # later route the partial matches would win too early.
                return None
            return route.goto, f"{via}(early)"
        return None

    @staticmethod
    def _words_match(route: Route, said: str) -> str | None:
        """`say:<word>` for the first word found, "" for a route without words, None when none is said."""
        words = (*route.say, *route.phrases)
        if not words:
            return ""
        for word in words:
            if normalize(word) and normalize(word) in said:
                return f"say:{word}"
        return None

    def _speaker_matches(self, route: Route) -> bool:
        speaker = self._speaker
        return (
            (route.emotion is None or speaker.emotion_matches(route.emotion))
            and (route.age is None or speaker.age_matches(route.age))
            and (route.gender is None or speaker.gender_matches(route.gender))
        )

    @staticmethod
    def _speaker_via(route: Route) -> str:
        if route.emotion is not None:
            return f"emotion:{route.emotion.group or '|'.join(route.emotion.labels)}"
        return "age" if route.age is not None else f"gender:{route.gender}"
