"""Adding a provider touches no core module: a test-only voice runs a real /ws turn."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.fakes import FakeTTSService
from tests.helpers import tweak
from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.spec import ProviderSpec
from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer

SINE = ProviderSpec(
    id="sine",
    stage="tts",
    extra="test",
    requires=(),
    build=lambda _settings, _model: FakeTTSService(sample_rate=16000),
    describe=lambda _settings: "440 Hz",
    sample_rate=lambda _settings, _model: 16000,
)


@pytest.fixture
def sine() -> Iterator[ProviderSpec]:
    providers.register(SINE)
    yield SINE
    providers.unregister("tts", "sine")


def test_every_stage_lists_its_providers_without_importing_them() -> None:
    assert providers.ids("stt") == ["whisper"]
    assert providers.ids("llm") == ["llama_cpp", "transformers", "groq", "vllm"]
    assert providers.ids("tts") == ["piper", "kokoro", "edge", "azure"]


def test_a_registered_provider_is_accepted_by_the_settings(sine: ProviderSpec) -> None:
    settings = Settings(tts={"provider": "sine", "fallback": "piper"})
    assert [s.id for s in providers.chosen(settings, "tts")] == ["sine", "piper"]


def test_an_unknown_provider_names_the_ones_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_TTS__PROVIDER", "bark")
    with pytest.raises(ConfigError, match=r"unknown tts provider 'bark'; available: piper, kokoro"):
        load_settings()


async def test_a_new_voice_speaks_a_real_turn_over_ws(
    sine: ProviderSpec,
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
) -> None:
    with_sine = tweak(settings, tts={"provider": "sine"})
    async with LocalServer(with_sine, models=models) as server:
        result = await run_turn(server.ws_url, question_pcm["capital"])
    assert result.sample_rate == 16000  # the new provider's own rate reached the client
    assert result.reply and result.reply_audio_s > 0.1
    audio = np.frombuffer(result.reply_audio, np.int16).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5  # it is the sine voice
