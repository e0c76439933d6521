"""AmiVoiceCodec: the s command, every event letter, error replies, timeouts, and the driver on top of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.asr.amivoice import (
    AUDIO_FORMATS,
    RETRYABLE,
    S_PARAMETERS,
    AmiVoiceCodec,
    phrase_profile_words,
    quote_value,
    s_command,
    validate_options,
    vendor_language,
)
from ivr.asr.base import (
    Alternative,
    AsrEvent,
    AudioFormat,
    EndOfSpeech,
    Final,
    Frame,
    Grammar,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    RecognizerCodec,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    UnsupportedRequest,
    VendorError,
    Word,
)
from ivr.asr.memory import MemoryConnection
from ivr.asr.stream import Connection, RecognizerStream

NOW = 100.0
KEY = "APPKEY0123456789"


def result(text: str, *, confidence: float = 0.9, code: str = "", message: str = "", t0: int = 100) -> str:
    """An A payload shaped like 002's: one token per character, times in ms."""
    tokens = [
        {
            "written": c,
            "confidence": 1.0,
            "starttime": t0 + 100 * i,
            "endtime": t0 + 100 * (i + 1),
            "spoken": c,
        }
        for i, c in enumerate(text)
    ]
    utterance = {"tokens": tokens, "confidence": confidence, "starttime": t0, "endtime": t0 + 100 * len(text)}
    body = {"results": [{**utterance, "text": text}], "text": text, "code": code, "message": message}
    return "A " + json.dumps(body)


def interim(text: str) -> str:
    return "U " + json.dumps({"results": [{"tokens": [{"written": "..."}], "text": text}], "text": text})


def started(request: RecognitionRequest | None = None, **options: object) -> AmiVoiceCodec:
    codec = AmiVoiceCodec(authorization=KEY, **options)  # type: ignore[arg-type]
    codec.open(NOW)
    request = request or RecognitionRequest(1, "ja")
    assert codec.send(request, NOW) == []
    codec.data_to_send()
    assert codec.receive("s", NOW) == [RecognitionStarted(request.id)]
    assert codec.state is SessionState.LISTENING
    return codec


def command(request: RecognitionRequest, **options: object) -> str:
    codec = AmiVoiceCodec(**options)  # type: ignore[arg-type]
    codec.send(request, NOW)
    [frame] = codec.data_to_send()
    assert isinstance(frame, str)
    return frame


# ---- the interface and the s command


def test_implements_the_recognizer_interface() -> None:
    codec = AmiVoiceCodec()
    assert isinstance(codec, RecognizerCodec)
    assert codec.vendor == "amivoice" and codec.chunk_ms == 100 and AmiVoiceCodec(chunk_ms=20).chunk_ms == 20
    assert codec.state is SessionState.READY and codec.deadline() is None  # not opened yet
    assert set(AudioFormat) == AUDIO_FORMATS


def test_repr_never_shows_the_appkey() -> None:
    codec = started()
    assert KEY not in repr(codec) and "authorization=<set>" in repr(codec)
    assert "authorization=<none>" in repr(AmiVoiceCodec())


@pytest.mark.parametrize(
    ("name", "value", "quoted"),
    [
        ("profileId", "user01", "user01"),
        ("profileId", "user 01", '"user 01"'),  # a space: quoted
        ("authorization", 'ke"y', 'ke"y'),  # only a space quotes these, and nothing is doubled
        ("resultType", 'a "b"', '"a "b""'),
        ("keepFillerToken", "1", "1"),
        ("resultUpdatedInterval", "1000", "1000"),
        ("profileWords", "AmiVoice あみぼいす", '"AmiVoice あみぼいす"'),
        ("profileWords", 'x"y', '"x""y"'),  # a quote alone quotes these, doubled
        ("profileWords", '"AOI" あおい', '"""AOI"" あおい"'),
        ("segmenterProperties", "useDiarizer=1", "useDiarizer=1"),
        ("segmenterProperties", 'a=1 b="c"', '"a=1 b=""c"""'),
        ("extension", '{"k":1}', '"{""k"":1}"'),
        ("extension", "plain", "plain"),
    ],
)
def test_quoting_rules_per_parameter(name: str, value: str, quoted: str) -> None:
    assert quote_value(name, value) == quoted
    assert s_command("LSB8K", "-a-general", {name: value}) == f"s LSB8K -a-general {name}={quoted}"


