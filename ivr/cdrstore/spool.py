"""Records the CDR database could not take, kept on local disk until it can (so an outage loses no call).

The writer thread appends a failed batch here and replays the file, oldest first, before its next batch;
START and END rows keep their order, so a call that started and ended during the outage lands complete.
Records the database refuses while it is up (a row it will never take) go to a `.rejected` file beside it
and are logged, so one bad record cannot hold every later call back. Only the writer thread touches these.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ivr.cdr import CdrPhase, CdrWrite


class CdrSpool:
    """A JSON-lines file of `CdrWrite`s waiting for the database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected")

    def pending(self) -> list[CdrWrite]:
        """What waits, oldest first (a torn last line, from a crash while appending, is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                found.append(_from_json(line))
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def append(self, batch: list[CdrWrite]) -> None:
        _append(self.path, batch)

    def reject(self, write: CdrWrite) -> None:
        _append(self.rejected_path, [write])

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _append(path: Path, batch: list[CdrWrite]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(_to_json(w) + "\n" for w in batch))


def _to_json(write: CdrWrite) -> str:
    fields = dataclasses.asdict(write)
    fields["phase"] = write.phase.value
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _from_json(line: str) -> CdrWrite:
    fields = json.loads(line)
    fields["phase"] = CdrPhase(fields["phase"])
    return CdrWrite(**fields)
