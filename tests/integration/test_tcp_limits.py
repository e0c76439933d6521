"""Issue 12's TCP attacks against a real `ivr serve` on loopback, with short limits configured.

Each of these kept a connection (or a megabyte) forever before the limits existed: a disallowed source, a
slow-loris, a body promised but never sent, a 1 MB Content-Length, many idle connections from one source,
and enough idle connections to run the process out of descriptors so that calls failed with "no free RTP
port". The dead vendor URL is never used: no test here reaches a listen step.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.config import Settings, TrunkSettings
from ivr.server import load_trunks
from ivr.sip.admission import Admission
from tests.integration.harness import RunningBridge, bridge

DEAD_ASR = "ws://127.0.0.1:9/"
LIMITS = {
    "sip_header_timeout": 1.0,
    "sip_body_timeout": 1.0,
    "sip_idle_timeout": 1.5,
    "sip_max_connections": 40,
    "sip_max_connections_per_source": 8,
    "trunk_allow": ["127.0.0.1/32"],
}
WAIT = 10.0  # upper bound on any one wait; nothing here is timed


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    with bridge(tmp_path_factory.mktemp("limits"), DEAD_ASR, **LIMITS) as running:
        yield running


def _request(method: str, port: int, branch: str, *, body: bytes = b"", length: int | None = None) -> bytes:
    head = (
        f"{method} sip:1000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{branch}\r\n"
        f"From: <sip:attacker@127.0.0.1>;tag={branch}\r\nTo: <sip:1000@127.0.0.1>\r\n"
        f"Call-ID: {branch}@test\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:attacker@127.0.0.1:5999;transport=tcp>\r\n"
        + ("Content-Type: application/sdp\r\n" if body or length else "")
        + f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))
    sock.settimeout(WAIT)
    return sock


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before a response: {data!r}")
        data += chunk
    return data


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _closed(sock: socket.socket) -> bool:
    """True when the bridge closed the connection (EOF or reset) with nothing more to say."""
    try:
        return sock.recv(65536) == b""
    except ConnectionError:
        return True


def test_the_accept_list_is_the_union_of_every_trunks_sources() -> None:
    settings = Settings(
        trunk_allow=["127.0.0.1/32"], trunks=[TrunkSettings(name="carrier", allow=["198.51.100.0/24"])]
    )
    accept = Admission(load_trunks(settings)).admits  # what the Bridge hands the transports
    assert accept("127.0.0.1") and accept("198.51.100.7")
    assert not accept("127.0.0.2") and not accept("not-an-address")


def test_a_disallowed_source_is_closed_at_accept(limited: RunningBridge) -> None:
    sock = _connect(limited.port, source="127.0.0.2")  # loopback, but outside trunk_allow
    sock.sendall(_request("OPTIONS", limited.port, "outsider"))
    assert _closed(sock)
    ok = _connect(limited.port)
    ok.sendall(_request("OPTIONS", limited.port, "insider"))
    assert _status(_response(ok)) == 200
    ok.close()


def test_slow_loris_is_closed_at_the_header_timeout(limited: RunningBridge) -> None:
    sock = _connect(limited.port)
    message = _request("OPTIONS", limited.port, "loris")
    sent = 0
    try:
        for byte in message:  # 5 bytes a second: the header section would take about a minute
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
                sock.settimeout(WAIT)
    except ConnectionError:
        pass
    assert sent < len(message) // 4, "the slow-loris connection was never closed"
    sock.close()


def test_a_promised_body_that_never_comes_is_closed(limited: RunningBridge) -> None:
    sock = _connect(limited.port)
    sock.sendall(_request("INVITE", limited.port, "nobody", length=3000) + b"v=0\r\n")
    assert _closed(sock)


def test_a_1_mb_content_length_gets_413(limited: RunningBridge) -> None:
    sock = _connect(limited.port)
    sock.sendall(_request("INVITE", limited.port, "megabyte", length=1_000_000) + b"v=0\r\n" * 100)
    assert _status(_response(sock)) == 413
    assert _closed(sock)


def test_idle_connections_from_one_source_are_capped_and_then_closed(limited: RunningBridge) -> None:
    held = [_connect(limited.port) for _ in range(8)]
    held[0].sendall(_request("OPTIONS", limited.port, "held"))
    assert _status(_response(held[0])) == 200
    extra = [_connect(limited.port) for _ in range(5)]
    assert all(_closed(sock) for sock in extra)  # past the per-source cap: closed at accept
    assert all(_closed(sock) for sock in held)  # idle past 1.5 s: closed by the sweep
    fresh = _connect(limited.port)  # the slots are free again
    fresh.sendall(_request("OPTIONS", limited.port, "fresh"))
    assert _status(_response(fresh)) == 200
    fresh.close()
    log = limited.log()
    assert log.count("too many connections from this source") == 1  # logged once, not per attempt
    for reason in ("header section not complete in time", "idle: no message and no call"):
        assert reason in log


def _invite_over_udp(port: int, tag: str) -> int:
    """A real call's first step: INVITE with an SDP offer over UDP; the bridge must open an RTP socket to
    answer it. Returns the final status (the call is hung up at once)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(WAIT)
    local = udp.getsockname()[1]
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {local + 2} RTP/AVP 0\r\n"
    ).encode()
    invite = _request("INVITE", port, tag, body=sdp).replace(
        b"SIP/2.0/TCP 127.0.0.1:5999", f"SIP/2.0/UDP 127.0.0.1:{local}".encode()
    )
    udp.sendto(invite, ("127.0.0.1", port))
    try:
        while True:
            data, _ = udp.recvfrom(65536)
            status = _status(data)
            if status >= 200:
                break
        if status == 200:
            to = next(line for line in data.split(b"\r\n") if line.lower().startswith(b"to:"))
            for method in ("ACK", "BYE"):
                req = invite.replace(b"INVITE sip", f"{method} sip".encode()).replace(
                    b"To: <sip:1000@127.0.0.1>", to
                )
                req = req.replace(b"CSeq: 1 INVITE", f"CSeq: {2 if method == 'BYE' else 1} {method}".encode())
                udp.sendto(req.split(b"Content-Type")[0] + b"Content-Length: 0\r\n\r\n", ("127.0.0.1", port))
        return status
    finally:
        udp.close()


