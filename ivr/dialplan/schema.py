"""Dialplan models: the YAML call flow that call-center staff write, validated once at load, then trusted.

Checks come in two layers. Pydantic validates the shape of each key (types, ranges, unknown keys); `check()`
then validates the flow as a whole (goto targets, one thing to do per step, no endless silence loop,
unreachable steps) and returns `Issue`s located by key path, so the loader can point at the YAML line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr.asr import cpqd_message
from ivr.asr.base import Classifier
from ivr.dialplan.calendar import Calendar
from ivr.dialplan.common import Loc, Model
from ivr.dialplan.common import did_you_mean as _did_you_mean
from ivr.dialplan.conditions import (
    Branch,
    Conditions,
    Confidence,
    Confirm,
    DigitCollection,
    PromptEntry,
    SayPrompt,
    TransferTarget,
    WebhookCall,
    is_uri,
)
from ivr.dialplan.templates import BUILTIN_VARIABLES, NAME

DTMF_KEYS = "0123456789*#ABCD"  # RFC 4733 section 3.2 events 0-15
Vendor = Literal["mediazen", "cpqd", "amivoice"]
VENDORS: tuple[str, ...] = get_args(Vendor)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_SKIP_FLOW_CHECK = "skip_flow_check"

# Routes name the speaker classes CPQD Speech Server 2.4 reports (the only vendor with classifiers), so a
# typo is caught at load.
EMOTIONS = cpqd_message.EMOTIONS
EMOTION_GROUPS = tuple(cpqd_message.EMOTION_GROUPS)


_Model = Model


# The JSON Schema is what editors validate as authors type, so it accepts the shorthands the loader accepts
# (`say: word` for `say: [word]`, `listen: true`, `dtmf: 0` which YAML reads as a number) and lists the
# closed vocabularies (DTMF keys, emotions) for completion. Each edit is in place: pydantic's hook contract.
def _word_or_words(schema: dict[str, Any]) -> None:
    items = schema.pop("items")
    schema.pop("type")
    schema["anyOf"] = [items, {"type": "array", "items": items}]


def _listen_or_true(schema: dict[str, Any]) -> None:
    schema["anyOf"].append({"type": "boolean", "description": "true: listen with the defaults"})


def _dtmf_key(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"type": "string", "enum": list(DTMF_KEYS)},
        {"type": "integer", "minimum": 0, "maximum": 9},
    ]
    schema["examples"] = ["1", "0", "#", "*"]


def _uri_or_target(schema: dict[str, Any]) -> None:
    schema["anyOf"].insert(0, {"type": "string", "description": "the target URI alone"})


def _language_tag(schema: dict[str, Any]) -> None:
    text = next((s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"), schema)
    text["pattern"] = _LANGUAGE.pattern
    schema["examples"] = ["ko", "pt-BR", "ja"]


def _emotion_names(schema: dict[str, Any]) -> None:
    schema["items"]["enum"] = list(EMOTIONS)
    _word_or_words(schema)


def _emotion_shorthand(schema: dict[str, Any]) -> None:
    label = {"type": "string", "enum": list(EMOTIONS)}
    schema["anyOf"][1:1] = [label, {"type": "array", "items": label}]


def _emotion_group(schema: dict[str, Any]) -> None:
    schema["anyOf"][0]["enum"] = list(EMOTION_GROUPS)


def _checked_language(value: str) -> str:
    if not _LANGUAGE.match(value):
        raise ValueError(f"'{value}' is not a language tag such as ko, pt-BR or ja")
    return value


def _typed_options(value: Any) -> Any:
    # The loader keeps YAML scalars as text (so `dtmf: 0` stays "0"); option values are typed by the
    # vendor, so a number written as a number is one.
    if isinstance(value, dict):
        return {k: _number(v) if isinstance(v, str) else v for k, v in value.items()}
    return value


LanguageTag = Annotated[str, AfterValidator(_checked_language)]  # BCP 47, e.g. ko, pt-BR, ja
VendorOptions = Annotated[dict[str, str | int | float | bool], BeforeValidator(_typed_options)]


class AsrSettings(_Model):
    """Recognizer defaults for every step that listens."""

    vendor: Vendor = Field(default="mediazen", description="recognizer vendor")
    language: LanguageTag = Field(
        default="ko", description="BCP 47 language tag, e.g. ko, pt-BR, ja", json_schema_extra=_language_tag
    )
    emotion_window: int = Field(
        default=3,
        ge=1,
        le=20,
        description="turns the caller's emotion is averaged over, so one noisy reading does not flip a route",
    )


AudioChoice = Literal["pcm16", "g711"]
ClassifierName = Literal["emotion", "age", "gender"]


class SecondaryRecognizer(_Model):
    """The recognizer a listen step fails over to when its vendor fails (the turn's audio replayed)."""

    vendor: Vendor = Field(description="the secondary vendor; checked like the primary")
    language: LanguageTag | None = Field(
        default=None, description="its language (default: the step's)", json_schema_extra=_language_tag
    )
    options: VendorOptions = Field(
        default_factory=dict, description="its vendor options, checked against that vendor"
    )


class ListenSettings(_Model):
    """How a step listens: timers, recognizer settings, and the vendor and language when not asr's."""

    timeout: float = Field(
        default=5.0, gt=0, le=600, description="no-input timeout (s) from the end of the prompt"
    )
    max_speech: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="give up waiting for a final result this long (s) after speech starts",
    )
    complete_timeout: float | None = Field(
        default=None, gt=0, le=10, description="silence (s) that ends an utterance matching the grammar"
    )
    incomplete_timeout: float | None = Field(
        default=None, gt=0, le=10, description="silence (s) that ends an utterance not (yet) matching it"
    )
    barge_in: bool | Literal["speech", "dtmf"] = Field(
        default=True,
        description="what stops the prompt: true (speech or keys), speech (keys pressed during the prompt are"
        " ignored), dtmf (a key stops it; speech is listened to once it ends), false (nothing)",
    )
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="results below this confidence do not match"
    )
    n_best: int = Field(default=1, ge=1, le=10, description="alternatives to ask the recognizer for")
    partial_results: bool = Field(default=True, description="ask for interim results")
    early_match: bool = Field(
        default=False,
        description="route on an interim result, without waiting for the end of speech, when no longer"
        " utterance could take an earlier route (in practice: the first route the caller can reach by"
        " speech, put it first); the next prompt may then start while the caller is still finishing the"
        " sentence; off by default because a partial is a guess the recognizer may still revise, and the"
        " turn's final text, confidence and classification are not waited for; needs partial_results;"
        " never on a step with classifiers",
    )
    classifiers: list[ClassifierName] = Field(
        default_factory=list, description="speaker classifiers to run: emotion, age, gender"
    )
    verify_buffer: bool = Field(
        default=False, description="keep the utterance for voice biometrics (CPQD Verify-Buffer-Utterance)"
    )
    grammar: str | None = Field(
        default=None,
        description="a vendor builtin grammar or language model URI, e.g. builtin:slm/general",
        examples=["builtin:slm/general", "builtin:grammar/digits"],
    )
    grammar_file: str | None = Field(
        default=None,
        description="an SRGS grammar file beside the dialplan, read once at load",
        examples=["grammars/yes_no.gram"],
    )
    audio: AudioChoice = Field(
        default="pcm16",
        description="pcm16 (decoded) or g711 (the caller's audio as is, for vendors that take it)",
    )
    options: VendorOptions = Field(
        default_factory=dict, description="vendor options, checked against the vendor"
    )
    vendor: Vendor | None = Field(default=None, description="overrides asr.vendor")
    language: LanguageTag | None = Field(
        default=None, description="overrides asr.language", json_schema_extra=_language_tag
    )
    dtmf: DigitCollection | None = Field(
        default=None,
        description="collect a string of keys (routes match it with digits:) instead of routing on the"
        " first key; the collected keys are {{ digits }}",
    )
    secondary: SecondaryRecognizer | None = Field(
        default=None,
        description="a second vendor for this step: when the first fails (unreachable, refused, dropped,"
        " silent), the same turn goes on with it, the caller's audio since the start of the turn replayed,"
        " so the caller need not repeat; it takes the step's audio setting and does not run classifiers;"
        " with none, or when it fails too, the step's no_input fallback",
    )

    @property
    def speech_barge_in(self) -> bool:
        """The caller's speech stops the prompt (and is recognized while it plays)."""
        return self.barge_in is True or self.barge_in == "speech"

    @property
    def dtmf_barge_in(self) -> bool:
        """A key pressed during the prompt stops it and counts."""
        return self.barge_in is True or self.barge_in == "dtmf"

    @model_validator(mode="after")
    def _early_needs_partials(self) -> ListenSettings:
        if self.early_match and not self.partial_results:
            raise ValueError("early_match routes on interim results: it needs partial_results: true")
        return self


