"""Engine: scripted conversations against the demo flow and small flows, plus random event sequences.

The `Caller` below plays the call's part: it answers the engine's actions with outcome events that echo
their ids, and moves time on to the engine's deadlines, as `ivr/call.py` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ivr.asr.base import AudioFormat, ResultStatus
from ivr.dialplan import (
    Action,
    Cancel,
    Dialplan,
    DialplanEngine,
    Digit,
    Hangup,
    Listen,
    NotRecognized,
    Play,
    PromptFinished,
    Recognized,
    Routed,
    SpeechEnded,
    SpeechStarted,
    StartInputTimers,
    Transfer,
    TransferEnded,
    load_dialplan,
)

DEMO = Path(__file__).parents[3] / "dialplans" / "demo.yaml"
PROMPTS = DEMO.parent / "prompts"
AGENT = "sip:agents@127.0.0.1:5070"


class Caller:
    """Feeds the engine as a call would, remembering the latest prompt and recognition ids."""

    def __init__(self, dialplan: Dialplan, **options: object) -> None:
        self.engine = DialplanEngine(dialplan, **options)  # type: ignore[arg-type]
        self.now = 100.0
        self.play: Play | None = None
        self.listen: Listen | None = None
        self.log: list[Action] = []

    def _seen(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Play):
                self.play = action
            elif isinstance(action, Listen):
                self.listen = action
        self.log += actions
        return actions

    def start(self) -> list[Action]:
        return self._seen(self.engine.start(self.now))

    def send(self, event: object) -> list[Action]:
        return self._seen(self.engine.handle(event, self.now))  # type: ignore[arg-type]

    def prompt_done(self) -> list[Action]:
        assert self.play is not None
        return self.send(PromptFinished(self.play.id))

    def heard(self, text: str, confidence: float = 0.9) -> list[Action]:
        assert self.listen is not None
        return self.send(Recognized(self.listen.id, text, confidence))

    def wait(self, seconds: float) -> list[Action]:
        self.now += seconds
        return self._seen(self.engine.tick(self.now))

    def silence(self) -> list[Action]:
        """Wait until the engine's deadline, whatever it is."""
        deadline = self.engine.next_deadline
        assert deadline is not None, "the engine waits for nothing: dead air"
        self.now = deadline
        return self._seen(self.engine.tick(self.now))


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def routed(actions: list[Action]) -> tuple[str, str] | None:
    r = next((a for a in actions if isinstance(a, Routed)), None)
    return (r.step, r.via) if r else None


@pytest.fixture(scope="module")
def demo() -> Dialplan:
    return load_dialplan(DEMO)


def started(demo: Dialplan) -> Caller:
    caller = Caller(demo)
    caller.start()
    return caller


def test_start_plays_the_greeting_and_listens_during_it(demo: Dialplan) -> None:
    caller = Caller(demo, channel_id="ab" * 16)
    actions = caller.start()
    assert kinds(actions) == ["Routed", "Answer", "Play", "Listen"]
    assert routed(actions) == ("greeting", "start")
    play, listen = actions[2], actions[3]
    assert isinstance(play, Play) and play.path == PROMPTS / "greeting.wav" and play.barge_in
    assert isinstance(listen, Listen) and listen.vendor == "mediazen" and listen.barge_in
    request = listen.request
    assert request.id == listen.id and request.language == "ko"
    assert request.channel_id == "ab" * 16
    assert set(request.grammar.phrases) == set(demo.phrases())
    assert request.dtmf == ("0", "1", "2")
    assert request.timers.no_input == 5.0 and request.timers.max_speech == 10.0
    assert request.audio_format is AudioFormat.PCM16
    hash(request)  # immutable all the way down
    assert len({a.id for a in actions}) == 4  # every action its own id (Answer's is 0, the one per call)
    # The no-input timer starts when the prompt ends, not while it plays.
    assert caller.engine.next_deadline is None
    assert caller.prompt_done() == [StartInputTimers(listen.id)]
    assert caller.engine.next_deadline == caller.now + 5.0


