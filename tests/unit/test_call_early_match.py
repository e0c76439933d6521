"""Early match through a whole `ivr.call.Call`: a partial result routes, the recognition is cancelled.

The rig is test_call.py's (real UserAgent core in memory, real RTP on loopback, the real recognizer
driver to a scripted server); here the scripted recognizer also sends partial results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.asr.base import AsrEvent, Frame, Partial, StartOfSpeech
from ivr.call import Call
from ivr.sip.message import Request
from tests.unit.test_call import FLOW, Rig, ScriptedCodec, ScriptedServer, ended, is_method
from tests.unit.test_call import rig as rig  # the fixture, re-exported for pytest


class PartialCodec(ScriptedCodec):
    """The scripted protocol plus "partial TEXT": an interim hypothesis, speech having started."""

    def receive(self, frame: Frame, now: float) -> list[AsrEvent]:
        r = self._recognition
        if isinstance(frame, str) and frame.startswith("partial ") and r is not None:
            return [StartOfSpeech(r), Partial(r, frame[8:], 0.0)]
        return super().receive(frame, now)


@dataclass
class PartialServer(ScriptedServer):
    """Sends `partial` after `partial_after` bytes of audio, then its final `text` after `after`."""

    partial: str = ""
    partial_after: int = 1600

    def respond(self, frame: Frame) -> list[Frame]:
        before = self.audio
        out = super().respond(frame)
        if isinstance(frame, bytes) and before < self.partial_after <= self.audio:
            out = [f"partial {self.partial}", *out]
        return out


def early(rig: Rig, on: bool) -> None:
    flow = FLOW.replace("barge_in: true}", f"barge_in: true, early_match: {str(on).lower()}}}")
    assert flow != FLOW
    Path(rig.dialplan_path).write_text(flow, encoding="utf-8")
    rig.codec = PartialCodec
    # The partial comes after 0.1 s of the caller's audio, the final after 1 s (endpointing).
    rig.server = PartialServer(text="상담원 연결해 주세요", after=16000, partial="상담원", partial_after=1600)


async def transferred(rig: Rig, packets: int) -> tuple[Call, Request]:
    call = rig.start_call()
    port = await rig.answered()
    await rig.send_audio(port, packets)
    refer = await rig.sip.wait_for(is_method("REFER"))
    assert isinstance(refer, Request)
    rig.bye()
    await ended(rig)
    return call, refer


async def test_a_partial_naming_the_first_route_transfers_before_the_final(rig: Rig) -> None:
    early(rig, on=True)
    # 0.2 s of audio: enough for the partial, never for the final; without early match it would time out.
    _, refer = await transferred(rig, 10)
    assert refer.headers.get("X-IVR-Transcript") == "상담원"
    said = [f for f in rig.server.frames if isinstance(f, str) and f.startswith(("cancel", "end"))]
    assert said[:1] == ["cancel"], rig.server.frames  # the recognition was cancelled, not ended
    [record] = rig.records()
    assert record["route"] == ["menu<start", "agent<say:상담원(early)"]
    turns = record["transcripts"]
    assert isinstance(turns, list) and len(turns) == 1
    assert turns[0]["text"] == "상담원" and turns[0]["status"] == "recognized"


async def test_with_early_match_off_the_partial_waits_for_the_final(rig: Rig) -> None:
    early(rig, on=False)
    _, refer = await transferred(rig, 60)  # 1.2 s: the final comes after 1 s of audio
    assert refer.headers.get("X-IVR-Transcript") == "상담원 연결해 주세요"
    [record] = rig.records()
    assert record["route"] == ["menu<start", "agent<say:상담원"]
