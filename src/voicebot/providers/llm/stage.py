"""A session's LLM stage from `llm.*`: the primary provider, wrapped with its fallback."""

from __future__ import annotations

from typing import Any

from pipecat.services.llm_service import LLMService

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.breaker import breaker_for
from voicebot.providers.llm.failover import Deadlines, FailoverLLMService


def build_llm(settings: Settings, models: SharedModels) -> LLMService[Any]:
    """The LLM stage: `llm.provider`, backed by `llm.fallback` when one is set.

    A remote primary (or any primary with a fallback) is wrapped in FailoverLLMService,
    which keeps the deadlines, shares the process's circuit breaker and speaks the
    apology when nothing answers; a lone local model is used as it is.
    """
    llm = settings.llm
    specs = providers.chosen(settings, "llm")
    services = [spec.build(settings, models.get(spec)) for spec in specs]
    primary = specs[0]
    if len(services) == 1 and primary.endpoint is None:
        return services[0]  # type: ignore[return-value]
    deadlines = Deadlines(llm.first_token_deadline_secs, llm.token_stall_secs)
    endpoint = primary.endpoint(settings) if primary.endpoint else "local"
    return FailoverLLMService(
        primary=services[0],  # type: ignore[arg-type]
        fallback=services[1] if len(services) > 1 else None,  # type: ignore[arg-type]
        breaker=breaker_for("llm", primary.id, endpoint, llm.cooldown_secs),
        deadlines={
            role: deadlines if spec.endpoint is not None else None
            for role, spec in zip(("primary", "fallback"), specs, strict=False)
        },
        apology=llm.apology,
    )
