"""CPQD recognition parameters (notes 1.5, document 003): the table of names, types and the emulator's
defaults, value normalization, and `RecognitionConfig`, what one recognition runs with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class ParameterType(Enum):
    """The Java field type of a recognition parameter."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One recognition parameter: its canonical name, type and the emulator's default."""

    name: str
    type: ParameterType
    default: str


# Defaults are the emulator's own: the documents do not give the real server's.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("noInputTimeout.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("noInputTimeout.value", ParameterType.INTEGER, "5000"),
    Parameter("recognitionTimeout.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("recognitionTimeout.value", ParameterType.INTEGER, "30000"),
    Parameter("decoder.startInputTimers", ParameterType.BOOLEAN, "true"),
    Parameter("decoder.maxSentences", ParameterType.INTEGER, "1"),
    Parameter("endpointer.headMargin", ParameterType.INTEGER, "250"),
    Parameter("endpointer.tailMargin", ParameterType.INTEGER, "450"),
    Parameter("endpointer.waitEnd", ParameterType.INTEGER, "900"),
    Parameter("endpointer.levelThreshold", ParameterType.FLOAT, "3.0"),
    Parameter("endpointer.levelMode", ParameterType.INTEGER, "2"),
    Parameter("endpointer.autoLevelLen", ParameterType.INTEGER, "350"),
    Parameter("endpointer.useToneDetectors", ParameterType.BOOLEAN, "false"),
    Parameter("decoder.confidenceThreshold", ParameterType.INTEGER, "0"),
    Parameter("decoder.continuousMode", ParameterType.BOOLEAN, "false"),
    Parameter("decoder.wordDetails", ParameterType.INTEGER, "0"),
    Parameter("endpointer.maxSegmentDuration", ParameterType.INTEGER, "60000"),
    Parameter("endpointer.segmentOverlapTime", ParameterType.INTEGER, "0"),
    Parameter("hints.words", ParameterType.STRING, ""),
    Parameter("textify.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("textify.formatting.enabled", ParameterType.BOOLEAN, "false"),
    Parameter("textify.formatting.rules", ParameterType.STRING, ""),
    Parameter("loggingTag", ParameterType.STRING, ""),
    Parameter("license.manager.accountTag", ParameterType.STRING, ""),
    Parameter("Infer-age-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Infer-gender-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Infer-emotion-enabled", ParameterType.BOOLEAN, "false"),
    Parameter("Verify-Buffer-Utterance", ParameterType.BOOLEAN, "false"),
    Parameter("Media-Type", ParameterType.STRING, "audio/raw"),
)
PARAMETER_BY_NAME = {p.name.lower(): p for p in PARAMETERS}
# Other spellings seen in the SDKs (the C++ SDK's, notes 1.5) and in our brief.
ALIASES = {
    "licensemanager.accounttag": "license.manager.accountTag",
    "ver-buffer-utterance": "Verify-Buffer-Utterance",
    "continuous-mode": "decoder.continuousMode",
}
MEDIA_TYPES = ("audio/raw", "audio/wav", "application/octet-stream")
# What GET_PARAMETERS reports about the shared verify buffer of the session's Channel-Identifier.
VERIFY_BUFFER_UTTERANCES = "Verify-Buffer-Utterances"
VERIFY_BUFFER_DURATION = "Verify-Buffer-Duration"
CHANNEL_IDENTIFIER = "Channel-Identifier"
TRUE_SPELLINGS, FALSE_SPELLINGS = ("true", "1"), ("false", "0")


def lookup_parameter(name: str) -> Parameter | None:
    """The parameter a header names, in any spelling the SDKs use, or None."""
    key = name.lower()
    return PARAMETER_BY_NAME.get(ALIASES.get(key, key).lower())


def normalize_value(parameter: Parameter, raw: str) -> str:
    """A parameter value in its canonical spelling; raises ValueError."""
    value = raw.strip()
    if parameter.type is ParameterType.BOOLEAN:
        if value.lower() in TRUE_SPELLINGS:
            return "true"
        if value.lower() in FALSE_SPELLINGS:
            return "false"
        raise ValueError(f"{parameter.name} takes true or false")
    if parameter.type is ParameterType.INTEGER:
        number = int(value)
        if number < 0:
            raise ValueError(f"{parameter.name} must not be negative")
        return str(number)
    if parameter.type is ParameterType.FLOAT:
        return repr(float(value))
    if parameter.name == "Media-Type" and value.lower() not in MEDIA_TYPES:
        raise ValueError(f"Media-Type must be one of {', '.join(MEDIA_TYPES)}")
    return value.lower() if parameter.name == "Media-Type" else value


@dataclass(frozen=True, slots=True)
class RecognitionConfig:
    """The parameters one recognition runs with (session values overridden by START_RECOGNITION's)."""

    values: Mapping[str, str]

    def flag(self, name: str) -> bool:
        return self.values[name] == "true"

    def number(self, name: str) -> int:
        return int(self.values[name])

    @property
    def continuous(self) -> bool:
        return self.flag("decoder.continuousMode")

    @property
    def no_input_timeout(self) -> float | None:
        enabled = self.flag("noInputTimeout.enabled")
        return self.number("noInputTimeout.value") / 1000 if enabled else None

    @property
    def recognition_timeout(self) -> float | None:
        enabled = self.flag("recognitionTimeout.enabled")
        return self.number("recognitionTimeout.value") / 1000 if enabled else None

    @property
    def max_segment(self) -> float | None:
        value = self.number("endpointer.maxSegmentDuration")
        return value / 1000 if value > 0 else None

    @property
    def infer(self) -> frozenset[str]:
        """The classifier objects to add: a subset of age_scores, gender_scores, emotion_scores."""
        names = (("age", "age_scores"), ("gender", "gender_scores"), ("emotion", "emotion_scores"))
        return frozenset(key for kind, key in names if self.flag(f"Infer-{kind}-enabled"))


def default_parameters() -> dict[str, str]:
    """A new session's parameter values."""
    return {p.name: p.default for p in PARAMETERS}
