"""What every dialplan model shares: frozen, unknown keys refused, and "did you mean" for a closed set."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A dialplan mapping: immutable once loaded, and a typo'd key is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    known = tuple(known)
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


Loc = tuple[str | int, ...]  # a key path into the YAML, as pydantic reports it


@dataclass(frozen=True)
class Issue:
    """One finding of the whole-flow checks, located by key path."""

    loc: Loc
    message: str
    warning: bool = False
    code: str = "flow"  # unknown-step, unreachable, silent-loop, recognizer, ... (for `ivr check --json`)
