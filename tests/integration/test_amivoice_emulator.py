"""The AmiVoice emulator as a real process, driven by clients written from the vendor documents: the sample
client printed in document 002 (websocket-client, run unchanged but for its URL, file, codec and APPKEY), a
raw socket speaking the dialect of AmiVoice's Wrp Python library (protocol-notes 2.8), and `websockets`.
Speech is espeak-ng English and Japanese synthesized here; the engines are the local ones (pocketsphinx en,
the best-effort ja matcher)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from ivr.emulators.wsserver import Control, FrameParser, Opcode
from tests.integration.harness import start_emulator
from tests.tools import SHARED, require_tool

pytestmark = pytest.mark.integration

SPEC = SHARED / "specs/002-amivoice-websocket.md"
APPKEY = "emulator-test-appkey"
ENGLISH = ["check my balance", "speak to an agent", "main menu", "yes", "no"]
JAPANESE = ["はい", "いいえ", "オペレーター", "残高照会"]
SILENCE_TIMEOUT = 3.0
NO_COMMUNICATION_TIMEOUT = 4.0
TIMEOUT = 30.0


# --- speech ---


def speech(
    text: str,
    out: Path,
    *,
    voice: str = "en-us",
    encoding: str = "signed",
    rate: int = 8000,
    big_endian: bool = False,
    lead: float = 0.3,
    tail: float = 1.0,
) -> Path:
    """espeak-ng speech as a phone line carries it (8 kHz µ-law), then as headerless µ-law or 16-bit PCM."""
    require_tool("espeak-ng")
    require_tool("sox")
    wav = out.with_suffix(".espeak.wav")
    ulaw = out.with_suffix(".ulaw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
    pad = ["pad", str(lead), str(tail)]
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-e", "u-law", str(ulaw), *pad], check=True)
    if encoding == "u-law":
        fmt = ["-e", "u-law", "-b", "8"]
    else:
        fmt = ["-r", str(rate), "-e", "signed", "-b", "16", "-B" if big_endian else "-L"]
    subprocess.run(["sox", str(ulaw), *fmt, "-t", "raw", str(out)], check=True, capture_output=True)
    return out


# --- the emulator ---


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One emulator process for the module (engines load once); yields (host, port)."""
    args = ["--language", "en", "--language", "ja", "--appkey", APPKEY]
    args += [
        "--silence-timeout",
        str(SILENCE_TIMEOUT),
        "--no-communication-timeout",
        str(NO_COMMUNICATION_TIMEOUT),
    ]
    log = tmp_path_factory.mktemp("amivoice") / "emulator.log"
    with start_emulator("amivoice", [*ENGLISH, *JAPANESE], *args, log=log, clean_exit=True) as running:
        assert running.banner == f"amivoice emulator listening on {running.url}", running.banner
        yield "127.0.0.1", running.port


# --- document 002's sample client, unchanged ---

# The document's rendering dropped the sample's indentation; these are its block levels, one per non-blank
# line of the listing (the code itself is read from the document at test time).
SAMPLE_LEVELS = [
    int(level)
    for level in (
        "00000"  # imports
        "00"  # logger
        "000000111110"  # server ... options
        "011223454221"  # on_open
        "0111"  # on_message
        "1233"  # if event == 's'
        "234455655332"  # send_audio
        "121212121212122"  # elif ...
        "01"  # on_close
        "001110"  # WebSocketApp ... run_forever
    )
]


