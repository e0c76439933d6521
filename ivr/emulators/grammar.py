"""SRGS grammars (W3C Speech Recognition Grammar Specification 1.0) for the local engines.

A grammar arrives as ABNF text (`#ABNF 1.0 ...`, section 4 of the spec), as XML (`<grammar ...>`, section 2)
or as a plain list of phrases one per line. `srgs.parse_grammar` turns any of them into a `Grammar`: rules of
tokens, sequences, weighted alternatives, repeats, rule references and tags. From it the engines take what
their decoders need: the finite list of sentences (Vosk's phrase list), a JSGF grammar (pocketsphinx), the
words to pronounce, and `match()`, which decides whether a decoded word string is a complete sentence of
the grammar and which semantic tags its path carries.

Supported: rule scopes, `$NULL`/`$VOID`/`$GARBAGE`, local rule references (`$name`, `<ruleref uri="#name"/>`),
weights (`/2/`), repeats (`<0-1>`, `<2->`, `repeat="1-3"`), quoted tokens, language attachments (ignored),
tags (`{...}`, `<tag>`), `//` and `/* */` comments. Not supported (GrammarError): references to external
grammars (`$<uri>`); `$GARBAGE` matches nothing, as the local decoders have no garbage model. Tags are kept
as written: semantic scripts (`semantics/1.0`) are not evaluated.

This module is the grammar model and its matcher; the text forms are parsed in `ivr.emulators.srgs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Alternatives",
    "Grammar",
    "GrammarError",
    "Node",
    "Repeat",
    "RuleRef",
    "Sentence",
    "Seq",
    "Special",
    "SpecialRule",
    "Tag",
    "Token",
]


class GrammarError(ValueError):
    """A grammar text the engine cannot use; the message says where (`source:line`) and what."""


class SpecialRule(Enum):
    """SRGS section 2.2.3: the rules every grammar may reference."""

    NULL = "NULL"  # matches nothing, always: an empty expansion
    VOID = "VOID"  # can never be spoken
    GARBAGE = "GARBAGE"  # any speech; the local decoders cannot model it, so it is treated as VOID


@dataclass(frozen=True, slots=True)
class Token:
    """One word to be spoken."""

    text: str


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A reference to a rule of the same grammar."""

    name: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Special:
    """A reference to $NULL, $VOID or $GARBAGE."""

    rule: SpecialRule


@dataclass(frozen=True, slots=True)
class Tag:
    """A semantic tag, kept as written."""

    text: str


