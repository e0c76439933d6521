"""The prompt generator: speaks missing prompts with the real espeak-ng and sox into 8 kHz 16-bit WAVs."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from ivr.dialplan import load_dialplan
from ivr.prompts import main, referenced_prompts
from tests.tools import require_tool


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("espeak-ng")
    require_tool("sox")


FLOW = """\
name: p
start: menu
steps:
  menu:
    play: menu.wav
    routes: [{dtmf: "1", goto: bye}]
    no_input: {reprompt: again.wav, goto: bye}
    no_match: {goto: bye}
  bye:
    play: bye.wav
    hangup: true
prompts:
  menu.wav: 잔액은 1번
  again.wav: 다시 말씀해 주세요
"""


def test_generates_missing_prompts_and_keeps_existing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bye.wav").write_bytes(b"recorded by a person")
    path = tmp_path / "p.yaml"
    path.write_text(FLOW, encoding="utf-8")
    assert referenced_prompts(load_dialplan(path, check_prompts=False)) == [
        "menu.wav",
        "again.wav",
        "bye.wav",
    ]

    assert main([str(path)]) == 0
    for name in ("menu.wav", "again.wav"):
        with wave.open(str(tmp_path / "prompts" / name), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
            assert 0.3 < wav.getnframes() / 8000 < 5
    assert (tmp_path / "bye.wav").read_bytes() == b"recorded by a person"
    assert "menu.wav" in capsys.readouterr().out
    load_dialplan(path)  # every prompt now exists


def test_prompt_without_text_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(FLOW, encoding="utf-8")
    assert main([str(path)]) == 1
    assert "no text for 'bye.wav'" in capsys.readouterr().err


def test_a_sub_flow_speaks_its_own_prompts_from_its_own_texts(tmp_path: Path) -> None:
    caller = FLOW.replace('    routes: [{dtmf: "1", goto: bye}]', '    routes: [{dtmf: "1", goto: sub}]')
    caller = caller.replace("  bye:\n", "  sub:\n    call: sub.yaml\n    goto: bye\n  bye:\n")
    caller += "  bye.wav: 안녕히 가세요\n"
    (tmp_path / "p.yaml").write_text(caller, encoding="utf-8")
    sub = (
        "name: s\nstart: ask\nsteps:\n  ask:\n    play: ask.wav\n    goto: done\n  done:\n    return: true\n"
    )
    (tmp_path / "sub.yaml").write_text(
        sub + "prompts:\n  ask.wav: 생년월일을 눌러 주세요\n", encoding="utf-8"
    )
    assert main([str(tmp_path / "p.yaml")]) == 0
    assert {p.name for p in (tmp_path / "prompts").iterdir()} == {
        "menu.wav",
        "again.wav",
        "bye.wav",
        "ask.wav",
    }
    load_dialplan(tmp_path / "p.yaml")  # the sub-flow's prompt is found where its loader looks