def sample_client(server: str, filename: str, codec: str, appkey: str, engine: str = "-a-general") -> str:
    """Document 002's websocket-sample.py with its settings (URL, file, codec, APPKEY, engine) substituted."""
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("websocket-sample.py\n") + len("websocket-sample.py\n")
    end = text.index("ws.run_forever()\n", start) + len("ws.run_forever()\n")
    lines = [line for line in text[start:end].splitlines() if line.strip()]
    assert len(lines) == len(SAMPLE_LEVELS), "the sample in document 002 changed: update SAMPLE_LEVELS"
    source = "\n".join("    " * level + line for level, line in zip(SAMPLE_LEVELS, lines, strict=True)) + "\n"
    substitutions = {
        "server = 'wss://acp-api.amivoice.com/v1/'": f"server = {server!r}",
        "filename = 'test.wav'": f"filename = {filename!r}",
        'codec = "16K"': f"codec = {codec!r}",
        "'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'": repr(appkey),
        'grammar_file_names = "-a-general"': f"grammar_file_names = {engine!r}",
    }
    for old, new in substitutions.items():
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    compile(source, "websocket-sample.py", "exec")
    return source


def run_sample(
    tmp_path: Path, server: str, audio: Path, codec: str, engine: str = "-a-general"
) -> list[tuple[str, str]]:
    script = tmp_path / "websocket-sample.py"
    script.write_text(sample_client(server, audio.name, codec, APPKEY, engine), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, script.name], cwd=audio.parent, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The sample logs every server message as "message: <event> <content>".
    return [(m[1], m[2]) for m in re.finditer(r"message: (\S) ?(.*)$", done.stderr, re.MULTILINE)]


def assert_one_utterance(messages: list[tuple[str, str]], text: str) -> dict[str, object]:
    kinds = [k for k, _ in messages if k != "U"]
    assert kinds == ["s", "S", "C", "E", "A", "e"], messages
    assert dict(messages)["s"] == ""
    start, end = int(dict(messages)["S"]), int(dict(messages)["E"])
    assert 0 <= start < end
    result: dict[str, object] = json.loads(dict(messages)["A"])
    assert (result["text"], result["code"], result["message"]) == (text, "", "")
    segment = result["results"][0]  # type: ignore[index]
    assert start <= segment["starttime"] < segment["endtime"] <= end
    assert isinstance(result["utteranceid"], str) and result["utteranceid"]
    return result


@pytest.mark.parametrize(("codec", "encoding"), [("LSB8K", "signed"), ("MULAW", "u-law")])
def test_document_sample_client_runs_unchanged(
    emulator: tuple[str, int], tmp_path: Path, codec: str, encoding: str
) -> None:
    """The sample as printed: Japanese on -a-general."""
    host, port = emulator
    audio = speech("オペレーター", tmp_path / f"ja-{codec}.raw", voice="ja", encoding=encoding)
    messages = run_sample(tmp_path, f"ws://{host}:{port}/v1/", audio, codec)
    result = assert_one_utterance(messages, "オペレーター")
    for token in result["results"][0]["tokens"]:  # type: ignore[index]
        assert set(token) == {"written", "confidence", "starttime", "endtime", "spoken"}


@pytest.mark.parametrize(("codec", "encoding"), [("LSB8K", "signed"), ("MULAW", "u-law")])
def test_document_sample_client_on_the_english_engine(
    emulator: tuple[str, int], tmp_path: Path, codec: str, encoding: str
) -> None:
    """The same sample with its engine name set to -a-general-en, on English speech."""
    host, port = emulator
    audio = speech("check my balance", tmp_path / f"en-{codec}.raw", encoding=encoding)
    messages = run_sample(tmp_path, f"ws://{host}:{port}/v1", audio, codec, engine="-a-general-en")
    result = assert_one_utterance(messages, "check my balance")
    tokens = result["results"][0]["tokens"]  # type: ignore[index]
    assert [t["written"] for t in tokens] == ["check", "my", "balance"]
    assert all(t["spoken"] == t["written"] for t in tokens)  # English: not a reading (document 001)


# --- the Wrp dialect on a raw socket ---


