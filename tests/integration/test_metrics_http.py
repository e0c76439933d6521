"""GET /metrics, /healthz and /readyz of a real `ivr serve` while sipp calls it, and while it drains."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr.health import HealthServer
from tests.integration.harness import (
    SIPP_SHARE,
    RunningBridge,
    SippResult,
    bridge,
    free_port,
    http_get,
    require_tool,
    run_sipp,
    scenario_with,
    speak,
)

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in the text exposition, None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            got = ",".join(sorted(filter(None, (match.group(2) or "").split(","))))
            if got == wanted:
                return float(match.group(3))
    return None


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what} within {timeout} s")


def call_in_background(b: RunningBridge, tmp: Path) -> tuple[threading.Thread, list[SippResult]]:
    """A sipp caller that presses 1 and listens to the balance prompt (several seconds) until our BYE."""
    require_tool("sipp")
    scenario = scenario_with("dtmf_balance.xml", tmp, DTMF=str(SIPP_SHARE / "dtmf_2833_1.pcap"))
    results: list[SippResult] = []
    thread = threading.Thread(target=lambda: results.append(run_sipp(scenario, b.port, tmp)))
    thread.start()
    return thread, results


def test_metrics_during_and_after_a_call_then_not_ready_while_draining(
    tmp_path: Path, mediazen_url: str
) -> None:
    metrics_port = free_port()
    with bridge(tmp_path, mediazen_url, metrics_port=metrics_port) as b:
        assert http_get(metrics_port, "/healthz") == (200, "ok\n")
        assert http_get(metrics_port, "/readyz") == (200, "ready\n")
        status, text = http_get(metrics_port, "/metrics")
        assert status == 200 and sample(text, "ivr_calls_active") == 0.0

        # During a call: one active call. After it: ended, with the dialplan, the last route step and cause.
        thread, results = call_in_background(b, tmp_path)
        wait_for(
            lambda: sample(http_get(metrics_port, "/metrics")[1], "ivr_calls_active") == 1.0, "an active call"
        )
        thread.join(60)
        assert results and results[0].returncode == 0, (results[0].output if results else "") + b.log()
        b.wait_cdrs(1)
        labels = {"dialplan": "demo", "route": "balance", "cause": "normal"}
        wait_for(
            lambda: sample(http_get(metrics_port, "/metrics")[1], "ivr_calls_ended_total", **labels) == 1.0,
            "it end",
        )
        text = http_get(metrics_port, "/metrics")[1]
        assert sample(text, "ivr_calls_active") == 0.0
        assert (sample(text, "ivr_rtp_packets_received_total") or 0) > 0  # the DTMF packets sipp sent
        assert sample(text, "ivr_rtp_jitter_seconds_count") == 1.0
        assert "01012345678" not in text  # the caller's number is no label

        # SIGTERM with a call up: the drain lets it finish, and /readyz says 503 meanwhile, /healthz 200.
        thread, results = call_in_background(b, tmp_path)
        wait_for(
            lambda: sample(http_get(metrics_port, "/metrics")[1], "ivr_calls_active") == 1.0,
            "the second call",
        )
        b.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: http_get(metrics_port, "/readyz")[0] == 503, "/readyz 503 while draining", timeout=5)
        assert http_get(metrics_port, "/healthz")[0] == 200
        assert sample(http_get(metrics_port, "/metrics")[1], "ivr_calls_active") == 1.0
        thread.join(60)
        assert results and results[0].returncode == 0, (results[0].output if results else "") + b.log()
        assert b.proc.wait(30) == 0
    with pytest.raises(OSError):
        http_get(metrics_port, "/healthz")  # the endpoint went away with the process


def test_recognizer_latencies_of_a_spoken_request(tmp_path: Path, mediazen_url: str) -> None:
    audio = speak("상담원 연결해 주세요", tmp_path / "agent.ulaw", ulaw_raw=True, lead=0.5, tail=2.0)
    scenario = scenario_with("speech_agent.xml", tmp_path, AUDIO=str(audio))
    metrics_port = free_port()
    with bridge(tmp_path, mediazen_url, metrics_port=metrics_port) as b:
        result = run_sipp(scenario, b.port, tmp_path)
        assert result.returncode == 0, result.output + b.log()
        b.wait_cdrs(1)
        labels = {"dialplan": "demo", "route": "agent", "cause": "transferred"}
        wait_for(
            lambda: sample(http_get(metrics_port, "/metrics")[1], "ivr_calls_ended_total", **labels) == 1,
            "the end",
        )
        text = http_get(metrics_port, "/metrics")[1]
    vendor = {"vendor": "mediazen"}
    assert sample(text, "ivr_asr_results_total", status="recognized", **vendor) == 1.0
    assert sample(text, "ivr_asr_first_partial_seconds_count", **vendor) == 1.0
    assert 0 < (sample(text, "ivr_asr_first_partial_seconds_sum", **vendor) or 0) < 10
    assert sample(text, "ivr_asr_final_after_end_of_speech_seconds_count", **vendor) == 1.0


async def test_the_endpoint_answers_garbage_and_drops_oversized_or_silent_clients() -> None:
    server = HealthServer(lambda: True, read_timeout=0.5)
    await server.start("127.0.0.1", 0)
    try:

        async def exchange(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(data)
            await writer.drain()
            try:
                async with asyncio.timeout(5):
                    answer = await reader.read()
            except ConnectionResetError:  # closed with our unread bytes in its buffer: the kernel resets
                answer = b""
            writer.close()
            return answer

        assert (await exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 200 OK\r\n"
        )
        assert (await exchange(b"\x16\x03\x01 not http\r\n\r\n")).startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert await exchange(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n") == b""
        assert await exchange(b"GET /metrics HTTP/1.1\r\n") == b""  # never finishes its head: cut off
        head = await exchange(b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")  # no body
    finally:
        await server.close()
