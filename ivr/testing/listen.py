"""What the caller hears, sans-I/O: which prompt files play, and when the bridge has stopped talking.

The bridge sends a prompt as µ-law frames of the prompt's own samples, 160 per frame from its first sample
(media/prompt.py `frames`), so each frame of a prompt file, encoded the same way, arrives byte for byte. Each
received frame is looked up in an index of every prompt's frames; near-silent frames are left out of the
index (they are alike in every prompt and in the keepalive between prompts). A run of matches in increasing
frame order is one playing of that prompt; it counts as heard when it covered `min_fraction` of the
prompt's indexed frames, or `min_run` frames when it was cut off (barge-in). Text prompts synthesized by the
bridge at run time have no file to match; the activity tracker still sees them as speech then silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ivr.media import g711

FRAME_SECONDS = 0.02
SILENT_PEAK = 256  # decoded µ-law sample peak below which a frame is silence (about -42 dBFS)


def is_silent(payload: bytes) -> bool:
    """A µ-law frame that carries no speech (the bridge's keepalive is all 0xFF)."""
    if not payload:
        return True
    return int(np.abs(g711.decode_array(payload, g711.PCMU).astype(np.int32)).max()) < SILENT_PEAK


@dataclass(frozen=True)
class PromptHeard:
    """One playing of a prompt file, from its first to its last matching frame."""

    name: str
    start: float
    end: float
    fraction: float  # of the prompt's speech frames received
    complete: bool  # its last speech frame arrived (not cut off by barge-in or hang-up)


@dataclass
class _Playing:
    name: str
    start: float
    last_seen: float
    last_index: int
    matched: int


class PromptDetector:
    """Feeds received µ-law frames; reports each prompt file heard, in order."""

    def __init__(
        self, prompts: Mapping[str, list[bytes]], *, min_fraction: float = 0.5, min_run: int = 25,
        gap: float = 1.0,
    ) -> None:  # fmt: skip
        self.min_fraction = min_fraction
        self.min_run = min_run
        self.gap = gap  # seconds without a match that end a playing
        self._index: dict[bytes, list[tuple[str, int]]] = {}
        self._speech_frames: dict[str, int] = {}
        self._last_speech_index: dict[str, int] = {}
        for name, frames in prompts.items():
            count = 0
            for i, frame in enumerate(frames):
                if is_silent(frame):
                    continue
                self._index.setdefault(bytes(frame), []).append((name, i))
                count += 1
                self._last_speech_index[name] = i
            self._speech_frames[name] = count
        self._playing: _Playing | None = None
        self.heard: list[PromptHeard] = []

    def feed(self, payload: bytes, now: float) -> list[PromptHeard]:
        """One received frame at `now`; the playings that ended with it."""
        out: list[PromptHeard] = []
        playing = self._playing
        if playing is not None and now - playing.last_seen > self.gap:
            out += self._finish()
            playing = None
        matches = self._index.get(bytes(payload))
        if not matches:
            return out
        if playing is not None:
            onward = [i for name, i in matches if name == playing.name and i > playing.last_index]
            if onward:
                playing.last_index, playing.last_seen = min(onward), now
                playing.matched += 1
                if playing.last_index == self._last_speech_index[playing.name]:
                    out += self._finish()
                return out
            out += self._finish()
        name, index = min(matches, key=lambda m: m[1])  # a frame shared by prompts: the earliest start
        self._playing = _Playing(name, now, now, index, 1)
        if index == self._last_speech_index[name]:
            out += self._finish()
        return out

    def close(self) -> list[PromptHeard]:
        """The call is over: the playing in progress, if it counts."""
        return self._finish()

    def _finish(self) -> list[PromptHeard]:
        playing, self._playing = self._playing, None
        if playing is None:
            return []
        total = self._speech_frames[playing.name]
        fraction = playing.matched / total if total else 0.0
        if fraction < self.min_fraction and playing.matched < self.min_run:
            return []
        complete = playing.last_index == self._last_speech_index[playing.name]
        heard = PromptHeard(
            playing.name, playing.start, playing.last_seen + FRAME_SECONDS, fraction, complete
        )
        self.heard.append(heard)
        return [heard]


class Activity:
    """When the bridge last talked: decides that its prompt has finished. Speech then `quiet` seconds of
    silence (or of no packets at all) ends any audio; a prompt file whose last frame arrived ends after
    `settle` seconds, unless more speech follows at once (the next step's prompt)."""

    def __init__(self, quiet: float = 0.9, settle: float = 0.25) -> None:
        self.quiet = quiet
        self.settle = settle
        self.last_speech: float | None = None
        self.completed: float | None = None  # when the last whole prompt file ended

    def feed(self, payload: bytes, now: float) -> None:
        if not is_silent(payload):
            self.last_speech = now

    def prompt_completed(self, heard: PromptHeard) -> None:
        if heard.complete:
            self.completed = heard.end

    def finished_since(self, since: float, now: float) -> bool:
        """Speech came after `since` and is over."""
        last = self.last_speech
        if last is None or last < since:
            return False
        whole = self.completed is not None and self.completed >= last - FRAME_SECONDS
        return now - last >= (self.settle if whole else self.quiet)
