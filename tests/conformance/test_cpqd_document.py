"""CpqdCodec against the examples of the CPQD 2.4 document (003) and the transcript of protocol-notes 1.8.

The examples are read out of ../shared/specs at test time, so the tests check the documents themselves.
Where a document's example is not usable as printed (003's result JSON has a trailing comma; the transcript
abbreviates some values), the test changes it visibly, next to the reason.
"""

from __future__ import annotations

import json
import re

import pytest

from ivr.asr.base import (
    Alternative,
    Classification,
    EndOfSpeech,
    Final,
    Grammar,
    Partial,
    RecognitionRequest,
    RecognitionStarted,
    ResultStatus,
    Scores,
    SessionClosed,
    StartOfSpeech,
    Timers,
    Word,
)
from ivr.asr.cpqd import CpqdCodec
from tests.tools import SHARED

SPECS = SHARED / "specs"
DOCUMENT = SPECS / "003-cpqd-asr-websocket-2.4.md"
NOTES = SPECS / "protocol-notes.md"
GRAMMAR = SHARED / "audio/cpqd-sdk/pizza.gram"

if not DOCUMENT.exists() or not NOTES.exists():  # the vendor documents sit beside the repository, not in it
    pytest.skip(f"the CPQD documents are not at {SPECS}", allow_module_level=True)

TEXT = DOCUMENT.read_text(encoding="utf-8")


def split(frame: bytes | str) -> tuple[list[str], bytes]:
    """A client frame as its header lines and body (the SDKs send binary frames only)."""
    assert isinstance(frame, bytes)
    head, _, body = frame.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body


def frame_lines(frame: bytes | str) -> list[str]:
    head, body = split(frame)
    return head + (["", *body.decode().splitlines()] if body else [])


def example(first_line: str, last_line: str) -> list[str]:
    start = TEXT.index(first_line)
    return TEXT[start : TEXT.index(last_line, start) + len(last_line)].split("\n")


