"""An LLM stage that answers each turn with a primary provider and, if it fails, a fallback."""

from __future__ import annotations

import math
import time
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from voicebot.errors import is_retryable
from voicebot.observability.metrics_data import FallbackMetricsData
from voicebot.pipecat_compat import answer_context, relay_pushes
from voicebot.providers.owner import ProviderOwner


class FailoverLLMService(ProviderOwner, LLMService[Any]):  # type: ignore[misc]
    """Each turn goes to `primary`; if it fails before its first word (429, 5xx, timeout,
    refused connection, anything), the same context is answered by `fallback` in the
    same turn. After a retryable failure the primary is skipped for `cooldown_secs`, then
    tried again; after one that is not retryable (ProviderError.retryable), for the session.

    Both providers are ordinary Pipecat LLM services owned by this one: it sets them up,
    starts and stops them with itself, and runs their `_process_context` with their
    output relayed through itself, so interruptions cancel whichever is answering.
    """

    def __init__(
        self,
        *,
        primary: LLMService[Any],
        fallback: LLMService[Any],
        cooldown_secs: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(settings=LLMSettings(model=None), **kwargs)
        self._primary = primary
        self._fallback = fallback
        self._cooldown_secs = cooldown_secs
        self._primary_resting_until = 0.0
        self.failovers = 0
        self.answered_by: LLMService[Any] | None = None
        for service in self.providers:
            relay_pushes(service, self._relay(service))

    @property
    def providers(self) -> tuple[LLMService[Any], LLMService[Any]]:
        return self._primary, self._fallback

    def can_generate_metrics(self) -> bool:
        return True

    def _relay(self, service: LLMService[Any]) -> Any:
        async def push(frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
            if isinstance(frame, LLMTextFrame):
                self._spoke = True
            await self.push_frame(frame, direction)

        return push

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            await self._answer(frame)
        finally:
            await self.push_frame(LLMFullResponseEndFrame())

    async def _answer(self, frame: LLMContextFrame) -> None:
        order = list(self.providers)
        if time.monotonic() < self._primary_resting_until:
            order = [self._fallback]
        for service in order:
            self._spoke = False
            self.answered_by = service
            try:
                await answer_context(service, frame.context)
                return
            except Exception as e:  # any failure of one provider is a reason to try the next
                reason = f"{type(e).__name__}: {e}"
                if self._spoke:
                    await self.push_error(error_msg=f"{service.name} failed mid-reply: {reason}")
                    return
                if service is self._primary:
                    retryable = is_retryable(e)
                    # A failure that may pass rests the primary for the cool-down; one that
                    # will not (a wrong key, a bad request) for the rest of the session.
                    rest = self._cooldown_secs if retryable else math.inf
                    self._primary_resting_until = time.monotonic() + rest
                    self.failovers += 1
                    count = FallbackMetricsData(
                        processor=self.name, value=self.failovers, retryable=retryable
                    )
                    await self.push_frame(MetricsFrame(data=[count]))
                    logger.bind(
                        primary=service.name,
                        fallback=self._fallback.name,
                        reason=reason,
                        retryable=retryable,
                    ).warning(
                        "LLM primary failed: the fallback answers this turn"
                        if retryable
                        else "LLM primary failed and will not recover by itself: the fallback "
                        "answers for the rest of this session (check its settings and key)"
                    )
                    continue
                await self.push_error(error_msg=f"LLM failed ({service.name}): {reason}")
