"""In-process llama.cpp LLM service: streams tokens from a shared GGUF model into the pipeline.

Pipecat has no llama.cpp service. This one sits on Pipecat's `LLMService`, uses the
OpenAI adapter to turn the conversation context into chat messages, and streams the
reply as `LLMTextFrame`s, so context aggregation, history and interruptions behave as
for any Pipecat LLM.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger
from pipecat.adapters.llm.services.open_ai_adapter import OpenAILLMAdapter
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    MetricsFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.utils.types import assert_given

from voicebot.observability.metrics_data import TokensPerSecondMetricsData

if TYPE_CHECKING:
    from llama_cpp import Llama

_END = object()


@dataclass
class LlamaCppLLMSettings(LLMSettings):
    """Runtime-updatable settings for `LlamaCppLLMService` (the standard LLM fields)."""


class LlamaCppLLMService(LLMService[OpenAILLMAdapter]):
    """Streams chat completions from a llama.cpp model shared by every session.

    A `Llama` instance is not thread-safe, so generations from concurrent sessions are
    serialised by one lock per model. llama.cpp reuses the KV cache for the longest
    common prompt prefix (the system prompt and earlier turns of the same session) and
    re-evaluates the rest, so switching between unrelated conversations stays correct.
    An interruption cancels the streaming coroutine, which tells the generating thread
    to stop at the next token and release the model.
    """

    adapter_class = OpenAILLMAdapter
    Settings = LlamaCppLLMSettings
    _settings: LlamaCppLLMSettings

    _locks: ClassVar[dict[int, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        llama: Llama,
        model_name: str,
        system_instruction: str | None = None,
        max_tokens: int = 80,
        temperature: float = 0.3,
        **kwargs: Any,
    ) -> None:
        settings = self.Settings(
            model=model_name,
            system_instruction=system_instruction,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=None,
            top_k=None,
            frequency_penalty=None,
            presence_penalty=None,
            seed=None,
            filter_incomplete_user_turns=False,
            user_turn_completion_config=None,
        )
        super().__init__(settings=settings, **kwargs)
        self._llama = llama
        with self._locks_guard:
            self._lock = self._locks.setdefault(id(llama), threading.Lock())

    def can_generate_metrics(self) -> bool:
        return True

    async def _report_speed(self, first: float | None, tokens: int) -> None:
        elapsed = time.perf_counter() - first if first is not None else 0.0
        if tokens > 1 and elapsed > 0:
            speed = TokensPerSecondMetricsData(
                processor=self.name,
                model=self._settings.model,
                value=round((tokens - 1) / elapsed, 1),
            )
            await self.push_frame(MetricsFrame(data=[speed]))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            await self.start_processing_metrics()
            try:
                await self._process_context(frame.context)
            except Exception as e:
                await self.push_error(error_msg=f"llama.cpp completion failed: {e}", exception=e)
            finally:
                await self.stop_processing_metrics()
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def _messages(self, context: LLMContext) -> list[dict[str, Any]]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context,
            system_instruction=assert_given(self._settings.system_instruction),
            convert_developer_to_user=True,
        )
        messages: list[dict[str, Any]] = []
        for message in params["messages"]:
            content = message.get("content")
            if not isinstance(content, str):
                # Chat templates of small GGUF models expect plain strings, not parts.
                parts: Any = content or []
                content = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            messages.append({"role": message["role"], "content": content})
        return messages

    async def _process_context(self, context: LLMContext) -> None:
        messages = await self._messages(context)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        max_tokens = self._settings.max_tokens
        temperature = self._settings.temperature

        def generate() -> int:
            produced = 0
            with self._lock:
                try:
                    stream: Any = self._llama.create_chat_completion(
                        messages=messages,  # type: ignore[arg-type]
                        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                        temperature=temperature if isinstance(temperature, float) else 0.3,
                        stream=True,
                    )
                    for chunk in stream:
                        if stop.is_set():
                            break
                        text = chunk["choices"][0]["delta"].get("content")
                        if text:
                            produced += 1
                            loop.call_soon_threadsafe(queue.put_nowait, text)
                except Exception as e:
                    loop.call_soon_threadsafe(queue.put_nowait, e)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)
            return produced

        await self.start_ttfb_metrics()
        worker = loop.run_in_executor(None, generate)
        first: float | None = None
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                if first is None:
                    first = time.perf_counter()
                    await self.stop_ttfb_metrics()
                await self._push_llm_text(item)
        finally:
            stop.set()
        tokens = await worker
        logger.bind(llm_tokens=tokens).debug("llama.cpp reply streamed")
        await self._report_speed(first, tokens)
        await self.start_llm_usage_metrics(
            LLMTokenUsage(prompt_tokens=0, completion_tokens=tokens, total_tokens=tokens)
        )
