"""SRGS 1.0 grammar text parsed into `ivr.emulators.grammar.Grammar`: the ABNF form (section 4), the XML
form (section 2), and plain phrases one per line.

`parse_grammar()` picks the form from the text's first characters. The model it builds (and matches with) is
`ivr.emulators.grammar`, which does not import this module.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from ivr.emulators.grammar import (
    Alternatives,
    Grammar,
    GrammarError,
    Node,
    Repeat,
    RuleRef,
    Seq,
    Special,
    SpecialRule,
    Tag,
    Token,
)


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
