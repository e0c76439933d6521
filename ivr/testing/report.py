"""What `ivr test` prints: a trace per case, a summary line, step and route coverage; or one JSON document.

Also the checks themselves (`evaluate`): a case's expectations against what the caller saw and the CDR.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.dialplan.schema import Dialplan, Route
from ivr.testing.caller import CallOutcome
from ivr.testing.cases import Case


def _subsequence(wanted: Sequence[str], seen: Sequence[str]) -> bool:
    rest = iter(seen)
    return all(any(item == s for s in rest) for item in wanted)


def steps_of(record: dict[str, Any]) -> list[str]:
    """The steps a call entered, from its CDR route ("agent<dtmf:0" -> "agent")."""
    return [str(entry).partition("<")[0] for entry in record.get("route") or []]


def _header_ok(expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    if expected == "*":
        return True
    if expected.startswith("re:"):
        return re.search(expected[3:], actual) is not None
    return actual == expected


def evaluate(
    case: Case, outcome: CallOutcome, record: dict[str, Any] | None, inferred: list[str] | None = None
) -> list[str]:
    """Why the case failed; empty when it passed. Steps and route come from the CDR, or without one (a bridge
    started elsewhere, `--bridge`) from `inferred`, the caller's view; the hangup cause needs the CDR."""
    failures: list[str] = []
    expect = case.expect
    if outcome.error:
        failures.append(f"call failed: {outcome.error}")
    if outcome.answered is None or not 200 <= outcome.answered < 300:
        failures.append(f"the call was not answered (INVITE final status {outcome.answered})")
    if outcome.ended_by == "timeout":
        failures.append(f"the call did not end within the case timeout ({case.timeout:g}s)")
    steps = steps_of(record) if record is not None else inferred
    seen = "" if record is not None else " (steps inferred from the prompts heard: no CDR)"
    if steps is None and (expect.steps is not None or expect.route is not None):
        failures.append("steps and route not checked: no CDR for this call")
    if steps is not None:
        if expect.steps is not None:
            ok = steps == expect.steps if expect.exact_steps else _subsequence(expect.steps, steps)
            if not ok:
                how = "exactly" if expect.exact_steps else "in this order"
                failures.append(f"steps: expected {how} {expect.steps}, the call went {steps}{seen}")
        last = steps[-1] if steps else None
        if expect.route is not None and last != expect.route:
            failures.append(f"route: expected to end in '{expect.route}', ended in '{last}'{seen}")
    if expect.hangup_cause is not None:
        if record is None:
            failures.append("hangup_cause not checked: no CDR (a bridge started elsewhere: --bridge)")
        elif record.get("hangup_cause") != expect.hangup_cause:
            failures.append(
                f"hangup_cause: expected '{expect.hangup_cause}', got '{record.get('hangup_cause')}'"
            )
    if expect.no_transfer and outcome.refer is not None:
        failures.append(f"no transfer expected, got REFER {outcome.refer.target}")
    if expect.transfer is not None:
        refer = outcome.refer
        if refer is None:
            failures.append("transfer: expected a REFER, none came")
        else:
            if expect.transfer.to is not None and refer.target != expect.transfer.to:
                failures.append(f"transfer: expected REFER to {expect.transfer.to}, got {refer.target}")
            lower = {name.lower(): value for name, value in refer.headers.items()}
            for name, wanted in expect.transfer.headers.items():
                actual = lower.get(name.lower())
                if not _header_ok(wanted, actual):
                    failures.append(f"transfer header {name}: expected {wanted!r}, got {actual!r}")
    if expect.prompts is not None:
        heard = [h.name for h in outcome.prompts]
        if not _subsequence(expect.prompts, heard):
            failures.append(f"prompts: expected to hear {expect.prompts} in this order, heard {heard}")
    return failures


def infer_steps(dialplan: Dialplan, heard: Sequence[str]) -> list[str]:
    """The steps the prompts heard say the call entered: the step that plays each (a reprompt re-enters its
    step); of several, one that the previous step leads to. Steps that play nothing stay invisible."""
    plays: dict[str, list[str]] = {}
    reprompts: dict[str, list[str]] = {}
    for name, step in dialplan.steps.items():
        if step.play:
            plays.setdefault(step.play, []).append(name)
        for loc, prompt in step.prompts():
            if loc[0] != "play":
                reprompts.setdefault(prompt, []).append(name)
    targets: dict[str, set[str]] = {}
    for edge in edges(dialplan):
        targets.setdefault(edge.step, set()).add(edge.target)
    out: list[str] = []
    for prompt in heard:
        candidates = plays.get(prompt) or reprompts.get(prompt) or []
        if not candidates:
            continue
        previous = out[-1] if out else None
        near = [c for c in candidates if previous is None or c == previous or c in targets.get(previous, ())]
        out.append((near or candidates)[0])
    return out


# ---- coverage


@dataclass(frozen=True)
class Edge:
    """One way from a step to another: a route, a fallback, on_failure or goto."""

    step: str
    target: str
    kind: str  # "route 2", "no_input", "no_match", "on_failure", "goto"

    def __str__(self) -> str:
        return f"{self.step} -[{self.kind}]-> {self.target}"


def edges(dialplan: Dialplan) -> list[Edge]:
    out: list[Edge] = []
    for name, step in dialplan.steps.items():
        out += [Edge(name, route.goto, f"route {i + 1}") for i, route in enumerate(step.routes)]
        for kind in ("no_input", "no_match"):
            fallback = getattr(step, kind)
            if fallback is not None:
                out.append(Edge(name, fallback.goto, kind))
        if step.on_failure:
            out.append(Edge(name, step.on_failure, "on_failure"))
        if step.goto:
            out.append(Edge(name, step.goto, "goto"))
    return out


