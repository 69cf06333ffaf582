"""Groq and vLLM through Pipecat's OpenAI-compatible services, bounded for voice.

A voice turn cannot wait: requests time out after `request_timeout_s` without a byte,
the OpenAI client's own retries (which honour `retry-after`, up to a minute) are off,
and at most one quick retry is made, only for a dropped connection or a 5xx. A 429
or a timeout fails at once, so the fallback LLM can answer the same turn.
"""

from __future__ import annotations

import os
from typing import Any

from openai import (
    APIConnectionError,
    APITimeoutError,
    AsyncOpenAI,
    AsyncStream,
    DefaultAsyncHttpxClient,
    InternalServerError,
    Timeout,
)
from openai.types.chat import ChatCompletionChunk
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.groq.llm import GroqLLMService
from pipecat.services.openai.llm import OpenAILLMService
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

CONNECT_TIMEOUT_S = 1.0
QUICK_RETRY_WAIT_S = 0.1
GROQ_DEFAULT_BASE_URL = "https://api.groq.com"


def groq_base_url() -> str:
    """Where Groq requests go: `$GROQ_BASE_URL/openai/v1`, as the official groq SDK does."""
    return os.environ.get("GROQ_BASE_URL", GROQ_DEFAULT_BASE_URL).rstrip("/") + "/openai/v1"


def _worth_a_quick_retry(error: BaseException) -> bool:
    if isinstance(error, APITimeoutError):
        return False  # the time budget is already spent
    return isinstance(error, (APIConnectionError, InternalServerError))


class _VoiceBounds:
    """Client settings and retry policy shared by the OpenAI-compatible services below."""

    _request_timeout_s: float = 3.0

    def create_client(
        self,
        api_key: Any = None,
        base_url: Any = None,
        organization: Any = None,
        project: Any = None,
        default_headers: Any = None,
        **kwargs: Any,
    ) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            organization=organization,
            project=project,
            max_retries=0,
            timeout=Timeout(self._request_timeout_s, connect=CONNECT_TIMEOUT_S),
            http_client=DefaultAsyncHttpxClient(),
            default_headers=default_headers,
        )

    async def get_chat_completions(self, context: LLMContext) -> AsyncStream[ChatCompletionChunk]:
        parent: Any = super()
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(2),
            wait=wait_fixed(QUICK_RETRY_WAIT_S),
            retry=retry_if_exception(_worth_a_quick_retry),
            reraise=True,
        ):
            with attempt:
                return await parent.get_chat_completions(context)
        raise AssertionError("unreachable")


class BoundedGroqLLMService(_VoiceBounds, GroqLLMService):
    """Pipecat's GroqLLMService with voice-sized timeouts, reaching `$GROQ_BASE_URL`."""

    def __init__(self, *, request_timeout_s: float = 3.0, **kwargs: Any) -> None:
        self._request_timeout_s = request_timeout_s
        super().__init__(base_url=groq_base_url(), **kwargs)


class VLLMLLMService(_VoiceBounds, OpenAILLMService):
    """vLLM's OpenAI-compatible server (a separate process or container) via OpenAILLMService."""

    def __init__(self, *, base_url: str, request_timeout_s: float = 3.0, **kwargs: Any) -> None:
        self._request_timeout_s = request_timeout_s
        super().__init__(
            base_url=base_url, api_key=os.environ.get("VLLM_API_KEY", "EMPTY"), **kwargs
        )
