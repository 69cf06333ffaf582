"""Feeds one session's frames into the app's Prometheus metrics (observability.prometheus)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterruptionFrame,
    MetricsFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voicebot.observability.events import stage_of
from voicebot.observability.metrics_data import (
    FallbackMetricsData,
    QueueWaitMetricsData,
    RTFMetricsData,
)
from voicebot.observability.prometheus import VoicebotMetrics


class SessionMetrics:
    """The app's metrics as seen by one session on one kind of transport."""

    def __init__(self, metrics: VoicebotMetrics, transport: str) -> None:
        self.metrics = metrics
        self.transport = transport

    @contextmanager
    def running(self) -> Iterator[None]:
        """Counts the session as started, and as active while the block runs."""
        self.metrics.sessions.labels(transport=self.transport).inc()
        active = self.metrics.active_sessions.labels(transport=self.transport)
        active.inc()
        try:
            yield
        finally:
            active.dec()

    def observer(self) -> MetricsObserver:
        return MetricsObserver(metrics=self.metrics, transport=self.transport)


class MetricsObserver(BaseObserver):
    """Turn latency, stage timings, turns, interruptions, errors and failovers of one session.

    Turn latency runs from the user's last voiced sample (the VAD's decision minus its
    stop window, as Pipecat's UserBotLatencyObserver reckons it) to the output transport
    starting to send the bot's first audio.
    """

    def __init__(self, *, metrics: VoicebotMetrics, transport: str, **kwargs: Any) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._m = metrics
        self._transport = transport
        self._speech_ended_at: float | None = None
        self._bot_speaking = False
        self._failovers_seen: dict[int, int] = {}

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, MetricsFrame):
            self._stage_metrics(data.source, frame)
        elif isinstance(frame, ErrorFrame):
            code = "fatal_error" if frame.fatal else "pipeline_error"
            self._m.errors.labels(stage=stage_of(data.source) or "pipeline", code=code).inc()
        elif isinstance(frame, InterruptionFrame):
            if self._bot_speaking:
                self._bot_speaking = False
                self._m.interruptions.labels(transport=self._transport).inc()
        elif data.direction == FrameDirection.DOWNSTREAM:
            self._speaking(frame)

    def _speaking(self, frame: Any) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_ended_at = None
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_ended_at = frame.timestamp - frame.stop_secs
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._m.turns.labels(transport=self._transport).inc()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            if self._speech_ended_at is not None:
                latency = time.time() - self._speech_ended_at
                self._m.turn_latency.labels(transport=self._transport).observe(latency)
                self._speech_ended_at = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False

    def _stage_metrics(self, source: FrameProcessor, frame: MetricsFrame) -> None:
        stage = stage_of(source)
        for item in frame.data:
            if isinstance(item, FallbackMetricsData):
                self._failover(stage or "unknown", source, item)
            elif stage == "stt" and isinstance(item, ProcessingMetricsData) and item.value > 0:
                self._m.stt_seconds.observe(item.value)
            elif stage == "stt" and isinstance(item, RTFMetricsData):
                self._m.stt_rtf.observe(item.value)
            elif stage == "llm" and isinstance(item, TTFBMetricsData) and item.value > 0:
                self._m.llm_ttft.observe(item.value)
            elif isinstance(item, QueueWaitMetricsData):
                self._m.llm_queue_wait.observe(item.value)
            elif stage == "tts" and isinstance(item, TTFBMetricsData) and item.value > 0:
                self._m.tts_first_audio.observe(item.value)

    def _failover(self, stage: str, source: FrameProcessor, item: FallbackMetricsData) -> None:
        # The frame carries the session's running count; count only what is new.
        seen = self._failovers_seen.get(id(source), 0)
        self._failovers_seen[id(source)] = max(seen, item.value)
        if item.value <= seen:
            return
        providers = getattr(source, "providers", ())
        names = [type(p).__name__ for p in providers] if len(providers) == 2 else ["?", "?"]
        self._m.failovers.labels(
            stage=stage,
            from_provider=names[0],
            to_provider=names[1],
            retryable=str(item.retryable).lower(),
        ).inc(item.value - seen)
