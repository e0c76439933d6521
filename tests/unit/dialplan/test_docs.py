"""docs/dialplan.md cannot rot: every ```yaml block that is a whole dialplan loads and `ivr check` finds
nothing in it, with its prompt files (and the page's SRGS grammar) present beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.dialplan import load_dialplan
from ivr.dialplan.loader import check_file
from ivr.dialplan.report import check_paths
from ivr.dialplan.schema import VENDORS
from tests.unit.dialplan.test_check import BASE

DOC = Path(__file__).parents[3] / "docs" / "dialplan.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", TEXT, re.MULTILINE | re.DOTALL)
WHOLE = [block for block in BLOCKS if re.search(r"^steps:", block, re.MULTILINE)]
GRAMMAR = re.findall(r"^```xml\n(.*?)^```", TEXT, re.MULTILINE | re.DOTALL)
# A block whose first line is `# name.yaml` is that file, which another example calls as a sub-flow.
BESIDE = {m.group(1): b for b in WHOLE if (m := re.match(r"# ([\w.-]+\.yaml)\n", b))}


def test_the_page_has_an_example_for_each_feature() -> None:
    # A renamed fence must not turn the test below into a test of nothing.
    assert len(WHOLE) >= 11
    features = ["say:", "phrases:", "dtmf:", "emotion:", "age:", "gender:", "timeout:", "retries:",
                "reprompt:", "on_failure:", "hangup:", "goto:", "redact:", "secondary:", "classifiers:",
                "grammar_file:", "audio: g711", "prompts:", "max_speech:", "barge_in:", "{{ last.text }}",
                "set:", "say:", "digits:", "max_digits:", "terminator:", "regex:", "confidence:", "when:",
                "in:", "open:", "closed:", "calendars:", "holidays:", "branch:", "reprompts:", "confirm:",
                "headers:", "webhook:", "on_failure:", "call:", "return:", "variables:",
                "{{ webhook."]  # fmt: skip
    assert [f for f in features if not any(f in block for block in WHOLE)] == []


@pytest.mark.parametrize("block", WHOLE, ids=[re.search(r"^name: (.*)$", b, re.M).group(1) for b in WHOLE])  # type: ignore[union-attr]
def test_every_whole_example_loads_and_checks_clean(tmp_path: Path, block: str) -> None:
    for prompt in set(re.findall(r"[\w.-]+\.wav", block)):
        (tmp_path / prompt).write_bytes(b"")
    for grammar in re.findall(r"grammar_file: ([\w.-]+)", block):
        (tmp_path / grammar).write_text(GRAMMAR[0], encoding="utf-8")
    for name, text in BESIDE.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        for prompt in set(re.findall(r"[\w.-]+\.wav", text)):
            (tmp_path / prompt).write_bytes(b"")
    path = tmp_path / "example.yaml"
    path.write_text(block, encoding="utf-8")
    assert [p.located() for p in check_file(path, VENDORS)] == []
    assert load_dialplan(path).steps


def test_the_check_output_shown_on_the_page_is_what_ivr_check_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = TEXT.split("$ ivr check my_flow.yaml other.yaml\n", 1)[1].split("```", 1)[0]
    for name in ("menu.wav", "agent.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "my_flow.yaml").write_text(
        BASE.replace("goto: agent\n", "goto: agnet\n", 1), encoding="utf-8"
    )
    orphan = "  orphan:\n    play: agent.wav\n    hangup: true\n"
    (tmp_path / "other.yaml").write_text(BASE + orphan, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    report = check_paths([Path("my_flow.yaml"), Path("other.yaml")])
    assert report.lines() == block.splitlines()
