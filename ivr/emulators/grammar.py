"""SRGS grammars (W3C Speech Recognition Grammar Specification 1.0) for the local engines.

A grammar arrives as ABNF text (`#ABNF 1.0 ...`, section 4 of the spec), as XML (`<grammar ...>`, section 2)
or as a plain list of phrases one per line. `parse_grammar` turns any of them into one `Grammar`: rules of
tokens, sequences, weighted alternatives, repeats, rule references and tags. From it the engines take what
their decoders need: the finite list of sentences (Vosk's phrase list), a JSGF grammar (pocketsphinx), the
words to pronounce, and `match()`, which decides whether a decoded word string is a complete sentence of
the grammar and which semantic tags its path carries.

Supported: rule scopes, `$NULL`/`$VOID`/`$GARBAGE`, local rule references (`$name`, `<ruleref uri="#name"/>`),
weights (`/2/`), repeats (`<0-1>`, `<2->`, `repeat="1-3"`), quoted tokens, language attachments (ignored),
tags (`{...}`, `<tag>`), `//` and `/* */` comments. Not supported (GrammarError): references to external
grammars (`$<uri>`); `$GARBAGE` matches nothing, as the local decoders have no garbage model. Tags are kept
as written: semantic scripts (`semantics/1.0`) are not evaluated.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
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
    "parse_grammar",
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


# --- the three input forms ---


def parse_grammar(text: str, source: str = "<grammar>") -> Grammar:
    """Parse SRGS ABNF, SRGS XML, or phrases one per line (`#` comments); raises GrammarError."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("#ABNF"):
        return _AbnfParser(text, source).grammar()
    if stripped.startswith("<"):
        return _parse_xml(stripped, source)
    return _parse_phrases(text, source)


def _parse_phrases(text: str, source: str) -> Grammar:
    options: list[tuple[float, Node]] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            options.append((1.0, Seq(tuple(Token(w) for w in words))))
    if not options:
        raise GrammarError(f"{source}: no phrase in the grammar")
    return Grammar({"phrases": Alternatives(tuple(options))}, "phrases", source)


