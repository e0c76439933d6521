"""A real INVITE whose From carries terminal escape sequences reaches the bridge's log escaped, never raw."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.integration.harness import bridge

pytestmark = pytest.mark.integration

# ESC[2J clears the screen, ESC]0;...BEL sets the window title, U+009B is a one-byte CSI (C1), DEL too.
HOSTILE_FROM = '"\x1b[2J\x1b]0;owned\x07\x9b31m\x7fevil" <sip:\x1b[2Jroot@127.0.0.1>'
SDP = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"


def _request(method: str, port: int, local: int, to_tag: str = "", cseq: int = 1, body: str = "") -> bytes:
    to = f"<sip:1000@127.0.0.1:{port}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:1000@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-esc-{method.lower()};rport",
        f"From: {HOSTILE_FROM};tag=esc1",
        f"To: {to}",
        "Call-ID: esc-in-from@127.0.0.1",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:caller@127.0.0.1:{local}>",
        "Max-Forwards: 70",
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body.encode())}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _response(sock: socket.socket, status: int, method: str) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        if data.startswith(f"SIP/2.0 {status} ".encode()) and f" {method}\r\n".encode() in data:
            return data
    raise AssertionError(f"no {status} to {method}")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_escape_sequences_in_from_are_logged_escaped(tmp_path: Path, log_format: str) -> None:
    with (
        bridge(tmp_path, "ws://127.0.0.1:9/unused", log_format=log_format) as b,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        local = sock.getsockname()[1]
        target = ("127.0.0.1", b.port)
        sock.sendto(_request("INVITE", b.port, local, body=SDP.format(port=local + 2)), target)
        ok = _response(sock, 200, "INVITE")
        match = re.search(rb"^To:.*;tag=([^;\r\n]+)", ok, re.M)
        assert match is not None
        to_tag = match.group(1).decode()
        sock.sendto(_request("ACK", b.port, local, to_tag), target)
        sock.sendto(_request("BYE", b.port, local, to_tag, cseq=2), target)
        _response(sock, 200, "BYE")
        b.wait_cdrs(1)
        time.sleep(0.2)  # the "call ended" line follows the CDR
    raw = b.log_path.read_bytes()
    text = raw.decode("utf-8")
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), "a control character reached the log raw"
    (incoming,) = [line for line in text.splitlines() if "incoming call" in line]
    if log_format == "json":
        assert json.loads(incoming)["caller"] == "sip:\\x1b[2Jroot@127.0.0.1"
    else:
        assert "caller=sip:\\x1b[2Jroot@127.0.0.1" in incoming
