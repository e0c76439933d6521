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
- What the call gives the engine: `variables` (caller, callee, call_id; channel_id comes from `channel_id`)
  for `{{ templates }}`, and `clock`, the wall clock business hours are read from (aware datetimes; the
  default reads the system's UTC time). Loop time (`now`) stays for deadlines.
- Answering: the call is not answered until the engine says so. `Answer` (id 0, once per call) comes
  immediately before the first `Play`, `Say` or `Listen`. Steps that only compute (goto, set, branch,
  webhook, call, return) never answer, so a flow can route before answering: a transfer reached unanswered
  is a `Redirect` (302 with the transfer's headers; nothing follows, the call ends), and a hangup reached
  unanswered is `Hangup(cause="rejected")` (the call refuses with 480).
- `Say` is a prompt like `Play` and ends with `PromptFinished` (its id). `Transfer.headers` are the
  dialplan's own context headers, expanded, CR/LF removed, a redacted step's words as [redacted].
- `Webhook(id, url, body, timeout)` is answered by `WebhookReplied(id, status, reply, reason)`: status 0
  when no reply came; 2xx with a JSON object routes on it (kept as `webhook.<key>`), anything else takes the
  step's `on_failure`. The engine's own deadline (`timeout` + `WEBHOOK_GUARD`) takes on_failure if no
  `WebhookReplied` comes at all. On hold the request goes on; where its reply leads waits for `Resumed`.
- Digit collection (`listen.dtmf`): `Digit` events are collected (the first cancels the prompt and the
  recognition), ended by the terminator, `max_digits`, or the inter-digit deadline (a `tick`).
- Confirmation (`confirm:` on a route): an unsure match plays or says the question and listens again (its
  own `Listen`, yes/no words and keys 1/2) before the route is taken; hold restarts the step.
- Sub-flows (`call:`): the engine keeps a stack of flows; `Routed.step` inside one is `file:step`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum

from ivr.asr.base import (
    AudioFormat,
    Grammar,
    RecognitionRequest,
    ResultStatus,
    Timers,
)
from ivr.dialplan.actions import (
    Action,
    Answer,
    Cancel,
    Digit,
    Event,
    Handoff,
    Hangup,
    Held,
    Listen,
    NotRecognized,
    PartialResult,
    Play,
    PromptFinished,
    Recognized,
    Redirect,
    Resumed,
    Routed,
    Say,
    SpeechEnded,
    SpeechStarted,
    StartInputTimers,
    Transfer,
    TransferEnded,
    Webhook,
    WebhookReplied,
)
from ivr.dialplan.conditions import (
    CONFIRM_NO_KEY,
    CONFIRM_YES_KEY,
    DTMF_KEYS,
    Branch,
    Conditions,
    PromptEntry,
    SayPrompt,
    is_uri,
)
from ivr.dialplan.matching import (
    keys_match,
    keyword,
    normalize,
    state_holds,
    state_via,
    takes_keys,
    takes_speech,
    text_match,
    words_match,
)
from ivr.dialplan.schema import Dialplan, Fallback, Route, Step, step_vocabulary
from ivr.dialplan.speaker import SpeakerHistory, SpeakerSummary
from ivr.dialplan.templates import WEBHOOK_PREFIX, expand, flatten, names

__all__ = [  # the actions and events are re-exported: they lived here first, as did normalize
    "SPEECH_GUARD",
    "WEBHOOK_GUARD",
    "Action",
    "Answer",
    "Cancel",
    "DialplanEngine",
    "Digit",
    "Event",
    "Handoff",
    "Hangup",
    "Held",
    "Listen",
    "NotRecognized",
    "PartialResult",
    "Play",
    "PromptFinished",
    "Recognized",
    "Redirect",
    "Resumed",
    "Routed",
    "Say",
    "SpeechEnded",
    "SpeechStarted",
    "StartInputTimers",
    "Transfer",
    "TransferEnded",
    "Webhook",
    "WebhookReplied",
    "normalize",
]

# A step without max_speech still gets an answer this long after speech starts: a vendor that never sends
# its result must not hold the caller on a silent line.
SPEECH_GUARD = 30.0
# The engine's own deadline for a webhook, past its timeout: the call reports status 0 when the reply does
# not come, and this guards against that report being lost.
WEBHOOK_GUARD = 1.0
REDACTED = "[redacted]"
_CONFIRM_KEYS = (CONFIRM_YES_KEY, CONFIRM_NO_KEY)


class _Phase(Enum):
    PLAYING = "playing"  # a prompt without barge-in: waiting for its end before listening
    LISTENING = "listening"  # waiting for speech, a result, a digit or the no-input deadline
    WEBHOOK = "webhook"  # waiting for a webhook's reply
    TRANSFERRING = "transferring"
    HELD = "held"  # on hold: nothing plays, listens or times out until the caller resumes
    DONE = "done"


class _Timer(Enum):
    NO_INPUT = "no-input"
    MAX_SPEECH = "max-speech"
    INTER_DIGIT = "inter-digit"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class _Confirming:
    """A route matched with low confidence, waiting for the caller's yes or no."""

    route: Route
    via: str


def _utc_now() -> datetime:
    # The only wall-clock read of the dialplan package, and only as the default: the call passes its clock.
    return datetime.now(UTC)


def _one_line(value: str) -> str:
    """A header value never carries CR or LF (header injection)."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


class DialplanEngine:
    """One call's walk through a dialplan."""

    def __init__(
        self,
        dialplan: Dialplan,
        *,
        channel_id: str = "",
        g711: AudioFormat = AudioFormat.PCMU,
        variables: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._main = dialplan
        self._flow = dialplan  # the dialplan whose steps run now (a sub-flow's while it runs)
        self._stack: list[tuple[Dialplan, str, str]] = []  # (caller flow, step to return to, call: name)
        self._channel_id = channel_id
        self._g711 = g711  # the call's codec, for steps that pass the caller's audio through
        self._clock = clock
        self._name = dialplan.start
        self._phase = _Phase.PLAYING
        self._answered = False
        self._no_input = 0
        self._no_match = 0
        self._next_id = 0
        self._prompt: int | None = None  # the prompt playing
        self._listen: int | None = None  # the recognition whose outcome we wait for
        self._transfer: int | None = None
        self._webhook: int | None = None
        self._speaking = False
        self._recognizer_failed = False
        self._deadline: float | None = None
        self._timer: _Timer | None = None
        self._paused: float | None = None  # a webhook's time left, while on hold
        self._pending: tuple[str, str] | None = None  # where a webhook reply received on hold leads
        self._digits: str | None = None  # keys collected so far (None: not collecting)
        self._confirming: _Confirming | None = None
        self._speaker = SpeakerHistory(dialplan.asr.emotion_window)
        self._transcript: list[str] = []
        self._failed_transfers: set[str] = set()  # steps whose transfer failed once: the next failure ends
        self._vars: dict[str, str] = {"channel_id": channel_id, **(variables or {})}
        self._sensitive: set[str] = set()  # variables holding what a redacted step heard

    @property
    def finished(self) -> bool:
        return self._phase is _Phase.DONE

    @property
    def step(self) -> str:
        """The current step's name (`file:step` inside a sub-flow)."""
        return self._qualified(self._name)

    @property
    def redacted(self) -> bool:
        """Whether what the caller says or keys now is sensitive (the current step's `redact`)."""
        return self._current.redact

    @property
    def variables(self) -> Mapping[str, str]:
        """The call's variables now: the call's own, the last turn's, `set:` and `webhook.*`."""
        return dict(self._vars)

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
        return self._enter(self._flow.start, "start", now)

    def handle(self, event: Event, now: float) -> list[Action]:
        if self._phase is _Phase.DONE:
            return []
        step = self._current
        if isinstance(event, PromptFinished):
            return self._prompt_finished(step, event, now)
        if isinstance(event, TransferEnded):
            return self._transfer_ended(step, event, now)
        if isinstance(event, Held | Resumed):
            return self._hold(event, now)
        if isinstance(event, WebhookReplied):
            return self._webhook_replied(step, event, now)
        if isinstance(event, Digit) and self._phase is _Phase.PLAYING and self._keys_cut(step):
            # `barge_in: dtmf`: the key stops the prompt, the step listens from now, and the key counts.
            stop = Cancel(self._prompt) if self._prompt is not None else None
            self._prompt = None
            listening = self._after_prompt(step, now)
            return [*([stop] if stop else []), *listening, *self._digit(step, event.digit.upper(), now)]
        if self._phase is not _Phase.LISTENING:
            return []
        if isinstance(event, Digit):
            if self._prompt is not None and not step.settings.dtmf_barge_in:
                return []
            return self._digit(step, event.digit.upper(), now)
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
        if self._confirming is not None:
            return self._confirmed(step, self._yes_or_no(step, event.text), now)
        self._heard(step, event)
        if event.confidence < step.settings.min_confidence:
            return self._no_match_or_default(step, now)
        return self._take(step, self._match_speech(step, event.text, event.confidence), event.confidence, now)

    def tick(self, now: float) -> list[Action]:
        """The deadline has come: an input, speech, digit or webhook timer ran out."""
        if self._deadline is None or now < self._deadline:
            return []
        if self._phase not in (_Phase.LISTENING, _Phase.WEBHOOK):
            return []
        timer = self._timer
        self._deadline = self._timer = None
        step = self._current
        if timer is _Timer.WEBHOOK:
            assert step.webhook is not None
            self._webhook = None
            return self._enter(step.webhook.on_failure, "webhook_failed:timeout", now)
        if timer is _Timer.INTER_DIGIT:
            return self._digits_done(step, now)
        if timer is _Timer.NO_INPUT and self._recognizer_failed:
            assert step.no_input is not None  # validated: every listening step has no_input
            return self._enter(step.no_input.goto, "recognizer_failed", now)
        return self._fallback(step, "no_input", now)

    # ---- what was heard

    @property
    def _current(self) -> Step:
        return self._flow.steps[self._name]

    def _qualified(self, name: str) -> str:
        return f"{self._stack[-1][2]}:{name}" if self._stack else name

    def _heard(self, step: Step, event: Recognized) -> None:
        """Keep what the caller said for the handoff and the templates; what a redacted step heard (a card
        number) never leaves in the transfer's headers, as it never reaches the CDR (ivr.cdr.REDACTED_TEXT).
        """
        self._transcript.append(REDACTED if step.redact else event.text)
        summary = self._speaker.summary()
        self._store("last.text", event.text, step.redact)
        self._store("last.confidence", f"{event.confidence:.2f}", False)
        self._store("last.emotion", summary.emotion or "", False)

    def _store(self, name: str, value: str, sensitive: bool) -> None:
        self._vars[name] = value
        if sensitive:
            self._sensitive.add(name)
        else:
            self._sensitive.discard(name)

    def _expand(self, text: str, redact: bool = False) -> str:
        """`text` with its `{{ variables }}`; `redact` hides what redacted steps heard (headers)."""
        if not redact:
            return expand(text, self._vars)
        shown = {k: REDACTED if k in self._sensitive else v for k, v in self._vars.items()}
        return expand(text, shown)

    def _tainted(self, text: str) -> bool:
        return "{{" in text and any(name in self._sensitive for name in names(text))

    def _partial(self, step: Step, event: PartialResult, now: float) -> list[Action]:
        settings = step.settings
        # A step with classifiers waits for the final: its classification feeds the speaker history and
        # the handoff. A partial without a confidence (0) cannot pass a threshold.
        if self._confirming is not None or not settings.early_match or step.classifiers:
            return []
        if event.confidence < settings.min_confidence:
            return []
        match = self._early_match(step, normalize(event.text))
        if match is None:
            return []
        self._heard(step, Recognized(event.id, event.text, event.confidence))
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
        key = self._qualified(self._name)
        if step.on_failure is not None and key not in self._failed_transfers:
            self._failed_transfers.add(key)
            return self._enter(step.on_failure, f"transfer_failed:{event.status}", now)
        self._phase = _Phase.DONE
        return [Hangup(self._new_id(), f"transfer-failed-{event.status}")]

    def _hold(self, event: Held | Resumed, now: float) -> list[Action]:
        if self._phase is _Phase.WEBHOOK:
            return self._hold_webhook(event, now)
        if isinstance(event, Held):
            if self._phase in (_Phase.PLAYING, _Phase.LISTENING):
                self._phase = _Phase.HELD
                return self._stop_all()
            return []  # a transfer in progress goes on (phones hold the call before transferring it)
        if self._phase is not _Phase.HELD:
            return []
        return self._enter(self._name, "resumed", now)

    def _hold_webhook(self, event: Held | Resumed, now: float) -> list[Action]:
        """The request goes on while held; its deadline pauses, and where its reply leads waits for resume."""
        if isinstance(event, Held):
            if self._paused is None and self._deadline is not None:
                self._paused = self._deadline - now
                self._arm(None, None)
            return []
        if self._paused is None:
            return []
        if self._pending is not None:
            target, via = self._pending
            self._pending = self._paused = None
            return self._enter(target, via, now)
        self._arm(_Timer.WEBHOOK, now + self._paused)
        self._paused = None
        return []

    def _webhook_replied(self, step: Step, event: WebhookReplied, now: float) -> list[Action]:
        if event.id != self._webhook or step.webhook is None:
            return []
        self._webhook = None
        hook = step.webhook
        if 200 <= event.status < 300 and isinstance(event.reply, dict):
            for name in [n for n in self._vars if n.startswith(WEBHOOK_PREFIX)]:
                self._store(name, "", False)
                del self._vars[name]
            for name, value in flatten(event.reply).items():
                self._store(name, value, False)
            target, via = self._branch(hook.routes, hook.goto, "webhook")
        else:
            why = event.status if event.status else (event.reason or "no-reply")
            target, via = hook.on_failure, f"webhook_failed:{why}"
        if self._paused is not None:  # on hold: go there when the caller resumes
            self._pending = (target, via)
            return []
        self._arm(None, None)
        return self._enter(target, via, now)

    # ---- steps

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _arm(self, timer: _Timer | None, deadline: float | None) -> None:
        self._timer, self._deadline = (timer, deadline) if deadline is not None else (None, None)

    def _keys_cut(self, step: Step) -> bool:
        """A key during this step's prompt stops it although speech does not (the step listens after)."""
        return (
            step.listens
            and self._prompt is not None
            and step.settings.dtmf_barge_in
            and not step.settings.speech_barge_in
        )

    def _stop_all(self) -> list[Action]:
        """Cancel whatever still runs of the step being left."""
        stops: list[Action] = [Cancel(i) for i in (self._prompt, self._listen) if i is not None]
        self._prompt = self._listen = None
        self._speaking = False
        self._digits = None
        self._arm(None, None)
        return stops

    def _answer(self) -> list[Action]:
        """`Answer` before the call's first prompt or recognition, and never again."""
        if self._answered:
            return []
        self._answered = True
        # Id 0: there is one Answer per call, and the other actions keep the ids they had before it.
        return [Answer(0)]

    def _enter(self, name: str, via: str, now: float) -> list[Action]:
        stops = self._stop_all()
        self._name = name
        self._no_input = self._no_match = 0
        self._recognizer_failed = False
        self._confirming = None
        step = self._current
        for key, value in step.set.items():
            self._store(key, self._expand(value), self._tainted(value))
        routed = Routed(self._new_id(), self._qualified(name), via)
        return [*stops, routed, *self._prompt_then(step, step.prompt, now)]

    def _prompt_then(self, step: Step, prompt: PromptEntry | None, now: float) -> list[Action]:
        """Play or say `prompt` (if any), then whatever the step does next."""
        if prompt is None:
            return self._after_prompt(step, now)
        answer = self._answer()
        barge_in = step.listens and step.settings.speech_barge_in
        action: Play | Say
        if isinstance(prompt, SayPrompt):
            language = step.settings.language or self._flow.asr.language
            action = Say(self._new_id(), self._expand(prompt.say), language, barge_in)
        else:
            action = Play(self._new_id(), self._flow.prompt_path(prompt), barge_in)
        self._prompt = action.id
        if barge_in:
            self._phase = _Phase.LISTENING
            return [*answer, action, self._start_listening(step)]
        self._phase = _Phase.PLAYING
        return [*answer, action]

    def _prompt_finished(self, step: Step, event: PromptFinished, now: float) -> list[Action]:
        if event.id != self._prompt:
            return []  # a superseded prompt: its end must not end the next step's prompt early
        self._prompt = None
        if self._phase is _Phase.PLAYING:
            return self._after_prompt(step, now)
        if self._phase is _Phase.LISTENING and not self._speaking and self._digits is None:
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
            return [StartInputTimers(self._listen)] if self._listen is not None else []
        return []

    def _after_prompt(self, step: Step, now: float) -> list[Action]:
        if step.listens:
            answer = self._answer()
            self._phase = _Phase.LISTENING
            listen = self._start_listening(step)
            self._arm(_Timer.NO_INPUT, now + step.settings.timeout)
            return [*answer, listen, StartInputTimers(listen.id)]
        if step.call is not None:
            assert step.goto is not None  # validated: a call has a goto to come back to
            self._stack.append((self._flow, step.goto, step.call))
            self._flow = self._flow.subflow(step.call)
            return self._enter(self._flow.start, f"call:{step.call}", now)
        if step.return_ and self._stack:
            self._flow, back, called = self._stack.pop()
            return self._enter(back, f"return:{called}", now)
        if step.goto is not None:
            return self._enter(step.goto, "goto", now)
        if step.branch:
            return self._enter(*self._branch(step.branch, None, "branch"), now)
        if step.webhook is not None:
            return self._call_webhook(step, now)
        if step.transfer is not None:
            return self._transfer_to(step, now)
        self._phase = _Phase.DONE
        # Nothing was answered: refuse the call (the call answers 480) rather than answer to hang up.
        return [Hangup(self._new_id(), "normal" if self._answered else "rejected")]

    def _branch(self, branches: Sequence[Branch], otherwise: str | None, kind: str) -> tuple[str, str]:
        """The first branch whose conditions hold, else the default one, else `otherwise`."""
        default = next((b.goto for b in branches if not b.has_state_conditions), otherwise)
        for branch in branches:
            if branch.has_state_conditions and self._holds(branch):
                return branch.goto, f"{kind}:{state_via(branch)}"
        if default is None:  # validated away (a branch has a default); never a silent line if not
            return self._name, f"{kind}:none"
        return default, f"{kind}:default"

    def _holds(self, conditions: Conditions) -> bool:
        return state_holds(conditions, self._vars, self._flow.calendars, self._clock)

    def _call_webhook(self, step: Step, now: float) -> list[Action]:
        hook = step.webhook
        assert hook is not None
        if hook.body:
            body: dict[str, object] = {k: self._expand(v) for k, v in hook.body.items()}
        else:
            body = {
                k: v
                for k, v in self._vars.items()
                if k not in self._sensitive and not k.startswith(WEBHOOK_PREFIX)
            }
        action = Webhook(self._new_id(), self._expand(hook.url), body, hook.timeout)
        self._webhook = action.id
        self._phase = _Phase.WEBHOOK
        self._arm(_Timer.WEBHOOK, now + hook.timeout + WEBHOOK_GUARD)
        return [action]

    def _transfer_to(self, step: Step, now: float) -> list[Action]:
        target = step.transfer
        assert target is not None
        to = self._expand(target.to)
        headers = tuple((name, _one_line(self._expand(v, redact=True))) for name, v in target.headers.items())
        if not is_uri(to):  # a variable made it something else: a failed transfer, not a bad REFER
            return self._transfer_ended(step, TransferEnded(self._transfer or 0, 0), now)
        if not self._answered:
            # Nothing was answered yet: redirect the INVITE (302) instead of answering to transfer.
            self._phase = _Phase.DONE
            return [Redirect(self._new_id(), to, headers)]
        self._phase = _Phase.TRANSFERRING
        handoff = Handoff(self._channel_id, tuple(self._transcript), self._speaker.summary(), self._name)
        transfer = Transfer(self._new_id(), to, handoff, headers)
        self._transfer = transfer.id
        return [transfer]

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
            step.settings.vendor or self._flow.asr.vendor,
            request,
            step.settings.speech_barge_in,
            secondaries,
        )
        self._listen = listen.id
        self._speaking = False
        return listen

    def _request(self, step: Step, recognition: int) -> RecognitionRequest:
        settings = step.settings
        language = settings.language or self._flow.asr.language
        grammar_file = settings.grammar_file
        if self._confirming is not None:
            # The question's own vocabulary: the yes and no words, and keys 1 and 2.
            confirm = self._confirming.route.confirm
            assert confirm is not None
            yes, no = confirm.words(language)
            grammar = Grammar(phrases=(*yes, *no))
            keys: tuple[str, ...] = _CONFIRM_KEYS
        else:
            grammar = Grammar(
                phrases=step_vocabulary(step),
                srgs=self._flow.grammar_text(grammar_file) if grammar_file else None,
                uri=settings.grammar,
            )
            keys = (
                tuple(DTMF_KEYS)
                if settings.dtmf is not None
                else tuple(route.dtmf for route in step.routes if route.dtmf is not None)
            )
        return RecognitionRequest(
            id=recognition,
            language=language,
            grammar=grammar,
            dtmf=keys,
            timers=Timers(
                no_input=settings.timeout,
                speech_complete=settings.complete_timeout,
                speech_incomplete=settings.incomplete_timeout,
                max_speech=settings.max_speech,
            ),
            confidence_threshold=settings.min_confidence,
            n_best=settings.n_best,
            partial_results=settings.partial_results,
            classifiers=step.classifiers if self._confirming is None else frozenset(),
            verify_buffer=settings.verify_buffer,
            options=tuple(sorted(settings.options.items())),
            audio_format=AudioFormat.PCM16 if settings.audio == "pcm16" else self._g711,
            channel_id=self._channel_id,
        )

    def _speech_started(self, step: Step, now: float) -> list[Action]:
        self._speaking = True
        self._arm(_Timer.MAX_SPEECH, now + (step.settings.max_speech or SPEECH_GUARD))
        if step.settings.speech_barge_in and self._prompt is not None:
            stop = Cancel(self._prompt)
            self._prompt = None  # cut: its PromptFinished is stale, and the no-input timer is not started
            return [stop]
        return []

    def _not_recognized(self, step: Step, event: NotRecognized, now: float) -> list[Action]:
        if event.status is ResultStatus.NO_MATCH:
            return self._no_match_or_default(step, now)
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
        if fallback is None:  # a step with a default route needs no no_match
            return self._no_match_or_default(step, now)
        if kind == "no_input":
            self._no_input += 1
            tries = self._no_input
        else:
            self._no_match += 1
            tries = self._no_match
        if tries > fallback.retries:
            return self._enter(fallback.goto, kind, now)
        stops = self._stop_all()
        self._confirming = None
        return [
            *stops,
            Routed(self._new_id(), self._qualified(self._name), kind),
            *self._prompt_then(step, fallback.prompt_for(tries) or step.prompt, now),
        ]

    def _no_match_or_default(self, step: Step, now: float) -> list[Action]:
        """What nothing matched leads to: the step's default route, else its no_match fallback."""
        default = next((route for route in step.routes if route.is_default), None)
        if default is not None and self._confirming is None:
            return self._enter(default.goto, "default", now)
        if step.no_match is None:
            assert default is not None
            return self._enter(default.goto, "default", now)
        return self._fallback(step, "no_match", now)

    # ---- keys

    def _digit(self, step: Step, key: str, now: float) -> list[Action]:
        if self._confirming is not None:
            if key not in _CONFIRM_KEYS:
                return []
            return self._confirmed(step, key == CONFIRM_YES_KEY, now)
        collect = step.settings.dtmf
        if collect is None:
            self._store("digits", key, step.redact)
            return self._take(step, self._match_keys(step, key), 1.0, now)
        stops: list[Action] = []
        if self._digits is None:
            # The caller chose the keypad: the prompt stops (barge-in) and so does the recognition.
            stops = self._stop_all()
            self._digits = ""
        if key == collect.terminator:
            return [*stops, *self._digits_done(step, now)]
        self._digits += key
        if len(self._digits) >= collect.max_digits:
            return [*stops, *self._digits_done(step, now)]
        self._arm(_Timer.INTER_DIGIT, now + collect.inter_digit_timeout)
        return stops

    def _digits_done(self, step: Step, now: float) -> list[Action]:
        keys, self._digits = self._digits or "", None
        self._arm(None, None)
        collect = step.settings.dtmf
        assert collect is not None
        self._store("digits", keys, step.redact)
        match = self._match_keys(step, keys)
        # Too few keys is a no-match, except for a `dtmf:` route's own key: "0# for an agent".
        if len(keys) < collect.min_digits and (match is None or match[0].dtmf is None):
            return self._no_match_or_default(step, now)
        return self._take(step, match, 1.0, now)

    # ---- routes

    def _take(
        self, step: Step, match: tuple[Route, str] | None, confidence: float, now: float
    ) -> list[Action]:
        if match is None:
            return self._no_match_or_default(step, now)
        route, via = match
        if route.confirm is not None and confidence < route.confirm.below:
            return self._confirm(step, route, via, now)
        return self._enter(route.goto, via, now)

    def _confirm(self, step: Step, route: Route, via: str, now: float) -> list[Action]:
        assert route.confirm is not None
        stops = self._stop_all()
        self._confirming = _Confirming(route, via)
        routed = Routed(self._new_id(), self._qualified(self._name), f"confirm:{via}")
        return [*stops, routed, *self._prompt_then(step, route.confirm.prompt, now)]

    def _yes_or_no(self, step: Step, text: str) -> bool | None:
        assert self._confirming is not None and self._confirming.route.confirm is not None
        yes, no = self._confirming.route.confirm.words(step.settings.language or self._flow.asr.language)
        said = normalize(text)
        # No first: a refusal may carry a yes word ("아니요, 네 번이 아니라").
        if any(keyword(word) in said for word in no if keyword(word)):
            return False
        if any(keyword(word) in said for word in yes if keyword(word)):
            return True
        return None

    def _confirmed(self, step: Step, answer: bool | None, now: float) -> list[Action]:
        confirming = self._confirming
        assert confirming is not None
        if answer:
            return self._enter(confirming.route.goto, f"{confirming.via}(confirmed)", now)
        # A no (or neither) counts as a no-match of the step: its reprompt, its retries, then its goto;
        # a step whose default route stands in for no_match asks again from its own prompt.
        self._confirming = None
        if step.no_match is None:
            return self._enter(self._name, "not_confirmed", now)
        return self._fallback(step, "no_match", now)

    def _match_keys(self, step: Step, keys: str) -> tuple[Route, str] | None:
        for route in step.routes:
            if not takes_keys(route):
                continue
            via = keys_match(route, keys)
            if via is None or not self._holds(route):
                continue
            return route, via or state_via(route)
        return None

    def _match_speech(self, step: Step, text: str, confidence: float) -> tuple[Route, str] | None:
        for route in step.routes:
            if not takes_speech(route):
                continue  # a keypad-only or default route
            via = text_match(route, text, confidence)
            if via is None or not self._speaker_matches(route) or not self._holds(route):
                continue
            return route, via or (self._speaker_via(route) if route.speaker else state_via(route))
        return None

    def _early_match(self, step: Step, said: str) -> tuple[str, str] | None:
        """The route a partial takes now, when no longer utterance could take an earlier one."""
        if not said:
            return None
        for route in step.routes:
            if not takes_speech(route):
                continue  # a keypad-only route: speech never takes it
            if (route.has_state_conditions or route.regex) and not self._holds(route):
                continue  # the call's state does not change during a turn: the final cannot take it either
            via = words_match(route, said)
            if via is None or route.speaker or route.regex or route.confidence or route.confirm:
                # This route could still match the final (more words, its classification, its regex or
                # confidence): any later route the partial matches would win too early.
                return None
            return route.goto, f"{via or state_via(route)}(early)"
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
