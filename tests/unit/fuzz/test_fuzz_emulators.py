"""Fuzzing the emulators' sans-I/O protocol cores with whatever a client might send (issue 12).

Contract: any frame gets events, never an exception; a CPQD message that does not parse is answered with a
RESPONSE carrying an Error-Code; replies are well-formed for the vendor's clients (CPQD: CRLF and ASCII
header lines; AmiVoice: text commands; Mediazen: JSON objects). The adapter's side (accepting a request,
flushing after the end of audio, timers) is played between the frames as the servers do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.emulators import amivoice_protocol as ami
from ivr.emulators import cpqd_events as ce
from ivr.emulators import mediazen as mz
from ivr.emulators.cpqd_framing import MessageError, parse_message
from ivr.emulators.cpqd_protocol import CpqdServerSession
from tests.unit.fuzz.strategies import fuzz, json_mutated, mutated

Frame = bytes | str


def frames(
    seeds: list[bytes], extra: st.SearchStrategy[Frame] | None = None
) -> st.SearchStrategy[list[Frame]]:
    one: st.SearchStrategy[Frame] = (
        st.binary(max_size=200) | mutated(seeds) | mutated(seeds) | st.sampled_from(seeds)
    )
    one = one | one.map(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b)
    if extra is not None:
        one = one | extra
    return st.lists(one, max_size=12)


# ---- CPQD


def cpqd(kind: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"", eol: str = "\r\n") -> bytes:
    lines = [f"ASR 2.4 {kind}", *[f"{n}: {v}" for n, v in headers]]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return (eol.join(lines) + eol + eol).encode() + body


GRAMMAR = b"#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $root;\n$root = sim | nao;\n"
SLM = b"builtin:slm/general"
CPQD_SEEDS = [
    cpqd(
        "CREATE_SESSION", [("User-Agent", "fuzz"), ("Channel-Identifier", "698dc19d489c4e4db73e28a713eab07b")]
    ),
    cpqd("SET_PARAMETERS", [("noInputTimeout.value", "5000"), ("decoder.maxSentences", "3")]),
    cpqd("GET_PARAMETERS", [("noInputTimeout.value", "")]),
    cpqd("DEFINE_GRAMMAR", [("Content-ID", "yesno"), ("Content-Type", "application/srgs")], GRAMMAR),
    cpqd("START_RECOGNITION", [("Accept", "application/json"), ("Content-Type", "text/uri-list")], SLM, "\n"),
    cpqd("SEND_AUDIO", [("LastPacket", "false"), ("Content-Type", "audio/raw")], b"\x00\x01" * 80, "\n"),
    cpqd("SEND_AUDIO", [("LastPacket", "true"), ("Content-Length", "0")], eol="\n"),
    cpqd("START_INPUT_TIMERS"),
    cpqd("INTERPRET_TEXT", [("Text", "sim"), ("Content-Type", "text/uri-list")], SLM, "\n"),
    cpqd("CANCEL_RECOGNITION"),
    cpqd("RELEASE_SESSION"),
]


def _check_cpqd_reply(data: bytes) -> None:
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, data[:80]
    text = head.decode("ascii")  # the SDKs read plain-ASCII header lines
    assert "\n" not in text.replace("\r\n", "") and "\r" not in text.replace("\r\n", "")
    assert text.startswith("ASR 2.")


@fuzz(800)
@given(st.integers(0, 2), frames(CPQD_SEEDS), st.booleans())
@example(2, [b"ASR 2.4 SEND_AUDIO\nContent-Length: " + b"9" * 5000 + b"\n\n"], True)
@example(1, [CPQD_SEEDS[1].replace(b"5000", b"9" * 5000)], True)
@example(1, [CPQD_SEEDS[1].replace(b"5000", "\u00b2".encode())], True)
def test_cpqd_session_answers_anything(setup: int, sent: list[Frame], accept: bool) -> None:
    core = CpqdServerSession("1", now=0.0, idle_timeout=30.0)
    now = 0.0
    for frame in [CPQD_SEEDS[0], CPQD_SEEDS[4]][:setup] + sent:
        now += 0.1
        quiet = core.closed or not frame.strip()
        events = core.receive(frame, now)
        try:
            parse_message(frame)
        except MessageError:
            if not quiet:
                responses = [e for e in events if isinstance(e, ce.SendMessage)]
                assert len(responses) == 1 and b"Error-Code:" in responses[0].data, events
        follow: list[ce.Event] = []
        for event in events:
            if isinstance(event, ce.RecognitionRequested):
                follow += (
                    core.accept_recognition(event.recognition, now)
                    if accept
                    else core.reject_recognition(event.recognition, "fuzz", now)
                )
            elif isinstance(event, ce.AudioEnded):
                follow += core.audio_finished(event.recognition, now)
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now + 1.0:
            follow += core.on_timer(deadline)
        for event in [*events, *follow]:
            if isinstance(event, ce.SendMessage):
                _check_cpqd_reply(event.data)
    core.connection_lost()


# ---- AmiVoice

AMI_SEEDS = [
    b"s LSB8K -a-general authorization=KEY",
    b's MULAW -a-general\x01 resultUpdatedInterval=500 profileWords="a b|c d" keepFillerToken=1',
    b"s 16K -a-general-en",
    b"p\x00\x01\x00\x01\x00\x01",
    b"pRIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00",
    b"e",
]


@fuzz(800)
@given(st.booleans(), frames(AMI_SEEDS), st.sampled_from([None, "KEY"]))
@example(False, ["s LSB8K -a-general resultUpdatedInterval=\u00b2"], None)
@example(False, ["s LSB8K -a-general resultUpdatedInterval=" + "9" * 5000], None)
@example(False, ['s LSB8K -a-general profileWords="' + "a" * 10000], None)
@example(False, [b"s \xff\xfe"], None)
def test_amivoice_protocol_answers_anything(started: bool, sent: list[Frame], appkey: str | None) -> None:
    core = ami.AmiVoiceServerProtocol(appkey=appkey)
    now = 0.0
    for frame in [AMI_SEEDS[0]][: int(started)] + sent:
        now += 0.1
        events = core.receive_text(frame, now) if isinstance(frame, str) else core.receive_bytes(frame, now)
        follow: list[ami.Event] = []
        for event in events:
            if isinstance(event, ami.StartRequested):
                follow += core.accept_start()
            elif isinstance(event, ami.EndRequested):
                follow += core.finished()
        deadline = core.deadline
        if deadline is not None and deadline <= now + 1.0:
            follow += core.timeout(deadline)
        for event in [*events, *follow]:
            if isinstance(event, ami.SendText):
                assert event.text[:1] in ("s", "p", "e", "S", "E", "C", "U", "A"), event
                if event.text[:1] in "UA":
                    json.loads(event.text[2:])


# ---- Mediazen

MZ_COMMANDS: list[object] = [{"language": "ko", "cmd": "join"}, {"language": "ko", "cmd": "quit"}]
MZ_SEEDS = [json.dumps(c).encode() for c in MZ_COMMANDS] + [b"\x00\x01" * 80]


@fuzz(800)
@given(st.booleans(), frames(MZ_SEEDS, json_mutated(MZ_COMMANDS)))
@example(False, ["[" * 100000])
@example(True, ['{"cmd": "join", "language": ' + "9" * 5000 + "}"])
def test_mediazen_protocol_answers_anything(joined: bool, sent: list[Frame]) -> None:
    core = mz.MediazenServerProtocol()
    for frame in [MZ_SEEDS[0].decode()][: int(joined)] + sent:
        events = core.receive_text(frame) if isinstance(frame, str) else core.receive_bytes(frame)
        follow: list[mz.Event] = []
        for event in events:
            if isinstance(event, mz.JoinRequested):
                follow += core.accept_join()
            elif isinstance(event, mz.QuitRequested):
                follow += core.finished("", 0.0)
        for event in [*events, *follow]:
            if isinstance(event, mz.SendMessage):
                assert isinstance(json.loads(event.text), dict)


def test_what_the_fuzzing_found_gets_error_replies() -> None:
    # Each escaped as ValueError or RecursionError (issue 12).
    core = CpqdServerSession("1", now=0.0)
    core.receive(CPQD_SEEDS[0], 0.0)
    (reply,) = core.receive(b"ASR 2.4 SEND_AUDIO\nContent-Length: " + b"9" * 5000 + b"\n\n", 0.0)
    assert isinstance(reply, ce.SendMessage) and b"Error-Code:" in reply.data and b"5000 digits" in reply.data
    (start,) = ami.AmiVoiceServerProtocol().receive_text(
        "s LSB8K -a-general resultUpdatedInterval=\u00b2", 0.0
    )
    assert isinstance(start, ami.StartRequested) and start.command.result_updated_interval == 1000
    (error,) = mz.MediazenServerProtocol().receive_text("[" * 100000)
    assert (
        isinstance(error, mz.SendMessage) and json.loads(error.text)["payload"]["message"] == "malformed JSON"
    )
