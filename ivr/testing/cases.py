"""The `ivr test` case file: what each scripted caller does turn by turn and what must happen.

A case file sits beside its dialplan (`demo.test.yaml` for `demo.yaml`) and has no top-level `steps:`, so
`ivr check` skips it. Mistakes come back as `file:line:col: message`, located the way the dialplan loader
locates them (the YAML node tree maps pydantic's error paths back to lines); step, route and prompt names
are checked against the dialplan, with a did-you-mean.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from yaml.nodes import MappingNode

# The dialplan loader's YAML reading (null/true/false only, so `press: 0` stays "0"; key -> line map).
from ivr.dialplan.loader import _LineMap, _Loader
from ivr.dialplan.report import CASE_SUFFIX
from ivr.dialplan.schema import Dialplan

SUFFIX = CASE_SUFFIX
ACTIONS = ("say", "press", "silence", "hold", "hangup")


class Style(enum.StrEnum):
    """How a `say:` turn sounds: espeak-ng's settings (TOOLBOX.md prosody table)."""

    NORMAL = "normal"
    AGITATED = "agitated"  # -a 180 -p 80 -s 190: loud, high, fast; the CPQD classifier hears it as anger


class ReferAnswer(enum.StrEnum):
    """What the caller reports for the bridge's REFER (RFC 3515 NOTIFY sipfrag)."""

    ACCEPT = "accept"  # 202, then NOTIFY SIP/2.0 200 OK
    DECLINE = "decline"  # 202, then NOTIFY SIP/2.0 603 Declined
    BUSY = "busy"  # 202, then NOTIFY SIP/2.0 486 Busy Here


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Turn(_Model):
    """One thing the caller does; by default after the bridge's prompt has finished playing."""

    say: str | None = Field(
        default=None, description="a phrase, spoken by espeak-ng in the dialplan's language"
    )
    style: Style = Field(default=Style.NORMAL, description="how `say` sounds: normal or agitated")
    press: str | None = Field(
        default=None, pattern=r"^[0-9*#A-Da-d]+$", description="RFC 4733 digits: 0-9 * # A-D"
    )
    silence: float | None = Field(default=None, ge=0, description="seconds of silence (RTP keeps flowing)")
    hold: float | None = Field(
        default=None, ge=0, description="seconds on hold (re-INVITE sendonly), then resume"
    )
    hangup: bool = Field(default=False, description="true: send BYE")
    wait_prompt: bool = Field(default=True, description="start once the bridge's prompt has finished")
    after: float | None = Field(
        default=None, ge=0, description="start this many seconds after the previous turn instead"
    )

    @model_validator(mode="after")
    def _one_action(self) -> Turn:
        given = [name for name in ACTIONS if getattr(self, name) not in (None, False)]
        if len(given) != 1:
            what = ", ".join(given) if given else "none"
            raise ValueError(f"a turn does exactly one of {', '.join(ACTIONS)} (got {what})")
        if self.style is not Style.NORMAL and self.say is None:
            raise ValueError("style goes with say")
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) not in (None, False))


class TransferExpectation(_Model):
    """The REFER as the caller received it."""

    to: str | None = Field(default=None, description="the Refer-To URI without its ?headers")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="header -> exact value, '*' (present), or 're:PATTERN' (a regular expression search)",
    )


class Expectation(_Model):
    """What must have happened once the call is over; anything left out is not checked."""

    steps: list[str] | None = Field(
        default=None, description="steps entered, in this order; other steps may come between"
    )
    exact_steps: bool = Field(default=False, description="true: `steps` is the whole path, nothing between")
    route: str | None = Field(default=None, description="the last step the call entered")
    transfer: TransferExpectation | None = Field(default=None, description="the REFER the caller received")
    no_transfer: bool = Field(default=False, description="true: no REFER may arrive")
    prompts: list[str] | None = Field(default=None, description="prompt files heard, in this order")
    hangup_cause: str | None = Field(default=None, description="the CDR's hangup_cause")


class Case(_Model):
    """One scripted call."""

    description: str = ""
    turns: list[Turn] = Field(default_factory=list)
    transfer: ReferAnswer = Field(default=ReferAnswer.ACCEPT, description="how the caller answers a REFER")
    timeout: float = Field(default=60.0, gt=0, description="seconds the whole call may take")
    expect: Expectation = Field(default_factory=Expectation)


class CaseFile(_Model):
    """A dialplan's scripted callers."""

    dialplan: str | None = Field(default=None, description="the dialplan, relative to this file")
    cases: dict[str, Case] = Field(min_length=1, description="case name -> case")


