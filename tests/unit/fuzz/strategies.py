"""Shared fuzzing pieces: the example budget, and mutations of valid wire messages (issue 12).

Each target runs a fixed, derandomized number of examples, so a run is repeatable and CI is quick;
`IVR_FUZZ_EXAMPLES=20000` runs the large count for the closing note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DEFAULT_EXAMPLES = 300


def examples(default: int = DEFAULT_EXAMPLES) -> int:
    """The example count of one target: IVR_FUZZ_EXAMPLES when set, else `default`."""
    return int(os.environ.get("IVR_FUZZ_EXAMPLES", default))


def fuzz(default: int = DEFAULT_EXAMPLES) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings for a fuzz target: fixed count, derandomized (no database), no deadline."""
    return settings(
        max_examples=examples(default),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# Replacement values that break parsers: huge, empty, non-UTF-8, control characters, deep nesting, numbers
# past every limit (int() refuses more than 4,300 digits by default).
NASTY_BYTES = [
    b"",
    b" ",
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"\x1b[2J",
    b"9" * 5000,
    b"-1",
    b"4294967296",
    b"65536",
    b"1e309",
    b"NaN",
    b'"',
    b"<",
    b">",
    b";",
    b",",
    b":",
    b"=",
    b"@",
    b"[",
    b"[" * 3000,
    b"{" * 3000,
    b"x" * 70000,
    "\u00b2\u0663".encode(),  # digits str.isdigit() takes and int() may refuse
    "\u2028".encode(),
]

nasty = st.sampled_from(NASTY_BYTES) | st.binary(max_size=40)


def split_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_mutations: int = 4) -> bytes:
    """A seed message with a few structure-aware mutations: lines or fields replaced, duplicated, dropped,
    truncated, spliced with nasty bytes or byte-flipped."""
    data = draw(st.sampled_from(list(seeds)))
    for _ in range(draw(st.integers(0, max_mutations))):
        lines = split_lines(data)
        kind = draw(st.integers(0, 8))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == 0:  # truncate anywhere
            data = data[: draw(st.integers(0, len(data)))]
            continue
        if kind == 1:  # duplicate a line
            lines.insert(i, lines[i])
        elif kind == 2:  # drop a line
            del lines[i]
        elif kind == 3:  # replace a line's value (after its first separator) with a nasty one
            line = lines[i]
            for sep in (b":", b"=", b" "):
                if sep in line:
                    head = line.split(sep, 1)[0]
                    lines[i] = head + sep + draw(nasty) + (b"\r" if line.endswith(b"\r") else b"")
                    break
            else:
                lines[i] = draw(nasty)
        elif kind == 4:  # replace one whitespace-separated field of a line
            words = lines[i].split(b" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(nasty)
            lines[i] = b" ".join(words)
        elif kind == 5:  # insert a line
            lines.insert(i, draw(nasty))
        elif kind == 6:  # splice nasty bytes at a random offset
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(nasty) + data[at:]
            continue
        elif kind == 7:  # flip one byte
            if data:
                at = draw(st.integers(0, len(data) - 1))
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
            continue
        else:  # swap two lines
            j = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[i], lines[j] = lines[j], lines[i]
        data = b"\n".join(lines)
    return data


def wire(seeds: Sequence[bytes], max_size: int = 600) -> st.SearchStrategy[bytes]:
    """Random bytes, or mutated seeds (weighted towards the latter: they get past the first line)."""
    return st.binary(max_size=max_size) | mutated(seeds) | mutated(seeds) | mutated(seeds)


def as_text(data: bytes) -> str:
    """Bytes as a WebSocket text frame could carry them (lone surrogates and all)."""
    return data.decode("utf-8", "surrogateescape")


# JSON the stdlib writes but a parser may choke on: numbers past int()'s 4,300 digits or any float, nesting
# past the recursion limit, non-finite numbers, and values of every wrong type.
RAW_JSON = [
    "9" * 5000,
    "-" + "9" * 5000,
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "1" + "0" * 400,
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    "null",
    "true",
    "-1",
    "0.5",
    '""',
    '"\\ud800"',
    "[]",
    "{}",
    '[1,"x",null,{}]',
]
_HOLE = "\x00HOLE\x00"
jsonish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _replace(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    assert isinstance(value, list)
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@st.composite
def json_mutated(draw: st.DrawFn, seeds: Sequence[object]) -> str:
    """A seed JSON document with one to three values (or keys' values) replaced by wrong or extreme ones,
    or dropped, then optionally truncated."""
    doc = draw(st.sampled_from(list(seeds)))
    raws: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        how = draw(st.sampled_from(["raw", "drop", "value"]))
        if how == "raw":
            raws.append(draw(st.sampled_from(RAW_JSON)))
            doc = _replace(doc, path, _HOLE)
        elif how == "drop" and path:
            parent = path[:-1]
            container = doc
            for step in parent:
                container = container[step]  # type: ignore[index]
            if isinstance(container, dict):
                doc = _replace(doc, parent, {k: v for k, v in container.items() if k != path[-1]})
        else:
            doc = _replace(doc, path, draw(jsonish))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    for raw in raws:
        text = text.replace(json.dumps(_HOLE), raw, 1)
    if draw(st.integers(0, 4)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text
