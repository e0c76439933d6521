"""The dialplan language's newer parts at the engine: templates, say, digit collection, route conditions,
business hours, escalating reprompts, confirmation, transfer headers, webhooks, sub-flows, answer/redirect.

Each test loads a small flow (its prompt files written empty beside it) and plays the call's part."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.asr.base import ResultStatus
from ivr.dialplan import (
    Action,
    Answer,
    Cancel,
    Dialplan,
    DialplanEngine,
    Digit,
    Hangup,
    Held,
    Listen,
    NotRecognized,
    Play,
    PromptFinished,
    Recognized,
    Redirect,
    Resumed,
    Routed,
    Say,
    Transfer,
    Webhook,
    WebhookReplied,
    load_dialplan,
)
from ivr.dialplan.calendar import Calendar
from ivr.dialplan.loader import check_file
from ivr.dialplan.matching import keyword, normalize
from ivr.dialplan.templates import TemplateError, expand, flatten, names

AGENT = "sip:agents@127.0.0.1:5070"
# A Wednesday in Seoul: 10:00 and 20:00 local (UTC+9).
WED_10 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
WED_20 = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
CHRISTMAS_10 = datetime(2026, 12, 25, 1, 0, tzinfo=UTC)


def flow(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    for prompt in set(re.findall(r"[\w-]+\.wav", text)):
        (tmp_path / prompt).write_bytes(b"")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class Caller:
    """Plays the call's part: echoes ids, moves time to deadlines, remembers the latest actions."""

    def __init__(self, dialplan: Dialplan, wall: datetime = WED_10, **options: object) -> None:
        self.wall = wall
        self.engine = DialplanEngine(dialplan, clock=lambda: self.wall, **options)  # type: ignore[arg-type]
        self.now = 0.0
        self.log: list[Action] = []

    def _seen(self, actions: list[Action]) -> list[Action]:
        self.log += actions
        return actions

    def last(self, kind: type) -> object:
        return next(a for a in reversed(self.log) if isinstance(a, kind))

    def start(self) -> list[Action]:
        return self._seen(self.engine.start(self.now))

    def send(self, event: object) -> list[Action]:
        return self._seen(self.engine.handle(event, self.now))  # type: ignore[arg-type]

    def prompt_done(self) -> list[Action]:
        prompt = next(a for a in reversed(self.log) if isinstance(a, Play | Say))
        return self.send(PromptFinished(prompt.id))

    def heard(self, text: str, confidence: float = 0.9) -> list[Action]:
        listen = self.last(Listen)
        assert isinstance(listen, Listen)
        return self.send(Recognized(listen.id, text, confidence))

    def keys(self, keys: str) -> list[Action]:
        return [a for key in keys for a in self.send(Digit(key))]

    def silence(self) -> list[Action]:
        deadline = self.engine.next_deadline
        assert deadline is not None, "the engine waits for nothing: dead air"
        self.now = deadline
        return self._seen(self.engine.tick(self.now))


def routed(actions: list[Action]) -> tuple[str, str] | None:
    found = [a for a in actions if isinstance(a, Routed)]
    return (found[-1].step, found[-1].via) if found else None


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


# ---- templates


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("hello {{ caller }}", {"caller": "1001"}, "hello 1001"),
        (
            "{{last.text}}/{{ last.confidence }}",
            {"last.text": "상담원", "last.confidence": "0.80"},
            "상담원/0.80",
        ),
        ("{{ webhook.tier }}", {}, ""),  # not set yet: empty
        ("no templates {here}", {}, "no templates {here}"),
    ],
)
def test_expand(text: str, variables: dict[str, str], expected: str) -> None:
    assert expand(text, variables) == expected


@pytest.mark.parametrize("text", ["{{ a + b }}", "{{ x | upper }}", "{{ unclosed", "stray }}", "{{ }}"])
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        names(text)


@given(st.text())
def test_expand_never_raises_and_leaves_text_without_placeholders_alone(text: str) -> None:
    out = expand(text, {"caller": "x"})
    if "{{" not in text:
        assert out == text


def test_webhook_replies_flatten_to_dotted_texts() -> None:
    reply = {"tier": "gold", "vip": True, "n": 3, "agent": {"queue": "q1"}, "tags": ["a"], "none": None}
    assert flatten(reply) == {
        "webhook.tier": "gold",
        "webhook.vip": "true",
        "webhook.n": "3",
        "webhook.agent.queue": "q1",
        "webhook.tags": '["a"]',
        "webhook.none": "",
    }


