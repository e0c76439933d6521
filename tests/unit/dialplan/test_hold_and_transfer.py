"""Hold pauses the menu; a failed transfer takes on_failure instead of hanging up on the caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dialplan import load_dialplan, validate_only
from ivr.dialplan.engine import (
    Action,
    Cancel,
    DialplanEngine,
    Digit,
    Hangup,
    Held,
    Listen,
    Play,
    PromptFinished,
    Resumed,
    Routed,
    Transfer,
    TransferEnded,
)

FLOW = """\
name: hold test
start: menu
steps:
  menu:
    play: menu.wav
    listen: {timeout: 4}
    routes:
      - {dtmf: "0", goto: agent}
    no_input: {goto: agent}
    no_match: {goto: agent}
  agent:
    play: agent.wav
    transfer: sip:agents@127.0.0.1:5070
    on_failure: sorry
  sorry:
    play: sorry.wav
    goto: agent
"""


@pytest.fixture
def engine(tmp_path: Path) -> DialplanEngine:
    for name in ("menu.wav", "agent.wav", "sorry.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "flow.yaml").write_text(FLOW, encoding="utf-8")
    return DialplanEngine(load_dialplan(tmp_path / "flow.yaml"))


def of(actions: list[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def test_hold_stops_the_menu_and_resume_replays_the_step(engine: DialplanEngine) -> None:
    actions = engine.start(0.0)
    [play] = of(actions, Play)
    [listen] = of(actions, Listen)
    held = engine.handle(Held(), 1.0)
    assert set(held) == {Cancel(play.id), Cancel(listen.id)} and engine.next_deadline is None
    # While held nothing acts: not a digit, not the (stale) end of the cut prompt, not time.
    assert engine.handle(Digit("0"), 2.0) == []
    assert engine.handle(PromptFinished(play.id), 2.0) == []
    assert engine.tick(100.0) == []
    assert engine.handle(Held(), 3.0) == []  # a second hold changes nothing
    resumed = engine.handle(Resumed(), 200.0)
    [routed] = of(resumed, Routed)
    assert (routed.step, routed.via) == ("menu", "resumed")
    assert len(of(resumed, Play)) == 1 and len(of(resumed, Listen)) == 1
    assert engine.handle(Resumed(), 201.0) == []  # not held: nothing to resume


def transfer_of(engine: DialplanEngine) -> Transfer:
    engine.start(0.0)
    actions = engine.handle(Digit("0"), 1.0)
    [play] = of(actions, Play)
    [transfer] = of(engine.handle(PromptFinished(play.id), 2.0), Transfer)
    assert isinstance(transfer, Transfer)
    return transfer


def test_a_held_call_keeps_its_transfer_going(engine: DialplanEngine) -> None:
    transfer = transfer_of(engine)
    assert engine.handle(Held(), 3.0) == []  # linphone holds the call when it gets the REFER
    assert engine.handle(TransferEnded(transfer.id, 200), 4.0) == [Hangup(transfer.id + 1, "transferred")]


def test_a_failed_transfer_takes_on_failure_once_then_ends(engine: DialplanEngine) -> None:
    transfer = transfer_of(engine)
    actions = engine.handle(TransferEnded(transfer.id, 603), 3.0)
    [routed] = of(actions, Routed)
    assert (routed.step, routed.via) == ("sorry", "transfer_failed:603")
    [sorry] = of(actions, Play)
    again = engine.handle(PromptFinished(sorry.id), 4.0)
    [agent_prompt] = of(again, Play)
    [second] = of(engine.handle(PromptFinished(agent_prompt.id), 5.0), Transfer)
    assert isinstance(second, Transfer)
    [hangup] = engine.handle(TransferEnded(second.id, 408), 40.0)
    assert isinstance(hangup, Hangup) and hangup.cause == "transfer-failed-408"


def test_on_failure_needs_a_transfer(tmp_path: Path) -> None:
    for name in ("menu.wav", "agent.wav", "sorry.wav"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "flow.yaml"
    path.write_text(
        FLOW.replace("    goto: agent\n", "    goto: agent\n    on_failure: menu\n"), encoding="utf-8"
    )
    [problem] = validate_only(path)
    expected = "step 'sorry' has 'on_failure' but does not transfer: add transfer: or remove it"
    assert problem.endswith(expected), problem
