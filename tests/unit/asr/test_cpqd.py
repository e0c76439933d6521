"""CpqdCodec: every server message kind and result status, session reuse, failures, and client tolerance."""

from __future__ import annotations

import asyncio
import json
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.asr.base import (
    Alternative,
    AudioFormat,
    Classifier,
    EndOfSpeech,
    Final,
    Grammar,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    RecognizerCodec,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    Timers,
    UnsupportedRequest,
    VendorError,
    Word,
)
from ivr.asr.cpqd import (
    CpqdCodec,
    Parameters,
    codec_from_options,
    phrases_grammar,
    validate_options,
    vendor_language,
)
from ivr.asr.memory import MemoryConnection
from ivr.asr.registry import make_codec
from ivr.asr.stream import RecognizerStream
from tests.tools import SHARED

CHANNEL = "698dc19d489c4e4db73e28a713eab07b"
NOW = 10.0
AUDIO = SHARED / "audio/cpqd-sdk"


def server(kind: str, headers: dict[str, str] | None = None, body: bytes = b"", eol: str = "\r\n") -> bytes:
    """A server message as CPQD servers frame it (CRLF, Handle first, Content-Length/Type with a body)."""
    lines = [f"ASR 2.4 {kind}", "Handle: 201604081523970032"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    return (eol.join(lines) + eol + eol).encode() + body


def response(method: str, result: str = "SUCCESS", status: str | None = "IDLE", **extra: str) -> bytes:
    headers = {"Method": method, "Result": result}
    if status is not None:
        headers["Session-Status"] = status
    return server("RESPONSE", headers | {k.replace("_", "-"): v for k, v in extra.items()})


def result(
    status: str | None = "RECOGNIZED", body: dict[str, object] | None = None, session: str = "IDLE"
) -> bytes:
    headers = {"Session-Status": session}
    if status is not None:
        headers["Result-Status"] = status
    return server("RECOGNITION_RESULT", headers, json.dumps(body).encode() if body is not None else b"")


def recognized(text: str, score: int = 90, **fields: object) -> dict[str, object]:
    alternative = {"text": text, "score": score, "lm": "builtin:slm/general"}
    return {"alternatives": [alternative], "result_status": "RECOGNIZED", **fields}


def parsed(frame: bytes | str) -> tuple[str, dict[str, str], bytes]:
    """A client frame split the plain way (independent of the codec's own parser)."""
    assert isinstance(frame, bytes), "CPQD SDKs send every message as a binary frame"
    head, _, body = frame.partition(b"\r\n\r\n")
    first, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return first, headers, body


def sent(codec: CpqdCodec) -> list[tuple[str, dict[str, str], bytes]]:
    return [parsed(frame) for frame in codec.data_to_send()]


def kinds(codec: CpqdCodec) -> list[str]:
    return [first.split()[2] for first, _, _ in sent(codec)]


def opened(version: str = "2.4", channel_id: str = CHANNEL) -> CpqdCodec:
    codec = CpqdCodec(channel_id=channel_id, version=version)
    codec.open(NOW)
    codec.data_to_send()
    assert codec.receive(response("CREATE_SESSION"), NOW) == []
    assert codec.state is SessionState.READY and codec.handle == "201604081523970032"
    return codec


def listening(request: RecognitionRequest | None = None, codec: CpqdCodec | None = None) -> CpqdCodec:
    codec = codec or opened()
    request = request or RecognitionRequest(7, "pt-BR")
    assert codec.send(request, NOW) == []
    codec.data_to_send()
    assert codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW) == [
        RecognitionStarted(request.id)
    ]
    assert codec.state is SessionState.LISTENING
    return codec


# ---- session


def test_implements_the_recognizer_interface() -> None:
    codec = CpqdCodec()
    assert isinstance(codec, RecognizerCodec)
    assert codec.vendor == "cpqd" and codec.chunk_ms == 100 and codec.deadline() is None
    assert codec.state is SessionState.OPENING  # nothing can be sent before the session exists
    with pytest.raises(RuntimeError, match="opening"):
        codec.send(RecognitionRequest(1, "pt-BR"), NOW)


@pytest.mark.parametrize(
    ("version", "channel_id", "expected"),
    [
        ("2.4", CHANNEL, ["ASR 2.4 CREATE_SESSION", f"Channel-Identifier: {CHANNEL}"]),
        ("2.4", "", ["ASR 2.4 CREATE_SESSION"]),
        ("2.3", CHANNEL, ["ASR 2.3 CREATE_SESSION"]),  # Channel-Identifier is a 2.4 header
    ],
)
def test_open_creates_the_session(version: str, channel_id: str, expected: list[str]) -> None:
    codec = CpqdCodec(channel_id=channel_id, version=version)
    codec.open(NOW)
    codec.open(NOW)  # once per connection
    assert codec.data_to_send() == [("\r\n".join(expected) + "\r\n\r\n").encode()]
    assert codec.state is SessionState.OPENING


@pytest.mark.parametrize("bad", ["698dc19d", "698dc19d-489c-4e4d-b73e-28a713eab07b", CHANNEL + "\r\nX: y"])
def test_channel_identifier_is_32_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="32 hex"):
        CpqdCodec(channel_id=bad)


def test_refused_session_is_closed_with_the_vendor_error() -> None:
    codec = CpqdCodec(channel_id=CHANNEL)
    codec.open(NOW)
    refusal = response("CREATE_SESSION", "FAILURE", Error_Code="016", Message="connection-timeout")
    assert codec.receive(refusal, NOW) == [
        SessionClosed(VendorError("016", "CPQD CREATE_SESSION FAILURE: connection-timeout"))
    ]
    assert codec.state is SessionState.CLOSED


