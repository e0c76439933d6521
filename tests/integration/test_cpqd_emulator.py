"""The CPQD emulator as a real process on loopback, with real engines and real audio, driven by raw
`websockets` frames written here as CPQD's SDKs frame them (protocol-notes 1.2: binary frames, the Python
SDK's LF lines and missing blank lines, the Java SDK's CRLF), not by our client codec.

The recordings are CPqD's own (../shared/audio/cpqd-sdk/, Brazilian Portuguese): those tests need the
best-effort pt-BR engine of ivr/emulators/engine.py. The session-level tests (classifier, verify buffer, auth,
idle timeout) use English espeak-ng speech on the English engine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.harness import RunningEmulator, speak, start_emulator
from tests.tools import SHARED

pytestmark = pytest.mark.integration

AUDIO = SHARED / "audio/cpqd-sdk"
TIMEOUT = 30.0
CHUNK = 4096  # the Python SDK's FileAudioSource block
EN_GRAMMAR = "#ABNF 1.0 UTF-8;\nlanguage en-US;\nroot $answer;\n$answer = yes {YES} | no {NO};\n"
USER, PASSWORD = "ivr", "s3cret"


Emulator = RunningEmulator


def _start(tmp: Path, *args: str) -> Iterator[Emulator]:
    with start_emulator("cpqd", [], *args, log=tmp / "cpqd.log", clean_exit=True) as running:
        assert running.banner == f"cpqd emulator listening on {running.url}", running.banner
        yield running


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator for the module (pt-BR and English engines), no auth, no idle timeout."""
    yield from _start(tmp_path_factory.mktemp("cpqd"), "--language", "pt-BR", "--language", "en")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator that wants Basic auth and closes sessions idle for a second."""
    yield from _start(
        tmp_path_factory.mktemp("cpqd-auth"),
        *("--language", "en", "--user", USER, "--password", PASSWORD, "--idle-timeout", "1"),
    )


@pytest.fixture(scope="module")
def english_yes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """espeak-ng "yes" as 16-bit 8 kHz mono raw PCM, with silence around it."""
    import wave

    wav = speak("yes", tmp_path_factory.mktemp("speech") / "yes.wav", voice="en-us", lead=0.4, tail=1.0)
    with wave.open(str(wav)) as w:
        pcm: bytes = w.readframes(w.getnframes())
    return pcm


# --- a client framing messages as the SDKs do ---


@dataclass(frozen=True)
class Reply:
    type: str
    headers: dict[str, str]
    body: dict[str, Any] | None


async def recv(ws: ClientConnection) -> Reply:
    async with asyncio.timeout(TIMEOUT):
        data = await ws.recv()
    assert isinstance(data, bytes), "the Java SDK decodes only binary frames"
    head, _, body = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    if "Content-Length" in headers:
        assert int(headers["Content-Length"]) == len(body)
    return Reply(first.split(" ")[2], headers, json.loads(body) if body else None)


def python_message(kind: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bytes:
    """The Python SDK's framing: LF lines, no blank line when there is no body."""
    text = f"ASR 2.4 {kind}\n" + "".join(f"{k}: {v}\n" for k, v in (headers or {}).items())
    if body is None:
        return text.encode()
    return (text + f"Content-Length: {len(body)}\n\n").encode() + body


