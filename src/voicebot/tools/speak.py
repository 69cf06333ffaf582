"""`voicebot say`: one text through the configured TTS stage, measured like a session hears it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.tts.fallback import FallbackTTSService
from voicebot.providers.tts.stage import build_tts, output_sample_rate
from voicebot.tools.oneshot import run_once


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


async def speak(settings: Settings, models: SharedModels, text: str) -> SpokenText:
    """Synthesise `text` with the session's TTS stage (primary, fallback, trimming)."""
    rate = output_sample_rate(settings, models)
    tts = build_tts(settings, models)
    done = await run_once(
        tts,
        [TTSSpeakFrame(text)],
        TTSAudioRawFrame,
        PipelineParams(audio_out_sample_rate=rate, enable_metrics=True),
    )
    chosen = providers.chosen(settings, "tts")
    spoken = 1 if isinstance(tts, FallbackTTSService) and tts.spoken_by is tts.providers[1] else 0
    return SpokenText(
        provider=chosen[spoken].id,
        voice=chosen[spoken].describe(settings),
        sample_rate=rate,
        audio=b"".join(f.audio for f in done.frames if isinstance(f, TTSAudioRawFrame)),
        ttfb_ms=done.first_ms,
        elapsed_ms=done.elapsed_ms,
    )