def _fill(port: int, count: int) -> list[socket.socket]:
    """`count` idle connections spread over loopback sources, so only the total cap can stop them."""
    socks = []
    for i in range(count):
        try:
            socks.append(_connect(port, source=f"127.0.0.{1 + i % 50}"))
        except OSError:
            break
    return socks


@pytest.mark.parametrize("capped", [True, False], ids=["total-cap", "no-cap"])
def test_idle_connections_cannot_starve_calls_of_descriptors(tmp_path: Path, capped: bool) -> None:
    settings = {
        **LIMITS,
        "trunk_allow": ["127.0.0.0/8"],
        "sip_idle_timeout": 60.0,
        "sip_max_connections_per_source": 1000,
        "sip_max_connections": 100 if capped else 10_000,
    }
    with bridge(tmp_path, DEAD_ASR, **settings) as running:
        # A descriptor budget small enough to exhaust from a test: 200, of which the cap leaves half free.
        resource.prlimit(running.proc.pid, resource.RLIMIT_NOFILE, (200, 200))
        socks = _fill(running.port, 300)
        try:
            time.sleep(0.5)  # let the bridge accept (or refuse) the backlog
            status = _invite_over_udp(running.port, f"call-{capped}")
        finally:
            for sock in socks:
                sock.close()
        if capped:
            assert status == 200, running.log()[-3000:]
        else:
            assert status != 200
            assert "out of file descriptors (EMFILE)" in running.log()
            assert "no free RTP port" not in running.log()