def test_parameters_go_out_in_wrps_order_and_empty_ones_are_left_out() -> None:
    given = {name: f"v{i}" for i, name in enumerate(reversed(S_PARAMETERS))}
    line = s_command("MULAW", "-a-general", {**given, "extension": ""})
    names = [part.split("=", 1)[0] for part in line.split()[3:]]
    assert names == [n for n in S_PARAMETERS if n != "extension"]
    with pytest.raises(ValueError, match="colour"):
        s_command("MULAW", "-a-general", {"colour": "red"})


@pytest.mark.parametrize(
    ("audio", "name"),
    [(AudioFormat.PCM16, "LSB8K"), (AudioFormat.PCMU, "MULAW"), (AudioFormat.PCMA, "ALAW")],
)
def test_audio_format_names_and_the_payload_passes_through(audio: AudioFormat, name: str) -> None:
    assert command(RecognitionRequest(1, "ja", audio_format=audio)) == f"s {name} -a-general"
    codec = started(RecognitionRequest(1, "ja", audio_format=audio))
    payload = bytes(range(256)) * 3  # G.711 bytes as the caller sent them
    codec.audio(payload, NOW)
    codec.audio(b"", NOW)
    assert codec.data_to_send() == [b"p" + payload]


def test_no_audio_before_the_s_reply() -> None:
    codec = AmiVoiceCodec()
    codec.send(RecognitionRequest(1, "ja"), NOW)
    codec.data_to_send()
    codec.audio(b"\xff" * 160, NOW)
    assert codec.data_to_send() == []


@pytest.mark.parametrize(
    ("tag", "engine"),
    [("ja", "-a-general"), ("ja-JP", "-a-general"), ("en-US", "-a-general-en"), ("ko_KR", "-a-general-ko")],
)
def test_languages_map_to_engines(tag: str, engine: str) -> None:
    assert vendor_language(tag) == engine
    assert command(RecognitionRequest(1, tag)) == f"s LSB8K {engine}"


def test_a_language_without_engine_is_refused_unless_an_engine_is_set() -> None:
    codec = AmiVoiceCodec()
    with pytest.raises(UnsupportedRequest, match="pt-BR"):
        codec.send(RecognitionRequest(1, "pt-BR"), NOW)
    assert codec.state is SessionState.READY and codec.data_to_send() == []
    assert vendor_language("pt-BR") is None
    assert command(RecognitionRequest(1, "pt-BR"), engine="-a-general-pt") == "s LSB8K -a-general-pt"


@pytest.mark.parametrize(
    ("uri", "options", "codec_engine", "engine"),
    [
        ("-a-medgeneral", (), None, "-a-medgeneral"),  # the step's grammar names the engine
        ("-a-medgeneral", (("engine", "-a-bizfinance"),), "-a-general-en", "-a-medgeneral"),
        ("builtin:slm/general", (), None, "-a-general"),  # not an AmiVoice engine name: ignored
        (None, (("engine", "-a-bizfinance"),), "-a-general-en", "-a-bizfinance"),
        (None, (), "-a-general-en", "-a-general-en"),
    ],
)
def test_which_engine_fills_the_grammar_slot(
    uri: str | None, options: tuple[tuple[str, str], ...], codec_engine: str | None, engine: str
) -> None:
    request = RecognitionRequest(1, "ja", grammar=Grammar(uri=uri), options=options)
    assert command(request, engine=codec_engine).split()[2] == engine