# ---- matching


@pytest.mark.parametrize(
    ("word", "said", "found"),
    [
        ("상담원", "상담원을 연결해 주세요", True),  # the caller's particle
        ("상담원을", "상담원 연결", True),  # the keyword's particle
        ("상담원이요", "상담원 바꿔 주세요", True),
        ("상담 원", "상담원연결", True),  # spacing
        ("잔액", "상담원", False),
        ("아이", "아", False),  # a one-syllable stem is never made
    ],
)
def test_keywords_ignore_spacing_and_korean_particles(word: str, said: str, found: bool) -> None:
    assert (keyword(word) in normalize(said)) is found


# ---- answer, say, redirect, reject

SAY_FLOW = """\
name: say
asr: {vendor: mediazen, language: ko}
start: hello
steps:
  hello:
    set: {greeting_for: "{{ caller }}"}
    say: "{{ greeting_for }}님, 안녕하세요"
    listen: {language: en}
    routes:
      - say: [agent]
        goto: agent
    no_input: {goto: bye}
    no_match: {goto: bye}
  agent:
    transfer:
      to: sip:agents@127.0.0.1:5070
      headers: {X-Caller-Intent: "{{ last.text }}", X-Caller: "{{ caller }}"}
  bye:
    hangup: true
"""


def test_say_expands_variables_and_answers_first(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, SAY_FLOW)), variables={"caller": "1001"})
    actions = caller.start()
    assert kinds(actions) == ["Routed", "Answer", "Say", "Listen"]
    say = actions[2]
    assert isinstance(say, Say) and say.text == "1001님, 안녕하세요" and say.language == "en" and say.barge_in
    assert caller.engine.variables["greeting_for"] == "1001"
    [transfer] = [a for a in caller.heard("agent\r\nX-Evil: 1") if isinstance(a, Transfer)]
    assert transfer.target == AGENT
    # Expanded, and a CR/LF in what was said cannot start another header.
    assert transfer.headers == (("X-Caller-Intent", "agent X-Evil: 1"), ("X-Caller", "1001"))
    assert kinds(caller.log).count("Answer") == 1


NIGHT_FLOW = """\
name: night
start: route
calendars:
  office:
    tz: Asia/Seoul
    hours: {mon-fri: "09:00-18:00", sat: ["09:00-12:00"]}
    holidays: [2026-12-25]
steps:
  route:
    branch:
      - closed: office
        goto: night
      - when: {var: callee, in: ["1588", "1577"]}
        goto: menu
      - goto: refuse
  night:
    transfer: {to: "sip:night@127.0.0.1", headers: {X-Reason: after-hours}}
  refuse:
    hangup: true
  menu:
    play: menu.wav
    hangup: true
"""


@pytest.mark.parametrize(
    ("wall", "callee", "expected"),
    [
        (WED_20, "1588", [Redirect(3, "sip:night@127.0.0.1", (("X-Reason", "after-hours"),))]),
        (CHRISTMAS_10, "1588", [Redirect(3, "sip:night@127.0.0.1", (("X-Reason", "after-hours"),))]),
        (WED_10, "9999", [Hangup(3, "rejected")]),  # refused before answer: no Answer, the call sends 480
    ],
)
def test_routing_before_answer_redirects_or_rejects(
    tmp_path: Path, wall: datetime, callee: str, expected: list[Action]
) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, NIGHT_FLOW)), wall, variables={"callee": callee})
    actions = caller.start()
    assert [a for a in actions if not isinstance(a, Routed)] == expected
    assert caller.engine.finished


def test_an_open_line_answers_at_its_first_prompt(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, NIGHT_FLOW)), WED_10, variables={"callee": "1577"})
    actions = caller.start()
    assert [r.via for r in actions if isinstance(r, Routed)] == ["start", "branch:when:callee"]
    assert kinds(actions)[-2:] == ["Answer", "Play"]
    assert caller.prompt_done()[-1] == Hangup(caller.log[-1].id, "normal")


