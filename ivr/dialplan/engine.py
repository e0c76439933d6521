"""The dialplan as a pure state machine: call events in, actions out. No I/O, no clock.

Contract with `ivr/call.py`:
- Entering a step emits `Routed`, then `Play` (if the step has a prompt) and `Listen` (if it listens).
  With barge-in the `Listen` comes together with the `Play` (listen while the prompt plays); without, it
  comes after `PromptFinished`. The no-input timer (`Listen.timeout`) runs from the end of the prompt;
  when `max_speech` passes without a final result the call reports `NoInput`.
- The call reports exactly one `PromptFinished` per `Play`, also for a prompt cut by barge-in or stopped
  because the flow moved on. The engine counts them and acts only on the one answering its latest `Play`, so
  the end of a superseded prompt can never end the next step's prompt early.
- Events that do not fit the current state (a `Heard` after the step moved on, a `Digit` while a prompt plays
  without barge-in) are ignored.
- `RecognizerFailed` (vendor unreachable) goes straight to the step's no_input target, without reprompts: a
  caller must never be left on a dead line while retries wait on a recognizer that is gone. Validation
  guarantees that following no_input targets always ends in a transfer or a hangup.
- An empty `Heard` text counts as no input (recognizers return one for noise).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ivr.dialplan.schema import Dialplan, Fallback, Step, step_vocabulary


@dataclass(frozen=True)
class PromptFinished:
    """The prompt ran to the end (or was cut by barge-in)."""


@dataclass(frozen=True)
class Heard:
    """A final recognition result."""

    text: str
    confidence: float


@dataclass(frozen=True)
class Digit:
    digit: str


@dataclass(frozen=True)
class NoInput:
    """Listen timeout without speech or digit, or max_speech passed without a final result."""


@dataclass(frozen=True)
class RecognizerFailed:
    reason: str


Event = PromptFinished | Heard | Digit | NoInput | RecognizerFailed


@dataclass(frozen=True)
class Play:
    path: Path
    barge_in: bool


@dataclass(frozen=True)
class Listen:
    vendor: str
    language: str
    timeout: float
    max_speech: float | None
    phrases: tuple[str, ...]
    dtmf: bool
    barge_in: bool


@dataclass(frozen=True)
class Transfer:
    target: str


@dataclass(frozen=True)
class Hangup:
    cause: str


@dataclass(frozen=True)
class Routed:
    """Informational (CDR, logs): the step entered and why: start, goto, say:<word>, dtmf:<key>, no_input,
    no_match, recognizer_failed. A reprompt re-enters the same step with reason no_input or no_match."""

    step: str
    via: str


Action = Play | Listen | Transfer | Hangup | Routed


def normalize(text: str) -> str:
    """NFC, case-folded, whitespace removed: recognizers disagree on spacing (상담원연결 / 상담원 연결)."""
    return "".join(unicodedata.normalize("NFC", text).casefold().split())


class _Phase(Enum):
    PLAYING = "playing"  # waiting for PromptFinished before doing the step's next thing
    LISTENING = "listening"  # waiting for Heard / Digit / NoInput
    DONE = "done"


class DialplanEngine:
    def __init__(self, dialplan: Dialplan) -> None:
        self._dialplan = dialplan
        self._name = dialplan.start
        self._phase = _Phase.PLAYING
        self._no_input = 0
        self._no_match = 0
        self._prompts_playing = 0

    @property
    def finished(self) -> bool:
        return self._phase is _Phase.DONE

    @property
    def step(self) -> str:
        """The current step's name."""
        return self._name

    def start(self) -> list[Action]:
        return self._enter(self._dialplan.start, "start")

    def handle(self, event: Event) -> list[Action]:
        step = self._dialplan.steps[self._name]
        if isinstance(event, PromptFinished):
            if self._prompts_playing == 0:
                return []  # more reports than prompts: nothing to act on
            self._prompts_playing -= 1
            if self._prompts_playing or self._phase is not _Phase.PLAYING:
                return []
            return self._after_prompt(step)
        if self._phase is not _Phase.LISTENING:
            return []
        if isinstance(event, NoInput) or (isinstance(event, Heard) and not normalize(event.text)):
            return self._fallback(step, "no_input")
        if isinstance(event, RecognizerFailed):
            assert step.no_input is not None  # validated: every listening step has no_input
            return self._enter(step.no_input.goto, "recognizer_failed")
        match = self._match(step, event)
        if match is None:
            return self._fallback(step, "no_match")
        target, via = match
        return self._enter(target, via)

    def _enter(self, name: str, via: str) -> list[Action]:
        self._name = name
        self._no_input = self._no_match = 0
        step = self._dialplan.steps[name]
        return [Routed(name, via), *self._prompt(step, step.play)]

    def _prompt(self, step: Step, prompt: str | None) -> list[Action]:
        """Play `prompt` (if any), then whatever the step does next."""
        if prompt is None:
            return self._after_prompt(step)
        barge_in = step.listens and step.settings.barge_in
        play = Play(self._dialplan.prompt_path(prompt), barge_in)
        self._prompts_playing += 1
        if barge_in:
            self._phase = _Phase.LISTENING
            return [play, self._listen(step)]
        self._phase = _Phase.PLAYING
        return [play]

    def _after_prompt(self, step: Step) -> list[Action]:
        if step.listens:
            self._phase = _Phase.LISTENING
            return [self._listen(step)]
        if step.goto is not None:
            return self._enter(step.goto, "goto")
        self._phase = _Phase.DONE
        if step.transfer is not None:
            return [Transfer(step.transfer)]
        return [Hangup("normal")]

    def _listen(self, step: Step) -> Listen:
        settings = step.settings
        return Listen(
            vendor=settings.vendor or self._dialplan.asr.vendor,
            language=settings.language or self._dialplan.asr.language,
            timeout=settings.timeout,
            max_speech=settings.max_speech,
            phrases=step_vocabulary(step),
            dtmf=any(route.dtmf is not None for route in step.routes),
            barge_in=settings.barge_in,
        )

    def _fallback(self, step: Step, kind: str) -> list[Action]:
        fallback: Fallback | None = getattr(step, kind)
        assert fallback is not None  # validated: every listening step has no_input and no_match
        if kind == "no_input":
            self._no_input += 1
            tries = self._no_input
        else:
            self._no_match += 1
            tries = self._no_match
        if tries > fallback.retries:
            return self._enter(fallback.goto, kind)
        return [Routed(self._name, kind), *self._prompt(step, fallback.reprompt or step.play)]

    @staticmethod
    def _match(step: Step, event: Heard | Digit) -> tuple[str, str] | None:
        if isinstance(event, Digit):
            for route in step.routes:
                if route.dtmf == event.digit.upper():
                    return route.goto, f"dtmf:{route.dtmf}"
            return None
        if event.confidence < step.settings.min_confidence:
            return None
        text = normalize(event.text)
        for route in step.routes:
            for word in (*route.say, *route.phrases):
                if normalize(word) and normalize(word) in text:
                    return route.goto, f"say:{word}"
        return None
