"""The AmiVoice server core on its own: s command parsing, audio formats, events and results, timeouts."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.emulators.amivoice_audio import AUDIO_FORMATS, AudioConverter, parse_wav_header
from ivr.emulators.amivoice_protocol import (
    AbortRecognition,
    AmiVoiceServerProtocol,
    AudioReceived,
    CloseConnection,
    CommandError,
    EndRequested,
    Event,
    ProfileWord,
    SendText,
    SessionState,
    StartRequested,
    final_result,
    parse_start,
    split_fields,
)
from ivr.emulators.recognizer import SpeechStarted, TimedWord, Utterance

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

KEY = "0123456789abcdef"


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, SendText)]


# --- the s command ---


@pytest.mark.parametrize(
    ("line", "appkey", "expected"),
    [
        (f"s LSB8K -a-general authorization={KEY}", KEY, ("LSB8K", "-a-general", "ja")),
        ("s 16K -a-general-en", None, ("16K", "-a-general-en", "en")),
        (f"s MSB16K -a-general-ko authorization={KEY}", None, ("MSB16K", "-a-general-ko", "ko")),
        # Wrp appends \x01 to a grammar name (protocol-notes 2.2)
        (f"s MULAW -a-general\x01 authorization={KEY}", KEY, ("MULAW", "-a-general", "ja")),
        (f"s ALAW -a-general-input authorization={KEY}", KEY, ("ALAW", "-a-general-input", "ja")),
        ("s 22K -a-general", None, ("22K", "-a-general", "ja")),
        ("s FLAC -a-general", None, "received unsupported audio format"),
        ("s", None, "received unsupported audio format"),
        ("s lsb8k -a-general", None, "received unsupported audio format"),  # names are case-sensitive
        (f"s 8K -a-nonsense authorization={KEY}", KEY, "can't find grammar file (-a-nonsense)"),
        (f"s 16K \x01 authorization={KEY}", KEY, "can't find grammar file ((none))"),  # Wrp with no grammar
        ("s 8K -a-general", KEY, "received illegal service authorization"),
        ("s 8K -a-general authorization=wrong", KEY, "received illegal service authorization"),
    ],
)
def test_parse_start(line: str, appkey: str | None, expected: tuple[str, str, str] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(CommandError) as info:
            parse_start(line, appkey=appkey)
        assert info.value.message == expected
        return
    command = parse_start(line, appkey=appkey)
    assert (command.audio_format.name, command.engine_name, command.language) == expected


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("s 16K -a-general", ["s", "16K", "-a-general"]),
        ("s  16K   x", ["s", "16K", "x"]),
        ('k="a b c"', ["k=a b c"]),
        ('k="say ""hi"" now" z=1', ['k=say "hi" now', "z=1"]),  # the sample's "" doubling (document 002)
        ('k=""', ["k="]),
        ('k="unterminated', ["k=unterminated"]),
    ],
)
def test_split_fields(line: str, fields: list[str]) -> None:
    assert split_fields(line) == fields


def test_start_parameters_profile_words_and_interval() -> None:
    line = (
        's 8K -a-general profileWords="残高 ざんだか|オペレーター おぺれーたー|AmiVoice" '
        'segmenterProperties="useDiarizer=1 diarizerAlpha=1e-20" resultUpdatedInterval=500 authorization=K'
    )
    command = parse_start(line, appkey="K")
    assert command.profile_words == (
        ProfileWord("残高", "ざんだか"),
        ProfileWord("オペレーター", "おぺれーたー"),
        ProfileWord("AmiVoice", "AmiVoice"),
    )
    assert command.parameters["segmenterProperties"] == "useDiarizer=1 diarizerAlpha=1e-20"
    assert command.result_updated_interval == 500
    assert (
        parse_start("s 8K -a-general resultUpdatedInterval=soon", appkey=None).result_updated_interval == 1000
    )


# --- audio formats ---


def _tone(rate: int, seconds: float, freq: float = 440.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.asarray(np.rint(amplitude * np.sin(2 * np.pi * freq * t)), dtype=np.int16)


def _encode(name: str, samples: np.ndarray) -> bytes:
    fmt = AUDIO_FORMATS[name]
    if fmt.encoding.value == "mulaw":
        return bytes(audioop.lin2ulaw(samples.astype("<i2").tobytes(), 2))
    if fmt.encoding.value == "alaw":
        return bytes(audioop.lin2alaw(samples.astype("<i2").tobytes(), 2))
    return samples.astype("<i2" if fmt.encoding.value == "pcm-le" else ">i2").tobytes()


def _level_at(pcm: bytes, freq: float) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)[800:-800]  # skip the filter's edges
    t = np.arange(len(x)) / 8000
    return float(2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) / len(x))


@pytest.mark.parametrize("name", sorted(AUDIO_FORMATS))
def test_every_format_becomes_8k_pcm_with_its_tone(name: str) -> None:
    rate = AUDIO_FORMATS[name].rate
    data = _encode(name, _tone(rate, 1.0))
    whole = AudioConverter(AUDIO_FORMATS[name]).convert(data)
    assert abs(len(whole) // 2 - 8000) <= 2, "one second of 8 kHz samples"
    assert _level_at(whole, 440.0) == pytest.approx(8000, rel=0.06)
    # The same audio in odd-sized p commands (splitting samples) converts to the same samples.
    converter = AudioConverter(AUDIO_FORMATS[name])
    pieces = b"".join(converter.convert(data[i : i + 3333]) for i in range(0, len(data), 3333))
    assert len(pieces) == len(whole)
    assert np.max(np.abs(np.frombuffer(pieces, "<i2") - np.frombuffer(whole, "<i2").astype(int))) <= 1


@pytest.mark.parametrize("name", ["16K", "22K", "11K"])
def test_downsampling_filters_what_8k_cannot_carry(name: str) -> None:
    rate = AUDIO_FORMATS[name].rate
    pcm = AudioConverter(AUDIO_FORMATS[name]).convert(_encode(name, _tone(rate, 1.0, freq=5000.0)))
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)[800:-800]
    assert np.sqrt(np.mean(x**2)) < 8000 / np.sqrt(2) * 0.1, "a 5 kHz tone is attenuated by 20 dB or more"


def _wav(rate: int, tag: int = 1, bits: int = 16, channels: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * bits // 8, bits // 8, bits)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    return b"RIFF" + struct.pack("<I", 0) + b"WAVE" + body + b"data" + struct.pack("<I", 0)


def test_wav_headers() -> None:
    found = parse_wav_header(_wav(16000) + b"\x01\x00")
    assert found is not None and found[0].rate == 16000 and found[1] == len(_wav(16000))
    ulaw = parse_wav_header(_wav(8000, tag=7, bits=8))
    assert ulaw is not None and ulaw[0].encoding.value == "mulaw"
    assert parse_wav_header(b"\x00" * 64) is None
    with pytest.raises(ValueError):
        parse_wav_header(_wav(16000, channels=2))
    with pytest.raises(ValueError):
        parse_wav_header(_wav(44100))


# --- results ---


def test_final_result_shape_and_unicode_escapes() -> None:
    words = (TimedWord("残高", 0.52, 1.1, 0.95), TimedWord("照会", 1.1, 1.58, 1.0))
    utterance = Utterance("残高照会", 0.9765, 0.25, 1.6, words)
    raw = final_result(
        utterance, "20260101/x@1-0010001", lambda w: {"残高": "ざんだか"}.get(w, w), word_separator=""
    )
    assert "残" not in raw and "\\u6b8b\\u9ad8" in raw  # ASCII only, as documents 001/002 show it
    result = json.loads(raw)
    assert list(result) == ["results", "utteranceid", "text", "code", "message"]
    assert (result["text"], result["code"], result["message"]) == ("残高照会", "", "")
    segment = result["results"][0]
    assert list(segment) == ["tokens", "confidence", "starttime", "endtime", "tags", "rulename", "text"]
    assert (segment["starttime"], segment["endtime"], segment["confidence"]) == (250, 1580, 0.977)
    assert segment["tokens"][0] == {
        "written": "残高",
        "confidence": 0.95,
        "starttime": 520,
        "endtime": 1100,
        "spoken": "ざんだか",
    }


def test_a_rejected_utterance_is_an_a_with_empty_text() -> None:
    result = json.loads(final_result(Utterance("", 0.0, 1.0, 2.0), "id", str))
    assert result["text"] == "" and result["results"][0]["tokens"] == []
    assert (result["code"], result["message"]) == ("", "")


# --- the core's exchanges ---


def started(core: AmiVoiceServerProtocol, line: str = "s LSB8K -a-general-en", now: float = 0.0) -> None:
    assert isinstance(core.receive_text(line, now)[0], StartRequested)
    assert texts(core.accept_start()) == ["s"]


def test_a_whole_session_then_a_second_one_with_times_restarting() -> None:
    core = AmiVoiceServerProtocol(connection_id="c")
    for session in (1, 2):
        started(core, "s LSB8K -a-general-en resultUpdatedInterval=1000")
        events = core.receive_bytes(b"p" + b"\x01\x00" * 8000, 1.0)
        assert events == [AudioReceived(b"\x01\x00" * 8000)]
        assert texts(core.recognized([SpeechStarted(0.25)], 0.5)) == ["S 250", "C"]
        assert texts(core.recognized([], 1.0)) == []
        update = texts(core.recognized([], 1.3))
        assert len(update) == 1 and update[0].startswith("U ")
        assert json.loads(update[0][2:])["text"].endswith("...")
        words = (TimedWord("yes", 0.3, 0.8, 0.9),)
        out = texts(core.recognized([Utterance("yes", 0.9, 0.25, 0.9, words)], 1.5))
        assert out[0] == "E 900" and out[1].startswith("A ")
        result = json.loads(out[1][2:])
        assert result["utteranceid"] == f"c-{session:03d}{session:04d}"
        assert result["results"][0]["tokens"][0]["spoken"] == "yes"  # English: the written form
        assert core.receive_text("e", 2.0) == [EndRequested()]
        assert core.state is SessionState.ENDING
        assert texts(core.recognized([], 1.5)) == []
        assert texts(core.finished()) == ["e"]
        assert core.state is SessionState.IDLE


@pytest.mark.parametrize(
    ("flush", "expected"),
    [
        # e in mid-utterance: the engine's flush gives the utterance; E and A come before "e".
        ([Utterance("no", 0.8, 0.1, 0.6)], ["E 600", "A", "e"]),
        # the flush gives nothing: the open S is still closed by an E and an empty A.
        ([], ["E 1000", "A", "e"]),
        # the flush gives an utterance whose start nobody reported: S and C first.
        (None, ["S 100", "C", "E 600", "A", "e"]),
    ],
)
def test_e_without_trailing_silence_still_gives_e_and_a(
    flush: list[Utterance] | None, expected: list[str]
) -> None:
    core = AmiVoiceServerProtocol()
    started(core)
    core.receive_bytes(b"p" + b"\x00\x10" * 8000, 0.5)
    if flush is not None:
        core.recognized([SpeechStarted(0.1)], 1.0)
    core.receive_text("e", 1.0)
    engine_events = flush if flush is not None else [Utterance("no", 0.8, 0.1, 0.6)]
    out = texts(core.recognized(engine_events, 1.0)) + texts(core.finished())
    assert [t if t[:1] != "A" else "A" for t in out] == expected


def test_audio_outside_a_session_gets_one_p_error() -> None:
    core = AmiVoiceServerProtocol()
    assert texts(core.receive_bytes(b"p\x00\x00", 0.0)) == ["p can't feed audio data to recognizer server"]
    assert core.receive_bytes(b"p\x00\x00", 0.1) == []
    assert texts(core.receive_text("e", 0.2)) == ["e"]


def test_audio_before_accept_is_held_and_released() -> None:
    core = AmiVoiceServerProtocol()
    core.receive_text("s 8K -a-general", 0.0)
    assert core.receive_bytes(b"p\x01\x02\x03", 0.0) == []
    assert core.accept_start() == [SendText("s"), AudioReceived(b"\x01\x02")]


def test_rejected_start_and_s_in_mid_session() -> None:
    core = AmiVoiceServerProtocol()
    core.receive_text("s 8K -a-general-zh", 0.0)
    assert texts(core.reject_start("can't connect to recognizer server (no local Chinese engine)")) == [
        "s can't connect to recognizer server (no local Chinese engine)"
    ]
    assert core.state is SessionState.IDLE
    started(core)
    assert texts(core.receive_text("s 8K -a-general", 0.0))[0].startswith("s ")
    assert core.state is SessionState.STREAMING


def test_silence_timeout_ends_the_session_with_the_documented_p() -> None:
    core = AmiVoiceServerProtocol(silence_timeout=1.0)
    started(core)
    # Counted on the engine's clock, not on how fast the client sends: 3 s received, 0.75 s recognized.
    assert core.receive_bytes(b"p" + b"\x00" * 48000, 0.5) != []
    assert core.recognized([], 0.75) == []
    events = core.recognized([], 1.0)
    assert events == [SendText("p can't feed audio data to recognizer server"), AbortRecognition()]
    assert core.state is SessionState.IDLE
    assert core.receive_bytes(b"p\x00\x00", 0.6) == [], "no second p error"
    assert texts(core.receive_text("e", 0.7)) == ["e"]


def test_speech_holds_the_silence_timeout_off() -> None:
    core = AmiVoiceServerProtocol(silence_timeout=1.0)
    started(core)
    core.recognized([SpeechStarted(0.9)], 0.95)
    assert texts(core.recognized([], 2.5))[0].startswith("U ")  # in an utterance: no timeout, updates
    assert texts(core.recognized([Utterance("yes", 0.9, 0.9, 2.6)], 2.7))[0] == "E 2600"
    assert core.recognized([], 3.5) == []  # 0.9 s after the utterance
    assert core.recognized([], 3.6)[0] == SendText("p can't feed audio data to recognizer server")


def test_no_communication_timeout_sends_the_documented_e_and_closes() -> None:
    core = AmiVoiceServerProtocol(no_communication_timeout=60.0, now=100.0)
    started(core, now=100.0)
    core.receive_bytes(b"p\x00\x00", 110.0)
    assert core.deadline == 170.0
    assert core.timeout(169.9) == []
    assert core.timeout(170.0) == [
        AbortRecognition(),
        SendText("e timeout occurred while recognizing audio data from client"),
        CloseConnection(),
    ]
    assert core.state is SessionState.CLOSED and core.deadline is None
    assert core.receive_text("s 8K -a-general", 171.0) == []


def test_japanese_tokens_get_the_reading_and_no_spaces() -> None:
    core = AmiVoiceServerProtocol(
        reading=lambda language, w: "はい" if (language, w) == ("ja", "はい") else "?"
    )
    started(core, "s MULAW -a-general")
    out = texts(core.recognized([Utterance("はい", 0.9, 0.1, 0.5)], 0.6))
    token = json.loads(out[-1][2:])["results"][0]["tokens"][0]
    assert (token["written"], token["spoken"]) == ("はい", "はい")


# --- arbitrary input never raises ---

frames = st.one_of(
    st.text(max_size=60).map(lambda t: ("text", t)),
    st.sampled_from(["s 8K -a-general", "s MULAW -a-general-en", "e", "s", "s 16K \x01", "p"]).map(
        lambda t: ("text", t)
    ),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    st.binary(max_size=200).map(lambda b: ("bytes", b"p" + b)),
    st.sampled_from(["accept", "reject", "speech", "utterance", "finished", "timeout"]).map(
        lambda a: (a, "")
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=30))
def test_arbitrary_frames_never_raise(script: list[tuple[str, str | bytes]]) -> None:
    core = AmiVoiceServerProtocol(silence_timeout=0.05, no_communication_timeout=5.0)
    now = 0.0
    s_count = a_count = 0
    for kind, data in script:
        now += 1.0
        if kind == "text":
            assert isinstance(data, str)
            events = core.receive_text(data, now)
        elif kind == "bytes":
            assert isinstance(data, bytes)
            events = core.receive_bytes(data, now)
        elif kind == "accept":
            events = core.accept_start()
        elif kind == "reject":
            events = core.reject_start("no")
        elif kind == "speech":
            events = core.recognized([SpeechStarted(0.1)], 0.2)
        elif kind == "utterance":
            events = core.recognized([Utterance("x", 0.5, 0.1, 0.2)], 0.3)
        elif kind == "finished":
            events = core.finished()
        else:
            events = core.timeout(now + 10)
        for text in texts(events):
            assert text[:1] in "spSECUAe"
            assert text[:1] not in "UA" or text.isascii()
            s_count += text[:2] == "S "
            a_count += text[:2] == "A "
        assert a_count <= s_count


@pytest.mark.parametrize(
    ("ending", "expected"),
    [
        (False, ["E 1000", "A", "p can't feed audio data to recognizer server"]),
        (True, ["E 1000", "A", "e can't feed audio data to recognizer server"]),
    ],
)
def test_a_broken_engine_closes_the_open_s_and_fails_the_command(ending: bool, expected: list[str]) -> None:
    core = AmiVoiceServerProtocol()
    started(core)
    core.receive_bytes(b"p" + b"\x00\x01" * 8000, 0.1)
    core.recognized([SpeechStarted(0.2)], 0.3)
    if ending:
        core.receive_text("e", 0.4)
    out = texts(core.recognizer_failed())
    assert [t if t[:1] != "A" else "A" for t in out] == expected
    assert core.state is SessionState.IDLE
