"""The Mediazen emulator as a real process with Vosk (ko) and pocketsphinx (en), driven by a plain WebSocket
client written from the vendor document (../shared/specs/000-mediazen-asr-websocket.md), not from our
client codec."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import select
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ivr.emulators.mediazen import (
    AudioReceived,
    CloseConnection,
    JoinRequested,
    MediazenServerProtocol,
    QuitRequested,
    SendMessage,
    SessionState,
)
from tests.integration.harness import speak
from tests.tools import KOREAN_MENU

pytestmark = pytest.mark.integration

DEMO_MENU = list(KOREAN_MENU)
SPOKEN = ["상담원 연결해 주세요", "메인 메뉴", "네"]  # reliable with espeak-ng (TOOLBOX.md)
# English phrases in the same --phrases file: Latin phrases go to the English engine, Hangul ones to Korean.
ENGLISH_MENU = ["agent", "speak to an agent", "representative", "check my balance", "yes", "no", "main menu"]
FRAME = 320  # 20 ms of 16-bit 8 kHz
TIMEOUT = 15.0


def _speech(text: str, directory: Path, *, trailing_silence: float, voice: str = "ko") -> bytes:
    """espeak-ng speech as a phone carries it (8 kHz, µ-law round trip), as raw 16-bit PCM."""
    wav = speak(
        text,
        directory / f"{abs(hash((text, trailing_silence)))}.wav",
        voice=voice,
        lead=0.0,
        tail=trailing_silence,
    )
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("speech")
    return {text: _speech(text, directory, trailing_silence=0.8) for text in SPOKEN}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One emulator process for the module (the model loads once); yields its ws:// URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    phrases = tmp_path_factory.mktemp("phrases") / "menu.txt"
    menu = [*DEMO_MENU[:-1], *ENGLISH_MENU]
    phrases.write_text("# demo menu\n" + "\n".join(menu) + "\n", encoding="utf-8")
    log = (tmp_path_factory.mktemp("log") / "emulator.log").open("w")
    cmd = [sys.executable, "-m", "ivr.emulators.mediazen", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--phrases", str(phrases), "--phrase", DEMO_MENU[-1]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            if "listening" in line:
                break
    assert line.strip() == f"mediazen emulator listening on ws://127.0.0.1:{port}", line
    yield f"ws://127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    log.close()


# --- a client written from the document ---


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        message = await ws.recv()
    assert isinstance(message, str), "the document's messages are JSON text"
    result: dict[str, Any] = json.loads(message)
    return result


async def _join(ws: ClientConnection, language: str = "ko") -> dict[str, Any]:
    await ws.send(json.dumps({"language": language, "cmd": "join"}))
    return await _recv(ws)


async def _stream(ws: ClientConnection, pcm: bytes, frame: int = FRAME) -> None:
    for i in range(0, len(pcm), frame):
        await ws.send(pcm[i : i + frame])
        await asyncio.sleep(0.004)  # about 5x real time


async def _until_final(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """new:text messages up to the first with epd true: (partials, final)."""
    partials: list[dict[str, Any]] = []
    while True:
        message = await _recv(ws)
        assert message["event"] == "new:text", message
        if message["payload"]["epd"]:
            return partials, message
        partials.append(message)


async def _quit(ws: ClientConnection, language: str = "ko") -> list[dict[str, Any]]:
    """Send quit; every message up to and including close, and check the server then closes the socket."""
    await ws.send(json.dumps({"language": language, "cmd": "quit"}))
    messages = [await _recv(ws)]
    while messages[-1]["event"] != "close":
        messages.append(await _recv(ws))
    with pytest.raises(ConnectionClosed):
        await _recv(ws)
    return messages


def _text(message: dict[str, Any]) -> str:
    payload = message["payload"]
    assert payload["stt_cnt"] == len(payload["stt"]) == 1, message
    assert payload["stt"][0]["id"] == 0
    text: str = payload["stt"][0]["text"]
    return text


# --- the exchanges of the document ---


async def test_join_reply_has_the_document_shape(emulator: str) -> None:
    async with connect(emulator, compression=None) as ws:
        assert await _join(ws) == {"topic": "asr:ko", "payload": {"status": "ok"}, "event": "reply"}
        assert await _quit(ws) == [{"topic": "asr:ko", "payload": {}, "event": "close"}]


async def test_utterance_gives_partials_then_final_then_close(emulator: str, clips: dict[str, bytes]) -> None:
    async with connect(emulator, compression=None) as ws:
        await _join(ws)
        await _stream(ws, clips["상담원 연결해 주세요"])
        partials, final = await _until_final(ws)
        assert partials, "partial results while the speech goes on"
        for partial in partials:
            assert partial["topic"] == "asr:ko" and partial["payload"]["epd"] is False
        texts = [_text(p) for p in partials]
        assert all(a != b for a, b in itertools.pairwise(texts)), "a partial only when its text changes"
        assert final["topic"] == "asr:ko"
        assert _text(final) == "상담원 연결해 주세요"
        confidence = final["payload"]["stt"][0]["confidence"]
        assert isinstance(confidence, float) and 0.0 < confidence <= 1.0
        assert await _quit(ws) == [{"topic": "asr:ko", "payload": {}, "event": "close"}]


async def test_second_utterance_in_the_same_session(emulator: str, clips: dict[str, bytes]) -> None:
    async with connect(emulator, compression=None) as ws:
        await _join(ws)
        await _stream(ws, clips["상담원 연결해 주세요"])
        assert _text((await _until_final(ws))[1]) == "상담원 연결해 주세요"
        await _stream(ws, clips["메인 메뉴"])
        assert _text((await _until_final(ws))[1]) == "메인 메뉴"
        await _quit(ws)


async def test_odd_frame_sizes_keep_sample_alignment(emulator: str, clips: dict[str, bytes]) -> None:
    async with connect(emulator, compression=None) as ws:
        await _join(ws)
        await _stream(ws, clips["상담원 연결해 주세요"], frame=321)
        assert _text((await _until_final(ws))[1]) == "상담원 연결해 주세요"
        await _quit(ws)


async def test_quit_flushes_the_pending_utterance(emulator: str, tmp_path: Path) -> None:
    speech = _speech(
        "상담원 연결해 주세요", tmp_path, trailing_silence=0
    )  # no silence: no endpoint before quit
    async with connect(emulator, compression=None) as ws:
        await _join(ws)
        await _stream(ws, speech)
        messages = [m for m in await _quit(ws) if not (m["event"] == "new:text" and not m["payload"]["epd"])]
        assert len(messages) == 2, messages
        assert messages[0]["payload"]["epd"] is True and _text(messages[0]) == "상담원 연결해 주세요"
        assert messages[1] == {"topic": "asr:ko", "payload": {}, "event": "close"}


async def test_two_concurrent_sessions_get_their_own_text(emulator: str, clips: dict[str, bytes]) -> None:
    async def session(text: str) -> str:
        async with connect(emulator, compression=None) as ws:
            await _join(ws)
            await _stream(ws, clips[text])
            final = _text((await _until_final(ws))[1])
            await _quit(ws)
            return final

    results = await asyncio.gather(session("상담원 연결해 주세요"), session("메인 메뉴"))
    assert list(results) == ["상담원 연결해 주세요", "메인 메뉴"]


# --- errors: a reply, and the server keeps serving ---


def _assert_error(message: dict[str, Any], topic: str = "asr:ko") -> None:
    assert message["event"] == "reply" and message["topic"] == topic
    assert message["payload"]["status"] == "error"
    assert isinstance(message["payload"]["message"], str) and message["payload"]["message"]


async def test_malformed_json_gets_an_error_and_the_session_goes_on(
    emulator: str, clips: dict[str, bytes]
) -> None:
    async with connect(emulator, compression=None) as ws:
        await _join(ws)
        await ws.send("{not json")
        _assert_error(await _recv(ws))
        await ws.send(json.dumps({"language": "ko", "cmd": "dance"}))
        _assert_error(await _recv(ws))
        await _stream(ws, clips["네"])
        assert _text((await _until_final(ws))[1]) == "네"
        await _quit(ws)


async def test_audio_before_join_gets_an_error_then_join_works(emulator: str) -> None:
    async with connect(emulator, compression=None) as ws:
        await ws.send(b"\x00" * FRAME)
        await ws.send(b"\x00" * FRAME)  # reported once, not per frame
        _assert_error(await _recv(ws))
        assert await _join(ws) == {"topic": "asr:ko", "payload": {"status": "ok"}, "event": "reply"}
        await _quit(ws)


async def test_english_is_served_by_the_local_english_engine(emulator: str, tmp_path: Path) -> None:
    speech = _speech("check my balance", tmp_path, trailing_silence=0.8, voice="en-us")
    async with connect(emulator, compression=None) as ws:
        assert await _join(ws, "en") == {"topic": "asr:en", "payload": {"status": "ok"}, "event": "reply"}
        await _stream(ws, speech)
        partials, final = await _until_final(ws)
        assert all(p["topic"] == "asr:en" and p["payload"]["epd"] is False for p in partials)
        assert final["topic"] == "asr:en" and final["payload"]["epd"] is True
        assert _text(final) == "check my balance"
        assert 0.0 < final["payload"]["stt"][0]["confidence"] <= 1.0
        assert await _quit(ws, "en") == [{"topic": "asr:en", "payload": {}, "event": "close"}]


@pytest.mark.parametrize("language", ["jp", "fr"])
async def test_language_without_a_model_is_refused_and_closed(emulator: str, language: str) -> None:
    async with connect(emulator, compression=None) as ws:
        reply = await _join(ws, language)
        _assert_error(reply, topic="asr:ko" if language == "fr" else f"asr:{language}")
        if language == "jp":
            # The Japanese matcher loads, but the menu has no Japanese phrase for it to match.
            assert "no phrases in it" in reply["payload"]["message"]
        with pytest.raises(ConnectionClosed):
            await _recv(ws)
    async with connect(emulator, compression=None) as ws:  # and the server still serves
        assert (await _join(ws))["payload"] == {"status": "ok"}
        await _quit(ws)


# --- the sans-I/O core on its own ---


def test_core_carries_an_odd_byte_across_frames() -> None:
    core = MediazenServerProtocol()
    assert core.receive_text('{"language":"ko","cmd":"join"}') == [JoinRequested("ko")]
    core.accept_join()
    assert core.receive_bytes(b"\x01\x02\x03") == [AudioReceived(b"\x01\x02")]
    assert core.receive_bytes(b"\x04") == [AudioReceived(b"\x03\x04")]
    assert core.receive_bytes(b"\x05") == []
    assert core.receive_bytes(b"\x06\x07\x08") == [AudioReceived(b"\x05\x06\x07\x08")]


def test_core_sends_a_partial_only_when_it_changes_and_silence_is_no_utterance() -> None:
    core = MediazenServerProtocol()
    core.receive_text('{"language":"ko","cmd":"join"}')
    core.accept_join()
    assert core.recognized("", 0.0, True) == []
    first = core.recognized("상담원", 0.0, False)
    assert len(first) == 1 and isinstance(first[0], SendMessage)
    assert "상담원" in first[0].text  # UTF-8, not \\u escapes
    assert core.recognized("상담원", 0.0, False) == []
    final = core.recognized("", 0.0, True)  # speech reported, nothing survived: an empty epd closes it
    assert isinstance(final[0], SendMessage)
    assert json.loads(final[0].text)["payload"] == {"stt_cnt": 0, "stt": [], "epd": True}


def test_core_states_from_join_to_close() -> None:
    core = MediazenServerProtocol()
    assert core.state is SessionState.IDLE
    assert core.receive_text('{"language":"en","cmd":"join"}') == [JoinRequested("en")]
    assert core.state is SessionState.JOINING and core.topic == "asr:en"
    core.accept_join()
    assert core.state is SessionState.JOINED
    assert core.receive_text('{"language":"en","cmd":"quit"}') == [QuitRequested()]
    assert core.state is SessionState.QUITTING
    events = core.finished("yes", 1.0)
    assert core.state is SessionState.CLOSED and isinstance(events[-1], CloseConnection)
    assert [json.loads(e.text)["event"] for e in events if isinstance(e, SendMessage)] == [
        "new:text",
        "close",
    ]
