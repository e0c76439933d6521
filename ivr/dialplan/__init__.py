"""YAML call flows: schema (pydantic), loader (file:line errors), pure engine (events in, actions out)."""

from ivr.dialplan.engine import (
    Action,
    DialplanEngine,
    Digit,
    Event,
    Hangup,
    Heard,
    Listen,
    NoInput,
    Play,
    PromptFinished,
    RecognizerFailed,
    Routed,
    Transfer,
)
from ivr.dialplan.loader import DialplanError, Problem, load_dialplan, validate_only
from ivr.dialplan.schema import Dialplan, Route, Step, json_schema

__all__ = [
    "Action",
    "Dialplan",
    "DialplanEngine",
    "DialplanError",
    "Digit",
    "Event",
    "Hangup",
    "Heard",
    "Listen",
    "NoInput",
    "Play",
    "Problem",
    "PromptFinished",
    "RecognizerFailed",
    "Route",
    "Routed",
    "Step",
    "Transfer",
    "json_schema",
    "load_dialplan",
    "validate_only",
]
