"""CPQD language models: grammars defined in a session (DEFINE_GRAMMAR), given inline or as URIs in
START_RECOGNITION/INTERPRET_TEXT, the built-in grammars and the SLM (notes 1.3, 1.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ivr.emulators.cpqd_framing import Message, MessageError
from ivr.emulators.grammar import GrammarError
from ivr.emulators.srgs import parse_grammar


@dataclass(frozen=True, slots=True)
class GrammarSource:
    """What a recognition decodes: a grammar (SRGS ABNF/XML or phrases), or None for the free-form SLM."""

    uri: str
    text: str | None


GRAMMAR_TYPES = (
    "application/srgs",
    "application/srgs+xml",
    "application/grammar+xml",
    "application/xml",
    "text/plain",
    "text/xml",
)
URI_LIST = "text/uri-list"
SLM_PREFIX = "builtin:slm/"
BUILTIN_PREFIX = "builtin:grammar/"
_DIGITS = "zero | um | dois | três | quatro | cinco | seis | sete | oito | nove | meia"
# The emulator's own built-in grammars: the real server's catalogue is not in the documents.
BUILTIN_GRAMMARS = {
    "yes_no": "#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $yes_no;\n"
    "$yes_no = sim {sim} | não {nao} | claro {sim} | com certeza {sim} | de jeito nenhum {nao};\n",
    "digits": f"#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $digits;\n$digits = ({_DIGITS})<1->;\n",
}
BUILTIN_GRAMMARS["phone"] = BUILTIN_GRAMMARS["digits"]
BUILTIN_GRAMMARS["number"] = BUILTIN_GRAMMARS["digits"]


class LanguageModelError(Exception):
    """A language model URI or grammar the emulator cannot serve (answered with FAILURE)."""


def media_type(value: str | None) -> str:
    """A Content-Type without its parameters, lower-cased."""
    return (value or "").split(";", 1)[0].strip().lower()


def uri_list(body: bytes) -> list[str]:
    """The URIs of a text/uri-list body."""
    # One URI per line, LF or CRLF, with or without a final line end (notes 1.3).
    lines = body.decode("utf-8", "replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def grammar_text(body: bytes) -> str:
    """A grammar body as text, checked by parsing it; raises MessageError or LanguageModelError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("the grammar is not UTF-8 text") from None
    try:
        parse_grammar(text, "grammar")
    except GrammarError as exc:
        raise LanguageModelError(f"grammar error {exc}") from None
    return text


def resolve(uri: str, defined: Mapping[str, GrammarSource]) -> GrammarSource:
    """A language model URI as the recognizer's input; raises LanguageModelError."""
    if uri.startswith(SLM_PREFIX):
        return GrammarSource(uri, None)
    if uri.startswith(BUILTIN_PREFIX):
        name = uri[len(BUILTIN_PREFIX) :].rsplit("/", 1)[-1]  # builtin:grammar/samples/phone too
        if name not in BUILTIN_GRAMMARS:
            raise LanguageModelError(
                f"no built-in grammar {uri} (have {', '.join(sorted(BUILTIN_GRAMMARS))})"
            )
        return GrammarSource(uri, BUILTIN_GRAMMARS[name])
    grammar_id = uri.removeprefix("session:")
    if grammar_id in defined:
        return defined[grammar_id]
    if uri.split(":", 1)[0] in ("file", "http", "https"):
        raise LanguageModelError(f"the emulator does not fetch grammars ({uri})")
    raise LanguageModelError(f"no grammar {grammar_id} was defined in this session")


def definition(grammar_id: str, message: Message, defined: Mapping[str, GrammarSource]) -> GrammarSource:
    """The grammar a DEFINE_GRAMMAR defines; raises MessageError or LanguageModelError."""
    content_type = media_type(message.header("Content-Type"))
    if content_type == URI_LIST:
        uris = uri_list(message.body)
        if not uris:
            raise LanguageModelError("an empty URI list")
        source = resolve(uris[0], defined)
    elif content_type in ("", *GRAMMAR_TYPES):
        source = GrammarSource(f"session:{grammar_id}", grammar_text(message.body))
    else:
        raise MessageError(f"unsupported content-type {content_type}")
    return GrammarSource(f"session:{grammar_id}", source.text)


def language_model(message: Message, defined: dict[str, GrammarSource]) -> GrammarSource:
    """What a START_RECOGNITION or INTERPRET_TEXT decodes; an inline grammar joins `defined`.

    Raises MessageError or LanguageModelError.
    """
    content_type = media_type(message.header("Content-Type"))
    if not message.body.strip():
        raise MessageError("no language model in the body", message.type)
    if content_type in ("", URI_LIST):
        uris = uri_list(message.body)
        if not uris:
            raise MessageError("an empty URI list", message.type)
        sources = [resolve(uri, defined) for uri in uris]
        # One decoder per recognition here: the first grammar wins over the SLM (notes 1.8 sends both).
        return next((s for s in sources if s.text is not None), sources[0])
    if content_type in GRAMMAR_TYPES:
        grammar_id = message.header("Content-ID") or "inline"
        source = GrammarSource(f"session:{grammar_id}", grammar_text(message.body))
        defined[grammar_id] = source
        return source
    raise MessageError(f"unsupported content-type {content_type}", message.type)
