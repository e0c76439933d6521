"""Whole-flow checks of a dialplan: goto targets, one thing per step, silent loops, unreachable steps,
what the vendors can do; each an `Issue` located by key path so the loader can point at the YAML line."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator

from ivr.asr.base import AudioFormat
from ivr.asr.registry import check_step
from ivr.dialplan.checks import language_issues
from ivr.dialplan.common import Issue, Loc
from ivr.dialplan.schema import Dialplan, Step

__all__ = ["check", "unconfigured_vendors"]


def _known(names: list[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _step_hint(target: str, names: list[str]) -> str:
    """A likely typo gets "did you mean"; otherwise the steps there are."""
    close = difflib.get_close_matches(target, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f": no step has that name; add it under steps: or use one of {_known(names)}"


def unconfigured_vendors(dialplan: Dialplan, configured: Collection[str]) -> list[Issue]:
    """The recognizer vendors the dialplan listens with that the settings give no URL, one issue each, at
    the first place that names the vendor (a step's own vendor or secondary, else `asr.vendor`)."""
    issues: list[Issue] = []
    written = "asr" in dialplan.model_fields_set and "vendor" in dialplan.asr.model_fields_set
    for vendor in sorted(dialplan.vendors() - set(configured)):
        where: Loc = ("asr", "vendor")
        for name, step in dialplan.steps.items():
            settings = step.settings
            if not step.listens:
                continue
            if settings.vendor == vendor:
                where = ("steps", name, "listen", "vendor")
                break
            if settings.secondary is not None and settings.secondary.vendor == vendor:
                where = ("steps", name, "listen", "secondary", "vendor")
                break
            if settings.vendor is None and vendor == dialplan.asr.vendor and not written:
                where = ("steps", name)  # the default vendor: the first step that listens with it
                break
        issues.append(
            Issue(
                where,
                f"recognizer vendor '{vendor}' is not configured: set asr_urls: {{{vendor}: wss://...}}"
                f" in the settings ({vendor}: embedded for the local emulator) or IVR_{vendor.upper()}_URL",
                code="vendor-not-configured",
            )
        )
    return issues


def _check_step(name: str, step: Step) -> Iterator[Issue]:
    at: Loc = ("steps", name)
    endings = [
        key
        for key, present in (
            ("routes" if step.routes else "listen", step.listens),
            ("goto", step.goto is not None),
            ("transfer", step.transfer is not None),
            ("hangup", step.hangup),
            ("branch", bool(step.branch)),
            ("webhook", step.webhook is not None),
            ("call", step.call is not None),
            ("return", step.return_),
        )
        if present
    ]
    if step.call is not None and "goto" in endings:
        endings.remove("goto")  # a call's goto is where its return comes back to
    elif step.call is not None:
        yield Issue((*at, "call"), f"step '{name}' calls '{step.call}' but has no goto to come back to")
    if not endings:
        yield Issue(
            at,
            f"step '{name}' does nothing after its prompt: give it routes, goto, transfer, hangup, branch,"
            " webhook, call or return",
        )
    for extra in endings[1:]:
        yield Issue(
            (*at, extra),
            f"step '{name}' has both '{endings[0]}' and '{extra}': a step does one of listen, goto, "
            "transfer, hangup, branch, webhook, call or return",
        )
    if step.play is not None and step.say is not None:
        yield Issue((*at, "say"), f"step '{name}' has both play and say: a step has one prompt, keep one")
    if step.listens:
        if not step.routes:
            yield Issue(
                (*at, "listen"), f"step '{name}' listens but has no routes: add routes, or remove listen"
            )
        defaulted = any(route.is_default for route in step.routes)
        for fallback in ("no_input", "no_match"):
            if getattr(step, fallback) is None and not (fallback == "no_match" and defaulted):
                what = "is silent" if fallback == "no_input" else "says something no route matches"
                yield Issue(
                    at, f"step '{name}' listens but has no '{fallback}' (what to do when the caller {what})"
                )
    else:
        for fallback in ("no_input", "no_match"):
            if getattr(step, fallback) is not None:
                yield Issue(
                    (*at, fallback),
                    f"step '{name}' has '{fallback}' but does not listen: give it routes or remove it",
                )
    if step.goto is not None and step.prompt is None and step.call is None and not step.set:
        yield Issue((*at, "goto"), f"step '{name}' only forwards to '{step.goto}': route there directly")
    if step.on_failure is not None and step.transfer is None:
        yield Issue(
            (*at, "on_failure"),
            f"step '{name}' has 'on_failure' but does not transfer: add transfer: or remove it",
        )
    seen_dtmf: dict[str, int] = {}
    for i, route in enumerate(step.routes):
        for key in ("say", "say_all", "phrases"):
            for j, word in enumerate(getattr(route, key)):
                if not word.strip():
                    yield Issue(
                        (*at, "routes", i, key, j),
                        f"step '{name}' route {i + 1} has an empty {key} entry: remove it",
                    )
        if route.dtmf is not None:
            if route.dtmf in seen_dtmf:
                yield Issue(
                    (*at, "routes", i, "dtmf"),
                    f"step '{name}' route {i + 1} reuses dtmf '{route.dtmf}' "
                    f"of route {seen_dtmf[route.dtmf] + 1}, which always wins: give it another key",
                )
            if not route.has_state_conditions:  # one that depends on the call's state does not always win
                seen_dtmf.setdefault(route.dtmf, i)


def _check_recognizers(dialplan: Dialplan) -> Iterator[Issue]:
    """Refuse at load what the step's vendor cannot do, rather than fail (in silence) during a call."""
    for name, step in dialplan.steps.items():
        if not step.listens:
            continue
        settings = step.settings
        vendor = settings.vendor or dialplan.asr.vendor
        language = settings.language or dialplan.asr.language
        audio = AudioFormat.PCM16 if settings.audio == "pcm16" else AudioFormat.PCMU
        at: Loc = ("steps", name, "listen") if step.listen is not None else ("steps", name)
        srgs = settings.grammar_file is not None
        for key, problem in check_step(
            vendor, language, audio, settings.options, step.classifiers, srgs=srgs
        ):
            # A default from `asr:` is wrong at `asr:`, unless the step overrides it.
            if key in ("vendor", "language") and getattr(settings, key) is None:
                where: Loc = ("asr", key)
            elif key == "grammar_file" and settings.vendor is None:
                problem += f" (asr.vendor is {vendor}: set listen.vendor: cpqd for this step)"
                where = (*at, key)
            elif key == "classifiers" and not settings.classifiers:
                where = ("steps", name, "routes", _first_speaker_route(step))
            else:
                where = (*at, key)
            yield Issue(where, f"step '{name}': {problem}", code="recognizer")
        secondary = settings.secondary
        if secondary is not None:
            # Checked like the primary, except classifiers: a secondary without them still recognizes.
            at = (*at, "secondary")
            language = secondary.language or language
            for key, problem in check_step(secondary.vendor, language, audio, secondary.options):
                if key == "language" and secondary.language is None:
                    key, problem = "vendor", problem + " (the step's language: give the secondary its own)"
                yield Issue((*at, key), f"step '{name}' secondary: {problem}", code="recognizer")


def _first_speaker_route(step: Step) -> int:
    return next(i for i, route in enumerate(step.routes) if route.speaker)


def _silence_path(dialplan: Dialplan, name: str) -> list[str] | None:
    """The steps a silent caller walks from `name`; None if it reaches a transfer or hangup."""
    path: list[str] = []
    while name not in path:
        path.append(name)
        step = dialplan.steps.get(name)
        if step is None or step.transfer is not None or step.hangup:
            return None
        if step.branch or step.webhook is not None or step.call is not None or step.return_:
            return None  # decided by the call's state, not by silence
        if step.listens and step.no_input is not None:
            name = step.no_input.goto
        elif step.goto is not None and not step.listens:
            name = step.goto
        else:
            return None  # malformed step, reported on its own
    return [*path, name]


def check(dialplan: Dialplan, known_variables: Collection[str] = ()) -> list[Issue]:
    """Whole-flow checks; warnings (unreachable steps, unused prompt texts) have `warning=True`.

    `known_variables`: names set by the flows that call this one as a sub-flow."""
    issues: list[Issue] = []
    names = list(dialplan.steps)
    if dialplan.start not in dialplan.steps:
        issues.append(
            Issue(
                ("start",),
                f"start step '{dialplan.start}' does not exist{_step_hint(dialplan.start, names)}",
                code="unknown-step",
            )
        )
    for name, step in dialplan.steps.items():
        issues.extend(_check_step(name, step))
        for loc, target in step.targets():
            if target not in dialplan.steps:
                issues.append(
                    Issue(
                        ("steps", name, *loc),
                        f"step '{name}' routes to unknown step '{target}'{_step_hint(target, names)}",
                        code="unknown-step",
                    )
                )
    issues.extend(_check_recognizers(dialplan))
    issues.extend(language_issues(dialplan, {*known_variables, *dialplan.variables}))
    if issues:
        return issues  # the graph checks below assume a well-formed flow
    reported: set[str] = set()
    for name, step in dialplan.steps.items():
        loop = _silence_path(dialplan, name)
        if loop is not None and not reported.intersection(loop):
            reported.update(loop)
            where: Loc = ("steps", name, "no_input", "goto") if step.listens else ("steps", name, "goto")
            issues.append(
                Issue(
                    where,
                    f"a silent caller would loop forever: {' -> '.join(loop)} "
                    "(no_input must end in a transfer or hangup)",
                    code="silent-loop",
                )
            )
    reachable = {dialplan.start}
    todo = [dialplan.start]
    while todo:
        for _, target in dialplan.steps[todo.pop()].targets():
            if target not in reachable:
                reachable.add(target)
                todo.append(target)
    for name in names:
        if name not in reachable:
            issues.append(
                Issue(
                    ("steps", name),
                    f"step '{name}' is unreachable from '{dialplan.start}' (no route, goto or on_failure"
                    " leads there: route to it or delete it)",
                    True,
                    "unreachable",
                )
            )
    used = {prompt for step in dialplan.steps.values() for _, prompt in step.prompts()}

    for prompt in dialplan.prompts:
        if prompt not in used:
            issues.append(
                Issue(
                    ("prompts", prompt),
                    f"prompt text for '{prompt}' is not used by any step (play it somewhere or delete it)",
                    True,
                    "unused-prompt",
                )
            )
    return issues
