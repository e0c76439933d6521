"""Loader: the bundled demo loads, and each kind of mistake comes back as the exact `file:line: message`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dialplan import DialplanError, Route, json_schema, load_dialplan, validate_only

DEMO = Path(__file__).parents[3] / "dialplans" / "demo.yaml"

# Line numbers below refer to this file; the cases edit one line (or add lines) at a time.
BASE = """\
name: test
start: menu
steps:
  menu:
    play: menu.wav
    routes:
      - say: [상담원]
        dtmf: "0"
        goto: agent
    no_input: {goto: agent}
    no_match: {goto: agent}
  agent:
    play: agent.wav
    transfer: sip:agents@127.0.0.1:5070
"""

NO_SUCH = ": no step has that name; add it under steps: or use one of agent, menu"

# (what the mistake is, the broken line (or lines) replacing BASE's, expected line, expected message)
BROKEN: list[tuple[str, str, str, int, str]] = [
    ("unknown goto", "        goto: agent\n", "        goto: agnet\n", 9,
     "step 'menu' routes to unknown step 'agnet' (did you mean 'agent'?)"),
    ("unknown fallback goto", "    no_input: {goto: agent}\n", "    no_input: {goto: nobody}\n", 10,
     f"step 'menu' routes to unknown step 'nobody'{NO_SUCH}"),
    ("typo'd step key", "    routes:\n", "    routs:\n", 6,
     "step 'menu': unknown key 'routs' (did you mean 'routes'?)"),
    ("typo'd top key", "steps:\n", "stepz:\n", 3,
     "unknown key 'stepz' (did you mean 'steps'?)"),
    ("typo'd route key", "        goto: agent\n", "        go_to: agent\n", 9,
     "step 'menu' route 1: unknown key 'go_to' (did you mean 'goto'?)"),
    ("bad dtmf", '        dtmf: "0"\n', '        dtmf: "12"\n', 8,
     "step 'menu' route 1 dtmf: '12' is not a DTMF key (one of 0-9, *, #, A-D)"),
    ("unquoted # is a comment", '        dtmf: "0"\n', "        dtmf: #\n", 8,
     'step \'menu\' route 1 dtmf: dtmf is empty; write # and * in quotes: dtmf: "#"'),
    ("missing prompt file", "    play: agent.wav\n", "    play: agnt.wav\n", 13,
     "step 'agent' plays 'agnt.wav', which is neither beside the dialplan nor in prompts/: record it there, "
     "fix the name, or give its text in prompts: to generate it"),
    ("YAML syntax error", "        goto: agent\n", "        goto: agent: now\n", 9,
     "YAML syntax error: mapping values are not allowed here"),
    ("YAML tab", "    play: menu.wav\n", "\tplay: menu.wav\n", 5,
     "YAML syntax error: found character '\\t' that cannot start any token"),
    ("missing start", "start: menu\n", "", 1,
     "missing 'start' (the first step of every call)"),
    ("unknown start", "start: menu\n", "start: mneu\n", 2,
     "start step 'mneu' does not exist (did you mean 'menu'?)"),
    ("bad transfer URI", "    transfer: sip:agents@127.0.0.1:5070\n", "    transfer: agents@127.0.0.1\n", 14,
     "step 'agent' transfer: 'agents@127.0.0.1' is not a sip:, sips: or tel: URI"),
    ("two things after the prompt", "    transfer: sip:agents@127.0.0.1:5070\n",
     "    transfer: sip:agents@127.0.0.1:5070\n    hangup: true\n", 15,
     "step 'agent' has both 'transfer' and 'hangup': a step does one of listen, goto, transfer, hangup,"
     " branch, webhook, call or return"),
    ("nothing after the prompt", "    transfer: sip:agents@127.0.0.1:5070\n", "", 12,
     "step 'agent' does nothing after its prompt: give it routes, goto, transfer, hangup, branch, webhook,"
     " call or return"),
    ("no no_input", "    no_input: {goto: agent}\n", "", 4,
     "step 'menu' listens but has no 'no_input' (what to do when the caller is silent)"),
    ("silent caller loops", "    no_input: {goto: agent}\n", "    no_input: {goto: menu}\n", 10,
     "a silent caller would loop forever: menu -> menu (no_input must end in a transfer or hangup)"),
    ("duplicate step", "  agent:\n", "  menu:\n", 12,
     "duplicate key 'menu' (first at line 4): keep one and merge or rename the other"),
    ("unknown emotion", '        dtmf: "0"\n', '        dtmf: "0"\n        emotion: [irritada]\n', 9,
     "step 'menu' route 1 emotion labels: unknown emotion 'irritada' (did you mean 'irritado'?)"),
    ("unknown emotion group", '        dtmf: "0"\n',
     '        dtmf: "0"\n        emotion: {group: negativo}\n', 9,
     "step 'menu' route 1 emotion group: unknown emotion group 'negativo' "
     "(did you mean 'negativo_ativado'?)"),
    ("empty emotion condition", '        dtmf: "0"\n', '        dtmf: "0"\n        emotion: {min: 0.5}\n', 9,
     "step 'menu' route 1 emotion: an emotion condition needs labels or a group"),
    ("emotion probability above 1", '        dtmf: "0"\n',
     '        dtmf: "0"\n        emotion: {labels: [irritado], min: 60}\n', 9,
     "step 'menu' route 1 emotion min: input should be less than or equal to 1 (got '60')"),
    ("age range upside down", '        dtmf: "0"\n',
     '        dtmf: "0"\n        age: {min: 60, max: 18}\n', 9,
     "step 'menu' route 1 age: age min 60 is above max 18"),
    ("negative timeout", "    play: menu.wav\n", "    play: menu.wav\n    listen: {timeout: -1}\n", 6,
     "step 'menu' listen timeout: input should be greater than 0 (got '-1')"),
    ("vendor typo", "name: test\n", "name: test\nasr: {vendor: mediazn}\n", 2,
     "asr vendor: 'mediazn' is not one of mediazen, cpqd, amivoice (did you mean 'mediazen'?)"),
    ("two default routes", '      - say: [상담원]\n        dtmf: "0"\n        goto: agent\n',
     "      - goto: agent\n      - default: true\n        goto: menu\n", 8,
     "step 'menu' route 2 is a second default (route 1 is one): give it a condition or remove it"),
    ("unknown key unlike any", "    play: agent.wav\n", "    play: agent.wav\n    colour: red\n", 14,
     "step 'agent': unknown key 'colour' "
     "(known: set, play, say, listen, routes, no_input, no_match, transfer, on_failure, hangup, goto, branch,"
     " webhook, call, return, redact)"),
    ("step is not a mapping", "  agent:\n    play: agent.wav\n    transfer: sip:agents@127.0.0.1:5070\n",
     "  agent: agent.wav\n", 12, "step 'agent': input should be a mapping of keys (got 'agent.wav')"),
    ("not a mapping", BASE, "- just\n- a list\n", 1,
     "a dialplan is a mapping of keys: name, asr, start, steps, prompts"),
]  # fmt: skip


def write(tmp_path: Path, text: str, prompts: tuple[str, ...] = ("menu.wav", "agent.wav")) -> Path:
    for name in prompts:
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_loads_with_its_prompts() -> None:
    dialplan = load_dialplan(DEMO)
    assert dialplan.start == "greeting"
    assert set(dialplan.steps) == {"greeting", "agent", "busy", "balance", "lost_card", "lost_card_done"}
    transfer = dialplan.steps["agent"].transfer
    assert transfer is not None and transfer.to == "sip:agents@127.0.0.1:5070"
    assert dialplan.prompt_path("greeting.wav") == DEMO.parent / "prompts" / "greeting.wav"
    assert dialplan.warnings == ()
    assert validate_only(DEMO) == []


def test_phrases_are_the_vocabulary_in_order_without_duplicates() -> None:
    phrases = load_dialplan(DEMO).phrases()
    assert phrases[:4] == ["상담원 연결해 주세요", "상담사 바꿔 주세요", "상담원", "상담사"]
    assert "잔액" in phrases and "분실" in phrases
    assert len(phrases) == len(set(phrases))


def test_json_schema_describes_the_keys() -> None:
    schema = json_schema()
    assert set(schema["required"]) == {"name", "start", "steps"}
    assert "Step" in schema["$defs"] and "routes" in schema["$defs"]["Step"]["properties"]


def test_base_is_valid(tmp_path: Path) -> None:
    dialplan = load_dialplan(write(tmp_path, BASE))
    assert dialplan.steps["menu"].routes[0] == Route(say=["상담원"], dtmf="0", goto="agent")


@pytest.mark.parametrize(
    ("old", "new", "line", "message"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_dialplan_reports_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(DialplanError) as caught:
        load_dialplan(path)
    assert str(caught.value) == f"{path}:{line}: {message}"
    assert (caught.value.path, caught.value.line, caught.value.message) == (str(path), line, message)


def test_every_error_is_reported_one_per_line(tmp_path: Path) -> None:
    text = BASE.replace("        goto: agent\n", "        goto: agnet\n").replace(
        "    no_match: {goto: agent}\n", "    no_match: {goto: agant}\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(DialplanError) as caught:
        load_dialplan(path)
    assert str(caught.value).splitlines() == [
        f"{path}:9: step 'menu' routes to unknown step 'agnet' (did you mean 'agent'?)",
        f"{path}:11: step 'menu' routes to unknown step 'agant' (did you mean 'agent'?)",
    ]
    assert isinstance(caught.value, ValueError)


def test_unreachable_step_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "  orphan:\n    play: agent.wav\n    hangup: true\n")
    dialplan = load_dialplan(path)
    assert "orphan" in dialplan.steps
    expected = (
        f"{path}:15: warning: step 'orphan' is unreachable from 'menu' "
        "(no route, goto or on_failure leads there: route to it or delete it)"
    )
    assert dialplan.warnings == (expected,)
    assert validate_only(path) == [expected]


def test_prompt_found_in_prompts_dir_beside_the_dialplan(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    path = write(tmp_path, BASE, prompts=("agent.wav", "prompts/menu.wav"))
    assert load_dialplan(path).prompt_path("menu.wav") == tmp_path / "prompts" / "menu.wav"


def test_missing_prompt_with_text_hints_at_the_generator(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "prompts:\n  menu.wav: 메뉴입니다\n", prompts=("agent.wav",))
    with pytest.raises(DialplanError) as caught:
        load_dialplan(path)
    assert caught.value.line == 5
    assert f"generate it with `python -m ivr.prompts {path}`" in caught.value.message
    assert (
        load_dialplan(path, check_prompts=False).prompt_path("menu.wav") == tmp_path / "prompts" / "menu.wav"
    )


def test_yaml_words_stay_words_and_numbers_are_converted(tmp_path: Path) -> None:
    # YAML 1.1 would read `no` as false and `0` as an integer; staff mean the word and the key.
    text = BASE.replace("say: [상담원]", "say: [yes, no, on]").replace('dtmf: "0"', "dtmf: 0")
    text = text.replace(
        "    play: menu.wav\n", "    play: menu.wav\n    listen: {timeout: 3, barge_in: no}\n"
    )
    step = load_dialplan(write(tmp_path, text)).steps["menu"]
    assert step.routes[0].say == ["yes", "no", "on"]
    assert step.routes[0].dtmf == "0"
    assert step.settings.timeout == 3.0 and step.settings.barge_in is False


def test_single_keyword_may_be_written_without_brackets(tmp_path: Path) -> None:
    text = BASE.replace("say: [상담원]", "say: 상담원")
    assert load_dialplan(write(tmp_path, text)).steps["menu"].routes[0].say == ["상담원"]


def test_unreadable_file_is_a_dialplan_error(tmp_path: Path) -> None:
    with pytest.raises(DialplanError, match="cannot read the file"):
        load_dialplan(tmp_path / "absent.yaml")


# What the step's vendor cannot do is refused at load with file:line, not discovered during a call.
VENDOR_LIMITS = [
    ("language", "    routes:\n", "    listen: {language: pt-BR}\n    routes:\n", 6,
     "step 'menu': mediazen does not recognize language 'pt-BR' (it offers ko, en, ja)"),
    ("audio", "    routes:\n", "    listen: {audio: g711}\n    routes:\n", 6,
     "step 'menu': mediazen cannot take pcmu audio (it takes pcm16)"),
    ("option", "    routes:\n", "    listen:\n      options: {speed: 2}\n    routes:\n", 7,
     "step 'menu': unknown Mediazen option speed (known: chunk_ms)"),
    ("vendor language", "    routes:\n", "    listen: {vendor: cpqd, language: ja}\n    routes:\n", 6,
     "step 'menu': cpqd does not recognize language 'ja' (it offers pt-BR, ko)"),
    ("emotion on a vendor without it", '        dtmf: "0"\n',
     '        dtmf: "0"\n        emotion: irritado\n', 7,
     "step 'menu': mediazen does not report the caller's emotion (it reports: none)"),
    ("classifier listed on a vendor without it", "    routes:\n",
     "    listen:\n      classifiers: [age]\n    routes:\n", 7,
     "step 'menu': mediazen does not report the caller's age (it reports: none)"),
    ("default language", "start: menu\n", "asr: {language: zh}\nstart: menu\n", 2,
     "step 'menu': mediazen does not recognize language 'zh' (it offers ko, en, ja)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "old", "new", "line", "message"), VENDOR_LIMITS)
def test_what_the_vendor_cannot_do_is_refused_at_load(
    tmp_path: Path, what: str, old: str, new: str, line: int, message: str
) -> None:
    path = write(tmp_path, BASE.replace(old, new, 1))
    assert validate_only(path) == [f"{path}:{line}: {message}"]


def test_japanese_on_mediazen_is_accepted_as_jp(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("    routes:\n", "    listen: {language: ja}\n    routes:\n", 1))
    assert validate_only(path) == []


def test_a_grammar_file_is_read_at_load_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    listen = "    listen: {vendor: cpqd, language: pt-BR, grammar_file: menu.gram}\n"
    path = write(tmp_path, BASE.replace("    routes:\n", listen + "    routes:\n", 1))
    assert validate_only(path) == [
        f"{path}:6: step 'menu' grammar 'menu.gram' cannot be read: No such file or directory"
    ]
    (tmp_path / "menu.gram").write_text("#ABNF 1.0;\nroot $a;\n$a = 상담원;\n", encoding="utf-8")
    assert load_dialplan(path).grammar_text("menu.gram") == "#ABNF 1.0;\nroot $a;\n$a = 상담원;\n"
    # Mediazen (the asr default here) takes no grammar: refused at load rather than ignored during calls.
    path.write_text(path.read_text().replace("vendor: cpqd, language: pt-BR, ", ""), encoding="utf-8")
    [refused] = validate_only(path)
    assert refused.startswith(f"{path}:6: step 'menu': Mediazen recognizes free speech and takes no grammar")
    assert "set listen.vendor: cpqd" in refused
