"""A session's TTS stage from `tts.*`: the primary provider, wrapped with its fallback."""

from __future__ import annotations

import numpy as np
import soxr
from loguru import logger
from pipecat.services.tts_service import TTSService

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.processors.reply_limit import drop_unfinished_sentence
from voicebot.processors.text_clause import speak_first_clause_early
from voicebot.providers import spec as providers
from voicebot.providers.breaker import breaker_for
from voicebot.providers.tts.fallback import FallbackTTSService


def output_sample_rate(settings: Settings, models: SharedModels) -> int:
    """The rate bot audio leaves the pipeline at: the primary voice's own (no resampling)."""
    primary = providers.chosen(settings, "tts")[0]
    assert primary.sample_rate is not None, f"TTS provider {primary.id} declares no sample rate"
    return primary.sample_rate(settings, models.get(primary))


def build_tts(settings: Settings, models: SharedModels) -> TTSService:
    """The TTS stage: `tts.provider`, backed by `tts.fallback` when one is set."""
    specs = providers.chosen(settings, "tts")
    services = [spec.build(settings, models.get(spec)) for spec in specs]
    tts: TTSService = services[0]  # type: ignore[assignment]
    if len(services) > 1:
        primary = specs[0]
        endpoint = primary.endpoint(settings) if primary.endpoint else "local"
        tts = FallbackTTSService(
            primary=tts,
            fallback=services[1],  # type: ignore[arg-type]
            first_audio_timeout_secs=settings.tts.first_audio_timeout_secs,
            breaker=breaker_for("tts", primary.id, endpoint, settings.tts.cooldown_secs),
        )
    if settings.tts.first_clause_words:
        speak_first_clause_early(tts, settings.tts.first_clause_words)
    drop_unfinished_sentence(tts)
    return tts


def filler_audio(settings: Settings, models: SharedModels) -> bytes | None:
    """`tts.filler.phrase` spoken once by a local voice, at the pipeline's output rate."""
    if not settings.tts.filler.enabled:
        return None
    local = [s for s in providers.chosen(settings, "tts") if s.synthesize is not None]
    if not local:
        logger.warning("tts.filler needs a local voice (piper or kokoro as provider or fallback)")
        return None
    spec = local[0]
    assert spec.synthesize is not None
    pcm, rate = spec.synthesize(settings, models.get(spec), settings.tts.filler.phrase)
    target = output_sample_rate(settings, models)
    if rate != target:
        samples = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
        resampled = np.clip(soxr.resample(samples, rate, target), -1, 1)
        pcm = (resampled * 32767).astype(np.int16).tobytes()
    return pcm
