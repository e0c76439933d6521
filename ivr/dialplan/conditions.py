"""The language's newer parts as models: variable conditions, branch and webhook steps, digit collection,
confirmation, spoken prompts, transfer headers. The whole-flow checks of them are in `ivr.dialplan.checks`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from ivr.dialplan.common import Model
from ivr.dialplan.templates import WEBHOOK_PREFIX, expand

DTMF_KEYS = "0123456789*#ABCD"  # RFC 4733 section 3.2 events 0-15
# RFC 3261 section 25.1: a header name is a token.
HEADER_NAME = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_URI = re.compile(r"^(?:sips?:\S+|tel:\+?[0-9*#().\-A-Da-d]+(?:;\S*)?)$")
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")

# The words a confirmation listens for, per language (the primary subtag), when the route lists none.
YES_NO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ko": (("네", "예", "맞아요", "맞습니다", "응"), ("아니요", "아니오", "아니", "아닙니다")),
    "pt": (("sim", "isso", "correto"), ("não", "nao")),
    "ja": (("はい", "ええ", "そうです"), ("いいえ", "いえ", "ちがいます")),
    "en": (("yes", "yeah", "correct"), ("no", "nope")),
    "es": (("sí", "si", "correcto"), ("no",)),
}
CONFIRM_YES_KEY, CONFIRM_NO_KEY = "1", "2"


def is_uri(value: str) -> bool:
    """A sip:, sips: or tel: URI; a `{{ variable }}` part stands for any text."""
    return bool(_URI.match(_PLACEHOLDER.sub("x", value)))


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class SayPrompt(Model):
    """A prompt spoken by the call's TTS instead of a WAV file."""

    say: str = Field(description="the text to speak; {{ variables }} are expanded")


PromptEntry = str | SayPrompt  # a WAV file name, or {say: text}


class When(Model):
    """A condition on a variable: equals a text, is one of several, or matches a regex."""

    var: str | None = Field(default=None, description="the variable, e.g. tier, digits, webhook.status")
    key: str | None = Field(default=None, description="short for var: webhook.<key> (the last webhook reply)")
    equals: str | None = Field(default=None, description="the variable's text is exactly this")
    in_: list[str] | None = Field(default=None, alias="in", description="the variable's text is one of these")
    matches: str | None = Field(default=None, description="a regex searched in the variable's text")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_each(self) -> When:
        if (self.var is None) == (self.key is None):
            raise ValueError("a when condition names one variable: var: <name> (or key: <webhook key>)")
        tests = [t for t in (self.equals, self.in_, self.matches) if t is not None]
        if len(tests) != 1:
            raise ValueError("a when condition has one test: equals, in or matches")
        return self

    @property
    def variable(self) -> str:
        return self.var if self.var is not None else f"{WEBHOOK_PREFIX}{self.key}"

    def holds(self, value: str, variables: Mapping[str, str]) -> bool:
        """Whether `value` passes; `equals` and `in` texts may name variables ({{ callee }})."""
        if self.equals is not None:
            return value == expand(self.equals, variables)
        if self.in_ is not None:
            return value in [expand(text, variables) for text in self.in_]
        assert self.matches is not None
        return re.search(self.matches, value) is not None


class Conditions(Model):
    """What a route may ask of the call's state (variables, business hours), besides what was said."""

    when: list[When] = Field(
        default_factory=list, description="variable conditions, all of which must hold (one or a list)"
    )
    open: str | None = Field(default=None, description="a calendar that must be open now")
    closed: str | None = Field(default=None, description="a calendar that must be closed now")

    @field_validator("when", mode="before")
    @classmethod
    def _whens(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @property
    def has_state_conditions(self) -> bool:
        return bool(self.when) or self.open is not None or self.closed is not None


class Branch(Conditions):
    """A way out of a branch or webhook step; one with no conditions is the default."""

    goto: str = Field(description="the step to go to")


class Confidence(Model):
    """The recognizer's confidence in the result, 0-1."""

    min: float | None = Field(default=None, ge=0, le=1, description="at least this")
    max: float | None = Field(default=None, ge=0, le=1, description="below this")

    @model_validator(mode="after")
    def _range(self) -> Confidence:
        if self.min is None and self.max is None:
            raise ValueError("a confidence condition needs min or max")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"confidence min {self.min} is not below max {self.max}")
        return self

    def holds(self, confidence: float) -> bool:
        return (self.min is None or confidence >= self.min) and (self.max is None or confidence < self.max)


