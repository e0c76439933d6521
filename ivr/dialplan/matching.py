"""How a route matches: recognized text against keywords (spacing and Korean particles aside), regexes and
confidence; keys against dtmf / digits; and the call's state against when / open / closed. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime

from ivr.dialplan.calendar import Calendar
from ivr.dialplan.checks import is_exact_digits
from ivr.dialplan.conditions import Conditions
from ivr.dialplan.schema import Route

# Korean particles (josa) and the polite ending 요 a caller adds to a keyword: "상담원을", "상담원이요". A
# keyword written with one still matches the bare word ("상담원을" finds "상담원 연결"); the caller's own
# particles need nothing, as keywords are found anywhere in the text.
_PARTICLES = (
    "에서",
    "으로",
    "이요",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "에",
    "로",
    "요",
    "도",
    "와",
    "과",
    "의",
)


def normalize(text: str) -> str:
    """NFC, case-folded, whitespace removed: recognizers disagree on spacing (상담원연결 / 상담원 연결)."""
    return "".join(unicodedata.normalize("NFC", text).casefold().split())


def _hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


def keyword(word: str) -> str:
    """A keyword as matched: normalized, a trailing Korean particle dropped when two syllables remain."""
    said = normalize(word)
    for particle in _PARTICLES:
        stem = said.removesuffix(particle)
        if stem != said and len(stem) >= 2 and all(map(_hangul, stem[-2:])):
            return stem
    return said


def has_speech(route: Route) -> bool:
    return bool(
        route.say or route.say_all or route.phrases or route.speaker or route.regex or route.confidence
    )


def has_keys(route: Route) -> bool:
    return route.dtmf is not None or route.digits is not None


def takes_speech(route: Route) -> bool:
    """Speech can take the route: it asks something of speech, or only of the call's state."""
    return not route.is_default and (has_speech(route) or not has_keys(route))


def takes_keys(route: Route) -> bool:
    return not route.is_default and (has_keys(route) or not has_speech(route))


def words_match(route: Route, said: str) -> str | None:
    """`say:<word>` for the first word found in normalized `said`, "" for a route without words, None when
    none is said."""
    if route.say_all and not all(keyword(word) in said for word in route.say_all):
        return None
    words = (*route.say, *route.phrases)
    if not words:
        return f"say:{'+'.join(route.say_all)}" if route.say_all else ""
    for word in words:
        found = keyword(word)
        if found and found in said:
            return f"say:{word}"
    return None


def text_match(route: Route, text: str, confidence: float) -> str | None:
    """The route's via for a recognized `text`, "" when it asks nothing of the text, None when it fails."""
    via = words_match(route, normalize(text))
    if via is None:
        return None
    if route.regex is not None:
        if re.search(route.regex, unicodedata.normalize("NFC", text), re.IGNORECASE) is None:
            return None
        via = via or "regex"
    if route.confidence is not None:
        if not route.confidence.holds(confidence):
            return None
        via = via or "confidence"
    return via


def keys_match(route: Route, keys: str) -> str | None:
    """`dtmf:<key>` / `digits` when the keys pressed take the route, "" when it asks nothing of keys."""
    if route.dtmf is not None and route.dtmf == keys.upper():
        return f"dtmf:{route.dtmf}"
    if route.digits is not None:
        if is_exact_digits(route.digits):
            return "digits" if keys.upper() == route.digits.upper() else None
        return "digits" if re.fullmatch(route.digits, keys) is not None else None
    return "" if not has_keys(route) else None


def state_holds(
    conditions: Conditions,
    variables: Mapping[str, str],
    calendars: Mapping[str, Calendar],
    wall: Callable[[], datetime],
) -> bool:
    """Every when / open / closed of `conditions` holds now."""
    if not all(when.holds(variables.get(when.variable, ""), variables) for when in conditions.when):
        return False
    if conditions.open is not None and not calendars[conditions.open].is_open(wall()):
        return False
    return conditions.closed is None or not calendars[conditions.closed].is_open(wall())


def state_via(conditions: Conditions) -> str:
    if conditions.open is not None:
        return f"open:{conditions.open}"
    if conditions.closed is not None:
        return f"closed:{conditions.closed}"
    return f"when:{conditions.when[0].variable}" if conditions.when else "default"