@pytest.mark.parametrize(
    ("local", "open_"),
    [
        (datetime(2026, 12, 2, 8, 59), False),
        (datetime(2026, 12, 2, 9, 0), True),
        (datetime(2026, 12, 2, 17, 59), True),
        (datetime(2026, 12, 2, 18, 0), False),
        (datetime(2026, 12, 5, 11, 0), True),  # Saturday morning
        (datetime(2026, 12, 6, 11, 0), False),  # Sunday
        (datetime(2026, 12, 25, 11, 0), False),  # holiday
    ],
)
def test_business_hours_in_the_calendars_time_zone(local: datetime, open_: bool) -> None:
    from zoneinfo import ZoneInfo

    office = Calendar.model_validate(
        {
            "tz": "Asia/Seoul",
            "hours": {"mon-fri": "09:00-18:00", "sat": "09:00-12:00"},
            "holidays": ["2026-12-25"],
        }
    )
    assert office.is_open(local.replace(tzinfo=ZoneInfo("Asia/Seoul"))) is open_


# ---- digit collection, routes

CARD_FLOW = """\
name: card
start: card
steps:
  card:
    play: card.wav
    redact: true
    listen:
      dtmf: {max_digits: 16, min_digits: 4, terminator: "#", inter_digit_timeout: 3}
    routes:
      - dtmf: "0"
        goto: agent
      - digits: '\\d{16}'
        goto: agent
      - digits: "1234"
        goto: test_card
    no_input: {goto: agent}
    no_match: {reprompts: [again.wav, last_try.wav], goto: agent}
  test_card:
    say: "test card {{ digits }}"
    hangup: true
  agent:
    transfer: {to: "sip:agents@127.0.0.1:5070", headers: {X-Card: "{{ digits }}"}}
"""


@pytest.mark.parametrize(
    ("keys", "wait", "expected"),
    [
        ("1234#", False, ("test_card", "digits")),  # the terminator ends it
        ("4111111111111111", False, ("agent", "digits")),  # max_digits ends it
        ("1234", True, ("test_card", "digits")),  # the inter-digit timeout ends it
        ("9#", False, ("card", "no_match")),  # one key is below min_digits
        ("0#", False, ("agent", "dtmf:0")),  # ... but a dtmf: route's own key still takes it
        ("12345#", False, ("card", "no_match")),  # no route takes it
    ],
)
def test_digits_are_collected_then_routed(
    tmp_path: Path, keys: str, wait: bool, expected: tuple[str, str]
) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CARD_FLOW)))
    caller.start()
    actions = caller.keys(keys)
    if wait:
        assert routed(actions) is None
        actions = caller.silence()
    assert routed(actions) == expected


def test_the_first_key_stops_the_prompt_and_the_recognition(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CARD_FLOW)))
    _, _, play, listen = caller.start()
    assert kinds(caller.send(Digit("4"))) == ["Cancel", "Cancel"]
    assert caller.send(PromptFinished(play.id)) == []  # cut: stale
    assert caller.send(Recognized(listen.id, "상담원", 0.9)) == []  # the keypad won


def test_collected_digits_of_a_redacted_step_stay_out_of_headers(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CARD_FLOW)))
    caller.start()
    actions = caller.keys("4111111111111111")
    [transfer] = [a for a in actions if isinstance(a, Transfer)]
    assert transfer.headers == (("X-Card", "[redacted]"),)
    assert caller.engine.variables["digits"] == "4111111111111111"  # routing and say still see them


def test_escalating_reprompts_by_count_then_the_fallback(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CARD_FLOW)))
    caller.start()
    plays = []
    for _ in range(2):
        actions = caller.keys("9#")
        assert routed(actions) == ("card", "no_match")
        plays.append(next(a for a in actions if isinstance(a, Play)).path.name)
    assert plays == ["again.wav", "last_try.wav"]
    assert routed(caller.keys("9#")) == ("agent", "no_match")  # retries default to the reprompts' count


ROUTES_FLOW = """\
name: routes
variables: [tier]
start: menu
steps:
  menu:
    play: menu.wav
    routes:
      - regex: '(?:card|카드)\\s*(?:number|번호)'
        goto: card
      - say: [상담원]
        confidence: {min: 0.5}
        goto: agent
      - say: [상담원]
        goto: unsure
      - when: {var: tier, equals: gold}
        goto: vip
      - when: {var: tier, equals: "{{ callee }}"}
        goto: vip
      - dtmf: "1"
        goto: card
      - default: true
        goto: other
    no_input: {goto: agent}
  card:
    play: card.wav
    hangup: true
  agent:
    play: agent.wav
    hangup: true
  unsure:
    play: unsure.wav
    hangup: true
  vip:
    play: vip.wav
    hangup: true
  other:
    play: other.wav
    hangup: true
"""


