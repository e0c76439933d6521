"""Call detail records: one JSON line per call, appended when the call ends."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Transcript:
    step: str
    text: str
    confidence: float


@dataclass
class CallRecord:
    call_id: str
    channel_id: str
    caller: str
    callee: str
    dialplan: str
    start: str = field(default_factory=utc_now)
    answer: str | None = None
    end: str | None = None
    codec: str | None = None
    transcripts: list[Transcript] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    transfer_target: str | None = None
    transfer_status: int | None = None
    hangup_cause: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class CdrWriter:
    """Appends records to a JSON-lines file; one short write per call, so no executor is needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: CallRecord) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
