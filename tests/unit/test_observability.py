"""Logs are safe to print: control characters escaped, credentials redacted, in both renderers."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from ivr.observability import (
    REDACTED,
    SafeFormatter,
    configure_logging,
    escape_control_characters,
    safe_text,
)

HOSTILE_FROM = '"\x1b[2J\x1b]0;owned\x07evil\x9b1m" <sip:\x1b[31mroot@10.0.0.1>'


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield capsys
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("a\r\nb\tc\x00", "a\\x0d\\x0ab\\x09c\\x00"),
        ("del\x7f c1\x9b csi\x85", "del\\x7f c1\\x9b csi\\x85"),
        ("abc\udcff", "abc\\xff"),  # an undecodable SIP octet (surrogateescape)
        ("상담원 연결해 주세요 オペレーター ção", "상담원 연결해 주세요 オペレーター ção"),
        ("sip:1000@127.0.0.1:5060", "sip:1000@127.0.0.1:5060"),
        ("sip:alice:s3cret@example.com", f"sip:alice:{REDACTED}@example.com"),
        ("wss://user:pw@speech.example/asr", f"wss://user:{REDACTED}@speech.example/asr"),
    ],
)
def test_safe_text(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_processor_escapes_keys_nested_values_and_redacts_secrets() -> None:
    out = escape_control_characters(
        None,
        "info",
        {
            "event": "incoming call",
            "caller": HOSTILE_FROM,
            "k\x1bey": 1,
            "headers": {"Authorization": "Basic dXNlcjpwdw==", "X-Note": "\x1b[5m"},
            "route": ["menu\x1b", 3],
            "password": "hunter2",
            "appkey": "abc",
            "exception": "Traceback\n  line \x1b[2J\n",
        },
    )
    assert out["caller"] == '"\\x1b[2J\\x1b]0;owned\\x07evil\\x9b1m" <sip:\\x1b[31mroot@10.0.0.1>'
    assert out["k\\x1bey"] == 1
    assert out["headers"] == {"Authorization": REDACTED, "X-Note": "\\x1b[5m"}
    assert out["route"] == ["menu\\x1b", 3]
    assert out["password"] == REDACTED and out["appkey"] == REDACTED
    assert out["exception"] == "Traceback\n  line \\x1b[2J\n"  # a traceback keeps its lines


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_rendered_lines_carry_no_control_characters(fmt: str, captured: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no renderer complaint about the processor chain
        configure_logging(fmt)
        log = structlog.get_logger()
        log.info("incoming call", caller=HOSTILE_FROM, password="hunter2")
        try:
            raise ValueError("bad \x1b[2J header")
        except ValueError:
            log.exception("call failed")
    err = captured.readouterr().err
    lines = err.splitlines()
    assert not any(ch in err for ch in "\x1b\x07\x7f\x9b\r")
    assert "hunter2" not in err
    assert "\\x1b[2J" in err and "evil" in err
    if fmt == "json":
        first, second = (json.loads(line) for line in lines[:2])
        assert first["caller"].startswith('"\\x1b[2J')
        assert first["password"] == REDACTED
        assert "ValueError: bad \\x1b[2J header" in second["exception"]
    else:
        assert "incoming call" in lines[0] and "caller=" in lines[0]
        assert any("ValueError: bad \\x1b[2J header" in line for line in lines)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_library_warnings_go_through_the_same_escaping(
    fmt: str, captured: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt)
    configure_logging(fmt)  # twice (tests, restarts): still one handler, one line per record
    logging.getLogger("websockets.client").warning("closed: %s", "reason \x1b[2J\x9b")
    logging.getLogger("websockets.client").info("not shown: below warning")
    err = captured.readouterr().err
    assert not any(ch in err for ch in "\x1b\x9b")
    (line,) = err.splitlines()
    if fmt == "json":
        record = json.loads(line)
        assert (record["event"], record["level"]) == ("closed: reason \\x1b[2J\\x9b", "warning")
        assert record["logger"] == "websockets.client"
    else:
        assert "closed: reason \\x1b[2J\\x9b" in line and "websockets.client" in line


def test_stdlib_formatter_escapes_what_a_client_sent_and_keeps_tracebacks_readable() -> None:
    # The emulators log with `logging`: a grammar name or tag from a client must not drive the terminal.
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "grammar %s", ("a\x1b[2J\r\nFAKE",), None)
    assert formatter.format(record) == "INFO grammar a\\x1b[2J\\x0d\\x0aFAKE"
    try:
        raise ValueError("bad\x07")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(failed)
    assert "\n" in text and "\x07" not in text and "ValueError: bad\\x07" in text
    url = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("wss://u:hunter2@h/asr",), None)
    assert "hunter2" not in formatter.format(url)
