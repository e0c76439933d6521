"""Replays the AmiVoice documents through AmiVoiceCodec: the sample client's session log of
002-amivoice-websocket.md and the result JSON of 001-amivoice-result-format.md, read from ../shared/specs
at test time, and the s commands the documents and protocol-notes.md show, rebuilt from equivalent settings.

The short examples are copied here verbatim (and checked against the documents when they sit beside the
repository); the long log and JSON examples are read out of the documents themselves.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from ivr.asr.amivoice import AmiVoiceCodec, s_command
from ivr.asr.base import (
    AsrEvent,
    EndOfSpeech,
    Final,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    SessionClosed,
    SessionState,
    StartOfSpeech,
    VendorError,
    Word,
)
from tests.tools import SHARED

SPECS = SHARED / "specs"
WEBSOCKET = SPECS / "002-amivoice-websocket.md"
RESULTS = SPECS / "001-amivoice-result-format.md"
NOTES = SPECS / "protocol-notes.md"
documents = pytest.mark.skipif(
    not (WEBSOCKET.exists() and RESULTS.exists()), reason="AmiVoice documents not beside the repository"
)

APPKEY = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"  # 002's placeholder APPKEY
# 002, "2. Speech Recognition Request" (Python f-strings there, {APPKEY} substituted here)
TUTORIAL_COMMANDS = (
    f"s 16K -a-general authorization={APPKEY}",
    f"s 16K -a-general authorization={APPKEY} keepFillerToken=1 resultUpdatedInterval=1000",
    f's 16K -a-general authorization={APPKEY} segmenterProperties="useDiarizer=1 diarizerAlpha=1e-20 '
    'diarizerTransitionBias=1e-10"',
)
SEGMENTER = 'segmenterProperties="useDiarizer=1 diarizerAlpha=1e-20 diarizerTransitionBias=1e-10"'
LOG_COMMAND = "s LSB16K -a-general resultUpdatedInterval=1000 authorization={APPKEY}"  # 002's session log
NOTES_COMMAND = "s LSB16K -a-general authorization=XXXX"  # protocol-notes 2.7
# 002's error replies and timeouts
S_REFUSED = "s received unsupported audio format"
S_BUSY = "s can't connect to recognizer server (can't connect to server)"
P_SILENCE = "p can't feed audio data to recognizer server"
E_TIMEOUT = "e timeout occurred while recognizing audio data from client"
# 001, the whole result's text, as printed there (unescaped)
TEXT = (
    "アドバンスト・メディアは、人と機械との自然なコミュニケーションを実現し、"
    "豊かな未来を創造していくことを目指します。"
)


def log_messages() -> list[str]:
    """The server's frames of 002's session log, in order ("<ms> MainThread message: <frame>")."""
    lines = WEBSOCKET.read_text(encoding="utf-8").splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"\s*\d+\s+MainThread\s+message: (.*)$", line))]


def listening(codec: AmiVoiceCodec, recognition: int = 1) -> None:
    codec.open(0.0)
    codec.send(RecognitionRequest(recognition, "ja"), 0.0)
    codec.data_to_send()
    assert codec.receive("s", 0.0) == [RecognitionStarted(recognition)]


def params(command: str) -> tuple[list[str], set[str]]:
    """The head (s, format, engine) and the key=value set of an s command, quotes kept."""
    words = shlex.split(command, posix=False)
    return words[:3], set(words[3:])


@documents
def test_the_sample_session_log_replayed() -> None:
    messages = log_messages()
    assert messages[0] == "s" and messages[-1] == "e" and len(messages) == 16
    codec = AmiVoiceCodec(authorization=APPKEY)
    codec.open(0.0)
    codec.send(RecognitionRequest(1, "ja"), 0.0)
    codec.data_to_send()
    events: list[AsrEvent] = []
    sent: list[list[object]] = []  # what the codec sent after each message
    for message in messages:
        events += codec.receive(message, 1.0)
        sent.append(list(codec.data_to_send()))
    interims = [json.loads(m[2:])["text"] for m in messages if m.startswith("U ")]
    assert len(interims) == 8 and all(text.endswith("...") for text in interims)

    partials = [e for e in events if isinstance(e, Partial)]
    assert [p.text for p in partials] == [text[: -len("...")] for text in interims]
    assert partials[0] == Partial(1, "アドバンスト・メディア")
    assert events[:3] == [RecognitionStarted(1), StartOfSpeech(1, 0.25), partials[0]]
    assert EndOfSpeech(1, 8.8) in events
    [final] = [e for e in events if isinstance(e, Final)]
    assert events[-1] is final  # nothing after the answer: the trailing G and e reply add no event
    assert final.status is ResultStatus.RECOGNIZED and final.text == TEXT and final.confidence == 0.998
    words = final.alternatives[0].words
    assert "".join(w.text for w in words) == TEXT and len(words) == 27
    assert words[0] == Word("アドバンスト・メディア", 0.522, 1.578, 1.0, "あどばんすとめでぃあ")
    assert words[-1] == Word("。", 8.506, 8.794, 0.82, "_")
    assert all(w.start is not None and w.end is not None and w.start <= w.end for w in words)
    # The answer ends the turn: the codec sends e at once, and the log's final e reply makes it READY.
    answer = next(i for i, m in enumerate(messages) if m.startswith("A "))
    assert sent == [["e"] if i == answer else [] for i in range(len(messages))]
    assert codec.state is SessionState.READY and codec.recognition is None


@documents
def test_the_logged_s_command_is_what_the_codec_sends_for_the_same_settings() -> None:
    document = WEBSOCKET.read_text(encoding="utf-8")
    assert f"send> {LOG_COMMAND}" in document
    assert s_command(
        "LSB16K", "-a-general", {"resultUpdatedInterval": "1000", "authorization": "{APPKEY}"}
    ) == (LOG_COMMAND)
    # Our 8 kHz PCM is LSB8K; everything else is the log's command byte for byte.
    codec = AmiVoiceCodec(authorization="{APPKEY}", result_updated_interval=1000)
    codec.send(RecognitionRequest(1, "ja-JP"), 0.0)
    assert codec.data_to_send() == [LOG_COMMAND.replace("LSB16K", "LSB8K")]


@documents
def test_the_tutorial_s_commands() -> None:
    document = WEBSOCKET.read_text(encoding="utf-8")
    printed = [m.replace('\\"', '"') for m in re.findall(r'^command = f"(.*)"$', document, re.MULTILINE)]
    assert printed == [c.replace(APPKEY, "{APPKEY}") for c in TUTORIAL_COMMANDS]
    assert f"APPKEY='{APPKEY}'" in document
    only_key, fillers, diarizer = TUTORIAL_COMMANDS
    assert s_command("16K", "-a-general", {"authorization": APPKEY}) == only_key
    # The tutorial puts authorization first; Wrp's order (and the sample log's) puts it after the others.
    ours = s_command(
        "16K",
        "-a-general",
        {"authorization": APPKEY, "keepFillerToken": "1", "resultUpdatedInterval": "1000"},
    )
    assert params(ours) == params(fillers)
    ours = s_command(
        "16K",
        "-a-general",
        {
            "authorization": APPKEY,
            "segmenterProperties": "useDiarizer=1 diarizerAlpha=1e-20 diarizerTransitionBias=1e-10",
        },
    )
    assert params(ours) == params(diarizer) and SEGMENTER in ours and SEGMENTER in document


def test_the_notes_example_command() -> None:
    assert s_command("LSB16K", "-a-general", {"authorization": "XXXX"}) == NOTES_COMMAND
    if NOTES.exists():
        assert f"C(text): {NOTES_COMMAND}" in NOTES.read_text(encoding="utf-8")


@documents
def test_the_sample_programs_profile_words_quoting() -> None:
    """002's sample quotes profileWords, doubling its quotes; Wrp does so when a space or quote is in it."""
    assert "v = '\"' + v.replace('\"', '\"\"') + '\"'" in WEBSOCKET.read_text(encoding="utf-8")
    words = 'AmiVoice あみぼいす|"AOI" あおい'
    expected = '"' + words.replace('"', '""') + '"'
    assert (
        s_command("MULAW", "-a-general", {"profileWords": words})
        == f"s MULAW -a-general profileWords={expected}"
    )


