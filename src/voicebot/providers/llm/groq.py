"""Groq's cloud LLM through Pipecat's GroqLLMService, bounded for voice."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipecat.services.groq.llm import GroqLLMService

from voicebot.errors import ConfigError
from voicebot.providers.llm.openai_compat import (
    VoiceBounds,
    backstop_timeout_secs,
    openai_settings,
)
from voicebot.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from voicebot.config import Settings

GROQ_DEFAULT_BASE_URL = "https://api.groq.com"


def groq_base_url() -> str:
    """Where Groq requests go: `$GROQ_BASE_URL/openai/v1`, as the official groq SDK does."""
    return os.environ.get("GROQ_BASE_URL", GROQ_DEFAULT_BASE_URL).rstrip("/") + "/openai/v1"


class BoundedGroqLLMService(VoiceBounds, GroqLLMService):
    """Pipecat's GroqLLMService with voice-sized timeouts, reaching `$GROQ_BASE_URL`."""

    def __init__(self, *, request_timeout_secs: float = 3.0, **kwargs: Any) -> None:
        self._request_timeout_secs = request_timeout_secs
        super().__init__(base_url=groq_base_url(), **kwargs)


def _check(settings: Settings) -> None:
    key = settings.secrets.groq_api_key
    if key is None or not key.get_secret_value():
        raise ConfigError("llm uses groq: set GROQ_API_KEY in the environment")


def _build(settings: Settings, _model: None) -> BoundedGroqLLMService:
    key = settings.secrets.groq_api_key
    assert key is not None  # checked at start-up
    return BoundedGroqLLMService(
        api_key=key.get_secret_value(),
        request_timeout_secs=backstop_timeout_secs(settings),
        settings=openai_settings(settings, settings.llm.groq.model),
    )


SPEC = ProviderSpec(
    id="groq",
    stage="llm",
    extra="groq",
    requires=("openai",),
    check=_check,
    build=_build,
    describe=lambda settings: settings.llm.groq.model,
    endpoint=lambda _settings: groq_base_url(),
)
