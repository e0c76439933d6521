"""`ivr check`: find the dialplans among files and folders, check each, report as lines or one JSON document.

The lines are `file:line:col: error|warning: message`, the form compilers print, so editors and CI jump to
the key at fault; the JSON carries the same facts for machines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.dialplan.loader import Problem, check_file

__all__ = ["CheckReport", "Skipped", "check_paths", "find_dialplans"]

_SUFFIXES = (".yaml", ".yml")
_TOP_LEVEL_STEPS = re.compile(r"^steps\s*:", re.MULTILINE)


@dataclass(frozen=True)
class Skipped:
    """A YAML file in a folder that `ivr check` did not check, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class CheckReport:
    """What `ivr check` found in every dialplan it was given or found."""

    checked: tuple[str, ...]
    problems: tuple[Problem, ...]
    skipped: tuple[Skipped, ...] = field(default=())
    # checked file -> the sub-flow files it calls that have errors (reported under their own names)
    broken_subflows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(not p.warning for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.warning for p in self.problems)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def lines(self, verbose: bool = False) -> list[str]:
        """Every problem as `file:line:col: severity: message`, `file: ok` for a clean file, and a summary."""
        out: list[str] = []
        if verbose:
            out.extend(f"{s.path}: skipped: {s.reason}" for s in self.skipped)
        # A sub-flow's problems come with the flow that calls it, under the sub-flow's own name.
        called = [p.path for p in self.problems if p.path not in self.checked]
        for path in (*self.checked, *dict.fromkeys(called)):
            found = [p for p in self.problems if p.path == path]
            broken = self.broken_subflows.get(path)
            if found:
                out.extend(p.located() for p in found)
            elif broken:
                out.append(f"{path}: not ok: it calls {', '.join(broken)}, which has errors (below)")
            else:
                out.append(f"{path}: ok")
        if len(self.checked) > 1 or self.problems:
            out.append(
                f"{_count(len(self.checked), 'dialplan')} checked: {_count(self.errors, 'error')}, "
                f"{_count(self.warnings, 'warning')}"
                + (f" ({_count(len(self.skipped), 'YAML file')} skipped)" if self.skipped else "")
            )
        return out

    def as_json(self) -> dict[str, Any]:
        """The whole report as one JSON-ready document."""
        return {
            "problems": [
                {
                    "file": p.path,
                    "line": p.line,
                    "column": p.column,
                    "severity": "warning" if p.warning else "error",
                    "message": p.message,
                    "code": p.code,
                }
                for p in self.problems
            ],
            "checked": list(self.checked),
            "skipped": [{"file": s.path, "reason": s.reason} for s in self.skipped],
            "summary": {
                "files": len(self.checked),
                "errors": self.errors,
                "warnings": self.warnings,
                "skipped": len(self.skipped),
                "ok": self.ok,
            },
        }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


CASE_SUFFIX = ".test.yaml"  # the scripted callers of `ivr test` (ivr.testing.cases)


def find_dialplans(paths: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """The files to check: each file named, and every dialplan YAML under each folder (recursively,
    hidden folders such as .git or .venv left out); the other YAML files of those folders, with why."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)  # named explicitly: checked whatever it holds, so a typo'd `steps:` is caught
            continue
        for candidate in sorted(path.rglob("*")):
            relative = candidate.relative_to(path).parts
            if candidate.suffix not in _SUFFIXES or not candidate.is_file():
                continue
            if any(part.startswith(".") for part in relative[:-1]):
                continue
            if candidate.name.endswith(CASE_SUFFIX):
                continue  # an `ivr test` case file beside its dialplan: `ivr test` checks it
            reason = _not_a_dialplan(candidate)
            if reason is None:
                found.append(candidate)
            else:
                skipped.append(Skipped(str(candidate), reason))
    return list(dict.fromkeys(found)), skipped


def _not_a_dialplan(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read as UTF-8 text ({exc})"
    return None if _TOP_LEVEL_STEPS.search(text) else "not a dialplan (no top-level steps:)"


def check_paths(paths: Iterable[Path], configured_vendors: Collection[str] | None = None) -> CheckReport:
    """Check every dialplan among `paths` (which must exist)."""
    files, skipped = find_dialplans(paths)
    found = {str(file): check_file(file, configured_vendors) for file in files}
    # A sub-flow in the same folder is checked on its own and again through its caller: report it once.
    problems = list(dict.fromkeys(p for each in found.values() for p in each))
    broken = {
        path: called
        for path, each in found.items()
        if (called := tuple(dict.fromkeys(p.path for p in each if p.path != path and not p.warning)))
    }
    return CheckReport(tuple(found), tuple(problems), tuple(skipped), broken)