def test_session_reuse_one_create_session_two_recognitions() -> None:
    codec = CpqdCodec(channel_id=CHANNEL)
    codec.open(NOW)
    wire = sent(codec)
    codec.receive(response("CREATE_SESSION", Expires="60"), NOW)
    assert codec.expires == "60"
    for recognition in (1, 2):
        codec.send(RecognitionRequest(recognition, "pt-BR", channel_id=CHANNEL), NOW)
        codec.receive(response("SET_PARAMETERS"), NOW)
        codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
        codec.audio(b"\x00\x01" * 800, NOW)
        codec.end(NOW)
        [final] = codec.receive(result(body=recognized("sim")), NOW)
        assert final == Final(recognition, ResultStatus.RECOGNIZED, (Alternative("sim", 0.9),))
        assert codec.state is SessionState.READY
        wire += sent(codec)
    names = [first.split()[2] for first, _, _ in wire]
    assert names.count("CREATE_SESSION") == 1 and names.count("START_RECOGNITION") == 2
    assert names.count("SET_PARAMETERS") == 1  # the second request asks for the same settings


def test_release_session() -> None:
    codec = opened()
    assert codec.close(NOW) == []
    assert kinds(codec) == ["RELEASE_SESSION"]
    assert codec.state is SessionState.CLOSING
    assert codec.receive(response("RELEASE_SESSION", status=None), NOW) == [SessionClosed()]
    assert codec.state is SessionState.CLOSED
    assert codec.receive(result(body=recognized("x")), NOW) == []


def test_close_during_a_recognition_cancels_it_first() -> None:
    codec = listening()
    assert codec.close(NOW) == [Final(7, ResultStatus.CANCELLED)]
    assert kinds(codec) == ["CANCEL_RECOGNITION", "RELEASE_SESSION"]
    assert codec.receive(response("CANCEL_RECOGNITION"), NOW) == []
    assert codec.state is SessionState.CLOSING  # a cancel's answer does not reopen a closing session


def test_close_before_open_sends_nothing() -> None:
    codec = CpqdCodec()
    assert codec.close(NOW) == [SessionClosed()]
    assert codec.data_to_send() == [] and codec.state is SessionState.CLOSED


def test_connection_lost_mid_recognition() -> None:
    codec = listening()
    error = VendorError("1006", "connection lost")
    assert codec.connection_lost(error) == [Final(7, ResultStatus.ERROR, error=error), SessionClosed(error)]
    assert codec.state is SessionState.CLOSED and codec.data_to_send() == []


# ---- requests


@pytest.mark.parametrize(
    ("tag", "code"), [("pt-BR", "pt-BR"), ("pt", "pt-BR"), ("pt_br", "pt-BR"), ("ko", "ko"), ("ko-KR", "ko")]
)
def test_languages(tag: str, code: str) -> None:
    assert vendor_language(tag) == code


@pytest.mark.parametrize("tag", ["pt-PT", "en-US", "ja", "", "xx"])
def test_a_language_cpqd_lacks_is_refused(tag: str) -> None:
    codec = opened()
    with pytest.raises(UnsupportedRequest, match="language"):
        codec.send(RecognitionRequest(1, tag), NOW)
    assert codec.data_to_send() == [] and codec.state is SessionState.READY


@pytest.mark.parametrize("audio_format", [AudioFormat.PCMU, AudioFormat.PCMA])
def test_g711_is_refused(audio_format: AudioFormat) -> None:
    with pytest.raises(UnsupportedRequest, match="audio/raw"):
        opened().send(RecognitionRequest(1, "pt-BR", audio_format=audio_format), NOW)


def set_parameters(request: RecognitionRequest, version: str = "2.4") -> dict[str, str]:
    codec = opened(version)
    codec.send(request, NOW)
    [(first, headers, body)] = [m for m in sent(codec) if "SET_PARAMETERS" in m[0]]
    assert first == f"ASR {version} SET_PARAMETERS" and body == b""
    return headers


def start_recognition(
    request: RecognitionRequest, codec: CpqdCodec | None = None
) -> tuple[dict[str, str], str]:
    codec = codec or opened()
    codec.send(request, NOW)
    [(_, headers, body)] = [m for m in sent(codec) if "START_RECOGNITION" in m[0]]
    assert int(headers["Content-Length"]) == len(body)
    return headers, body.decode()


@pytest.mark.parametrize(
    ("timers", "expected"),
    [
        (
            Timers(),
            {
                "noInputTimeout.enabled": "true",
                "noInputTimeout.value": "5000",
                "recognitionTimeout.enabled": "false",
            },
        ),
        (Timers(no_input=0), {"noInputTimeout.enabled": "false"}),
        (
            Timers(no_input=2.5, max_speech=12),
            {
                "noInputTimeout.value": "2500",
                "recognitionTimeout.enabled": "true",
                "recognitionTimeout.value": "12000",
            },
        ),
    ],
)
def test_timers_become_parameters_with_input_timers_off(timers: Timers, expected: dict[str, str]) -> None:
    headers = set_parameters(RecognitionRequest(1, "pt-BR", timers=timers))
    assert headers["decoder.startInputTimers"] == "false"  # started by START_INPUT_TIMERS after the prompt
    assert expected.items() <= headers.items()


def test_end_of_speech_silence_goes_on_start_recognition() -> None:
    headers, _ = start_recognition(RecognitionRequest(1, "pt-BR", timers=Timers(speech_complete=0.8)))
    assert headers["endpointer.waitEnd"] == "800"
    headers, _ = start_recognition(RecognitionRequest(1, "pt-BR", timers=Timers(speech_incomplete=1.2)))
    assert headers["endpointer.waitEnd"] == "1200"
    headers, _ = start_recognition(RecognitionRequest(1, "pt-BR"))
    assert "endpointer.waitEnd" not in headers


def test_nbest_threshold_classifiers() -> None:
    request = RecognitionRequest(
        1,
        "pt-BR",
        n_best=3,
        confidence_threshold=0.45,
        classifiers=frozenset({Classifier.EMOTION, Classifier.AGE}),
    )
    headers = set_parameters(request)
    assert headers["decoder.maxSentences"] == "3" and headers["decoder.confidenceThreshold"] == "45"
    assert headers["Infer-emotion-enabled"] == "true" and headers["Infer-age-enabled"] == "true"
    assert headers["Infer-gender-enabled"] == "false" and headers["decoder.continuousMode"] == "false"


