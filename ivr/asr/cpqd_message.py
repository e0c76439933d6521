"""CPQD ASR WebSocket wire forms: message framing, result bodies, and the options that become parameters.

Sources: protocol-notes.md Part 1 (1.2 framing, 1.4 server messages, 1.6 the RECOGNITION_RESULT body) and
../shared/specs/003-cpqd-asr-websocket-2.4.md (the 2.4 ``age_scores``, ``gender_scores``,
``emotion_scores``).
A message is a first line ``ASR <version> <TYPE>``, ``Name: value`` header lines, a blank line and a body of
``Content-Length`` bytes, one message per WebSocket frame. We write what CPQD's Java SDK writes (CRLF, binary
frames, Content-Length/Content-Type last) and read what any of the SDKs or servers may send: LF or CRLF, a
missing blank line, header names in any case, values with or without a space after the colon.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ivr.asr.base import Alternative, Classification, Classifier, Frame, Scores, Word

EOL = "\r\n"  # what the Java SDK and the servers write (protocol-notes 1.2)


class CpqdParseError(ValueError):
    """A frame that is not a CPQD ASR message, or a result body that is not a JSON object."""

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(f"{reason}: {line[:80]!r}" if line else reason)
        self.line = line


@dataclass(frozen=True, slots=True)
class AsrMessage:
    """One message as received: its type (upper case), headers in arrival order, and the body bytes."""

    version: str
    kind: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name``, whatever its case (Java decoder semantics)."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def encode(
    version: str,
    kind: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    content_type: str = "",
) -> bytes:
    """A client message framed as the Java SDK does: Content-Length, Content-Type last, only with a body."""
    lines = [f"ASR {version} {kind}", *(f"{name}: {value}" for name, value in headers)]
    if body is not None:
        lines += [f"Content-Length: {len(body)}", f"Content-Type: {content_type}"]
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"CPQD header lines cannot hold a line break: {line[:80]!r}")
    return (EOL.join(lines) + EOL + EOL).encode("utf-8") + (body or b"")


def encode_audio(version: str, chunk: bytes, last: bool) -> bytes:
    """SEND_AUDIO in the SDKs' header order: LastPacket, Content-Length, Content-Type, then the PCM."""
    head = (
        f"ASR {version} SEND_AUDIO{EOL}LastPacket: {'true' if last else 'false'}{EOL}"
        f"Content-Length: {len(chunk)}{EOL}Content-Type: audio/raw{EOL}{EOL}"
    )
    return head.encode("ascii") + chunk


def parse_message(frame: Frame) -> AsrMessage:
    """A server frame (binary as the SDKs expect, or text) as a message; CpqdParseError when it is none."""
    data = frame.encode("utf-8") if isinstance(frame, str) else bytes(frame)
    data = data.lstrip(b"\r\n\t ")
    # The header block ends at the first blank line, written CRLF or LF; Python SDK messages have none.
    ends = [(at, size) for at, size in ((data.find(b"\r\n\r\n"), 4), (data.find(b"\n\n"), 2)) if at >= 0]
    if ends:
        at, size = min(ends)
        head, rest = data[:at], data[at + size :]
    else:
        head, rest = data, b""
    lines = [line.strip("\r") for line in head.decode("utf-8", errors="replace").split("\n")]
    first = lines[0].split()
    if len(first) < 3 or first[0].upper() != "ASR" or not _is_version(first[1]):
        raise CpqdParseError("not a CPQD ASR message", lines[0])
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")  # split at the first colon only: values may hold colons
        if name.strip():
            headers.append((name.strip(), value.strip()))
    message = AsrMessage(first[1], first[2].upper(), tuple(headers))
    length = message.header("Content-Length")
    if length is None or not length:
        body = rest
    else:
        try:
            size = int(length)
        except ValueError:
            raise CpqdParseError("bad Content-Length", length) from None
        if size < 0:
            raise CpqdParseError("bad Content-Length", length)
        body = rest[:size]  # a short body is taken as it is; its JSON decides whether it is usable
    return AsrMessage(message.version, message.kind, message.headers, body)


def _is_version(token: str) -> bool:
    major, _, minor = token.partition(".")
    return major.isdigit() and (not minor or minor.isdigit())


# ---- the RECOGNITION_RESULT body (protocol-notes 1.6, document 003)