@documents
def test_001_result_example_as_an_a_event() -> None:
    """001's complete result example (the synchronous HTTP one, its elisions removed) read as an A payload."""
    document = RESULTS.read_text(encoding="utf-8")
    start = document.index('{\n"results": [\n{\n"tokens": [\n{\n"written": "アドバンスト・メディア"')
    end = document.index('"message": ""\n}', start) + len('"message": ""\n}')
    example = json.loads(re.sub(r"/\*.*?\*/\n", "", document[start:end]))
    codec = AmiVoiceCodec()
    listening(codec)
    [final] = codec.receive("A " + json.dumps(example), 0.0)
    assert isinstance(final, Final) and final.status is ResultStatus.RECOGNIZED
    assert final.text == TEXT and final.confidence == 0.998
    assert final.alternatives[0].words == (
        Word("アドバンスト・メディア", 0.522, 1.578, 1.0, "あどばんすとめでぃあ"),
        Word("は", 1.578, 1.866, 1.0, "は"),
        Word("ます", 8.09, 8.506, 0.76, "ます"),
        Word("。", 8.506, 8.794, 0.82, "_"),
    )
    assert codec.data_to_send() == ["e"]


@documents
def test_001_punctuation_token_without_times() -> None:
    """001: outside Japanese, punctuation tokens carry only written and spoken."""
    document = RESULTS.read_text(encoding="utf-8")
    assert '{\n"written": "。",\n"spoken": "_"\n}' in document
    codec = AmiVoiceCodec()
    listening(codec)
    result = {"results": [{"tokens": [{"written": "好"}, {"written": "。", "spoken": "_"}]}], "text": "好。"}
    [final] = codec.receive("A " + json.dumps(result), 0.0)
    assert isinstance(final, Final) and final.alternatives[0].words == (
        Word("好"),
        Word("。", spoken="_"),
    )


