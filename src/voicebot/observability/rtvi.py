"""Pipecat's RTVI processor and observer, with a cut-off reply's text dropped on interruption.

Pipecat 1.14's RTVI observer gathers a reply's LLM text into `bot-transcription`
messages sentence by sentence and keeps the unfinished sentence across an interruption,
so the next reply's first message starts with the left-over of the cut one ("TheThe
dragon..."). RTVI clients (the Pipecat WebSocket route, SmallWebRTC, Daily) get this
observer instead, which forgets the unfinished sentence when the bot is interrupted, and
when a reply stopped at the LLM's token limit (its unfinished sentence is not spoken:
processors/reply_limit.py).
"""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import InterruptionFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIObserverParams, RTVIProcessor

from voicebot import pipecat_compat
from voicebot.processors.reply_limit import ReplyStoppedAtLimitFrame

# Frames after which the unsent bot transcription will not be spoken.
_CUT = (InterruptionFrame, ReplyStoppedAtLimitFrame)


class InterruptionAwareRTVIObserver(RTVIObserver):
    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, _CUT) and data.first_push:
            pipecat_compat.drop_unsent_bot_transcription(self)
        await super().on_push_frame(data)


class VoicebotRTVIProcessor(RTVIProcessor):
    def create_rtvi_observer(
        self, *, params: RTVIObserverParams | None = None, **kwargs: Any
    ) -> RTVIObserver:
        return InterruptionAwareRTVIObserver(self, params=params, **kwargs)
