"""Whole-flow checks of the language's newer parts: variables, regexes, calendars, confirmations, defaults.

Each finding is an `Issue` at the key at fault, so `ivr check` prints `file:line:col: message`."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from ivr.dialplan.common import Issue, Loc
from ivr.dialplan.conditions import DTMF_KEYS, Conditions, PromptEntry, SayPrompt, When
from ivr.dialplan.templates import BUILTIN_VARIABLES, TemplateError, is_known, unknown, unknown_message

if TYPE_CHECKING:
    from ivr.dialplan.schema import Dialplan, Step


def is_exact_digits(pattern: str) -> bool:
    """`digits: "1234"` is a literal; anything with other characters is a regex."""
    return all(c in DTMF_KEYS for c in pattern.upper())


def regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"'{pattern}' is not a valid regex: {exc.msg} at position {exc.pos}"
    return None


def defined_variables(dialplan: Dialplan) -> set[str]:
    return {key for step in dialplan.steps.values() for key in step.set}


def language_issues(dialplan: Dialplan, known_variables: Collection[str] = ()) -> Iterator[Issue]:
    known = {*BUILTIN_VARIABLES, *defined_variables(dialplan), *known_variables}
    calendars = list(dialplan.calendars)
    for name, step in dialplan.steps.items():
        yield from _step(dialplan, name, step, known, calendars)


def _templates(at: Loc, text: str, known: Collection[str], what: str) -> Iterator[Issue]:
    try:
        for message in unknown(text, known):
            yield Issue(at, f"{what}: {message}", code="variable")
    except TemplateError as exc:
        yield Issue(at, f"{what}: {exc}", code="template")


def _prompt(at: Loc, entry: PromptEntry | None, known: Collection[str], what: str) -> Iterator[Issue]:
    if isinstance(entry, SayPrompt):
        yield from _templates((*at, "say"), entry.say, known, what)


def _conditions(
    at: Loc, conditions: Conditions, known: Collection[str], calendars: list[str], what: str
) -> Iterator[Issue]:
    for i, when in enumerate(conditions.when):
        yield from _when((*at, "when", i), when, known, what)
    for key in ("open", "closed"):
        calendar = getattr(conditions, key)
        if calendar is not None and calendar not in calendars:
            hint = f" (did you mean '{close}'?)" if (close := _close(calendar, calendars)) else ""
            fix = hint or (
                f": define it under calendars: ({', '.join(calendars)} are)"
                if calendars
                else ": define it under calendars: at the top (tz, hours, holidays)"
            )
            yield Issue((*at, key), f"{what}: unknown calendar '{calendar}'{fix}", code="calendar")


def _close(word: str, known: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return found[0] if found else None


def _when(at: Loc, when: When, known: Collection[str], what: str) -> Iterator[Issue]:
    if not is_known(when.variable, known):
        where = (*at, "var") if when.var is not None else (*at, "key")
        yield Issue(where, f"{what}: {unknown_message(when.variable, known)}", code="variable")
    for i, text in enumerate([when.equals] if when.equals is not None else when.in_ or []):
        where = (*at, "equals") if when.equals is not None else (*at, "in", i)
        yield from _templates(where, text, known, what)
    if when.matches is not None and (problem := regex_problem(when.matches)):
        yield Issue((*at, "matches"), f"{what}: {problem}", code="regex")


def _defaults(at: Loc, is_default: list[bool], what: str) -> Iterator[Issue]:
    first: int | None = None
    for i, default in enumerate(is_default):
        if not default:
            continue
        if first is not None:
            yield Issue(
                (*at, i),
                f"{what} route {i + 1} is a second default (route {first + 1} is one): give it a condition"
                " or remove it",
            )
        first = i if first is None else first


def _step(
    dialplan: Dialplan, name: str, step: Step, known: Collection[str], calendars: list[str]
) -> Iterator[Issue]:
    at: Loc = ("steps", name)
    what = f"step '{name}'"
    for key, value in step.set.items():
        yield from _templates((*at, "set", key), value, known, what)
    if step.say is not None:
        yield from _templates((*at, "say"), step.say, known, what)
    if step.transfer is not None:
        yield from _templates((*at, "transfer", "to"), step.transfer.to, known, what)
        for header, value in step.transfer.headers.items():
            yield from _templates((*at, "transfer", "headers", header), value, known, what)
    for fallback_name in ("no_input", "no_match"):
        fallback = getattr(step, fallback_name)
        if fallback is None:
            continue
        yield from _prompt((*at, fallback_name, "reprompt"), fallback.reprompt, known, what)
        for i, entry in enumerate(fallback.reprompts):
            yield from _prompt((*at, fallback_name, "reprompts", i), entry, known, what)
    collects = step.settings.dtmf is not None
    language = step.settings.language or dialplan.asr.language
    for i, route in enumerate(step.routes):
        where: Loc = (*at, "routes", i)
        label = f"{what} route {i + 1}"
        yield from _conditions(where, route, known, calendars, label)
        if route.regex is not None and (problem := regex_problem(route.regex)):
            yield Issue((*where, "regex"), f"{label}: {problem}", code="regex")
        if route.digits is not None:
            if not is_exact_digits(route.digits) and (problem := regex_problem(route.digits)):
                yield Issue((*where, "digits"), f"{label}: {problem}", code="regex")
            elif not collects and not (is_exact_digits(route.digits) and len(route.digits) == 1):
                yield Issue(
                    (*where, "digits"),
                    f"{label} matches several keys, but the step routes on the first key: collect them"
                    " with listen: {dtmf: {max_digits: N}}",
                )
        confirm = route.confirm
        if confirm is not None:
            if confirm.say is not None:
                yield from _templates((*where, "confirm", "say"), confirm.say, known, label)
            yes, no = confirm.words(language)
            missing = [kind for kind, words in (("yes", yes), ("no", no)) if not words]
            if missing:
                yield Issue(
                    (*where, "confirm"),
                    f"{label} confirms, but there are no built-in {' and '.join(missing)} words for"
                    f" language '{language}': list them with {' and '.join(f'{m}: [...]' for m in missing)}",
                    code="confirm",
                )
    yield from _defaults((*at, "routes"), [r.is_default for r in step.routes], what)
    for i, branch in enumerate(step.branch):
        yield from _conditions((*at, "branch", i), branch, known, calendars, f"{what} branch {i + 1}")
    yield from _defaults((*at, "branch"), [not b.has_state_conditions for b in step.branch], f"{what} branch")
    if step.branch and all(b.has_state_conditions for b in step.branch):
        yield Issue(
            (*at, "branch"),
            f"{what} branch has no default: add a last route with only goto, for when no condition holds",
        )
    if step.webhook is not None:
        hook = step.webhook
        yield from _templates((*at, "webhook", "url"), hook.url, known, what)
        for key, value in hook.body.items():
            yield from _templates((*at, "webhook", "body", key), value, known, what)
        for i, branch in enumerate(hook.routes):
            where = (*at, "webhook", "routes", i)
            yield from _conditions(where, branch, known, calendars, f"{what} webhook route {i + 1}")
