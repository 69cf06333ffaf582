"""Small fakes on Pipecat's own bases, with failure knobs, for millisecond tests of our logic.

`fail` chooses how a provider misbehaves: None (works), "raise" (fails before its first
word), "stall" (never answers), "midway" (fails after its first word). `retryable` is the
flag of the ProviderError it raises, as a real provider's boundary would translate it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pipecat.adapters.llm.services.open_ai_adapter import OpenAILLMAdapter
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, TTSSettings
from pipecat.services.tts_service import TTSService

from voicebot.errors import ProviderError
from voicebot.providers.llm.local import Emit, LocalLLMService, ModelQueue

Failure = Literal["raise", "stall", "midway", "stall_midway"] | None


class FakeLLMService(LLMService[OpenAILLMAdapter]):
    """Answers every context with `reply`, word by word, unless told to fail.

    Each reply is framed by LLMFullResponseStart/EndFrame as a real service's is;
    `word_delay_s` paces the words; `finished` counts replies generated to the end, and
    `contexts` keeps the messages each call answered.
    """

    adapter_class = OpenAILLMAdapter

    def __init__(
        self,
        *,
        reply: str = "Paris is the capital.",
        fail: Failure = None,
        retryable: bool = True,
        word_delay_s: float = 0.0,
    ) -> None:
        super().__init__(settings=LLMSettings(model="fake"))
        self.reply = reply
        self.fail = fail
        self.retryable = retryable
        self.word_delay_s = word_delay_s
        self.calls = 0
        self.finished = 0
        self.contexts: list[list[Any]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            try:
                await self._process_context(frame.context)
            finally:
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def _process_context(self, context: LLMContext) -> None:
        self.calls += 1
        self.contexts.append(list(context.messages))
        if self.fail == "raise":
            raise ProviderError("fake LLM refused", retryable=self.retryable)
        if self.fail == "stall":
            await asyncio.Event().wait()
        for i, word in enumerate(self.reply.split(" ")):
            if self.fail == "midway" and i == 1:
                raise ProviderError("fake LLM dropped mid-reply", retryable=self.retryable)
            if self.fail == "stall_midway" and i == 1:
                await asyncio.Event().wait()
            if self.word_delay_s:
                await asyncio.sleep(self.word_delay_s)
            await self.push_frame(LLMTextFrame(("" if i == 0 else " ") + word))
        self.finished += 1


class FakeTTSService(TTSService):
    """Speaks a tone for each text (100 ms per word), unless told to fail."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        fail: Failure = None,
        retryable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice="tone", language=None),
            **kwargs,
        )
        self.rate = sample_rate
        self.fail = fail
        self.retryable = retryable
        self.texts: list[str] = []

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        self.texts.append(text)
        if self.fail == "raise":
            raise ProviderError("fake TTS refused", retryable=self.retryable)
        if self.fail == "stall":
            await asyncio.Event().wait()

        async def chunks() -> AsyncGenerator[bytes, None]:
            for i in range(max(1, len(text.split()))):
                if self.fail == "midway" and i == 1:
                    raise ProviderError("fake TTS dropped", retryable=self.retryable)
                yield tone(0.1, self.rate)

        async for frame in self._stream_audio_frames_from_iterator(
            chunks(), in_sample_rate=self.rate, context_id=context_id
        ):
            yield frame


def tone(seconds: float, rate: int, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


class WordsLocalLLM(LocalLLMService):
    """Our in-process LLM base over a stand-in model that writes `reply` word by word."""

    def __init__(self, *, reply: str, word_delay_s: float = 0.02, max_tokens: int = 80) -> None:
        super().__init__(
            model_name="words",
            queue=ModelQueue("words"),
            system_instruction="Be brief.",
            max_tokens=max_tokens,
        )
        self.reply = reply
        self.word_delay_s = word_delay_s
        self.calls = 0
        # Words written by each call, in order.
        self.written: list[int] = []

    def _generate(self, messages: list[dict[str, Any]], emit: Emit, stop: threading.Event) -> bool:
        """One word per token, up to `max_tokens` words."""
        self.calls += 1
        self.written.append(0)
        words = self.reply.split(" ")
        limit = self._settings.max_tokens
        assert isinstance(limit, int)
        for i, word in enumerate(words[:limit]):
            if stop.wait(self.word_delay_s):
                return False
            self.written[-1] += 1
            emit(("" if i == 0 else " ") + word)
        return len(words) > limit


@dataclass
class _VoiceChunk:
    audio_int16_bytes: bytes


class RecordingPiperVoice:
    """Stands in for a `PiperVoice`: a tone per text, with every text it was asked for."""

    def __init__(
        self, rate: int = 16000, seconds_per_chunk: float = 0.05, chunks_per_text: int = 2
    ) -> None:
        self.config = type("Config", (), {"sample_rate": rate})()
        self.texts: list[str] = []
        self.chunks_made = 0
        self._seconds = seconds_per_chunk
        self._chunks = chunks_per_text

    def synthesize(self, text: str) -> Iterator[_VoiceChunk]:
        self.texts.append(text)
        for _ in range(self._chunks):
            time.sleep(self._seconds)  # synthesis takes time, on the worker thread
            self.chunks_made += 1
            yield _VoiceChunk(tone(0.1, self.config.sample_rate))
