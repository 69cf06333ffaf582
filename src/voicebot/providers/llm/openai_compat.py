"""What Groq and vLLM share: Pipecat's OpenAI-compatible services, bounded for voice.

A voice turn cannot wait: the OpenAI client's own retries (which honour `retry-after`,
up to a minute) are off, and at most one quick retry is made, only for a dropped
connection or a 5xx. A 429 or a timeout fails at once, so the fallback LLM can answer
the same turn. The turn's real deadlines (first word, stalls) are kept by the LLM stage
(failover.py); the HTTP read timeout here is only a backstop. SDK errors leave as
`ProviderError`, retryable for timeouts, dropped connections, 429 and 5xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from openai import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    AsyncStream,
    DefaultAsyncHttpxClient,
    InternalServerError,
    Timeout,
)
from openai.types.chat import ChatCompletionChunk
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.base_llm import BaseOpenAILLMService, OpenAILLMSettings
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from voicebot.errors import ProviderError
from voicebot.processors.reply_limit import ReplyStoppedAtLimitFrame

CONNECT_TIMEOUT_S = 1.0
QUICK_RETRY_WAIT_S = 0.1

if TYPE_CHECKING:
    from voicebot.config import Settings


def backstop_timeout_secs(settings: Settings) -> float:
    """The HTTP read timeout: longer than the stage's own deadlines, which fire first."""
    return settings.llm.first_token_deadline_secs + settings.llm.token_stall_secs


def openai_settings(settings: Settings, model: str) -> OpenAILLMSettings:
    llm = settings.llm
    return BaseOpenAILLMService.Settings(
        model=model,
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
        system_instruction=llm.system_prompt,
    )


def provider_error(error: APIError) -> ProviderError:
    """The SDK's error as a ProviderError that says whether trying again later can help."""
    if isinstance(error, APITimeoutError):
        return ProviderError(f"no answer in time: {error}", retryable=True)
    if isinstance(error, APIConnectionError):
        return ProviderError(f"connection failed: {error}", retryable=True)
    if isinstance(error, APIStatusError):
        status = error.status_code
        # 401/403: a wrong key; 400/404/422: a wrong model or request. Neither heals alone.
        return ProviderError(
            f"HTTP {status}: {error.message}", retryable=status >= 500 or status == 429
        )
    return ProviderError(str(error), retryable=False)


def _worth_a_quick_retry(error: BaseException) -> bool:
    if isinstance(error, APITimeoutError):
        return False  # the time budget is already spent
    return isinstance(error, (APIConnectionError, InternalServerError))


class VoiceBounds:
    """Client settings and retry policy for a subclass of Pipecat's OpenAI-compatible LLMs."""

    _request_timeout_secs: float = 3.0
    # Pipecat's empty-turn recovery (pipeline.py) adds a "developer" message; Groq and
    # the chat templates vLLM serves know system, user and assistant only.
    supports_developer_role = False

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
            timeout=Timeout(self._request_timeout_secs, connect=CONNECT_TIMEOUT_S),
            http_client=DefaultAsyncHttpxClient(),
            default_headers=default_headers,
        )

    async def get_chat_completions(self, context: LLMContext) -> AsyncStream[ChatCompletionChunk]:
        parent: Any = super()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(2),
                wait=wait_fixed(QUICK_RETRY_WAIT_S),
                retry=retry_if_exception(_worth_a_quick_retry),
                reraise=True,
            ):
                with attempt:
                    stream: AsyncStream[ChatCompletionChunk] = await parent.get_chat_completions(
                        context
                    )
                    # Pipecat only iterates the stream and closes it.
                    return self._marking_a_reply_at_the_limit(stream)  # type: ignore[return-value]
        except APIError as e:
            raise provider_error(e) from e
        raise AssertionError("unreachable")

    async def _marking_a_reply_at_the_limit(
        self, stream: AsyncStream[ChatCompletionChunk]
    ) -> AsyncIterator[ChatCompletionChunk]:
        """`stream`'s chunks; a reply it ends at `max_tokens` (finish_reason "length") is
        then marked for the TTS, before Pipecat ends the reply (processors/reply_limit.py)."""
        written: list[str] = []
        at_limit = False
        try:
            async for chunk in stream:
                for choice in chunk.choices or []:
                    if choice.delta and choice.delta.content:
                        written.append(choice.delta.content)
                    at_limit = at_limit or choice.finish_reason == "length"
                yield chunk
        finally:
            await stream.close()
        if at_limit:
            service: Any = self  # mixed into a Pipecat LLM service
            await service.push_frame(ReplyStoppedAtLimitFrame(text="".join(written)))