class WrpStyleClient:
    """A client shaped like Wrp Python: no Sec-WebSocket-Version, unmasked frames, TCP shutdown at the end."""

    def __init__(self, host: str, port: int, path: str = "/v1/") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.parser = FrameParser()
        self.inbox: list[str] = []
        self.closed = False

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode, n]) if n < 126 else bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        self.sock.sendall(head + payload)  # not masked: what Wrp sends

    def command(self, text: str) -> None:
        self._send(0x1, text.encode())

    def audio(self, data: bytes, chunk: int = 4096) -> None:
        for i in range(0, len(data), chunk):  # WrpTester reads 4,096 bytes per p
            self._send(0x2, b"p" + data[i : i + chunk])

    def next(self) -> str:
        while not self.inbox:
            if self.closed:
                raise ConnectionError("the server closed the connection")
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                continue
            for event in self.parser.feed(data):
                if isinstance(event, Control):
                    assert event.opcode is Opcode.CLOSE, "the server never pings"
                    self.closed = True
                else:
                    assert isinstance(event.data, str), "the server sends text frames only"
                    self.inbox.append(event.data)
        return self.inbox.pop(0)

    def until(self, kind: str) -> list[str]:
        messages = [self.next()]
        while messages[-1][:1] != kind:
            messages.append(self.next())
        return messages

    def shutdown(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()


def events(messages: list[str]) -> list[str]:
    return [m[:1] for m in messages if m[:1] != "U"]


def final(messages: list[str]) -> dict[str, object]:
    payloads = [m[2:] for m in messages if m[:1] == "A"]
    assert len(payloads) == 1, messages
    result: dict[str, object] = json.loads(payloads[0])
    return result


async def test_wrp_dialect_two_sessions_on_one_connection(emulator: tuple[str, int], tmp_path: Path) -> None:
    first = speech("main menu", tmp_path / "a.raw").read_bytes()
    second = speech("speak to an agent", tmp_path / "b.raw", lead=0.8).read_bytes()

    def client() -> list[list[str]]:
        wrp = WrpStyleClient(*emulator, path="/v1/nolog/")
        sessions = []
        for audio in (first, second):
            wrp.command(f"s LSB8K -a-general-en\x01 authorization={APPKEY}")
            assert wrp.next() == "s"
            wrp.audio(audio)
            wrp.command("e")
            sessions.append(wrp.until("e"))
        wrp.shutdown()
        return sessions

    one, two = await asyncio.to_thread(client)
    assert events(one) == events(two) == ["S", "C", "E", "A", "e"]
    assert final(one)["text"] == "main menu" and final(two)["text"] == "speak to an agent"
    start_two = int(next(m for m in two if m[:1] == "S")[2:])
    # Times restart at each s (document 001): the second S is near its own 0.8 s lead, not after session one.
    assert 500 <= start_two < 1500
    assert final(one)["utteranceid"] != final(two)["utteranceid"]


async def test_e_right_after_speech_with_no_trailing_silence(
    emulator: tuple[str, int], tmp_path: Path
) -> None:
    audio = speech("check my balance", tmp_path / "c.raw", tail=0.0).read_bytes()

    def client() -> list[str]:
        wrp = WrpStyleClient(*emulator)
        wrp.command(f"s LSB8K -a-general-en authorization={APPKEY}")
        assert wrp.next() == "s"
        wrp.audio(audio)
        wrp.command("e")  # at once: the endpointer never heard the speech end
        messages = wrp.until("e")
        wrp.shutdown()
        return messages

    messages = await asyncio.to_thread(client)
    assert events(messages) == ["S", "C", "E", "A", "e"]
    assert final(messages)["text"] == "check my balance"
    assert messages[-1] == "e"


async def test_japanese_on_the_general_engine(emulator: tuple[str, int], tmp_path: Path) -> None:
    # The best-effort ja matcher gets オペレーター and いいえ from espeak-ng, not 残高照会 (rejected).
    audio = speech("オペレーター", tmp_path / "ja.raw", voice="ja", encoding="u-law").read_bytes()

    def client() -> list[str]:
        wrp = WrpStyleClient(*emulator)
        wrp.command(f"s MULAW -a-general authorization={APPKEY}")
        reply = wrp.next()
        assert reply == "s", reply
        wrp.audio(audio)
        wrp.command("e")
        messages = wrp.until("e")
        wrp.shutdown()
        return messages

    messages = await asyncio.to_thread(client)
    assert events(messages) == ["S", "C", "E", "A", "e"]
    raw = next(m for m in messages if m[:1] == "A")
    assert raw.isascii() and "\\u30aa\\u30da\\u30ec" in raw  # オペレ, \u-escaped as documents 001/002 show
    result = final(messages)
    assert result["text"] == "オペレーター"
    spoken = "".join(t["spoken"] for t in result["results"][0]["tokens"])  # type: ignore[index]
    assert spoken == "おぺれーたー"  # hiragana readings (document 001)


# --- a standard browser-style client: websockets, Wrp JavaScript's default codec MSB16K ---


async def test_msb16k_from_a_standard_client(emulator: tuple[str, int], tmp_path: Path) -> None:
    audio = speech("yes", tmp_path / "y.raw", rate=16000, big_endian=True).read_bytes()
    host, port = emulator
    async with connect(f"ws://{host}:{port}/v1/nolog/", compression=None) as ws:
        await ws.send(f's MSB16K -a-general-en profileWords="" authorization={APPKEY}')
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "s"
        for i in range(0, len(audio), 3200):
            await ws.send(b"p" + audio[i : i + 3200])
        await ws.send("e")
        messages: list[str] = []
        while not messages or messages[-1] != "e":
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert isinstance(message, str)
            messages.append(message)
    assert events(messages) == ["S", "C", "E", "A", "e"]
    assert final(messages)["text"] == "yes"


# --- errors and timeouts, with their documented texts ---


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (f"s 8K -a-nonsense authorization={APPKEY}", "s can't find grammar file (-a-nonsense)"),
        ("s 8K -a-general-en", "s received illegal service authorization"),
        ("s 8K -a-general-en authorization=not-the-key", "s received illegal service authorization"),
        (f"s FLAC -a-general-en authorization={APPKEY}", "s received unsupported audio format"),
        (f"s 8K -a-general-zh authorization={APPKEY}", "s can't connect to recognizer server ("),
    ],
)
async def test_s_errors_and_the_connection_stays_usable(
    emulator: tuple[str, int], command: str, reply: str
) -> None:
    def client() -> tuple[str, str]:
        wrp = WrpStyleClient(*emulator)
        wrp.command(command)
        error = wrp.next()
        wrp.command(f"s 8K -a-general-en authorization={APPKEY}")
        ok = wrp.next()
        wrp.command("e")
        assert wrp.next() == "e"
        wrp.shutdown()
        return error, ok

    error, ok = await asyncio.to_thread(client)
    assert error.startswith(reply) if reply.endswith("(") else error == reply
    assert ok == "s"


async def test_silence_timeout(emulator: tuple[str, int]) -> None:
    def client() -> list[str]:
        wrp = WrpStyleClient(*emulator)
        wrp.command(f"s LSB8K -a-general-en authorization={APPKEY}")
        assert wrp.next() == "s"
        wrp.audio(b"\x00\x00" * int(8000 * (SILENCE_TIMEOUT + 1)))
        messages = [wrp.next()]
        wrp.command("e")
        messages.append(wrp.next())
        wrp.shutdown()
        return messages

    messages = await asyncio.to_thread(client)
    assert messages == ["p can't feed audio data to recognizer server", "e"]


async def test_no_communication_timeout(emulator: tuple[str, int]) -> None:
    def client() -> tuple[str, bool]:
        wrp = WrpStyleClient(*emulator)
        wrp.command(f"s LSB8K -a-general-en authorization={APPKEY}")
        assert wrp.next() == "s"
        message = wrp.next()  # the client sends nothing more: the server gives up
        with pytest.raises(ConnectionError):
            wrp.next()  # then closes the connection
        wrp.sock.close()
        return message, wrp.closed

    message, closed = await asyncio.to_thread(client)
    assert message == "e timeout occurred while recognizing audio data from client"
    assert closed