def test_version_2_3_sends_no_2_4_headers_and_refuses_2_4_features() -> None:
    headers = set_parameters(RecognitionRequest(1, "pt-BR"), version="2.3")
    assert not [name for name in headers if name.startswith("Infer-")]
    codec = opened("2.3")
    for request in (
        RecognitionRequest(1, "pt-BR", classifiers=frozenset({Classifier.GENDER})),
        RecognitionRequest(1, "pt-BR", verify_buffer=True),
    ):
        with pytest.raises(UnsupportedRequest, match=r"2\.4"):
            codec.send(request, NOW)
    codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    assert all(first.startswith("ASR 2.3 ") for first, _, _ in sent(codec))


def test_parameters_are_sent_only_when_they_change() -> None:
    codec = opened()
    first = RecognitionRequest(1, "pt-BR", classifiers=frozenset({Classifier.EMOTION}))
    codec.send(first, NOW)
    assert kinds(codec) == ["SET_PARAMETERS", "START_RECOGNITION"]
    codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    codec.receive(result(body=recognized("sim")), NOW)
    codec.send(RecognitionRequest(2, "pt-BR", classifiers=frozenset({Classifier.EMOTION})), NOW)
    assert kinds(codec) == ["START_RECOGNITION"]
    codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    codec.receive(result(body=recognized("sim")), NOW)
    codec.send(RecognitionRequest(3, "pt-BR", n_best=2), NOW)  # emotion off again: nothing lingers
    [(_, headers, _), _] = sent(codec)
    assert headers == {"decoder.maxSentences": "2", "Infer-emotion-enabled": "false"}


def test_verify_buffer_utterance_and_media_type() -> None:
    headers, body = start_recognition(RecognitionRequest(1, "pt-BR", verify_buffer=True, channel_id=CHANNEL))
    assert headers["Verify-Buffer-Utterance"] == "true" and headers["Media-Type"] == "audio/raw"
    assert headers["Content-Type"] == "text/uri-list" and headers["Accept"] == "application/json"
    assert body == "builtin:slm/general\n"
    headers, _ = start_recognition(RecognitionRequest(1, "pt-BR"))
    assert "Verify-Buffer-Utterance" not in headers


def test_channel_identifier_must_match_and_verify_needs_one() -> None:
    with pytest.raises(UnsupportedRequest, match="Channel-Identifier"):
        opened().send(RecognitionRequest(1, "pt-BR", channel_id="0" * 32), NOW)
    with pytest.raises(UnsupportedRequest, match="Channel-Identifier"):
        opened(channel_id="").send(RecognitionRequest(1, "pt-BR", verify_buffer=True), NOW)


def test_grammars() -> None:
    codec = opened()
    srgs = (AUDIO / "yes_no.gram").read_text()
    request = RecognitionRequest(1, "pt-BR", grammar=Grammar(srgs=srgs, uri="builtin:slm/general"))
    codec.send(request, NOW)
    messages = sent(codec)
    [(_, define, grammar)] = [m for m in messages if "DEFINE_GRAMMAR" in m[0]]
    assert define["Content-Type"] == "application/srgs" and grammar.decode() == srgs
    [(_, _, uris)] = [m for m in messages if "START_RECOGNITION" in m[0]]
    assert uris.decode() == f"session:{define['Content-ID']}\nbuiltin:slm/general\n"
    codec.receive(response("DEFINE_GRAMMAR"), NOW)
    codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    codec.cancel(NOW)
    codec.receive(response("CANCEL_RECOGNITION"), NOW)
    codec.data_to_send()
    codec.send(RecognitionRequest(2, "pt-BR", grammar=Grammar(srgs=srgs)), NOW)
    assert kinds(codec) == ["START_RECOGNITION"]  # defined once per session


def test_xml_grammar_and_phrases() -> None:
    xml = '<?xml version="1.0"?><grammar xmlns="http://www.w3.org/2001/06/grammar" root="r"/>'
    codec = opened()
    codec.send(RecognitionRequest(1, "pt-BR", grammar=Grammar(srgs=xml)), NOW)
    assert sent(codec)[1][1]["Content-Type"] == "application/srgs+xml"
    codec = opened()
    codec.send(RecognitionRequest(1, "pt-BR", grammar=Grammar(phrases=("sim", "falar com atendente"))), NOW)
    [_, (_, _, grammar), _] = sent(codec)
    assert grammar.decode() == phrases_grammar(("sim", "falar com atendente"), "pt-BR")
    assert "$phrases = sim | falar com atendente;" in grammar.decode()


def test_phrases_with_abnf_syntax_are_quoted() -> None:
    text = phrases_grammar(("saldo; já", "a|b", "  "), "pt-BR")
    assert '$phrases = "saldo;" já | "a|b";' in text and text.startswith("#ABNF 1.0 UTF-8;\nlanguage pt-BR;")


# ---- options