@documents
def test_001_failure_form_is_an_error_with_the_vendors_code() -> None:
    """001: failure is code != "" and message != "" and text == "" (its table of codes is not in 001)."""
    document = RESULTS.read_text(encoding="utf-8")
    assert 'body.code != "" 및  body.message != "" 및  body.text == ""' in document
    codec = AmiVoiceCodec()
    listening(codec)
    failed = {"results": [{"tokens": [], "text": ""}], "text": "", "code": "-", "message": "no good"}
    assert codec.receive("A " + json.dumps(failed), 0.0) == [
        Final(1, ResultStatus.ERROR, error=VendorError("-", "no good"))
    ]


@documents
def test_002_error_replies_and_timeouts() -> None:
    document = WEBSOCKET.read_text(encoding="utf-8")
    for example in (S_REFUSED, S_BUSY, P_SILENCE, E_TIMEOUT):
        assert example in document

    # "retry the s command several times": busy is worth another try, a refusal is not.
    for reply, code, retryable in ((S_REFUSED, "s", False), (S_BUSY, "busy", True)):
        codec = AmiVoiceCodec()
        codec.send(RecognitionRequest(1, "ja"), 0.0)
        error = VendorError(code, reply[2:], retryable)
        assert codec.receive(reply, 0.0) == [Final(1, ResultStatus.ERROR, error=error)]
        assert codec.state is SessionState.READY  # the connection takes another s

    # "When you receive these responses, please reconnect and then send the audio again."
    for reply in (P_SILENCE, E_TIMEOUT):
        codec = AmiVoiceCodec()
        listening(codec)
        error = VendorError("timeout", reply[2:], retryable=True)
        assert codec.receive(reply, 0.0) == [Final(1, ResultStatus.ERROR, error=error), SessionClosed(error)]
        assert codec.state is SessionState.CLOSED