@pytest.mark.parametrize(
    ("tier", "said", "confidence", "expected"),
    [
        ("", "카드 번호 변경", 0.9, ("card", "regex")),
        ("", "Card Number please", 0.9, ("card", "regex")),
        ("", "상담원을 연결해 주세요", 0.9, ("agent", "say:상담원")),
        ("", "상담원", 0.3, ("unsure", "say:상담원")),  # first match wins: the confident route is first
        ("gold", "잔액", 0.9, ("vip", "when:tier")),
        ("", "잔액", 0.9, ("other", "default")),  # instead of no_match
        ("1588", "잔액", 0.9, ("vip", "when:tier")),  # equals: "{{ callee }}" names a variable
    ],
)
def test_routes_in_order_first_match_wins(
    tmp_path: Path, tier: str, said: str, confidence: float, expected: tuple[str, str]
) -> None:
    variables = {"tier": tier, "callee": "1588"} if tier else {"callee": "1588"}
    caller = Caller(load_dialplan(flow(tmp_path, ROUTES_FLOW)), variables=variables)
    caller.start()
    assert routed(caller.heard(said, confidence)) == expected


def test_a_recognizer_no_match_takes_the_default_route(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, ROUTES_FLOW)))
    caller.start()
    listen = caller.last(Listen)
    assert isinstance(listen, Listen)
    assert routed(caller.send(NotRecognized(listen.id, ResultStatus.NO_MATCH))) == ("other", "default")


# ---- confirmation

CONFIRM_FLOW = """\
name: confirm
asr: {vendor: mediazen, language: ko}
start: menu
steps:
  menu:
    play: menu.wav
    routes:
      - say: [분실]
        confirm: {below: 0.6, say: "분실 신고를 원하십니까? 맞으면 1번, 아니면 2번"}
        goto: lost
    no_input: {goto: lost}
    no_match: {reprompt: again.wav, retries: 1, goto: lost}
  lost:
    play: lost.wav
    hangup: true
"""


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (("say", "네 맞아요"), ("lost", "say:분실(confirmed)")),
        (("say", "아니요"), ("menu", "no_match")),
        (("say", "글쎄"), ("menu", "no_match")),  # neither: counts as a no-match too
        (("key", "1"), ("lost", "say:분실(confirmed)")),
        (("key", "2"), ("menu", "no_match")),
    ],
)
def test_an_unsure_match_is_confirmed_first(
    tmp_path: Path, answer: tuple[str, str], expected: tuple[str, str]
) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CONFIRM_FLOW)))
    caller.start()
    asked = caller.heard("분실 신고요", 0.4)
    assert routed(asked) == ("menu", "confirm:say:분실")
    say = next(a for a in asked if isinstance(a, Say))
    assert say.text.startswith("분실 신고를")
    listen = next(a for a in asked if isinstance(a, Listen))
    assert "네" in listen.request.grammar.phrases and listen.request.dtmf == ("1", "2")
    how, what = answer
    actions = caller.heard(what) if how == "say" else caller.send(Digit(what))
    assert routed(actions) == expected
    if how == "key":  # the question's recognition was still running: stopped
        assert Cancel(listen.id) in actions


def test_a_confident_match_is_not_confirmed(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CONFIRM_FLOW)))
    caller.start()
    assert routed(caller.heard("분실", 0.9)) == ("lost", "say:분실")


def test_hold_during_a_confirmation_restarts_the_step(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CONFIRM_FLOW)))
    caller.start()
    caller.heard("분실", 0.4)
    assert kinds(caller.send(Held())) == ["Cancel", "Cancel"]
    assert caller.engine.next_deadline is None
    assert routed(caller.send(Resumed())) == ("menu", "resumed")
    assert routed(caller.heard("분실", 0.9)) == ("lost", "say:분실")  # a fresh turn, not the question's


# ---- webhook

