"""MediazenCodec against the vendor document's examples and the tolerance a real server needs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.asr.base import (
    Alternative,
    AudioFormat,
    EndOfSpeech,
    Failure,
    Final,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    RecognizerCodec,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    UnsupportedRequest,
)
from ivr.asr.mediazen import MediazenCodec, vendor_language

REPLY_OK = '{"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}'
CLOSE = '{"topic":"asr:ko","payload":{},"event":"close"}'
NOW = 10.0


def text_message(text: str, *, epd: bool, event: bool = True, confidence: float = 0.0) -> str:
    message: dict[str, object] = {
        "topic": "asr:ko",
        "payload": {"stt_cnt": 1, "stt": [{"id": 0, "text": text, "confidence": confidence}], "epd": epd},
    }
    if event:
        message["event"] = "new:text"
    return json.dumps(message, ensure_ascii=False)


def sent(codec: MediazenCodec) -> list[object]:
    return [json.loads(f) if isinstance(f, str) else f for f in codec.data_to_send()]


def joined(language: str = "ko", recognition: int = 7) -> MediazenCodec:
    codec = MediazenCodec()
    codec.open(NOW)
    assert codec.send(RecognitionRequest(recognition, language), NOW) == []
    codec.data_to_send()
    assert codec.receive(REPLY_OK, NOW) == [RecognitionStarted(recognition)]
    assert codec.state is SessionState.LISTENING
    return codec


def test_implements_the_recognizer_interface() -> None:
    codec = MediazenCodec()
    assert isinstance(codec, RecognizerCodec)
    assert codec.vendor == "mediazen" and codec.chunk_ms == 100
    assert MediazenCodec(chunk_ms=20).chunk_ms == 20
    assert codec.state is SessionState.READY and codec.deadline() is None


@pytest.mark.parametrize(
    ("tag", "code"), [("ko", "ko"), ("ko-KR", "ko"), ("en-US", "en"), ("ja", "jp"), ("jp", "jp")]
)
def test_bcp47_languages_map_to_mediazen_codes(tag: str, code: str) -> None:
    assert vendor_language(tag) == code
    codec = MediazenCodec()
    codec.open(NOW)
    assert codec.data_to_send() == []  # the join waits for the request: it carries the language
    codec.send(RecognitionRequest(1, tag), NOW)
    assert sent(codec) == [{"language": code, "cmd": "join"}]
    assert codec.state is SessionState.STARTING and codec.recognition == 1


@pytest.mark.parametrize("language", ["kr", "pt-BR", "", "zh"])
def test_a_language_mediazen_lacks_is_refused_by_send(language: str) -> None:
    codec = MediazenCodec()
    with pytest.raises(UnsupportedRequest, match="language"):
        codec.send(RecognitionRequest(1, language), NOW)
    assert codec.data_to_send() == [] and codec.state is SessionState.READY


def test_g711_is_refused() -> None:
    with pytest.raises(UnsupportedRequest, match="PCM"):
        MediazenCodec().send(RecognitionRequest(1, "ko", audio_format=AudioFormat.PCMU), NOW)


@pytest.mark.parametrize("chunk_ms", [0, -20, 5000, 12.5, True])
def test_bad_chunk_size_is_rejected(chunk_ms: object) -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        MediazenCodec(chunk_ms=chunk_ms)  # type: ignore[arg-type]


def test_one_recognition_per_connection() -> None:
    codec = joined()
    with pytest.raises(RuntimeError, match="one recognition per connection"):
        codec.send(RecognitionRequest(8, "ko"), NOW)


def test_listening_only_after_reply_ok() -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(3, "ko"), NOW)
    codec.data_to_send()
    codec.audio(b"\x00\x00" * 80, NOW)
    assert codec.data_to_send() == []  # not listening yet: the driver holds audio
    assert codec.receive(REPLY_OK, NOW) == [RecognitionStarted(3)]
    assert codec.receive(REPLY_OK, NOW) == []  # a second reply is not a second session


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"status": "busy"}, "'busy'"), ({"status": "error"}, "'error'"), ({}, "None"), ("x", "None")],
)
def test_reply_other_than_ok_ends_the_recognition_naming_the_status(payload: object, status: str) -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(4, "ko"), NOW)
    codec.data_to_send()
    [final] = codec.receive(json.dumps({"topic": "asr:ko", "payload": payload, "event": "reply"}), NOW)
    assert isinstance(final, Final) and final.recognition == 4 and final.status is ResultStatus.ERROR
    assert final.error is not None and status in final.error.message
    assert sent(codec) == [{"language": "ko", "cmd": "quit"}]


def test_refusal_reason_carries_the_server_message() -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(1, "ja"), NOW)
    reply = '{"topic":"asr:jp","payload":{"status":"error","message":"no model for jp"},"event":"reply"}'
    [final] = codec.receive(reply, NOW)
    assert isinstance(final, Final) and final.error is not None
    assert "'error'" in final.error.message and "no model for jp" in final.error.message


def test_audio_is_passed_through_as_binary() -> None:
    codec = joined()
    pcm = bytes(range(256)) * 4
    codec.audio(pcm, NOW)
    codec.audio(b"", NOW)
    assert codec.data_to_send() == [pcm]


def test_utterance_then_the_documented_closing_exchange() -> None:
    codec = joined()
    assert codec.receive(text_message("", epd=False), NOW) == []  # silence before speech
    assert codec.receive(text_message("주변", epd=False), NOW) == [StartOfSpeech(7), Partial(7, "주변", 0.0)]
    assert codec.receive(text_message("주변 맛집", epd=False, confidence=0.4), NOW) == [
        Partial(7, "주변 맛집", 0.4)
    ]
    assert codec.receive(text_message("주변 맛집 알려줘", epd=True, confidence=0.9), NOW) == [
        EndOfSpeech(7),
        Final(7, ResultStatus.RECOGNIZED, (Alternative("주변 맛집 알려줘", 0.9),)),
    ]
    # The result ends the recognition, and the session ends as the document says: quit -> close.
    assert sent(codec) == [{"language": "ko", "cmd": "quit"}]
    assert codec.state is SessionState.CLOSING and codec.recognition is None
    assert codec.receive(text_message("네", epd=True), NOW) == []  # late results belong to nobody
    assert codec.receive(CLOSE, NOW) == [SessionClosed()]
    assert codec.state is SessionState.CLOSED


def test_new_text_without_event_key_as_in_the_document() -> None:
    codec = joined()
    assert codec.receive(text_message("주변", epd=False, event=False), NOW) == [
        StartOfSpeech(7),
        Partial(7, "주변", 0.0),
    ]


def test_end_point_without_partials_still_opens_and_closes_the_utterance() -> None:
    assert joined().receive(text_message("상담원", epd=True), NOW) == [
        StartOfSpeech(7),
        EndOfSpeech(7),
        Final(7, ResultStatus.RECOGNIZED, (Alternative("상담원", 0.0),)),
    ]


def test_end_point_on_silence_is_not_an_utterance() -> None:
    codec = joined()
    assert codec.receive(text_message("", epd=True), NOW) == []
    empty = '{"topic":"asr:ko","payload":{"stt_cnt":0,"stt":[],"epd":true},"event":"new:text"}'
    assert codec.receive(empty, NOW) == []
    assert codec.state is SessionState.LISTENING


def test_end_point_with_empty_text_after_partials_keeps_listening() -> None:
    codec = joined()
    codec.receive(text_message("음", epd=False), NOW)
    assert codec.receive(text_message("", epd=True), NOW) == [EndOfSpeech(7)]
    assert codec.state is SessionState.LISTENING and codec.recognition == 7
    assert codec.receive(text_message("네", epd=True), NOW)[-1] == Final(
        7, ResultStatus.RECOGNIZED, (Alternative("네", 0.0),)
    )


def test_tolerates_unknown_keys_int_confidence_and_wrong_stt_cnt() -> None:
    message = {
        "topic": "asr:en",  # documented as "currently the only value" is asr:ko: not rejected
        "ref": 7,
        "payload": {
            "stt_cnt": 5,
            "stt": [
                {"id": 0, "text": " yes ", "confidence": 1, "extra": True},
                {"id": 1, "text": "yeah", "confidence": "0.5"},
                "junk",
            ],
            "epd": True,
            "vendor_field": {},
        },
        "event": "new:text",
    }
    assert joined().receive(json.dumps(message), NOW)[-1] == Final(
        7, ResultStatus.RECOGNIZED, (Alternative("yes", 1.0), Alternative("yeah", 0.5))
    )


def test_end_sends_quit_and_a_close_without_result_is_no_input() -> None:
    codec = joined()
    assert codec.end(NOW) == []
    assert sent(codec) == [{"language": "ko", "cmd": "quit"}]
    assert codec.receive(CLOSE, NOW) == [Final(7, ResultStatus.NO_INPUT), SessionClosed()]


def test_close_after_speech_without_text_is_no_match() -> None:
    codec = joined()
    codec.receive(text_message("음", epd=False), NOW)
    codec.end(NOW)
    assert codec.receive(CLOSE, NOW)[0] == Final(7, ResultStatus.NO_MATCH)


def test_cancel_ends_the_recognition_at_once_and_quits() -> None:
    codec = joined()
    assert codec.cancel(NOW) == [Final(7, ResultStatus.CANCELLED)]
    assert sent(codec) == [{"language": "ko", "cmd": "quit"}]
    assert codec.cancel(NOW) == []
    assert codec.receive(text_message("늦은", epd=True), NOW) == []


def test_close_before_any_request_needs_no_goodbye() -> None:
    codec = MediazenCodec()
    codec.open(NOW)
    assert codec.close(NOW) == [SessionClosed()]
    assert codec.data_to_send() == [] and codec.state is SessionState.CLOSED


def test_connection_lost_mid_recognition_is_an_error_final() -> None:
    codec = joined()
    events = codec.connection_lost(None)
    assert isinstance(events[0], Final) and events[0].status is ResultStatus.ERROR
    assert events[1] == SessionClosed() and codec.state is SessionState.CLOSED


def test_binary_json_is_read_like_text() -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(1, "ko"), NOW)
    assert codec.receive(REPLY_OK.encode(), NOW) == [RecognitionStarted(1)]


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "[1, 2]",
        "null",
        '"reply"',
        b"\xff\xfe",
        "[" * 100_000,
        '{"event":"error","payload":{}}',
    ],
)
def test_malformed_input_ends_the_recognition_with_an_error(frame: str | bytes) -> None:
    [final] = joined().receive(frame, NOW)
    assert isinstance(final, Final) and final.status is ResultStatus.ERROR


def test_new_text_with_non_object_payload_or_stt_is_an_error() -> None:
    for payload in ("x", {"stt": "x", "epd": True}):
        codec = joined()
        [final] = codec.receive(json.dumps({"topic": "asr:ko", "payload": payload, "event": "new:text"}), NOW)
        assert isinstance(final, Final) and final.status is ResultStatus.ERROR


def test_unknown_events_are_ignored() -> None:
    assert joined().receive('{"topic":"asr:ko","payload":{},"event":"presence_diff"}', NOW) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "topic": json_values,
        "event": st.sampled_from(["reply", "new:text", "close", "error"]) | json_values,
        "payload": st.fixed_dictionaries(
            {},
            optional={
                "status": json_values,
                "stt_cnt": json_values,
                "stt": st.lists(
                    st.fixed_dictionaries({}, optional={"id": json_values, "text": json_values})
                    | json_values,
                    max_size=3,
                )
                | json_values,
                "epd": json_values,
            },
        )
        | json_values,
    },
)


@given(st.lists(st.text() | st.binary() | message_like.map(json.dumps), max_size=8))
def test_receive_never_raises_and_gives_at_most_one_final(frames: list[str | bytes]) -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(1, "ko"), NOW)
    finals = 0
    for frame in frames:
        events = codec.receive(frame, NOW)
        finals += sum(isinstance(e, Final) for e in events)
    assert finals <= 1


def test_a_close_the_bridge_did_not_ask_for_is_a_vendor_failure_not_silence() -> None:
    # The server ended the session under the caller's turn: the turn may go to a secondary vendor.
    codec = joined()
    codec.receive(text_message("상담", epd=False), NOW)
    events = codec.receive(CLOSE, NOW)
    final = next(e for e in events if isinstance(e, Final))
    assert final.status is ResultStatus.ERROR
    assert final.error is not None and final.error.kind is Failure.CLOSED
    assert events[-1] == SessionClosed()