def test_spoken_agent_request_transfers_after_the_agent_prompt(demo: Dialplan) -> None:
    caller = started(demo)
    greeting, listen = caller.play, caller.listen
    assert greeting is not None and listen is not None
    actions = caller.heard("상담원 연결해 주세요")
    assert actions[0] == Cancel(greeting.id)  # the greeting still plays: stop it
    assert routed(actions) == ("agent", "say:상담원")
    assert caller.play is not None and caller.play.path == PROMPTS / "agent.wav"
    assert caller.send(PromptFinished(greeting.id)) == []  # the cut greeting's end is stale
    transfer = caller.prompt_done()
    assert len(transfer) == 1 and isinstance(transfer[0], Transfer) and transfer[0].target == AGENT
    assert not caller.engine.finished
    assert caller.send(TransferEnded(transfer[0].id, 202)) == [Hangup(transfer[0].id + 1, "transferred")]
    assert caller.engine.finished


def test_a_failed_transfer_tells_the_caller_and_hangs_up(demo: Dialplan) -> None:
    caller = started(demo)
    caller.send(Digit("0"))
    (transfer,) = caller.prompt_done()
    assert isinstance(transfer, Transfer)
    assert caller.send(TransferEnded(transfer.id + 7, 200)) == []  # not this transfer's outcome
    assert routed(caller.send(TransferEnded(transfer.id, 486))) == ("busy", "transfer_failed:486")
    (hangup,) = caller.prompt_done()
    assert isinstance(hangup, Hangup) and hangup.cause == "normal"


@pytest.mark.parametrize("text", ["상담원연결해주세요", "  상담사   바꿔 주세요 ", "저 상담원이요"])
def test_keywords_match_regardless_of_spacing(demo: Dialplan, text: str) -> None:
    assert routed(started(demo).heard(text, 0.5)) == ("agent", "say:상담원" if "원" in text else "say:상담사")


def test_digit_one_plays_balance_then_hangs_up(demo: Dialplan) -> None:
    caller = started(demo)
    caller.prompt_done()
    listen = caller.listen
    assert listen is not None
    actions = caller.send(Digit("1"))
    assert actions[0] == Cancel(listen.id)  # the recognition of the greeting is stopped
    assert routed(actions) == ("balance", "dtmf:1")
    assert caller.send(Digit("0")) == []  # not listening any more
    assert caller.engine.next_deadline is None
    assert kinds(caller.prompt_done()) == ["Hangup"]
    assert caller.engine.finished


def test_a_stale_result_of_an_earlier_recognition_is_dropped(demo: Dialplan) -> None:
    caller = started(demo)
    first = caller.listen
    assert first is not None
    caller.prompt_done()
    caller.silence()  # no input: reprompt, a new recognition
    assert caller.listen is not None and caller.listen.id != first.id
    # The first recognition's result was already queued when the step ended: it must not route.
    assert caller.send(Recognized(first.id, "상담원", 1.0)) == []
    assert caller.send(NotRecognized(first.id, ResultStatus.ERROR, "late")) == []
    assert caller.send(SpeechStarted(first.id)) == []
    assert routed(caller.heard("잔액")) == ("balance", "say:잔액")


def test_silence_reprompts_once_then_goes_to_an_agent(demo: Dialplan) -> None:
    caller = started(demo)
    caller.prompt_done()
    assert caller.wait(4.9) == []
    actions = caller.wait(0.2)
    assert routed(actions) == ("greeting", "no_input")
    assert caller.play is not None and caller.play.path == PROMPTS / "reprompt.wav"
    caller.prompt_done()
    assert routed(caller.silence()) == ("agent", "no_input")
    assert kinds(caller.prompt_done()) == ["Transfer"]


def test_speech_holds_the_no_input_timer_and_max_speech_ends_it(demo: Dialplan) -> None:
    caller = started(demo)
    assert caller.listen is not None and caller.play is not None
    greeting = caller.play
    assert caller.send(SpeechStarted(caller.listen.id)) == [Cancel(greeting.id)]  # barge-in
    assert caller.send(PromptFinished(greeting.id, completed=False)) == []
    assert caller.engine.next_deadline == caller.now + 10.0  # max_speech, not no-input
    assert routed(caller.silence()) == ("greeting", "no_input")


def test_an_end_of_speech_without_a_result_keeps_a_timer(demo: Dialplan) -> None:
    caller = started(demo)
    caller.prompt_done()
    assert caller.listen is not None
    caller.send(SpeechStarted(caller.listen.id))
    caller.send(SpeechEnded(caller.listen.id))  # noise: the vendor ended an utterance with no text
    assert caller.engine.next_deadline == caller.now + 5.0
    assert routed(caller.silence()) == ("greeting", "no_input")