def _route_matches(route: Route, via: str) -> bool:
    kind = via.partition(":")[0]
    return {
        "dtmf": route.dtmf is not None,
        "say": bool(route.say or route.phrases),
        "emotion": route.emotion is not None,
        "age": route.age is not None,
        "gender": route.gender is not None,
    }.get(kind, True)


def taken(dialplan: Dialplan, record: dict[str, Any]) -> set[Edge]:
    """The edges one call's CDR route shows it took."""
    out: set[Edge] = set()
    entries = [str(entry).partition("<") for entry in record.get("route") or []]
    for (previous, _, _), (step, _, via) in itertools.pairwise(entries):
        source = dialplan.steps.get(previous)
        if source is None:
            continue
        if via.startswith("transfer_failed"):
            out.add(Edge(previous, step, "on_failure"))
        elif via in ("no_input", "no_match", "goto"):
            if step != previous or via == "goto":
                out.add(Edge(previous, step, via))
        else:
            for i, route in enumerate(source.routes):
                if route.goto == step and _route_matches(route, via):
                    out.add(Edge(previous, step, f"route {i + 1}"))
                    break
    return out


@dataclass(frozen=True)
class Coverage:
    """Steps entered and edges taken by a suite's calls, against all of the dialplan's."""

    steps: tuple[str, ...]
    visited: frozenset[str]
    edges: tuple[Edge, ...]
    taken: frozenset[Edge]

    @classmethod
    def of(cls, dialplan: Dialplan, records: Iterable[dict[str, Any]]) -> Coverage:
        records = list(records)
        visited = {s for r in records for s in steps_of(r)}
        taken_edges = {e for r in records for e in taken(dialplan, r)}
        all_edges = tuple(edges(dialplan))
        return cls(
            tuple(dialplan.steps), frozenset(visited), all_edges, frozenset(taken_edges & set(all_edges))
        )

    def lines(self) -> list[str]:
        missed_steps = [s for s in self.steps if s not in self.visited]
        missed_edges = [str(e) for e in self.edges if e not in self.taken]
        out = [f"  coverage: steps {len(self.steps) - len(missed_steps)}/{len(self.steps)}, "
               f"routes {len(self.edges) - len(missed_edges)}/{len(self.edges)}"]  # fmt: skip
        if missed_steps:
            out.append(f"    steps not visited: {', '.join(missed_steps)}")
        if missed_edges:
            out.append(f"    routes not taken: {'; '.join(missed_edges)}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": {"total": len(self.steps), "visited": sorted(self.visited & set(self.steps))},
            "routes": {"total": len(self.edges), "taken": sorted(str(e) for e in self.taken),
                       "not_taken": [str(e) for e in self.edges if e not in self.taken]},
        }  # fmt: skip


# ---- results


@dataclass(frozen=True)
class CaseResult:
    """One case's verdict and trace."""

    name: str
    failures: tuple[str, ...]
    trace: tuple[tuple[float, str], ...]
    call_id: str
    steps: tuple[str, ...] | None  # from the CDR; None without one
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class SuiteResult:
    """A case file's results (or why it could not run)."""

    path: str
    dialplan: str
    problems: list[str] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    coverage: Coverage | None = None


@dataclass
class RunReport:
    suites: list[SuiteResult]
    seconds: float = 0.0
    bridge: str = ""  # HOST:PORT with --bridge

    @property
    def cases(self) -> list[CaseResult]:
        return [c for s in self.suites for c in s.cases]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.cases) and not any(s.problems for s in self.suites)

    def summary(self) -> str:
        cases = self.cases
        passed = sum(c.passed for c in cases)
        broken = sum(bool(s.problems) for s in self.suites)
        files = f", {broken} case file{'s' if broken != 1 else ''} with errors" if broken else ""
        return (f"{'PASSED' if self.ok else 'FAILED'}: {passed} passed, {len(cases) - passed} failed, "
                f"{len(cases)} total{files} in {self.seconds:.1f}s")  # fmt: skip

    def lines(self, quiet: bool = False) -> list[str]:
        out: list[str] = []
        for suite in self.suites:
            out.append(f"{suite.path} ({suite.dialplan})")
            out += [f"  {problem}" for problem in suite.problems]
            for case in suite.cases:
                verdict = "PASS" if case.passed else "FAIL"
                out.append(f"  {verdict} {case.name} ({case.seconds:.1f}s, Call-ID {case.call_id})")
                if not case.passed or not quiet:
                    out += [f"      {t:6.2f} {text}" for t, text in case.trace]
                out += [f"    why: {failure}" for failure in case.failures]
            if suite.coverage is not None:
                out += suite.coverage.lines()
        if self.bridge:
            out.append(
                f"(bridge {self.bridge} started elsewhere: no CDR, so steps and routes are not checked)"
            )
        out.append(self.summary())
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "passed": sum(c.passed for c in self.cases),
            "failed": sum(not c.passed for c in self.cases),
            "total": len(self.cases),
            "suites": [
                {
                    "file": s.path,
                    "dialplan": s.dialplan,
                    "problems": s.problems,
                    "coverage": s.coverage.as_json() if s.coverage else None,
                    "cases": [
                        {
                            "name": c.name,
                            "passed": c.passed,
                            "failures": list(c.failures),
                            "call_id": c.call_id,
                            "steps": list(c.steps) if c.steps is not None else None,
                            "seconds": round(c.seconds, 2),
                            "trace": [{"t": round(t, 2), "event": text} for t, text in c.trace],
                        }
                        for c in s.cases
                    ],
                }
                for s in self.suites
            ],
        }