def java_message(kind: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bytes:
    """The Java SDK's framing: ASR 2.3, CRLF, Content-Length then Content-Type, blank line always."""
    lines = [f"ASR 2.3 {kind}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def request(ws: ClientConnection, frame: bytes) -> Reply:
    await ws.send(frame)
    reply = await recv(ws)
    assert reply.type == "RESPONSE", reply
    return reply


async def create_session(ws: ClientConnection, channel: str | None = None, **parameters: str) -> None:
    headers = {"User-Agent": "ivr-tests"} | ({"Channel-Identifier": channel} if channel else {})
    reply = await request(ws, python_message("CREATE_SESSION", headers))
    assert (reply.headers["Result"], reply.headers["Session-Status"]) == ("SUCCESS", "IDLE")
    if parameters:
        reply = await request(ws, python_message("SET_PARAMETERS", parameters))
        assert reply.headers["Result"] == "SUCCESS" and "Error-Code" not in reply.headers


async def define_grammar(ws: ClientConnection, grammar_id: str, text: str) -> None:
    headers = {"Content-Type": "application/srgs", "Content-ID": grammar_id}
    reply = await request(ws, python_message("DEFINE_GRAMMAR", headers, text.encode()))
    assert reply.headers["Result"] == "SUCCESS", reply


async def start_recognition(ws: ClientConnection, uri: str, **parameters: str) -> None:
    headers = {"Accept": "application/json", **parameters, "Content-Type": "text/uri-list"}
    await ws.send(python_message("START_RECOGNITION", headers, uri.encode()))
    await ws.send(python_message("START_INPUT_TIMERS"))  # the Python SDK does not wait in between
    reply = await recv(ws)
    assert (reply.headers["Method"], reply.headers["Result"]) == ("START_RECOGNITION", "SUCCESS"), reply
    assert reply.headers["Session-Status"] == "LISTENING"
    timers = await recv(ws)
    assert (timers.headers["Method"], timers.headers["Result"]) == ("START_INPUT_TIMERS", "SUCCESS")


async def send_audio(ws: ClientConnection, data: bytes, *, wav: bool, pace: float = 0.0) -> None:
    """The file's bytes as the Python SDK sends them, header and all for a WAV; the last chunk LastPacket."""
    kind = "audio/wav" if wav else "audio/raw"
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        headers = {"LastPacket": "true" if last else "false"}
        await ws.send(python_message("SEND_AUDIO", headers | {"Content-Type": kind}, chunk))
        if pace:
            await asyncio.sleep(pace)


async def results(ws: ClientConnection) -> list[Reply]:
    """Server messages up to the final result with last_segment true (or the socket closing)."""
    seen: list[Reply] = []
    while True:
        reply = await recv(ws)
        seen.append(reply)
        body = reply.body or {}
        if reply.type == "RECOGNITION_RESULT" and body.get("final_result") and body.get("last_segment"):
            return seen


def finals(seen: list[Reply]) -> list[dict[str, Any]]:
    return [
        r.body
        for r in seen
        if r.type == "RECOGNITION_RESULT" and r.body is not None and r.body["final_result"]
    ]


async def release(ws: ClientConnection) -> None:
    reply = await request(ws, b"ASR 2.4 RELEASE_SESSION")
    assert (reply.headers["Method"], reply.headers["Result"]) == ("RELEASE_SESSION", "SUCCESS")


def recognize_recording(
    emulator: Emulator, path: str, grammar: str, recording: str, **session: str
) -> list[Reply]:
    """One recognition of a CPqD recording with one of its grammars: the replies up to the last result."""

    async def main() -> list[Reply]:
        async with connect(emulator.root + path, compression=None) as ws:
            await create_session(ws, **session)
            await define_grammar(ws, grammar, (AUDIO / f"{grammar}.gram").read_text(encoding="utf-8"))
            await start_recognition(ws, f"session:{grammar}")
            await send_audio(ws, (AUDIO / recording).read_bytes(), wav=True)
            seen = await results(ws)
            await release(ws)  # the late audio answers, if any, come before
            return seen

    return asyncio.run(main())


# --- CPqD's recordings on the pt-BR engine ---


def test_yes_with_the_yes_no_grammar_is_sim(emulator: Emulator) -> None:
    seen = recognize_recording(emulator, "/asr/ws/v2/recognize/8k", "yes_no", "yes-8k.wav")
    assert [r.type for r in seen][:2] == ["START_OF_SPEECH", "END_OF_SPEECH"]
    (final,) = finals(seen)
    assert final["result_status"] == "RECOGNIZED", final
    assert final["alternatives"][0]["text"] == "sim"
    assert seen[-1].headers["Result-Status"] == "RECOGNIZED" and seen[-1].headers["Session-Status"] == "IDLE"


def test_pizza_orders_in_continuous_mode_come_as_segments(emulator: Emulator) -> None:
    seen = recognize_recording(
        emulator, "/asr/ws/v3/recognize", "pizza", "pizza-multi-8k.wav", **{"decoder.continuousMode": "true"}
    )
    segments = finals(seen)
    recognized = [s for s in segments if s["result_status"] == "RECOGNIZED"]
    assert len(recognized) >= 3, segments
    assert [s["segment_index"] for s in segments] == list(range(len(segments)))
    assert [s["last_segment"] for s in segments] == [False] * (len(segments) - 1) + [True]
    assert all(s["alternatives"][0]["interpretations"][0].startswith("pizza_") for s in recognized)
    assert [r.type for r in seen].count("START_OF_SPEECH") >= 3


def test_silence_times_out_with_no_input(emulator: Emulator) -> None:
    timers = {"noInputTimeout.enabled": "true", "noInputTimeout.value": "2000"}
    seen = recognize_recording(emulator, "/asr/ws/v3/recognize", "yes_no", "silence-8k.wav", **timers)
    (final,) = finals(seen)
    assert final["result_status"] == "NO_INPUT_TIMEOUT" and final["alternatives"] == []
    assert "START_OF_SPEECH" not in [r.type for r in seen]


def test_gibberish_is_no_match(emulator: Emulator) -> None:
    seen = recognize_recording(emulator, "/asr-server/asr", "pizza", "gibberish-8k.wav")
    final = finals(seen)[-1]
    assert final["result_status"] == "NO_MATCH", final
    assert all(f["result_status"] != "RECOGNIZED" for f in finals(seen))


# --- the session features, on English speech ---


def test_emotion_scores_when_infer_emotion_is_enabled(emulator: Emulator, english_yes: bytes) -> None:
    async def main() -> list[Reply]:
        async with connect(emulator.root + "/asr/ws/v3/recognize", compression=None) as ws:
            await create_session(ws, **{"Infer-emotion-enabled": "true", "decoder.wordDetails": "2"})
            await define_grammar(ws, "answer", EN_GRAMMAR)
            await start_recognition(ws, "session:answer")
            await send_audio(ws, english_yes, wav=False)
            seen = await results(ws)
            await release(ws)
            return seen

    seen = asyncio.run(main())
    (final,) = finals(seen)
    assert final["result_status"] == "RECOGNIZED" and final["alternatives"][0]["text"] == "yes"
    word = final["alternatives"][0]["words"][0]
    assert word["text"] == "yes" and 0.3 <= word["start_time"] < word["end_time"] <= 1.5
    emotion = final["emotion_scores"]
    assert emotion["event"] == "EMOTION RESULT" and emotion["emotion"] in emotion["p"]
    assert sum(emotion["p"].values()) == pytest.approx(1.0, abs=1e-6)
    assert sum(emotion["p_groups"].values()) == pytest.approx(1.0, abs=1e-6)
    assert "age_scores" not in final and "gender_scores" not in final  # only what was enabled


def _status(emulator: Emulator, channel: str, auth: str | None = None) -> dict[str, Any]:
    req = urllib.request.Request(f"{emulator.base}/status/channels/{channel}")
    if auth:
        req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"] == "application/json"
        status: dict[str, Any] = json.loads(response.read())
        return status


def test_two_sessions_of_one_channel_share_the_verify_buffer(emulator: Emulator, english_yes: bytes) -> None:
    channel = uuid.uuid4().hex

    async def one_call(framing: str) -> dict[str, str]:
        async with connect(emulator.root + "/asr/ws/v3/recognize", compression=None) as ws:
            await create_session(ws, channel)
            await define_grammar(ws, "answer", EN_GRAMMAR)
            await start_recognition(ws, "session:answer", **{"Verify-Buffer-Utterance": "true"})
            await send_audio(ws, english_yes, wav=False)
            (final,) = finals(await results(ws))
            assert final["result_status"] == "RECOGNIZED"
            frame = b"ASR 2.3 GET_PARAMETERS\r\nVerify-Buffer-Utterances: \r\nChannel-Identifier: \r\n\r\n"
            reply = await request(ws, frame if framing == "java" else frame.replace(b"\r\n", b"\n"))
            await release(ws)
            return reply.headers

    first = asyncio.run(one_call("python"))
    second = asyncio.run(one_call("java"))
    assert (first["Verify-Buffer-Utterances"], second["Verify-Buffer-Utterances"]) == ("1", "2")
    assert second["Channel-Identifier"] == channel
    status = _status(emulator, channel)
    assert status["sessions_created"] == 2 and len(set(status["sessions"])) == 2
    assert (status["recognitions"], status["sessions_released"]) == (2, 2)
    assert status["verify_buffer"]["utterances"] == 2 and status["verify_buffer"]["seconds"] > 0.2
    with pytest.raises(urllib.error.HTTPError) as missing:
        _status(emulator, uuid.uuid4().hex)
    assert missing.value.code == 404


def test_unknown_path_is_not_found(emulator: Emulator) -> None:
    async def main() -> None:
        async with connect(emulator.root + "/somewhere/else"):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(main())
    assert refused.value.response.status_code == 404


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth(guarded: Emulator) -> None:
    async def attempt(authorization: str | None) -> str:
        headers = {"Authorization": authorization} if authorization else None
        async with connect(guarded.root + "/asr/ws/v3/recognize", additional_headers=headers) as ws:
            reply = await request(ws, java_message("CREATE_SESSION"))
            return reply.headers["Result"]

    for refused in (None, _basic(USER, "wrong"), _basic("", "")):  # the Python SDK's default is "Basic Og=="
        with pytest.raises(InvalidStatus) as caught:
            asyncio.run(attempt(refused))
        assert caught.value.response.status_code == 401
        assert caught.value.response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert asyncio.run(attempt(_basic(USER, PASSWORD))) == "SUCCESS"


def test_idle_session_is_closed_with_a_timeout_reason(guarded: Emulator) -> None:
    async def main() -> str:
        headers = {"Authorization": _basic(USER, PASSWORD)}
        async with connect(guarded.root + "/asr/ws/v3/recognize", additional_headers=headers) as ws:
            await create_session(ws)
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)  # nothing more is sent: the session idles
            assert closed.value.rcvd is not None
            return closed.value.rcvd.reason

    assert "timeout." in asyncio.run(main())  # what the Java SDK maps to SESSION_TIMEOUT (notes 1.1)