# ABNF lexical items (SRGS section 4): special characters, and everything else up to them is a token.
_ABNF_LEXEME = re.compile(
    r"""(?P<space>[ \t\r\f\v]+)|(?P<newline>\n)
    |(?P<comment>//[^\n]*|/\*(?:.|\n)*?\*/)
    |(?P<tag>\{!\{(?:.|\n)*?\}!\}|\{[^}]*\})
    |(?P<weight>/\s*[0-9.eE+-]+\s*/)
    |(?P<repeat><\s*\d+\s*(?:-\s*\d*\s*)?>(?:\s*/\s*[0-9.]+\s*/)?)
    |(?P<angle><[^>]*>)
    |(?P<rule>\$(?:<[^>]*>|[^\s;|()\[\]{}<>/=$"!]+))
    |(?P<quoted>"[^"\n]*")
    |(?P<lang>![A-Za-z][A-Za-z0-9-]*)
    |(?P<punct>[;|()\[\]=])
    |(?P<word>[^\s;|()\[\]{}<>/=$"!]+)
    |(?P<bad>.)""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Lexeme:
    kind: str
    value: str
    line: int


class _AbnfParser:
    """A recursive-descent parser of the ABNF form (SRGS section 4)."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lexemes = list(self._lex(text))
        self.pos = 0

    def _lex(self, text: str) -> Iterator[_Lexeme]:
        line = 1
        header, _, rest = text.lstrip("\ufeff").partition("\n")
        if not header.rstrip().endswith(";"):
            raise GrammarError(f"{self.source}:1: the #ABNF header must end with ';'")
        line = 2
        for m in _ABNF_LEXEME.finditer(rest):
            kind = m.lastgroup or "bad"
            value = m.group()
            if kind == "bad":
                raise GrammarError(f"{self.source}:{line}: unexpected character {value!r}")
            if kind not in ("space", "newline", "comment"):
                yield _Lexeme(kind, value, line)
            line += value.count("\n")

    def _error(self, message: str, lexeme: _Lexeme | None = None) -> GrammarError:
        lexeme = lexeme or self._peek()
        where = lexeme.line if lexeme else (self.lexemes[-1].line if self.lexemes else 1)
        return GrammarError(f"{self.source}:{where}: {message}")

    def _peek(self) -> _Lexeme | None:
        return self.lexemes[self.pos] if self.pos < len(self.lexemes) else None

    def _next(self) -> _Lexeme:
        lexeme = self._peek()
        if lexeme is None:
            raise self._error("unexpected end of grammar (a missing ';'?)")
        self.pos += 1
        return lexeme

    def _expect(self, value: str) -> None:
        lexeme = self._next()
        if lexeme.value != value:
            raise self._error(f"expected {value!r}, found {lexeme.value!r}", lexeme)

    def grammar(self) -> Grammar:
        rules: dict[str, Node] = {}
        root: str | None = None
        language: str | None = None
        tag_format: str | None = None
        first_rule: str | None = None
        while (lexeme := self._peek()) is not None:
            if lexeme.kind == "rule" or lexeme.value in ("public", "private"):
                if lexeme.kind == "word":
                    self._next()
                name, body = self._rule()
                if name in rules:
                    raise self._error(f"rule ${name} is defined twice", lexeme)
                rules[name] = body
                first_rule = first_rule or name
                continue
            keyword = self._next()
            if keyword.kind != "word":
                raise self._error(f"expected a declaration or a rule, found {keyword.value!r}", keyword)
            values: list[_Lexeme] = []
            while (item := self._next()).value != ";":
                values.append(item)
            if keyword.value == "root":
                if len(values) != 1 or values[0].kind != "rule":
                    raise self._error("root expects one rule name: root $name;", keyword)
                root = values[0].value[1:]
            elif keyword.value == "language" and values:
                language = values[0].value
            elif keyword.value == "tag-format" and values:
                tag_format = values[0].value.strip("<>")
            elif keyword.value not in ("mode", "base", "lexicon", "meta", "http-equiv"):
                raise self._error(f"unknown declaration {keyword.value!r}", keyword)
        if not rules:
            raise self._error("the grammar defines no rule")
        # SRGS 4.7: without a root declaration a grammar has no root; be lenient and take the first rule.
        return Grammar(rules, root or str(first_rule), self.source, language, tag_format)

    def _rule(self) -> tuple[str, Node]:
        head = self._next()
        if head.kind != "rule" or head.value.startswith("$<"):
            raise self._error(f"expected a rule name, found {head.value!r}", head)
        name = head.value[1:]
        if name in {s.value for s in SpecialRule}:
            raise self._error(f"${name} is a special rule and cannot be redefined", head)
        self._expect("=")
        body = self._alternatives()
        lexeme = self._peek()
        if lexeme is None or lexeme.value != ";":
            found = repr(lexeme.value) if lexeme else "the end"
            raise self._error(f"rule ${name}: expected ';', found {found}", lexeme)
        self._next()
        return name, body

    def _alternatives(self) -> Node:
        options: list[tuple[float, Node]] = [self._weighted()]
        while (lexeme := self._peek()) is not None and lexeme.value == "|":
            self._next()
            options.append(self._weighted())
        return options[0][1] if len(options) == 1 else Alternatives(tuple(options))

    def _weighted(self) -> tuple[float, Node]:
        weight = 1.0
        lexeme = self._peek()
        if lexeme is not None and lexeme.kind == "weight":
            self._next()
            try:
                weight = float(lexeme.value.strip("/ \t"))
            except ValueError:
                raise self._error(f"bad weight {lexeme.value!r}", lexeme) from None
        return weight, self._sequence()

    def _sequence(self) -> Node:
        items: list[Node] = []
        while (lexeme := self._peek()) is not None and lexeme.value not in ("|", ")", "]", ";"):
            items.append(self._item())
        if not items:
            raise self._error("empty expansion (use $NULL for nothing)")
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def _item(self) -> Node:
        node = self._primary()
        while (lexeme := self._peek()) is not None and lexeme.kind in ("repeat", "lang"):
            self._next()
            if lexeme.kind == "repeat":
                node = self._repeat(node, lexeme)
        return node

    def _repeat(self, node: Node, lexeme: _Lexeme) -> Node:
        spec = lexeme.value.split(">", 1)[0].strip("< \t")
        low_text, dash, high_text = (p.strip() for p in spec.partition("-"))
        low = int(low_text)
        high = int(high_text) if high_text else (None if dash else low)
        if high is not None and high < low:
            raise self._error(f"repeat {lexeme.value!r}: the maximum is below the minimum", lexeme)
        return Repeat(node, low, high)

    def _primary(self) -> Node:
        lexeme = self._next()
        if lexeme.kind == "word":
            return Token(lexeme.value)
        if lexeme.kind == "quoted":
            words = lexeme.value.strip('"').split()
            if not words:
                raise self._error("empty quoted token", lexeme)
            return Token(words[0]) if len(words) == 1 else Seq(tuple(Token(w) for w in words))
        if lexeme.kind == "tag":
            script = lexeme.value[3:-3] if lexeme.value.startswith("{!{") else lexeme.value[1:-1]
            return Tag(script.strip())
        if lexeme.kind == "rule":
            name = lexeme.value[1:]
            if name.startswith("<"):
                uri = name.strip("<>")
                if uri.startswith("#"):
                    return RuleRef(uri[1:], lexeme.line)
                raise self._error(f"references to other grammars are not supported: {lexeme.value}", lexeme)
            if name in {s.value for s in SpecialRule}:
                return Special(SpecialRule(name))
            return RuleRef(name, lexeme.line)
        if lexeme.value in ("(", "["):
            close = ")" if lexeme.value == "(" else "]"
            body = self._alternatives()
            end = self._peek()
            if end is None or end.value != close:
                found = repr(end.value) if end else "the end"
                raise self._error(
                    f"expected {close!r} to close the {lexeme.value!r} of line {lexeme.line}, found {found}",
                    end,
                )
            self._next()
            return body if close == ")" else Repeat(body, 0, 1)
        raise self._error(f"unexpected {lexeme.value!r}", lexeme)


_SRGS_NS = "{http://www.w3.org/2001/06/grammar}"


def _parse_xml(text: str, source: str) -> Grammar:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise GrammarError(f"{source}:{line}: malformed XML (column {column}): {exc}") from None

    def local(tag: str) -> str:
        return tag[len(_SRGS_NS) :] if tag.startswith(_SRGS_NS) else tag

    if local(root.tag) != "grammar":
        raise GrammarError(f"{source}: the document element is <{local(root.tag)}>, not <grammar>")

    def words(text: str | None) -> list[Node]:
        return [Token(w) for w in (text or "").split()]

    def content(element: ET.Element, where: str) -> Node:
        items: list[Node] = words(element.text)
        for child in element:
            items.append(expansion(child, where))
            items += words(child.tail)
        if not items:
            return Special(SpecialRule.NULL)
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def expansion(element: ET.Element, where: str) -> Node:
        kind = local(element.tag)
        if kind == "item":
            node = content(element, where)
            repeat = element.get("repeat")
            if repeat:
                low_text, dash, high_text = repeat.partition("-")
                try:
                    low = int(low_text)
                    high = int(high_text) if high_text else (None if dash else low)
                except ValueError:
                    raise GrammarError(f"{source}: rule {where}: bad repeat {repeat!r}") from None
                node = Repeat(node, low, high)
            return node
        if kind == "one-of":
            options: list[tuple[float, Node]] = []
            for child in element:
                if local(child.tag) != "item":
                    raise GrammarError(
                        f"{source}: rule {where}: <one-of> holds <{local(child.tag)}>, not <item>"
                    )
                try:
                    weight = float(child.get("weight", "1"))
                except ValueError:
                    raise GrammarError(
                        f"{source}: rule {where}: bad weight {child.get('weight')!r}"
                    ) from None
                options.append((weight, expansion(child, where)))
            if not options:
                raise GrammarError(f"{source}: rule {where}: empty <one-of>")
            return options[0][1] if len(options) == 1 else Alternatives(tuple(options))
        if kind == "ruleref":
            special = element.get("special")
            if special:
                try:
                    return Special(SpecialRule(special))
                except ValueError:
                    raise GrammarError(f"{source}: rule {where}: unknown special rule {special!r}") from None
            uri = element.get("uri", "")
            if not uri.startswith("#"):
                raise GrammarError(
                    f"{source}: rule {where}: references to other grammars are not supported: {uri!r}"
                )
            return RuleRef(uri[1:])
        if kind == "tag":
            return Tag((element.text or "").strip())
        if kind == "token":
            return content(element, where)
        raise GrammarError(f"{source}: rule {where}: unexpected <{kind}>")

    rules: dict[str, Node] = {}
    for rule in root:
        if local(rule.tag) in ("meta", "metadata", "lexicon", "tag"):
            continue
        if local(rule.tag) != "rule" or not rule.get("id"):
            raise GrammarError(f"{source}: expected <rule id=...>, found <{local(rule.tag)}>")
        rules[str(rule.get("id"))] = content(rule, str(rule.get("id")))
    if not rules:
        raise GrammarError(f"{source}: the grammar defines no rule")
    root_name = root.get("root") or next(iter(rules))
    return Grammar(
        rules,
        root_name,
        source,
        root.get("{http://www.w3.org/XML/1998/namespace}lang"),
        root.get("tag-format"),
    )
