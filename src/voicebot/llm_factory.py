"""Builds a session's LLM stage from `llm.*`: the primary provider, wrapped with its fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pipecat.services.llm_service import LLMService

from voicebot.config import Settings
from voicebot.processors.llm_failover import FailoverLLMService

if TYPE_CHECKING:
    from llama_cpp import Llama

    from voicebot.processors.llm_transformers import TransformersModel


class LocalLLMs(Protocol):
    """The loaded local LLMs (SharedModels)."""

    llm: Llama | None
    llm_name: str
    transformers: TransformersModel | None


def build_provider(provider: str, settings: Settings, models: LocalLLMs) -> LLMService[Any]:
    llm = settings.llm
    prompt = llm.system_prompt
    if provider == "llama_cpp":
        from voicebot.processors.llm_llama_cpp import LlamaCppLLMService

        assert models.llm is not None
        return LlamaCppLLMService(
            llama=models.llm,
            model_name=models.llm_name,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
            system_instruction=prompt,
        )
    if provider == "transformers":
        from voicebot.processors.llm_transformers import TransformersLLMService

        assert models.transformers is not None
        return TransformersLLMService(
            model=models.transformers,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
            system_instruction=prompt,
        )
    if provider in ("groq", "vllm"):
        from pipecat.services.openai.base_llm import BaseOpenAILLMService

        from voicebot.processors.llm_openai import BoundedGroqLLMService, VLLMLLMService

        model = llm.groq.model if provider == "groq" else llm.vllm.model
        options = BaseOpenAILLMService.Settings(
            model=model,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
            system_instruction=prompt,
        )
        if provider == "groq":
            key = settings.secrets.groq_api_key
            assert key is not None  # checked at start-up
            return BoundedGroqLLMService(
                api_key=key.get_secret_value(),
                request_timeout_s=llm.request_timeout_s,
                settings=options,
            )
        return VLLMLLMService(
            base_url=llm.vllm.base_url, request_timeout_s=llm.request_timeout_s, settings=options
        )
    raise ValueError(f"unknown LLM provider {provider!r}")


def build_llm(settings: Settings, models: LocalLLMs) -> LLMService[Any]:
    """The LLM stage: `llm.provider`, backed by `llm.fallback` when one is set."""
    primary = build_provider(settings.llm.provider, settings, models)
    if not settings.llm.fallback or settings.llm.fallback == settings.llm.provider:
        return primary
    return FailoverLLMService(
        primary=primary,
        fallback=build_provider(settings.llm.fallback, settings, models),
        cooldown_s=settings.llm.cooldown_s,
    )
