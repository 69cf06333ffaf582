"""A Hugging Face transformers LLM (torch, CPU or GPU) streaming tokens into the pipeline."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.adapters.llm.services.open_ai_adapter import OpenAILLMAdapter
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    MetricsFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.utils.types import assert_given

from voicebot.observability.metrics_data import TokensPerSecondMetricsData

_END = object()


@dataclass
class TransformersModel:
    """A tokenizer and causal LM loaded once per process, with the lock that serialises them."""

    tokenizer: Any
    model: Any
    device: str
    name: str
    lock: threading.Lock

    @classmethod
    def load(cls, path: Path, device: str) -> TransformersModel:
        """Load a GGUF file (dequantised by transformers) or a model folder; fp16/bf16 on GPU."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
        where: dict[str, Any] = (
            {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
            if path.suffix == ".gguf"
            else {"pretrained_model_name_or_path": str(path)}
        )
        tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=dtype, local_files_only=True)
        model.to(device).eval()  # type: ignore[arg-type]
        return cls(tokenizer, model, device, path.stem, threading.Lock())


class TransformersLLMService(LLMService[OpenAILLMAdapter]):
    """Streams replies from a shared transformers model through Pipecat's LLM base.

    Generation runs in a worker thread (`model.generate` with a TextIteratorStreamer);
    pieces reach the event loop as they decode. An interruption sets a stopping
    criterion the model checks after every token, so the model is freed at once.
    """

    adapter_class = OpenAILLMAdapter

    def __init__(
        self,
        *,
        model: TransformersModel,
        system_instruction: str | None = None,
        max_tokens: int = 80,
        temperature: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            settings=LLMSettings(
                model=model.name,
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
            ),
            **kwargs,
        )
        self._shared = model

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            await self.start_processing_metrics()
            try:
                await self._process_context(frame.context)
            except Exception as e:
                await self.push_error(error_msg=f"transformers generation failed: {e}", exception=e)
            finally:
                await self.stop_processing_metrics()
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def _process_context(self, context: LLMContext) -> None:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context,
            system_instruction=assert_given(self._settings.system_instruction),
            convert_developer_to_user=True,
        )
        messages = [
            {
                "role": m["role"],
                "content": m.get("content") if isinstance(m.get("content"), str) else "",
            }
            for m in params["messages"]
        ]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        max_tokens = self._settings.max_tokens
        temperature = self._settings.temperature

        def generate() -> int:
            import torch
            from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

            class Stopped(StoppingCriteria):
                def __call__(self, *_: Any, **__: Any) -> bool:
                    return stop.is_set()

            shared = self._shared
            produced = 0
            with shared.lock:
                try:
                    inputs = shared.tokenizer.apply_chat_template(
                        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                    ).to(shared.device)
                    streamer = TextIteratorStreamer(
                        shared.tokenizer, skip_prompt=True, skip_special_tokens=True
                    )
                    sampling = isinstance(temperature, float) and temperature > 0
                    options: dict[str, Any] = {
                        **inputs,
                        "streamer": streamer,
                        "max_new_tokens": max_tokens if isinstance(max_tokens, int) else 80,
                        "do_sample": sampling,
                        "stopping_criteria": StoppingCriteriaList([Stopped()]),
                        "pad_token_id": shared.tokenizer.eos_token_id,
                    }
                    if sampling:
                        options["temperature"] = temperature
                    worker = threading.Thread(
                        target=lambda: torch.inference_mode()(shared.model.generate)(**options)
                    )
                    worker.start()
                    for piece in streamer:
                        if piece:
                            produced += 1
                            loop.call_soon_threadsafe(queue.put_nowait, piece)
                    worker.join()
                except Exception as e:
                    loop.call_soon_threadsafe(queue.put_nowait, e)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)
            return produced

        await self.start_ttfb_metrics()
        task = loop.run_in_executor(None, generate)
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
        pieces = await task
        logger.bind(pieces=pieces).debug("transformers reply streamed")
        elapsed = time.perf_counter() - first if first is not None else 0.0
        if pieces > 1 and elapsed > 0:
            speed = TokensPerSecondMetricsData(
                processor=self.name, model=self._shared.name, value=round((pieces - 1) / elapsed, 1)
            )
            await self.push_frame(MetricsFrame(data=[speed]))
