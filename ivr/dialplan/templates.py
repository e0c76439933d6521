"""`{{ name }}` templates: the only expansion a dialplan has. No expressions, no filters, no eval: a
template names a variable by its dotted path, and expanding it substitutes the variable's text.

Names are known statically (the call's, the last turn's, the `set:` keys of the flow, and any `webhook.<key>`,
whose keys only the reply knows), so a typo is an error at load, not an empty header during a call.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Iterator, Mapping

# What the call gives the engine, and what the engine keeps of the last turn.
CALL_VARIABLES = ("caller", "callee", "call_id", "channel_id")
TURN_VARIABLES = ("last.text", "last.confidence", "last.emotion", "digits")
BUILTIN_VARIABLES = (*CALL_VARIABLES, *TURN_VARIABLES)
WEBHOOK_PREFIX = "webhook."

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a `set:` key


class TemplateError(ValueError):
    """A malformed template: the message says what to write instead."""


def names(text: str) -> list[str]:
    """The variable paths `text` uses, in order; raises `TemplateError` for a malformed placeholder."""
    found: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        path = match.group(1).strip()
        if not _PATH.fullmatch(path):
            raise TemplateError(
                f"'{{{{{match.group(1)}}}}}' is not a variable: write {{{{ name }}}} or {{{{ name.key }}}}"
                " (no expressions or filters)"
            )
        found.append(path)
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("an unclosed '{{' or a stray '}}': a variable is written {{ name }}")
    return found


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`text` with each `{{ path }}` replaced by its value ("" for a variable not set yet)."""
    if "{{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1).strip(), ""), text)


def is_known(path: str, known: Collection[str]) -> bool:
    return path in known or (path.startswith(WEBHOOK_PREFIX) and len(path) > len(WEBHOOK_PREFIX))


def unknown(text: str, known: Collection[str]) -> Iterator[str]:
    """A message for each name `text` uses that no call, turn, `set:` or webhook provides."""
    for path in names(text):
        if not is_known(path, known):
            yield unknown_message(path, known)


def unknown_message(path: str, known: Collection[str]) -> str:
    choices = sorted(known)
    close = difflib.get_close_matches(path, choices, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(choices)}, webhook.<key>"
    return f"unknown variable '{path}' ({hint}); set it with set: or use a known one"


def flatten(reply: Mapping[str, object], prefix: str = WEBHOOK_PREFIX) -> dict[str, str]:
    """A webhook's JSON object as `webhook.<key>` texts (nested objects by dotted path, lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in reply.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, bool):
            out[f"{prefix}{key}"] = "true" if value else "false"
        elif value is None:
            out[f"{prefix}{key}"] = ""
        elif isinstance(value, str | int | float):
            out[f"{prefix}{key}"] = str(value)
        else:
            out[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False)
    return out
