"""The documents' own CPQD exchanges replayed against the emulator's core.

Requests are read out of ../shared/specs at test time: the example transcript of protocol-notes 1.8 (Java
SDK, ASR 2.3) and the ASR 2.4 examples of document 003 (CREATE_SESSION with Channel-Identifier,
START_RECOGNITION with Media-Type, the RECOGNITION_RESULT JSON with the classifier objects). The replies must
have the documented shape. Placeholders in the transcript (`<ua>`, `...grammar text...`, `<4000 bytes>`) are
filled with real values, and Content-Length is recomputed where the document's figure is illustrative.
"""

from __future__ import annotations

import json
import re
import wave
from dataclasses import dataclass
from typing import Any

import pytest

from ivr.emulators.classifier import ProsodyClassifier, to_cpqd_json
from ivr.emulators.cpqd_channels import ChannelRegistry
from ivr.emulators.cpqd_events import RecognitionRequested, SendMessage, UtteranceResult
from ivr.emulators.cpqd_framing import MessageType
from ivr.emulators.cpqd_protocol import CpqdServerSession
from ivr.emulators.recognizer import TimedWord
from tests.tools import SHARED

SPECS = SHARED / "specs"
AUDIO = SHARED / "audio/cpqd-sdk"
HANDLE = "201604081523970032"
CHECKED_HEADERS = ("Method", "Result", "Session-Status", "Result-Status")
SERVER_TYPES = ["RESPONSE", "START_OF_SPEECH", "END_OF_SPEECH", "RECOGNITION_RESULT"]


@dataclass
class DocMessage:
    """One message of the transcript: who sent it, its type, the header values it shows, its body."""

    sender: str
    type: str
    headers: list[tuple[str, str]]
    body: bytes
    text: str


