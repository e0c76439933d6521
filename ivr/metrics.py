"""Prometheus metrics of the bridge, and the few functions the rest of the code calls to update them.

Names carry the `ivr_` prefix and their unit; labels are bounded (vendor, dialplan, route step, hangup cause,
status, a known emotion label), never a caller's number or URI. Nothing here runs per RTP packet: media
figures are taken from a call's RTP statistics once, when the call ends. Metrics live in prometheus_client's
default registry, so the process collectors (CPU, memory, open files) come along on /metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ivr import __version__
from ivr.asr.base import AsrEvent, EndOfSpeech, Final, Partial, ResultStatus
from ivr.asr.cpqd_message import EMOTIONS
from ivr.cdr import CallRecord
from ivr.media import batchrx
from ivr.media.rtp import RtpStats

__all__ = ["CONTENT_TYPE_LATEST", "RecognitionLatency", "exposition"]

# Recognizer latencies: a vendor answers a menu phrase in tens of milliseconds to a few seconds.
_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Interarrival jitter (RFC 3550 A.8) of a call, in seconds: 20 ms packets, so tens of ms is already poor.
_JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
_LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

# No `_created` series beside every counter and histogram: they double the scrape and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client 0.26

BUILD = Info("ivr_build", "The running bridge's version")
BUILD.info({"version": __version__})

CALLS_ACTIVE = Gauge("ivr_calls_active", "Calls in the bridge's registry now (answered or being set up)")
CALLS_ENDED = Counter(
    "ivr_calls_ended_total",
    "Calls ended, by dialplan, the last step routed to and hangup cause",
    ["dialplan", "route", "cause"],
)
ADMISSION_REFUSALS = Counter(
    "ivr_admission_refusals_total", "INVITEs refused before a call started", ["status", "reason"]
)
ASR_FIRST_PARTIAL = Histogram(
    "ivr_asr_first_partial_seconds",
    "From a recognition request's start (the caller's silence before speaking included) to the first partial",
    ["vendor"],
    buckets=_LATENCY_BUCKETS,
)
ASR_FINAL_AFTER_END_OF_SPEECH = Histogram(
    "ivr_asr_final_after_end_of_speech_seconds",
    "From the vendor's end-of-speech event to the recognition's final result",
    ["vendor"],
    buckets=_LATENCY_BUCKETS,
)
ASR_RESULTS = Counter(
    "ivr_asr_results_total", "Recognitions ended, by vendor and result status", ["vendor", "status"]
)
ASR_ERRORS = Counter(
    "ivr_asr_errors_total",
    "Recognitions that ended in an error, by vendor and failure kind",
    ["vendor", "reason"],
)
ASR_FAILOVERS = Counter(
    "ivr_asr_failovers_total",
    "Recognitions moved from a failed vendor to the next (to_vendor none: no vendor left)",
    ["from_vendor", "to_vendor", "kind"],
)
EMOTIONS_SEEN = Counter(
    "ivr_emotion_labels_total", "Emotion labels the recognizers reported, per turn", ["label"]
)
RTP_PACKETS_RECEIVED = Counter("ivr_rtp_packets_received_total", "RTP packets received from callers")
RTP_PACKETS_LOST = Counter(
    "ivr_rtp_packets_lost_total", "RTP packets lost on the way from callers (RFC 3550 A.3)"
)
RTP_LOSS_RATIO = Histogram(
    "ivr_rtp_loss_ratio", "Fraction of a call's expected RTP packets that were lost", buckets=_LOSS_BUCKETS
)
RTP_JITTER = Histogram(
    "ivr_rtp_jitter_seconds",
    "A call's interarrival jitter estimate at its end (RFC 3550 A.8)",
    buckets=_JITTER_BUCKETS,
)


class _RtpReads:
    """The batch receiver's socket reads, read from its counters at scrape time (nothing per packet here)."""

    def collect(self) -> Iterable[Metric]:
        now = batchrx.reads()
        reads = CounterMetricFamily(
            "ivr_rtp_reads", "System calls that read callers' RTP sockets, by what woke them", labels=["by"]
        )
        reads.add_metric(["arrival"], now.reads - now.paced)
        reads.add_metric(["frame_due"], now.paced)
        yield reads
        yield CounterMetricFamily("ivr_rtp_datagrams_read", "Datagrams those reads returned", now.datagrams)
        yield CounterMetricFamily(
            "ivr_rtp_paced_reads_short",
            "Reads at a frame's due time that found it incomplete: the caller's audio was late or missing",
            now.short,
        )


REGISTRY.register(_RtpReads())  # type: ignore[arg-type]  # a collector is any object with collect()

DIALPLAN_RELOADS = Counter("ivr_dialplan_reloads_total", "Dialplan reloads, by outcome", ["outcome"])

