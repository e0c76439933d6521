"""Business hours and holidays per time zone: `calendars:` at the top of a dialplan, `open:` / `closed:` on
a route. The engine asks with the wall-clock time the call passes in (never the loop's clock)."""

from __future__ import annotations

import difflib
import re
import zoneinfo
from datetime import UTC, date, datetime, time
from functools import cache
from typing import Any

from pydantic import Field, field_validator

from ivr.dialplan.common import Model

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _days(key: str) -> list[int]:
    """`mon`, or a range `mon-fri` (wrapping: `fri-mon`), as weekday numbers (Monday 0)."""
    first, _, last = key.partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ValueError(f"'{key}' is not a day or day range: write mon, tue, ... sun or mon-fri")
    start, end = DAYS.index(first), DAYS.index(last or first)
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _span(text: str) -> tuple[time, time | None]:
    """`09:00-18:00` -> (09:00, 18:00); an end of 24:00 is None (until midnight)."""
    match = _SPAN.match(text.replace(" ", ""))
    if match is None:
        raise ValueError(f"'{text}' is not opening hours: write HH:MM-HH:MM, e.g. 09:00-18:00")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"'{text}' is not a time of day")
    start, end = time(h1, m1), None if h2 == 24 else time(h2, m2)
    if end is not None and end <= start:
        raise ValueError(f"'{text}' ends before it starts: split a night shift at 24:00 over two days")
    return start, end


def _span_or_spans(schema: dict[str, Any]) -> None:
    spans = schema["additionalProperties"]
    schema["additionalProperties"] = {"anyOf": [spans["items"], spans]}


class Calendar(Model):
    """When a line is open: weekly hours in a time zone, minus holidays."""

    tz: str = Field(
        description="IANA time zone, e.g. Asia/Seoul", examples=["Asia/Seoul", "America/Sao_Paulo"]
    )
    hours: dict[str, list[str]] = Field(
        description="day or day range (mon, mon-fri) -> opening hours (HH:MM-HH:MM; 24:00 is midnight);"
        " a day not listed is closed",
        json_schema_extra=_span_or_spans,
        examples=[{"mon-fri": ["09:00-18:00"], "sat": ["09:00-13:00"]}],
    )
    holidays: list[date] = Field(default_factory=list, description="dates (YYYY-MM-DD) closed all day")

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, _zones(), n=1, cutoff=0.6)
            hint = (
                f"did you mean '{close[0]}'?" if close else "e.g. Asia/Seoul, America/Sao_Paulo, Asia/Tokyo"
            )
            raise ValueError(f"unknown time zone '{value}' ({hint})") from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, spans in value.items():
            _days(key)
            for span in spans:
                _span(span)
        return value

    @field_validator("hours", mode="before")
    @classmethod
    def _one_span(cls, value: Any) -> Any:
        # `mon-fri: 09:00-18:00` reads as naturally as a list of one.
        return (
            {k: [v] if isinstance(v, str) else v for k, v in value.items()}
            if isinstance(value, dict)
            else value
        )

    def is_open(self, wall: datetime) -> bool:
        """Whether `wall` (an aware datetime; naive is taken as UTC) falls in the opening hours."""
        local = _aware(wall).astimezone(zoneinfo.ZoneInfo(self.tz))
        if local.date() in self.holidays:
            return False
        now = local.time().replace(tzinfo=None)
        for key, spans in self.hours.items():
            if local.weekday() not in _days(key):
                continue
            for text in spans:
                start, end = _span(text)
                if start <= now and (end is None or now < end):
                    return True
        return False


def _aware(wall: datetime) -> datetime:
    return wall if wall.tzinfo is not None else wall.replace(tzinfo=UTC)