def test_two_unmatched_answers_go_to_an_agent(demo: Dialplan) -> None:
    caller = started(demo)
    actions = caller.heard("오늘 날씨 어때요")
    assert routed(actions) == ("greeting", "no_match")
    assert kinds(actions)[-2:] == ["Play", "Listen"]
    assert caller.play is not None and caller.play.path == PROMPTS / "nomatch.wav"
    assert routed(caller.send(Digit("9"))) == ("agent", "no_match")


def test_no_input_and_no_match_are_counted_apart(demo: Dialplan) -> None:
    caller = started(demo)
    caller.prompt_done()
    assert routed(caller.silence()) == ("greeting", "no_input")
    assert routed(caller.heard("뭐라고요")) == ("greeting", "no_match")
    assert routed(caller.send(Digit("1"))) == ("balance", "dtmf:1")


def test_vendor_statuses_take_the_matching_fallback(demo: Dialplan) -> None:
    for status, via in (
        (ResultStatus.NO_MATCH, "no_match"),
        (ResultStatus.NO_INPUT, "no_input"),
        (ResultStatus.MAX_SPEECH, "no_input"),
    ):
        caller = started(demo)
        assert caller.listen is not None
        assert routed(caller.send(NotRecognized(caller.listen.id, status))) == ("greeting", via)


def test_empty_result_counts_as_silence(demo: Dialplan) -> None:
    assert routed(started(demo).heard("  ", 0.0)) == ("greeting", "no_input")


def test_recognizer_failure_keeps_prompt_and_keypad_until_the_no_input_timer(demo: Dialplan) -> None:
    caller = started(demo)
    assert caller.listen is not None
    assert caller.send(NotRecognized(caller.listen.id, ResultStatus.ERROR, "connection refused")) == []
    assert caller.engine.next_deadline is None  # the prompt still plays
    caller.prompt_done()
    assert routed(caller.silence()) == ("agent", "recognizer_failed")  # no reprompts


def test_recognizer_failure_still_routes_digits(demo: Dialplan) -> None:
    caller = started(demo)
    caller.prompt_done()
    assert caller.listen is not None
    caller.send(NotRecognized(caller.listen.id, ResultStatus.ERROR, "gone"))
    assert routed(caller.send(Digit("2"))) == ("lost_card", "dtmf:2")


def test_events_after_the_end_are_ignored(demo: Dialplan) -> None:
    caller = started(demo)
    caller.send(Digit("1"))
    caller.prompt_done()
    assert caller.engine.finished
    assert caller.listen is not None
    for event in (
        PromptFinished(1),
        Recognized(caller.listen.id, "잔액", 1.0),
        Digit("1"),
        NotRecognized(caller.listen.id, ResultStatus.ERROR),
    ):
        assert caller.send(event) == []
    assert caller.wait(1000) == []


FLOW = """\
name: small
start: intro
steps:
  intro:
    play: intro.wav
    goto: menu
  menu:
    play: menu.wav
    listen:
      barge_in: false
      min_confidence: 0.6
      timeout: 3
      vendor: amivoice
      language: en-US
      n_best: 3
      audio: g711
      grammar: builtin:slm/general
      options: {chunk_ms: 40}
    routes:
      - {say: [yes], phrases: [yes please], goto: bye}
      - {dtmf: "#", goto: quiet}
    no_input: {goto: bye}
    no_match: {retries: 0, goto: bye}
  quiet:
    listen: true
    routes: [{dtmf: "*", goto: bye}]
    no_input: {retries: 2, goto: bye}
    no_match: {goto: bye}
  bye:
    hangup: true
"""
GRAMMAR = "#ABNF 1.0 UTF-8;\nroot $menu;\n$menu = yes please | no;\n"


