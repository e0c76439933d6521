"""The per-process record of CPQD Channel-Identifiers (document 003): each one's sessions, recognitions and
verify buffer, pure data shared by every session of the process and served by the status endpoint.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ivr.emulators.cpqd_audio import SAMPLE_WIDTH


@dataclass
class ChannelRecord:
    """What happened under one Channel-Identifier in this process."""

    sessions: list[str] = field(default_factory=list)  # handles, in creation order
    sessions_released: int = 0
    recognitions: int = 0
    verify_buffer: deque[tuple[str, float, bytes]] = field(default_factory=deque)  # (handle, seconds, pcm)

    @property
    def verify_seconds(self) -> float:
        return sum(seconds for _, seconds, _ in self.verify_buffer)


class ChannelRegistry:
    """Channel-Identifier -> its sessions, recognitions and verify buffer, shared by the process's sessions.

    The verify buffer keeps the last `max_utterances` utterances and at most `max_seconds` of audio: a
    biometric verifier wants recent speech, not the whole call.
    """

    def __init__(self, *, max_utterances: int = 20, max_seconds: float = 120.0) -> None:
        self.channels: dict[str, ChannelRecord] = {}
        self.max_utterances = max_utterances
        self.max_seconds = max_seconds

    def record(self, channel: str) -> ChannelRecord:
        return self.channels.setdefault(channel, ChannelRecord())

    def session_created(self, channel: str, handle: str) -> None:
        self.record(channel).sessions.append(handle)

    def session_released(self, channel: str) -> None:
        self.record(channel).sessions_released += 1

    def recognition_started(self, channel: str) -> None:
        self.record(channel).recognitions += 1

    def keep_utterance(self, channel: str, handle: str, pcm: bytes, sample_rate: int) -> None:
        buffer = self.record(channel).verify_buffer
        buffer.append((handle, len(pcm) / (SAMPLE_WIDTH * sample_rate), pcm))
        while len(buffer) > self.max_utterances or (
            len(buffer) > 1 and sum(s for _, s, _ in buffer) > self.max_seconds
        ):
            buffer.popleft()

    def status(self, channel: str) -> dict[str, Any] | None:
        """The JSON the HTTP status endpoint serves, or None for a channel never seen."""
        record = self.channels.get(channel)
        if record is None:
            return None
        return {
            "channel_identifier": channel,
            "sessions": list(record.sessions),
            "sessions_created": len(record.sessions),
            "sessions_released": record.sessions_released,
            "recognitions": record.recognitions,
            "verify_buffer": {
                "utterances": len(record.verify_buffer),
                "seconds": round(record.verify_seconds, 3),
                "sessions": sorted({handle for handle, _, _ in record.verify_buffer}),
            },
        }
