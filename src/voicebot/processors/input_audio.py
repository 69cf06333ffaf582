"""Stops the caller's audio where the last stage that listens to it has had it."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class InputAudioStop(FrameProcessor):
    """Drops `InputAudioRawFrame`s: placed after the user aggregator (STT, VAD and
    smart-turn have heard them), so the 50 frames a second of a 20 ms-chunked caller do
    not hop through the LLM, TTS, output transport and assistant aggregator as well."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropped = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self.dropped += 1
            return
        await self.push_frame(frame, direction)