@dataclass(frozen=True, slots=True)
class ResultBody:
    """The JSON body of a RECOGNITION_RESULT, reduced to what the codec maps to events."""

    result_status: str | None
    alternatives: tuple[Alternative, ...] = ()
    segment_index: int | None = None
    last_segment: bool | None = None
    final_result: bool | None = None
    classification: Classification | None = None


def parse_result(body: bytes) -> ResultBody:
    """The result JSON; CpqdParseError when it is not a JSON object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CpqdParseError("result body is not UTF-8") from None
    document = _loads(text)
    if not isinstance(document, dict):
        raise CpqdParseError("result body is not a JSON object", text)
    status = document.get("result_status")
    alternatives = document.get("alternatives")
    segment = document.get("segment_index")
    return ResultBody(
        result_status=status.strip().upper() if isinstance(status, str) and status.strip() else None,
        alternatives=tuple(_alternative(item) for item in alternatives or () if isinstance(item, dict))
        if isinstance(alternatives, list)
        else (),
        segment_index=segment if isinstance(segment, int) and not isinstance(segment, bool) else None,
        last_segment=_flag(document.get("last_segment")),
        final_result=_flag(document.get("final_result")),
        classification=_classification(document),
    )


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise CpqdParseError("result JSON nested too deeply") from None
    except ValueError:  # not a JSONDecodeError: an integer past int()'s 4,300 digits, which no field holds
        raise CpqdParseError("result JSON has a number too long to read") from None
    # Document 003's own result example has a comma before a closing brace; a server built from it might too.
    try:
        return json.loads(_without_trailing_commas(text))
    except (ValueError, RecursionError):
        raise CpqdParseError("result body is not JSON", text) from None


def _without_trailing_commas(text: str) -> str:
    """``text`` without commas that stand right before a closing ``}`` or ``]`` (outside strings)."""
    out: list[str] = []
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and text[index + 1 :].lstrip()[:1] in ("}", "]"):
            continue
        out.append(char)
    return "".join(out)


def _alternative(item: dict[str, Any]) -> Alternative:
    words = item.get("words")
    return Alternative(
        text=_text(item.get("text")),
        confidence=_score(item.get("score")) or 0.0,
        words=tuple(_word(word) for word in words if isinstance(word, dict))
        if isinstance(words, list)
        else (),
    )


def _word(item: dict[str, Any]) -> Word:
    return Word(
        text=_text(item.get("text")),
        start=_number(item.get("start_time")),
        end=_number(item.get("end_time")),
        confidence=_score(item.get("score")),
    )


def _classification(document: dict[str, Any]) -> Classification | None:
    emotion = _emotion(document.get("emotion_scores"))
    age = _age(document.get("age_scores"))
    gender = _gender(document.get("gender_scores"))
    if emotion is None and age is None and gender is None:
        return None
    return Classification(emotion=emotion, age=age, gender=gender)


# Which of the ten emotions make up each of 2.4's four p_groups. Document 003 names the groups but not their
# members, and its own example omits p_groups; this is our reading (the valence/arousal quadrants the names
# describe), used only to fill in p_groups when a server leaves them out, so group routes still work.
# The ten emotions of `emotion_scores.p`, in the document's order.
EMOTIONS = (
    "enojado",
    "frustrado",
    "triste",
    "ansioso",
    "entusiasmado",
    "feliz",
    "surpreso",
    "amedrontado",
    "neutro",
    "irritado",
)
EMOTION_GROUPS: dict[str, tuple[str, ...]] = {
    "negativo_desativado": ("triste",),
    "positivo": ("entusiasmado", "feliz", "surpreso"),
    "neutro": ("neutro",),
    "negativo_ativado": ("enojado", "irritado", "frustrado", "ansioso", "amedrontado"),
}


def _groups_of(p: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    values = dict(p)
    if not values:
        return ()
    return tuple(
        (group, round(sum(values.get(e, 0.0) for e in members), 6))
        for group, members in EMOTION_GROUPS.items()
    )


def _emotion(value: object) -> Scores | None:
    """Label ``emotion``; ``p`` the ten emotions; ``p_groups`` the four groups (derived from ``p`` when the
    server sends none, as 003's own example does not)."""
    if not isinstance(value, dict):
        return None
    p, groups = _distribution(value.get("p")), _distribution(value.get("p_groups"))
    groups = groups or _groups_of(p)
    label = _text(value.get("emotion")) or _argmax(p)
    return Scores(label, p, groups) if label or p else None


def _age(value: object) -> Scores | None:
    """Label ``str(age)``; ``p`` the decade bins; the ``confidence`` level ("mid") as a one-entry group."""
    if not isinstance(value, dict):
        return None
    p = _distribution(value.get("p"))
    age = _number(value.get("age"))
    label = str(round(age)) if age is not None else _argmax(p)
    confidence = value.get("confidence")
    groups: tuple[tuple[str, float], ...] = ()
    if isinstance(confidence, str) and confidence.strip():
        groups = ((confidence.strip(), 1.0),)
    elif (number := _number(confidence)) is not None:
        groups = (("confidence", number),)
    return Scores(label, p, groups) if label or p else None


def _gender(value: object) -> Scores | None:
    """Label "M"/"F"; ``p`` is [P(M), P(F)] (003's example: gender M with p[0] = 0.85)."""
    if not isinstance(value, dict):
        return None
    raw = value.get("p")
    if isinstance(raw, list):
        p = tuple(
            (name, number)
            for name, item in zip(("M", "F"), raw[:2], strict=False)
            if (number := _number(item)) is not None
        )
    else:
        p = _distribution(raw)
    label = _text(value.get("gender")).upper() or _argmax(p)
    return Scores(label, p) if label or p else None


def _distribution(value: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple((str(key), number) for key, item in value.items() if (number := _number(item)) is not None)


def _argmax(p: tuple[tuple[str, float], ...]) -> str:
    return max(p, key=lambda item: item[1])[0] if p else ""


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _score(value: object) -> float | None:
    """CPQD scores are whole numbers 0-100; confidences are 0-1."""
    number = _number(value)
    return None if number is None else min(1.0, max(0.0, number / 100.0))


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


# ---- dialplan options: the codec's own and CPQD recognition parameters (protocol-notes 1.5)

VERSIONS = ("2.3", "2.4")
OPTIONS = ("version", "continuous_mode", "chunk_ms")


class _Kind(Enum):
    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    TEXT = "text"


# protocol-notes 1.5 (Java RecognitionParameters.Header); the 2.4 Infer-* come from the step's classifiers.
PARAMETERS: dict[str, _Kind] = {
    "noInputTimeout.enabled": _Kind.BOOLEAN,
    "noInputTimeout.value": _Kind.INTEGER,
    "recognitionTimeout.enabled": _Kind.BOOLEAN,
    "recognitionTimeout.value": _Kind.INTEGER,
    "decoder.startInputTimers": _Kind.BOOLEAN,
    "decoder.maxSentences": _Kind.INTEGER,
    "decoder.confidenceThreshold": _Kind.INTEGER,
    "decoder.continuousMode": _Kind.BOOLEAN,
    "decoder.wordDetails": _Kind.TEXT,
    "endpointer.headMargin": _Kind.INTEGER,
    "endpointer.tailMargin": _Kind.INTEGER,
    "endpointer.waitEnd": _Kind.INTEGER,
    "endpointer.levelThreshold": _Kind.FLOAT,
    "endpointer.levelMode": _Kind.INTEGER,
    "endpointer.autoLevelLen": _Kind.INTEGER,
    "endpointer.useToneDetectors": _Kind.BOOLEAN,
    "endpointer.maxSegmentDuration": _Kind.INTEGER,
    "endpointer.segmentOverlapTime": _Kind.INTEGER,
    "hints.words": _Kind.TEXT,
    "textify.enabled": _Kind.BOOLEAN,
    "textify.formatting.enabled": _Kind.BOOLEAN,
    "textify.formatting.rules": _Kind.TEXT,
    "loggingTag": _Kind.TEXT,
    "license.manager.accountTag": _Kind.TEXT,
}
CLASSIFIER_HEADERS = {
    Classifier.EMOTION: "Infer-emotion-enabled",
    Classifier.AGE: "Infer-age-enabled",
    Classifier.GENDER: "Infer-gender-enabled",
}
_CANONICAL = {name.lower(): name for name in PARAMETERS}
_WORD_DETAILS = {"none": "0", "first": "1", "all": "2", "0": "0", "1": "1", "2": "2"}


@dataclass(frozen=True, slots=True)
class CpqdOptions:
    """Dialplan ``options:`` for CPQD, validated: connection-level ones and per-recognition parameters."""

    version: str = "2.4"
    continuous_mode: bool = False
    chunk_ms: int = 100
    parameters: tuple[tuple[str, str], ...] = ()  # canonical CPQD parameter name, wire value


def parse_options(options: Mapping[str, object]) -> CpqdOptions:
    """``options`` checked and put in wire form; ValueError naming the bad option."""
    values = CpqdOptions()
    parameters: list[tuple[str, str]] = []
    version, continuous, chunk_ms = values.version, values.continuous_mode, values.chunk_ms
    for name, value in options.items():
        if name == "version":
            version = _version(value)
        elif name == "continuous_mode":
            if not isinstance(value, bool):
                raise ValueError(f"CPQD continuous_mode must be true or false, not {value!r}")
            continuous = value
        elif name == "chunk_ms":
            if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 1000:
                raise ValueError(f"CPQD chunk_ms must be a whole number of ms from 10 to 1000, not {value!r}")
            chunk_ms = value
        elif name == "parameters" and isinstance(value, tuple | list | dict):
            pairs = value.items() if isinstance(value, dict) else value  # validate_options' own output
            for pair in pairs:
                if not (
                    isinstance(pair, tuple | list) and len(pair) == 2 and str(pair[0]).lower() in _CANONICAL
                ):
                    raise ValueError(
                        f"CPQD parameters must be (name, value) pairs of known names, not {pair!r}"
                    )
                canonical = _CANONICAL[str(pair[0]).lower()]
                parameters.append((canonical, _wire_value(canonical, pair[1])))
        elif name.lower() in _CANONICAL:
            canonical = _CANONICAL[name.lower()]
            parameters.append((canonical, _wire_value(canonical, value)))
        elif name.lower() in {header.lower() for header in CLASSIFIER_HEADERS.values()}:
            raise ValueError(f"CPQD option {name!r} is set by the step's classifiers, not by options")
        else:
            raise ValueError(_unknown_option(name))
    return CpqdOptions(version, continuous, chunk_ms, tuple(parameters))


def _version(value: object) -> str:
    # YAML reads an unquoted 2.4 as a float.
    text = f"{value:.1f}" if isinstance(value, float) else value
    if text not in VERSIONS:
        raise ValueError(f"CPQD version must be one of {', '.join(VERSIONS)}, not {value!r}")
    return str(text)


def _wire_value(name: str, value: object) -> str:
    kind = PARAMETERS[name]
    problem = f"CPQD {name} must be {kind.value}"
    if kind is _Kind.BOOLEAN:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
    elif kind is _Kind.INTEGER:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if name == "decoder.confidenceThreshold" and value > 100:
                raise ValueError(f"CPQD {name} is a score from 0 to 100, not {value!r}")
            return str(value)
        problem = f"CPQD {name} must be a whole number >= 0"
    elif kind is _Kind.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return str(value)
    elif name == "decoder.wordDetails":
        detail = _WORD_DETAILS.get(str(value).strip().lower())
        if detail is not None and not isinstance(value, bool):
            return detail
        problem = f"CPQD {name} must be 0/1/2 (NONE/FIRST/ALL)"
    elif isinstance(value, str) and "\r" not in value and "\n" not in value:
        return value
    raise ValueError(f"{problem}, not {value!r}")


def _unknown_option(name: str) -> str:
    lowered = {option.lower(): option for option in (*OPTIONS, *PARAMETERS)}
    close = [lowered[match] for match in difflib.get_close_matches(name.lower(), list(lowered), n=3)]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown CPQD option {name!r} ({hint}CPQD takes {', '.join(OPTIONS)} and the recognition "
        "parameters of its API, such as decoder.confidenceThreshold or endpointer.waitEnd)"
    )


def phrases_grammar(phrases: tuple[str, ...], language: str) -> str:
    """An SRGS ABNF grammar accepting exactly one of ``phrases`` (words with ABNF syntax quoted)."""
    alternatives = [" ".join(_token(word) for word in phrase.split()) for phrase in phrases if phrase.split()]
    return (
        f"#ABNF 1.0 UTF-8;\nlanguage {language};\nmode voice;\nroot $phrases;\n"
        f"$phrases = {' | '.join(alternatives)};\n"
    )


def _token(word: str) -> str:
    if re.fullmatch(r"[^;|$()\[\]{}<>/\"=*+#!]+", word):
        return word
    return '"' + word.replace('"', "") + '"'
