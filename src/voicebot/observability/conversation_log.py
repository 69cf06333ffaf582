"""Logs what was said in a session, the person's words and the bot's reply, at DEBUG only.

Words are personal data: at INFO and above a session logs only counts and timings.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection


class ConversationLogObserver(BaseObserver):
    """One DEBUG line per final transcript ("user said") and per spoken reply ("bot said")."""

    def __init__(self, *, session_id: str, **kwargs: Any) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._log = logger.bind(session=session_id)
        self._reply: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, TranscriptionFrame):
            self._log.bind(text=frame.text).debug("user said")
        elif isinstance(frame, TTSTextFrame):
            self._reply.append(frame.text)
        elif data.direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStartedSpeakingFrame):
                self._flush(interrupted=True)
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._flush(interrupted=False)

    def _flush(self, *, interrupted: bool) -> None:
        if not self._reply:
            return
        text = " ".join(part.strip() for part in self._reply if part.strip())
        self._reply.clear()
        self._log.bind(text=text, interrupted=interrupted).debug("bot said")
