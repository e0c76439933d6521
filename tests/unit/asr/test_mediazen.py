"""MediazenCodec against the vendor document's examples and the tolerance the brief asks for."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.asr.base import (
    Alternative,
    EndOfSpeech,
    PartialResult,
    RecognitionError,
    RecognitionResult,
    RecognizerCodec,
    SessionClosed,
    SessionReady,
    StartOfSpeech,
)
from ivr.asr.mediazen import MediazenCodec

REPLY_OK = '{"topic":"asr:ko","payload":{"status":"ok"},"event":"reply"}'
CLOSE = '{"topic":"asr:ko","payload":{},"event":"close"}'


def text_message(text: str, *, epd: bool, event: bool = True, confidence: float = 0.0) -> str:
    message: dict[str, object] = {
        "topic": "asr:ko",
        "payload": {"stt_cnt": 1, "stt": [{"id": 0, "text": text, "confidence": confidence}], "epd": epd},
    }
    if event:
        message["event"] = "new:text"
    return json.dumps(message, ensure_ascii=False)


def joined() -> MediazenCodec:
    codec = MediazenCodec()
    codec.open()
    assert codec.receive(REPLY_OK) == [SessionReady()]
    return codec


def test_implements_the_recognizer_interface() -> None:
    codec = MediazenCodec()
    assert isinstance(codec, RecognizerCodec)
    assert codec.vendor == "mediazen"
    assert codec.chunk_bytes == 1600  # 100 ms of 16-bit 8 kHz
    assert MediazenCodec(chunk_ms=20).chunk_bytes == 320


@pytest.mark.parametrize("language", ["ko", "en", "jp"])
def test_join_and_quit_carry_the_language(language: str) -> None:
    codec = MediazenCodec(language)
    assert [json.loads(f) for f in codec.open()] == [{"language": language, "cmd": "join"}]
    assert [json.loads(f) for f in codec.finish()] == [{"language": language, "cmd": "quit"}]
    assert codec.finish() == []  # quit once


@pytest.mark.parametrize("language", ["kr", "ja", "KO", "", "zh"])
def test_unknown_language_is_rejected(language: str) -> None:
    with pytest.raises(ValueError, match="language"):
        MediazenCodec(language)


@pytest.mark.parametrize("chunk_ms", [0, -20, 5000, 12.5, True])
def test_bad_chunk_size_is_rejected(chunk_ms: object) -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        MediazenCodec(chunk_ms=chunk_ms)  # type: ignore[arg-type]


def test_ready_only_after_reply_ok() -> None:
    codec = MediazenCodec()
    codec.open()
    assert not codec.ready
    assert codec.receive(REPLY_OK) == [SessionReady()]
    assert codec.ready and not codec.closed
    assert codec.receive(REPLY_OK) == []  # a second reply is not a second session


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"status": "busy"}, "'busy'"), ({"status": "error"}, "'error'"), ({}, "None"), ("x", "None")],
)
def test_reply_other_than_ok_is_an_error_naming_the_status(payload: object, status: str) -> None:
    codec = MediazenCodec()
    codec.open()
    events = codec.receive(json.dumps({"topic": "asr:ko", "payload": payload, "event": "reply"}))
    assert len(events) == 1 and isinstance(events[0], RecognitionError)
    assert status in events[0].reason
    assert not codec.ready


def test_refusal_reason_carries_the_server_message() -> None:
    codec = MediazenCodec("jp")
    codec.open()
    reply = '{"topic":"asr:jp","payload":{"status":"error","message":"no model for jp"},"event":"reply"}'
    [event] = codec.receive(reply)
    assert isinstance(event, RecognitionError)
    assert "'error'" in event.reason and "no model for jp" in event.reason


def test_audio_is_passed_through_as_binary_even_before_ready() -> None:
    codec = MediazenCodec()
    pcm = bytes(range(256)) * 4
    assert codec.audio(pcm) == [pcm]
    assert codec.audio(b"") == []
    with pytest.raises(ValueError, match="whole samples"):
        codec.audio(b"\x00\x01\x02")
    codec.finish()
    with pytest.raises(RuntimeError):
        codec.audio(pcm)


def test_utterance_sequence_partial_then_end_point() -> None:
    codec = joined()
    assert codec.receive(text_message("", epd=False)) == []  # silence before speech
    assert codec.receive(text_message("주변", epd=False)) == [StartOfSpeech(), PartialResult("주변", 0.0)]
    assert codec.receive(text_message("주변 맛집", epd=False, confidence=0.4)) == [
        PartialResult("주변 맛집", 0.4)
    ]
    assert codec.receive(text_message("주변 맛집 알려줘", epd=True, confidence=0.9)) == [
        EndOfSpeech(),
        RecognitionResult("주변 맛집 알려줘", 0.9),
    ]
    # The server keeps listening after an end point: the next partial starts a new utterance.
    assert codec.receive(text_message("네", epd=False)) == [StartOfSpeech(), PartialResult("네", 0.0)]
    assert codec.receive(text_message("네", epd=True)) == [EndOfSpeech(), RecognitionResult("네", 0.0)]


def test_new_text_without_event_key_as_in_the_document() -> None:
    codec = joined()
    assert codec.receive(text_message("주변", epd=False, event=False)) == [
        StartOfSpeech(),
        PartialResult("주변", 0.0),
    ]


def test_end_point_without_partials_still_opens_and_closes_the_utterance() -> None:
    codec = joined()
    assert codec.receive(text_message("상담원", epd=True)) == [
        StartOfSpeech(),
        EndOfSpeech(),
        RecognitionResult("상담원", 0.0),
    ]


def test_end_point_on_silence_is_not_an_utterance() -> None:
    codec = joined()
    assert codec.receive(text_message("", epd=True)) == []
    empty = '{"topic":"asr:ko","payload":{"stt_cnt":0,"stt":[],"epd":true},"event":"new:text"}'
    assert codec.receive(empty) == []


def test_end_point_with_empty_text_after_partials_closes_the_utterance() -> None:
    codec = joined()
    codec.receive(text_message("음", epd=False))
    assert codec.receive(text_message("", epd=True)) == [EndOfSpeech(), RecognitionResult("", 0.0)]


def test_tolerates_unknown_keys_int_confidence_and_wrong_stt_cnt() -> None:
    codec = joined()
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
    assert codec.receive(json.dumps(message)) == [
        StartOfSpeech(),
        EndOfSpeech(),
        RecognitionResult("yes", 1.0, (Alternative("yeah", 0.5),)),
    ]


def test_close_event_ends_the_session() -> None:
    codec = joined()
    codec.finish()
    assert codec.receive(CLOSE) == [SessionClosed()]
    assert codec.closed
    assert codec.receive(text_message("늦은", epd=True)) == []  # nothing after close


def test_binary_json_is_read_like_text() -> None:
    codec = MediazenCodec()
    codec.open()
    assert codec.receive(REPLY_OK.encode()) == [SessionReady()]


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
def test_malformed_input_is_an_error_event(frame: str | bytes) -> None:
    events = joined().receive(frame)
    assert len(events) == 1 and isinstance(events[0], RecognitionError)


def test_new_text_with_non_object_payload_or_stt_is_an_error_event() -> None:
    codec = joined()
    for payload in ("x", {"stt": "x", "epd": True}):
        events = codec.receive(json.dumps({"topic": "asr:ko", "payload": payload, "event": "new:text"}))
        assert len(events) == 1 and isinstance(events[0], RecognitionError)


def test_unknown_events_are_ignored() -> None:
    assert joined().receive('{"topic":"asr:ko","payload":{},"event":"presence_diff"}') == []


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
def test_receive_never_raises(frames: list[str | bytes]) -> None:
    codec = MediazenCodec()
    codec.open()
    for frame in frames:
        events = codec.receive(frame)
        assert isinstance(events, list)
