"""SIP over TLS (RFC 3261 §26.2) to a real `ivr serve`: a certificate made at test time with a passphrase
given only in the environment, and a Python `ssl` client sending OPTIONS and a whole call (INVITE, ACK, BYE).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.integration.harness import bridge, free_port

WAIT = 10.0


class _TlsCaller:
    """A SIP client on one TLS connection: writes requests, reads whole responses (Content-Length)."""

    def __init__(self, port: int, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.local = self.sock.getsockname()[1]
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> bytes:
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed: {self._buffer!r}"
            self._buffer += chunk
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self._buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]


def _request(
    method: str, port: int, local: int, cseq: int, to: str = "<sip:1000@127.0.0.1>", body: bytes = b""
) -> bytes:
    head = (
        f"{method} sip:1000@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bK-tls{cseq}{method}\r\n"
        f"From: <sip:caller@127.0.0.1>;tag=tls-caller\r\nTo: {to}\r\nCall-ID: tls-call@test\r\n"
        f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:caller@127.0.0.1:{local};transport=tls>\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _header(data: bytes, name: bytes) -> bytes:
    return next(
        line.split(b":", 1)[1].strip() for line in data.split(b"\r\n") if line.lower().startswith(name + b":")
    )


def test_options_and_a_call_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certs = self_signed(tmp_path, password="tls-passphrase")
    monkeypatch.setenv("IVR_SIP_TLS_KEY_PASSWORD", "tls-passphrase")  # the only place the passphrase is given
    tls_port = free_port()
    settings = {
        "sip_tls_port": tls_port,
        "sip_tls_cert_file": str(certs.cert),
        "sip_tls_key_file": str(certs.key),
    }
    with bridge(tmp_path, "ws://127.0.0.1:9/", **settings) as running:
        assert "tls-passphrase" not in running.log()
        caller = _TlsCaller(tls_port, certs.cert)
        caller.send(_request("OPTIONS", tls_port, caller.local, 1))
        assert _status(caller.read()) == 200

        sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        sdp += b"m=audio 40002 RTP/AVP 0\r\n"
        caller.send(_request("INVITE", tls_port, caller.local, 2, body=sdp))
        response = caller.read()
        while _status(response) < 200:
            response = caller.read()
        assert _status(response) == 200, response
        assert b"SIP/2.0/TLS" in _header(response, b"via")
        # The caller's in-dialog requests come back over TLS, to the TLS port, not to the clear-text one.
        assert _header(response, b"contact") == f"<sip:127.0.0.1:{tls_port};transport=tls>".encode()
        to = _header(response, b"to").decode()
        caller.send(_request("ACK", tls_port, caller.local, 2, to=to))
        caller.send(_request("BYE", tls_port, caller.local, 3, to=to))
        bye = caller.read()
        while b"CSeq: 3 BYE" not in bye:  # a request of the bridge's own may come first; it is not the test
            bye = caller.read()
        assert _status(bye) == 200
        caller.sock.close()

        with pytest.raises(ssl.SSLCertVerificationError):  # a client that checks finds our certificate only
            _TlsCaller(
                tls_port, Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
            )
