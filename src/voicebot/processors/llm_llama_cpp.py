"""In-process llama.cpp LLM service: streams tokens from a shared GGUF model into the pipeline.

Pipecat has no llama.cpp service; this one is a `LocalLLMService` (Pipecat's LLM base),
so context aggregation, history and interruptions behave as for any Pipecat LLM.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from voicebot.processors.llm_local import Emit, LocalLLMService

if TYPE_CHECKING:
    from llama_cpp import Llama


class LlamaCppLLMService(LocalLLMService):
    """Streams chat completions from a llama.cpp model shared by every session.

    A `Llama` instance is not thread-safe, so generations from concurrent sessions are
    serialised by one lock per model. llama.cpp reuses the KV cache for the longest
    common prompt prefix (the system prompt and earlier turns of the same session) and
    re-evaluates the rest, so switching between unrelated conversations stays correct.
    An interruption stops the generating thread at the next token, releasing the model.
    """

    _locks: ClassVar[dict[int, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, llama: Llama, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._llama = llama
        with self._locks_guard:
            self._lock = self._locks.setdefault(id(llama), threading.Lock())

    def _generate(self, messages: list[dict[str, Any]], emit: Emit, stop: threading.Event) -> None:
        max_tokens = self._settings.max_tokens
        temperature = self._settings.temperature
        with self._lock:
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
                    emit(text)
