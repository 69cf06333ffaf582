"""Turns pipeline frames into protocol events (transcript, bot_text, speaking, metrics, error)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from voicebot.observability.metrics_data import (
    FallbackMetricsData,
    QueueWaitMetricsData,
    RTFMetricsData,
    TokensPerSecondMetricsData,
)
from voicebot.observability.turn_timeline import TurnTimeline
from voicebot.protocol import (
    BotStartedSpeakingEvent,
    BotStoppedSpeakingEvent,
    BotTextEvent,
    ErrorEvent,
    MetricsEvent,
    ServerEvent,
    TranscriptEvent,
    UserStartedSpeakingEvent,
    UserStoppedSpeakingEvent,
)

EventSink = Callable[[ServerEvent], Awaitable[None]]


def stage_of(processor: FrameProcessor) -> str | None:
    """The pipeline stage a service belongs to: "stt", "llm", "tts", or None."""
    for base, stage in ((STTService, "stt"), (LLMService, "llm"), (TTSService, "tts")):
        if isinstance(processor, base):
            return stage
    return None


class ProtocolEventObserver(BaseObserver):
    """Sends one protocol event per meaningful frame to `sink` (e.g. a WebSocket).

    Observers run in their own task, so a slow client never stalls the pipeline.
    Only a frame's first push is observed, so each frame yields at most one event;
    each answered turn also yields a "turn" metrics event with its timeline.
    """

    def __init__(self, *, sink: EventSink, **kwargs: Any) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._sink = sink
        self._timeline = TurnTimeline()

    async def on_push_frame(self, data: FramePushed) -> None:
        event = self._event_for(data)
        if event is not None:
            await self._sink(event)
        timeline = self._timeline.observe(data)
        if timeline is not None:
            await self._sink(MetricsEvent(stage="turn", timeline_ms=timeline))

    def _event_for(self, data: FramePushed) -> ServerEvent | None:
        frame = data.frame
        if isinstance(frame, TranscriptionFrame):
            return TranscriptEvent(text=frame.text, final=True)
        if isinstance(frame, InterimTranscriptionFrame):
            return TranscriptEvent(text=frame.text, final=False)
        if isinstance(frame, TTSTextFrame):
            return BotTextEvent(text=frame.text)
        # Speaking frames are broadcast both ways; report the downstream copy.
        if data.direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStartedSpeakingFrame):
                return UserStartedSpeakingEvent()
            if isinstance(frame, UserStoppedSpeakingFrame):
                return UserStoppedSpeakingEvent()
            if isinstance(frame, BotStartedSpeakingFrame):
                return BotStartedSpeakingEvent()
            if isinstance(frame, BotStoppedSpeakingFrame):
                return BotStoppedSpeakingEvent()
        if isinstance(frame, ErrorFrame):
            code = "fatal_error" if frame.fatal else "pipeline_error"
            return ErrorEvent(code=code, message=frame.error)
        if isinstance(frame, MetricsFrame):
            return self._metrics_event(data.source, frame)
        return None

    @staticmethod
    def _metrics_event(source: FrameProcessor, frame: MetricsFrame) -> MetricsEvent | None:
        stage = stage_of(source)
        if stage is None:
            return None
        values: dict[str, Any] = {}
        for item in frame.data:
            if isinstance(item, TTFBMetricsData) and item.value > 0:
                values["ttfb_ms"] = round(item.value * 1000, 1)
            elif isinstance(item, ProcessingMetricsData) and item.value > 0:
                values["processing_ms"] = round(item.value * 1000, 1)
            elif isinstance(item, RTFMetricsData):
                values["rtf"] = item.value
            elif isinstance(item, TokensPerSecondMetricsData):
                values["tokens_per_s"] = item.value
            elif isinstance(item, FallbackMetricsData):
                values["fallbacks"] = item.value
            elif isinstance(item, QueueWaitMetricsData):
                values["queue_ms"] = round(item.value * 1000, 1)
        if not values:
            return None
        return MetricsEvent(stage=stage, **values)
