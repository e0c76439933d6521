"""The faults the emulators commit on `--fault NAME`, at their sans-I/O cores and command lines."""

from __future__ import annotations

import json

import pytest

from ivr.emulators import amivoice, cpqd, mediazen
from ivr.emulators import session as shared
from ivr.emulators.amivoice_protocol import (
    CANT_CONNECT,
    CANT_FEED,
    NO_COMMUNICATION,
    AbortRecognition,
    AmiVoiceServerProtocol,
    CloseConnection,
    Fault,
    SendText,
    StartRequested,
)
from ivr.emulators.cpqd_events import SendMessage as CpqdSend
from ivr.emulators.cpqd_protocol import CpqdServerSession
from ivr.emulators.cpqd_protocol import Fault as CpqdFault
from ivr.emulators.mediazen import MediazenServerProtocol, SendMessage
from ivr.emulators.recognizer import SpeechStarted

JOIN = '{"language":"ko","cmd":"join"}'


def test_every_emulator_takes_the_shared_faults_on_its_command_line() -> None:
    for parser in (
        shared.argument_parser("mediazen", "", port=1, faults=mediazen.FAULTS),
        amivoice._parser(),
        cpqd.argument_parser(),
    ):
        for fault in shared.COMMON_FAULTS:
            assert parser.parse_args(["--fault", fault]).fault == fault
        with pytest.raises(SystemExit):
            parser.parse_args(["--fault", "no-such-fault"])


def test_mediazen_no_reply_never_answers_the_join() -> None:
    assert MediazenServerProtocol("no-reply").receive_text(JOIN) == []


def test_mediazen_malformed_answers_the_join_with_cut_off_json() -> None:
    [reply] = MediazenServerProtocol("malformed").receive_text(JOIN)
    assert isinstance(reply, SendMessage)
    with pytest.raises(ValueError):
        json.loads(reply.text)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("close-mid-utterance", [mediazen.CloseConnection(1011, "emulated fault")]),
        ("close", ["close", mediazen.CloseConnection()]),
    ],
)
def test_mediazen_goes_away_once_the_caller_speaks(fault: str, expected: list[object]) -> None:
    core = MediazenServerProtocol(fault)
    core.receive_text(JOIN)
    core.accept_join()
    events = core.recognized("상담원", 0.8, endpoint=False)
    seen = [json.loads(e.text)["event"] if isinstance(e, SendMessage) else e for e in events]
    assert seen == expected
    assert core.recognized("상담원 연결", 0.8, endpoint=True) == []  # nothing after it


def test_mediazen_without_a_fault_sends_the_partial() -> None:
    core = MediazenServerProtocol()
    core.receive_text(JOIN)
    core.accept_join()
    [partial] = core.recognized("상담원", 0.8, endpoint=False)
    assert isinstance(partial, SendMessage) and json.loads(partial.text)["event"] == "new:text"


START = "s LSB8K -a-general-ko"


def test_amivoice_busy_refuses_every_s_with_the_documented_text() -> None:
    core = AmiVoiceServerProtocol(fault=Fault.BUSY)
    for _ in range(2):
        assert core.receive_text(START, 0.0) == [SendText(f"s {CANT_CONNECT}")]


def test_amivoice_no_reply_and_malformed() -> None:
    assert AmiVoiceServerProtocol(fault=Fault.NO_REPLY).receive_text(START, 0.0) == []
    s, a = AmiVoiceServerProtocol(fault=Fault.MALFORMED).receive_text(START, 0.0)
    assert s == SendText("s") and isinstance(a, SendText) and a.text.startswith("A {")
    with pytest.raises(ValueError):
        json.loads(a.text[2:])


@pytest.mark.parametrize(
    ("fault", "after_s"),
    [
        (Fault.CLOSE_MID_UTTERANCE, [AbortRecognition(), CloseConnection(1011)]),
        (Fault.FEED_ERROR, [SendText(f"p {CANT_FEED}"), AbortRecognition()]),
        (Fault.TIMEOUT, [AbortRecognition(), SendText(f"e {NO_COMMUNICATION}"), CloseConnection()]),
    ],
)
def test_amivoice_fails_at_the_start_of_speech(fault: Fault, after_s: list[object]) -> None:
    core = AmiVoiceServerProtocol(fault=fault)
    [requested] = core.receive_text(START, 0.0)
    assert isinstance(requested, StartRequested)
    assert core.accept_start() == [SendText("s")]
    events = core.recognized([SpeechStarted(0.5)], 1.0)
    assert events == [SendText("S 500"), *after_s]
    assert core.session is None


def test_cpqd_malformed_answers_start_recognition_with_a_frame_that_is_no_asr_message() -> None:
    core = CpqdServerSession("1", now=0.0, fault=CpqdFault.MALFORMED)
    core.receive(b"ASR 2.4 CREATE_SESSION\n", 0.0)
    [reply] = core.receive(b"ASR 2.4 START_RECOGNITION\nContent-Length: 19\n\nbuiltin:slm/general", 0.0)
    assert isinstance(reply, CpqdSend) and not reply.data.startswith(b"ASR ")
