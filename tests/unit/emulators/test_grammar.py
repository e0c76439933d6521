"""SRGS grammars: the CPqD SDK's own .gram files, the XML form, phrase lists, and errors that say where."""

from __future__ import annotations

import pytest

from ivr.emulators.grammar import Grammar, GrammarError, Sentence
from ivr.emulators.srgs import parse_grammar
from tests.tools import SHARED

AUDIO = SHARED / "audio/cpqd-sdk"


def _gram(name: str) -> Grammar:
    return parse_grammar((AUDIO / name).read_text(encoding="utf-8"), name)


def test_yes_no_gram() -> None:
    grammar = _gram("yes_no.gram")
    assert grammar.root == "root"
    assert grammar.language == "pt-BR"
    assert grammar.tag_format == "semantics/1.0"
    assert grammar.sentences() == [Sentence("sim"), Sentence("não")]
    assert grammar.words() == ["sim", "não"]


def test_pizza_gram_sentences_and_tags() -> None:
    grammar = _gram("pizza.gram")
    assert grammar.root == "order"
    assert grammar.tag_format == "semantics/1.0-literals"
    sentences = grammar.sentences(limit=100_000)
    assert sentences is not None
    # [$want] x [pizza|de|pizza de] x 49 flavours x [por favor|por gentileza]: 13 x 4 x 49 x 3
    assert len(sentences) == 13 * 4 * 49 * 3
    by_text = {s.text: s.tag for s in sentences}
    assert by_text["bacon"] == "pizza_bacon"
    assert by_text["eu quero uma pizza de frango com catupiry por favor"] == "pizza_frango_catupiry"
    assert by_text["gostaria de pizza dois queijos por gentileza"] == "pizza_2queijos"
    assert "quero" not in by_text  # a flavour is required
    assert grammar.sentences(limit=1000) is None  # over the cap: the engines decode its word list instead
    assert len(grammar.words()) == 63


@pytest.mark.parametrize(
    ("spoken", "text", "tag"),
    [
        ("eu quero uma pizza de calabresa", "eu quero uma pizza de calabresa", "pizza_calabresa"),
        (
            "QUERIA PIZZA MODA DA CASA",
            "queria pizza moda da casa",
            "pizza_moda_casa",
        ),  # the grammar's spelling
        ("muçarela por favor", "muçarela por favor", "pizza_muçarela"),
    ],
)
def test_match_gives_the_sentence_and_its_tag(spoken: str, text: str, tag: str) -> None:
    assert _gram("pizza.gram").match(spoken.split()) == Sentence(text, tag)


@pytest.mark.parametrize("spoken", ["eu quero uma", "pizza", "bacon por", "bacon bacon", "sim", ""])
def test_match_refuses_anything_but_a_whole_sentence(spoken: str) -> None:
    assert _gram("pizza.gram").match(spoken.split()) is None


def test_jsgf_of_pizza_keeps_the_structure_and_drops_tags() -> None:
    jsgf = _gram("pizza.gram").to_jsgf(lambda w: {"não": None}.get(w, w.replace("ç", "c")))
    assert jsgf.startswith("#JSGF V1.0;\ngrammar srgs;\npublic <r0> = ")
    assert "[(por favor | por gentileza)]" in jsgf
    assert "(quero | queria | gostaria de)" in jsgf
    assert "mucarela" in jsgf and "{" not in jsgf


def test_unsayable_words_become_void() -> None:
    jsgf = _gram("yes_no.gram").to_jsgf(lambda w: None if w == "não" else w)
    assert "public <r0> = (sim | <VOID>);" in jsgf


def test_abnf_weights_repeats_specials_and_comments() -> None:
    text = """#ABNF 1.0 UTF-8;
language en-US;
mode voice;
root $main; /* block
comment */
public $main = /2/ $digit<2-3> {digits} | /0.5/ "main menu" | $NULL $yes; // trailing
private $digit = one | two;
$yes = yes [please] | $VOID nope;
"""
    grammar = parse_grammar(text, "menu.gram")
    sentences = grammar.sentences()
    assert sentences is not None
    texts = [s.text for s in sentences]
    assert len([t for t in texts if t.split()[0] in ("one", "two")]) == 4 + 8
    assert {"main menu", "yes", "yes please"} <= set(texts)
    assert "nope" not in texts  # behind $VOID
    assert grammar.match(["two", "one", "two"]) == Sentence("two one two", "digits")
    assert grammar.match(["one"]) is None  # below the repeat's minimum
    assert "/2/ " in grammar.to_jsgf(lambda w: w)