def _transcript() -> list[DocMessage]:
    notes = (SPECS / "protocol-notes.md").read_text(encoding="utf-8")
    section = notes.split("### 1.8", 1)[1]
    block = section.split("```", 2)[1]
    entries: list[list[str]] = []
    for line in block.splitlines():
        if line.startswith(("C: ", "S: ")):
            entries.append([line])
        elif line.startswith("   ") and entries:
            entries[-1].append(line[3:])
    messages = []
    for entry in entries:
        sender, first = entry[0][0], entry[0][3:]
        lines = first.split(" / ") + entry[1:] if " / " in first else [first, *entry[1:]]
        kinds = (
            SERVER_TYPES if sender == "S" else [t.value for t in MessageType if t.value not in SERVER_TYPES]
        )
        kind = next((k for k in kinds if re.search(rf"\b{k}\b", first)), "")
        headers: list[tuple[str, str]] = []
        body = b""
        in_body = in_comment = False
        for line in lines[1:]:
            line = re.sub(r"\s{2,}\(.*\)$", "", line).strip()  # "(Python: ...)", "(optional)" comments
            if in_comment or line.startswith("("):
                in_comment = not line.endswith(")") and line not in ("(blank)",)
                if line != "(blank)":
                    continue
            if line in ("(blank)", "blank"):
                in_body = True
            elif in_body:
                size = re.fullmatch(r"<(\d+) bytes>", line)
                if size:
                    body += b"\x01\x00" * (int(size.group(1)) // 2)
                elif "...grammar text..." in line:
                    body += (AUDIO / "pizza.gram").read_bytes()
                else:
                    body += line.encode().decode("unicode_escape").encode()
            elif sender == "C":
                name, _, value = line.partition(": ")
                headers.append((name, value))
        if sender == "S":
            shown = "\n".join(entry).split(" body ", 1)[0]
            headers = re.findall(r"([A-Za-z][\w.-]*): ([^\s,]+)", shown)
        messages.append(DocMessage(sender, kind, headers, body, "\n".join(entry)))
    return messages


def _client_frame(message: DocMessage) -> bytes:
    lines = [f"ASR 2.3 {message.type}"]
    for name, value in message.headers:
        if name == "Content-Length":
            value = str(len(message.body))
        lines.append(f"{name}: {value.replace('<ua>', 'conformance')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + message.body  # the Java SDK's CRLF framing


@dataclass
class Reply:
    type: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def _read(events: list[Any]) -> list[Reply]:
    found = []
    for event in events:
        if not isinstance(event, SendMessage):
            continue
        head, _, body = event.data.partition(b"\r\n\r\n")
        first, *lines = head.decode("ascii").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        found.append(Reply(first.split(" ")[2], headers, json.loads(body) if body else None))
    return found


def _keys(value: Any) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_the_java_transcript_of_notes_1_8() -> None:
    transcript = _transcript()
    client = [m for m in transcript if m.sender == "C" and m.text[3:].startswith("ASR ")]
    server = [m for m in transcript if m.sender == "S"]
    assert [m.type for m in client] == [
        "CREATE_SESSION",
        "SET_PARAMETERS",
        "DEFINE_GRAMMAR",
        "START_RECOGNITION",
        "SEND_AUDIO",
        "SEND_AUDIO",
        "RELEASE_SESSION",
    ]
    core = CpqdServerSession(HANDLE, now=0.0, registry=ChannelRegistry())
    replies: list[Reply] = []
    recognition = 0
    late_audio: list[Reply] = []
    for message in client:
        events = core.receive(_client_frame(message), 0.0)
        for event in events:
            if isinstance(event, RecognitionRequested):
                recognition = event.recognition
                assert event.grammar.uri == "session:pizza"  # the grammar, with the SLM listed after it
                events += core.accept_recognition(recognition, 0.0)
        if message.type == "SEND_AUDIO" and "LastPacket: true" not in message.text:
            # The recognizer hears the pizza order in the audio sent so far.
            events += core.speech_started(recognition, 0.4, 0.0)
            words = (TimedWord("calabresa", 0.5, 1.2, 0.8),)
            events += core.utterance(
                recognition, UtteranceResult("calabresa", 0.8, 0.5, 1.2, words, "pizza_x"), 0
            )
        if message.type == "SEND_AUDIO" and "LastPacket: true" in message.text:
            late_audio = _read(events)
        else:
            replies += _read(events)
    assert [r.type for r in replies] == [m.type for m in server]
    for reply, documented in zip(replies, server, strict=True):
        assert reply.headers["Handle"] == HANDLE
        shown = dict(documented.headers)
        for name in CHECKED_HEADERS:
            if name in shown:
                assert reply.headers[name] == shown[name], (name, documented.text)
        if reply.type == "RESPONSE":
            assert "Error-Code" not in reply.headers
        if reply.body is not None:
            for key in re.findall(r'"(\w+)":', documented.text):
                assert key in _keys(reply.body), (key, documented.text)
    final = replies[-2].body
    assert final is not None
    assert (final["segment_index"], final["last_segment"], final["final_result"]) == (0, True, True)
    assert final["alternatives"][0]["interpretations"] == ["pizza_x"]
    # "server answers a late SEND_AUDIO with RESPONSE Method: SEND_AUDIO, Result: INVALID_ACTION"
    (late,) = late_audio
    assert (late.headers["Method"], late.headers["Result"]) == ("SEND_AUDIO", "INVALID_ACTION")


def _document_003() -> str:
    return (SPECS / "003-cpqd-asr-websocket-2.4.md").read_text(encoding="utf-8")


def _example(document: str, first_line: str, last_line: str) -> bytes:
    lines = document.splitlines()
    start = lines.index(first_line)
    end = lines.index(last_line, start)
    return ("\n".join(lines[start : end + 1]) + "\n").encode()


def test_create_session_with_channel_identifier_of_document_003() -> None:
    document = _document_003()
    lines = document.splitlines()
    start = lines.index("ASR 2.4 CREATE_SESSION")
    frame = "\n".join(lines[start : start + 2]).encode()
    registry = ChannelRegistry()
    core = CpqdServerSession(HANDLE, now=0.0, registry=registry)
    (reply,) = _read(core.receive(frame, 0.0))
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == ("SUCCESS", "IDLE")
    channel = lines[start + 1].split(": ", 1)[1]
    status = registry.status(channel)
    assert status is not None and status["sessions"] == [HANDLE]


def test_start_recognition_example_of_document_003() -> None:
    frame = _example(_document_003(), "ASR 2.4 START_RECOGNITION", "builtin:slm/general")
    core = CpqdServerSession(HANDLE, now=0.0)
    core.receive(b"ASR 2.4 CREATE_SESSION\n", 0.0)
    (request,) = core.receive(frame, 0.0)
    assert isinstance(request, RecognitionRequested)
    assert request.grammar.uri == "builtin:slm/general" and request.grammar.text is None
    assert request.config.values["Media-Type"] == "audio/wav"
    (reply,) = _read(core.accept_recognition(request.recognition, 0.0))
    assert (reply.headers["Method"], reply.headers["Result"], reply.headers["Session-Status"]) == (
        "START_RECOGNITION",
        "SUCCESS",
        "LISTENING",
    )


def _documented_result() -> dict[str, Any]:
    document = _document_003()
    text = document.split("Exemplo de conteúdo resultado JSON:", 1)[1]
    text = text[text.index("{") :]
    text = re.sub(r",(\s*[}\]])", r"\1", text)  # the document's example has a trailing comma
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.fixture(scope="module")
def classifier_objects() -> dict[str, Any]:
    with wave.open(str(AUDIO / "yes-8k.wav")) as w:
        pcm = w.readframes(w.getnframes())
    return to_cpqd_json(ProsodyClassifier().classify(pcm, 8000))


def test_recognition_result_has_the_shape_of_document_003(classifier_objects: dict[str, Any]) -> None:
    documented = _documented_result()
    core = CpqdServerSession(HANDLE, now=0.0)
    core.receive(b"ASR 2.4 CREATE_SESSION\n", 0.0)
    core.receive(
        b"ASR 2.4 SET_PARAMETERS\nInfer-age-enabled: true\nInfer-gender-enabled: true\n"
        b"Infer-emotion-enabled: true\ndecoder.wordDetails: 2\n",
        0.0,
    )
    (request,) = core.receive(
        _example(_document_003(), "ASR 2.4 START_RECOGNITION", "builtin:slm/general"), 0
    )
    assert isinstance(request, RecognitionRequested)
    core.accept_recognition(request.recognition, 0.0)
    alternative = documented["alternatives"][0]
    words = tuple(
        TimedWord(w["text"], w["start_time"], w["end_time"], w["score"] / 100) for w in alternative["words"]
    )
    result = UtteranceResult(
        alternative["text"],
        0.96,
        documented["start_time"],
        documented["end_time"],
        words,
        None,
        classifier_objects,
    )
    final = _read(core.utterance(request.recognition, result, 0.0))[-1]
    body = final.body
    assert body is not None and final.headers["Result-Status"] == "RECOGNIZED"
    assert set(body) == set(documented)
    ours = body["alternatives"][0]
    assert set(ours) == set(alternative)
    assert [set(w) for w in ours["words"]] == [set(w) for w in alternative["words"]]
    assert ours["text"] == alternative["text"] and ours["score"] == alternative["score"]
    assert ours["lm"] == alternative["lm"]
    for key in ("age_scores", "gender_scores", "emotion_scores"):
        assert set(documented[key]) <= set(body[key]), key
        assert body[key]["event"] == documented[key]["event"]
    assert set(body["age_scores"]["p"]) == set(documented["age_scores"]["p"])
    assert set(body["emotion_scores"]["p"]) == set(documented["emotion_scores"]["p"])
    assert sum(body["emotion_scores"]["p"].values()) == pytest.approx(1.0, abs=1e-6)
    assert len(body["gender_scores"]["p"]) == len(documented["gender_scores"]["p"])
    # The text of document 003 lists p_groups in emotion_scores (its JSON example omits them).
    assert set(body["emotion_scores"]["p_groups"]) == {
        "negativo_desativado",
        "positivo",
        "neutro",
        "negativo_ativado",
    }
