"""`voicebot chat`: one text turn through the configured LLM stage (with its fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.llm.failover import FailoverLLMService
from voicebot.providers.llm.stage import build_llm
from voicebot.tools.oneshot import run_once


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


async def chat(settings: Settings, models: SharedModels, text: str) -> ChatReply:
    """Ask the LLM stage one question; `provider` is the one that actually answered."""
    llm = build_llm(settings, models)
    context = LLMContext(messages=[{"role": "user", "content": text}])
    done = await run_once(
        llm, [LLMContextFrame(context)], LLMTextFrame, PipelineParams(enable_metrics=True)
    )
    provider = providers.chosen(settings, "llm")[0].id
    if isinstance(llm, FailoverLLMService):
        answered = llm.answered_by
        # None: nothing answered and the apology was said instead.
        provider = "none" if answered is None else _chosen_id(settings, llm, answered)
    return ChatReply(
        reply="".join(f.text for f in done.frames if isinstance(f, LLMTextFrame)).strip(),
        provider=provider,
        ttft_ms=done.first_ms,
        tokens=len(done.frames),
        elapsed_ms=done.elapsed_ms,
    )


def _chosen_id(settings: Settings, llm: FailoverLLMService, answered: Any) -> str:
    return providers.chosen(settings, "llm")[llm.providers.index(answered)].id
