"""Azure's neural TTS (premium cloud, SSML prosody) through Pipecat's AzureTTSService."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipecat.services.tts_service import TTSService

from voicebot.errors import ConfigError
from voicebot.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from voicebot.config import Settings

# Pipecat asks Azure for raw 24 kHz PCM by default.
AZURE_SAMPLE_RATE = 24000


def _check(settings: Settings) -> None:
    secrets = settings.secrets
    if secrets.azure_speech_key is None or not secrets.azure_speech_region:
        raise ConfigError(
            "tts uses azure: set AZURE_SPEECH_KEY and AZURE_SPEECH_REGION in the environment"
        )


def _build(settings: Settings, _model: None) -> TTSService:
    from pipecat.services.azure.tts import AzureTTSService

    key, region = settings.secrets.azure_speech_key, settings.secrets.azure_speech_region
    assert key is not None and region is not None  # checked at start-up
    a = settings.tts.azure
    return AzureTTSService(
        api_key=key.get_secret_value(),
        region=region,
        settings=AzureTTSService.Settings(
            voice=a.voice, language=a.language, rate=a.rate, pitch=a.pitch
        ),
    )


SPEC = ProviderSpec(
    id="azure",
    stage="tts",
    extra="azure",
    requires=("azure.cognitiveservices.speech",),
    check=_check,
    build=_build,
    describe=lambda settings: settings.tts.azure.voice,
    sample_rate=lambda _settings, _model: AZURE_SAMPLE_RATE,
    endpoint=lambda settings: f"azure:{settings.secrets.azure_speech_region}",
)