@dataclass(frozen=True, slots=True)
class Seq:
    """Items spoken one after the other."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alternatives:
    """One of several expansions, each with its weight."""

    options: tuple[tuple[float, Node], ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    """An expansion spoken between `low` and `high` times (`high` None: unbounded)."""

    node: Node
    low: int
    high: int | None


Node = Token | RuleRef | Special | Tag | Seq | Alternatives | Repeat


@dataclass(frozen=True, slots=True)
class Sentence:
    """One complete sentence of a grammar and the tag of its path (tags in order, space-joined)."""

    text: str
    tag: str | None = None

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.split())


def _fold(words: Sequence[str]) -> tuple[str, ...]:
    return tuple(w.casefold() for w in words)


def _tag_of(tags: tuple[str, ...]) -> str | None:
    return " ".join(tags) if tags else None


_Path = tuple[tuple[str, ...], tuple[str, ...]]  # (words, tags)
_Marks = tuple[tuple[bool, str], ...]  # a matched path: (is_tag, text) in order


class _TooMany(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Grammar:
    """A parsed grammar: rules by name, the root rule, and what the header declared."""

    rules: dict[str, Node]
    root: str
    source: str = "<grammar>"
    language: str | None = None
    tag_format: str | None = None

    def __post_init__(self) -> None:
        if self.root not in self.rules:
            raise GrammarError(f"{self.source}: root rule ${self.root} is not defined")
        for name, node in self.rules.items():
            for ref in _refs(node):
                if ref.name not in self.rules:
                    raise GrammarError(
                        f"{self.source}:{ref.line}: rule ${ref.name} (used in ${name}) is not defined"
                    )

    # --- what the decoders need ---

    def words(self) -> list[str]:
        """Every token of the rules reachable from the root, in first-seen order."""
        seen: dict[str, None] = {}
        for name in self._reachable():
            for token in _tokens(self.rules[name]):
                seen.setdefault(token, None)
        return list(seen)

    def sentences(self, limit: int = 1000) -> list[Sentence] | None:
        """Every sentence of the grammar, or None when there are more than `limit` (or infinitely many)."""
        try:
            paths = self._expand(self.rules[self.root], limit, ())
        except _TooMany:
            return None
        found: dict[tuple[str, ...], Sentence] = {}
        for words, tags in paths:
            if words and _fold(words) not in found:  # the first path of an ambiguous sentence wins
                found[_fold(words)] = Sentence(" ".join(words), _tag_of(tags))
        return list(found.values())

    def match(self, words: Sequence[str]) -> Sentence | None:
        """The sentence (spelled as in the grammar) a word string is, if a whole one; case-insensitive."""
        folded = _fold(words)
        if not folded:
            return None
        for end, marks in self._ends(self.rules[self.root], folded, 0, 0):
            if end == len(folded):
                spelled = " ".join(text for is_tag, text in marks if not is_tag)
                return Sentence(spelled, _tag_of(tuple(text for is_tag, text in marks if is_tag)))
        return None

    def to_jsgf(self, spell: Callable[[str], str | None], name: str = "srgs") -> str:
        """The grammar as JSGF for pocketsphinx; `spell` names a token's dictionary word (None: unsayable).

        Tags are dropped (the sentence's tag comes from `match()` on the hypothesis); rule names are renamed
        to plain identifiers; an unsayable token becomes <VOID>, which removes just the paths through it.
        """
        names = {rule: f"r{i}" for i, rule in enumerate(self._reachable())}
        lines = ["#JSGF V1.0;", f"grammar {name};"]
        for rule, ident in names.items():
            body = _jsgf(self.rules[rule], names, spell) or "<NULL>"
            lines.append(f"{'public ' if rule == self.root else ''}<{ident}> = {body};")
        return "\n".join(lines) + "\n"

    # --- internals ---

    def _reachable(self) -> list[str]:
        order: dict[str, None] = {}
        stack = [self.root]
        while stack:
            name = stack.pop()
            if name in order:
                continue
            order[name] = None
            stack.extend(reversed([r.name for r in _refs(self.rules[name])]))
        return list(order)

    def _expand(self, node: Node, limit: int, active: tuple[str, ...]) -> list[_Path]:
        if isinstance(node, Token):
            return [((node.text,), ())]
        if isinstance(node, Tag):
            return [((), (node.text,))]
        if isinstance(node, Special):
            return [((), ())] if node.rule is SpecialRule.NULL else []
        if isinstance(node, RuleRef):
            if node.name in active:
                raise _TooMany  # recursion: infinitely many sentences
            return self._expand(self.rules[node.name], limit, (*active, node.name))
        if isinstance(node, Alternatives):
            out: list[_Path] = []
            for _, option in node.options:
                out += self._expand(option, limit, active)
                if len(out) > limit:
                    raise _TooMany
            return out
        if isinstance(node, Seq):
            paths: list[_Path] = [((), ())]
            for item in node.items:
                tails = self._expand(item, limit, active)
                if len(paths) * len(tails) > limit:
                    raise _TooMany
                paths = [(w + tw, t + tt) for w, t in paths for tw, tt in tails]
            return paths
        # Repeat
        if node.high is None:
            raise _TooMany
        once = self._expand(node.node, limit, active)
        result: list[_Path] = []
        current: list[_Path] = [((), ())]
        for count in range(node.high + 1):
            if count >= node.low:
                result += current
            if count < node.high:
                if len(current) * len(once) > limit:
                    raise _TooMany
                current = [(w + tw, t + tt) for w, t in current for tw, tt in once]
            if len(result) > limit:
                raise _TooMany
        return result

    def _ends(self, node: Node, words: tuple[str, ...], i: int, depth: int) -> list[tuple[int, _Marks]]:
        """Every (position after, marks) at which `node` can end when it starts at word `i`.

        Marks are the path's tokens as the grammar spells them and its tags, in order: (is_tag, text).
        """
        if depth > 200:  # SRGS forbids left recursion; stop a grammar that has it anyway
            return []
        if isinstance(node, Token):
            if i < len(words) and words[i] == node.text.casefold():
                return [(i + 1, ((False, node.text),))]
            return []
        if isinstance(node, Tag):
            return [(i, ((True, node.text),))]
        if isinstance(node, Special):
            return [(i, ())] if node.rule is SpecialRule.NULL else []
        if isinstance(node, RuleRef):
            return self._ends(self.rules[node.name], words, i, depth + 1)
        if isinstance(node, Alternatives):
            out: list[tuple[int, _Marks]] = []
            for _, option in node.options:
                out += self._ends(option, words, i, depth + 1)
            return list(dict.fromkeys(out))
        if isinstance(node, Seq):
            states: list[tuple[int, _Marks]] = [(i, ())]
            for item in node.items:
                nxt: dict[tuple[int, _Marks], None] = {}
                for pos, marks in states:
                    for end, more in self._ends(item, words, pos, depth + 1):
                        nxt[(end, marks + more)] = None
                states = list(nxt)
                if not states:
                    break
            return states
        # Repeat: iterate until the count is reached or no repetition moves forward
        result: dict[tuple[int, _Marks], None] = {}
        current: list[tuple[int, _Marks]] = [(i, ())]
        count = 0
        while current:
            if count >= node.low:
                result.update(dict.fromkeys(current))
            if node.high is not None and count >= node.high:
                break
            step: dict[tuple[int, _Marks], None] = {}
            for pos, marks in current:
                for end, more in self._ends(node.node, words, pos, depth + 1):
                    if end > pos or count < node.low:
                        step[(end, marks + more)] = None
            current = list(step)
            count += 1
            if count > len(words) + node.low + 1:
                break
        return list(result)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, Seq):
        yield from node.items
    elif isinstance(node, Alternatives):
        yield from (option for _, option in node.options)
    elif isinstance(node, Repeat):
        yield node.node


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def _refs(node: Node) -> list[RuleRef]:
    return [n for n in _walk(node) if isinstance(n, RuleRef)]


def _tokens(node: Node) -> list[str]:
    return [n.text for n in _walk(node) if isinstance(n, Token)]


def _jsgf(node: Node, names: dict[str, str], spell: Callable[[str], str | None]) -> str:
    if isinstance(node, Token):
        word = spell(node.text)
        return word if word is not None else "<VOID>"
    if isinstance(node, Tag):
        return ""
    if isinstance(node, Special):
        return "<NULL>" if node.rule is SpecialRule.NULL else "<VOID>"
    if isinstance(node, RuleRef):
        return f"<{names[node.name]}>"
    if isinstance(node, Seq):
        return " ".join(part for part in (_jsgf(i, names, spell) for i in node.items) if part)
    if isinstance(node, Alternatives):
        weighted = len({w for w, _ in node.options}) > 1
        parts = []
        for weight, option in node.options:
            body = _jsgf(option, names, spell) or "<NULL>"
            parts.append(f"/{weight:g}/ {body}" if weighted else body)
        return "(" + " | ".join(parts) + ")"
    body = _jsgf(node.node, names, spell) or "<NULL>"
    group = f"({body})"
    if node.high is None:
        return " ".join([group] * max(0, node.low - 1) + [f"{group}{'*' if node.low == 0 else '+'}"])
    required = [group] * node.low
    optional = ""
    for _ in range(node.high - node.low):
        optional = f"[{body} {optional}]" if optional else f"[{body}]"
    return " ".join(required + ([optional] if optional else []))
