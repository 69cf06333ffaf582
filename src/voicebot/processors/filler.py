"""Says a short pre-synthesised phrase ("Let me check.") when the LLM's first words are late."""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

# Filler audio goes out in 20 ms frames, like any other bot audio.
FRAME_S = 0.02


class LateReplyFiller(FrameProcessor):
    """Sits between the LLM and TTS. When a reply starts (LLMFullResponseStartFrame) and
    no text follows within `after_s`, it pushes the filler audio towards the transport,
    so the user hears something while a slow model or network thinks. The phrase was
    synthesised once at start-up, so playing it costs nothing.
    """

    def __init__(self, *, audio: bytes, sample_rate: int, after_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._audio = audio
        self._sample_rate = sample_rate
        self._after_s = after_s
        self._timer: asyncio.Task[None] | None = None
        self.played = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMFullResponseStartFrame):
            await self._cancel_timer()
            self._timer = self.create_task(self._play_when_late())
        elif isinstance(frame, (LLMTextFrame, LLMFullResponseEndFrame, InterruptionFrame)):
            await self._cancel_timer()
        await self.push_frame(frame, direction)

    async def _cancel_timer(self) -> None:
        if self._timer is not None:
            await self.cancel_task(self._timer)
            self._timer = None

    async def _play_when_late(self) -> None:
        await asyncio.sleep(self._after_s)
        self._timer = None
        self.played += 1
        logger.bind(after_s=self._after_s).info("LLM is late: playing the filler phrase")
        step = int(self._sample_rate * FRAME_S) * 2
        for offset in range(0, len(self._audio), step):
            chunk = self._audio[offset : offset + step]
            await self.push_frame(OutputAudioRawFrame(chunk, self._sample_rate, 1))

    async def cleanup(self) -> None:
        await self._cancel_timer()
        await super().cleanup()