HOOK_FLOW = """\
name: hook
start: lookup
steps:
  lookup:
    webhook:
      url: "https://crm.example/lookup?ani={{ caller }}"
      timeout: 2
      body: {ani: "{{ caller }}", dialed: "{{ callee }}"}
      routes:
        - when: {key: status, equals: vip}
          goto: vip
        - when: {var: webhook.blocked, equals: "true"}
          goto: blocked
      goto: menu
      on_failure: menu
  vip:
    say: "{{ webhook.name }}님 안녕하세요"
    hangup: true
  blocked:
    hangup: true
  menu:
    play: menu.wav
    hangup: true
"""


@pytest.mark.parametrize(
    ("status", "reply", "expected"),
    [
        (200, {"status": "vip", "name": "김"}, ("vip", "webhook:when:webhook.status")),
        (200, {"status": "normal", "blocked": True}, ("blocked", "webhook:when:webhook.blocked")),
        (200, {"status": "normal"}, ("menu", "webhook:default")),
        (500, {"status": "vip"}, ("menu", "webhook_failed:500")),
        (200, None, ("menu", "webhook_failed:200")),  # not a JSON object
        (0, None, ("menu", "webhook_failed:refused")),
    ],
)
def test_a_webhook_routes_on_its_reply(
    tmp_path: Path, status: int, reply: dict[str, object] | None, expected: tuple[str, str]
) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, HOOK_FLOW)), variables={"caller": "1001", "callee": "1588"})
    [_, hook] = caller.start()
    assert hook == Webhook(
        hook.id,
        "https://crm.example/lookup?ani=1001",
        {"ani": "1001", "dialed": "1588"},
        2.0,  # type: ignore[union-attr]
    )
    assert caller.send(WebhookReplied(hook.id + 99, 200, {"status": "vip"})) == []  # stale: not ours
    assert routed(caller.send(WebhookReplied(hook.id, status, reply, "refused"))) == expected


def test_a_webhook_that_never_replies_takes_on_failure_at_the_engines_guard(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, HOOK_FLOW)))
    caller.start()
    assert caller.engine.next_deadline == 3.0  # the timeout, and the guard past it
    assert routed(caller.silence()) == ("menu", "webhook_failed:timeout")


def test_a_webhook_reply_on_hold_waits_for_resume_and_its_guard_pauses(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, HOOK_FLOW)))
    [_, hook] = caller.start()
    caller.now = 1.0
    assert caller.send(Held()) == [] and caller.engine.next_deadline is None
    caller.now = 50.0
    assert caller.send(WebhookReplied(hook.id, 200, {"status": "vip", "name": "김"})) == []
    actions = caller.send(Resumed())
    assert routed(actions) == ("vip", "webhook:when:webhook.status")
    assert any(isinstance(a, Say) and a.text == "김님 안녕하세요" for a in actions)


def test_resume_before_the_reply_rearms_the_time_left(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, HOOK_FLOW)))
    caller.start()
    caller.now = 1.0
    caller.send(Held())
    caller.now = 50.0
    caller.send(Resumed())
    assert caller.engine.next_deadline == 52.0


# ---- sub-flows

MAIN_FLOW = """\
name: main
start: menu
steps:
  menu:
    play: menu.wav
    set: {intent: card}
    call: verify.yaml
    goto: done
  done:
    say: "verified {{ verified }}"
    hangup: true
"""
SUB_FLOW = """\
name: verify
variables: [intent]
start: ask
steps:
  ask:
    say: "{{ intent }}: your birth date"
    redact: true
    listen: {dtmf: {max_digits: 6}}
    routes:
      - digits: '\\d{6}'
        goto: ok
    no_input: {goto: back}
    no_match: {goto: back}
  ok:
    set: {verified: "yes"}
    return: true
  back:
    set: {verified: "no"}
    return: true
"""


def test_a_sub_flow_runs_from_its_start_and_returns_to_the_callers_goto(tmp_path: Path) -> None:
    flow(tmp_path, SUB_FLOW, "verify.yaml")
    caller = Caller(load_dialplan(flow(tmp_path, MAIN_FLOW)))
    caller.start()
    actions = caller.prompt_done()
    assert routed(actions) == ("verify.yaml:ask", "call:verify.yaml")
    assert next(a for a in actions if isinstance(a, Say)).text == "card: your birth date"
    assert caller.engine.redacted
    actions = caller.keys("010203")
    assert [(r.step, r.via) for r in actions if isinstance(r, Routed)] == [
        ("verify.yaml:ok", "digits"),
        ("done", "return:verify.yaml"),
    ]
    assert next(a for a in actions if isinstance(a, Say)).text == "verified yes"