def _number(text: str) -> str | int | float:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    return text


def _as_list(value: Any) -> Any:
    """`say: 상담원` reads as naturally as `say: [상담원]`."""
    return [value] if isinstance(value, str) else value


class EmotionCondition(_Model):
    """The caller's emotion as the recognizer's classifier reports it (CPQD 2.4 `emotion_scores`)."""

    labels: list[str] = Field(
        default_factory=list,
        description="emotions; the probability that the caller's emotion is one of them (the sum of their p)",
        json_schema_extra=_emotion_names,
    )
    group: str | None = Field(
        default=None, description="a p_groups entry, e.g. negativo_ativado", json_schema_extra=_emotion_group
    )
    min: float = Field(default=0.5, ge=0, le=1, description="the probability labels / group must reach")
    window: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description="turns averaged (default asr.emotion_window); 1 = this turn alone",
    )
    turns: int = Field(
        default=1, ge=1, le=20, description="the last this many turns must each reach min on their own"
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if label not in EMOTIONS:
                raise ValueError(f"unknown emotion '{label}'{_did_you_mean(label, EMOTIONS)}")
        return value

    @field_validator("group")
    @classmethod
    def _known_group(cls, value: str | None) -> str | None:
        if value is not None and value not in EMOTION_GROUPS:
            raise ValueError(f"unknown emotion group '{value}'{_did_you_mean(value, EMOTION_GROUPS)}")
        return value

    @model_validator(mode="after")
    def _something(self) -> EmotionCondition:
        if not self.labels and self.group is None:
            raise ValueError("an emotion condition needs labels or a group")
        return self


class AgeCondition(_Model):
    """The caller's estimated age (CPQD 2.4 `age_scores.age`, averaged like the emotion)."""

    min: int | None = Field(default=None, ge=0, le=120, description="at least this old")
    max: int | None = Field(default=None, ge=0, le=120, description="at most this old")

    @model_validator(mode="after")
    def _range(self) -> AgeCondition:
        if self.min is None and self.max is None:
            raise ValueError("an age condition needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"age min {self.min} is above max {self.max}")
        return self


class Route(Conditions):
    """One way out of a listening step: what the caller must say, key or sound like, and where it leads."""

    say: list[str] = Field(
        default_factory=list,
        description="keywords found anywhere in the recognized text: any one of them matches",
        json_schema_extra=_word_or_words,
    )
    say_all: list[str] = Field(
        default_factory=list,
        description="keywords that must all be found (in any order), e.g. [카드, 분실]; with say: both hold",
        json_schema_extra=_word_or_words,
    )
    phrases: list[str] = Field(
        default_factory=list,
        description="full expected utterances; matched too, and given to recognizers",
        json_schema_extra=_word_or_words,
    )
    dtmf: str | None = Field(default=None, description="one key: 0-9, *, #, A-D", json_schema_extra=_dtmf_key)
    emotion: EmotionCondition | None = Field(
        default=None,
        description="the caller's emotion (with say/phrases: both must match); a list of labels is short for"
        " {labels: [...]}",
        json_schema_extra=_emotion_shorthand,
    )
    age: AgeCondition | None = Field(default=None, description="the caller's estimated age")
    gender: Literal["M", "F"] | None = Field(default=None, description="the caller's estimated gender")
    regex: str | None = Field(
        default=None, description="a regex searched in the recognized text (case-insensitive)"
    )
    digits: str | None = Field(
        default=None,
        description="the collected keys: exactly these (only 0-9 * # A-D), or else a regex they must match"
        " whole, e.g. '\\d{16}'",
    )
    confidence: Confidence | None = Field(default=None, description="the result's confidence range")
    default: bool = Field(
        default=False,
        description="taken when no other route matches (as is a route with only goto), instead of no_match",
    )
    confirm: Confirm | None = Field(
        default=None, description="ask yes/no first when the match's confidence is below `below`"
    )
    goto: str = Field(description="the step to go to")

    @field_validator("say", "say_all", "phrases", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, value: Any) -> Any:
        # `emotion: [irritado, enojado]` reads as naturally as `emotion: {labels: [...]}`.
        return {"labels": value} if isinstance(value, str | list) else value

    @property
    def matches_input(self) -> bool:
        """Whether the route asks anything of the caller's input (else it is a default route)."""
        return bool(
            self.say
            or self.say_all
            or self.phrases
            or self.dtmf
            or self.speaker
            or self.regex
            or self.digits
            or self.confidence
            or self.has_state_conditions
        )

    @property
    def is_default(self) -> bool:
        return self.default or not self.matches_input

    @property
    def speaker(self) -> frozenset[Classifier]:
        """The classifiers this route needs the recognizer to run."""
        wanted = (
            (Classifier.EMOTION, self.emotion),
            (Classifier.AGE, self.age),
            (Classifier.GENDER, self.gender),
        )
        return frozenset(kind for kind, condition in wanted if condition is not None)

    @field_validator("dtmf", mode="before")
    @classmethod
    def _dtmf(cls, value: Any) -> Any:
        if value is None:
            # A bare `#` starts a YAML comment and a bare `*` an alias: an empty dtmf is almost always that.
            raise ValueError('dtmf is empty; write # and * in quotes: dtmf: "#"')
        value = str(value)
        if len(value) != 1 or value not in DTMF_KEYS:
            raise ValueError(f"'{value}' is not a DTMF key (one of 0-9, *, #, A-D)")
        return value


class Fallback(_Model):
    """What to do when the caller is silent (no_input) or says something no route matches (no_match)."""

    reprompt: PromptEntry | None = Field(
        default=None,
        description="prompt for another try (a WAV file or {say: text}); default: the step's own prompt",
    )
    reprompts: list[PromptEntry] = Field(
        default_factory=list,
        description="escalating prompts, one per try in order, the last repeating (VoiceXML count);"
        " retries defaults to their number",
    )
    retries: int = Field(default=1, ge=0, le=10, description="tries after the first before giving up")
    goto: str = Field(description="the step to go to when the retries are used up")

    @model_validator(mode="before")
    @classmethod
    def _retries_from_reprompts(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("reprompts") and "retries" not in value:
            return {**value, "retries": len(value["reprompts"])}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Fallback:
        if self.reprompt is not None and self.reprompts:
            raise ValueError("give reprompt (one prompt) or reprompts (one per try), not both")
        return self

    def prompt_for(self, tries: int) -> PromptEntry | None:
        """The prompt of try `tries` (1 = the first retry): by count, the last one repeating."""
        if self.reprompts:
            return self.reprompts[min(tries, len(self.reprompts)) - 1]
        return self.reprompt


class Step(_Model):
    """One step of the flow: `set:` variables, an optional prompt, then one of listen (routes), goto,
    transfer, hangup, branch, webhook, call (a sub-flow) or return."""

    set: dict[str, str] = Field(
        default_factory=dict,
        description="variables to set on entering the step, name -> text ({{ variables }} expanded)",
        examples=[{"intent": "{{ last.text }}"}],
    )
    play: str | None = Field(
        default=None,
        description="WAV prompt, beside the dialplan or in prompts/ beside it",
        examples=["greeting.wav"],
    )
    say: str | None = Field(
        default=None,
        description="a prompt spoken by TTS instead of a WAV file ({{ variables }} expanded), in the step's"
        " listen language or asr.language",
    )
    listen: ListenSettings | None = Field(
        default=None,
        description="listening settings (routes imply listening); true listens with the defaults",
        json_schema_extra=_listen_or_true,
    )
    routes: list[Route] = Field(default_factory=list, description="tried in order; the first match wins")
    no_input: Fallback | None = Field(
        default=None, description="what to do when the caller says and keys nothing before the timeout"
    )
    no_match: Fallback | None = Field(
        default=None, description="what to do when the caller says or keys something no route matches"
    )
    transfer: TransferTarget | None = Field(
        default=None,
        description="SIP REFER target: a sip:, sips: or tel: URI, or {to: URI, headers: {...}}; before the"
        " call is answered (no prompt yet) a 302 redirect",
        examples=["sip:agents@10.0.0.5:5060", "tel:+551140040000"],
        json_schema_extra=_uri_or_target,
    )
    on_failure: str | None = Field(
        default=None, description="the step to go to when the transfer fails (else the call ends)"
    )
    hangup: bool = Field(default=False, description="true: end the call after the prompt")
    goto: str | None = Field(
        default=None, description="the step to go to after the prompt (after a call: sub-flow, its return)"
    )
    branch: list[Branch] = Field(
        default_factory=list,
        description="routes on variables and business hours, taken at once without listening; the first"
        " match wins, one with only goto is the default",
    )
    webhook: WebhookCall | None = Field(default=None, description="ask an HTTP service, route on its reply")
    call: str | None = Field(
        default=None,
        description="a sub-flow: a dialplan file beside this one, run from its start until a return: step,"
        " then this step's goto",
        examples=["verify.yaml"],
    )
    return_: bool = Field(
        default=False, alias="return", description="true: back to the flow that called this one (its goto)"
    )
    redact: bool = Field(
        default=False,
        description="what the caller says or keys in here is sensitive (a card number): CDRs and logs show "
        "* per key and [redacted] for text; routing still uses the real values",
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @field_validator("transfer", mode="before")
    @classmethod
    def _transfer(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not is_uri(value):
                raise ValueError(f"'{value}' is not a sip:, sips: or tel: URI")
            return {"to": value}
        return value

    @field_validator("set")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in BUILTIN_VARIABLES:
                raise ValueError(f"'{name}' is the call's own variable and cannot be set: pick another name")
            if not NAME.fullmatch(name):
                raise ValueError(f"'{name}' is not a variable name: letters, digits and _, e.g. intent")
        return value

    @property
    def listens(self) -> bool:
        return bool(self.routes) or self.listen is not None

    @property
    def settings(self) -> ListenSettings:
        return self.listen or ListenSettings()

    @property
    def prompt(self) -> PromptEntry | None:
        """The step's own prompt: its WAV file, or its text to speak."""
        return (
            self.play if self.play is not None else SayPrompt(say=self.say) if self.say is not None else None
        )

    @property
    def classifiers(self) -> frozenset[Classifier]:
        """The speaker classifiers to run: those listed, and those the routes need."""
        listed = frozenset(Classifier(name) for name in self.settings.classifiers)
        return listed.union(*(route.speaker for route in self.routes))

    def targets(self) -> Iterator[tuple[Loc, str]]:
        """Every goto of this step, with its key path relative to the step."""
        for i, route in enumerate(self.routes):
            yield ("routes", i, "goto"), route.goto
        for name in ("no_input", "no_match"):
            fallback: Fallback | None = getattr(self, name)
            if fallback is not None:
                yield (name, "goto"), fallback.goto
        if self.goto is not None:
            yield ("goto",), self.goto
        if self.on_failure is not None:
            yield ("on_failure",), self.on_failure
        for i, branch in enumerate(self.branch):
            yield ("branch", i, "goto"), branch.goto
        if self.webhook is not None:
            for i, branch in enumerate(self.webhook.routes):
                yield ("webhook", "routes", i, "goto"), branch.goto
            yield ("webhook", "goto"), self.webhook.goto
            yield ("webhook", "on_failure"), self.webhook.on_failure

    def prompts(self) -> Iterator[tuple[Loc, str]]:
        """Every WAV file the step may play, with its key path."""
        if self.play is not None:
            yield ("play",), self.play
        for name in ("no_input", "no_match"):
            fallback: Fallback | None = getattr(self, name)
            if fallback is None:
                continue
            if isinstance(fallback.reprompt, str):
                yield (name, "reprompt"), fallback.reprompt
            for i, entry in enumerate(fallback.reprompts):
                if isinstance(entry, str):
                    yield (name, "reprompts", i), entry
        for i, route in enumerate(self.routes):
            if route.confirm is not None and route.confirm.play is not None:
                yield ("routes", i, "confirm", "play"), route.confirm.play


class Dialplan(_Model):
    """An ivr call flow: the steps a call walks, from start, and the recognizer they listen with."""

    name: str = Field(description="shown in logs and CDRs")
    asr: AsrSettings = Field(
        default_factory=lambda: AsrSettings(), description="the recognizer of every step that listens"
    )
    start: str = Field(description="the first step of every call")
    steps: dict[str, Step] = Field(min_length=1, description="step name -> step; names are what goto uses")
    prompts: dict[str, str] = Field(
        default_factory=dict, description="prompt file -> text, for `python -m ivr.prompts` to synthesize"
    )
    variables: list[str] = Field(
        default_factory=list,
        description="variables the call or the flows calling this one set (so it checks on its own)",
    )
    calendars: dict[str, Calendar] = Field(
        default_factory=dict,
        description="name -> business hours and holidays in a time zone, for routes' open: and closed:",
    )

    # Set by the loader: where prompt files were found, so the engine never touches the file system.
    _base_dir: Path = PrivateAttr(default_factory=Path)
    _prompt_files: dict[str, Path] = PrivateAttr(default_factory=dict)
    _grammars: dict[str, str] = PrivateAttr(default_factory=dict)  # grammar_file -> SRGS text
    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _version: str = PrivateAttr(default="")  # the file's sha256, first 12 hex digits (set by the loader)
    _subflows: dict[str, Dialplan] = PrivateAttr(default_factory=dict)  # `call:` value -> its dialplan

    def subflow(self, name: str) -> Dialplan:
        """The dialplan a `call: <name>` step runs (loaded beside this one by the loader)."""
        return self._subflows[name]

    @model_validator(mode="after")
    def _flow(self, info: ValidationInfo) -> Dialplan:
        if not (info.context or {}).get(_SKIP_FLOW_CHECK):
            from ivr.dialplan.flow import check  # it walks the models defined here

            errors = [issue.message for issue in check(self) if not issue.warning]
            if errors:
                raise ValueError("; ".join(errors))
        return self

    @property
    def warnings(self) -> tuple[str, ...]:
        """`file:line: warning: ...` lines found at load (e.g. unreachable steps)."""
        return self._warnings

    @property
    def version(self) -> str:
        """Which text of the file this is: a call's CDR names the version it ran on (hot reload)."""
        return self._version

    def prompt_path(self, name: str) -> Path:
        found = self._prompt_files.get(name)
        return found if found is not None else self._base_dir / name

    def grammar_text(self, name: str) -> str | None:
        """The SRGS text of a step's grammar_file, read by the loader."""
        return self._grammars.get(name)

    def recognizers(self, step: Step) -> list[tuple[str, str]]:
        """(vendor, language) of a listening step's recognizers: its own, then its secondary, if any."""
        settings = step.settings
        language = settings.language or self.asr.language
        found: list[tuple[str, str]] = [(settings.vendor or self.asr.vendor, language)]
        if settings.secondary is not None:
            found.append((settings.secondary.vendor, settings.secondary.language or language))
        return found

    def flows(self) -> list[Dialplan]:
        """This dialplan and every sub-flow it calls (theirs too), each once: what a call may run."""
        found: dict[int, Dialplan] = {}
        todo: list[Dialplan] = [self]
        while todo:
            flow = todo.pop(0)
            if id(flow) not in found:
                found[id(flow)] = flow
                todo.extend(flow._subflows.values())
        return list(found.values())

    def redacted_steps(self) -> frozenset[str]:
        """The names of the redacted steps as `Routed` names them: `step`, or `file:step` in a sub-flow."""
        found = {name for name, step in self.steps.items() if step.redact}
        for called, flow in self._subflows.items():
            found.update(f"{called}:{name}" for name, step in flow.steps.items() if step.redact)
            # A sub-flow's own sub-flows: already named by the innermost call, as the engine names them.
            found.update(name for name in flow.redacted_steps() if ":" in name)
        return frozenset(found)

    def vendors(self) -> set[str]:
        """The recognizer vendors the listening steps use (sub-flows' and secondaries included)."""
        return {
            v
            for flow in self.flows()
            for step in flow.steps.values()
            if step.listens
            for v, _ in flow.recognizers(step)
        }

    def languages(self, vendor: str) -> list[str]:
        """The languages the listening steps on `vendor` ask for (sub-flows' and secondaries included), in
        order."""
        found = (
            language
            for flow in self.flows()
            for step in flow.steps.values()
            if step.listens
            for v, language in flow.recognizers(step)
            if v == vendor
        )
        return list(dict.fromkeys(found))

    def phrases(self) -> list[str]:
        """Every phrase and keyword (sub-flows' included), deduplicated in order of appearance: the domain
        vocabulary."""
        return list(
            dict.fromkeys(
                p for flow in self.flows() for step in flow.steps.values() for p in step_vocabulary(step)
            )
        )


def step_vocabulary(step: Step) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(p for route in step.routes for p in (*route.phrases, *route.say, *route.say_all))
    )


# We own no domain, so an https:// $id would name an address nobody serves: a URN names the language without
# pretending to locate it. Editors find the file through the modeline's relative path, not through the $id.
SCHEMA_ID = "urn:ivr:dialplan"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"  # the draft pydantic emits


def json_schema() -> dict[str, Any]:
    """The dialplan language as JSON Schema (draft 2020-12), for editors and CI validators."""
    body = Dialplan.model_json_schema()
    return {"$schema": _DRAFT, "$id": SCHEMA_ID, **body}


def json_schema_text() -> str:
    """`json_schema()` as `ivr schema` prints it and dialplans/dialplan.schema.json holds it."""
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
