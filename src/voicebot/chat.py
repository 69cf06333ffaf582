"""`voicebot chat`: one text turn through the configured LLM stage (with its fallback)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import EndFrame, Frame, LLMContextFrame, LLMTextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from voicebot.config import Settings
from voicebot.llm_factory import LocalLLMs, build_llm
from voicebot.processors.llm_failover import FailoverLLMService


@dataclass
class ChatReply:
    reply: str
    provider: str
    ttft_ms: float | None
    tokens: int
    elapsed_ms: float

    def summary(self) -> dict[str, Any]:
        return {
            "reply": self.reply,
            "provider": self.provider,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "tokens": self.tokens,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


class _TextSink(FrameProcessor):
    """Keeps the reply text that reaches the end of the pipeline, and when it started."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []
        self.first_at: float | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.pieces.append(frame.text)
        await self.push_frame(frame, direction)


async def chat(settings: Settings, models: LocalLLMs, text: str) -> ChatReply:
    """Ask the LLM stage one question; `provider` is the one that actually answered."""
    llm = build_llm(settings, models)
    sink = _TextSink()
    worker = PipelineWorker(
        Pipeline([llm, sink]), params=PipelineParams(enable_metrics=True), enable_rtvi=False
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    context = LLMContext(messages=[{"role": "user", "content": text}])
    start = time.perf_counter()
    await worker.queue_frames([LLMContextFrame(context), EndFrame()])
    await runner.run()
    provider: str = settings.llm.provider
    if isinstance(llm, FailoverLLMService) and llm.answered_by is llm.providers[1]:
        provider = str(settings.llm.fallback)
    return ChatReply(
        reply="".join(sink.pieces).strip(),
        provider=provider,
        ttft_ms=(sink.first_at - start) * 1000 if sink.first_at else None,
        tokens=len(sink.pieces),
        elapsed_ms=(time.perf_counter() - start) * 1000,
    )