def test_a_sub_flow_cycle_and_a_missing_file_are_errors_at_the_call(tmp_path: Path) -> None:
    text = MAIN_FLOW.replace('"verified {{ verified }}"', "bye")
    flow(tmp_path, text, "verify.yaml")  # it calls itself
    main = flow(tmp_path, text)
    assert [p.located() for p in check_file(main)] == [
        f"{tmp_path}/verify.yaml:7:5: error: step 'menu' calls a flow that calls it back: verify.yaml ->"
        " verify.yaml; a sub-flow must end in return:, not call its caller"
    ]
    (tmp_path / "verify.yaml").unlink()
    assert [p.located() for p in check_file(main)] == [
        f"{main}:7:5: error: step 'menu' calls 'verify.yaml', which is not beside the dialplan: create it"
        " there or fix the name"
    ]


# ---- every event sequence keeps the engine's promises

EVENTS = st.lists(
    st.one_of(
        st.sampled_from(["prompt", "digit", "hash", "heard", "low", "silence", "held", "resumed", "hook"]),
    ),
    max_size=25,
)


@given(EVENTS)
def test_random_calls_never_crash_and_never_wait_on_nothing(events: list[str]) -> None:
    plans = _PLANS
    for dialplan in plans:
        caller = Caller(dialplan, variables={"caller": "1", "callee": "1588"})
        caller.start()
        held = False
        for event in events:
            if caller.engine.finished:
                break
            if event == "prompt" and any(isinstance(a, Play | Say) for a in caller.log):
                caller.prompt_done()
            elif event in ("digit", "hash"):
                caller.send(Digit("1" if event == "digit" else "#"))
            elif event in ("heard", "low") and any(isinstance(a, Listen) for a in caller.log):
                caller.heard("분실 상담원", 0.9 if event == "heard" else 0.3)
            elif event == "silence" and caller.engine.next_deadline is not None:
                caller.silence()
            elif event in ("held", "resumed"):
                held = event == "held"
                caller.send(Held() if held else Resumed())
            elif event == "hook" and any(isinstance(a, Webhook) for a in caller.log):
                hook = caller.last(Webhook)
                caller.send(WebhookReplied(hook.id, 200, {"status": "vip"}))  # type: ignore[attr-defined]
        assert kinds(caller.log).count("Answer") <= 1
        answered = [i for i, a in enumerate(caller.log) if isinstance(a, Answer)]
        first_media = next((i for i, a in enumerate(caller.log) if isinstance(a, Play | Say | Listen)), None)
        if first_media is not None:
            assert answered and answered[0] < first_media


_PLANS: list[Dialplan] = []


