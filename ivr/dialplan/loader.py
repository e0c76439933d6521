"""Load a dialplan YAML file; every mistake comes back as `file:line: what is wrong`.

The YAML is composed to a node tree first so each key path (the `loc` pydantic reports) maps back to the line
of its key. Scalars stay strings except null and true/false: pydantic converts `timeout: 5` itself, while
`dtmf: 0` stays "0", and `no:` / `yes:` / `on:` stay words (YAML 1.1 would turn them into booleans).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ivr.dialplan.common import Issue, Loc
from ivr.dialplan.flow import check, unconfigured_vendors
from ivr.dialplan.schema import _SKIP_FLOW_CHECK, VENDORS, Dialplan

__all__ = ["DialplanError", "Problem", "check_file", "load_dialplan", "validate_only"]


@dataclass(frozen=True)
class Problem:
    """One mistake in a dialplan file, at the line and column of the key at fault."""

    path: str
    line: int
    message: str
    warning: bool = False
    column: int = 1
    code: str = "schema"  # the kind of check, for `ivr check --json`

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {'warning: ' if self.warning else ''}{self.message}"

    def located(self) -> str:
        """`file:line:col: error|warning: message`, the form compilers print and editors jump to."""
        severity = "warning" if self.warning else "error"
        return f"{self.path}:{self.line}:{self.column}: {severity}: {self.message}"


class DialplanError(ValueError):
    """One or more errors in a dialplan; `str()` gives one `file:line: message` per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def line(self) -> int:
        return self.problems[0].line

    @property
    def message(self) -> str:
        return self.problems[0].message


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _column(node: Node) -> int:
    return int(node.start_mark.column) + 1


class _LineMap:
    """Key path -> line of that key (or sequence item), plus duplicate keys, which PyYAML silently merges."""

    def __init__(self, loader: _Loader, root: Node) -> None:
        self.loader = loader
        self.lines: dict[Loc, int] = {(): _line(root)}
        self.columns: dict[Loc, int] = {(): _column(root)}
        self.duplicates: list[tuple[int, int, str]] = []
        self._walk(root, ())

    def _key(self, node: Node) -> Any:
        return self.loader.construct_object(node, deep=True) if isinstance(node, ScalarNode) else None

    def _walk(self, node: Node, loc: Loc) -> None:
        if isinstance(node, MappingNode):
            first_seen: dict[Any, int] = {}
            merges: list[Node] = []
            for key_node, value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merges.extend(value.value if isinstance(value, SequenceNode) else [value])
                    continue
                key = self._key(key_node)
                if key in first_seen:
                    self.duplicates.append(
                        (
                            _line(key_node),
                            _column(key_node),
                            f"duplicate key '{key}' (first at line {first_seen[key]}): "
                            "keep one and merge or rename the other",
                        )
                    )
                    continue
                first_seen[key] = _line(key_node)
                self.lines[(*loc, key)] = _line(key_node)
                self.columns[(*loc, key)] = _column(key_node)
                self._walk(value, (*loc, key))
            for merged in merges:  # `<<: *defaults`: explicit keys win, the anchor's lines fill the rest
                if isinstance(merged, MappingNode):
                    for key_node, value in merged.value:
                        key = self._key(key_node)
                        if (*loc, key) not in self.lines:
                            self.lines[(*loc, key)] = _line(key_node)
                            self.columns[(*loc, key)] = _column(key_node)
                            self._walk(value, (*loc, key))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*loc, i)] = _line(item)
                self.columns[(*loc, i)] = _column(item)
                self._walk(item, (*loc, i))

    def line(self, loc: Loc) -> int:
        """The line of the deepest part of `loc` present in the file (a missing key points at its parent)."""
        return self.position(loc)[0]

    def position(self, loc: Loc) -> tuple[int, int]:
        """(line, column) of the deepest part of `loc` present in the file."""
        loc = tuple(part for part in loc if part != "[key]")
        while loc not in self.lines:
            loc = loc[:-1]
        return self.lines[loc], self.columns[loc]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    tp: Any = Dialplan
    for part in (*loc, None):
        while get_origin(tp) in (Union, type(int | None)):
            tp = next(arg for arg in get_args(tp) if arg is not type(None))
        if part is None:
            break
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if str(part) in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        else:
            return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _where(loc: Loc) -> str:
    """('steps', 'greeting', 'routes', 0, 'dtmf') -> "step 'greeting' route 1 dtmf"."""
    words: list[str] = []
    parts = [part for part in loc if part != "[key]"]
    if parts[:1] == ["steps"] and len(parts) >= 2:
        words.append(f"step '{parts[1]}'")
        parts = parts[2:]
    for part in parts:
        if isinstance(part, int):
            previous = words.pop() if words else "item"
            words.append(f"{previous.removesuffix('s')} {part + 1}")
        else:
            words.append(str(part))
    return " ".join(words)


