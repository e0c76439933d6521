"""The CPQD emulator's sans-I/O core, message by message, against protocol-notes part 1 and document 003."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.emulators.cpqd_audio import AudioInput
from ivr.emulators.cpqd_channels import ChannelRegistry
from ivr.emulators.cpqd_events import (
    AudioEnded,
    AudioReceived,
    CloseConnection,
    Event,
    RecognitionRequested,
    RecognitionStopped,
    SendMessage,
    UtteranceResult,
)
from ivr.emulators.cpqd_framing import MessageError, MessageType, parse_message
from ivr.emulators.cpqd_protocol import CpqdServerSession, Fault
from ivr.emulators.recognizer import TimedWord

HANDLE = "201604081523970032"
YES_NO = "#ABNF 1.0 UTF-8;\nlanguage pt-BR;\nroot $root;\n$root = sim | não;\n"


@dataclass(frozen=True)
class Reply:
    """A server message as a client reads it (written here from notes 1.2/1.4, not from the emulator)."""

    version: str
    type: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def read_reply(data: bytes) -> Reply:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "a server message ends its headers with a blank CRLF line"
    text = head.decode("ascii")  # header values are plain ASCII
    assert "\n" not in text.replace("\r\n", ""), "every line ends in CRLF"
    first, *lines = text.split("\r\n")
    asr, version, kind = first.split(" ")
    assert asr == "ASR"
    headers = dict(line.split(": ", 1) for line in lines)
    assert headers["Handle"] == HANDLE, "every server message carries the Handle"
    parsed = None
    if "Content-Length" in headers:
        assert int(headers["Content-Length"]) == len(body)
        parsed = json.loads(body.decode("utf-8"))
    else:
        assert body == b""
    return Reply(version, kind, headers, parsed)


def replies(events: list[Event]) -> list[Reply]:
    return [read_reply(e.data) for e in events if isinstance(e, SendMessage)]


def only_reply(events: list[Event]) -> Reply:
    found = replies(events)
    assert len(found) == 1, found
    return found[0]


def new_session(**kwargs: Any) -> CpqdServerSession:
    return CpqdServerSession(HANDLE, now=0.0, **kwargs)


def created(**kwargs: Any) -> CpqdServerSession:
    core = new_session(**kwargs)
    assert only_reply(core.receive(b"ASR 2.4 CREATE_SESSION\n", 0.0)).headers["Result"] == "SUCCESS"
    return core


def start(
    core: CpqdServerSession, headers: str = "", body: str = "builtin:slm/general", now: float = 0.0
) -> int:
    raw = body.encode()
    frame = f"ASR 2.4 START_RECOGNITION\n{headers}Content-Type: text/uri-list\nContent-Length: {len(raw)}\n\n"
    events = core.receive(frame.encode() + raw, now)
    assert len(events) == 1 and isinstance(events[0], RecognitionRequested), events
    recognition = events[0].recognition
    reply = only_reply(core.accept_recognition(recognition, now))
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == ("SUCCESS", "LISTENING")
    return recognition


def audio(pcm: bytes, last: bool = False) -> bytes:
    header = f"ASR 2.4 SEND_AUDIO\nLastPacket: {'true' if last else 'false'}\nContent-Length: {len(pcm)}\n"
    return (header + "Content-Type: audio/raw\n\n").encode() + pcm


def utterance(text: str = "sim", start: float = 0.5, end: float = 1.0, **kwargs: Any) -> UtteranceResult:
    return UtteranceResult(text, 0.9, start, end, **kwargs)


# --- framing: what the SDKs send (notes 1.2) ---

TOLERATED = [
    pytest.param(b"ASR 2.4 CREATE_SESSION\n", id="python-no-blank-line"),
    pytest.param(b"ASR 2.3 CREATE_SESSION\r\nUser-Agent: java\r\n\r\n", id="java-crlf"),
    pytest.param(b"ASR 2.4 CREATE_SESSION", id="no-newline-at-all"),
    pytest.param(b"ASR 2.4 create_session\n\n", id="lower-case-type"),
    pytest.param(b"ASR 2.4 CREATE_SESSION\r\nchannel-identifier:abc\r\n\r\n\r\n", id="stray-crlf"),
    pytest.param("ASR 2.4 CREATE_SESSION\nUser-Agent: ação\n\n", id="text-frame"),
]


@pytest.mark.parametrize("frame", TOLERATED)
def test_create_session_in_every_sdk_spelling(frame: bytes | str) -> None:
    core = new_session()
    reply = only_reply(core.receive(frame, 0.0))
    assert reply.type == "RESPONSE"
    assert reply.headers["Method"] == "CREATE_SESSION"
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == ("SUCCESS", "IDLE")
    assert "Error-Code" not in reply.headers


def test_reply_echoes_the_clients_protocol_version() -> None:
    core = new_session()
    assert only_reply(core.receive(b"ASR 2.3 CREATE_SESSION\r\n\r\n", 0.0)).version == "2.3"
    core = new_session()
    assert only_reply(core.receive(b"ASR 2.4 CREATE_SESSION\n", 0.0)).version == "2.4"


SET_PARAMETERS = [
    pytest.param("noInputTimeout.enabled: true\n", "noInputTimeout.enabled", "true", id="java"),
    pytest.param("noInputTimeout.enabled:1\n", "noInputTimeout.enabled", "true", id="cpp-1-no-space"),
    pytest.param("NOINPUTTIMEOUT.ENABLED: TRUE\n", "noInputTimeout.enabled", "true", id="upper-case"),
    pytest.param("Infer-emotion-enabled: False\n", "Infer-emotion-enabled", "false", id="python-bool"),
    pytest.param("decoder.continuousMode: 0\r\n", "decoder.continuousMode", "false", id="zero-crlf"),
    pytest.param("licenseManager.accountTag: x\n", "license.manager.accountTag", "x", id="cpp-spelling"),
    pytest.param("continuous-mode: true\n", "decoder.continuousMode", "true", id="alias"),
    pytest.param("decoder.maxSentences:   3   \n", "decoder.maxSentences", "3", id="padded"),
]


@pytest.mark.parametrize(("lines", "name", "value"), SET_PARAMETERS)
def test_set_parameters_tolerant_and_echoed(lines: str, name: str, value: str) -> None:
    core = created()
    reply = only_reply(core.receive(f"ASR 2.4 SET_PARAMETERS\n{lines}".encode(), 0.0))
    assert reply.headers["Result"] == "SUCCESS"
    assert reply.headers[name] == value
    assert core.parameters[name] == value


def test_headers_in_any_order_and_utf8_content_length() -> None:
    core = created()
    body = YES_NO.encode()  # "não": Content-Length counts bytes, not characters
    assert len(body) != len(YES_NO)
    frame = f"ASR 2.4 DEFINE_GRAMMAR\nContent-Length: {len(body)}\nContent-ID: yn\n"
    frame += "Content-Type: application/srgs\n\n"
    reply = only_reply(core.receive(frame.encode() + body + b"\r\n", 0.0))
    assert reply.headers["Result"] == "SUCCESS"
    assert core.grammars["yn"].text == YES_NO


def test_parse_message_takes_exactly_content_length_bytes() -> None:
    message = parse_message(
        b"ASR 2.4 SEND_AUDIO\r\nContent-Length: 4\r\nLastPacket: true\r\n\r\n\x00\x01\r\n\r\n"
    )
    assert message.body == b"\x00\x01\r\n"
    assert message.header("lastpacket") == "true"


MALFORMED = [
    pytest.param(b"HELLO", None, id="not-asr"),
    pytest.param(b"ASR 3.0 CREATE_SESSION\n\n", "CREATE_SESSION", id="major-3"),
    pytest.param(b"ASR 2.4 FLY_TO_MOON\n\n", None, id="unknown-type"),
    pytest.param(b"ASR 2.4 RESPONSE\n\n", "RESPONSE", id="server-message"),
    pytest.param(b"ASR 2.4 SEND_AUDIO\nContent-Length: 10\n\nabc", "SEND_AUDIO", id="short-body"),
    pytest.param(b"ASR 2.4 SEND_AUDIO\nContent-Length: ten\n\n", "SEND_AUDIO", id="bad-length"),
    pytest.param(b"ASR 2.4 SET_PARAMETERS\n\xff\xfe: x\n", None, id="not-utf8"),
    pytest.param(b"ASR 2.4 SET_PARAMETERS\nnoInputTimeout.value: soon\n", "SET_PARAMETERS", id="bad-integer"),
    pytest.param(
        b"ASR 2.4 SET_PARAMETERS\nnoInputTimeout.enabled: yes\n", "SET_PARAMETERS", id="bad-boolean"
    ),
    pytest.param(b"ASR 2.4 SET_PARAMETERS\nMedia-Type: audio/mp3\n", "SET_PARAMETERS", id="bad-media-type"),
]


@pytest.mark.parametrize(("frame", "method"), MALFORMED)
def test_malformed_messages_get_invalid_message_and_the_session_keeps_serving(
    frame: bytes, method: str | None
) -> None:
    core = created()
    reply = only_reply(core.receive(frame, 0.0))
    assert reply.headers["Result"] == "INVALID_MESSAGE"
    assert reply.headers.get("Method") == method
    assert reply.headers["Error-Code"] and reply.headers["Message"]
    assert ":" not in reply.headers["Message"] and "ASR" not in reply.headers["Message"]
    follow = only_reply(core.receive(b"ASR 2.4 GET_PARAMETERS\ndecoder.maxSentences:\n", 0.0))
    assert follow.headers["Result"] == "SUCCESS"


def test_parse_error_names_the_method_when_it_can() -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(b"ASR 2.4 DEFINE_GRAMMAR\nContent-Length: 99\n\nx")
    assert caught.value.method is MessageType.DEFINE_GRAMMAR


# --- the state machine ---

INVALID_ACTIONS = [
    pytest.param([], b"ASR 2.4 START_RECOGNITION\n\n", id="before-create-session"),
    pytest.param([b"ASR 2.4 CREATE_SESSION\n"], b"ASR 2.4 CREATE_SESSION\n", id="create-twice"),
    pytest.param([b"ASR 2.4 CREATE_SESSION\n"], audio(b"\0\0"), id="audio-without-recognition"),
    pytest.param([b"ASR 2.4 CREATE_SESSION\n"], b"ASR 2.4 CANCEL_RECOGNITION", id="cancel-idle"),
    pytest.param([b"ASR 2.4 CREATE_SESSION\n"], b"ASR 2.4 START_INPUT_TIMERS\n", id="timers-idle"),
    pytest.param(
        [b"ASR 2.4 CREATE_SESSION\n", b"ASR 2.4 RELEASE_SESSION"],
        b"ASR 2.4 CREATE_SESSION\n",
        id="after-release",
    ),
]


@pytest.mark.parametrize(("before", "frame"), INVALID_ACTIONS)
def test_invalid_actions(before: list[bytes], frame: bytes) -> None:
    core = new_session()
    for earlier in before:
        core.receive(earlier, 0.0)
    reply = only_reply(core.receive(frame, 0.0))
    assert reply.headers["Result"] == "INVALID_ACTION"
    assert reply.headers["Error-Code"]


@pytest.mark.parametrize(
    "frame",
    [
        b"ASR 2.4 START_RECOGNITION\nContent-Type: text/uri-list\nContent-Length: 19\n\nbuiltin:slm/general",
        b"ASR 2.4 SET_PARAMETERS\ndecoder.maxSentences: 2\n",
        b"ASR 2.4 DEFINE_GRAMMAR\nContent-ID: g\nContent-Length: 3\n\nsim",
        b"ASR 2.4 INTERPRET_TEXT\nText: sim\nContent-Type: text/uri-list\nContent-Length: 19\n\n"
        b"builtin:slm/general",
    ],
    ids=[
        "start-while-listening",
        "set-while-listening",
        "define-while-listening",
        "interpret-while-listening",
    ],
)
def test_requests_refused_while_a_recognition_runs(frame: bytes) -> None:
    core = created()
    start(core)
    reply = only_reply(core.receive(frame, 0.0))
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == ("INVALID_ACTION", "LISTENING")
    assert only_reply(core.receive(b"ASR 2.4 GET_PARAMETERS\n", 0.0)).headers["Result"] == "SUCCESS"


def test_a_whole_recognition_in_order() -> None:
    core = created(registry=ChannelRegistry())
    rid = start(
        core, headers="decoder.wordDetails: 2\nAccept: application/json\n", body="builtin:grammar/yes_no"
    )
    events = core.receive(audio(b"\1\0" * 800), 0.1)
    assert events == [AudioReceived(rid, b"\1\0" * 800)]
    assert core.receive(audio(b"", last=True), 0.2) == [AudioEnded(rid)]
    sos = only_reply(core.speech_started(rid, 0.4, 0.3))
    assert (sos.type, sos.headers["Session-Status"]) == ("START_OF_SPEECH", "RECOGNIZING")
    words = (TimedWord("sim", 0.5, 0.9, 0.9),)
    events = core.utterance(rid, utterance(words=words, tag="yes"), 0.4)
    end_of_speech, partial, final = replies(events)
    assert events[-1] == RecognitionStopped(rid)
    assert (end_of_speech.type, end_of_speech.headers["Session-Status"]) == ("END_OF_SPEECH", "RECOGNIZING")
    assert partial.headers["Result-Status"] == "PROCESSING" and partial.body is not None
    assert partial.body["final_result"] is False and partial.body["alternatives"][0]["text"] == "sim"
    assert final.headers["Result-Status"] == "RECOGNIZED" and final.headers["Session-Status"] == "IDLE"
    assert final.headers["Content-Type"] == "application/json"
    body = final.body
    assert body is not None
    assert body["result_status"] == "RECOGNIZED"
    assert (body["segment_index"], body["last_segment"], body["final_result"]) == (0, True, True)
    assert (body["start_time"], body["end_time"]) == (0.5, 1.0)
    alternative = body["alternatives"][0]
    assert alternative["score"] == 90 and alternative["lm"] == "builtin:grammar/yes_no"
    assert alternative["words"] == [{"text": "sim", "score": 90, "start_time": 0.5, "end_time": 0.9}]
    assert alternative["interpretations"] == ["yes"] and alternative["interpretation_scores"] == [90]
    # The flush after LastPacket comes too late: the recognition is over, nothing more is sent.
    assert core.audio_finished(rid, 0.5) == []


def test_words_only_with_word_details_and_no_classifier_objects_unless_enabled() -> None:
    core = created()
    rid = start(core)
    extra: dict[str, Any] = {"emotion_scores": {"p": {}}, "age_scores": {}}
    final = replies(core.utterance(rid, utterance(words=(TimedWord("sim", 0.5, 0.9, 0.9),), extra=extra), 0))[
        -1
    ]
    assert final.body is not None
    assert "words" not in final.body["alternatives"][0]
    assert "interpretations" not in final.body["alternatives"][0]  # an SLM result has no interpretation
    assert "emotion_scores" not in final.body
    rid = start(core, headers="Infer-emotion-enabled: true\n")
    final = replies(core.utterance(rid, utterance(extra=extra), 0))[-1]
    assert final.body is not None and "emotion_scores" in final.body and "age_scores" not in final.body


@pytest.mark.parametrize(
    ("text", "threshold", "status"),
    [("sim", "0", "RECOGNIZED"), ("", "0", "NO_MATCH"), ("sim", "95", "NO_MATCH")],
)
def test_no_match(text: str, threshold: str, status: str) -> None:
    core = created()
    rid = start(core, headers=f"decoder.confidenceThreshold: {threshold}\n")
    final = replies(core.utterance(rid, utterance(text), 0.0))[-1]
    assert final.headers["Result-Status"] == status
    assert final.body is not None and final.body["result_status"] == status
    if status == "NO_MATCH":
        assert final.body["alternatives"] == []


def test_end_of_audio_without_speech_is_no_speech() -> None:
    core = created()
    rid = start(core)
    core.receive(audio(b"\0\0" * 100, last=True), 0.0)
    final = only_reply(core.audio_finished(rid, 0.1))
    assert final.headers["Result-Status"] == "NO_SPEECH" and final.headers["Session-Status"] == "IDLE"


def test_continuous_mode_segments() -> None:
    core = created()
    rid = start(core, headers="decoder.continuousMode: true\n")
    first = replies(core.utterance(rid, utterance("um", 0.5, 1.0), 0.0))
    assert [r.type for r in first] == [
        "START_OF_SPEECH",
        "END_OF_SPEECH",
        "RECOGNITION_RESULT",
        "RECOGNITION_RESULT",
    ]
    body = first[-1].body
    assert body is not None and (body["segment_index"], body["last_segment"], body["final_result"]) == (
        0,
        False,
        True,
    )
    assert first[-1].headers["Session-Status"] == "LISTENING"
    core.receive(audio(b"\0\0", last=True), 0.0)
    held = replies(core.utterance(rid, utterance("dois", 2.0, 2.5), 0.0))
    assert [r.headers.get("Result-Status") for r in held] == [None, None, "PROCESSING"]  # the final is held
    last = only_reply(core.audio_finished(rid, 0.0))
    assert last.body is not None
    assert (last.body["segment_index"], last.body["last_segment"], last.body["alternatives"][0]["text"]) == (
        1,
        True,
        "dois",
    )
    assert last.headers["Session-Status"] == "IDLE"


def test_continuous_mode_ends_with_an_empty_last_segment_when_the_audio_ends_in_silence() -> None:
    core = created()
    rid = start(core, headers="decoder.continuousMode: true\n")
    core.utterance(rid, utterance("um"), 0.0)
    core.receive(audio(b"\0\0", last=True), 0.0)
    last = only_reply(core.audio_finished(rid, 0.0))
    assert last.body is not None
    assert (last.body["segment_index"], last.body["last_segment"], last.body["result_status"]) == (
        1,
        True,
        "NO_SPEECH",
    )


def test_no_input_timeout_by_audio_time() -> None:
    core = created()
    rid = start(core, headers="noInputTimeout.enabled: true\nnoInputTimeout.value: 1000\n")
    core.receive(audio(b"\0\0" * 16000), 0.0)
    assert core.audio_processed(rid, 0.9, 0.01) == []
    events = core.audio_processed(rid, 1.0, 0.02)
    final = only_reply(events)
    assert final.headers["Result-Status"] == "NO_INPUT_TIMEOUT" and final.headers["Session-Status"] == "IDLE"
    assert RecognitionStopped(rid) in events


def test_no_input_timeout_by_the_clock_once_the_recognizer_caught_up() -> None:
    core = created()
    rid = start(core, headers="noInputTimeout.enabled: 1\nnoInputTimeout.value: 500\n", now=10.0)
    assert core.next_deadline() == 10.5
    core.receive(audio(b"\0\0" * 800), 10.1)
    assert core.next_deadline() is None  # the recognizer is behind: audio_processed will check
    assert core.audio_processed(rid, 0.1, 10.2) == []
    assert core.next_deadline() == 10.5
    assert core.on_timer(10.4) == []
    assert only_reply(core.on_timer(10.5)).headers["Result-Status"] == "NO_INPUT_TIMEOUT"


def test_start_input_timers_starts_the_no_input_timer() -> None:
    core = created()
    headers = "decoder.startInputTimers: false\nnoInputTimeout.enabled: true\nnoInputTimeout.value: 1000\n"
    rid = start(core, headers=headers)
    core.receive(audio(b"\0\0" * 16000), 0.0)
    assert core.audio_processed(rid, 2.0, 0.1) == []  # no timer running
    reply = only_reply(core.receive(b"ASR 2.4 START_INPUT_TIMERS\n", 0.2))
    assert (reply.headers["Method"], reply.headers["Result"]) == ("START_INPUT_TIMERS", "SUCCESS")
    assert core.audio_processed(rid, 2.0 + 0.9, 0.3) == []  # the timer started at the 2 s received so far
    assert only_reply(core.audio_processed(rid, 3.0, 0.4)).headers["Result-Status"] == "NO_INPUT_TIMEOUT"


def test_speech_stops_the_no_input_timer() -> None:
    core = created()
    rid = start(core, headers="noInputTimeout.enabled: true\nnoInputTimeout.value: 1000\n")
    core.receive(audio(b"\0\0" * 24000), 0.0)
    core.speech_started(rid, 0.5, 0.0)
    assert core.audio_processed(rid, 3.0, 0.0) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("recognitionTimeout.enabled: true\nrecognitionTimeout.value: 2000\n", "RECOGNITION_TIMEOUT"),
        ("endpointer.maxSegmentDuration: 2000\n", "MAX_SPEECH"),
    ],
)
def test_speech_timers(headers: str, status: str) -> None:
    core = created()
    rid = start(core, headers=headers)
    core.speech_started(rid, 1.0, 0.0)
    assert core.audio_processed(rid, 2.9, 0.0) == []
    final = only_reply(core.audio_processed(rid, 3.0, 0.0))
    assert final.headers["Result-Status"] == status and final.headers["Session-Status"] == "IDLE"


def test_cancel_then_in_flight_audio() -> None:
    core = created()
    rid = start(core)
    events = core.receive(b"ASR 2.4 CANCEL_RECOGNITION", 0.0)
    assert RecognitionStopped(rid) in events
    reply = only_reply(events)  # the RESPONSE is the answer: no RECOGNITION_RESULT (as MRCP's STOP)
    assert (reply.headers["Method"], reply.headers["Result"], reply.headers["Session-Status"]) == (
        "CANCEL_RECOGNITION",
        "SUCCESS",
        "IDLE",
    )
    for last in (False, True):  # what the SDK still had in flight, up to its LastPacket
        late = only_reply(core.receive(audio(b"\0\0", last=last), 0.0))
        assert late.headers["Result"] == "INVALID_ACTION" and "Error-Code" not in late.headers
    after = only_reply(core.receive(audio(b"\0\0"), 0.0))
    assert after.headers["Result"] == "INVALID_ACTION" and after.headers["Error-Code"]


def test_cancel_crossing_the_result_succeeds() -> None:
    core = created()
    rid = start(core)
    core.utterance(rid, utterance(), 0.0)
    reply = only_reply(core.receive(b"ASR 2.4 CANCEL_RECOGNITION", 0.0))
    assert reply.headers["Result"] == "SUCCESS" and "Error-Code" not in reply.headers


def test_release_during_recognition_sends_canceled() -> None:
    registry = ChannelRegistry()
    core = new_session(registry=registry)
    core.receive(b"ASR 2.4 CREATE_SESSION\nChannel-Identifier: c1\n", 0.0)
    rid = start(core)
    events = core.receive(b"ASR 2.4 RELEASE_SESSION", 0.0)
    canceled, response = replies(events)
    assert canceled.headers["Result-Status"] == "CANCELED"
    assert (response.headers["Method"], response.headers["Result"]) == ("RELEASE_SESSION", "SUCCESS")
    assert RecognitionStopped(rid) in events
    assert registry.status("c1") == {
        "channel_identifier": "c1",
        "sessions": [HANDLE],
        "sessions_created": 1,
        "sessions_released": 1,
        "recognitions": 1,
        "verify_buffer": {"utterances": 0, "seconds": 0.0, "sessions": []},
    }


def test_get_parameters_named_with_empty_values_and_all() -> None:
    core = created()
    core.receive(b"ASR 2.4 SET_PARAMETERS\nInfer-gender-enabled: true\n", 0.0)
    reply = only_reply(
        core.receive(b"ASR 2.4 GET_PARAMETERS\r\nInfer-gender-enabled: \r\nnoInputTimeout.value: \r\n\r\n", 0)
    )
    assert reply.headers["Infer-gender-enabled"] == "true"
    assert reply.headers["noInputTimeout.value"].isdigit()
    assert "decoder.maxSentences" not in reply.headers
    everything = only_reply(core.receive(b"ASR 2.4 GET_PARAMETERS\n", 0.0)).headers
    for name in (
        "Infer-age-enabled",
        "Infer-gender-enabled",
        "Infer-emotion-enabled",
        "decoder.continuousMode",
    ):
        assert name in everything
    assert everything["Verify-Buffer-Utterances"] == "0"


def test_verify_buffer_is_shared_by_the_sessions_of_one_channel() -> None:
    registry = ChannelRegistry()
    pcm = b"\1\0" * 8000  # one second
    first = new_session(registry=registry)
    first.receive(b"ASR 2.4 CREATE_SESSION\nChannel-Identifier: 698dc19d489c4e4db73e28a713eab07b\n", 0.0)
    rid = start(first, headers="Verify-Buffer-Utterance: true\n")
    first.utterance(rid, utterance(audio=pcm), 0.0)
    rid = start(first, headers="Ver-Buffer-Utterance: false\n")  # the C++ SDK's spelling
    first.utterance(rid, utterance(audio=pcm), 0.0)
    second = CpqdServerSession("2", now=0.0, registry=registry)
    second.receive(b"ASR 2.4 CREATE_SESSION\nChannel-Identifier: 698dc19d489c4e4db73e28a713eab07b\n", 0.0)
    events = second.receive(
        b"ASR 2.4 GET_PARAMETERS\nVerify-Buffer-Utterances:\nVerify-Buffer-Duration:\n", 0.0
    )
    data = events[0]
    assert isinstance(data, SendMessage)
    assert (
        b"Verify-Buffer-Utterances: 1\r\n" in data.data and b"Verify-Buffer-Duration: 1.000\r\n" in data.data
    )
    status = registry.status("698dc19d489c4e4db73e28a713eab07b")
    assert status is not None
    assert status["sessions"] == [HANDLE, "2"] and status["recognitions"] == 2
    assert status["verify_buffer"] == {"utterances": 1, "seconds": 1.0, "sessions": [HANDLE]}


def test_verify_buffer_is_bounded() -> None:
    registry = ChannelRegistry(max_utterances=3, max_seconds=100.0)
    for i in range(5):
        registry.keep_utterance("c", str(i), b"\0\0" * 8000, 8000)
    assert [h for h, _, _ in registry.record("c").verify_buffer] == ["2", "3", "4"]


@pytest.mark.parametrize(
    ("lm", "text", "status", "interpretation"),
    [
        ("session:yn", "sim", "RECOGNIZED", "sim"),
        ("session:yn", "talvez", "NO_MATCH", None),
        ("builtin:slm/general", "qualquer coisa", "RECOGNIZED", None),
    ],
)
def test_interpret_text(lm: str, text: str, status: str, interpretation: str | None) -> None:
    core = created()
    body = YES_NO.encode()
    core.receive(
        f"ASR 2.4 DEFINE_GRAMMAR\nContent-ID: yn\nContent-Length: {len(body)}\n\n".encode() + body, 0.0
    )
    frame = f"ASR 2.4 INTERPRET_TEXT\nText: {text}\nContent-Type: text/uri-list\n"
    frame += f"Content-Length: {len(lm)}\n\n{lm}"
    response, result = replies(core.receive(frame.encode(), 0.0))
    assert (response.headers["Method"], response.headers["Result"]) == ("INTERPRET_TEXT", "SUCCESS")
    assert result.headers["Result-Status"] == status
    assert result.body is not None
    if interpretation is not None:
        assert result.body["alternatives"][0]["interpretations"] == [interpretation]


@pytest.mark.parametrize(
    ("body", "content_type", "result"),
    [
        ("session:nope", "text/uri-list", "FAILURE"),
        ("builtin:grammar/unknown", "text/uri-list", "FAILURE"),
        ("file:///etc/passwd", "text/uri-list", "FAILURE"),
        ("", "text/uri-list", "INVALID_MESSAGE"),
        ("sim", "image/png", "INVALID_MESSAGE"),
    ],
)
def test_start_recognition_language_model_errors(body: str, content_type: str, result: str) -> None:
    core = created()
    raw = body.encode()
    frame = f"ASR 2.4 START_RECOGNITION\nContent-Type: {content_type}\nContent-Length: {len(raw)}\n\n"
    reply = only_reply(core.receive(frame.encode() + raw, 0.0))
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == (result, "IDLE")
    assert reply.headers["Error-Code"]


def test_inline_grammar_in_start_recognition() -> None:
    core = created()
    body = YES_NO.encode()
    frame = "ASR 2.4 START_RECOGNITION\nContent-ID: gram\nContent-Type: application/srgs\n"
    frame += f"Content-Length: {len(body)}\n\n"
    (request,) = core.receive(frame.encode() + body, 0.0)
    assert isinstance(request, RecognitionRequested)
    assert (request.grammar.uri, request.grammar.text) == ("session:gram", YES_NO)


def test_first_grammar_wins_over_the_slm() -> None:
    core = created()
    body = YES_NO.encode()
    core.receive(
        f"ASR 2.3 DEFINE_GRAMMAR\nContent-ID: pizza\nContent-Length: {len(body)}\n\n".encode() + body, 0
    )
    uris = b"session:pizza\nbuiltin:slm/general\n"
    frame = b"ASR 2.3 START_RECOGNITION\r\nContent-Type: text/uri-list\r\nContent-Length: %d\r\n\r\n" % len(
        uris
    )
    (request,) = core.receive(frame + uris, 0.0)
    assert isinstance(request, RecognitionRequested) and request.grammar.uri == "session:pizza"
    assert request.sample_rate == 8000


def test_rejected_recognition_answers_failure() -> None:
    core = created()
    (request,) = core.receive(b"ASR 2.4 START_RECOGNITION\nContent-Length: 19\n\nbuiltin:slm/general", 0.0)
    assert isinstance(request, RecognitionRequested)
    reply = only_reply(core.reject_recognition(request.recognition, "no engine for xx", 0.0))
    assert (reply.headers["Method"], reply.headers["Result"], reply.headers["Session-Status"]) == (
        "START_RECOGNITION",
        "FAILURE",
        "IDLE",
    )


@pytest.mark.parametrize(
    ("fault", "result"), [(Fault.START_FAILURE, "FAILURE"), (Fault.INVALID_ACTION, "INVALID_ACTION")]
)
def test_start_faults(fault: Fault, result: str) -> None:
    core = created(fault=fault)
    reply = only_reply(
        core.receive(b"ASR 2.4 START_RECOGNITION\nContent-Length: 19\n\nbuiltin:slm/general", 0.0)
    )
    assert (reply.headers["Method"], reply.headers["Result"]) == ("START_RECOGNITION", result)


def test_no_reply_fault_goes_silent() -> None:
    core = created(fault=Fault.NO_REPLY)
    assert core.receive(b"ASR 2.4 START_RECOGNITION\nContent-Length: 19\n\nbuiltin:slm/general", 0.0) == []
    assert core.receive(b"ASR 2.4 GET_PARAMETERS\n", 0.0) == []


def test_close_mid_utterance_fault() -> None:
    core = created(fault=Fault.CLOSE_MID_UTTERANCE)
    rid = start(core)
    events = core.speech_started(rid, 0.3, 0.0)
    assert only_reply(events).type == "START_OF_SPEECH"
    assert isinstance(events[-1], CloseConnection)
    assert core.utterance(rid, utterance(), 0.0) == []


def test_idle_timeout_closes_with_a_timeout_reason() -> None:
    core = created(idle_timeout=5.0)
    core.receive(b"ASR 2.4 GET_PARAMETERS\n", 2.0)
    assert core.next_deadline() == 7.0
    assert core.on_timer(6.9) == []
    (close,) = core.on_timer(7.0)
    assert isinstance(close, CloseConnection) and "timeout." in close.reason  # the Java SDK looks for it


# --- audio ---


def wav_header(rate: int = 8000, channels: int = 1, bits: int = 16, data: int = 0) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    extra = b"LIST" + struct.pack("<I", 4) + b"INFO"
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + extra
        + (b"data" + struct.pack("<I", data))
    )


def test_wav_header_is_stripped_even_split_across_frames() -> None:
    stream = AudioInput(8000)
    header = wav_header(data=6)
    assert stream.feed(header[:10]) == b""
    assert stream.feed(header[10:] + b"\1\2\3") == b"\1\2"
    assert stream.feed(b"\4\5\6") == b"\3\4\5\6"
    assert stream.received == 6


@pytest.mark.parametrize(
    ("header", "message"),
    [(wav_header(rate=16000), "16000 Hz"), (wav_header(channels=2), "mono"), (wav_header(bits=8), "16-bit")],
)
def test_wav_audio_the_session_cannot_take(header: bytes, message: str) -> None:
    core = created()
    rid = start(core)
    events = core.receive(audio(header + b"\0\0"), 0.0)
    response, final = replies(events)
    assert (response.headers["Method"], response.headers["Result"]) == ("SEND_AUDIO", "FAILURE")
    assert message in response.headers["Message"]
    assert final.headers["Result-Status"] == "FAILURE"
    assert RecognitionStopped(rid) in events


def test_raw_audio_keeps_samples_whole_and_wav_label_on_raw_audio_is_fine() -> None:
    core = created()
    rid = start(core)
    assert core.receive(audio(b"\1\2\3"), 0.0) == [AudioReceived(rid, b"\1\2")]
    frame = b"ASR 2.4 SEND_AUDIO\nLastPacket: true\nContent-Length: 1\nContent-Type: audio/wav\n\n\4"
    assert core.receive(frame, 0.0) == [AudioReceived(rid, b"\3\4"), AudioEnded(rid)]


# --- anything at all ---


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.text(max_size=200), max_size=6))
def test_arbitrary_frames_never_raise_and_get_at_most_one_reply(frames: list[bytes | str]) -> None:
    core = new_session()
    for frame in frames:
        events = core.receive(frame, 0.0)
        sent = [e for e in events if isinstance(e, SendMessage)]
        assert len(sent) <= 1
        for event in sent:
            assert read_reply(event.data).type == "RESPONSE"


_LINE_ENDS = st.sampled_from(["\n", "\r\n"])
_TYPES = st.sampled_from([t.value for t in MessageType] + ["BOGUS"])
_HEADER = st.tuples(
    st.sampled_from(
        ["Content-Length", "LastPacket", "decoder.maxSentences", "Channel-Identifier", "Text", "X"]
    ),
    st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_TYPES, st.lists(_HEADER, max_size=4), st.binary(max_size=40), _LINE_ENDS, st.booleans()),
        max_size=8,
    )
)
def test_almost_valid_messages_get_a_reply_or_nothing(
    messages: list[tuple[str, list[tuple[str, str]], bytes, str, bool]],
) -> None:
    core = new_session()
    for kind, headers, body, eol, colon_space in messages:
        lines = [f"ASR 2.4 {kind}"] + [f"{k}:{' ' if colon_space else ''}{v}" for k, v in headers]
        frame = (eol.join(lines) + eol + eol).encode() + body
        events = core.receive(frame, 0.0)
        for event in events:
            if isinstance(event, RecognitionRequested):
                core.accept_recognition(event.recognition, 0.0)
        assert len([e for e in events if isinstance(e, SendMessage)]) <= 1
