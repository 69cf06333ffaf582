"""An LLM stage that bounds a remote provider's answer in time and never leaves a turn silent.

The primary answers each turn; if it fails before its first word, the fallback answers the
same turn; if nothing answers, a short apology is spoken and an `error` event names the
stage and the reason. A process-wide circuit breaker (providers/breaker.py) keeps every
session off a failing primary for the cool-down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from voicebot.errors import ProviderError, is_retryable
from voicebot.observability.metrics_data import FallbackMetricsData
from voicebot.pipecat_compat import answer_context, relay_pushes
from voicebot.providers.breaker import CircuitBreaker
from voicebot.providers.owner import ProviderOwner

DEFAULT_APOLOGY = "Sorry, I can't answer right now."
_LLM_FIELDS = (
    "system_instruction",
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "filter_incomplete_user_turns",
    "user_turn_completion_config",
)


@dataclass(frozen=True)
class Deadlines:
    """How long a remote provider may take: from the request's start to its first word
    (connecting, headers, keep-alive comments and empty chunks all count), and between
    two words after that."""

    first_token_secs: float
    token_stall_secs: float


class FailoverLLMService(ProviderOwner, LLMService[Any]):  # type: ignore[misc]
    """Each turn goes to `primary`; if it fails before its first word (an error, a 5xx, a
    refused connection, no word by its first-token deadline, a stream that ends empty),
    the same context is answered by `fallback` in the same turn. If that fails too, or
    there is none, `apology` is spoken and an error is reported: a turn is never silent.

    A failure after the first word (a dropped stream, no word for `token_stall_secs`)
    ends the reply with what was already said (repeating it from another provider would
    be worse) and is reported. After any failure of the primary `breaker` keeps every
    session on the fallback for the cool-down; one that will not pass by itself
    (ProviderError.retryable false: a wrong key) also skips it for the rest of this session.

    Both providers are ordinary Pipecat LLM services owned by this one: it sets them up,
    starts and stops them with itself, and runs their `_process_context` with their
    output relayed through itself, so interruptions cancel whichever is answering.
    """

    def __init__(
        self,
        *,
        primary: LLMService[Any],
        fallback: LLMService[Any] | None = None,
        cooldown_secs: float = 30.0,
        breaker: CircuitBreaker | None = None,
        deadlines: dict[str, Deadlines | None] | None = None,
        apology: str = DEFAULT_APOLOGY,
        **kwargs: Any,
    ) -> None:
        # Every field given (None: not ours to set), or Pipecat logs an ERROR per session.
        unset: dict[str, Any] = {f: None for f in _LLM_FIELDS}
        super().__init__(settings=LLMSettings(model=None, **unset), **kwargs)
        self._primary = primary
        self._fallback = fallback
        self._breaker = breaker or CircuitBreaker("llm", primary.name, cooldown_secs)
        # Per provider ("primary"/"fallback"); a local model has none.
        self._deadlines = deadlines or {}
        self._apology = apology
        self._primary_disabled = False
        self._spoke = False
        self._timer: asyncio.Timeout | None = None
        self._stall_secs: float | None = None
        self.failovers = 0
        self.answered_by: LLMService[Any] | None = None
        for service in self.providers:
            relay_pushes(service, self._relay)

    @property
    def providers(self) -> tuple[LLMService[Any], ...]:
        if self._fallback is None:
            return (self._primary,)
        return self._primary, self._fallback

    def can_generate_metrics(self) -> bool:
        return True

    async def _relay(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        if isinstance(frame, LLMTextFrame) and frame.text.strip():
            self._spoke = True
            if self._timer is not None and self._stall_secs is not None:
                loop = asyncio.get_running_loop()
                self._timer.reschedule(loop.time() + self._stall_secs)
        await self.push_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            await self._answer(frame.context)
        finally:
            await self.push_frame(LLMFullResponseEndFrame())

    def _use_primary(self) -> bool:
        if self._fallback is None:
            return True  # nothing else could answer: always worth a try
        return not self._primary_disabled and self._breaker.allow()

    async def _answer(self, context: LLMContext) -> None:
        failures: list[str] = []
        order = [self._primary] if self._use_primary() else []
        if self._fallback is not None:
            order.append(self._fallback)
        for service in order:
            verdict = False
            try:
                await self._run(service, context)
                verdict = True
                if service is self._primary:
                    self._breaker.succeeded()
                return
            except Exception as e:  # any failure of one provider is a reason to try the next
                verdict = True
                reason = str(e) or type(e).__name__
                if service is self._primary:
                    await self._primary_failed(e, reason)
                if self._spoke:
                    logger.bind(provider=service.name, reason=reason).warning(
                        "LLM failed mid-reply: the reply ends with what was said"
                    )
                    await self.push_error(
                        error_msg=f"llm: {service.name} failed mid-reply ({reason}); "
                        "the reply ends there"
                    )
                    return
                failures.append(f"{service.name}: {reason}")
            finally:
                if service is self._primary and not verdict:
                    self._breaker.abandoned()  # interrupted: no verdict on the provider
        self.answered_by = None
        logger.bind(reasons=failures).warning("LLM gave no answer: speaking the apology")
        await self.push_frame(LLMTextFrame(self._apology))
        await self.push_error(error_msg=f"llm: no answer ({'; '.join(failures)})")

    async def _run(self, service: LLMService[Any], context: LLMContext) -> None:
        """One provider's answer, within its deadlines; raises if it said nothing."""
        self._spoke = False
        self.answered_by = service
        role = "primary" if service is self._primary else "fallback"
        limits = self._deadlines.get(role)
        if limits is None:
            await answer_context(service, context)
        else:
            self._stall_secs = limits.token_stall_secs
            try:
                async with asyncio.timeout(limits.first_token_secs) as self._timer:
                    await answer_context(service, context)
            except TimeoutError as e:
                if self._spoke:
                    raise ProviderError(
                        f"no word for {limits.token_stall_secs:g} s", retryable=True
                    ) from e
                raise ProviderError(
                    f"no first word within {limits.first_token_secs:g} s", retryable=True
                ) from e
            finally:
                self._timer = None
                self._stall_secs = None
        if not self._spoke:
            raise ProviderError("the reply was empty", retryable=True)

    async def _primary_failed(self, error: Exception, reason: str) -> None:
        self._breaker.failed()
        retryable = is_retryable(error)
        # One that will not pass by itself (a wrong key, a bad request) skips the primary
        # for the rest of the session, whatever the breaker says.
        self._primary_disabled = self._primary_disabled or not retryable
        if self._fallback is None or self._spoke:
            return
        self.failovers += 1
        count = FallbackMetricsData(processor=self.name, value=self.failovers, retryable=retryable)
        await self.push_frame(MetricsFrame(data=[count]))
        logger.bind(
            primary=self._primary.name,
            fallback=self._fallback.name,
            reason=reason,
            retryable=retryable,
        ).warning(
            "LLM primary failed: the fallback answers this turn"
            if retryable
            else "LLM primary failed and will not recover by itself: the fallback "
            "answers for the rest of this session (check its settings and key)"
        )
