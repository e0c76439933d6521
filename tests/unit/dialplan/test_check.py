"""`ivr check`: each check as the exact `file:line:col: severity: message`, folders, exit codes and --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.dialplan.report import check_paths, find_dialplans
from tests.unit.dialplan.test_loader import BASE

ROOT = Path(__file__).parents[3]

# Line and column numbers below refer to test_loader's BASE; each case replaces one fragment of it.

# (what is checked, fragment of BASE, its replacement, expected `line:col: severity: message`)
CASES: list[tuple[str, str, str, str]] = [
    ("goto typo gets did you mean", "        goto: agent\n", "        goto: agnet\n",
     "9:9: error: step 'menu' routes to unknown step 'agnet' (did you mean 'agent'?)"),
    ("no_input target unlike any step", "{goto: agent}\n    no_match", "{goto: nobody}\n    no_match",
     "10:16: error: step 'menu' routes to unknown step 'nobody': no step has that name; add it under "
     "steps: or use one of agent, menu"),
    ("no_match target typo", "no_match: {goto: agent}", "no_match: {goto: mneu}",
     "11:16: error: step 'menu' routes to unknown step 'mneu' (did you mean 'menu'?)"),
    ("start typo", "start: menu\n", "start: agnt\n",
     "2:1: error: start step 'agnt' does not exist (did you mean 'agent'?)"),
    ("on_failure typo", "    transfer: sip:agents@127.0.0.1:5070\n",
     "    transfer: sip:agents@127.0.0.1:5070\n    on_failure: menux\n",
     "15:5: error: step 'agent' routes to unknown step 'menux' (did you mean 'menu'?)"),
    ("unreachable step", "  agent:\n", "  orphan:\n    play: agent.wav\n    hangup: true\n  agent:\n",
     "12:3: warning: step 'orphan' is unreachable from 'menu' (no route, goto or on_failure leads there: "
     "route to it or delete it)"),
    ("silent loop", "no_input: {goto: agent}", "no_input: {goto: menu}",
     "10:16: error: a silent caller would loop forever: menu -> menu (no_input must end in a transfer or "
     "hangup)"),
    ("missing prompt file", "    play: agent.wav\n", "    play: agnt.wav\n",
     "13:5: error: step 'agent' plays 'agnt.wav', which is neither beside the dialplan nor in prompts/: "
     "record it there, fix the name, or give its text in prompts: to generate it"),
    ("missing prompt with its text", "    play: agent.wav\n",
     "    play: hello.wav\n", "13:5: warning: step 'agent' plays 'hello.wav', which is neither beside the "
     "dialplan nor in prompts/ (its text is in prompts:, generate it with `python -m ivr.prompts {path}`)"),
    ("unknown vendor option", "    routes:\n", "    listen: {options: {colour: red}}\n    routes:\n",
     "6:14: error: step 'menu': unknown Mediazen option colour (known: chunk_ms)"),
    ("language the vendor lacks", "name: test\n", "name: test\nasr: {vendor: mediazen, language: pt-BR}\n",
     "2:25: error: step 'menu': mediazen does not recognize language 'pt-BR' (it offers ko, en, ja)"),
    ("unknown key, with column", "    routes:\n", "    rotues:\n",
     "6:5: error: step 'menu': unknown key 'rotues' (did you mean 'routes'?)"),
    ("bad value deep in a flow mapping", "no_match: {goto: agent}", "no_match: {goto: agent, retries: 99}",
     "11:29: error: step 'menu' no_match retries: input should be less than or equal to 10 (got '99')"),
    ("YAML syntax error column", "        goto: agent\n", "        goto: agent: now\n",
     "9:20: error: YAML syntax error: mapping values are not allowed here"),
    ("dtmf used twice", "        goto: agent\n",
     "        goto: agent\n      - dtmf: \"0\"\n        goto: menu\n",
     "10:9: error: step 'menu' route 2 reuses dtmf '0' of route 1, which always wins: give it another key"),
    ("no_input on a step that does not listen", "    transfer: sip:agents@127.0.0.1:5070\n",
     "    transfer: sip:agents@127.0.0.1:5070\n    no_input: {goto: menu}\n",
     "15:5: error: step 'agent' has 'no_input' but does not listen: give it routes or remove it"),
    ("duplicate key", "  agent:\n", "  menu:\n",
     "12:3: error: duplicate key 'menu' (first at line 4): keep one and merge or rename the other"),
    ("unknown variable gets did you mean", "    play: agent.wav\n", '    say: "{{ lats.text }}"\n',
     "13:5: error: step 'agent': unknown variable 'lats.text' (did you mean 'last.text'?); set it with set: "
     "or use a known one"),
    ("template with a filter", "    play: agent.wav\n", '    say: "{{ last.text | upper }}"\n',
     "13:5: error: step 'agent': '{{{{ last.text | upper }}}}' is not a variable: write {{{{ name }}}} or "
     "{{{{ name.key }}}} (no expressions or filters)"),
    ("bad regex", "      - say: [상담원]\n", "      - regex: '상담원('\n",
     "7:9: error: step 'menu' route 1: '상담원(' is not a valid regex: missing ), unterminated subpattern at "
     "position 3"),
    ("bad time zone", "start: menu\n",
     'start: menu\ncalendars:\n  office: {tz: Asia/Seol, hours: {mon-fri: "09:00-18:00"}}\n',
     "4:12: error: calendars office tz: unknown time zone 'Asia/Seol' (did you mean 'Asia/Seoul'?)"),
    ("unknown calendar", "      - say: [상담원]\n", "      - say: [상담원]\n        open: ofice\n",
     "8:9: error: step 'menu' route 1: unknown calendar 'ofice': define it under calendars: at the top (tz, "
     "hours, holidays)"),
    ("missing sub-flow file", "    transfer: sip:agents@127.0.0.1:5070\n",
     "    call: verify.yaml\n    goto: menu\n",
     "14:5: error: step 'agent' calls 'verify.yaml', which is not beside the dialplan: create it there or "
     "fix the name"),
    ("webhook URL", "    transfer: sip:agents@127.0.0.1:5070\n",
     "    webhook: {url: ftp://crm/x, goto: menu, on_failure: menu}\n",
     "14:15: error: step 'agent' webhook url: 'ftp://crm/x' is not an http:// or https:// URL"),
    ("confirm in a language without yes/no words", "    routes:\n      - say: [상담원]\n",
     "    listen: {vendor: amivoice, language: zh}\n    routes:\n      - say: [상담원]\n"
     "        confirm: {below: 0.5, play: agent.wav}\n",
     "9:9: error: step 'menu' route 1 confirms, but there are no built-in yes and no words for language "
     "'zh': list them with yes: [...] and no: [...]"),
    ("header name", "    transfer: sip:agents@127.0.0.1:5070\n",
     '    transfer: {to: "sip:a@b", headers: {"X Intent": "{{ last.text }}"}}\n',
     "14:31: error: step 'agent' transfer headers: 'X Intent' is not a SIP header name: letters, digits and "
     "- . ! % * _ + ` ' ~ only, e.g. X-Caller-Intent"),
    ("digits without collection", '        dtmf: "0"\n', "        digits: '\\d{4}'\n",
     "8:9: error: step 'menu' route 1 matches several keys, but the step routes on the first key: collect "
     "them with listen: {{dtmf: {{max_digits: N}}}}"),
    ("setting a call variable", "    play: agent.wav\n", "    play: agent.wav\n    set: {caller: x}\n",
     "14:5: error: step 'agent' set: 'caller' is the call's own variable and cannot be set: pick another "
     "name"),
    ("branch without a default", "    transfer: sip:agents@127.0.0.1:5070\n",
     '    branch:\n      - when: {var: caller, equals: "1"}\n        goto: menu\n',
     "14:5: error: step 'agent' branch has no default: add a last route with only goto, for when no "
     "condition holds"),
    ("play and say", "    play: agent.wav\n", "    play: agent.wav\n    say: hello\n",
     "14:5: error: step 'agent' has both play and say: a step has one prompt, keep one"),
]  # fmt: skip


def write(folder: Path, text: str, name: str = "plan.yaml") -> Path:
    for prompt in ("menu.wav", "agent.wav"):
        (folder / prompt).write_bytes(b"")
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_check_points_at_file_line_and_column(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    if "hello.wav" in new:
        text += "prompts:\n  hello.wav: 안녕하세요\n"
    path = write(tmp_path, text)
    report = check_paths([path])
    assert [p.located() for p in report.problems] == [f"{path}:{expected.format(path=path)}"]


def test_a_vendor_that_is_not_configured(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("name: test\n", "name: test\nasr: {vendor: cpqd, language: pt-BR}\n"))
    (problem,) = check_paths([path], configured_vendors={"mediazen", "amivoice"}).problems
    assert problem.located() == (
        f"{path}:2:7: error: recognizer vendor 'cpqd' is not configured: set asr_urls: {{cpqd: wss://...}} in"
        " the settings (cpqd: embedded for the local emulator) or IVR_CPQD_URL"
    )
    assert problem.code == "vendor-not-configured"
    assert check_paths([path], configured_vendors={"cpqd"}).problems == ()


def test_the_default_vendor_unconfigured_points_at_the_first_listening_step(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    (problem,) = check_paths([path], configured_vendors=set()).problems
    assert (problem.line, problem.column) == (4, 3)
    assert "'mediazen' is not configured" in problem.message


def test_a_secondary_vendor_unconfigured_points_at_it(tmp_path: Path) -> None:
    secondary = "    listen: {secondary: {vendor: cpqd, language: ko}}\n    routes:\n"
    path = write(tmp_path, BASE.replace("    routes:\n", secondary, 1))
    problems = check_paths([path], configured_vendors={"mediazen"}).problems
    assert [(p.line, p.column, p.code) for p in problems][-1:] == [(6, 26, "vendor-not-configured")]


def test_a_folder_checks_its_dialplans_and_skips_other_yaml(tmp_path: Path) -> None:
    good = write(tmp_path, BASE, "a.yaml")
    (tmp_path / "sub").mkdir()
    bad = write(tmp_path / "sub", BASE.replace("goto: agent\n", "goto: agnet\n", 1), "b.yml")
    (tmp_path / "settings.yaml").write_text("sip_port: 5060\n", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    write(tmp_path / ".hidden", "not: [valid\n", "c.yaml")
    files, skipped = find_dialplans([tmp_path])
    assert files == [good, bad]
    assert [(s.path, s.reason) for s in skipped] == [
        (str(tmp_path / "settings.yaml"), "not a dialplan (no top-level steps:)")
    ]
    report = check_paths([tmp_path])
    assert (report.errors, report.warnings, report.ok) == (1, 0, False)
    assert report.lines(verbose=True) == [
        f"{tmp_path / 'settings.yaml'}: skipped: not a dialplan (no top-level steps:)",
        f"{good}: ok",
        f"{bad}:9:9: error: step 'menu' routes to unknown step 'agnet' (did you mean 'agent'?)",
        "2 dialplans checked: 1 error, 0 warnings (1 YAML file skipped)",
    ]


def test_a_file_named_explicitly_is_checked_even_without_steps(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("steps:", "stpes:"))
    report = check_paths([path])
    assert report.checked == (str(path),) and not report.ok


def ivr_check(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    environ["PYTHONPATH"] = str(ROOT)  # this checkout's ivr, whichever venv runs the tests
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", "check", *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_exit_status_is_0_for_warnings_1_for_errors_2_for_usage(tmp_path: Path) -> None:
    write(tmp_path, BASE + "  orphan:\n    play: agent.wav\n    hangup: true\n", "warned.yaml")
    warned = ivr_check("warned.yaml", cwd=tmp_path)
    assert (warned.returncode, warned.stdout.splitlines()[-1]) == (
        0,
        "1 dialplan checked: 0 errors, 1 warning",
    )
    assert warned.stdout.startswith("warned.yaml:15:3: warning: step 'orphan' is unreachable")
    write(tmp_path, BASE.replace("start: menu", "start: mneu"), "broken.yaml")
    broken = ivr_check(".", cwd=tmp_path)
    assert broken.returncode == 1, broken
    assert "broken.yaml:2:1: error: start step 'mneu' does not exist (did you mean 'menu'?)" in broken.stdout
    absent = ivr_check("nowhere.yaml", cwd=tmp_path)
    assert (absent.returncode, absent.stdout) == (2, "")
    assert absent.stderr.strip() == "ivr check: no such file or folder: nowhere.yaml"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "settings.yaml").write_text("sip_port: 5060\n", encoding="utf-8")
    empty = ivr_check("empty", cwd=tmp_path)
    assert (empty.returncode, empty.stderr.strip()) == (
        2,
        "ivr check: no dialplan (a YAML file with steps:) in empty",
    )
    unreadable = ivr_check("--config", "missing.yaml", "warned.yaml", cwd=tmp_path)
    assert unreadable.returncode == 2 and unreadable.stderr.startswith("ivr check: settings missing.yaml: ")


def test_cli_json_lists_every_problem_and_a_summary(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("goto: agent\n", "goto: agnet\n", 1), "plan.yaml")
    settings = tmp_path / "settings.yaml"
    settings.write_text("asr_urls: {cpqd: embedded}\n", encoding="utf-8")
    done = ivr_check("--json", "--config", str(settings), "plan.yaml", cwd=tmp_path)
    assert done.returncode == 1, done
    document = json.loads(done.stdout)
    assert document["problems"] == [
        {
            "file": "plan.yaml",
            "line": 4,
            "column": 3,
            "severity": "error",
            "message": "recognizer vendor 'mediazen' is not configured: set asr_urls: {mediazen: wss://...}"
            " in the settings (mediazen: embedded for the local emulator) or IVR_MEDIAZEN_URL",
            "code": "vendor-not-configured",
        },
        {
            "file": "plan.yaml",
            "line": 9,
            "column": 9,
            "severity": "error",
            "message": "step 'menu' routes to unknown step 'agnet' (did you mean 'agent'?)",
            "code": "unknown-step",
        },
    ]
    assert document["summary"] == {"files": 1, "errors": 2, "warnings": 0, "skipped": 0, "ok": False}
    # The environment configures a vendor the settings file does not.
    done = ivr_check(
        "--json", "--config", str(settings), "plan.yaml", cwd=tmp_path, env={"IVR_MEDIAZEN_URL": "ws://x"}
    )
    assert [p["code"] for p in json.loads(done.stdout)["problems"]] == ["unknown-step"]


def test_cli_checks_the_bundled_dialplans_clean() -> None:
    done = ivr_check("dialplans", cwd=ROOT)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        "dialplans/banco.yaml: ok",
        "dialplans/demo.yaml: ok",
        "dialplans/takuhai.yaml: ok",
        "3 dialplans checked: 0 errors, 0 warnings",
    ]


def test_a_sub_flows_problems_come_with_its_caller_once(tmp_path: Path) -> None:
    caller = BASE.replace(
        "    transfer: sip:agents@127.0.0.1:5070\n", "    call: verify.yaml\n    goto: menu\n"
    )
    main = write(tmp_path, caller, "main.yaml")
    write(
        tmp_path, "name: verify\nstart: ask\nsteps:\n  ask:\n    say: hi\n    return: ture\n", "verify.yaml"
    )
    expected = (
        f"{tmp_path / 'verify.yaml'}:6:5: error: step 'ask' return: input should be a valid boolean, unable"
        " to interpret input (got 'ture')"
    )
    assert check_paths([main]).lines()[:2] == [
        f"{main}: not ok: it calls {tmp_path / 'verify.yaml'}, which has errors (below)",
        expected,
    ]
    both = check_paths([tmp_path])  # the sub-flow is checked on its own too: reported once
    assert [p.located() for p in both.problems] == [expected]