def test_options_validate_and_normalise() -> None:
    assert validate_options({}) == {
        "version": "2.4",
        "continuous_mode": False,
        "chunk_ms": 100,
        "parameters": (),
    }
    checked = validate_options(
        {"version": 2.3, "continuous_mode": True, "chunk_ms": 250, "DECODER.confidenceThreshold": "80"}
    )
    assert checked == {
        "version": "2.3",
        "continuous_mode": True,
        "chunk_ms": 250,
        "parameters": (("decoder.confidenceThreshold", "80"),),
    }
    assert codec_from_options(checked, CHANNEL).version == "2.3"
    assert codec_from_options(checked).chunk_ms == 250


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"version": "3.0"}, "version"),
        ({"continuous_mode": "yes"}, "continuous_mode"),
        ({"chunk_ms": 5}, "chunk_ms"),
        ({"chunk_ms": True}, "chunk_ms"),
        ({"decoder.confidenceTreshold": 50}, "did you mean decoder.confidenceThreshold"),
        ({"noInputTimeout.valeu": 50}, "did you mean noInputTimeout.value"),
        ({"colour": "red"}, "unknown CPQD option 'colour'"),
        ({"decoder.confidenceThreshold": 101}, "0 to 100"),
        ({"noInputTimeout.value": -1}, "whole number"),
        ({"noInputTimeout.enabled": "maybe"}, "boolean"),
        ({"endpointer.levelThreshold": "loud"}, "float"),
        ({"decoder.wordDetails": 5}, "NONE/FIRST/ALL"),
        ({"hints.words": "a\r\nX: y"}, "text"),
        ({"Infer-emotion-enabled": True}, "classifiers"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_options(options)


def test_raw_parameters_replace_managed_values_or_go_on_start_recognition() -> None:
    options = (
        ("decoder.confidenceThreshold", 80),
        ("endpointer.levelThreshold", 2.5),
        ("decoder.wordDetails", "ALL"),
    )
    request = RecognitionRequest(1, "pt-BR", confidence_threshold=0.3, options=options)
    assert set_parameters(request)["decoder.confidenceThreshold"] == "80"
    headers, _ = start_recognition(request)
    assert headers["endpointer.levelThreshold"] == "2.5" and headers["decoder.wordDetails"] == "2"
    assert "decoder.confidenceThreshold" not in headers
    assert (
        set_parameters(RecognitionRequest(1, "pt-BR", options=(("continuous_mode", True),)))[
            "decoder.continuousMode"
        ]
        == "true"
    )


def test_bad_request_options_are_an_unsupported_request() -> None:
    with pytest.raises(UnsupportedRequest, match="colour"):
        opened().send(RecognitionRequest(1, "pt-BR", options=(("colour", "red"),)), NOW)


# ---- start, audio, timers


@pytest.mark.parametrize("failure", ["FAILURE", "INVALID_ACTION", "INVALID_MESSAGE"])
def test_failed_start_recognition_is_an_error_and_the_idle_session_stays(failure: str) -> None:
    codec = opened()
    codec.send(RecognitionRequest(3, "pt-BR"), NOW)
    codec.data_to_send()
    refusal = response("START_RECOGNITION", failure, Error_Code="042", Message="bad uri")
    assert codec.receive(refusal, NOW) == [
        Final(3, ResultStatus.ERROR, error=VendorError("042", f"CPQD START_RECOGNITION {failure}: bad uri"))
    ]
    assert codec.state is SessionState.READY and codec.data_to_send() == []
    listening(RecognitionRequest(4, "pt-BR"), codec)  # usable again


def test_failed_start_without_error_code_names_the_result() -> None:
    codec = opened()
    codec.send(RecognitionRequest(3, "pt-BR"), NOW)
    [final] = codec.receive(response("START_RECOGNITION", "INVALID_MESSAGE", status=None), NOW)
    assert isinstance(final, Final) and final.error == VendorError(
        "INVALID_MESSAGE", "CPQD START_RECOGNITION INVALID_MESSAGE"
    )
    assert codec.state is SessionState.READY


def test_failed_start_with_the_server_still_listening_is_cancelled() -> None:
    codec = opened()
    codec.send(RecognitionRequest(3, "pt-BR"), NOW)
    codec.data_to_send()
    [final] = codec.receive(response("START_RECOGNITION", "FAILURE", status="LISTENING"), NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR
    assert kinds(codec) == ["CANCEL_RECOGNITION"] and codec.state is SessionState.ENDING
    codec.receive(response("CANCEL_RECOGNITION"), NOW)
    assert codec.state is SessionState.READY


@pytest.mark.parametrize("method", ["SET_PARAMETERS", "DEFINE_GRAMMAR"])
def test_failed_preparation_ends_the_recognition_and_cancels_what_was_pipelined(method: str) -> None:
    codec = opened()
    request = RecognitionRequest(5, "pt-BR", grammar=Grammar(phrases=("sim", "não")))
    codec.send(request, NOW)
    assert kinds(codec) == ["SET_PARAMETERS", "DEFINE_GRAMMAR", "START_RECOGNITION"]
    if method == "DEFINE_GRAMMAR":
        codec.receive(response("SET_PARAMETERS"), NOW)
    [final] = codec.receive(response(method, "FAILURE", Error_Code="7", Message="no"), NOW)
    assert final == Final(5, ResultStatus.ERROR, error=VendorError("7", f"CPQD {method} FAILURE: no"))
    assert kinds(codec) == ["CANCEL_RECOGNITION"]
    assert codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW) == []  # abandoned
    assert codec.receive(server("START_OF_SPEECH", {"Session-Status": "RECOGNIZING"}), NOW) == []
    assert codec.state is SessionState.ENDING
    codec.receive(response("CANCEL_RECOGNITION"), NOW)
    assert codec.state is SessionState.READY
    codec.send(RecognitionRequest(6, "pt-BR", grammar=request.grammar), NOW)
    assert method in kinds(codec)  # what failed is sent again: the server's state is not trusted


def test_audio_flows_only_while_listening() -> None:
    codec = opened()
    codec.audio(b"\x00\x00" * 10, NOW)
    codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    codec.data_to_send()
    codec.audio(b"\x00\x00" * 10, NOW)
    assert codec.data_to_send() == []  # the driver holds audio until the server listens
    codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    pcm = bytes(range(256)) * 4
    codec.audio(pcm, NOW)
    codec.audio(b"", NOW)
    [(first, headers, body)] = sent(codec)
    assert first == "ASR 2.4 SEND_AUDIO" and body == pcm
    assert headers == {"LastPacket": "false", "Content-Length": "1024", "Content-Type": "audio/raw"}
    codec.end(NOW)
    assert sent(codec) == [
        (
            "ASR 2.4 SEND_AUDIO",
            {"LastPacket": "true", "Content-Length": "0", "Content-Type": "audio/raw"},
            b"",
        )
    ]
    assert codec.state is SessionState.ENDING
    codec.audio(pcm, NOW)
    codec.end(NOW)
    assert codec.data_to_send() == []


def test_end_before_the_server_listens_sends_the_last_packet_when_it_does() -> None:
    codec = opened()
    codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    codec.data_to_send()
    codec.end(NOW)
    assert codec.data_to_send() == []
    codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    assert [h["LastPacket"] for _, h, _ in sent(codec)] == ["true"]
    assert codec.state is SessionState.ENDING


def test_start_input_timers_once_per_recognition() -> None:
    codec = opened()
    codec.start_timers(NOW)
    assert codec.data_to_send() == []
    codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    codec.data_to_send()
    codec.start_timers(NOW)  # may precede START_RECOGNITION's answer, as the Python SDK does
    codec.start_timers(NOW)
    assert sent(codec) == [("ASR 2.4 START_INPUT_TIMERS", {}, b"")]
    assert codec.receive(response("START_INPUT_TIMERS", status="LISTENING"), NOW) == []


# ---- what the server says during a recognition


def test_speech_events_and_partials() -> None:
    codec = listening()
    assert codec.receive(server("START_OF_SPEECH", {"Session-Status": "RECOGNIZING"}), NOW) == [
        StartOfSpeech(7)
    ]
    partial = {
        "alternatives": [{"text": "uma pizza", "score": 40}],
        "final_result": False,
        "last_segment": False,
    }
    assert codec.receive(result("PROCESSING", partial, "RECOGNIZING"), NOW) == [Partial(7, "uma pizza", 0.4)]
    assert codec.receive(result("PROCESSING", {"alternatives": [{"text": ""}]}, "RECOGNIZING"), NOW) == []
    assert codec.receive(server("END_OF_SPEECH", {"Session-Status": "RECOGNIZING"}), NOW) == [EndOfSpeech(7)]
    [final] = codec.receive(result(body=recognized("uma pizza de bacon")), NOW)
    assert isinstance(final, Final) and final.text == "uma pizza de bacon"


def test_partials_are_dropped_when_not_wanted() -> None:
    codec = listening(RecognitionRequest(7, "pt-BR", partial_results=False))
    assert codec.receive(result("PROCESSING", recognized("uma") | {"result_status": "PROCESSING"}), NOW) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("RECOGNIZED", ResultStatus.RECOGNIZED),
        ("NO_MATCH", ResultStatus.NO_MATCH),
        ("NO_INPUT_TIMEOUT", ResultStatus.NO_INPUT),
        ("MAX_SPEECH", ResultStatus.MAX_SPEECH),
        ("EARLY_SPEECH", ResultStatus.NO_MATCH),
        ("RECOGNITION_TIMEOUT", ResultStatus.MAX_SPEECH),
        ("NO_SPEECH", ResultStatus.NO_INPUT),
        ("CANCELED", ResultStatus.CANCELLED),
        ("FAILURE", ResultStatus.ERROR),
        ("NONE", ResultStatus.ERROR),
        ("SOMETHING_NEW", ResultStatus.ERROR),
    ],
)
@pytest.mark.parametrize("where", ["body", "header only"])
def test_every_result_status(status: str, expected: ResultStatus, where: str) -> None:
    codec = listening()
    if where == "body":
        frame = result(None, {"alternatives": [], "result_status": status, "last_segment": True})
    else:
        frame = result(status)  # a result may have no body: then the header status counts
    [final] = codec.receive(frame, NOW)
    assert isinstance(final, Final) and final.recognition == 7 and final.status is expected
    assert (final.error is not None) == (expected is ResultStatus.ERROR)
    if final.error is not None:
        assert status in str(final.error)
    assert codec.state is SessionState.READY