_KNOWN_EMOTIONS = frozenset(EMOTIONS)
_BOUNDED = re.compile(r"[\w.:-]{1,64}")  # \w: a step may be named in Korean or Japanese


def _bounded(value: object, default: str = "other") -> str:
    """A label value from code or configuration, kept short and plain so no input can multiply series."""
    text = str(value) if value is not None else ""
    return text if _BOUNDED.fullmatch(text) else default


def exposition() -> bytes:
    """The text exposition format of every registered metric (what GET /metrics returns)."""
    return generate_latest(REGISTRY)


def track_active_calls(count: Callable[[], int]) -> None:
    """Read the active-call gauge from the bridge's registry at scrape time (no inc/dec to drift)."""
    CALLS_ACTIVE.set_function(count)


def admission_refused(status: int, reason: str) -> None:
    ADMISSION_REFUSALS.labels(str(status), _bounded(reason)).inc()


def dialplan_reloaded(ok: bool) -> None:
    DIALPLAN_RELOADS.labels("ok" if ok else "failed").inc()


def _route_step(route: list[str]) -> str:
    # CallRecord.route holds "step<via" entries; the label is the last step's name.
    return _bounded(route[-1].split("<", 1)[0], "other") if route else "none"


def _failovers(value: Any) -> Iterable[tuple[str, str, str]]:
    """(from vendor, to vendor, failure kind) of each entry of the CDR's `failovers` field, whose entries read
    "<step>:<vendor>-><vendor or none>:<failure kind>" (ivr.asr.failover)."""
    for entry in value if isinstance(value, list | tuple) else ():
        head, _, kind = str(entry).rpartition(":")
        source, _, target = head.rpartition(":")[2].partition("->")
        yield _bounded(source, "unknown"), _bounded(target, "unknown"), _bounded(kind, "unknown")


def call_ended(record: CallRecord, rtp: RtpStats | None) -> None:
    """Everything a finished call contributes, from its CDR and its RTP statistics."""
    CALLS_ENDED.labels(
        _bounded(Path(record.dialplan).stem),
        _route_step(record.route),
        _bounded(record.hangup_cause, "other"),
    ).inc()
    for turn in record.transcripts:
        if turn.emotion and turn.emotion.get("label"):
            label = turn.emotion["label"]
            EMOTIONS_SEEN.labels(label if label in _KNOWN_EMOTIONS else "other").inc()
    # `failovers` comes with recognizer failover (ivr.asr.failover); a CDR without it has none to count.
    for source, target, kind in _failovers(getattr(record, "failovers", None)):
        ASR_FAILOVERS.labels(source, target, kind).inc()
    if rtp is not None and rtp.received:
        lost, expected = rtp.lost, rtp.expected
        RTP_PACKETS_RECEIVED.inc(rtp.received)
        RTP_PACKETS_LOST.inc(lost)
        RTP_LOSS_RATIO.observe(lost / expected if expected else 0.0)
        RTP_JITTER.observe(rtp.jitter_seconds)


class RecognitionLatency:
    """One call's recognizer timings: request start to first partial, end of speech to final."""

    def __init__(self) -> None:
        self._vendor: dict[int, str] = {}
        self._started: dict[int, float] = {}  # until the first partial (or the final)
        self._speech_ended: dict[int, float] = {}

    def started(self, recognition: int, vendor: str, now: float) -> None:
        self._vendor[recognition] = vendor
        self._started[recognition] = now

    def observe(self, event: AsrEvent, now: float) -> None:
        """Feed every recognizer event of the call, with the time it arrived (seconds, monotonic)."""
        if isinstance(event, Partial):
            start = self._started.pop(event.recognition, None)
            if start is not None:
                ASR_FIRST_PARTIAL.labels(self._vendor[event.recognition]).observe(now - start)
        elif isinstance(event, EndOfSpeech):
            if event.recognition in self._vendor:
                self._speech_ended.setdefault(event.recognition, now)
        elif isinstance(event, Final):
            vendor = self._vendor.pop(event.recognition, None)
            self._started.pop(event.recognition, None)
            ended = self._speech_ended.pop(event.recognition, None)
            if vendor is None:
                return
            ASR_RESULTS.labels(vendor, event.status.value).inc()
            if ended is not None and event.status is not ResultStatus.CANCELLED:
                ASR_FINAL_AFTER_END_OF_SPEECH.labels(vendor).observe(now - ended)
            if event.status is ResultStatus.ERROR:
                # The failure kind (unreachable, timeout, closed, ...) is the reason: an enum, so bounded.
                reason = event.error.kind.value if event.error is not None else "unknown"
                ASR_ERRORS.labels(vendor, reason).inc()