@pytest.fixture
def small(tmp_path: Path) -> Dialplan:
    for name in ("intro.wav", "menu.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "menu.gram").write_text(GRAMMAR, encoding="utf-8")
    path = tmp_path / "small.yaml"
    path.write_text(FLOW.replace("audio: g711", "audio: pcm16"), encoding="utf-8")
    return load_dialplan(path)


def test_without_barge_in_listening_starts_after_the_prompt(small: Dialplan, tmp_path: Path) -> None:
    caller = Caller(small, g711=AudioFormat.PCMA)
    assert kinds(caller.start()) == ["Routed", "Answer", "Play"]
    assert routed(caller.prompt_done()) == ("menu", "goto")
    assert caller.send(Digit("#")) == []  # no barge-in: the prompt is still playing
    listen, timers = caller.prompt_done()
    assert isinstance(listen, Listen) and not listen.barge_in
    assert timers == StartInputTimers(listen.id)
    request = listen.request
    assert request.language == "en-US" and request.n_best == 3 and request.confidence_threshold == 0.6
    assert request.classifiers == frozenset() and listen.vendor == "amivoice"
    assert request.grammar.uri == "builtin:slm/general" and request.grammar.srgs is None
    assert request.grammar.phrases == ("yes please", "yes")
    assert request.options == (("chunk_ms", 40),)
    assert request.timers.no_input == 3.0
    assert caller.engine.next_deadline == caller.now + 3.0
    assert routed(caller.send(Digit("#"))) == ("quiet", "dtmf:#")


def test_a_grammar_file_goes_to_the_recognizer_as_srgs_text(tmp_path: Path) -> None:
    for name in ("intro.wav", "menu.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "menu.gram").write_text(GRAMMAR, encoding="utf-8")
    path = tmp_path / "cpqd.yaml"
    flow = FLOW.replace("audio: g711", "audio: pcm16").replace("vendor: amivoice", "vendor: cpqd")
    path.write_text(flow.replace("language: en-US", "language: pt-BR\n      grammar_file: menu.gram"))
    path.write_text(path.read_text().replace("options: {chunk_ms: 40}", "options: {}"))
    caller = Caller(load_dialplan(path))
    caller.start()
    caller.prompt_done()
    listen, _ = caller.prompt_done()
    assert isinstance(listen, Listen) and listen.vendor == "cpqd"
    assert listen.request.grammar.srgs == GRAMMAR


def test_low_confidence_does_not_match(small: Dialplan) -> None:
    caller = Caller(small)
    caller.start()
    caller.prompt_done()
    caller.prompt_done()
    actions = caller.heard("yes", 0.5)
    assert routed(actions) == ("bye", "no_match") and kinds(actions)[-1] == "Hangup"
    assert caller.engine.finished


def test_step_without_prompt_listens_at_once_and_retries(small: Dialplan) -> None:
    caller = Caller(small)
    caller.start()
    caller.prompt_done()
    caller.prompt_done()
    caller.send(Digit("#"))
    assert caller.engine.next_deadline == caller.now + 5.0  # no prompt: the timer runs at once
    for _ in range(2):
        actions = caller.silence()
        assert routed(actions) == ("quiet", "no_input") and kinds(actions)[-2:] == [
            "Listen",
            "StartInputTimers",
        ]
    assert routed(caller.silence()) == ("bye", "no_input")


def test_g711_steps_ask_for_the_calls_own_codec(tmp_path: Path) -> None:
    for name in ("intro.wav", "menu.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "menu.gram").write_text(GRAMMAR, encoding="utf-8")
    path = tmp_path / "g711.yaml"
    path.write_text(FLOW, encoding="utf-8")
    caller = Caller(load_dialplan(path), g711=AudioFormat.PCMA)
    caller.start()
    caller.prompt_done()
    listen, _ = caller.prompt_done()
    assert isinstance(listen, Listen) and listen.request.audio_format is AudioFormat.PCMA
    # Mediazen takes PCM16 only: the dialplan is refused at load, not at call time.
    path.write_text(FLOW.replace("vendor: amivoice", "vendor: mediazen"), encoding="utf-8")
    with pytest.raises(ValueError, match="mediazen cannot take pcmu audio"):
        load_dialplan(path)


def test_a_flow_built_in_code_is_checked_too() -> None:
    with pytest.raises(ValidationError, match="routes to unknown step 'nowhere'"):
        Dialplan.model_validate(
            {"name": "x", "start": "a", "steps": {"a": {"play": "a.wav", "goto": "nowhere"}}}
        )


OUTCOMES = st.sampled_from(
    ["prompt", "old-prompt", "silence", "speech", "end", "fail", "nomatch", "heard", "digit"]
)
TEXTS = st.one_of(
    st.sampled_from(["상담원 연결해 주세요", "잔액", "분실", "yes", "", "뭐요"]), st.text(max_size=10)
)


def run_script(dialplan: Dialplan, script: list[tuple[str, str, str]]) -> None:
    caller = Caller(dialplan)
    caller.start()
    old_ids = [0]
    for outcome, text, key in script:
        listen_id = caller.listen.id if caller.listen else 0
        if outcome == "prompt" and caller.play:
            caller.prompt_done()
        elif outcome == "old-prompt":
            caller.send(PromptFinished(old_ids[-1]))
        elif outcome == "silence" and caller.engine.next_deadline is not None:
            caller.silence()
        elif outcome == "speech":
            caller.send(SpeechStarted(listen_id))
        elif outcome == "end":
            caller.send(SpeechEnded(listen_id))
        elif outcome == "fail":
            caller.send(NotRecognized(listen_id, ResultStatus.ERROR))
        elif outcome == "nomatch":
            caller.send(NotRecognized(listen_id, ResultStatus.NO_MATCH))
        elif outcome == "heard":
            caller.send(Recognized(listen_id, text, 0.8))
        elif outcome == "digit":
            caller.send(Digit(key))
        old_ids.append(listen_id)
    # A caller who goes silent (prompts end, no answer) is always let go within a bounded number of turns,
    # and the engine never waits on nothing (that would be dead air).
    for _ in range(4 * len(dialplan.steps) * 12):
        if caller.engine.finished:
            break
        pending = [a for a in caller.log if isinstance(a, Transfer)]
        if pending and caller.engine.next_deadline is None and not caller.play:
            caller.send(TransferEnded(pending[-1].id, 200))
            continue
        if caller.play is not None:
            played = caller.play
            caller.play = None
            caller.send(PromptFinished(played.id))
            continue
        if caller.engine.next_deadline is None:
            transfer = next((a for a in reversed(caller.log) if isinstance(a, Transfer)), None)
            assert transfer is not None, f"dead air: nothing to wait for after {kinds(caller.log[-3:])}"
            caller.send(TransferEnded(transfer.id, 200))
            continue
        caller.silence()
    assert caller.engine.finished
    endings = [a for a in caller.log if isinstance(a, Hangup)]
    assert len(endings) == 1 and caller.log[-1] == endings[0]
    assert all(a.step in dialplan.steps for a in caller.log if isinstance(a, Routed))
    # Effects get fresh ids; Cancel and StartInputTimers name an effect that was started before them.
    started_ids = [a.id for a in caller.log if not isinstance(a, Cancel | StartInputTimers)]
    assert len(started_ids) == len(set(started_ids))
    for i, action in enumerate(caller.log):
        if isinstance(action, Cancel | StartInputTimers):
            assert action.id in {a.id for a in caller.log[:i] if isinstance(a, Play | Listen)}


SCRIPTS = st.lists(st.tuples(OUTCOMES, TEXTS, st.sampled_from(list("0123456789*#ABCD"))), max_size=30)


@settings(max_examples=200, deadline=None)
@given(SCRIPTS)
def test_random_events_on_the_demo_end_in_transfer_or_hangup(script: list[tuple[str, str, str]]) -> None:
    run_script(load_dialplan(DEMO), script)


@settings(max_examples=200, deadline=None)
@given(SCRIPTS)
def test_random_events_on_a_flow_without_barge_in(script: list[tuple[str, str, str]]) -> None:
    dialplan = Dialplan.model_validate(
        {
            "name": "nested",
            "start": "intro",
            "steps": {
                "intro": {"play": "i.wav", "goto": "menu"},
                "menu": {
                    "play": "m.wav",
                    "listen": {"barge_in": False},
                    "routes": [{"say": "sim", "goto": "more"}, {"dtmf": "1", "goto": "intro"}],
                    "no_input": {"retries": 2, "goto": "more"},
                    "no_match": {"retries": 0, "goto": "intro"},
                },
                "more": {
                    "routes": [{"dtmf": "2", "goto": "menu"}],
                    "no_input": {"reprompt": "r.wav", "goto": "bye"},
                    "no_match": {"goto": "more"},
                },
                "bye": {"play": "b.wav", "transfer": "tel:+82215880000"},
            },
        }
    )
    run_script(dialplan, script)