def test_nbest_with_words() -> None:
    codec = listening(RecognitionRequest(7, "pt-BR", n_best=2))
    body = {
        "alternatives": [
            {
                "text": "quero pizza",
                "score": 87,
                "words": [
                    {"text": "quero", "score": 90, "start_time": 0.5, "end_time": 0.92},
                    {"text": "pizza", "score": 84, "start_time": 0.95, "end_time": 1.4},
                ],
            },
            {"text": "quero piza", "score": 12},
        ],
        "segment_index": 0,
        "last_segment": True,
        "final_result": True,
        "result_status": "RECOGNIZED",
    }
    [final] = codec.receive(result(body=body), NOW)
    assert final == Final(
        7,
        ResultStatus.RECOGNIZED,
        (
            Alternative("quero pizza", 0.87, (Word("quero", 0.5, 0.92, 0.9), Word("pizza", 0.95, 1.4, 0.84))),
            Alternative("quero piza", 0.12),
        ),
    )


def test_best_alternative_below_the_threshold_is_no_match() -> None:
    codec = listening(RecognitionRequest(7, "pt-BR", confidence_threshold=0.5))
    [final] = codec.receive(result(body=recognized("sim", score=30)), NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.NO_MATCH and final.text == "sim"


def test_classifier_scores() -> None:
    codec = listening(RecognitionRequest(7, "pt-BR", classifiers=frozenset(Classifier)))
    body = recognized(
        "sim",
        emotion_scores={
            "event": "EMOTION RESULT",
            "emotion": "irritado",
            "p": {"neutro": 0.2, "irritado": 0.8},
            "p_groups": {"negativo_ativado": 0.8, "neutro": 0.2},
        },
        age_scores={
            "event": "AGE RESULT",
            "age": 40,
            "confidence": "high",
            "p": {"30-40": 0.3, "40-50": 0.7},
        },
        gender_scores={"event": "GENDER RESULT", "p": [0.1, 0.9], "gender": "F"},
    )
    [final] = codec.receive(result(body=body), NOW)
    assert isinstance(final, Final) and final.classification is not None
    emotion, age, gender = final.classification.emotion, final.classification.age, final.classification.gender
    assert emotion is not None and emotion.label == "irritado" and emotion.score("irritado") == 0.8
    assert emotion.groups == (("negativo_ativado", 0.8), ("neutro", 0.2))
    assert age is not None and age.label == "40" and age.p == (("30-40", 0.3), ("40-50", 0.7))
    assert age.groups == (("high", 1.0),)
    assert gender is not None and gender.label == "F" and gender.p == (("M", 0.1), ("F", 0.9))


def test_malformed_classifier_objects_are_left_out() -> None:
    codec = listening()
    body = recognized("sim", emotion_scores="angry", age_scores={"p": [1, 2]}, gender_scores=None)
    [final] = codec.receive(result(body=body), NOW)
    assert (
        isinstance(final, Final) and final.status is ResultStatus.RECOGNIZED and final.classification is None
    )


def segment(index: int, text: str, score: int, *, last: bool, status: str = "RECOGNIZED") -> bytes:
    alternatives = [{"text": text, "score": score, "words": [{"text": text, "score": score}]}] if text else []
    body = {
        "alternatives": alternatives,
        "segment_index": index,
        "last_segment": last,
        "final_result": True,
        "result_status": status,
    }
    return result(None, body, "IDLE" if last else "RECOGNIZING")


def test_continuous_mode_one_final_for_all_segments() -> None:
    codec = listening(RecognitionRequest(7, "pt-BR", options=(("continuous_mode", True),)))
    assert codec.receive(segment(0, "quero uma pizza", 90, last=False), NOW) == [
        Partial(7, "quero uma pizza", 0.9)
    ]
    assert codec.receive(segment(1, "", 0, last=False, status="NO_MATCH"), NOW) == []
    assert codec.receive(segment(2, "de calabresa", 70, last=False), NOW) == [Partial(7, "de calabresa", 0.7)]
    assert codec.state is SessionState.LISTENING
    codec.end(NOW)
    [final] = codec.receive(segment(3, "", 0, last=True, status="NO_SPEECH"), NOW)
    assert final == Final(
        7,
        ResultStatus.RECOGNIZED,
        (
            Alternative(
                "quero uma pizza de calabresa",
                0.7,
                (Word("quero uma pizza", confidence=0.9), Word("de calabresa", confidence=0.7)),
            ),
        ),
    )
    assert codec.state is SessionState.READY


def test_continuous_mode_without_a_recognized_segment() -> None:
    codec = listening()
    codec.receive(segment(0, "", 0, last=False, status="NO_MATCH"), NOW)
    [final] = codec.receive(segment(1, "", 0, last=True, status="NO_SPEECH"), NOW)
    assert final == Final(7, ResultStatus.NO_MATCH)


def test_session_idle_ends_segments_even_without_last_segment() -> None:
    codec = listening()
    body = recognized("sim", last_segment=False, final_result=True)
    [final] = codec.receive(result(body=body, session="IDLE"), NOW)
    assert isinstance(final, Final) and final.text == "sim"


# ---- cancel, stray and malformed messages


def test_cancel() -> None:
    codec = listening()
    assert codec.cancel(NOW) == [Final(7, ResultStatus.CANCELLED)]
    assert kinds(codec) == ["CANCEL_RECOGNITION"]
    assert codec.cancel(NOW) == []
    assert codec.state is SessionState.ENDING and codec.recognition is None
    assert codec.receive(result("CANCELED"), NOW) == []  # results of the cancelled recognition are dropped
    assert codec.receive(result(body=recognized("tarde")), NOW) == []
    assert codec.receive(response("CANCEL_RECOGNITION", "INVALID_ACTION"), NOW) == []  # it had ended anyway
    assert codec.state is SessionState.READY


def test_stray_events_before_start_recognition_is_answered_are_dropped() -> None:
    codec = opened()
    codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    assert codec.receive(result(body=recognized("old")), NOW) == []
    assert codec.receive(server("START_OF_SPEECH"), NOW) == []
    assert codec.state is SessionState.STARTING


def test_late_audio_rejection_is_ignored_but_a_failure_while_listening_is_not() -> None:
    codec = listening()
    assert codec.receive(response("SEND_AUDIO", "INVALID_ACTION"), NOW) == []
    [final] = codec.receive(response("SEND_AUDIO", "FAILURE", status="LISTENING", Message="bad audio"), NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR
    assert kinds(codec) == ["CANCEL_RECOGNITION"]


NOT_CPQD = [b"\x00\xffgarbage", "HTTP/1.1 200 OK\r\n\r\n", b"ASR 2.4 RESPONSE\r\nContent-Length: x\r\n\r\n"]
BAD_RESULTS = [
    result(body=None)[:-2] + b"\r\n\r\n{not json",
    server("RECOGNITION_RESULT", {"Result-Status": "RECOGNIZED"}, b"[1, 2]"),
    server("RECOGNITION_RESULT", {"Result-Status": "RECOGNIZED"}, b"\xff\xfe"),
]


@pytest.mark.parametrize("frame", NOT_CPQD + BAD_RESULTS)
def test_garbage_ends_the_recognition_with_an_error(frame: bytes | str) -> None:
    codec = listening()
    [final] = codec.receive(frame, NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR and final.error is not None
    assert kinds(codec) == ["CANCEL_RECOGNITION"]
    assert opened().receive(frame, NOW) == []  # no recognition: nothing to end


@pytest.mark.parametrize("frame", NOT_CPQD)
def test_a_peer_that_does_not_speak_cpqd_ends_the_session(frame: bytes | str) -> None:
    codec = CpqdCodec()
    codec.open(NOW)
    [closed] = codec.receive(frame, NOW)
    assert (
        isinstance(closed, SessionClosed) and closed.error is not None and codec.state is SessionState.CLOSED
    )


def test_xml_results_are_refused_as_an_error() -> None:
    codec = listening()
    frame = server("RECOGNITION_RESULT", {"Result-Status": "RECOGNIZED", "Content-Type": "application/xml"})
    frame += b"<x/>"
    [final] = codec.receive(frame, NOW)
    assert isinstance(final, Final) and final.error is not None and "XML" in final.error.message


def test_unknown_message_types_are_tolerated() -> None:
    codec = listening()
    assert codec.receive(server("RECOGNITION_IN_PROGRESS"), NOW) == []
    assert codec.state is SessionState.LISTENING


FINAL_BODY = b'{"alternatives":[{"text":"sim","score":91}],"result_status":"RECOGNIZED"}'


@pytest.mark.parametrize(
    "frame",
    [
        FINAL_BODY.join(
            [b"ASR 2.4 RECOGNITION_RESULT\r\nResult-Status: RECOGNIZED\r\nContent-Length: 73\r\n\r\n", b""]
        ),
        FINAL_BODY.join(
            [b"ASR 2.4 RECOGNITION_RESULT\nResult-Status: RECOGNIZED\nContent-Length: 73\n\n", b""]
        ),
        FINAL_BODY.join(
            [b"asr 2.3 recognition_result\r\nresult-status:RECOGNIZED\r\ncontent-length:73\r\n\r\n", b""]
        ),
        FINAL_BODY.join(
            [b"ASR 1.0 RECOGNITION_RESULT\r\nRESULT-STATUS:   RECOGNIZED  \r\n\r\n", b" \r\n\t "]
        ),
        FINAL_BODY.join([b"\r\nASR 2.4 RECOGNITION_RESULT\r\nResult-Status: RECOGNIZED\n\n", b"\n"]).decode(),
    ],
    ids=["crlf", "lf", "lower-case-no-space", "no-length-trailing-whitespace", "text-frame"],
)
def test_tolerant_framing(frame: bytes | str) -> None:
    assert len(FINAL_BODY) == 73
    codec = listening()
    assert codec.receive(frame, NOW) == [Final(7, ResultStatus.RECOGNIZED, (Alternative("sim", 0.91),))]


def test_body_is_content_length_bytes() -> None:
    codec = listening()
    frame = result(body=recognized("sim")) + b"trailing bytes"
    [final] = codec.receive(frame, NOW)
    assert isinstance(final, Final) and final.text == "sim"


# ---- CPQD extras


def test_get_parameters() -> None:
    codec = opened()
    codec.get_parameters(("decoder.maxSentences", "Infer-emotion-enabled"), NOW)
    frame = codec.data_to_send()[0]
    assert frame == b"ASR 2.4 GET_PARAMETERS\r\ndecoder.maxSentences: \r\nInfer-emotion-enabled: \r\n\r\n"
    echoed = response("GET_PARAMETERS", **{"decoder.maxSentences": "3", "Infer-emotion-enabled": "true"})
    assert codec.receive(echoed, NOW) == []
    [parameters] = codec.cpqd_events()
    assert parameters == Parameters((("decoder.maxSentences", "3"), ("Infer-emotion-enabled", "true")))
    assert parameters.get("infer-EMOTION-enabled") == "true" and codec.cpqd_events() == []
    codec.receive(response("GET_PARAMETERS", "INVALID_MESSAGE", Message="unknown"), NOW)
    [refused] = codec.cpqd_events()
    assert refused.error == VendorError("INVALID_MESSAGE", "CPQD GET_PARAMETERS INVALID_MESSAGE: unknown")
    with pytest.raises(ValueError, match="parameter name"):
        codec.get_parameters(("a: b",), NOW)


def test_interpret_text() -> None:
    codec = opened()
    request = RecognitionRequest(9, "pt-BR", grammar=Grammar(uri="builtin:grammar/yes_no"))
    assert codec.interpret_text(request, "sim\r\nX: y", NOW) == []
    [_, (first, headers, body)] = sent(codec)
    assert first == "ASR 2.4 INTERPRET_TEXT" and headers["Text"] == "sim X: y"
    assert headers["Content-Type"] == "text/uri-list" and body == b"builtin:grammar/yes_no\n"
    assert codec.recognition == 9 and codec.state is SessionState.ENDING
    codec.audio(b"\x00\x00", NOW)
    codec.start_timers(NOW)
    assert codec.data_to_send() == []  # no audio and no timers for a text
    assert codec.receive(response("INTERPRET_TEXT", status="RECOGNIZING"), NOW) == []
    [final] = codec.receive(result(body=recognized("sim", score=100)), NOW)
    assert final == Final(9, ResultStatus.RECOGNIZED, (Alternative("sim", 1.0),))
    assert codec.state is SessionState.READY
    codec.interpret_text(request, "talvez", NOW)
    [final] = codec.receive(response("INTERPRET_TEXT", "FAILURE", Error_Code="3"), NOW)
    assert isinstance(final, Final) and final.error == VendorError("3", "CPQD INTERPRET_TEXT FAILURE")
    assert codec.state is SessionState.READY


# ---- robustness


STATES = ["opening", "ready", "starting", "listening", "ending", "closing"]


def in_state(name: str) -> CpqdCodec:
    codec = CpqdCodec(channel_id=CHANNEL)
    codec.open(NOW)
    if name != "opening":
        codec.receive(response("CREATE_SESSION"), NOW)
    if name in ("starting", "listening", "ending"):
        codec.send(RecognitionRequest(1, "pt-BR", classifiers=frozenset(Classifier)), NOW)
    if name in ("listening", "ending"):
        codec.receive(response("START_RECOGNITION", status="LISTENING"), NOW)
    if name == "ending":
        codec.end(NOW)
    if name == "closing":
        codec.close(NOW)
    codec.data_to_send()
    return codec


PREFIXES = [b"", b"ASR 2.4 RESPONSE\r\n", b"ASR 2.4 RECOGNITION_RESULT\r\n", b"ASR 2.4 START_OF_SPEECH\r\n"]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(STATES),
    prefix=st.sampled_from(PREFIXES),
    tail=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    as_text=st.booleans(),
)
def test_arbitrary_frames_never_raise(state: str, prefix: bytes, tail: bytes, as_text: bool) -> None:
    codec = in_state(state)
    frame: bytes | str = prefix + tail
    if as_text:
        frame = frame.decode("utf-8", errors="replace")  # type: ignore[union-attr]
    events = codec.receive(frame, NOW)
    assert sum(isinstance(e, Final) for e in events) <= 1
    codec.data_to_send()


@settings(max_examples=150, deadline=None)
@given(
    state=st.sampled_from(STATES),
    body=st.dictionaries(
        st.sampled_from(
            [
                *("alternatives", "result_status", "segment_index", "last_segment", "final_result"),
                *("emotion_scores", "age_scores", "gender_scores", "words", "text", "score", "p", "age"),
            ]
        ),
        JSONISH,
        max_size=8,
    ),
    status=st.sampled_from([None, "PROCESSING", "RECOGNIZED", "NO_MATCH", "garbage"]),
)
def test_arbitrary_result_bodies_never_raise(state: str, body: dict[str, object], status: str | None) -> None:
    codec = in_state(state)
    text = json.dumps(body, allow_nan=True).encode()
    codec.receive(result(status, None) + text, NOW)
    codec.receive(server("RECOGNITION_RESULT", {"Result-Status": status or ""}, text), NOW)


# ---- through the real driver


class CpqdPeer:
    """Answers like a CPQD server, from a plain reading of each frame; records what it is sent."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.kinds: list[str] = []
        self.audio: list[bytearray] = []

    def __call__(self, frame: bytes | str) -> list[bytes | str]:
        assert isinstance(frame, bytes)
        first, headers, body = parsed(frame)
        kind = first.split()[2]
        self.kinds.append(kind)
        if kind == "SEND_AUDIO":
            if headers["LastPacket"] == "false":
                self.audio[-1] += body
                return []
            text = self.texts[len(self.audio) - 1]
            return [
                server("START_OF_SPEECH", {"Session-Status": "RECOGNIZING"}),
                server("END_OF_SPEECH", {"Session-Status": "RECOGNIZING"}),
                result(
                    body=recognized(text) | {"segment_index": 0, "last_segment": True, "final_result": True}
                ),
            ]
        if kind == "START_RECOGNITION":
            self.audio.append(bytearray())
            return [response(kind, status="LISTENING")]
        return [response(kind)]


def pcm(name: str) -> bytes:
    with wave.open(str(AUDIO / name)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        return wav.readframes(wav.getnframes())


class Sink:
    def __init__(self) -> None:
        self.events: list[object] = []
        self.changed = asyncio.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        self.changed.set()

    async def final(self, recognition: int) -> Final:
        async with asyncio.timeout(5):
            while not any(isinstance(e, Final) and e.recognition == recognition for e in self.events):
                self.changed.clear()
                await self.changed.wait()
        return next(e for e in self.events if isinstance(e, Final) and e.recognition == recognition)


async def test_two_recognitions_on_one_session_through_the_driver() -> None:
    peer = CpqdPeer(["sim", "quero uma pizza"])
    connections: list[MemoryConnection] = []

    async def connect() -> MemoryConnection:
        connections.append(MemoryConnection(peer))
        return connections[-1]

    sink = Sink()
    stream = RecognizerStream("cpqd", connect, lambda request: CpqdCodec(channel_id=request.channel_id), sink)
    clips = [pcm("yes-8k.wav"), pcm("pizza-8k.wav")]
    for recognition, clip in enumerate(clips, start=1):
        await stream.recognize(RecognitionRequest(recognition, "pt-BR", channel_id=CHANNEL))
        stream.start_timers()
        for start in range(0, len(clip), 320):  # 20 ms at a time, as RTP brings it
            stream.audio(clip[start : start + 320])
            await asyncio.sleep(0)
        stream.end(recognition)
        assert (await sink.final(recognition)).text == peer.texts[recognition - 1]
    await stream.close()
    assert len(connections) == 1
    assert peer.kinds.count("CREATE_SESSION") == 1 and peer.kinds.count("START_RECOGNITION") == 2
    assert peer.kinds.count("START_INPUT_TIMERS") == 2 and peer.kinds[-1] == "RELEASE_SESSION"
    assert [bytes(audio) for audio in peer.audio] == clips
    assert [type(e).__name__ for e in sink.events] == 2 * [
        "RecognitionStarted",
        "StartOfSpeech",
        "EndOfSpeech",
        "Final",
    ]


async def test_a_dropped_connection_reopens_the_session_with_the_calls_channel_identifier() -> None:
    peer = CpqdPeer(["sim", "não"])
    connections: list[MemoryConnection] = []
    created: list[str] = []

    def recording(frame: bytes | str) -> list[bytes | str]:
        assert isinstance(frame, bytes)
        first, headers, _ = parsed(frame)
        if first.split()[2] == "CREATE_SESSION":
            created.append(headers["Channel-Identifier"])
        return peer(frame)

    async def connect() -> MemoryConnection:
        connections.append(MemoryConnection(recording))
        return connections[-1]

    sink = Sink()
    stream = RecognizerStream(
        "cpqd", connect, lambda r: make_codec("cpqd", dict(r.options), channel_id=r.channel_id), sink
    )
    clip = pcm("yes-8k.wav")
    for recognition in (1, 2):
        await stream.recognize(RecognitionRequest(recognition, "pt-BR", channel_id=CHANNEL))
        for start in range(0, len(clip), 320):
            stream.audio(clip[start : start + 320])
            await asyncio.sleep(0)
        stream.end(recognition)
        await sink.final(recognition)
        if recognition == 1:
            connections[0].abort()  # the network drops between the two listen steps
            await asyncio.sleep(0.05)
    await stream.close()
    assert len(connections) == 2 and created == [CHANNEL, CHANNEL]
    finals = [e for e in sink.events if isinstance(e, Final)]
    assert [f.text for f in finals] == ["sim", "não"]