def server(version: str, kind: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    lines = [f"ASR {version} {kind}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# ---- document 003


def test_create_session_example() -> None:
    match = re.search(r"^ASR 2\.4 CREATE_SESSION\n.+$", TEXT, re.MULTILINE)
    assert match is not None
    printed = match.group().split("\n")
    [channel_id] = re.findall(r"Channel-Identifier: ([0-9a-f]{32})", TEXT)
    codec = CpqdCodec(channel_id=channel_id)
    codec.open(0.0)
    [frame] = codec.data_to_send()
    assert frame_lines(frame) == printed == ["ASR 2.4 CREATE_SESSION", f"Channel-Identifier: {channel_id}"]


def test_start_recognition_example() -> None:
    printed = example("ASR 2.4 START_RECOGNITION", "builtin:slm/general")
    media_types = re.findall(r"•\s+(\S+)\s+–", TEXT)
    assert media_types == ["application/octet-stream", "audio/wav", "audio/raw"]
    codec = CpqdCodec()
    codec.open(0.0)
    codec.receive(server("2.4", "RESPONSE", [("Method", "CREATE_SESSION"), ("Result", "SUCCESS")]), 0.0)
    codec.data_to_send()
    codec.send(RecognitionRequest(1, "pt-BR", grammar=Grammar(uri="builtin:slm/general")), 0.0)
    [ours] = [frame_lines(f) for f in codec.data_to_send() if b"START_RECOGNITION" in f]
    assert ours[0] == printed[0]
    blank, printed_blank = ours.index(""), printed.index("")
    assert ours[blank:] == printed[printed_blank:] == ["", "builtin:slm/general"]
    theirs = dict(line.split(": ", 1) for line in printed[1:printed_blank])
    mine = dict(line.split(": ", 1) for line in ours[1:blank])
    # Content-Length 20 = "builtin:slm/general" and the newline after each URI, as the Java SDK writes it.
    assert mine["Content-Length"] == theirs["Content-Length"] == "20"
    assert mine["Content-Type"] == theirs["Content-Type"] == "text/uri-list"
    # The example streams a WAV file; the bridge streams headerless PCM, "audio/raw" in the document's list.
    assert theirs["Media-Type"] in media_types and mine["Media-Type"] == "audio/raw"
    assert set(mine) - set(theirs) == {"Accept"}  # the Python SDK always asks for JSON results


def printed_result() -> str:
    return TEXT[TEXT.index("{", TEXT.index("Exemplo de conteúdo resultado JSON:")) :].strip()


def test_the_result_example_is_not_json_as_printed() -> None:
    printed = printed_result()
    with pytest.raises(json.JSONDecodeError):
        json.loads(printed)
    # The one defect: a comma after the age "p" object, before the closing brace of age_scores.
    cleaned = re.sub(r",(\s*\})", r"\1", printed)
    assert len(printed) - len(cleaned) == 1
    json.loads(cleaned)


@pytest.mark.parametrize("as_printed", [True, False], ids=["as-printed", "cleaned"])
def test_result_example(as_printed: bool) -> None:
    printed = printed_result()
    cleaned = re.sub(r",(\s*\})", r"\1", printed)  # see test_the_result_example_is_not_json_as_printed
    document = json.loads(cleaned)
    codec = CpqdCodec()
    codec.open(0.0)
    codec.receive(server("2.4", "RESPONSE", [("Method", "CREATE_SESSION"), ("Result", "SUCCESS")]), 0.0)
    codec.send(RecognitionRequest(1, "pt-BR", classifiers=frozenset()), 0.0)
    codec.receive(server("2.4", "RESPONSE", [("Method", "START_RECOGNITION"), ("Result", "SUCCESS")]), 0.0)
    body = (printed if as_printed else cleaned).encode()
    headers = [
        ("Result-Status", "RECOGNIZED"),
        ("Session-Status", "IDLE"),
        ("Content-Length", str(len(body))),
    ]
    [final] = codec.receive(server("2.4", "RECOGNITION_RESULT", headers, body.decode()), 0.0)

    # What the document says, read with the mapping of the codec's docstring (score 0-100 -> 0-1).
    alternatives = tuple(
        Alternative(
            a["text"],
            a["score"] / 100,
            tuple(Word(w["text"], w["start_time"], w["end_time"], w["score"] / 100) for w in a["words"]),
        )
        for a in document["alternatives"]
    )
    age, gender, emotion = document["age_scores"], document["gender_scores"], document["emotion_scores"]
    # The example has no p_groups: the codec fills them in from p, each group the sum of its members.
    p = emotion["p"]
    groups = (
        ("negativo_desativado", p["triste"]),
        ("positivo", p["entusiasmado"] + p["feliz"] + p["surpreso"]),
        ("neutro", p["neutro"]),
        ("negativo_ativado", p["enojado"] + p["irritado"] + p["frustrado"] + p["ansioso"] + p["amedrontado"]),
    )
    classification = Classification(
        emotion=Scores(emotion["emotion"], tuple(p.items()), tuple((g, round(v, 6)) for g, v in groups)),
        age=Scores(str(age["age"]), tuple(age["p"].items()), ((age["confidence"], 1.0),)),
        gender=Scores(gender["gender"], (("M", gender["p"][0]), ("F", gender["p"][1]))),
    )
    assert final == Final(1, ResultStatus.RECOGNIZED, alternatives, classification)
    assert final.text == "gastando 123 testando 123 testando" and final.confidence == 0.96
    assert classification.emotion is not None and classification.emotion.label == "frustrado"
    assert classification.gender is not None and classification.gender.score("M") > 0.85
    # frustrado 0.67 dominates: the derived activated-negative group is where a priority route looks
    assert final.classification is not None and final.classification.emotion is not None
    assert dict(final.classification.emotion.groups)["negativo_ativado"] > 0.8


def test_classifier_fields_named_by_the_document() -> None:
    """The field descriptions list ten emotions, four emotion groups and ten age bins: the example and the
    codec use those names."""
    described = TEXT[TEXT.index("emotion_scores:") : TEXT.index("Exemplo de conteúdo resultado JSON:")]
    names = re.findall(r"<(\w+)>: <float>", described)
    emotions, groups = names[:10], names[10:]
    assert groups == ["negativo_desativado", "positivo", "neutro", "negativo_ativado"]
    document = json.loads(re.sub(r",(\s*\})", r"\1", printed_result()))
    assert list(document["emotion_scores"]["p"]) == emotions
    bins = re.findall(r"<(\d+-\d+)>: <float>", TEXT[TEXT.index("age_scores:") : TEXT.index("gender_scores:")])
    assert list(document["age_scores"]["p"]) == bins and len(bins) == 10

    codec = CpqdCodec()
    codec.open(0.0)
    codec.receive(server("2.4", "RESPONSE", [("Method", "CREATE_SESSION"), ("Result", "SUCCESS")]), 0.0)
    codec.send(RecognitionRequest(1, "pt-BR"), 0.0)
    codec.receive(server("2.4", "RESPONSE", [("Method", "START_RECOGNITION"), ("Result", "SUCCESS")]), 0.0)
    scores = {
        "event": "EMOTION RESULT",
        "emotion": emotions[-1],
        "p": {name: 0.1 for name in emotions},
        "p_groups": {name: 0.25 for name in groups},
    }
    body = json.dumps({"alternatives": [], "result_status": "NO_MATCH", "emotion_scores": scores})
    [final] = codec.receive(server("2.4", "RECOGNITION_RESULT", [("Result-Status", "NO_MATCH")], body), 0.0)
    assert isinstance(final, Final) and final.classification is not None
    emotion = final.classification.emotion
    assert emotion is not None and emotion.label == "irritado"
    assert [name for name, _ in emotion.p] == emotions and [name for name, _ in emotion.groups] == groups


# ---- protocol-notes 1.8: the transcript of a Java SDK session


def transcript() -> list[tuple[str, str, list[tuple[str, str]], str]]:
    """(C or S, message type, headers, body) of each message of the transcript, its shorthand expanded:
    ``A / B / blank`` lines, ``RESPONSE Method: X, Result: Y`` lines, "(blank)" and "(comments)"."""
    notes = NOTES.read_text(encoding="utf-8")
    block = notes[notes.index("### 1.8") :].split("```")[1]
    entries: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line[:3] in ("C: ", "S: "):
            entries.append((line[0], [line[3:]]))
        elif line.startswith("   ") and entries:
            entries[-1][1].append(line[3:])
    messages = []
    for side, lines in entries:
        first = re.sub(r"^\(.*?\)\s*", "", lines[0])  # "(optional partials) RECOGNITION_RESULT, ..."
        if first.startswith(("...", "WebSocket")):
            continue  # "... (repeated; no responses)", the closing handshake
        first = re.sub(r"\s{2,}\(.*\)$", "", first).removeprefix("ASR 2.3 ")
        rest = [re.sub(r"\s{2,}\(.*\)$", "", line) for line in lines[1:]]
        if " / " in first:
            kind, *rest = first.split(" / ")
        elif ", " in first:
            kind, _, tail = first.partition(" ")
            kind = kind.rstrip(",")
            rest = [part for part in tail.split(", ") if part.strip(",")] + rest
        else:
            kind = first
        headers: list[tuple[str, str]] = []
        body: list[str] = []
        in_body = False
        for line in rest:
            line = line.strip().rstrip(",")
            if line in ("(blank)", "blank"):
                in_body = True
            elif line.startswith("(") or (line.endswith(")") and not in_body and ":" not in line):
                break  # a comment about the client's behaviour, not part of the message
            elif line.startswith("body "):
                body.append(line.removeprefix("body "))
            elif in_body:
                body.append(line)
            else:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        messages.append((side, kind.strip(), headers, "\n".join(body).replace("\\n", "\n")))
    return messages


# What this client sends differently from the Java SDK of the transcript, and why.
DEVIATIONS = {
    ("CREATE_SESSION", "User-Agent"): "optional; the bridge sends none",
    ("DEFINE_GRAMMAR", "Content-ID"): "the bridge names a grammar after a hash of its text",
    ("DEFINE_GRAMMAR", "Content-Type"): "application/srgs, as the Python SDK sends (the notes say so)",
    ("DEFINE_GRAMMAR", "Content-Length"): "the transcript's 812 stands for some grammar's length",
    ("START_RECOGNITION", "decoder.continuousMode"): "sent in SET_PARAMETERS with the other settings",
    ("START_RECOGNITION", "Content-Length"): "the transcript's 37 does not fit its own body",
}


def test_transcript_is_read_completely() -> None:
    messages = transcript()
    assert [(side, kind) for side, kind, _, _ in messages] == [
        ("C", "CREATE_SESSION"),
        ("S", "RESPONSE"),
        ("C", "SET_PARAMETERS"),
        ("S", "RESPONSE"),
        ("C", "DEFINE_GRAMMAR"),
        ("S", "RESPONSE"),
        ("C", "START_RECOGNITION"),
        ("S", "RESPONSE"),
        ("C", "SEND_AUDIO"),
        ("S", "START_OF_SPEECH"),
        ("S", "END_OF_SPEECH"),
        ("S", "RECOGNITION_RESULT"),
        ("S", "RECOGNITION_RESULT"),
        ("C", "SEND_AUDIO"),
        ("C", "RELEASE_SESSION"),
        ("S", "RESPONSE"),
    ]


def test_transcript_through_the_codec() -> None:
    request = RecognitionRequest(
        1,
        "pt-BR",
        grammar=Grammar(srgs=GRAMMAR.read_text(encoding="utf-8"), uri="builtin:slm/general"),
        timers=Timers(no_input=5.0),
        n_best=3,
    )
    codec = CpqdCodec(version="2.3")  # the Java SDK's default version
    events: list[object] = []
    ours: list[bytes | str] = []
    defined = ""
    chunk = bytes(range(256)) * 15 + bytes(160)  # 4000 bytes, as the Java SDK's ReaderTask sends
    for side, kind, headers, body in transcript():
        if side == "S":
            if body.startswith('{"alternatives":[{"text":"uma pizza"}]'):
                body = body.replace(",...}", "}")  # the partial's "..." stands for more fields
            elif body.startswith('{"alternatives":[...]'):
                # The final's alternatives and times are elided: fill in a hypothesis and times.
                body = body.replace("[...]", '[{"text":"uma pizza de bacon","score":95}]').replace(
                    "..", "0.0"
                )
            if ("Content-Length", "N") in headers:
                headers[headers.index(("Content-Length", "N"))] = ("Content-Length", str(len(body.encode())))
            events += codec.receive(server("2.3", kind, headers, body), 0.0)
            continue
        if kind == "CREATE_SESSION":
            codec.open(0.0)
        elif kind == "SET_PARAMETERS":
            codec.send(request, 0.0)  # pipelined: DEFINE_GRAMMAR and START_RECOGNITION go out now too
        elif kind == "SEND_AUDIO" and ("LastPacket", "false") in headers:
            codec.audio(chunk, 0.0)
        elif kind == "SEND_AUDIO":
            events += codec.end(0.0)
        elif kind == "RELEASE_SESSION":
            events += codec.close(0.0)
        ours += codec.data_to_send()
        if kind == "SEND_AUDIO" and ("LastPacket", "true") in headers:
            # The result came first: the Java SDK's late LastPacket (answered INVALID_ACTION) is not sent.
            continue
        frame = next(f for f in ours if split(f)[0][0] == f"ASR 2.3 {kind}")
        ours.remove(frame)
        lines, sent_body = split(frame)
        sent = dict(line.split(": ", 1) for line in lines[1:])
        for name, value in headers:
            if (kind, name) not in DEVIATIONS:
                assert sent.get(name) == value, f"{kind} {name}: ours {sent.get(name)!r}, theirs {value!r}"
        if kind == "SEND_AUDIO":
            assert sent_body == chunk
        elif kind == "START_RECOGNITION":
            # "session:pizza\nbuiltin:slm/general\n": the defined grammar, then the SLM, a newline after each.
            grammar_id, lm = body.splitlines()
            assert grammar_id.startswith("session:") and lm == "builtin:slm/general"
            assert sent_body.decode() == f"session:{defined}\nbuiltin:slm/general\n"
        elif kind == "DEFINE_GRAMMAR":
            defined = sent["Content-ID"]
            assert sent_body == GRAMMAR.read_bytes() and int(sent["Content-Length"]) == len(sent_body)
    assert ours == []  # nothing sent that the transcript does not show
    assert events == [
        RecognitionStarted(1),
        StartOfSpeech(1),
        EndOfSpeech(1),
        Partial(1, "uma pizza"),
        Final(1, ResultStatus.RECOGNIZED, (Alternative("uma pizza de bacon", 0.95),)),
        SessionClosed(),
    ]


def test_transcript_last_packet_when_the_audio_ends_first() -> None:
    """The transcript's closing SEND_AUDIO is exactly what ``end`` sends while the server still listens."""
    [printed] = [
        h for side, kind, h, _ in transcript() if kind == "SEND_AUDIO" and ("LastPacket", "true") in h
    ]
    codec = CpqdCodec(version="2.3")
    codec.open(0.0)
    codec.receive(server("2.3", "RESPONSE", [("Method", "CREATE_SESSION"), ("Result", "SUCCESS")]), 0.0)
    codec.send(RecognitionRequest(1, "pt-BR"), 0.0)
    codec.receive(server("2.3", "RESPONSE", [("Method", "START_RECOGNITION"), ("Result", "SUCCESS")]), 0.0)
    codec.data_to_send()
    codec.end(0.0)
    [frame] = codec.data_to_send()
    assert frame_lines(frame) == ["ASR 2.3 SEND_AUDIO", *(f"{name}: {value}" for name, value in printed)]