def test_codec_settings_request_options_and_the_appkey_in_one_command() -> None:
    request = RecognitionRequest(1, "ja", options=(("keepFillerToken", 1), ("profileId", "caller_7")))
    line = command(
        request,
        authorization=KEY,
        keep_filler_token=False,
        result_updated_interval=500,
        segmenter_properties="a=1",
    )
    assert line == (
        f"s LSB8K -a-general profileId=caller_7 segmenterProperties=a=1 keepFillerToken=1 "
        f"resultUpdatedInterval=500 authorization={KEY}"
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"colour": "red"}, "colour"),
        ({"chunk_ms": 5}, "chunk_ms"),
        ({"chunk_ms": True}, "chunk_ms"),
        ({"resultUpdatedInterval": -1}, "resultUpdatedInterval"),
        ({"resultUpdatedInterval": "1000"}, "resultUpdatedInterval"),
        ({"keepFillerToken": 2}, "keepFillerToken"),
        ({"engine": "a-general"}, "engine"),
        ({"engine": "-a general"}, "engine"),
        ({"profileId": "bad id"}, "profileId"),
        ({"profileId": "__reserved"}, "profileId"),
        ({"profileWords": "onlywritten"}, "profileWords"),
        ({"profileWords": "AmiVoice あみぼいす|"}, "profileWords"),
        ({"resultType": 'a"b'}, "resultType"),
        ({"extension": "a\nb"}, "extension"),
        ({"segmenterProperties": 5}, "segmenterProperties"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        validate_options(options)
    codec = AmiVoiceCodec()
    with pytest.raises(UnsupportedRequest, match=named):
        codec.send(RecognitionRequest(1, "ja", options=tuple(options.items())), NOW)  # type: ignore[arg-type]
    assert codec.state is SessionState.READY and codec.data_to_send() == []


def test_good_options_are_normalized() -> None:
    assert validate_options({"keepFillerToken": 1, "chunk_ms": 40, "profileWords": "AOI あおい"}) == {
        "keepFillerToken": True,
        "chunk_ms": 40,
        "profileWords": "AOI あおい",
    }
    codec = AmiVoiceCodec.from_options({"engine": "-a-general-en", "chunk_ms": 40}, authorization=KEY)
    assert codec.engine == "-a-general-en" and codec.chunk_ms == 40
    assert KEY in command(RecognitionRequest(1, "ja"), authorization=KEY)


def test_an_srgs_grammar_is_refused() -> None:
    with pytest.raises(UnsupportedRequest, match="SRGS"):
        AmiVoiceCodec().send(RecognitionRequest(1, "ja", grammar=Grammar(srgs="#ABNF 1.0;")), NOW)


def test_kana_phrases_become_profile_words_the_others_are_left_out() -> None:
    phrases = ("アミボイス", "はい", "残高", "card balance", "アドバンスト・メディア", "ヴァイオリン")
    assert phrase_profile_words(phrases) == [
        "アミボイス あみぼいす",
        "はい はい",
        "アドバンスト・メディア あどばんすとめでぃあ",
        "ヴァイオリン ゔぁいおりん",
    ]
    request = RecognitionRequest(1, "ja", grammar=Grammar(phrases=("アミボイス", "残高", "カード")))
    line = command(request, profile_words="アミボイス あみぼいす2|AOI あおい")
    # The explicit entries come first and win over a phrase with the same written form.
    assert line == 's LSB8K -a-general profileWords="アミボイス あみぼいす2|AOI あおい|カード かーど"'
    assert command(RecognitionRequest(1, "ja", grammar=Grammar(phrases=("残高",)))) == "s LSB8K -a-general"


# ---- events


@pytest.mark.parametrize(
    ("frame", "events"),
    [
        ("S 1230", [StartOfSpeech(1, 1.23)]),
        ("E 3450", [EndOfSpeech(1, 3.45)]),
        ("S 250\r\n", [StartOfSpeech(1, 0.25)]),  # Wrp strips the trailing newline
        (b"E 800", [EndOfSpeech(1, 0.8)]),  # a binary frame is read as text
        ("S abc", [StartOfSpeech(1, None)]),  # an unreadable time is no reason to lose the turn
        ("S -5", [StartOfSpeech(1, None)]),
        ("C", []),
        ("G", []),
        ("G some server information", []),
        ("Q 1 2 3", []),
        ("Z to come", []),
        ("", []),
        (interim("こんにち..."), [Partial(1, "こんにち")]),
        (interim("..."), []),
        ("U not json", []),
        ("U [1, 2]", []),
        ("s", []),  # a stray s reply starts nothing
        ("p", []),  # p alone is OK, normally not sent
        ("R old format, not JSON", []),
    ],
)
def test_every_event_letter(frame: Frame, events: list[AsrEvent]) -> None:
    codec = started()
    assert codec.receive(frame, NOW) == events
    assert codec.state is SessionState.LISTENING and codec.data_to_send() == []


def test_the_first_a_with_text_is_the_answer_and_the_rest_is_swallowed() -> None:
    codec = started()
    assert codec.receive("S 200", NOW) == [StartOfSpeech(1, 0.2)]
    assert codec.receive(result(""), NOW) == []  # an utterance without words: keep listening
    assert codec.state is SessionState.LISTENING and codec.data_to_send() == []
    codec.receive("S 1500", NOW)
    [final] = codec.receive(result("はい", confidence=0.8, t0=1500), NOW)
    assert final == Final(
        1,
        ResultStatus.RECOGNIZED,
        (Alternative("はい", 0.8, (Word("は", 1.5, 1.6, 1.0, "は"), Word("い", 1.6, 1.7, 1.0, "い"))),),
    )
    assert codec.data_to_send() == ["e"] and codec.state is SessionState.ENDING
    for later in ("S 3000", interim("いいえ..."), "E 3500", result("いいえ"), "G"):
        assert codec.receive(later, NOW) == []
    codec.end(NOW)
    assert codec.data_to_send() == []  # e is out already
    assert codec.receive("e", NOW) == [] and codec.state is SessionState.READY


def test_end_waits_for_the_remaining_results_then_the_e_reply() -> None:
    codec = started()
    codec.receive("S 100", NOW)
    assert codec.end(NOW) == [] and codec.data_to_send() == ["e"]
    assert codec.state is SessionState.ENDING and codec.recognition == 1
    assert codec.receive("E 900", NOW) == [EndOfSpeech(1, 0.9)]
    [final] = codec.receive(result("いいえ"), NOW)
    assert isinstance(final, Final) and final.text == "いいえ" and codec.data_to_send() == []
    assert codec.receive("e", NOW) == [] and codec.state is SessionState.READY


@pytest.mark.parametrize(
    ("frames", "status"),
    [
        ([], ResultStatus.NO_INPUT),
        (["G", "C"], ResultStatus.NO_INPUT),
        (["S 100", "E 400"], ResultStatus.NO_MATCH),
        ([interim("あ...")], ResultStatus.NO_MATCH),
        ([result("")], ResultStatus.NO_MATCH),
    ],
)
def test_no_result_by_the_e_reply(frames: list[str], status: ResultStatus) -> None:
    codec = started()
    for frame in frames:
        codec.receive(frame, NOW)
    codec.end(NOW)
    assert codec.receive("e", NOW) == [Final(1, status)]
    assert codec.state is SessionState.READY


def test_two_recognitions_on_one_connection_each_with_its_own_time_base() -> None:
    codec = started(RecognitionRequest(1, "ja"))
    codec.receive("S 300", NOW)
    [first] = codec.receive(result("一"), NOW)
    assert isinstance(first, Final) and first.recognition == 1
    codec.receive("e", NOW)
    codec.data_to_send()
    # 001: the time base is reset at every s, so the second recognition's times start from 0 again.
    codec.send(RecognitionRequest(2, "ja", audio_format=AudioFormat.PCMU), NOW)
    assert codec.data_to_send() == [f"s MULAW -a-general authorization={KEY}"]
    assert codec.receive("s", NOW) == [RecognitionStarted(2)]
    assert codec.receive("S 300", NOW) == [StartOfSpeech(2, 0.3)]
    [second] = codec.receive(result("二", t0=300), NOW)
    assert isinstance(second, Final) and second.recognition == 2 and second.text == "二"
    assert second.alternatives[0].words[0].start == 0.3


def test_a_send_before_the_e_reply_is_a_misuse() -> None:
    codec = started()
    codec.end(NOW)
    with pytest.raises(RuntimeError, match="e reply"):
        codec.send(RecognitionRequest(2, "ja"), NOW)


def test_confidence_below_the_threshold_is_no_match() -> None:
    codec = started(RecognitionRequest(1, "ja", confidence_threshold=0.5))
    [final] = codec.receive(result("はい", confidence=0.3), NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.NO_MATCH and final.text == "はい"


def test_partials_only_when_asked_for() -> None:
    codec = started(RecognitionRequest(1, "ja", partial_results=False))
    assert codec.receive(interim("はい..."), NOW) == []


def test_r_results_in_json_are_read_as_a() -> None:
    codec = started()
    [final] = codec.receive("R" + result("はい")[1:], NOW)
    assert isinstance(final, Final) and final.text == "はい"


# ---- errors


def test_an_s_error_ends_the_recognition_and_the_session_takes_another() -> None:
    codec = AmiVoiceCodec()
    codec.send(RecognitionRequest(1, "ja"), NOW)
    assert codec.receive("s received unsupported audio format", NOW) == [
        Final(1, ResultStatus.ERROR, error=VendorError("s", "received unsupported audio format"))
    ]
    assert codec.state is SessionState.READY
    codec.send(RecognitionRequest(2, "ja"), NOW)
    assert codec.state is SessionState.STARTING


def test_a_p_error_ends_the_recognition_and_stops_the_session() -> None:
    codec = started()
    assert codec.receive("p received unsupported audio format", NOW) == [
        Final(1, ResultStatus.ERROR, error=VendorError("p", "received unsupported audio format"))
    ]
    assert codec.data_to_send() == ["e"] and codec.state is SessionState.ENDING
    assert codec.receive("e", NOW) == [] and codec.state is SessionState.READY


def test_an_e_error_closes_the_session() -> None:
    codec = started()
    codec.end(NOW)
    error = VendorError("e", "can't stop feeding")
    assert codec.receive("e can't stop feeding", NOW) == [
        Final(1, ResultStatus.ERROR, error=error),
        SessionClosed(error),
    ]
    assert codec.state is SessionState.CLOSED
    assert codec.receive("e", NOW) == [] and codec.receive(result("はい"), NOW) == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"results": [], "text": "", "code": "-", "message": "received illegal service authorization"}, "-"),
        ({"text": "", "code": "o", "message": ""}, "o"),
    ],
)
def test_a_result_code_is_an_error_with_the_vendors_code(payload: dict[str, object], error: str) -> None:
    codec = started()
    [final] = codec.receive("A " + json.dumps(payload), NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR
    assert final.error == VendorError(error, str(payload["message"]))
    assert codec.data_to_send() == ["e"]


@pytest.mark.parametrize("frame", ["A {not json", "A [1]", "A ", b"\xff\xfe"])
def test_a_malformed_result_ends_the_recognition(frame: Frame) -> None:
    codec = started()
    [final] = codec.receive(frame, NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR and final.error is not None
    assert final.error.code == "" and codec.data_to_send() == ["e"]


def test_a_busy_server_is_said_so() -> None:
    codec = AmiVoiceCodec()
    codec.send(RecognitionRequest(1, "ja"), NOW)
    [final] = codec.receive("s can't connect to recognizer server (can't connect to server)", NOW)
    assert isinstance(final, Final) and final.error is not None and final.error.code == "busy"
    assert final.error.code in RETRYABLE and codec.state is SessionState.READY


# ---- timeouts, cancel, close, connection lost


@pytest.mark.parametrize(
    "frame",
    [
        "e timeout occurred while recognizing audio data from client",
        "p can't feed audio data to recognizer server",
    ],
)
def test_a_server_timeout_loses_the_session_and_says_so(frame: str) -> None:
    error = VendorError("timeout", frame[2:], retryable=True)
    codec = started()
    assert codec.receive(frame, NOW) == [Final(1, ResultStatus.ERROR, error=error), SessionClosed(error)]
    assert codec.state is SessionState.CLOSED and codec.data_to_send() == [] and "timeout" in RETRYABLE
    idle = AmiVoiceCodec()
    idle.open(NOW)
    assert idle.receive(frame, NOW) == [SessionClosed(error)] and idle.state is SessionState.CLOSED


def test_an_idle_session_is_given_up_before_the_servers_timeout() -> None:
    codec = AmiVoiceCodec(idle_timeout=50.0)
    codec.open(NOW)
    assert codec.deadline() == NOW + 50.0
    assert codec.timeout(NOW + 10) == [] and codec.state is SessionState.READY
    assert codec.timeout(NOW + 50) == [SessionClosed()] and codec.state is SessionState.CLOSED
    assert codec.deadline() is None
    assert AmiVoiceCodec(idle_timeout=None).deadline() is None


def test_idle_clock_restarts_with_each_session() -> None:
    codec = started(idle_timeout=50.0)
    assert codec.deadline() is None  # listening: audio is communication
    codec.end(NOW + 5)
    assert codec.deadline() == NOW + 5 + codec.reply_timeout
    codec.receive("e", NOW + 6)
    assert codec.state is SessionState.READY and codec.deadline() == NOW + 6 + 50.0


def test_no_e_reply_within_the_reply_timeout() -> None:
    codec = started(reply_timeout=10.0)
    codec.receive("S 100", NOW)
    codec.end(NOW)
    assert codec.timeout(NOW + 9) == []
    [final, closed] = codec.timeout(NOW + 10)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR and final.error is not None
    assert "did not answer e" in final.error.message and closed == SessionClosed(final.error)
    assert codec.state is SessionState.CLOSED


def test_cancel_while_listening_swallows_the_rest() -> None:
    codec = started()
    assert codec.cancel(NOW) == [Final(1, ResultStatus.CANCELLED)]
    assert codec.data_to_send() == ["e"] and codec.recognition is None
    assert codec.receive(result("はい"), NOW) == [] and codec.receive("e", NOW) == []
    assert codec.state is SessionState.READY and codec.cancel(NOW) == []


def test_cancel_and_end_before_the_s_reply_wait_for_it() -> None:
    codec = AmiVoiceCodec()
    codec.send(RecognitionRequest(1, "ja"), NOW)
    codec.data_to_send()
    assert codec.cancel(NOW) == [Final(1, ResultStatus.CANCELLED)]
    assert codec.data_to_send() == []  # the client waits for the s reply before the next command
    assert codec.receive("s", NOW) == [] and codec.data_to_send() == ["e"]
    assert codec.receive("e", NOW) == [] and codec.state is SessionState.READY

    codec.send(RecognitionRequest(2, "ja"), NOW)
    codec.data_to_send()
    codec.end(NOW)
    assert codec.receive("s", NOW) == [RecognitionStarted(2)] and codec.data_to_send() == ["e"]
    assert codec.receive("e", NOW) == [Final(2, ResultStatus.NO_INPUT)]


def test_close() -> None:
    ready = AmiVoiceCodec()
    ready.open(NOW)
    assert ready.close(NOW) == [SessionClosed()] and ready.state is SessionState.CLOSED
    codec = started()
    assert codec.close(NOW) == [Final(1, ResultStatus.CANCELLED)]
    assert codec.data_to_send() == ["e"] and codec.state is SessionState.CLOSING
    assert codec.receive("e", NOW) == [SessionClosed()] and codec.state is SessionState.CLOSED
    starting = AmiVoiceCodec()
    starting.send(RecognitionRequest(1, "ja"), NOW)
    starting.close(NOW)
    assert starting.receive("s", NOW) == [] and starting.state is SessionState.CLOSING
    assert starting.receive("e", NOW) == [SessionClosed()]


def test_connection_lost() -> None:
    error = VendorError("1006", "connection lost")
    codec = started()
    assert codec.connection_lost(error) == [Final(1, ResultStatus.ERROR, error=error), SessionClosed(error)]
    assert codec.state is SessionState.CLOSED and codec.connection_lost(error) == []
    idle = AmiVoiceCodec()
    assert idle.connection_lost(None) == [SessionClosed(None)]


# ---- never raises


_frames = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(lambda letter, rest: f"{letter} {rest}", st.sampled_from("sSpeECUARGQ"), st.text(max_size=30)),
    st.builds(
        lambda letter, body: f"{letter} {json.dumps(body)}",
        st.sampled_from("UAR"),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        ["results", "tokens", "text", "code", "message", "written", "starttime", "confidence"]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ),
    ),
    st.sampled_from(
        ["s", "e", "S 100", result("はい"), result(""), "e timeout x", "p can't feed audio data"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(_frames, max_size=12), stop=st.sampled_from(["none", "end", "cancel", "close"]))
def test_arbitrary_frames_never_raise_and_give_one_final_at_most(frames: list[Frame], stop: str) -> None:
    codec = AmiVoiceCodec()
    codec.open(NOW)
    codec.send(RecognitionRequest(1, "ja"), NOW)
    events: list[AsrEvent] = []
    for i, frame in enumerate(frames):
        if i == len(frames) // 2 and stop != "none":
            events += getattr(codec, stop)(NOW)
        events += codec.receive(frame, NOW)
        assert all(isinstance(f, str | bytes) for f in codec.data_to_send())
    assert len([e for e in events if isinstance(e, Final)]) <= 1
    assert isinstance(codec.state, SessionState)


# ---- through the real driver, in memory


@dataclass
class Peer:
    """An AmiVoice server reduced to a script: after `after` bytes of audio of an s ... e, says `text`."""

    texts: list[str]
    after: int = 3200
    frames: list[Frame] = field(default_factory=list)
    connections: int = 0
    audio: int = 0

    def respond(self, frame: Frame) -> list[Frame]:
        self.frames.append(frame)
        if isinstance(frame, bytes):
            assert frame[:1] == b"p"
            before, self.audio = self.audio, self.audio + len(frame) - 1
            if before < self.after <= self.audio:
                return [
                    "S 120",
                    "C",
                    interim(self.texts[0][:1] + "..."),
                    "E 900",
                    result(self.texts.pop(0)),
                    "G",
                ]
            return []
        if frame.startswith("s "):
            self.audio = 0
            return ["s"]
        return ["e"] if frame == "e" else []

    async def connect(self) -> Connection:
        self.connections += 1
        return MemoryConnection(self.respond)


async def test_two_recognitions_on_one_connection_through_the_stream() -> None:
    peer = Peer(["はい", "いいえ"])
    events: list[AsrEvent] = []
    changed = asyncio.Event()

    def on_event(event: AsrEvent) -> None:
        events.append(event)
        changed.set()

    async def final(recognition: int) -> Final:
        async with asyncio.timeout(5):
            while not (done := [e for e in events if isinstance(e, Final) and e.recognition == recognition]):
                changed.clear()
                await changed.wait()
        return done[0]

    stream = RecognizerStream(
        "amivoice", peer.connect, lambda r: AmiVoiceCodec(authorization=KEY), on_event, close_timeout=1.0
    )
    for recognition, audio, frame in ((1, AudioFormat.PCM16, 320), (2, AudioFormat.PCMU, 160)):
        await stream.recognize(RecognitionRequest(recognition, "ja", audio_format=audio))
        for _ in range(30):  # 20 ms packets, as RTP brings them
            stream.audio(b"\x01" * frame)
            await asyncio.sleep(0)
        done = await final(recognition)
        assert done.status is ResultStatus.RECOGNIZED
    await stream.close()

    assert peer.connections == 1
    assert [f.text for f in events if isinstance(f, Final)] == ["はい", "いいえ"]
    assert [e for e in events if isinstance(e, StartOfSpeech)] == [
        StartOfSpeech(1, 0.12),
        StartOfSpeech(2, 0.12),
    ]
    commands = [f for f in peer.frames if isinstance(f, str)]
    assert commands == [
        f"s LSB8K -a-general authorization={KEY}",
        "e",
        f"s MULAW -a-general authorization={KEY}",
        "e",
    ]
    first = peer.frames[1 : peer.frames.index("e")]
    assert len(first) >= 2 and all(f == b"p" + b"\x01" * 1600 for f in first)  # 100 ms of PCM16 per p


@dataclass
class TimingOutPeer:
    """The first connection times out mid-turn (002's unsolicited `e timeout...`); the second answers."""

    timeout_after: int = 3200
    answer_after: int = 8000
    audio: list[bytearray] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def connect_with(self) -> Callable[[], Awaitable[Connection]]:
        async def connect() -> Connection:
            heard = bytearray()
            self.audio.append(heard)
            first = len(self.audio) == 1

            def respond(frame: Frame) -> list[Frame]:
                if isinstance(frame, str):
                    self.commands.append(frame)
                    return ["s"] if frame.startswith("s ") else ["e"] if frame == "e" else []
                before = len(heard)
                heard.extend(frame[1:])
                if first and before < self.timeout_after <= len(heard):
                    return ["e timeout occurred while recognizing audio data from client"]
                if not first and before < self.answer_after <= len(heard):
                    return ["S 120", "E 900", result("はい")]
                return []

            return MemoryConnection(respond)

        return connect


async def test_a_server_timeout_mid_turn_reconnects_and_replays_the_callers_audio() -> None:
    peer = TimingOutPeer()
    events: list[AsrEvent] = []
    stream = RecognizerStream(
        "amivoice", peer.connect_with(), lambda r: AmiVoiceCodec(authorization=KEY), events.append
    )
    await stream.recognize(RecognitionRequest(1, "ja", audio_format=AudioFormat.PCMU))
    spoken = bytes(range(256)) * 40  # 10,240 bytes: 1.28 s of µ-law, every byte value
    async with asyncio.timeout(5):
        for i in range(0, len(spoken), 160):
            stream.audio(spoken[i : i + 160])
            await asyncio.sleep(0.001)
        while not any(isinstance(e, Final) for e in events):
            await asyncio.sleep(0.01)
    await stream.close()
    [final] = [e for e in events if isinstance(e, Final)]
    assert final.status is ResultStatus.RECOGNIZED and final.text == "はい"
    assert len(peer.audio) == 2  # a second connection
    # The second attempt heard the turn from its first byte, not from where the first one broke off.
    assert peer.audio[1] == spoken[: len(peer.audio[1])] and len(peer.audio[1]) >= peer.answer_after
    assert [c.split()[0] for c in peer.commands].count("s") == 2


async def test_a_second_timeout_gives_up_with_the_error_not_a_loop() -> None:
    events: list[AsrEvent] = []
    always_out = TimingOutPeer()

    async def connect() -> Connection:
        always_out.audio.clear()  # every connection is a "first" one: it times out too
        return await always_out.connect_with()()

    stream = RecognizerStream("amivoice", connect, lambda r: AmiVoiceCodec(), events.append)
    await stream.recognize(RecognitionRequest(1, "ja", audio_format=AudioFormat.PCMU))
    async with asyncio.timeout(5):
        while not any(isinstance(e, Final) for e in events):
            stream.audio(b"\x7f" * 160)
            await asyncio.sleep(0.001)
    await stream.close()
    [final] = [e for e in events if isinstance(e, Final)]
    assert final.status is ResultStatus.ERROR and final.error is not None and final.error.code == "timeout"
    assert [c.split()[0] for c in always_out.commands].count("s") == 2  # one retry, then the fallback
