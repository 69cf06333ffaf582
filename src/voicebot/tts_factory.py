"""Builds a session's TTS stage from `tts.*`: the primary provider, wrapped with its fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import soxr
from loguru import logger
from pipecat.services.tts_service import TTSService

from voicebot.audio import trim_leading_silence
from voicebot.config import Settings
from voicebot.processors.text_clause import speak_first_clause_early
from voicebot.processors.tts_fallback import FallbackTTSService

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro
    from piper import PiperVoice


class Voices(Protocol):
    """The loaded local voices (SharedModels, or models.Voices for `voicebot say`)."""

    piper: PiperVoice | None
    kokoro: Kokoro | None


KOKORO_SAMPLE_RATE = 24000
CLOUD_SAMPLE_RATE = 24000


def provider_sample_rate(provider: str, models: Voices) -> int:
    """The rate a provider speaks at natively (so the pipeline need not resample)."""
    if provider == "piper":
        assert models.piper is not None
        return int(models.piper.config.sample_rate)
    return KOKORO_SAMPLE_RATE if provider == "kokoro" else CLOUD_SAMPLE_RATE


def output_sample_rate(settings: Settings, models: Voices) -> int:
    """The rate bot audio leaves the pipeline at: the primary voice's own."""
    return provider_sample_rate(settings.tts.provider, models)


def build_provider(provider: str, settings: Settings, models: Voices) -> TTSService:
    tts = settings.tts
    if provider == "piper":
        from voicebot.processors.tts_piper import PiperTTSService

        assert models.piper is not None
        return PiperTTSService(voice=models.piper, voice_name=tts.voice)
    if provider == "kokoro":
        from voicebot.processors.tts_kokoro import SharedKokoroTTSService

        assert models.kokoro is not None
        k = tts.kokoro
        return SharedKokoroTTSService(
            kokoro=models.kokoro,
            voice=k.voice,
            language=k.language,
            speed=k.speed,
            # On a CPU a long sentence takes Kokoro ~1.5 s; the default 3 s idle limit
            # could end "bot speaking" between two slow sentences of one reply.
            stop_frame_timeout_s=3.0 if tts.device == "cuda" else 6.0,
        )
    if provider == "edge":
        from voicebot.processors.tts_edge import EdgeTTSService

        e = tts.edge
        return EdgeTTSService(
            voice=e.voice, rate=e.rate, pitch=e.pitch, volume=e.volume, proxy=e.proxy
        )
    if provider == "azure":
        from pipecat.services.azure.tts import AzureTTSService

        key, region = settings.secrets.azure_speech_key, settings.secrets.azure_speech_region
        assert key is not None and region is not None  # checked at start-up
        a = tts.azure
        return AzureTTSService(
            api_key=key.get_secret_value(),
            region=region,
            settings=AzureTTSService.Settings(
                voice=a.voice, language=a.language, rate=a.rate, pitch=a.pitch
            ),
        )
    raise ValueError(f"unknown TTS provider {provider!r}")


def build_tts(settings: Settings, models: Voices) -> TTSService:
    """The TTS stage: `tts.provider`, backed by `tts.fallback` when one is set."""
    tts = build_provider(settings.tts.provider, settings, models)
    if settings.tts.fallback and settings.tts.fallback != settings.tts.provider:
        tts = FallbackTTSService(
            primary=tts,
            fallback=build_provider(settings.tts.fallback, settings, models),
            first_audio_timeout_s=settings.tts.first_audio_timeout_s,
        )
    if settings.tts.first_clause_words:
        speak_first_clause_early(tts, settings.tts.first_clause_words)
    return tts


def filler_audio(settings: Settings, voices: Voices) -> bytes | None:
    """`tts.filler.phrase` spoken once by a local voice, at the pipeline's output rate."""
    filler = settings.tts.filler
    if not filler.enabled:
        return None
    local = [p for p in (settings.tts.provider, settings.tts.fallback) if p in ("piper", "kokoro")]
    if not local:
        logger.warning("tts.filler needs a local voice (piper or kokoro as provider or fallback)")
        return None
    if local[0] == "piper":
        assert voices.piper is not None
        rate = int(voices.piper.config.sample_rate)
        pcm = b"".join(c.audio_int16_bytes for c in voices.piper.synthesize(filler.phrase))
    else:
        assert voices.kokoro is not None
        k = settings.tts.kokoro
        audio, rate = voices.kokoro.create(filler.phrase, voice=k.voice, lang=k.language)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    pcm = trim_leading_silence(pcm, rate)
    target = output_sample_rate(settings, voices)
    if rate != target:
        samples = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
        pcm = (
            (np.clip(soxr.resample(samples, rate, target), -1, 1) * 32767)
            .astype(np.int16)
            .tobytes()
        )
    return pcm