class Confirm(Model):
    """Ask yes/no before taking a route whose match is unsure: yes/no words, or keys 1 (yes) / 2 (no)."""

    below: float = Field(ge=0, le=1, description="ask when the result's confidence is below this")
    play: str | None = Field(default=None, description="the question as a WAV file")
    say: str | None = Field(default=None, description="the question spoken by TTS ({{ variables }} expanded)")
    yes: list[str] = Field(default_factory=list, description="yes words (default: the language's)")
    no: list[str] = Field(default_factory=list, description="no words (default: the language's)")

    @field_validator("yes", "no", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return _as_list(value)

    @model_validator(mode="after")
    def _one_prompt(self) -> Confirm:
        if (self.play is None) == (self.say is None):
            raise ValueError("a confirmation asks with one prompt: play: <file.wav> or say: <text>")
        return self

    @property
    def prompt(self) -> PromptEntry:
        return self.play if self.play is not None else SayPrompt(say=self.say or "")

    def words(self, language: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(yes words, no words): the route's own, else the language's (empty when it has none)."""
        yes, no = YES_NO.get(language.split("-")[0].split("_")[0].lower(), ((), ()))
        return tuple(self.yes) or yes, tuple(self.no) or no


class DigitCollection(Model):
    """Collect a string of keys (a card number) instead of routing on the first key."""

    max_digits: int = Field(default=20, ge=1, le=64, description="collection ends at this many keys")
    min_digits: int = Field(default=1, ge=1, le=64, description="fewer keys than this is a no-match")
    terminator: str | None = Field(
        default="#", description="the key that ends the collection early (not collected); null for none"
    )
    inter_digit_timeout: float = Field(
        default=3.0, gt=0, le=60, description="collection ends this long (s) after the last key"
    )

    @field_validator("terminator", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        if value is not None and (len(str(value)) != 1 or str(value) not in DTMF_KEYS):
            raise ValueError(f"'{value}' is not a DTMF key (one of 0-9, *, #, A-D); write it in quotes")
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _range(self) -> DigitCollection:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits {self.min_digits} is above max_digits {self.max_digits}")
        return self


class TransferTarget(Model):
    """Where a transfer goes, and the context headers it carries to the agent."""

    to: str = Field(description="a sip:, sips: or tel: URI ({{ variables }} expanded)")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="header name -> value ({{ variables }} expanded; CR/LF removed)",
        examples=[{"X-Caller-Intent": "{{ last.text }}"}],
    )

    @field_validator("to")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not is_uri(value):
            raise ValueError(f"'{value}' is not a sip:, sips: or tel: URI")
        return value

    @field_validator("headers")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HEADER_NAME.match(name):
                raise ValueError(
                    f"'{name}' is not a SIP header name: letters, digits and - . ! % * _ + ` ' ~ only,"
                    " e.g. X-Caller-Intent"
                )
        return value


class WebhookCall(Model):
    """POST the call's context to an HTTP service and route on its JSON reply (`webhook.<key>`)."""

    url: str = Field(description="http:// or https:// URL ({{ variables }} expanded)")
    timeout: float = Field(default=3.0, gt=0, le=30, description="seconds to wait for the reply")
    body: dict[str, str] = Field(
        default_factory=dict,
        description="the JSON object posted, key -> text ({{ variables }} expanded); default: the call's"
        " variables",
    )
    routes: list[Branch] = Field(default_factory=list, description="tried in order on the reply")
    goto: str = Field(description="the step when no route matches the reply")
    on_failure: str = Field(description="the step when the service fails: no reply, non-2xx, not JSON")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+", value):
            raise ValueError(f"'{value}' is not an http:// or https:// URL")
        return value