def test_an_unbounded_repeat_has_no_sentence_list_but_matches() -> None:
    grammar = parse_grammar("#ABNF 1.0;\nroot $r;\n$r = yes <1->;\n")
    assert grammar.sentences() is None
    assert grammar.match(["yes"] * 5) is not None
    assert "(yes)+" in grammar.to_jsgf(lambda w: w)


def test_srgs_xml() -> None:
    text = """<?xml version="1.0" encoding="UTF-8"?>
<grammar xmlns="http://www.w3.org/2001/06/grammar" version="1.0" xml:lang="pt-BR" root="resposta"
         tag-format="semantics/1.0-literals">
  <rule id="resposta" scope="public">
    <item repeat="0-1">eu</item>
    <one-of>
      <item weight="2">quero <ruleref uri="#sabor"/></item>
      <item>não <tag>nao</tag></item>
    </one-of>
  </rule>
  <rule id="sabor"><one-of><item>bacon<tag>pizza_bacon</tag></item><item>frango</item></one-of></rule>
</grammar>"""
    grammar = parse_grammar(text, "order.grxml")
    assert grammar.language == "pt-BR"
    assert {(s.text, s.tag) for s in grammar.sentences() or []} == {
        ("quero bacon", "pizza_bacon"),
        ("quero frango", None),
        ("não", "nao"),
        ("eu quero bacon", "pizza_bacon"),
        ("eu quero frango", None),
        ("eu não", "nao"),
    }


def test_a_phrase_list_is_a_grammar_of_alternatives() -> None:
    grammar = parse_grammar("# menu\nsaldo\n\nfalar com atendente  # agent\n")
    assert [s.text for s in grammar.sentences() or []] == ["saldo", "falar com atendente"]
    assert grammar.match(["falar", "com", "atendente"]) == Sentence("falar com atendente")


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = sim | não\n", "g.gram:3", "expected ';'"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n\n$r = (sim | não;\n", "g.gram:4", "expected ')'"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = sim | $talvez;\n", "g.gram:3", "$talvez"),
        ("#ABNF 1.0 UTF-8;\nroot $nada;\n$r = sim;\n", "g.gram", "root rule $nada"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = sim | ;\n", "g.gram:3", "empty expansion"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = sim;\n$r = não;\n", "g.gram:4", "defined twice"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = $<http://x/y.gram>;\n", "g.gram:3", "other grammars"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\nwhatever x;\n$r = sim;\n", "g.gram:3", "unknown declaration"),
        ("#ABNF 1.0 UTF-8\nroot $r;\n", "g.gram:1", "header"),
        ("#ABNF 1.0 UTF-8;\nroot $r;\n$r = sim <3-1>;\n", "g.gram:3", "maximum"),
        ('<grammar root="r"><rule id="r"><one-of></one-of></rule>', "g.gram:1", "malformed XML"),
        ('<grammar root="r"><rule id="r"><one-of/></rule></grammar>', "g.gram", "empty <one-of>"),
        ("\n# only a comment\n", "g.gram", "no phrase"),
    ],
)
def test_broken_grammars_say_where_and_what(text: str, where: str, what: str) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_grammar(text, "g.gram")
    message = str(caught.value)
    assert message.startswith(where + ":"), message
    assert what in message, message


def test_the_pizza_gram_broken_on_a_known_line() -> None:
    lines = (AUDIO / "pizza.gram").read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "bacon {pizza_bacon}" in line)
    lines[number - 1] = lines[number - 1].replace("{pizza_bacon} |", "{pizza_bacon} | )")
    with pytest.raises(GrammarError, match=rf"^pizza.gram:{number}: "):
        parse_grammar("\n".join(lines), "pizza.gram")
