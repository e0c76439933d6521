"""The load generator: SIP calls (INVITE/200/ACK ... BYE) to the bridge, then marked G.711 at real time on one
UDP socket for every call (the bridge latches any port of the SDP host, ivr/media/latch.py).

Modes: `sip` places real calls; `direct` streams to a range of ports with no signalling (the receive-only
limit and the pyVoIP baseline). Prints `WINDOW t0 t1` (whole seconds of CLOCK_MONOTONIC) when the steady
window is known, `DONE` at the end, and writes its figures as JSON.

Run: python -m bench.load.generator --mode sip --target 127.0.0.1:5080 --calls 500 --seconds 20 --out gen.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import struct
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import cast

import numpy as np

from bench.load import mmsg, sipmsg
from bench.load.marker import PAYLOAD_LEN, call_prefix, fill_payloads, payload, static_payloads

TICK = 0.002  # the 20 ms packet period is cut into 10 groups of calls, so packets leave evenly
GROUPS = 10
SPEECH_BASE, DTMF_BASE, CHURN_BASE = 60000, 61000, 62000  # call indexes of the test and churn calls
CHURN_INDEXES = 2000
DTMF_DIGIT = 5  # RFC 4733 event 5: the bench dialplan routes it to a transfer to sip:dtmf@...
DTMF_PT = 101
_HEADER = struct.Struct("!BBHII")
PACKET_LEN = _HEADER.size + PAYLOAD_LEN  # 172 bytes of marked audio
# The parts of the RTP header that change, in a row of PACKET_LEN bytes.
_HEADER_FIELDS = np.dtype(
    {
        "names": ["seq", "ts", "ssrc"],
        "formats": [">u2", ">u4", ">u4"],
        "offsets": [2, 4, 8],
        "itemsize": PACKET_LEN,
    }
)


class Kind(Enum):
    """What a call is for."""

    LOAD = "load"
    SPEECH = "speech"  # the sink answers it with a result: the bridge must transfer it to sip:speech@
    DTMF = "dtmf"  # it keys a digit: the bridge must transfer it to sip:dtmf@
    CHURN = "churn"  # setup-rate test: answered, then hung up after a second, no media


class State(Enum):
    CALLING = "calling"
    ANSWERED = "answered"
    FAILED = "failed"
    ENDING = "ending"
    ENDED = "ended"


@dataclass(eq=False)
class LoadCall:
    """One call of the load."""

    index: int
    kind: Kind
    call_id: str
    from_tag: str
    branch: str
    invite: bytes = b""
    state: State = State.CALLING
    invite_at: float = 0.0
    answered_at: float = 0.0
    last_sent: float = 0.0
    retransmits: int = 0
    to_tag: str = ""
    remote_uri: str = ""
    rtp: tuple[str, int] | None = None
    seq: int = 0
    timestamp: int = 0
    ssrc: int = 0
    prefix: bytes = b""
    dtmf: list[bytes] = field(default_factory=list)
    outcome: str = ""
    bye: bytes = b""


class AudioBatch:
    """One group's audio packets, built in place with numpy and sent with one sendmmsg(2): the same bytes the
    per-packet loop sends (header from each call's seq, timestamp and ssrc, then `marker.payload`), with one
    send time for the batch, taken just before it is built. While a call is in a batch, the batch holds its
    seq and timestamp; `sync` writes them back to the calls before the batch is rebuilt."""

    def __init__(self, calls: list[LoadCall], addresses: list[bytes]) -> None:
        self.calls = calls
        self.rows = np.zeros((len(calls), PACKET_LEN), np.uint8)
        self.rows[:, 0] = 0x80  # version 2, payload type 0 (PCMU), no marker bit
        self.header = self.rows.reshape(-1).view(_HEADER_FIELDS)
        self.header["ssrc"] = [call.ssrc for call in calls]
        static_payloads(self.rows, _HEADER.size, [call.prefix for call in calls])
        self.seq = np.array([call.seq for call in calls], np.int64)
        self.timestamp = np.array([call.timestamp for call in calls], np.int64)
        self.counted = np.array(
            [call.index < SPEECH_BASE for call in calls], bool
        )  # the load: what the sink counts
        self.load = int(self.counted.sum())
        self.datagrams = mmsg.Datagrams(self.rows, addresses)

    def build(self, sent_us: int) -> None:
        self.header["seq"] = self.seq & 0xFFFF
        self.header["ts"] = self.timestamp & 0xFFFFFFFF
        fill_payloads(self.rows, _HEADER.size, self.seq, sent_us)

    def advance(self) -> None:
        self.seq += 1
        self.timestamp += 160

    def sync(self) -> None:
        for call, seq, timestamp in zip(self.calls, self.seq.tolist(), self.timestamp.tolist(), strict=True):
            call.seq = seq
            call.timestamp = timestamp


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Generator(asyncio.DatagramProtocol):
    """SIP user agent client for every call, and the RTP pacer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.calls: dict[str, LoadCall] = {}
        self.groups: list[list[LoadCall]] = [[] for _ in range(GROUPS)]
        self.sip: asyncio.DatagramTransport | None = None
        self.local = ""
        self.target = args.target
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.rtp.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # what the bridge sends back is dropped
        self.rtp.bind((args.local_host, 0))
        self.rtp.setblocking(False)
        self.rtp_addr = self.rtp.getsockname()
        self.sent: dict[int, int] = defaultdict(int)  # int(send time s) -> packets
        self.send_errors = 0
        self.statuses: Counter[int] = Counter()
        self.setup_times: list[float] = []
        self.churn_setups: list[float] = []
        self.churn_started = 0
        self.churn_answered = 0
        self.bridge_byes = 0
        self.bye_ok = 0
        self.sequence = 0
        self.tick_index = 0
        self.tick_start = 0.0
        self.late_ticks = 0
        # sendmmsg: one batch per group, rebuilt (None) when the group changes or a call starts a digit.
        self.bulk = mmsg.available()
        self.batches: list[AudioBatch | None] = [None] * GROUPS
        self.unbatched: list[list[LoadCall]] = [[] for _ in range(GROUPS)]
        self.keying: list[list[LoadCall]] = [[] for _ in range(GROUPS)]  # unbatched for a digit's time

    # --- SIP -----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sip = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass of asyncio's
        transport = self.sip
        host, port = transport.get_extra_info("sockname")[:2]
        self.local = f"{host}:{port}"

    def new_call(self, index: int, kind: Kind) -> LoadCall:
        self.sequence += 1
        tag = f"{os.getpid():x}{self.sequence:x}"
        call = LoadCall(index, kind, f"load-{tag}@bench", tag, f"z9hG4bK{tag}i")
        call.ssrc = (self.sequence * 2654435761) & 0xFFFFFFFF
        call.prefix = call_prefix(index)
        self.calls[call.call_id] = call
        return call

    def place(self, call: LoadCall) -> None:
        if self.args.mode == "direct":
            call.rtp = (self.args.direct_host, self.args.direct_base + call.index)
            call.state = State.ANSWERED
            self.start_media(call)
            return
        call.invite = sipmsg.invite(
            self.target,
            self.local,
            call.call_id,
            call.branch,
            call.from_tag,
            self.rtp_addr,
            call.index,
            comfort_noise=self.args.comfort_noise,
        )
        call.invite_at = call.last_sent = time.monotonic()
        self.send_sip(call.invite)

    def send_sip(self, data: bytes) -> None:
        assert self.sip is not None
        host, port = self.target.rsplit(":", 1)
        self.sip.sendto(data, (host, int(port)))

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            message = sipmsg.parse(data)
        except (ValueError, IndexError):
            return
        call = self.calls.get(message.headers.get("call-id", ""))
        if message.is_response:
            if call is not None:
                self.on_response(call, message)
            return
        assert self.sip is not None
        method = message.start.split(" ", 1)[0]
        if method == "BYE":
            self.sip.sendto(sipmsg.response(message, 200, "OK"), addr)
            if call is not None and call.state in (State.ANSWERED, State.ENDING):
                self.bridge_byes += 1
                call.outcome = call.outcome or "bye"
                self.stop_media(call)
                call.state = State.ENDED
        elif method == "REFER":
            self.sip.sendto(sipmsg.response(message, 202, "Accepted"), addr)
            if call is not None:
                call.outcome = call.outcome or "refer:" + sipmsg.uri_of(message.headers.get("refer-to", ""))
                self.hang_up(call)
        elif method != "ACK":
            self.sip.sendto(sipmsg.response(message, 200, "OK"), addr)

    def on_response(self, call: LoadCall, message: sipmsg.Message) -> None:
        status = message.status
        method = message.method
        if method == "BYE":
            if status >= 200 and call.state is State.ENDING:
                call.state = State.ENDED
                self.bye_ok += 1
            return
        if method != "INVITE" or status < 200:
            if status >= 100 and call.retransmits >= 0:
                call.retransmits = -1  # a provisional response: no more INVITE retransmissions
            return
        to_tag = sipmsg.tag_of(message.headers.get("to", ""))
        if status >= 300:
            # The ACK of a failure belongs to the INVITE's transaction: same branch, CSeq 1.
            self.send_sip(
                sipmsg.in_dialog(
                    "ACK",
                    f"sip:bench@{self.target}",
                    self.local,
                    call.call_id,
                    call.branch,
                    call.from_tag,
                    self.target,
                    to_tag,
                    1,
                )
            )
            if call.state is State.CALLING:
                self.statuses[status] += 1
                call.state = State.FAILED
            return
        first = call.state is State.CALLING
        if first:
            now = time.monotonic()
            self.statuses[status] += 1
            call.to_tag = to_tag
            call.remote_uri = sipmsg.uri_of(message.headers.get("contact", "")) or f"sip:bench@{self.target}"
            call.rtp = message.sdp_audio()
            call.state = State.ANSWERED
            call.answered_at = now
            if call.kind is Kind.CHURN:
                self.churn_answered += 1
                self.churn_setups.append(now - call.invite_at)
                self.loop.call_later(self.args.churn_hold, self.hang_up, call)
            else:
                self.setup_times.append(now - call.invite_at)
                self.start_media(call)
        if call.state in (State.ANSWERED, State.ENDING, State.ENDED) and call.to_tag == to_tag:
            self.send_sip(
                sipmsg.in_dialog(
                    "ACK",
                    call.remote_uri,
                    self.local,
                    call.call_id,
                    call.branch + "a",
                    call.from_tag,
                    self.target,
                    call.to_tag,
                    1,
                )
            )

    def hang_up(self, call: LoadCall) -> None:
        if call.state is not State.ANSWERED or self.args.mode == "direct":
            self.stop_media(call)
            return
        self.stop_media(call)
        call.state = State.ENDING
        call.bye = sipmsg.in_dialog(
            "BYE",
            call.remote_uri,
            self.local,
            call.call_id,
            call.branch + "b",
            call.from_tag,
            self.target,
            call.to_tag,
            2,
        )
        call.last_sent = time.monotonic()
        call.retransmits = 0
        self.send_sip(call.bye)

    def retransmit(self) -> None:
        """Timer A / E, coarsely: resend an unanswered INVITE or BYE at 0.5, 1, 2, 4 s."""
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.retransmits < 0 or call.retransmits >= 4:
                if call.state is State.CALLING and now - call.invite_at > 32:
                    call.state = State.FAILED
                    self.statuses[408] += 1
                continue
            if call.state is State.CALLING:
                data = call.invite
            elif call.state is State.ENDING:
                data = call.bye
            else:
                continue
            if now - call.last_sent >= 0.5 * 2**call.retransmits:
                call.retransmits += 1
                call.last_sent = now
                self.send_sip(data)
        self.loop.call_later(0.1, self.retransmit)

    # --- RTP -----------------------------------------------------------------------------------------
    def start_media(self, call: LoadCall) -> None:
        if call.rtp is not None:
            self.groups[call.index % GROUPS].append(call)
            self._unbatch(call.index % GROUPS)

    def stop_media(self, call: LoadCall) -> None:
        group = self.groups[call.index % GROUPS]
        if call in group:
            group.remove(call)
            self._unbatch(call.index % GROUPS)

    def _unbatch(self, g: int) -> None:
        """Drop group g's batch (its calls' seq and timestamp written back): the next tick rebuilds it."""
        batch = self.batches[g]
        if batch is not None:
            batch.sync()
            self.batches[g] = None

    def _batch(self, g: int) -> AudioBatch:
        """Group g's batch: every call of it that plays audio to an IPv4 address; the rest (a digit being
        keyed, a host name) go to self.unbatched[g] and the per-packet loop."""
        calls, addresses, rest, keying = [], [], [], []
        for call in self.groups[g]:
            assert call.rtp is not None
            if call.dtmf:
                rest.append(call)
                keying.append(call)
                continue
            try:
                address = mmsg.sockaddr(*call.rtp)
            except (OSError, OverflowError):
                rest.append(call)
                continue
            calls.append(call)
            addresses.append(address)
        batch = AudioBatch(calls, addresses)
        self.batches[g] = batch
        self.unbatched[g] = rest
        self.keying[g] = keying
        return batch

    def queue_dtmf(self, call: LoadCall, digit: int) -> None:
        """RFC 4733 §2.5: three updates of one event, then three copies of its end, in place of audio."""
        packets = []
        for i in range(1, 7):
            end = i > 3
            duration = 160 * min(i, 4)
            packets.append(struct.pack("!BBH", digit, (0x80 if end else 0) | 10, duration))
        call.dtmf = packets
        if call in self.groups[call.index % GROUPS]:
            self._unbatch(call.index % GROUPS)

    def tick(self) -> None:
        now = time.monotonic()
        due = int((now - self.tick_start) / TICK)
        if due - self.tick_index > 5:
            self.late_ticks += due - self.tick_index - 5
            self.tick_index = due - 5  # a stall: catch up at most 5 ticks, then drop the rest
        while self.tick_index <= due:
            g = self.tick_index % GROUPS
            self.tick_index += 1
            if not self.bulk:
                self.send_each(self.groups[g])
                continue
            batch = self.batches[g] or self._batch(g)
            if batch.calls:
                self.send_batch(batch)
            if not self.bulk:  # the kernel refused sendmmsg: that batch goes out packet by packet
                self._unbatch(g)
                self.send_each(self.groups[g])
            elif self.unbatched[g]:
                self.send_each(self.unbatched[g])
                if any(not call.dtmf for call in self.keying[g]):
                    self._unbatch(g)  # a digit ended: back into the batch from the next tick on
        next_at = self.tick_start + self.tick_index * TICK
        self.loop.call_later(max(0.0, next_at - time.monotonic()), self.tick)

    def send_batch(self, batch: AudioBatch) -> None:
        """One group's audio in one sendmmsg(2) (or a few): accounting as in `send_each`."""
        sent_us = time.monotonic_ns() // 1000
        batch.build(sent_us)
        try:
            failed = batch.datagrams.send(self.rtp.fileno())
        except OSError:
            self.bulk = False  # ENOSYS: nothing was sent, seq and timestamp not advanced
            for g in range(GROUPS):
                self._unbatch(g)
            return
        batch.advance()
        counted = batch.load
        if failed:
            self.send_errors += len(failed)
            counted -= int(batch.counted[failed].sum())
        if counted:
            self.sent[sent_us // 1_000_000] += counted

    def send_each(self, calls: list[LoadCall]) -> None:
        """The per-packet loop: one sendto a packet (DTMF events, and where sendmmsg is not available)."""
        sendto = self.rtp.sendto
        sent = self.sent
        pack = _HEADER.pack
        monotonic_ns = time.monotonic_ns
        for call in calls:
            assert call.rtp is not None
            sent_us = monotonic_ns() // 1000
            if call.dtmf:
                body = call.dtmf.pop(0)
                data = (
                    pack(
                        0x80,
                        DTMF_PT | (0x80 if len(call.dtmf) == 5 else 0),
                        call.seq & 0xFFFF,
                        call.timestamp & 0xFFFFFFFF,
                        call.ssrc,
                    )
                    + body
                )
                if not call.dtmf:
                    call.timestamp += 160 * 4
            else:
                data = pack(0x80, 0, call.seq & 0xFFFF, call.timestamp & 0xFFFFFFFF, call.ssrc) + payload(
                    call.prefix, call.seq, sent_us
                )
                call.timestamp += 160
            call.seq += 1
            try:
                sendto(data, call.rtp)
            except (BlockingIOError, OSError):
                self.send_errors += 1
                continue
            if call.index < SPEECH_BASE and data[1] == 0:  # the load's audio: what the sink counts
                sent[sent_us // 1_000_000] += 1

    # --- the run -------------------------------------------------------------------------------------
    async def ramp(self, indexes: list[tuple[int, Kind]], rate: float) -> None:
        start = time.monotonic()
        for n, (index, kind) in enumerate(indexes):
            at = start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.place(self.new_call(index, kind))

    async def settled(self, kinds: tuple[Kind, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(c.state is State.CALLING for c in self.calls.values() if c.kind in kinds):
                return
            await asyncio.sleep(0.05)

    async def churn(self, until: float) -> None:
        rate = self.args.churn_rate
        start = time.monotonic()
        n = 0
        while time.monotonic() < until:
            at = start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.churn_started += 1
            self.place(self.new_call(CHURN_BASE + n % CHURN_INDEXES, Kind.CHURN))
            n += 1

    async def run(self) -> dict[str, object]:
        args = self.args
        self.tick_start = time.monotonic()
        self.loop.call_soon(self.tick)
        if args.mode == "sip":
            self.loop.call_later(0.1, self.retransmit)
        plan = [(i, Kind.LOAD) for i in range(args.calls)]
        ramp_start = time.monotonic()
        await self.ramp(plan, args.ramp)
        await self.settled((Kind.LOAD,), 40)
        ramp_seconds = time.monotonic() - ramp_start
        tests = [(SPEECH_BASE + i, Kind.SPEECH) for i in range(args.test_calls)]
        tests += [(DTMF_BASE + i, Kind.DTMF) for i in range(args.test_calls)]
        if args.mode == "sip" and tests:
            await self.ramp(tests, 50)
        t0 = math.ceil(time.monotonic() + args.settle)
        t1 = t0 + args.seconds
        print(f"WINDOW {t0} {t1}", flush=True)
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        for call in self.calls.values():
            if call.kind is Kind.DTMF and call.state is State.ANSWERED:
                self.loop.call_later(1.0, self.queue_dtmf, call, DTMF_DIGIT)
        if args.churn_rate > 0 and args.mode == "sip":
            await self.churn(t1 - 1.0)
        await asyncio.sleep(max(0.0, t1 + args.drain - time.monotonic()))
        live_at_end = sum(1 for c in self.calls.values() if c.kind is Kind.LOAD and c.state is State.ANSWERED)
        print("STOPPING", flush=True)
        for call in list(self.calls.values()):
            self.hang_up(call)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and any(c.state is State.ENDING for c in self.calls.values()):
            await asyncio.sleep(0.05)
        outcomes: dict[str, dict[str, int]] = {}
        for call in self.calls.values():
            if call.kind in (Kind.SPEECH, Kind.DTMF):
                expected = f"refer:sip:{call.kind.value}@"
                verdict = (
                    "right"
                    if call.outcome.startswith(expected)
                    else ("none" if not call.outcome else "wrong")
                )
                outcomes.setdefault(call.kind.value, Counter())[verdict] += 1
        load = [c for c in self.calls.values() if c.kind is Kind.LOAD]
        churn_window = max(1e-9, args.seconds - 1.0)
        return {
            "mode": args.mode,
            "calls": args.calls,
            "answered": sum(1 for c in load if c.answered_at or args.mode == "direct"),
            "live_at_end": live_at_end,
            "statuses": dict(self.statuses),
            "ramp_seconds": ramp_seconds,
            "setup_p50_ms": _ms(_percentile(self.setup_times, 0.5)),
            "setup_p99_ms": _ms(_percentile(self.setup_times, 0.99)),
            "churn_started": self.churn_started,
            "churn_answered": self.churn_answered,
            "churn_rate_achieved": self.churn_answered / churn_window if args.churn_rate else 0.0,
            "churn_setup_p50_ms": _ms(_percentile(self.churn_setups, 0.5)),
            "churn_setup_p99_ms": _ms(_percentile(self.churn_setups, 0.99)),
            "window": [t0, t1],
            "sent_in_window": sum(self.sent.get(s, 0) for s in range(t0, t1)),
            "sent_total": sum(self.sent.values()),
            "sent_by_second": {str(k): v for k, v in sorted(self.sent.items())},
            "send_errors": self.send_errors,
            "late_ticks": self.late_ticks,
            "bridge_byes": self.bridge_byes,
            "bye_ok": self.bye_ok,
            "test_outcomes": {k: dict(v) for k, v in outcomes.items()},
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


async def amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    generator = Generator(args)
    await loop.create_datagram_endpoint(lambda: generator, local_addr=(args.local_host, 0))
    assert generator.sip is not None
    generator.sip.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    result = await generator.run()
    args.out.write_text(json.dumps(result))
    print("DONE", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["sip", "direct"], default="sip")
    parser.add_argument("--target", default="127.0.0.1:5080", help="the bridge's SIP host:port")
    parser.add_argument("--local-host", default="127.0.0.1")
    parser.add_argument("--direct-host", default="127.0.0.1")
    parser.add_argument(
        "--direct-base", type=int, default=40000, help="direct mode: call i streams to base+i"
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--ramp", type=float, default=200.0, help="new calls per second while ramping up")
    parser.add_argument("--seconds", type=int, default=20, help="the steady window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the ramp before the window")
    parser.add_argument("--drain", type=float, default=1.5, help="seconds of media after the window")
    parser.add_argument("--test-calls", type=int, default=0, help="speech and DTMF routing test calls, each")
    parser.add_argument("--churn-rate", type=float, default=0.0, help="extra short calls per second")
    parser.add_argument("--churn-hold", type=float, default=1.0)
    parser.add_argument("--comfort-noise", action="store_true", help="offer RFC 3389 CN in the SDP")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(amain(args))


if __name__ == "__main__":
    main()