@dataclass(frozen=True)
class CaseProblem:
    """One mistake in a case file."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: error: {self.message}"


class CaseFileError(ValueError):
    """A case file that cannot be run; `str()` is one `file:line:col: error: message` per problem."""

    def __init__(self, problems: Sequence[CaseProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class LoadedCases:
    """A case file with the dialplan it tests."""

    path: Path
    dialplan_path: Path
    dialplan: Dialplan
    cases: CaseFile


def dialplan_of(case_path: Path) -> Path:
    """X.test.yaml tests X.yaml beside it."""
    return case_path.with_name(case_path.name.removesuffix(SUFFIX) + ".yaml")


def cases_of(dialplan_path: Path) -> Path:
    return dialplan_path.with_name(dialplan_path.stem + SUFFIX)


def _where(loc: tuple[Any, ...]) -> str:
    """('cases', 'a', 'turns', 0, 'press') -> "case a.turn 1.press"."""
    words: list[str] = []
    for part in loc:
        if isinstance(part, int) and words:
            last = words.pop()
            words.append(f"turn {part + 1}" if last == "turns" else f"{last}[{part + 1}]")
        else:
            words.append(str(part))
    text = ".".join(words)
    return f"case {text.removeprefix('cases.')}" if text.startswith("cases.") else text


def _message(error: Any) -> str:
    kind = error["type"]
    loc = tuple(p for p in error["loc"] if p != "[key]")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        return f"{_where(parent) or 'top level'}: unknown key '{loc[-1]}'"
    text = str(error["msg"]).removeprefix("Value error, ")
    return f"{_where(loc)}: {text}" if loc else text


def _parse(path: Path) -> tuple[Any, _LineMap]:
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError([CaseProblem(shown, 1, 1, f"cannot read the file: {exc}")]) from exc
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if not isinstance(root, MappingNode):
            line = root.start_mark.line + 1 if root else 1
            raise CaseFileError([CaseProblem(shown, line, 1, "a case file is a mapping with cases:")])
        lines = _LineMap(loader, root)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        raise CaseFileError([CaseProblem(shown, line, column, message)]) from exc
    finally:
        loader.dispose()
    if lines.duplicates:
        raise CaseFileError([CaseProblem(shown, ln, col, msg) for ln, col, msg in lines.duplicates])
    return data, lines


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


def _names_checked(cases: CaseFile, dialplan: Dialplan) -> list[tuple[tuple[Any, ...], str]]:
    """Step and prompt names the dialplan does not have, with where they are in the case file."""
    steps = list(dialplan.steps)
    # every prompt file a call may play: reprompts, confirmations and sub-flows' prompts too
    played = {name for flow in dialplan.flows() for step in flow.steps.values() for _, name in step.prompts()}
    prompts = sorted(played | set(dialplan.prompts))
    wrong: list[tuple[tuple[Any, ...], str]] = []
    for name, case in cases.cases.items():
        at = ("cases", name, "expect")
        for i, step in enumerate(case.expect.steps or []):
            if step not in dialplan.steps:
                wrong.append(((*at, "steps", i), f"unknown step '{step}'{_did_you_mean(step, steps)}"))
        route = case.expect.route
        if route is not None and route not in dialplan.steps:
            wrong.append(((*at, "route"), f"unknown step '{route}'{_did_you_mean(route, steps)}"))
        for i, prompt in enumerate(case.expect.prompts or []):
            if prompt not in prompts:
                wrong.append(
                    ((*at, "prompts", i), f"unknown prompt '{prompt}'{_did_you_mean(prompt, prompts)}")
                )
    return wrong


def load_cases(path: Path, dialplan: Dialplan, dialplan_path: Path) -> LoadedCases:
    """Read and validate `path` against `dialplan`; raise `CaseFileError` listing every problem."""
    shown = str(path)
    data, lines = _parse(path)
    try:
        cases = CaseFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line, column = lines.position(tuple(error["loc"]))
            problems.append(CaseProblem(shown, line, column, _message(error)))
        raise CaseFileError(sorted(problems, key=lambda p: (p.line, p.column))) from exc
    wrong = _names_checked(cases, dialplan)
    if wrong:
        raise CaseFileError([CaseProblem(shown, *lines.position(loc), message) for loc, message in wrong])
    return LoadedCases(path, dialplan_path, dialplan, cases)


def declared_dialplan(path: Path) -> Path:
    """The dialplan a case file names (`dialplan:`), else X.yaml beside X.test.yaml; read without
    validating, so a broken case file still gets its own line-numbered errors later."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    name = data.get("dialplan") if isinstance(data, dict) else None
    return path.parent / name if isinstance(name, str) else dialplan_of(path)
