"""The metric functions: what a call, a recognition and a refusal add to the exposition; labels bounded."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import REGISTRY

from ivr import metrics
from ivr.asr.base import EndOfSpeech, Failure, Final, Partial, ResultStatus, StartOfSpeech, VendorError
from ivr.cdr import CallRecord, Transcript
from ivr.health import HealthServer
from ivr.media import batchrx
from ivr.media.rtp import RtpPacket, RtpStats


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def record(**fields: object) -> CallRecord:
    base = CallRecord(
        call_id="c1", channel_id="0" * 32, caller="sip:01012345678@10.0.0.9", callee="sip:1000@x", dialplan=""
    )
    base.dialplan = "/opt/ivr/dialplans/demo.yaml"
    for key, item in fields.items():
        setattr(base, key, item)
    return base


def stats_with_gap() -> RtpStats:
    """20 ms packets 0..9 with 3 and 4 lost, 6 arriving 5 ms late."""
    stats = RtpStats(8000)
    for seq in (0, 1, 2, 5, 6, 7, 8, 9):
        late = 0.005 if seq == 6 else 0.0
        stats.update(RtpPacket(0, False, seq, seq * 160, 1234, b"\xff" * 160), seq * 0.02 + late)
    return stats


def test_a_finished_call_counts_by_dialplan_last_route_step_and_cause() -> None:
    labels = {"dialplan": "demo", "route": "agent", "cause": "local-bye"}
    before = value("ivr_calls_ended_total", **labels)
    metrics.call_ended(record(route=["menu<start", "agent<speech"], hangup_cause="local-bye"), None)
    assert value("ivr_calls_ended_total", **labels) == before + 1
    none = {"dialplan": "demo", "route": "none", "cause": "rejected-488"}
    before = value("ivr_calls_ended_total", **none)
    metrics.call_ended(record(hangup_cause="rejected-488"), None)
    assert value("ivr_calls_ended_total", **none) == before + 1


def test_labels_stay_bounded_and_never_carry_the_caller() -> None:
    hostile = {"dialplan": "demo", "route": "other", "cause": "other"}
    before = value("ivr_calls_ended_total", **hostile)
    metrics.call_ended(record(route=["bad step\x1b[2J<x"], hangup_cause="x" * 200), None)
    assert value("ivr_calls_ended_total", **hostile) == before + 1
    text = metrics.exposition().decode()
    assert "01012345678" not in text and "\x1b" not in text


def test_route_steps_named_in_korean_keep_their_name() -> None:
    labels = {"dialplan": "demo", "route": "상담원", "cause": "normal"}
    before = value("ivr_calls_ended_total", **labels)
    metrics.call_ended(record(route=["상담원<speech"], hangup_cause="normal"), None)
    assert value("ivr_calls_ended_total", **labels) == before + 1


def test_emotion_labels_seen_per_turn_unknown_ones_as_other() -> None:
    before = {
        label: value("ivr_emotion_labels_total", label=label) for label in ("irritado", "neutro", "other")
    }
    turns = [
        Transcript("menu", "saldo", 0.9, emotion={"label": "irritado"}),
        Transcript("menu", "saldo", 0.9, emotion={"label": "irritado"}),
        Transcript("confirm", "sim", 0.9, emotion={"label": "neutro"}),
        Transcript("confirm", "sim", 0.9, emotion={"label": "01012345678"}),
        Transcript("confirm", "sim", 0.9),
    ]
    metrics.call_ended(record(transcripts=turns, hangup_cause="normal"), None)
    assert value("ivr_emotion_labels_total", label="irritado") == before["irritado"] + 2
    assert value("ivr_emotion_labels_total", label="neutro") == before["neutro"] + 1
    assert value("ivr_emotion_labels_total", label="other") == before["other"] + 1


def test_failovers_from_the_cdr_field_when_present() -> None:
    pair = {"from_vendor": "cpqd", "to_vendor": "mediazen", "kind": "unreachable"}
    last = {"from_vendor": "mediazen", "to_vendor": "none", "kind": "timeout"}
    before, before_last = value("ivr_asr_failovers_total", **pair), value("ivr_asr_failovers_total", **last)
    call = record(hangup_cause="normal")
    call.failovers = ["menu:cpqd->mediazen:unreachable", "menu:mediazen->none:timeout"]  # type: ignore[attr-defined]
    metrics.call_ended(call, None)
    metrics.call_ended(record(hangup_cause="normal"), None)  # a CDR without failovers
    assert value("ivr_asr_failovers_total", **pair) == before + 1
    assert value("ivr_asr_failovers_total", **last) == before_last + 1


def test_rtp_loss_and_jitter_from_the_stats_at_call_end() -> None:
    stats = stats_with_gap()
    assert (stats.lost, stats.expected, stats.received) == (2, 10, 8)
    received, lost = value("ivr_rtp_packets_received_total"), value("ivr_rtp_packets_lost_total")
    ratios, jitter_sum = value("ivr_rtp_loss_ratio_count"), value("ivr_rtp_jitter_seconds_sum")
    metrics.call_ended(record(hangup_cause="normal"), stats)
    assert value("ivr_rtp_packets_received_total") == received + 8
    assert value("ivr_rtp_packets_lost_total") == lost + 2
    assert value("ivr_rtp_loss_ratio_count") == ratios + 1
    assert value("ivr_rtp_loss_ratio_sum") >= 0.2 - 1e-9
    assert value("ivr_rtp_jitter_seconds_sum") == pytest.approx(jitter_sum + stats.jitter_seconds)
    assert stats.jitter_seconds > 0
    metrics.call_ended(record(hangup_cause="normal"), RtpStats(8000))  # no media at all: no observation
    assert value("ivr_rtp_loss_ratio_count") == ratios + 1


def test_first_partial_is_timed_from_the_request_start_once() -> None:
    count, total = (value(f"ivr_asr_first_partial_seconds_{s}", vendor="mediazen") for s in ("count", "sum"))
    timing = metrics.RecognitionLatency()
    timing.started(7, "mediazen", 100.0)
    timing.observe(StartOfSpeech(7), 100.1)
    timing.observe(Partial(7, "상담"), 100.25)
    timing.observe(Partial(7, "상담원"), 100.5)  # not the first: not timed again
    assert value("ivr_asr_first_partial_seconds_count", vendor="mediazen") == count + 1
    assert value("ivr_asr_first_partial_seconds_sum", vendor="mediazen") == pytest.approx(total + 0.25)


def test_final_is_timed_from_the_end_of_speech() -> None:
    name = "ivr_asr_final_after_end_of_speech_seconds"
    count, total = (value(f"{name}_{s}", vendor="cpqd") for s in ("count", "sum"))
    results = value("ivr_asr_results_total", vendor="cpqd", status="recognized")
    timing = metrics.RecognitionLatency()
    timing.started(1, "cpqd", 10.0)
    timing.observe(EndOfSpeech(1), 12.0)
    timing.observe(Final(1, ResultStatus.RECOGNIZED), 12.4)
    timing.observe(Final(1, ResultStatus.RECOGNIZED), 13.0)  # a duplicate is not a second result
    timing.started(2, "cpqd", 20.0)
    timing.observe(Final(2, ResultStatus.NO_INPUT), 25.0)  # no end of speech: nothing to time
    assert value(f"{name}_count", vendor="cpqd") == count + 1
    assert value(f"{name}_sum", vendor="cpqd") == pytest.approx(total + 0.4)
    assert value("ivr_asr_results_total", vendor="cpqd", status="recognized") == results + 1
    assert value("ivr_asr_results_total", vendor="cpqd", status="no-input") >= 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            VendorError("", "no connection to ws://127.0.0.1:1 within 5.0 s", kind=Failure.UNREACHABLE),
            "unreachable",
        ),
        (VendorError("", "amivoice did not start listening within 5.0 s", kind=Failure.TIMEOUT), "timeout"),
        (VendorError("", "cpqd closed the connection", kind=Failure.CLOSED), "closed"),
        (VendorError("e", "Error: Too many connections", retryable=True), "vendor-error"),
        (None, "unknown"),
    ],
)
def test_vendor_errors_by_failure_kind(error: VendorError | None, reason: str) -> None:
    before = value("ivr_asr_errors_total", vendor="amivoice", reason=reason)
    timing = metrics.RecognitionLatency()
    timing.started(3, "amivoice", 0.0)
    timing.observe(Final(3, ResultStatus.ERROR, error=error), 1.0)
    assert value("ivr_asr_errors_total", vendor="amivoice", reason=reason) == before + 1


def test_events_of_an_unknown_recognition_are_ignored() -> None:
    def ours() -> list[bytes]:  # the process's and the collector's own figures move by themselves
        return [line for line in metrics.exposition().splitlines() if line.startswith((b"ivr_", b"# "))]

    before = ours()
    timing = metrics.RecognitionLatency()
    timing.observe(Partial(99, "x"), 1.0)
    timing.observe(Final(99, ResultStatus.ERROR, error=VendorError("", "x")), 2.0)
    assert ours() == before


def test_admission_refusals_and_reloads() -> None:
    before = value("ivr_admission_refusals_total", status="503", reason="draining")
    metrics.admission_refused(503, "draining")
    assert value("ivr_admission_refusals_total", status="503", reason="draining") == before + 1
    failed = value("ivr_dialplan_reloads_total", outcome="failed")
    metrics.dialplan_reloaded(False)
    assert value("ivr_dialplan_reloads_total", outcome="failed") == failed + 1


def test_active_calls_read_at_scrape_time() -> None:
    calls = {"a": 1, "b": 2}
    metrics.track_active_calls(lambda: len(calls))
    assert value("ivr_calls_active") == 2
    calls.clear()
    assert value("ivr_calls_active") == 0
    assert 'ivr_build_info{version="' in metrics.exposition().decode()


@pytest.mark.parametrize(
    ("method", "target", "ready", "status"),
    [
        ("GET", "/healthz", False, 200),
        ("GET", "/readyz", True, 200),
        ("GET", "/readyz", False, 503),
        ("HEAD", "/metrics?x=1", False, 200),
        ("POST", "/metrics", True, 405),
        ("GET", "/", True, 404),
    ],
)
def test_health_endpoints(method: str, target: str, ready: bool, status: int) -> None:
    code, ctype, body = HealthServer(lambda: ready).respond(method, target)
    assert code == status
    if target.startswith("/metrics") and status == 200:
        assert ctype.startswith("text/plain; version=")
        assert b"ivr_calls_active" in body


def test_after_a_failover_the_turn_is_counted_for_the_vendor_that_answered() -> None:
    # call.py starts the timing again for the secondary when a turn fails over under the same id.
    failed = value("ivr_asr_errors_total", vendor="mediazen", reason="closed")
    answered = value("ivr_asr_results_total", vendor="amivoice", status="recognized")
    timing = metrics.RecognitionLatency()
    timing.started(5, "mediazen", 0.0)
    timing.observe(Final(5, ResultStatus.ERROR, error=VendorError("", "x", kind=Failure.CLOSED)), 1.0)
    timing.started(5, "amivoice", 1.0)
    timing.observe(Final(5, ResultStatus.RECOGNIZED), 2.0)
    assert value("ivr_asr_errors_total", vendor="mediazen", reason="closed") == failed + 1
    assert value("ivr_asr_results_total", vendor="amivoice", status="recognized") == answered + 1


async def test_rtp_reads_count_every_receiver_of_the_process_closed_ones_too() -> None:
    before = {
        name: value(name, **labels)
        for name, labels in (
            ("ivr_rtp_reads_total", {"by": "arrival"}),
            ("ivr_rtp_datagrams_read_total", {}),
        )
    }
    loop = asyncio.get_running_loop()
    sock = batchrx.bind("127.0.0.1", 0)
    assert sock is not None
    got: list[bytes] = []
    _, close = batchrx.open_lane(loop, sock, lambda data, addr: got.append(data), lambda frame: None)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(3):
            sender.sendto(bytes([n]) * 20, sock.getsockname())
        for _ in range(100):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(got) == 3  # the lane is not armed: every datagram went to Python, read on arrival
        assert value("ivr_rtp_datagrams_read_total") == before["ivr_rtp_datagrams_read_total"] + 3
    finally:
        close()  # the last lane: its receiver closes, and its counts stay in the process's totals
        sock.close()
        sender.close()
    assert value("ivr_rtp_datagrams_read_total") == before["ivr_rtp_datagrams_read_total"] + 3
    assert value("ivr_rtp_reads_total", by="arrival") >= before["ivr_rtp_reads_total"] + 1