def _prefixed(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _keys(model: type[BaseModel]) -> list[str]:
    """The keys a mapping takes, as written in YAML (`return`, not the field `return_`)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _closest_key(loc: Loc) -> str | None:
    """The known key an unknown key at `loc` was probably meant to be."""
    model = _model_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), _keys(model) if model else [], n=1, cutoff=0.7)
    return close[0] if close else None


def _explained(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "missing 'goto'" when the same mapping has a typo'd `go_to`: one mistake, one message."""
    typos = {
        (*e["loc"][:-1], _closest_key(tuple(e["loc"]))) for e in errors if e["type"] == "extra_forbidden"
    }
    return [e for e in errors if e["type"] != "missing" or tuple(e["loc"]) not in typos]


def _describe(error: ErrorDetails) -> str:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        close = _closest_key(loc)
        model = _model_at(loc[:-1])
        hint = f"did you mean '{close}'?" if close else f"known: {', '.join(_keys(model) if model else ())}"
        return _prefixed(_where(loc[:-1]), f"unknown key '{loc[-1]}' ({hint})")
    if kind == "missing":
        model = _model_at(loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        about = f" ({field.description})" if field and field.description else ""
        return _prefixed(_where(loc[:-1]), f"missing '{loc[-1]}'{about}")
    if loc and loc[-1] == "[key]":
        return _prefixed(_where(loc[:-2]), f"'{loc[-2]}' is not a valid name: {error['msg'].lower()}")
    message = error["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        expected = list(VENDORS) if loc[-1] == "vendor" else []
        nearest = difflib.get_close_matches(str(error["input"]), expected, n=1, cutoff=0.5)
        message = f"'{error['input']}' is not one of {', '.join(expected)}" if expected else message
        message += f" (did you mean '{nearest[0]}'?)" if nearest else ""
    elif kind != "value_error":
        message = re.sub(r"valid dictionary( or instance of \w+)?", "mapping of keys", message)
        got = "nothing" if error["input"] is None else repr(error["input"])
        message = f"{message[:1].lower()}{message[1:]} (got {got})"
    return _prefixed(_where(loc), message)


def _prompt_files(
    dialplan: Dialplan, base: Path, shown: str
) -> tuple[dict[str, Path], list[tuple[Loc, str, bool]]]:
    """Where each prompt is; the missing ones, and whether `prompts:` has their text (so it can be made)."""
    found: dict[str, Path] = {}
    missing: list[tuple[Loc, str, bool]] = []
    for name, step in dialplan.steps.items():
        for loc, prompt in step.prompts():
            candidates = [base / prompt, base / "prompts" / prompt]
            hit = next((c for c in candidates if c.is_file()), None)
            if hit is not None:
                found[prompt] = hit
                continue
            where = f"step '{name}' plays '{prompt}', which is neither beside the dialplan nor in prompts/"
            if prompt in dialplan.prompts:
                fix = f" (its text is in prompts:, generate it with `python -m ivr.prompts {shown}`)"
            else:
                fix = ": record it there, fix the name, or give its text in prompts: to generate it"
            missing.append((("steps", name, *loc), where + fix, prompt in dialplan.prompts))
            found[prompt] = candidates[1]
    return found, missing


def _grammar_files(dialplan: Dialplan, base: Path) -> tuple[dict[str, str], list[tuple[Loc, str]]]:
    texts: dict[str, str] = {}
    problems: list[tuple[Loc, str]] = []
    for name, step in dialplan.steps.items():
        file = step.listen.grammar_file if step.listen is not None else None
        if file is None or file in texts:
            continue
        loc: Loc = ("steps", name, "listen", "grammar_file")
        try:
            texts[file] = (base / file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append((loc, f"step '{name}' grammar '{file}' is not UTF-8 text"))
        except OSError as exc:
            problems.append((loc, f"step '{name}' grammar '{file}' cannot be read: {exc.strerror}"))
    return texts, problems


def _parse(path: Path, shown: str) -> tuple[Any, _LineMap, str]:
    """The YAML data, where each key is, and the file's version (its SHA-256, 12 hex digits)."""

    def fail(line: int, message: str, column: int = 1) -> DialplanError:
        return DialplanError([Problem(shown, line, message, column=column, code="yaml")])

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise fail(1, f"cannot read the file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(text_line(raw, exc.start), "the file is not UTF-8 text") from exc
    version = hashlib.sha256(raw).hexdigest()[:12]  # as `sha256sum FILE` prints it
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if not isinstance(root, MappingNode):
            raise fail(
                _line(root) if root else 1,
                "a dialplan is a mapping of keys: name, asr, start, steps, prompts",
            )
        lines = _LineMap(loader, root)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise fail(
            int(mark.line) + 1 if mark else 1,
            f"YAML syntax error: {exc.problem or exc.context}",
            int(mark.column) + 1 if mark else 1,
        ) from exc
    except yaml.YAMLError as exc:
        raise fail(1, f"YAML syntax error: {exc}") from exc
    finally:
        loader.dispose()
    if lines.duplicates:
        raise DialplanError(
            [
                Problem(shown, line, message, column=col, code="yaml")
                for line, col, message in lines.duplicates
            ]
        )
    return data, lines, version


def text_line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


@dataclass(frozen=True)
class _Options:
    check_prompts: bool
    configured: Collection[str] | None = None
    generated_prompts_warn: bool = False


def _subflows(
    dialplan: Dialplan, path: Path, shown: str, options: _Options, calling: tuple[Path, ...]
) -> tuple[dict[str, Dialplan], list[tuple[Loc, str]], list[Problem]]:
    """Load each `call:` file beside `path`: the sub-flows, the parent's own issues (a missing file, a
    cycle), and the sub-flows' problems (each at its own file's line)."""
    flows: dict[str, Dialplan] = {}
    issues: list[tuple[Loc, str]] = []
    found: list[Problem] = []
    known = {*dialplan.variables, *(k for step in dialplan.steps.values() for k in step.set)}
    for name, step in dialplan.steps.items():
        if step.call is None or step.call in flows:
            continue
        loc: Loc = ("steps", name, "call")
        target = (path.parent / step.call).resolve()
        if target in calling:
            chain = " -> ".join([*(p.name for p in calling[calling.index(target) :]), target.name])
            issues.append(
                (
                    loc,
                    f"step '{name}' calls a flow that calls it back: {chain}; a sub-flow must"
                    " end in return:, not call its caller",
                )
            )
            continue
        if not target.is_file():
            issues.append(
                (
                    loc,
                    f"step '{name}' calls '{step.call}', which is not beside the dialplan:"
                    " create it there or fix the name",
                )
            )
            continue
        child, problems = _load(Path(shown).parent / step.call, options, (*calling, target), frozenset(known))
        found.extend(problems)
        if child is not None:
            if "asr" not in child.model_fields_set:
                child = _with_private(child, child.model_copy(update={"asr": dialplan.asr}))
            flows[step.call] = child
    return flows, issues, found


def _sets(dialplan: Dialplan) -> set[str]:
    """The variables a flow and the sub-flows it calls set."""
    found = {key for step in dialplan.steps.values() for key in step.set}
    return found.union(*(_sets(flow) for flow in dialplan._subflows.values()))


def _with_private(source: Dialplan, copy: Dialplan) -> Dialplan:
    for attr in ("_base_dir", "_prompt_files", "_grammars", "_warnings", "_version", "_subflows"):
        setattr(copy, attr, getattr(source, attr))
    return copy


def _load(
    path: str | Path,
    options: _Options,
    calling: tuple[Path, ...] = (),
    known_variables: Collection[str] = (),
) -> tuple[Dialplan | None, list[Problem]]:
    check_prompts = options.check_prompts
    configured = options.configured
    generated_prompts_warn = options.generated_prompts_warn
    shown = str(path)
    path = Path(path)
    calling = calling or (path.resolve(),)
    try:
        data, lines, version = _parse(path, shown)
    except DialplanError as exc:
        return None, list(exc.problems)

    def problem(issue: Issue) -> Problem:
        line, column = lines.position(issue.loc)
        return Problem(shown, line, issue.message, issue.warning, column, issue.code)

    def problems(issues: Iterable[Issue]) -> list[Problem]:
        return sorted(map(problem, issues), key=lambda p: (p.line, p.column))

    try:
        dialplan = Dialplan.model_validate(data, context={_SKIP_FLOW_CHECK: True})
    except ValidationError as exc:
        return None, problems(
            Issue(tuple(e["loc"]), _describe(e), code="schema") for e in _explained(exc.errors())
        )
    base = path.resolve().parent
    flows, call_issues, flow_problems = _subflows(dialplan, path, shown, options, calling)
    # What a sub-flow sets, its caller may use after it returns.
    issues = check(dialplan, {*known_variables, *(v for flow in flows.values() for v in _sets(flow))})
    if configured is not None:
        issues.extend(unconfigured_vendors(dialplan, configured))
    prompt_files, missing = _prompt_files(dialplan, base, shown)
    if check_prompts:
        # A prompt whose text is given is one command away: for `ivr check` a warning, for serving an error.
        issues.extend(
            Issue(loc, message, generated_prompts_warn and text, "prompt") for loc, message, text in missing
        )
    grammars, unreadable = _grammar_files(dialplan, base)
    issues.extend(Issue(loc, message, code="grammar") for loc, message in unreadable)
    issues.extend(Issue(loc, message, code="subflow") for loc, message in call_issues)
    found = problems(issues)
    found.extend(flow_problems)
    dialplan._subflows = flows
    dialplan._base_dir = base
    dialplan._prompt_files = prompt_files
    dialplan._grammars = grammars
    dialplan._warnings = tuple(str(p) for p in found if p.warning)
    dialplan._version = version
    return dialplan, found


def load_dialplan(path: str | Path, *, check_prompts: bool = True) -> Dialplan:
    """Load and validate; raise `DialplanError` listing every error. Warnings end up in `.warnings`.

    `check_prompts=False` skips the prompt-file existence check (for the tool that generates them).
    """
    dialplan, found = _load(path, _Options(check_prompts))
    errors = [p for p in found if not p.warning]
    if errors or dialplan is None:
        raise DialplanError(errors)
    return dialplan


def validate_only(path: str | Path) -> list[str]:
    """Every error and warning as `file:line: ...` lines; empty when the dialplan is clean."""
    return [str(p) for p in _load(path, _Options(True))[1]]


def check_file(path: str | Path, configured_vendors: Collection[str] | None = None) -> list[Problem]:
    """What `ivr check` reports of one file: every error and warning, in file order.

    `configured_vendors` (those with a URL in the settings) adds an error for each vendor the dialplan uses
    that has none; a prompt that is missing but whose text is in `prompts:` is only a warning here."""
    return _load(path, _Options(True, configured_vendors, generated_prompts_warn=True))[1]
