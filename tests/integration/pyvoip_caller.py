"""A real, independent SIP caller for integration tests, built on pyVoIP 1.6.8.

Run as a subprocess; prints ONE JSON line on stdout at the end (logs go to stderr):
  {"registered", "answered", "ended_by", "refer_to", "rtp_packets_received", "received_audio_rms", "events"}
Exit status 0 if the call was answered, 1 otherwise, 2 on bad arguments.

pyVoIP's SIP stack is used as is for REGISTER, INVITE, ACK, BYE; the monkeypatches below are each justified
by a line of pyVoIP 1.6.8 (paths relative to site-packages/pyVoIP/). `--stock-sip` turns off the wire-format
fixes (ACK, BYE, Call-ID, 200-to-BYE) so a test can check that the bridge tolerates pyVoIP exactly as shipped.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import re
import sys
import threading
import time
import uuid
import warnings
import wave
from dataclasses import dataclass, field
from typing import Any

warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
import audioop  # noqa: E402  (pyVoIP needs it too, so Python <= 3.12)

import pyVoIP  # noqa: E402
import pyVoIP.VoIP  # noqa: E402  (must load before pyVoIP.SIP: the two import each other)
from pyVoIP import RTP, SIP  # noqa: E402
from pyVoIP.VoIP import VoIP as _voip  # noqa: E402
from pyVoIP.VoIP.status import PhoneStatus  # noqa: E402

CallState = _voip.CallState

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms, the only packetisation pyVoIP uses (RTP.py:415)
DTMF_CODES = {c: i for i, c in enumerate("0123456789*#ABCD")}


@dataclass
class Report:
    t0: float = field(default_factory=time.monotonic)
    registered: bool = False
    answered: bool = False
    ended_by: str = "timeout"
    refer_to: str | None = None
    remote_bye: bool = False
    hangup_why: str = ""
    rtp_packets: int = 0
    sumsq: float = 0.0
    nsamples: int = 0
    received_pcm: bytearray = field(default_factory=bytearray)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, name: str, **kw: Any) -> None:
        with self.lock:
            self.events.append({"t": round(time.monotonic() - self.t0, 3), "ev": name, **kw})
        print(f"[caller] {name} {kw}", file=sys.stderr, flush=True)

    def as_json(self) -> str:
        rms = math.sqrt(self.sumsq / self.nsamples) if self.nsamples else 0.0
        return json.dumps(
            {
                "registered": self.registered,
                "answered": self.answered,
                "ended_by": self.ended_by,
                "refer_to": self.refer_to,
                "rtp_packets_received": self.rtp_packets,
                "received_audio_rms": round(rms, 1),
                "events": self.events,
            },
            ensure_ascii=False,
        )


REPORT = Report()
EXTRA_METHODS = ["REFER", "NOTIFY", "OPTIONS", "INFO", "UPDATE", "MESSAGE", "PRACK", "SUBSCRIBE"]


class Dialog:
    """What pyVoIP does not keep: our CSeq for in-dialog requests we send (NOTIFY), and REFER progress."""

    def __init__(self) -> None:
        self.call: Any = None
        self.last_cseq = 0
        self.remote_target = ""  # Contact URI of the 200 OK (RFC 3261 §12.1.2)
        self.remote_tag = ""
        self.refer_done = threading.Event()


DIALOG = Dialog()


def uri_of(contact: str) -> str:
    m = re.search(r"<([^>]*)>", contact)
    return (m.group(1) if m else contact.split(";")[0]).strip()


def install_patches(args: argparse.Namespace) -> None:
    # pyVoIP/__init__.py:23-27 prints to STDOUT (even with DEBUG off when a second argument is given, e.g.
    # SIP.py:912-916 for every response other than 100/180/200/404/503): keep stdout for the JSON line.
    def debug(s: object, e: object = None) -> None:
        if pyVoIP.DEBUG or e is not None:
            print(f"[pyVoIP] {s if pyVoIP.DEBUG else e}", file=sys.stderr, flush=True)

    for mod in (pyVoIP, SIP, RTP, _voip):
        mod.debug = debug  # type: ignore[attr-defined]

    sipc: Any = SIP.SIPClient
    phone_cls: Any = _voip.VoIPPhone
    rtpc: Any = RTP.RTPClient

    # SIP.py:343 + 387-393: requests other than INVITE/ACK/BYE/CANCEL raise SIPParseError inside SIPMessage()
    # and are dropped silently at SIP.py:867 (no response at all). Parse them so they can be logged/answered.
    if args.on_refer == "accept":
        pyVoIP.SIPCompatibleMethods.extend(EXTRA_METHODS)  # also lands in Allow: (SIP.py:1155,1500)
    else:
        orig_msg_parse = SIP.SIPMessage.parse

        def msg_parse(self: Any, data: bytes) -> None:
            self.SIPCompatibleMethods = pyVoIP.SIPCompatibleMethods + EXTRA_METHODS
            orig_msg_parse(self, data)

        SIP.SIPMessage.parse = msg_parse  # type: ignore[method-assign]

    orig_parse_message = sipc.parse_message

    def parse_message(self: Any, message: Any) -> None:
        if message.type == SIP.SIPMessageType.RESPONSE:
            cseq = message.headers.get("CSeq", {})
            REPORT.event(
                "sip-in", status=int(message.status), cseq=f"{cseq.get('check')} {cseq.get('method')}"
            )
            orig_parse_message(self, message)
            return
        REPORT.event("sip-in", method=message.method)
        if message.method in ("INVITE", "ACK", "BYE", "CANCEL"):
            orig_parse_message(self, message)
            return
        handle_extra_request(self, message, args)

    sipc.parse_message = parse_message

    # VoIP.py:602-613 answers EVERY 200 whose Call-ID is a known call with an ACK, including the 200 to our
    # NOTIFY; and a 200 that races ahead of VoIP.py:691 (call not yet stored after invite() returned on the
    # 100 Trying, SIP.py:1624) is dropped. Only ACK INVITE 200s; stash early ones for replay.
    orig_resp_ok = phone_cls._callback_RESP_OK

    def resp_ok(self: Any, request: Any) -> None:
        if request.headers["CSeq"]["method"] != "INVITE":
            return
        if request.headers["Call-ID"] not in self.calls:
            EARLY_OK.append(request)
            return
        call = self.calls[request.headers["Call-ID"]]
        if call.state == CallState.DIALING:
            DIALOG.remote_target = uri_of(request.headers.get("Contact", ""))
            DIALOG.remote_tag = request.headers["To"]["tag"]
        orig_resp_ok(self, request)

    phone_cls._callback_RESP_OK = resp_ok

    orig_bye_cb = phone_cls._callback_MSG_Bye

    def bye_cb(self: Any, request: Any) -> None:
        known = request.headers["Call-ID"] in self.calls
        REPORT.remote_bye = REPORT.remote_bye or known
        REPORT.event("bye-received", known_call=known)
        orig_bye_cb(self, request)

    phone_cls._callback_MSG_Bye = bye_cb

    if not args.stock_sip:
        install_sip_fixes(sipc)
    install_rtp_patches(rtpc, args)


EARLY_OK: list[Any] = []


def install_sip_fixes(sipc: Any) -> None:
    # SIP.py:995-998: Call-ID = sha256(counter)@ip:port, identical in every process run with the same
    # --sip-port, so a long-lived bridge would see a "new" call reuse an old Call-ID (RFC 3261 §8.1.1.4).
    sipc.gen_call_id = lambda self: f"{uuid.uuid4().hex}@{self.myIP}"

    # SIP.py:1559-1575: the ACK for a 2xx carries a fresh random To tag (so it matches no dialog), the
    # INVITE's branch and the To URI as Request-URI. RFC 3261 §13.2.2.4/§12.2.1.1: remote tag, new branch,
    # remote target.
    orig_ack = sipc.gen_ack

    def gen_ack(self: Any, response: Any) -> str:
        if int(response.status) // 100 != 2:
            stock: str = orig_ack(self, response)
            return stock
        local_tag = self.tagLibrary[response.headers["Call-ID"]]
        target = uri_of(response.headers.get("Contact", "")) or uri_of(response.headers["To"]["raw"])
        return (
            f"ACK {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.myIP}:{self.myPort};branch={self.gen_branch()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"To: {response.headers['To']['raw']};tag={response.headers['To']['tag']}\r\n"
            f"From: {response.headers['From']['raw']};tag={local_tag}\r\n"
            f"Call-ID: {response.headers['Call-ID']}\r\n"
            f"CSeq: {response.headers['CSeq']['check']} ACK\r\n"
            f"User-Agent: pyVoIP {pyVoIP.__version__}\r\n"
            "Content-Length: 0\r\n\r\n"
        )

    sipc.gen_ack = gen_ack

    # SIP.py:1517-1521: BYE reuses the INVITE's Via branch (a new transaction needs a new one, §8.1.1.7), and
    # takes the Request-URI as Contact.strip("<>"), which breaks on Contact header parameters.
    orig_bye = sipc.gen_bye

    def gen_bye(self: Any, request: Any) -> str:
        msg: str = orig_bye(self, request)
        msg = re.sub(r"branch=[^;\r\n]+", f"branch={self.gen_branch()}", msg, count=1)
        return re.sub(r"^BYE [^ ]+ ", f"BYE {uri_of(request.headers['Contact'])} ", msg, count=1)

    sipc.gen_bye = gen_bye

    # SIP.py:1315-1318: the 200 to a BYE/CANCEL gets a random To tag instead of our dialog tag.
    orig_ok = sipc.gen_ok

    def gen_ok(self: Any, request: Any) -> str:
        msg: str = orig_ok(self, request)
        tag = self.tagLibrary.get(request.headers["Call-ID"])
        if tag:
            msg = re.sub(r"(\r\nTo: [^\r\n]*;tag=)[^\r\n;]+", lambda m: m.group(1) + tag, msg, count=1)
        return msg

    sipc.gen_ok = gen_ok


def _response(sip: Any, request: Any, status: str, extra: str = "") -> str:
    tag = sip.tagLibrary.get(request.headers["Call-ID"], sip.gen_tag())
    via: str = sip._gen_response_via_header(request)
    return (
        f"SIP/2.0 {status}\r\n"
        + via
        + f"From: {request.headers['From']['raw']};tag={request.headers['From']['tag']}\r\n"
        + f"To: {request.headers['To']['raw']};tag={tag}\r\n"
        + f"Call-ID: {request.headers['Call-ID']}\r\n"
        + f"CSeq: {request.headers['CSeq']['check']} {request.headers['CSeq']['method']}\r\n"
        + f"Contact: <sip:{sip.username}@{sip.myIP}:{sip.myPort}>\r\n"
        + extra
        + "Content-Length: 0\r\n\r\n"
    )


def handle_extra_request(sip: Any, request: Any, args: argparse.Namespace) -> None:
    """What a transferee does with REFER (RFC 3515 §2.4), minus actually placing the new call."""
    method = request.method
    known = DIALOG.call is not None and request.headers["Call-ID"] == DIALOG.call.call_id
    if method == "REFER" and known:
        refer_to = request.headers.get("Refer-To", "")
        REPORT.refer_to = uri_of(refer_to) if refer_to else None
        REPORT.event("refer", refer_to=REPORT.refer_to)
    if args.on_refer == "ignore":
        return  # stock pyVoIP: no response at all
    if method == "REFER" and known:
        if args.on_refer == "decline":
            sip.out.sendto(_response(sip, request, "603 Declined").encode(), (sip.server, sip.port))
            return
        sip.out.sendto(_response(sip, request, "202 Accepted").encode(), (sip.server, sip.port))
        refer_cseq = request.headers["CSeq"]["check"]
        threading.Thread(target=send_refer_notifies, args=(sip, refer_cseq, args), daemon=True).start()
    elif method in ("NOTIFY", "OPTIONS", "INFO") and (known or method == "OPTIONS"):
        sip.out.sendto(_response(sip, request, "200 OK").encode(), (sip.server, sip.port))
    elif known:
        sip.out.sendto(_response(sip, request, "501 Not Implemented").encode(), (sip.server, sip.port))
    else:
        sip.out.sendto(
            _response(sip, request, "481 Call/Transaction Does Not Exist").encode(), (sip.server, sip.port)
        )


def send_notify(sip: Any, refer_cseq: str, frag: str, state: str) -> None:
    call = DIALOG.call
    DIALOG.last_cseq += 1
    # keep pyVoIP's BYE (CSeq = INVITE CSeq + 1, SIP.py:1537) above our NOTIFYs (RFC 3261 §12.2.1.1)
    call.request.headers["CSeq"]["check"] = str(DIALOG.last_cseq)
    body = f"SIP/2.0 {frag}\r\n"
    msg = (
        f"NOTIFY {DIALOG.remote_target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sip.myIP}:{sip.myPort};branch={sip.gen_branch()};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {call.request.headers['From']['raw']};tag={sip.tagLibrary[call.call_id]}\r\n"
        f"To: {call.request.headers['To']['raw']};tag={DIALOG.remote_tag}\r\n"
        f"Call-ID: {call.call_id}\r\n"
        f"CSeq: {DIALOG.last_cseq} NOTIFY\r\n"
        f"Contact: <sip:{sip.username}@{sip.myIP}:{sip.myPort}>\r\n"
        f"Event: refer;id={refer_cseq}\r\n"
        f"Subscription-State: {state}\r\n"
        "Content-Type: message/sipfrag;version=2.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    sip.out.sendto(msg.encode(), (sip.server, sip.port))
    REPORT.event("notify-sent", sipfrag=frag, state=state)


def send_refer_notifies(sip: Any, refer_cseq: str, args: argparse.Namespace) -> None:
    try:
        send_notify(sip, refer_cseq, "100 Trying", "active;expires=60")
        if args.refer_final != "none":
            time.sleep(0.2)
            send_notify(sip, refer_cseq, args.refer_final, "terminated;reason=noresource")
    except Exception as exc:  # a test must see this in the events, not a dead thread
        REPORT.event("notify-error", error=repr(exc))
    DIALOG.refer_done.set()


class DtmfQueue:
    """RFC 4733 §2.5 packets to interleave with audio: pyVoIP 1.6.8 offers telephone-event (VoIP.py:687)
    but has no way to send it."""

    def __init__(self) -> None:
        self.ticks: collections.deque[tuple[int, int, bool, bool] | None] = collections.deque()
        self.lock = threading.Lock()

    def add(self, digits: str, ms: int) -> None:
        n = max(1, ms // 20)
        with self.lock:
            for d in digits:
                code = DTMF_CODES[d.upper()]
                for k in range(1, n + 1):
                    self.ticks.append((code, k * FRAME_SAMPLES, k == n, k == 1))
                # §2.5.1.4: the final packet is sent three times in all
                self.ticks.extend([(code, n * FRAME_SAMPLES, True, False)] * 2)
                self.ticks.extend([None] * 5)  # 100 ms of audio between digits

    def pop(self) -> tuple[int, int, bool, bool] | None:
        with self.lock:
            return self.ticks.popleft() if self.ticks else None


DTMF = DtmfQueue()
# id(RTPClient) -> pending 16-bit PCM (default mode; --audio-8bit goes through pyVoIP's pmout instead)
PCM16: dict[int, bytearray] = {}
PCM16_LOCK = threading.Lock()


def install_rtp_patches(rtpc: Any, args: argparse.Namespace) -> None:
    orig_parse_packet = rtpc.parse_packet

    # Instrumentation only: count every packet and measure PCMU/PCMA level at 16-bit scale (pyVoIP's own
    # read_audio returns 8-bit unsigned, RTP.py:476-479, and blocks forever on digital silence, RTP.py:361).
    def parse_packet(self: Any, packet: bytes) -> None:
        REPORT.rtp_packets += 1
        if REPORT.rtp_packets == 1:
            REPORT.event("rtp-first-packet", pt=packet[1] & 0x7F)
        if len(packet) > 12:
            off = 12 + 4 * (packet[0] & 0x0F)
            if packet[0] & 0x10 and len(packet) >= off + 4:
                off += 4 + 4 * int.from_bytes(packet[off + 2 : off + 4], "big")
            ptype = self.assoc.get(packet[1] & 0x7F)
            payload = packet[off:]
            lin = b""
            if ptype == RTP.PayloadType.PCMU:
                lin = audioop.ulaw2lin(payload, 2)
            elif ptype == RTP.PayloadType.PCMA:
                lin = audioop.alaw2lin(payload, 2)
            if lin:
                REPORT.sumsq += audioop.rms(lin, 2) ** 2 * (len(lin) // 2)
                REPORT.nsamples += len(lin) // 2
                if args.record:
                    REPORT.received_pcm += lin
        orig_parse_packet(self, packet)

    rtpc.parse_packet = parse_packet

    # Replaces RTP.py:382-419 with the same framing (PT = first real codec of the answer, 160 samples every
    # 20 ms, seq += 1, ts += 160, one SSRC) plus: RFC 4733 events from DtmfQueue; PCMA encoded as A-law (the
    # stock encode_packet, RTP.py:460-461, sends mu-law bytes labelled PT 8); pacing on an absolute clock
    # (the stock loop drifts by its sleep overshoot); a 16-bit source by default instead of pyVoIP's
    # 8-bit unsigned buffer, which costs about 8 bits of resolution before G.711.
    def trans(self: Any) -> None:
        ev_pt = next((pt for pt, p in self.assoc.items() if p == RTP.PayloadType.EVENT), None)
        ev_ts = 0
        deadline = time.monotonic()
        while self.NSD:
            tick = DTMF.pop() if ev_pt is not None else None
            marker = False
            if tick is not None and ev_pt is not None:
                code, duration, end, first = tick
                if first:
                    ev_ts = self.outTimestamp
                    marker = True
                pt, ts = ev_pt, ev_ts
                payload = bytes([code, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")
            else:
                pt, ts = int(self.preference), self.outTimestamp
                if args.pcm16:
                    with PCM16_LOCK:
                        buf = PCM16.setdefault(id(self), bytearray())
                        lin = bytes(buf[: 2 * FRAME_SAMPLES])
                        del buf[: 2 * FRAME_SAMPLES]
                    lin += b"\x00" * (2 * FRAME_SAMPLES - len(lin))
                else:
                    lin = audioop.bias(self.pmout.read(FRAME_SAMPLES), 1, -128)
                width = 2 if args.pcm16 else 1
                if self.preference == RTP.PayloadType.PCMA:
                    payload = audioop.lin2alaw(lin, width)
                else:
                    payload = audioop.lin2ulaw(lin, width)
            header = bytes([0x80, (0x80 if marker else 0) | pt])
            header += (self.outSequence & 0xFFFF).to_bytes(2, "big")
            header += (ts & 0xFFFFFFFF).to_bytes(4, "big") + (self.outSSRC & 0xFFFFFFFF).to_bytes(4, "big")
            with contextlib.suppress(OSError):  # socket closed by stop() mid-tick
                self.sout.sendto(header + payload, (self.outIP, self.outPort))
            self.outSequence += 1
            self.outTimestamp += FRAME_SAMPLES
            deadline += FRAME_SAMPLES / SAMPLE_RATE
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:  # stalled (GC, CPU starvation): resync instead of bursting
                deadline = time.monotonic()

    rtpc.trans = trans


def load_wav(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 8 kHz mono 16-bit PCM WAV")
        return w.readframes(w.getnframes())


def stream_audio(call: Any, pcm: bytes, pcm16: bool) -> None:
    # Whole file at once: pyVoIP buffers it (RTP.py:366-368) and the sender thread drains 20 ms per tick,
    # so the wire sees real time without a second clock here.
    if pcm16:
        with PCM16_LOCK:
            for c in call.RTPClients:
                PCM16.setdefault(id(c), bytearray()).extend(pcm)
    else:
        # write_audio() takes 8-bit unsigned linear, 8 kHz (bias +128 is undone in encode_pcmu, RTP.py:491)
        call.write_audio(audioop.bias(audioop.lin2lin(pcm, 2, 1), 1, 128))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="127.0.0.1", help="registrar/UAS address (all SIP goes here)")
    p.add_argument("--port", type=int, default=5060)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="x")
    p.add_argument("--local-ip", default="127.0.0.1", help="bound and advertised in Via/Contact/SDP")
    p.add_argument("--sip-port", type=int, default=5062)
    p.add_argument("--rtp-low", type=int, default=40000)
    p.add_argument("--rtp-high", type=int, default=40100)
    p.add_argument("--call", required=True, help="number dialled: INVITE sip:<number>@<server>")
    p.add_argument("--wav", help="8 kHz mono 16-bit WAV sent as the caller's microphone")
    p.add_argument("--after-answer-wait", type=float, default=0.0, help="seconds before the WAV starts")
    p.add_argument("--dtmf", default="", help="RFC 4733 digits to send, e.g. 1 or 12#")
    p.add_argument("--dtmf-at", type=float, default=1.0, help="seconds after answer")
    p.add_argument("--dtmf-ms", type=int, default=100, help="duration of each digit")
    p.add_argument(
        "--hangup-after", type=float, default=0.0, help="local BYE this long after answer; 0=never"
    )
    p.add_argument("--max-duration", type=float, default=30.0, help="overall limit; then hang up -> timeout")
    p.add_argument("--answer-timeout", type=float, default=10.0)
    p.add_argument("--register-timeout", type=float, default=5.0)
    p.add_argument("--on-refer", choices=["accept", "decline", "ignore"], default="accept")
    p.add_argument("--refer-final", default="200 OK", help="sipfrag of the final NOTIFY, or 'none'")
    p.add_argument("--refer-linger", type=float, default=3.0, help="wait for the bridge's BYE after NOTIFY")
    p.add_argument(
        "--audio-8bit",
        dest="pcm16",
        action="store_false",
        help="go through pyVoIP's write_audio (8-bit linear: ~25 dB SNR on speech vs ~37 dB for 16-bit)",
    )
    p.add_argument("--record", help="write received audio (16-bit 8 kHz WAV)")
    p.add_argument("--stock-sip", action="store_true", help="no ACK/BYE/Call-ID/200 fixes: pyVoIP as shipped")
    p.add_argument("--debug", action="store_true", help="pyVoIP.DEBUG: every SIP message, on stderr")
    args = p.parse_args(argv)
    if any(d.upper() not in DTMF_CODES for d in args.dtmf):
        p.error("--dtmf digits must be 0-9 * # A-D")
    return args


def run(args: argparse.Namespace) -> int:
    pcm = load_wav(args.wav) if args.wav else b""
    install_patches(args)
    pyVoIP.DEBUG = args.debug
    phone = _voip.VoIPPhone(
        args.server,
        args.port,
        args.user,
        args.password,
        myIP=args.local_ip,
        callCallback=None,  # incoming INVITEs get 486 (SIP.py:920)
        sipPort=args.sip_port,
        rtpPortLow=args.rtp_low,
        rtpPortHigh=args.rtp_high,
    )
    phone.sip.register_timeout = args.register_timeout
    deadline = time.monotonic() + args.max_duration
    try:
        REPORT.event("register-sent")
        phone.start()  # REGISTER is synchronous (SIP.py:963); failures retry in Timer threads
        limit = time.monotonic() + 3 * args.register_timeout + 1
        while phone.get_status() not in (PhoneStatus.REGISTERED, PhoneStatus.FAILED):
            if time.monotonic() > limit:
                break
            time.sleep(0.05)
        REPORT.registered = phone.get_status() == PhoneStatus.REGISTERED
        REPORT.event(
            "registered" if REPORT.registered else "register-failed", status=phone.get_status().value
        )
        if not REPORT.registered:
            return 1
        # The receive loop starts 1 s after start() (SIP.py:964-966); an INVITE sent earlier gets its 200 only
        # through the UAS's retransmission, 500 ms+ late. Wait so the bridge sees one clean exchange.
        time.sleep(1.1)
        place_call(phone, args, pcm, deadline)
    finally:
        stopper = threading.Thread(target=_stop_quietly, args=(phone,), daemon=True)
        stopper.start()
        stopper.join(args.register_timeout + 1)
        if args.record and REPORT.received_pcm:
            with wave.open(args.record, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE)
                w.writeframes(bytes(REPORT.received_pcm))
    return 0 if REPORT.answered else 1


def _stop_quietly(phone: Any) -> None:
    try:
        phone.stop()  # BYE if still answered (VoIP.py:671-675), REGISTER Expires: 0, close sockets
    except Exception as exc:
        REPORT.event("stop-error", error=repr(exc))


def place_call(phone: Any, args: argparse.Namespace, pcm: bytes, deadline: float) -> None:
    holder: list[Any] = []

    def dial() -> None:
        try:
            holder.append(phone.call(args.call))
        except Exception as exc:
            REPORT.event("invite-error", error=repr(exc))

    # invite() blocks on a plain recv() until a 100/180/401 with our Call-ID arrives (SIP.py:1612-1622):
    # run it aside so a silent UAS cannot hang the test.
    REPORT.event("invite-sent", number=args.call)
    dialer = threading.Thread(target=dial, daemon=True)
    dialer.start()
    dialer.join(args.answer_timeout)
    if not holder:
        REPORT.event("no-provisional-response")
        return
    call = DIALOG.call = holder[0]
    DIALOG.last_cseq = int(call.request.headers["CSeq"]["check"])
    for early in list(EARLY_OK):
        if early.headers["Call-ID"] == call.call_id:
            REPORT.event("replay-early-200")
            phone._callback_RESP_OK(early)
    limit = min(deadline, time.monotonic() + args.answer_timeout)
    while call.state == CallState.DIALING and time.monotonic() < limit:
        time.sleep(0.01)
    if call.state != CallState.ANSWERED:
        REPORT.event("not-answered", state=call.state.value)
        return
    REPORT.answered = True
    t_answer = time.monotonic()
    client = call.RTPClients[0] if call.RTPClients else None
    REPORT.event(
        "answered",
        codec=str(client.preference) if client else None,
        remote_rtp=f"{client.outIP}:{client.outPort}" if client else None,
        remote_target=DIALOG.remote_target,
    )
    audio_at = t_answer + args.after_answer_wait if pcm else None
    dtmf_at = t_answer + args.dtmf_at if args.dtmf else None
    hangup_at = t_answer + args.hangup_after if args.hangup_after > 0 else None
    refer_seen_at: float | None = None
    while True:
        now = time.monotonic()
        if call.state != CallState.ANSWERED:
            break
        if audio_at is not None and now >= audio_at:
            stream_audio(call, pcm, args.pcm16)
            REPORT.event("audio-start", seconds=round(len(pcm) / 2 / SAMPLE_RATE, 2))
            audio_at = None
        if dtmf_at is not None and now >= dtmf_at:
            if client is None or RTP.PayloadType.EVENT not in client.assoc.values():
                REPORT.event("dtmf-not-negotiated")
            else:
                DTMF.add(args.dtmf, args.dtmf_ms)
                REPORT.event("dtmf-sent", digits=args.dtmf)
            dtmf_at = None
        if DIALOG.refer_done.is_set() and refer_seen_at is None:
            refer_seen_at = now
        if refer_seen_at is not None and now - refer_seen_at >= args.refer_linger:
            hangup(call, "after-refer")
            break
        if hangup_at is not None and now >= hangup_at:
            hangup(call, "hangup-after")
            break
        if now >= deadline:
            hangup(call, "max-duration")
            break
        time.sleep(0.01)
    if REPORT.refer_to is not None:
        REPORT.ended_by = "refer"
    elif REPORT.remote_bye:
        REPORT.ended_by = "remote-bye"
    elif REPORT.hangup_why in ("hangup-after", "after-refer"):
        REPORT.ended_by = "local"
    # let the 200 to our BYE / late packets arrive before stop() closes the socket
    time.sleep(0.3)


def hangup(call: Any, why: str) -> None:
    try:
        call.hangup()
        REPORT.hangup_why = why
        REPORT.event("bye-sent", why=why)
    except Exception as exc:  # InvalidStateError if a BYE crossed ours
        REPORT.event("hangup-error", why=why, error=repr(exc))


def main() -> None:
    args = parse_args(sys.argv[1:])
    code = 1
    try:
        code = run(args)
    except SystemExit as exc:
        REPORT.event("error", error=str(exc))
        code = 2
    except Exception as exc:
        REPORT.event("error", error=repr(exc))
    sys.stdout.write(REPORT.as_json() + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # pyVoIP's threads are non-daemon Timers (SIP.py:964, RTP.py:345) that can outlive stop(): exit hard.
    os._exit(code)


if __name__ == "__main__":
    main()
