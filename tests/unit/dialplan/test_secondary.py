"""A listen step's secondary recognizer: checked at load like the primary (with file:line), counted among the
dialplan's vendors and languages (so the embedded emulators start for it), and carried in the engine's Listen
with the same recognition id."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dialplan import DialplanError, load_dialplan
from ivr.dialplan.engine import DialplanEngine, Listen

PLAN = """\
name: test
asr: {vendor: mediazen, language: ko}
start: menu
steps:
  menu:
    play: menu.wav
    listen:
      secondary: @SECONDARY@
    routes:
      - say: [상담원]
        goto: agent
    no_input: {goto: agent}
    no_match: {goto: agent}
  agent:
    play: agent.wav
    transfer: sip:agents@127.0.0.1:5070
"""


def write(tmp_path: Path, secondary: str) -> Path:
    for name in ("menu.wav", "agent.wav"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("@SECONDARY@", secondary), encoding="utf-8")
    return path


def test_a_secondary_is_among_the_vendors_and_languages(tmp_path: Path) -> None:
    plan = load_dialplan(write(tmp_path, "{vendor: cpqd, language: pt-BR, options: {chunk_ms: 100}}"))
    assert plan.vendors() == {"mediazen", "cpqd"}
    assert plan.languages("cpqd") == ["pt-BR"] and plan.languages("mediazen") == ["ko"]


def test_the_engine_listens_with_the_secondary_under_the_same_id(tmp_path: Path) -> None:
    plan = load_dialplan(write(tmp_path, "{vendor: amivoice}"))
    actions = DialplanEngine(plan).start(0.0)
    [listen] = [a for a in actions if isinstance(a, Listen)]
    [(vendor, request)] = listen.secondaries
    assert vendor == "amivoice" and listen.vendor == "mediazen"
    assert request.id == listen.request.id and request.language == "ko"  # the step's language
    assert request.audio_format is listen.request.audio_format


@pytest.mark.parametrize(
    ("secondary", "message"),
    [
        ("{vendor: mediazen, language: pt-BR}", "secondary: mediazen does not recognize language 'pt-BR'"),
        ("{vendor: amivoice, options: {colour: red}}", "secondary: unknown AmiVoice option colour"),
        ("{vendor: nuance}", "vendor"),
    ],
)
def test_a_secondary_the_vendor_cannot_serve_is_refused_at_its_line(
    tmp_path: Path, secondary: str, message: str
) -> None:
    with pytest.raises(DialplanError) as caught:
        load_dialplan(write(tmp_path, secondary))
    text = str(caught.value)
    assert message in text and "plan.yaml:8" in text, text
