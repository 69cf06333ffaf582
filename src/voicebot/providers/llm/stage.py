"""A session's LLM stage from `llm.*`: the primary provider, wrapped with its fallback."""

from __future__ import annotations

from typing import Any

from pipecat.services.llm_service import LLMService

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.llm.failover import FailoverLLMService


def build_llm(settings: Settings, models: SharedModels) -> LLMService[Any]:
    """The LLM stage: `llm.provider`, backed by `llm.fallback` when one is set."""
    services = [
        spec.build(settings, models.get(spec)) for spec in providers.chosen(settings, "llm")
    ]
    if len(services) == 1:
        return services[0]  # type: ignore[return-value]
    return FailoverLLMService(
        primary=services[0],  # type: ignore[arg-type]
        fallback=services[1],  # type: ignore[arg-type]
        cooldown_secs=settings.llm.cooldown_secs,
    )
