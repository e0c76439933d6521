"""Replays the exchange of "음성인식 WebSocket Server Message" (Mediazen, 2025-07-31) through MediazenCodec.

The examples below are copied verbatim from ../shared/specs/000-mediazen-asr-websocket.md (the ``<br>`` of
its tables written as newlines); when the document sits beside the repository, a test checks they still match.
"""

from __future__ import annotations

import json
import re

import pytest

from ivr.asr.base import (
    Final,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
)
from ivr.asr.mediazen import MediazenCodec
from tests.tools import SHARED

DOCUMENT = SHARED / "specs" / "000-mediazen-asr-websocket.md"

# §1 To Server / From Server
JOIN = '{   "language": "ko",   "cmd": "join" }'
REPLY = '{   "topic": "asr:ko",   "payload": {     "status": "ok"   },   "event": "reply" }'
# §2 예시 (note: no "event" key)
NEW_TEXT = (
    '{"topic":"asr:ko","payload":{"stt_cnt":1,"stt":[{"id":0,"text":"주변", "confidence":0.0}],"epd":false}}'
)
# §3 종료 요청
QUIT = '{\n"language" : "ko",\n"cmd" : "quit"\n}'
# The document's close example lacks the colon after "payload", so as printed it is not JSON.
CLOSE_AS_PRINTED = '{\n"topic" : "asr:ko",\n"payload"\n{\n},\n"event" : "close"\n}'
CLOSE = CLOSE_AS_PRINTED.replace('"payload"\n{', '"payload" :\n{')


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_documented_exchange() -> None:
    codec = MediazenCodec()
    codec.open(0.0)
    codec.send(RecognitionRequest(1, "ko"), 0.0)

    [join] = codec.data_to_send()
    assert isinstance(join, str)
    assert squeeze(join) == squeeze(JOIN)

    assert codec.receive(REPLY, 0.0) == [RecognitionStarted(1)]
    assert codec.state is SessionState.LISTENING

    pcm = b"\x00\x00" * 800  # "실시간 음성 데이터(16bit 8k mono raw data)": binary frames as is
    codec.audio(pcm, 0.0)
    assert codec.data_to_send() == [pcm]

    assert codec.receive(NEW_TEXT, 0.0) == [StartOfSpeech(1), Partial(1, "주변", 0.0)]

    codec.end(0.0)
    [quit_] = codec.data_to_send()
    assert isinstance(quit_, str)
    assert json.loads(quit_) == json.loads(QUIT)
    assert squeeze(quit_) == squeeze(QUIT)

    # Speech was heard but no end point came before the close: the recognition ends without a match.
    assert codec.receive(CLOSE, 0.0) == [Final(1, ResultStatus.NO_MATCH), SessionClosed()]
    assert codec.state is SessionState.CLOSED


def test_close_example_as_printed_is_reported_not_raised() -> None:
    codec = MediazenCodec()
    codec.send(RecognitionRequest(1, "ko"), 0.0)
    codec.receive(REPLY, 0.0)
    codec.end(0.0)
    [event] = codec.receive(CLOSE_AS_PRINTED, 0.0)
    assert isinstance(event, Final) and event.status is ResultStatus.ERROR
    assert codec.state is not SessionState.CLOSED


@pytest.mark.skipif(not DOCUMENT.exists(), reason="vendor document not beside the repository")
def test_examples_match_the_document() -> None:
    document = squeeze(DOCUMENT.read_text(encoding="utf-8").replace("<br>", "\n"))
    for example in (JOIN, REPLY, NEW_TEXT, QUIT, CLOSE_AS_PRINTED):
        assert squeeze(example) in document
