"""vLLM's OpenAI-compatible server (a separate process or container) via OpenAILLMService."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipecat.services.openai.llm import OpenAILLMService

from voicebot.providers.llm.openai_compat import (
    VoiceBounds,
    backstop_timeout_secs,
    openai_settings,
)
from voicebot.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from voicebot.config import Settings


class VLLMLLMService(VoiceBounds, OpenAILLMService):
    """Pipecat's OpenAILLMService pointed at a vLLM server, with voice-sized timeouts."""

    def __init__(self, *, base_url: str, request_timeout_secs: float = 3.0, **kwargs: Any) -> None:
        self._request_timeout_secs = request_timeout_secs
        super().__init__(
            base_url=base_url, api_key=os.environ.get("VLLM_API_KEY", "EMPTY"), **kwargs
        )


def _build(settings: Settings, _model: None) -> VLLMLLMService:
    return VLLMLLMService(
        base_url=settings.llm.vllm.base_url,
        request_timeout_secs=backstop_timeout_secs(settings),
        settings=openai_settings(settings, settings.llm.vllm.model),
    )


SPEC = ProviderSpec(
    id="vllm",
    stage="llm",
    extra="vllm",
    requires=("openai",),
    build=_build,
    describe=lambda settings: settings.llm.vllm.model,
    endpoint=lambda settings: settings.llm.vllm.base_url,
)