@pytest.fixture(autouse=True, scope="module")
def _plans(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("plans")
    for i, text in enumerate((CARD_FLOW, ROUTES_FLOW, CONFIRM_FLOW, HOOK_FLOW)):
        sub = folder / str(i)
        sub.mkdir()
        _PLANS.append(load_dialplan(flow(sub, text)))


# ---- the bundled flows use them

BUNDLED = Path(__file__).parents[3] / "dialplans"


def test_demo_collects_a_lost_cards_number_and_hides_it_from_the_agents_headers() -> None:
    caller = Caller(load_dialplan(BUNDLED / "demo.yaml"))
    caller.start()
    assert routed(caller.send(Digit("2"))) == ("lost_card", "dtmf:2")  # a key needs no confirmation
    assert routed(caller.keys("4111111111111111")) == ("lost_card_done", "digits")
    caller = Caller(load_dialplan(BUNDLED / "demo.yaml"))
    caller.start()
    assert routed(caller.heard("분실 신고요", 0.3)) == ("greeting", "confirm:say:분실")
    assert routed(caller.send(Digit("1"))) == ("lost_card", "say:분실(confirmed)")
    assert routed(caller.keys("0#")) == ("agent", "dtmf:0")
    caller.prompt_done()
    [transfer] = [a for a in caller.log if isinstance(a, Transfer)]
    assert transfer.headers == (("X-Caller-Intent", "분실 신고요"),)  # the greeting's words, not the keys


TOKYO_NOON = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
TOKYO_23H = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(("wall", "expected"), [(TOKYO_NOON, "operator"), (TOKYO_23H, "jikangai")])
def test_takuhai_sends_a_no_to_the_operators_only_while_they_are_there(wall: datetime, expected: str) -> None:
    caller = Caller(load_dialplan(BUNDLED / "takuhai.yaml"), wall)
    caller.start()
    caller.send(Digit("1"))
    assert routed(caller.send(Digit("2")))[0] == expected  # type: ignore[index]


def test_a_dialplan_with_sub_flows_lists_their_vocabulary_and_vendors_too(tmp_path: Path) -> None:
    flow(
        tmp_path,
        SUB_FLOW.replace("listen: {dtmf", "listen: {vendor: cpqd, language: pt-BR, dtmf"),
        "verify.yaml",
    )
    dialplan = load_dialplan(flow(tmp_path, MAIN_FLOW))
    assert [f.name for f in dialplan.flows()] == ["main", "verify"]
    assert dialplan.redacted_steps() == {"verify.yaml:ask"}  # as Routed names it, for the CDR
    assert dialplan.vendors() == {"cpqd"} and dialplan.languages("cpqd") == ["pt-BR"]


def test_hold_during_digit_collection_pauses_it_and_resume_starts_the_step_again(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, CARD_FLOW)))
    caller.start()
    caller.keys("41")
    assert caller.engine.next_deadline is not None  # the inter-digit timer
    caller.send(Held())
    assert caller.engine.next_deadline is None  # no timer runs on hold
    assert caller.send(Digit("1")) == []  # nor are keys collected
    actions = caller.send(Resumed())
    assert routed(actions) == ("card", "resumed") and any(isinstance(a, Play) for a in actions)
    assert routed(caller.keys("1234#")) == ("test_card", "digits")  # the keys before the hold are gone


# ---- all keywords, and barge-in by kind of input

BARGE = """\
name: barge
start: menu
steps:
  menu:
    play: menu.wav
    listen: {barge_in: BARGE}
    routes:
      - say_all: [카드, 분실]
        goto: lost
      - say: [카드]
        goto: card
      - dtmf: "1"
        goto: card
    no_input: {goto: bye}
    no_match: {retries: 0, goto: bye}
  lost:
    hangup: true
  card:
    hangup: true
  bye:
    hangup: true
"""


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("카드를 분실했어요", ("lost", "say:카드+분실")),
        ("분실한 카드요", ("lost", "say:카드+분실")),  # any order
        ("카드 결제요", ("card", "say:카드")),  # one of the two: the next route
        ("분실 신고", ("bye", "no_match")),
    ],
)
def test_say_all_needs_every_keyword_in_any_order(
    tmp_path: Path, said: str, expected: tuple[str, str]
) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, BARGE.replace("BARGE", "true"))))
    caller.start()
    assert routed(caller.heard(said)) == expected


def test_barge_in_on_speech_only_ignores_keys_during_the_prompt(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, BARGE.replace("BARGE", "speech"))))
    actions = caller.start()
    listen = next(a for a in actions if isinstance(a, Listen))
    assert listen.barge_in and kinds(actions)[-2:] == ["Play", "Listen"]  # recognized while it plays
    assert caller.keys("1") == []  # a key during the prompt does not cut it or count
    caller.prompt_done()
    assert routed(caller.keys("1")) == ("card", "dtmf:1")


def test_barge_in_on_keys_only_cuts_the_prompt_on_a_key_and_listens_after_it(tmp_path: Path) -> None:
    caller = Caller(load_dialplan(flow(tmp_path, BARGE.replace("BARGE", "dtmf"))))
    actions = caller.start()
    play = next(a for a in actions if isinstance(a, Play))
    assert not play.barge_in and "Listen" not in kinds(actions)  # speech does not cut it: no recognition yet
    actions = caller.keys("1")
    assert actions[0] == Cancel(play.id) and routed(actions) == ("card", "dtmf:1")
    # Without a key, listening starts when the prompt ends.
    caller = Caller(load_dialplan(flow(tmp_path, BARGE.replace("BARGE", "dtmf"))))
    caller.start()
    assert kinds(caller.prompt_done()) == ["Listen", "StartInputTimers"]
    assert routed(caller.heard("카드")) == ("card", "say:카드")
