"""Fuzzing the three vendor codecs with whatever a server might send (issue 12).

The contract (`RecognizerCodec.receive`, ivr/asr/base.py): any frame, text or binary, gives events; malformed
input ends the recognition with Final(ERROR), never an exception (no KeyError, TypeError, IndexError,
UnicodeDecodeError, RecursionError or int() limit escaping). Frames come from each vendor's valid messages
with fields replaced, dropped, truncated, made huge or non-UTF-8, and the JSON inside them with values of
every wrong type; they are interleaved with what the driver (`ivr/asr/stream.py`) does between them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import example, given
from hypothesis import strategies as st

from ivr.asr.amivoice import AmiVoiceCodec
from ivr.asr.base import (
    AsrEvent,
    Classifier,
    EndOfSpeech,
    Final,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    RecognizerCodec,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    VendorError,
)
from ivr.asr.cpqd import CpqdCodec
from ivr.asr.mediazen import MediazenCodec
from tests.unit.fuzz.strategies import as_text, fuzz, json_mutated, mutated, nasty

NOW = 10.0
EVENT_TYPES = (RecognitionStarted, StartOfSpeech, EndOfSpeech, Partial, Final, SessionClosed)
Frame = bytes | str
Step = tuple[str, object]


def run(codec: RecognizerCodec, setup: list[Step], steps: list[Step]) -> None:
    """Apply the steps as the driver would (client calls only in the states it makes them), checking each."""
    now = NOW
    finals: dict[int, int] = {}
    for kind, arg in [*setup, *steps]:
        now += 0.05
        events: list[AsrEvent] = []
        state = codec.state
        if kind == "frame":
            assert isinstance(arg, bytes | str)
            events = codec.receive(arg, now)
        elif kind == "open" and state is SessionState.OPENING:
            codec.open(now)
        elif kind == "send" and state is SessionState.READY:
            assert isinstance(arg, RecognitionRequest)
            events = codec.send(arg, now)
        elif kind == "audio" and state is SessionState.LISTENING:
            codec.audio(b"\x00\x01" * 400, now)
        elif kind == "end" and state is SessionState.LISTENING:
            events = codec.end(now)
        elif kind == "cancel" and codec.recognition is not None:
            events = codec.cancel(now)
        elif kind == "close" and state not in (SessionState.CLOSED, SessionState.CLOSING):
            events = codec.close(now)
        elif kind == "timeout":
            deadline = codec.deadline()
            if deadline is not None:
                now = max(now, deadline)
                events = codec.timeout(now)
        elif kind == "lost":
            events = codec.connection_lost(VendorError("", "fuzz") if arg else None)
        for event in events:
            assert isinstance(event, EVENT_TYPES), event
            if isinstance(event, Final):
                finals[event.recognition] = finals.get(event.recognition, 0) + 1
        assert all(isinstance(f, bytes | str) for f in codec.data_to_send())
        assert isinstance(codec.state, SessionState)
    assert all(n == 1 for n in finals.values()), finals  # one Final per recognition, never two


def frames_of(frame: st.SearchStrategy[Frame]) -> st.SearchStrategy[list[Step]]:
    action = st.tuples(st.sampled_from(["audio", "end", "cancel", "close", "timeout"]), st.none())
    lost = st.tuples(st.just("lost"), st.booleans())
    return st.lists(st.tuples(st.just("frame"), frame) | action | action | lost, max_size=12)


def text_or_bytes(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[Frame]:
    return data | data.map(lambda b: b.decode("utf-8", "replace"))


# ---- CPQD: "ASR 2.4 TYPE", headers, blank line, Content-Length bytes of JSON

CHANNEL = "698dc19d489c4e4db73e28a713eab07b"


def cpqd(kind: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"ASR 2.4 {kind}", "Handle: 1", *[f"{n}: {v}" for n, v in headers]]
    if body:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def cpqd_response(method: str, status: str = "IDLE", result: str = "SUCCESS") -> bytes:
    return cpqd("RESPONSE", [("Method", method), ("Result", result), ("Session-Status", status)])


CPQD_BODIES: list[object] = [
    {
        "alternatives": [
            {
                "text": "sim",
                "score": 90,
                "lm": "builtin:slm/general",
                "words": [{"text": "sim", "score": 90, "start_time": 0.5, "end_time": 0.9}],
            }
        ],
        "result_status": "RECOGNIZED",
        "segment_index": 0,
        "last_segment": True,
        "final_result": True,
        "emotion_scores": {
            "emotion": "feliz",
            "p": {"feliz": 0.8, "neutro": 0.2},
            "p_groups": {"positivo": 0.8},
        },
        "age_scores": {"age": 34, "p": {"30": 0.7}, "confidence": "mid"},
        "gender_scores": {"gender": "M", "p": [0.85, 0.15]},
    },
    {"alternatives": [{"text": "par", "score": 40}], "result_status": "PROCESSING", "final_result": False},
    {"result_status": "NO_MATCH", "alternatives": []},
]
CPQD_SEEDS = [
    cpqd_response("CREATE_SESSION"),
    cpqd_response("START_RECOGNITION", "LISTENING"),
    cpqd_response("START_RECOGNITION", "IDLE", "FAILURE").replace(
        b"\r\n\r\n", b"\r\nError-Code: 201\r\nMessage: x\r\n\r\n"
    ),
    cpqd_response("CANCEL_RECOGNITION"),
    cpqd_response("RELEASE_SESSION"),
    cpqd("START_OF_SPEECH", [("Session-Status", "RECOGNIZING")]),
    cpqd("END_OF_SPEECH", [("Session-Status", "RECOGNIZING")]),
    *[
        cpqd(
            "RECOGNITION_RESULT",
            [("Session-Status", "IDLE"), ("Result-Status", "RECOGNIZED")],
            json.dumps(b).encode(),
        )
        for b in CPQD_BODIES
    ],
]


@st.composite
def cpqd_result_frame(draw: st.DrawFn) -> bytes:
    body = draw(json_mutated(CPQD_BODIES)).encode("utf-8", "surrogatepass")
    status = draw(st.sampled_from(["RECOGNIZED", "PROCESSING", "NO_MATCH", "NO_INPUT_TIMEOUT", "", "x"]))
    session = draw(st.sampled_from(["IDLE", "RECOGNIZING", "LISTENING", "?"]))
    frame = cpqd("RECOGNITION_RESULT", [("Session-Status", session), ("Result-Status", status)], body)
    return (
        frame
        if draw(st.booleans())
        else frame.replace(b"Content-Length: ", b"Content-Length: " + draw(nasty))
    )


cpqd_frames = text_or_bytes(
    st.binary(max_size=200) | mutated(CPQD_SEEDS) | st.sampled_from(CPQD_SEEDS) | cpqd_result_frame()
)
CPQD_SETUP: list[Step] = [
    ("open", None),
    ("frame", CPQD_SEEDS[0]),
    ("send", RecognitionRequest(1, "pt-BR", classifiers=frozenset(Classifier))),
    ("frame", CPQD_SEEDS[1]),
]


@fuzz(600)
@given(st.integers(0, len(CPQD_SETUP)), frames_of(cpqd_frames))
@example(4, [("frame", cpqd("RECOGNITION_RESULT", [("Result-Status", "RECOGNIZED")], b"[" * 100000))])
@example(
    4,
    [
        (
            "frame",
            cpqd(
                "RECOGNITION_RESULT",
                [("Result-Status", "RECOGNIZED")],
                b'{"segment_index": ' + b"9" * 5000 + b"}",
            ),
        )
    ],
)
@example(
    4,
    [
        (
            "frame",
            cpqd("RECOGNITION_RESULT", [("Result-Status", "RECOGNIZED")], b'{"age_scores": {"age": 1e308}}'),
        )
    ],
)
@example(
    4,
    [
        (
            "frame",
            cpqd(
                "RECOGNITION_RESULT",
                [("Result-Status", "RECOGNIZED")],
                b'{"alternatives": [{"text": "\\ud800"}]}',
            ),
        )
    ],
)
def test_cpqd_codec_takes_any_frame(setup: int, steps: list[Step]) -> None:
    run(CpqdCodec(channel_id=CHANNEL), CPQD_SETUP[:setup], steps)


# ---- AmiVoice: one-letter events, JSON after U and A

AMI_BODIES: list[object] = [
    {
        "results": [
            {
                "tokens": [
                    {"written": "は", "confidence": 1.0, "starttime": 100, "endtime": 200, "spoken": "は"}
                ],
                "confidence": 0.9,
                "starttime": 100,
                "endtime": 200,
                "text": "は",
            }
        ],
        "text": "は",
        "code": "",
        "message": "",
    },
    {"results": [{"tokens": [{"written": "..."}], "text": "は"}], "text": "は"},
    {"results": [], "text": "", "code": "-", "message": "no speech"},
]
AMI_SEEDS = [
    *[b"s", b"s error", b"S 100", b"C", b"E 900", b"e", b"e timeout", b"p can't feed audio data"],
    *[(letter + " " + json.dumps(b, ensure_ascii=False)).encode() for letter in "UA" for b in AMI_BODIES],
]


@st.composite
def ami_json_frame(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["U ", "A ", "A", "U\n"])) + draw(json_mutated(AMI_BODIES))


ami_frames = (
    text_or_bytes(st.binary(max_size=100) | mutated(AMI_SEEDS) | st.sampled_from(AMI_SEEDS))
    | ami_json_frame()
)
AMI_SETUP: list[Step] = [("open", None), ("send", RecognitionRequest(1, "ja")), ("frame", "s")]


@fuzz(600)
@given(st.integers(0, len(AMI_SETUP)), frames_of(ami_frames))
@example(3, [("frame", "A " + "[" * 100000)])
@example(3, [("frame", 'A {"results": [{"starttime": ' + "9" * 5000 + "}]}")])
@example(3, [("frame", "S " + "9" * 5000)])
@example(3, [("frame", "E 1e999")])
@example(
    3, [("frame", 'U {"results": [{"text": "\\ud800"}], "text": "\\udfff"}'), ("end", None), ("frame", "e")]
)
def test_amivoice_codec_takes_any_frame(setup: int, steps: list[Step]) -> None:
    run(AmiVoiceCodec(), AMI_SETUP[:setup], steps)


# ---- Mediazen: one JSON object per text frame

_STT = [{"id": 0, "text": "네", "confidence": 0.9}]
MZ_MESSAGES: list[object] = [
    {"topic": "asr:ko", "payload": {"status": "ok"}, "event": "reply"},
    {"topic": "asr:ko", "payload": {"status": "error", "message": "x"}, "event": "reply"},
    {"topic": "asr:ko", "payload": {"stt_cnt": 1, "stt": _STT, "epd": False}, "event": "new:text"},
    {"topic": "asr:ko", "payload": {"stt_cnt": 1, "stt": _STT, "epd": True}, "event": "new:text"},
    {"payload": {"stt_cnt": 1, "stt": [{"id": 0, "text": "네"}], "epd": True}},
    {"topic": "asr:ko", "payload": {}, "event": "close"},
    {"topic": "asr:ko", "payload": {}, "event": "phx_error"},
]
MZ_SEEDS = [json.dumps(m, ensure_ascii=False).encode() for m in MZ_MESSAGES]
mz_frames = text_or_bytes(
    st.binary(max_size=100) | mutated(MZ_SEEDS) | st.sampled_from(MZ_SEEDS)
) | json_mutated(MZ_MESSAGES)
MZ_SETUP: list[Step] = [("open", None), ("send", RecognitionRequest(1, "ko")), ("frame", MZ_SEEDS[0])]


@fuzz(600)
@given(st.integers(0, len(MZ_SETUP)), frames_of(mz_frames))
@example(3, [("frame", "[" * 100000)])
@example(3, [("frame", '{"event": "new:text", "payload": {"stt_cnt": ' + "9" * 5000 + "}}")])
@example(3, [("frame", b"\xff\xfe")])
@example(3, [("frame", '{"event": "new:text", "payload": {"stt": [{"text": "\\ud800"}], "epd": true}}')])
def test_mediazen_codec_takes_any_frame(setup: int, steps: list[Step]) -> None:
    run(MediazenCodec(), MZ_SETUP[:setup], steps)


def test_as_text_keeps_every_byte() -> None:
    data = bytes(range(256))
    assert as_text(data).encode("utf-8", "surrogateescape") == data


def test_a_cpqd_result_with_a_number_past_int_digits_ends_the_recognition() -> None:
    # json.loads raises a plain ValueError (not JSONDecodeError) for it, which escaped receive (issue 12).
    codec = CpqdCodec(channel_id=CHANNEL)
    run(codec, CPQD_SETUP, [])
    body = b'{"result_status": "RECOGNIZED", "segment_index": ' + b"9" * 5000 + b"}"
    (final,) = codec.receive(cpqd("RECOGNITION_RESULT", [("Result-Status", "RECOGNIZED")], body), NOW)
    assert isinstance(final, Final) and final.status.value == "error" and final.error is not None
    assert "too long" in final.error.message
