"""`voicebot say`: one text through the configured TTS stage, measured like a session hears it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from voicebot.config import Settings
from voicebot.processors.tts_fallback import FallbackTTSService
from voicebot.tts_factory import Voices, build_tts, output_sample_rate


@dataclass
class SpokenText:
    provider: str
    voice: str
    sample_rate: int
    audio: bytes
    ttfb_ms: float | None
    elapsed_ms: float

    @property
    def audio_s(self) -> float:
        return len(self.audio) / 2 / self.sample_rate

    def summary(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "voice": self.voice,
            "ttfb_ms": None if self.ttfb_ms is None else round(self.ttfb_ms, 1),
            "audio_s": round(self.audio_s, 3),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "rtf": round(self.elapsed_ms / 1000 / self.audio_s, 4) if self.audio else None,
            "sample_rate": self.sample_rate,
        }


class _AudioSink(FrameProcessor):
    """Keeps the TTS audio that reaches the end of the pipeline, and when it first did."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.first_at: float | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.chunks.append(frame.audio)
        await self.push_frame(frame, direction)


def voice_name(settings: Settings, provider: str) -> str:
    tts = settings.tts
    return {
        "piper": tts.voice,
        "kokoro": tts.kokoro.voice,
        "edge": tts.edge.voice,
        "azure": tts.azure.voice,
    }[provider]


async def speak(settings: Settings, voices: Voices, text: str) -> SpokenText:
    """Synthesise `text` with the session's TTS stage (primary, fallback, trimming)."""
    rate = output_sample_rate(settings, voices)
    sink = _AudioSink()
    tts = build_tts(settings, voices)
    worker = PipelineWorker(
        Pipeline([tts, sink]),
        params=PipelineParams(audio_out_sample_rate=rate, enable_metrics=True),
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    start = time.perf_counter()
    await worker.queue_frames([TTSSpeakFrame(text), EndFrame()])
    await runner.run()
    elapsed = (time.perf_counter() - start) * 1000
    ttfb = (sink.first_at - start) * 1000 if sink.first_at else None
    provider: str = settings.tts.provider
    if isinstance(tts, FallbackTTSService) and tts.spoken_by is not tts.providers[0]:
        provider = str(settings.tts.fallback)
    return SpokenText(
        provider=provider,
        voice=voice_name(settings, provider),
        sample_rate=rate,
        audio=b"".join(sink.chunks),
        ttfb_ms=ttfb,
        elapsed_ms=elapsed,
    )
